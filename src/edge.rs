//! Edge stage: what every request gets before anything else — a request id (the client's
//! `X-Request-Id` when it is sane, else a UUIDv7), a W3C trace context (the client's
//! `traceparent` when valid, else a new one), a start time, and the request id echoed on the
//! response. And after the answer, a body the handler refused before reading is read and
//! discarded within the body limits ([`drain_unread`]), so a kept-alive connection survives a
//! refusal.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tokio::time::Instant;

pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The trace id part of a W3C `traceparent` (`version-traceid-parentid-flags`).
pub fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

/// Request-scoped facts, placed in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub traceparent: String,
    pub started: Instant,
    /// The request's server span while traces are exported (`telemetry::traces`); none else.
    pub span: tracing::Span,
}

impl RequestContext {
    /// The trace id part of the traceparent.
    pub fn trace_id(&self) -> &str {
        trace_id(&self.traceparent)
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let request_id = headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_sane_request_id(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let traceparent =
            headers.get(&TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(child_traceparent).unwrap_or_else(new_traceparent);
        Self { request_id, traceparent, started: Instant::now(), span: tracing::Span::none() }
    }
}

/// Up to 128 characters of `A-Z a-z 0-9 - _ . : /`.
fn is_sane_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// A valid `00-<32 hex>-<16 hex>-<2 hex>` keeps its trace id and gets a new span id.
fn child_traceparent(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let [version, trace, parent, flags] = parts.as_slice() else { return None };
    if *version != "00" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) || trace.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(format!("00-{trace}-{}-{flags}", span_id()))
}

fn new_traceparent() -> String {
    format!("00-{}-{}-01", uuid::Uuid::new_v4().simple(), span_id())
}

fn span_id() -> String {
    let bytes = rand::random::<[u8; 8]>();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths no server span is made for: probes and scrapes would drown the requests.
const UNTRACED: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Middleware: attach a [`RequestContext`] and echo the request id. While traces are
/// exported, the request runs in its server span, and its `traceparent` names that span.
pub async fn layer(mut request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let mut ctx = RequestContext::from_headers(request.headers());
    let id = HeaderValue::from_str(&ctx.request_id).ok();
    let traced = if UNTRACED.contains(&request.uri().path()) {
        None
    } else {
        crate::telemetry::traces::server_span(request.method(), request.uri().path(), request.headers())
    };
    let mut response = match traced {
        Some((span, traceparent)) => {
            ctx.traceparent = traceparent;
            ctx.span = span.clone();
            request.extensions_mut().insert(ctx);
            let response = next.run(request).instrument(span.clone()).await;
            crate::telemetry::traces::record_status(&span, response.status().as_u16());
            response
        }
        None => {
            request.extensions_mut().insert(ctx);
            next.run(request).await
        }
    };
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

/// `Host` and `Origin` checks on `/mcp` (DNS-rebinding protection).
#[derive(Debug)]
pub struct OriginGuard {
    hosts: Vec<String>,
    origins: Vec<String>,
    /// Accept `http(s)://` loopback origins on any port.
    loopback_origins: bool,
}

impl OriginGuard {
    /// From `server.public_url` (as a base), `server.allowed_hosts` and `server.allowed_origins`.
    pub fn new(
        public_base: &str,
        allowed_hosts: Option<&[String]>,
        allowed_origins: Option<&Vec<String>>,
    ) -> Result<Self, crate::config_error::ConfigError> {
        let base = url::Url::parse(public_base).map_err(|_| crate::config_error::ConfigError::new("server.public_url", "invalid URL"))?;
        let public_host = base.host_str().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase();
        let hosts = match allowed_hosts {
            Some(h) => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
            None => vec![public_host, "localhost".into(), "127.0.0.1".into(), "::1".into()],
        };
        let configured = allowed_origins;
        let mut origins: Vec<String> = configured.into_iter().flatten().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        origins.push(base.origin().ascii_serialization().to_ascii_lowercase());
        Ok(Self { hosts, origins, loopback_origins: configured.is_none() })
    }

    /// `Err(code)` when the request must be refused.
    pub fn check(&self, headers: &http::HeaderMap) -> Result<(), &'static str> {
        let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).ok_or("host_not_allowed")?.to_ascii_lowercase();
        if !self.hosts.iter().any(|h| *h == host_only(&host) || *h == host) {
            return Err("host_not_allowed");
        }
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| "origin_not_allowed")?.to_ascii_lowercase();
            let loopback = self.loopback_origins && is_loopback_origin(&origin);
            if !loopback && !self.origins.contains(&origin) {
                return Err("origin_not_allowed");
            }
        }
        Ok(())
    }
}

/// `host[:port]` or `[v6][:port]` without the port.
fn host_only(authority: &str) -> String {
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => authority.rsplit_once(':').map_or(authority.to_owned(), |(h, _)| h.to_owned()),
    }
}

fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else { return false };
    matches!(host_only(rest).as_str(), "localhost" | "127.0.0.1" | "::1")
}

/// The body limits an unread body is drained within.
#[derive(Debug, Clone, Copy)]
pub struct DrainLimits {
    pub max_bytes: usize,
    pub timeout: std::time::Duration,
}

/// Middleware: a request refused before its body was read (401, 403, 405, 429, framing and
/// version errors) has its body read and discarded, within `max_bytes` and `timeout`, before
/// the answer goes out. Otherwise the connection would be reset under a client that sends the
/// body in a write of its own (the Python SDK's httpx does) and then reuses the connection for
/// its next request. A body that cannot be drained within the limits gets `Connection: close`
/// instead, so the client knows not to reuse the connection. A body still being streamed by
/// the handler (a proxied upload) is left alone.
pub async fn drain_unread(axum::extract::State(limits): axum::extract::State<DrainLimits>, request: Request, next: Next) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let (leftover, mut unread) = tokio::sync::oneshot::channel();
    let watched = Watched { inner: Some(body), ended: false, leftover: Some(leftover) };
    let mut response = next.run(Request::from_parts(parts, axum::body::Body::new(watched))).await;
    // Sent only if the handler dropped the body unread; never waited for.
    let Ok(body) = unread.try_recv() else { return response };
    let drained = http_body_util::Limited::new(body, limits.max_bytes);
    let drained = tokio::time::timeout(limits.timeout, http_body_util::BodyExt::collect(drained)).await;
    if !matches!(drained, Ok(Ok(_))) {
        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that hands itself back when dropped before its end.
struct Watched {
    inner: Option<axum::body::Body>,
    ended: bool,
    leftover: Option<tokio::sync::oneshot::Sender<axum::body::Body>>,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return std::task::Poll::Ready(None) };
        let frame = std::pin::Pin::new(inner).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !self.ended
            && !http_body::Body::is_end_stream(&inner)
            && let Some(leftover) = self.leftover.take()
        {
            let _ = leftover.send(inner);
        }
    }
}

/// The value of the cookie `name` in a request's `Cookie` headers, if any.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}
