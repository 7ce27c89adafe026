//! Edge stage, for browsers: CORS on `/mcp` and on the public metadata documents.
//!
//! A browser-based MCP client (an inspector page, a web agent) must be able to preflight
//! `/mcp` before it has a token, and to read `WWW-Authenticate` from a 401 to find the
//! authorization server. So preflights are answered here, before authentication, for the
//! origins `server.allowed_origins` allows (the same list that guards `/mcp` against DNS
//! rebinding); any other origin's preflight is refused with 403 and no CORS header, and its
//! requests stay refused by the gate. Responses to an allowed origin carry
//! `Access-Control-Allow-Origin` (that origin, never `*`) and expose the headers MCP clients
//! read. The metadata documents are public: any origin may read them.
//!
//! Each preflight to `/mcp` is audited once, like every other request there. Never reflects an
//! origin it has not checked.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::audit::{AuditEvent, Verdict};
use crate::edge::RequestContext;
use crate::error::GatewayError;
use crate::mcp::Mcp;

/// Methods a browser may use on `/mcp`.
const METHODS: &str = "GET, POST, DELETE";
/// Request headers a browser MCP client sends (`Mcp-Param-*` besides, SEP-2243).
const REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "x-request-id",
    "traceparent",
    "tracestate",
];
/// Response headers a browser MCP client must be able to read.
const EXPOSED: &str = "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version, X-Request-Id";
/// How long a browser may cache a preflight answer.
const MAX_AGE: &str = "600";

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// CORS for `/mcp`: preflights answered (and audited) here, allowed origins marked on every
/// response.
pub async fn mcp(State(mcp): State<Arc<Mcp>>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    if is_preflight(&request) {
        let ctx = request.extensions().get::<RequestContext>().cloned().unwrap_or_else(|| RequestContext::from_headers(request.headers()));
        let verdict = mcp.origin_guard.check(request.headers()).and_then(|()| check_preflight(request.headers()));
        let (decision, reason, response) = match verdict {
            Ok(()) => ("allow", "cors_preflight", preflight_response(&origin, request.headers())),
            Err(code) => {
                let error = GatewayError::CorsRefused(code);
                (error.decision(), code, error.into_response(&mcp.metadata, None))
            }
        };
        mcp.audit.emit(AuditEvent::preflight(&ctx, Verdict { decision, reason, status: response.status().as_u16() }));
        return response;
    }
    let allowed = mcp.origin_guard.check(request.headers()).is_ok();
    let mut response = next.run(request).await;
    if allowed {
        allow(response.headers_mut(), origin);
    }
    response
}

/// CORS for public documents (Protected Resource Metadata): any origin may read them.
pub async fn public(request: Request, next: Next) -> Response {
    open(request, next, "GET", None).await
}

/// The authorization server's JSON endpoints (registration, token, revocation): any origin may
/// call them (a browser-based MCP client signs in from its own origin); they take no cookie.
pub async fn oauth(request: Request, next: Next) -> Response {
    open(request, next, "GET, POST", Some("authorization, content-type, accept, mcp-protocol-version")).await
}

/// Any origin, these methods (and request headers): preflights answered here, every answer
/// marked readable by any origin. Never for what takes a cookie.
async fn open(request: Request, next: Next, methods: &'static str, headers: Option<&'static str>) -> Response {
    if is_preflight(&request) {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
        if let Some(headers) = headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(headers));
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
        return response;
    }
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The requested method and headers must be ones an MCP client uses.
fn check_preflight(headers: &HeaderMap) -> Result<(), &'static str> {
    let method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !matches!(method, "GET" | "POST" | "DELETE") {
        return Err("cors_method_not_allowed");
    }
    for value in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        let list = value.to_str().map_err(|_| "cors_header_not_allowed")?;
        for name in list.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()) {
            if !REQUEST_HEADERS.contains(&name.as_str()) && !name.starts_with("mcp-param-") {
                return Err("cors_header_not_allowed");
            }
        }
    }
    Ok(())
}

fn preflight_response(origin: &HeaderValue, headers: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    allow(h, origin.clone());
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(METHODS));
    // The checked request headers, echoed (they may include Mcp-Param-* names).
    let requested: Vec<&str> = headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS).iter().filter_map(|v| v.to_str().ok()).collect();
    if let Ok(v) = HeaderValue::from_str(&requested.join(", "))
        && !requested.is_empty()
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    h.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"));
    response
}

fn allow(h: &mut HeaderMap, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}
