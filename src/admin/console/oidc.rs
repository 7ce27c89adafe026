//! Console sign-in through an identity provider: authorization code with PKCE (S256) and a
//! `state` bound to the browser by a signed cookie. The access token is asked for this
//! gateway's resource and verified by the identity stage like any other token (pinned
//! algorithms, issuer, audience, expiry); the administrator must hold `admin_role`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, http::HeaderMap};
use base64::Engine;
use serde::Deserialize;
use sha2::Digest;

use super::session::with_cookie;
use super::{ConsoleState, OidcConfig};
use crate::admin::{Actor, refused};
use crate::edge::RequestContext;
use crate::error::AdminError;

const FLOW_COOKIE: &str = "warden_console_oidc";

/// The provider's endpoints, discovered at first use.
pub struct Oidc {
    config: OidcConfig,
    endpoints: tokio::sync::OnceCell<(url::Url, url::Url)>,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Self {
        Self { config, endpoints: tokio::sync::OnceCell::new() }
    }

    /// The authorization and token endpoints from the issuer's metadata (RFC 8414, then OpenID
    /// Connect discovery).
    async fn endpoints(&self) -> Option<&(url::Url, url::Url)> {
        self.endpoints
            .get_or_try_init(|| async {
                let client = crate::upstream::control_plane_client().map_err(|_| ())?;
                let base = self.config.issuer.trim_end_matches('/');
                for well_known in ["oauth-authorization-server", "openid-configuration"] {
                    let Ok(response) = client.get(format!("{base}/.well-known/{well_known}")).send().await else { continue };
                    if !response.status().is_success() {
                        continue;
                    }
                    let Ok(bytes) = crate::upstream::read_limited(response, 64 * 1024).await else { continue };
                    let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
                    let url = |k: &str| meta.get(k).and_then(|v| v.as_str()).and_then(|u| url::Url::parse(u).ok());
                    if let (Some(authorize), Some(token)) = (url("authorization_endpoint"), url("token_endpoint")) {
                        return Ok((authorize, token));
                    }
                }
                Err(())
            })
            .await
            .ok()
    }
}

fn redirect_uri(state: &ConsoleState) -> String {
    format!("{}/admin/oidc/callback", state.public_base)
}

pub async fn start(State(state): State<Arc<ConsoleState>>, Extension(ctx): Extension<RequestContext>) -> Response {
    let Some(oidc) = &state.oidc else { return super::refusal_page(None, AdminError::Disabled, None) };
    let Some((authorize, _)) = oidc.endpoints().await else {
        state.admin.audit.emit(refused(&ctx, &Actor::admin_token(), "admin/console.sign_in", None, AdminError::ProviderUnavailable));
        return super::refusal_page(None, AdminError::ProviderUnavailable, None);
    };
    let (Some(flow_state), Some(verifier)) = (crate::credentials::vault::random_token(), crate::credentials::vault::random_token()) else {
        return super::refusal_page(None, AdminError::VaultUnavailable, None);
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.expose().as_bytes()));
    let mut url = authorize.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.config.client_id)
        .append_pair("redirect_uri", &redirect_uri(&state))
        .append_pair("state", flow_state.expose())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &state.resource);
    if !oidc.config.scopes.is_empty() {
        url.query_pairs_mut().append_pair("scope", &oidc.config.scopes.join(" "));
    }
    let sealed = state.sessions.seal(&format!("{}~{}", flow_state.expose(), verifier.expose()));
    let response = Redirect::to(url.as_str()).into_response();
    super::secured(with_cookie(response, &state.sessions.flow_cookie(FLOW_COOKIE, &sealed, 600)))
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
}

pub async fn callback(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    const ACTION: &str = "admin/console.sign_in";
    let refuse = |refusal: AdminError, who: &Actor| {
        state.admin.audit.emit(refused(&ctx, who, ACTION, None, refusal));
        super::refusal_page(None, refusal, None)
    };
    let anyone = Actor::admin_token();
    let Some(oidc) = &state.oidc else { return refuse(AdminError::Disabled, &anyone) };
    let flow = super::session::cookie(&headers, FLOW_COOKIE).and_then(|c| state.sessions.unseal(c));
    let Some((expected_state, verifier)) = flow.as_deref().and_then(|f| f.split_once('~')) else {
        return refuse(AdminError::CsrfFailed, &anyone);
    };
    let (Some(code), Some(returned)) = (q.code, q.state) else { return refuse(AdminError::InvalidBody, &anyone) };
    if returned != expected_state {
        return refuse(AdminError::CsrfFailed, &anyone);
    }
    let Some((_, token_endpoint)) = oidc.endpoints().await else { return refuse(AdminError::ProviderUnavailable, &anyone) };
    let Some(access_token) = exchange(oidc, token_endpoint, &code, verifier, &redirect_uri(&state), &state.resource).await else {
        return refuse(AdminError::ProviderUnavailable, &anyone);
    };
    let principal = match state.authenticator.authenticate(&access_token).await {
        Ok(p) if p.issuer == oidc.config.issuer => p,
        Ok(_) | Err(_) => return refuse(AdminError::Unauthorized, &anyone),
    };
    let actor =
        Actor { subject: principal.subject.as_str().to_owned(), issuer: Some(principal.issuer.clone()), roles: principal.roles.clone() };
    if !principal.roles.iter().any(|r| r == &oidc.config.admin_role) {
        return refuse(AdminError::NotAnAdministrator, &actor);
    }
    let response = super::session::start_session(&state, &ctx, &actor, "signed_in_with_identity_provider");
    with_cookie(response, &state.sessions.flow_cookie(FLOW_COOKIE, "", 0))
}

/// The code for an access token at the token endpoint; `None` on any failure (logged).
async fn exchange(oidc: &Oidc, endpoint: &url::Url, code: &str, verifier: &str, redirect_uri: &str, resource: &str) -> Option<String> {
    let client = crate::upstream::control_plane_client().ok()?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", oidc.config.client_id.as_str()),
        ("resource", resource),
    ];
    let mut request = client.post(endpoint.clone()).form(&form);
    if let Some(secret) = &oidc.config.client_secret {
        request = request.basic_auth(&oidc.config.client_id, Some(secret.expose()));
    }
    let response = match request.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            tracing::warn!(status = r.status().as_u16(), "the console's token request was refused");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "the console's token request failed");
            return None;
        }
    };
    let bytes = crate::upstream::read_limited(response, 64 * 1024).await.ok()?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    body.get("access_token").and_then(|t| t.as_str()).map(str::to_owned)
}
