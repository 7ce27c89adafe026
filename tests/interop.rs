//! Interop with MCP clients nobody here wrote: the official Python SDK (latest and last 1.x)
//! and the official TypeScript client (`@modelcontextprotocol/sdk` 1.x and
//! `@modelcontextprotocol/client` 2.x) complete the whole OAuth flow against Warden and the
//! development authorization server, headless, including the 403 step-up; and the Python SDK
//! handles a per-user upstream connection's URL elicitation (-32042), then succeeds.
//!
//! Needs the SDKs: `scripts/test` installs them and runs these with `WARDEN_PYTHON`,
//! `WARDEN_PYTHON_1X` and `WARDEN_NODE_BIN` set (they are `#[ignore]`d in a plain `cargo test`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::process::Command;

use serde_json::{Value, json};

mod common;
use common::demo;

#[path = "interop/enterprise.rs"]
mod enterprise;

#[path = "interop/delegation.rs"]
mod delegation;

/// The SDK generations under test: the latest release and the last 1.x.
fn pythons() -> Vec<(&'static str, String)> {
    ["WARDEN_PYTHON", "WARDEN_PYTHON_1X"]
        .into_iter()
        .map(|var| (var, std::env::var(var).unwrap_or_else(|_| panic!("{var} must name a Python with the mcp package: run scripts/test"))))
        .collect()
}

/// Runs the Python client and returns its JSON report.
async fn run_client(python: String, url: &str, tool: &str, args: Value) -> Value {
    run_client_with(python, url, tool, args, &[]).await
}

/// As [`run_client`], with more command-line arguments.
pub async fn run_client_with(python: String, url: &str, tool: &str, args: Value, extra: &[&str]) -> Value {
    try_client(python, url, tool, args, extra).await.unwrap_or_else(|e| panic!("python client failed:\n{e}"))
}

/// Runs the Python client: its report, or what it printed when it failed.
pub async fn try_client(python: String, url: &str, tool: &str, args: Value, extra: &[&str]) -> Result<Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_client.py");
    let mut argv: Vec<String> =
        [script, "--url", url, "--tool", tool, "--args", &args.to_string()].iter().map(|s| (*s).to_owned()).collect();
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    let output = tokio::task::spawn_blocking(move || Command::new(python).args(&argv).output())
        .await
        .unwrap()
        .expect("cannot run the Python client");
    report(output)
}

/// A client script's last line as its JSON report, or what it printed when it failed.
pub fn report(output: std::process::Output) -> Result<Value, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    }
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).map_err(|e| format!("bad report ({e}): {stdout}"))
}

/// The exchanges as `METHOD path STATUS`, hosts dropped.
pub fn flow(report: &Value) -> Vec<String> {
    report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let url = url::Url::parse(e["url"].as_str().unwrap()).unwrap();
            format!("{} {} {}", e["method"].as_str().unwrap(), url.path(), e["status"])
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs the Python SDK virtualenv: run scripts/test"]
async fn python_sdk_signs_in_and_calls_a_tool() {
    for (var, python) in pythons() {
        python_sdk_flow(var, python).await;
    }
}

async fn python_sdk_flow(var: &str, python: String) {
    let (demo, shutdown) = demo(Some("alice")).await;
    let report = run_client(python, &demo.mcp_url, "list_events", json!({"limit": 5})).await;
    eprintln!("{var}: mcp SDK {}", report["sdk_version"]);
    let major = report["sdk_version"].as_str().and_then(|v| v.split('.').next()).unwrap_or_default().to_owned();
    assert_eq!(major == "1", var == "WARDEN_PYTHON_1X", "{var} runs SDK {}", report["sdk_version"]);
    assert_eq!(
        flow(&report)[..6],
        [
            "POST /mcp 401",
            "GET /.well-known/oauth-protected-resource/mcp 200",
            "GET /.well-known/oauth-authorization-server 200",
            "POST /register 201",
            "POST /token 200",
            "POST /mcp 200",
        ]
    );
    assert_eq!(report["tools"], json!(["whoami", "list_events", "create_event", "get_record", "my_notes"]));
    let result = &report["result"];
    assert_eq!(result["isError"], false, "{result}");
    let events = result["structuredContent"]["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["owner"] == "alice"), "{events:?}");
    let seen = demo.calendar.seen();
    let last = seen.last().expect("the backend was not called");
    assert_eq!(last.headers["x-user-id"], "alice");
    assert!(!last.headers.contains_key("authorization"), "the client's token reached the backend");
    shutdown.cancel();
}

#[tokio::test]
#[ignore = "needs the Python SDK virtualenv: run scripts/test"]
async fn python_sdk_user_without_write_scope_sees_fewer_tools() {
    let (demo, shutdown) = demo(Some("bob")).await;
    let (_, python) = pythons().remove(0);
    let report = run_client(python, &demo.mcp_url, "whoami", json!({})).await;
    assert_eq!(report["tools"], json!(["whoami", "list_events"]));
    assert_eq!(report["result"]["structuredContent"]["user_id"], "bob");
    assert_eq!(demo.calendar.seen().last().unwrap().headers["x-user-id"], "bob");
    shutdown.cancel();
}

/// Runs the TypeScript client against a demo whose 401 challenge asks for calendar:read only, so
/// creating an event needs a step-up to calendar:write.
async fn ts_step_up(package: &str, keep_refresh_tokens: bool) -> Value {
    let bin = std::env::var("WARDEN_NODE_BIN").expect("WARDEN_NODE_BIN must name the directory holding node: run scripts/test");
    let modules = std::path::Path::new(&bin).parent().unwrap().to_owned();
    let (demo, shutdown) = common::demo_with(Some("alice"), Some(vec!["calendar:read".into()])).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ts_client.mjs");
    let args = [
        script.to_owned(),
        "--url".into(),
        demo.mcp_url.clone(),
        "--tool".into(),
        "create_event".into(),
        "--args".into(),
        json!({"title": "Step-up", "start": "2026-12-24T10:00:00Z"}).to_string(),
        "--package".into(),
        package.into(),
        "--keep-refresh-tokens".into(),
        if keep_refresh_tokens { "yes" } else { "no" }.into(),
    ];
    let node = format!("{bin}/node");
    let output = tokio::task::spawn_blocking(move || Command::new(node).args(&args).env("WARDEN_NODE_MODULES", modules).output())
        .await
        .unwrap()
        .expect("cannot run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "TypeScript client ({package}) failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let seen = demo.calendar.seen();
    let created = seen.iter().find(|s| s.path == "/events (POST)").expect("the event was never created");
    assert_eq!(created.headers["x-user-id"], "alice");
    shutdown.cancel();
    report
}

fn assert_stepped_up(report: &Value) {
    assert_eq!(report["stepped_up"], true, "{report}");
    assert_eq!(report["result"]["isError"], false, "{report}");
    assert_eq!(report["result"]["structuredContent"]["owner"], "alice");
    // Signed in with read only, so create_event was not listed; the call got the 403 challenge.
    assert_eq!(report["tools"], json!(["whoami", "list_events"]));
    let flow = flow(report);
    let challenge = flow.iter().position(|e| e == "POST /mcp 403").expect("no 403 step-up challenge");
    let reauthorized = flow.iter().rposition(|e| e == "POST /token 200").unwrap();
    assert!(reauthorized > challenge, "no token after the challenge: {flow:?}");
    assert_eq!(flow.last().map(String::as_str), Some("POST /mcp 200"), "{flow:?}");
}

#[tokio::test]
#[ignore = "needs the TypeScript SDK: run scripts/test"]
async fn typescript_sdk_1x_signs_in_and_steps_up() {
    // typescript-sdk#2255: 1.x refreshes (which cannot widen scope) instead of re-authorizing
    // when it holds a refresh token; a client that keeps none steps up.
    let report = ts_step_up("sdk", false).await;
    assert!(report["sdk_version"].as_str().unwrap().starts_with("1."), "{report}");
    assert_stepped_up(&report);
    // 1.x asks for exactly the challenge's scopes; the challenge names the token's scopes with
    // the missing one (issue 25), so it keeps calendar:read (before: "calendar:write" alone).
    assert_eq!(report["granted_scope"], "calendar:read calendar:write");
}

#[tokio::test]
#[ignore = "needs the TypeScript SDK: run scripts/test"]
async fn typescript_client_2x_steps_up_keeping_earlier_scopes() {
    let report = ts_step_up("client", true).await;
    assert!(report["sdk_version"].as_str().unwrap().starts_with("2."), "{report}");
    assert_stepped_up(&report);
    // SEP-2350: the client asks for the union of what it had and what the challenge names.
    assert_eq!(report["granted_scope"], "calendar:read calendar:write");
}

/// Runs the MCP Inspector CLI; returns (success, stdout).
async fn inspector(args: Vec<String>) -> (bool, String) {
    let bin = std::env::var("WARDEN_NODE_BIN").expect("WARDEN_NODE_BIN must name the directory holding node: run scripts/test");
    let catalog = tempfile::tempdir().unwrap();
    let catalog_path = catalog.path().join("mcp.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(format!("{bin}/node"))
            .arg(format!("{bin}/mcp-inspector"))
            .arg("--cli")
            .args(&args)
            .env("MCP_CATALOG_PATH", catalog_path)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("cannot run the MCP Inspector");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
#[ignore = "needs the MCP Inspector: run scripts/test"]
async fn inspector_cli_lists_and_calls_tools_with_a_bearer_header() {
    let (demo, shutdown) = demo(None).await;
    let token = demo.idp.mint("alice", "inspector", &["calendar:read".into()], &demo.resource).unwrap();
    let base = |method: &str| vec![demo.mcp_url.clone(), "--transport".into(), "http".into(), "--method".into(), method.into()];
    let bearer = vec!["--header".to_owned(), format!("Authorization: Bearer {token}")];

    let (ok, out) = inspector([base("tools/list"), bearer.clone()].concat()).await;
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let names: Vec<&str> = listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["whoami", "list_events"], "a read-only token sees the read tools");

    let call =
        [base("tools/call"), vec!["--tool-name".into(), "list_events".into(), "--tool-arg".into(), "limit=5".into()], bearer].concat();
    let (ok, out) = inspector(call).await;
    assert!(ok, "{out}");
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let events = result["structuredContent"]["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["owner"] == "alice"), "{result}");
    assert_eq!(demo.calendar.seen().last().unwrap().headers["x-user-id"], "alice");

    // Without the header the Inspector meets the 401 and, headless, cannot sign in.
    let (ok, out) = inspector(base("tools/list")).await;
    assert!(!ok || out.contains("auth_required"), "listed tools without a token: {out}");
    shutdown.cancel();
}

/// mcp-remote (npm), the stdio bridge Claude Desktop and Cursor users run to reach a remote MCP
/// server: a stdio client speaks to it, it speaks Streamable HTTP to Warden with the header it
/// was given. The bridge lists and calls the caller's tools as Warden lets the token.
#[tokio::test]
#[ignore = "needs mcp-remote: run scripts/test"]
async fn mcp_remote_bridges_a_stdio_client_to_warden_with_a_bearer_header() {
    let (demo, shutdown) = demo(None).await;
    let token = demo.idp.mint("alice", "mcp-remote", &["calendar:read".into()], &demo.resource).unwrap();
    let bin = std::env::var("WARDEN_NODE_BIN").expect("WARDEN_NODE_BIN must name the directory holding node: run scripts/test");
    let config_dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(format!("{bin}/node"))
        .arg(format!("{bin}/mcp-remote"))
        .arg(&demo.mcp_url)
        .args(["--header", &format!("Authorization: Bearer {token}"), "--transport", "http-only", "--allow-http"])
        .env("MCP_REMOTE_CONFIG_DIR", config_dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run mcp-remote");
    let mut peer = StdioPeer::new(&mut child);
    let mut ask = async |id: u64, method: &str, params: Value| peer.ask(id, method, params).await;
    let init = ask(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "stdio-client", "version": "1"}}),
    )
    .await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let listed = ask(2, "tools/list", json!({})).await;
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap_or_else(|| panic!("{listed}")).iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["whoami", "list_events"], "a read-only token sees the read tools");
    let called = ask(3, "tools/call", json!({"name": "list_events", "arguments": {"limit": 5}})).await;
    let events = called["result"]["structuredContent"]["events"].as_array().unwrap_or_else(|| panic!("{called}"));
    assert!(!events.is_empty() && events.iter().all(|e| e["owner"] == "alice"), "{called}");
    assert_eq!(demo.calendar.seen().last().unwrap().headers["x-user-id"], "alice");
    let _ = child.kill().await;
    shutdown.cancel();
}

/// An MCP peer on a child's stdio (mcp-remote): one request at a time.
pub struct StdioPeer {
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl StdioPeer {
    pub fn new(child: &mut tokio::process::Child) -> Self {
        use tokio::io::AsyncBufReadExt;
        Self { stdin: child.stdin.take().unwrap(), lines: tokio::io::BufReader::new(child.stdout.take().unwrap()).lines() }
    }

    /// Sends a request (`notifications/initialized` before the one after `initialize`) and
    /// waits up to a minute for its answer.
    pub async fn ask(&mut self, id: u64, method: &str, params: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        let mut line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string() + "\n";
        if id == 2 {
            // After initialize's answer, as a client says it.
            line = format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}\n{line}");
        }
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(60), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .unwrap()
                .unwrap_or_else(|| panic!("the peer exited before answering {method}"));
            if let Ok(message) = serde_json::from_str::<Value>(&line)
                && message["id"] == id
            {
                return message;
            }
        }
    }
}

/// Starts node-oidc-provider for `resource`; returns its issuer and the child to kill.
fn start_oidc_provider(resource: &str, scopes: &str, user: &str) -> (String, std::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/oidc_provider.mjs");
    start_node_issuer(&[script, "--port", &port, "--resource", resource, "--scopes", scopes, "--user", user, "--roles", "analyst"])
}

/// Runs a Node script that prints `ready ISSUER` once it listens; returns the issuer and the
/// child to kill.
pub fn start_node_issuer(args: &[&str]) -> (String, std::process::Child) {
    use std::io::BufRead;
    let bin = std::env::var("WARDEN_NODE_BIN").expect("WARDEN_NODE_BIN must name the directory holding node: run scripts/test");
    let modules = std::path::Path::new(&bin).parent().unwrap().to_owned();
    let mut child = Command::new(format!("{bin}/node"))
        .args(args)
        .env("WARDEN_NODE_MODULES", modules)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot start the issuer");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("ready "));
    let issuer = ready.unwrap_or_else(|| panic!("{args:?} did not start")).trim_start_matches("ready ").to_owned();
    // Keep reading: a closed pipe would kill the provider at its next write.
    std::thread::spawn(move || lines.for_each(drop));
    (issuer, child)
}

#[tokio::test]
#[ignore = "needs the Python SDK and oidc-provider: run scripts/test"]
async fn python_sdk_signs_in_through_oidc_provider() {
    warden::install_crypto();
    let (calendar, backend_url) = common::calendar().await;
    let (listener, gateway) = common::listen().await;
    let resource = format!("{gateway}/mcp");
    let (issuer, mut provider) = start_oidc_provider(&resource, "calendar:read calendar:write", "alice");

    let yaml = format!(
        "server:\n  listen: {addr}\n  public_url: {gateway}\nidentity:\n  issuers:\n    - issuer: {issuer}\n      roles_claim: roles\nupstream:\n  allow_cidrs: [127.0.0.1/32]\naudit:\n  output: off\ntools:\n  - name: list_events\n    description: The caller's events.\n    scopes: [\"calendar:read\"]\n    http:\n      url: {backend_url}/events\n",
        addr = listener.local_addr().unwrap()
    );
    let config = warden::config::parse(&yaml, &std::collections::HashMap::<String, String>::new()).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(warden::run(warden::Gateway::build(&config).unwrap(), listener, shutdown.clone().cancelled_owned()));

    let (_, python) = pythons().remove(0);
    let report = run_client(python, &resource, "list_events", json!({})).await;
    let _ = provider.kill();
    let flow = flow(&report);
    assert_eq!(flow[0], "POST /mcp 401", "{flow:?}");
    assert!(flow.iter().any(|e| e.starts_with("POST /reg 20")), "no dynamic registration at oidc-provider: {flow:?}");
    assert!(flow.iter().any(|e| e == "POST /token 200"), "no token from oidc-provider: {flow:?}");
    assert_eq!(report["tools"], json!(["list_events"]));
    let events = report["result"]["structuredContent"]["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["owner"] == "alice"), "{report}");
    let seen = calendar.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.headers["x-user-id"], "alice");
    assert_eq!(last.headers["x-user-roles"], "analyst", "roles from oidc-provider's token");
    shutdown.cancel();
}

/// The official Python SDK meets a per-user upstream connection it has not made: it receives the
/// URL elicitation (-32042) with a connect link, the user completes the flow in a "browser", and
/// the SDK's retry succeeds with the user's own provider account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python SDK virtualenv: run scripts/test"]
async fn python_sdk_receives_url_elicitation_and_succeeds_after_connecting() {
    use crate::common::provider::{ConnectionOptions, FakeProvider, connection_config, keyring};
    for (var, python) in pythons() {
        let issuer = crate::common::TestIssuer::start().await;
        let provider = FakeProvider::start(3600).await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("vault.db").display());
        let keys = keyring();
        let options = ConnectionOptions {
            database: &db,
            keys: &keys,
            name: "gh",
            mode: "per_user",
            discover: false,
            admin_token: "admin-token-0123456789abcdef0123456789",
            token_cache: "5s",
        };
        let (tools, extra) = connection_config(&provider.url, &options);
        let gw = crate::common::gateway(&issuer, &tools, &extra).await;
        let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_elicitation.py");
        let url = gw.mcp.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(python).args([script, "--url", &url, "--token", &token, "--tool", "me", "--account", "gh-alice"]).output()
        })
        .await
        .unwrap()
        .expect("cannot run the Python client");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{var}: python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
        eprintln!("{var}: mcp SDK {} speaking {}: first answer {}", report["sdk_version"], report["protocol_version"], report["first"]);
        if report["protocol_version"].as_str().is_some_and(|v| v >= "2025-11-25") {
            assert_eq!(report["first"]["error_code"], -32042, "{report}");
        } else {
            assert_eq!(report["first"]["isError"], true, "{report}");
        }
        assert_eq!(report["connect_status"], 200, "{report}");
        assert_eq!(report["second"]["structuredContent"]["account"], "gh-alice", "{report}");
        assert_eq!(provider.state.code_requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

/// A client ID metadata document served over HTTPS by a local server whose certificate (for
/// localhost) a test CA made here by openssl signed; the document names its own URL.
pub struct MetadataDocument {
    pub client_id: String,
    /// The test CA's certificate (PEM), for the authorization server to trust.
    pub ca: std::path::PathBuf,
    /// Every request the server received.
    pub fetched: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    server: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for MetadataDocument {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Serves a public client's metadata document with `redirect`; `named` replaces the
/// `client_id` it names (a document that names another URL).
pub fn metadata_document(python: &str, redirect: &str, named: Option<&str>) -> MetadataDocument {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let crate::common::TestCertificates { ca, cert, key } = crate::common::test_certificates(dir.path());
    // The document names its own URL, with the port the server gets (`__PORT__`).
    let path = "/warden-interop/client.json";
    let document = json!({
        "client_id": named.map_or_else(|| format!("https://localhost:__PORT__{path}"), str::to_owned),
        "client_name": "warden-interop (CIMD)",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
    .to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/https_json.py");
    let mut server = Command::new(python)
        .args([script, cert.as_str(), key.as_str(), path, &document])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let client_id = format!("https://localhost:{}{path}", first["port"]);
    let fetched = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = std::sync::Arc::clone(&fetched);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            log.lock().unwrap().push(line);
        }
    });
    MetadataDocument { client_id, ca: ca.into(), fetched, server, _dir: dir }
}

/// Client ID Metadata Documents (the MCP 2025-11-25 recommendation; 2026-07-28 prefers it to
/// dynamic registration): the latest Python SDK signs in with an HTTPS URL as its `client_id`.
/// The development authorization server fetches the document (from a local HTTPS server with a
/// certificate made here by openssl, which it is told to trust), checks it names that URL and
/// lists the redirect URI, and the flow goes on with no registration at all.
#[tokio::test]
#[ignore = "needs the Python SDK virtualenv and openssl: run scripts/test"]
async fn python_sdk_signs_in_with_a_client_id_metadata_document() {
    let python = std::env::var("WARDEN_PYTHON").expect("WARDEN_PYTHON");
    let document = metadata_document(&python, "http://127.0.0.1:65531/callback", None);
    let pem = std::fs::read(&document.ca).unwrap();
    let (demo, shutdown) = common::demo_options(Some("alice"), |o| o.client_metadata_ca = Some(pem)).await;
    let report =
        run_client_with(python, &demo.mcp_url, "list_events", json!({"limit": 2}), &["--client-metadata-url", &document.client_id]).await;
    let flow = flow(&report);
    assert!(!flow.iter().any(|e| e.contains("/register")), "no dynamic registration: {flow:?}");
    assert!(flow.contains(&"POST /token 200".to_owned()), "{flow:?}");
    assert_eq!(report["result"]["isError"], false, "{report}");
    assert!(
        document.fetched.lock().unwrap().iter().any(|l| l.contains("/warden-interop/client.json")),
        "the authorization server fetched the document"
    );
    shutdown.cancel();
}

/// A Python client script that prints one JSON line when its call is held back for approval,
/// then waits for a line on standard input (the approver approves meanwhile), then prints its
/// report: the first line, and a way to go on.
struct ApprovalClient {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl ApprovalClient {
    /// Starts `script` for `tool` with `args` as the caller `token`; returns it and its first line.
    fn start(python: &str, script: &str, mcp: &str, token: &str, tool: &str, args: &Value) -> (Self, Value) {
        use std::io::BufRead;
        let mut child = Command::new(python)
            .args([script, "--url", mcp, "--token", token, "--tool", tool, "--args", &args.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::task::block_in_place(|| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap());
        (Self { child, stdin, lines }, first)
    }

    /// Tells the script the request was approved; its report.
    fn go_on(mut self) -> Value {
        use std::io::Write;
        writeln!(self.stdin, "approved").unwrap();
        let report = tokio::task::block_in_place(|| serde_json::from_str(&self.lines.next().unwrap().unwrap()).unwrap());
        assert!(self.child.wait().unwrap().success());
        report
    }
}

/// Approves request `id` at the demo as Dana (a manager).
async fn approve_as_dana(demo: &warden::demo::Demo, id: &str) {
    let base = demo.mcp_url.trim_end_matches("/mcp");
    let dana = demo.idp.mint("dana", "sdk", &["calendar:read".into()], &demo.resource).unwrap();
    let approved = reqwest::Client::new().post(format!("{base}/admin/v1/approvals/{id}/approve")).bearer_auth(&dana).send().await.unwrap();
    assert_eq!(approved.status(), 200);
}

/// A call a person must approve, with the official Python SDK (latest and last 1.x): the first
/// call is held back (-32042 with the request's status page, or the request as isError text),
/// the approver approves as herself, and the SDK's retry of the same call runs, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python SDK virtualenv: run scripts/test"]
async fn python_sdk_waits_for_an_approval_and_then_runs_the_call_once() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let created = |d: &warden::demo::Demo| d.calendar.seen().iter().filter(|s| s.path == "/events (POST)").count();
    for (var, python) in pythons() {
        let alice = demo.idp.mint("alice", "sdk", &["calendar:write".into()], &demo.resource).unwrap();
        let args = json!({"title": format!("all-hands: {var}"), "start": "2026-12-10T10:00:00Z"});
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_approval.py");
        let (client, first) = ApprovalClient::start(&python, script, &demo.mcp_url, &alice, "create_event", &args);
        let id = first["id"].as_str().unwrap_or_else(|| panic!("{var}: no request id in {first}")).to_owned();
        let before = created(&demo);
        approve_as_dana(&demo, &id).await;
        let report = client.go_on();
        eprintln!("{var}: mcp SDK {} speaking {}: first answer {}", report["sdk_version"], report["protocol_version"], report["first"]);
        if report["protocol_version"].as_str().is_some_and(|v| v >= "2025-11-25") {
            assert_eq!(report["first"]["error_code"], -32042, "{report}");
            assert_eq!(report["status_page"], 200, "{report}");
        } else {
            assert_eq!(report["first"]["isError"], true, "{report}");
        }
        assert_eq!(report["second"]["isError"], false, "{var}: the approved call ran: {report}");
        assert_ne!(report["third"]["isError"], false, "{var}: and only once: {report}");
        assert_eq!(created(&demo), before + 1, "{var}");
    }
    shutdown.cancel();
}

/// The same on 2026-07-28 with the official Python SDK 2.x's `Client`: the held-back call is an
/// `InputRequiredResult` whose URL elicitation (the approval's status page) the SDK hands to its
/// elicitation callback; once the approver approved, the SDK's own retry runs the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python SDK virtualenv: run scripts/test"]
async fn python_sdk_2x_on_2026_07_28_waits_for_an_approval_through_its_input_required_driver() {
    let python = std::env::var("WARDEN_PYTHON").expect("WARDEN_PYTHON");
    let (demo, shutdown) = demo(Some("alice")).await;
    let base = demo.mcp_url.trim_end_matches("/mcp").to_owned();
    let alice = demo.idp.mint("alice", "sdk", &["calendar:write".into()], &demo.resource).unwrap();
    let args = json!({"title": "all-hands 2026-07-28", "start": "2026-12-10T10:00:00Z"});
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_approval_2026.py");
    let (client, asked) = ApprovalClient::start(&python, script, &demo.mcp_url, &alice, "create_event", &args);
    let link = asked["url"].as_str().unwrap_or_else(|| panic!("{asked}"));
    assert!(link.starts_with(&format!("{base}/approvals/")), "{link}");
    approve_as_dana(&demo, link.rsplit('/').next().unwrap()).await;
    let report = client.go_on();
    assert_eq!(report["result"]["isError"], false, "{report}");
    assert_eq!(demo.calendar.seen().iter().filter(|s| s.path == "/events (POST)").count(), 1);
    shutdown.cancel();
}

/// A federated server's multi round-trip request (2026-07-28) through Warden, with the official
/// Python SDK 2.x on both sides: the server (`tests/interop/input_required_fixtures.py`, over
/// stdio) asks for the user's name, the model's greeting and the client's roots in one
/// `InputRequiredResult`; the client's callbacks answer, its driver retries with Warden's state,
/// and the call completes. Audited as two rounds of one call.
#[tokio::test]
#[ignore = "needs the Python SDK: run scripts/test"]
async fn python_sdk_2x_answers_a_federated_servers_input_requests_through_warden() {
    let (report, gw) = python_input_rounds("2026-07-28").await;
    let rounds: Vec<(String, String)> = gw
        .audit()
        .iter()
        .filter(|e| e["tool"] == "fx_multiple_inputs")
        .map(|e| (e["reason"].as_str().unwrap().to_owned(), e["explanation"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(rounds.len(), 2, "{rounds:?} {report}");
    assert_eq!(rounds[0].0, "input_required");
    assert!(
        rounds[0].1.contains("elicitation/create") && rounds[0].1.contains("sampling/createMessage") && rounds[0].1.contains("roots/list")
    );
    assert_eq!(rounds[1].0, "ok");
    assert!(rounds[1].1.starts_with("round 2 of the call first made as request"), "{rounds:?}");
}

/// The same server and client, the client on 2025-11-25 (the initialize handshake): it cannot
/// retry with answers, so Warden puts the server's three input requests to it as requests on the
/// call's stream (its session says it declared all three), its callbacks answer them, and Warden
/// makes the call again with the answers. The client sees one call; each request is audited.
#[tokio::test]
#[ignore = "needs the Python SDK: run scripts/test"]
async fn python_sdk_2x_on_2025_11_25_answers_a_federated_servers_input_requests_on_the_calls_stream() {
    let (_report, gw) = python_input_rounds("legacy").await;
    let events = gw.audit();
    let mut asked: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["tool"] == "fx_multiple_inputs")
        .map(|e| (e["method"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    asked.sort_unstable();
    assert_eq!(
        asked,
        [
            ("elicitation/create", "client_request"),
            ("roots/list", "client_request"),
            ("sampling/createMessage", "client_request"),
            ("tools/call", "ok")
        ],
        "{events:#?}"
    );
    let call = events.iter().find(|e| e["tool"] == "fx_multiple_inputs" && e["method"] == "tools/call").unwrap();
    assert!(call["explanation"].as_str().unwrap().contains("answered by the client in 1 round(s)"), "{call}");
}

/// A FastMCP 4 server asking the 2026-07-28 way (the guard pattern, `InputRequiredResult`)
/// behind Warden, called by the Python SDK 2.x client on 2026-07-28 (it retries with Warden's
/// state) and on 2025-11-25 (Warden asks it on the call's stream): the same answers reach the
/// server either way.
#[tokio::test]
#[ignore = "needs FastMCP 4: run scripts/test"]
async fn a_fastmcp_4_servers_input_requests_reach_clients_of_both_revisions() {
    let server = std::env::var("WARDEN_PYTHON_FASTMCP").expect("WARDEN_PYTHON_FASTMCP");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/fastmcp4_fixtures.py");
    for mode in ["2026-07-28", "legacy"] {
        let (_report, gw) = python_input_rounds_with((&server, fixture), mode).await;
        let reasons: Vec<String> = gw
            .audit()
            .iter()
            .filter(|e| e["tool"] == "fx_multiple_inputs")
            .map(|e| format!("{} {}", e["method"].as_str().unwrap(), e["reason"].as_str().unwrap()))
            .collect();
        assert!(reasons.last().is_some_and(|r| r == "tools/call ok"), "{mode}: {reasons:?}");
    }
}

/// Warden federating the Python SDK 2.x fixture server, called by the SDK's client in `mode`
/// with callbacks for all three kinds of input: its report (checked here: the result and what
/// the callbacks were asked), and the gateway.
async fn python_input_rounds(mode: &str) -> (Value, common::TestGateway) {
    let python = std::env::var("WARDEN_PYTHON").expect("WARDEN_PYTHON");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/input_required_fixtures.py");
    python_input_rounds_with((&python, fixture), mode).await
}

/// As [`python_input_rounds`], with the server `(python, script)` behind Warden as `fx`.
async fn python_input_rounds_with((server, fixture): (&str, &str), mode: &str) -> (Value, common::TestGateway) {
    let python = std::env::var("WARDEN_PYTHON").expect("WARDEN_PYTHON");
    let issuer = common::TestIssuer::start().await;
    let servers = format!("servers:\n  - name: fx\n    command: {server:?}\n    args: [{fixture:?}]\n");
    let gw = common::gateway(&issuer, "  []", &servers).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_input_rounds.py");
    let argv: Vec<String> = [script, "--url", &gw.mcp, "--token", &token, "--tool", "fx_multiple_inputs", "--mode", mode]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let output = tokio::task::spawn_blocking(move || Command::new(python).args(&argv).output()).await.unwrap().unwrap();
    let report = report(output).unwrap_or_else(|e| panic!("python client failed:\n{e}"));
    assert_eq!(report["result"]["content"][0]["text"], "All three answered for Alice", "{report}");
    assert_eq!(
        report["asked"],
        json!({"elicitation": ["What is your name?"], "sampling": ["Generate a greeting"], "roots": 1}),
        "{report}"
    );
    (report, gw)
}

/// A stdio server of the older revisions (FastMCP 1.x, the suite's fixtures) asks the client
/// during a call. With `client_requests.one_call_at_a_time`, Warden sends it one request at a
/// time, so what it asks belongs to the call in progress and reaches that call's client, on the
/// call's stream; without, Warden declares nothing to it and its requests reach no one.
#[tokio::test]
#[ignore = "needs the Python SDK: run scripts/test"]
async fn a_stdio_servers_requests_reach_their_caller_one_call_at_a_time() {
    let python = std::env::var("WARDEN_PYTHON_1X").expect("WARDEN_PYTHON_1X");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/conformance_fixtures.py");
    for one_at_a_time in [true, false] {
        let issuer = common::TestIssuer::start().await;
        let servers = format!(
            "servers:\n  - name: fx\n    command: {python:?}\n    args: [{fixture:?}]\n    client_requests: {{one_call_at_a_time: {one_at_a_time}}}\n"
        );
        let gw = common::gateway(&issuer, "  []", &servers).await;
        let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
        let session = gw.initialize_session(&token, json!({"elicitation": {}})).await.unwrap();
        let post = |body: Value| gw.post_in_session(&token, Some(&session), &body).send();
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "fx_test_elicitation", "arguments": {"message": "Who are you?"}}});
        let response = post(call).await.unwrap();
        if !one_at_a_time {
            assert_eq!(response.headers()["content-type"], "application/json", "nothing was relayed");
            let text = response.text().await.unwrap();
            assert!(!text.contains("User response: action=accept"), "{text}");
            continue;
        }
        let mut events = common::SseEvents::of(response);
        let asked = events.next().await;
        assert_eq!(
            (asked["method"].as_str(), asked["params"]["message"].as_str()),
            (Some("elicitation/create"), Some("Who are you?")),
            "{asked}"
        );
        let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"username": "alice", "email": "a@example.com"}}});
        assert_eq!(post(answer).await.unwrap().status(), 202);
        let result = events.next().await;
        let text = result["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
        assert!(text.starts_with("User response: action=accept") && text.contains("alice"), "{result}");
    }
}
