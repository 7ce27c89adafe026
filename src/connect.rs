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
//! Pages are `error::html_page`s: static text with every value HTML-escaped, `no-store`,
//! `no-referrer` (the URL holds the code) and a CSP that allows no scripts, loads or framing.
//! Refusals are `error::ConnectError`s, each audited once with the decision and reason it
//! carries.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::audit::{AuditEvent, Verdict};
use crate::credentials::vault::{FLOW_LIFETIME_SECS, digest, pkce_challenge, random_token};
use crate::credentials::{Credentials, Vault};
use crate::edge::RequestContext;
use crate::error::{CLEAR_CONNECT_COOKIE, ConnectError, ConnectStep, html_page, oauth_error_code};
use crate::store::ConnectionKey;

const COOKIE: &str = "warden_connect";

/// Unix seconds by the vault's clock, which also stamps the flows' rows.
fn now(vault: &Vault) -> i64 {
    i64::try_from(vault.clock.unix()).unwrap_or(i64::MAX)
}

fn event(ctx: &RequestContext, method: &str, key: Option<&ConnectionKey>, decision: &'static str, reason: &str, status: u16) -> AuditEvent {
    let person = key.filter(|k| !k.subject.is_empty()).map(|k| (k.issuer.as_str(), k.subject.as_str()));
    AuditEvent::connect(ctx, method, key.map(|k| k.credential.as_str()), person, Verdict { decision, reason, status })
}

/// What the connect pages use: the vault, the credentials, the audit sink and the upstream
/// client (for the provider's endpoints).
pub struct ConnectState {
    pub vault: Option<Arc<Vault>>,
    pub credentials: Arc<Credentials>,
    pub audit: Arc<crate::audit::AuditSink>,
    pub upstream: Arc<crate::upstream::Upstream>,
    /// Warden's authorization server: the callback of its sign-ins is this one.
    pub authz: Option<Arc<crate::authz::AuthServer>>,
}

/// Audits a refusal of `step` and renders it.
fn refuse(gw: &ConnectState, ctx: &RequestContext, step: &str, key: Option<&ConnectionKey>, refusal: ConnectError) -> Response {
    if refusal != ConnectError::NoVault {
        let mut e = event(ctx, step, key, refusal.decision(), refusal.reason(), refusal.status().as_u16());
        e.explanation = refusal.explanation();
        gw.audit.emit(e);
    }
    refusal.into_response()
}

fn storage_failed(e: &crate::store::StoreError) -> ConnectError {
    tracing::error!(error = %e, "vault storage failed");
    ConnectError::StoreUnavailable
}

/// `GET /oauth/connect/{link}`.
pub async fn start(State(gw): State<Arc<ConnectState>>, Extension(ctx): Extension<RequestContext>, Path(link): Path<String>) -> Response {
    const STEP: &str = "oauth/connect";
    let Some(vault) = &gw.vault else { return ConnectError::NoVault.into_response() };
    let (Some(state), Some(verifier), Some(browser)) = (random_token(), random_token(), random_token()) else {
        return refuse(&gw, &ctx, STEP, None, ConnectError::StoreUnavailable);
    };
    let started = async {
        let store = vault.store().await.map_err(|e| storage_failed(&e))?;
        store
            .start_flow(&digest(&link), &digest(state.expose()), &verifier, &digest(browser.expose()), now(vault) - FLOW_LIFETIME_SECS)
            .await
            .map_err(|e| storage_failed(&e))?
            .ok_or(ConnectError::LinkInvalid)
    };
    let key = match started.await {
        Ok(key) => key,
        Err(refusal) => return refuse(&gw, &ctx, STEP, None, refusal),
    };
    let Some(connection) = gw.credentials.connection(&key.credential) else {
        return refuse(&gw, &ctx, STEP, Some(&key), ConnectError::UnknownCredential(ConnectStep::Start));
    };
    let url = match connection.authorization_url(&gw.upstream, state.expose(), &pkce_challenge(verifier.expose())).await {
        Ok(url) => url,
        Err(e) => return refuse(&gw, &ctx, STEP, Some(&key), ConnectError::ProviderUnavailable(e.code())),
    };
    gw.audit.emit(event(&ctx, STEP, Some(&key), "allow", "connect_started", 302));
    let secure = if vault.public_base().starts_with("https://") { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={}; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age={FLOW_LIFETIME_SECS}{secure}", browser.expose());
    let mut response = html_page(StatusCode::FOUND, "Redirecting", "Continue to the provider to connect your account.", "connect_started");
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

/// `GET /oauth/callback`.
pub async fn callback(
    State(gw): State<Arc<ConnectState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    const STEP: &str = "oauth/callback";
    if let (Some(authz), Some(state)) = (&gw.authz, query.state.as_deref())
        && state.starts_with(crate::authz::STATE_PREFIX)
    {
        return crate::authz::callback(authz, &ctx, &headers, state, query.code.as_deref(), query.error.as_deref(), query.iss.as_deref())
            .await;
    }
    let Some(vault) = &gw.vault else { return ConnectError::NoVault.into_response() };
    let Some(state) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return refuse(&gw, &ctx, STEP, None, ConnectError::StateInvalid);
    };
    let taken = async {
        let store = vault.store().await.map_err(|e| storage_failed(&e))?;
        let flow = store.take_flow(&digest(state)).await.map_err(|e| storage_failed(&e))?.ok_or(ConnectError::StateInvalid)?;
        Ok::<_, ConnectError>((store, flow))
    };
    let (store, flow) = match taken.await {
        Ok(taken) => taken,
        Err(refusal) => return refuse(&gw, &ctx, STEP, None, refusal),
    };
    let key = flow.key;
    let refused = |refusal| refuse(&gw, &ctx, STEP, Some(&key), refusal);
    if flow.started_at < now(vault) - FLOW_LIFETIME_SECS {
        return refused(ConnectError::StateExpired);
    }
    let same_browser =
        crate::edge::cookie(&headers, COOKIE).is_some_and(|c| bool::from(digest(c).as_bytes().ct_eq(flow.browser_hash.as_bytes())));
    if !same_browser {
        return refused(ConnectError::BrowserMismatch);
    }
    let Some(connection) = gw.credentials.connection(&key.credential) else {
        return refused(ConnectError::UnknownCredential(ConnectStep::Callback));
    };
    if connection.check_response_issuer(&gw.upstream, query.iss.as_deref()).await.is_err() {
        return refused(ConnectError::IssuerMismatch);
    }
    if let Some(error) = &query.error {
        return refused(ConnectError::ProviderDenied(oauth_error_code(error)));
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return refused(ConnectError::CodeMissing);
    };
    let tokens = match connection.exchange(&gw.upstream, code, &flow.verifier).await {
        Ok(t) => t,
        Err(e) => return refused(ConnectError::ExchangeFailed(e.code())),
    };
    if let Err(e) = store.put_tokens(&key, &tokens).await {
        return refused(storage_failed(&e));
    }
    connection.forget(&key);
    gw.audit.emit(event(&ctx, STEP, Some(&key), "allow", "connection_created", 200));
    let mut response = html_page(
        StatusCode::OK,
        "Connected",
        &format!("Your {} account is connected. Return to your assistant and try again.", connection.settings.label),
        "connection_created",
    );
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_CONNECT_COOKIE));
    response
}
