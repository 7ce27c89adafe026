//! The refusals of the two surfaces outside `/mcp`: the admin API (JSON) and the browser
//! connect flow (static HTML pages), with the one HTML renderer.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::{Class, decision_of};

/// A refusal by the admin API, rendered as `{"error": code, "message": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminError {
    /// No `admin.token` is configured: the API does not exist.
    Disabled,
    /// The admin token is missing or wrong.
    Unauthorized,
    /// A vault operation on a gateway without a vault.
    NoVault,
    /// `DELETE` of a connection the vault does not hold.
    NoSuchConnection,
    /// No `authorization_code` credential by that name.
    UnknownCredential,
    /// A connect link for a per-user credential (each user makes their own).
    NotShared,
    /// The vault's storage failed (the detail is logged, never sent).
    VaultUnavailable,
    /// An approval of a tool definition that is not the one pending (none is, or it changed
    /// again since the operator reviewed it).
    NoSuchPendingDefinition,
    /// A body that is not the JSON the call takes.
    InvalidBody,
    /// API keys are not enabled (`api_keys.enabled`).
    ApiKeysDisabled,
    /// No API key by that id.
    NoSuchApiKey,
    /// A key request that breaks a rule (the rule is in the response's `detail`).
    InvalidApiKey,
    /// A key asking for a scope beyond `api_keys.max_scopes`.
    ScopeNotAllowed,
    /// A console change without the session's CSRF token, or from another origin.
    CsrfFailed,
    /// The console's identity provider could not be reached or refused the code.
    ProviderUnavailable,
    /// Signed in at the identity provider without the console's admin role.
    NotAnAdministrator,
    /// Too many wrong admin tokens from this client IP lately (`admin::attempts`).
    TooManyAttempts,
}

impl AdminError {
    pub fn class(self) -> Class {
        match self {
            Self::Disabled
            | Self::Unauthorized
            | Self::NoVault
            | Self::NoSuchConnection
            | Self::UnknownCredential
            | Self::NotShared
            | Self::NoSuchPendingDefinition
            | Self::InvalidBody
            | Self::ApiKeysDisabled
            | Self::NoSuchApiKey
            | Self::InvalidApiKey
            | Self::ScopeNotAllowed
            | Self::CsrfFailed
            | Self::NotAnAdministrator
            | Self::TooManyAttempts => Class::Downstream,
            Self::ProviderUnavailable => Class::Upstream,
            Self::VaultUnavailable => Class::Internal,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Disabled
            | Self::NoVault
            | Self::NoSuchConnection
            | Self::UnknownCredential
            | Self::ApiKeysDisabled
            | Self::NoSuchApiKey => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotShared | Self::InvalidBody | Self::InvalidApiKey | Self::ScopeNotAllowed => StatusCode::BAD_REQUEST,
            Self::NoSuchPendingDefinition => StatusCode::CONFLICT,
            Self::CsrfFailed | Self::NotAnAdministrator => StatusCode::FORBIDDEN,
            Self::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Self::ProviderUnavailable => StatusCode::BAD_GATEWAY,
            Self::VaultUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable reason, for audit.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Disabled => "admin_disabled",
            Self::Unauthorized => "admin_unauthorized",
            Self::NoVault => "no_vault",
            Self::NoSuchConnection => "connection_not_found",
            Self::UnknownCredential => "unknown_credential",
            Self::NotShared => "not_shared",
            Self::VaultUnavailable => "vault_unavailable",
            Self::NoSuchPendingDefinition => "pin_not_pending",
            Self::InvalidBody | Self::InvalidApiKey => "invalid_request",
            Self::ApiKeysDisabled => "api_keys_disabled",
            Self::NoSuchApiKey => "api_key_not_found",
            Self::ScopeNotAllowed => "scope_not_allowed",
            Self::CsrfFailed => "csrf_failed",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::NotAnAdministrator => "not_an_administrator",
            Self::TooManyAttempts => "too_many_attempts",
        }
    }

    pub fn decision(self) -> &'static str {
        decision_of(self.class())
    }

    /// The code in the response body (the API's documented codes; `not_found` for both "no API"
    /// and "no such connection", so a caller without the token learns nothing more).
    fn wire_code(self) -> &'static str {
        match self {
            Self::Disabled | Self::NoSuchConnection => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::NoVault
            | Self::UnknownCredential
            | Self::NotShared
            | Self::VaultUnavailable
            | Self::NoSuchPendingDefinition
            | Self::InvalidBody
            | Self::ApiKeysDisabled
            | Self::NoSuchApiKey
            | Self::InvalidApiKey
            | Self::ScopeNotAllowed
            | Self::CsrfFailed
            | Self::ProviderUnavailable
            | Self::NotAnAdministrator
            | Self::TooManyAttempts => self.reason(),
        }
    }

    /// The short static message (for pages that render a refusal themselves).
    pub fn message(self) -> &'static str {
        match self {
            Self::Disabled => "the admin API is not enabled",
            Self::Unauthorized => "a valid admin token is required",
            Self::NoVault => "no vault is configured",
            Self::NoSuchConnection => "no such connection",
            Self::UnknownCredential => "no authorization_code credential by that name",
            Self::NotShared => "per-user connections are made by each user, through the link their tool call returns",
            Self::VaultUnavailable => "the credential store is unavailable",
            Self::NoSuchPendingDefinition => "no changed definition with that hash awaits approval for this tool (review it again)",
            Self::InvalidBody => "the body must be JSON of the documented shape",
            Self::ApiKeysDisabled => "API keys are not enabled (api_keys.enabled)",
            Self::NoSuchApiKey => "no such API key",
            Self::InvalidApiKey => "the key request is invalid",
            Self::ScopeNotAllowed => "a scope is beyond what api_keys.max_scopes allows",
            Self::CsrfFailed => "the form is stale or came from elsewhere; reload the page and try again",
            Self::ProviderUnavailable => "the identity provider could not complete the sign-in",
            Self::NotAnAdministrator => "this account does not hold the console's admin role",
            Self::TooManyAttempts => "too many wrong admin tokens from this address; wait and try again",
        }
    }

    pub fn into_response(self) -> Response {
        self.into_response_with(None)
    }

    /// As [`AdminError::into_response`], with a `detail` naming what to fix (never a secret).
    pub fn into_response_with(self, detail: Option<&str>) -> Response {
        let mut body = json!({"error": self.wire_code(), "message": self.message()});
        if let Some(detail) = detail {
            body["detail"] = json!(detail);
        }
        let mut response = (self.status(), axum::Json(body)).into_response();
        if self == Self::Unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"warden-admin\""));
        }
        response
    }
}

/// Which page of the connect flow refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectStep {
    /// `GET /oauth/connect/{link}`.
    Start,
    /// `GET /oauth/callback`.
    Callback,
}

/// A refusal by the browser connect flow, rendered as a static HTML page (or a bare 404 where
/// there is no vault, so the flow does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    NoVault,
    /// The vault's storage or the system's randomness failed (logged, never shown).
    StoreUnavailable,
    /// The connect link is unknown, expired or used.
    LinkInvalid,
    /// The link's or the flow's credential is no longer configured.
    UnknownCredential(ConnectStep),
    /// The provider's endpoints could not be discovered (the token error's stable code).
    ProviderUnavailable(&'static str),
    /// The callback's `state` is missing, unknown or already used.
    StateInvalid,
    /// The flow is older than its lifetime.
    StateExpired,
    /// The callback came to a browser other than the one that started the flow.
    BrowserMismatch,
    /// RFC 9207: the `iss` of the answer is not the provider's.
    IssuerMismatch,
    /// The provider answered with an OAuth error (its code, sanitized).
    ProviderDenied(String),
    /// The provider sent neither a code nor an error.
    CodeMissing,
    /// The code exchange failed (the token error's stable code).
    ExchangeFailed(&'static str),
}

impl ConnectError {
    pub fn class(&self) -> Class {
        match self {
            Self::NoVault
            | Self::LinkInvalid
            | Self::UnknownCredential(_)
            | Self::StateInvalid
            | Self::StateExpired
            | Self::BrowserMismatch
            | Self::IssuerMismatch
            | Self::ProviderDenied(_)
            | Self::CodeMissing => Class::Downstream,
            Self::ProviderUnavailable(_) | Self::ExchangeFailed(_) => Class::Upstream,
            Self::StoreUnavailable => Class::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoVault => StatusCode::NOT_FOUND,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::LinkInvalid
            | Self::UnknownCredential(_)
            | Self::StateInvalid
            | Self::StateExpired
            | Self::BrowserMismatch
            | Self::IssuerMismatch
            | Self::ProviderDenied(_)
            | Self::CodeMissing => StatusCode::BAD_REQUEST,
            Self::ProviderUnavailable(_) | Self::ExchangeFailed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable reason, for audit and for the page's footer.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoVault => "no_vault",
            Self::StoreUnavailable => "upstream_credential_unavailable",
            Self::LinkInvalid => "connect_link_invalid",
            Self::UnknownCredential(_) => "unknown_credential",
            Self::StateInvalid => "oauth_state_invalid",
            Self::StateExpired => "oauth_state_expired",
            Self::BrowserMismatch => "oauth_browser_mismatch",
            Self::IssuerMismatch => "oauth_issuer_mismatch",
            Self::ProviderDenied(_) => "oauth_provider_error",
            Self::CodeMissing => "oauth_code_missing",
            Self::ProviderUnavailable(code) | Self::ExchangeFailed(code) => code,
        }
    }

    pub fn decision(&self) -> &'static str {
        decision_of(self.class())
    }

    /// Why in words, for audit (the provider's error code; never a token or a code).
    pub fn explanation(&self) -> Option<String> {
        match self {
            Self::ProviderDenied(code) => Some(format!("the provider returned error={code}")),
            Self::NoVault
            | Self::StoreUnavailable
            | Self::LinkInvalid
            | Self::UnknownCredential(_)
            | Self::ProviderUnavailable(_)
            | Self::StateInvalid
            | Self::StateExpired
            | Self::BrowserMismatch
            | Self::IssuerMismatch
            | Self::CodeMissing
            | Self::ExchangeFailed(_) => None,
        }
    }

    pub fn into_response(self) -> Response {
        const INVALID: &str = "This sign-in is unknown, expired or already completed. Call the tool again to get a new link.";
        let (title, message): (&str, std::borrow::Cow<'static, str>) = match &self {
            Self::NoVault => return StatusCode::NOT_FOUND.into_response(),
            Self::StoreUnavailable => ("Try again later", "The gateway's credential store is unavailable.".into()),
            Self::LinkInvalid => {
                ("Link not valid", "This connect link is unknown, expired or already used. Call the tool again to get a new one.".into())
            }
            Self::UnknownCredential(ConnectStep::Start) => ("Link not valid", "This connection is no longer configured.".into()),
            Self::UnknownCredential(ConnectStep::Callback) => ("Not connected", "This connection is no longer configured.".into()),
            Self::ProviderUnavailable(_) => ("Provider unavailable", "The provider's endpoints could not be discovered.".into()),
            Self::StateInvalid => ("Sign-in not valid", INVALID.into()),
            Self::StateExpired => ("Sign-in expired", INVALID.into()),
            Self::BrowserMismatch => {
                ("Sign-in not valid", "This sign-in was started in another browser. Open the connect link again in this one.".into())
            }
            Self::IssuerMismatch => {
                ("Sign-in not valid", "The answer did not come from this connection's provider. Nothing was stored.".into())
            }
            Self::ProviderDenied(code) => {
                ("Not connected", format!("The provider did not grant access ({code}). Nothing was stored.").into())
            }
            Self::CodeMissing => ("Sign-in not valid", "The provider sent no authorization code.".into()),
            Self::ExchangeFailed(_) => {
                ("Not connected", "The provider did not exchange the authorization code. Nothing was stored.".into())
            }
        };
        let mut response = html_page(self.status(), title, &message, self.reason());
        // A refused callback ends the flow: the browser binding is cleared.
        let clears_binding = match &self {
            Self::UnknownCredential(ConnectStep::Callback)
            | Self::StateInvalid
            | Self::StateExpired
            | Self::BrowserMismatch
            | Self::IssuerMismatch
            | Self::CodeMissing => true,
            Self::NoVault
            | Self::StoreUnavailable
            | Self::LinkInvalid
            | Self::UnknownCredential(ConnectStep::Start)
            | Self::ProviderUnavailable(_)
            | Self::ProviderDenied(_)
            | Self::ExchangeFailed(_) => false,
        };
        if clears_binding {
            response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_CONNECT_COOKIE));
        }
        response
    }
}

/// The `Set-Cookie` that removes the connect flow's browser binding.
pub const CLEAR_CONNECT_COOKIE: &str = "warden_connect=; Path=/oauth/callback; Max-Age=0";

/// An OAuth error code as reported by a provider, kept only as far as it looks like one (the
/// connect flow's and the sign-in's callbacks).
pub fn oauth_error_code(raw: &str) -> String {
    let clean: String = raw.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).take(64).collect();
    if clean.is_empty() { "unknown".into() } else { clean }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small static HTML page (the connect flow's, refusals and successes alike). Every value is
/// escaped; `no-store`, `no-referrer` (the URL may hold an authorization code) and a CSP that
/// allows no scripts, loads or framing (inline styles only). `code` is the stable reason, shown
/// for support.
pub fn html_page(status: StatusCode, title: &str, message: &str, code: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>{t}</title>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36em;margin:4em auto\"><h1>{t}</h1><p>{m}</p>\
         <p style=\"color:#666\"><small>Warden · {c}</small></p></body></html>",
        t = escape_html(title),
        m = escape_html(message),
        c = escape_html(code)
    );
    static_page(status, body)
}

/// An HTML page of Warden's own: `no-store`, `no-referrer` (URLs may hold a code), and a CSP that
/// allows no script, no load and no framing (forms still post).
pub fn static_page(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    response
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn connect_pages_escape_what_the_provider_sent_and_clear_the_binding_only_when_the_flow_ends() {
        let response = ConnectError::ProviderDenied("<script>".into()).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        );
        let html = body(response).await;
        assert!(html.contains("(&lt;script&gt;)") && !html.contains("<script>"), "{html}");
        assert!(html.contains("oauth_provider_error"), "{html}");

        let expired = ConnectError::StateExpired.into_response();
        assert_eq!(expired.headers()[header::SET_COOKIE], CLEAR_CONNECT_COOKIE);
        assert!(body(expired).await.contains("Sign-in expired"));

        let none = ConnectError::NoVault.into_response();
        assert_eq!(none.status(), StatusCode::NOT_FOUND);
        assert!(body(none).await.is_empty(), "no vault: no flow, no page");
    }

    #[test]
    fn refusal_classes_decide_the_audit_decision() {
        assert_eq!(
            (ConnectError::ExchangeFailed("upstream_credential_refused").decision(), ConnectError::CodeMissing.decision()),
            ("error", "deny")
        );
        assert_eq!(ConnectError::StoreUnavailable.class(), Class::Internal);
        assert_eq!((AdminError::VaultUnavailable.decision(), AdminError::NotShared.decision()), ("error", "deny"));
    }

    #[tokio::test]
    async fn admin_refusals_keep_their_documented_codes() {
        let unauthorized = AdminError::Unauthorized.into_response();
        assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(unauthorized.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"warden-admin\"");
        let json: Value = serde_json::from_str(&body(unauthorized).await).unwrap();
        assert_eq!(json, json!({"error": "unauthorized", "message": "a valid admin token is required"}));
        let missing: Value = serde_json::from_str(&body(AdminError::NoSuchConnection.into_response()).await).unwrap();
        assert_eq!(missing["error"], "not_found");
        assert_eq!(AdminError::NoSuchConnection.reason(), "connection_not_found");
    }
}
