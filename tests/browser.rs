//! Browser tests in a real browser (Debian's Chromium, headless): a page that is an MCP client
//! calls Warden's `/mcp` cross-origin. From an allowed origin the browser's preflight passes and
//! the page can read the 401 challenge and then list tools with a token; from any other origin
//! the browser blocks both calls.
//!
//! Needs Chromium: `scripts/test` installs it (`scripts/browser-env`) and runs these with
//! `WARDEN_CHROMIUM` set (they are `#[ignore]`d in a plain `cargo test`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::process::Command;

use axum::response::Html;
use serde_json::Value;

mod common;
use common::{TestIssuer, gateway};

const PAGE: &str = include_str!("browser/mcp_page.html");

/// Serves `page` at `/` on `ip`, port chosen by the system; returns the page URL.
async fn serve_page(ip: &str, page: String) -> String {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { Html(page) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Loads `url` in headless Chromium and returns what the page wrote into `#out`.
async fn run_page(url: String) -> Value {
    let chromium = std::env::var("WARDEN_CHROMIUM").expect("WARDEN_CHROMIUM must name Chromium: run scripts/test");
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=20000", "--dump-dom"])
            .arg(profile_arg)
            .arg(url)
            .output()
    })
    .await
    .unwrap()
    .expect("cannot run Chromium");
    let dom = String::from_utf8_lossy(&output.stdout);
    let start = dom.find("<pre id=\"out\">").map(|i| i + "<pre id=\"out\">".len()).unwrap_or_else(|| panic!("no #out in the page:\n{dom}"));
    let end = dom[start..].find("</pre>").unwrap() + start;
    let text = dom[start..end].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the page did not finish ({e}): {text}\n{}", String::from_utf8_lossy(&output.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium: run scripts/test"]
async fn a_browser_page_from_an_allowed_origin_signs_in_and_lists_tools() {
    let issuer = TestIssuer::start().await;
    let tools = "  - {name: echo, description: Echo., http: {url: 'https://backend.example/echo'}}\n";
    let gw = gateway(&issuer, tools, "").await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let page = PAGE.replace("__MCP__", &gw.mcp).replace("__TOKEN__", &token);

    // 127.0.0.1 on another port: a loopback origin, allowed by default.
    let report = run_page(serve_page("127.0.0.1", page.clone()).await).await;
    let anonymous = &report["anonymous"];
    assert_eq!(anonymous["status"], 401, "{report}");
    let challenge = anonymous["challenge"].as_str().unwrap_or_default();
    assert!(challenge.starts_with("Bearer ") && challenge.contains("resource_metadata="), "the page cannot read the challenge: {report}");
    let signed_in = &report["signed_in"];
    assert_eq!(signed_in["status"], 200, "{report}");
    let body: Value = serde_json::from_str(signed_in["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["result"]["tools"][0]["name"], "echo", "{body}");
    assert!(signed_in["request_id"].is_string(), "X-Request-Id not exposed: {report}");

    // 127.0.0.2: another origin, not allowed: the browser blocks both calls after the preflight.
    let report = run_page(serve_page("127.0.0.2", page).await).await;
    for call in ["anonymous", "signed_in"] {
        assert!(report[call]["error"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{call}: {report}");
    }
    let audit = gw.audit();
    assert!(audit.iter().any(|e| e["reason"] == "cors_preflight" && e["decision"] == "allow"), "{audit:?}");
    assert!(audit.iter().any(|e| e["reason"] == "origin_not_allowed" && e["decision"] == "deny"), "{audit:?}");
}
