//! `authorization_server:` as written (docs/authorization-server.md).

use std::time::Duration;

use serde::Deserialize;

use crate::identity::Preset;
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationServerConfig {
    /// The company's identity provider people sign in at.
    pub upstream: UpstreamIdpConfig,
    /// How clients register.
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// Lifetime of Warden's access tokens. Default: 10m. Between 1m and 1h.
    #[serde(default = "default_access_ttl", with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (each use makes a new one). Default: 30 days.
    #[serde(default = "default_refresh_ttl", with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// The scopes Warden may grant. Default: every scope a tool, server or route requires.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Enterprise-managed authorization: identity assertion grants (ID-JAG) these IdPs issue.
    #[serde(default)]
    pub id_jag: Option<IdJagConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamIdpConfig {
    /// The IdP's issuer, exactly as its ID tokens carry it.
    pub issuer: String,
    /// Which IdP's quirks and claim layout: `generic`, `entra`, `okta`, `google`, `auth0`,
    /// `keycloak` or `authentik`. Default: `generic`.
    #[serde(default)]
    pub preset: Preset,
    /// The one client an admin registers at the IdP.
    pub client_id: String,
    pub client_secret: Secret,
    /// Where the IdP sends the browser back. Default: `{public_url}/oauth/callback`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The scopes asked of the IdP. Default: from the preset (`openid profile email`, plus
    /// `groups` for Okta and authentik).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Algorithms the IdP's ID tokens may be signed with. Default: `[RS256]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Only people of these Google Workspace domains (`hd`) may sign in (preset `google`).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Claim path holding roles, instead of the preset's.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Claim path holding the tenant, instead of the preset's.
    #[serde(default)]
    pub tenant_claim: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Dynamic client registration (RFC 7591) at `/oauth/register`. Default: on.
    #[serde(default = "yes")]
    pub dynamic: bool,
    /// Client ID metadata documents (an `https` URL as `client_id`). Default: on.
    #[serde(default = "yes")]
    pub client_id_metadata_documents: bool,
    /// Redirect URIs clients may register, as patterns where `*` matches any run of
    /// characters. Default: any `https` URI, and loopback `http` URIs with any port (RFC 8252).
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
    /// Certificates (PEM, relative to the config file) trusted besides the system's when
    /// fetching client ID metadata documents: clients published on an internal PKI.
    #[serde(default)]
    pub client_metadata_ca_file: Option<String>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self { dynamic: true, client_id_metadata_documents: true, redirect_uris: None, client_metadata_ca_file: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdJagConfig {
    /// The enterprise IdPs whose identity assertion grants are accepted.
    pub issuers: Vec<IdJagIssuerConfig>,
    /// The longest an assertion may live (`exp - iat`). Default: 5m.
    #[serde(default = "default_assertion_lifetime", with = "humantime_serde")]
    pub max_lifetime: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdJagIssuerConfig {
    pub issuer: String,
    /// Default: discovered from the issuer's metadata.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Default: `[RS256, ES256]`.
    #[serde(default = "default_assertion_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim layout of the assertions (roles, tenant). Default: `generic`.
    #[serde(default)]
    pub preset: Preset,
}

fn yes() -> bool {
    true
}
fn default_access_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_refresh_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_assertion_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned()]
}
fn default_assertion_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}
