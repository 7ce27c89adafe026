//! The admin console at `/admin`: server-rendered HTML pages over the admin operations, with a
//! little JavaScript, all embedded in the binary.
//!
//! Sign-in: the admin token (bootstrap), or OIDC through a configured issuer (authorization code
//! with PKCE; the access token is verified like any other and must carry `admin_role`). A
//! session is a cookie signed with a key derived from the admin token (so every replica accepts
//! it and rotating the token signs everyone out): `HttpOnly`, `SameSite=Strict`, `Path=/admin`,
//! `Secure` behind https, eight hours by default.
//!
//! Every change is a POST carrying the session's CSRF token (compared in constant time), from
//! this origin (`Origin` checked when sent), and is audited with who made it; pages are served
//! with a strict Content-Security-Policy (no inline script or style), `no-store` and
//! `frame-ancestors 'none'`. No page renders a secret: an API key is shown once, on the page
//! that created it.

mod approvals;
mod oidc;
mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::AdminState;
pub use session::Session;

/// `admin.console` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// How long a console session lasts. Default: 8h.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Sign-in through an identity provider, besides the admin token. Default: none.
    pub oidc: Option<OidcConfig>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { session_lifetime: Duration::from_secs(8 * 3600), oidc: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// One of `identity.issuers`: the access token it issues is verified as any other.
    pub issuer: String,
    /// This console's client at the issuer; its redirect URI is `{public_url}/admin/oidc/callback`.
    pub client_id: String,
    /// For a confidential client (sent with HTTP Basic). Default: none (a public client).
    #[serde(default)]
    pub client_secret: Option<crate::secret::Secret>,
    /// The role (as the issuer's claim mapping reads roles) an administrator holds.
    /// Default: `warden-admin`.
    #[serde(default = "default_admin_role")]
    pub admin_role: String,
    /// Scopes asked for. Default: none.
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_admin_role() -> String {
    "warden-admin".into()
}

/// What the console uses.
pub struct ConsoleState {
    pub admin: Arc<AdminState>,
    pub tools: Arc<crate::tools::Catalog>,
    pub routes: Arc<crate::routes::Routes>,
    pub policy: crate::policy::SharedPolicy,
    pub authenticator: Arc<crate::identity::Authenticator>,
    /// `{public_url}` without a trailing slash; its origin is the only one changes come from.
    pub public_base: String,
    /// The MCP resource, the audience console sign-in tokens are asked for.
    pub resource: String,
    pub config: ConsoleConfig,
    sessions: session::Sessions,
    oidc: Option<oidc::Oidc>,
    /// The calls `approve` rules hold back (with the vault).
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
}

impl ConsoleState {
    /// `None` without an admin token (no console then, as no admin API).
    pub fn new(
        admin: Arc<AdminState>,
        tools: Arc<crate::tools::Catalog>,
        routes: Arc<crate::routes::Routes>,
        policy: crate::policy::SharedPolicy,
        authenticator: Arc<crate::identity::Authenticator>,
        public_base: String,
        config: ConsoleConfig,
    ) -> Option<Self> {
        let token = admin.admin_token.clone()?;
        let secure = public_base.starts_with("https://");
        let sessions = session::Sessions::new(&token, config.session_lifetime, secure);
        let oidc = config.oidc.clone().map(oidc::Oidc::new);
        let resource = format!("{public_base}/mcp");
        Some(Self { admin, tools, routes, policy, authenticator, public_base, resource, config, sessions, oidc, approvals: None })
    }

    /// Shows and decides approval requests.
    pub fn with_approvals(mut self, approvals: Option<Arc<crate::approvals::Approvals>>) -> Self {
        self.approvals = approvals;
        self
    }
}

pub fn routes(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/admin", get(pages::home))
        .route("/admin/", get(pages::home))
        .route("/admin/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/admin/sign-out", post(session::sign_out))
        .route("/admin/oidc/start", get(oidc::start))
        .route("/admin/oidc/callback", get(oidc::callback))
        .route("/admin/tools", get(pages::tools))
        .route("/admin/pins", get(pages::pins))
        .route("/admin/pins/approve", post(pages::approve))
        .route("/admin/connections", get(pages::connections))
        .route("/admin/connections/connect", post(pages::connect))
        .route("/admin/connections/disconnect", post(pages::disconnect))
        .route("/admin/keys", get(pages::keys).post(pages::create_key))
        .route("/admin/keys/revoke", post(pages::revoke_key))
        .route("/admin/audit", get(pages::audit))
        .route("/admin/limits", get(pages::limits))
        .route("/admin/approvals", get(approvals::list))
        .route("/admin/approvals/decide", post(approvals::decide))
        .route("/admin/assets/console.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
        .route("/admin/assets/console.js", get(|| async { asset(JS, "text/javascript; charset=utf-8") }))
        .with_state(state)
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// No inline script or style, nothing from elsewhere, no framing, forms only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The security headers every console page carries.
fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Not `no-referrer`: under it browsers send `Origin: null` with every form POST, and the
    // origin check on changes would refuse them all.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A page: the layout around `body`, with the navigation when someone is signed in.
fn page(title: &str, session: Option<&Session>, body: &str) -> Response {
    page_with_status(StatusCode::OK, title, session, body)
}

fn page_with_status(status: StatusCode, title: &str, session: Option<&Session>, body: &str) -> Response {
    let nav = match session {
        Some(s) => {
            let links = [
                ("/admin/tools", "Tools"),
                ("/admin/pins", "Tool pins"),
                ("/admin/approvals", "Call approvals"),
                ("/admin/connections", "Connections"),
                ("/admin/keys", "API keys"),
                ("/admin/audit", "Audit"),
                ("/admin/limits", "Limits"),
            ]
            .iter()
            .map(|(href, text)| format!("<a href=\"{href}\">{text}</a>"))
            .collect::<String>();
            format!(
                "<nav>{links}<span class=\"who\">{who}</span><form method=\"post\" action=\"/admin/sign-out\">{csrf}<button id=\"sign-out\">Sign out</button></form></nav>",
                who = esc(&s.subject),
                csrf = s.csrf_field()
            )
        }
        None => String::new(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} · Warden</title><link rel=\"stylesheet\" href=\"/admin/assets/console.css\"><script src=\"/admin/assets/console.js\" defer></script></head>\
         <body><header><strong>Warden</strong> admin</header>{nav}<main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secured(response)
}

/// A refusal as a page (the status and the stable code shown).
fn refusal_page(session: Option<&Session>, refusal: crate::error::AdminError, detail: Option<&str>) -> Response {
    let detail = detail.map(|d| format!("<p>{}</p>", esc(d))).unwrap_or_default();
    let body = format!("<p class=\"error\" id=\"error\">{} <code>{}</code></p>{detail}", esc(refusal.message()), refusal.reason());
    page_with_status(refusal.status(), "Refused", session, &body)
}

/// HTML-escaped text.
fn esc(text: &str) -> String {
    crate::error::escape_html(text)
}

/// A console form, read whatever arrives. axum's `Form` answers a body without a field (`csrf`)
/// with 422 and one of another type (`text/plain`, a forged cross-site form) with 415, before
/// any handler runs, so nothing would be audited; here such a body is `None`, which the handler
/// refuses `403 csrf_failed`, audited ([`ConsoleState::unreadable_form`]).
pub struct Posted<T>(pub Option<T>);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Posted<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let form = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
        let Ok(body) = axum::body::Bytes::from_request(request, state).await else { return Ok(Self(None)) };
        Ok(Self(if form { serde_urlencoded::from_bytes(&body).ok() } else { None }))
    }
}
