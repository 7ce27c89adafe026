//! A human approves the consequential calls (`effect: approve`): the first call records a
//! request and does not reach the upstream; an approver decides through the admin API with their
//! own token; the same caller retrying the same call runs it once; nothing else does.

use serde_json::{Value, json};

use crate::common::{TestGateway, TestIssuer, Upstream, gateway};

const ADMIN: &str = "approvals-admin-token-0123456789abcdef";
const POLICY: &str = r#"
rules:
  - {id: pay, effect: allow, tools: [transfer_funds], roles: [clerk]}
  - id: large-transfers
    effect: approve
    tools: [transfer_funds]
    when: args.amount > 1000
    approvers: {roles: [finance-manager]}
    expires_in: 15m
    reason: transfers over 1,000 need a manager's approval
"#;

struct Bank {
    gw: TestGateway,
    db: String,
    _db: crate::common::Db,
    keys: String,
    issuer: TestIssuer,
    upstream: Upstream,
    _dir: tempfile::TempDir,
}

async fn bank() -> Bank {
    bank_on(crate::common::Db::sqlite()).await
}

/// What every replica of the bank is configured with: the issuer, the upstream, the policy, the
/// shared database and keys.
struct Setup {
    issuer: TestIssuer,
    upstream: Upstream,
    dir: tempfile::TempDir,
    tools: String,
    extra: String,
    keys: String,
}

async fn setup(db_url: &str) -> Setup {
    setup_with(db_url, "").await
}

/// As [`setup`], with more lines in the `approvals:` block (indented by two).
async fn setup_with(db_url: &str, approvals: &str) -> Setup {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("bank.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let tools = format!(
        "  - {{name: transfer_funds, description: Pay., input_schema: {{type: object, properties: {{amount: {{type: number}}, to: {{type: string}}, pin: {{type: string, writeOnly: true}}}}, required: [amount, to]}}, http: {{url: \"{}/transfer\", method: POST}}}}\n",
        upstream.url
    );
    let keys = crate::common::provider::keyring();
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\npolicy:\n  files: [{}]\nvault:\n  database: \"{db_url}\"\n  keys: \"{keys}\"\nadmin:\n  token: {ADMIN}\napprovals:\n  webhook: {{url: \"{}/hook\"}}\n{approvals}",
        policy.display(),
        upstream.url,
    );
    Setup { issuer, upstream, dir, tools, extra, keys }
}

async fn bank_on(db: crate::common::Db) -> Bank {
    let Setup { issuer, upstream, dir, tools, extra, keys } = setup(&db.url).await;
    let gw = gateway(&issuer, &tools, &extra).await;
    Bank { gw, db: db.url.clone(), _db: db, keys, issuer, upstream, _dir: dir }
}

impl Bank {
    fn token(&self, sub: &str, roles: &[&str]) -> String {
        let mut claims = self.issuer.claims(sub, "", &self.gw.mcp);
        claims["roles"] = json!(roles);
        // Valid past the expiry test's jump of the gateway's clock.
        claims["exp"] = json!(crate::common::now() + 3600);
        self.issuer.sign(&claims)
    }

    fn transfers(&self) -> usize {
        self.upstream.requests().iter().filter(|r| r.path == "/transfer").count()
    }

    async fn admin(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.gw.http.request(method, format!("{}{path}", self.gw.url)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn pending(&self) -> Vec<Value> {
        let (status, body) = self.admin(reqwest::Method::GET, "/admin/v1/approvals?status=pending", ADMIN, None).await;
        assert_eq!(status, 200, "{body}");
        body["approvals"].as_array().unwrap().clone()
    }

    async fn decide(&self, id: &str, verb: &str, token: &str, comment: &str) -> (u16, Value) {
        self.admin(reqwest::Method::POST, &format!("/admin/v1/approvals/{id}/{verb}"), token, Some(json!({"comment": comment}))).await
    }

    /// A call on 2025-06-18 (no URL elicitation): the answer is a tool result.
    async fn call_text(&self, token: &str, args: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "transfer_funds", "arguments": args}});
        let reply = self.gw.post_raw(Some(token), body.to_string(), &[("mcp-protocol-version", "2025-06-18")]).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body["result"].clone()
    }

    fn audit_reasons(&self) -> Vec<(String, String)> {
        self.gw
            .audit()
            .iter()
            .map(|e| (e["method"].as_str().unwrap_or_default().to_owned(), e["reason"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_back_call_runs_once_after_a_managers_approval_and_only_as_asked() {
    held_back_call_runs_once(bank().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the PostgreSQL server scripts/test starts"]
async fn on_postgres_a_held_back_call_runs_once_after_a_managers_approval() {
    held_back_call_runs_once(bank_on(crate::common::Db::postgres().await).await).await;
}

async fn held_back_call_runs_once(b: Bank) {
    let bob = b.token("bob", &["clerk"]);
    let args = json!({"amount": 5000, "to": "acme"});
    // Under the threshold: no approval.
    let small = b.call_text(&bob, json!({"amount": 10, "to": "acme"})).await;
    assert_eq!(small["isError"], false, "{small}");
    assert_eq!(b.transfers(), 1);

    // 2025-11-25: URL elicitation (-32042) with the request's status page; nothing ran.
    let reply = b.gw.call(&bob, "transfer_funds", args.clone()).await;
    assert_eq!(reply.error_code(), Some(-32042), "{:?}", reply.body);
    let data = &reply.body["error"]["data"];
    assert_eq!(data["code"], "approval_requested");
    let url = data["elicitations"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/approvals/", b.gw.url)), "{url}");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("role finance-manager"), "{:?}", reply.body);
    assert_eq!(b.transfers(), 1, "the held-back call did not reach the upstream");
    let pending = b.pending().await;
    assert_eq!(pending.len(), 1);
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    assert_eq!((&pending[0]["subject"], &pending[0]["tool"], &pending[0]["arguments"]), (&json!("bob"), &json!("transfer_funds"), &args));
    // The webhook heard of it (Slack-compatible `text`), without the arguments.
    let hook = crate::common::eventually(|| async { b.upstream.requests().into_iter().find(|r| r.path == "/hook") }, Option::is_some)
        .await
        .unwrap();
    let announced: Value = serde_json::from_slice(&hook.body).unwrap();
    assert!(announced["text"].as_str().unwrap().contains(&format!("warden approvals approve {id}")), "{announced}");
    assert_eq!((&announced["approval"]["caller"], &announced["approval"]["tool"]), (&json!("bob"), &json!("transfer_funds")));
    assert!(!String::from_utf8_lossy(&hook.body).contains("acme"), "no arguments in the notification");
    let page = b.gw.http.get(url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("waiting for approval") && !page.contains("acme"), "{page}");

    // Asked again before a decision: still waiting, same request.
    let again = b.call_text(&bob, args.clone()).await;
    assert!(again["isError"] == true && text(&again).contains(&id) && text(&again).contains("waiting"), "{again}");

    // Who may not decide: a clerk, the requester (even as a manager), the admin token here.
    let joe = b.token("joe", &["clerk"]);
    assert_eq!(b.decide(&id, "approve", &joe, "").await.0, 403);
    let bob_as_manager = b.token("bob", &["clerk", "finance-manager"]);
    let (status, body) = b.decide(&id, "approve", &bob_as_manager, "").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("self_approval")));
    let (status, body) = b.decide(&id, "approve", ADMIN, "").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("admin_token_may_not_approve")));
    // A manager sees it, and approves as herself.
    let mary = b.token("mary", &["finance-manager"]);
    let (status, mine) = b.admin(reqwest::Method::GET, "/admin/v1/approvals", &mary, None).await;
    assert_eq!((status, mine["approvals"].as_array().map(Vec::len)), (200, Some(1)), "{mine}");
    let (status, _) = b.admin(reqwest::Method::GET, "/admin/v1/approvals", &joe, None).await;
    assert_eq!(status, 200);
    let (status, body) = b.decide(&id, "approve", &mary, "checked with the vendor").await;
    assert_eq!((status, body["status"].as_str(), body["decided_by"].as_str()), (200, Some("approved"), Some("mary")), "{body}");
    assert_eq!(b.decide(&id, "approve", &mary, "").await.0, 409, "decided once");

    // Other arguments, another caller: not approved.
    let other = b.call_text(&bob, json!({"amount": 5001, "to": "acme"})).await;
    assert!(other["isError"] == true && !text(&other).contains(&id), "{other}");
    let carol = b.token("carol", &["clerk"]);
    let theirs = b.call_text(&carol, args.clone()).await;
    assert_eq!(theirs["isError"], true);
    assert_eq!(b.transfers(), 1);
    // The same caller, the same call: runs once, among 20 concurrent retries.
    let retries: Vec<_> = (0..20).map(|_| b.call_text(&bob, args.clone())).collect();
    let answers = futures::future::join_all(retries).await;
    assert_eq!(answers.iter().filter(|a| a["isError"] == false).count(), 1, "{answers:?}");
    // The others are told the approval was used, or (coming after the run) wait on one new
    // request for another approval: a used approval never runs the call again.
    let new: Vec<Value> = b.pending().await.into_iter().filter(|p| p["arguments"] == args && p["subject"] == "bob").collect();
    assert!(new.len() <= 1, "{new:?}");
    for answer in answers.iter().filter(|a| a["isError"] == true) {
        let said = text(answer);
        assert!(said.contains("was used by another attempt") || new.iter().any(|n| said.contains(n["id"].as_str().unwrap())), "{said}");
    }
    assert_eq!(b.transfers(), 2, "the approved call ran exactly once");
    // Used up, on every replica: the store refuses a second use outright.
    let ring = warden::credentials::envelope::KeyRing::parse(&warden::secret::Secret::new(b.keys.clone())).unwrap();
    let store = warden::store::Store::open(&b.db, std::sync::Arc::new(ring)).await.unwrap();
    assert!(!store.use_approval(&id).await.unwrap(), "an approval is used once");
    assert_eq!(store.approval(&id).await.unwrap().unwrap().status, "used");

    let reasons = b.audit_reasons();
    for wanted in [("tools/call", "approval_requested"), ("tools/call", "approval_pending"), ("approvals/approve", "approval_granted")] {
        assert!(reasons.iter().any(|(m, r)| (m.as_str(), r.as_str()) == wanted), "{wanted:?} not in {reasons:?}");
    }
    let ran =
        b.gw.audit()
            .into_iter()
            .find(|e| e["method"] == "tools/call" && e["reason"] == "ok" && e["explanation"] == format!("approval {id}"));
    assert!(ran.is_some(), "the executed call names its approval");
    let granted = b.gw.audit().into_iter().find(|e| e["reason"] == "approval_granted").unwrap();
    assert_eq!(granted["subject"], "mary");
    assert!(granted["explanation"].as_str().unwrap().contains("checked with the vendor"), "{granted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_and_an_expiry_are_refusals_the_agent_can_read() {
    let b = bank().await;
    let bob = b.token("bob", &["clerk"]);
    let mary = b.token("mary", &["finance-manager"]);
    let args = json!({"amount": 2500, "to": "globex"});
    let first = b.call_text(&bob, args.clone()).await;
    assert!(first["isError"] == true && text(&first).contains("need a manager's approval"), "{first}");
    let id = b.pending().await[0]["id"].as_str().unwrap().to_owned();
    // From the command line: the admin token lists, the approver denies as herself.
    let cli = |args: &[&str], token: (&str, &str)| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["approvals", "--gateway", &b.gw.url])
            .args(args)
            .env(token.0, token.1)
            .env_remove(if token.0 == "WARDEN_ADMIN_TOKEN" { "WARDEN_APPROVER_TOKEN" } else { "WARDEN_ADMIN_TOKEN" })
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, listed, _) = tokio::task::block_in_place(|| cli(&["list"], ("WARDEN_ADMIN_TOKEN", ADMIN)));
    assert!(ok && listed.contains(&id) && listed.contains("transfer_funds") && listed.contains("globex"), "{listed}");
    let (ok, _, err) = tokio::task::block_in_place(|| cli(&["approve", &id], ("WARDEN_ADMIN_TOKEN", ADMIN)));
    assert!(!ok && err.contains("403"), "the admin token may not approve here: {err}");
    let (ok, said, err) =
        tokio::task::block_in_place(|| cli(&["deny", &id, "--comment", "not on the vendor list"], ("WARDEN_APPROVER_TOKEN", &mary)));
    assert!(ok && said.contains("denied by mary"), "{said}{err}");
    let denied = b.call_text(&bob, args.clone()).await;
    assert!(text(&denied).contains("denied by mary: not on the vendor list"), "{denied}");
    assert_eq!(b.transfers(), 0);

    // A request nobody decides expires; the retry asks again, saying so.
    let later = json!({"amount": 3000, "to": "initech"});
    b.call_text(&bob, later.clone()).await;
    let waiting = b.pending().await;
    let old = waiting.iter().find(|a| a["arguments"] == later).unwrap()["id"].as_str().unwrap().to_owned();
    b.gw.clock.advance(std::time::Duration::from_secs(16 * 60));
    assert_eq!(b.decide(&old, "approve", &mary, "").await.0, 409, "too late to approve");
    let again = b.call_text(&bob, later).await;
    assert!(text(&again).contains("expired") && !text(&again).contains(&old), "{again}");
    assert_eq!(b.transfers(), 0);
    let reasons = b.audit_reasons();
    for wanted in [("tools/call", "approval_denied"), ("approvals/deny", "approval_denied"), ("tools/call", "approval_expired")] {
        assert!(reasons.iter().any(|(m, r)| (m.as_str(), r.as_str()) == wanted), "{wanted:?} not in {reasons:?}");
    }
}

/// An approvals database that does not answer: the held-back call is refused with a code of its
/// own (not the limits'), recorded once, and never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_back_call_is_refused_when_the_approvals_database_fails() {
    let b = bank().await;
    let bob = b.token("bob", &["clerk"]);
    // The store opens on first use: one request made while it answers.
    let first = b.call_text(&bob, json!({"amount": 2500, "to": "globex"})).await;
    assert!(first["isError"] == true && text(&first).contains("need a manager's approval"), "{first}");
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&b.db).await.unwrap();
    sqlx::Executor::execute(&mut db, "DROP TABLE approvals").await.unwrap();
    let reply = b.gw.call(&bob, "transfer_funds", json!({"amount": 5000, "to": "acme"})).await;
    assert_eq!(reply.error_code(), Some(-32603), "{:?}", reply.body);
    assert_eq!(reply.body["error"]["data"]["code"], "approvals_unavailable", "{:?}", reply.body);
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("approval") && !message.contains("limits"), "{message}");
    assert_eq!(b.transfers(), 0);
    let refused = b.audit_reasons().into_iter().filter(|(m, r)| m == "tools/call" && r == "approvals_unavailable").count();
    assert_eq!(refused, 1, "{:?}", b.audit_reasons());
}

/// Three replicas on one database: a request made on the first is approved through the
/// second and runs on the third, once.
async fn across_replicas(db: crate::common::Db) {
    let Setup { issuer, upstream, tools, extra, dir: _dir, .. } = setup(&db.url).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(gateway(&issuer, &tools, &extra).await);
    }
    let token = |gw: &TestGateway, sub: &str, roles: &[&str]| {
        let mut claims = issuer.claims(sub, "", &gw.mcp);
        claims["roles"] = json!(roles);
        issuer.sign(&claims)
    };
    let args = json!({"amount": 9000, "to": "acme"});
    async fn call(gw: &TestGateway, bob: &str, args: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "transfer_funds", "arguments": args}});
        gw.post_raw(Some(bob), body.to_string(), &[("mcp-protocol-version", "2025-06-18")]).await.body["result"].clone()
    }
    let bob: Vec<String> = replicas.iter().map(|gw| token(gw, "bob", &["clerk"])).collect();
    let first = call(&replicas[0], &bob[0], args.clone()).await;
    assert_eq!(first["isError"], true, "{first}");
    let listed: Value = replicas[1]
        .http
        .get(format!("{}/admin/v1/approvals?status=pending", replicas[1].url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = listed["approvals"][0]["id"].as_str().unwrap_or_else(|| panic!("{listed}")).to_owned();
    let mary = token(&replicas[1], "mary", &["finance-manager"]);
    let approved =
        replicas[1].http.post(format!("{}/admin/v1/approvals/{id}/approve", replicas[1].url)).bearer_auth(&mary).send().await.unwrap();
    assert_eq!(approved.status(), 200);
    let ran = call(&replicas[2], &bob[2], args.clone()).await;
    assert_eq!(ran["isError"], false, "{ran}");
    let again = call(&replicas[0], &bob[0], args).await;
    assert_eq!(again["isError"], true, "used once: {again}");
    assert_eq!(upstream.requests().iter().filter(|r| r.path == "/transfer").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_on_one_replica_is_approved_on_a_second_and_runs_on_a_third() {
    across_replicas(crate::common::Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the PostgreSQL server scripts/test starts"]
async fn on_postgres_three_replicas_share_approvals() {
    across_replicas(crate::common::Db::postgres().await).await;
}

/// The console's page of calls waiting for approval: the request with its arguments (a
/// `writeOnly` one redacted), and Approve with a comment; here the admin-token session may
/// decide (`approvals.admin_token_may_approve`), recorded as `admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_waiting_call_and_approves_it() {
    let db = crate::common::Db::sqlite();
    let Setup { issuer, upstream, tools, extra, dir: _dir, .. } = setup_with(&db.url, "  admin_token_may_approve: true\n").await;
    let gw = gateway(&issuer, &tools, &extra).await;
    let mut claims = issuer.claims("bob", "", &gw.mcp);
    claims["roles"] = json!(["clerk"]);
    let bob = issuer.sign(&claims);
    let args = json!({"amount": 7000, "to": "acme", "pin": "4321"});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "transfer_funds", "arguments": args}});
    let held = gw.post_raw(Some(&bob), body.to_string(), &[("mcp-protocol-version", "2025-06-18")]).await;
    assert_eq!(held.body["result"]["isError"], true, "{:?}", held.body);

    let (status, cookie) = crate::console::sign_in(&gw, ADMIN).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
    let http = crate::console::browser();
    let page = http.get(format!("{}/admin/approvals", gw.url)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("transfer_funds") && page.contains("bob") && page.contains("acme"), "{page}");
    assert!(page.contains("[redacted]") && !page.contains("4321"), "the writeOnly pin is not shown: {page}");
    let listed: Value =
        gw.http.get(format!("{}/admin/v1/approvals", gw.url)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["approvals"][0]["arguments"]["pin"], "[redacted]", "{listed}");
    let id = crate::console::field(&page, "id");
    let csrf = crate::console::field(&page, "csrf");
    let decided = http
        .post(format!("{}/admin/approvals/decide", gw.url))
        .header("cookie", &cookie)
        .header("origin", &gw.url)
        .form(&[("csrf", csrf.as_str()), ("id", id.as_str()), ("decision", "approve"), ("comment", "ok by phone")])
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 303);
    let done = decided.headers()["location"].to_str().unwrap().to_owned();
    let page = http.get(format!("{}{done}", gw.url)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("Request {id} approved by admin")), "{page}");
    let ran = gw.post_raw(Some(&bob), body.to_string(), &[("mcp-protocol-version", "2025-06-18")]).await;
    assert_eq!(ran.body["result"]["isError"], false, "{:?}", ran.body);
    assert_eq!(upstream.requests().iter().filter(|r| r.path == "/transfer").count(), 1);
    let granted = gw.audit().into_iter().find(|e| e["reason"] == "approval_granted").expect("audited");
    assert_eq!(granted["subject"], "admin");
}
