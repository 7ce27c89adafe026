//! The caller's identity carried to upstream APIs, against implementations nobody here wrote:
//! token exchange (RFC 8693) and Entra's on-behalf-of at node-oidc-provider (the company IdP,
//! `oidc_provider.mjs --downstream`), where the caller signed in; and the signed identity
//! assertion verified by backends on PyJWT and on jose (npm) against Warden's live JWKS.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Upstream, listen};

const CALLBACK: &str = "http://127.0.0.1:65533/cb";

/// The company IdP, issuing Warden's callers their tokens and exchanging them for `downstream`.
fn start_idp(resource: &str, downstream: &str) -> (String, std::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/oidc_provider.mjs");
    crate::start_node_issuer(&[
        script,
        "--port",
        &port,
        "--resource",
        resource,
        "--scopes",
        "items:read",
        "--user",
        "alice",
        "--roles",
        "analyst",
        "--downstream",
        downstream,
        "--exchange-scopes",
        "items:read items:write",
        "--consented",
        "Items.Read",
        "--mfa",
        "Items.Admin",
        "--exchange-ttl",
        "90",
    ])
}

/// Signs `user` in at the IdP as an MCP client would (dynamic registration, authorization code
/// with PKCE and `resource`), headless; returns the access token for Warden's resource.
async fn sign_in(issuer: &str, resource: &str, user: &str) -> String {
    let http = reqwest::Client::new();
    let registered: Value = http
        .post(format!("{issuer}/reg"))
        .json(&json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"], "response_types": ["code"], "client_name": "agent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap_or_else(|| panic!("{registered}")).to_owned();
    let verifier = format!("v{}", uuid::Uuid::now_v7().simple()).repeat(2);
    let challenge = warden::credentials::vault::pkce_challenge(&verifier);
    let mut authorize = url::Url::parse(&format!("{issuer}/auth")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", "openid items:read")
        .append_pair("resource", resource)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "s")
        .append_pair("login_hint", user);
    let back = url::Url::parse(&crate::enterprise::browse(authorize.as_str(), CALLBACK).await).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap_or_else(|| panic!("{back}")).1.into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("client_id", client_id.as_str()),
        ("code_verifier", verifier.as_str()),
        ("resource", resource),
    ];
    let token: Value = http.post(format!("{issuer}/token")).form(&form).send().await.unwrap().json().await.unwrap();
    token["access_token"].as_str().unwrap_or_else(|| panic!("{token}")).to_owned()
}

/// The claims of an exchanged token, verified as the downstream API would: the IdP's key, RS256,
/// the IdP as issuer, the API as audience.
async fn downstream_claims(issuer: &str, token: &str, audience: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!("{issuer}/jwks")).await.unwrap().json().await.unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap_or_else(|e| panic!("{e}: {token}")).claims
}

/// Starts an MCP server given the IdP's issuer and the audience it admits; returns its URL.
type StartServer<'a> = dyn Fn(&str, &str) -> String + 'a;

struct Company {
    mcp: String,
    idp: String,
    upstream: Upstream,
    clock: Arc<warden::clock::ManualClock>,
    audit: Arc<warden::audit::AuditSink>,
    audit_path: std::path::PathBuf,
    child: std::process::Child,
    shutdown: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Company {
    fn drop(&mut self) {
        let _ = self.child.kill();
        self.shutdown.cancel();
    }
}

impl Company {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// As [`Company::start`]; with `federated`, a function of the IdP's issuer and the
    /// downstream audience that starts an MCP server protected by the IdP and returns its URL,
    /// federated as `fed` with the `items` token exchange.
    async fn start_with(federated: Option<&StartServer<'_>>) -> Self {
        warden::install_crypto();
        let upstream = Upstream::start().await;
        let (listener, gateway) = listen().await;
        let resource = format!("{gateway}/mcp");
        let (idp, child) = start_idp(&resource, &upstream.url);
        let dir = tempfile::tempdir().unwrap();
        let audit_path = dir.path().join("audit.jsonl");
        let down = &upstream.url;
        let exchange = |name: &str, scopes: &str| {
            format!(
                "  - name: {name}\n    token_exchange: {{token_endpoint: \"{idp}/token\", client_id: warden-exchange, client_secret: exchange-secret, audience: \"{down}\", scopes: [{scopes}]}}\n"
            )
        };
        let obo = |name: &str, scopes: &str| {
            format!(
                "  - name: {name}\n    token_exchange: {{token_endpoint: \"{idp}/token\", style: entra_obo, client_id: warden-obo, client_secret: obo-secret, audience: \"{down}\", scopes: [{scopes}]}}\n"
            )
        };
        let tool = |name: &str, credential: &str, path: &str| {
            format!("  - {{name: {name}, description: Items., credential: {credential}, http: {{url: \"{down}{path}\"}}}}\n")
        };
        let servers = federated.map_or_else(String::new, |start| {
            let url = start(&idp, down);
            format!("servers:\n  - {{name: fed, url: \"{url}\", credential: items, timeout: 10s}}\n")
        });
        let yaml = format!(
            "{servers}server:\n  listen: {addr}\n  public_url: {gateway}\nidentity:\n  issuers:\n    - {{issuer: \"{idp}\", roles_claim: roles}}\n\
             upstream:\n  allow_cidrs: [127.0.0.1/32]\naudit:\n  output: {audit}\ncredentials:\n{e1}{e2}{o1}{o2}{o3}tools:\n{t1}{t2}{t3}{t4}{t5}{t6}{t7}",
            addr = listener.local_addr().unwrap(),
            audit = audit_path.display(),
            e1 = exchange("items", "items:read"),
            e2 = exchange("items-admin", "items:admin"),
            o1 = obo("graph", "Items.Read"),
            o2 = obo("graph-write", "Items.Write"),
            o3 = obo("graph-admin", "Items.Admin"),
            t1 = tool("list_items", "items", "/items"),
            t2 = tool("rejected_items", "items", "/status/401"),
            t3 = tool("admin_items", "items-admin", "/admin"),
            t4 = tool("graph_items", "graph", "/graph/items"),
            t5 = tool("graph_write", "graph-write", "/graph/write"),
            t6 = tool("graph_admin", "graph-admin", "/graph/admin"),
            t7 = tool("graph_rejected", "graph", "/status/401"),
        );
        let config =
            warden::config::parse(&yaml, &std::collections::HashMap::<String, String>::new()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let clock = Arc::new(warden::clock::ManualClock::default());
        let gw = warden::Gateway::build_with_clock(&config, clock.clone()).unwrap();
        let audit = Arc::clone(&gw.audit);
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(warden::run(gw, listener, shutdown.clone().cancelled_owned()));
        Self { mcp: resource, idp, upstream, clock, audit, audit_path, child, shutdown, _dir: dir }
    }

    async fn call(&self, token: &str, tool: &str) -> Value {
        let http = reqwest::Client::new();
        let (_, _, body) = crate::common::mcp_post(&http, &self.mcp, token, &crate::common::tool_call(1, tool, json!({}))).await;
        assert!(body.get("error").is_none(), "{tool}: {body}");
        body["result"].clone()
    }

    async fn exchanges(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/exchanges", self.idp)).await.unwrap().json().await.unwrap();
        v["exchanged"].as_u64().unwrap()
    }

    /// Calls `tool`, whose upstream rejects every token: the upstream sees exactly two tries,
    /// the second with a freshly exchanged token, and the caller an `isError` result.
    async fn rejected_once(&self, token: &str, tool: &str) {
        let before = self.upstream.requests().len();
        assert_eq!(self.call(token, tool).await["isError"], true);
        let tries = &self.upstream.requests()[before..];
        assert_eq!(tries.len(), 2, "one replay");
        assert_ne!(tries[0].headers["authorization"], tries[1].headers["authorization"], "with a fresh exchange");
    }

    /// The bearer token the upstream received on its last request.
    fn last_bearer(&self) -> String {
        let last = self.upstream.last();
        last.headers["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned()
    }

    fn audit(&self) -> Vec<Value> {
        assert!(self.audit.flush(Duration::from_secs(10)));
        std::fs::read_to_string(&self.audit_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn text(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

/// RFC 8693 at node-oidc-provider: the upstream receives a token the IdP issued for it, for the
/// caller, naming Warden as the actor; reused until shortly before it expires, then exchanged
/// again; one more exchange (and one replay) when the upstream rejects it; each caller their
/// own; a scope the IdP will not delegate is a tool error carrying the IdP's error, and nothing
/// reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and oidc-provider: run scripts/test"]
async fn rfc8693_token_exchange_at_a_real_authorization_server() {
    let c = Company::start().await;
    let alice = sign_in(&c.idp, &c.mcp, "alice").await;

    let result = c.call(&alice, "list_items").await;
    assert!(result["isError"] != true, "{result}");
    let first = c.last_bearer();
    assert_ne!(first, alice, "never the caller's token");
    let claims = downstream_claims(&c.idp, &first, &c.upstream.url).await;
    assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("alice"), Some("items:read")));
    assert_eq!(claims["act"], json!({"sub": "warden-exchange"}), "Warden acts for alice");
    assert_eq!(c.exchanges().await, 1);

    // Cached per caller: the same token again, no second exchange.
    c.call(&alice, "list_items").await;
    assert_eq!((c.last_bearer(), c.exchanges().await), (first.clone(), 1));
    // Concurrent calls of another caller: one exchange for all of them, their own token.
    let bob = sign_in(&c.idp, &c.mcp, "bob").await;
    let calls: Vec<_> = (0..8).map(|_| c.call(&bob, "list_items")).collect();
    futures::future::join_all(calls).await;
    assert_eq!(c.exchanges().await, 2, "single flight per caller");
    let bobs = c.last_bearer();
    assert_eq!(downstream_claims(&c.idp, &bobs, &c.upstream.url).await["sub"], "bob");

    // Expiry: 90 s tokens are exchanged again 60 s before they expire.
    c.clock.advance(Duration::from_secs(31));
    c.call(&alice, "list_items").await;
    let renewed = c.last_bearer();
    assert_ne!(renewed, first, "exchanged again before expiry");
    assert_eq!(c.exchanges().await, 3);

    // Rejected upstream: one more exchange and one replay, never more.
    c.rejected_once(&alice, "rejected_items").await;
    assert_eq!(c.exchanges().await, 4);

    // Refused by the IdP: its error reaches the caller, nothing reaches the upstream.
    let before = c.upstream.requests().len();
    let refused = c.call(&alice, "admin_items").await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert!(text(&refused).contains("invalid_scope"), "{refused}");
    assert_eq!(c.upstream.requests().len(), before);

    let events = c.audit();
    let ok = events.iter().find(|e| e["tool"] == "list_items" && e["decision"] == "allow").unwrap();
    assert_eq!(ok["credential"], "items");
    assert_eq!(ok["delegation"]["depth"], 2, "the MCP client and Warden: {ok}");
    assert!(ok["delegation"]["actor"]["sub"].is_string(), "the MCP client: {ok}");
    let denied = events.iter().find(|e| e["tool"] == "admin_items").unwrap();
    assert_eq!((denied["decision"].as_str(), denied["reason"].as_str()), (Some("deny"), Some("token_exchange_refused")));
    assert_eq!(denied["explanation"], "invalid_scope");
    let audit_text = events.iter().map(Value::to_string).collect::<String>();
    assert!(!audit_text.contains(&first) && !audit_text.contains(&alice), "no token in the audit trail");
}

/// Entra's on-behalf-of as emulated at node-oidc-provider: success for a consented scope, reuse,
/// renewal before expiry and a fresh exchange when the upstream rejects the token; consent
/// required and MFA required reach the caller in Entra's words (AADSTS codes); nothing reaches
/// the upstream then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node and oidc-provider: run scripts/test"]
async fn entra_on_behalf_of_with_consent_and_mfa_refusals() {
    let c = Company::start().await;
    let alice = sign_in(&c.idp, &c.mcp, "alice").await;

    let result = c.call(&alice, "graph_items").await;
    assert!(result["isError"] != true, "{result}");
    let token = c.last_bearer();
    let claims = downstream_claims(&c.idp, &token, &c.upstream.url).await;
    assert_eq!(
        (claims["sub"].as_str(), claims["scp"].as_str(), claims["azp"].as_str()),
        (Some("alice"), Some("Items.Read"), Some("warden-obo"))
    );
    c.call(&alice, "graph_items").await;
    assert_eq!((c.last_bearer(), c.exchanges().await), (token.clone(), 1), "reused");
    // Expiry: exchanged again 60 s before the 90 s token expires.
    c.clock.advance(Duration::from_secs(31));
    c.call(&alice, "graph_items").await;
    assert_ne!(c.last_bearer(), token);
    assert_eq!(c.exchanges().await, 2);
    // Rejected upstream: one more on-behalf-of exchange and one replay.
    c.rejected_once(&alice, "graph_rejected").await;
    assert_eq!(c.exchanges().await, 3);

    let before = c.upstream.requests().len();
    let consent = c.call(&alice, "graph_write").await;
    assert_eq!(consent["isError"], true);
    let said = text(&consent);
    assert!(said.contains("invalid_grant (consent_required)") && said.contains("AADSTS65001"), "{said}");
    let mfa = c.call(&alice, "graph_admin").await;
    let said = text(&mfa);
    assert!(said.contains("interaction_required") && said.contains("AADSTS50076"), "{said}");
    assert_eq!(c.upstream.requests().len(), before, "nothing reached the upstream");

    let events = c.audit();
    let consent = events.iter().find(|e| e["tool"] == "graph_write").unwrap();
    assert_eq!(
        (consent["reason"].as_str(), consent["explanation"].as_str()),
        (Some("token_exchange_refused"), Some("invalid_grant (consent_required)"))
    );
    assert!(!consent.to_string().contains("AADSTS"), "the audit keeps the code, not the IdP's prose");
}

/// Starts an assertion-verifying backend (`assertion_backend.py` or `.mjs`) trusting Warden at
/// `gateway`; returns its URL and the child to kill.
fn start_backend(kind: &str, gateway: &str) -> (String, std::process::Child) {
    let script = format!("{}/tests/interop/assertion_backend.{kind}", env!("CARGO_MANIFEST_DIR"));
    let (port, child) = if kind == "py" {
        use std::io::BufRead;
        let python = std::env::var("WARDEN_PYTHON").expect("WARDEN_PYTHON must name a Python with PyJWT: run scripts/test");
        let mut child = std::process::Command::new(python)
            .args([script.as_str(), "--issuer", gateway])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot start the PyJWT backend");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("ready ")).expect("the PyJWT backend did not start");
        std::thread::spawn(move || lines.for_each(drop));
        (ready.trim_start_matches("ready ").to_owned(), child)
    } else {
        crate::start_node_issuer(&[script.as_str(), "--issuer", gateway])
    };
    (format!("http://127.0.0.1:{port}"), child)
}

/// Backends nobody here wrote the verification of — PyJWT and jose — accept the assertion
/// against the live JWKS, refuse one for another audience and one Warden did not sign, and keep
/// accepting across a key rotation (the new key published first, then signing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PyJWT and jose: run scripts/test"]
async fn pyjwt_and_jose_backends_verify_the_assertion_against_the_live_jwks() {
    warden::install_crypto();
    let issuer = crate::common::TestIssuer::start().await;
    let (listener, gateway) = listen().await;
    let (py, py_child) = start_backend("py", &gateway);
    let (js, js_child) = start_backend("mjs", &gateway);
    let _backends = (Kill(py_child), Kill(js_child));
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vault.db").display());
    let keys = crate::common::provider::keyring();
    let yaml = format!(
        "server:\n  listen: {addr}\n  public_url: {gateway}\nidentity:\n  issuers:\n    - {{issuer: \"{iss}\"}}\n\
         identity_headers:\n  assertion: {{ttl: 10m}}\nvault:\n  database: \"{db}\"\n  keys: \"{keys}\"\n\
         upstream:\n  allow_cidrs: [127.0.0.1/32]\naudit:\n  output: off\ntools:\n\
         \x20 - {{name: py_whoami, description: Who am I., http: {{url: \"{py}/whoami\"}}}}\n\
         \x20 - {{name: js_whoami, description: Who am I., http: {{url: \"{js}/whoami\"}}}}\n\
         \x20 - {{name: py_elsewhere, description: Misconfigured., audience: \"https://elsewhere.example\", http: {{url: \"{py}/x\"}}}}\n\
         \x20 - {{name: js_elsewhere, description: Misconfigured., audience: \"https://elsewhere.example\", http: {{url: \"{js}/x\"}}}}\n",
        addr = listener.local_addr().unwrap(),
        iss = issuer.url,
    );
    let config =
        warden::config::parse(&yaml, &std::collections::HashMap::<String, String>::new()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    // Warden's clock starts 400 s behind the backends' (the machine's), so the test can move it
    // through a rotation while every assertion stays valid for backends that keep real time.
    let clock = Arc::new(warden::clock::ManualClock::starting_at(std::time::SystemTime::now() - Duration::from_secs(400)));
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(warden::run(
        warden::Gateway::build_with_clock(&config, clock.clone()).unwrap(),
        listener,
        shutdown.clone().cancelled_owned(),
    ));
    let mcp = format!("{gateway}/mcp");
    let mut claims = issuer.claims("alice", "", &mcp);
    claims["exp"] = json!(crate::common::now() + 3600);
    claims["iat"] = json!(crate::common::now() - 500);
    claims.as_object_mut().unwrap().remove("nbf");
    let alice = issuer.sign(&claims);
    let http = reqwest::Client::new();
    let call = |tool: &'static str| {
        let (http, mcp, alice) = (http.clone(), mcp.clone(), alice.clone());
        async move {
            let (_, _, body) = crate::common::mcp_post(&http, &mcp, &alice, &crate::common::tool_call(1, tool, json!({}))).await;
            body["result"].clone()
        }
    };

    let mut first_kid = String::new();
    for (tool, by) in [("py_whoami", "PyJWT"), ("js_whoami", "jose")] {
        let result = call(tool).await;
        assert!(result["isError"] != true, "{tool}: {result}");
        let verified = &result["structuredContent"];
        assert!(verified["verified_by"].as_str().unwrap().starts_with(by), "{verified}");
        assert_eq!((verified["claims"]["sub"].as_str(), verified["claims"]["iss"].as_str()), (Some("alice"), Some(gateway.as_str())));
        assert_eq!(verified["claims"]["act"]["sub"], "test-client");
        first_kid = verified["kid"].as_str().unwrap().to_owned();
    }
    for tool in ["py_elsewhere", "js_elsewhere"] {
        let refused = call(tool).await;
        assert_eq!(refused["isError"], true, "{tool}: {refused}");
        let said = text(&refused);
        assert!(said.contains("401") && said.to_lowercase().contains("aud"), "{tool}: {said}");
    }
    // A token Warden did not sign, sent straight to the backends.
    let forger = warden::signing::SigningKey::generate(warden::signing::ASSERTIONS).unwrap();
    let now = crate::common::now();
    for backend in [&py, &js] {
        let forged = forger
            .sign("warden-identity+jwt", &json!({"iss": gateway, "aud": backend, "sub": "root", "iat": now, "exp": now + 60}))
            .unwrap();
        let r = http.get(format!("{backend}/whoami")).header("x-warden-identity", forged).send().await.unwrap();
        assert_eq!(r.status(), 401, "{backend}: {}", r.text().await.unwrap());
    }

    // Rotation: published at once, signing once backends' caches can have it; both backends
    // follow without a restart.
    let ring = warden::credentials::envelope::KeyRing::parse(&warden::secret::Secret::new(keys)).unwrap();
    let store = warden::store::Store::open(&db, Arc::new(ring)).await.unwrap().with_clock(clock.clone());
    let rotated = warden::signing::KeySet::rotate(&store, warden::signing::ASSERTIONS).await.unwrap();
    let new_kid = rotated.current(warden::signing::ASSERTIONS).unwrap().kid.clone();
    for (advance, expected) in [(61, &first_kid), (240, &new_kid)] {
        clock.advance(Duration::from_secs(advance));
        for tool in ["py_whoami", "js_whoami"] {
            let result = call(tool).await;
            let published = http.get(format!("{gateway}/.well-known/jwks.json")).send().await.unwrap().text().await.unwrap();
            assert!(result["isError"] != true, "{tool} after {advance}s: {result}\npublished: {published}");
            assert_eq!(result["structuredContent"]["kid"].as_str(), Some(expected.as_str()), "{tool} after {advance}s");
        }
    }
    shutdown.cancel();
}

/// A child process killed when the test ends, passed or not.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// A federated MCP server that admits only the IdP's tokens: each caller gets their own upstream
/// session with a token exchanged for them, and the server sees each caller as themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python SDK 1.x, Node and oidc-provider: run scripts/test"]
async fn a_federated_server_sees_each_caller_through_their_own_exchanged_token() {
    use std::io::BufRead;
    let server = std::sync::Mutex::new(None);
    let start = |issuer: &str, audience: &str| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let python = std::env::var("WARDEN_PYTHON_1X").expect("WARDEN_PYTHON_1X must name a Python with mcp 1.x: run scripts/test");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/exchange_mcp_server.py");
        let mut child = std::process::Command::new(python)
            .args([script, port.as_str(), issuer, audience])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot start the MCP server");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.by_ref().map_while(Result::ok).any(|l| l == "ready"), "the MCP server did not start");
        std::thread::spawn(move || lines.for_each(drop));
        *server.lock().unwrap() = Some(Kill(child));
        format!("http://127.0.0.1:{port}/mcp")
    };
    let c = Company::start_with(Some(&start)).await;
    let alice = sign_in(&c.idp, &c.mcp, "alice").await;
    let bob = sign_in(&c.idp, &c.mcp, "bob").await;
    // As with a per-user connection, the server's catalog comes through the first caller's
    // session: `fed_connect` opens alice's (nothing to connect: her token is exchanged).
    let connected = c.call(&alice, "fed_connect").await;
    assert!(connected["isError"] != true, "{connected}");
    let http = reqwest::Client::new();
    let listed = crate::common::eventually(
        || async {
            let (_, _, body) =
                crate::common::mcp_post(&http, &c.mcp, &alice, &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
            body["result"]["tools"].as_array().cloned().unwrap_or_default()
        },
        |tools| tools.iter().any(|t| t["name"] == "fed_whoami"),
    )
    .await;
    assert!(listed.iter().any(|t| t["name"] == "fed_whoami"));
    for (token, who) in [(&alice, "alice"), (&bob, "bob"), (&alice, "alice")] {
        let result = c.call(token, "fed_whoami").await;
        assert!(result["isError"] != true, "{who}: {result}");
        // FastMCP 1.x sends a dict as JSON text.
        let seen: Value = serde_json::from_str(&text(&result)).unwrap_or_else(|e| panic!("{e}: {result}"));
        assert_eq!(seen["sub"], who, "{result}");
        assert_eq!((seen["act"]["sub"].as_str(), seen["scope"].as_str()), (Some("warden-exchange"), Some("items:read")));
    }
    let events = c.audit();
    let call = events.iter().find(|e| e["tool"] == "fed_whoami" && e["decision"] == "allow").unwrap();
    assert_eq!((call["server"].as_str(), call["credential"].as_str()), (Some("fed"), Some("items")));
    assert_eq!(call["delegation"]["depth"], 2, "{call}");
    drop(server);
}
