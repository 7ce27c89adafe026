//! The development authorization server: a small but real OAuth 2.1 server for demos and
//! tests, never for production.
//!
//! Authorization server metadata (RFC 8414), dynamic client registration (RFC 7591),
//! authorization code with PKCE (S256 only) and a consent page or auto-approve, resource
//! indicators (RFC 8707) into `aud`, rotating refresh tokens, RS256 JWT access tokens
//! (RFC 9068) with `kid`, a JWKS, and OpenID Connect ID tokens (with `nonce`) when `openid` is
//! asked for, so it can also stand for a company IdP behind Warden's authorization server. Users, with roles, scopes and tenant, come from YAML.
//! State is in memory. Never logs a code, secret or token.

mod keys;
mod oauth;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

pub use keys::{KeyError, SigningKey};
pub use oauth::router;

/// A demo user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevUser {
    /// Becomes the token's `sub`.
    pub id: String,
    /// Shown on the consent page.
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The most a token for this user can carry.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Becomes the `tenant` claim.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    pub users: Vec<DevUser>,
}

impl UsersFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: Self = serde_norway::from_str(text).map_err(|e| format!("users file: {e}"))?;
        if file.users.is_empty() {
            return Err("users file: at least one user is required".into());
        }
        Ok(file)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text)
    }
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct DevIdpConfig {
    /// The `iss` of every token and the base of every endpoint URL.
    pub issuer: String,
    pub users: Vec<DevUser>,
    /// Approve every authorization as this user without showing the consent page (tests).
    pub auto_approve: Option<String>,
    /// Default: 1h.
    pub access_token_ttl: Duration,
    /// Extra root certificates (PEM) trusted when fetching client ID metadata documents, for a
    /// test's own HTTPS server. Default: none (the system's roots only).
    pub client_metadata_ca: Option<Vec<u8>>,
}

/// A registered client.
#[derive(Debug, Clone)]
struct Client {
    redirect_uris: Vec<String>,
    /// `None` for public clients (`token_endpoint_auth_method: none`).
    secret: Option<String>,
    auth_method: String,
}

/// What a code or refresh token stands for.
#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    user: String,
    scope: Vec<String>,
    resource: Option<String>,
    redirect_uri: String,
    code_challenge: String,
    expires: tokio::time::Instant,
    /// `openid` was asked for: the token answer carries an ID token (with `nonce`).
    openid: bool,
    nonce: Option<String>,
}

/// The server's state.
pub struct DevIdp {
    config: DevIdpConfig,
    key: SigningKey,
    /// Public keys published beside `key`'s: earlier signing keys during a rotation.
    previous: Vec<jsonwebtoken::jwk::Jwk>,
    clients: Mutex<HashMap<String, Client>>,
    /// Fetches client ID metadata documents (HTTPS only, no redirects, bounded).
    metadata_client: reqwest::Client,
    codes: Mutex<HashMap<String, Grant>>,
    refresh_tokens: Mutex<HashMap<String, Grant>>,
}

impl DevIdp {
    /// A server signing with a fresh key.
    pub fn new(config: DevIdpConfig) -> Result<Arc<Self>, String> {
        let key = SigningKey::generate().map_err(|e| e.to_string())?;
        Self::with_keys(config, key, &[])
    }

    /// A server signing with `key` that also publishes `previous` keys' public halves, as an
    /// issuer does while it rotates: tokens signed with an earlier key stay verifiable.
    pub fn with_keys(config: DevIdpConfig, key: SigningKey, previous: &[SigningKey]) -> Result<Arc<Self>, String> {
        if let Some(user) = &config.auto_approve
            && !config.users.iter().any(|u| &u.id == user)
        {
            return Err(format!("auto-approve user {user:?} is not in the users file"));
        }
        let previous = previous.iter().filter(|p| p.kid != key.kid).map(|p| p.jwk().clone()).collect();
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if let Some(pem) = &config.client_metadata_ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("client metadata CA: {e}"))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let metadata_client = builder.build().map_err(|e| e.to_string())?;
        Ok(Arc::new(Self {
            config,
            key,
            previous,
            clients: Mutex::default(),
            metadata_client,
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
        }))
    }

    /// The JWK Set served at `/jwks`: the signing key's public half, then the earlier ones'.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        let mut set = SigningKey::jwks(&[&self.key]);
        set.keys.extend(self.previous.iter().cloned());
        set
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Registers a confidential client directly (the demo's notes service registers Warden
    /// this way, as an operator would at GitHub or Google).
    pub fn register_client(&self, client_id: &str, secret: &str, redirect_uris: Vec<String>) {
        let client = Client { redirect_uris, secret: Some(secret.to_owned()), auth_method: "client_secret_basic".into() };
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(client_id.to_owned(), client);
    }

    /// Verifies an access token this server issued for `audience` (signature, issuer, audience,
    /// expiry) and returns its subject and scopes: how a resource server of this provider (the
    /// demo's notes service) checks the bearer it receives.
    pub fn verify(&self, token: &str, audience: &str) -> Option<(String, Vec<String>)> {
        #[derive(serde::Deserialize)]
        struct Claims {
            sub: String,
            #[serde(default)]
            scope: String,
        }
        let key = jsonwebtoken::DecodingKey::from_jwk(self.key.jwk()).ok()?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[audience]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).ok()?;
        Some((data.claims.sub, data.claims.scope.split_whitespace().map(str::to_owned).collect()))
    }

    /// Mints an access token for a user directly (for the demo's printed curl lines and for
    /// tests), exactly as the token endpoint would.
    pub fn mint(&self, user: &str, client_id: &str, scope: &[String], resource: &str) -> Option<String> {
        let user = self.config.users.iter().find(|u| u.id == user)?;
        self.access_token(user, client_id, scope, Some(resource)).ok()
    }
}

/// The demo users shipped with the binary.
pub const DEMO_USERS: &str = include_str!("../../demos/users.yaml");
