//! OAuth connections in the vault, end to end: the real gateway, a real SQLite file (and
//! PostgreSQL when scripts/test provides one), and a local provider that speaks OAuth over HTTP
//! (tests/common/provider.rs). A test "browser" follows the redirects by hand, carrying cookies.
//!
//! Covered: URL elicitation then success, per-user isolation, the connect flow's single-use
//! link, state, browser binding and provider errors, refresh (none while fresh, one for 10
//! concurrent calls, across two gateways sharing the database, rotation persisted, 5xx retried,
//! invalid_grant and malformed answers marking the connection unhealthy once, one forced refresh
//! and replay on a 401, 403/429/5xx passed through), the admin API and CLI, discovery, encryption
//! at rest and key rotation under load.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::provider::{ConnectionOptions, FakeProvider, connection_config, keyring, sign_in, visit};
use crate::common::{Db, Reply, TestGateway, TestIssuer, gateway};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

struct Options<'a> {
    mode: &'a str,
    name: String,
    keys: String,
    /// Replaces the provider URLs with `issuer:` discovery.
    discover: bool,
    /// `vault.token_cache`: `0s` for tests that change the database behind the gateway's back.
    cache: &'a str,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

async fn start(issuer: &TestIssuer, provider: &FakeProvider, db: &Db, o: &Options<'_>) -> TestGateway {
    let options = ConnectionOptions {
        database: &db.url,
        keys: &o.keys,
        name: &o.name,
        mode: o.mode,
        discover: o.discover,
        admin_token: ADMIN,
        token_cache: o.cache,
    };
    let (tools, extra) = connection_config(&provider.url, &options);
    gateway(issuer, &tools, &extra).await
}

/// A provider, an issuer, a vault database and a gateway using them.
struct Scene {
    issuer: TestIssuer,
    provider: FakeProvider,
    db: Db,
    gw: TestGateway,
}

impl Scene {
    async fn new(db: Db, options: &Options<'_>) -> Self {
        let issuer = TestIssuer::start().await;
        let provider = FakeProvider::start(3600).await;
        let gw = start(&issuer, &provider, &db, options).await;
        Self { issuer, provider, db, gw }
    }

    /// A per-user connection without the token cache, on a fresh key ring.
    async fn per_user(db: Db) -> Self {
        Self::new(db, &per_user(&keyring())).await
    }

    /// Another gateway (a replica) on the same provider, issuer and database.
    async fn replica(&self, options: &Options<'_>) -> TestGateway {
        start(&self.issuer, &self.provider, &self.db, options).await
    }
}

fn per_user(keys: &str) -> Options<'static> {
    Options { mode: "per_user", name: "gh".into(), keys: keys.into(), discover: false, cache: "0s" }
}

/// The link a call asked the caller to open: from a URL elicitation (-32042) or from the
/// `isError` text.
fn link_of(reply: &Reply) -> String {
    if reply.error_code() == Some(-32042) {
        let e = &reply.body["error"]["data"]["elicitations"][0];
        assert_eq!(e["mode"], "url");
        assert!(e["elicitationId"].as_str().is_some_and(|s| !s.is_empty()));
        return e["url"].as_str().unwrap().to_owned();
    }
    let text = reply.result()["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no link in {:?}", reply.body));
    text.split_whitespace().find(|w| w.contains("/oauth/connect/")).unwrap().trim_end_matches(['.', ')']).to_owned()
}

/// The whole flow: link → provider → callback.
async fn connect(link: &str, account: &str) {
    let (callback, cookie) = sign_in(link, account, false).await;
    let (status, body) = visit(&callback, Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("connected"), "{body}");
}

fn account_of(reply: &Reply) -> String {
    assert_eq!(reply.result()["isError"], false, "{:?}", reply.body);
    reply.result()["structuredContent"]["account"].as_str().unwrap().to_owned()
}

fn tool_error(reply: &Reply) -> String {
    assert_eq!(reply.result()["isError"], true, "{:?}", reply.body);
    reply.result()["content"][0]["text"].as_str().unwrap().to_owned()
}

fn reasons(gw: &TestGateway, method: &str) -> Vec<String> {
    gw.audit().iter().filter(|e| e["method"] == method).map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Connects `sub` as provider `account`; returns their token.
async fn connected(issuer: &TestIssuer, gw: &TestGateway, sub: &str, account: &str) -> String {
    let token = issuer.sign(&issuer.claims(sub, "", &gw.mcp));
    let first = gw.call(&token, "me", json!({})).await;
    connect(&link_of(&first), account).await;
    assert_eq!(account_of(&gw.call(&token, "me", json!({})).await), account);
    token
}

async fn elicitation_isolation_and_encryption(db: Db) {
    let Scene { issuer, provider, db, gw } = Scene::per_user(db).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));

    // Not connected: a URL elicitation (2025-11-25) with a link, and the backend is not called.
    let first = gw.call(&alice, "me", json!({})).await;
    assert_eq!(first.error_code(), Some(-32042), "{:?}", first.body);
    assert!(first.body["error"]["message"].as_str().unwrap().contains("/oauth/connect/"), "the message carries the link too");
    let link = link_of(&first);
    assert!(link.starts_with(&format!("{}/oauth/connect/", gw.url)));
    assert_eq!(provider.state.api_calls.load(Ordering::SeqCst), 0);
    assert_eq!(reasons(&gw, "tools/call"), ["connection_required"]);

    // After the flow, the same call succeeds with alice's account.
    connect(&link, "gh-alice").await;
    assert_eq!(account_of(&gw.call(&alice, "me", json!({})).await), "gh-alice");

    // Bob is never given alice's token: he is asked to connect his own. A client of the
    // 2025-06-18 revision (no URL elicitation) gets the link as readable isError text.
    let old = gw
        .post_raw(
            Some(&bob),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "me", "arguments": {}}}).to_string(),
            &[("mcp-protocol-version", "2025-06-18")],
        )
        .await;
    assert_eq!(old.error_code(), None);
    let text = tool_error(&old);
    assert!(text.contains("Connect your") && text.contains("/oauth/connect/"), "{text}");
    connect(&link_of(&old), "gh-bob").await;
    assert_eq!(account_of(&gw.call(&bob, "me", json!({})).await), "gh-bob");
    assert_eq!(account_of(&gw.call(&alice, "me", json!({})).await), "gh-alice");

    // A client that declares its capabilities per request (2026-07-28 `_meta`) without URL
    // elicitation gets the text form too.
    let carol = issuer.sign(&issuer.claims("carol", "", &gw.mcp));
    let meta = json!({"io.modelcontextprotocol/clientCapabilities": {}});
    let no_url = gw
        .post_raw(
            Some(&carol),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "me", "arguments": {}, "_meta": meta}})
                .to_string(),
            &[],
        )
        .await;
    assert!(tool_error(&no_url).contains("/oauth/connect/"));

    // At rest: no token the provider issued is in the database, only envelopes.
    let dump = db.dump();
    let secrets = provider.issued_secrets();
    assert!(secrets.len() >= 4);
    for s in &secrets {
        assert!(!dump.contains(s.as_str()), "plaintext token {s} in the database");
    }
    assert!(dump.contains("\"kid\":\"k1\""), "envelopes are stored");
    // Audit: never a token.
    let audit = gw.audit_text();
    assert!(!secrets.iter().any(|s| audit.contains(s.as_str())));
    assert!(reasons(&gw, "oauth/callback").iter().filter(|r| *r == "connection_created").count() == 2);
}

#[tokio::test]
async fn per_user_elicitation_then_success_isolation_and_encryption_sqlite() {
    elicitation_isolation_and_encryption(Db::sqlite()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one and sets WARDEN_POSTGRES_URL"]
async fn postgres_per_user_elicitation_then_success_isolation_and_encryption() {
    elicitation_isolation_and_encryption(Db::postgres().await).await;
}

#[tokio::test]
async fn connect_flow_links_states_and_browsers_are_single_use_and_bound() {
    let Scene { issuer, provider, db: _db, gw } = Scene::per_user(Db::sqlite()).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));

    // A link works once.
    let link = link_of(&gw.call(&alice, "me", json!({})).await);
    let (callback, cookie) = sign_in(&link, "gh-alice", false).await;
    let (status, body) = visit(&link, None).await;
    assert_eq!(status, 400, "a used link: {body}");
    assert!(body.contains("connect_link_invalid"));
    let (status, _) = visit(&format!("{}/oauth/connect/not-a-link", gw.url), None).await;
    assert_eq!(status, 400);

    // The callback from another browser (no binding cookie) is refused and stores nothing; the
    // state is spent.
    let (status, body) = visit(&callback, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("oauth_browser_mismatch"));
    let (status, _) = visit(&callback, Some(&cookie)).await;
    assert_eq!(status, 400, "the state was spent by the refused attempt");
    assert_eq!(gw.call(&alice, "me", json!({})).await.error_code(), Some(-32042), "nothing was stored");

    // A completed callback cannot be replayed; an unknown state is refused.
    let link = link_of(&gw.call(&alice, "me", json!({})).await);
    let (callback, cookie) = sign_in(&link, "gh-alice", false).await;
    assert_eq!(visit(&callback, Some(&cookie)).await.0, 200);
    let (status, body) = visit(&callback, Some(&cookie)).await;
    assert_eq!(status, 400);
    assert!(body.contains("oauth_state_invalid"));
    assert_eq!(visit(&format!("{}/oauth/callback?code=x&state=forged", gw.url), Some(&cookie)).await.0, 400);
    assert_eq!(visit(&format!("{}/oauth/callback?code=x", gw.url), None).await.0, 400);
    assert_eq!(provider.state.code_requests.load(Ordering::SeqCst), 1, "only the valid callback reached the token endpoint");
    assert_eq!(account_of(&gw.call(&alice, "me", json!({})).await), "gh-alice");

    // The redirect URI Warden registered with the provider.
    assert_eq!(provider.state.redirect_uri.lock().unwrap().clone(), Some(format!("{}/oauth/callback", gw.url)));

    // The callback page escapes what it shows: a provider error code is reduced to a safe token.
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));
    let link = link_of(&gw.call(&bob, "me", json!({})).await);
    let (callback, cookie) = sign_in(&link, "gh-bob", true).await;
    let (status, body) = visit(&format!("{callback}&x=<script>"), Some(&cookie)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("access_denied") && !body.contains("<script>"));
    assert_eq!(gw.call(&bob, "me", json!({})).await.error_code(), Some(-32042), "a provider error stores nothing");
    let audit = gw.audit();
    let denied = audit.iter().find(|e| e["reason"] == "oauth_provider_error").expect("provider error audited");
    assert_eq!(denied["subject"], "bob");
    assert_eq!(denied["credential"], "gh");
    assert!(denied["explanation"].as_str().unwrap().contains("access_denied"));
}

#[tokio::test]
async fn link_older_than_ten_minutes_is_refused() {
    let Scene { issuer, provider: _provider, db: _db, gw } = Scene::per_user(Db::sqlite()).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let link = link_of(&gw.call(&alice, "me", json!({})).await);
    // Ten minutes and a second pass (the gateway's clock; the rows are stamped by it too).
    gw.clock.advance(Duration::from_secs(601));
    assert_eq!(visit(&link, None).await.0, 400);
    // And a state older than ten minutes.
    let link = link_of(&gw.call(&alice, "me", json!({})).await);
    let (callback, cookie) = sign_in(&link, "gh-alice", false).await;
    gw.clock.advance(Duration::from_secs(601));
    let (status, body) = visit(&callback, Some(&cookie)).await;
    assert_eq!(status, 400);
    assert!(body.contains("oauth_state_expired"));
}

/// Makes the stored token expire within the refresh window.
async fn age_tokens(db: &Db) {
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE connections SET expires_at = $1")
        .bind(i64::try_from(warden::unix_now()).unwrap() + 10)
        .execute(&pool)
        .await
        .unwrap();
}

async fn refresh_matrix(db: Db) {
    sqlx::any::install_default_drivers();
    let Scene { issuer, provider, db, gw } = Scene::per_user(db).await;
    let alice = connected(&issuer, &gw, "alice", "gh-alice").await;

    // Fresh: no refresh.
    for _ in 0..5 {
        account_of(&gw.call(&alice, "me", json!({})).await);
    }
    assert_eq!(provider.refreshes(), 0);

    // Expiring: ten concurrent calls, one refresh.
    age_tokens(&db).await;
    let calls = (0..10).map(|_| gw.call(&alice, "me", json!({})));
    for reply in futures::future::join_all(calls).await {
        assert_eq!(account_of(&reply), "gh-alice");
    }
    assert_eq!(provider.refreshes(), 1);
    assert_eq!(reasons(&gw, "credential/refresh"), ["credential_refreshed"]);

    // Rotation persisted: the provider accepts each refresh token once, so a second refresh only
    // succeeds with the rotated one Warden stored.
    age_tokens(&db).await;
    account_of(&gw.call(&alice, "me", json!({})).await);
    assert_eq!(provider.refreshes(), 2);

    // 5xx retried: two 503s, then success.
    age_tokens(&db).await;
    provider.state.fail_next.store(2, Ordering::SeqCst);
    account_of(&gw.call(&alice, "me", json!({})).await);
    assert_eq!(provider.refreshes(), 5);

    // Upstream 401: one forced refresh and one replay.
    provider.revoke_access_tokens();
    let api_before = provider.state.api_calls.load(Ordering::SeqCst);
    account_of(&gw.call(&alice, "me", json!({})).await);
    assert_eq!(provider.refreshes(), 6);
    assert_eq!(provider.state.api_calls.load(Ordering::SeqCst), api_before + 2);

    // A backend that keeps refusing: still one refresh and one replay, then the 401 is reported.
    provider.state.api_rejects_all.store(true, Ordering::SeqCst);
    let api_before = provider.state.api_calls.load(Ordering::SeqCst);
    let text = tool_error(&gw.call(&alice, "me", json!({})).await);
    assert!(text.contains("401"), "{text}");
    assert_eq!(provider.refreshes(), 7);
    assert_eq!(provider.state.api_calls.load(Ordering::SeqCst), api_before + 2, "never a loop");
    provider.state.api_rejects_all.store(false, Ordering::SeqCst);

    // 403, 429 and 5xx pass through without a refresh.
    for code in [403, 429, 500, 503] {
        let text = tool_error(&gw.call(&alice, "status", json!({"code": code})).await);
        assert!(text.contains(&code.to_string()), "{text}");
    }
    assert_eq!(provider.refreshes(), 7);

    // invalid_grant: the call gets a stable upstream-credential error, the connection is marked
    // unhealthy once (one audit event), and the provider is not asked again.
    age_tokens(&db).await;
    provider.state.refuse_refresh.store(true, Ordering::SeqCst);
    let reply = gw.call(&alice, "me", json!({})).await;
    assert!(tool_error(&reply).contains("could not obtain its credential"));
    let refused = gw.audit().into_iter().rfind(|e| e["method"] == "tools/call").unwrap();
    assert_eq!(refused["reason"], "upstream_credential_refused");
    assert_eq!(provider.refreshes(), 8);
    // Afterwards: alice is asked to reconnect (a per-user connection is hers to renew).
    let again = gw.call(&alice, "me", json!({})).await;
    assert_eq!(again.error_code(), Some(-32042));
    assert!(again.body["error"]["message"].as_str().unwrap().contains("Reconnect"));
    assert_eq!(provider.refreshes(), 8, "an unhealthy connection is not refreshed again");
    let failures: Vec<_> = reasons(&gw, "credential/refresh").into_iter().filter(|r| r != "credential_refreshed").collect();
    assert_eq!(failures, ["upstream_credential_refused"], "marked unhealthy once");
    let status = admin(&gw, reqwest::Method::GET, "/admin/v1/connections?credential=gh", Some(ADMIN)).await;
    assert_eq!(status.1["connections"][0]["status"], "unhealthy");
    assert_eq!(status.1["connections"][0]["status_reason"], "upstream_credential_refused");

    // Reconnecting makes it healthy again.
    provider.state.refuse_refresh.store(false, Ordering::SeqCst);
    connect(&link_of(&again), "gh-alice").await;
    assert_eq!(account_of(&gw.call(&alice, "me", json!({})).await), "gh-alice");

    // A malformed refresh answer also marks it unhealthy.
    age_tokens(&db).await;
    provider.state.malformed_next.store(true, Ordering::SeqCst);
    let reply = gw.call(&alice, "me", json!({})).await;
    assert!(tool_error(&reply).contains("malformed"));
    assert_eq!(gw.call(&alice, "me", json!({})).await.error_code(), Some(-32042));
}

#[tokio::test]
async fn refresh_once_rotation_retries_invalid_grant_and_replay_sqlite() {
    refresh_matrix(Db::sqlite()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one and sets WARDEN_POSTGRES_URL"]
async fn postgres_refresh_once_rotation_retries_invalid_grant_and_replay() {
    refresh_matrix(Db::postgres().await).await;
}

/// Two gateways (replicas) over one database: ten concurrent calls split between them while the
/// token is expiring cause exactly one refresh.
async fn replicas_refresh_once(db: Db) {
    sqlx::any::install_default_drivers();
    let options = per_user(&keyring());
    let scene = Scene::new(db, &options).await;
    let two = scene.replica(&options).await;
    let Scene { issuer, provider, db, gw: one } = scene;
    let token = connected(&issuer, &one, "alice", "gh-alice").await;
    let token_two = issuer.sign(&issuer.claims("alice", "", &two.mcp));
    assert_eq!(account_of(&two.call(&token_two, "me", json!({})).await), "gh-alice", "the replica reads the same connection");
    for round in 1..=3 {
        age_tokens(&db).await;
        let calls = (0..10).map(|i| {
            let (gw, t) = if i % 2 == 0 { (&one, &token) } else { (&two, &token_two) };
            gw.call(t, "me", json!({}))
        });
        for reply in futures::future::join_all(calls).await {
            assert_eq!(account_of(&reply), "gh-alice");
        }
        assert_eq!(provider.refreshes(), round, "one refresh per expiry across both replicas");
    }
}

#[tokio::test]
async fn two_replicas_refresh_once_sqlite() {
    replicas_refresh_once(Db::sqlite()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one and sets WARDEN_POSTGRES_URL"]
async fn postgres_two_replicas_refresh_once() {
    replicas_refresh_once(Db::postgres().await).await;
}

async fn admin(gw: &TestGateway, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = gw.http.request(method, format!("{}{path}", gw.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

// Multi-threaded: the CLI runs as a child process while this runtime serves the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_connection_through_admin_api_and_cli() {
    let name = unique("shared");
    let options = Options { mode: "shared", name: name.clone(), keys: keyring(), discover: false, cache: "5s" };
    let Scene { issuer, provider, gw, db: _db } = Scene::new(Db::sqlite(), &options).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));

    // Before an operator connects: a clear error, no link for the caller.
    let text = tool_error(&gw.call(&alice, "me", json!({})).await);
    assert!(text.contains("operator"), "{text}");
    assert_eq!(reasons(&gw, "tools/call"), ["upstream_credential_not_connected"]);

    // The admin API has its own credential.
    let path = format!("/admin/v1/connections/{name}/connect-link");
    assert_eq!(admin(&gw, reqwest::Method::POST, &path, None).await.0, 401);
    assert_eq!(admin(&gw, reqwest::Method::POST, &path, Some(&alice)).await.0, 401, "an MCP token is not an admin token");
    assert_eq!(admin(&gw, reqwest::Method::POST, &path, Some("admin-token-0123456789abcdef012345678X")).await.0, 401);
    let (status, body) = admin(&gw, reqwest::Method::POST, &path, Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    connect(body["url"].as_str().unwrap(), "gh-operator").await;

    // Every permitted caller uses the shared connection.
    assert_eq!(account_of(&gw.call(&alice, "me", json!({})).await), "gh-operator");
    assert_eq!(account_of(&gw.call(&bob, "me", json!({})).await), "gh-operator");

    // The CLI, through the admin API.
    let cli = |args: &[&str], token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("connections")
            .args(args)
            .args(["--gateway", &gw.url])
            .env("WARDEN_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    };
    let listed = cli(&["list"], ADMIN);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(out.contains(&name) && out.contains("(shared)") && out.contains("healthy"), "{out}");
    assert!(!provider.issued_secrets().iter().any(|s| out.contains(s.as_str())), "never a token");
    let refused = cli(&["list"], "wrong-token");
    assert_eq!(refused.status.code(), Some(1));
    let link = cli(&["connect-link", &name], ADMIN);
    assert!(String::from_utf8_lossy(&link.stdout).contains("/oauth/connect/"));
    let gone = cli(&["disconnect", &name], ADMIN);
    assert!(gone.status.success(), "{}", String::from_utf8_lossy(&gone.stderr));

    // Disconnected: back to the clear error; the events are audited as admin actions.
    tool_error(&gw.call(&alice, "me", json!({})).await);
    assert_eq!(admin(&gw, reqwest::Method::DELETE, &format!("/admin/v1/connections/{name}"), Some(ADMIN)).await.0, 404);
    let methods: Vec<String> = gw.audit().iter().filter_map(|e| e["method"].as_str().map(str::to_owned)).collect();
    for m in ["admin/connect_link", "admin/connections.list", "admin/connections.delete", "admin/authenticate"] {
        assert!(methods.iter().any(|x| x == m), "{m} not audited");
    }
    // Refusals are audited too, with the refusal's own reason and status.
    let missing =
        gw.audit().into_iter().filter(|e| e["method"] == "admin/connections.delete" && e["decision"] == "deny").collect::<Vec<_>>();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!((missing[0]["reason"].as_str(), missing[0]["status"].as_u64()), (Some("connection_not_found"), Some(404)));
}

#[tokio::test]
async fn admin_api_is_off_without_a_token_and_per_user_links_are_not_issued_to_operators() {
    let Scene { issuer, gw, provider: _provider, db: _db } = Scene::per_user(Db::sqlite()).await;
    let (status, body) = admin(&gw, reqwest::Method::POST, "/admin/v1/connections/gh/connect-link", Some(ADMIN)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("not_shared")));
    let refused = gw.audit().into_iter().find(|e| e["method"] == "admin/connect_link").expect("the refusal is audited");
    assert_eq!((refused["decision"].as_str(), refused["reason"].as_str()), (Some("deny"), Some("not_shared")));
    let off = crate::common::gateway(&issuer, "  - {name: t, description: d, http: {url: \"http://127.0.0.1:9/x\"}}\n", "").await;
    assert_eq!(admin(&off, reqwest::Method::GET, "/admin/v1/connections", Some(ADMIN)).await.0, 404);
    assert_eq!(visit(&format!("{}/oauth/callback?state=x&code=y", off.url), None).await.0, 404, "no vault, no connect flow");
}

#[tokio::test]
async fn provider_endpoints_by_discovery() {
    let options = Options { mode: "per_user", name: "disc".into(), keys: keyring(), discover: true, cache: "0s" };
    let Scene { issuer, gw, provider, db: _db } = Scene::new(Db::sqlite(), &options).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let link = link_of(&gw.call(&alice, "me", json!({})).await);
    connect(&link, "gh-alice").await;
    assert_eq!(account_of(&gw.call(&alice, "me", json!({})).await), "gh-alice");

    // RFC 9207: the discovered provider promises `iss`, so an answer naming another issuer, or
    // none, is refused and stores nothing.
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));
    let iss: String = url::form_urlencoded::byte_serialize(provider.url.as_bytes()).collect();
    for tamper in ["iss=https%3A%2F%2Fevil.example", ""] {
        let link = link_of(&gw.call(&bob, "me", json!({})).await);
        let (callback, cookie) = sign_in(&link, "gh-bob", false).await;
        assert!(callback.contains(&format!("&iss={iss}")), "{callback}");
        let forged = callback.replace(&format!("&iss={iss}"), if tamper.is_empty() { "" } else { "&iss=https%3A%2F%2Fevil.example" });
        let (status, page) = visit(&forged, Some(&cookie)).await;
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("oauth_issuer_mismatch"), "{page}");
        assert_eq!(gw.call(&bob, "me", json!({})).await.error_code(), Some(-32042), "nothing stored");
    }
    assert_eq!(provider.state.code_requests.load(Ordering::SeqCst), 1, "only alice's code was exchanged");
}

/// `warden keys rotate` runs against the database while a gateway holding both keys serves
/// calls: every call succeeds, and afterwards only the new key is in use.
#[tokio::test]
async fn key_rotation_under_load() {
    let issuer = TestIssuer::start().await;
    let provider = FakeProvider::start(3600).await;
    let db = Db::sqlite();
    let old = keyring();
    let gw = start(&issuer, &provider, &db, &per_user(&old)).await;
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(connected(&issuer, &gw, &format!("user{i}"), &format!("gh-user{i}")).await);
    }
    drop(gw);
    let new_key = warden::credentials::envelope::KeyRing::generate_key();
    let both = format!("k2:{},{old}", new_key.expose());
    let gw = Arc::new(start(&issuer, &provider, &db, &per_user(&both)).await);
    let tokens: Vec<String> = (0..6).map(|i| issuer.sign(&issuer.claims(&format!("user{i}"), "", &gw.mcp))).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (gw, stop) = (Arc::clone(&gw), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut calls = 0;
            while !stop.load(Ordering::SeqCst) || calls < 12 {
                let i = calls % 6;
                assert_eq!(account_of(&gw.call(&tokens[i], "me", json!({})).await), format!("gh-user{i}"));
                calls += 1;
            }
            calls
        })
    };
    let ring = Arc::new(warden::credentials::envelope::KeyRing::parse(&warden::credentials::Secret::new(both.clone())).unwrap());
    let store = warden::store::Store::open(&db.url, ring).await.unwrap();
    let report = store.rotate_keys(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let calls = load.await.unwrap();
    assert!(calls >= 12);
    assert_eq!(report.rows, 6);
    assert_eq!(report.reencrypted, 12, "an access and a refresh token per connection");
    assert!(!db.dump().contains("\"kid\":\"k1\""));
    // The old key can go.
    drop(gw);
    let gw = start(&issuer, &provider, &db, &per_user(&format!("k2:{}", new_key.expose()))).await;
    let t = issuer.sign(&issuer.claims("user3", "", &gw.mcp));
    assert_eq!(account_of(&gw.call(&t, "me", json!({})).await), "gh-user3");
}

/// The token cache: a busy caller's token is read from the database once per interval; a
/// disconnect on the same gateway takes effect at once, and on another replica within the
/// interval; a refresh is still done before expiry.
#[tokio::test]
async fn token_cache_is_bounded_and_forgets_on_disconnect() {
    sqlx::any::install_default_drivers();
    let cached = Options { cache: "1s", ..per_user(&keyring()) };
    let scene = Scene::new(Db::sqlite(), &cached).await;
    let two = scene.replica(&cached).await;
    let Scene { issuer, provider, db, gw: one } = scene;
    let alice = connected(&issuer, &one, "alice", "gh-alice").await;
    let alice_two = issuer.sign(&issuer.claims("alice", "", &two.mcp));
    assert_eq!(account_of(&two.call(&alice_two, "me", json!({})).await), "gh-alice");

    // Within the interval the cached token is used even though the row changed underneath...
    age_tokens(&db).await;
    account_of(&one.call(&alice, "me", json!({})).await);
    assert_eq!(provider.refreshes(), 0, "served from the cache");
    // ...and after it the row is read again and the expiring token refreshed.
    one.clock.advance(Duration::from_millis(1100));
    account_of(&one.call(&alice, "me", json!({})).await);
    assert_eq!(provider.refreshes(), 1);

    // A disconnect through gateway one takes effect there at once...
    account_of(&two.call(&alice_two, "me", json!({})).await);
    let (status, _) =
        admin(&one, reqwest::Method::DELETE, &format!("/admin/v1/connections/gh?issuer={}&subject=alice", issuer.url), Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(one.call(&alice, "me", json!({})).await.error_code(), Some(-32042));
    // ...and on the other replica within the interval.
    two.clock.advance(Duration::from_millis(1100));
    assert_eq!(two.call(&alice_two, "me", json!({})).await.error_code(), Some(-32042));
}
