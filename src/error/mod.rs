//! The one place that turns a stage's refusal into an HTTP response: status, JSON-RPC code,
//! `WWW-Authenticate` challenge and a stable code. Matches are exhaustive with no catch-all,
//! so a new variant forces a decision. Bodies carry static text only; library error detail
//! goes to logs, never to a client.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::credentials::CredentialError;
use crate::identity::AuthError;
use crate::identity::metadata::ResourceMetadata;
use crate::policy::Denial;
use crate::tools::ToolFailure;

mod proxy;
mod surfaces;

pub use proxy::ProxyError;
pub use surfaces::{AdminError, CLEAR_CONNECT_COOKIE, ConnectError, ConnectStep, escape_html, html_page, oauth_error_code, static_page};

/// JSON-RPC 2.0 error codes.
pub mod rpc {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A call the policy refuses (server-defined range).
    pub const POLICY_DENIED: i64 = -32003;
    /// A call whose token lacks a scope (the body of the 403 step-up; server-defined range).
    pub const INSUFFICIENT_SCOPE: i64 = -32004;
    /// MCP 2026-07-28: a header disagrees with the body (`Mcp-Method`, `MCP-Protocol-Version`).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28: the request needs a client capability it did not declare.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// MCP 2026-07-28: a protocol revision the server does not support.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// A call over a rate limit (server-defined range).
    pub const RATE_LIMITED: i64 = -32029;
    /// A call over a quota (a budget per day or month; server-defined range).
    pub const QUOTA_EXCEEDED: i64 = -32030;
    /// MCP 2025-11-25: the user must complete a URL elicitation first.
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;
}

/// Whose fault: the caller's (4xx), a backend's (502/504) or ours (500). Audit and metrics use
/// the same tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Downstream,
    Upstream,
    Internal,
}

/// What a limit refused: a tool, or a federated resource, template or prompt (by its exposed
/// name), and its server.
#[derive(Debug, Clone)]
pub struct LimitedItem {
    pub name: String,
    pub server: Option<String>,
}

impl LimitedItem {
    pub fn tool(tool: &crate::tools::Tool) -> Self {
        Self { name: tool.name.clone(), server: tool.server.clone() }
    }
}

/// A refusal before the MCP handler runs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// `Host` or `Origin` not allowed (DNS-rebinding protection); the code says which.
    #[error("request origin or host not allowed")]
    OriginRefused(&'static str),
    #[error("unauthorized: {0}")]
    Unauthorized(AuthError),
    #[error("forbidden by {rule}")]
    Forbidden { denial: Denial, rule: String, tool: std::sync::Arc<crate::tools::Tool> },
    /// An HTTP method other than POST on the stateless MCP endpoint.
    #[error("HTTP method not allowed")]
    HttpMethodNotAllowed,
    /// An `Mcp-Session-Id` Warden did not issue to this caller, or one that has expired: the
    /// client starts a new session (HTTP 404, as Streamable HTTP has it).
    #[error("session not found")]
    SessionNotFound,
    /// A JSON-RPC response no request of Warden's to this caller awaits (never asked, already
    /// answered, asked of someone else, or asked on another replica).
    #[error("unexpected response")]
    UnexpectedResponse,
    /// A `tools/call` of a tool this gateway does not have (the name, bounded for audit).
    #[error("unknown tool")]
    UnknownTool(String),
    /// A retried call's `requestState` (2026-07-28) that is not Warden's for this caller and
    /// tool, was altered, or has expired.
    #[error("invalid request state")]
    InvalidRequestState,
    /// A federated tool whose definition changed since it was pinned: withheld until an
    /// operator approves the change (the name, bounded for audit).
    #[error("tool definition changed")]
    ToolWithheld(String),
    /// A browser's preflight from an origin, or for a method or header, Warden does not allow.
    #[error("cross-origin request not allowed")]
    CorsRefused(&'static str),
    /// Arguments that do not match the tool's input schema (the validator's words, which name
    /// the argument and the rule, never its value).
    #[error("invalid arguments")]
    InvalidArguments(String),
    /// The caller must connect an account of theirs first (a per-user credential): the link
    /// is for them alone, sent as a URL-mode elicitation (MCP 2025-11-25).
    #[error("connection required")]
    ConnectionRequired { url: String, message: String },
    /// A call an `approve` rule holds back waits for a person (docs/approvals.md): `url` is the
    /// request's status page.
    #[error("approval pending")]
    ApprovalPending { url: String, message: String, code: &'static str },
    /// A `resources/read` of a URI no federated server offers to this caller.
    #[error("resource not found")]
    ResourceNotFound(String),
    /// A `prompts/get` of a prompt no federated server offers to this caller.
    #[error("prompt not found")]
    PromptNotFound(String),
    /// A `completion/complete` whose prompt or resource template no federated server offers
    /// to this caller.
    #[error("completion reference not found")]
    CompletionRefNotFound(String),
    /// A federated server did not answer a resource read or prompt get (the failure's stable
    /// code and static text).
    #[error("source failed")]
    SourceFailed(&'static str, String),
    /// A call over a rate limit: the rule, whole seconds until a retry can succeed, what was
    /// called.
    #[error("rate limited")]
    RateLimited { rule: String, retry_after: u64, tool: Box<LimitedItem> },
    /// A call over a quota: the quota, when its period resets (RFC 3339), whole seconds until
    /// then, the tool.
    #[error("quota exceeded")]
    QuotaExceeded { quota: String, resets_at: String, retry_after: u64, tool: Box<LimitedItem> },
    /// A call the limits could not decide: `limits_unavailable` (Redis with `fail_closed`, or
    /// the quotas' database, did not answer) or `limit_key_error` (a rule's CEL key failed).
    #[error("limits could not decide")]
    LimitsUndecided { rule: String, reason: &'static str, tool: Box<LimitedItem> },
    /// A call an `approve` rule holds back, and the approvals' database did not answer: it is
    /// not run (`approvals_unavailable`).
    #[error("approvals unavailable")]
    ApprovalsUnavailable { rule: String, tool: Box<LimitedItem> },
    /// The audit trail cannot take more records (a sink's spool is full, `on_failure:
    /// refuse`): the request is not run unrecorded.
    #[error("audit unavailable")]
    AuditUnavailable,
    /// Over the per-client-IP limit before authentication (seconds until a retry).
    #[error("too many requests")]
    TooManyRequests(u64),
    /// A call reached the handler without the gate's decision: a bug, never served.
    #[error("no policy decision")]
    NoDecision,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body unreadable")]
    BodyUnreadable,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("unsupported MCP protocol revision")]
    UnsupportedProtocolVersion,
    #[error("parse error")]
    Parse,
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("invalid params: {0}")]
    InvalidParams(&'static str),
    #[error("method not found")]
    MethodNotFound,
    /// A method the request's revision does not have (2026-07-28: unknown, or removed as
    /// `initialize` and `logging/setLevel` were): HTTP 404 with -32601 (SEP-2575).
    #[error("method not found")]
    MethodNotFoundOnThisRevision,
    /// 2026-07-28 (SEP-2243): `Mcp-Method`, `Mcp-Name` or an `Mcp-Param-*` header missing or
    /// disagreeing with the body, or `MCP-Protocol-Version` disagreeing with the request's
    /// `_meta`. The words name headers and properties, never a value.
    #[error("header mismatch: {0}")]
    HeaderMismatch(std::borrow::Cow<'static, str>),
    /// 2026-07-28 (SEP-2575): a request on the per-request lifecycle without the `_meta` it
    /// must carry (its revision, the client's capabilities): the keys missing or malformed.
    #[error("request _meta is missing or has malformed required fields")]
    RequestMetaMissing(Vec<&'static str>),
    /// 2026-07-28: the revision a request's `_meta` names (as sent, bounded) is not one this
    /// server serves (-32022, with the revisions it does serve).
    #[error("unsupported protocol revision")]
    UnsupportedRevision { requested: String, supported: &'static [rmcp::model::ProtocolVersion] },
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("the client must accept application/json and text/event-stream")]
    NotAcceptable,
}

impl GatewayError {
    pub fn class(&self) -> Class {
        match self {
            Self::NoDecision | Self::AuditUnavailable | Self::Unauthorized(AuthError::KeyStoreUnavailable) => Class::Internal,
            // The server changed the tool; the gateway's pinning refuses it.
            Self::ToolWithheld(_) | Self::SourceFailed(..) => Class::Upstream,
            Self::LimitsUndecided { reason, .. } if *reason == "limits_unavailable" => Class::Internal,
            Self::ApprovalsUnavailable { .. } => Class::Internal,
            Self::ResourceNotFound(_)
            | Self::PromptNotFound(_)
            | Self::CompletionRefNotFound(_)
            | Self::RateLimited { .. }
            | Self::QuotaExceeded { .. }
            | Self::LimitsUndecided { .. }
            | Self::TooManyRequests(_) => Class::Downstream,
            Self::OriginRefused(_)
            | Self::CorsRefused(_)
            | Self::InvalidArguments(_)
            | Self::ConnectionRequired { .. }
            | Self::ApprovalPending { .. }
            | Self::Unauthorized(_)
            | Self::Forbidden { .. }
            | Self::HttpMethodNotAllowed
            | Self::SessionNotFound
            | Self::UnexpectedResponse
            | Self::UnknownTool(_)
            | Self::InvalidRequestState
            | Self::BodyTooLarge
            | Self::BodyUnreadable
            | Self::BodyTimeout
            | Self::UnsupportedProtocolVersion
            | Self::Parse
            | Self::InvalidRequest(_)
            | Self::InvalidParams(_)
            | Self::MethodNotFound
            | Self::MethodNotFoundOnThisRevision
            | Self::HeaderMismatch(_)
            | Self::RequestMetaMissing(_)
            | Self::UnsupportedRevision { .. }
            | Self::UnsupportedMediaType
            | Self::NotAcceptable => Class::Downstream,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::OriginRefused(_) | Self::CorsRefused(_) => StatusCode::FORBIDDEN,
            // Errors inside a served JSON-RPC exchange are JSON-RPC errors on HTTP 200.
            Self::InvalidArguments(_) | Self::ConnectionRequired { .. } | Self::ApprovalPending { .. } | Self::NoDecision => StatusCode::OK,
            Self::HttpMethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::UnexpectedResponse => StatusCode::BAD_REQUEST,
            Self::UnknownTool(_)
            | Self::InvalidRequestState
            | Self::ToolWithheld(_)
            | Self::ResourceNotFound(_)
            | Self::PromptNotFound(_)
            | Self::CompletionRefNotFound(_)
            | Self::SourceFailed(..)
            | Self::RateLimited { .. }
            | Self::QuotaExceeded { .. }
            | Self::LimitsUndecided { .. }
            | Self::ApprovalsUnavailable { .. } => StatusCode::OK,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(AuthError::MultipleCredentials | AuthError::TokenInQuery) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(AuthError::KeyStoreUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { denial: Denial::InsufficientScope { .. }, .. } => StatusCode::FORBIDDEN,
            // A policy refusal of a well-formed call is a JSON-RPC error, like any other.
            Self::Forbidden { denial: Denial::Forbidden { .. } | Denial::ApprovalRequired { .. }, .. } => StatusCode::OK,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyUnreadable | Self::Parse | Self::InvalidRequest(_) | Self::InvalidParams(_) | Self::UnsupportedProtocolVersion => {
                StatusCode::BAD_REQUEST
            }
            // A well-formed request for a method this server does not offer is answered like
            // any JSON-RPC response, so clients surface the error instead of an HTTP failure.
            Self::MethodNotFound => StatusCode::OK,
            Self::MethodNotFoundOnThisRevision => StatusCode::NOT_FOUND,
            Self::HeaderMismatch(_) | Self::RequestMetaMissing(_) | Self::UnsupportedRevision { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        }
    }

    /// The stable reason code, for audit.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::OriginRefused(code) | Self::CorsRefused(code) => code,
            Self::InvalidArguments(_) => "invalid_arguments",
            Self::ConnectionRequired { .. } => "connection_required",
            Self::ApprovalPending { code, .. } => code,
            Self::NoDecision => "no_decision",
            Self::HttpMethodNotAllowed => "method_not_allowed",
            Self::SessionNotFound => "session_not_found",
            Self::UnexpectedResponse => "unexpected_response",
            Self::UnknownTool(_) => "unknown_tool",
            Self::InvalidRequestState => "invalid_request_state",
            Self::ToolWithheld(_) => "tool_definition_changed",
            Self::ResourceNotFound(_) => "resource_not_found",
            Self::PromptNotFound(_) => "unknown_prompt",
            Self::CompletionRefNotFound(_) => "unknown_reference",
            Self::SourceFailed(code, _) => code,
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::LimitsUndecided { reason, .. } => reason,
            Self::ApprovalsUnavailable { .. } => "approvals_unavailable",
            Self::TooManyRequests(_) => "pre_auth_rate_limited",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Unauthorized(e) => e.code(),
            Self::Forbidden { denial: Denial::InsufficientScope { .. }, .. } => "insufficient_scope",
            Self::Forbidden { denial: Denial::Forbidden { .. }, .. } => "policy_denied",
            Self::Forbidden { denial: Denial::ApprovalRequired { .. }, .. } => "approval_required",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::BodyTimeout => "body_timeout",
            Self::UnsupportedProtocolVersion => "unsupported_protocol_version",
            Self::Parse => "parse_error",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidParams(_) => "invalid_params",
            Self::MethodNotFound | Self::MethodNotFoundOnThisRevision => "method_not_found",
            Self::HeaderMismatch(_) => "header_mismatch",
            Self::RequestMetaMissing(_) => "invalid_params",
            Self::UnsupportedRevision { .. } => "unsupported_protocol_version",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::NotAcceptable => "not_acceptable",
        }
    }

    /// The response. A 401 challenge names `meta.scopes().challenge` (what a fresh token should ask
    /// for); `jsonrpc_id` echoes the request's id where one was read.
    pub fn into_response(self, meta: &ResourceMetadata, jsonrpc_id: Option<Value>) -> Response {
        let status = self.status();
        let (challenge, body) = match &self {
            Self::OriginRefused(code) => (None, json!({"error": code, "error_description": "request origin or host not allowed"})),
            Self::CorsRefused(code) => (None, json!({"error": code, "error_description": "cross-origin request not allowed"})),
            Self::InvalidArguments(_) | Self::ConnectionRequired { .. } | Self::ApprovalPending { .. } | Self::NoDecision => {
                let error = self.clone().into_error_data();
                (None, json!({"jsonrpc": "2.0", "id": jsonrpc_id.clone().unwrap_or(Value::Null), "error": error}))
            }
            Self::HttpMethodNotAllowed => (
                None,
                rpc_error(None, rpc::INVALID_REQUEST, "this endpoint accepts POST only (stateless Streamable HTTP)", "method_not_allowed"),
            ),
            Self::UnknownTool(name) => (None, rpc_error(jsonrpc_id, rpc::INVALID_PARAMS, &format!("unknown tool: {name}"), "unknown_tool")),
            Self::InvalidRequestState => (None, rpc_error(jsonrpc_id, rpc::INVALID_PARAMS, INVALID_STATE, "invalid_request_state")),
            Self::ToolWithheld(name) => {
                (None, rpc_error(jsonrpc_id, rpc::INVALID_PARAMS, &format!("tool withheld: {name}: {WITHHELD}"), "tool_definition_changed"))
            }
            Self::ResourceNotFound(_)
            | Self::PromptNotFound(_)
            | Self::CompletionRefNotFound(_)
            | Self::SourceFailed(..)
            | Self::RateLimited { .. }
            | Self::QuotaExceeded { .. }
            | Self::LimitsUndecided { .. }
            | Self::ApprovalsUnavailable { .. } => {
                let error = self.clone().into_error_data();
                (None, json!({"jsonrpc": "2.0", "id": jsonrpc_id.clone().unwrap_or(Value::Null), "error": error}))
            }
            Self::TooManyRequests(secs) => (
                None,
                json!({"error": "rate_limited", "error_description": format!("too many requests from this client; retry after {secs} s"), "retryAfterSeconds": secs}),
            ),
            Self::AuditUnavailable => (
                None,
                json!({"error": "audit_unavailable", "error_description": "the audit trail cannot record requests right now; try again later"}),
            ),
            Self::Unauthorized(AuthError::Missing) => (
                Some(meta.unauthorized(None, &meta.scopes().challenge)),
                json!({"error": "unauthorized", "error_description": "a bearer token is required"}),
            ),
            Self::Unauthorized(AuthError::MultipleCredentials) => (
                Some(meta.unauthorized(Some("invalid_request"), &[])),
                json!({"error": "invalid_request", "error_description": "send exactly one Authorization header"}),
            ),
            Self::Unauthorized(AuthError::TokenInQuery) => (
                Some(meta.unauthorized(Some("invalid_request"), &[])),
                json!({"error": "invalid_request", "error_description": "access tokens are accepted in the Authorization header only"}),
            ),
            Self::Unauthorized(AuthError::KeyStoreUnavailable) => (
                None,
                json!({"error": "temporarily_unavailable", "error_description": "the API key could not be checked right now; try again later"}),
            ),
            Self::Unauthorized(_) => (
                Some(meta.unauthorized(Some("invalid_token"), &meta.scopes().challenge)),
                json!({"error": "invalid_token", "error_description": "the access token is invalid"}),
            ),
            // The challenge is in the header; the body is a JSON-RPC error an SDK can show its
            // model (the request's id, a stable code, what is missing).
            Self::Forbidden { denial: Denial::InsufficientScope { needed, missing, challenge }, .. } => (
                Some(meta.insufficient_scope(challenge)),
                json!({
                    "jsonrpc": "2.0",
                    "id": jsonrpc_id.clone().unwrap_or(Value::Null),
                    "error": {
                        "code": rpc::INSUFFICIENT_SCOPE,
                        "message": format!("insufficient scope: this call needs {}; sign in again granting it", missing.join(" ")),
                        "data": {"code": "insufficient_scope", "missing": missing, "required": needed, "scope": challenge.join(" ")},
                    },
                }),
            ),
            Self::Forbidden { denial: Denial::ApprovalRequired { approval, reason }, rule, .. } => (
                None,
                json!({
                    "jsonrpc": "2.0",
                    "id": jsonrpc_id.clone().unwrap_or(Value::Null),
                    "error": {
                        "code": rpc::POLICY_DENIED,
                        "message": format!("this call needs approval by {}: {reason}", approval.approvers()),
                        "data": {"code": "approval_required", "rule": rule, "reason": reason, "approvers": approval.approvers()},
                    },
                }),
            ),
            Self::Forbidden { denial: Denial::Forbidden { reason }, rule, .. } => (
                None,
                json!({
                    "jsonrpc": "2.0",
                    "id": jsonrpc_id.clone().unwrap_or(Value::Null),
                    "error": {"code": rpc::POLICY_DENIED, "message": format!("forbidden by policy: {reason}"), "data": {"code": "policy_denied", "rule": rule, "reason": reason}},
                }),
            ),
            Self::BodyTooLarge => (None, rpc_error(jsonrpc_id, rpc::INVALID_REQUEST, "request body too large", "body_too_large")),
            Self::BodyUnreadable => (None, rpc_error(jsonrpc_id, rpc::INVALID_REQUEST, "request body unreadable", "body_unreadable")),
            Self::BodyTimeout => (None, rpc_error(None, rpc::INVALID_REQUEST, "request body not received in time", "body_timeout")),
            Self::UnsupportedProtocolVersion => {
                let mut body =
                    rpc_error(jsonrpc_id, rpc::INVALID_REQUEST, "unsupported MCP-Protocol-Version", "unsupported_protocol_version");
                let supported: Vec<&str> = rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().map(|v| v.as_str()).collect();
                body["error"]["data"]["supported"] = json!(supported);
                (None, body)
            }
            Self::Parse => (None, rpc_error(None, rpc::PARSE_ERROR, "parse error: the body is not valid JSON", "parse_error")),
            Self::InvalidRequest(why) => (None, rpc_error(jsonrpc_id, rpc::INVALID_REQUEST, why, "invalid_request")),
            Self::SessionNotFound => {
                (None, rpc_error(None, rpc::INVALID_REQUEST, "session not found: start a new session with initialize", "session_not_found"))
            }
            Self::UnexpectedResponse => {
                (None, rpc_error(None, rpc::INVALID_REQUEST, "no request of this server awaits this response", "unexpected_response"))
            }
            Self::InvalidParams(why) => (None, rpc_error(jsonrpc_id, rpc::INVALID_PARAMS, why, "invalid_params")),
            Self::MethodNotFound | Self::MethodNotFoundOnThisRevision => {
                (None, rpc_error(jsonrpc_id, rpc::METHOD_NOT_FOUND, "method not found", "method_not_found"))
            }
            Self::HeaderMismatch(why) => (None, rpc_error(jsonrpc_id, rpc::HEADER_MISMATCH, why, "header_mismatch")),
            Self::RequestMetaMissing(keys) => {
                let message = format!("request _meta is missing or has malformed required fields: {}", keys.join(", "));
                (None, rpc_error(jsonrpc_id, rpc::INVALID_PARAMS, &message, "invalid_params"))
            }
            Self::UnsupportedRevision { requested, supported } => {
                let mut body = rpc_error(
                    jsonrpc_id,
                    rpc::UNSUPPORTED_PROTOCOL_VERSION,
                    "unsupported protocol version",
                    "unsupported_protocol_version",
                );
                let supported: Vec<&str> = supported.iter().map(|v| v.as_str()).collect();
                body["error"]["data"]["requested"] = json!(requested);
                body["error"]["data"]["supported"] = json!(supported);
                (None, body)
            }
            Self::UnsupportedMediaType => {
                (None, rpc_error(None, rpc::INVALID_REQUEST, "Content-Type must be application/json", "unsupported_media_type"))
            }
            Self::NotAcceptable => (
                None,
                rpc_error(None, rpc::INVALID_REQUEST, "Accept must include application/json and text/event-stream", "not_acceptable"),
            ),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(challenge) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        if matches!(self, Self::HttpMethodNotAllowed) {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if let Self::TooManyRequests(secs) = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        if matches!(self, Self::AuditUnavailable | Self::Unauthorized(AuthError::KeyStoreUnavailable)) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }

    /// The audit decision: `deny` for the caller's fault, `error` for a backend's or ours.
    pub fn decision(&self) -> &'static str {
        // Pinning refusing a changed tool is a decision of the gateway's, not a failure.
        if matches!(self, Self::ToolWithheld(_)) {
            return "deny";
        }
        decision_of(self.class())
    }

    /// The JSON-RPC error object, for a refusal inside a served exchange (the handler's). Only
    /// the variants a handler produces have a message of their own; the message never carries
    /// library text.
    pub fn into_error_data(self) -> rmcp::model::ErrorData {
        use rmcp::model::{ErrorCode, ErrorData};
        let code = self.reason();
        let data = Some(json!({"code": code}));
        match self {
            Self::InvalidArguments(why) => ErrorData::invalid_params(format!("invalid arguments: {why}"), data),
            Self::UnknownTool(name) => ErrorData::invalid_params(format!("unknown tool: {name}"), data),
            Self::InvalidRequestState => ErrorData::invalid_params(INVALID_STATE, data),
            Self::ToolWithheld(name) => ErrorData::invalid_params(format!("tool withheld: {name}: {WITHHELD}"), data),
            // MCP: -32002 for a resource that does not exist.
            Self::ResourceNotFound(uri) => {
                ErrorData::new(ErrorCode(-32002), format!("resource not found: {uri}"), Some(json!({"code": code, "uri": uri})))
            }
            Self::PromptNotFound(name) => ErrorData::invalid_params(format!("unknown prompt: {name}"), data),
            Self::CompletionRefNotFound(reference) => {
                ErrorData::invalid_params(format!("unknown prompt or resource template: {reference}"), data)
            }
            Self::SourceFailed(_, text) => ErrorData::internal_error(text, data),
            Self::RateLimited { rule, retry_after, tool } => ErrorData::new(
                ErrorCode(rpc::RATE_LIMITED as i32),
                format!("rate limited: {} may be called again in {retry_after} s", tool.name),
                Some(json!({"code": code, "retryAfterSeconds": retry_after, "rule": rule})),
            ),
            Self::QuotaExceeded { quota, resets_at, retry_after, tool } => ErrorData::new(
                ErrorCode(rpc::QUOTA_EXCEEDED as i32),
                format!("quota exceeded: {} may be called again when {quota} resets at {resets_at}", tool.name),
                Some(json!({"code": code, "quota": quota, "resetsAt": resets_at, "retryAfterSeconds": retry_after})),
            ),
            Self::LimitsUndecided { rule, tool, .. } => ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!("{} was not called: its limits ({rule}) could not be checked", tool.name),
                Some(json!({"code": code, "rule": rule})),
            ),
            Self::ApprovalsUnavailable { rule, tool } => ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!("{} was not called: the approval {rule} asks for could not be checked", tool.name),
                Some(json!({"code": code, "rule": rule})),
            ),
            Self::MethodNotFound | Self::MethodNotFoundOnThisRevision => {
                ErrorData::new(ErrorCode::METHOD_NOT_FOUND, "method not found", data)
            }
            Self::ConnectionRequired { url, message } | Self::ApprovalPending { url, message, .. } => {
                let data = json!({
                    "elicitations": [{
                        "mode": "url",
                        "elicitationId": uuid::Uuid::now_v7().to_string(),
                        "url": url,
                        "message": message,
                    }],
                    "code": code,
                });
                ErrorData::new(ErrorCode(rpc::URL_ELICITATION_REQUIRED as i32), message, Some(data))
            }
            Self::NoDecision => ErrorData::internal_error("internal error", Some(json!({"code": "internal_error"}))),
            Self::OriginRefused(_)
            | Self::CorsRefused(_)
            | Self::Unauthorized(_)
            | Self::Forbidden { .. }
            | Self::HttpMethodNotAllowed
            | Self::SessionNotFound
            | Self::UnexpectedResponse
            | Self::BodyTooLarge
            | Self::BodyUnreadable
            | Self::BodyTimeout
            | Self::UnsupportedProtocolVersion
            | Self::Parse
            | Self::InvalidRequest(_)
            | Self::InvalidParams(_)
            | Self::UnsupportedMediaType
            | Self::TooManyRequests(_)
            | Self::AuditUnavailable
            | Self::HeaderMismatch(_)
            | Self::RequestMetaMissing(_)
            | Self::UnsupportedRevision { .. }
            | Self::NotAcceptable => ErrorData::invalid_request("the request was refused", data),
        }
    }

    /// What the audit event records beside the reason: the tool, the rule that decided, and why
    /// in words (a rule's `reason`; never argument values).
    pub fn audit_details(&self) -> AuditDetails {
        match self {
            Self::Forbidden { denial, rule, tool } => {
                let explanation = match denial {
                    Denial::Forbidden { reason } => reason.clone(),
                    Denial::ApprovalRequired { approval, reason } => format!("needs approval by {}: {reason}", approval.approvers()),
                    Denial::InsufficientScope { missing, .. } => format!("missing scopes: {}", missing.join(" ")),
                };
                AuditDetails {
                    tool: Some(tool.name.clone()),
                    server: tool.server.clone(),
                    rule: Some(rule.clone()),
                    explanation: Some(explanation),
                }
            }
            Self::UnknownTool(name) | Self::ToolWithheld(name) | Self::PromptNotFound(name) | Self::CompletionRefNotFound(name) => {
                AuditDetails { tool: Some(name.clone()), ..AuditDetails::default() }
            }
            Self::ResourceNotFound(_)
            | Self::SourceFailed(..)
            | Self::TooManyRequests(_)
            | Self::AuditUnavailable
            | Self::InvalidRequestState => AuditDetails::default(),
            Self::RateLimited { rule, retry_after, tool } => AuditDetails {
                tool: Some(tool.name.clone()),
                server: tool.server.clone(),
                rule: Some(rule.clone()),
                explanation: Some(format!("retry after {retry_after} s")),
            },
            Self::QuotaExceeded { quota, resets_at, tool, .. } => AuditDetails {
                tool: Some(tool.name.clone()),
                server: tool.server.clone(),
                rule: Some(quota.clone()),
                explanation: Some(format!("resets at {resets_at}")),
            },
            Self::LimitsUndecided { rule, tool, .. } | Self::ApprovalsUnavailable { rule, tool } => {
                AuditDetails { tool: Some(tool.name.clone()), server: tool.server.clone(), rule: Some(rule.clone()), explanation: None }
            }
            Self::ConnectionRequired { .. }
            | Self::ApprovalPending { .. }
            | Self::OriginRefused(_)
            | Self::CorsRefused(_)
            | Self::InvalidArguments(_)
            | Self::NoDecision
            | Self::Unauthorized(_)
            | Self::HttpMethodNotAllowed
            | Self::SessionNotFound
            | Self::UnexpectedResponse
            | Self::BodyTooLarge
            | Self::BodyUnreadable
            | Self::BodyTimeout
            | Self::UnsupportedProtocolVersion
            | Self::Parse
            | Self::InvalidRequest(_)
            | Self::InvalidParams(_)
            | Self::MethodNotFound
            | Self::MethodNotFoundOnThisRevision
            | Self::HeaderMismatch(_)
            | Self::RequestMetaMissing(_)
            | Self::UnsupportedRevision { .. }
            | Self::UnsupportedMediaType
            | Self::NotAcceptable => AuditDetails::default(),
        }
    }
}

/// Arguments the input schema refuses, as the `isError` result the model sees (SEP-1303).
pub fn invalid_arguments_result(error: &GatewayError) -> rmcp::model::CallToolResult {
    let text = match error {
        GatewayError::InvalidArguments(why) => format!("invalid arguments: {why}"),
        other => other.to_string(),
    };
    rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(text)])
}

/// A federated server's input request for a client of a revision before 2026-07-28, which
/// Warden cannot relay it to: a tool error the model reads.
pub fn input_required_unsupported_result() -> rmcp::model::CallToolResult {
    let text = "the MCP server behind this tool needs input from the client, which this gateway relays to clients of MCP 2026-07-28 only";
    rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(text.to_owned())])
}

/// A held-back call's answer for a client that cannot be sent a link: a tool error the model
/// reads (who must approve, the request's id, how to retry).
pub fn approval_result(message: &str) -> rmcp::model::CallToolResult {
    rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(message.to_owned())])
}

/// What a refusal adds to its audit event.
#[derive(Debug, Default)]
pub struct AuditDetails {
    pub tool: Option<String>,
    /// The federated server of the tool.
    pub server: Option<String>,
    pub rule: Option<String>,
    pub explanation: Option<String>,
}

const INVALID_STATE: &str = "requestState is not one this gateway gave this caller for this tool, or it has expired: call again without it";

const WITHHELD: &str = "its definition changed since it was approved, and an operator must review the change";

/// A JSON-RPC error object with Warden's stable code in `data.code`.
pub fn rpc_error(id: Option<Value>, code: i64, message: &str, stable: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(Value::Null),
        "error": {"code": code, "message": message, "data": {"code": stable}},
    })
}

/// A tool call that ran and failed, as the model reads it: a tool result with `isError` and
/// static text (plus the start of a backend's error body, which is the backend's, not ours).
pub fn tool_failure_result(failure: &ToolFailure) -> rmcp::model::CallToolResult {
    let text = match failure {
        ToolFailure::Unencodable(why) => why.clone(),
        ToolFailure::Status { status, preview } => {
            let status = StatusCode::from_u16(*status).map_or_else(|_| status.to_string(), |s| s.to_string());
            if preview.trim().is_empty() {
                format!("upstream returned HTTP {status}")
            } else {
                format!("upstream returned HTTP {status}: {preview}")
            }
        }
        ToolFailure::Timeout(after) => format!("upstream did not answer within {}", humantime::format_duration(*after)),
        ToolFailure::Unreachable => "upstream unreachable".to_owned(),
        ToolFailure::Blocked => "upstream address not allowed by the gateway's SSRF guard".to_owned(),
        ToolFailure::TooLarge => "upstream response too large".to_owned(),
        ToolFailure::InvalidResponse(why) => format!("the MCP server behind this tool sent an answer that cannot be read: {why}"),
        ToolFailure::ConnectionRequired(connect) => connect.message.clone(),
        ToolFailure::Credential(e) => format!("the gateway could not obtain its credential for this backend: {e}"),
        ToolFailure::ServerUnavailable => "the MCP server behind this tool is unavailable; try again later".to_owned(),
        ToolFailure::Rpc { code, message, .. } => format!("the MCP server behind this tool answered error {code}: {message}"),
        ToolFailure::Cancelled => "the call was cancelled by the client".to_owned(),
        ToolFailure::AssertionUnavailable => {
            "the gateway could not sign the identity assertion for this backend; try again later".to_owned()
        }
        ToolFailure::ClientRequestForbidden(method) => {
            format!("the MCP server behind this tool asked the client for {method}, which the gateway does not let it ask")
        }
        ToolFailure::ClientRequestFailed(method) => {
            format!("the MCP server behind this tool asked the client for {method}, and the client did not answer it")
        }
        ToolFailure::UpstreamRateLimited { retry_after, .. } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if secs == 0 {
                "the upstream API is rate limiting these calls (HTTP 429); try again later".to_owned()
            } else {
                format!("the upstream API is rate limiting these calls (HTTP 429); retry after {secs} s")
            }
        }
    };
    rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(text)])
}

/// The text of a federated resource read's or prompt get's failure (as a tool failure's).
pub fn source_failure_text(failure: &ToolFailure) -> String {
    tool_failure_result(failure).content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).unwrap_or_default()
}

/// Whose fault a tool failure is. The audit decision of a call that ran is `error` whatever the
/// class, except a connection the caller must make first (`deny`).
pub fn tool_failure_class(failure: &ToolFailure) -> Class {
    match failure {
        ToolFailure::Unencodable(_) | ToolFailure::ConnectionRequired(_) | ToolFailure::Cancelled => Class::Downstream,
        ToolFailure::Status { .. }
        | ToolFailure::Timeout(_)
        | ToolFailure::Unreachable
        | ToolFailure::TooLarge
        | ToolFailure::InvalidResponse(_)
        | ToolFailure::ServerUnavailable
        | ToolFailure::Rpc { .. }
        | ToolFailure::UpstreamRateLimited { .. }
        | ToolFailure::Credential(CredentialError::Token(_) | CredentialError::NotConnected | CredentialError::Unhealthy) => {
            Class::Upstream
        }
        // The destination is configured by the operator; the vault is ours.
        ToolFailure::Blocked | ToolFailure::AssertionUnavailable | ToolFailure::Credential(CredentialError::Vault) => Class::Internal,
        // The server asked for what its configuration forbids.
        ToolFailure::ClientRequestForbidden(_) => Class::Upstream,
        // The client declined or went silent.
        ToolFailure::ClientRequestFailed(_) => Class::Downstream,
        ToolFailure::Credential(CredentialError::ConnectionRequired { .. }) => Class::Downstream,
        // The IdP refused the caller's token (expired, consent or MFA needed): theirs to fix;
        // it refused Warden's own client: the operator's.
        ToolFailure::Credential(CredentialError::Exchange(e)) => {
            if e.callers() {
                Class::Downstream
            } else {
                Class::Upstream
            }
        }
    }
}

/// The audit decision of a class: `deny` for the caller's fault, `error` for a backend's or ours.
fn decision_of(class: Class) -> &'static str {
    match class {
        Class::Downstream => "deny",
        Class::Upstream | Class::Internal => "error",
    }
}
