//! The identity stage's configuration: trusted issuers and claim mapping, as parsed.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Trusted issuers; a token from any other issuer is rejected. May be empty only with
    /// `authorization_server:` (whose tokens are trusted without being listed).
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Allowed clock skew for `exp` and `nbf`. Default: 60s. At most 300s.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// The scopes a 401 challenge asks a client to request: least privilege, with more asked
    /// for by a 403 step-up when a tool needs it. Default: every scope some tool requires.
    #[serde(default)]
    pub challenge_scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` value.
    pub issuer: String,
    /// Where the issuer's JWKS lives. Default: discovered from the issuer's authorization
    /// server metadata (RFC 8414), then OpenID Connect discovery.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted signature algorithms (asymmetric only). Default: `[RS256]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Claim layout of a known identity provider: `auth0`, `okta`, `entra`, `keycloak`,
    /// `google` or `generic`. Sets the defaults of `roles_claims` and `tenant_claim`.
    /// Default: `generic`.
    #[serde(default)]
    pub preset: super::Preset,
    /// Claim path (dot-separated) holding the caller's roles. Shorthand for a one-element
    /// `roles_claims`. Default: from the preset (`roles` for generic).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Claim paths whose roles are merged. `{client_id}` in a path stands for the token's
    /// client (Keycloak's `resource_access.{client_id}.roles`). Default: from the preset.
    #[serde(default)]
    pub roles_claims: Option<Vec<String>>,
    /// Claim path holding the caller's tenant. Default: from the preset (none for generic).
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// How long fetched keys are fresh. Default: 5m.
    #[serde(default = "default_jwks_ttl", with = "humantime_serde")]
    pub jwks_ttl: Duration,
    /// Least time between two fetches triggered by an unknown `kid`. Default: 10s.
    #[serde(default = "default_jwks_min_refresh", with = "humantime_serde")]
    pub jwks_min_refresh: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self { issuers: Vec::new(), clock_skew: default_skew(), challenge_scopes: None }
    }
}

fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned()]
}
fn default_jwks_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(10)
}
