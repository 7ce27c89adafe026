//! Edge stage: what every request gets before anything else — a request id (the client's
//! `X-Request-Id` when it is sane, else a UUIDv7), a W3C trace context (the client's
//! `traceparent` when valid, else a new one), a start time, and the request id echoed on the
//! response.

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
        Self { request_id, traceparent, started: Instant::now() }
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

/// Middleware: attach a [`RequestContext`] and echo the request id.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let ctx = RequestContext::from_headers(request.headers());
    let id = HeaderValue::from_str(&ctx.request_id).ok();
    request.extensions_mut().insert(ctx);
    let mut response = next.run(request).await;
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}
