//! Enterprise-managed authorization: the Identity Assertion JWT Authorization Grant (ID-JAG,
//! draft-ietf-oauth-identity-assertion-authz-grant; MCP's enterprise-managed authorization
//! extension). The company IdP, where the employee already signed in, issues the client a
//! short-lived JWT (`typ: oauth-id-jag+jwt`) naming Warden as audience; the client redeems it at
//! `/oauth/token` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, and gets
//! Warden's access token without a browser or a consent screen: the IdP's policy decided.
//!
//! Checked: the issuer is configured, the signature by its keys with its pinned algorithms,
//! `aud` = Warden's issuer, `resource` = Warden's MCP resource (when present), `client_id` = the
//! authenticated client, `exp` and `iat` within the skew and at most `max_lifetime` apart, `jti`
//! used once across replicas (the store's single-use markers), scopes within what Warden grants.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value, json};

use super::config::IdJagConfig;
use super::registration::Client;
use super::{AuthServer, Identity, Refusal};
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::identity::{ClaimMapping, JwksCache, Subject};

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TYP: &str = "oauth-id-jag+jwt";
const MAX_ASSERTION: usize = 16 * 1024;
const SKEW_SECS: i64 = 60;

struct Trusted {
    algorithms: Vec<Algorithm>,
    jwks: Arc<JwksCache>,
    mapping: ClaimMapping,
}

pub struct IdJag {
    issuers: HashMap<String, Trusted>,
    max_lifetime: Duration,
}

impl IdJag {
    pub fn new(config: &IdJagConfig, http: reqwest::Client, clock: SharedClock) -> Result<Self, ConfigError> {
        if config.issuers.is_empty() {
            return Err(ConfigError::new("authorization_server.id_jag.issuers", "at least one issuer is required"));
        }
        if config.max_lifetime > Duration::from_secs(3600) || config.max_lifetime.is_zero() {
            return Err(ConfigError::new("authorization_server.id_jag.max_lifetime", "must be between 1s and 1h"));
        }
        let mut issuers = HashMap::new();
        for (i, c) in config.issuers.iter().enumerate() {
            let at = |f: &str| format!("authorization_server.id_jag.issuers[{i}].{f}");
            let algorithms = crate::identity::pinned_algorithms(&c.algorithms, &at("algorithms"))?;
            let jwks = JwksCache::new(
                c.issuer.clone(),
                c.jwks_uri.clone(),
                http.clone(),
                Duration::from_secs(300),
                Duration::from_secs(10),
                Arc::clone(&clock),
            );
            let mapping = c.preset.mapping(None, None, None);
            if issuers.insert(c.issuer.clone(), Trusted { algorithms, jwks, mapping }).is_some() {
                return Err(ConfigError::new(at("issuer"), "duplicate issuer"));
            }
        }
        Ok(Self { issuers, max_lifetime: config.max_lifetime })
    }

    pub fn issuer_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.issuers.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

/// A refusal, and what the audit event says about the assertion (its issuer and id, once read).
type IdJagRefusal = (Refusal, Option<String>);

impl AuthServer {
    /// Redeems an ID-JAG: (the token answer, who, the assertion's `jti`).
    pub(super) async fn id_jag_grant(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
    ) -> Result<(Value, Identity, String), IdJagRefusal> {
        let Some(id_jag) = &self.id_jag else {
            return Err((Refusal::bad("unsupported_grant_type", "grant_type_unsupported", "identity assertion grants are off"), None));
        };
        if client.public() {
            return Err((
                Refusal::bad("unauthorized_client", "client_not_confidential", "identity assertion grants need client authentication"),
                None,
            ));
        }
        let bad = |reason: &'static str, description: &str| (Refusal::grant(reason, description), None);
        let assertion = params
            .get("assertion")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| (Refusal::bad("invalid_request", "assertion_missing", "assertion is required"), None))?;
        if assertion.len() > MAX_ASSERTION || assertion.matches('.').count() != 2 {
            return Err(bad("assertion_malformed", "the assertion is not a signed JWT"));
        }
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| bad("assertion_malformed", "the assertion is not a signed JWT"))?;
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(TYP)) {
            return Err(bad("assertion_type_invalid", "the assertion's typ must be oauth-id-jag+jwt"));
        }
        let issuer =
            crate::identity::unverified_claim(assertion, "iss").ok_or_else(|| bad("assertion_malformed", "the assertion has no issuer"))?;
        let trusted =
            id_jag.issuers.get(&issuer).ok_or_else(|| bad("assertion_issuer_untrusted", "the assertion's issuer is not trusted"))?;
        if !trusted.algorithms.contains(&header.alg) {
            return Err(bad("assertion_algorithm_not_allowed", "the assertion's algorithm is not allowed"));
        }
        let key = trusted
            .jwks
            .key(header.kid.as_deref(), header.alg)
            .await
            .map_err(|_| bad("assertion_key_unknown", "no key of the issuer verifies the assertion"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(assertion, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    bad("assertion_audience_mismatch", "the assertion is not for this authorization server")
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    bad("assertion_signature_invalid", "the assertion's signature is invalid")
                }
                _ => bad("assertion_invalid", "the assertion's claims are invalid"),
            })?
            .claims;
        let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= 256).map(str::to_owned);
        let explained = |reason: &'static str, description: &str| {
            (Refusal::grant(reason, description), Some(format!("id-jag issuer {issuer} jti {}", jti.as_deref().unwrap_or("-"))))
        };
        let Some(jti) = jti.clone() else { return Err(explained("assertion_jti_missing", "the assertion has no jti")) };
        let now = self.now();
        let time = |name| claims.get(name).and_then(Value::as_i64);
        let (Some(exp), Some(iat)) = (time("exp"), time("iat")) else {
            return Err(explained("assertion_invalid", "the assertion needs exp and iat"));
        };
        if exp + SKEW_SECS < now {
            return Err(explained("assertion_expired", "the assertion expired"));
        }
        if iat > now + SKEW_SECS {
            return Err(explained("assertion_invalid", "the assertion was issued in the future"));
        }
        if exp - iat > i64::try_from(id_jag.max_lifetime.as_secs()).unwrap_or(i64::MAX) {
            return Err(explained("assertion_lifetime_too_long", "the assertion lives longer than allowed"));
        }
        if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
            return Err(explained("assertion_client_mismatch", "the assertion was issued for another client"));
        }
        match claims.get("resource") {
            None => {}
            Some(Value::String(r)) if r.trim_end_matches('/') == self.resource.trim_end_matches('/') => {}
            Some(Value::Array(rs))
                if rs.iter().any(|r| r.as_str().is_some_and(|r| r.trim_end_matches('/') == self.resource.trim_end_matches('/'))) => {}
            Some(_) => {
                return Err((
                    Refusal::bad("invalid_target", "assertion_resource_mismatch", "the assertion is for another resource"),
                    Some(format!("id-jag issuer {issuer} jti {jti}")),
                ));
            }
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(Subject::new)
            .ok_or_else(|| explained("assertion_invalid", "the assertion has no subject"))?;
        let fresh =
            async { self.vault.store().await?.mark_once(&crate::sha256_hex(&format!("id-jag\n{issuer}\n{jti}")), exp + SKEW_SECS).await };
        match fresh.await {
            Ok(true) => {}
            Ok(false) => return Err(explained("assertion_replayed", "the assertion was used already")),
            Err(e) => return Err((Refusal::unavailable(&e), None)),
        }
        // Scopes: what the assertion carries, narrowed by the request's `scope`, within what
        // Warden grants.
        let carried = claims.get("scope").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut scope = self.granted_scopes(Some(&carried));
        if let Some(asked) = params.get("scope") {
            scope.retain(|s| asked.split_whitespace().any(|a| a == s));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let username = text("preferred_username").or_else(|| text("email"));
        let email = text("email");
        let principal = trusted.mapping.principal(subject.clone(), issuer.clone(), claims);
        let identity =
            Identity { subject: subject.to_string(), idp: issuer, roles: principal.roles, tenant: principal.tenant, username, email };
        let (token, ttl) = self.access_token(&identity, &client.id, &scope).await.map_err(|e| (Refusal::unavailable(&e), None))?;
        let answer = json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scope.join(" "),
        });
        Ok((answer, identity, jti))
    }
}
