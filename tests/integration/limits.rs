//! Limits through the gateway: per-subject rate limits on tool calls (a JSON-RPC error with
//! `rate_limited` and `retryAfterSeconds`, audited with the rule; `tools/list` not counted),
//! and the per-client-IP limit before authentication (HTTP 429 with `Retry-After`, before any
//! token is verified).

use serde_json::json;

use crate::common::{TestIssuer, Upstream, gateway};

fn tools(upstream: &Upstream) -> String {
    format!(
        "  - {{name: search, description: d, http: {{method: POST, url: \"{u}/search\"}}}}\n  - {{name: other, description: d, http: {{method: POST, url: \"{u}/other\"}}}}\n",
        u = upstream.url
    )
}

#[tokio::test]
async fn a_per_subject_limit_refuses_with_a_retry_time_and_leaves_others_alone() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let extra = "upstream:\n  allow_cidrs: [127.0.0.1/32]\nlimits:\n  rules:\n    - {name: per-user-search, tools: [search], key: [subject], rate: 2/minute}\n";
    let gw = gateway(&issuer, &tools(&upstream), extra).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));
    for _ in 0..5 {
        assert_eq!(gw.tool_names(&alice).await.len(), 2, "tools/list is not counted");
    }
    for _ in 0..2 {
        assert_eq!(gw.call(&alice, "search", json!({})).await.result()["isError"], false);
    }
    let before = upstream.requests().len();
    let limited = gw.call(&alice, "search", json!({})).await;
    assert_eq!(limited.error_code(), Some(-32029), "{limited:?}");
    let data = &limited.body["error"]["data"];
    assert_eq!((data["code"].as_str(), data["rule"].as_str()), (Some("rate_limited"), Some("limits/per-user-search")));
    assert!((1..=30).contains(&data["retryAfterSeconds"].as_u64().unwrap()), "{data}");
    assert_eq!(upstream.requests().len(), before, "a limited call never reaches the backend");
    assert_eq!(gw.call(&alice, "other", json!({})).await.result()["isError"], false, "other tools are not limited");
    assert_eq!(gw.call(&bob, "search", json!({})).await.result()["isError"], false, "bob has his own bucket");

    let events = gw.audit();
    let refused = events.iter().find(|e| e["reason"] == "rate_limited").expect("audited");
    assert_eq!(
        (refused["decision"].as_str(), refused["rule"].as_str(), refused["tool"].as_str()),
        (Some("deny"), Some("limits/per-user-search"), Some("search"))
    );
}

#[tokio::test]
async fn the_pre_auth_limit_answers_429_before_any_token_is_verified() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let extra = "upstream:\n  allow_cidrs: [127.0.0.1/32]\nlimits:\n  pre_auth: {rate: 3/minute}\n";
    let gw = gateway(&issuer, &tools(&upstream), extra).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    for _ in 0..3 {
        assert_eq!(gw.post_raw(Some("not-a-token"), "{}", &[]).await.status, 401);
    }
    let hits = issuer.jwks_hits.load(std::sync::atomic::Ordering::SeqCst);
    let flooded = gw.post_raw(Some("not-a-token"), "{}", &[]).await;
    assert_eq!(flooded.status, 429, "{flooded:?}");
    let retry: u64 = flooded.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(flooded.body["error"], "rate_limited");
    assert_eq!(gw.call(&alice, "search", json!({})).await.status, 429, "a valid token does not get past it either");
    // A token under a key the gateway has not seen would make it fetch the JWKS, if it got as
    // far as verification.
    let (unknown_kid, _) = issuer.sign_unpublished(&issuer.claims("mallory", "", &gw.mcp));
    assert_eq!(gw.call(&unknown_kid, "search", json!({})).await.status, 429);
    assert_eq!(issuer.jwks_hits.load(std::sync::atomic::Ordering::SeqCst), hits, "nothing was verified");
    assert!(gw.audit().iter().any(|e| e["reason"] == "pre_auth_rate_limited" && e["status"] == 429));
}

/// Behind a trusted proxy, `X-Forwarded-For` names the client; from anyone else it is ignored.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let limit = "limits:\n  pre_auth: {rate: 1/minute}\n";
    // Untrusted: each spoofed address is still the one socket, so the second request is limited.
    let gw = gateway(&issuer, &tools(&upstream), limit).await;
    assert_eq!(gw.post_raw(None, "{}", &[("x-forwarded-for", "198.51.100.1")]).await.status, 401);
    assert_eq!(gw.post_raw(None, "{}", &[("x-forwarded-for", "198.51.100.2")]).await.status, 429);
    // Trusted (the test's own address is the proxy): each forwarded client has its own bucket.
    let trusted = crate::common::gateway_with(&[&issuer], &tools(&upstream), limit, "  trusted_proxies: [127.0.0.1/32]\n").await;
    assert_eq!(trusted.post_raw(None, "{}", &[("x-forwarded-for", "198.51.100.1")]).await.status, 401);
    assert_eq!(trusted.post_raw(None, "{}", &[("x-forwarded-for", "198.51.100.2")]).await.status, 401);
    assert_eq!(trusted.post_raw(None, "{}", &[("x-forwarded-for", "198.51.100.1")]).await.status, 429);
}
