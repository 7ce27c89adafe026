//! Limits through the gateway: per-subject rate limits on tool calls (a JSON-RPC error with
//! `rate_limited` and `retryAfterSeconds`, audited with the rule; `tools/list` not counted),
//! and the per-client-IP limit before authentication (HTTP 429 with `Retry-After`, before any
//! token is verified).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Db, TestGateway, TestIssuer, Upstream, gateway};

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

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

/// Tools `search` (cost 1) and `gpt` (cost 3, tag llm), a tenant budget of 10 units a month
/// warning at 50%, a day budget per subject for the LLM tools, all in `db`.
fn quota_config(upstream: &Upstream, db: &Db) -> (String, String) {
    let tools = format!(
        "  - {{name: search, description: d, http: {{method: POST, url: \"{u}/search\"}}}}\n  - {{name: gpt, description: d, tags: [llm], cost: 3, http: {{method: POST, url: \"{u}/gpt\"}}}}\n",
        u = upstream.url
    );
    let keys = format!("k1:{}", warden::credentials::envelope::KeyRing::generate_key().expose());
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\nvault:\n  database: \"{db}\"\n  keys: \"{keys}\"\nadmin:\n  token: {ADMIN}\nlimits:\n  quotas:\n    - {{name: tenant-monthly, key: [tenant], period: month, budget: 10, warn_at_percent: 50}}\n    - {{name: llm-daily, tools: [\"tag:llm\"], key: [subject], period: day, budget: 100}}\n",
        db = db.url
    );
    (tools, extra)
}

fn member(issuer: &TestIssuer, gw: &TestGateway, sub: &str, tenant: &str) -> String {
    let mut claims = issuer.claims(sub, "", &gw.mcp);
    claims["org_id"] = json!(tenant);
    issuer.sign(&claims)
}

async fn usage(gw: &TestGateway, query: &str) -> Vec<Value> {
    let r = gw.http.get(format!("{}/admin/v1/limits/usage?{query}", gw.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["usage"].as_array().cloned().unwrap()
}

/// Costs add up per tenant; the warning is audited once; the budget refuses with the reset
/// time and without calling the backend; another tenant is untouched; a restart forgets
/// nothing; the next month starts afresh.
#[tokio::test]
async fn quotas_charge_costs_warn_once_refuse_until_the_reset_and_survive_a_restart() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let (tools, extra) = quota_config(&upstream, &db);
    let gw = gateway(&issuer, &tools, &extra).await;
    let (alice, anna, bob) =
        (member(&issuer, &gw, "alice", "acme"), member(&issuer, &gw, "anna", "acme"), member(&issuer, &gw, "bob", "beta"));
    for _ in 0..3 {
        assert_eq!(gw.call(&alice, "gpt", json!({})).await.result()["isError"], false);
    }
    assert_eq!(gw.call(&anna, "search", json!({})).await.result()["isError"], false, "10 of 10 units, by two members");
    let before = upstream.requests().len();
    let refused = gw.call(&anna, "search", json!({})).await;
    assert_eq!(refused.error_code(), Some(-32030), "{refused:?}");
    let data = &refused.body["error"]["data"];
    assert_eq!((data["code"].as_str(), data["quota"].as_str()), (Some("quota_exceeded"), Some("quotas/tenant-monthly")));
    let resets = chrono::DateTime::parse_from_rfc3339(data["resetsAt"].as_str().unwrap()).unwrap();
    assert_eq!((resets.format("%d %H:%M:%S").to_string()), "01 00:00:00", "the first of next month, UTC: {resets}");
    let retry = data["retryAfterSeconds"].as_u64().unwrap();
    assert!((1..=31 * 86400).contains(&retry), "{retry}");
    assert_eq!(upstream.requests().len(), before, "a refused call never reaches the backend");
    assert_eq!(gw.call(&bob, "gpt", json!({})).await.result()["isError"], false, "another tenant has its own budget");
    assert_eq!(gw.tool_names(&alice).await.len(), 2, "tools/list spends nothing");

    let events = gw.audit();
    let warnings: Vec<&Value> = events.iter().filter(|e| e["reason"] == "quota_warning").collect();
    assert_eq!(warnings.len(), 1, "one warning per period and bucket: {warnings:?}");
    assert_eq!((warnings[0]["rule"].as_str(), warnings[0]["tenant"].as_str()), (Some("quotas/tenant-monthly"), Some("acme")));
    let exceeded = events.iter().find(|e| e["reason"] == "quota_exceeded").expect("audited");
    assert_eq!(
        (exceeded["decision"].as_str(), exceeded["rule"].as_str(), exceeded["tool"].as_str(), exceeded["subject"].as_str()),
        (Some("deny"), Some("quotas/tenant-monthly"), Some("search"), Some("anna"))
    );

    let rows = usage(&gw, "tenant=acme").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["used"].as_u64(), rows[0]["budget"].as_u64()), (Some(10), Some(10)));
    assert!(rows[0]["resets_at"].is_string());
    let alice_llm = usage(&gw, "subject=alice").await;
    assert_eq!((alice_llm.len(), alice_llm[0]["quota"].as_str(), alice_llm[0]["used"].as_u64()), (1, Some("llm-daily"), Some(9)));

    // Another process on the same database: still over budget.
    drop(gw);
    let gw = gateway(&issuer, &tools, &extra).await;
    let anna = member(&issuer, &gw, "anna", "acme");
    assert_eq!(gw.call(&anna, "search", json!({})).await.body["error"]["data"]["code"], "quota_exceeded", "a restart resets nothing");
    // A month later (the gateway's clock), a new period.
    let later = Duration::from_secs(32 * 86400);
    gw.clock.advance(later);
    let mut claims = issuer.claims("anna", "", &gw.mcp);
    claims["org_id"] = json!("acme");
    for time in ["exp", "iat", "nbf"] {
        claims[time] = json!(claims[time].as_u64().unwrap() + later.as_secs());
    }
    let anna = issuer.sign(&claims);
    assert_eq!(gw.call(&anna, "search", json!({})).await.result()["isError"], false, "the next month starts afresh");
}

/// The admin API's usage is behind the admin token, and the CLI prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_through_the_admin_api_and_cli() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let (tools, extra) = quota_config(&upstream, &db);
    let gw = gateway(&issuer, &tools, &extra).await;
    let alice = member(&issuer, &gw, "alice", "acme");
    assert_eq!(gw.call(&alice, "gpt", json!({})).await.result()["isError"], false);
    let anonymous = gw.http.get(format!("{}/admin/v1/limits/usage", gw.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["limits", "usage", "--subject", "alice", "--gateway", &gw.url])
        .env("WARDEN_ADMIN_TOKEN", ADMIN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("llm-daily")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("subject=alice") && line.split_whitespace().any(|w| w == "3") && line.contains("100"), "{line}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by scripts/test"]
async fn postgres_quotas_are_shared_by_two_gateways() {
    quotas_are_shared_by_two_gateways(Db::postgres().await).await;
}

#[tokio::test]
async fn sqlite_quotas_are_shared_by_two_gateways() {
    quotas_are_shared_by_two_gateways(Db::sqlite()).await;
}

/// Two gateways on one database share the budget: together, under concurrent calls, they
/// never spend more, and the warning is written once.
async fn quotas_are_shared_by_two_gateways(db: Db) {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let (tools, extra) = quota_config(&upstream, &db);
    let (one, two) = (gateway(&issuer, &tools, &extra).await, gateway(&issuer, &tools, &extra).await);
    // Tokens are for one gateway's resource each.
    let callers = |gw: &TestGateway| -> Vec<String> { (0..4).map(|i| member(&issuer, gw, &format!("user{i}"), "acme")).collect() };
    let (for_one, for_two) = (callers(&one), callers(&two));
    // 20 calls of cost 1 at once, spread over both gateways: exactly the budget of 10 passes.
    let calls = (0..20).map(|i| {
        let (gw, tokens) = if i % 2 == 0 { (&one, &for_one) } else { (&two, &for_two) };
        gw.call(&tokens[i % tokens.len()], "search", json!({}))
    });
    let replies = futures::future::join_all(calls).await;
    let passed = replies.iter().filter(|r| r.body["result"]["isError"] == false).count();
    let refused = replies.iter().filter(|r| r.body["error"]["data"]["code"] == "quota_exceeded").count();
    assert_eq!((passed, refused), (10, 10), "{replies:?}");
    let rows = usage(&two, "tenant=acme").await;
    assert_eq!(rows[0]["used"].as_u64(), Some(10));
    let warnings = one.audit().iter().chain(two.audit().iter()).filter(|e| e["reason"] == "quota_warning").count();
    assert_eq!(warnings, 1, "one replica writes the warning");
}

/// Search and fetch, each limited per subject through Redis at `url` (keys under a prefix of
/// the test's own), search falling back to local buckets and fetch failing closed.
fn redis_config(upstream: &Upstream, url: &str, prefix: &str) -> (String, String) {
    let tools = format!(
        "  - {{name: search, description: d, http: {{method: POST, url: \"{u}/search\"}}}}\n  - {{name: fetch, description: d, http: {{method: POST, url: \"{u}/fetch\"}}}}\n",
        u = upstream.url
    );
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\nlimits:\n  backend: redis\n  redis: {{url: \"{url}\", timeout: 100ms, prefix: \"{prefix}\"}}\n  rules:\n    - {{name: search-per-user, tools: [search], key: [subject], rate: 10/minute}}\n    - {{name: fetch-per-user, tools: [fetch], key: [subject], rate: 100/minute, fallback: fail_closed}}\n"
    );
    (tools, extra)
}

/// Two gateways on one Redis hold one combined rate: 10 a minute for alice, wherever her calls
/// land (at most one more may refill while the test runs: 30 calls take far less than the
/// 6 s one token takes).
#[tokio::test]
#[ignore = "needs Redis: run by scripts/test"]
async fn redis_two_gateways_hold_one_combined_rate() {
    let url = std::env::var("WARDEN_REDIS_URL").expect("WARDEN_REDIS_URL: run scripts/test");
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let prefix = format!("test:{}:", uuid::Uuid::now_v7().simple());
    let (tools, extra) = redis_config(&upstream, &url, &prefix);
    let (one, two) = (gateway(&issuer, &tools, &extra).await, gateway(&issuer, &tools, &extra).await);
    let alice = [issuer.sign(&issuer.claims("alice", "", &one.mcp)), issuer.sign(&issuer.claims("alice", "", &two.mcp))];
    let mut passed = 0;
    let mut refusals = Vec::new();
    for i in 0..30 {
        let gw = if i % 2 == 0 { &one } else { &two };
        let reply = gw.call(&alice[i % 2], "search", json!({})).await;
        if reply.body["result"]["isError"] == false {
            passed += 1;
        } else {
            refusals.push(reply);
        }
    }
    assert!((10..=11).contains(&passed), "{passed} passed");
    let limited = &refusals[0].body["error"]["data"];
    assert_eq!(
        (limited["code"].as_str(), limited["rule"].as_str()),
        (Some("rate_limited"), Some("limits/search-per-user")),
        "{refusals:?}"
    );
    assert!((1..=6).contains(&limited["retryAfterSeconds"].as_u64().unwrap()), "{limited}");
    let bob = issuer.sign(&issuer.claims("bob", "", &one.mcp));
    assert_eq!(one.call(&bob, "search", json!({})).await.result()["isError"], false, "bob has his own bucket in Redis too");
    assert!(one.audit().iter().chain(two.audit().iter()).all(|e| e["limits"].is_null()), "Redis decided every call");
}

/// A Redis server of the test's own, stopped mid-run: search (fallback: local) keeps being
/// decided by each replica's buckets, audited as such; fetch (fail_closed) is refused; no call
/// waits on the dead server; the outage and the recovery are each audited once.
#[tokio::test]
#[ignore = "needs redis-server (scripts/redis-env installs it): run by scripts/test"]
async fn redis_stopped_mid_run_falls_back_per_rule_without_hanging() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start_redis = || {
        tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server on PATH (scripts/redis-env installs it)")
    };
    let wait_up = || async {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    };
    let mut redis = start_redis();
    wait_up().await;
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let (tools, extra) = redis_config(&upstream, &format!("redis://127.0.0.1:{port}"), "test:");
    let gw = gateway(&issuer, &tools, &extra).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    assert_eq!(gw.call(&alice, "fetch", json!({})).await.result()["isError"], false, "Redis up");
    assert_eq!(gw.call(&alice, "search", json!({})).await.result()["isError"], false);

    redis.kill().await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(gw.call(&alice, "search", json!({})).await.result()["isError"], false, "fallback: local");
        let refused = gw.call(&alice, "fetch", json!({})).await;
        assert_eq!(refused.body["error"]["data"]["code"], "limits_unavailable", "fail_closed: {refused:?}");
        assert_eq!(refused.body["error"]["data"]["rule"], "limits/fetch-per-user");
    }
    // Six calls against a dead Redis: a hang would take the test's timeout, not seconds.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The local buckets still limit (10 a minute, 3 of them spent above).
    let mut local = 0;
    while gw.call(&alice, "search", json!({})).await.result()["isError"] == false {
        local += 1;
        assert!(local <= 10, "the local fallback bucket limits too");
    }

    let _redis = start_redis();
    wait_up().await;
    // Decisions do not ask Redis for a second after a failure; then it is used again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(gw.call(&alice, "fetch", json!({})).await.result()["isError"], false, "Redis back");

    let events = gw.audit();
    let fell_back = events.iter().filter(|e| e["tool"] == "search" && e["limits"] == "local_fallback").count();
    assert!(fell_back >= 3, "calls decided locally say so: {fell_back}");
    let unavailable = events.iter().filter(|e| e["reason"] == "limits_unavailable").collect::<Vec<_>>();
    assert_eq!(unavailable.len(), 3);
    assert_eq!((unavailable[0]["decision"].as_str(), unavailable[0]["rule"].as_str()), (Some("error"), Some("limits/fetch-per-user")));
    let transitions: Vec<&str> = events.iter().filter(|e| e["method"] == "limits/backend").filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(transitions, ["limits_backend_unavailable", "limits_backend_recovered"]);
}

/// An upstream's 429 parks it, for the credential the call used, until its `Retry-After`:
/// further calls through that credential are refused without contacting it; a call without
/// the credential, or to another upstream, still goes out.
#[tokio::test]
async fn an_upstream_429_parks_it_per_credential_until_its_retry_after() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let other = Upstream::start().await;
    let tools = format!(
        "  - {{name: busy, description: d, credential: key, http: {{method: POST, url: \"{u}/busy/30\"}}}}\n  - {{name: search, description: d, credential: key, http: {{method: POST, url: \"{u}/search\"}}}}\n  - {{name: open, description: d, http: {{method: POST, url: \"{u}/search\"}}}}\n  - {{name: elsewhere, description: d, credential: key, http: {{method: POST, url: \"{o}/search\"}}}}\n  - {{name: reset, description: d, credential: other-key, http: {{method: POST, url: \"{o}/busy-reset/7\"}}}}\n",
        u = upstream.url,
        o = other.url
    );
    let extra = "upstream:\n  allow_cidrs: [127.0.0.1/32]\ncredentials:\n  - {name: key, secret: s3cret-api-key, placement: bearer}\n  - {name: other-key, secret: other-s3cret, placement: bearer}\n";
    let gw = gateway(&issuer, &tools, extra).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));

    let first = gw.call(&alice, "busy", json!({})).await.result().clone();
    assert_eq!(first["isError"], true);
    assert!(first["content"][0]["text"].as_str().unwrap().contains("retry after 30 s"), "{first}");
    let sent = upstream.requests().len();
    for (who, tool) in [(&alice, "search"), (&bob, "search"), (&bob, "busy")] {
        let parked = gw.call(who, tool, json!({})).await.result().clone();
        assert_eq!(parked["isError"], true, "{tool}: {parked}");
        let text = parked["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("HTTP 429") && text.contains("retry after"), "{text}");
    }
    assert_eq!(upstream.requests().len(), sent, "parked: not contacted, for anyone using that key");
    assert_eq!(gw.call(&alice, "open", json!({})).await.result()["isError"], false, "no credential: another holder");
    assert_eq!(gw.call(&alice, "elsewhere", json!({})).await.result()["isError"], false, "another upstream");
    // RateLimit-Reset parks too.
    assert_eq!(gw.call(&alice, "reset", json!({})).await.result()["isError"], true);
    let before = other.requests().len();
    let again = gw.call(&alice, "reset", json!({})).await.result().clone();
    let text = again["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("retry after 7 s") || text.contains("retry after 6 s"), "{again}");
    assert_eq!(other.requests().len(), before);

    let events = gw.audit();
    let limited: Vec<&Value> = events.iter().filter(|e| e["reason"] == "upstream_rate_limited").collect();
    assert_eq!(limited.len(), 6, "{limited:?}");
    assert_eq!((limited[0]["decision"].as_str(), limited[0]["upstream_status"].as_u64()), (Some("error"), Some(429)));
    assert!(limited[1]["upstream_status"].is_null(), "a parked call reached no upstream");
    assert!(!gw.audit_text().contains("s3cret"), "no credential in audit");
}
