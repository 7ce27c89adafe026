//! A caller's request on an established Streamable HTTP session, sent past rmcp's client worker.
//!
//! rmcp's client (`StreamableHttpClientTransport` and its worker) starts a session, keeps it (a
//! new handshake when the server forgets it) and carries the session's own traffic: `initialize`,
//! the catalog reads, notifications, cancellations, the standalone stream. A caller's request on
//! that session — a `tools/call`, a resource read, a prompt — needs none of that machinery:
//! it is one POST on hyper's pooled client (`upstream::lean`) with the session's id and revision, the
//! caller's identity and Warden's credential ([`FederatedHttp::post_answered`], the same code
//! the worker's POSTs go through), and its answer is read where it arrives: a JSON body, or the
//! events of its own SSE stream (the server's progress for it, the server's requests during it,
//! a stream resumed from its last event id when it breaks). Through the worker the same request
//! took a channel, a task per POST, a clone of the message and a second routing of the answer;
//! docs/performance.md has what this saves.
//!
//! On a 2026-07-28 session the request carries what rmcp's client would add ([`prepare`]). A
//! call of a tool that promotes arguments to `Mcp-Param-*` headers goes through rmcp's worker,
//! which keeps those annotations. A session the server has forgotten (HTTP 404) is handed back to
//! rmcp's worker, which starts a new one and sends the request again — nothing was done with
//! it. The server's requests during a call (elicitation, sampling, roots) go to the client that
//! made the call, through its asker (`mcp::asks`), and its answers back to the server; `ping`
//! is answered here.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ClientResult, ErrorCode, ErrorData, GetMeta, RequestId, ServerJsonRpcMessage, ServerNotification,
    ServerRequest, ServerResult,
};
use rmcp::service::ServiceError;
use rmcp::transport::streamable_http_client::{StreamableHttpError, StreamableHttpPostResponse};
use tokio::sync::Notify;

use super::answers::{self, Unreadable};
use super::http::{FederatedHttp, SessionState};

/// How often a broken SSE stream of one request is resumed before the request fails.
const MAX_RESUMES: usize = 2;

/// What a request's answer reaches besides its caller.
pub(super) struct Listeners<'a> {
    /// Set when the server says its tool list changed.
    pub changed: &'a Notify,
    /// The caller's progress, for the progress token the request carries.
    pub progress: Option<(&'a rmcp::model::ProgressToken, &'a tokio::sync::mpsc::Sender<crate::upstream::Report>)>,
    /// The caller's logs of this request from the level it asked for (2026-07-28 `logLevel`;
    /// its session's level on the older revisions): a log on the request's own stream is the
    /// request's.
    #[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
    pub logs: Option<(&'a tokio::sync::mpsc::Sender<crate::upstream::Report>, rmcp::model::LoggingLevel)>,
    /// Who the server's requests to the client during the request go to (the older revisions),
    /// from which server, and what that server may ask.
    pub asker: Option<(&'a dyn crate::upstream::Asker, &'a str, &'a super::config::ClientRequests)>,
}

/// Writes onto a request what its session's revision asks of every request, as rmcp's client
/// would: on 2026-07-28 the revision, the client's name and capabilities in `_meta`; the
/// headers it goes out with (`MCP-Protocol-Version`; on 2026-07-28 `Mcp-Method` and `Mcp-Name`
/// too). A tool whose schema promotes arguments to `Mcp-Param-*` headers is not sent here.
pub(super) fn prepare(session: &SessionState, request: &mut ClientRequest) -> HashMap<HeaderName, HeaderValue> {
    let mut headers = session.headers();
    let Some(revision) = &session.per_request else { return headers };
    let meta = request.get_meta_mut();
    meta.set_protocol_version(revision.clone());
    meta.set_client_info(super::client::client_info());
    // The caller's capabilities when the call carries them (what the server may ask of it
    // through Warden), else Warden's own: none.
    if meta.client_capabilities().is_none() {
        meta.set_client_capabilities(rmcp::model::ClientCapabilities::default());
    }
    let name = match &*request {
        ClientRequest::CallToolRequest(r) => Some(&*r.params.name),
        ClientRequest::GetPromptRequest(r) => Some(r.params.name.as_str()),
        ClientRequest::ReadResourceRequest(r) => Some(r.params.uri.as_str()),
        _ => None,
    };
    let mut put = |header: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(&header_text(value)) {
            headers.insert(HeaderName::from_static(header), value);
        }
    };
    put("mcp-method", request.method());
    if let Some(name) = name {
        put("mcp-name", name);
    }
    headers
}

/// A value as an `Mcp-*` header carries it (SEP-2243): as is when it is visible ASCII without
/// surrounding blanks, else Base64 between `=?base64?` and `?=`.
fn header_text(value: &str) -> std::borrow::Cow<'_, str> {
    use base64::Engine;
    let blank_edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    let bytes = value.as_bytes();
    let wrapped = value.starts_with("=?base64?") && value.ends_with("?=");
    let encode = blank_edge(bytes.first()) || blank_edge(bytes.last()) || bytes.iter().any(|b| !(0x20..=0x7e).contains(b)) || wrapped;
    if !encode {
        return std::borrow::Cow::Borrowed(value);
    }
    std::borrow::Cow::Owned(format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value)))
}

/// The request's answer, or `None` when the server no longer knows the session (nothing was
/// done with the request: it goes through rmcp's worker, which starts a new one). `headers`:
/// what [`prepare`] gave.
pub(super) async fn send(
    http: &FederatedHttp,
    url: &Arc<str>,
    session: &SessionState,
    message: &ClientJsonRpcMessage,
    headers: HashMap<HeaderName, HeaderValue>,
    listeners: &Listeners<'_>,
) -> Option<Result<ServerResult, ServiceError>> {
    let ClientJsonRpcMessage::Request(request) = message else { return Some(Err(ServiceError::UnexpectedResponse)) };
    let id = &request.id;
    let response = match http.post_answered(Arc::clone(url), message, session.id.clone(), headers).await {
        Ok(response) => response,
        Err(StreamableHttpError::SessionExpired) => return None,
        Err(e) => return Some(Err(transport_error(e))),
    };
    Some(match response {
        StreamableHttpPostResponse::Json(answer, _) => answered(answer),
        StreamableHttpPostResponse::Sse(events, _) => {
            let call = matches!(request.request, rmcp::model::ClientRequest::CallToolRequest(_));
            read_stream(http, url, session, events, id, call, listeners).await
        }
        // A request must be answered on its own POST (a JSON body or an SSE stream).
        _ => Err(ServiceError::McpError(Unreadable::Invalid(answers::NOT_ANSWERED).error())),
    })
}

/// The events of the request's SSE stream until its answer: the server's progress for it goes
/// to the caller, its requests are answered, a stream that breaks with an event id is resumed.
async fn read_stream(
    http: &FederatedHttp,
    url: &Arc<str>,
    session: &SessionState,
    mut events: futures::stream::BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>,
    id: &RequestId,
    call: bool,
    listeners: &Listeners<'_>,
) -> Result<ServerResult, ServiceError> {
    let mut last_event_id = None;
    for _resumed in 0..=MAX_RESUMES {
        while let Some(Ok(event)) = events.next().await {
            if event.id.is_some() {
                last_event_id.clone_from(&event.id);
            }
            // The answer to this request was read and attributed as a JSON body's would be
            // (`http::answer_for`): what reaches here is the answer, or what else the server says.
            let Some(data) = event.data.as_deref() else { continue };
            let Ok(message) = serde_json::from_str::<ServerJsonRpcMessage>(data) else { continue };
            match message {
                ServerJsonRpcMessage::Notification(n) => heard(n.notification, listeners),
                ServerJsonRpcMessage::Request(r) => reply(http, url, session, (r.id, &r.request, data), listeners).await,
                answer => return answered(answer),
            }
        }
        let Some(from) = last_event_id.clone() else { break };
        events = match http.resume(Arc::clone(url), session, from, id.clone(), call).await {
            Ok(events) => events,
            Err(e) => return Err(transport_error(e)),
        };
    }
    Err(ServiceError::TransportClosed)
}

/// The answer to the request: its result, or the server's JSON-RPC error.
fn answered(answer: ServerJsonRpcMessage) -> Result<ServerResult, ServiceError> {
    match answer {
        ServerJsonRpcMessage::Response(r) => Ok(r.result),
        ServerJsonRpcMessage::Error(e) => Err(ServiceError::McpError(e.error)),
        _ => Err(ServiceError::McpError(Unreadable::Invalid(answers::NOT_JSON_RPC).error())),
    }
}

/// A notification during the request, as rmcp's client would hand it to Warden's handler.
#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
fn heard(notification: ServerNotification, listeners: &Listeners<'_>) {
    match notification {
        ServerNotification::ProgressNotification(p) => {
            if let Some((token, caller)) = listeners.progress
                && p.params.progress_token == *token
            {
                // A caller that cannot keep up misses a report, never stalls the call.
                let _ = caller.try_send(crate::upstream::Report::Progress(crate::upstream::Progress {
                    progress: p.params.progress,
                    total: p.params.total,
                    message: p.params.message,
                }));
            }
        }
        // A server of the older revisions logs at the level its session was set to, which is
        // not the caller's: what is below the caller's level is dropped here.
        ServerNotification::LoggingMessageNotification(log) => {
            if let Some((caller, level)) = listeners.logs
                && log.params.level as u8 >= level as u8
            {
                let _ = caller.try_send(crate::upstream::Report::Log(log.params));
            }
        }
        ServerNotification::ToolListChangedNotification(_) => listeners.changed.notify_one(),
        _ => {}
    }
}

/// The server's request during a call, answered on the session: `ping` by Warden; elicitation,
/// sampling and roots by the calling client, through the call's asker (which refuses what the
/// client did not declare or the server may not ask), or refused where there is none; anything
/// else is "method not found". `data`: the request as the server sent it.
async fn reply(
    http: &FederatedHttp,
    url: &Arc<str>,
    session: &SessionState,
    (id, request, data): (RequestId, &ServerRequest, &str),
    listeners: &Listeners<'_>,
) {
    let method = match request {
        ServerRequest::PingRequest(_) => None,
        ServerRequest::CreateMessageRequest(_) => Some("sampling/createMessage"),
        ServerRequest::ListRootsRequest(_) => Some("roots/list"),
        ServerRequest::ElicitRequest(_) => Some("elicitation/create"),
        _ => {
            let error = ErrorData::new(ErrorCode::METHOD_NOT_FOUND, "method not found", None);
            return send_reply(http, url, session, ClientJsonRpcMessage::error(error, Some(id))).await;
        }
    };
    let answer = match (method, listeners.asker) {
        (None, _) => ClientJsonRpcMessage::response(ClientResult::empty(()), id),
        (Some(method), Some((asker, server, may_ask))) => {
            // Relayed as the server wrote it: its method and params, nothing of its id.
            let sent: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
            let params = Some(sent.get("params").cloned().unwrap_or_default());
            match asker.ask(may_ask.ask(server, method, params)).await {
                Ok(result) => ClientJsonRpcMessage::response(ClientResult::CustomResult(rmcp::model::CustomResult(result)), id),
                Err(error) => ClientJsonRpcMessage::error(error, Some(id)),
            }
        }
        (Some(method), None) => ClientJsonRpcMessage::error(super::client::unattributed(method), Some(id)),
    };
    send_reply(http, url, session, answer).await;
}

/// An answer to the server's request, POSTed on the session.
async fn send_reply(http: &FederatedHttp, url: &Arc<str>, session: &SessionState, answer: ClientJsonRpcMessage) {
    use rmcp::transport::streamable_http_client::StreamableHttpClient;
    if let Err(e) = http.post_message(Arc::clone(url), answer, session.id.clone(), None, session.headers()).await {
        tracing::debug!(error = %e, "a federated server's request during a call could not be answered");
    }
}

/// A failed exchange as rmcp's worker reports it, so the caller's failure reads the same.
fn transport_error(e: StreamableHttpError<reqwest::Error>) -> ServiceError {
    ServiceError::TransportSend(rmcp::transport::DynamicTransportError::from_parts(
        "federated-http",
        std::any::TypeId::of::<FederatedHttp>(),
        Box::new(e),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_sent_as_is_or_base64_as_sep_2243_says() {
        assert_eq!(header_text("get_weather"), "get_weather");
        assert_eq!(header_text("file:///tmp/a b.txt"), "file:///tmp/a b.txt");
        assert_eq!(header_text(""), "");
        for value in ["café", " padded", "tab\t", "line\nbreak", "=?base64?abc?="] {
            let sent = header_text(value);
            let inner = sent.strip_prefix("=?base64?").and_then(|s| s.strip_suffix("?=")).unwrap_or_else(|| panic!("{value:?}: {sent}"));
            use base64::Engine;
            let back = base64::engine::general_purpose::STANDARD.decode(inner).unwrap();
            assert_eq!(back, value.as_bytes());
        }
    }

    #[test]
    fn a_per_request_session_gets_the_revision_client_and_headers_an_older_one_does_not() {
        let call = || ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(rmcp::model::CallToolRequestParams::new("héllo")));
        let older = SessionState { id: None, version: HeaderValue::from_static("2025-11-25"), per_request: None };
        let mut request = call();
        let headers = prepare(&older, &mut request);
        assert_eq!(headers.len(), 1);
        assert!(request.get_meta().protocol_version().is_none());

        let newer = SessionState {
            id: Some("s".into()),
            version: HeaderValue::from_static("2026-07-28"),
            per_request: Some(rmcp::model::ProtocolVersion::V_2026_07_28),
        };
        let mut request = call();
        let headers = prepare(&newer, &mut request);
        assert_eq!(headers[&HeaderName::from_static("mcp-method")], "tools/call");
        assert_eq!(headers[&HeaderName::from_static("mcp-name")], "=?base64?aMOpbGxv?=");
        assert_eq!(headers[&HeaderName::from_static("mcp-protocol-version")], "2026-07-28");
        assert!(request.get_meta().missing_required_keys(&rmcp::model::ProtocolVersion::V_2026_07_28).is_empty());
    }
}
