//! Dispatch of an admitted message: served directly for the revisions that negotiate with
//! `initialize` (up to 2025-11-25), or handed to rmcp's `StreamableHttpService` for the
//! 2026-07-28 per-request lifecycle.
//!
//! Why: in stateless JSON mode rmcp's service parses the body again, builds a one-shot
//! transport, spawns a task per request and copies the response back through a channel; the
//! profile in docs/architecture.md showed that machinery as the largest part of a `ping`. What
//! it checks for the older revisions (the header against `initialize`'s body) is done here. For
//! 2026-07-28 it implements header and `_meta` rules (SEP-2243, per-request versions, result
//! shaping) that Warden does not duplicate; those requests pay its cost.
//!
//! In: an [`Admitted`] and its typed message. Out: the JSON-RPC response, and the request's
//! audit event where the handler did not write it.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rmcp::ServerHandler;
use rmcp::model::{ClientJsonRpcMessage, ErrorData, RequestId, ServerJsonRpcMessage, ServerResult};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;

use super::handler::McpHandler;
use super::message::{Kind, Message};
use super::{Admitted, Mcp};
use crate::audit::{AuditEvent, Verdict};
use crate::error::GatewayError;

/// rmcp's service, for the requests it serves.
pub type RmcpService = StreamableHttpService<McpHandler, NeverSessionManager>;

/// The first revision whose per-request lifecycle rmcp's service implements for Warden.
const PER_REQUEST_REVISION: &str = "2026-07-28";

/// Whether a message is on the 2026-07-28 per-request lifecycle: `server/discover`, a
/// protocol revision in `_meta`, or that revision (or a later one) in the header.
pub fn needs_rmcp(headers: &HeaderMap, message: &Message) -> bool {
    message.meta_protocol_version || message.method.as_deref() == Some("server/discover") || per_request_header(headers)
}

/// Whether `MCP-Protocol-Version` names 2026-07-28 or a later revision this server knows (an
/// unknown one is refused, or, on `initialize`, negotiated down).
pub fn per_request_header(headers: &HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= PER_REQUEST_REVISION && rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().any(|k| k.as_str() == v))
}

/// Serves a message directly: one typed message in, one JSON-RPC response out.
pub async fn serve(handler: &McpHandler, admitted: Admitted, kind: Kind, headers: &HeaderMap) -> Response {
    let mcp = &*handler.mcp;
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
            ClientJsonRpcMessage::Response(_) | ClientJsonRpcMessage::Error(_) => {
                let error = GatewayError::InvalidRequest("a stateless server has sent no request to answer");
                return super::gate::refuse(mcp, &admitted.once, &admitted.ctx, Some(&admitted.principal), None, error);
            }
            // Federated resources and prompts (when there are federated servers).
            // Boxed: a federated request's future is large, and a call does not take it.
            ClientJsonRpcMessage::Request(request) if mcp.federation.offers_extras() => {
                return Box::pin(serve_extra(mcp, admitted, request.id, request.request)).await;
            }
            // The gate lets through only the methods it serves (and `server/discover` goes to rmcp).
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
            // rmcp's negotiation, with Warden's revisions: the client's when it has a handshake.
            let Ok(result) = handler.negotiate_initialize(&initialize) else {
                return refuse_with_id(mcp, admitted, GatewayError::UnsupportedProtocolVersion);
            };
            served(mcp, &admitted, StatusCode::OK);
            Ok(ServerResult::InitializeResult(result))
        }
        Kind::Ping => {
            served(mcp, &admitted, StatusCode::OK);
            Ok(ServerResult::empty(()))
        }
        Kind::ListTools => Ok(ServerResult::ListToolsResult(super::handler::list_tools(mcp, &admitted))),
        Kind::CallTool(params) => {
            // A federated tool's progress reaches a client that asked for it, over SSE.
            let federated = admitted.call.as_ref().is_some_and(|c| c.tool.server.is_some());
            if let Some(token) = params.meta.as_ref().and_then(|m| m.get_progress_token())
                && federated
            {
                return stream_call(std::sync::Arc::clone(&handler.mcp), admitted, id, token);
            }
            let body = match super::handler::call_tool(mcp, admitted, None).await {
                Ok(response) => response.into_legacy_json(&id),
                Err(error) => serde_json::to_string(&ServerJsonRpcMessage::error(error, Some(id))).unwrap_or_default(),
            };
            return json_text_response(body);
        }
        Kind::Other(_) => return refuse_with_id(mcp, admitted, GatewayError::MethodNotFound),
    };
    let message = match answer {
        Ok(mut result) => {
            // The revisions served here predate `resultType`.
            result.strip_result_type_for_legacy_peer();
            ServerJsonRpcMessage::response(result, id)
        }
        Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
    };
    json_response(&message)
}

/// `resources/*`, `prompts/*` and `completion/complete` of the federated servers.
async fn serve_extra(mcp: &Mcp, admitted: Admitted, id: RequestId, request: rmcp::model::ClientRequest) -> Response {
    use rmcp::model::ClientRequest as R;
    let answer: Result<ServerResult, ErrorData> = match request {
        R::ListResourcesRequest(_) => Ok(ServerResult::ListResourcesResult(super::handler::list_resources(mcp, &admitted))),
        R::ListResourceTemplatesRequest(_) => {
            Ok(ServerResult::ListResourceTemplatesResult(super::handler::list_resource_templates(mcp, &admitted)))
        }
        R::ListPromptsRequest(_) => Ok(ServerResult::ListPromptsResult(super::handler::list_prompts(mcp, &admitted))),
        R::ReadResourceRequest(r) => {
            super::handler::read_resource(mcp, admitted, &r.params.uri).await.map(ServerResult::ReadResourceResult)
        }
        R::GetPromptRequest(r) => {
            super::handler::get_prompt(mcp, admitted, &r.params.name, r.params.arguments).await.map(ServerResult::GetPromptResult)
        }
        R::CompleteRequest(r) => super::handler::complete(mcp, admitted, r.params).await.map(ServerResult::CompleteResult),
        _ => return refuse_with_id(mcp, admitted, GatewayError::MethodNotFound),
    };
    let message = match answer {
        Ok(mut result) => {
            result.strip_result_type_for_legacy_peer();
            ServerJsonRpcMessage::response(result, id)
        }
        Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
    };
    json_response(&message)
}

/// A JSON-RPC message already serialized.
fn json_text_response(body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_response(message: &ServerJsonRpcMessage) -> Response {
    match serde_json::to_string(message) {
        Ok(body) => json_text_response(body),
        Err(e) => {
            tracing::error!(error = %e, "a JSON-RPC response could not be serialized");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// A `tools/call` answered as an SSE stream: the backend's progress as
/// `notifications/progress` with the client's token, then the response. The call runs in a
/// task owned by the stream: a client that goes away drops it (the call is cancelled upstream
/// and audited as `client_closed`).
fn stream_call(mcp: std::sync::Arc<Mcp>, admitted: Admitted, id: RequestId, token: rmcp::model::ProgressToken) -> Response {
    let (events_tx, events_rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(16);
    let task = tokio::spawn(async move {
        let forward = |p| {
            let event = sse_event(&ServerJsonRpcMessage::notification(rmcp::model::ServerNotification::ProgressNotification(
                rmcp::model::ProgressNotification::new(super::handler::progress_param(&token, p)),
            )));
            let events = events_tx.clone();
            async move { events.send(Ok(event)).await }
        };
        let Ok(answer) = super::handler::call_with_progress(&mcp, admitted, forward).await else { return };
        let json = match answer {
            Ok(response) => response.into_legacy_json(&id),
            Err(error) => serde_json::to_string(&ServerJsonRpcMessage::error(error, Some(id))).unwrap_or_default(),
        };
        let _ = events_tx.send(Ok(sse_data(&json))).await;
    });
    let abort = AbortOnDrop(task);
    let stream =
        futures::stream::unfold((events_rx, abort), |(mut rx, abort)| async move { rx.recv().await.map(|event| (event, (rx, abort))) });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// One SSE `message` event carrying a JSON-RPC message.
fn sse_event(message: &ServerJsonRpcMessage) -> bytes::Bytes {
    sse_data(&serde_json::to_string(message).unwrap_or_default())
}

/// One SSE `message` event carrying a JSON-RPC message already serialized (JSON text has no
/// newline outside strings, where it is escaped).
fn sse_data(json: &str) -> bytes::Bytes {
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
