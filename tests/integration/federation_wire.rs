//! A caller's request on a federated server's Streamable HTTP session, past rmcp's client
//! worker (`federation::direct`), against a server written here to the spec's wire format: the
//! server's own requests on the call's SSE stream, a stream that breaks and is resumed from
//! its last event id, and a request accepted but never answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::common::{TestIssuer, gateway, listen, serve};

#[derive(Default)]
struct Wire {
    /// The server's requests in flight, by id: where the client's answer goes.
    waiting: Mutex<HashMap<String, tokio::sync::oneshot::Sender<Value>>>,
    /// The id of the `resume` call, whose answer comes on the resumed stream.
    resumable: Mutex<Option<Value>>,
    /// `Last-Event-ID`s the server was asked to resume from.
    resumed_from: Mutex<Vec<String>>,
    /// Calls seen, by tool.
    calls: Mutex<Vec<String>>,
    posts: AtomicUsize,
    /// The revision `initialize` is answered with: on 2026-07-28, each call must carry its
    /// revision in `_meta` and its method and name in headers (SEP-2243), or it is refused.
    revision: &'static str,
    /// Answers a method it does not have with an empty result instead of -32601 (as sloppy
    /// servers do): `server/discover` then "succeeds" with nothing in it.
    sloppy: bool,
}

fn json_response(body: &Value) -> Response {
    ([("content-type", "application/json"), ("mcp-session-id", "wire-1")], body.to_string()).into_response()
}

fn sse(events: tokio::sync::mpsc::Receiver<String>) -> Response {
    let stream = futures::stream::unfold(events, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, std::io::Error>(e), rx)) });
    ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
}

fn event(id: Option<&str>, message: &Value) -> String {
    let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
    format!("{id}event: message\ndata: {message}\n\n")
}

fn result(id: &Value, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}], "isError": false}})
}

async fn post(State(wire): State<Arc<Wire>>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    wire.posts.fetch_add(1, Ordering::SeqCst);
    let message: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(id), method) = (message.get("id").cloned(), message["method"].as_str()) else {
        return axum::http::StatusCode::ACCEPTED.into_response();
    };
    let Some(method) = method else {
        // The client's answer to one of the server's requests.
        if let Some(waiting) = wire.waiting.lock().unwrap().remove(id.as_str().unwrap_or_default()) {
            let _ = waiting.send(message);
        }
        return axum::http::StatusCode::ACCEPTED.into_response();
    };
    let answer = |result: Value| json_response(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    match method {
        "initialize" => answer(json!({
            "protocolVersion": wire.revision,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "wire", "version": "1"}
        })),
        "tools/list" => {
            let tool = |name: &str| json!({"name": name, "inputSchema": {"type": "object"}});
            answer(json!({"tools": [tool("ask"), tool("resume"), tool("accepted")]}))
        }
        "tools/call" => {
            let name = message["params"]["name"].as_str().unwrap_or_default().to_owned();
            let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
            let described = header("mcp-method") == Some("tools/call")
                && header("mcp-name") == Some(name.as_str())
                && message["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == wire.revision;
            if wire.revision >= "2026-07-28" && !described {
                let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32020, "message": "header mismatch"}});
                return (axum::http::StatusCode::BAD_REQUEST, [("content-type", "application/json")], error.to_string()).into_response();
            }
            wire.calls.lock().unwrap().push(name.clone());
            match name.as_str() {
                "ask" => ask(&wire, id),
                "resume" => {
                    *wire.resumable.lock().unwrap() = Some(id);
                    let (tx, rx) = tokio::sync::mpsc::channel(4);
                    let log = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}});
                    tx.try_send(event(Some("ev-1"), &log)).unwrap();
                    // The stream ends here, before the answer.
                    drop(tx);
                    sse(rx)
                }
                _ => axum::http::StatusCode::ACCEPTED.into_response(),
            }
        }
        "ping" => answer(json!({})),
        _ if wire.sloppy => answer(json!({})),
        // A method this server does not have (`server/discover` among them: it predates it).
        _ => json_response(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}})),
    }
}

/// `ask`: the server asks the client for a `ping` and an elicitation on the call's stream, and
/// answers the call with what came back.
fn ask(wire: &Arc<Wire>, id: Value) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = Vec::new();
    for (request_id, method, params) in [
        ("srv-ping", "ping", json!({})),
        ("srv-elicit", "elicitation/create", json!({"message": "ok?", "requestedSchema": {"type": "object", "properties": {}}})),
    ] {
        let (answered, answer) = tokio::sync::oneshot::channel();
        wire.waiting.lock().unwrap().insert(request_id.to_owned(), answered);
        answers.push(answer);
        tx.try_send(event(None, &json!({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))).unwrap();
    }
    tokio::spawn(async move {
        let mut got = Vec::new();
        for answer in answers {
            got.push(tokio::time::timeout(std::time::Duration::from_secs(5), answer).await.ok().and_then(Result::ok));
        }
        let _ = tx.send(event(None, &result(&id, &json!(got).to_string()))).await;
    });
    sse(rx)
}

/// A GET with `Last-Event-ID` resumes the `resume` call's stream with its answer; a GET without
/// one (the standalone stream) is not offered.
async fn get(State(wire): State<Arc<Wire>>, headers: axum::http::HeaderMap) -> Response {
    let Some(from) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) else {
        return axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    wire.resumed_from.lock().unwrap().push(from.to_owned());
    let Some(id) = wire.resumable.lock().unwrap().clone() else { return axum::http::StatusCode::NOT_FOUND.into_response() };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.try_send(event(Some("ev-2"), &result(&id, &format!("resumed after {from}")))).unwrap();
    sse(rx)
}

/// A session that negotiates with `initialize` and one on 2026-07-28's per-request metadata.
const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];

async fn start(revision: &'static str) -> (Arc<Wire>, String) {
    let wire = Arc::new(Wire { revision, ..Wire::default() });
    let app = axum::Router::new().route("/mcp", axum::routing::post(post).get(get)).with_state(Arc::clone(&wire));
    let (listener, url) = listen().await;
    serve(listener, app);
    (wire, format!("{url}/mcp"))
}

/// Warden in front of the server, which negotiates `revision`.
async fn started(revision: &'static str) -> (TestIssuer, Arc<Wire>, crate::common::TestGateway, String) {
    let issuer = TestIssuer::start().await;
    let (wire, url) = start(revision).await;
    let servers = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\nservers:\n  - name: w\n    url: {url}\n    timeout: 20s\n");
    let gw = gateway(&issuer, "  []", &servers).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    crate::common::eventually(|| gw.tool_names(&token), |names| names.contains(&"w_ask".to_owned())).await;
    (issuer, wire, gw, token)
}

/// The server's `ping` during a call is answered; its elicitation is refused as "method not
/// found" (the caller has no session that declares it), and the call completes.
#[tokio::test]
async fn the_servers_requests_on_a_calls_stream_are_answered_on_its_session() {
    for revision in REVISIONS {
        let (_issuer, wire, gw, token) = started(revision).await;
        let reply = gw.call(&token, "w_ask", json!({})).await;
        let text = reply.result()["content"][0]["text"].as_str().unwrap_or_default().to_owned();
        let answers: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{revision}: {:?}", reply.body));
        assert_eq!(answers[0], json!({"jsonrpc": "2.0", "id": "srv-ping", "result": {}}), "{revision}: {answers}");
        assert_eq!(answers[1]["error"]["code"], -32601, "{revision}: {answers}");
        assert_eq!(answers[1]["id"], "srv-elicit");
        assert!(wire.waiting.lock().unwrap().is_empty());
    }
}

/// A call's stream that ends before its answer, after an event with an id, is resumed with a
/// GET carrying `Last-Event-ID`, and the answer read there.
#[tokio::test]
async fn a_calls_broken_stream_is_resumed_from_its_last_event() {
    for revision in REVISIONS {
        let (_issuer, wire, gw, token) = started(revision).await;
        let reply = gw.call(&token, "w_resume", json!({})).await;
        assert_eq!(reply.result()["content"][0]["text"], "resumed after ev-1", "{revision}: {:?}", reply.body);
        assert_eq!(*wire.resumed_from.lock().unwrap(), vec!["ev-1".to_owned()], "{revision}");
    }
}

/// A call the server accepts (202) without answering fails at once as an invalid answer
/// (audited so), instead of waiting out its timeout; the session goes on serving.
#[tokio::test]
async fn a_call_accepted_without_an_answer_fails_at_once() {
    for revision in REVISIONS {
        let (_issuer, wire, gw, token) = started(revision).await;
        let started = std::time::Instant::now();
        let reply = gw.call(&token, "w_accepted", json!({})).await;
        assert_eq!(reply.result()["isError"], true, "{revision}: {:?}", reply.body);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{revision}: failed at once, not at the timeout");
        let event = gw.audit().into_iter().rfind(|e| e["tool"] == "w_accepted").unwrap();
        let outcome = (event["decision"].as_str(), event["reason"].as_str());
        assert_eq!(outcome, (Some("error"), Some("upstream_invalid_response")), "{revision}: {event}");
        assert_eq!(gw.call(&token, "w_resume", json!({})).await.result()["content"][0]["text"], "resumed after ev-1");
        assert_eq!(*wire.calls.lock().unwrap(), vec!["accepted".to_owned(), "resume".to_owned()], "{revision}");
    }
}

/// A log the server sends on a call's own stream belongs to that call: a 2026-07-28 caller that
/// asked for logs (`_meta` `logLevel`) gets it as `notifications/message` on its SSE response
/// before the result; a caller that did not ask gets the result alone.
#[tokio::test]
async fn a_calls_logs_reach_the_caller_that_asked_for_them() {
    for revision in REVISIONS {
        let (_issuer, _wire, gw, token) = started(revision).await;
        let call = |log_level: Option<&str>| {
            let mut meta = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            });
            if let Some(level) = log_level {
                meta["io.modelcontextprotocol/logLevel"] = json!(level);
            }
            let body =
                json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "w_resume", "arguments": {}, "_meta": meta}});
            let (gw, token) = (&gw, token.clone());
            async move {
                let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "w_resume")];
                gw.post_raw(Some(&token), body.to_string(), &headers).await
            }
        };
        let asked = call(Some("info")).await;
        assert_eq!(asked.headers["content-type"], "text/event-stream", "{revision}: {:?}", asked.body);
        let events: Vec<Value> = asked
            .body
            .as_str()
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{revision}: {events:?}");
        assert_eq!(events[0]["method"], "notifications/message", "{revision}: {events:?}");
        assert_eq!(events[0]["params"], json!({"level": "info", "data": "working"}));
        assert_eq!(events[1]["result"]["content"][0]["text"], "resumed after ev-1");
        let quiet = call(None).await;
        assert_eq!(quiet.result()["content"][0]["text"], "resumed after ev-1", "{revision}: {:?}", quiet.body);
    }
}

/// On the older revisions a caller asks for logs with `logging/setLevel` in its session: the
/// server's logs on its calls' streams at or above that level reach it; below it, or without a
/// level, or without a session, none do.
#[tokio::test]
async fn an_older_callers_session_level_decides_which_logs_of_its_calls_it_gets() {
    let (issuer, _wire, gw, alice) = started("2025-11-25").await;
    let params = json!({"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}}, "clientInfo": {"name": "t", "version": "1"}});
    let session = |token: String| {
        let (gw, params) = (&gw, params.clone());
        async move {
            let reply = gw.rpc(&token, "initialize", params).await;
            assert!(reply.result()["capabilities"]["logging"].is_object(), "{reply:?}");
            reply.headers["mcp-session-id"].to_str().unwrap().to_owned()
        }
    };
    let rpc = |token: &str, session: &str, method: &str, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params}).to_string();
        let (gw, token, session) = (&gw, token.to_owned(), session.to_owned());
        async move { gw.post_raw(Some(&token), body, &[("mcp-session-id", &session)]).await }
    };
    let logs = |reply: &crate::common::Reply| -> Vec<Value> {
        match reply.body.as_str() {
            Some(sse) => sse.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str::<Value>(d).unwrap()).collect(),
            None => vec![reply.body.clone()],
        }
        .into_iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect()
    };
    let mine = session(alice.clone()).await;
    let call = json!({"name": "w_resume", "arguments": {}});
    // No level set: no logs, and the answer is a JSON body.
    let quiet = rpc(&alice, &mine, "tools/call", call.clone()).await;
    assert_eq!(quiet.headers["content-type"], "application/json", "{quiet:?}");
    assert_eq!(quiet.result()["content"][0]["text"], "resumed after ev-1");
    // Above the server's `info`: still none.
    assert_eq!(rpc(&alice, &mine, "logging/setLevel", json!({"level": "warning"})).await.result(), &json!({}));
    assert!(logs(&rpc(&alice, &mine, "tools/call", call.clone()).await).is_empty());
    // At `info`: the log, on the call's stream, before the answer.
    rpc(&alice, &mine, "logging/setLevel", json!({"level": "info"})).await;
    let heard = rpc(&alice, &mine, "tools/call", call.clone()).await;
    assert_eq!(heard.headers["content-type"], "text/event-stream", "{heard:?}");
    assert_eq!(
        logs(&heard),
        [json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}})]
    );
    // Bob's session has no level of alice's.
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));
    let his = session(bob.clone()).await;
    assert!(logs(&rpc(&bob, &his, "tools/call", call).await).is_empty());
    let set: Vec<Value> = gw.audit().into_iter().filter(|e| e["method"] == "logging/setLevel").collect();
    assert_eq!(set.len(), 2, "each setLevel audited: {set:?}");
}

/// A server that answers `server/discover` (a method it does not have) with an empty result
/// rather than -32601 is still reached: Warden starts its session again with `initialize`.
#[tokio::test]
async fn a_server_that_answers_discover_with_nonsense_is_initialized_instead() {
    let issuer = TestIssuer::start().await;
    let wire = Arc::new(Wire { revision: "2025-11-25", sloppy: true, ..Wire::default() });
    let app = axum::Router::new().route("/mcp", axum::routing::post(post).get(get)).with_state(Arc::clone(&wire));
    let (listener, url) = listen().await;
    serve(listener, app);
    let servers = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\nservers:\n  - name: w\n    url: {url}/mcp\n    timeout: 20s\n");
    let gw = gateway(&issuer, "  []", &servers).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let names = crate::common::eventually(|| gw.tool_names(&token), |names| names.contains(&"w_resume".to_owned())).await;
    assert!(names.contains(&"w_resume".to_owned()), "{names:?}");
    assert_eq!(gw.call(&token, "w_resume", json!({})).await.result()["content"][0]["text"], "resumed after ev-1");
}
