//! The gate: host/origin, authentication, body limit and time limit, the one parse, JSON-RPC
//! shape and the call-time policy decision (an HTTP 403 step-up). See the module docs of `mcp`
//! for why each stands where it does. What passes is an [`Admitted`], handed to dispatch.
//!
//! Every request to `/mcp` is recorded by exactly one audit event: each refusal here writes its
//! own, and dispatch and the handler write the event of what they served. [`AuditOnce`] makes a
//! second write impossible.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use http::{Method, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::message::{Kind, Message, check_message};
use super::{Admitted, CallAllowed, Mcp};
use crate::audit::{AuditEvent, AuditOnce, Verdict};
use crate::edge::RequestContext;
use crate::error::GatewayError;
use crate::identity::Principal;
use crate::policy::{RequestFacts, Stage};

/// The requests Warden serves (the tools capability; resources, prompts and completions when
/// federated servers offer them). Any other request gets -32601 here, audited as such.
const SERVED_METHODS: &[&str] = &[
    "initialize",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
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

/// Whether `method` is served: on the 2026-07-28 per-request lifecycle, not what that revision
/// removed (`initialize`, `logging/setLevel`, `resources/subscribe`), and on the older ones not
/// what it added (`subscriptions/listen`); resources, prompts, logging and subscriptions only
/// where federated servers offer them (they are declared then, and only then).
fn served(method: &str, per_request: bool, extras: bool) -> bool {
    if !SERVED_METHODS.contains(&method) {
        return false;
    }
    match method {
        "initialize" => !per_request,
        "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" => !per_request && extras,
        "subscriptions/listen" => per_request && extras,
        m if m.starts_with("resources/") || m.starts_with("prompts/") || m == "completion/complete" => extras || !per_request,
        _ => true,
    }
}

/// `/mcp`, every HTTP method: the gate, then dispatch.
pub async fn endpoint(State(endpoint): State<Arc<Mcp>>, request: Request) -> Response {
    let mcp = &*endpoint;
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
    // A session's own stream (the older revisions: resource updates), opened with a GET that
    // carries its id; any other GET, and every other method, is refused.
    if request.method() == Method::GET
        && let Some(id) = request.headers().get("mcp-session-id")
        && !super::dispatch::per_request_header(request.headers())
    {
        let Some((session, _)) = super::sessions::open_header(&mcp.rounds, &principal, id) else {
            return deny(Some(&principal), None, GatewayError::SessionNotFound);
        };
        let (parts, _) = request.into_parts();
        if !accepts(&parts.headers, "text/event-stream") {
            return deny(Some(&principal), None, GatewayError::NotAcceptable);
        }
        let verdict = Verdict { decision: "allow", reason: "ok", status: 200 };
        let event = AuditEvent {
            explanation: Some("the session's stream (resource updates)".into()),
            ..AuditEvent::request(&ctx, Some(&principal), None, None, verdict)
        };
        once.emit(&mcp.audit, event);
        return super::subscriptions::stream(&endpoint, &principal, &request_facts(mcp, &parts), &session);
    }
    if request.method() != Method::POST {
        return deny(Some(&principal), None, GatewayError::HttpMethodNotAllowed);
    }

    // Streamable HTTP framing and the protocol revision, checked before the body is read.
    if let Err(e) = check_framing(request.headers()) {
        return deny(Some(&principal), None, e);
    }
    let (parts, body) = request.into_parts();
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
    // A request names the 2026-07-28 per-request lifecycle by its header, its `_meta` or its
    // method.
    let header_per_request = super::dispatch::per_request_header(&parts.headers);
    let per_request = |method: Option<&str>, meta: bool| header_per_request || meta || method == Some("server/discover");
    let extras = mcp.federation.offers_extras();
    let unserved = |method: &str, meta: bool| {
        let per_request = per_request(Some(method), meta);
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
    // That lifecycle's own rules (SEP-2243 headers, SEP-2575 metadata).
    if per_request(message.method.as_deref(), message.names_revision())
        && let Err(e) = check_mcp_headers(&parts.headers, &message).and_then(|()| check_request_meta(&parts.headers, &message))
    {
        return deny(Some(&principal), id_and_method(&message), e);
    }
    let revision = super::dispatch::Revision::of(&parts.headers, &message);

    let facts = request_facts(mcp, &parts);
    let call = match decide_call(mcp, &principal, &facts, &mut message) {
        Ok(call) => call,
        Err(e) => return deny(Some(&principal), id_and_method(&message), e),
    };
    // SEP-2243: the arguments a call promotes to `Mcp-Param-*` headers, checked against the
    // arguments the decision was made on.
    if revision == super::dispatch::Revision::PerRequest
        && let Some(call) = &call
        && let Err(e) = check_param_headers(&parts.headers, &call.tool.input_schema, &call.arguments)
    {
        return deny(Some(&principal), id_and_method(&message), e);
    }
    // On the older revisions, what the client declared it can be asked comes with its session
    // (sealed by Warden for this caller; `sessions`): one that does not open is not Warden's for
    // this caller, or has expired, and the client must start a new one.
    let session = match (revision, parts.headers.get("mcp-session-id")) {
        (super::dispatch::Revision::Handshake, Some(id)) if message.method.as_deref() != Some("initialize") => {
            match super::sessions::open_header(&mcp.rounds, &principal, id) {
                Some(session) => Some(session),
                None => return deny(Some(&principal), id_and_method(&message), GatewayError::SessionNotFound),
            }
        }
        _ => None,
    };
    let (session, session_capabilities) = session.unzip();
    let declared = message.meta.as_ref().and_then(rmcp::model::RequestMetaObject::client_capabilities);
    let url_elicitation = match (supports_url_elicitation(&parts.headers, declared.as_ref()), revision) {
        (false, _) => super::Elicitation::Text,
        (true, super::dispatch::Revision::Handshake) => super::Elicitation::Error,
        (true, super::dispatch::Revision::PerRequest) => super::Elicitation::InputRequired,
    };
    let admitted = Admitted {
        principal,
        ctx,
        facts,
        jsonrpc_id: message.id,
        method: message.method,
        url_elicitation,
        revision,
        client_capabilities: declared.or(session_capabilities),
        session,
        call,
        once: Arc::clone(&once),
    };
    super::dispatch::serve(&endpoint, admitted, message.kind, &parts.headers).await
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
    let retry = super::dispatch::retry_of(call.input_responses.take(), call.request_state.take());
    let policy = mcp.policy.load();
    let decision = policy.decide(principal, &tool.facts(), Stage::Call(&arguments), facts, None);
    match decision.outcome {
        // Limits are the handler's, once the arguments are known to be valid.
        Ok(()) => Ok(Some(CallAllowed { tool: Arc::clone(tool), rule: decision.rule, arguments, held: None, retry })),
        // Held back for a person's yes: the handler asks the approvals, after validation (a
        // malformed call asks nobody). Without the vault there are none: refused.
        Err(crate::policy::Denial::ApprovalRequired { approval, reason }) if mcp.approvals.is_some() => {
            let held = Some((approval, reason, policy.set.version.clone()));
            Ok(Some(CallAllowed { tool: Arc::clone(tool), rule: decision.rule, arguments, held, retry }))
        }
        Err(denial) => Err(GatewayError::Forbidden { denial, rule: decision.rule, tool: Arc::clone(tool) }),
    }
}

/// Whether the client can be sent a URL-mode elicitation. Capabilities sent with the request
/// (`_meta`, 2026-07-28) decide; otherwise, since stateless serving keeps no `initialize`, the
/// revision does: 2025-11-25 introduced URL elicitation. Older clients get the link as readable
/// `isError` text instead.
fn supports_url_elicitation(headers: &http::HeaderMap, capabilities: Option<&rmcp::model::ClientCapabilities>) -> bool {
    if let Some(capabilities) = capabilities {
        return capabilities.elicitation.as_ref().is_some_and(|e| e.url.is_some());
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
    if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
        return Err(GatewayError::NotAcceptable);
    }
    Ok(())
}

/// Whether the request's `Accept` takes media type `t`.
fn accepts(headers: &http::HeaderMap, t: &str) -> bool {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",").to_ascii_lowercase();
    accept.split(',').any(|a| a.split(';').next().is_some_and(|m| m.trim() == t || m.trim() == "*/*"))
}

/// The one value of a header that may be sent once (SEP-2243's headers are singletons: an
/// intermediary resolving duplicates otherwise could route on a value the body does not say).
fn single<'h>(headers: &'h http::HeaderMap, name: &str) -> Result<Option<&'h str>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(GatewayError::HeaderMismatch(format!("send {name} at most once").into()));
    }
    value.to_str().map(Some).map_err(|_| GatewayError::HeaderMismatch(format!("{name} is not visible ASCII").into()))
}

/// A header value as sent, or unwrapped from SEP-2243's Base64 form (`=?base64?…?=`); `None`
/// when the wrapped form is not Base64 of UTF-8 text.
fn unwrapped(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    match raw.strip_prefix("=?base64?").and_then(|inner| inner.strip_suffix("?=")) {
        Some(inner) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(inner).ok()?;
            String::from_utf8(bytes).ok().map(std::borrow::Cow::Owned)
        }
        None => Some(std::borrow::Cow::Borrowed(raw)),
    }
}

/// 2026-07-28 (SEP-2243): `Mcp-Method` names the body's method, and `Mcp-Name` the tool or
/// prompt name (`tools/call`, `prompts/get`) or resource URI (`resources/read`). Checked before
/// any decision, so a mismatched request is refused as such whatever else is wrong with it. A
/// call's `Mcp-Param-*` headers are checked once its tool is known ([`check_param_headers`]).
fn check_mcp_headers(headers: &http::HeaderMap, message: &Message) -> Result<(), GatewayError> {
    let Some(method) = message.method.as_deref() else { return Ok(()) };
    match single(headers, "mcp-method")? {
        None => return Err(GatewayError::HeaderMismatch("the Mcp-Method header is required".into())),
        Some(value) if value != method => {
            return Err(GatewayError::HeaderMismatch("the Mcp-Method header does not match the body's method".into()));
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
    let Some(raw) = single(headers, "mcp-name")? else {
        return Err(GatewayError::HeaderMismatch("the Mcp-Name header is required".into()));
    };
    if unwrapped(raw).as_deref() != Some(expected) {
        return Err(GatewayError::HeaderMismatch("the Mcp-Name header does not match the body".into()));
    }
    Ok(())
}

/// 2026-07-28 (SEP-2243): every argument the tool's input schema annotates with `x-mcp-header`
/// travels as `Mcp-Param-{name}` too, with the argument's value (a string, number or boolean;
/// Base64-wrapped where needed); a header for an argument that is absent or null is refused.
/// Annotations are read along `properties` chains from the schema's root, as the client that
/// wrote the headers read them. The words name the header and the property, never a value.
fn check_param_headers(headers: &http::HeaderMap, schema: &serde_json::Map<String, Value>, arguments: &Value) -> Result<(), GatewayError> {
    fn annotated<'s>(properties: Option<&'s Value>, path: &mut Vec<&'s str>, out: &mut Vec<(Vec<&'s str>, &'s str)>) {
        let Some(Value::Object(properties)) = properties else { return };
        for (name, schema) in properties {
            path.push(name);
            if let Some(Value::String(header)) = schema.get("x-mcp-header")
                && !header.is_empty()
            {
                out.push((path.clone(), header));
            }
            annotated(schema.get("properties"), path, out);
            path.pop();
        }
    }
    let mut promoted = Vec::new();
    annotated(schema.get("properties"), &mut Vec::new(), &mut promoted);
    for (path, header) in promoted {
        let name = format!("mcp-param-{header}");
        let sent = single(headers, &name)?;
        let value = path.iter().try_fold(arguments, |v, key| v.get(key)).and_then(|v| match v {
            Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
            Value::Bool(b) => Some(std::borrow::Cow::Owned(b.to_string())),
            Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
            _ => None,
        });
        let property = path.join(".");
        let refused = |why: &str| Err(GatewayError::HeaderMismatch(format!("Mcp-Param-{header} {why} `{property}`").into()));
        match (sent, value) {
            (None, None) => {}
            (Some(_), None) => return refused("is sent for an absent or null argument"),
            (None, Some(_)) => return refused("is required for the argument"),
            (Some(raw), Some(value)) if unwrapped(raw).as_deref() != Some(value.as_ref()) => {
                return refused("does not match the argument");
            }
            (Some(_), Some(_)) => {}
        }
    }
    Ok(())
}

/// 2026-07-28 (SEP-2575): a request carries its revision in `_meta`, the same revision in
/// `MCP-Protocol-Version`, and the client's capabilities; `server/discover` and any request
/// whose header names that revision must carry them. A revision this server does not serve is
/// refused with the ones it does. `initialize`, notifications and responses are exempt.
fn check_request_meta(headers: &http::HeaderMap, message: &Message) -> Result<(), GatewayError> {
    use rmcp::model::{ProtocolVersion, RequestMetaObject};
    if message.id.is_none() || message.method.as_deref().is_none_or(|m| m == "initialize") {
        return Ok(());
    }
    let discover = message.method.as_deref() == Some("server/discover");
    let empty = RequestMetaObject::default();
    let meta = message.meta.as_ref().unwrap_or(&empty);
    let header = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok());
    let per_request = |v: &str| v >= ProtocolVersion::V_2026_07_28.as_str();
    let Some(revision) = meta.protocol_version() else {
        if discover || header.is_some_and(per_request) {
            return Err(GatewayError::RequestMetaMissing(meta.missing_required_keys(&ProtocolVersion::V_2026_07_28)));
        }
        return Ok(());
    };
    match header {
        None => return Err(GatewayError::HeaderMismatch("a request whose _meta names its revision sends MCP-Protocol-Version".into())),
        Some(h) if h != revision.as_str() => {
            return Err(GatewayError::HeaderMismatch("the MCP-Protocol-Version header does not match the request's _meta".into()));
        }
        Some(_) => {}
    }
    if !super::handler::PROTOCOL_VERSIONS.contains(&revision) {
        let requested = crate::audit::bounded(revision.as_str()).into_owned();
        return Err(GatewayError::UnsupportedRevision { requested, supported: super::handler::PROTOCOL_VERSIONS });
    }
    let missing =
        if discover || per_request(revision.as_str()) { meta.missing_required_keys(&ProtocolVersion::V_2026_07_28) } else { Vec::new() };
    if !missing.is_empty() {
        return Err(GatewayError::RequestMetaMissing(missing));
    }
    Ok(())
}

/// `MCP-Protocol-Version`: at most one, and a revision this gateway knows. `initialize`
/// negotiates the revision in its body (dispatch checks that a header agrees with it), and a
/// request whose `_meta` names its own revision (2026-07-28) is checked against it by
/// [`check_request_meta`].
fn check_protocol_version(headers: &http::HeaderMap, message: &Message) -> Result<(), GatewayError> {
    let mut values = headers.get_all("mcp-protocol-version").iter();
    let Some(value) = values.next() else { return Ok(()) };
    if values.next().is_some() {
        return Err(GatewayError::InvalidRequest("send one MCP-Protocol-Version header"));
    }
    let known = value.to_str().is_ok_and(|v| rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().any(|k| k.as_str() == v));
    if known || message.names_revision() || message.method.as_deref() == Some("initialize") {
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
