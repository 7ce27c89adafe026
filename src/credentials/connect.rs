//! The connect flow a person completes in a browser to make an OAuth connection.
//!
//! `GET /oauth/connect/{link}`: a single-use link (from a URL elicitation, or from the admin API
//! for a shared connection), valid 10 minutes, bound to the caller it was made for. Using it
//! creates the OAuth `state`, a PKCE verifier (S256) and a browser binding cookie, and
//! redirects to the provider.
//!
//! `GET /oauth/callback`: the provider sends the browser back with `code` and `state`. The state
//! is taken once (a replay or an unknown state is a 400), must be under 10 minutes old, and must
//! come from the browser that started the flow (the cookie). A provider error stores nothing and
//! is audited. The code is exchanged with the verifier and the tokens stored, encrypted, under
//! the connection the link was made for.
//!
//! Pages are static text with every value HTML-escaped, `no-store`, `no-referrer` (the URL holds
//! the code) and a CSP that allows no scripts, loads or framing (inline styles only).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::vault::{FLOW_LIFETIME_SECS, digest, pkce_challenge, random_token};
use crate::audit::{AuditEvent, Verdict};
use crate::edge::RequestContext;
use crate::store::ConnectionKey;

const COOKIE: &str = "warden_connect";

/// Unix seconds by the vault's clock, which also stamps the flows' rows.
fn now(vault: &super::Vault) -> i64 {
    i64::try_from(vault.clock.unix()).unwrap_or(i64::MAX)
}

fn escape(text: &str) -> String {
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

/// A small HTML page. `code` is the stable reason, shown for support.
fn page(status: StatusCode, title: &str, message: &str, code: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>{t}</title>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36em;margin:4em auto\"><h1>{t}</h1><p>{m}</p>\
         <p style=\"color:#666\"><small>Warden · {c}</small></p></body></html>",
        t = escape(title),
        m = escape(message),
        c = escape(code)
    );
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

fn event(ctx: &RequestContext, method: &str, key: Option<&ConnectionKey>, decision: &'static str, reason: &str, status: u16) -> AuditEvent {
    let person = key.filter(|k| !k.subject.is_empty()).map(|k| (k.issuer.as_str(), k.subject.as_str()));
    AuditEvent::connect(ctx, method, key.map(|k| k.credential.as_str()), person, Verdict { decision, reason, status })
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "The gateway's credential store is unavailable.",
        "upstream_credential_unavailable",
    )
}

/// What the connect pages use: the vault, the credentials, the audit sink and the upstream
/// client (for the provider's endpoints).
pub struct ConnectState {
    pub vault: Option<Arc<super::Vault>>,
    pub credentials: Arc<super::Credentials>,
    pub audit: Arc<crate::audit::AuditSink>,
    pub upstream: Arc<crate::upstream::Upstream>,
}

/// `GET /oauth/connect/{link}`.
pub async fn start(State(gw): State<Arc<ConnectState>>, Extension(ctx): Extension<RequestContext>, Path(link): Path<String>) -> Response {
    let Some(vault) = &gw.vault else { return StatusCode::NOT_FOUND.into_response() };
    let Ok(store) = vault.store().await else { return unavailable() };
    let (Some(state), Some(verifier), Some(browser)) = (random_token(), random_token(), random_token()) else {
        return unavailable();
    };
    let started = store
        .start_flow(&digest(&link), &digest(state.expose()), &verifier, &digest(browser.expose()), now(vault) - FLOW_LIFETIME_SECS)
        .await;
    let key = match started {
        Ok(Some(key)) => key,
        Ok(None) => {
            gw.audit.emit(event(&ctx, "oauth/connect", None, "deny", "connect_link_invalid", 400));
            return page(
                StatusCode::BAD_REQUEST,
                "Link not valid",
                "This connect link is unknown, expired or already used. Call the tool again to get a new one.",
                "connect_link_invalid",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "vault storage failed");
            return unavailable();
        }
    };
    let Some(connection) = gw.credentials.connection(&key.credential) else {
        gw.audit.emit(event(&ctx, "oauth/connect", Some(&key), "deny", "unknown_credential", 400));
        return page(StatusCode::BAD_REQUEST, "Link not valid", "This connection is no longer configured.", "unknown_credential");
    };
    let url = match connection.authorization_url(&gw.upstream, state.expose(), &pkce_challenge(verifier.expose())).await {
        Ok(url) => url,
        Err(e) => {
            gw.audit.emit(event(&ctx, "oauth/connect", Some(&key), "error", e.code(), 502));
            return page(StatusCode::BAD_GATEWAY, "Provider unavailable", "The provider's endpoints could not be discovered.", e.code());
        }
    };
    gw.audit.emit(event(&ctx, "oauth/connect", Some(&key), "allow", "connect_started", 302));
    let secure = if vault.public_base().starts_with("https://") { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={}; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age={FLOW_LIFETIME_SECS}{secure}", browser.expose());
    let mut response = page(StatusCode::FOUND, "Redirecting", "Continue to the provider to connect your account.", "connect_started");
    let h = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(url.as_str()), HeaderValue::from_str(&cookie)) {
        h.insert(header::LOCATION, location);
        h.insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    /// RFC 9207.
    #[serde(default)]
    iss: Option<String>,
}

fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// An OAuth error code as reported by the provider, kept only if it looks like one.
fn error_code(raw: &str) -> String {
    let clean: String = raw.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).take(64).collect();
    if clean.is_empty() { "unknown".into() } else { clean }
}

/// `GET /oauth/callback`.
pub async fn callback(
    State(gw): State<Arc<ConnectState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(vault) = &gw.vault else { return StatusCode::NOT_FOUND.into_response() };
    let refuse = |key: Option<&ConnectionKey>, reason: &str, title: &str, message: &str| {
        gw.audit.emit(event(&ctx, "oauth/callback", key, "deny", reason, 400));
        let mut response = page(StatusCode::BAD_REQUEST, title, message, reason);
        response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("warden_connect=; Path=/oauth/callback; Max-Age=0"));
        response
    };
    let invalid = "This sign-in is unknown, expired or already completed. Call the tool again to get a new link.";
    let Some(state) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return refuse(None, "oauth_state_invalid", "Sign-in not valid", invalid);
    };
    let Ok(store) = vault.store().await else { return unavailable() };
    let flow = match store.take_flow(&digest(state)).await {
        Ok(Some(flow)) => flow,
        Ok(None) => return refuse(None, "oauth_state_invalid", "Sign-in not valid", invalid),
        Err(e) => {
            tracing::error!(error = %e, "vault storage failed");
            return unavailable();
        }
    };
    let key = flow.key;
    if flow.started_at < now(vault) - FLOW_LIFETIME_SECS {
        return refuse(Some(&key), "oauth_state_expired", "Sign-in expired", invalid);
    }
    let same_browser = browser_cookie(&headers).is_some_and(|c| bool::from(digest(&c).as_bytes().ct_eq(flow.browser_hash.as_bytes())));
    if !same_browser {
        return refuse(
            Some(&key),
            "oauth_browser_mismatch",
            "Sign-in not valid",
            "This sign-in was started in another browser. Open the connect link again in this one.",
        );
    }
    let Some(connection) = gw.credentials.connection(&key.credential) else {
        return refuse(Some(&key), "unknown_credential", "Not connected", "This connection is no longer configured.");
    };
    if connection.check_response_issuer(&gw.upstream, query.iss.as_deref()).await.is_err() {
        return refuse(
            Some(&key),
            "oauth_issuer_mismatch",
            "Sign-in not valid",
            "The answer did not come from this connection's provider. Nothing was stored.",
        );
    }
    if let Some(error) = &query.error {
        let code = error_code(error);
        let mut e = event(&ctx, "oauth/callback", Some(&key), "deny", "oauth_provider_error", 400);
        e.explanation = Some(format!("the provider returned error={code}"));
        gw.audit.emit(e);
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("The provider did not grant access ({code}). Nothing was stored."),
            "oauth_provider_error",
        );
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return refuse(Some(&key), "oauth_code_missing", "Sign-in not valid", "The provider sent no authorization code.");
    };
    let tokens = match connection.exchange(&gw.upstream, code, &flow.verifier).await {
        Ok(t) => t,
        Err(e) => {
            gw.audit.emit(event(&ctx, "oauth/callback", Some(&key), "error", e.code(), 502));
            return page(
                StatusCode::BAD_GATEWAY,
                "Not connected",
                "The provider did not exchange the authorization code. Nothing was stored.",
                e.code(),
            );
        }
    };
    if let Err(e) = store.put_tokens(&key, &tokens).await {
        tracing::error!(error = %e, "vault storage failed");
        return unavailable();
    }
    connection.forget(&key);
    gw.audit.emit(event(&ctx, "oauth/callback", Some(&key), "allow", "connection_created", 200));
    let mut response = page(
        StatusCode::OK,
        "Connected",
        &format!("Your {} account is connected. Return to your assistant and try again.", connection.settings.label),
        "connection_created",
    );
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("warden_connect=; Path=/oauth/callback; Max-Age=0"));
    response
}
