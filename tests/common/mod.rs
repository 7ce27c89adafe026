//! Test harness: a real JWKS issuer over HTTP, a recording upstream, and the gateway running
//! in-process, all on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden::demo::{Demo, DemoOptions};
use warden::devidp::SigningKey;

pub mod provider;

pub async fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

pub fn serve(listener: TcpListener, app: Router) {
    tokio::spawn(async move { axum::serve(listener, app).await });
}

pub use warden::unix_now as now;

/// The demo's calendar backend, seeded and served on 127.0.0.1:0: the calendar (to read what it
/// saw) and its URL.
pub async fn calendar() -> (Arc<warden::demo::backend::Calendar>, String) {
    let calendar = warden::demo::backend::Calendar::seeded();
    let (listener, url) = listen().await;
    serve(listener, warden::demo::backend::router(calendar.clone()));
    (calendar, url)
}

/// A token issuer that serves its JWKS and metadata over HTTP.
pub struct TestIssuer {
    pub url: String,
    served: Arc<ArcSwap<Vec<Arc<SigningKey>>>>,
    pub signing: ArcSwap<SigningKey>,
    pub jwks_hits: Arc<AtomicUsize>,
    pub down: Arc<AtomicBool>,
}

#[derive(Clone)]
struct IssuerState {
    url: String,
    served: Arc<ArcSwap<Vec<Arc<SigningKey>>>>,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl TestIssuer {
    pub async fn start() -> Self {
        warden::install_crypto();
        let (listener, url) = listen().await;
        let key = Arc::new(SigningKey::generate().unwrap());
        let served = Arc::new(ArcSwap::from_pointee(vec![Arc::clone(&key)]));
        let hits = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let state = IssuerState { url: url.clone(), served: Arc::clone(&served), hits: Arc::clone(&hits), down: Arc::clone(&down) };
        let app = Router::new().route("/jwks", get(jwks)).route("/.well-known/oauth-authorization-server", get(metadata)).with_state(state);
        serve(listener, app);
        let signing = ArcSwap::new(key);
        Self { url, served, signing, jwks_hits: hits, down }
    }

    /// Switches signing to a new key; the JWKS then serves `also_old` ? both : only the new one.
    pub fn rotate(&self, also_old: bool) -> Arc<SigningKey> {
        let new = Arc::new(SigningKey::generate().unwrap());
        let mut keys = vec![Arc::clone(&new)];
        if also_old {
            keys.push(self.signing.load_full());
        }
        self.served.store(Arc::new(keys));
        self.signing.store(Arc::clone(&new));
        new
    }

    /// A key that signs but is not (yet) published.
    pub fn sign_unpublished(&self, claims: &Value) -> (String, Arc<SigningKey>) {
        let key = Arc::new(SigningKey::generate().unwrap());
        (key.sign(claims).unwrap(), key)
    }

    pub fn publish(&self, key: Arc<SigningKey>) {
        let mut keys: Vec<Arc<SigningKey>> = self.served.load().iter().cloned().collect();
        keys.push(key);
        self.served.store(Arc::new(keys));
    }

    /// Standard valid claims for `sub` with `scope`, for `audience`.
    pub fn claims(&self, sub: &str, scope: &str, audience: &str) -> Value {
        let now = now();
        json!({"iss": self.url, "sub": sub, "aud": audience, "exp": now + 600, "iat": now, "nbf": now - 1, "scope": scope, "client_id": "test-client"})
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.signing.load().sign(claims).unwrap()
    }
}

async fn jwks(State(s): State<IssuerState>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = s.served.load();
    let refs: Vec<&SigningKey> = keys.iter().map(|k| k.as_ref()).collect();
    axum::Json(json!(SigningKey::jwks(&refs))).into_response()
}

async fn metadata(State(s): State<IssuerState>) -> Response {
    axum::Json(json!({"issuer": s.url, "jwks_uri": format!("{}/jwks", s.url)})).into_response()
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// An upstream that records every request. Paths: `/status/{code}` answers that status,
/// `/busy/{secs}` answers 429 with `Retry-After: secs` (`/busy-reset/{secs}`: with
/// `RateLimit-Reset`), `/slow` sleeps 30 s, `/text` answers plain text, `/array` a JSON array,
/// `/cookie` sets a cookie, `/big` is 256 KiB with a length and `/big-stream` 256 KiB streamed,
/// anything else echoes.
pub struct Upstream {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub async fn start() -> Self {
        let (listener, url) = listen().await;
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(upstream_handler).with_state(Arc::clone(&received));
        serve(listener, app);
        Self { url, received }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.requests().pop().expect("upstream received no request")
    }
}

async fn upstream_handler(State(log): State<Arc<Mutex<Vec<Received>>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default().to_vec();
    let path = parts.uri.path().to_owned();
    log.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if let Some(secs) = path.strip_prefix("/busy/") {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_owned())], "slow down").into_response();
    }
    if let Some(secs) = path.strip_prefix("/busy-reset/") {
        return (StatusCode::TOO_MANY_REQUESTS, [("ratelimit-reset", secs.to_owned())], "slow down").into_response();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return (status, format!("backend says {code}")).into_response();
    }
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late".into_response()
        }
        "/text" => "plain words".into_response(),
        "/cookie" => ([("set-cookie", "session=upstream; Path=/"), ("x-upstream", "yes")], "with a cookie").into_response(),
        "/big" => vec![b'x'; 256 * 1024].into_response(),
        "/big-stream" => {
            let chunks = futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 4096]))));
            axum::body::Body::from_stream(chunks).into_response()
        }
        "/array" => axum::Json(json!([1, 2, 3])).into_response(),
        _ => axum::Json(json!({"path": path, "query": parts.uri.query(), "body": String::from_utf8_lossy(&body)})).into_response(),
    }
}

/// A gateway running in-process.
pub struct TestGateway {
    pub url: String,
    pub mcp: String,
    pub audit_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    pub http: reqwest::Client,
    /// The gateway's audit queue, flushed before the file is read.
    pub audit_sink: std::sync::Arc<warden::audit::AuditSink>,
    /// The gateway's clock: it stands still until a test advances it.
    pub clock: std::sync::Arc<warden::clock::ManualClock>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds a config from `tools_yaml` (the `tools:` list, indented by two) and `extra` top-level
/// YAML, trusting `issuer`.
pub async fn gateway(issuer: &TestIssuer, tools_yaml: &str, extra: &str) -> TestGateway {
    gateway_with(&[issuer], tools_yaml, extra, "").await
}

/// As [`gateway`], trusting every issuer given, with extra lines (indented by two) in the
/// `server:` block.
pub async fn gateway_with(issuers: &[&TestIssuer], tools_yaml: &str, extra: &str, server_extra: &str) -> TestGateway {
    let (listener, url) = listen().await;
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let yaml = format!(
        "server:\n  listen: {addr}\n  public_url: {url}\n  max_body_bytes: 65536\n{server_extra}identity:\n  issuers:\n{issuers}{extra}\naudit:\n  output: {audit}\ntools:\n{tools_yaml}\n",
        addr = listener.local_addr().unwrap(),
        issuers = issuers
            .iter()
            .map(|i| format!("    - issuer: {}\n      jwks_min_refresh: 1s\n      jwks_ttl: 1s\n      tenant_claim: org_id\n", i.url))
            .collect::<String>(),
        audit = audit_path.display(),
    );
    let config = warden::config::parse(&yaml, &HashMap::<String, String>::new()).unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
    let clock = std::sync::Arc::new(warden::clock::ManualClock::default());
    let gw = warden::Gateway::build_with_clock(&config, clock.clone()).unwrap_or_else(|e| panic!("build: {e}"));
    let audit_sink = std::sync::Arc::clone(&gw.audit);
    let shutdown = CancellationToken::new();
    tokio::spawn(warden::run(gw, listener, shutdown.clone().cancelled_owned()));
    TestGateway { mcp: format!("{url}/mcp"), url, audit_path, _dir: dir, shutdown, http: reqwest::Client::new(), audit_sink, clock }
}

/// A JSON-RPC response as the test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn challenge(&self) -> &str {
        self.headers.get("www-authenticate").map(|v| v.to_str().unwrap()).unwrap_or("")
    }
    pub fn error_code(&self) -> Option<i64> {
        self.body["error"]["code"].as_i64()
    }
    pub fn result(&self) -> &Value {
        &self.body["result"]
    }
}

impl TestGateway {
    /// POSTs `body` with `headers`, and `MCP-Protocol-Version: 2025-11-25` unless they name one.
    pub async fn post_raw(&self, token: Option<&str>, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> Reply {
        let mut headers = headers.to_vec();
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("mcp-protocol-version")) {
            headers.push(("mcp-protocol-version", "2025-11-25"));
        }
        self.post_exact(token, body, &headers).await
    }

    /// POSTs `body` with exactly these headers (beside the content type, `Accept` and the token).
    pub async fn post_exact(&self, token: Option<&str>, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .http
            .post(&self.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    /// `initialize` on 2025-11-25 declaring `capabilities`: the session id Warden hands back,
    /// if any.
    pub async fn initialize_session(&self, token: &str, capabilities: Value) -> Option<String> {
        let params = json!({"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "t", "version": "1"}});
        let reply = self.rpc(token, "initialize", params).await;
        assert_eq!(reply.result()["protocolVersion"], "2025-11-25", "{reply:?}");
        reply.headers.get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned())
    }

    /// A 2025-11-25 POST of `body` in `session`, if given, whose response the test reads as it
    /// comes (a JSON body or an SSE stream).
    pub fn post_in_session(&self, token: &str, session: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let mut request = reqwest::Client::new()
            .post(&self.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("authorization", format!("Bearer {token}"))
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request
    }

    /// A 2026-07-28 `tools/call` of `tool` whose client declares `capabilities`, with `extra`
    /// params (`inputResponses`, `requestState`).
    pub async fn call_2026(&self, token: &str, tool: &str, capabilities: Value, extra: Value) -> Reply {
        let mut params = json!({"name": tool, "arguments": {}, "_meta": meta_2026(capabilities)});
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}).to_string();
        self.post_raw(Some(token), body, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", tool)]).await
    }

    pub async fn rpc(&self, token: &str, method: &str, params: Value) -> Reply {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.post_raw(Some(token), body.to_string(), &[]).await
    }

    pub async fn call(&self, token: &str, tool: &str, args: Value) -> Reply {
        self.rpc(token, "tools/call", json!({"name": tool, "arguments": args})).await
    }

    pub async fn tool_names(&self, token: &str) -> Vec<String> {
        let r = self.rpc(token, "tools/list", json!({})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.result()["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }

    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.url)
    }

    /// Audit events emitted so far (the queue is flushed first).
    pub fn audit(&self) -> Vec<Value> {
        self.audit_text().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The audit file as text, once every event emitted so far is written.
    pub fn audit_text(&self) -> String {
        assert!(self.audit_sink.flush(Duration::from_secs(10)), "the audit writer did not flush");
        std::fs::read_to_string(&self.audit_path).unwrap_or_default()
    }
}

/// The demo (dev authorization server, calendar backend, gateway) on free ports, auto-approving
/// sign-ins as `auto_approve` when given. Cancel the token to stop it.
pub async fn demo(auto_approve: Option<&str>) -> (Demo, CancellationToken) {
    demo_with(auto_approve, None).await
}

/// As [`demo`], with the gateway's 401 challenge asking for `challenge_scopes`.
pub async fn demo_with(auto_approve: Option<&str>, challenge_scopes: Option<Vec<String>>) -> (Demo, CancellationToken) {
    demo_options(auto_approve, |o| o.challenge_scopes = challenge_scopes).await
}

/// As [`demo`], with options of the test's.
pub async fn demo_options(auto_approve: Option<&str>, set: impl FnOnce(&mut DemoOptions)) -> (Demo, CancellationToken) {
    warden::install_crypto();
    let shutdown = CancellationToken::new();
    let mut options = DemoOptions {
        gateway_port: 0,
        idp_port: 0,
        backend_port: 0,
        auto_approve: auto_approve.map(str::to_owned),
        audit: "off".into(),
        ..DemoOptions::default()
    };
    set(&mut options);
    (Demo::start(options, shutdown.clone()).await.unwrap(), shutdown)
}

/// POSTs one JSON-RPC message to an MCP endpoint as a Streamable HTTP client does.
pub async fn mcp_post(http: &reqwest::Client, url: &str, token: &str, message: &Value) -> (u16, http::HeaderMap, Value) {
    let r = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(message)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// A `tools/call` message.
pub fn tool_call(id: i64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

/// Where a test's vault lives: a fresh SQLite file, or a fresh database on the PostgreSQL server
/// scripts/test started.
pub struct Db {
    pub url: String,
    pub _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self { url: format!("sqlite://{}", dir.path().join("vault.db").display()), _dir: Some(dir) }
    }

    /// A fresh database on the server scripts/test started, so tests running at once never see
    /// each other's rows.
    pub async fn postgres() -> Self {
        let base = std::env::var("WARDEN_POSTGRES_URL").unwrap_or_else(|_| panic!("WARDEN_POSTGRES_URL must be set: run scripts/test"));
        let name = format!("vault_{}", uuid::Uuid::now_v7().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
        sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        let (server, _) = base.rsplit_once('/').unwrap();
        Self { url: format!("{server}/{name}"), _dir: None }
    }

    /// Every byte the database holds, for the plaintext check.
    pub fn dump(&self) -> String {
        match &self._dir {
            Some(dir) => {
                let mut all = Vec::new();
                for entry in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                    all.extend(std::fs::read(entry.path()).unwrap_or_default());
                }
                String::from_utf8_lossy(&all).into_owned()
            }
            None => {
                let out = std::process::Command::new("pg_dump").args(["--data-only", &self.url]).output().unwrap();
                assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        }
    }
}

/// A `warden serve` child process, killed if a test fails before it stops it.
pub struct Serving(pub std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Serving {
    /// Starts `warden serve --config PATH` (stderr discarded) and waits until `url` answers
    /// `/healthz`.
    pub async fn start(config: &std::path::Path, url: &str) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["serve", "--config"])
            .arg(config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let serving = Self(child);
        let http = reqwest::Client::new();
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while http.get(format!("{url}/healthz")).send().await.is_err() {
            assert!(std::time::Instant::now() < end, "serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serving
    }
}

/// Asks `probe` every 100 ms, for up to 10 s, until `done` holds for its answer; returns the
/// last answer (the caller asserts on it).
pub async fn eventually<T, Fut: std::future::Future<Output = T>>(mut probe: impl FnMut() -> Fut, done: impl Fn(&T) -> bool) -> T {
    let mut last = probe().await;
    for _ in 0..100 {
        if done(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = probe().await;
    }
    last
}

/// A test CA and a certificate for `localhost` it signed (a self-signed leaf cannot be its own
/// trust anchor in webpki), made by openssl in `dir`: paths to the PEM files.
pub struct TestCertificates {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub fn test_certificates(dir: &std::path::Path) -> TestCertificates {
    let at = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (ca, ca_key, cert, key, csr, ext) = (at("ca.pem"), at("ca.key"), at("cert.pem"), at("key.pem"), at("leaf.csr"), at("leaf.ext"));
    std::fs::write(&ext, "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ca_subject = ["-subj", "/CN=warden-test-ca", "-keyout", &ca_key, "-out", &ca];
    openssl(&[&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"][..], &ca_subject].concat());
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]);
    let sign = ["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-days", "1"];
    openssl(&[&sign[..], &["-extfile", &ext, "-out", &cert]].concat());
    TestCertificates { ca, cert, key }
}

/// The JSON-RPC messages of an SSE body, one at a time.
pub struct SseEvents {
    bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseEvents {
    pub fn of(response: reqwest::Response) -> Self {
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { bytes: futures::StreamExt::boxed(response.bytes_stream()), buffer: String::new() }
    }

    pub async fn next(&mut self) -> Value {
        self.next_within(std::time::Duration::from_secs(10)).await.expect("an SSE event within 10 s")
    }

    /// The next message, if one comes within `wait`.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut self.bytes)).await.ok()??.unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// The `_meta` a 2026-07-28 request carries: its revision, the client's name, `capabilities`.
pub fn meta_2026(capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    })
}

/// A request to an MCP server of the older revisions, which does not know `server/discover`:
/// `Err` with its answer (-32601) to that one; `Ok` with the request, to serve, otherwise.
pub async fn refuse_discover(request: Request) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or_default();
    if message["method"] == "server/discover" {
        let error = json!({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "Method not found"}});
        return Err(([("content-type", "application/json")], error.to_string()).into_response());
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(body)))
}
