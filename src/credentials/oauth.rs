//! OAuth clients of upstream providers: the `oauth` block of a credential, the one function that
//! talks to a token endpoint ([`post_token`]), and the client-credentials grant for shared
//! connections.
//!
//! Client credentials: the token is cached in memory and fetched again `refresh_before` its
//! expiry. One fetch at a time (single flight): concurrent calls that find the token missing or
//! expiring wait for the same fetch. Network errors and 5xx are retried with backoff; any other
//! failure (4xx such as `invalid_client`, an OAuth `error` in a 200 as GitHub and Slack send, a
//! malformed response) is permanent and reported, never retried in a loop. Token endpoints are
//! reached through the upstream client, so the SSRF guard applies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use std::time::Instant;

use super::Secret;
use super::connection::EndpointSource;
use super::provider::Provider;
use crate::upstream::{Upstream, read_limited};

const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(200);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The `oauth` block of a credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientConfig {
    /// `authorization_code` (a person connects an account, with PKCE) or `client_credentials`
    /// (the gateway authenticates as itself).
    pub grant: GrantKind,
    /// With `authorization_code`: `shared` (an operator connects once, every permitted caller
    /// uses it) or `per_user` (each caller connects their own account). Default: `per_user`.
    /// `client_credentials` is always shared.
    #[serde(default)]
    pub mode: Option<ConnectionMode>,
    /// A preset that fills the URLs, default scopes and client authentication.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// The Entra ID tenant, with `provider: microsoft`. Default: `common`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Any other provider: its issuer, whose endpoints are discovered (RFC 8414, then OpenID
    /// Connect discovery) on first use.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The provider's authorization endpoint (overrides the preset or discovery).
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// The provider's token endpoint (overrides the preset or discovery).
    #[serde(default)]
    pub token_url: Option<String>,
    pub client_id: String,
    /// Usually `${ENV_VAR}`.
    pub client_secret: Secret,
    /// Scopes to request. Default: the preset's, else none (the provider's default).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Extra authorization request parameters, e.g. `{prompt: consent}` (merged over the
    /// preset's).
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// The PKCE method. Only `S256` is accepted (`plain` offers no protection). Default: `S256`.
    #[serde(default)]
    pub pkce: Option<String>,
    /// `basic` (HTTP Basic) or `post` (client_id and client_secret in the form).
    /// Default: the preset's, else `basic`.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// Refresh a token this long before it expires. Default: 60s.
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    AuthorizationCode,
    ClientCredentials,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionMode {
    Shared,
    PerUser,
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
    /// The provider refused (4xx, or an OAuth `error` such as `invalid_grant` or
    /// `invalid_client`): retrying will not help.
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

/// A successful token response. `Debug` is redacted by [`Secret`].
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct RawTokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub client_id: String,
    pub client_secret: Secret,
    pub auth: ClientAuth,
}

/// What a token endpoint said when it refused: its OAuth `error`, `error_description` and
/// (Entra) `suberror`, as sent, cut to a bounded length and stripped of control characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthRefusal {
    pub error: String,
    pub description: Option<String>,
    pub suberror: Option<String>,
}

/// Why a token request failed, with the provider's own words when it refused.
#[derive(Debug, Clone)]
pub struct TokenFailure {
    pub kind: TokenError,
    pub refusal: Option<OAuthRefusal>,
}

impl From<TokenError> for TokenFailure {
    fn from(kind: TokenError) -> Self {
        Self { kind, refusal: None }
    }
}

/// POSTs `form` to a token endpoint with client authentication; retries network errors and 5xx
/// with backoff, nothing else. The one place Warden talks to token endpoints.
pub async fn post_token(
    upstream: &Upstream,
    token_url: &url::Url,
    client: &ClientIdentity,
    form: &[(&str, &str)],
) -> Result<TokenResponse, TokenError> {
    post_token_request(upstream, token_url, client, form).await.map_err(|f| f.kind)
}

/// As [`post_token`], keeping what the provider said when it refused (for a refusal the caller
/// must see, as a token exchange's).
pub async fn post_token_request(
    upstream: &Upstream,
    token_url: &url::Url,
    client: &ClientIdentity,
    form: &[(&str, &str)],
) -> Result<TokenResponse, TokenFailure> {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    if client.auth == ClientAuth::Post {
        form.push(("client_id", &client.client_id));
        form.push(("client_secret", client.client_secret.expose()));
    }
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
        }
        let Ok(mut request) = upstream.request(reqwest::Method::POST, token_url.clone()) else {
            return Err(TokenError::Refused.into());
        };
        request = request.form(&form).header(http::header::ACCEPT, "application/json").timeout(FETCH_TIMEOUT);
        if client.auth == ClientAuth::Basic {
            request = request.basic_auth(&client.client_id, Some(client.client_secret.expose()));
        }
        // A client span per attempt (the token endpoint's host only: never the form).
        let span = crate::telemetry::traces::http_client_span(None, "POST", token_url, "token_endpoint");
        let response = match tracing::Instrument::instrument(request.send(), span.clone()).await {
            Ok(r) => r,
            Err(_) => {
                crate::telemetry::traces::record_outcome(&span, None, Some("upstream_unreachable"));
                continue;
            }
        };
        let status = response.status();
        crate::telemetry::traces::record_outcome(&span, Some(status.as_u16()), (!status.is_success()).then_some("token_endpoint_refused"));
        if status.is_server_error() {
            continue;
        }
        if !status.is_success() {
            let body = read_limited(response, 64 * 1024).await.unwrap_or_default();
            return Err(TokenFailure { kind: TokenError::Refused, refusal: refusal(&body) });
        }
        let body = read_limited(response, 64 * 1024).await.map_err(|_| TokenError::Malformed)?;
        return parse_token_response(&body).map_err(|kind| TokenFailure { kind, refusal: refusal(&body) });
    }
    Err(TokenError::Unavailable.into())
}

/// The OAuth error of a token endpoint's answer, if it has one.
pub(crate) fn refusal(body: &[u8]) -> Option<OAuthRefusal> {
    #[derive(Deserialize)]
    struct Raw {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        suberror: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(body).ok()?;
    let clean = |s: &str, max: usize| -> String { s.chars().filter(|c| !c.is_control()).take(max).collect::<String>().trim().to_owned() };
    let error = clean(&raw.error, 64);
    // An OAuth error code is ASCII without spaces or quotes (RFC 6749 §5.2).
    if error.is_empty() || !error.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\') {
        return None;
    }
    Some(OAuthRefusal {
        error,
        description: raw.error_description.as_deref().map(|d| clean(d, 300)).filter(|d| !d.is_empty()),
        suberror: raw.suberror.as_deref().map(|d| clean(d, 64)).filter(|d| !d.is_empty()),
    })
}

/// A 2xx body: a token, or an OAuth `error` (GitHub and Slack answer errors with 200).
fn parse_token_response(body: &[u8]) -> Result<TokenResponse, TokenError> {
    let raw: RawTokenResponse = serde_json::from_slice(body).map_err(|_| TokenError::Malformed)?;
    if raw.error.is_some() {
        return Err(TokenError::Refused);
    }
    let access = raw.access_token.filter(|t| !t.is_empty()).ok_or(TokenError::Malformed)?;
    let header_safe = |t: &str| http::HeaderValue::from_str(&format!("Bearer {t}")).is_ok();
    if !header_safe(&access) {
        return Err(TokenError::Malformed);
    }
    // Some providers send `expires_in` as a string.
    let expires_in = match raw.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(n.as_u64().ok_or(TokenError::Malformed)?),
        Some(serde_json::Value::String(s)) => Some(s.parse().map_err(|_| TokenError::Malformed)?),
        Some(_) => return Err(TokenError::Malformed),
    };
    Ok(TokenResponse {
        access_token: Secret::new(access),
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        expires_in,
        scope: raw.scope,
    })
}

struct Cached {
    token: Secret,
    /// When to fetch again (expiry minus `refresh_before`); `None`: no expiry given.
    renew_at: Option<Instant>,
    /// Which fetch produced it, so a forced refresh is done once for all waiters.
    generation: u64,
}

/// A shared client-credentials connection.
pub struct ClientCredentials {
    client: ClientIdentity,
    scopes: Vec<String>,
    endpoints: EndpointSource,
    refresh_before: Duration,
    cached: ArcSwapOption<Cached>,
    refresh: tokio::sync::Mutex<u64>,
    clock: crate::clock::SharedClock,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("client_id", &self.client.client_id).finish_non_exhaustive()
    }
}

impl ClientCredentials {
    pub fn new(
        client: ClientIdentity,
        scopes: Vec<String>,
        endpoints: EndpointSource,
        refresh_before: Duration,
        clock: crate::clock::SharedClock,
    ) -> Self {
        Self { client, scopes, endpoints, refresh_before, cached: ArcSwapOption::empty(), refresh: tokio::sync::Mutex::new(0), clock }
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
        let renew_at = expires_in.map(|s| self.clock.now() + Duration::from_secs(s).saturating_sub(self.refresh_before));
        self.cached.store(Some(Arc::new(Cached { token: token.clone(), renew_at, generation: *generation })));
        Ok((token, *generation))
    }

    fn usable(&self, force_after: Option<u64>) -> Option<(Secret, u64)> {
        let c = self.cached.load_full()?;
        let fresh = c.renew_at.is_none_or(|t| self.clock.now() < t);
        let not_rejected = force_after.is_none_or(|g| c.generation > g);
        (fresh && not_rejected).then(|| (c.token.clone(), c.generation))
    }

    async fn fetch(&self, upstream: &Upstream) -> Result<(Secret, Option<u64>), TokenError> {
        let scope = self.scopes.join(" ");
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let token_url = &self.endpoints.get(upstream).await?.token;
        let response = post_token(upstream, token_url, &self.client, &form).await?;
        Ok((response.access_token, response.expires_in))
    }
}
