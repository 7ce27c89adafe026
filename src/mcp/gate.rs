//! The gate: host/origin, authentication, body limit and time limit, the one parse, JSON-RPC
//! shape and the call-time policy decision (an HTTP 403 step-up). See the module docs of `mcp`
//! for why each stands where it does. What passes is an [`Admitted`], handed to dispatch.
//!
//! Every request to `/mcp` is recorded by exactly one audit event: each refusal here writes its
//! own, dispatch and the handler write the event of what they served, and when a request went
//! to rmcp and rmcp answered by itself (a refusal of its own) [`settle`] writes one from the
//! response. [`AuditOnce`] makes a second write impossible. [`settle`] also turns any
//! plain-text answer of rmcp's into a JSON-RPC error with a stable code, so no library text
//! reaches a client.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::message::{Kind, Message, check_message};
use super::{Admitted, CallAllowed, Mcp};
use crate::audit::{AuditEvent, AuditOnce, Verdict};
use crate::edge::RequestContext;
use crate::error::{GatewayError, rpc};
use crate::identity::Principal;
use crate::policy::{RequestFacts, Stage};

/// The requests Warden serves (it advertises the tools capability only). Notifications and
/// responses pass to rmcp; any other request gets -32601 here, audited as such.
const SERVED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
];

/// Whether `method` is served: on the 2026-07-28 per-request lifecycle, not `initialize`
/// (that revision removed it); resources and prompts only where federated servers offer them
/// (they are declared then, and only then).
fn served(method: &str, per_request: bool, extras: bool) -> bool {
    let extra = method.starts_with("resources/") || method.starts_with("prompts/") || method == "completion/complete";
    SERVED_METHODS.contains(&method) && !(per_request && method == "initialize") && (extras || !extra || !per_request)
}

/// The largest rmcp response the gate reads to record its outcome (rmcp's own answers are a
/// few hundred bytes; the handler's results are never read here).
const SETTLE_READ_LIMIT: usize = 1 << 20;

/// The MCP endpoint's state: the stage's own state and rmcp's service, for the requests it
/// serves (see [`super::dispatch`]).
pub struct Endpoint {
    /// The handler dispatch serves through (it holds the stage's state).
    pub handler: super::handler::McpHandler,
    pub rmcp: super::dispatch::RmcpService,
}

/// `/mcp`, every HTTP method: the gate, then dispatch.
pub async fn endpoint(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let mcp = &*endpoint.handler.mcp;
    let ctx = match request.extensions().get::<RequestContext>() {
        Some(ctx) => ctx.clone(),
        None => RequestContext::from_headers(request.headers()),
    };
    let once = Arc::new(AuditOnce::for_span(ctx.span.clone()));
    // Every refusal below: recorded once, rendered by `GatewayError`.
    let deny = |principal: Option<&Principal>, id: Option<(Value, Option<String>)>, error: GatewayError| {
        refuse(mcp, &once, &ctx, principal, id, error)
    };
    if let Err(code) = mcp.origin_guard.check(request.headers()) {
        return deny(None, None, GatewayError::OriginRefused(code));
    }
    // Before the token is verified: a flood from one client costs no RSA verification.
    if let Some(socket) = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        && let Err(limited) = mcp.limits.check_ip(mcp.limits.client_ip(socket.0.ip(), request.headers()))
    {
        return deny(None, None, GatewayError::TooManyRequests(limited.retry_after_secs()));
    }
    let principal = match mcp.authenticator.authenticate_request(request.headers(), request.uri().query()).await {
        Ok(p) => p,
        Err(e) => return deny(None, None, GatewayError::Unauthorized(e)),
    };
    // Fail closed (`audit.on_failure: refuse`): nothing runs that could not be recorded.
    if !mcp.audit.accepting() {
        return deny(Some(&principal), None, GatewayError::AuditUnavailable);
    }
    if request.method() != Method::POST {
        return deny(Some(&principal), None, GatewayError::HttpMethodNotAllowed);
    }

    // Streamable HTTP framing and the protocol revision, checked before the body is read.
    if let Err(e) = check_framing(request.headers()) {
        return deny(Some(&principal), None, e);
    }
    let (mut parts, body) = request.into_parts();
    // A body that came with its headers is read without arming a timer (a timer costs a lock on
    // the runtime's timer wheel); one still on its way must arrive within the time limit.
    let mut read = std::pin::pin!(Limited::new(body, mcp.max_body_bytes).collect());
    let read = match futures::poll!(read.as_mut()) {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => tokio::time::timeout(mcp.body_read_timeout, read).await,
    };
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return deny(Some(&principal), None, GatewayError::BodyTooLarge),
        Ok(Err(_)) => return deny(Some(&principal), None, GatewayError::BodyUnreadable),
        Err(_) => return deny(Some(&principal), None, GatewayError::BodyTimeout),
    };
    // 2026-07-28 (SEP-2575): an unknown method, or one that revision removed, is HTTP 404.
    let header_per_request = super::dispatch::per_request_header(&parts.headers);
    let extras = mcp.federation.offers_extras();
    let unserved = |method: &str, meta: bool| {
        let per_request = header_per_request || meta || method == "server/discover";
        (!served(method, per_request, extras)).then_some(if per_request {
            GatewayError::MethodNotFoundOnThisRevision
        } else {
            GatewayError::MethodNotFound
        })
    };
    let mut message = match check_message(&bytes, &unserved) {
        Ok(m) => m,
        Err(refused) => {
            let (id, e) = *refused;
            return deny(Some(&principal), id.map(|id| (id, None)), e);
        }
    };
    let id_and_method = |m: &Message| m.id.clone().map(|id| (id, m.method.clone()));
    if let Err(e) = check_protocol_version(&parts.headers, &message) {
        return deny(Some(&principal), id_and_method(&message), e);
    }
    let per_request = super::dispatch::needs_rmcp(&parts.headers, &message);
    if per_request && let Err(e) = check_mcp_headers(&parts.headers, &message) {
        return deny(Some(&principal), id_and_method(&message), e);
    }

    let facts = request_facts(mcp, &parts);
    let call = match decide_call(mcp, &principal, &facts, &mut message) {
        Ok(call) => call,
        Err(e) => return deny(Some(&principal), id_and_method(&message), e),
    };
    let url_elicitation = match (supports_url_elicitation(&parts.headers, &message.kind), per_request) {
        (false, _) => super::Elicitation::Text,
        (true, false) => super::Elicitation::Error,
        (true, true) => super::Elicitation::InputRequired,
    };
    let to_rmcp = per_request;
    let admitted =
        Admitted { principal, ctx, facts, jsonrpc_id: message.id, method: message.method, url_elicitation, call, once: Arc::clone(&once) };
    if !to_rmcp {
        return super::dispatch::serve(&endpoint.handler, admitted, message.kind, &parts.headers).await;
    }
    // The framing check accepted `*/*`; rmcp wants the two types named.
    parts.headers.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
    let principal = Arc::clone(&admitted.principal);
    let ctx = admitted.ctx.clone();
    let (jsonrpc_id, method) = (admitted.jsonrpc_id.clone(), admitted.method.clone());
    let mut request = Request::from_parts(parts, Body::from(bytes));
    let handoff = super::Handoff::new(admitted);
    request.extensions_mut().insert(handoff.clone());
    let response = endpoint.rmcp.handle(request).await.map(Body::new);
    // The handler audits whatever it took, also an answer that streams on after this response.
    if handoff.taken() {
        return response;
    }
    // rmcp answered by itself (a notification, a refusal of its own): recorded from the answer.
    let (response, outcome) = settle(response).await;
    let verdict = Verdict { decision: outcome.decision, reason: outcome.reason, status: response.status().as_u16() };
    once.emit(&mcp.audit, AuditEvent::request(&ctx, Some(&principal), jsonrpc_id, method, verdict));
    response
}

/// The call-time decision, made once, here (a step-up must be an HTTP 403): `Ok(None)` for
/// any other method.
fn decide_call(mcp: &Mcp, principal: &Principal, facts: &RequestFacts, message: &mut Message) -> Result<Option<CallAllowed>, GatewayError> {
    let Kind::CallTool(call) = &mut message.kind else { return Ok(None) };
    let tools = mcp.tools.load();
    let Some(tool) = tools.get(&call.name) else {
        let name = crate::audit::bounded(&call.name).into_owned();
        return Err(match tools.withheld(&call.name) {
            Some(_) => GatewayError::ToolWithheld(name),
            None => GatewayError::UnknownTool(name),
        });
    };
    // Taken from the message: the arguments live in one place, the decision.
    let arguments = Value::Object(call.arguments.take().unwrap_or_default());
    let policy = mcp.policy.load();
    let decision = policy.decide(principal, &tool.facts(), Stage::Call(&arguments), facts, None);
    match decision.outcome {
        // Limits are the handler's, once the arguments are known to be valid.
        Ok(()) => Ok(Some(CallAllowed { tool: Arc::clone(tool), rule: decision.rule, arguments, held: None })),
        // Held back for a person's yes: the handler asks the approvals, after validation (a
        // malformed call asks nobody). Without the vault there are none: refused.
        Err(crate::policy::Denial::ApprovalRequired { approval, reason }) if mcp.approvals.is_some() => {
            let held = Some((approval, reason, policy.set.version.clone()));
            Ok(Some(CallAllowed { tool: Arc::clone(tool), rule: decision.rule, arguments, held }))
        }
        Err(denial) => Err(GatewayError::Forbidden { denial, rule: decision.rule, tool: Arc::clone(tool) }),
    }
}

/// Whether the client can be sent a URL-mode elicitation. Capabilities sent with the request
/// (`_meta`, 2026-07-28) decide; otherwise, since stateless serving keeps no `initialize`, the
/// revision does: 2025-11-25 introduced URL elicitation. Older clients get the link as readable
/// `isError` text instead.
fn supports_url_elicitation(headers: &http::HeaderMap, kind: &Kind) -> bool {
    if let Kind::CallTool(call) = kind
        && let Some(capabilities) = call.meta.as_ref().and_then(|m| m.client_capabilities())
    {
        return capabilities.elicitation.is_some_and(|e| e.url.is_some());
    }
    let version = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()).unwrap_or("2025-03-26");
    // Revisions are ISO dates: they order as strings.
    version >= rmcp::model::ProtocolVersion::V_2025_11_25.as_str()
}

/// The request facts policy conditions may read.
fn request_facts(mcp: &Mcp, parts: &http::request::Parts) -> RequestFacts {
    let client_ip =
        parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| mcp.limits.client_ip(c.0.ip(), &parts.headers));
    let headers = mcp
        .policy_headers
        .iter()
        .filter_map(|h| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(|v| (h.as_str().to_owned(), v.to_owned())))
        .collect();
    RequestFacts { time: std::time::SystemTime::now(), client_ip, headers, method: Method::POST, path: std::borrow::Cow::Borrowed("/mcp") }
}

/// What a response rmcp produced by itself says, for the audit event.
#[derive(Clone, Copy)]
struct Outcome {
    decision: &'static str,
    reason: &'static str,
}

const SERVED: Outcome = Outcome { decision: "allow", reason: "ok" };

/// Reads the outcome of a response no stage recorded, and makes sure it is JSON with a stable
/// code: a plain-text refusal becomes a JSON-RPC error, and a JSON-RPC error without
/// `data.code` gets one.
async fn settle(response: Response) -> (Response, Outcome) {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json")));
    if status.is_success() && !is_json {
        // 202 for a notification or a response; a stream is never read here.
        return (response, SERVED);
    }
    let (parts, body) = response.into_parts();
    let internal = |parts| {
        let error = rpc_body(rpc::INTERNAL_ERROR, "internal error", "internal_error");
        (json_response(parts, StatusCode::INTERNAL_SERVER_ERROR, error), Outcome { decision: "error", reason: "internal_error" })
    };
    let Ok(bytes) = axum::body::to_bytes(body, SETTLE_READ_LIMIT).await else {
        return internal(parts);
    };
    if !is_json {
        let (code, stable) = http_code(status);
        let error = rpc_body(code, message_for(stable), stable);
        return (json_response(parts, status, error), outcome_for(status, code, stable));
    }
    // A result (the usual case) is passed on as it came; only an error is read.
    let pass_on = |mut parts: http::response::Parts, bytes| {
        parts.headers.remove(header::CONTENT_LENGTH);
        (Response::from_parts(parts, Body::from(bytes)), SERVED)
    };
    if status.is_success() && !bytes.windows(7).any(|w| w == b"\"error\"") {
        return pass_on(parts, bytes);
    }
    let Ok(mut message) = serde_json::from_slice::<Value>(&bytes) else { return internal(parts) };
    let Some(error) = message.get_mut("error").and_then(Value::as_object_mut) else { return pass_on(parts, bytes) };
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(rpc::INTERNAL_ERROR);
    let stable = rpc_code(code);
    let data = error.entry("data").or_insert(Value::Null);
    match data {
        Value::Object(d) => {
            d.entry("code").or_insert_with(|| Value::String(stable.into()));
        }
        Value::Null => *data = serde_json::json!({"code": stable}),
        _ => {}
    }
    (json_response(parts, status, message), outcome_for(status, code, stable))
}

fn outcome_for(status: StatusCode, code: i64, stable: &'static str) -> Outcome {
    let decision = if status.is_server_error() || code == rpc::INTERNAL_ERROR { "error" } else { "deny" };
    Outcome { decision, reason: stable }
}

fn json_response(mut parts: http::response::Parts, status: StatusCode, body: Value) -> Response {
    parts.status = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body.to_string()))
}

fn rpc_body(code: i64, message: &str, stable: &str) -> Value {
    crate::error::rpc_error(None, code, message, stable)
}

/// The stable code of a JSON-RPC error code.
fn rpc_code(code: i64) -> &'static str {
    match code {
        rpc::PARSE_ERROR => "parse_error",
        rpc::INVALID_REQUEST => "invalid_request",
        rpc::METHOD_NOT_FOUND => "method_not_found",
        rpc::INVALID_PARAMS => "invalid_params",
        rpc::INTERNAL_ERROR => "internal_error",
        rpc::POLICY_DENIED => "policy_denied",
        rpc::HEADER_MISMATCH => "header_mismatch",
        rpc::MISSING_CLIENT_CAPABILITY => "missing_client_capability",
        rpc::UNSUPPORTED_PROTOCOL_VERSION => "unsupported_protocol_version",
        rpc::URL_ELICITATION_REQUIRED => "connection_required",
        _ => "jsonrpc_error",
    }
}

/// The JSON-RPC code and stable code for an HTTP refusal that came without a JSON body.
fn http_code(status: StatusCode) -> (i64, &'static str) {
    let stable = match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        _ if status.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    (if status.is_server_error() { rpc::INTERNAL_ERROR } else { rpc::INVALID_REQUEST }, stable)
}

fn message_for(stable: &str) -> &'static str {
    match stable {
        "method_not_allowed" => "this endpoint accepts POST only (stateless Streamable HTTP)",
        "not_acceptable" => "Accept must include application/json and text/event-stream",
        "unsupported_media_type" => "Content-Type must be application/json",
        "not_found" => "not found",
        "body_too_large" => "request body too large",
        "internal_error" | "bad_gateway" | "unavailable" | "gateway_timeout" => "internal error",
        _ => "the request was refused",
    }
}

pub(super) fn refuse(
    mcp: &Mcp,
    once: &AuditOnce,
    ctx: &RequestContext,
    principal: Option<&Principal>,
    id: Option<(Value, Option<String>)>,
    error: GatewayError,
) -> Response {
    let (jsonrpc_id, method) = id.map_or((None, None), |(id, m)| (Some(id), m));
    // A refusal: the request's event with what the refusal adds (the tool, the rule, why).
    let verdict = Verdict { decision: error.decision(), reason: error.reason(), status: error.status().as_u16() };
    let crate::error::AuditDetails { tool, server, rule, explanation } = error.audit_details();
    once.emit(
        &mcp.audit,
        AuditEvent { tool, server, rule, explanation, ..AuditEvent::request(ctx, principal, jsonrpc_id.clone(), method, verdict) },
    );
    error.into_response(&mcp.metadata, jsonrpc_id)
}

/// A POST must carry JSON and accept both JSON and SSE responses (Streamable HTTP).
fn check_framing(headers: &http::HeaderMap) -> Result<(), GatewayError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(GatewayError::UnsupportedMediaType);
    }
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",").to_ascii_lowercase();
    let accepts = |t: &str| accept.split(',').any(|a| a.split(';').next().is_some_and(|m| m.trim() == t || m.trim() == "*/*"));
    if !(accepts("application/json") && accepts("text/event-stream")) {
        return Err(GatewayError::NotAcceptable);
    }
    Ok(())
}

/// 2026-07-28 (SEP-2243): `Mcp-Method` names the body's method, and `Mcp-Name` the tool or
/// prompt name (`tools/call`, `prompts/get`) or resource URI (`resources/read`), as sent or
/// Base64-wrapped (`=?base64?…?=`). Checked before any decision, so a mismatched request is
/// refused as such whatever else is wrong with it; rmcp checks the `Mcp-Param-*` headers of the
/// calls it serves.
fn check_mcp_headers(headers: &http::HeaderMap, message: &Message) -> Result<(), GatewayError> {
    let Some(method) = message.method.as_deref() else { return Ok(()) };
    let one = |name: &str| -> Result<Option<&str>, GatewayError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(GatewayError::HeaderMismatch("send one Mcp-Method and at most one Mcp-Name header"));
        }
        value.to_str().map(Some).map_err(|_| GatewayError::HeaderMismatch("an Mcp-* header is not visible ASCII"))
    };
    match one("mcp-method")? {
        None => return Err(GatewayError::HeaderMismatch("the Mcp-Method header is required")),
        Some(value) if value != method => {
            return Err(GatewayError::HeaderMismatch("the Mcp-Method header does not match the body's method"));
        }
        Some(_) => {}
    }
    let expected = match &message.kind {
        Kind::CallTool(call) => Some(call.name.as_ref()),
        Kind::Other(other) => match &**other {
            rmcp::model::ClientJsonRpcMessage::Request(r) => match &r.request {
                rmcp::model::ClientRequest::GetPromptRequest(p) => Some(p.params.name.as_str()),
                rmcp::model::ClientRequest::ReadResourceRequest(p) => Some(p.params.uri.as_str()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    let Some(expected) = expected else { return Ok(()) };
    let Some(raw) = one("mcp-name")? else { return Err(GatewayError::HeaderMismatch("the Mcp-Name header is required")) };
    let decoded = match raw.strip_prefix("=?base64?").and_then(|inner| inner.strip_suffix("?=")) {
        Some(inner) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(inner).ok().and_then(|b| String::from_utf8(b).ok())
        }
        None => Some(raw.to_owned()),
    };
    if decoded.as_deref() != Some(expected) {
        return Err(GatewayError::HeaderMismatch("the Mcp-Name header does not match the body"));
    }
    Ok(())
}

/// `MCP-Protocol-Version`: at most one, and a revision this gateway knows. `initialize`
/// negotiates the revision in its body (rmcp checks that a header agrees with it), and a
/// request whose `_meta` names its own revision (2026-07-28) is left to rmcp, which checks that
/// the two agree.
fn check_protocol_version(headers: &http::HeaderMap, message: &Message) -> Result<(), GatewayError> {
    let mut values = headers.get_all("mcp-protocol-version").iter();
    let Some(value) = values.next() else { return Ok(()) };
    if values.next().is_some() {
        return Err(GatewayError::InvalidRequest("send one MCP-Protocol-Version header"));
    }
    let known = value.to_str().is_ok_and(|v| rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().any(|k| k.as_str() == v));
    if known || message.meta_protocol_version || message.method.as_deref() == Some("initialize") {
        return Ok(());
    }
    Err(GatewayError::UnsupportedProtocolVersion)
}

#[cfg(test)]
mod tests {
    /// Every method served is a metric label and a span name of its own, not `other`: the
    /// telemetry keeps its own list (it cannot import this one without a module cycle).
    #[test]
    fn every_served_method_is_known_to_telemetry() {
        for method in super::SERVED_METHODS {
            assert!(crate::telemetry::known_method(method), "{method} is missing from telemetry::METHODS");
        }
    }
}
