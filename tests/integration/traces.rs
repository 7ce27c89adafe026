//! OpenTelemetry traces from the real binary to a receiver that decodes the real OTLP/HTTP
//! protocol (`tests/interop/otlp_receiver.py`, on PyPI's `opentelemetry-proto`): a server span
//! per MCP request named and attributed per the MCP conventions, a client span per upstream
//! call (an HTTP tool, a federated stdio server, the JWKS fetch) under it, the caller's
//! `traceparent` honoured and the client span's sent upstream, and no secret in any attribute.
//!
//! Needs `WARDEN_PYTHON_SERVERS` (scripts/python-env servers: `mcp-server-time` and
//! `opentelemetry-proto`); run by scripts/test.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Serving, TestIssuer, Upstream, mcp_post, tool_call};

/// The receiver, printing spans to a pipe a thread collects.
struct Receiver {
    child: std::process::Child,
    port: u16,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(python: &str) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/otlp_receiver.py");
        let mut child = std::process::Command::new(python).arg(script).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let port = u16::try_from(first["port"].as_u64().unwrap()).unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&spans);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                collected.lock().unwrap().push(serde_json::from_str::<Value>(&line).unwrap());
            }
        });
        Self { child, port, spans }
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const KIND_SERVER: i64 = 2;
const KIND_CLIENT: i64 = 3;

fn one<'a>(spans: &'a [Value], what: &str, pick: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "{what}: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs WARDEN_PYTHON_SERVERS (scripts/python-env servers); run by scripts/test"]
async fn requests_and_upstream_calls_are_traced_over_otlp_with_their_parents() {
    let python = std::env::var("WARDEN_PYTHON_SERVERS").expect("WARDEN_PYTHON_SERVERS");
    let receiver = Receiver::start(&python);
    let issuer = TestIssuer::start().await;
    let backend = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:{port}\n  public_url: {url}\nidentity:\n  issuers:\n    - issuer: {iss}\n\
         upstream:\n  allow_cidrs: [127.0.0.1/32]\n\
         audit:\n  output: {audit}\n\
         telemetry:\n  otlp_endpoint: http://127.0.0.1:{otlp}\n  otlp_headers: {{Authorization: \"Bearer otlp-key-5c1e\"}}\n\
         tools:\n  - {{name: search, description: d, http: {{method: POST, url: \"{backend}/search?key=tool-secret-in-url\"}}}}\n\
         servers:\n  - {{name: time, command: {python}, args: [-m, mcp_server_time, --local-timezone, UTC], timeout: 10s}}\n",
        iss = issuer.url,
        audit = dir.path().join("audit.jsonl").display(),
        otlp = receiver.port,
        backend = backend.url,
    );
    let path = dir.path().join("warden.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let mut serving = Serving::start(&path, &url).await;
    let http = reqwest::Client::new();
    let mcp = format!("{url}/mcp");
    let token = issuer.sign(&issuer.claims("alice", "", &mcp));

    // A call inside the caller's trace.
    let (trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traced = http
        .post(&mcp)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .json(&tool_call(7, "search", json!({"q": "argument-value-3f9"})))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 200);
    // The federated server's tool (its catalog arrives shortly after start-up).
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = mcp_post(&http, &mcp, &token, &tool_call(8, "time_get_current_time", json!({"timezone": "UTC"}))).await;
        if body["result"]["isError"] == false {
            break;
        }
        assert!(Instant::now() < end, "the federated tool never answered: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Refused before anything ran: an unknown token.
    let refused = http
        .post(&mcp)
        .bearer_auth("not-a-token-8d2a")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // SIGTERM: the exporter sends what it holds before the process exits.
    std::process::Command::new("kill").args(["-TERM", &serving.0.id().to_string()]).status().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while serving.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = Instant::now() + Duration::from_secs(10);
    while !receiver.spans().iter().any(|s| s["name"] == "tools/call search") {
        assert!(Instant::now() < end, "no span arrived: {:#?}", receiver.spans());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = receiver.spans();

    // The HTTP tool: a server span in the caller's trace, a client span under it, and the
    // backend called with the client span as its parent.
    let server = one(&spans, "server span of the search call", |s| s["name"] == "tools/call search");
    assert_eq!((server["kind"].as_i64(), server["trace_id"].as_str()), (Some(KIND_SERVER), Some(trace)));
    assert_eq!(server["parent_span_id"], caller_span, "the caller's traceparent is the parent");
    let a = &server["attributes"];
    assert_eq!((a["mcp.method.name"].as_str(), a["gen_ai.tool.name"].as_str()), (Some("tools/call"), Some("search")));
    assert_eq!((a["jsonrpc.request.id"].as_str(), a["gen_ai.operation.name"].as_str()), (Some("7"), Some("execute_tool")));
    assert_eq!((a["warden.decision"].as_str(), a["http.response.status_code"].as_i64()), (Some("allow"), Some(200)));
    let client = one(&spans, "client span of the search call", |s| {
        s["parent_span_id"] == server["span_id"] && s["attributes"]["warden.upstream"] == "http_tool"
    });
    assert_eq!((client["kind"].as_i64(), client["name"].as_str()), (Some(KIND_CLIENT), Some("POST")));
    assert_eq!((client["trace_id"].as_str(), client["attributes"]["server.address"].as_str()), (Some(trace), Some("127.0.0.1")));
    assert_eq!(client["attributes"]["http.response.status_code"], 200);
    let sent = backend.last().headers["traceparent"].to_str().unwrap().to_owned();
    assert_eq!(sent, format!("00-{trace}-{}-01", client["span_id"].as_str().unwrap()), "propagated upstream");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"tool\":\"search\"") && l.contains(&format!("\"trace_id\":\"{trace}\""))));

    // The federated call: its own trace (no traceparent came), the MCP client span under it.
    let server = spans
        .iter()
        .rfind(|s| s["name"] == "tools/call time_get_current_time" && s["attributes"]["warden.decision"] == "allow")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!((server["kind"].as_i64(), server["parent_span_id"].as_str()), (Some(KIND_SERVER), Some("")));
    let client = one(&spans, "client span of the federated call", |s| s["parent_span_id"] == server["span_id"]);
    assert_eq!((client["kind"].as_i64(), client["name"].as_str()), (Some(KIND_CLIENT), Some("tools/call get_current_time")));
    let a = &client["attributes"];
    assert_eq!((a["mcp.method.name"].as_str(), a["gen_ai.tool.name"].as_str()), (Some("tools/call"), Some("get_current_time")));
    assert_eq!((a["warden.server"].as_str(), a["network.transport"].as_str()), (Some("time"), Some("pipe")));

    // The refusal, and the issuer's keys fetched under a request.
    let refusal = one(&spans, "the 401", |s| s["attributes"]["http.response.status_code"] == 401);
    assert_eq!(refusal["name"], "POST /mcp");
    assert!(refusal["attributes"]["error.type"].as_str().unwrap().starts_with("token_"));
    // The issuer's metadata and keys, fetched by the first request's verification, under it.
    let jwks = spans.iter().filter(|s| s["attributes"]["warden.upstream"] == "jwks").collect::<Vec<_>>();
    assert!(!jwks.is_empty() && jwks.iter().all(|s| s["kind"] == KIND_CLIENT && s["name"] == "GET"), "{spans:#?}");
    assert!(jwks.iter().all(|s| spans.iter().any(|p| p["span_id"] == s["parent_span_id"] && p["kind"] == KIND_SERVER)));

    // Everything came with the configured header, as service `warden`, and no attribute holds
    // a token, a key, an argument or the caller.
    assert!(spans.iter().all(|s| s["authorization"] == "Bearer otlp-key-5c1e" && s["resource"]["service.name"] == "warden"));
    let attributes = spans.iter().map(|s| s["attributes"].to_string()).collect::<String>();
    for secret in [token.as_str(), "not-a-token-8d2a", "otlp-key-5c1e", "tool-secret-in-url", "argument-value-3f9", "alice"] {
        assert!(!attributes.contains(secret), "{secret} in a span attribute");
    }
}
