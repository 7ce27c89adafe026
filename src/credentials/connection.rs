//! OAuth connections a person makes (authorization code with PKCE): shared (an operator
//! connects once) or per user (keyed by the caller's issuer and subject), stored encrypted in
//! the vault and refreshed there.
//!
//! Refresh happens `refresh_before` expiry, one at a time per connection: a mutex within the
//! process and a lease in the database row across processes and replicas (a conditional
//! UPDATE, the same on SQLite and PostgreSQL, holding no database connection while the
//! provider answers). Waiters re-read the row and use what the holder wrote. Rotated refresh
//! tokens are stored; a provider that sends none keeps the old one. `invalid_grant`,
//! `invalid_client` (any refusal) or a malformed response marks the connection unhealthy once,
//! audited; network errors and 5xx are retried by [`post_token`] and leave it healthy.
//!
//! A fresh token read from the database is reused for up to `vault.token_cache` (default 5 s,
//! never past its refresh time), so a busy caller costs one database read per interval, not one
//! per call. This replica forgets it at once on a refresh, a rejection, an unhealthy mark, a
//! reconnect or a disconnect; other replicas within the interval.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::Secret;
use super::oauth::{ClientIdentity, ConnectionMode, TokenError, TokenResponse, post_token};
use super::vault::Vault;
use crate::audit::{AuditEvent, Verdict};
use crate::identity::Principal;
use crate::store::{ConnectionKey, Tokens};
use crate::upstream::{CallContext, Upstream, read_limited};

/// How long one replica may hold the refresh lease: enough for every retry of a token request.
const LEASE: Duration = Duration::from_secs(45);
/// How long a caller waits for another replica's refresh before giving up.
const LEASE_WAIT: Duration = Duration::from_secs(15);
const LEASE_POLL: Duration = Duration::from_millis(50);
/// Cached tokens kept at most; the cache is emptied when full.
const CACHE_MAX: usize = 100_000;

/// A fresh token read from the database, reusable until `until`.
struct CachedToken {
    token: Secret,
    version: u64,
    until: std::time::Instant,
}

/// Why a connection gave no token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Token(#[from] TokenError),
    /// A per-user connection the caller has not made (or must renew): a single-use link for
    /// them.
    #[error("{message}")]
    ConnectionRequired { url: String, message: String },
    /// A shared connection no operator has made yet.
    #[error("the gateway's connection for this backend has not been made; an operator must connect it")]
    NotConnected,
    /// A shared connection the provider refused to refresh; an operator must reconnect it.
    #[error("the gateway's connection for this backend needs to be reconnected by an operator")]
    Unhealthy,
    /// The vault's database failed.
    #[error("the gateway's credential store is unavailable")]
    Vault,
    /// A token exchange gave no token for the caller.
    #[error(transparent)]
    Exchange(#[from] super::exchange::ExchangeError),
}

impl CredentialError {
    /// The stable code callers and audit see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Token(e) => e.code(),
            Self::ConnectionRequired { .. } => "connection_required",
            Self::NotConnected => "upstream_credential_not_connected",
            Self::Unhealthy => "upstream_credential_unhealthy",
            Self::Vault => "upstream_credential_unavailable",
            Self::Exchange(e) => e.code(),
        }
    }
}

/// The provider's endpoints.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorize: Option<url::Url>,
    pub token: url::Url,
    /// The issuer, when discovered: authorization responses that name another are refused
    /// (RFC 9207).
    pub issuer: Option<String>,
    /// The provider promises `iss` on every authorization response
    /// (`authorization_response_iss_parameter_supported`), so one without it is refused.
    pub iss_required: bool,
}

/// Endpoints from a preset or the config, or discovered from an issuer on first use.
#[derive(Debug)]
pub enum EndpointSource {
    Fixed(Endpoints),
    Discover { issuer: url::Url, authorize: Option<url::Url>, token: Option<url::Url>, found: OnceCell<Endpoints> },
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    #[serde(default)]
    authorization_endpoint: Option<String>,
    token_endpoint: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Why discovery failed: it is reported like an unreachable provider.
fn discovery_failed(issuer: &url::Url, why: &str) -> TokenError {
    tracing::error!(issuer = %issuer, why, "OAuth provider discovery failed");
    TokenError::Unavailable
}

impl EndpointSource {
    pub async fn get(&self, upstream: &Upstream) -> Result<&Endpoints, TokenError> {
        match self {
            Self::Fixed(e) => Ok(e),
            Self::Discover { issuer, authorize, token, found } => {
                found.get_or_try_init(|| Self::discover(upstream, issuer, authorize.clone(), token.clone())).await
            }
        }
    }

    /// RFC 8414 metadata at `/.well-known/oauth-authorization-server{path}`, then OpenID
    /// Connect discovery at `{issuer}/.well-known/openid-configuration`. The document's issuer
    /// must equal the configured one; a provider that lists PKCE methods must list S256.
    async fn discover(
        upstream: &Upstream,
        issuer: &url::Url,
        authorize: Option<url::Url>,
        token: Option<url::Url>,
    ) -> Result<Endpoints, TokenError> {
        let path = issuer.path().trim_end_matches('/');
        let mut rfc8414 = issuer.clone();
        rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
        let oidc = url::Url::parse(&format!("{}/.well-known/openid-configuration", issuer.as_str().trim_end_matches('/')))
            .map_err(|_| discovery_failed(issuer, "bad issuer URL"))?;
        let mut metadata = None;
        for url in [rfc8414, oidc] {
            let Ok(request) = upstream.request(reqwest::Method::GET, url) else { continue };
            let Ok(response) = request.timeout(Duration::from_secs(10)).send().await else { continue };
            if !response.status().is_success() {
                continue;
            }
            let Ok(body) = read_limited(response, 256 * 1024).await else { continue };
            if let Ok(m) = serde_json::from_slice::<ServerMetadata>(&body) {
                metadata = Some(m);
                break;
            }
        }
        let m = metadata.ok_or_else(|| discovery_failed(issuer, "no authorization server metadata"))?;
        if m.issuer.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
            return Err(discovery_failed(issuer, "the metadata names another issuer"));
        }
        if m.code_challenge_methods_supported.as_ref().is_some_and(|methods| !methods.iter().any(|x| x == "S256")) {
            return Err(discovery_failed(issuer, "the provider does not support PKCE S256"));
        }
        let parse = |u: &str| url::Url::parse(u).map_err(|_| discovery_failed(issuer, "an endpoint is not a URL"));
        let discovered_authorize = m.authorization_endpoint.as_deref().map(parse).transpose()?;
        Ok(Endpoints {
            authorize: authorize.or(discovered_authorize),
            token: token.map_or_else(|| parse(&m.token_endpoint), Ok)?,
            iss_required: m.authorization_response_iss_parameter_supported,
            issuer: Some(m.issuer),
        })
    }
}

/// The parts of an [`OAuthConnection`] that come from config.
pub struct ConnectionSettings {
    pub name: String,
    pub mode: ConnectionMode,
    /// How the provider is named to people ("github", or the issuer's host).
    pub label: String,
    pub client: ClientIdentity,
    pub scopes: Vec<String>,
    pub scope_separator: &'static str,
    pub authorize_params: Vec<(String, String)>,
    pub endpoints: EndpointSource,
    pub refresh_before: Duration,
}

/// A connection made through the authorization-code grant.
pub struct OAuthConnection {
    pub settings: ConnectionSettings,
    pub vault: Arc<Vault>,
    locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// By (issuer, subject); shared connections use ("", "").
    cache: DashMap<(String, String), CachedToken>,
}

impl std::fmt::Debug for OAuthConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConnection").field("name", &self.settings.name).field("mode", &self.settings.mode).finish_non_exhaustive()
    }
}

/// Lease times are real waits between replicas, so they stay on the machine's clock.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn vault_error(e: crate::store::StoreError) -> CredentialError {
    tracing::error!(error = %e, "vault storage failed");
    CredentialError::Vault
}

impl OAuthConnection {
    pub fn new(settings: ConnectionSettings, vault: Arc<Vault>) -> Self {
        Self { settings, vault, locks: DashMap::new(), cache: DashMap::new() }
    }

    /// Unix seconds by the vault's clock: token expiry is judged against it.
    fn now_secs(&self) -> i64 {
        i64::try_from(self.vault.clock.unix()).unwrap_or(i64::MAX)
    }

    /// Drops the cached token of `key` (after a disconnect or reconnect).
    pub fn forget(&self, key: &ConnectionKey) {
        self.cache.remove(&(key.issuer.clone(), key.subject.clone()));
    }

    /// Caches a token read from the database, until `usable_until` (Unix seconds) at the latest.
    fn remember(&self, key: &ConnectionKey, token: &Secret, version: u64, usable_until: Option<i64>) {
        let mut ttl = self.vault.token_cache;
        if let Some(t) = usable_until {
            ttl = ttl.min(Duration::from_secs(u64::try_from(t.saturating_sub(self.now_secs())).unwrap_or(0)));
        }
        if ttl.is_zero() {
            return;
        }
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        let until = self.vault.clock.now() + ttl;
        self.cache.insert((key.issuer.clone(), key.subject.clone()), CachedToken { token: token.clone(), version, until });
    }

    /// A cached token that is still usable and not the rejected one.
    fn cached(&self, key: &ConnectionKey, rejected: Option<u64>) -> Option<(Secret, u64)> {
        let cache_key = (key.issuer.clone(), key.subject.clone());
        let hit = self
            .cache
            .get(&cache_key)
            .filter(|c| self.vault.clock.now() < c.until && rejected != Some(c.version))
            .map(|c| (c.token.clone(), c.version));
        if hit.is_none() {
            self.cache.remove(&cache_key);
        }
        hit
    }

    /// Whose connection a call uses.
    pub fn key(&self, principal: &Principal) -> ConnectionKey {
        match self.settings.mode {
            ConnectionMode::Shared => {
                ConnectionKey { credential: self.settings.name.clone(), issuer: String::new(), subject: String::new() }
            }
            ConnectionMode::PerUser => ConnectionKey {
                credential: self.settings.name.clone(),
                issuer: principal.issuer.clone(),
                subject: principal.subject.to_string(),
            },
        }
    }

    /// The access token for `principal`'s call, refreshed if it is about to expire or if the
    /// token of version `rejected` was refused upstream. Returns the token and its version.
    pub async fn token(
        &self,
        upstream: &Upstream,
        principal: &Principal,
        ctx: &CallContext,
        rejected: Option<u64>,
    ) -> Result<(Secret, u64), CredentialError> {
        let key = self.key(principal);
        if let Some(hit) = self.cached(&key, rejected) {
            return Ok(hit);
        }
        let store = self.vault.store().await.map_err(vault_error)?;
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        let mut first_seen = None;
        loop {
            let Some(conn) = store.get_connection(&key).await.map_err(vault_error)? else {
                return Err(self.missing(&key, false).await);
            };
            if !conn.healthy {
                return Err(self.missing(&key, true).await);
            }
            let version = u64::try_from(conn.version).unwrap_or_default();
            let rejected_now = rejected == Some(version);
            let now = self.now_secs();
            let window = i64::try_from(self.settings.refresh_before.as_secs()).unwrap_or(i64::MAX);
            let expires = conn.tokens.expires_at;
            // A token someone else refreshed while this call waited is used while unexpired, even
            // inside the window (a provider may issue tokens shorter-lived than the window).
            let refreshed_meanwhile = *first_seen.get_or_insert(conn.version) != conn.version;
            let margin = if refreshed_meanwhile { 0 } else { window };
            if !rejected_now && expires.is_none_or(|e| now.saturating_add(margin) < e) {
                self.remember(&key, &conn.tokens.access_token, version, expires.map(|e| e.saturating_sub(margin)));
                return Ok((conn.tokens.access_token, version));
            }
            let Some(refresh_token) = conn.tokens.refresh_token.clone() else {
                // Nothing to refresh with: usable until it really expires, then reconnect.
                if !rejected_now && expires.is_none_or(|e| now < e) {
                    return Ok((conn.tokens.access_token, version));
                }
                if store.mark_unhealthy(&conn.id, conn.version, "upstream_credential_expired").await.map_err(vault_error)? {
                    self.audit(principal, ctx, "error", "upstream_credential_expired");
                }
                return Err(self.missing(&key, true).await);
            };
            // One refresh at a time: a mutex in this process, the row's lease across replicas.
            let lock = Arc::clone(self.locks.entry(conn.id.clone()).or_default().value());
            let guard = lock.lock().await;
            let current = store.get_connection(&key).await.map_err(vault_error)?;
            if current.as_ref().is_none_or(|c| c.version != conn.version || !c.healthy) {
                continue; // someone refreshed, reconnected or gave up meanwhile: look again
            }
            let now_ms = now_ms();
            let until = now_ms.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX));
            if !store.try_lease(&conn.id, conn.version, now_ms, until).await.map_err(vault_error)? {
                drop(guard);
                if tokio::time::Instant::now() > deadline {
                    return Err(CredentialError::Token(TokenError::Unavailable));
                }
                tokio::time::sleep(LEASE_POLL).await;
                continue;
            }
            let result = self.refresh(upstream, &refresh_token).await;
            match result {
                Ok(response) => {
                    let tokens = Tokens {
                        access_token: response.access_token,
                        // Rotation: a new refresh token replaces the old; none sent keeps it.
                        refresh_token: response.refresh_token.or(Some(refresh_token)),
                        expires_at: response.expires_in.and_then(|s| i64::try_from(s).ok()).map(|s| self.now_secs().saturating_add(s)),
                        scope: response.scope.or(conn.tokens.scope),
                    };
                    if store.put_refreshed(&conn.id, conn.version, &tokens).await.map_err(vault_error)? {
                        self.audit(principal, ctx, "allow", "credential_refreshed");
                        let usable_until = tokens.expires_at.map(|e| e.saturating_sub(window));
                        self.remember(&key, &tokens.access_token, version + 1, usable_until);
                        return Ok((tokens.access_token, version + 1));
                    }
                }
                Err(TokenError::Unavailable) => {
                    store.release_lease(&conn.id, conn.version).await.map_err(vault_error)?;
                    self.audit(principal, ctx, "error", TokenError::Unavailable.code());
                    return Err(CredentialError::Token(TokenError::Unavailable));
                }
                Err(e) => {
                    if store.mark_unhealthy(&conn.id, conn.version, e.code()).await.map_err(vault_error)? {
                        self.audit(principal, ctx, "error", e.code());
                    }
                    return Err(CredentialError::Token(e));
                }
            }
        }
    }

    async fn refresh(&self, upstream: &Upstream, refresh_token: &Secret) -> Result<TokenResponse, TokenError> {
        let endpoints = self.settings.endpoints.get(upstream).await?;
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())];
        post_token(upstream, &endpoints.token, &self.settings.client, &form).await
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange(&self, upstream: &Upstream, code: &str, verifier: &Secret) -> Result<Tokens, TokenError> {
        let endpoints = self.settings.endpoints.get(upstream).await?;
        let redirect_uri = self.vault.redirect_uri();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier.expose()),
        ];
        // The client authenticates (RFC 6749 §4.1.3); post_token adds its credentials.
        let r = post_token(upstream, &endpoints.token, &self.settings.client, &form).await?;
        Ok(Tokens {
            access_token: r.access_token,
            refresh_token: r.refresh_token,
            expires_at: r.expires_in.and_then(|s| i64::try_from(s).ok()).map(|s| self.now_secs().saturating_add(s)),
            scope: r.scope,
        })
    }

    /// The provider's authorization URL for one flow.
    pub async fn authorization_url(&self, upstream: &Upstream, state: &str, challenge: &str) -> Result<url::Url, TokenError> {
        let endpoints = self.settings.endpoints.get(upstream).await?;
        let mut url = endpoints.authorize.clone().ok_or(TokenError::Malformed)?;
        let scope = self.settings.scopes.join(self.settings.scope_separator);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client.client_id)
                .append_pair("redirect_uri", &self.vault.redirect_uri())
                .append_pair("state", state)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if !scope.is_empty() {
                q.append_pair("scope", &scope);
            }
            for (k, v) in &self.settings.authorize_params {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// RFC 9207: the `iss` of an authorization response must name the discovered issuer, and
    /// must be present when the provider promises it. Providers configured by URL are not
    /// checked (their issuer is not known).
    pub async fn check_response_issuer(&self, upstream: &Upstream, iss: Option<&str>) -> Result<(), TokenError> {
        let endpoints = self.settings.endpoints.get(upstream).await?;
        let Some(expected) = &endpoints.issuer else { return Ok(()) };
        match iss {
            Some(iss) if iss.trim_end_matches('/') == expected.trim_end_matches('/') => Ok(()),
            Some(_) => Err(TokenError::Refused),
            None if endpoints.iss_required => Err(TokenError::Refused),
            None => Ok(()),
        }
    }

    /// The error for a caller without a usable connection: for per-user connections a
    /// single-use link bound to them.
    async fn missing(&self, key: &ConnectionKey, renew: bool) -> CredentialError {
        match self.settings.mode {
            ConnectionMode::Shared if renew => CredentialError::Unhealthy,
            ConnectionMode::Shared => CredentialError::NotConnected,
            ConnectionMode::PerUser => match self.vault.connect_link(key).await {
                Ok(url) => {
                    let message = if renew {
                        format!("Your {} connection has expired or was revoked. Reconnect it to use this tool: {url}", self.settings.label)
                    } else {
                        format!("Connect your {} account to use this tool: {url}", self.settings.label)
                    };
                    CredentialError::ConnectionRequired {
                        message: format!("{message} (single-use link, valid for 10 minutes; then call the tool again)"),
                        url,
                    }
                }
                Err(e) => vault_error(e),
            },
        }
    }

    fn audit(&self, principal: &Principal, ctx: &CallContext, decision: &'static str, reason: &str) {
        let verdict = Verdict { decision, reason, status: 0 };
        self.vault.audit.emit(AuditEvent::credential_refresh(&ctx.request_id, &ctx.traceparent, principal, &self.settings.name, verdict));
    }
}
