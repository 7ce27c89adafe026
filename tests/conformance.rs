//! The conformance suite itself: it passes against a real Warden, and fails, with evidence,
//! against a server that does not do Warden's job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn conformance(args: &[&str], dir: &Path) -> std::process::Output {
    Command::cargo_bin("warden-conformance").unwrap().args(args).arg("--dir").arg(dir).output().unwrap()
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_against_warden_with_evidence_for_every_check() {
    warden::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let out = conformance(&["init"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = warden::config::load_file(&dir.path().join("warden.yaml"), &std::collections::HashMap::<String, String>::new()).unwrap();
    let listener = tokio::net::TcpListener::bind(config.server.listen).await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(warden::run(warden::Gateway::build(&config).unwrap(), listener, shutdown.clone().cancelled_owned()));

    let path = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || conformance(&["run"], &path)).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let r = report(dir.path());
    assert_eq!(r["summary"]["failed"], 0);
    let checks = r["checks"].as_array().unwrap();
    assert!(checks.len() >= 30, "{} checks", checks.len());
    for c in checks {
        assert!(c["evidence"].as_array().is_some_and(|e| !e.is_empty() && e.iter().all(|x| x["status"].as_u64().is_some())), "{c}");
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains(&format!("**{} passed, 0 failed**", checks.len())), "{md}");
    // Evidence describes tokens; it never contains one.
    let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(!json.contains("eyJ"), "a token leaked into the report");
    shutdown.cancel();
}

/// A server that accepts anything: every authentication check must fail against it.
#[tokio::test(flavor = "multi_thread")]
async fn fails_against_a_server_that_checks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = conformance(&["init"], dir.path());
    assert!(out.status.success());
    let state: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap()).unwrap();
    let addr: std::net::SocketAddr = state["gateway_addr"].as_str().unwrap().parse().unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = axum::Router::new().fallback(|| async { axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {}})) });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let path = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || conformance(&["run"], &path)).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let r = report(dir.path());
    let failed: Vec<&str> =
        r["checks"].as_array().unwrap().iter().filter(|c| c["passed"] == false).map(|c| c["id"].as_str().unwrap()).collect();
    for id in [
        "challenge.401-no-token.2025-11-25",
        "token.expired",
        "token.alg-none",
        "token.hs256-public-key",
        "discovery.path-suffixed",
        "tools.identity-injection",
        "hardening.two-credentials",
        "hardening.request-without-id",
        "hardening.cors",
    ] {
        assert!(failed.contains(&id), "{id} did not fail against an impostor: failed = {failed:?}");
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("**FAIL**"));
}
