//! Metrics and probes: `/metrics` counts decisions (from the audit stream), upstream calls and
//! JWKS fetches with bounded labels and no identities; `/readyz` says whether the issuer's
//! keys, the database and the audit writer are there; the exposition passes `promtool`.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::common::{TestGateway, TestIssuer, Upstream, gateway};

async fn traffic() -> (TestIssuer, Upstream, TestGateway) {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let tools = format!("  - {{name: search, description: d, http: {{method: POST, url: \"{}/search\"}}}}\n", upstream.url);
    let gw = gateway(&issuer, &tools, "upstream:\n  allow_cidrs: [127.0.0.1/32]\n").await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    assert_eq!(gw.call(&alice, "search", json!({})).await.result()["isError"], false);
    assert_eq!(gw.call(&alice, "search", json!({})).await.result()["isError"], false);
    let made_up = gw.call(&alice, "tool-nobody-configured-7f3a", json!({})).await;
    assert_eq!(made_up.body["error"]["data"]["code"], "unknown_tool");
    assert_eq!(gw.post_raw(Some("not-a-token"), "{}", &[]).await.status, 401);
    (issuer, upstream, gw)
}

/// The classic text format (what promtool reads), or OpenMetrics when asked for.
async fn metrics(gw: &TestGateway) -> String {
    let open = gw.http.get(format!("{}/metrics", gw.url)).header("accept", "application/openmetrics-text").send().await.unwrap();
    assert!(open.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));
    let r = gw.http.get(format!("{}/metrics", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_decisions_upstream_calls_and_key_fetches_without_identities() {
    let (_issuer, _upstream, gw) = traffic().await;
    let text = metrics(&gw).await;
    assert!(
        text.contains(r#"warden_decisions_total{method="tools/call",tool="search",server="",decision="allow",reason="ok"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"warden_decisions_total{method="",tool="",server="",decision="deny",reason="token_malformed"} 1"#)
            || text.contains("reason=\"token_"),
        "{text}"
    );
    assert!(text.contains(r#"reason="unknown_tool""#), "{text}");
    assert!(text.contains(r#"warden_upstream_duration_seconds_count{kind="http",target="search",outcome="ok"} 2"#), "{text}");
    assert!(text.contains(r#"warden_jwks_fetches_total{issuer=""#) && text.contains(r#"outcome="ok"} 1"#), "{text}");
    assert!(text.contains("warden_request_duration_seconds_bucket"), "{text}");
    for secret in ["alice", "tool-nobody-configured-7f3a", "not-a-token"] {
        assert!(!text.contains(secret), "{secret} must not be a label");
    }
}

#[tokio::test]
async fn readiness_needs_the_issuers_keys() {
    let issuer = TestIssuer::start().await;
    issuer.down.store(true, Ordering::SeqCst);
    let gw = gateway(&issuer, "  []", "").await;
    let r = gw.http.get(format!("{}/readyz", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["reason"], "issuer_keys_unavailable");
    assert_eq!(gw.http.get(format!("{}/healthz", gw.url)).send().await.unwrap().status(), 200, "alive all the same");
    issuer.down.store(false, Ordering::SeqCst);
    // The cache retries a failed fetch after jwks_min_refresh (1s in tests; the gateway's
    // clock is the test's).
    gw.clock.advance(std::time::Duration::from_secs(2));
    let r = gw.http.get(format!("{}/readyz", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The exposition passes `promtool check metrics` (Debian's prometheus package; scripts/test
/// installs it and sets WARDEN_PROMTOOL).
#[tokio::test]
#[ignore = "needs promtool: run by scripts/test"]
async fn the_exposition_passes_promtool() {
    let promtool = std::env::var("WARDEN_PROMTOOL").expect("WARDEN_PROMTOOL: run scripts/test");
    let (_issuer, _upstream, gw) = traffic().await;
    let text = metrics(&gw).await;
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).await.unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}{}\n{text}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The shipped alerting rules parse, with valid PromQL.
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboards/warden-alerts.yaml");
    let out =
        tokio::process::Command::new(std::env::var("WARDEN_PROMTOOL").unwrap()).args(["check", "rules", rules]).output().await.unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Every metric the shipped dashboard and alerting rules query is one Warden exposes.
#[tokio::test]
async fn the_dashboard_and_alerts_query_metrics_that_exist() {
    // Every family with a sample (a labelled family without one is not in the exposition).
    let m = warden::telemetry::Metrics::default();
    m.decision(&warden::telemetry::Decision {
        method: Some("tools/call"),
        tool: Some("t"),
        server: None,
        decision: "allow",
        reason: "ok",
        latency_ms: Some(1.0),
        ..warden::telemetry::Decision::default()
    });
    m.upstream("http", "t", "ok", std::time::Duration::from_millis(1));
    m.jwks_fetch("https://idp", true);
    m.audit_spool("webhook", 0);
    m.audit_delivery("webhook", "ok", 1);
    m.audit_dropped("webhook", 1);
    m.audit_queued();
    let text = m.encode_prometheus();
    let families: std::collections::HashSet<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboards");
    let mut queried = 0;
    for file in ["grafana-warden.json", "warden-alerts.yaml"] {
        let body = std::fs::read_to_string(root.join(file)).unwrap();
        for (at, _) in body.match_indices("warden_") {
            let name: String = body[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name == "warden_" || name.starts_with("warden_overview") {
                continue;
            }
            let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
            assert!(families.contains(family), "{file} queries {name}, which /metrics does not have");
            queried += 1;
        }
    }
    assert!(queried > 20, "{queried}");
}
