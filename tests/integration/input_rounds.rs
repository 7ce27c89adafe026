//! Multi round-trip requests relayed (2026-07-28, SEP-2322): a federated server (rmcp's server
//! side, speaking 2026-07-28 to Warden) answers a call with an `InputRequiredResult`; the
//! caller gets the server's input requests with Warden's sealed state instead of the server's,
//! and its retry reaches the server with the server's own state restored. The state is the
//! caller's alone; the server sees the caller's capabilities, less what its configuration
//! forbids it to ask; each round is audited, linked to the first.

use std::sync::{Arc, Mutex};

use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, InitializeResult, InputRequest, InputRequiredResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

use crate::common::{Reply, TestGateway, TestIssuer, gateway, listen, serve};

/// What the server saw of one call.
#[derive(Debug, Clone)]
struct Seen {
    responses: Option<Value>,
    state: Option<String>,
    capabilities: Option<Value>,
}

#[derive(Clone, Default)]
struct Asking {
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn elicitation(message: &str) -> InputRequest {
    serde_json::from_value(json!({
        "method": "elicitation/create",
        "params": {"message": message, "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}
    }))
    .unwrap()
}

impl ServerHandler for Asking {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().enable_prompts().build())
    }

    async fn list_prompts(
        &self,
        _r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        Ok(rmcp::model::ListPromptsResult::with_all_items(vec![rmcp::model::Prompt::new("brief", Some("Asks first."), None)]))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _c: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        self.seen.lock().unwrap().push(Seen {
            responses: request.input_responses.as_ref().map(|r| serde_json::to_value(r).unwrap()),
            state: request.request_state.clone(),
            capabilities: None,
        });
        match (request.input_responses, request.request_state.as_deref()) {
            (Some(_), Some("prompt-state")) => {
                let message = rmcp::model::PromptMessage::new_text(rmcp::model::Role::User, "the brief, with context");
                Ok(rmcp::model::GetPromptResponse::Complete(rmcp::model::GetPromptResult::new(vec![message])))
            }
            _ => {
                let asked = [("context".to_owned(), elicitation("Which context?"))].into_iter().collect();
                Ok(rmcp::model::GetPromptResponse::InputRequired(InputRequiredResult::new(Some(asked), Some("prompt-state".into()))))
            }
        }
    }

    async fn list_tools(&self, _r: Option<PaginatedRequestParams>, _c: RequestContext<RoleServer>) -> Result<ListToolsResult, ErrorData> {
        let tool = |name: &str| Tool::new(name.to_owned(), "Asks first.", Arc::new(json!({"type": "object"}).as_object().unwrap().clone()));
        Ok(ListToolsResult::with_all_items(vec![tool("confirm"), tool("ask_model")]))
    }

    async fn call_tool(&self, request: CallToolRequestParams, context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let capabilities = context.meta.client_capabilities().map(|c| serde_json::to_value(c).unwrap());
        self.seen.lock().unwrap().push(Seen {
            responses: request.input_responses.as_ref().map(|r| serde_json::to_value(r).unwrap()),
            state: request.request_state.clone(),
            capabilities,
        });
        let who = request.arguments.as_ref().and_then(|a| a.get("who")).and_then(Value::as_str).unwrap_or("someone").to_owned();
        match (request.name.as_ref(), request.input_responses, request.request_state.as_deref()) {
            // Round 1: ask, with a state of the server's own (naming who asked, so a state
            // restored for the wrong call shows).
            ("confirm", None, None) => {
                let asked = [("confirm".to_owned(), elicitation("Go ahead?"))].into_iter().collect();
                Ok(CallToolResponse::InputRequired(InputRequiredResult::new(Some(asked), Some(format!("server-state-{who}")))))
            }
            // Round 2: the answer, with the state the server gave.
            ("confirm", Some(responses), Some(state)) if state == format!("server-state-{who}") => {
                let ok = responses.get("confirm").map(|r| r["content"]["ok"] == true).unwrap_or(false);
                Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(format!("confirmed for {who}: {ok}"))])))
            }
            ("confirm", _, state) => Err(ErrorData::invalid_params(format!("unexpected state {state:?}"), None)),
            ("ask_model", ..) => {
                let asked: InputRequest = serde_json::from_value(json!({
                    "method": "sampling/createMessage",
                    "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "2+2?"}}], "maxTokens": 5}
                }))
                .unwrap();
                Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                    Some([("answer".to_owned(), asked)].into_iter().collect()),
                    None,
                )))
            }
            _ => Err(ErrorData::invalid_params("no such tool", None)),
        }
    }
}

async fn start() -> (Asking, String) {
    let asking = Asking::default();
    let handler = asking.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().disable_allowed_hosts(),
    );
    let (listener, url) = listen().await;
    serve(listener, axum::Router::new().nest_service("/mcp", service));
    (asking, format!("{url}/mcp"))
}

/// The asking server behind Warden (`extra`: more of its `servers[]` entry).
async fn started(extra: &str) -> (TestIssuer, Asking, TestGateway) {
    let issuer = TestIssuer::start().await;
    let (asking, url) = start().await;
    let config = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\nservers:\n  - name: ask\n    url: {url}\n{extra}");
    let gw = gateway(&issuer, "  []", &config).await;
    (issuer, asking, gw)
}

fn token(issuer: &TestIssuer, gw: &TestGateway, who: &str) -> String {
    issuer.sign(&issuer.claims(who, "", &gw.mcp))
}

/// A 2026-07-28 `tools/call` of `tool` by a client that can be asked anything, with `extra`
/// params (`inputResponses`, `requestState`).
async fn call(gw: &TestGateway, token: &str, tool: &str, extra: Value) -> Reply {
    gw.call_2026(token, tool, json!({"elicitation": {}, "sampling": {}, "roots": {}}), extra).await
}

#[tokio::test]
async fn a_servers_input_request_reaches_its_caller_and_the_retry_its_server_with_the_servers_state() {
    let (issuer, asking, gw) = started("").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));

    let first = call(&gw, &alice, "ask_confirm", json!({})).await;
    let result = first.result();
    assert_eq!(result["resultType"], "input_required", "{first:?}");
    assert_eq!(result["inputRequests"]["confirm"]["method"], "elicitation/create");
    let state = result["requestState"].as_str().expect("Warden's state").to_owned();
    assert!(!state.contains("server-state"), "the server's own state is not the client's to read");
    // The server saw the caller's capabilities.
    assert_eq!(asking.seen.lock().unwrap()[0].capabilities, Some(json!({"elicitation": {}, "roots": {}, "sampling": {}})));

    let answer = json!({"inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}}, "requestState": state});
    // Another caller's retry with alice's state, and a state altered by a byte: refused, and
    // the server never sees them.
    let reached = asking.seen.lock().unwrap().len();
    let replayed = call(&gw, &bob, "ask_confirm", answer.clone()).await;
    assert_eq!((replayed.error_code(), replayed.body["error"]["data"]["code"].as_str()), (Some(-32602), Some("invalid_request_state")));
    let mut tampered = answer.clone();
    tampered["requestState"] = json!(format!("{}A", &state[..state.len() - 1]));
    assert_eq!(call(&gw, &alice, "ask_confirm", tampered).await.error_code(), Some(-32602));
    assert_eq!(asking.seen.lock().unwrap().len(), reached, "refused before the server");

    let second = call(&gw, &alice, "ask_confirm", answer).await;
    assert_eq!(second.result()["content"][0]["text"], "confirmed for someone: true", "{second:?}");
    let seen = asking.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.state.as_deref(), Some("server-state-someone"), "the server's own state, restored");
    assert_eq!(seen.responses, Some(json!({"confirm": {"action": "accept", "content": {"ok": true}}})));

    // Each round audited once; the second names the first.
    let events: Vec<Value> = gw.audit().into_iter().filter(|e| e["tool"] == "ask_confirm").collect();
    let reasons: Vec<&str> = events.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["input_required", "invalid_request_state", "invalid_request_state", "ok"], "{events:#?}");
    let first_id = events[0]["request_id"].as_str().unwrap();
    assert!(events[3]["explanation"].as_str().unwrap().contains(&format!("round 2 of the call first made as request {first_id}")));
    assert_eq!(events[0]["explanation"], "asked the client for elicitation/create");
}

#[tokio::test]
async fn what_a_server_may_ask_is_configured_and_older_clients_are_told_they_cannot_answer() {
    let (issuer, asking, gw) = started("    client_requests: {sampling: false}\n").await;
    let alice = token(&issuer, &gw, "alice");

    // The server sees the caller's capabilities less sampling, and asking for it anyway fails.
    let refused = call(&gw, &alice, "ask_ask_model", json!({})).await;
    assert_eq!(refused.result()["isError"], true, "{refused:?}");
    assert_eq!(asking.seen.lock().unwrap()[0].capabilities, Some(json!({"elicitation": {}, "roots": {}})));

    // A client of an older revision cannot be sent the server's input requests.
    let body = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "ask_confirm", "arguments": {}}}).to_string();
    let older = gw.post_raw(Some(&alice), body, &[]).await;
    assert_eq!(older.result()["isError"], true, "{older:?}");
    assert!(older.result()["content"][0]["text"].as_str().unwrap().contains("2026-07-28"));

    let events = gw.audit();
    let reasons: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["method"] == "tools/call")
        .map(|e| (e["decision"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [("error", "client_request_forbidden"), ("error", "input_required_unsupported")], "{events:#?}");
}

/// A prompt (or a resource) may ask for input too: relayed the same way, bound the same way.
#[tokio::test]
async fn a_prompts_input_request_is_relayed_like_a_calls() {
    let (issuer, asking, gw) = started("").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));
    let get = |token: &str, extra: Value| {
        let mut params = json!({"name": "ask_brief", "_meta": crate::common::meta_2026(json!({"elicitation": {}}))});
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let body = json!({"jsonrpc": "2.0", "id": 8, "method": "prompts/get", "params": params}).to_string();
        let (gw, token) = (&gw, token.to_owned());
        async move {
            gw.post_raw(
                Some(&token),
                body,
                &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "prompts/get"), ("mcp-name", "ask_brief")],
            )
            .await
        }
    };
    let first = get(&alice, json!({})).await;
    assert_eq!(first.result()["resultType"], "input_required", "{first:?}");
    let state = first.result()["requestState"].as_str().unwrap().to_owned();
    assert_ne!(state, "prompt-state");
    let answer = json!({"inputResponses": {"context": {"action": "accept", "content": {}}}, "requestState": state});
    assert_eq!(get(&bob, answer.clone()).await.error_code(), Some(-32602), "another caller's state");
    let second = get(&alice, answer).await;
    assert_eq!(second.result()["messages"][0]["content"]["text"], "the brief, with context", "{second:?}");
    assert_eq!(asking.seen.lock().unwrap().last().unwrap().state.as_deref(), Some("prompt-state"));
    let reasons: Vec<String> =
        gw.audit().iter().filter(|e| e["method"] == "prompts/get").map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons, ["input_required", "invalid_request_state", "ok"]);
}

/// Two callers with calls in their first round at once: each retry reaches the server with the
/// state of its own caller's round, whatever order they come back in.
#[tokio::test]
async fn concurrent_callers_each_get_their_own_rounds() {
    let (issuer, _asking, gw) = started("").await;
    let tokens: Vec<(String, String)> = ["alice", "bob", "carol"].iter().map(|who| ((*who).to_owned(), token(&issuer, &gw, who))).collect();
    let firsts = futures::future::join_all(tokens.iter().map(|(who, token)| {
        let gw = &gw;
        async move { call(gw, token, "ask_confirm", json!({"arguments": {"who": who}})).await }
    }))
    .await;
    let states: Vec<String> = firsts.iter().map(|r| r.result()["requestState"].as_str().unwrap().to_owned()).collect();
    // Back in the other order, concurrently.
    let seconds = futures::future::join_all(tokens.iter().zip(&states).rev().map(|((who, token), state)| {
        let gw = &gw;
        let answer = json!({
            "arguments": {"who": who},
            "inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}},
            "requestState": state,
        });
        async move { (who.clone(), call(gw, token, "ask_confirm", answer).await) }
    }))
    .await;
    for (who, reply) in seconds {
        assert_eq!(reply.result()["content"][0]["text"], format!("confirmed for {who}: true"), "{who}: {reply:?}");
    }
}

/// A caller of an older revision cannot retry with answers, but one with a session can be asked
/// on its call's stream: Warden puts the server's input requests to it and makes the call again
/// with its answers and the server's state. The caller sees one call.
#[tokio::test]
async fn an_older_callers_session_lets_warden_put_the_servers_input_requests_to_it_on_the_calls_stream() {
    let (issuer, asking, gw) = started("").await;
    let alice = token(&issuer, &gw, "alice");
    let session = gw.initialize_session(&alice, json!({"elicitation": {}})).await.unwrap();
    let post = |body: Value| gw.post_in_session(&alice, Some(&session), &body).send();
    let call = |id: u64, tool: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}});

    let mut events = crate::common::SseEvents::of(post(call(3, "ask_confirm")).await.unwrap());
    let asked = events.next().await;
    assert_eq!((asked["method"].as_str(), asked["params"]["message"].as_str()), (Some("elicitation/create"), Some("Go ahead?")), "{asked}");
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"ok": true}}});
    assert_eq!(post(answer).await.unwrap().status(), 202);
    let result = events.next().await;
    assert_eq!(result["result"]["content"][0]["text"], "confirmed for someone: true", "{result}");
    assert!(result["result"].get("resultType").is_none(), "an older revision's result");
    let seen = asking.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].capabilities, Some(json!({"elicitation": {}})), "the server saw what the session declared");
    assert_eq!(seen[1].state.as_deref(), Some("server-state-someone"));
    assert_eq!(seen[1].responses, Some(json!({"confirm": {"action": "accept", "content": {"ok": true}}})));

    // Sampling, which alice did not declare, asked anyway: the call fails; nothing reached her.
    let refused = post(call(4, "ask_ask_model")).await.unwrap();
    assert_eq!(refused.headers()["content-type"], "application/json");
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["result"]["isError"], true, "{refused}");

    let events = gw.audit();
    let calls: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["server"] == "ask" && e["method"] != "tools/pin")
        .map(|e| (e["method"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            ("elicitation/create", "client_request"),
            ("tools/call", "ok"),
            ("sampling/createMessage", "client_capability_missing"),
            ("tools/call", "client_request_failed")
        ],
        "{events:#?}"
    );
    let done = events.iter().find(|e| e["method"] == "tools/call").unwrap();
    assert!(done["explanation"].as_str().unwrap().contains("answered by the client in 1 round(s)"), "{done}");
}
