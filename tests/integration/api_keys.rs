//! Gateway-issued API keys end to end: issued through the admin API and the CLI (shown once),
//! used against `/mcp` like a JWT (same policy, identity headers, audit with the key's id, never
//! the key), limited by `max_scopes`, `max_lifetime` and the key's tool list, revoked at once on
//! the replica that revoked and within `cache_ttl` on another sharing the database, expired on
//! time, and refused when keys are off. The database holds no key.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::provider::keyring;
use crate::common::{Db, TestGateway, TestIssuer, Upstream, gateway};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

fn tools(upstream: &Upstream) -> String {
    format!(
        "  - {{name: search, description: d, scopes: [tools:read], http: {{method: POST, url: \"{u}/search\"}}}}\n  - {{name: delete_all, description: d, scopes: [tools:write], http: {{method: POST, url: \"{u}/delete\"}}}}\n  - {{name: other, description: d, http: {{method: POST, url: \"{u}/other\"}}}}\n",
        u = upstream.url
    )
}

fn extra(db: &Db, keys: &str) -> String {
    format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\nvault:\n  database: \"{db}\"\n  keys: \"{keys}\"\nadmin:\n  token: {ADMIN}\napi_keys:\n  enabled: true\n  hash_key: api-key-hash-key-0123456789abcdef0123\n  max_scopes: [tools:read, tools:write]\n  max_lifetime: 90d\n  cache_ttl: 10s\n",
        db = db.url
    )
}

async fn admin(gw: &TestGateway, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut r = gw.http.request(method, format!("{}{path}", gw.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn create(gw: &TestGateway, body: Value) -> (u16, Value) {
    admin(gw, reqwest::Method::POST, "/admin/v1/api-keys", Some(ADMIN), Some(body)).await
}

fn reasons(gw: &TestGateway) -> Vec<String> {
    gw.audit().iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_shown_once_acts_like_a_token_within_its_limits_and_is_revoked() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let gw = gateway(&issuer, &tools(&upstream), &extra(&db, &keyring())).await;

    // Only the admin credential issues keys; a key cannot issue keys.
    let request = json!({"name": "ci-nightly", "subject": "ci-bot", "tenant": "acme", "scopes": ["tools:read"], "roles": ["automation"], "tools": ["search", "other"], "expires_in": "30d"});
    assert_eq!(admin(&gw, reqwest::Method::POST, "/admin/v1/api-keys", None, Some(request.clone())).await.0, 401);
    let (status, issued) = create(&gw, request).await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["key"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("wdn_live_") && key.len() > 40, "{key}");
    assert!(id.starts_with("key_"), "{id}");
    assert!(key.starts_with(issued["prefix"].as_str().unwrap()) && issued["prefix"].as_str().unwrap().len() < key.len() - 20);
    assert_eq!(
        admin(&gw, reqwest::Method::POST, "/admin/v1/api-keys", Some(&key), Some(json!({"name": "x", "subject": "y"}))).await.0,
        401
    );

    // Used like a token: what it may see, what reaches the backend.
    let mut names = gw.tool_names(&key).await;
    names.sort();
    assert_eq!(names, ["other", "search"], "delete_all needs a scope the key lacks, and is not in its tool list");
    let ok = gw.call(&key, "search", json!({"q": "x"})).await;
    assert_eq!(ok.result()["isError"], false, "{ok:?}");
    let sent = upstream.last();
    assert_eq!(sent.headers["x-user-id"], "ci-bot");
    assert_eq!(sent.headers["x-tenant-id"], "acme");
    assert_eq!(sent.headers["x-user-roles"], "automation");
    assert_eq!(sent.headers["x-client-id"], id.as_str(), "the key's id is the client");
    assert!(sent.headers.get("authorization").is_none(), "the key never goes upstream");
    assert!(!sent.headers.iter().any(|(_, v)| v.to_str().unwrap_or_default().contains(&key)));

    // The key's tool list is a ceiling no policy widens.
    // (Checked before scopes: a key cannot step up, so it is not asked to.)
    let refused = gw.call(&key, "delete_all", json!({})).await;
    assert_eq!(refused.error_code(), Some(-32003), "{refused:?}");
    assert_eq!(refused.body["error"]["data"]["rule"], "api-key:tools");
    let bob = issuer.sign(&issuer.claims("bob", "tools:read tools:write", &gw.mcp));
    assert_eq!(gw.call(&bob, "delete_all", json!({})).await.result()["isError"], false, "a token with the scope may");

    // max_scopes and max_lifetime bound what can be issued.
    let (status, body) = create(&gw, json!({"name": "n", "subject": "s", "scopes": ["admin:all"]})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("scope_not_allowed")), "{body}");
    let (status, body) = create(&gw, json!({"name": "n", "subject": "s", "expires_in": "400d"})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("expires_in"), "{body}");
    let (status, _) = create(&gw, json!({"name": "n", "subject": "s", "bogus": 1})).await;
    assert_eq!(status, 400, "unknown fields are refused");

    // Listing never shows a key; the last use is recorded.
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = admin(&gw, reqwest::Method::GET, "/admin/v1/api-keys", Some(ADMIN), None).await.1;
        if listed["api_keys"][0]["last_used_at"].is_number() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = &listed["api_keys"][0];
    assert_eq!(
        (row["id"].as_str(), row["name"].as_str(), row["subject"].as_str()),
        (Some(id.as_str()), Some("ci-nightly"), Some("ci-bot"))
    );
    assert!(row["last_used_at"].is_number(), "{listed}");
    assert!(row.get("key").is_none() && !listed.to_string().contains(&key[12..]), "{listed}");

    // Revoked: refused at once on this replica, with the reason audited.
    let (status, body) = admin(&gw, reqwest::Method::DELETE, &format!("/admin/v1/api-keys/{id}"), Some(ADMIN), None).await;
    assert_eq!((status, body["revoked"].as_bool()), (200, Some(true)), "{body}");
    let after = gw.rpc(&key, "tools/list", json!({})).await;
    assert_eq!(after.status, 401);
    assert!(after.challenge().contains("invalid_token"), "{}", after.challenge());
    assert_eq!(admin(&gw, reqwest::Method::DELETE, "/admin/v1/api-keys/key_nope", Some(ADMIN), None).await.0, 404);
    assert_eq!(gw.rpc("wdn_live_NotAKeyAtAll0123456789abcdefghijklmn", "tools/list", json!({})).await.status, 401);

    let events = gw.audit();
    let used: Vec<&Value> = events.iter().filter(|e| e["client_id"] == id.as_str()).collect();
    assert!(used.iter().any(|e| e["method"] == "tools/call" && e["tool"] == "search" && e["decision"] == "allow"));
    let ceiling = events.iter().find(|e| e["tool"] == "delete_all" && e["subject"] == "ci-bot").expect("the refusal is audited");
    assert_eq!(ceiling["decision"], "deny", "{ceiling}");
    let reasons = reasons(&gw);
    for reason in ["api_key_created", "api_key_revoked", "api_key_unknown", "scope_not_allowed"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason} missing from {reasons:?}");
    }
    assert!(events.iter().any(|e| e["method"] == "admin/api_keys.create" && e["subject"] == "admin"));
    assert!(!gw.audit_text().contains(&key[9..]), "the audit trail never holds the key");
    assert!(!db.dump().contains(&key[9..]), "the database never holds the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_keys() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let gw = gateway(&issuer, &tools(&upstream), &extra(&db, &keyring())).await;
    let cli = |args: &[&str]| {
        let url = gw.url.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
                    .arg("api-keys")
                    .args(&args)
                    .args(["--gateway", &url])
                    .env("WARDEN_ADMIN_TOKEN", ADMIN)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let made = cli(&["create", "--name", "cron", "--subject", "cron-agent", "--scope", "tools:read", "--test", "--expires-in", "1h"]).await;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("wdn_test_"), "only the key on stdout: {key}");
    assert_eq!(gw.call(&key, "search", json!({})).await.result()["isError"], false);

    let listed = cli(&["list"]).await;
    let out = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(out.contains("cron") && out.contains("cron-agent") && out.contains("1 key(s)"), "{out}");
    assert!(!out.contains(&key), "{out}");
    let id = out.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let revoked = cli(&["revoke", &id]).await;
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert_eq!(gw.rpc(&key, "tools/list", json!({})).await.status, 401);
    assert!(String::from_utf8_lossy(&cli(&["list"]).await.stdout).contains("0 key(s)"));
    assert!(String::from_utf8_lossy(&cli(&["list", "--all"]).await.stdout).contains("revoked"));
}

#[tokio::test]
async fn a_revocation_reaches_another_replica_within_the_cache_lifetime_and_keys_expire() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let (db, keys) = (Db::sqlite(), keyring());
    let a = gateway(&issuer, &tools(&upstream), &extra(&db, &keys)).await;
    let b = gateway(&issuer, &tools(&upstream), &extra(&db, &keys)).await;
    let key = create(&a, json!({"name": "k", "subject": "svc", "scopes": ["tools:read"]})).await.1;
    let (id, key) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    assert_eq!(b.rpc(&key, "tools/list", json!({})).await.status, 200, "a key from one replica works on another");

    admin(&a, reqwest::Method::DELETE, &format!("/admin/v1/api-keys/{id}"), Some(ADMIN), None).await;
    assert_eq!(a.rpc(&key, "tools/list", json!({})).await.status, 401, "at once where it was revoked");
    b.clock.advance(Duration::from_secs(11));
    let refused = b.rpc(&key, "tools/list", json!({})).await;
    assert_eq!(refused.status, 401, "past cache_ttl on the other replica");
    assert!(reasons(&b).iter().any(|r| r == "api_key_revoked"), "{:?}", reasons(&b));

    // Expiry holds to the second, cached or not.
    let short = create(&a, json!({"name": "short", "subject": "svc", "expires_in": "1h"})).await.1;
    let short = short["key"].as_str().unwrap().to_owned();
    assert_eq!(a.rpc(&short, "tools/list", json!({})).await.status, 200);
    a.clock.advance(Duration::from_secs(3601));
    assert_eq!(a.rpc(&short, "tools/list", json!({})).await.status, 401);
    assert!(reasons(&a).iter().any(|r| r == "api_key_expired"), "{:?}", reasons(&a));
}

#[tokio::test]
async fn keys_are_refused_where_they_are_not_enabled() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let on = gateway(&issuer, &tools(&upstream), &extra(&db, &keyring())).await;
    let key = create(&on, json!({"name": "k", "subject": "svc"})).await.1["key"].as_str().unwrap().to_owned();
    let off = gateway(&issuer, &tools(&upstream), "upstream:\n  allow_cidrs: [127.0.0.1/32]\n").await;
    let refused = off.rpc(&key, "tools/list", json!({})).await;
    assert_eq!(refused.status, 401);
    assert_eq!(reasons(&off), ["api_keys_disabled"]);
    let (status, body) = admin(&on, reqwest::Method::GET, "/admin/v1/api-keys", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
}
