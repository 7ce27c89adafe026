//! The MCP server handler: runtime tool lists filtered by policy, and tool calls.
//!
//! Identity arrives through the HTTP request's extensions (put there by the gate); a request
//! without a principal is refused, never served anonymously.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities,
};
use rmcp::service::RequestContext as McpContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Map, Value};

use super::GateInfo;
use crate::audit::{AuditEvent, AuditOnce};
use crate::edge::RequestContext;
use crate::gateway::Gateway;
use crate::identity::Principal;
use crate::policy::RequestFacts;
use crate::upstream::CallContext;

use super::gate::CallAllowed;

/// The protocol revisions Warden serves, newest first.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] =
    &[ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2025_06_18];

#[derive(Clone)]
pub struct McpHandler {
    pub gateway: Arc<Gateway>,
}

/// What the gate attached to the HTTP request.
struct Attached {
    principal: Arc<Principal>,
    ctx: RequestContext,
    info: GateInfo,
    facts: RequestFacts,
    /// This request's one audit event.
    once: Arc<AuditOnce>,
}

fn attached(context: &McpContext<RoleServer>) -> Result<Attached, ErrorData> {
    let parts = context.extensions.get::<http::request::Parts>().ok_or_else(missing_identity)?;
    let principal = parts.extensions.get::<Arc<Principal>>().cloned().ok_or_else(missing_identity)?;
    let ctx = parts.extensions.get::<RequestContext>().cloned().ok_or_else(missing_identity)?;
    let info = parts.extensions.get::<GateInfo>().cloned().unwrap_or(GateInfo { jsonrpc_id: None, method: None });
    let facts = parts.extensions.get::<RequestFacts>().cloned().unwrap_or_default();
    let once = parts.extensions.get::<Arc<AuditOnce>>().cloned().ok_or_else(missing_identity)?;
    Ok(Attached { principal, ctx, info, facts, once })
}

fn missing_identity() -> ErrorData {
    ErrorData::internal_error("request reached the handler without identity", None)
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("warden", env!("CARGO_PKG_VERSION")).with_title("Warden MCP gateway"))
            .with_instructions("Tools exposed by this gateway are filtered by your identity and scopes.")
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: McpContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let a = attached(&context)?;
        let policy = self.gateway.policy.load();
        let tools: Vec<rmcp::model::Tool> =
            self.gateway.tools.iter().filter(|t| policy.visible(&a.principal, &t.facts(), &a.facts)).map(|t| t.descriptor()).collect();
        a.once.emit(
            &self.gateway.audit,
            AuditEvent {
                method: Some("tools/list".into()),
                decision: "allow",
                reason: "ok".into(),
                status: 200,
                ..AuditEvent::for_request(&a.ctx, Some(&a.principal), a.info.jsonrpc_id)
            },
        );
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(&self, request: CallToolRequestParams, mut context: McpContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        // Taken, not copied: the arguments are used once, by this call.
        let allowed = context.extensions.get_mut::<http::request::Parts>().and_then(|p| p.extensions.remove::<CallAllowed>());
        let a = attached(&context)?;
        let gw = &self.gateway;
        let event = AuditEvent {
            method: Some("tools/call".into()),
            tool: Some(request.name.to_string()),
            ..AuditEvent::for_request(&a.ctx, Some(&a.principal), a.info.jsonrpc_id.clone())
        };
        let once = &a.once;
        let deny = |reason: &str, rule: Option<String>, error: ErrorData| {
            once.emit(
                &gw.audit,
                AuditEvent { decision: "deny", reason: reason.into(), rule, status: 200, latency_ms: a.ctx.elapsed_ms(), ..event.clone() },
            );
            Err(error)
        };

        if gw.tools.get(&request.name).is_none() {
            let name = crate::audit::bounded(&request.name);
            return deny("unknown_tool", None, ErrorData::invalid_params(format!("unknown tool: {name}"), Some(stable("unknown_tool"))));
        }
        // The gate decided on the tool and the call's arguments, and hands both on: the call
        // uses the very values policy saw. A call it did not allow never gets here.
        let Some(decision) = allowed.filter(|d| d.tool.name == *request.name) else {
            let error =
                ErrorData::internal_error("tool call reached the handler without a policy decision", Some(stable("internal_error")));
            return deny("no_decision", None, error);
        };
        let tool = Arc::clone(&decision.tool);
        let args = decision.arguments;
        if let Err(reason) = tool.validate_arguments(&args) {
            let error = ErrorData::invalid_params(format!("invalid arguments: {reason}"), Some(stable("invalid_arguments")));
            return deny("invalid_arguments", Some(decision.rule), error);
        }
        let args: &Map<String, Value> = args.as_object().unwrap_or(&EMPTY);
        let call = CallContext { request_id: a.ctx.request_id.clone(), traceparent: a.ctx.traceparent.clone() };
        let outcome = tool.http.call(&gw.upstream, &a.principal, &call, args).await;
        if let Some(connect) = &outcome.connect {
            // The caller must connect an account first: never a token that is not theirs.
            a.once.emit(
                &gw.audit,
                AuditEvent {
                    decision: "deny",
                    reason: outcome.code.into(),
                    rule: Some(decision.rule),
                    credential: tool.credential_name().map(str::to_owned),
                    status: 200,
                    latency_ms: a.ctx.elapsed_ms(),
                    ..event
                },
            );
            if supports_url_elicitation(&context) {
                return Err(url_elicitation_required(connect));
            }
            return Ok(CallToolResponse::Complete(outcome.result));
        }
        a.once.emit(
            &gw.audit,
            AuditEvent {
                decision: if outcome.code == "ok" { "allow" } else { "error" },
                reason: outcome.code.into(),
                rule: Some(decision.rule),
                status: 200,
                upstream_status: outcome.upstream_status,
                credential: tool.credential_name().map(str::to_owned),
                latency_ms: a.ctx.elapsed_ms(),
                ..event
            },
        );
        Ok(CallToolResponse::Complete(outcome.result))
    }
}

/// JSON-RPC error code of `URLElicitationRequiredError` (MCP 2025-11-25).
pub const URL_ELICITATION_REQUIRED: i32 = crate::error::rpc::URL_ELICITATION_REQUIRED as i32;

/// `error.data` carrying Warden's stable code.
fn stable(code: &str) -> Value {
    serde_json::json!({ "code": code })
}

/// Whether the client can be sent a URL-mode elicitation. Capabilities sent with the request
/// (`_meta`, 2026-07-28) decide; otherwise, since stateless serving keeps no `initialize`, the
/// revision does: 2025-11-25 introduced URL elicitation. Older clients get the link as readable
/// `isError` text instead.
fn supports_url_elicitation(context: &McpContext<RoleServer>) -> bool {
    if let Some(capabilities) = context.meta.client_capabilities() {
        return capabilities.elicitation.is_some_and(|e| e.url.is_some());
    }
    let parts = context.extensions.get::<http::request::Parts>();
    let version = parts.and_then(|p| p.headers.get("mcp-protocol-version")).and_then(|v| v.to_str().ok()).unwrap_or("2025-03-26");
    // Revisions are ISO dates: they order as strings.
    version >= ProtocolVersion::V_2025_11_25.as_str()
}

fn url_elicitation_required(connect: &crate::tools::ConnectRequired) -> ErrorData {
    let data = serde_json::json!({
        "elicitations": [{
            "mode": "url",
            "elicitationId": uuid::Uuid::now_v7().to_string(),
            "url": connect.url,
            "message": connect.message,
        }]
    });
    ErrorData::new(rmcp::model::ErrorCode(URL_ELICITATION_REQUIRED), connect.message.clone(), Some(data))
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
