//! HTTP endpoint tools: arguments mapped onto path, query, headers and a JSON body; the
//! response mapped onto an MCP tool result. An upstream failure is a tool result with
//! `isError: true`, reached within the tool's timeout.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolResult, ContentBlock as Content};
use serde_json::{Map, Value};

use super::config::{HttpToolConfig, RestArgs};
use super::template::UrlTemplate;
use crate::credentials::{Credential, CredentialError, SendError};
use crate::identity::Principal;
use crate::upstream::config::RESERVED_UPSTREAM_HEADERS;
use crate::upstream::{CallContext, IdentityHeaders, Upstream, UpstreamError};

/// How much of an upstream error body is shown to the caller.
const ERROR_BODY_PREVIEW: usize = 1024;

pub struct FieldError {
    pub path: String,
    pub message: String,
}

fn field_error(path: &str, message: impl Into<String>) -> FieldError {
    FieldError { path: path.to_owned(), message: message.into() }
}

/// A compiled HTTP binding.
#[derive(Debug)]
pub struct HttpTool {
    method: reqwest::Method,
    url: UrlTemplate,
    query: Vec<(String, String)>,
    headers: Vec<(HeaderName, String)>,
    rest: RestArgs,
    /// The argument that is the whole JSON body.
    body: Option<String>,
    pub timeout: Duration,
    /// The upstream credential put on every call.
    credential: Option<Arc<Credential>>,
    /// `scheme://host[:port]`, for parking after a `429`.
    origin: String,
    /// The signed identity assertion's audience, when not the origin (`tools[].audience`).
    audience: Option<Arc<str>>,
}

/// What a call produced: the backend's answer as an MCP result, or why there is none.
pub type ToolOutcome = Result<ToolResult, ToolFailure>;

/// A backend's 2xx answer, mapped.
#[derive(Debug)]
pub struct ToolResult {
    pub result: ResultBody,
    pub upstream_status: u16,
}

/// A result built by Warden (an HTTP tool's mapping, a refusal), or one passed through as the
/// MCP server sent it.
#[derive(Debug)]
pub enum ResultBody {
    Typed(CallToolResult),
    Raw(super::raw::RawResult),
    /// A federated server needs input first (2026-07-28): what it asks of the client, and its
    /// own state for the retry.
    InputRequired(rmcp::model::InputRequiredResult),
}

/// Why a call produced no answer of the backend's. Each has a stable code; `error` renders
/// it (a tool result with `isError`, so the model sees it) and gives its class.
#[derive(Debug)]
pub enum ToolFailure {
    /// The arguments cannot be sent as policy saw them (a nested list in a query, ...).
    Unencodable(String),
    /// The backend answered 4xx or 5xx; the start of its body.
    Status {
        status: u16,
        preview: String,
    },
    /// No answer within the tool's timeout.
    Timeout(Duration),
    Unreachable,
    /// The destination is refused by the SSRF guard.
    Blocked,
    TooLarge,
    /// The backend's answer could not be read (not JSON-RPC, not UTF-8, nested too deeply, or
    /// an answer to no request): the words say which.
    InvalidResponse(&'static str),
    /// A per-user connection the caller must make first: the MCP handler turns this into a
    /// URL-mode elicitation when the client supports it.
    ConnectionRequired(ConnectRequired),
    /// The gateway could not obtain its own credential for the backend.
    Credential(CredentialError),
    /// The federated MCP server is down or not yet connected: refused at once, never waited on.
    ServerUnavailable,
    /// The federated MCP server answered the call with a JSON-RPC error (its code, message and
    /// data, the data kept when it is small).
    Rpc {
        code: i32,
        message: String,
        data: Option<Box<serde_json::Value>>,
    },
    /// The client cancelled the call (`notifications/cancelled`) before it completed.
    Cancelled,
    /// The upstream answered `429` (`status`), now or earlier: parked until it said it would
    /// take calls again, and not contacted before then.
    UpstreamRateLimited {
        retry_after: Duration,
        status: Option<u16>,
    },
    /// The signed identity assertion could not be made; nothing was sent.
    AssertionUnavailable,
    /// The federated server asked the calling client for something its configuration does not
    /// let it ask (`servers[].client_requests`): the method.
    ClientRequestForbidden(&'static str),
    /// The calling client refused, could not be sent, or did not answer in time what a
    /// federated server asked of it (the method); the call cannot go on.
    ClientRequestFailed(&'static str),
}

impl ToolFailure {
    /// The stable code, for audit and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unencodable(_) => "invalid_arguments",
            Self::Status { .. } => "upstream_status",
            Self::Timeout(_) => "upstream_timeout",
            Self::Unreachable => "upstream_unreachable",
            Self::Blocked => "upstream_blocked",
            Self::TooLarge => "upstream_too_large",
            Self::InvalidResponse(_) => "upstream_invalid_response",
            Self::ConnectionRequired(_) => "connection_required",
            Self::Credential(e) => e.code(),
            Self::ServerUnavailable => "upstream_unavailable",
            Self::Rpc { .. } => "upstream_error",
            Self::Cancelled => "client_cancelled",
            Self::UpstreamRateLimited { .. } => "upstream_rate_limited",
            Self::AssertionUnavailable => "identity_assertion_unavailable",
            Self::ClientRequestForbidden(_) => "client_request_forbidden",
            Self::ClientRequestFailed(_) => "client_request_failed",
        }
    }

    /// Whether the call's audit decision is `deny`, not `error`: the caller must act first (make
    /// a connection; get the IdP to accept their token for a token exchange).
    pub fn denies(&self) -> bool {
        match self {
            Self::ConnectionRequired(_) => true,
            Self::Credential(CredentialError::Exchange(e)) => e.callers(),
            _ => false,
        }
    }

    /// What the audit event says of the failure beyond its code: the IdP's error of a refused
    /// token exchange.
    pub fn audit_explanation(&self) -> Option<String> {
        match self {
            Self::Credential(CredentialError::Exchange(e)) => e.audit_explanation(),
            Self::ClientRequestForbidden(method) | Self::ClientRequestFailed(method) => {
                Some(format!("the server asked the client for {method}"))
            }
            _ => None,
        }
    }

    /// The backend's HTTP status, when it answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::UpstreamRateLimited { status: Some(status), .. } => Some(*status),
            Self::UpstreamRateLimited { status: None, .. }
            | Self::Unencodable(_)
            | Self::Timeout(_)
            | Self::Unreachable
            | Self::Blocked
            | Self::TooLarge
            | Self::InvalidResponse(_)
            | Self::ConnectionRequired(_)
            | Self::Credential(_)
            | Self::ServerUnavailable
            | Self::Rpc { .. }
            | Self::Cancelled
            | Self::AssertionUnavailable
            | Self::ClientRequestForbidden(_)
            | Self::ClientRequestFailed(_) => None,
        }
    }
}

/// A link the caller must open before the call can succeed.
#[derive(Debug, Clone)]
pub struct ConnectRequired {
    pub url: String,
    pub message: String,
}

impl HttpTool {
    pub fn compile(
        c: &HttpToolConfig,
        identity: &IdentityHeaders,
        default_timeout: Duration,
        credential: Option<Arc<Credential>>,
    ) -> Result<Self, FieldError> {
        let method = reqwest::Method::from_bytes(c.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| field_error("method", "not an HTTP method"))?;
        if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") {
            return Err(field_error("method", "must be GET, POST, PUT, PATCH, DELETE or HEAD"));
        }
        let url = UrlTemplate::parse(&c.url).map_err(|m| field_error("url", m))?;
        let mut headers = Vec::new();
        for (name, arg) in &c.headers {
            let at = format!("headers.{name}");
            let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| field_error(&at, "not a valid header name"))?;
            if RESERVED_UPSTREAM_HEADERS.contains(&parsed.as_str()) || identity.contains(&parsed) {
                return Err(field_error(&at, "reserved header: credentials, identity and framing headers are set by Warden only"));
            }
            if credential.as_ref().and_then(|c| c.header()) == Some(&parsed) {
                return Err(field_error(&at, "this header carries the tool's credential"));
            }
            if headers.iter().any(|(h, _): &(HeaderName, String)| *h == parsed) {
                return Err(field_error(&at, "the same header is mapped twice (header names ignore case)"));
            }
            headers.push((parsed, arg.clone()));
        }
        let query: Vec<(String, String)> = c.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if query.iter().any(|(k, _)| k.is_empty()) {
            return Err(field_error("query", "parameter names must not be empty"));
        }
        for (i, (k, _)) in query.iter().enumerate() {
            if query[..i].iter().any(|(o, _)| o.eq_ignore_ascii_case(k)) {
                return Err(field_error(&format!("query.{k}"), "the same parameter is mapped twice (names are compared ignoring case)"));
            }
        }
        if let Some(param) = credential.as_ref().and_then(|c| c.query_param())
            && query.iter().any(|(k, _)| k.eq_ignore_ascii_case(param))
        {
            return Err(field_error(&format!("query.{param}"), "this parameter carries the tool's credential"));
        }
        let rest = c.rest.unwrap_or(match (&c.body, method.as_str()) {
            (Some(_), _) => RestArgs::None,
            (None, "GET" | "HEAD" | "DELETE") => RestArgs::Query,
            (None, _) => RestArgs::Json,
        });
        if rest == RestArgs::Json && matches!(method.as_str(), "GET" | "HEAD") {
            return Err(field_error("rest", "GET and HEAD requests carry no body; use query or none"));
        }
        if c.body.is_some() && (rest == RestArgs::Json || matches!(method.as_str(), "GET" | "HEAD")) {
            return Err(field_error("body", "one body: not with rest: json, and not on GET or HEAD"));
        }
        let timeout = c.timeout.unwrap_or(default_timeout);
        if timeout.is_zero() {
            return Err(field_error("timeout", "must be greater than 0"));
        }
        let authority_end = c.url.find("://").map_or(0, |i| i + 3);
        let origin = c.url[..c.url[authority_end..].find(['/', '?', '#']).map_or(c.url.len(), |i| i + authority_end)].to_ascii_lowercase();
        Ok(Self { method, url, query, headers, rest, body: c.body.clone(), timeout, credential, origin, audience: None })
    }

    pub fn credential_name(&self) -> Option<&str> {
        self.credential.as_deref().map(|c| c.name.as_str())
    }

    /// Whether calls carry the caller's identity delegated (a token-exchange credential).
    pub fn delegates(&self) -> bool {
        self.credential.as_deref().is_some_and(Credential::delegates)
    }

    /// Arguments named by the path, `query` and `headers`.
    pub fn argument_names(&self) -> impl Iterator<Item = &str> {
        self.url
            .params()
            .chain(self.query.iter().map(|(_, a)| a.as_str()))
            .chain(self.headers.iter().map(|(_, a)| a.as_str()))
            .chain(self.body.as_deref())
    }

    /// Signs the identity assertion for `audience` instead of the origin.
    pub fn with_audience(mut self, audience: Option<Arc<str>>) -> Self {
        self.audience = audience;
        self
    }

    /// `scheme://host[:port]` of the backend.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn method(&self) -> &reqwest::Method {
        &self.method
    }

    /// Calls the backend. Arguments have been validated against the schema already.
    pub async fn call(&self, upstream: &Upstream, principal: &Principal, ctx: &CallContext, args: &Map<String, Value>) -> ToolOutcome {
        let parked = self.parking_key(principal);
        if let Some(retry_after) = upstream.parking.remaining(&parked) {
            return Err(ToolFailure::UpstreamRateLimited { retry_after, status: None });
        }
        let request = match self.build(upstream, args) {
            Ok(r) => r,
            Err(Built::Invalid(m)) => return Err(ToolFailure::Unencodable(m)),
            Err(Built::Upstream(e)) => return Err(upstream_failure(SendError::Upstream(e), self.timeout)),
        };
        let sent = match &self.credential {
            Some(credential) => credential.send(upstream, request, principal, ctx, self.timeout, self.audience.as_deref()).await,
            None => upstream.send(request, principal, ctx, self.timeout, self.audience.as_deref()).await.map_err(SendError::Upstream),
        };
        match sent {
            Ok((status, headers, _)) if status == http::StatusCode::TOO_MANY_REQUESTS => {
                let wait = crate::upstream::parking::retry_after(&headers, std::time::SystemTime::now());
                if let Some(wait) = wait {
                    upstream.parking.park(parked, wait);
                }
                let retry_after = wait.unwrap_or(Duration::ZERO).min(crate::upstream::parking::MAX_PARK);
                Err(ToolFailure::UpstreamRateLimited { retry_after, status: Some(429) })
            }
            Ok((status, headers, body)) => map_response(status, &headers, &body),
            Err(e) => Err(upstream_failure(e, self.timeout)),
        }
    }

    /// Whose calls a `429` parks: this origin, as this credential's holder (everyone's for a
    /// shared credential or none, the caller's own for a per-user connection).
    fn parking_key(&self, principal: &Principal) -> String {
        let Some(credential) = &self.credential else { return self.origin.clone() };
        let per_user = credential.connection().is_some_and(|c| c.settings.mode == crate::credentials::oauth::ConnectionMode::PerUser);
        if per_user {
            format!("{}\u{1f}{}\u{1f}{}\u{1f}{}", self.origin, credential.name, principal.issuer, principal.subject.as_str())
        } else {
            format!("{}\u{1f}{}", self.origin, credential.name)
        }
    }

    fn build(&self, upstream: &Upstream, args: &Map<String, Value>) -> Result<reqwest::RequestBuilder, Built> {
        let wire = self.encode(args).map_err(Built::Invalid)?;
        let mut request = upstream.request(self.method.clone(), wire.url).map_err(Built::Upstream)?;
        for (name, value) in wire.headers {
            request = request.header(name, value);
        }
        if let Some(body) = wire.body {
            request = request.json(&body);
        }
        Ok(request)
    }

    /// What a call with these arguments puts on the wire, before identity and the credential
    /// are added. Refuses, with a message the caller can act on, any arguments whose encoding
    /// would be ambiguous: an unmapped argument that would add a second query parameter (or a
    /// parameter or header a mapping or the credential sets), or a value the mapping would
    /// flatten into something a policy never saw (a nested list, a `null` or an object inside a
    /// list sent as query parameters).
    pub fn encode(&self, args: &Map<String, Value>) -> Result<Wire, String> {
        let mut url = self.url.expand(args)?;
        let mut used: HashSet<&str> = self.url.params().collect();
        let mut query = Vec::new();
        for (param, arg) in &self.query {
            used.insert(arg);
            if let Some(v) = args.get(arg) {
                push_query(&mut query, param, arg, v)?;
            }
        }
        for (_, arg) in &self.headers {
            used.insert(arg);
        }
        if let Some(arg) = &self.body {
            used.insert(arg);
        }
        let mut body = Map::new();
        for (k, v) in args {
            if used.contains(k.as_str()) || self.rest == RestArgs::None {
                continue;
            }
            if let Some(taken) = self.mapped_name(k) {
                return Err(format!(
                    "argument {k:?} is not mapped by this tool and would duplicate the {taken} the gateway sets; leave it out"
                ));
            }
            match self.rest {
                RestArgs::Query => push_query(&mut query, k, k, v)?,
                RestArgs::Json => {
                    body.insert(k.clone(), v.clone());
                }
                RestArgs::None => {}
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, arg) in &self.headers {
            let Some(v) = args.get(arg) else { continue };
            let text = scalar_text(v).ok_or_else(|| format!("argument {arg:?} must be a string, number or boolean to go in a header"))?;
            let value = HeaderValue::from_str(&text).map_err(|_| format!("argument {arg:?} is not a valid header value"))?;
            headers.push((name.clone(), value));
        }
        let body = match &self.body {
            Some(arg) => args.get(arg).cloned(),
            None => (self.rest == RestArgs::Json).then_some(Value::Object(body)),
        };
        Ok(Wire { url, headers, body })
    }

    /// The query parameter or header of this name (ASCII case ignored, as many frameworks do)
    /// that a mapping or the credential sets, described for an error message.
    fn mapped_name(&self, name: &str) -> Option<String> {
        let same = |other: &str| other.eq_ignore_ascii_case(name);
        if let Some((param, _)) = self.query.iter().find(|(p, _)| same(p)) {
            return Some(format!("query parameter {param:?}"));
        }
        if let Some(param) = self.credential.as_ref().and_then(|c| c.query_param()).filter(|p| same(p)) {
            return Some(format!("query parameter {param:?}"));
        }
        if let Some((header, _)) = self.headers.iter().find(|(h, _)| same(h.as_str())) {
            return Some(format!("header {:?}", header.as_str()));
        }
        None
    }
}

/// A tool call as it will be sent: URL with query, argument headers, JSON body.
#[derive(Debug)]
pub struct Wire {
    pub url: url::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Value>,
}

enum Built {
    Invalid(String),
    Upstream(UpstreamError),
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Scalars as text, a list of scalars as repeated parameters, an object as JSON text; `null` is
/// omitted. Anything else inside a list (a list, an object, `null`) is refused: flattened, it
/// would reach the backend as values the caller never sent as such.
fn push_query(out: &mut Vec<(String, String)>, name: &str, arg: &str, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                let text = scalar_text(item).ok_or_else(|| {
                    format!("argument {arg:?}: a list sent as query parameters may hold only strings, numbers and booleans")
                })?;
                out.push((name.to_owned(), text));
            }
        }
        Value::Object(_) => out.push((name.to_owned(), v.to_string())),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => out.extend(scalar_text(v).map(|t| (name.to_owned(), t))),
    }
    Ok(())
}

/// 2xx JSON → `structuredContent` (a non-object is wrapped as `{"result": …}`, since MCP
/// requires an object) plus the JSON as text; other 2xx → text; 4xx/5xx → `isError` with the
/// status and the start of the body.
fn map_response(status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> ToolOutcome {
    let text = String::from_utf8_lossy(body);
    if !status.is_success() {
        let preview: String = text.chars().take(ERROR_BODY_PREVIEW).collect();
        return Err(ToolFailure::Status { status: status.as_u16(), preview });
    }
    let is_json = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.contains("json"));
    let mut result = CallToolResult::success(vec![Content::text(text.to_string())]);
    if is_json && let Ok(value) = serde_json::from_slice::<Value>(body) {
        result.structured_content = Some(match value {
            Value::Object(_) => value,
            other => serde_json::json!({ "result": other }),
        });
    }
    Ok(ToolResult { result: ResultBody::Typed(result), upstream_status: status.as_u16() })
}

fn upstream_failure(e: SendError, timeout: Duration) -> ToolFailure {
    match e {
        SendError::Upstream(UpstreamError::Timeout) => ToolFailure::Timeout(timeout),
        SendError::Upstream(UpstreamError::Unreachable) => ToolFailure::Unreachable,
        SendError::Upstream(UpstreamError::Blocked) => ToolFailure::Blocked,
        SendError::Upstream(UpstreamError::TooLarge) => ToolFailure::TooLarge,
        SendError::Upstream(UpstreamError::Assertion) => ToolFailure::AssertionUnavailable,
        SendError::Credential(CredentialError::ConnectionRequired { url, message }) => {
            ToolFailure::ConnectionRequired(ConnectRequired { url, message })
        }
        SendError::Credential(e) => ToolFailure::Credential(e),
    }
}
