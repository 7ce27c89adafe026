//! The gate in front of rmcp: host/origin, authentication, body limit, JSON-RPC shape and the
//! step-up scope check. See the module docs of `mcp` for why each stands where it does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use super::GateInfo;
use crate::audit::AuditEvent;
use crate::edge::RequestContext;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::identity::Principal;
use crate::policy::{RequestFacts, Stage};

/// Methods whose audit event the MCP handler writes (it knows the outcome).
const HANDLER_AUDITED: &[&str] = &["tools/list", "tools/call"];

/// The requests Warden serves (it advertises the tools capability only). Notifications and
/// responses pass to rmcp; any other request gets -32601 here, audited as such.
const SERVED_METHODS: &[&str] = &["initialize", "ping", "tools/list", "tools/call", "server/discover"];

pub async fn gate(State(gw): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let ctx = match request.extensions().get::<RequestContext>() {
        Some(ctx) => ctx.clone(),
        None => RequestContext::from_headers(request.headers()),
    };
    if let Err(code) = gw.origin_guard.check(request.headers()) {
        gw.audit.emit(AuditEvent { decision: "deny", reason: code.into(), status: 403, ..AuditEvent::for_request(&ctx, None, None) });
        let body = serde_json::json!({"error": code, "error_description": "request origin or host not allowed"});
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    let principal = match gw.authenticator.authenticate_header(request.headers().get(header::AUTHORIZATION)).await {
        Ok(p) => p,
        Err(e) => return refuse(&gw, &ctx, None, None, GatewayError::Unauthorized(e)),
    };
    if request.method() != Method::POST {
        return pass(&gw, ctx, principal, GateInfo { jsonrpc_id: None, method: None }, request, next).await;
    }

    // Streamable HTTP framing, checked before the body is read.
    if let Err(e) = check_framing(request.headers()) {
        return refuse(&gw, &ctx, Some(&principal), None, e);
    }
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, gw.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return refuse(&gw, &ctx, Some(&principal), None, GatewayError::BodyTooLarge),
        Err(_) => return refuse(&gw, &ctx, Some(&principal), None, GatewayError::BodyUnreadable),
    };
    let message = match check_message(&bytes) {
        Ok(m) => m,
        Err((id, e)) => return refuse(&gw, &ctx, Some(&principal), id.map(|id| (id, None)), e),
    };
    let info = GateInfo { jsonrpc_id: message.id.clone(), method: message.method.clone() };
    if let (Some(method), Some(id)) = (&message.method, &message.id)
        && !SERVED_METHODS.contains(&method.as_str())
    {
        return refuse(&gw, &ctx, Some(&principal), Some((id.clone(), Some(method.clone()))), GatewayError::MethodNotFound);
    }

    let facts = request_facts(&gw, &parts);
    let mut allowed_by = None;
    if message.method.as_deref() == Some("tools/call") {
        let params = message.params.as_ref();
        let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
        if let Some(tool) = name.and_then(|n| gw.tools.get(n)) {
            // The call-time decision, made once, here: a step-up must be an HTTP 403.
            let empty = Value::Object(Map::new());
            let args = params.and_then(|p| p.get("arguments")).filter(|a| a.is_object()).unwrap_or(&empty);
            let decision = gw.policy.load().decide(&principal, &tool.facts(), Stage::Call(args), &facts, None);
            match decision.outcome {
                Ok(()) => allowed_by = Some(CallAllowed { rule: decision.rule }),
                Err(denial) => {
                    let explanation = match &denial {
                        crate::policy::Denial::Forbidden { reason } => reason.clone(),
                        crate::policy::Denial::InsufficientScope { missing, .. } => format!("missing scopes: {}", missing.join(" ")),
                    };
                    let event = AuditEvent {
                        method: info.method.clone(),
                        tool: Some(tool.name.clone()),
                        rule: Some(decision.rule.clone()),
                        explanation: Some(explanation),
                        ..AuditEvent::for_request(&ctx, Some(&principal), info.jsonrpc_id.clone())
                    };
                    let error = GatewayError::Forbidden { denial, rule: decision.rule };
                    gw.audit.emit(AuditEvent { decision: "deny", reason: error.reason().into(), status: error.status().as_u16(), ..event });
                    return error.into_response(&gw.metadata, info.jsonrpc_id);
                }
            }
        }
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(facts);
    if let Some(allowed) = allowed_by {
        request.extensions_mut().insert(allowed);
    }
    pass(&gw, ctx, principal, info, request, next).await
}

/// The gate's call-time decision, handed to the handler: the rule that allowed the call.
#[derive(Debug, Clone)]
pub struct CallAllowed {
    pub rule: String,
}

/// The request facts policy conditions may read.
fn request_facts(gw: &Gateway, parts: &http::request::Parts) -> RequestFacts {
    let client_ip = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let headers = gw
        .policy_headers
        .iter()
        .filter_map(|h| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(|v| (h.as_str().to_owned(), v.to_owned())))
        .collect();
    RequestFacts { time: std::time::SystemTime::now(), client_ip, headers }
}

async fn pass(gw: &Gateway, ctx: RequestContext, principal: Arc<Principal>, info: GateInfo, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Arc::clone(&principal));
    request.extensions_mut().insert(info.clone());
    request.extensions_mut().insert(ctx.clone());
    let response = next.run(request).await;
    if !info.method.as_deref().is_some_and(|m| HANDLER_AUDITED.contains(&m)) {
        let status = response.status();
        let decision = if status.is_success() { "allow" } else { "error" };
        let reason = if status.is_success() { "ok".to_owned() } else { format!("http_{}", status.as_u16()) };
        gw.audit.emit(AuditEvent {
            method: info.method,
            decision,
            reason,
            status: status.as_u16(),
            ..AuditEvent::for_request(&ctx, Some(&principal), info.jsonrpc_id)
        });
    }
    response
}

fn refuse(
    gw: &Gateway,
    ctx: &RequestContext,
    principal: Option<&Principal>,
    id: Option<(Value, Option<String>)>,
    error: GatewayError,
) -> Response {
    let (jsonrpc_id, method) = id.map_or((None, None), |(id, m)| (Some(id), m));
    let decision = match error.class() {
        crate::error::Class::Downstream => "deny",
        crate::error::Class::Upstream | crate::error::Class::Internal => "error",
    };
    gw.audit.emit(AuditEvent {
        method,
        decision,
        reason: error.reason().into(),
        status: error.status().as_u16(),
        ..AuditEvent::for_request(ctx, principal, jsonrpc_id.clone())
    });
    error.into_response(&gw.metadata, jsonrpc_id)
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

/// The parts of a JSON-RPC message the gate needs.
#[derive(Debug)]
pub struct Message {
    pub id: Option<Value>,
    pub method: Option<String>,
    pub params: Option<Map<String, Value>>,
}

/// JSON-RPC 2.0 as MCP uses it: one object (batches were removed in 2025-06-18), `jsonrpc`
/// exactly "2.0", an id that is a string or an integer, a string method, object params. The
/// result must also be a message rmcp can read, so that no malformed body reaches it and
/// comes back as a plain-text 415.
pub fn check_message(bytes: &[u8]) -> Result<Message, (Option<Value>, GatewayError)> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| (None, GatewayError::Parse))?;
    let obj = match &value {
        Value::Object(o) => o,
        Value::Array(_) => return Err((None, GatewayError::InvalidRequest("JSON-RPC batches are not supported"))),
        _ => return Err((None, GatewayError::InvalidRequest("a JSON-RPC message must be an object"))),
    };
    let id = match obj.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
        Some(_) => return Err((None, GatewayError::InvalidRequest("id must be a string or an integer"))),
    };
    let fail = |e| Err((id.clone(), e));
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return fail(GatewayError::InvalidRequest("jsonrpc must be \"2.0\""));
    }
    let method = match obj.get("method") {
        None => None,
        Some(Value::String(m)) if !m.is_empty() => Some(m.clone()),
        Some(_) => return fail(GatewayError::InvalidRequest("method must be a non-empty string")),
    };
    if obj.get("params").is_some_and(|p| !p.is_object()) {
        return fail(GatewayError::InvalidParams("params must be an object"));
    }
    let params = obj.get("params").and_then(Value::as_object);
    if method.is_none() {
        let is_response = id.is_some() && (obj.contains_key("result") ^ obj.contains_key("error"));
        if !is_response {
            return fail(GatewayError::InvalidRequest("a message needs a method, or an id with result or error"));
        }
    }
    // rmcp reads a known method with unusable params as a custom request (-32601); the params
    // of the methods Warden serves are checked here so they get -32602.
    if method.as_deref() == Some("tools/call") {
        let p = params.as_ref();
        if !p.and_then(|p| p.get("name")).is_some_and(Value::is_string) {
            return fail(GatewayError::InvalidParams("tools/call needs params.name as a string"));
        }
        if p.and_then(|p| p.get("arguments")).is_some_and(|a| !a.is_object() && !a.is_null()) {
            return fail(GatewayError::InvalidParams("tools/call arguments must be an object"));
        }
    }
    // Checked by reference: the body is parsed once more here, but never copied.
    if <rmcp::model::ClientJsonRpcMessage as serde::Deserialize>::deserialize(&value).is_err() {
        return fail(GatewayError::InvalidParams("params do not match the method"));
    }
    let params = match value {
        Value::Object(mut o) => match o.remove("params") {
            Some(Value::Object(p)) => Some(p),
            _ => None,
        },
        _ => None,
    };
    Ok(Message { id, method, params })
}
