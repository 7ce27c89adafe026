//! OAuth tokens Warden obtains itself, for a shared connection: the client-credentials grant.
//!
//! The token is cached in memory and fetched again `refresh_before` its expiry. One fetch at a
//! time (single flight): concurrent calls that find the token missing or expiring wait for the
//! same fetch. Network errors and 5xx are retried with backoff; any other failure (4xx such as
//! `invalid_client`, a malformed response) is permanent and reported, never retried in a loop.
//! The token endpoint is reached through the upstream client, so the SSRF guard applies.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use tokio::time::Instant;

use super::Secret;
use crate::upstream::{Upstream, read_limited};

const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(200);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The `oauth` block of a credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientConfig {
    /// Only `client_credentials` for now.
    pub grant: GrantKind,
    /// The provider's token endpoint.
    pub token_url: String,
    pub client_id: String,
    /// Usually `${ENV_VAR}`.
    pub client_secret: Secret,
    /// Scopes to request. Default: none (the provider's default).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `basic` (HTTP Basic, the default) or `post` (client_id and client_secret in the form).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Fetch a new token this long before the current one expires. Default: 60s.
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    ClientCredentials,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Post,
}

/// Why no token could be had. The variant is the audit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The provider refused (4xx, e.g. `invalid_client`): retrying will not help.
    #[error("the provider refused the token request")]
    Refused,
    /// No usable response after retries (network errors, 5xx, timeouts).
    #[error("the provider could not be reached")]
    Unavailable,
    /// A 2xx without a usable token.
    #[error("the provider's token response is malformed")]
    Malformed,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Refused => "upstream_credential_refused",
            Self::Unavailable => "upstream_credential_unavailable",
            Self::Malformed => "upstream_credential_malformed",
        }
    }
}

struct Cached {
    token: Secret,
    /// When to fetch again (expiry minus `refresh_before`); `None`: no expiry given.
    renew_at: Option<Instant>,
    /// Which fetch produced it, so a forced refresh is done once for all waiters.
    generation: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A shared client-credentials connection.
pub struct ClientCredentials {
    config: OAuthClientConfig,
    token_url: url::Url,
    cached: ArcSwapOption<Cached>,
    refresh: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    pub fn new(config: OAuthClientConfig) -> Result<Self, String> {
        let token_url = url::Url::parse(&config.token_url).map_err(|_| "token_url must be an absolute URL".to_owned())?;
        if !matches!(token_url.scheme(), "https" | "http") {
            return Err("token_url must be http(s)".into());
        }
        Ok(Self { config, token_url, cached: ArcSwapOption::empty(), refresh: tokio::sync::Mutex::new(0) })
    }

    /// A token that is not about to expire, fetching one (once, for all callers) if needed.
    /// With `force_after`, the token of that generation is known to be rejected: fetch anew
    /// unless another caller already did. Returns the token and its generation.
    pub async fn token(&self, upstream: &Upstream, force_after: Option<u64>) -> Result<(Secret, u64), TokenError> {
        if let Some(c) = self.usable(force_after) {
            return Ok(c);
        }
        let mut generation = self.refresh.lock().await;
        if let Some(c) = self.usable(force_after) {
            return Ok(c);
        }
        let (token, expires_in) = self.fetch(upstream).await?;
        *generation += 1;
        let renew_at = expires_in.map(|s| Instant::now() + Duration::from_secs(s).saturating_sub(self.config.refresh_before));
        self.cached.store(Some(Arc::new(Cached { token: token.clone(), renew_at, generation: *generation })));
        Ok((token, *generation))
    }

    fn usable(&self, force_after: Option<u64>) -> Option<(Secret, u64)> {
        let c = self.cached.load_full()?;
        let fresh = c.renew_at.is_none_or(|t| Instant::now() < t);
        let not_rejected = force_after.is_none_or(|g| c.generation > g);
        (fresh && not_rejected).then(|| (c.token.clone(), c.generation))
    }

    async fn fetch(&self, upstream: &Upstream) -> Result<(Secret, Option<u64>), TokenError> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        let scope = self.config.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        if self.config.client_auth == ClientAuth::Post {
            form.push(("client_id", &self.config.client_id));
            form.push(("client_secret", self.config.client_secret.expose()));
        }
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
            }
            let Ok(mut request) = upstream.request(reqwest::Method::POST, self.token_url.clone()) else {
                return Err(TokenError::Refused);
            };
            request = request.form(&form).header(http::header::ACCEPT, "application/json").timeout(FETCH_TIMEOUT);
            if self.config.client_auth == ClientAuth::Basic {
                request = request.basic_auth(&self.config.client_id, Some(self.config.client_secret.expose()));
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(_) => continue,
            };
            let status = response.status();
            if status.is_server_error() {
                continue;
            }
            if !status.is_success() {
                return Err(TokenError::Refused);
            }
            let body = read_limited(response, 64 * 1024).await.map_err(|_| TokenError::Malformed)?;
            let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
            if parsed.access_token.is_empty() || http::HeaderValue::from_str(&format!("Bearer {}", parsed.access_token)).is_err() {
                return Err(TokenError::Malformed);
            }
            return Ok((Secret::new(parsed.access_token), parsed.expires_in));
        }
        Err(TokenError::Unavailable)
    }
}
