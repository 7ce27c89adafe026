//! Identity stage (OAuth 2.1 protected resource): a bearer token in, a [`Principal`] out.
//!
//! Tokens are JWT access tokens from a configured issuer, verified with that issuer's pinned
//! asymmetric algorithms against its JWKS, with `iss` exact, `aud` containing this resource's
//! canonical URI (RFC 8707), `exp` and `sub` required and `nbf` honoured within a bounded
//! skew. JWEs, `alg: none` and HMAC tokens never verify. Never logs a token; the reasons in
//! [`AuthError`] go to audit and logs, while clients only ever see `invalid_token`.

pub mod config;
mod jwks;
pub mod metadata;
mod presets;
mod principal;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use jwks::{JwksCache, LocalKeys, alg_name, metadata_urls};
pub use presets::Preset;
pub use principal::{ClaimMapping, Principal, Subject, lookup, scopes_of};

use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use config::IdentityConfig;

/// Signature algorithms an issuer may be pinned to. Symmetric (HS*) and `none` are never
/// accepted: a gateway holds no shared secret with an identity provider.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// Configured algorithm names as algorithms; `field` names the list in errors. At least one,
/// each asymmetric.
pub fn pinned_algorithms(names: &[String], field: &str) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(field, "at least one algorithm is required"));
    }
    names
        .iter()
        .enumerate()
        .map(|(j, name)| match Algorithm::from_str(name) {
            Ok(alg) if ASYMMETRIC_ALGORITHMS.contains(&name.as_str()) => Ok(alg),
            _ => Err(ConfigError::new(
                format!("{field}[{j}]"),
                format!("unsupported algorithm {name:?}; allowed: {}", ASYMMETRIC_ALGORITHMS.join(", ")),
            )),
        })
        .collect()
}

/// Longest token considered; anything longer is refused before parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How every gateway-issued API key begins (`wdn_live_…`, `wdn_test_…`): such a bearer is never
/// parsed as a JWT.
pub const API_KEY_PREFIX: &str = "wdn_";

/// Checks gateway-issued API keys (the `apikeys` stage); the identity stage only routes `wdn_`
/// bearers to it, so it need not know where keys are kept.
pub trait KeyVerifier: Send + Sync {
    fn verify<'a>(&'a self, key: &'a str) -> futures::future::BoxFuture<'a, Result<Arc<Principal>, AuthError>>;
}

/// Why a request was not authenticated. The variant name is the audit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    #[error("issuer not trusted")]
    UntrustedIssuer,
    #[error("algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    #[error("no matching signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token audience does not include this resource")]
    WrongAudience,
    #[error("token has no subject")]
    MissingSubject,
    #[error("token lacks a required claim")]
    MissingClaim,
    #[error("token claims invalid")]
    InvalidClaims,
    /// More than one `Authorization` header: which one is meant is ambiguous (RFC 6750 §3.1
    /// `invalid_request`).
    #[error("more than one credential")]
    MultipleCredentials,
    /// An `access_token` in the query string: MCP forbids tokens in URIs (they end up in logs).
    #[error("access token in the URI")]
    TokenInQuery,
    /// A `wdn_` API key while `api_keys.enabled` is false.
    #[error("API keys are not accepted")]
    ApiKeysDisabled,
    #[error("unknown API key")]
    UnknownApiKey,
    #[error("API key revoked")]
    RevokedApiKey,
    #[error("API key expired")]
    ExpiredApiKey,
    /// The database holding API keys did not answer: the key could not be checked (HTTP 503,
    /// not a 401 that would send the client to sign in again).
    #[error("API key store unavailable")]
    KeyStoreUnavailable,
}

impl AuthError {
    /// Stable code for audit and logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Malformed => "token_malformed",
            Self::Encrypted => "token_encrypted",
            Self::UntrustedIssuer => "issuer_untrusted",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "key_unknown",
            Self::BadSignature => "signature_invalid",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "audience_mismatch",
            Self::MissingSubject => "subject_missing",
            Self::MissingClaim => "claim_missing",
            Self::InvalidClaims => "claims_invalid",
            Self::MultipleCredentials => "credentials_multiple",
            Self::TokenInQuery => "token_in_query",
            Self::ApiKeysDisabled => "api_keys_disabled",
            Self::UnknownApiKey => "api_key_unknown",
            Self::RevokedApiKey => "api_key_revoked",
            Self::ExpiredApiKey => "api_key_expired",
            Self::KeyStoreUnavailable => "api_key_store_unavailable",
        }
    }
}

struct TrustedIssuer {
    algorithms: Vec<Algorithm>,
    jwks: Arc<JwksCache>,
    mapping: ClaimMapping,
}

/// How long a verified token is remembered at most (never past its `exp`).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Remembered tokens at most; the cache is emptied when full.
const CACHE_ENTRIES: usize = 10_000;

/// Verifies bearer tokens against the trusted issuers.
pub struct Authenticator {
    issuers: HashMap<String, TrustedIssuer>,
    resource: String,
    skew: Duration,
    /// Verified tokens by SHA-256 of the token (never the token itself): repeat calls skip the
    /// signature check. Only successes are kept, for at most `CACHE_TTL`, never past `exp`, and
    /// only while the issuer's key set is the one that verified them (a refetch that retires a
    /// key retires the tokens it signed at once).
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
    /// Token times and cache lifetimes are read here.
    clock: SharedClock,
    /// Gateway-issued API keys, when `api_keys.enabled`.
    api_keys: Option<Arc<dyn KeyVerifier>>,
}

struct Verified {
    principal: std::sync::Arc<Principal>,
    until: std::time::Instant,
    key_generation: u64,
}

impl Authenticator {
    /// `resource` is the canonical MCP URL every token's audience must contain.
    pub fn new(
        config: &IdentityConfig,
        resource: String,
        http: reqwest::Client,
        clock: SharedClock,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Result<Self, ConfigError> {
        let mut issuers = HashMap::new();
        for (i, c) in config.issuers.iter().enumerate() {
            let algorithms = pinned_algorithms(&c.algorithms, &format!("identity.issuers[{i}].algorithms"))?;
            let jwks =
                JwksCache::new(c.issuer.clone(), c.jwks_uri.clone(), http.clone(), c.jwks_ttl, c.jwks_min_refresh, Arc::clone(&clock))
                    .with_metrics(Arc::clone(&metrics));
            let mapping = c.preset.mapping(c.roles_claim.as_deref(), c.roles_claims.as_deref(), c.tenant_claim.as_deref());
            issuers.insert(c.issuer.clone(), TrustedIssuer { algorithms, jwks, mapping });
        }
        Ok(Self { issuers, resource, skew: config.clock_skew, verified: std::sync::Mutex::default(), clock, api_keys: None })
    }

    /// Trusts Warden's own authorization server: tokens of `issuer` signed with `algorithm` only
    /// (pinned: a key Warden keeps for another purpose verifies none), verified with keys read
    /// from `keys` (its store), their roles in `roles` and tenant in `tenant`.
    pub fn with_own_issuer(mut self, issuer: String, algorithm: Algorithm, keys: Arc<dyn LocalKeys>) -> Self {
        let jwks = JwksCache::local(issuer.clone(), keys, Duration::from_secs(60), Duration::from_secs(1), Arc::clone(&self.clock));
        let mapping = Preset::Generic.mapping(None, None, Some("tenant"));
        self.issuers.insert(issuer, TrustedIssuer { algorithms: vec![algorithm], jwks, mapping });
        self
    }

    /// Accepts gateway-issued API keys, checked by `keys`.
    pub fn with_api_keys(mut self, keys: Arc<dyn KeyVerifier>) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// Whether every issuer's keys have been fetched; fetches those not fetched yet.
    pub async fn ready(&self) -> bool {
        let mut ready = true;
        for issuer in self.issuers.values() {
            ready &= issuer.jwks.ensure_loaded().await;
        }
        ready
    }

    /// The issuers' identifiers, for the Protected Resource Metadata.
    pub fn issuer_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.issuers.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// A request's credentials to a principal: exactly one `Authorization` header, and no
    /// `access_token` in the query string.
    pub async fn authenticate_request(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Result<std::sync::Arc<Principal>, AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(AuthError::MultipleCredentials);
        }
        if query.is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")) {
            return Err(AuthError::TokenInQuery);
        }
        self.authenticate_header(first).await
    }

    /// The `Authorization` header value to a principal.
    pub async fn authenticate_header(&self, header: Option<&http::HeaderValue>) -> Result<std::sync::Arc<Principal>, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let token = token.trim();
        if token.starts_with(API_KEY_PREFIX) {
            return match &self.api_keys {
                Some(keys) => keys.verify(token).await,
                None => Err(AuthError::ApiKeysDisabled),
            };
        }
        // aws-lc's SHA-256 (SHA-NI / AVX2 where the CPU has them): this digest is taken on every
        // request, and the portable one was 6% of a `ping`'s CPU.
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
        let now = self.clock.now();
        let generation = |issuer: &str| self.issuers.get(issuer).map(|i| i.jwks.generation());
        if let Some(hit) = self.cache().get(&digest)
            && now < hit.until
            && generation(&hit.principal.issuer) == Some(hit.key_generation)
        {
            return Ok(std::sync::Arc::clone(&hit.principal));
        }
        let principal = std::sync::Arc::new(self.authenticate(token).await?);
        let exp = principal.claims.get("exp").and_then(Value::as_u64).unwrap_or_default();
        let left = Duration::from_secs(exp.saturating_sub(self.clock.unix()));
        if let (false, Some(key_generation)) = (left.is_zero(), generation(&principal.issuer)) {
            let mut cache = self.cache();
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(
                digest,
                Verified { principal: std::sync::Arc::clone(&principal), until: now + left.min(CACHE_TTL), key_generation },
            );
        }
        Ok(principal)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Verifies one token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        match token.matches('.').count() {
            2 => {}
            4 => return Err(AuthError::Encrypted),
            _ => return Err(AuthError::Malformed),
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.enc.is_some() {
            return Err(AuthError::Encrypted);
        }
        if let Some(typ) = &header.typ {
            // RFC 9068 access tokens say `at+jwt`; plain `JWT` is common. Anything else (an ID
            // token profile, a logout token, ...) is not an access token.
            let typ = typ.to_ascii_lowercase();
            if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
                return Err(AuthError::Malformed);
            }
        }
        let issuer_id = unverified_claim(token, "iss").ok_or(AuthError::Malformed)?;
        let issuer = self.issuers.get(&issuer_id).ok_or(AuthError::UntrustedIssuer)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let key = issuer.jwks.key(header.kid.as_deref(), header.alg).await.map_err(|_| AuthError::UnknownKey)?;

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer_id.as_str()]);
        validation.set_audience(&[self.resource.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `exp` and `nbf` are checked below against the injected clock, not by the library.
        validation.validate_nbf = false;
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::UntrustedIssuer,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::MissingRequiredClaim(c) if c == "sub" => AuthError::MissingSubject,
            ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
            ErrorKind::InvalidAlgorithm => AuthError::AlgorithmNotAllowed,
            _ => AuthError::InvalidClaims,
        })?;
        let claims = data.claims;
        self.check_times(&claims)?;
        let subject = claims.get("sub").and_then(Value::as_str).and_then(Subject::new).ok_or(AuthError::MissingSubject)?;
        let mut principal = issuer.mapping.principal(subject, issuer_id, claims);
        principal.token = Some(crate::secret::Secret::new(token));
        Ok(principal)
    }
}

impl Authenticator {
    /// `exp` (required, a number) and `nbf` (when present) against the clock, each within the
    /// allowed skew.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let now = self.clock.unix();
        let skew = self.skew.as_secs();
        let time = |name| match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().filter(|t| t.is_finite() && *t >= 0.0).map(|t| Some(t as u64)).ok_or(AuthError::InvalidClaims),
        };
        let exp = time("exp")?.ok_or(AuthError::MissingClaim)?;
        if exp.saturating_add(skew) < now {
            return Err(AuthError::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }

    /// The principal a token describes, WITHOUT verifying it: for `warden policy explain`,
    /// never for a request. Claims are mapped with the token issuer's configuration (the
    /// generic mapping for an unknown issuer).
    pub fn principal_unverified(&self, token: &str) -> Result<Principal, AuthError> {
        let payload = token.split('.').nth(1).ok_or(AuthError::Malformed)?;
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).map_err(|_| AuthError::Malformed)?;
        let claims: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default().to_owned();
        let subject = claims.get("sub").and_then(Value::as_str).and_then(Subject::new).ok_or(AuthError::MissingSubject)?;
        let mapping = self.issuers.get(&issuer).map(|i| i.mapping.clone()).unwrap_or_else(|| Preset::Generic.mapping(None, None, None));
        Ok(mapping.principal(subject, issuer, claims))
    }
}

/// A string claim of a JWT before verification (its `iss`): used only to choose which issuer's
/// keys and algorithms verify it.
pub fn unverified_claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}
