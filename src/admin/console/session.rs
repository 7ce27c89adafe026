//! Console sessions: a signed cookie (any replica reads it), its CSRF token, sign-in with the
//! admin token, and sign-out, which ends the session server-side: its id is recorded as revoked
//! in the vault's database (every replica refuses it) and in this process (also without a
//! vault). Rotating the admin token ends every session (the signing key derives from it).

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, http::HeaderMap};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::{ConsoleState, esc, page, page_with_status};
use crate::admin::{Actor, allowed_by, refused};
use crate::edge::RequestContext;
use crate::error::AdminError;

pub const COOKIE: &str = "warden_console";
/// The sign-in form's own CSRF cookie (double submit), before there is a session.
const PRE_COOKIE: &str = "warden_console_pre";

/// A signed-in administrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// `admin` for the admin token, else the identity provider's subject.
    pub subject: String,
    pub issuer: Option<String>,
    /// Unix seconds.
    pub exp: u64,
    pub csrf: String,
    /// The session's id, which a sign-out revokes. (A cookie without one is not accepted.)
    #[serde(default)]
    pub sid: String,
    /// The person's roles at sign-in (for deciding approvals as themselves).
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Session {
    pub fn actor(&self) -> Actor {
        Actor { subject: self.subject.clone(), issuer: self.issuer.clone(), roles: self.roles.clone() }
    }

    /// The hidden form field every change carries.
    pub fn csrf_field(&self) -> String {
        format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&self.csrf))
    }
}

/// Issues and reads session cookies.
pub struct Sessions {
    key: hmac::Key,
    lifetime: Duration,
    secure: bool,
    /// Sessions signed out through this process, until their cookies expire.
    revoked: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Sessions {
    /// The signing key is derived from the admin token: every replica shares it, and rotating
    /// the token ends every session.
    pub fn new(admin_token: &crate::secret::Secret, lifetime: Duration, secure: bool) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, admin_token.expose().as_bytes());
        let derived = hmac::sign(&root, b"warden console session v1");
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), lifetime, secure, revoked: std::sync::Mutex::default() }
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64, same_site: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/admin; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}")
    }

    /// A new session's `Set-Cookie` value.
    pub fn issue(&self, actor: &Actor) -> Option<String> {
        let session = Session {
            subject: actor.subject.clone(),
            issuer: actor.issuer.clone(),
            exp: now().saturating_add(self.lifetime.as_secs()),
            csrf: crate::credentials::vault::random_token()?.expose().to_owned(),
            sid: crate::credentials::vault::random_token()?.expose().to_owned(),
            roles: actor.roles.clone(),
        };
        let payload = B64.encode(serde_json::to_vec(&session).ok()?);
        let signature = B64.encode(hmac::sign(&self.key, payload.as_bytes()).as_ref());
        Some(self.cookie(COOKIE, &format!("{payload}.{signature}"), self.lifetime.as_secs(), "Strict"))
    }

    /// The session the request's cookie proves, if any and unexpired.
    pub fn read(&self, headers: &HeaderMap) -> Option<Session> {
        let value = cookie(headers, COOKIE)?;
        let (payload, signature) = value.split_once('.')?;
        let signature = B64.decode(signature).ok()?;
        hmac::verify(&self.key, payload.as_bytes(), &signature).ok()?;
        let session: Session = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        let revoked = self.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(&session.sid);
        (session.exp > now() && !session.sid.is_empty() && !revoked).then_some(session)
    }

    /// Ends `session` in this process.
    fn revoke(&self, session: &Session) {
        let mut revoked = self.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = now();
        revoked.retain(|_, exp| *exp > now);
        revoked.insert(session.sid.clone(), session.exp);
    }

    pub fn clear(&self) -> String {
        self.cookie(COOKIE, "", 0, "Strict")
    }

    /// Signs `value` for a short-lived cookie of the sign-in flows.
    pub fn seal(&self, value: &str) -> String {
        format!("{value}.{}", B64.encode(hmac::sign(&self.key, value.as_bytes()).as_ref()))
    }

    pub fn unseal(&self, sealed: &str) -> Option<String> {
        let (value, signature) = sealed.rsplit_once('.')?;
        hmac::verify(&self.key, value.as_bytes(), &B64.decode(signature).ok()?).ok()?;
        Some(value.to_owned())
    }

    /// A sign-in flow's cookie: `SameSite=Lax`, since the identity provider sends the browser
    /// back with a cross-site navigation that must carry it.
    pub fn flow_cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        self.cookie(name, value, max_age, "Lax")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

pub use crate::edge::cookie;

/// Constant-time equality of two secrets of any length.
fn same(a: &str, b: &str) -> bool {
    bool::from(sha2::Sha256::digest(a.as_bytes()).ct_eq(&sha2::Sha256::digest(b.as_bytes())))
}

impl ConsoleState {
    /// The request's session, if its cookie is valid and it was not signed out (here, or on
    /// any replica sharing the vault's database; a database that cannot answer refuses it).
    pub async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let session = self.sessions.read(headers)?;
        if let Some(vault) = &self.admin.vault {
            let revoked = match vault.store().await {
                Ok(store) => store.console_session_revoked(&session.sid).await,
                Err(e) => Err(e),
            };
            match revoked {
                Ok(false) => {}
                Ok(true) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "console session revocations could not be read: the session is refused");
                    return None;
                }
            }
        }
        Some(session)
    }

    /// The session, or a redirect to sign in.
    pub async fn viewer(&self, headers: &HeaderMap) -> Result<Session, Box<Response>> {
        self.session(headers).await.ok_or_else(|| Box::new(Redirect::to("/admin/sign-in").into_response()))
    }

    /// A form that could not be read (no `csrf` field, not a form at all): a forged or broken
    /// submission, refused `403 csrf_failed` and audited like a wrong CSRF token.
    pub async fn unreadable_form(&self, ctx: &RequestContext, headers: &HeaderMap, action: &str) -> Response {
        let session = self.session(headers).await;
        let actor = session.as_ref().map_or_else(Actor::admin_token, Session::actor);
        self.admin.audit.emit(refused(ctx, &actor, action, None, AdminError::CsrfFailed));
        super::refusal_page(session.as_ref(), AdminError::CsrfFailed, None)
    }

    /// A posted change: the form as read (one that could not be read is refused as forged), then
    /// [`ConsoleState::changer`]'s checks with the form's `csrf` field.
    pub async fn posted<T>(
        &self,
        ctx: &RequestContext,
        headers: &HeaderMap,
        action: &str,
        form: Option<T>,
        csrf: impl Fn(&T) -> &str,
    ) -> Result<(T, Session), Box<Response>> {
        let Some(form) = form else { return Err(Box::new(self.unreadable_form(ctx, headers, action).await)) };
        let session = self.changer(ctx, headers, action, csrf(&form)).await?;
        Ok((form, session))
    }

    /// A change: signed in, from this origin, with the session's CSRF token; refusals audited.
    pub async fn changer(&self, ctx: &RequestContext, headers: &HeaderMap, action: &str, csrf: &str) -> Result<Session, Box<Response>> {
        let Some(session) = self.session(headers).await else {
            self.admin.audit.emit(refused(ctx, &Actor::admin_token(), action, None, AdminError::Unauthorized));
            return Err(Box::new(super::refusal_page(None, AdminError::Unauthorized, Some("sign in again"))));
        };
        let origin_ok = headers.get(http::header::ORIGIN).and_then(|o| o.to_str().ok()).is_none_or(|o| same_origin(o, &self.public_base));
        if !origin_ok || !same(csrf, &session.csrf) {
            self.admin.audit.emit(refused(ctx, &session.actor(), action, None, AdminError::CsrfFailed));
            return Err(Box::new(super::refusal_page(Some(&session), AdminError::CsrfFailed, None)));
        }
        Ok(session)
    }
}

/// Whether `origin` is the origin of `base` (scheme, host and port).
fn same_origin(origin: &str, base: &str) -> bool {
    match (url::Url::parse(origin), url::Url::parse(base)) {
        (Ok(o), Ok(b)) => o.origin() == b.origin(),
        _ => false,
    }
}

pub async fn sign_in_page(State(state): State<Arc<ConsoleState>>) -> Response {
    let Some(pre) = crate::credentials::vault::random_token() else {
        return super::refusal_page(None, AdminError::VaultUnavailable, None);
    };
    let oidc = match &state.config.oidc {
        Some(o) => format!(
            "<p><a class=\"button\" id=\"oidc-sign-in\" href=\"/admin/oidc/start\">Sign in with {}</a></p><p class=\"muted\">or with the admin token:</p>",
            esc(&o.issuer)
        ),
        None => String::new(),
    };
    let body = format!(
        "{oidc}<form method=\"post\" action=\"/admin/sign-in\" class=\"card\"><input type=\"hidden\" name=\"csrf\" value=\"{pre}\">\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label>\
         <button id=\"sign-in\">Sign in</button></form>",
        pre = esc(pre.expose())
    );
    with_cookie(page("Sign in", None, &body), &state.sessions.flow_cookie(PRE_COOKIE, pre.expose(), 600))
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    csrf: String,
}

pub async fn sign_in(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    socket: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<SignIn>,
) -> Response {
    const ACTION: &str = "admin/console.sign_in";
    let Some(form) = form else { return state.unreadable_form(&ctx, &headers, ACTION).await };
    let admin = Actor::admin_token();
    let ip = state.admin.client_ip(socket.map(|Extension(c)| c.0), &headers);
    if let Some(refusal) = state.admin.refusal_if_blocked(Some(&ctx), ACTION, ip) {
        return too_many_page(refusal);
    }
    let pre_ok = cookie(&headers, PRE_COOKIE).is_some_and(|pre| same(pre, &form.csrf));
    if !pre_ok {
        state.admin.audit.emit(refused(&ctx, &admin, ACTION, None, AdminError::CsrfFailed));
        return super::refusal_page(None, AdminError::CsrfFailed, Some("reload the sign-in page and try again"));
    }
    let expected = state.admin.admin_token.as_ref().map(crate::secret::Secret::expose).unwrap_or_default();
    if expected.is_empty() || !same(&form.token, expected) {
        let refusal = state.admin.wrong_token(Some(&ctx), ACTION, ip);
        if refusal.status() == http::StatusCode::TOO_MANY_REQUESTS {
            return too_many_page(refusal);
        }
        let body = "<p class=\"error\" id=\"error\">That is not the admin token.</p><p><a href=\"/admin/sign-in\">Try again</a></p>";
        return page_with_status(http::StatusCode::UNAUTHORIZED, "Sign in", None, body);
    }
    start_session(&state, &ctx, &admin, "signed_in_with_admin_token")
}

/// The console's page for a client refused `too_many_attempts`, keeping the refusal's status
/// and `Retry-After`.
fn too_many_page(refusal: Response) -> Response {
    let body = "<p class=\"error\" id=\"error\">Too many wrong admin tokens from this address. Wait a minute, then try again.</p>";
    let mut page = page_with_status(refusal.status(), "Sign in", None, body);
    if let Some(retry) = refusal.headers().get(http::header::RETRY_AFTER) {
        page.headers_mut().insert(http::header::RETRY_AFTER, retry.clone());
    }
    page
}

/// Sets the session cookie and sends the browser to the console: by a page of this origin
/// rather than a redirect, so that after a sign-in that came back from the identity provider
/// (a cross-site navigation) the `SameSite=Strict` cookie is sent on the next request.
pub fn start_session(state: &ConsoleState, ctx: &RequestContext, actor: &Actor, reason: &str) -> Response {
    let Some(cookie) = state.sessions.issue(actor) else { return super::refusal_page(None, AdminError::VaultUnavailable, None) };
    state.admin.audit.emit(allowed_by(ctx, actor, "admin/console.sign_in", None, reason));
    let response = super::secured(
        axum::response::Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=/admin/tools\">\
             <title>Signed in · Warden</title></head><body><p>Signed in. <a id=\"continue\" href=\"/admin/tools\">Continue to the console</a></p></body></html>",
        )
        .into_response(),
    );
    with_cookie(response, &cookie)
}

/// `response` setting one more cookie (`Set-Cookie` value).
pub fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(cookie) {
        response.headers_mut().append(http::header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub struct Csrf {
    csrf: String,
}

/// Ends the session: revoked here and in the vault's database (every replica), the cookie
/// cleared. A revocation that cannot be stored is a 503: the session would live on elsewhere.
pub async fn sign_out(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<Csrf>,
) -> Response {
    const ACTION: &str = "admin/console.sign_out";
    let (_, session) = match state.posted(&ctx, &headers, ACTION, form, |f: &Csrf| &f.csrf).await {
        Ok(done) => done,
        Err(refusal) => return *refusal,
    };
    state.sessions.revoke(&session);
    if let Some(vault) = &state.admin.vault {
        let stored = match vault.store().await {
            Ok(store) => store.revoke_console_session(&session.sid, i64::try_from(session.exp).unwrap_or(i64::MAX)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, "a console sign-out could not be stored");
            state.admin.audit.emit(refused(&ctx, &session.actor(), ACTION, None, AdminError::VaultUnavailable));
            return super::refusal_page(
                Some(&session),
                AdminError::VaultUnavailable,
                Some("the session is still valid on other replicas: try again"),
            );
        }
    }
    let mut event = allowed_by(&ctx, &session.actor(), ACTION, None, "signed_out");
    event.status = http::StatusCode::SEE_OTHER.as_u16();
    state.admin.audit.emit(event);
    with_cookie(Redirect::to("/admin/sign-in").into_response(), &state.sessions.clear())
}
