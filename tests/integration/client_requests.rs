//! A federated server of the older revisions (2025-11-25) asks the calling client during a call
//! (elicitation, sampling, roots): the request reaches the client that made the call, on that
//! call's SSE stream, only for what it declared in its session; its answer, POSTed back, reaches
//! the server; another caller cannot answer for it; every ask is audited. Its resource updates
//! reach, on their sessions' streams, the subscribers allowed to read the resource.

use std::sync::{Arc, Mutex};

use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, InitializeResult, ListToolsResult,
    ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

use crate::common::{SseEvents, TestGateway, TestIssuer, gateway, listen, serve};

/// A server of 2025-11-25 whose tools ask the client: `confirm` (a form), `ask_model`
/// (sampling), `roots`. Records what Warden declared to it. With `modern`, it speaks 2026-07-28
/// too, where its resource updates go to `subscriptions/listen` requests.
#[derive(Clone, Default)]
struct Legacy {
    modern: bool,
    /// 2026-07-28: each `subscriptions/listen` Warden opened (`listen URIS`) and ended (`end URIS`).
    listens: Arc<Mutex<Vec<String>>>,
    sinks: Arc<Mutex<Vec<rmcp::service::SubscriptionSink>>>,
    declared: Arc<Mutex<Option<Value>>>,
    /// Subscriptions as Warden asked for them: `+uri`, `-uri`.
    subscriptions: Arc<Mutex<Vec<String>>>,
    /// Its sessions (a test makes it forget them).
    sessions: Arc<LocalSessionManager>,
    /// Set by `grow`: the tool list then has one more.
    grown: Arc<std::sync::atomic::AtomicBool>,
}

impl ServerHandler for Legacy {
    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [rmcp::model::ProtocolVersion]> {
        use rmcp::model::ProtocolVersion as V;
        std::borrow::Cow::Owned(if self.modern { vec![V::V_2026_07_28, V::V_2025_11_25] } else { vec![V::V_2025_11_25] })
    }

    fn accepted_subscription_filter(&self, requested: &rmcp::model::SubscriptionFilter) -> Option<rmcp::model::SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        let uris = context.accepted().resource_subscriptions.clone().unwrap_or_default().join(",");
        self.listens.lock().unwrap().push(format!("listen {uris}"));
        self.sinks.lock().unwrap().push(context.sink().clone());
        context.cancelled().await;
        self.listens.lock().unwrap().push(format!("end {uris}"));
        Ok(())
    }

    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().enable_resources().enable_resources_subscribe().build())
    }

    async fn list_resources(
        &self,
        _r: Option<rmcp::model::PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        let resource = rmcp::model::Resource::new;
        Ok(rmcp::model::ListResourcesResult::with_all_items(vec![resource("mem://doc", "doc"), resource("mem://secret", "secret")]))
    }

    #[allow(deprecated)]
    async fn subscribe(&self, request: rmcp::model::SubscribeRequestParams, _c: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.subscriptions.lock().unwrap().push(format!("+{}", request.uri));
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(&self, request: rmcp::model::UnsubscribeRequestParams, _c: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.subscriptions.lock().unwrap().push(format!("-{}", request.uri));
        Ok(())
    }

    async fn list_tools(
        &self,
        _r: Option<rmcp::model::PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tool =
            |name: &str| Tool::new(name.to_owned(), "Asks the client.", Arc::new(json!({"type": "object"}).as_object().unwrap().clone()));
        let mut tools = vec![tool("confirm"), tool("ask_model"), tool("roots"), tool("touch"), tool("pester"), tool("grow")];
        if self.grown.load(std::sync::atomic::Ordering::SeqCst) {
            tools.push(tool("grown"));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(&self, request: CallToolRequestParams, context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        *self.declared.lock().unwrap() = context.peer.peer_info().map(|info| serde_json::to_value(&info.capabilities).unwrap());
        if request.name == "grow" {
            // One more tool, said on the session's standalone stream.
            self.grown.store(true, std::sync::atomic::Ordering::SeqCst);
            context.peer.notify_tool_list_changed().await.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            return Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text("grown")])));
        }
        if request.name == "pester" {
            // Asks again and again, whatever the answer.
            let mut refused = 0;
            for _ in 0..40 {
                let asked = json!({"method": "roots/list"});
                if context.peer.send_request(serde_json::from_value(asked).unwrap()).await.is_err() {
                    refused += 1;
                }
            }
            return Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(format!("refused {refused}"))])));
        }
        if request.name == "touch" {
            // The resource named changed: said on the session's standalone stream.
            let uri = request.arguments.as_ref().and_then(|a| a.get("uri")).and_then(Value::as_str).unwrap_or_default().to_owned();
            if self.modern {
                // On 2026-07-28, to the listening requests that asked for it.
                let sinks = self.sinks.lock().unwrap().clone();
                for sink in sinks {
                    let _ = sink.notify_resource_updated(uri.clone()).await;
                }
                return Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text("touched")])));
            }
            let params = rmcp::model::ResourceUpdatedNotificationParam::new(uri);
            context.peer.notify_resource_updated(params).await.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            return Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text("touched")])));
        }
        let (asked, read): (Value, fn(&Value) -> String) = match request.name.as_ref() {
            "confirm" => (
                json!({"method": "elicitation/create", "params": {
                    "message": "Go ahead?", "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
                }}),
                |answer| format!("confirmed: {}", answer["content"]["ok"]),
            ),
            "ask_model" => (
                json!({"method": "sampling/createMessage", "params": {
                    "messages": [{"role": "user", "content": {"type": "text", "text": "2+2?"}}], "maxTokens": 5
                }}),
                |answer| format!("the model said: {}", answer["content"]["text"]),
            ),
            _ => (json!({"method": "roots/list"}), |answer| format!("roots: {}", answer["roots"].as_array().map_or(0, Vec::len))),
        };
        let asked: rmcp::model::ServerRequest = serde_json::from_value(asked).unwrap();
        let text = match context.peer.send_request(asked).await {
            Ok(answer) => read(&serde_json::to_value(&answer).unwrap()),
            Err(e) => format!("refused: {e}"),
        };
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(text)])))
    }
}

async fn start(modern: bool) -> (Legacy, String) {
    let legacy = Legacy { modern, ..Legacy::default() };
    let handler = legacy.clone();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::clone(&legacy.sessions),
        StreamableHttpServerConfig::default().disable_allowed_hosts(),
    );
    let (listener, url) = listen().await;
    // A server of the older revisions does not know `server/discover`: -32601.
    let app = axum::Router::new().nest_service("/mcp", service).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            if modern {
                return next.run(request).await;
            }
            match crate::common::refuse_discover(request).await {
                Ok(request) => next.run(request).await,
                Err(refused) => refused,
            }
        },
    ));
    serve(listener, app);
    (legacy, format!("{url}/mcp"))
}

/// The server behind Warden: `config` before its `servers[]` entry (a policy), `entry` more of
/// that entry.
async fn started_with(config: &str, entry: &str) -> (TestIssuer, Legacy, TestGateway) {
    started_speaking(false, config, entry).await
}

/// The same, the server speaking 2026-07-28 too when `modern`.
async fn started_speaking(modern: bool, config: &str, entry: &str) -> (TestIssuer, Legacy, TestGateway) {
    let issuer = TestIssuer::start().await;
    let (legacy, url) = start(modern).await;
    let config = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\n{config}servers:\n  - name: ask\n    url: {url}\n{entry}");
    let gw = gateway(&issuer, "  []", &config).await;
    (issuer, legacy, gw)
}

/// Every tool of `ask` allowed, but its secret not to bob.
const NOT_BOB: &str = "rules:\n  - id: all\n    effect: allow\n    tools: [\"server:ask\"]\n  - id: not-bob\n    effect: deny\n    tools: [ask_secret]\n    when: principal.sub == \"bob\"\n";

/// A policy file holding [`NOT_BOB`], and the config lines that load it (reloaded every `reload`).
fn not_bob_policy(reload: &str) -> (tempfile::NamedTempFile, String) {
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), NOT_BOB).unwrap();
    let config = format!("policy:\n  files: [{}]\n  reload_interval: {reload}\n", policy.path().display());
    (policy, config)
}

fn token(issuer: &TestIssuer, gw: &TestGateway, who: &str) -> String {
    issuer.sign(&issuer.claims(who, "", &gw.mcp))
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

#[tokio::test]
async fn a_servers_request_during_a_call_reaches_the_caller_that_made_it_and_its_answer_the_server() {
    let (issuer, legacy, gw) = started_with("", "").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));
    let session = gw.initialize_session(&alice, json!({"elicitation": {}, "sampling": {}})).await.expect("a session for a capable client");
    let bobs = gw.initialize_session(&bob, json!({"elicitation": {}})).await.expect("bob's session");

    let response = gw.post_in_session(&alice, Some(&session), &call(3, "ask_confirm")).send().await.unwrap();
    let mut events = SseEvents::of(response);
    let asked = events.next().await;
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    assert_eq!(asked["params"]["message"], "Go ahead?");
    let id = asked["id"].clone();
    assert!(id.as_str().unwrap().starts_with("warden-ask-"), "Warden's own id, not the server's: {id}");
    // Warden declared to the server what it may ask callers.
    assert_eq!(legacy.declared.lock().unwrap().clone(), Some(json!({"elicitation": {"form": {}, "url": {}}, "roots": {}, "sampling": {}})));

    // Bob cannot answer alice's request, even knowing its id; a made-up id answers nothing.
    let answer = |id: &Value| json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept", "content": {"ok": true}}});
    let stolen = gw.post_in_session(&bob, Some(&bobs), &answer(&id)).send().await.unwrap();
    assert_eq!(stolen.status(), 400);
    assert_eq!(stolen.json::<Value>().await.unwrap()["error"]["data"]["code"], "unexpected_response");
    assert_eq!(gw.post_in_session(&alice, Some(&session), &answer(&json!("warden-ask-made-up"))).send().await.unwrap().status(), 400);

    let answered = gw.post_in_session(&alice, Some(&session), &answer(&id)).send().await.unwrap();
    assert_eq!(answered.status(), 202);
    let result = events.next().await;
    assert_eq!(result["id"], 3);
    assert_eq!(result["result"]["content"][0]["text"], "confirmed: true", "{result}");
    // Answered once: a second answer finds nothing waiting.
    assert_eq!(gw.post_in_session(&alice, Some(&session), &answer(&id)).send().await.unwrap().status(), 400);

    // Sampling, which alice declared: relayed the same way.
    let mut events = SseEvents::of(gw.post_in_session(&alice, Some(&session), &call(4, "ask_ask_model")).send().await.unwrap());
    let asked = events.next().await;
    assert_eq!(asked["method"], "sampling/createMessage");
    let sampled = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "4"}, "model": "m", "stopReason": "endTurn"
    }});
    assert_eq!(gw.post_in_session(&alice, Some(&session), &sampled).send().await.unwrap().status(), 202);
    assert_eq!(events.next().await["result"]["content"][0]["text"], "the model said: \"4\"");

    // Roots, which alice did not declare: the server's request is refused, and nothing reached
    // alice but the result (a JSON body: nothing was streamed).
    let response = gw.post_in_session(&alice, Some(&session), &call(5, "ask_roots")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.json::<Value>().await.unwrap()["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("refused:") && text.contains("did not declare"), "{text}");

    // Without a session, the client cannot be asked anything.
    let response = gw.post_in_session(&alice, None, &call(6, "ask_confirm")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.json::<Value>().await.unwrap()["result"]["content"][0]["text"].as_str().unwrap().starts_with("refused:"));

    let events = gw.audit();
    let asks: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| e["server"] == "ask" && !["tools/call", "tools/pin"].contains(&e["method"].as_str().unwrap_or_default()))
        .map(|e| (e["method"].as_str().unwrap(), e["decision"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        asks,
        [
            ("elicitation/create", "allow", "client_request"),
            ("sampling/createMessage", "allow", "client_request"),
            ("roots/list", "deny", "client_capability_missing"),
            ("elicitation/create", "deny", "client_capability_missing"),
        ],
        "{events:#?}"
    );
    let first = events.iter().find(|e| e["method"] == "elicitation/create").unwrap();
    assert_eq!((first["subject"].as_str(), first["tool"].as_str()), (Some("alice"), Some("ask_confirm")));
    assert!(first["explanation"].as_str().unwrap().contains("asked by server ask during request 3"), "{first}");
    let answers: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| {
            e["method"].is_null() && e["request_id"].is_string() && e["jsonrpc_id"].as_str().is_some_and(|i| i.starts_with("warden-ask"))
        })
        .map(|e| (e["subject"].as_str().unwrap(), e["decision"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        answers,
        [
            ("bob", "deny", "unexpected_response"),
            ("alice", "deny", "unexpected_response"),
            ("alice", "allow", "ok"),
            ("alice", "deny", "unexpected_response"),
            ("alice", "allow", "ok"),
        ],
        "{events:#?}"
    );
    let text = gw.audit_text();
    assert!(!text.contains("Go ahead?") && !text.contains("2+2?"), "no content in the audit");
}

#[tokio::test]
async fn a_session_is_the_callers_own_and_issued_only_where_servers_are_federated() {
    // Without federated servers there is nothing a session would keep: none is issued.
    let lone_issuer = TestIssuer::start().await;
    let lone = gateway(&lone_issuer, "  []", "").await;
    let carol = token(&lone_issuer, &lone, "carol");
    assert_eq!(lone.initialize_session(&carol, json!({"elicitation": {}})).await, None, "no federation: no session");

    let (issuer, _legacy, gw) = started_with("", "    client_requests: {sampling: false}\n").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));
    assert!(gw.initialize_session(&alice, json!({})).await.is_some(), "a session, if only for a log level and subscriptions");
    let session = gw.initialize_session(&alice, json!({"roots": {}})).await.unwrap();
    // Another caller's session, or one altered: 404, so the client starts a new one.
    for (token, id) in [(&bob, session.clone()), (&alice, format!("{session}x"))] {
        let reply = gw.post_in_session(token, Some(&id), &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).send().await.unwrap();
        assert_eq!(reply.status(), 404);
        assert_eq!(reply.json::<Value>().await.unwrap()["error"]["data"]["code"], "session_not_found");
    }
    let reply =
        gw.post_in_session(&alice, Some(&session), &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).send().await.unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn what_warden_declares_to_a_server_follows_its_client_requests() {
    let (issuer, legacy, gw) = started_with("", "    client_requests: {sampling: false, roots: false}\n").await;
    let alice = token(&issuer, &gw, "alice");
    let session = gw.initialize_session(&alice, json!({"sampling": {}})).await.unwrap();
    let response = gw.post_in_session(&alice, Some(&session), &call(2, "ask_ask_model")).send().await.unwrap();
    let text = response.json::<Value>().await.unwrap()["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("refused:") && text.contains("client_requests"), "{text}");
    assert_eq!(legacy.declared.lock().unwrap().clone(), Some(json!({"elicitation": {"form": {}, "url": {}}})));
    let forbidden = gw.audit().into_iter().find(|e| e["method"] == "sampling/createMessage").unwrap();
    assert_eq!((forbidden["decision"].as_str(), forbidden["reason"].as_str()), (Some("deny"), Some("client_request_forbidden")));
}

/// Resource subscriptions (2025-11-25): each caller subscribes in its session and hears, on its
/// session's stream, of the resources it may read; the server is subscribed once per URI
/// however many callers want it, and released when the last one leaves.
#[tokio::test]
async fn a_resource_update_reaches_the_subscribers_allowed_to_read_it() {
    let (policy, config) = not_bob_policy("100ms");
    let (issuer, legacy, gw) = started_with(&config, "").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));
    let init = gw
        .rpc(
            &alice,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    assert_eq!(init.result()["capabilities"]["resources"]["subscribe"], true, "{init:?}");
    let mut streams = Vec::new();
    let mut sessions = Vec::new();
    for who in [&alice, &bob] {
        let session = gw.initialize_session(who, json!({})).await.unwrap();
        let stream = reqwest::Client::new()
            .get(&gw.mcp)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &session)
            .header("authorization", format!("Bearer {who}"))
            .send()
            .await
            .unwrap();
        streams.push(SseEvents::of(stream));
        for uri in ["mem://doc", "mem://secret"] {
            let subscribe = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": uri}});
            let reply = gw.post_in_session(who, Some(&session), &subscribe).send().await.unwrap();
            assert_eq!(reply.json::<Value>().await.unwrap()["result"], json!({}), "{uri}");
        }
        sessions.push(session);
    }
    // Bob may not read the secret: his subscription is kept, and the server is not asked for
    // him; the doc is subscribed once for both.
    assert_eq!(*legacy.subscriptions.lock().unwrap(), ["+mem://doc", "+mem://secret"]);

    let touch = |uri: &str| gw.call(&alice, "ask_touch", json!({"uri": uri}));
    assert_eq!(touch("mem://secret").await.result()["content"][0]["text"], "touched");
    touch("mem://doc").await;
    let updated = |uri: &str| json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
    assert_eq!(streams[0].next().await, updated("mem://secret"));
    assert_eq!(streams[0].next().await, updated("mem://doc"));
    assert_eq!(streams[1].next().await, updated("mem://doc"), "bob hears only of what he may read");

    // Policy decides at delivery: once bob may no longer read the doc, he hears nothing of it.
    std::fs::write(
        policy.path(),
        format!("{NOT_BOB}  - id: not-bob-either\n    effect: deny\n    tools: [ask_doc]\n    when: principal.sub == \"bob\"\n"),
    )
    .unwrap();
    crate::common::eventually(async || gw.audit(), |events| events.iter().any(|e| e["reason"] == "policy_reloaded")).await;
    // A new policy can show or hide anything: every session's stream hears each list changed.
    for events in &mut streams {
        for list in ["tools", "prompts", "resources"] {
            let changed = json!({"jsonrpc": "2.0", "method": format!("notifications/{list}/list_changed"), "params": {}});
            assert_eq!(events.next().await, changed);
        }
    }
    touch("mem://doc").await;
    assert_eq!(streams[0].next().await, updated("mem://doc"));
    assert_eq!(streams[1].next_within(std::time::Duration::from_millis(500)).await, None, "bob may no longer read it");

    // The server forgets Warden's session (a restart that kept its address): rmcp's client
    // starts a new one at the next request, and Warden subscribes it again.
    let forgotten: Vec<_> = legacy.sessions.sessions.read().await.keys().cloned().collect();
    for id in forgotten {
        rmcp::transport::streamable_http_server::SessionManager::close_session(&*legacy.sessions, &id).await.unwrap();
    }
    touch("mem://doc").await;
    let subscribed_again = crate::common::eventually(
        async || legacy.subscriptions.lock().unwrap().clone(),
        |s| s.iter().filter(|u| *u == "+mem://doc").count() == 2,
    )
    .await;
    assert_eq!(subscribed_again.iter().filter(|u| *u == "+mem://doc").count(), 2, "{subscribed_again:?}");
    touch("mem://doc").await;
    assert_eq!(streams[0].next().await, updated("mem://doc"), "updates flow again");

    // Released when the last subscriber leaves.
    let unsubscribe = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/unsubscribe", "params": {"uri": "mem://doc"}});
    gw.post_in_session(&alice, Some(&sessions[0]), &unsubscribe).send().await.unwrap();
    assert!(!legacy.subscriptions.lock().unwrap().contains(&"-mem://doc".to_owned()), "bob still wants it");
    gw.post_in_session(&bob, Some(&sessions[1]), &unsubscribe).send().await.unwrap();
    assert_eq!(legacy.subscriptions.lock().unwrap().last().map(String::as_str), Some("-mem://doc"));

    let events = gw.audit();
    let subscribed: Vec<(&str, Option<&str>)> = events
        .iter()
        .filter(|e| e["method"] == "resources/subscribe")
        .map(|e| (e["subject"].as_str().unwrap(), e["server"].as_str()))
        .collect();
    assert_eq!(subscribed, [("alice", Some("ask")), ("alice", Some("ask")), ("bob", Some("ask")), ("bob", None)], "{events:#?}");
}

/// A 2026-07-28 caller cannot be sent a request during a call: a server of the older revisions
/// that asks gets its request to the caller as an `InputRequiredResult` while its call waits,
/// held; the caller's retry brings the answer to the server, and the call completes.
#[tokio::test]
async fn a_2026_callers_answer_reaches_an_older_server_that_asked_during_the_call() {
    let (issuer, _legacy, gw) = started_with("", "").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));
    let call = |token: &str, capabilities: Value, extra: Value| {
        let (gw, token) = (&gw, token.to_owned());
        async move { gw.call_2026(&token, "ask_confirm", capabilities, extra).await }
    };
    let first = call(&alice, json!({"elicitation": {}}), json!({})).await;
    let result = first.result();
    assert_eq!(result["resultType"], "input_required", "{first:?}");
    let (key, asked) = result["inputRequests"].as_object().unwrap().iter().next().unwrap();
    assert_eq!((asked["method"].as_str(), asked["params"]["message"].as_str()), (Some("elicitation/create"), Some("Go ahead?")));
    let state = result["requestState"].as_str().unwrap().to_owned();
    let answer = json!({"inputResponses": {key: {"action": "accept", "content": {"ok": true}}}, "requestState": state});

    // Another caller cannot answer for alice; the held call waits on.
    assert_eq!(call(&bob, json!({"elicitation": {}}), answer.clone()).await.error_code(), Some(-32602));
    let done = call(&alice, json!({"elicitation": {}}), answer.clone()).await;
    assert_eq!(done.result()["content"][0]["text"], "confirmed: true", "{done:?}");
    // Answered once: the held call is gone.
    assert_eq!(call(&alice, json!({"elicitation": {}}), answer).await.error_code(), Some(-32602));

    // A caller that did not declare elicitation is not asked: the server hears -32601.
    let undeclared = call(&alice, json!({}), json!({})).await;
    let text = undeclared.result()["content"][0]["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.starts_with("refused:") && text.contains("did not declare"), "{undeclared:?}");

    // The call's rounds, and each request the server made of the caller: relayed, or refused
    // (audited as on the older revisions).
    let reasons: Vec<String> = gw
        .audit()
        .iter()
        .filter(|e| e["tool"] == "ask_confirm")
        .map(|e| format!("{} {}", e["method"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            "elicitation/create client_request",
            "tools/call input_required",
            "tools/call invalid_request_state",
            "tools/call ok",
            "tools/call invalid_request_state",
            "elicitation/create client_capability_missing",
            "tools/call ok"
        ]
    );
}

/// Two callers' calls at once, on one shared server session: each caller gets only the request
/// made during its own call, and each answer reaches the call it belongs to.
#[tokio::test]
async fn concurrent_callers_each_get_only_their_own_requests() {
    let (issuer, _legacy, gw) = started_with("", "").await;
    let callers = [("alice", true), ("bob", false)];
    let mut running = Vec::new();
    for (who, ok) in callers {
        let token = token(&issuer, &gw, who);
        let session = gw.initialize_session(&token, json!({"elicitation": {}})).await.unwrap();
        let response = gw.post_in_session(&token, Some(&session), &call(3, "ask_confirm")).send().await.unwrap();
        running.push((token, session, ok, SseEvents::of(response)));
    }
    // Both calls are waiting for their callers now; each caller answers what it was asked.
    let mut ids = Vec::new();
    for (token, session, ok, events) in &mut running {
        let asked = events.next().await;
        assert_eq!(asked["method"], "elicitation/create");
        ids.push(asked["id"].clone());
        let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"ok": *ok}}});
        assert_eq!(gw.post_in_session(token, Some(session), &answer).send().await.unwrap().status(), 202);
    }
    assert_ne!(ids[0], ids[1]);
    for (_, _, ok, events) in &mut running {
        assert_eq!(events.next().await["result"]["content"][0]["text"], format!("confirmed: {ok}"));
    }
}

/// Resource subscriptions on 2026-07-28 (`subscriptions/listen`): the request's own stream
/// starts with the acknowledgement, then carries, tagged with the subscription id, the updates
/// of the resources the caller may read; when the stream ends its servers are released.
#[tokio::test]
async fn a_listen_stream_carries_the_updates_its_caller_may_read_and_releases_them_when_it_ends() {
    let (_policy, config) = not_bob_policy("0s");
    let (issuer, legacy, gw) = started_with(&config, "").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));
    let meta = crate::common::meta_2026(json!({}));
    let discovered = gw
        .post_raw(
            Some(&alice),
            json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}).to_string(),
            &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")],
        )
        .await;
    assert_eq!(discovered.result()["capabilities"]["resources"]["subscribe"], true, "{discovered:?}");
    let mut streams = Vec::new();
    for (who, id) in [(&alice, 8), (&bob, 9)] {
        let mut events = SseEvents::of(listen_2026(&gw, who, id).await);
        let ack = events.next().await;
        assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
        // Accepted: tool list changes and the resources; bob's secret is accepted too — he
        // learns nothing of what he may not see — and never heard of.
        assert_eq!(
            ack["params"]["notifications"],
            json!({"resourceSubscriptions": ["mem://doc", "mem://secret"], "toolsListChanged": true})
        );
        assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], id);
        streams.push(events);
    }
    assert_eq!(*legacy.subscriptions.lock().unwrap(), ["+mem://doc", "+mem://secret"], "each URI subscribed once");

    for uri in ["mem://secret", "mem://doc"] {
        gw.call(&alice, "ask_touch", json!({"uri": uri})).await;
    }
    let updated = |uri: &str, id: u64| json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri, "_meta": {"io.modelcontextprotocol/subscriptionId": id}}});
    assert_eq!(streams[0].next().await, updated("mem://secret", 8));
    assert_eq!(streams[0].next().await, updated("mem://doc", 8));
    assert_eq!(streams[1].next().await, updated("mem://doc", 9), "bob hears only of what he may read");

    // The server's tool list grows: each stream hears the list changed, tagged with its id.
    gw.call(&alice, "ask_grow", json!({})).await;
    for (events, id) in streams.iter_mut().zip([8, 9]) {
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id}}});
        assert_eq!(events.next().await, changed);
    }
    assert!(gw.tool_names(&alice).await.contains(&"ask_grown".to_owned()));

    // Alice goes: the secret, hers alone, is released; the doc stays for bob.
    drop(streams.remove(0));
    let released = crate::common::eventually(async || legacy.subscriptions.lock().unwrap().clone(), |s| s.len() == 3).await;
    assert_eq!(released, ["+mem://doc", "+mem://secret", "-mem://secret"]);
}

/// A server that asks in a loop: every request is refused to it (this caller declared nothing),
/// the first 32 audited, then one `client_request_limit`, then no more events.
#[tokio::test]
async fn a_server_asking_in_a_loop_cannot_flood_the_audit_trail() {
    let (issuer, _legacy, gw) = started_with("", "").await;
    let alice = token(&issuer, &gw, "alice");
    let reply = gw.call(&alice, "ask_pester", json!({})).await;
    assert_eq!(reply.result()["content"][0]["text"], "refused 40", "{reply:?}");
    let reasons: Vec<String> =
        gw.audit().iter().filter(|e| e["method"] == "roots/list").map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons.len(), 33, "{reasons:?}");
    assert!(reasons[..32].iter().all(|r| r == "client_capability_missing"));
    assert_eq!(reasons[32], "client_request_limit");
}

/// A 2026-07-28 caller's `subscriptions/listen` for the doc and the secret (and tool list
/// changes), request id `id`: its SSE response.
async fn listen_2026(gw: &TestGateway, who: &str, id: u64) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": {
        "_meta": crate::common::meta_2026(json!({})),
        "notifications": {"resourceSubscriptions": ["mem://doc", "mem://secret"], "toolsListChanged": true}
    }});
    reqwest::Client::new()
        .post(&gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .header("authorization", format!("Bearer {who}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A server Warden speaks 2026-07-28 to has no `resources/subscribe`: the URIs its callers
/// subscribe to go in the filter of the `subscriptions/listen` Warden holds open toward it,
/// opened again with the new filter (before the old one is cancelled) when they change; its
/// updates reach the callers allowed to read the resource, as from any server.
#[tokio::test]
async fn a_2026_server_is_subscribed_through_the_filter_warden_listens_with() {
    let (_policy, config) = not_bob_policy("0s");
    let (issuer, server, gw) = started_speaking(true, &config, "").await;
    let (alice, bob) = (token(&issuer, &gw, "alice"), token(&issuer, &gw, "bob"));
    let listens = || server.listens.lock().unwrap().clone();
    crate::common::eventually(async || listens(), |l| l == &["listen "]).await;

    let mut streams = Vec::new();
    for (who, id) in [(&alice, 8), (&bob, 9)] {
        let mut events = SseEvents::of(listen_2026(&gw, who, id).await);
        assert_eq!(events.next().await["method"], "notifications/subscriptions/acknowledged");
        streams.push(events);
    }
    // Alice's subscription brings both URIs in (bob's adds nothing: his secret is never asked
    // for him, the doc already is); each new filter is listened with before the old one ends.
    let open = || open_listens(&listens());
    let (now, always) = crate::common::eventually(async || open(), |(o, _)| o == &["mem://doc,mem://secret"]).await;
    assert_eq!(now, ["mem://doc,mem://secret"], "{:?}", listens());
    assert!(always, "never without a listen: {:?}", listens());
    assert!(server.subscriptions.lock().unwrap().is_empty(), "no resources/subscribe in 2026-07-28");

    for uri in ["mem://secret", "mem://doc"] {
        gw.call(&alice, "ask_touch", json!({"uri": uri})).await;
    }
    let updated = |uri: &str, id: u64| json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri, "_meta": {"io.modelcontextprotocol/subscriptionId": id}}});
    assert_eq!(streams[0].next().await, updated("mem://secret", 8));
    assert_eq!(streams[0].next().await, updated("mem://doc", 8));
    assert_eq!(streams[1].next().await, updated("mem://doc", 9), "bob hears only of what he may read");

    // Alice goes: the server is listened to for the doc alone.
    drop(streams.remove(0));
    let (now, always) = crate::common::eventually(async || open(), |(o, _)| o == &["mem://doc"]).await;
    assert_eq!(now, ["mem://doc"], "{:?}", listens());
    assert!(always, "never without a listen: {:?}", listens());
    gw.call(&alice, "ask_touch", json!({"uri": "mem://doc"})).await;
    assert_eq!(streams[0].next().await, updated("mem://doc", 9));
}

/// The filters of the listens still open after `log` (`listen URIS` / `end URIS` lines), and
/// whether, once the first was opened, one was always open.
fn open_listens(log: &[String]) -> (Vec<String>, bool) {
    let (mut open, mut always) = (Vec::<String>::new(), true);
    for line in log {
        if let Some(uris) = line.strip_prefix("listen ") {
            open.push(uris.to_owned());
        } else if let Some(uris) = line.strip_prefix("end ") {
            if let Some(at) = open.iter().position(|o| o == uris) {
                open.remove(at);
            }
            always &= !open.is_empty();
        }
    }
    (open, always)
}
