//! Refusals of a proxy route (`/proxy/{name}/…`): plain HTTP, so a status, a stable code in a
//! JSON body (`{"error", "message"}`), and the same `WWW-Authenticate` challenges as `/mcp`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::{Class, decision_of};
use crate::credentials::CredentialError;
use crate::identity::AuthError;
use crate::identity::metadata::ResourceMetadata;
use crate::policy::Denial;

#[derive(Debug, Clone)]
pub enum ProxyError {
    Unauthorized(AuthError),
    /// `audit.on_failure: refuse` and the audit trail cannot record.
    AuditUnavailable,
    /// The pre-authentication limit per client IP.
    TooManyRequests(u64),
    /// No route by that name.
    UnknownRoute,
    /// The method is not among the route's `methods` (the `Allow` value).
    MethodNotAllowed(String),
    /// A path that could escape the route (`..`, encoded separators, `//host`, ...): the code
    /// says which, and nothing was sent.
    PathRefused(&'static str),
    /// A path outside the route's `paths`.
    PathNotAllowed,
    Forbidden {
        denial: Denial,
        rule: String,
    },
    RateLimited {
        rule: String,
        retry_after: u64,
    },
    QuotaExceeded {
        quota: String,
        resets_at: String,
        retry_after: u64,
    },
    /// The limits could not be decided (their store is down, or a key failed); the reason code.
    LimitsUndecided {
        rule: String,
        reason: &'static str,
    },
    /// The caller must connect their account first, at `url`.
    ConnectionRequired {
        url: String,
    },
    /// The gateway could not obtain the route's credential.
    Credential(CredentialError),
    BodyTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
    /// The SSRF guard refused the destination.
    UpstreamBlocked,
    UpstreamTooLarge,
    /// The signed identity assertion could not be made; nothing was sent.
    AssertionUnavailable,
}

impl ProxyError {
    pub fn class(&self) -> Class {
        match self {
            Self::AuditUnavailable | Self::AssertionUnavailable | Self::Unauthorized(AuthError::KeyStoreUnavailable) => Class::Internal,
            Self::LimitsUndecided { reason, .. } if *reason == "limits_unavailable" => Class::Internal,
            Self::Unauthorized(_)
            | Self::TooManyRequests(_)
            | Self::UnknownRoute
            | Self::MethodNotAllowed(_)
            | Self::PathRefused(_)
            | Self::PathNotAllowed
            | Self::Forbidden { .. }
            | Self::RateLimited { .. }
            | Self::QuotaExceeded { .. }
            | Self::LimitsUndecided { .. }
            | Self::ConnectionRequired { .. }
            | Self::BodyTooLarge => Class::Downstream,
            Self::Credential(CredentialError::Exchange(e)) if e.callers() => Class::Downstream,
            Self::Credential(_) | Self::UpstreamTimeout | Self::UpstreamUnreachable | Self::UpstreamBlocked | Self::UpstreamTooLarge => {
                Class::Upstream
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(AuthError::MultipleCredentials | AuthError::TokenInQuery) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(AuthError::KeyStoreUnavailable)
            | Self::AuditUnavailable
            | Self::AssertionUnavailable
            | Self::LimitsUndecided { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::TooManyRequests(_) | Self::RateLimited { .. } | Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnknownRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PathRefused(_) => StatusCode::BAD_REQUEST,
            Self::PathNotAllowed | Self::Forbidden { .. } | Self::ConnectionRequired { .. } => StatusCode::FORBIDDEN,
            Self::Credential(CredentialError::Exchange(e)) if e.callers() => StatusCode::FORBIDDEN,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Credential(_) | Self::UpstreamUnreachable | Self::UpstreamBlocked | Self::UpstreamTooLarge => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable code: the response body's `error`, and the audit reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(e) => e.code(),
            Self::AuditUnavailable => "audit_unavailable",
            Self::TooManyRequests(_) => "rate_limited",
            Self::UnknownRoute => "route_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::PathRefused(code) => code,
            Self::PathNotAllowed => "path_not_allowed",
            Self::Forbidden { denial: Denial::InsufficientScope { .. }, .. } => "insufficient_scope",
            Self::Forbidden { denial: Denial::Forbidden { .. }, .. } => "policy_denied",
            Self::Forbidden { denial: Denial::ApprovalRequired { .. }, .. } => "approval_required",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::LimitsUndecided { reason, .. } => reason,
            Self::ConnectionRequired { .. } => "connection_required",
            Self::Credential(e) => e.code(),
            Self::BodyTooLarge => "body_too_large",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamBlocked => "upstream_blocked",
            Self::UpstreamTooLarge => "upstream_too_large",
            Self::AssertionUnavailable => "identity_assertion_unavailable",
        }
    }

    pub fn decision(&self) -> &'static str {
        decision_of(self.class())
    }

    /// The rule that decided, for audit.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Forbidden { rule, .. } | Self::RateLimited { rule, .. } | Self::LimitsUndecided { rule, .. } => Some(rule),
            Self::QuotaExceeded { quota, .. } => Some(quota),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Unauthorized(AuthError::Missing) => "a bearer token or API key is required".into(),
            Self::Unauthorized(AuthError::MultipleCredentials) => "send exactly one Authorization header".into(),
            Self::Unauthorized(AuthError::TokenInQuery) => "credentials are accepted in the Authorization header only".into(),
            Self::Unauthorized(AuthError::KeyStoreUnavailable) => "the API key could not be checked right now; try again later".into(),
            Self::Unauthorized(_) => "the access token or API key is invalid".into(),
            Self::AuditUnavailable => "the audit trail cannot record requests right now; try again later".into(),
            Self::TooManyRequests(secs) | Self::RateLimited { retry_after: secs, .. } => format!("too many requests; retry after {secs} s"),
            Self::UnknownRoute => "no such route".into(),
            Self::MethodNotAllowed(allowed) => format!("this route takes {allowed}"),
            Self::PathRefused(_) => "the path is not allowed: no dot segments, encoded separators or empty segments".into(),
            Self::PathNotAllowed => "this path is not among the route's paths".into(),
            Self::Forbidden { denial: Denial::InsufficientScope { needed, .. }, .. } => {
                format!("the access token lacks scopes this route needs: {}", needed.join(" "))
            }
            Self::Forbidden { denial: Denial::Forbidden { reason }, .. } => format!("forbidden by policy: {reason}"),
            // A proxied request cannot wait for a person: approvals are for MCP tool calls.
            Self::Forbidden { denial: Denial::ApprovalRequired { approval, reason }, .. } => {
                format!("forbidden: {reason}; approval by {} is given to MCP tool calls only", approval.approvers())
            }
            Self::QuotaExceeded { resets_at, .. } => format!("quota exhausted until {resets_at}"),
            Self::LimitsUndecided { .. } => "the request's limits could not be checked; try again later".into(),
            Self::ConnectionRequired { .. } => "connect your account first, at connect_url".into(),
            Self::Credential(e) => e.to_string(),
            Self::BodyTooLarge => "request body too large".into(),
            Self::UpstreamTimeout => "the upstream did not answer in time".into(),
            Self::UpstreamUnreachable => "the upstream could not be reached".into(),
            Self::UpstreamBlocked => "the upstream's address is not allowed".into(),
            Self::UpstreamTooLarge => "the upstream's response is too large".into(),
            Self::AssertionUnavailable => "the gateway could not sign the identity assertion for this upstream; try again later".into(),
        }
    }

    pub fn render(&self, meta: &ResourceMetadata) -> Response {
        let mut body = json!({"error": self.code(), "message": self.message()});
        match self {
            Self::RateLimited { retry_after, .. } | Self::QuotaExceeded { retry_after, .. } | Self::TooManyRequests(retry_after) => {
                body["retryAfterSeconds"] = json!(retry_after);
            }
            Self::ConnectionRequired { url } => body["connect_url"] = json!(url),
            _ => {}
        }
        let mut response = (self.status(), axum::Json(body)).into_response();
        let challenge = match self {
            Self::Unauthorized(AuthError::Missing) => Some(meta.unauthorized(None, &meta.scopes().challenge)),
            Self::Unauthorized(AuthError::MultipleCredentials | AuthError::TokenInQuery) => {
                Some(meta.unauthorized(Some("invalid_request"), &[]))
            }
            Self::Unauthorized(AuthError::KeyStoreUnavailable) => None,
            Self::Unauthorized(_) => Some(meta.unauthorized(Some("invalid_token"), &meta.scopes().challenge)),
            Self::Forbidden { denial: Denial::InsufficientScope { challenge, .. }, .. } => Some(meta.insufficient_scope(challenge)),
            _ => None,
        };
        if let Some(challenge) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        let retry = match self {
            Self::RateLimited { retry_after, .. } | Self::QuotaExceeded { retry_after, .. } | Self::TooManyRequests(retry_after) => {
                Some(*retry_after)
            }
            Self::AuditUnavailable | Self::Unauthorized(AuthError::KeyStoreUnavailable) | Self::LimitsUndecided { .. } => Some(5),
            _ => None,
        };
        if let Some(secs) = retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Self::MethodNotAllowed(allowed) = self
            && let Ok(v) = HeaderValue::from_str(allowed)
        {
            response.headers_mut().insert(header::ALLOW, v);
        }
        response
    }
}
