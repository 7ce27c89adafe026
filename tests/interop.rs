//! Interop with MCP clients nobody here wrote: the official Python SDK completes the whole
//! OAuth flow against Warden and the development authorization server, headless.
//!
//! Needs a Python with the `mcp` package: `scripts/test` creates the virtualenv and runs these
//! with `WARDEN_PYTHON` pointing at it (they are `#[ignore]`d in a plain `cargo test`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::process::Command;

use serde_json::{Value, json};

mod common;
use common::demo;

/// The SDK generations under test: the latest release and the last 1.x.
fn pythons() -> Vec<(&'static str, String)> {
    ["WARDEN_PYTHON", "WARDEN_PYTHON_1X"]
        .into_iter()
        .map(|var| (var, std::env::var(var).unwrap_or_else(|_| panic!("{var} must name a Python with the mcp package: run scripts/test"))))
        .collect()
}

/// Runs the Python client and returns its JSON report.
async fn run_client(python: String, url: &str, tool: &str, args: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_client.py");
    let args = args.to_string();
    let url = url.to_owned();
    let tool = tool.to_owned();
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).args([script, "--url", &url, "--tool", &tool, "--args", &args]).output())
            .await
            .unwrap()
            .expect("cannot run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("bad report ({e}): {stdout}"))
}

/// The exchanges as `METHOD path STATUS`, hosts dropped.
fn flow(report: &Value) -> Vec<String> {
    report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let url = url::Url::parse(e["url"].as_str().unwrap()).unwrap();
            format!("{} {} {}", e["method"].as_str().unwrap(), url.path(), e["status"])
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs the Python SDK virtualenv: run scripts/test"]
async fn python_sdk_signs_in_and_calls_a_tool() {
    for (var, python) in pythons() {
        python_sdk_flow(var, python).await;
    }
}

async fn python_sdk_flow(var: &str, python: String) {
    let (demo, shutdown) = demo(Some("alice")).await;
    let report = run_client(python, &demo.mcp_url, "list_events", json!({"limit": 5})).await;
    eprintln!("{var}: mcp SDK {}", report["sdk_version"]);
    let major = report["sdk_version"].as_str().and_then(|v| v.split('.').next()).unwrap_or_default().to_owned();
    assert_eq!(major == "1", var == "WARDEN_PYTHON_1X", "{var} runs SDK {}", report["sdk_version"]);
    assert_eq!(
        flow(&report)[..6],
        [
            "POST /mcp 401",
            "GET /.well-known/oauth-protected-resource/mcp 200",
            "GET /.well-known/oauth-authorization-server 200",
            "POST /register 201",
            "POST /token 200",
            "POST /mcp 200",
        ]
    );
    assert_eq!(report["tools"], json!(["whoami", "list_events", "create_event", "get_record"]));
    let result = &report["result"];
    assert_eq!(result["isError"], false, "{result}");
    let events = result["structuredContent"]["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["owner"] == "alice"), "{events:?}");
    let seen = demo.calendar.seen();
    let last = seen.last().expect("the backend was not called");
    assert_eq!(last.headers["x-user-id"], "alice");
    assert!(!last.headers.contains_key("authorization"), "the client's token reached the backend");
    shutdown.cancel();
}

#[tokio::test]
#[ignore = "needs the Python SDK virtualenv: run scripts/test"]
async fn python_sdk_user_without_write_scope_sees_fewer_tools() {
    let (demo, shutdown) = demo(Some("bob")).await;
    let (_, python) = pythons().remove(0);
    let report = run_client(python, &demo.mcp_url, "whoami", json!({})).await;
    assert_eq!(report["tools"], json!(["whoami", "list_events"]));
    assert_eq!(report["result"]["structuredContent"]["user_id"], "bob");
    assert_eq!(demo.calendar.seen().last().unwrap().headers["x-user-id"], "bob");
    shutdown.cancel();
}
