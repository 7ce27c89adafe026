//! The token matrix: every rejection is a 401 with the exact challenge, and nothing reaches
//! the backend.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::{TestGateway, TestIssuer, Upstream, gateway, now};

const TOOLS: &str = "  - name: echo\n    description: Echo.\n    scopes: [files:read]\n    http:\n      url: UPSTREAM/echo\n";

async fn setup() -> (TestIssuer, Upstream, TestGateway) {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&issuer, &TOOLS.replace("UPSTREAM", &upstream.url), "upstream:\n  allow_cidrs: [127.0.0.1/32]").await;
    (issuer, upstream, gw)
}

fn invalid_token_challenge(gw: &TestGateway) -> String {
    format!("Bearer error=\"invalid_token\", resource_metadata=\"{}\", scope=\"files:read\"", gw.metadata_url())
}

async fn assert_rejected(gw: &TestGateway, token: &str, reason: &str) {
    let r = gw.call(token, "echo", json!({})).await;
    assert_eq!(r.status, 401, "{reason}: {:?}", r.body);
    assert_eq!(r.challenge(), invalid_token_challenge(gw), "{reason}");
    // The body names a stable code only, never which check failed.
    assert_eq!(r.body, json!({"error": "invalid_token", "error_description": "the access token is invalid"}), "{reason}");
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn valid_token_reaches_the_tool() {
    let (issuer, upstream, gw) = setup().await;
    let token = issuer.sign(&issuer.claims("alice", "files:read", &gw.mcp));
    let r = gw.call(&token, "echo", json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.result()["isError"], false);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn token_matrix_is_rejected_with_invalid_token() {
    let (issuer, upstream, gw) = setup().await;
    let good = issuer.claims("alice", "files:read", &gw.mcp);
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired beyond skew", issuer.sign(&with(json!({"exp": now() - 120})))),
        ("nbf in the future", issuer.sign(&with(json!({"nbf": now() + 300})))),
        ("wrong iss", issuer.sign(&with(json!({"iss": "https://evil.example"})))),
        ("wrong aud", issuer.sign(&with(json!({"aud": "https://other.example/mcp"})))),
        ("aud array without ours", issuer.sign(&with(json!({"aud": ["https://a.example", "https://b.example"]})))),
        ("no sub", issuer.sign(&with(json!({"sub": null})))),
        ("empty sub", issuer.sign(&with(json!({"sub": ""})))),
        ("no exp", issuer.sign(&with(json!({"exp": null})))),
        ("no aud", issuer.sign(&with(json!({"aud": null})))),
        ("garbage", "not-a-token".to_owned()),
        ("empty segments", "..".to_owned()),
        ("JWE", format!("{}.a.b.c.d", b64(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"})))),
        ("typ of an ID token profile", {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(issuer.signing.load().kid.clone());
            h.typ = Some("id_token+jwt".into());
            issuer.signing.load().sign_with_header(&h, &good).unwrap()
        }),
    ];
    for (reason, token) in &cases {
        assert_rejected(&gw, token, reason).await;
    }
    assert!(upstream.requests().is_empty(), "a rejected token reached the backend");
}

#[tokio::test]
async fn skew_is_bounded_and_honoured() {
    let (issuer, _upstream, gw) = setup().await;
    let mut c = issuer.claims("alice", "files:read", &gw.mcp);
    c["exp"] = json!(now() - 30); // within the default 60 s skew
    let r = gw.call(&issuer.sign(&c), "echo", json!({})).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn audience_array_containing_ours_is_accepted() {
    let (issuer, _upstream, gw) = setup().await;
    let mut c = issuer.claims("alice", "files:read", &gw.mcp);
    c["aud"] = json!(["https://other.example", gw.mcp]);
    assert_eq!(gw.call(&issuer.sign(&c), "echo", json!({})).await.status, 200);
}

#[tokio::test]
async fn alg_none_and_hmac_confusion_are_rejected() {
    let (issuer, upstream, gw) = setup().await;
    let claims = issuer.claims("alice", "files:read", &gw.mcp);
    let kid = issuer.signing.load().kid.clone();
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})), b64(&claims));
    assert_rejected(&gw, &none, "alg none").await;
    let none_no_sig = format!("{}.{}", b64(&json!({"alg": "none"})), b64(&claims));
    assert_rejected(&gw, &none_no_sig, "alg none without signature part").await;

    // HS256 keyed with the public key, in the two forms an attacker would try.
    let jwk = serde_json::to_string(issuer.signing.load().jwk()).unwrap();
    let jwk_value: Value = serde_json::from_str(&jwk).unwrap();
    let modulus = URL_SAFE_NO_PAD.decode(jwk_value["n"].as_str().unwrap()).unwrap();
    for secret in [jwk.as_bytes().to_vec(), modulus] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_rejected(&gw, &token, "HS256 with the public key as secret").await;
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn unknown_kid_then_rotation_is_picked_up() {
    let (issuer, _upstream, gw) = setup().await;
    let claims = issuer.claims("alice", "files:read", &gw.mcp);
    // Warm the cache with the current key.
    assert_eq!(gw.call(&issuer.sign(&claims), "echo", json!({})).await.status, 200);
    let (token, key) = issuer.sign_unpublished(&claims);
    assert_rejected(&gw, &token, "unknown kid").await;
    issuer.publish(key);
    // Refetches for unknown kids are debounced (1 s in this config).
    gw.clock.advance(Duration::from_millis(1100));
    assert_eq!(gw.call(&token, "echo", json!({})).await.status, 200, "rotated key not picked up");
}

#[tokio::test]
async fn rotation_retires_old_keys() {
    let (issuer, _upstream, gw) = setup().await;
    let claims = issuer.claims("alice", "files:read", &gw.mcp);
    let old = issuer.sign(&claims);
    assert_eq!(gw.call(&old, "echo", json!({})).await.status, 200);
    issuer.rotate(false);
    let new = issuer.sign(&claims);
    gw.clock.advance(Duration::from_millis(1100));
    assert_eq!(gw.call(&new, "echo", json!({})).await.status, 200);
    // The old key is still cached as part of the old set until a refetch replaced it: the new
    // set (fetched for the new kid) no longer has it.
    assert_rejected(&gw, &old, "retired key").await;
}

#[tokio::test]
async fn unknown_kid_storm_fetches_once() {
    let (issuer, _upstream, gw) = setup().await;
    let claims = issuer.claims("alice", "files:read", &gw.mcp);
    let before = issuer.jwks_hits.load(Ordering::SeqCst);
    let tokens: Vec<String> = (0..20).map(|_| issuer.sign_unpublished(&claims).0).collect();
    let calls = tokens.iter().map(|t| gw.call(t, "echo", json!({})));
    let replies = futures::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.status == 401));
    let fetched = issuer.jwks_hits.load(Ordering::SeqCst) - before;
    assert_eq!(fetched, 1, "20 unknown kids within the debounce window caused {fetched} JWKS fetches");
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&issuer, &TOOLS.replace("UPSTREAM", &upstream.url), "upstream:\n  allow_cidrs: [127.0.0.1/32]").await;
    // Each call presents a new token (its own jti), so each is verified against the key set
    // rather than answered from the verified-token cache.
    let fresh = |n: u32| {
        let mut c = issuer.claims("alice", "files:read", &gw.mcp);
        c["jti"] = json!(format!("t{n}"));
        issuer.sign(&c)
    };
    assert_eq!(gw.call(&fresh(0), "echo", json!({})).await.status, 200);
    issuer.down.store(true, Ordering::SeqCst);
    let hits = issuer.jwks_hits.load(Ordering::SeqCst);
    // Past the 1 s TTL of this config, a refresh is attempted and fails; the cached key serves.
    gw.clock.advance(Duration::from_millis(1200));
    for n in 1..4 {
        assert_eq!(gw.call(&fresh(n), "echo", json!({})).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(issuer.jwks_hits.load(Ordering::SeqCst) > hits, "no refresh was attempted after the TTL");
}

#[tokio::test]
async fn missing_token_gets_a_challenge_without_error() {
    let (_issuer, _upstream, gw) = setup().await;
    let expected = format!("Bearer resource_metadata=\"{}\", scope=\"files:read\"", gw.metadata_url());
    let r = gw.post_raw(None, json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.challenge(), expected);
    // Another scheme is not a bearer token: same as none.
    let r = gw.post_raw(None, "{}", &[("authorization", "Basic YTpi")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.challenge(), expected);
}

#[tokio::test]
async fn rejections_are_audited_without_the_token() {
    let (issuer, _upstream, gw) = setup().await;
    let mut c = issuer.claims("alice", "files:read", &gw.mcp);
    c["exp"] = json!(now() - 600);
    let token = issuer.sign(&c);
    assert_rejected(&gw, &token, "expired").await;
    let events = gw.audit();
    let e = events.last().unwrap();
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["reason"], "token_expired");
    assert_eq!(e["status"], 401);
    assert!(e["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let text = gw.audit_text();
    assert!(!text.contains(&token[..40]), "the audit log contains the token");
}

#[tokio::test]
async fn several_issuers_are_trusted_each_with_its_own_keys() {
    let (a, b) = (TestIssuer::start().await, TestIssuer::start().await);
    let upstream = Upstream::start().await;
    let gw =
        crate::common::gateway_with(&[&a, &b], &TOOLS.replace("UPSTREAM", &upstream.url), "upstream:\n  allow_cidrs: [127.0.0.1/32]", "")
            .await;
    for issuer in [&a, &b] {
        let r = gw.call(&issuer.sign(&issuer.claims("alice", "files:read", &gw.mcp)), "echo", json!({})).await;
        assert_eq!(r.status, 200, "{}", issuer.url);
    }
    let doc: Value = gw.http.get(gw.metadata_url()).send().await.unwrap().json().await.unwrap();
    let mut expected = vec![a.url.clone(), b.url.clone()];
    expected.sort();
    assert_eq!(doc["authorization_servers"], json!(expected));
    // A token naming issuer A but signed with issuer B's key: A's keys do not verify it.
    let forged = b.sign(&a.claims("alice", "files:read", &gw.mcp));
    assert_rejected(&gw, &forged, "cross-issuer key").await;
}
