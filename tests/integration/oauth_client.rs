//! A shared OAuth connection (client-credentials grant) against a local fake provider that
//! speaks the real protocol: token caching, single-flight refresh, retries, refusal, and one
//! forced refresh and replay on an upstream 401.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::common::{TestGateway, TestIssuer, gateway, listen, serve};

#[derive(Default)]
struct Provider {
    token_requests: AtomicUsize,
    fail_next: AtomicUsize,
    refuse: AtomicBool,
    expires_in: AtomicU64,
    /// The API accepts tokens numbered at least this.
    min_valid: AtomicUsize,
    api_calls: AtomicUsize,
}

async fn token(State(p): State<Arc<Provider>>, headers: HeaderMap, body: String) -> Response {
    let n = p.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    // Let concurrent callers pile up, so single flight is really exercised.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if p.fail_next.load(Ordering::SeqCst) > 0 {
        p.fail_next.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let basic = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "warden:client-s3cret"));
    let authenticated = headers.get("authorization").is_some_and(|v| v == basic.as_str());
    if p.refuse.load(Ordering::SeqCst) || !authenticated {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    if !body.contains("grant_type=client_credentials") || !body.contains("scope=reports%3Aread") {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request"}))).into_response();
    }
    axum::Json(json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": p.expires_in.load(Ordering::SeqCst)}))
        .into_response()
}

async fn api(State(p): State<Arc<Provider>>, headers: HeaderMap) -> Response {
    p.api_calls.fetch_add(1, Ordering::SeqCst);
    let n: usize = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer tok-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if n == 0 || n < p.min_valid.load(Ordering::SeqCst) {
        return (StatusCode::UNAUTHORIZED, "token rejected").into_response();
    }
    axum::Json(json!({"token_used": n})).into_response()
}

async fn setup(expires_in: u64) -> (Arc<Provider>, TestGateway, String) {
    let provider = Arc::new(Provider { expires_in: AtomicU64::new(expires_in), ..Provider::default() });
    let (listener, url) = listen().await;
    serve(listener, axum::Router::new().route("/token", post(token)).route("/api/data", get(api)).with_state(Arc::clone(&provider)));
    let issuer = TestIssuer::start().await;
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\ncredentials:\n  - name: reports\n    placement: bearer\n    oauth:\n      grant: client_credentials\n      token_url: {url}/token\n      client_id: warden\n      client_secret: client-s3cret\n      scopes: [\"reports:read\"]\n      refresh_before: 1s"
    );
    let tools = format!("  - {{name: report, description: d, credential: reports, http: {{url: \"{url}/api/data\"}}}}\n");
    let gw = gateway(&issuer, &tools, &extra).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    (provider, gw, token)
}

fn requests(p: &Provider) -> usize {
    p.token_requests.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_fresh_token_is_reused() {
    let (p, gw, token) = setup(3600).await;
    for _ in 0..5 {
        let r = gw.call(&token, "report", json!({})).await;
        assert_eq!(r.result()["structuredContent"]["token_used"], 1, "{:?}", r.body);
    }
    assert_eq!(requests(&p), 1);
}

#[tokio::test]
async fn concurrent_calls_share_one_token_request() {
    let (p, gw, token) = setup(3600).await;
    let calls = (0..10).map(|_| gw.call(&token, "report", json!({})));
    let replies = futures::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.result()["isError"] == false));
    assert_eq!(requests(&p), 1, "10 concurrent calls made {} token requests", requests(&p));
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_once_for_concurrent_calls() {
    // Expires in 2 s, renewed 1 s ahead: after 1.2 s it is due.
    let (p, gw, token) = setup(2).await;
    assert_eq!(gw.call(&token, "report", json!({})).await.result()["isError"], false);
    gw.clock.advance(Duration::from_millis(1200));
    let replies = futures::future::join_all((0..10).map(|_| gw.call(&token, "report", json!({})))).await;
    assert!(
        replies.iter().all(|r| r.result()["structuredContent"]["token_used"] == 2),
        "{:?}",
        replies.iter().map(|r| r.body.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(requests(&p), 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (p, gw, token) = setup(3600).await;
    p.fail_next.store(2, Ordering::SeqCst);
    let r = gw.call(&token, "report", json!({})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    assert_eq!(requests(&p), 3, "two 503s, then a token");
}

#[tokio::test]
async fn a_refused_client_is_reported_not_retried() {
    let (p, gw, token) = setup(3600).await;
    p.refuse.store(true, Ordering::SeqCst);
    let r = gw.call(&token, "report", json!({})).await;
    assert_eq!(r.result()["isError"], true);
    let text = r.result()["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.contains("could not obtain its credential") && !text.contains("client-s3cret"), "{text}");
    assert_eq!(requests(&p), 1, "a 4xx is final");
    assert_eq!(p.api_calls.load(Ordering::SeqCst), 0, "the backend was called without a credential");
    assert_eq!(gw.audit().pop().unwrap()["reason"], "upstream_credential_refused");
}

#[tokio::test]
async fn an_upstream_401_forces_one_refresh_and_one_replay() {
    let (p, gw, token) = setup(3600).await;
    assert_eq!(gw.call(&token, "report", json!({})).await.result()["structuredContent"]["token_used"], 1);
    // The provider revokes token 1: the backend rejects it, Warden refreshes once and replays.
    p.min_valid.store(2, Ordering::SeqCst);
    let r = gw.call(&token, "report", json!({})).await;
    assert_eq!(r.result()["structuredContent"]["token_used"], 2, "{:?}", r.body);
    assert_eq!(requests(&p), 2);
    // A backend that rejects every token: one refresh, one replay, then the 401 is reported.
    p.min_valid.store(1000, Ordering::SeqCst);
    let before = (requests(&p), p.api_calls.load(Ordering::SeqCst));
    let r = gw.call(&token, "report", json!({})).await;
    assert_eq!(r.result()["isError"], true);
    assert!(r.result()["content"][0]["text"].as_str().unwrap().contains("401"));
    assert_eq!((requests(&p) - before.0, p.api_calls.load(Ordering::SeqCst) - before.1), (1, 2), "exactly one refresh and one replay");
}
