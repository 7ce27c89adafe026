//! The leg to the company's identity provider: discovery, the redirect, the code exchange and
//! the ID token check. Warden is an ordinary confidential OpenID Connect client of the IdP (one
//! client an admin registers); the IdP's tokens are used for the ID token's claims and then
//! dropped — they never reach an MCP client and are not stored.
//!
//! The ID token is verified like an access token at the identity stage: the IdP's JWKS through
//! the same cache (discovered from its metadata), the configured algorithms only, `iss` exact,
//! `aud` containing Warden's client id (and `azp` equal to it when there are several), `nonce`
//! equal to the one this sign-in sent, `exp` and `iat` within the skew.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::config::UpstreamIdpConfig;
use crate::body::read_limited;
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::identity::{ClaimMapping, JwksCache, Preset, Subject, metadata_urls};
use crate::secret::Secret;

const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
const SKEW_SECS: u64 = 60;

/// Why a sign-in at the IdP did not produce an identity. `code()` is the audit reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the identity provider's metadata could not be read: {0}")]
    Discovery(String),
    #[error("the identity provider refused the code: {0}")]
    Exchange(String),
    #[error("the identity provider's ID token is invalid: {0}")]
    IdToken(&'static str),
    #[error("the person's domain is not allowed")]
    Domain,
}

impl UpstreamError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Discovery(_) => "idp_unavailable",
            Self::Exchange(_) => "idp_exchange_failed",
            Self::IdToken(_) => "id_token_invalid",
            Self::Domain => "domain_not_allowed",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// Who signed in: the person as Warden's access tokens describe them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub subject: String,
    /// The IdP's issuer.
    pub idp: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A name to show (consent page, audit): `preferred_username`, `email` or `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The company IdP's tokens from a person's sign-in, kept (sealed) as the subject token of a
/// token exchange. `Debug` shows no token.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdpTokens {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "secret_string")]
    pub access_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "secret_string")]
    pub id_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "secret_string")]
    pub refresh_token: Option<Secret>,
    /// Seconds the access token lives, as the IdP said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

impl IdpTokens {
    /// The tokens of a token endpoint's answer; what a refresh answer leaves out is kept from
    /// `before`.
    fn of(answer: &Map<String, Value>, before: Option<&IdpTokens>) -> Self {
        let token = |name: &str| answer.get(name).and_then(Value::as_str).filter(|t| !t.is_empty()).map(Secret::new);
        Self {
            access_token: token("access_token"),
            id_token: token("id_token").or_else(|| before.and_then(|b| b.id_token.clone())),
            refresh_token: token("refresh_token").or_else(|| before.and_then(|b| b.refresh_token.clone())),
            expires_in: answer.get("expires_in").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))),
        }
    }
}

/// A [`Secret`] as a plain JSON string, for the sealed copy only.
mod secret_string {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(value: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(v.expose()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}

pub struct UpstreamIdp {
    pub issuer: String,
    preset: Preset,
    client_id: String,
    client_secret: Secret,
    pub redirect_uri: String,
    scopes: Vec<String>,
    allowed_domains: Vec<String>,
    mapping: ClaimMapping,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    endpoints: tokio::sync::OnceCell<Endpoints>,
    jwks: Arc<JwksCache>,
    clock: SharedClock,
}

impl UpstreamIdp {
    pub fn new(config: &UpstreamIdpConfig, public_base: &str, http: reqwest::Client, clock: SharedClock) -> Result<Self, ConfigError> {
        let at = |f: &str| format!("authorization_server.upstream.{f}");
        let algorithms = crate::identity::pinned_algorithms(&config.algorithms, &at("algorithms"))?;
        let jwks = JwksCache::new(
            config.issuer.clone(),
            None,
            http.clone(),
            Duration::from_secs(300),
            Duration::from_secs(10),
            Arc::clone(&clock),
        );
        Ok(Self {
            issuer: config.issuer.clone(),
            preset: config.preset,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            redirect_uri: config.redirect_uri.clone().unwrap_or_else(|| format!("{public_base}/oauth/callback")),
            scopes: config.scopes.clone().unwrap_or_else(|| config.preset.sign_in_scopes()),
            allowed_domains: config.allowed_domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            mapping: config.preset.mapping(config.roles_claim.as_deref(), None, config.tenant_claim.as_deref()),
            algorithms,
            http,
            endpoints: tokio::sync::OnceCell::new(),
            jwks,
            clock,
        })
    }

    /// The IdP's endpoints: RFC 8414 metadata, else OpenID Connect discovery (Entra, Google
    /// serve only the latter). Read once; a failure is tried again on the next sign-in.
    async fn endpoints(&self) -> Result<&Endpoints, UpstreamError> {
        self.endpoints
            .get_or_try_init(|| async {
                let mut last = UpstreamError::Discovery("no metadata".into());
                for url in metadata_urls(&self.issuer) {
                    match self.get_json::<Endpoints>(&url).await {
                        Ok(e) if e.issuer == self.issuer => return Ok(e),
                        Ok(_) => last = UpstreamError::Discovery(format!("{url} names another issuer")),
                        Err(e) => last = UpstreamError::Discovery(e),
                    }
                }
                Err(last)
            })
            .await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let body = read_limited(resp, MAX_DOCUMENT_BYTES).await.map_err(|e| format!("{url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }

    /// Where to send the browser: the IdP's authorization endpoint with Warden's client, its own
    /// state, nonce and PKCE challenge. No `resource`: the IdP's token is not for Warden's
    /// resource (and Entra refuses the parameter beside v2 scopes).
    pub async fn authorization_url(&self, state: &str, nonce: &str, challenge: &str) -> Result<url::Url, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let mut url = url::Url::parse(&endpoints.authorization_endpoint).map_err(|e| UpstreamError::Discovery(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    /// The code to an identity and the IdP's tokens: exchanged at the IdP's token endpoint with
    /// the verifier, the ID token verified, its claims mapped through the preset.
    pub async fn sign_in(&self, code: &str, verifier: &str, nonce: &str) -> Result<(Identity, IdpTokens), UpstreamError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let answer = self.token_request(&form).await?;
        let id_token = answer.get("id_token").and_then(Value::as_str).ok_or(UpstreamError::IdToken("missing"))?;
        let claims = self.verify_id_token(id_token, nonce).await?;
        let identity = self.identity(claims)?;
        Ok((identity, IdpTokens::of(&answer, None)))
    }

    /// New IdP tokens for a refresh token (kept from a sign-in, for a token exchange's subject
    /// token). A rotated refresh token replaces the old one; without one the old one is kept.
    pub async fn refresh(&self, tokens: &IdpTokens) -> Result<IdpTokens, UpstreamError> {
        let refresh = tokens.refresh_token.as_ref().ok_or_else(|| UpstreamError::Exchange("no refresh token".into()))?;
        let answer = self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh.expose())]).await?;
        Ok(IdpTokens::of(&answer, Some(tokens)))
    }

    /// A request to the IdP's token endpoint with Warden's client authentication (Basic unless
    /// the IdP lists only other methods); its JSON answer, or why there is none.
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Map<String, Value>, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let basic = endpoints
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == "client_secret_basic"));
        let mut form = form.to_vec();
        let mut request = self.http.post(&endpoints.token_endpoint).header(http::header::ACCEPT, "application/json");
        if basic {
            // RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding.
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(enc(&self.client_id), Some(enc(self.client_secret.expose())));
        } else {
            form.push(("client_id", self.client_id.as_str()));
            form.push(("client_secret", self.client_secret.expose()));
        }
        let resp = request.form(&form).send().await.map_err(|e| UpstreamError::Exchange(e.to_string()))?;
        let status = resp.status();
        let body = read_limited(resp, MAX_DOCUMENT_BYTES).await.map_err(|e| UpstreamError::Exchange(e.to_string()))?;
        let answer: Map<String, Value> = serde_json::from_slice(&body).map_err(|_| UpstreamError::Exchange(format!("HTTP {status}")))?;
        if !status.is_success() {
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("unknown");
            return Err(UpstreamError::Exchange(format!("HTTP {status} {}", crate::error::oauth_error_code(error))));
        }
        Ok(answer)
    }

    pub(super) async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<Map<String, Value>, UpstreamError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| UpstreamError::IdToken("malformed"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(UpstreamError::IdToken("algorithm_not_allowed"));
        }
        // An access token (RFC 9068 `at+jwt`) or any other profile is not an ID token.
        if header.typ.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(UpstreamError::IdToken("type_invalid"));
        }
        let key = self.jwks.key(header.kid.as_deref(), header.alg).await.map_err(|_| UpstreamError::IdToken("key_unknown"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&accepted_issuers(self.preset, &self.issuer));
        validation.set_audience(&[self.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| {
                UpstreamError::IdToken(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => "signature_invalid",
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => "audience_mismatch",
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer => "issuer_mismatch",
                    _ => "claims_invalid",
                })
            })?
            .claims;
        let now = self.clock.unix();
        let time = |name| claims.get(name).and_then(Value::as_u64);
        match time("exp") {
            Some(exp) if exp.saturating_add(SKEW_SECS) >= now => {}
            _ => return Err(UpstreamError::IdToken("expired")),
        }
        if time("iat").is_some_and(|iat| iat > now.saturating_add(SKEW_SECS)) {
            return Err(UpstreamError::IdToken("issued_in_future"));
        }
        let audiences = match claims.get("aud") {
            Some(Value::Array(a)) => a.len(),
            _ => 1,
        };
        let azp = claims.get("azp").and_then(Value::as_str);
        if (audiences > 1 || azp.is_some()) && azp != Some(self.client_id.as_str()) {
            return Err(UpstreamError::IdToken("azp_mismatch"));
        }
        let sent = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(nonce.as_bytes())) || sent.is_empty() {
            return Err(UpstreamError::IdToken("nonce_mismatch"));
        }
        Ok(claims)
    }

    /// The verified claims through the preset.
    pub(super) fn identity(&self, claims: Map<String, Value>) -> Result<Identity, UpstreamError> {
        let subject = claims
            .get(self.preset.subject_claim())
            .or_else(|| claims.get("sub"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(UpstreamError::IdToken("subject_missing"))?
            .to_owned();
        if self.preset == Preset::Google || !self.allowed_domains.is_empty() {
            let hd = claims.get("hd").and_then(Value::as_str).map(str::to_ascii_lowercase);
            if !self.allowed_domains.is_empty() && !hd.is_some_and(|d| self.allowed_domains.contains(&d)) {
                return Err(UpstreamError::Domain);
            }
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let username = text("preferred_username").or_else(|| text("email")).or_else(|| text("name"));
        let email = text("email");
        let principal = self.mapping.principal(
            Subject::new(subject.clone()).ok_or(UpstreamError::IdToken("subject_missing"))?,
            self.issuer.clone(),
            claims,
        );
        Ok(Identity { subject, idp: self.issuer.clone(), roles: principal.roles, tenant: principal.tenant, username, email })
    }
}

/// The `iss` values an ID token of this IdP may carry: the configured issuer, and for Google
/// also `accounts.google.com` without the scheme, which Google documents its ID tokens may carry.
pub(super) fn accepted_issuers(preset: Preset, issuer: &str) -> Vec<&str> {
    match (preset, issuer) {
        (Preset::Google, "https://accounts.google.com") => vec![issuer, "accounts.google.com"],
        _ => vec![issuer],
    }
}
