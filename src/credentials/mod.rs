//! Credentials stage: the upstream credentials Warden holds and injects, so that neither the
//! agent nor its token ever carries them.
//!
//! In: `credentials[]` from the config (a static secret from the environment or a file, or an
//! OAuth client, and where it goes: bearer, a header with optional prefix, a query parameter,
//! or basic auth).
//! Out: [`Credential`]s that tools reference by name, applied to a request by
//! [`Credential::apply`], called only from `upstream::Upstream::send`. Never logs, audits or
//! returns a secret; header values are marked sensitive.
//!
//! `oauth` talks to token endpoints and obtains client-credentials tokens; `connection` holds
//! authorization-code connections (shared or per user) in the vault and refreshes them (the
//! browser flow that makes them is an edge module beside the stages); `provider` has the
//! presets; `envelope` is the encryption at rest of the vault's storage (`store`).

pub mod connection;
pub mod exchange;
pub mod oauth;
pub mod provider;
#[cfg(test)]
mod tests;
pub mod vault;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

pub use crate::secret::Secret;
/// Envelope encryption lives with the store that keeps the envelopes.
pub use crate::store::envelope;
pub use connection::{CredentialError, OAuthConnection};
pub use oauth::{OAuthClientConfig, TokenError};
pub use vault::Vault;

use crate::config_error::ConfigError;
use crate::upstream::config::RESERVED_UPSTREAM_HEADERS;
use crate::upstream::{IdentityHeaders, Upstream, UpstreamError};

/// Where a static secret goes on the upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementKind {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `<header>: <prefix><secret>`.
    Header,
    /// `?<query_param>=<secret>`.
    Query,
    /// `Authorization: Basic base64(<username>:<secret>)`.
    Basic,
}

/// Why a call with a credential produced no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("upstream credential: {0}")]
    Credential(#[from] CredentialError),
}

/// A credential as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Referenced by tools (`tools[].credential`).
    pub name: String,
    /// The secret, usually `${ENV_VAR}`. Exactly one of `secret` and `secret_file`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A file holding the secret (trailing newline removed), relative to the config file.
    #[serde(default)]
    pub secret_file: Option<String>,
    /// Instead of a fixed secret, an OAuth connection: a token Warden obtains itself
    /// (client-credentials grant) or one a person grants (authorization code with PKCE, shared
    /// or per user), placed as a bearer token.
    #[serde(default)]
    pub oauth: Option<OAuthClientConfig>,
    /// Instead of a fixed secret, a token for the upstream obtained from the caller's identity
    /// at the company IdP (RFC 8693 token exchange or Entra's on-behalf-of), placed as a bearer
    /// token.
    #[serde(default)]
    pub token_exchange: Option<exchange::TokenExchangeConfig>,
    /// Required for a static secret; `oauth` and `token_exchange` tokens are `bearer`.
    #[serde(default)]
    pub placement: Option<PlacementKind>,
    /// The header, with `placement: header`.
    #[serde(default)]
    pub header: Option<String>,
    /// Text before the secret in the header, with `placement: header` (e.g. `"Token "`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The query parameter, with `placement: query`.
    #[serde(default)]
    pub query_param: Option<String>,
    /// The user name, with `placement: basic`; the secret is the password.
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug)]
enum Placement {
    Bearer,
    Header { name: HeaderName, prefix: String },
    Query { param: String },
    Basic { username: String },
}

/// Where the secret comes from.
#[derive(Debug)]
enum Source {
    Static(Secret),
    ClientCredentials(oauth::ClientCredentials),
    Connection(Arc<OAuthConnection>),
    Exchange(Arc<exchange::TokenExchange>),
}

/// A usable credential.
#[derive(Debug)]
pub struct Credential {
    pub name: String,
    source: Source,
    placement: Placement,
}

impl Credential {
    /// The header this credential sets, if any (to refuse tool mappings that would clash).
    pub fn header(&self) -> Option<&HeaderName> {
        match &self.placement {
            Placement::Header { name, .. } => Some(name),
            Placement::Bearer | Placement::Basic { .. } => Some(&http::header::AUTHORIZATION),
            Placement::Query { .. } => None,
        }
    }

    /// The query parameter this credential sets, if any.
    pub fn query_param(&self) -> Option<&str> {
        match &self.placement {
            Placement::Query { param } => Some(param),
            Placement::Bearer | Placement::Header { .. } | Placement::Basic { .. } => None,
        }
    }

    /// Whether the secret is a token that can be refreshed (so an upstream 401 is worth one
    /// forced refresh and one replay).
    pub fn refreshable(&self) -> bool {
        matches!(self.source, Source::ClientCredentials(_) | Source::Connection(_) | Source::Exchange(_))
    }

    /// Whether this credential is the caller's own identity, delegated (a token exchange): its
    /// calls need a session per caller and record the delegation in their audit events.
    pub fn delegates(&self) -> bool {
        matches!(self.source, Source::Exchange(_))
    }

    /// The token exchange behind this credential, if it is one.
    pub fn exchange(&self) -> Option<&Arc<exchange::TokenExchange>> {
        match &self.source {
            Source::Exchange(x) => Some(x),
            Source::Static(_) | Source::ClientCredentials(_) | Source::Connection(_) => None,
        }
    }

    /// The authorization-code connection behind this credential, if it is one.
    pub fn connection(&self) -> Option<&Arc<OAuthConnection>> {
        match &self.source {
            Source::Connection(c) => Some(c),
            Source::Static(_) | Source::ClientCredentials(_) | Source::Exchange(_) => None,
        }
    }

    /// The secret to put on `principal`'s request now, and for refreshable tokens their
    /// generation. With `rejected`, the token of that generation was refused upstream: get a
    /// new one.
    pub async fn resolve(
        &self,
        upstream: &crate::upstream::Upstream,
        principal: &crate::identity::Principal,
        ctx: &crate::upstream::CallContext,
        rejected: Option<u64>,
    ) -> Result<(Secret, Option<u64>), CredentialError> {
        match &self.source {
            Source::Static(s) => Ok((s.clone(), None)),
            Source::ClientCredentials(c) => Ok(c.token(upstream, rejected).await.map(|(t, g)| (t, Some(g)))?),
            Source::Connection(c) => c.token(upstream, principal, ctx, rejected).await.map(|(t, v)| (t, Some(v))),
            Source::Exchange(x) => x.token(upstream, principal, rejected).await.map(|(t, g)| (t, Some(g))),
        }
    }

    /// Sends a request to the backend with identity on it and this credential applied last,
    /// after the client's `Authorization` is gone, so nothing of the client's can replace it or
    /// travel beside it: the only way a secret reaches a backend. A refreshable token the
    /// backend rejects gets one forced refresh and one replay, never more.
    pub async fn send(
        &self,
        upstream: &Upstream,
        request: reqwest::RequestBuilder,
        principal: &crate::identity::Principal,
        ctx: &crate::upstream::CallContext,
        timeout: std::time::Duration,
        audience: Option<&str>,
    ) -> Result<(http::StatusCode, http::HeaderMap, bytes::Bytes), SendError> {
        let mut request = upstream.prepare(request, principal, ctx, timeout, audience).await?;
        let (secret, generation) = self.resolve(upstream, principal, ctx, None).await?;
        self.apply(&mut request, &secret);
        let replay = if self.refreshable() { request.try_clone() } else { None };
        let mut response = upstream.call(request, timeout).await?;
        if response.status() == http::StatusCode::UNAUTHORIZED
            && let Some(mut again) = replay
        {
            let (secret, _) = self.resolve(upstream, principal, ctx, generation).await?;
            self.apply(&mut again, &secret);
            response = upstream.call(again, timeout).await?;
        }
        Ok(upstream.read(response, timeout).await?)
    }

    /// Puts `secret` on the request, replacing anything already there under the same name.
    pub fn apply(&self, request: &mut reqwest::Request, secret: &Secret) {
        if matches!(self.placement, Placement::Query { .. }) {
            let mut url = request.url().clone();
            self.apply_parts(request.headers_mut(), Some(&mut url), secret);
            *request.url_mut() = url;
        } else {
            self.apply_parts(request.headers_mut(), None, secret);
        }
    }

    /// Puts `secret` on a request given as its headers and URL (for a protocol client that
    /// builds its own requests); the URL is needed, and changed, only for a query placement.
    pub fn apply_parts(&self, headers: &mut http::HeaderMap, url: Option<&mut url::Url>, secret: &Secret) {
        let sensitive = |v: String| {
            let mut value = HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""));
            value.set_sensitive(true);
            value
        };
        match &self.placement {
            Placement::Bearer => {
                headers.insert(http::header::AUTHORIZATION, sensitive(format!("Bearer {}", secret.expose())));
            }
            Placement::Basic { username } => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", secret.expose()));
                headers.insert(http::header::AUTHORIZATION, sensitive(format!("Basic {pair}")));
            }
            Placement::Header { name, prefix } => {
                headers.insert(name.clone(), sensitive(format!("{prefix}{}", secret.expose())));
            }
            Placement::Query { param } => {
                let Some(url) = url else { return };
                let kept: Vec<(String, String)> =
                    url.query_pairs().filter(|(k, _)| k != param).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
                url.query_pairs_mut().clear().extend_pairs(kept).append_pair(param, secret.expose());
            }
        }
    }
}

/// All configured credentials, by name.
#[derive(Debug, Default)]
pub struct Credentials {
    by_name: HashMap<String, Arc<Credential>>,
}

impl Credentials {
    /// Builds every credential; authorization-code connections need the `vault`.
    pub fn build(
        configs: &[CredentialConfig],
        base_dir: &Path,
        identity: &IdentityHeaders,
        vault: Option<&Arc<Vault>>,
        clock: &crate::clock::SharedClock,
    ) -> Result<Self, ConfigError> {
        let mut by_name = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            let at = |f: &str| format!("credentials[{i}].{f}");
            if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(ConfigError::new(at("name"), "must be letters, digits, _ - ."));
            }
            if by_name.contains_key(&c.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate credential {:?}", c.name)));
            }
            if let Some(x) = &c.token_exchange {
                if c.secret.is_some() || c.secret_file.is_some() || c.oauth.is_some() {
                    return Err(ConfigError::new(at("token_exchange"), "set exactly one of secret, secret_file, oauth and token_exchange"));
                }
                bearer_only(c, &at, "a token_exchange token is placed as bearer")?;
                let exchange = Arc::new(exchange::TokenExchange::new(x, clock, &at)?);
                let credential = Credential { name: c.name.clone(), source: Source::Exchange(exchange), placement: Placement::Bearer };
                by_name.insert(c.name.clone(), Arc::new(credential));
                continue;
            }
            let secret = match (&c.secret, &c.secret_file, &c.oauth) {
                (Some(s), None, None) => s.clone(),
                (None, Some(file), None) => {
                    let path = base_dir.join(file);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| ConfigError::new(at("secret_file"), format!("cannot read {}: {}", path.display(), e.kind())))?;
                    Secret::new(text.trim_end_matches(['\n', '\r']))
                }
                (None, None, Some(o)) => {
                    bearer_only(c, &at, "an oauth token is placed as bearer")?;
                    let source = oauth_source(&c.name, o, vault, clock, &at)?;
                    let credential = Credential { name: c.name.clone(), source, placement: Placement::Bearer };
                    by_name.insert(c.name.clone(), Arc::new(credential));
                    continue;
                }
                _ => return Err(ConfigError::new(at("secret"), "set exactly one of secret, secret_file, oauth and token_exchange")),
            };
            let Some(placement) = c.placement else {
                return Err(ConfigError::new(at("placement"), "a secret needs a placement: bearer, header, query or basic"));
            };
            if secret.expose().is_empty() {
                return Err(ConfigError::new(at("secret"), "is empty"));
            }
            // A field that this placement does not use is a mistake worth reporting.
            let unused = |field: &str, set: bool, placement: &str| {
                if set { Err(ConfigError::new(at(field), format!("is only used with placement: {placement}"))) } else { Ok(()) }
            };
            let placement = match placement {
                PlacementKind::Bearer => {
                    unused("header", c.header.is_some(), "header")?;
                    unused("prefix", c.prefix.is_some(), "header")?;
                    unused("query_param", c.query_param.is_some(), "query")?;
                    unused("username", c.username.is_some(), "basic")?;
                    Placement::Bearer
                }
                PlacementKind::Header => {
                    unused("query_param", c.query_param.is_some(), "query")?;
                    unused("username", c.username.is_some(), "basic")?;
                    let header =
                        c.header.as_deref().ok_or_else(|| ConfigError::new(at("header"), "placement: header needs a header name"))?;
                    let name =
                        HeaderName::from_bytes(header.as_bytes()).map_err(|_| ConfigError::new(at("header"), "not a valid header name"))?;
                    if name == http::header::AUTHORIZATION {
                        return Err(ConfigError::new(at("header"), "use placement: bearer or basic for Authorization"));
                    }
                    if RESERVED_UPSTREAM_HEADERS.contains(&name.as_str()) || identity.contains(&name) {
                        return Err(ConfigError::new(at("header"), "reserved header: framing and identity headers are Warden's"));
                    }
                    Placement::Header { name, prefix: c.prefix.clone().unwrap_or_default() }
                }
                PlacementKind::Query => {
                    unused("header", c.header.is_some(), "header")?;
                    unused("prefix", c.prefix.is_some(), "header")?;
                    unused("username", c.username.is_some(), "basic")?;
                    let param = c
                        .query_param
                        .clone()
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| ConfigError::new(at("query_param"), "placement: query needs a query_param"))?;
                    Placement::Query { param }
                }
                PlacementKind::Basic => {
                    unused("header", c.header.is_some(), "header")?;
                    unused("prefix", c.prefix.is_some(), "header")?;
                    unused("query_param", c.query_param.is_some(), "query")?;
                    let username =
                        c.username.clone().ok_or_else(|| ConfigError::new(at("username"), "placement: basic needs a username"))?;
                    if username.contains(':') {
                        return Err(ConfigError::new(at("username"), "a basic-auth user name cannot contain ':'"));
                    }
                    Placement::Basic { username }
                }
            };
            let value_ok = match &placement {
                Placement::Header { prefix, .. } => HeaderValue::from_str(&format!("{prefix}{}", secret.expose())).is_ok(),
                Placement::Bearer => HeaderValue::from_str(&format!("Bearer {}", secret.expose())).is_ok(),
                Placement::Query { .. } | Placement::Basic { .. } => true,
            };
            if !value_ok {
                return Err(ConfigError::new(at("secret"), "contains characters a header cannot carry"));
            }
            by_name.insert(c.name.clone(), Arc::new(Credential { name: c.name.clone(), source: Source::Static(secret), placement }));
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Credential>> {
        self.by_name.get(name)
    }

    /// The authorization-code connection named `name`.
    pub fn connection(&self, name: &str) -> Option<&Arc<OAuthConnection>> {
        self.by_name.get(name).and_then(|c| c.connection())
    }

    /// Every authorization-code connection.
    pub fn connections(&self) -> impl Iterator<Item = &Arc<OAuthConnection>> {
        self.by_name.values().filter_map(|c| c.connection())
    }

    /// Every token exchange.
    pub fn exchanges(&self) -> impl Iterator<Item = &Arc<exchange::TokenExchange>> {
        self.by_name.values().filter_map(|c| c.exchange())
    }
}

/// A token Warden obtains is placed as a bearer token: any other placement field is a mistake.
fn bearer_only(c: &CredentialConfig, at: &dyn Fn(&str) -> String, message: &str) -> Result<(), ConfigError> {
    if c.placement.is_some_and(|p| p != PlacementKind::Bearer) {
        return Err(ConfigError::new(at("placement"), message));
    }
    for (field, set) in [
        ("header", c.header.is_some()),
        ("prefix", c.prefix.is_some()),
        ("query_param", c.query_param.is_some()),
        ("username", c.username.is_some()),
    ] {
        if set {
            return Err(ConfigError::new(at(field), message));
        }
    }
    Ok(())
}

/// Parameters of the authorization request that Warden sets itself.
const RESERVED_AUTHORIZE_PARAMS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scope"];

/// The token source of an `oauth` block: presets applied, overrides taken, impossible
/// combinations refused with their path.
fn oauth_source(
    name: &str,
    o: &OAuthClientConfig,
    vault: Option<&Arc<Vault>>,
    clock: &crate::clock::SharedClock,
    at: &dyn Fn(&str) -> String,
) -> Result<Source, ConfigError> {
    use connection::{ConnectionSettings, EndpointSource, Endpoints};
    use oauth::{ClientIdentity, ConnectionMode, GrantKind};
    use provider::Provider;

    let err = |field: &str, message: &str| ConfigError::new(at(&format!("oauth.{field}")), message);
    if o.client_id.is_empty() {
        return Err(err("client_id", "is empty"));
    }
    if o.client_secret.expose().is_empty() {
        return Err(err("client_secret", "is empty"));
    }
    if o.pkce.as_deref().is_some_and(|m| m != "S256") {
        return Err(err("pkce", "only S256 is accepted: plain offers no protection against an intercepted code"));
    }
    if let Some(tenant) = &o.tenant {
        if o.provider != Some(Provider::Microsoft) {
            return Err(err("tenant", "is only used with provider: microsoft"));
        }
        if tenant.is_empty() || !tenant.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')) {
            return Err(err("tenant", "must be a tenant ID or domain (letters, digits, - .)"));
        }
    }
    if o.provider.is_some() && o.issuer.is_some() {
        return Err(err("issuer", "set provider or issuer, not both"));
    }
    let url = |field: &str, value: &str| -> Result<url::Url, ConfigError> {
        let parsed = url::Url::parse(value).map_err(|_| err(field, "must be an absolute URL"))?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host().is_none() {
            return Err(err(field, "must be an http(s) URL"));
        }
        Ok(parsed)
    };
    let preset = o.provider.map(|p| p.preset(o.tenant.as_deref()));
    let authorize = match (&o.authorize_url, &preset) {
        (Some(u), _) => Some(url("authorize_url", u)?),
        (None, Some(p)) => Some(url("provider", &p.authorize_url)?),
        (None, None) => None,
    };
    let token = match (&o.token_url, &preset) {
        (Some(u), _) => Some(url("token_url", u)?),
        (None, Some(p)) => Some(url("provider", &p.token_url)?),
        (None, None) => None,
    };
    let issuer = o.issuer.as_deref().map(|i| url("issuer", i)).transpose()?;
    let label = match (&o.provider, &issuer) {
        (Some(p), _) => format!("{p:?}").to_lowercase(),
        (None, Some(i)) => i.host_str().unwrap_or("provider").to_owned(),
        (None, None) => token.as_ref().and_then(|t| t.host_str()).unwrap_or("provider").to_owned(),
    };
    let has_authorize = authorize.is_some();
    let endpoints = match (issuer, token) {
        (Some(issuer), token) => EndpointSource::Discover { issuer, authorize, token, found: tokio::sync::OnceCell::new() },
        (None, Some(token)) => EndpointSource::Fixed(Endpoints { authorize, token, issuer: None, iss_required: false }),
        (None, None) => return Err(err("token_url", "needs a provider, an issuer or a token_url")),
    };
    let client = ClientIdentity {
        client_id: o.client_id.clone(),
        client_secret: o.client_secret.clone(),
        auth: o.client_auth.or(preset.as_ref().map(|p| p.client_auth)).unwrap_or_default(),
    };
    let scopes =
        o.scopes.clone().unwrap_or_else(|| preset.as_ref().map(|p| p.scopes.iter().map(|s| (*s).to_owned()).collect()).unwrap_or_default());
    match o.grant {
        GrantKind::ClientCredentials => {
            if o.mode == Some(ConnectionMode::PerUser) {
                return Err(err("mode", "client_credentials connections are shared: the gateway authenticates as itself"));
            }
            for (field, set) in [
                ("authorize_url", o.authorize_url.is_some()),
                ("authorize_params", !o.authorize_params.is_empty()),
                ("pkce", o.pkce.is_some()),
            ] {
                if set {
                    return Err(err(field, "is only used with grant: authorization_code"));
                }
            }
            Ok(Source::ClientCredentials(oauth::ClientCredentials::new(client, scopes, endpoints, o.refresh_before, Arc::clone(clock))))
        }
        GrantKind::AuthorizationCode => {
            let Some(vault) = vault else {
                return Err(ConfigError::new(
                    at("oauth.grant"),
                    "authorization_code connections are stored in the vault: add a vault section",
                ));
            };
            if !has_authorize && matches!(endpoints, EndpointSource::Fixed(_)) {
                return Err(err(
                    "authorize_url",
                    "authorization_code needs an authorization endpoint: a provider, an issuer or authorize_url",
                ));
            }
            if let Some(k) = o.authorize_params.keys().find(|k| RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str())) {
                return Err(err(&format!("authorize_params.{k}"), "is set by Warden"));
            }
            let mut authorize_params: Vec<(String, String)> = preset
                .as_ref()
                .map(|p| {
                    p.authorize_params
                        .iter()
                        .filter(|(k, _)| !o.authorize_params.contains_key(*k))
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            authorize_params.extend(o.authorize_params.iter().map(|(k, v)| (k.clone(), v.clone())));
            let settings = ConnectionSettings {
                name: name.to_owned(),
                mode: o.mode.unwrap_or(ConnectionMode::PerUser),
                label,
                client,
                scopes,
                scope_separator: preset.as_ref().map_or(" ", |p| p.scope_separator),
                authorize_params,
                endpoints,
                refresh_before: o.refresh_before,
            };
            Ok(Source::Connection(Arc::new(OAuthConnection::new(settings, Arc::clone(vault)))))
        }
    }
}
