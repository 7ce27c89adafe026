//! Token exchange: an upstream credential obtained from the caller's own identity rather than
//! from a stored secret. Warden presents the caller's token to the company IdP's token endpoint
//! and gets back a token for the upstream API, issued to that caller: RFC 8693 token exchange
//! (Okta, Keycloak, Auth0, PingFederate, node-oidc-provider) or Entra ID's on-behalf-of flow
//! (a `jwt-bearer` grant with `requested_token_use=on_behalf_of`).
//!
//! The subject token is the caller's inbound token (when Warden is the resource server), or,
//! when Warden is itself the authorization server, the IdP's token kept sealed from the caller's
//! sign-in (a [`SubjectTokens`] source). An API key has no identity the IdP knows: refused.
//!
//! Results are cached per subject token (its SHA-256; never the token) until `refresh_before`
//! their expiry, one exchange at a time per subject token (concurrent calls wait for it). A
//! refusal (`invalid_grant`, `consent_required`, MFA required, …) is the caller's to see: its
//! OAuth error and description reach the tool result, and nothing reaches the upstream.
//! Network errors and 5xx are retried by [`post_token_request`]. Tokens are [`Secret`]s: never
//! logged, audited or returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::Secret;
use super::oauth::{ClientAuth, ClientIdentity, OAuthRefusal, TokenError, post_token_request};
use crate::config_error::ConfigError;
use crate::identity::Principal;
use crate::upstream::Upstream;

pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Exchanged tokens kept at most; expired ones are dropped first, then all.
const CACHE_MAX: usize = 10_000;
/// How long a token the IdP gave no lifetime for is reused.
const UNDATED: Duration = Duration::from_secs(60);

/// `credentials[].token_exchange`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The IdP's token endpoint.
    pub token_endpoint: String,
    /// `rfc8693` (default) or `entra_obo`.
    #[serde(default)]
    pub style: ExchangeStyle,
    /// Warden's client at the IdP (a confidential client allowed to exchange tokens).
    pub client_id: String,
    /// Usually `${ENV_VAR}`.
    pub client_secret: Secret,
    /// `basic` or `post`. Default: `basic` for `rfc8693`, `post` for `entra_obo` (as Entra's
    /// documentation shows it).
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// RFC 8693 `audience`: the upstream the token is for, as the IdP names it. With
    /// `entra_obo`, the resource scopes are relative to (`https://graph.microsoft.com` turns
    /// `User.Read` into `https://graph.microsoft.com/User.Read`).
    #[serde(default)]
    pub audience: Option<String>,
    /// RFC 8693 `resource` (RFC 8707): the upstream's URI. `rfc8693` only.
    #[serde(default)]
    pub resource: Option<String>,
    /// Scopes to request. Required with `entra_obo`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The `subject_token_type`. Default: `urn:ietf:params:oauth:token-type:access_token`.
    /// `rfc8693` only.
    #[serde(default)]
    pub subject_token_type: Option<String>,
    /// The `requested_token_type`. Default: `urn:ietf:params:oauth:token-type:access_token`.
    /// `rfc8693` only.
    #[serde(default)]
    pub requested_token_type: Option<String>,
    /// With Warden as the authorization server: which of the IdP's tokens from the caller's
    /// sign-in is the subject token, `access_token` (default) or `id_token` (then the default
    /// `subject_token_type` is `urn:ietf:params:oauth:token-type:id_token`).
    #[serde(default)]
    pub idp_token: IdpToken,
    /// Exchange again this long before the exchanged token expires. Default: 60s.
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

/// Which of the IdP's tokens from a sign-in through Warden is the subject token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdpToken {
    #[default]
    AccessToken,
    IdToken,
}

pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeStyle {
    /// RFC 8693 token exchange.
    #[default]
    Rfc8693,
    /// Entra ID's on-behalf-of flow.
    EntraObo,
}

/// Why no token could be had for the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// The caller authenticated with something the IdP does not know (an API key), or Warden
    /// holds no IdP token for them.
    #[error(
        "this backend needs a token for the caller from the identity provider, and the caller's credential cannot be exchanged (sign in with the identity provider, not an API key)"
    )]
    NoSubjectToken,
    /// The IdP refused, in its own words.
    #[error("the identity provider refused to exchange the caller's token: {}", describe(.0))]
    Refused(OAuthRefusal),
}

fn describe(r: &OAuthRefusal) -> String {
    let mut text = r.error.clone();
    if let Some(s) = &r.suberror {
        text.push_str(&format!(" ({s})"));
    }
    if let Some(d) = &r.description {
        text.push_str(&format!(": {d}"));
    }
    text
}

impl ExchangeError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSubjectToken => "token_exchange_no_subject_token",
            Self::Refused(_) => "token_exchange_refused",
        }
    }

    /// Whether the refusal is about the caller (their token, consent, MFA), not about Warden's
    /// own client at the IdP.
    pub fn callers(&self) -> bool {
        match self {
            Self::NoSubjectToken => true,
            Self::Refused(r) => !matches!(r.error.as_str(), "invalid_client" | "unauthorized_client" | "unsupported_grant_type"),
        }
    }

    /// What the audit event says of it: the IdP's error code (and sub-error), never its prose.
    pub fn audit_explanation(&self) -> Option<String> {
        match self {
            Self::NoSubjectToken => None,
            Self::Refused(r) => Some(match &r.suberror {
                Some(s) => format!("{} ({s})", r.error),
                None => r.error.clone(),
            }),
        }
    }
}

/// Where the subject token comes from when the caller's own token is Warden's (Warden as the
/// authorization server): the IdP token kept from their sign-in.
pub trait SubjectTokens: Send + Sync {
    /// The issuer whose tokens this source stands in for (Warden's own).
    fn issuer(&self) -> &str;
    /// The IdP token of `principal`'s sign-in, if Warden holds one.
    fn subject_token<'a>(&'a self, principal: &'a Principal, kind: IdpToken) -> BoxFuture<'a, Option<Secret>>;
}

struct Exchanged {
    token: Secret,
    renew_at: Instant,
    generation: u64,
}

/// A token-exchange credential.
pub struct TokenExchange {
    style: ExchangeStyle,
    token_url: url::Url,
    client: ClientIdentity,
    audience: Option<String>,
    resource: Option<String>,
    scope: String,
    subject_token_type: String,
    requested_token_type: String,
    /// The `subject_token_type` of a kept IdP token (Warden as the authorization server).
    idp_token_type: String,
    idp_token: IdpToken,
    refresh_before: Duration,
    cache: DashMap<[u8; 32], Arc<tokio::sync::Mutex<Option<Exchanged>>>>,
    subjects: std::sync::OnceLock<Arc<dyn SubjectTokens>>,
    clock: crate::clock::SharedClock,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("style", &self.style)
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenExchange {
    /// Checks the block; `at` names a field for errors.
    pub fn new(c: &TokenExchangeConfig, clock: &crate::clock::SharedClock, at: &dyn Fn(&str) -> String) -> Result<Self, ConfigError> {
        let err = |field: &str, message: &str| ConfigError::new(at(&format!("token_exchange.{field}")), message);
        let token_url = url::Url::parse(&c.token_endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| err("token_endpoint", "must be an absolute http(s) URL"))?;
        if c.client_id.is_empty() {
            return Err(err("client_id", "is empty"));
        }
        if c.client_secret.expose().is_empty() {
            return Err(err("client_secret", "is empty"));
        }
        if let Some(bad) = c.scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(err("scopes", &format!("{bad:?} is not a scope")));
        }
        let scopes: Vec<String> = match (c.style, &c.audience) {
            (ExchangeStyle::EntraObo, _) if c.scopes.is_empty() => {
                return Err(err(
                    "scopes",
                    "entra_obo needs the scopes to request (e.g. [User.Read] with an audience, or https://graph.microsoft.com/.default)",
                ));
            }
            (ExchangeStyle::EntraObo, Some(audience)) => {
                c.scopes
                    .iter()
                    .map(|s| {
                        if s.contains("://") || s.starts_with("api:") {
                            s.clone()
                        } else {
                            format!("{}/{s}", audience.trim_end_matches('/'))
                        }
                    })
                    .collect()
            }
            _ => c.scopes.clone(),
        };
        if c.style == ExchangeStyle::EntraObo {
            for (field, set) in [
                ("resource", c.resource.is_some()),
                ("subject_token_type", c.subject_token_type.is_some()),
                ("requested_token_type", c.requested_token_type.is_some()),
            ] {
                if set {
                    return Err(err(field, "is for style: rfc8693 (on-behalf-of asks by scope)"));
                }
            }
        }
        for (field, value) in [("audience", &c.audience), ("resource", &c.resource)] {
            if value.as_deref().is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace)) {
                return Err(err(field, "must be one URI or name without spaces"));
            }
        }
        let default_auth = if c.style == ExchangeStyle::EntraObo { ClientAuth::Post } else { ClientAuth::Basic };
        Ok(Self {
            style: c.style,
            token_url,
            client: ClientIdentity {
                client_id: c.client_id.clone(),
                client_secret: c.client_secret.clone(),
                auth: c.client_auth.unwrap_or(default_auth),
            },
            audience: c.audience.clone(),
            resource: c.resource.clone(),
            scope: scopes.join(" "),
            subject_token_type: c.subject_token_type.clone().unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_owned()),
            requested_token_type: c.requested_token_type.clone().unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_owned()),
            idp_token_type: c
                .subject_token_type
                .clone()
                .unwrap_or_else(|| (if c.idp_token == IdpToken::IdToken { ID_TOKEN_TYPE } else { ACCESS_TOKEN_TYPE }).to_owned()),
            idp_token: c.idp_token,
            refresh_before: c.refresh_before,
            cache: DashMap::new(),
            subjects: std::sync::OnceLock::new(),
            clock: Arc::clone(clock),
        })
    }

    /// Where subject tokens of Warden's own issuer come from (its authorization server).
    pub fn set_subject_tokens(&self, source: Arc<dyn SubjectTokens>) {
        // Set once, when the gateway is built; a second call changes nothing.
        let _ = self.subjects.set(source);
    }

    /// A token for `principal`'s call, exchanged now or reused. With `rejected`, the token of
    /// that generation was refused upstream: exchange again (once for all waiters).
    pub async fn token(
        &self,
        upstream: &Upstream,
        principal: &Principal,
        rejected: Option<u64>,
    ) -> Result<(Secret, u64), super::CredentialError> {
        let (subject, subject_type) = self.subject_token(principal).await.ok_or(ExchangeError::NoSubjectToken)?;
        let key: [u8; 32] = {
            let mut key = [0u8; 32];
            key.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject.expose().as_bytes()).as_ref());
            key
        };
        if self.cache.len() >= CACHE_MAX && !self.cache.contains_key(&key) {
            self.evict();
        }
        let slot = Arc::clone(&self.cache.entry(key).or_default());
        let mut held = slot.lock().await;
        let now = self.clock.now();
        if let Some(e) = held.as_ref().filter(|e| now < e.renew_at && rejected.is_none_or(|g| e.generation > g)) {
            return Ok((e.token.clone(), e.generation));
        }
        let response = self.exchange(upstream, &subject, subject_type).await?;
        let lifetime = response.expires_in.map_or(UNDATED, |s| Duration::from_secs(s).saturating_sub(self.refresh_before));
        let generation = held.as_ref().map_or(1, |e| e.generation + 1);
        *held = Some(Exchanged { token: response.access_token.clone(), renew_at: now + lifetime, generation });
        Ok((response.access_token, generation))
    }

    /// The subject token and its type: the IdP token kept from the caller's sign-in when their
    /// token is Warden's own, else the token they presented.
    async fn subject_token(&self, principal: &Principal) -> Option<(Secret, &str)> {
        match self.subjects.get() {
            Some(source) if principal.issuer == source.issuer() => {
                Some((source.subject_token(principal, self.idp_token).await?, self.idp_token_type.as_str()))
            }
            _ => Some((principal.token.clone()?, self.subject_token_type.as_str())),
        }
    }

    async fn exchange(
        &self,
        upstream: &Upstream,
        subject: &Secret,
        subject_type: &str,
    ) -> Result<super::oauth::TokenResponse, super::CredentialError> {
        let mut form: Vec<(&str, &str)> = match self.style {
            ExchangeStyle::Rfc8693 => vec![
                ("grant_type", GRANT_TOKEN_EXCHANGE),
                ("subject_token", subject.expose()),
                ("subject_token_type", subject_type),
                ("requested_token_type", &self.requested_token_type),
            ],
            ExchangeStyle::EntraObo => {
                vec![("grant_type", GRANT_JWT_BEARER), ("assertion", subject.expose()), ("requested_token_use", "on_behalf_of")]
            }
        };
        if self.style == ExchangeStyle::Rfc8693 {
            if let Some(a) = &self.audience {
                form.push(("audience", a));
            }
            if let Some(r) = &self.resource {
                form.push(("resource", r));
            }
        }
        if !self.scope.is_empty() {
            form.push(("scope", &self.scope));
        }
        post_token_request(upstream, &self.token_url, &self.client, &form).await.map_err(|f| match (f.kind, f.refusal) {
            (TokenError::Refused, Some(refusal)) => ExchangeError::Refused(refusal).into(),
            (kind, _) => super::CredentialError::Token(kind),
        })
    }

    /// Drops expired entries; if none were, forgets everything (each caller exchanges again).
    fn evict(&self) {
        let now = self.clock.now();
        self.cache.retain(|_, slot| slot.try_lock().map_or(true, |e| e.as_ref().is_some_and(|e| now < e.renew_at)));
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
    }
}
