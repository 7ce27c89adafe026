//! `/proxy/{name}/…`: one request through one route, in the order `super` gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, header};

use super::{Route, Routes, path};
use crate::audit::{AuditEvent, AuditOnce, AuditSink, Verdict};
use crate::credentials::CredentialError;
use crate::edge::RequestContext;
use crate::error::ProxyError;
use crate::identity::metadata::ResourceMetadata;
use crate::identity::{Authenticator, Principal};
use crate::policy::{RequestFacts, SharedPolicy, Stage};
use crate::upstream::{CallContext, Upstream, UpstreamError};

/// What the proxy uses, and nothing else of the gateway.
pub struct ProxyState {
    pub authenticator: Arc<Authenticator>,
    pub routes: Arc<Routes>,
    pub policy: SharedPolicy,
    pub limits: Arc<crate::limits::Limits>,
    pub upstream: Arc<Upstream>,
    pub audit: Arc<AuditSink>,
    pub metadata: Arc<ResourceMetadata>,
    /// Request headers exposed to policy conditions.
    pub policy_headers: Arc<[HeaderName]>,
}

/// Request headers never passed on: hop-by-hop (RFC 9110 §7.6.1), the client's credentials
/// and cookies, what says where the request came from (the whole `X-Forwarded-*` family is
/// dropped too; the gateway sets what it vouches for), and what the gateway sets (`host`,
/// trace context). Names are compared with `_` read as `-` (see [`spelled_alike`]).
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "host",
    "authorization",
    "cookie",
    "forwarded",
    "x-real-ip",
    "traceparent",
    "tracestate",
    "content-length",
];

/// Response headers never passed back: hop-by-hop, and `set-cookie` (a cookie set on the
/// gateway's origin would reach every route and the console).
const DROPPED_RESPONSE_HEADERS: &[&str] =
    &["connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "set-cookie"];

pub async fn handle(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let ctx = match request.extensions().get::<RequestContext>() {
        Some(ctx) => ctx.clone(),
        None => RequestContext::from_headers(request.headers()),
    };
    let once = AuditOnce::for_span(ctx.span.clone());
    let mut record = Record { state: &state, ctx: &ctx, once: &once, principal: None, route: None, what: None, delegates: false };
    match proxy(&state, &ctx, request, &mut record).await {
        Ok((response, upstream_status)) => {
            let reason = if upstream_status >= 500 { "upstream_status" } else { "ok" };
            record.write(Verdict { decision: "allow", reason, status: upstream_status }, None, Some(upstream_status));
            response
        }
        Err(e) => {
            record.write(Verdict { decision: e.decision(), reason: e.code(), status: e.status().as_u16() }, e.rule(), None);
            e.render(&state.metadata)
        }
    }
}

/// What the request's one audit event says, filled in as the request advances.
struct Record<'a> {
    state: &'a ProxyState,
    ctx: &'a RequestContext,
    once: &'a AuditOnce,
    principal: Option<Arc<Principal>>,
    route: Option<String>,
    /// `GET /v1/contacts/7`.
    what: Option<String>,
    /// The route's credential is the caller's identity, exchanged: the event records the
    /// delegation.
    delegates: bool,
}

impl Record<'_> {
    fn write(&self, verdict: Verdict<'_>, rule: Option<&str>, upstream_status: Option<u16>) {
        let mut event = AuditEvent::request(self.ctx, self.principal.as_deref(), None, Some("proxy".into()), verdict);
        event.tool = self.route.clone();
        event.rule = rule.map(str::to_owned);
        event.explanation = self.what.as_deref().map(|w| crate::audit::bounded(w).into_owned());
        event.upstream_status = upstream_status;
        if self.delegates {
            event.delegation = self.principal.as_deref().map(crate::audit::Delegation::of);
        }
        self.once.emit(&self.state.audit, event);
    }
}

async fn proxy(state: &ProxyState, ctx: &RequestContext, request: Request, record: &mut Record<'_>) -> Result<(Response, u16), ProxyError> {
    let client_ip = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|socket| state.limits.client_ip(socket.0.ip(), request.headers()));
    if let Some(ip) = client_ip {
        state.limits.check_ip(ip).map_err(|limited| ProxyError::TooManyRequests(limited.retry_after_secs()))?;
    }
    let principal =
        state.authenticator.authenticate_request(request.headers(), request.uri().query()).await.map_err(ProxyError::Unauthorized)?;
    record.principal = Some(Arc::clone(&principal));
    if !state.audit.accepting() {
        return Err(ProxyError::AuditUnavailable);
    }

    // Name, method and path: from the path as received, never decoded before it is checked.
    let raw = request.uri().path().strip_prefix("/proxy/").unwrap_or_default();
    let (name, rest) = raw.split_at(raw.find('/').unwrap_or(raw.len()));
    let route = Arc::clone(state.routes.get(name).ok_or(ProxyError::UnknownRoute)?);
    record.route = Some(route.target.clone());
    record.delegates = route.credential.as_deref().is_some_and(crate::credentials::Credential::delegates);
    let method = request.method().clone();
    record.what = Some(format!("{method} {}", crate::audit::bounded(rest)));
    if !route.methods.contains(&method) {
        return Err(ProxyError::MethodNotAllowed(route.allow.clone()));
    }
    let checked = path::check(rest).map_err(ProxyError::PathRefused)?;
    record.what = Some(format!("{method} {}", checked.decoded));
    if let Some(paths) = &route.paths
        && !paths.iter().any(|p| path::under(&checked.decoded, p))
    {
        return Err(ProxyError::PathNotAllowed);
    }
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_request_bytes) {
        return Err(ProxyError::BodyTooLarge);
    }

    // Policy, then limits, on the same facts.
    let headers = state
        .policy_headers
        .iter()
        .filter_map(|h| request.headers().get(h).and_then(|v| v.to_str().ok()).map(|v| (h.as_str().to_owned(), v.to_owned())))
        .collect();
    let facts = RequestFacts {
        time: std::time::SystemTime::now(),
        client_ip,
        headers,
        method: method.clone(),
        path: std::borrow::Cow::Owned(checked.decoded.clone()),
    };
    let arguments = serde_json::Value::Object(serde_json::Map::new());
    let decision = state.policy.load().decide(&principal, &route.facts(), Stage::Call(&arguments), &facts, None);
    if let Err(denial) = decision.outcome {
        return Err(ProxyError::Forbidden { denial, rule: decision.rule });
    }
    let call = crate::limits::CallFacts {
        principal: &principal,
        tool: route.facts(),
        cost: route.cost,
        arguments: &arguments,
        request: &facts,
        request_ids: (&ctx.request_id, &ctx.traceparent),
    };
    state.limits.admit(&call).await.map_err(limits_error)?;

    // The upstream request: built from the base and the checked path only.
    let mut target = format!("{}{}", route.upstream.as_str().trim_end_matches('/'), checked.raw);
    if let Some(q) = request.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    let url = url::Url::parse(&target).map_err(|_| ProxyError::PathRefused("path_invalid"))?;
    if url.origin() != route.upstream.origin() || !url.path().starts_with(route.upstream.path().trim_end_matches('/')) {
        return Err(ProxyError::PathRefused("path_invalid"));
    }
    let span = crate::telemetry::traces::http_client_span(Some(&ctx.span), method.as_str(), &url, "proxy_route");
    let traceparent = crate::telemetry::traces::traceparent(&span).unwrap_or_else(|| ctx.traceparent.clone());
    let call_ctx = CallContext { request_id: ctx.request_id.clone(), traceparent, ..Default::default() };

    let (parts, body) = request.into_parts();
    let overflow = Arc::new(AtomicBool::new(false));
    let has_body = declared.is_some_and(|n| n > 0) || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let mut builder = state.upstream.request(method.clone(), url).map_err(upstream_error)?;
    for (name, value) in forwarded_headers(&parts.headers, state.upstream.identity_headers()) {
        builder = builder.header(name, value);
    }
    // What Warden vouches for: the client's address as it determined it, and how it was reached.
    if let Some(ip) = client_ip {
        builder = builder.header(X_FORWARDED_FOR, ip.to_string());
    }
    if let Ok(public) = url::Url::parse(&state.metadata.resource) {
        builder = builder.header(X_FORWARDED_PROTO, public.scheme());
        if let Some(host) = public.host_str() {
            let host = match public.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            builder = builder.header(X_FORWARDED_HOST, host);
        }
    }
    if let Some(n) = declared {
        builder = builder.header(header::CONTENT_LENGTH, n);
    }
    if has_body {
        builder = builder.body(reqwest::Body::wrap_stream(bounded_body(body, route.max_request_bytes, Arc::clone(&overflow))));
    }
    let sent = tracing::Instrument::instrument(send(state, &route, builder, &principal, &call_ctx), span.clone()).await;
    let response = match sent {
        Ok(r) => r,
        Err(_) if overflow.load(Ordering::Acquire) => return Err(ProxyError::BodyTooLarge),
        Err(e) => {
            crate::telemetry::traces::record_outcome(&span, None, Some(e.code()));
            return Err(e);
        }
    };
    let status = response.status();
    crate::telemetry::traces::record_outcome(&span, Some(status.as_u16()), None);
    if response.content_length().is_some_and(|n| n > route.max_response_bytes) {
        return Err(ProxyError::UpstreamTooLarge);
    }
    let mut out = Response::builder().status(status);
    if let Some(headers) = out.headers_mut() {
        for (name, value) in response.headers() {
            if !dropped(name, response.headers(), DROPPED_RESPONSE_HEADERS) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Ok(id) = http::HeaderValue::from_str(&ctx.request_id) {
            headers.insert(HeaderName::from_static("x-request-id"), id);
        }
    }
    let body = Body::from_stream(bounded_response(response, route.max_response_bytes, route.name.clone()));
    let response = out.body(body).map_err(|_| ProxyError::UpstreamUnreachable)?;
    Ok((response, status.as_u16()))
}

/// Identity on, the client's credentials off, the route's credential on last; one replay after
/// a refresh when the backend rejects a refreshable token and the request has no body.
async fn send(
    state: &ProxyState,
    route: &Route,
    builder: reqwest::RequestBuilder,
    principal: &Principal,
    ctx: &CallContext,
) -> Result<reqwest::Response, ProxyError> {
    let mut request =
        state.upstream.prepare(builder, principal, ctx, route.timeout, route.audience.as_deref()).await.map_err(upstream_error)?;
    let Some(credential) = &route.credential else {
        return state.upstream.execute(request, route.timeout).await.map_err(upstream_error);
    };
    let (secret, generation) = credential.resolve(&state.upstream, principal, ctx, None).await.map_err(credential_error)?;
    credential.apply(&mut request, &secret);
    let replay = if credential.refreshable() { request.try_clone() } else { None };
    let response = state.upstream.execute(request, route.timeout).await.map_err(upstream_error)?;
    match replay {
        Some(mut again) if response.status() == http::StatusCode::UNAUTHORIZED => {
            let (secret, _) = credential.resolve(&state.upstream, principal, ctx, generation).await.map_err(credential_error)?;
            credential.apply(&mut again, &secret);
            state.upstream.execute(again, route.timeout).await.map_err(upstream_error)
        }
        _ => Ok(response),
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The client's headers that pass: all but [`DROPPED_REQUEST_HEADERS`], the `X-Forwarded-*`
/// family, the identity headers Warden sets, and those the `Connection` header names, each
/// also in any spelling with `_` for `-` (WSGI, CGI, PHP and Rack give `X_User_Id` and
/// `X-User-Id` the same variable, so either spelling would reach the app as identity).
fn forwarded_headers<'a>(
    headers: &'a HeaderMap,
    identity: &'a crate::upstream::IdentityHeaders,
) -> impl Iterator<Item = (&'a HeaderName, &'a http::HeaderValue)> {
    headers.iter().filter(move |(name, _)| {
        let name_str = name.as_str();
        !(dropped(name, headers, DROPPED_REQUEST_HEADERS)
            || DROPPED_REQUEST_HEADERS.iter().any(|d| spelled_alike(name_str, d))
            || name_str.get(..X_FORWARDED.len()).is_some_and(|start| spelled_alike(start, X_FORWARDED))
            || identity.names().any(|n| spelled_alike(name_str, n.as_str())))
    })
}

const X_FORWARDED: &str = "x-forwarded-";

/// Whether two header names are the same as CGI-style servers read them: case folded, `_` as
/// `-` (compared byte by byte, nothing allocated per header).
fn spelled_alike(a: &str, b: &str) -> bool {
    let fold = |c: u8| if c == b'_' { b'-' } else { c.to_ascii_lowercase() };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn dropped(name: &HeaderName, headers: &HeaderMap, list: &[&str]) -> bool {
    list.contains(&name.as_str())
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

/// The client's body as a stream that fails past `max` bytes (and says so in `overflow`).
fn bounded_body(body: Body, max: u64, overflow: Arc<AtomicBool>) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let mut seen: u64 = 0;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > max {
            overflow.store(true, Ordering::Release);
            return Err(std::io::Error::other("request body too large"));
        }
        Ok(chunk)
    })
}

/// The upstream's body as a stream cut past `max` bytes (the client sees a truncated body, and
/// the cut is logged; the request's event was written when the response began).
fn bounded_response(
    response: reqwest::Response,
    max: u64,
    route: String,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let mut seen: u64 = 0;
    response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| {
            tracing::warn!(route = %route, timeout = e.is_timeout(), "a proxied response body failed");
            std::io::Error::other("upstream body failed")
        })?;
        seen += chunk.len() as u64;
        if seen > max {
            tracing::warn!(route = %route, max, "a proxied response body was cut at the route's max_response_bytes");
            return Err(std::io::Error::other("upstream body too large"));
        }
        Ok(chunk)
    })
}

fn upstream_error(e: UpstreamError) -> ProxyError {
    match e {
        UpstreamError::Timeout => ProxyError::UpstreamTimeout,
        UpstreamError::Unreachable => ProxyError::UpstreamUnreachable,
        UpstreamError::Blocked => ProxyError::UpstreamBlocked,
        UpstreamError::TooLarge => ProxyError::UpstreamTooLarge,
        UpstreamError::Assertion => ProxyError::AssertionUnavailable,
    }
}

fn credential_error(e: CredentialError) -> ProxyError {
    match e {
        CredentialError::ConnectionRequired { url, .. } => ProxyError::ConnectionRequired { url },
        e => ProxyError::Credential(e),
    }
}

fn limits_error(refusal: crate::limits::Refusal) -> ProxyError {
    use crate::limits::{QuotaRefusal, Refusal};
    match refusal {
        Refusal::Rate(limited) => ProxyError::RateLimited { retry_after: limited.retry_after_secs(), rule: limited.rule },
        Refusal::Quota(QuotaRefusal::Exceeded { quota, resets_at, retry_after }) => {
            ProxyError::QuotaExceeded { quota, resets_at: resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), retry_after }
        }
        Refusal::Quota(QuotaRefusal::Unavailable { quota: rule }) | Refusal::Unavailable { rule } => {
            ProxyError::LimitsUndecided { rule, reason: "limits_unavailable" }
        }
        Refusal::KeyError { rule } => ProxyError::LimitsUndecided { rule, reason: "limit_key_error" },
    }
}
