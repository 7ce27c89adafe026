//! Hot reload of the configured tools and federated servers: `warden serve` gets SIGHUP while
//! callers keep calling. The change (a tool added, a tool's backend moved, a tool removed, an
//! MCP server federated and later removed) applies as a whole; no call fails across the swaps;
//! a broken config keeps the last good tools, and every reload is audited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Serving, TestIssuer, Upstream, mcp_post, tool_call};

fn config(issuer: &TestIssuer, listen: &str, url: &str, audit: &str, tools: &str) -> String {
    format!(
        "server:\n  listen: {listen}\n  public_url: {url}\nidentity:\n  issuers:\n    - issuer: {}\nupstream:\n  allow_cidrs: [127.0.0.1/32]\naudit:\n  output: {audit}\ntools:\n{tools}",
        issuer.url
    )
}

fn tool(name: &str, upstream: &str, path: &str) -> String {
    format!("  - {{name: {name}, description: d, http: {{method: POST, url: \"{upstream}{path}\"}}}}\n")
}

async fn names(http: &reqwest::Client, mcp: &str, token: &str) -> Vec<String> {
    let (_, _, body) = mcp_post(http, mcp, token, &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    body["result"]["tools"].as_array().map(|t| t.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn hangup(serving: &Serving) {
    let status = std::process::Command::new("kill").args(["-HUP", &serving.0.id().to_string()]).status().unwrap();
    assert!(status.success());
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_tools_and_servers_under_load_and_a_broken_config_changes_nothing() {
    let issuer = TestIssuer::start().await;
    let (one, two) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (listen, url) = (format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}"));
    let audit = dir.path().join("audit.jsonl");
    let path = dir.path().join("warden.yaml");
    let write = |tools: &str| std::fs::write(&path, config(&issuer, &listen, &url, &audit.display().to_string(), tools)).unwrap();
    write(&format!("{}{}", tool("search", &one.url, "/search"), tool("legacy", &one.url, "/legacy")));
    let serving = Serving::start(&path, &url).await;
    let mcp = format!("{url}/mcp");
    let token = issuer.sign(&issuer.claims("alice", "", &mcp));
    let http = reqwest::Client::new();
    assert_eq!(names(&http, &mcp, &token).await, ["search", "legacy"]);

    // Callers keep calling `search` through every reload.
    let (stop, calls, failures) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, calls, failures, http, mcp, token) =
            (Arc::clone(&stop), Arc::clone(&calls), Arc::clone(&failures), http.clone(), mcp.clone(), token.clone());
        load.push(tokio::spawn(async move {
            let mut id = 0;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let (status, _, body) = mcp_post(&http, &mcp, &token, &tool_call(id, "search", json!({"q": id}))).await;
                calls.fetch_add(1, Ordering::SeqCst);
                if status != 200 || body["result"]["isError"] != false {
                    failures.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed: {status} {body}");
                }
            }
        }));
    }
    until("calls flow", || async { calls.load(Ordering::SeqCst) > 20 }).await;

    // search moves to the second backend, report is added, legacy is removed, and an MCP server
    // is federated: all in one reload.
    let (_server, server_url) = crate::federation::start_upstream_with(Arc::new(|_| async { true })).await;
    // A tool needing a new scope is added too (alice lacks it, so it is not listed to her).
    let scopes_supported = || async {
        let document: Value =
            http.get(format!("{url}/.well-known/oauth-protected-resource/mcp")).send().await.unwrap().json().await.unwrap();
        document["scopes_supported"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert!(scopes_supported().await.is_empty());
    let tools = format!(
        "{}{}  - {{name: export, description: d, scopes: [reports:export], http: {{url: \"{}/export\"}}}}\n",
        tool("search", &two.url, "/search"),
        tool("report", &two.url, "/report"),
        two.url
    );
    write(&format!("{tools}servers:\n  - {{name: up, url: \"{server_url}\", exclude: [\"admin_*\"]}}\n"));
    hangup(&serving);
    until("the new tools are listed", || async {
        names(&http, &mcp, &token).await == ["search", "report", "up_echo", "up_slow", "up_steps"]
    })
    .await;
    // The metadata and the 401 challenge name the new scope.
    assert_eq!(scopes_supported().await, ["reports:export"]);
    let challenge = http.post(&mcp).json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).send().await.unwrap();
    let challenge = challenge.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("scope=\"reports:export\""), "{challenge}");
    let echoed = mcp_post(&http, &mcp, &token, &tool_call(3, "up_echo", json!({"text": "hi"}))).await.2;
    assert_eq!(echoed["result"]["content"][0]["text"], "echo: hi", "{echoed}");
    let before = calls.load(Ordering::SeqCst);
    until("calls reach the moved backend", || async { two.requests().iter().any(|r| r.path == "/search") }).await;
    assert_eq!(mcp_post(&http, &mcp, &token, &tool_call(1, "report", json!({}))).await.2["result"]["isError"], false);
    let gone = mcp_post(&http, &mcp, &token, &tool_call(2, "legacy", json!({}))).await.2;
    assert_eq!(gone["error"]["data"]["code"], "unknown_tool", "{gone}");

    // A broken config: nothing changes, the calls go on.
    write("  - {name: search, description: d, http: {url: \"ftp://nowhere\"}}\n");
    hangup(&serving);
    until("the failure is audited", || async { std::fs::read_to_string(&audit).unwrap_or_default().contains("config_invalid") }).await;
    assert_eq!(names(&http, &mcp, &token).await, ["search", "report", "up_echo", "up_slow", "up_steps"], "the last good tools stay");
    until("calls go on after the failed reload", || async { calls.load(Ordering::SeqCst) > before + 40 }).await;

    // The server removed: its tools go, the configured ones stay.
    write(&tools);
    hangup(&serving);
    until("the server's tools are gone", || async { names(&http, &mcp, &token).await == ["search", "report"] }).await;

    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no call failed across the reloads ({} calls)", calls.load(Ordering::SeqCst));
    let events: Vec<Value> = std::fs::read_to_string(&audit).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let reloads: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["method"] == "config/reload")
        .map(|e| (e["decision"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reloads, [("allow", "tools_reloaded"), ("error", "config_invalid"), ("allow", "tools_reloaded")]);
    let invalid = events.iter().find(|e| e["reason"] == "config_invalid").unwrap();
    assert!(invalid["explanation"].as_str().unwrap().contains("tools[0].http.url"), "{invalid}");
    drop(serving);
}
