//! Dispatch of an admitted message, for every revision: one typed message in, one JSON-RPC
//! response out (or, for a federated call that reports progress, an SSE stream that ends with
//! it).
//!
//! The revisions that negotiate with `initialize` (up to 2025-11-25) and the 2026-07-28
//! per-request lifecycle differ in little once the gate has checked a request (its SEP-2243
//! headers and SEP-2575 `_meta`): on 2026-07-28, `server/discover` is served and `ping` is gone;
//! results carry `resultType` and cache hints; a missing resource is -32602; and an error that
//! refuses the request itself has an HTTP status of its own (`http_status`). Everything else
//! (policy, limits, audit, the call) is the same code. rmcp's server service is not used: its
//! stateless mode parsed the body again, built a one-shot transport, spawned a task per request
//! and copied the answer back through a channel (the profile in docs/architecture.md), and
//! Warden then had to read rmcp's answers back to audit them.
//!
//! In: an [`Admitted`], its typed message and its [`Revision`]. Out: the response; the
//! request's one audit event is written by whoever answers.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rmcp::model::{ClientJsonRpcMessage, ErrorCode, ErrorData, ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerResult};

use super::message::{Kind, Message};
use super::{Admitted, Mcp};
use crate::audit::{AuditEvent, Verdict};
use crate::error::GatewayError;

/// Which lifecycle a request is answered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// The revisions that negotiate with `initialize` (up to 2025-11-25): no `resultType`.
    Handshake,
    /// 2026-07-28 and later: each request names its revision (`server/discover` included).
    PerRequest,
}

impl Revision {
    /// The request's revision is the one its `_meta` names, else its header's (the gate has
    /// checked that the two agree); `server/discover` exists only on the per-request lifecycle.
    pub fn of(headers: &HeaderMap, message: &Message) -> Self {
        let named = message.meta.as_ref().and_then(|m| m.protocol_version());
        let per_request = match &named {
            Some(revision) => revision.as_str() >= ProtocolVersion::V_2026_07_28.as_str(),
            None => per_request_header(headers),
        };
        if per_request || message.method.as_deref() == Some("server/discover") { Self::PerRequest } else { Self::Handshake }
    }

    /// A result in this revision's shape: `resultType` and the cache hints 2026-07-28 requires
    /// on cacheable results, or neither for the older revisions.
    fn shape(self, result: &mut ServerResult) {
        match self {
            Self::PerRequest => result.fill_missing_cache_hints(),
            Self::Handshake => result.strip_result_type_for_legacy_peer(),
        }
    }

    /// An error in this revision's terms: 2026-07-28 reports a missing resource as -32602.
    fn error(self, mut error: ErrorData) -> ErrorData {
        if self == Self::PerRequest && error.code == ErrorCode::RESOURCE_NOT_FOUND {
            error.code = ErrorCode::INVALID_PARAMS;
        }
        error
    }
}

/// Whether `MCP-Protocol-Version` names 2026-07-28 or a later revision this server knows (an
/// unknown one is refused, or, on `initialize`, negotiated down).
pub fn per_request_header(headers: &HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28.as_str() && ProtocolVersion::KNOWN_VERSIONS.iter().any(|k| k.as_str() == v))
}

/// The newest revision with an `initialize` handshake, which a client asking for one Warden
/// does not serve (or 2026-07-28, which has none) is offered instead.
const NEWEST_HANDSHAKE: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// Serves a message: one typed message in, one JSON-RPC response out.
pub async fn serve(mcp: &std::sync::Arc<Mcp>, admitted: Admitted, kind: Kind, headers: &HeaderMap) -> Response {
    let revision = admitted.revision;
    let request = match kind {
        Kind::Other(message) => match *message {
            ClientJsonRpcMessage::Notification(notification) => {
                // Stateless: nothing to remember; the notification is recorded and acknowledged.
                // A cancellation reaches the caller's own call, if it is still running here.
                if let rmcp::model::ClientNotification::CancelledNotification(cancelled) = &notification.notification
                    && let Some(id) = cancelled.params.request_id.as_ref().and_then(|id| serde_json::to_value(id).ok())
                    && let Some(call) = mcp.in_flight.get(&super::in_flight_key(&admitted.principal, &id))
                {
                    call.cancel();
                }
                served(mcp, &admitted, StatusCode::ACCEPTED);
                return status_only(StatusCode::ACCEPTED);
            }
            // A client's answer to what a federated server asked it during a call (`asks`).
            ClientJsonRpcMessage::Response(response) => {
                return take_answer(
                    mcp,
                    &admitted,
                    serde_json::to_value(response.result)
                        .map_err(|_| ErrorData::internal_error("the client's answer cannot be read", None)),
                );
            }
            ClientJsonRpcMessage::Error(error) => return take_answer(mcp, &admitted, Err(error.error)),
            ClientJsonRpcMessage::Request(request) if matches!(request.request, rmcp::model::ClientRequest::DiscoverRequest(_)) => {
                served(mcp, &admitted, StatusCode::OK);
                let info = super::handler::info(mcp.federation.offers_extras());
                let result = rmcp::model::DiscoverResult::from_server_info(super::handler::PROTOCOL_VERSIONS.to_vec(), info);
                return json_response(&ServerJsonRpcMessage::response(ServerResult::DiscoverResult(result), request.id), revision);
            }
            // Federated resources and prompts (when there are federated servers).
            // Boxed: a federated request's future is large, and a call does not take it.
            ClientJsonRpcMessage::Request(request) if mcp.federation.offers_extras() => {
                return Box::pin(serve_extra(mcp, admitted, request.id, request.request)).await;
            }
            // The gate lets through only the methods it serves.
            ClientJsonRpcMessage::Request(_) => return refuse_with_id(mcp, admitted, GatewayError::MethodNotFound),
        },
        request => request,
    };
    let Some(id) = admitted.jsonrpc_id.clone().and_then(|id| serde_json::from_value::<RequestId>(id).ok()) else {
        // The reader admits no request without a string or integer id.
        return refuse_with_id(mcp, admitted, GatewayError::InvalidRequest("a request needs an id"));
    };
    let answer: Result<ServerResult, ErrorData> = match request {
        Kind::Initialize(initialize) => {
            let header = headers.get("mcp-protocol-version");
            if header.is_some_and(|h| h.as_bytes() != initialize.protocol_version.as_str().as_bytes()) {
                let error = GatewayError::InvalidRequest("the MCP-Protocol-Version header does not match params.protocolVersion");
                return refuse_with_id(mcp, admitted, error);
            }
            // The client's revision when Warden serves it and it has a handshake; otherwise the
            // newest that has one.
            let mut result = super::handler::info(mcp.federation.offers_extras());
            let requested = &initialize.protocol_version;
            result.protocol_version = if requested.has_initialize() && super::handler::PROTOCOL_VERSIONS.contains(requested) {
                requested.clone()
            } else {
                NEWEST_HANDSHAKE
            };
            served(mcp, &admitted, StatusCode::OK);
            // Where Warden federates servers, the client keeps a session (`sessions`): what
            // they may ask of it; its log level and resource subscriptions are kept by it.
            let session = (!mcp.federation.is_empty()).then(|| {
                let capabilities = super::sessions::relayable(&initialize.capabilities).unwrap_or_default();
                super::sessions::issue(&mcp.rounds, &admitted.principal, capabilities, crate::unix_now())
            });
            let session = session.flatten();
            let mut response = json_response(&answer_message(Ok(ServerResult::InitializeResult(result)), id, revision), revision);
            if let Some(session) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
                response.headers_mut().insert("mcp-session-id", session);
            }
            return response;
        }
        // 2026-07-28 removed `ping` (SEP-2575).
        Kind::Ping if revision == Revision::PerRequest => {
            return refuse_with_id(mcp, admitted, GatewayError::MethodNotFoundOnThisRevision);
        }
        Kind::Ping => {
            served(mcp, &admitted, StatusCode::OK);
            Ok(ServerResult::empty(()))
        }
        Kind::ListTools => Ok(ServerResult::ListToolsResult(super::handler::list_tools(mcp, &admitted))),
        Kind::CallTool(params) => {
            // A federated tool's progress and logs reach a client that asked for them, over SSE;
            // on the older revisions a client with a session may also be asked things by the
            // server during the call, and its answer is an SSE stream once the server asks.
            let federated = admitted.call.as_ref().is_some_and(|c| c.tool.server.is_some());
            let token = params.meta.as_ref().and_then(|m| m.get_progress_token());
            // The call's logs: on 2026-07-28 from the level its `_meta` names; on the older
            // revisions from the level its session's client set.
            #[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
            let log_level = match (revision, &admitted.session) {
                (Revision::PerRequest, _) => params.meta.as_ref().and_then(|m| m.log_level()),
                (Revision::Handshake, Some(session)) => mcp.log_levels.get(&admitted.principal, session),
                (Revision::Handshake, None) => None,
            };
            let askable = revision == Revision::Handshake
                && admitted.session.is_some()
                && admitted.client_capabilities.as_ref().and_then(super::sessions::relayable).is_some();
            if federated && (token.is_some() || log_level.is_some() || askable) {
                // A stream at once where the client asked for one; else once there is something
                // to send before the answer.
                let eager = token.is_some() || (log_level.is_some() && revision == Revision::PerRequest);
                return stream_call(std::sync::Arc::clone(mcp), admitted, id, (token, log_level), eager).await;
            }
            return match super::handler::call_tool(mcp, admitted, None).await {
                Ok(response) => tool_response(response, &id, revision),
                Err(error) => json_response(&ServerJsonRpcMessage::error(revision.error(error), Some(id)), revision),
            };
        }
        Kind::Other(_) => return refuse_with_id(mcp, admitted, GatewayError::MethodNotFound),
    };
    json_response(&answer_message(answer, id, revision), revision)
}

/// `resources/*`, `prompts/*` and `completion/complete` of the federated servers.
async fn serve_extra(mcp: &std::sync::Arc<Mcp>, admitted: Admitted, id: RequestId, request: rmcp::model::ClientRequest) -> Response {
    let revision = admitted.revision;
    use rmcp::model::ClientRequest as R;
    let answer: Result<ServerResult, ErrorData> = match request {
        R::ListResourcesRequest(_) => Ok(ServerResult::ListResourcesResult(super::handler::list_resources(mcp, &admitted))),
        R::ListResourceTemplatesRequest(_) => {
            Ok(ServerResult::ListResourceTemplatesResult(super::handler::list_resource_templates(mcp, &admitted)))
        }
        R::ListPromptsRequest(_) => Ok(ServerResult::ListPromptsResult(super::handler::list_prompts(mcp, &admitted))),
        R::ReadResourceRequest(r) => {
            let retry = retry_of(r.params.input_responses, r.params.request_state);
            super::handler::read_resource(mcp, admitted, &r.params.uri, retry).await.map(|a| answered(a, ServerResult::ReadResourceResult))
        }
        R::GetPromptRequest(r) => {
            let retry = retry_of(r.params.input_responses, r.params.request_state);
            let name = r.params.name;
            super::handler::get_prompt(mcp, admitted, &name, r.params.arguments, retry)
                .await
                .map(|a| answered(a, ServerResult::GetPromptResult))
        }
        R::CompleteRequest(r) => super::handler::complete(mcp, admitted, r.params).await.map(ServerResult::CompleteResult),
        R::SubscriptionsListenRequest(r) => {
            let response = super::subscriptions::listen(mcp, &admitted, &id, r.params.notifications).await;
            served(mcp, &admitted, StatusCode::OK);
            return response;
        }
        #[allow(deprecated, reason = "resources/subscribe is the older revisions'")]
        R::SubscribeRequest(r) => return subscription(mcp, admitted, id, &r.params.uri, true).await,
        #[allow(deprecated, reason = "resources/unsubscribe is the older revisions'")]
        R::UnsubscribeRequest(r) => return subscription(mcp, admitted, id, &r.params.uri, false).await,
        // The level from which this session's client gets the logs of its calls (the older
        // revisions); without a session there is nothing to keep it for, and no log is relayed.
        #[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2025-11-25")]
        R::SetLevelRequest(r) => {
            if let Some(session) = &admitted.session {
                mcp.log_levels.set(&admitted.principal, session, r.params.level);
            }
            served(mcp, &admitted, StatusCode::OK);
            Ok(ServerResult::empty(()))
        }
        _ => return refuse_with_id(mcp, admitted, GatewayError::MethodNotFound),
    };
    json_response(&answer_message(answer, id, revision), revision)
}

/// `resources/subscribe` (or, not `on`, `resources/unsubscribe`) of `uri` in the caller's
/// session ([`super::subscriptions`]); audited with the server subscribed, if one was.
async fn subscription(mcp: &std::sync::Arc<Mcp>, admitted: Admitted, id: RequestId, uri: &str, on: bool) -> Response {
    let Some(session) = admitted.session.clone() else {
        let error = GatewayError::InvalidRequest("resource subscriptions need a session: start one with initialize");
        return refuse_with_id(mcp, admitted, error);
    };
    let server = if on {
        match super::subscriptions::subscribe(mcp, &admitted, &session, uri).await {
            Ok(server) => server,
            Err(error) => return refuse_with_id(mcp, admitted, error),
        }
    } else {
        super::subscriptions::unsubscribe(mcp, &admitted, &session, uri).await
    };
    let verdict = Verdict { decision: "allow", reason: "ok", status: 200 };
    let event = AuditEvent {
        server,
        explanation: Some(format!("uri {}", crate::audit::bounded(uri))),
        ..AuditEvent::request(&admitted.ctx, Some(&admitted.principal), admitted.jsonrpc_id.clone(), admitted.method.clone(), verdict)
    };
    admitted.once.emit(&mcp.audit, event);
    json_response(&answer_message(Ok(ServerResult::empty(())), id, admitted.revision), admitted.revision)
}

/// What a retried request (2026-07-28) carries beside its params, if anything.
pub(super) fn retry_of(responses: Option<rmcp::model::InputResponses>, state: Option<String>) -> Option<super::Retry> {
    (responses.is_some() || state.is_some()).then_some(super::Retry { responses, state })
}

/// A federated answer as a result: complete, or the server's input requests as relayed.
fn answered<T>(answer: crate::federation::Answer<T>, complete: impl FnOnce(T) -> ServerResult) -> ServerResult {
    match answer {
        crate::federation::Answer::Complete(result) => complete(result),
        crate::federation::Answer::Input(input) => ServerResult::InputRequiredResult(input),
    }
}

/// An answer as the JSON-RPC message of `revision`.
fn answer_message(answer: Result<ServerResult, ErrorData>, id: RequestId, revision: Revision) -> ServerJsonRpcMessage {
    match answer {
        Ok(mut result) => {
            revision.shape(&mut result);
            ServerJsonRpcMessage::response(result, id)
        }
        Err(error) => ServerJsonRpcMessage::error(revision.error(error), Some(id)),
    }
}

/// The HTTP status of an answer: 200, except that on 2026-07-28 an error refusing the request
/// itself has its own (a method this revision lacks: 404; a header or revision the server cannot
/// take, or a capability the client lacks: 400), as rmcp's server maps them.
fn http_status(message: &ServerJsonRpcMessage, revision: Revision) -> StatusCode {
    let ServerJsonRpcMessage::Error(error) = message else { return StatusCode::OK };
    if revision == Revision::Handshake {
        return StatusCode::OK;
    }
    match error.error.code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY | ErrorCode::HEADER_MISMATCH => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// A JSON-RPC message already serialized.
fn json_text_response(body: String, status: StatusCode) -> Response {
    let mut response = json_bytes_response(bytes::Bytes::from(body));
    *response.status_mut() = status;
    response
}

/// A `tools/call`'s answer, HTTP 200: a large result passed through goes out in the buffer it
/// came in, with its envelope around it, never copied into a new one (a result is held once,
/// not twice, while it is sent).
fn tool_response(response: super::handler::ToolResponse, id: &RequestId, revision: Revision) -> Response {
    let pieces = match response.into_body(id, revision) {
        super::handler::ResponseBody::Text(json) => return json_text_response(json, StatusCode::OK),
        super::handler::ResponseBody::Pieces(pieces) => pieces,
    };
    let length = pieces.iter().map(bytes::Bytes::len).sum::<usize>();
    let mut response = json_bytes_response(bytes::Bytes::new());
    *response.body_mut() = Body::from_stream(futures::stream::iter(pieces.map(Ok::<_, std::convert::Infallible>)));
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// A JSON-RPC message already serialized, answered with HTTP 200.
fn json_bytes_response(body: bytes::Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_response(message: &ServerJsonRpcMessage, revision: Revision) -> Response {
    match serde_json::to_string(message) {
        Ok(body) => json_text_response(body, http_status(message, revision)),
        Err(e) => {
            tracing::error!(error = %e, "a JSON-RPC response could not be serialized");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// A `tools/call` answered as an SSE stream: the backend's progress as
/// `notifications/progress` with the client's token (when it gave one), on 2026-07-28 the
/// server's logs of the call as `notifications/message` (when the client asked for them with a
/// `logLevel`), on the older revisions the server's requests to the client (`asks`), then the
/// response. Not `eager`: the stream starts with the first of these, and a call that sends none
/// is answered with a JSON body. The call runs in a task owned by the response: a client that
/// goes away drops it (the call is cancelled upstream and audited as `client_closed`).
#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
async fn stream_call(
    mcp: std::sync::Arc<Mcp>,
    admitted: Admitted,
    id: RequestId,
    (token, log_level): (Option<rmcp::model::ProgressToken>, Option<rmcp::model::LoggingLevel>),
    eager: bool,
) -> Response {
    let revision = admitted.revision;
    // What goes out: events, then the answer (which a lazy stream may send as a JSON body).
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<(bool, bytes::Bytes)>(16);
    let task = tokio::spawn(async move {
        let forward = |report| {
            use rmcp::model::ServerNotification as N;
            // Progress goes with the client's own token, and only to a client that gave one.
            let event = match report {
                crate::upstream::Report::Progress(p) => token.as_ref().map(|token| {
                    let progress = rmcp::model::ProgressNotification::new(super::handler::progress_param(token, p));
                    sse_event(&ServerJsonRpcMessage::notification(N::ProgressNotification(progress)))
                }),
                crate::upstream::Report::Log(log) => {
                    let log = N::LoggingMessageNotification(rmcp::model::LoggingMessageNotification::new(log));
                    Some(sse_event(&ServerJsonRpcMessage::notification(log)))
                }
                crate::upstream::Report::Request(request) => Some(sse_data(&request)),
            };
            let events = events_tx.clone();
            async move {
                match event {
                    Some(event) => events.send((false, event)).await,
                    None => Ok(()),
                }
            }
        };
        let Ok(answer) = super::handler::call_with_progress(&mcp, admitted, log_level, forward).await else { return };
        let json = match answer {
            Ok(response) => response.into_json(&id, revision),
            Err(error) => serde_json::to_string(&ServerJsonRpcMessage::error(revision.error(error), Some(id))).unwrap_or_default(),
        };
        let _ = events_tx.send((true, bytes::Bytes::from(json))).await;
    });
    let abort = AbortOnDrop(task);
    let first = if eager {
        None
    } else {
        match events_rx.recv().await {
            // Answered before anything else: a JSON body, as any call's.
            Some((true, json)) => return json_bytes_response(json),
            other => other,
        }
    };
    let sse = |(last, body): (bool, bytes::Bytes)| -> Result<bytes::Bytes, std::convert::Infallible> {
        Ok(if last { sse_data(std::str::from_utf8(&body).unwrap_or_default()) } else { body })
    };
    let rest =
        futures::stream::unfold((events_rx, abort), |(mut rx, abort)| async move { rx.recv().await.map(|event| (event, (rx, abort))) });
    let stream = futures::StreamExt::map(futures::StreamExt::chain(futures::stream::iter(first), rest), sse);
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A client's JSON-RPC response: the answer to what a federated server asked it through Warden
/// during one of its calls ([`super::asks`]), handed to that call; refused when no request of
/// this caller's awaits it under that id.
fn take_answer(mcp: &Mcp, admitted: &Admitted, answer: Result<serde_json::Value, ErrorData>) -> Response {
    let asked = admitted.jsonrpc_id.as_ref().and_then(|id| mcp.asks.answer(&admitted.principal, id, answer));
    let Some(asked) = asked else {
        let id = admitted.jsonrpc_id.clone().map(|id| (id, None));
        return super::gate::refuse(mcp, &admitted.once, &admitted.ctx, Some(&admitted.principal), id, GatewayError::UnexpectedResponse);
    };
    let verdict = Verdict { decision: "allow", reason: "ok", status: StatusCode::ACCEPTED.as_u16() };
    let event = AuditEvent {
        explanation: Some(format!("answer to {asked}")),
        ..AuditEvent::request(&admitted.ctx, Some(&admitted.principal), admitted.jsonrpc_id.clone(), None, verdict)
    };
    admitted.once.emit(&mcp.audit, event);
    status_only(StatusCode::ACCEPTED)
}

/// One SSE `message` event carrying a JSON-RPC message.
fn sse_event(message: &ServerJsonRpcMessage) -> bytes::Bytes {
    sse_data(&serde_json::to_string(message).unwrap_or_default())
}

/// One SSE `message` event carrying a JSON-RPC message already serialized (JSON text has no
/// newline outside strings, where it is escaped).
pub(super) fn sse_data(json: &str) -> bytes::Bytes {
    let mut event = String::with_capacity(json.len() + 24);
    event.push_str("event: message\ndata: ");
    event.push_str(json);
    event.push_str("\n\n");
    bytes::Bytes::from(event)
}

/// Aborts the call's task when the response stream is dropped (the client went away).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn refuse_with_id(mcp: &Mcp, admitted: Admitted, error: GatewayError) -> Response {
    let id = admitted.jsonrpc_id.map(|id| (id, admitted.method));
    super::gate::refuse(mcp, &admitted.once, &admitted.ctx, Some(&admitted.principal), id, error)
}

/// The event of a message served without a decision of its own (`initialize`, `ping`, a
/// notification).
fn served(mcp: &Mcp, admitted: &Admitted, status: StatusCode) {
    let verdict = Verdict { decision: "allow", reason: "ok", status: status.as_u16() };
    let event =
        AuditEvent::request(&admitted.ctx, Some(&admitted.principal), admitted.jsonrpc_id.clone(), admitted.method.clone(), verdict);
    admitted.once.emit(&mcp.audit, event);
}

fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}
