//! The HTTP side of the federation's MCP client: rmcp's Streamable HTTP client worker (sessions,
//! SSE responses, session recovery) over Warden's guarded upstream client, with Warden's
//! credential and the caller's identity put on each POST.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions};
use rmcp::transport::streamable_http_client::{StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse};
use sse_stream::{Error as SseError, Sse};

use super::answers::{self, Decoded, Stash, Unreadable};
use super::frame::Scanner;
use crate::credentials::Credential;
use crate::identity::Principal;
use crate::upstream::{CallContext, Upstream};

/// What a `tools/call` carries to the transport, in the request's extensions: the headers the
/// call goes out with (the caller's identity, Warden's credential for the server) and the URL
/// when the credential is a query parameter. Computed per call by the tool, so the transport
/// never decides whose identity a request carries.
#[derive(Clone)]
pub struct CallHeaders {
    pub headers: HeaderMap,
    pub uri: Option<Arc<str>>,
}

/// Warden's HTTP client as rmcp's transport sees it.
#[derive(Clone)]
pub struct FederatedHttp {
    pub upstream: Upstream,
    /// Warden's credential for the server, for requests that belong to no call (initialize,
    /// tools/list, the session's streams).
    pub credential: Option<Arc<Credential>>,
    /// Who session requests are made as when the credential needs a principal.
    pub service: Arc<Principal>,
    /// What a `429` from the server parks (see `Link::parking_key`).
    pub parking_key: Arc<str>,
    /// The most one answer (a JSON body, an SSE event) may hold.
    pub max_bytes: usize,
    /// Where results of `tools/call` wait, as received, for their call.
    pub stash: Arc<Stash>,
    /// The server's URL, parsed and checked once ([`FederatedHttp::endpoint`]).
    pub endpoint: Option<(Arc<str>, http::Uri)>,
    /// The session rmcp's client established, as its requests last carried it (see
    /// [`super::direct`]); empty until the handshake is done.
    pub session: Arc<arc_swap::ArcSwapOption<SessionState>>,
    /// Told when rmcp's client starts the session again in place (the server forgot it): what
    /// the old one was subscribed to must be asked for again.
    pub reinitialized: Arc<tokio::sync::Notify>,
}

/// What a request sent past rmcp's client worker needs of its session: the session id (none
/// for a stateless server) and the negotiated revision.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionState {
    pub id: Option<Arc<str>>,
    /// As sent in `MCP-Protocol-Version`.
    pub version: HeaderValue,
    /// The revision, when it is 2026-07-28 or later: every request then carries the revision,
    /// the client's name and capabilities in `_meta`, and `Mcp-Method`/`Mcp-Name` headers.
    pub per_request: Option<rmcp::model::ProtocolVersion>,
}

impl SessionState {
    /// The session's headers as rmcp's client passes them to its transport.
    pub fn headers(&self) -> HashMap<HeaderName, HeaderValue> {
        HashMap::from([(PROTOCOL_VERSION, self.version.clone())])
    }
}

const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

type Error = StreamableHttpError<reqwest::Error>;

fn refused(why: &'static str) -> Error {
    StreamableHttpError::Io(std::io::Error::other(why))
}

impl FederatedHttp {
    /// The headers and URL of a request outside any call: the credential only, no identity.
    async fn session_parts(&self, uri: Arc<str>) -> Result<(Arc<str>, HeaderMap), Error> {
        let mut url = url::Url::parse(&uri).map_err(|_| refused("invalid server URL"))?;
        self.upstream.check_literal(&url).map_err(|_| refused("destination not allowed"))?;
        let mut headers = HeaderMap::new();
        if let Some(credential) = &self.credential {
            let ctx = CallContext { request_id: uuid::Uuid::now_v7().to_string(), ..Default::default() };
            let (secret, _) =
                credential.resolve(&self.upstream, &self.service, &ctx, None).await.map_err(|_| refused("credential unavailable"))?;
            credential.apply_parts(&mut headers, Some(&mut url), &secret);
        }
        let uri = if url.as_str() == &*uri { uri } else { Arc::from(url.as_str()) };
        Ok((uri, headers))
    }

    /// Where a request Warden answers itself goes, and its headers: a call's own (the caller's
    /// identity, the credential; see [`CallHeaders`]), else the session's. The server's URL was
    /// parsed and checked once ([`FederatedHttp::endpoint`]); a credential in the query makes a
    /// URL of its own, checked here.
    async fn target_for(&self, uri: Arc<str>, message: &ClientJsonRpcMessage) -> Result<(http::Uri, HeaderMap), Error> {
        let call = match message {
            ClientJsonRpcMessage::Request(r) => r.request.extensions().get::<CallHeaders>(),
            _ => None,
        };
        let Some(call) = call else {
            // Parsed and checked by `session_parts` (with the credential in its query, if any).
            let (uri, headers) = self.session_parts(uri).await?;
            return Ok((http::Uri::try_from(&*uri).map_err(|_| refused("invalid server URL"))?, headers));
        };
        let target = match (&call.uri, &self.endpoint) {
            (None, Some((configured, parsed))) if **configured == *uri => parsed.clone(),
            (chosen, _) => checked(&self.upstream, chosen.as_deref().unwrap_or(&uri))?,
        };
        Ok((target, call.headers.clone()))
    }

    /// The server's URL as rmcp's client passes it, parsed and checked once, for the calls.
    pub fn endpoint(upstream: &Upstream, uri: &Arc<str>) -> Option<(Arc<str>, http::Uri)> {
        checked(upstream, uri).ok().map(|parsed| (Arc::clone(uri), parsed))
    }
}

/// A URL parsed, its literal address checked against the guard.
fn checked(upstream: &Upstream, uri: &str) -> Result<http::Uri, Error> {
    let url = url::Url::parse(uri).map_err(|_| refused("invalid server URL"))?;
    upstream.check_literal(&url).map_err(|_| refused("destination not allowed"))?;
    http::Uri::try_from(url.as_str()).map_err(|_| refused("invalid server URL"))
}

impl FederatedHttp {
    /// A request whose answer Warden reads itself ([`answered_here`]), POSTed with the call's
    /// headers: from rmcp's worker, or past it ([`super::direct`]).
    pub(super) async fn post_answered(
        &self,
        uri: Arc<str>,
        message: &ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let ClientJsonRpcMessage::Request(r) = message else { return Err(refused("not a request")) };
        let call = matches!(r.request, rmcp::model::ClientRequest::CallToolRequest(_));
        let (target, mut headers) = self.target_for(uri, message).await?;
        for (name, value) in custom_headers {
            headers.entry(name).or_insert(value);
        }
        let sent = self.post_request(target, message, r.id.clone(), call, session_id, headers).await;
        self.park_on_429(&sent);
        sent
    }

    /// Remembers the session rmcp's client uses once its handshake is done (every message
    /// after `initialize` carries it), for requests sent past the worker.
    fn note_session(&self, message: &ClientJsonRpcMessage, id: Option<&Arc<str>>, custom: &HashMap<HeaderName, HeaderValue>) {
        if let ClientJsonRpcMessage::Request(r) = message
            && matches!(r.request, rmcp::model::ClientRequest::InitializeRequest(_) | rmcp::model::ClientRequest::DiscoverRequest(_))
        {
            return;
        }
        let Some(version) = custom.get(&PROTOCOL_VERSION) else { return };
        let current = self.session.load();
        if current.as_deref().is_some_and(|s| s.id.as_ref() == id && s.version == version) {
            return;
        }
        let per_request = version
            .to_str()
            .ok()
            .and_then(|v| serde_json::from_value::<rmcp::model::ProtocolVersion>(serde_json::Value::String(v.to_owned())).ok())
            .filter(|v| *v >= rmcp::model::ProtocolVersion::STANDARD_HEADERS);
        if current.as_deref().is_some_and(|s| s.id.is_some() && s.id.as_ref() != id) {
            self.reinitialized.notify_one();
        }
        self.session.store(Some(Arc::new(SessionState { id: id.cloned(), version: version.clone(), per_request })));
    }

    /// The rest of a request's SSE stream after it broke, from the last event seen (a GET with
    /// `Last-Event-ID`, as the spec's resumption has it), each event read as the POST's were.
    pub(super) async fn resume(
        &self,
        uri: Arc<str>,
        session: &SessionState,
        last_event_id: String,
        id: rmcp::model::RequestId,
        call: bool,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        use futures::StreamExt;
        let (session_id, custom) = (session.id.clone(), session.headers());
        let events = self.get_stream_with_max_sse_event_size(uri, session_id, Some(last_event_id), None, custom, self.max_bytes).await?;
        let stash = Arc::clone(&self.stash);
        let read = move |mut event: Sse| {
            event.data = event.data.take().map(|data| read_event(&id, call, data, &stash));
            event
        };
        Ok(events.map(move |event| event.map(&read)).boxed())
    }

    /// A `429` with `Retry-After` parks the server for this session's credential holder (rmcp
    /// keeps the status and the header's value for Warden).
    fn park_on_429<T>(&self, sent: &Result<T, Error>) {
        if let Err(StreamableHttpError::HttpStatus(e)) = sent
            && e.status == 429
            && let Some(wait) =
                e.retry_after.as_deref().and_then(|v| crate::upstream::parking::parse_retry_after(v, std::time::SystemTime::now()))
        {
            self.upstream.parking.park(self.parking_key.to_string(), wait);
        }
    }
}

fn to_map(headers: HeaderMap) -> HashMap<HeaderName, HeaderValue> {
    let mut map = HashMap::with_capacity(headers.len());
    let mut last = None;
    for (name, value) in headers {
        if let Some(name) = name {
            last = Some(name);
        }
        if let Some(name) = &last {
            map.insert(name.clone(), value);
        }
    }
    map
}

impl StreamableHttpClient for FederatedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_max_sse_event_size(uri, message, session_id, None, custom_headers, self.max_bytes).await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.note_session(&message, session_id.as_ref(), &custom_headers);
        if let ClientJsonRpcMessage::Request(r) = &message
            && answered_here(&r.request)
        {
            return self.post_answered(uri, &message, session_id, custom_headers).await;
        }
        let (uri, headers) = self.session_parts(uri).await?;
        let mut headers = to_map(headers);
        for (name, value) in custom_headers {
            headers.entry(name).or_insert(value);
        }
        let max = max_sse_event_size.min(self.max_bytes);
        let sent = self.upstream.client().post_message_with_max_sse_event_size(uri, message, session_id, None, headers, max).await;
        self.park_on_429(&sent);
        sent
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let (uri, headers) = self.session_parts(uri).await?;
        let mut headers = to_map(headers);
        headers.extend(custom_headers);
        self.upstream.client().delete_session(uri, session_id, None, headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let (uri, headers) = self.session_parts(uri).await?;
        let mut headers = to_map(headers);
        headers.extend(custom_headers);
        self.upstream.client().get_stream(uri, session_id, last_event_id, None, headers).await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let (uri, headers) = self.session_parts(uri).await?;
        let mut headers = to_map(headers);
        headers.extend(custom_headers);
        self.upstream.client().get_stream_with_max_sse_event_size(uri, session_id, last_event_id, None, headers, max_sse_event_size).await
    }
}

/// Requests whose answer Warden reads itself ([`FederatedHttp::post_request`]): calls and
/// catalog reads. The session's own (`initialize`, `server/discover`) and what answers nothing
/// go through rmcp's client.
fn answered_here(request: &rmcp::model::ClientRequest) -> bool {
    use rmcp::model::ClientRequest as R;
    matches!(
        request,
        R::CallToolRequest(_)
            | R::ListToolsRequest(_)
            | R::ReadResourceRequest(_)
            | R::ListResourcesRequest(_)
            | R::ListResourceTemplatesRequest(_)
            | R::ListPromptsRequest(_)
            | R::GetPromptRequest(_)
            | R::CompleteRequest(_)
    )
}

/// A JSON-RPC error body of a failed POST is read up to this many bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl FederatedHttp {
    /// One request POSTed, its answer read within `max_bytes` and attributed as
    /// [`answers::decode`] does: a body or event too large or unreadable becomes this
    /// request's failure (`upstream_too_large`, `upstream_invalid_response`) at once. The rest
    /// follows rmcp's client: a challenge, `202`, an expired session, `429` and `5xx`.
    async fn post_request(
        &self,
        target: http::Uri,
        message: &ClientJsonRpcMessage,
        id: rmcp::model::RequestId,
        call: bool,
        session_id: Option<Arc<str>>,
        mut headers: HeaderMap,
    ) -> Result<StreamableHttpPostResponse, Error> {
        use rmcp::transport::streamable_http_client::{AuthRequiredError, HttpStatusError, InsufficientScopeError};
        let body = serde_json::to_vec(message).map_err(StreamableHttpError::Deserialize)?;
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("text/event-stream, application/json"));
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let session_was_attached = session_id.is_some();
        if let Some(session) = &session_id
            && let Ok(value) = HeaderValue::from_str(session)
        {
            headers.insert(HeaderName::from_static("mcp-session-id"), value);
        }
        let mut request = http::Request::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        let response = self.upstream.lean().send(request).await.map_err(|e| StreamableHttpError::Io(std::io::Error::other(e)))?;
        let status = response.status();
        let challenge = response.headers().get(http::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match (status, challenge) {
            (http::StatusCode::UNAUTHORIZED, Some(c)) => return Err(StreamableHttpError::AuthRequired(AuthRequiredError::new(c))),
            (http::StatusCode::FORBIDDEN, Some(c)) => {
                return Err(StreamableHttpError::InsufficientScope(InsufficientScopeError::new(c, None)));
            }
            _ => {}
        }
        if matches!(status, http::StatusCode::ACCEPTED | http::StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == http::StatusCode::NOT_FOUND && session_was_attached {
            return Err(StreamableHttpError::SessionExpired);
        }
        let session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let json = content_type.starts_with("application/json");
        if !status.is_success() {
            let retry_after = response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status_error = (status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                .then(|| HttpStatusError::new(status.as_u16(), retry_after));
            if json && status != http::StatusCode::TOO_MANY_REQUESTS {
                // A JSON-RPC error in the body is the server's answer.
                if let Ok(body) = crate::body::read_body_limited(response.into_body(), MAX_ERROR_BODY).await
                    && let Ok(error @ rmcp::model::ServerJsonRpcMessage::Error(_)) = serde_json::from_slice(&body)
                {
                    return Ok(StreamableHttpPostResponse::Json(error, session));
                }
            }
            return Err(match status_error {
                Some(e) => StreamableHttpError::HttpStatus(e),
                None => StreamableHttpError::UnexpectedServerResponse(format!("HTTP {status}").into()),
            });
        }
        if content_type.starts_with("text/event-stream") {
            use futures::TryStreamExt;
            let bytes = http_body_util::BodyDataStream::new(response.into_body()).map_err(std::io::Error::other);
            let events = bounded_events(bytes, self.max_bytes, id, call, Arc::clone(&self.stash));
            return Ok(StreamableHttpPostResponse::Sse(events, session));
        }
        if !json {
            return Err(StreamableHttpError::UnexpectedContentType(Some(content_type)));
        }
        let answer = match crate::body::read_body_limited(response.into_body(), self.max_bytes).await {
            Ok(body) => answer_for(&id, call, Vec::from(body), &self.stash),
            Err(crate::body::ReadError::TooLarge) => Unreadable::TooLarge.answer(id),
            Err(e) => return Err(StreamableHttpError::Io(std::io::Error::other(e))),
        };
        Ok(StreamableHttpPostResponse::Json(answer, session))
    }
}

/// The message in `bytes` (a JSON body, an SSE event's data): the answer to request `id`, read
/// and attributed by [`answers::decode`], or this request's failure (an answer to another id is
/// one too); notifications and the server's requests as they are.
fn answer_for(id: &rmcp::model::RequestId, call: bool, bytes: Vec<u8>, stash: &Stash) -> rmcp::model::ServerJsonRpcMessage {
    let scan = Scanner::scan(&bytes);
    match answers::decode(bytes, &scan, |i| call && i == id, stash) {
        Decoded::Message(message) => match answers::answer_id(&message) {
            Some(answered) if answered != id => Unreadable::Invalid(answers::UNKNOWN_ID).answer(id.clone()),
            _ => message,
        },
        Decoded::Unreadable { why, .. } => why.answer(id.clone()),
    }
}

/// An SSE event's data, read by [`answer_for`] (blank data passes as it is).
fn read_event(id: &rmcp::model::RequestId, call: bool, data: String, stash: &Stash) -> String {
    if data.trim().is_empty() {
        return data;
    }
    serde_json::to_string(&answer_for(id, call, data.into_bytes(), stash)).unwrap_or_default()
}

/// The SSE events of the answer to request `id`, each within `max` bytes: an event too large
/// ends the stream with this request's failure; an event that cannot be read is this request's
/// failure; a `tools/call` result passes through the stash.
fn bounded_events(
    bytes: impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    max: usize,
    id: rmcp::model::RequestId,
    call: bool,
    stash: Arc<Stash>,
) -> BoxStream<'static, Result<Sse, SseError>> {
    use futures::StreamExt;
    let mut since_boundary = 0usize;
    let mut newline = false;
    let bytes = bytes.map(move |chunk| {
        let chunk = chunk?;
        for &b in chunk.iter() {
            match b {
                b'\n' if newline => since_boundary = 0,
                b'\n' => newline = true,
                b'\r' => {}
                _ => {
                    newline = false;
                    since_boundary += 1;
                }
            }
            if since_boundary > max {
                return Err(std::io::Error::other(EventTooLarge));
            }
        }
        Ok(chunk)
    });
    #[allow(deprecated)]
    let events = sse_stream::SseStream::from_byte_stream(bytes);
    // `ended`: the bound was passed, its failure sent; nothing comes after it.
    events
        .scan(false, move |ended, event| {
            let item = match event {
                _ if *ended => None,
                Ok(mut event) => {
                    // Notifications and the server's own requests pass as they are; the answer
                    // to `id` is read as a JSON body's would be.
                    event.data = event.data.take().map(|data| read_event(&id, call, data, &stash));
                    Some(Ok(event))
                }
                Err(SseError::Body(e)) if is_event_too_large(e.as_ref()) => {
                    *ended = true;
                    let data = serde_json::to_string(&Unreadable::TooLarge.answer(id.clone())).unwrap_or_default();
                    Some(Ok(Sse { event: Some("message".into()), data: Some(data), id: None, retry: None }))
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(item)
        })
        .boxed()
}

/// Whether a body error is the bound of one event, passed.
fn is_event_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref).is_some_and(|inner| inner.is::<EventTooLarge>())
}

/// The bound of one SSE event, passed.
#[derive(Debug, Clone, Copy)]
struct EventTooLarge;

impl std::fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an SSE event is larger than max_response_bytes")
    }
}

impl std::error::Error for EventTooLarge {}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// A body that arrives in `chunks`, as a server writes its events.
    fn sse(chunks: Vec<String>) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
        futures::stream::iter(chunks.into_iter().map(|c| Ok(bytes::Bytes::from(c))))
    }

    #[tokio::test]
    async fn an_event_past_the_bound_ends_the_stream_with_this_requests_failure() {
        let id = rmcp::model::RequestId::Number(7);
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;
        let huge = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{}"}}]}}}}"#, "x".repeat(10_000));
        let body = vec![format!("data: {progress}\n\n"), format!("data: {huge}\n\n"), format!("data: {progress}\n\n")];
        let events: Vec<_> = bounded_events(sse(body), 1000, id.clone(), true, Arc::default()).collect().await;
        assert_eq!(events.len(), 2, "the notification, then the failure, then nothing: {events:?}");
        let first = events[0].as_ref().unwrap().data.clone().unwrap_or_default();
        assert!(first.contains("notifications/progress"), "{first}");
        let failure: rmcp::model::ServerJsonRpcMessage =
            serde_json::from_str(events[1].as_ref().unwrap().data.as_deref().unwrap()).unwrap();
        let rmcp::model::ServerJsonRpcMessage::Error(e) = failure else { panic!("{failure:?}") };
        assert_eq!((e.id, Unreadable::from_error(&e.error)), (Some(id), Some(Unreadable::TooLarge)));
    }

    #[tokio::test]
    async fn an_event_within_the_bound_is_the_answer_and_text_that_names_the_code_ends_nothing() {
        let id = rmcp::model::RequestId::Number(7);
        // A notification whose text happens to name the failure's code is just a notification.
        let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"\"upstream_too_large\""}}"#;
        let answer = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}]}}"#;
        let body = vec![format!("data: {log}\n\n"), format!("data: {answer}\n\n")];
        let events: Vec<_> = bounded_events(sse(body), 1000, id, false, Arc::default()).collect().await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[1].as_ref().unwrap().data.as_deref().unwrap().contains("\"ok\""));
    }
}
