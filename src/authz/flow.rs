//! The browser's part: `/oauth/authorize`, the upstream IdP's callback, and the consent page.
//!
//! `/authorize` checks the client and its redirect URI first: until both are known good, a
//! refusal is a page of Warden's (never a redirect, so Warden is no open redirector); after, it
//! goes back to the client's redirect URI as RFC 6749 §4.1.2.1 says. A sign-in is a row of the
//! store from `/authorize` on, bound to the browser by a cookie (only its hash is stored); the
//! upstream state is used once at the callback, and the consent token once at the decision.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{AuthServer, Identity, SIGN_IN_LIFETIME_SECS, Step};
use crate::audit::Verdict;
use crate::credentials::vault::{digest, pkce_challenge, random_token};
use crate::edge::RequestContext;
use crate::error::{escape_html, html_page, static_page};
use crate::store::oauth::{CodeRow, GrantRow};

/// Every upstream state of a sign-in starts with this; a connect flow's never does (base64url
/// has no `.`), so `/oauth/callback` tells the two apart without a lookup.
pub const STATE_PREFIX: &str = "as.";
const COOKIE: &str = "warden_signin";
/// The scope that asks for a refresh token.
pub(super) const OFFLINE_ACCESS: &str = "offline_access";
const MAX_STATE: usize = 1024;

/// What a sign-in carries from `/authorize` to the consent decision (sealed in the store).
#[derive(Debug, Serialize, Deserialize)]
struct SignIn {
    client_id: String,
    redirect_uri: String,
    /// The granted scopes (requested ∩ grantable), `offline_access` included when asked for.
    scope: Vec<String>,
    state: Option<String>,
    code_challenge: String,
    resource: String,
    /// Sent to the upstream IdP.
    nonce: String,
    verifier: String,
}

#[derive(Debug, Default, Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
}

impl AuthServer {
    /// A refusal shown as Warden's page (nothing known good to redirect to), audited.
    fn page(&self, ctx: &RequestContext, step: Step<'_>, status: StatusCode, reason: &'static str, message: &str) -> Response {
        self.audit(ctx, &step, Verdict { decision: "deny", reason, status: status.as_u16() }, None);
        html_page(status, "Sign-in failed", message, reason)
    }

    /// A refusal sent back to the client's redirect URI, audited.
    fn back(
        &self,
        ctx: &RequestContext,
        step: Step<'_>,
        to: (&str, Option<&str>),
        error: &str,
        reason: &'static str,
        description: &str,
    ) -> Response {
        self.audit(ctx, &step, Verdict { decision: "deny", reason, status: 302 }, None);
        let mut params = vec![("error", error), ("error_description", description), ("iss", self.issuer.as_str())];
        if let Some(state) = to.1 {
            params.push(("state", state));
        }
        redirect(to.0, &params)
    }
}

/// A 302 to `uri` with `params` added to its query.
fn redirect(uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(uri) else {
        return html_page(StatusCode::BAD_REQUEST, "Sign-in failed", "The redirect URI is invalid.", "redirect_uri_invalid");
    };
    url.query_pairs_mut().extend_pairs(params.iter().copied());
    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        h.insert(header::LOCATION, location);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The browser binding this browser already has (32 random bytes, base64url), if any.
fn binding(headers: &HeaderMap) -> Option<String> {
    crate::edge::cookie(headers, COOKIE).filter(|v| valid_challenge(v)).map(str::to_owned)
}

fn same_browser(headers: &HeaderMap, browser_hash: &str) -> bool {
    binding(headers).is_some_and(|c| bool::from(digest(&c).as_bytes().ct_eq(browser_hash.as_bytes())))
}

/// A PKCE S256 challenge, or a 32-byte random value: 43 base64url characters.
fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /oauth/authorize`.
pub async fn authorize(
    State(server): State<Arc<AuthServer>>,
    Extension(ctx): Extension<RequestContext>,
    peer: super::Peer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let step = Step::new("oauth/authorize");
    let ip = server.client_ip(peer.map(|p| p.0.0), &headers);
    if let Err(wait) = super::Pace::take(&server.pace.sign_ins, ip) {
        let mut page = server.page(
            &ctx,
            step,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sign_ins",
            "Too many sign-ins from this address; try again shortly.",
        );
        super::retry_after(&mut page, wait);
        return page;
    }
    let Ok(query) = serde_urlencoded::from_str::<AuthorizeQuery>(raw.as_deref().unwrap_or_default()) else {
        return server.page(
            &ctx,
            step,
            StatusCode::BAD_REQUEST,
            "request_invalid",
            "The sign-in request is malformed: a parameter is repeated or unreadable.",
        );
    };
    let Some(client_id) = query.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return server.page(&ctx, step, StatusCode::BAD_REQUEST, "client_id_missing", "The sign-in request names no client.");
    };
    let client = match server.find_client(client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return server.page(&ctx, step, StatusCode::BAD_REQUEST, "client_unknown", "This application is not registered with Warden.");
        }
        Err(super::registration::Lookup::Metadata(why)) => {
            return server.page(&ctx, step, StatusCode::BAD_REQUEST, "client_metadata_invalid", &why);
        }
        Err(e) => {
            let refusal = super::Refusal::unavailable(&e);
            return server.page(&ctx, step, refusal.status, refusal.reason, "Warden cannot reach its database; try again shortly.");
        }
    };
    let step = step.client(client_id);
    let redirect_uri = match query.redirect_uri.as_deref() {
        Some(uri) if client.allows_redirect(uri) => uri.to_owned(),
        None if client.metadata.redirect_uris.len() == 1 => client.metadata.redirect_uris[0].clone(),
        Some(_) => {
            return server.page(
                &ctx,
                step,
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                "The redirect URI is not one this application registered.",
            );
        }
        None => {
            return server.page(&ctx, step, StatusCode::BAD_REQUEST, "redirect_uri_missing", "The sign-in request names no redirect URI.");
        }
    };
    let client_state = query.state.as_deref().filter(|s| s.len() <= MAX_STATE);
    let to = (redirect_uri.as_str(), client_state);
    if query.state.as_deref().is_some_and(|s| s.len() > MAX_STATE) {
        return server.back(&ctx, step, (redirect_uri.as_str(), None), "invalid_request", "state_too_long", "state is too long");
    }
    if query.response_type.as_deref() != Some("code") {
        return server.back(
            &ctx,
            step,
            to,
            "unsupported_response_type",
            "response_type_unsupported",
            "only response_type=code is supported",
        );
    }
    let challenge = match (query.code_challenge.as_deref(), query.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) if valid_challenge(c) => c.to_owned(),
        (Some(_), Some(m)) if m != "S256" => {
            return server.back(&ctx, step, to, "invalid_request", "pkce_method_unsupported", "code_challenge_method must be S256");
        }
        _ => return server.back(&ctx, step, to, "invalid_request", "pkce_missing", "PKCE with code_challenge_method=S256 is required"),
    };
    match query.resource.as_deref() {
        Some(r) if r.trim_end_matches('/') == server.resource.trim_end_matches('/') => {}
        Some(_) => return server.back(&ctx, step, to, "invalid_target", "resource_mismatch", "resource must be this MCP server's URL"),
        None => return server.back(&ctx, step, to, "invalid_request", "resource_missing", "resource (RFC 8707) is required"),
    }
    let mut scope = server.granted_scopes(query.scope.as_deref());
    if query.scope.as_deref().is_some_and(|s| s.split_whitespace().any(|s| s == OFFLINE_ACCESS)) {
        scope.push(OFFLINE_ACCESS.to_owned());
    }
    let browser = binding(&headers).map(crate::secret::Secret::new).or_else(random_token);
    let (Some(state), Some(nonce), Some(verifier), Some(browser)) = (random_token(), random_token(), random_token(), browser) else {
        return server.back(&ctx, step, to, "server_error", "entropy_unavailable", "try again");
    };
    let state = format!("{STATE_PREFIX}{}", state.expose());
    let url = match server.upstream.authorization_url(&state, nonce.expose(), &pkce_challenge(verifier.expose())).await {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(error = %e, "upstream identity provider unavailable");
            return server.back(&ctx, step, to, "temporarily_unavailable", e.code(), "the identity provider cannot be reached");
        }
    };
    let sign_in = SignIn {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.clone(),
        scope,
        state: client_state.map(str::to_owned),
        code_challenge: challenge,
        resource: server.resource.clone(),
        nonce: nonce.expose().to_owned(),
        verifier: verifier.expose().to_owned(),
    };
    let stored = async {
        let request = serde_json::to_vec(&sign_in).map_err(|e| crate::store::StoreError::Database(sqlx::Error::Decode(Box::new(e))))?;
        server.vault.store().await?.insert_oauth_request(&digest(&state), &digest(browser.expose()), &request).await
    };
    if let Err(e) = stored.await {
        let refusal = super::Refusal::unavailable(&e);
        return server.back(&ctx, step, to, refusal.error, refusal.reason, "try again shortly");
    }
    server.audit(&ctx, &step, Verdict { decision: "allow", reason: "sign_in_started", status: 302 }, None);
    let secure = if server.issuer.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={SIGN_IN_LIFETIME_SECS}{secure}", browser.expose());
    let mut response = redirect(url.as_str(), &[]);
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The upstream IdP's answer at `/oauth/callback` (the connect flow's path; states that start
/// with [`STATE_PREFIX`] are this flow's).
pub async fn callback(
    server: &AuthServer,
    ctx: &RequestContext,
    headers: &HeaderMap,
    state: &str,
    code: Option<&str>,
    error: Option<&str>,
    iss: Option<&str>,
) -> Response {
    let step = Step::new("oauth/callback");
    let Some(consent) = random_token() else {
        return server.page(ctx, step, StatusCode::SERVICE_UNAVAILABLE, "entropy_unavailable", "Try again.");
    };
    let claimed = async { server.vault.store().await?.claim_oauth_request(&digest(state), &digest(consent.expose())).await };
    let pending = match claimed.await {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            return server.page(
                ctx,
                step,
                StatusCode::BAD_REQUEST,
                "state_invalid",
                "This sign-in link was used already or is unknown. Start again from your application.",
            );
        }
        Err(e) => {
            return server.page(
                ctx,
                step,
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &format!("Try again shortly ({}).", super::Refusal::unavailable(&e).reason),
            );
        }
    };
    let Ok(sign_in) = serde_json::from_slice::<SignIn>(&pending.request) else {
        return server.page(
            ctx,
            step,
            StatusCode::BAD_REQUEST,
            "state_invalid",
            "This sign-in cannot be completed. Start again from your application.",
        );
    };
    let step = step.client(&sign_in.client_id);
    if !same_browser(headers, &pending.browser_hash) {
        return server.page(
            ctx,
            step,
            StatusCode::BAD_REQUEST,
            "browser_mismatch",
            "This sign-in was started in another browser. Start again from your application.",
        );
    }
    if iss.is_some_and(|i| i != server.upstream.issuer) {
        return server.page(
            ctx,
            step,
            StatusCode::BAD_REQUEST,
            "issuer_mismatch",
            "The answer came from another identity provider than the one asked.",
        );
    }
    let to = (sign_in.redirect_uri.as_str(), sign_in.state.as_deref());
    if pending.created_at < server.now() - SIGN_IN_LIFETIME_SECS {
        return server.back(ctx, step, to, "access_denied", "sign_in_expired", "the sign-in took too long");
    }
    if let Some(error) = error {
        let code = crate::error::oauth_error_code(error);
        tracing::info!(idp_error = %code, "the identity provider refused a sign-in");
        return server.back(ctx, step, to, "access_denied", "idp_denied", &format!("the identity provider refused the sign-in ({code})"));
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return server.back(ctx, step, to, "access_denied", "code_missing", "the identity provider sent no code");
    };
    let (identity, idp_tokens) = match server.upstream.sign_in(code, &sign_in.verifier, &sign_in.nonce).await {
        Ok(signed_in) => signed_in,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in at the identity provider failed");
            return server.back(ctx, step, to, "access_denied", e.code(), "the sign-in at the identity provider failed");
        }
    };
    let step = step.person(&identity);
    let remembered = async {
        let store = server.vault.store().await?;
        server.keep_idp_tokens(store, &identity, &idp_tokens).await?;
        let identity_json = serde_json::to_string(&identity).unwrap_or_default();
        store.set_oauth_identity(&digest(consent.expose()), &identity_json).await?;
        let agreed = store.oauth_consent(&identity.subject, &sign_in.client_id).await?;
        let covered = agreed.is_some_and(|agreed| sign_in.scope.iter().all(|s| agreed.split_whitespace().any(|a| a == s)));
        if !covered {
            return Ok(None);
        }
        store.take_oauth_consent(&digest(consent.expose())).await
    };
    match remembered.await {
        Ok(Some(_)) => match server.finish(&sign_in, &identity).await {
            Ok(response) => {
                server.audit(ctx, &step, Verdict { decision: "allow", reason: "consent_remembered", status: 302 }, None);
                response
            }
            Err(refusal) => server.back(ctx, step, to, refusal.error, refusal.reason, "try again shortly"),
        },
        Ok(None) => {
            server.audit(ctx, &step, Verdict { decision: "allow", reason: "consent_required", status: 200 }, None);
            let client_name = match server.find_client(&sign_in.client_id).await {
                Ok(Some(client)) => client.metadata.client_name.unwrap_or_else(|| sign_in.client_id.clone()),
                _ => sign_in.client_id.clone(),
            };
            consent_page(server, consent.expose(), &client_name, &sign_in, &identity)
        }
        Err(e) => {
            let refusal = super::Refusal::unavailable(&e);
            server.back(ctx, step, to, refusal.error, refusal.reason, "try again shortly")
        }
    }
}

fn consent_page(server: &AuthServer, consent: &str, client_name: &str, sign_in: &SignIn, identity: &Identity) -> Response {
    let host = url::Url::parse(&sign_in.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let scopes: String = sign_in.scope.iter().map(|s| format!("<li><code>{}</code></li>", escape_html(s))).collect::<Vec<_>>().join("");
    let scopes = if scopes.is_empty() { "<li>no scopes beyond signing you in</li>".to_owned() } else { scopes };
    let who = identity.username.as_deref().unwrap_or(&identity.subject);
    let body = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Allow access?</title>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36em;margin:4em auto\">\
         <h1>Allow {client} to use Warden as you?</h1>\
         <p>Signed in as <strong>{who}</strong>.</p>\
         <p><strong>{client}</strong> (<code>{client_id}</code>) will get a token for <code>{resource}</code>, \
         sent to <code>{host}</code>, with:</p><ul>{scopes}</ul>\
         <form method=post action=\"{action}\">\
         <input type=hidden name=consent value=\"{consent}\">\
         <button type=submit name=decision value=allow>Allow</button> \
         <button type=submit name=decision value=deny>Deny</button></form>\
         <p style=\"color:#666\"><small>Warden · consent_required</small></p></body></html>",
        client = escape_html(client_name),
        client_id = escape_html(&sign_in.client_id),
        who = escape_html(who),
        resource = escape_html(&sign_in.resource),
        host = escape_html(&host),
        action = escape_html(&format!("{}/oauth/consent", server.issuer)),
        consent = escape_html(consent),
    );
    static_page(StatusCode::OK, body)
}

#[derive(Debug, Deserialize)]
struct ConsentForm {
    consent: String,
    decision: String,
}

/// `POST /oauth/consent`: the person's decision.
pub async fn consent(
    State(server): State<Arc<AuthServer>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let step = Step::new("oauth/consent");
    let Ok(form) = serde_urlencoded::from_bytes::<ConsentForm>(&body) else {
        return server.page(&ctx, step, StatusCode::BAD_REQUEST, "request_invalid", "The consent form is malformed.");
    };
    let taken = async { server.vault.store().await?.take_oauth_consent(&digest(&form.consent)).await };
    let pending = match taken.await {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            return server.page(
                &ctx,
                step,
                StatusCode::BAD_REQUEST,
                "consent_invalid",
                "This consent was answered already or is unknown. Start again from your application.",
            );
        }
        Err(e) => {
            return server.page(&ctx, step, StatusCode::SERVICE_UNAVAILABLE, super::Refusal::unavailable(&e).reason, "Try again shortly.");
        }
    };
    let (Ok(sign_in), Some(Ok(identity))) =
        (serde_json::from_slice::<SignIn>(&pending.request), pending.identity.as_deref().map(serde_json::from_str::<Identity>))
    else {
        return server.page(&ctx, step, StatusCode::BAD_REQUEST, "consent_invalid", "This consent cannot be completed.");
    };
    let step = step.client(&sign_in.client_id).person(&identity);
    if !same_browser(&headers, &pending.browser_hash) {
        return server.page(
            &ctx,
            step,
            StatusCode::BAD_REQUEST,
            "browser_mismatch",
            "This consent belongs to a sign-in started in another browser.",
        );
    }
    let to = (sign_in.redirect_uri.as_str(), sign_in.state.as_deref());
    if pending.created_at < server.now() - SIGN_IN_LIFETIME_SECS {
        return server.back(&ctx, step, to, "access_denied", "sign_in_expired", "the sign-in took too long");
    }
    if form.decision != "allow" {
        return server.back(&ctx, step, to, "access_denied", "consent_denied", "the person did not allow access");
    }
    let agreed =
        async { server.vault.store().await?.put_oauth_consent(&identity.subject, &sign_in.client_id, &sign_in.scope.join(" ")).await };
    if let Err(e) = agreed.await {
        let refusal = super::Refusal::unavailable(&e);
        return server.back(&ctx, step, to, refusal.error, refusal.reason, "try again shortly");
    }
    match server.finish(&sign_in, &identity).await {
        Ok(response) => {
            server.audit(&ctx, &step, Verdict { decision: "allow", reason: "consent_given", status: 302 }, None);
            response
        }
        Err(refusal) => server.back(&ctx, step, to, refusal.error, refusal.reason, "try again shortly"),
    }
}

impl AuthServer {
    /// The grant and its code; the redirect that hands the code to the client.
    async fn finish(&self, sign_in: &SignIn, identity: &Identity) -> Result<Response, super::Refusal> {
        let code = random_token().ok_or_else(|| super::Refusal::unavailable(&"no entropy"))?;
        let grant = GrantRow {
            grant_id: uuid::Uuid::new_v4().to_string(),
            client_id: sign_in.client_id.clone(),
            subject: identity.subject.clone(),
            identity: serde_json::to_string(identity).unwrap_or_default(),
            scope: sign_in.scope.join(" "),
            resource: sign_in.resource.clone(),
            revoked: false,
        };
        let row = CodeRow {
            grant_id: grant.grant_id.clone(),
            client_id: sign_in.client_id.clone(),
            redirect_uri: sign_in.redirect_uri.clone(),
            code_challenge: sign_in.code_challenge.clone(),
            created_at: 0,
        };
        let stored = async {
            let store = self.vault.store().await?;
            store.insert_oauth_grant(&grant).await?;
            store.insert_oauth_code(&digest(code.expose()), &row).await
        };
        stored.await.map_err(|e| super::Refusal::unavailable(&e))?;
        let mut params = vec![("code", code.expose()), ("iss", self.issuer.as_str())];
        if let Some(state) = &sign_in.state {
            params.push(("state", state));
        }
        Ok(redirect(&sign_in.redirect_uri, &params))
    }
}
