//! Warden's own authorization server, bridged to the company's identity provider
//! (docs/authorization-server.md).
//!
//! MCP clients register here (RFC 7591), are sent to `/oauth/authorize` (PKCE S256 and
//! `resource` required), sign in at the upstream IdP (Warden is one confidential OpenID Connect
//! client there, with its own state, nonce and PKCE), consent once per client, and redeem a code
//! at `/oauth/token` for Warden's own access token: an RS256 JWT for Warden's resource, signed
//! with the keys of [`crate::signing`], which the identity stage trusts like any issuer. Refresh
//! tokens rotate, and a used one presented again revokes its whole grant. Enterprise-managed
//! authorization: an identity assertion grant (ID-JAG) from a trusted IdP is redeemed at the
//! same token endpoint without a browser ([`idjag`]).
//!
//! In: the config, the vault (every step is a row in its store, so any replica completes any
//! step), the resource metadata (the scopes in force). Out: tokens, and one audit event per
//! step (`oauth/register`, `oauth/authorize`, `oauth/callback`, `oauth/consent`, `oauth/token`,
//! `oauth/revoke`). Never logs or audits a code, token, secret or assertion.

pub mod config;
mod flow;
mod idjag;
pub(crate) mod registration;
#[cfg(test)]
mod tests;
mod token;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::credentials::Vault;
use crate::edge::RequestContext;
use crate::identity::metadata::ResourceMetadata;
use crate::signing::{Keys, SigningError};
pub use config::AuthorizationServerConfig;
pub use flow::{STATE_PREFIX, callback};
pub use upstream::Identity;

/// How long a code may wait to be redeemed.
const CODE_LIFETIME_SECS: i64 = 60;
/// How long a sign-in may take, from `/authorize` to the consent decision.
const SIGN_IN_LIFETIME_SECS: i64 = 600;

/// The authorization server.
pub struct AuthServer {
    /// Warden's issuer: `server.public_url`.
    pub issuer: String,
    /// Warden's MCP resource: the audience of every token it issues.
    pub resource: String,
    vault: Arc<Vault>,
    upstream: upstream::UpstreamIdp,
    registration: config::RegistrationConfig,
    access_ttl: Duration,
    refresh_ttl: Duration,
    scopes: Option<Vec<String>>,
    metadata: Arc<ResourceMetadata>,
    audit: Arc<AuditSink>,
    pub keys: Arc<Keys>,
    id_jag: Option<idjag::IdJag>,
    /// Fetches client ID metadata documents.
    documents: reqwest::Client,
    pace: Pace,
    limits: Arc<crate::limits::Limits>,
    clock: SharedClock,
    /// Keep each person's IdP tokens from their sign-in (a token exchange needs them).
    keep_idp_tokens: bool,
    /// One refresh of a person's IdP tokens at a time.
    refreshing: dashmap::DashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// What the authorization server is built from besides its config.
pub struct Parts {
    pub public_base: String,
    pub resource: String,
    pub vault: Option<Arc<Vault>>,
    pub metadata: Arc<ResourceMetadata>,
    pub audit: Arc<AuditSink>,
    pub http: reqwest::Client,
    pub clock: SharedClock,
    /// `server.public_url` was set (an authorization server needs a stable public URL).
    pub public_url_set: bool,
    /// The upstream settings (the SSRF guard that client metadata fetches go through).
    pub upstream_config: crate::upstream::config::UpstreamConfig,
    /// Where relative paths in the config start.
    pub base_dir: std::path::PathBuf,
    /// Which address a request comes from (`server.trusted_proxies`).
    pub limits: Arc<crate::limits::Limits>,
    /// Warden's signing keys (with the vault).
    pub keys: Option<Arc<Keys>>,
    /// A `token_exchange` credential is configured: keep each person's IdP tokens, sealed, as
    /// its subject token.
    pub keep_idp_tokens: bool,
}

impl AuthServer {
    pub fn build(config: &AuthorizationServerConfig, parts: Parts) -> Result<Self, ConfigError> {
        let vault = parts.vault.ok_or_else(|| {
            ConfigError::new("authorization_server", "needs `vault:` (clients, codes, grants and signing keys are kept there)")
        })?;
        if !parts.public_url_set {
            return Err(ConfigError::new("server.public_url", "the authorization server needs the public URL clients and the IdP use"));
        }
        if config.access_token_ttl < Duration::from_secs(60) || config.access_token_ttl > Duration::from_secs(3600) {
            return Err(ConfigError::new("authorization_server.access_token_ttl", "must be between 1m and 1h"));
        }
        if config.refresh_token_ttl < Duration::from_secs(3600) {
            return Err(ConfigError::new("authorization_server.refresh_token_ttl", "must be at least 1h"));
        }
        for (i, s) in config.scopes.iter().flatten().enumerate() {
            if !crate::tools::valid_scope(s) {
                return Err(ConfigError::new(format!("authorization_server.scopes[{i}]"), "not a valid OAuth scope token"));
            }
        }
        for (i, p) in config.registration.redirect_uris.iter().flatten().enumerate() {
            registration::check_pattern(p)
                .map_err(|e| ConfigError::new(format!("authorization_server.registration.redirect_uris[{i}]"), e))?;
        }
        match url::Url::parse(&config.upstream.issuer) {
            Ok(u) if matches!(u.scheme(), "https" | "http") => {}
            _ => return Err(ConfigError::new("authorization_server.upstream.issuer", "must be an absolute https URL")),
        }
        if config.upstream.client_id.is_empty() {
            return Err(ConfigError::new("authorization_server.upstream.client_id", "must not be empty"));
        }
        let keys =
            parts.keys.ok_or_else(|| ConfigError::new("authorization_server", "needs `vault:` (its signing keys are kept there)"))?;
        let upstream = upstream::UpstreamIdp::new(&config.upstream, &parts.public_base, parts.http.clone(), Arc::clone(&parts.clock))?;
        let id_jag = match &config.id_jag {
            Some(c) => Some(idjag::IdJag::new(c, parts.http, Arc::clone(&parts.clock))?),
            None => None,
        };
        let mut roots = Vec::new();
        if let Some(file) = &config.registration.client_metadata_ca_file {
            let field = "authorization_server.registration.client_metadata_ca_file";
            let pem = std::fs::read(parts.base_dir.join(file))
                .map_err(|e| ConfigError::new(field, format!("cannot read {file}: {}", e.kind())))?;
            roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ConfigError::new(field, e.to_string()))?;
        }
        let documents = crate::upstream::document_client(&parts.upstream_config, &roots)?;
        Ok(Self {
            issuer: parts.public_base,
            resource: parts.resource,
            vault,
            upstream,
            registration: config.registration.clone(),
            access_ttl: config.access_token_ttl,
            refresh_ttl: config.refresh_token_ttl,
            scopes: config.scopes.clone(),
            metadata: parts.metadata,
            audit: parts.audit,
            keys,
            id_jag,
            documents,
            pace: Pace::default(),
            limits: parts.limits,
            clock: parts.clock,
            keep_idp_tokens: parts.keep_idp_tokens,
            refreshing: dashmap::DashMap::new(),
        })
    }

    /// Keeps `identity`'s IdP tokens from their sign-in, sealed, when a token exchange needs
    /// them; nothing otherwise.
    pub(crate) async fn keep_idp_tokens(
        &self,
        store: &crate::store::Store,
        identity: &upstream::Identity,
        tokens: &upstream::IdpTokens,
    ) -> Result<(), crate::store::StoreError> {
        if !self.keep_idp_tokens {
            return Ok(());
        }
        self.put_idp_tokens(store, &identity.subject, tokens).await
    }

    /// Stores `subject`'s IdP tokens, sealed, with when their access token expires.
    async fn put_idp_tokens(
        &self,
        store: &crate::store::Store,
        subject: &str,
        tokens: &upstream::IdpTokens,
    ) -> Result<(), crate::store::StoreError> {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(tokens).unwrap_or_default());
        let expires_at = tokens.expires_in.map(|s| self.now().saturating_add(i64::try_from(s).unwrap_or(i64::MAX)));
        store.put_idp_tokens(subject, &json, expires_at).await
    }

    /// The upstream IdP's issuer.
    pub fn upstream_issuer(&self) -> &str {
        &self.upstream.issuer
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.unix()).unwrap_or(i64::MAX)
    }

    /// The scopes Warden may grant now: those in force (tools, servers, routes), narrowed by
    /// `authorization_server.scopes`.
    fn grantable(&self) -> Vec<String> {
        let supported = self.metadata.scopes().supported.clone();
        match &self.scopes {
            Some(allowed) => allowed.iter().filter(|s| supported.contains(s) || supported.is_empty()).cloned().collect(),
            None => supported,
        }
    }

    /// Requested ∩ grantable; with nothing requested, what a 401 challenge asks for.
    fn granted_scopes(&self, requested: Option<&str>) -> Vec<String> {
        let grantable = self.grantable();
        let mut granted: Vec<String> = match requested.map(str::split_whitespace) {
            Some(asked) => asked.filter(|s| grantable.iter().any(|g| g == s)).map(str::to_owned).collect(),
            None => self.metadata.scopes().challenge.iter().filter(|s| grantable.contains(s)).cloned().collect(),
        };
        granted.sort();
        granted.dedup();
        granted
    }

    /// RFC 8414 authorization server metadata.
    pub fn metadata_document(&self) -> Value {
        let base = &self.issuer;
        let mut grants = vec!["authorization_code", "refresh_token"];
        if self.id_jag.is_some() {
            grants.push(idjag::GRANT_TYPE);
        }
        let mut doc = json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grants,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": self.grantable(),
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": self.registration.client_id_metadata_documents,
        });
        if self.registration.dynamic {
            doc["registration_endpoint"] = json!(format!("{base}/oauth/register"));
        }
        if let Some(id_jag) = &self.id_jag {
            doc["identity_assertion_issuers_supported"] = json!(id_jag.issuer_ids());
        }
        doc
    }

    /// A Warden access token for `identity` and `client_id` with `scope`: (token, lifetime).
    async fn access_token(&self, identity: &Identity, client_id: &str, scope: &[String]) -> Result<(String, u64), SigningError> {
        let keys = self.keys.current().await?;
        let now = self.clock.unix();
        let ttl = self.access_ttl.as_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": identity.subject,
            "aud": self.resource,
            "client_id": client_id,
            "scope": scope.join(" "),
            "iat": now,
            "exp": now + ttl,
            "jti": uuid::Uuid::now_v7().to_string(),
            "idp": identity.idp,
        });
        if !identity.roles.is_empty() {
            claims["roles"] = json!(identity.roles);
        }
        for (name, value) in [("tenant", &identity.tenant), ("preferred_username", &identity.username), ("email", &identity.email)] {
            if let Some(v) = value {
                claims[name] = json!(v);
            }
        }
        Ok((keys.set.current(crate::signing::ACCESS_TOKENS)?.sign("at+jwt", &claims)?, ttl))
    }

    /// One audit event for one step.
    fn audit(&self, ctx: &RequestContext, step: &Step<'_>, verdict: Verdict<'_>, explanation: Option<String>) {
        let mut event = AuditEvent::connect(ctx, step.name, None, step.person, verdict);
        // The IdP concerned, even before anyone signed in.
        event.issuer = Some(step.person.map_or(self.upstream.issuer.as_str(), |(idp, _)| idp).to_owned());
        event.client_id = step.client_id.map(str::to_owned);
        event.tenant = step.tenant.map(str::to_owned);
        event.explanation = explanation;
        self.audit.emit(event);
    }
}

/// Bounds, per client address, on what a caller who has not signed in can make Warden store:
/// registrations (a row each, kept) and sign-ins started (a row each, for an hour).
struct Pace {
    registrations: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    sign_ins: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
}

/// Above this many tracked addresses, those whose allowance has fully come back are dropped.
const PACE_TRACKED: usize = 4096;

impl Default for Pace {
    fn default() -> Self {
        let quota = |burst: u32, every: Duration| {
            let burst = std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN);
            governor::Quota::with_period(every).map_or_else(|| governor::Quota::per_minute(burst), |q| q.allow_burst(burst))
        };
        Self {
            // 10 at once, then one every 6 s (600 an hour).
            registrations: governor::RateLimiter::keyed(quota(10, Duration::from_secs(6))),
            // 30 at once, then one a second.
            sign_ins: governor::RateLimiter::keyed(quota(30, Duration::from_secs(1))),
        }
    }
}

impl Pace {
    /// Takes one from `ip`'s allowance; how long to wait when there is none.
    fn take(limiter: &governor::DefaultKeyedRateLimiter<std::net::IpAddr>, ip: std::net::IpAddr) -> Result<(), Duration> {
        use governor::clock::Clock;
        if limiter.len() > PACE_TRACKED {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
    }
}

impl AuthServer {
    /// The client address of a request (behind `server.trusted_proxies`, the forwarded one).
    fn client_ip(&self, socket: Option<std::net::SocketAddr>, headers: &http::HeaderMap) -> std::net::IpAddr {
        self.limits.client_ip(socket.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |s| s.ip()), headers)
    }
}

/// The connection's address, when the server recorded it.
type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// Which step an audit event is about, and who it concerns so far.
#[derive(Debug, Clone, Copy)]
struct Step<'a> {
    name: &'static str,
    client_id: Option<&'a str>,
    /// (issuer, subject): the upstream IdP and the person, once known.
    person: Option<(&'a str, &'a str)>,
    tenant: Option<&'a str>,
}

impl<'a> Step<'a> {
    fn new(name: &'static str) -> Self {
        Self { name, client_id: None, person: None, tenant: None }
    }
    fn client(mut self, client_id: &'a str) -> Self {
        self.client_id = Some(client_id);
        self
    }
    fn person(mut self, identity: &'a Identity) -> Self {
        self.person = Some((identity.idp.as_str(), identity.subject.as_str()));
        self.tenant = identity.tenant.as_deref();
        self
    }
}

/// An OAuth error answer (RFC 6749 §5.2): JSON, `no-store`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (status, axum::Json(json!({"error": error, "error_description": description}))).into_response();
    no_store(&mut response);
    response
}

/// `Retry-After`, in whole seconds (at least one).
fn retry_after(response: &mut Response, wait: Duration) {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
}

fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A refusal at a JSON endpoint: the OAuth error the RFCs name, and the audit reason.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    /// The OAuth `error`.
    error: &'static str,
    /// The audit reason: a stable code.
    reason: &'static str,
    description: String,
}

impl Refusal {
    fn new(status: StatusCode, error: &'static str, reason: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, reason, description: description.into() }
    }
    fn bad(error: &'static str, reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, reason, description)
    }
    fn grant(reason: &'static str, description: impl Into<String>) -> Self {
        Self::bad("invalid_grant", reason, description)
    }
    fn unavailable(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "authorization server storage failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "store_unavailable", "try again shortly")
    }
    fn response(&self) -> Response {
        oauth_error(self.status, self.error, &self.description)
    }
}

/// The authorization server's endpoints. `/oauth/callback` is the connect flow's, which hands
/// states that start with [`STATE_PREFIX`] to [`callback`].
pub fn routes(server: Arc<AuthServer>) -> Router {
    let public = Router::new()
        .route("/.well-known/oauth-authorization-server", get(token::metadata))
        .route("/oauth/register", post(registration::register))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
        .layer(axum::middleware::from_fn(crate::cors::oauth));
    Router::new()
        .route("/oauth/authorize", get(flow::authorize))
        .route("/oauth/consent", post(flow::consent))
        .merge(public)
        .with_state(server)
}

/// With Warden as the authorization server, a caller's token is Warden's own: the subject token
/// of a token exchange is the IdP token kept from their sign-in, refreshed (once at a time per
/// person) when it is about to expire.
impl crate::credentials::exchange::SubjectTokens for AuthServer {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    fn subject_token<'a>(
        &'a self,
        principal: &'a crate::identity::Principal,
        kind: crate::credentials::exchange::IdpToken,
    ) -> futures::future::BoxFuture<'a, Option<crate::secret::Secret>> {
        Box::pin(async move {
            let subject = principal.subject.as_str();
            let lock = Arc::clone(&self.refreshing.entry(subject.to_owned()).or_default());
            let token = {
                let _one = lock.lock().await;
                self.kept_idp_token(subject, kind).await
            };
            drop(lock);
            // The person's lock goes when nobody else holds it: the map stays as small as the
            // refreshes under way.
            self.refreshing.remove_if(subject, |_, l| Arc::strong_count(l) == 1);
            token
        })
    }
}

impl AuthServer {
    /// A person's kept IdP token of `kind`, refreshed first when about to expire.
    async fn kept_idp_token(&self, subject: &str, kind: crate::credentials::exchange::IdpToken) -> Option<crate::secret::Secret> {
        let store = self.vault.store().await.ok()?;
        let (json, expires_at) = store.idp_tokens(subject).await.ok()??;
        let mut tokens: upstream::IdpTokens = serde_json::from_slice(&json).ok()?;
        if expires_at.is_some_and(|at| at <= self.now().saturating_add(30)) {
            tokens = match self.upstream.refresh(&tokens).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    tracing::info!(error = %e, "the IdP tokens of a sign-in could not be refreshed");
                    return None;
                }
            };
            self.put_idp_tokens(store, subject, &tokens).await.ok()?;
        }
        match kind {
            crate::credentials::exchange::IdpToken::AccessToken => tokens.access_token,
            crate::credentials::exchange::IdpToken::IdToken => tokens.id_token,
        }
    }
}
