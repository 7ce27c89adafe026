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
//! `oauth` obtains tokens for shared connections (client-credentials grant) with single-flight
//! refresh; `envelope` is the encryption at rest of the vault's storage (`store`). Per-user
//! connections (authorization code) are not built yet.

pub mod envelope;
pub mod oauth;
mod secret;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

pub use oauth::{OAuthClientConfig, TokenError};
pub use secret::Secret;

use crate::config::ConfigError;
use crate::config::validate::RESERVED_UPSTREAM_HEADERS;
use crate::upstream::IdentityHeaders;

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
    /// Instead of a fixed secret, a token Warden obtains from an OAuth provider (shared
    /// connection, client-credentials grant), placed as a bearer token.
    #[serde(default)]
    pub oauth: Option<OAuthClientConfig>,
    pub placement: PlacementKind,
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
        matches!(self.source, Source::ClientCredentials(_))
    }

    /// The secret to put on a request now, and for refreshable tokens their generation. With
    /// `rejected`, the token of that generation was refused upstream: get a new one.
    pub async fn resolve(&self, upstream: &crate::upstream::Upstream, rejected: Option<u64>) -> Result<(Secret, Option<u64>), TokenError> {
        match &self.source {
            Source::Static(s) => Ok((s.clone(), None)),
            Source::ClientCredentials(c) => c.token(upstream, rejected).await.map(|(t, g)| (t, Some(g))),
        }
    }

    /// Puts `secret` on the request, replacing anything already there under the same name.
    pub fn apply(&self, request: &mut reqwest::Request, secret: &Secret) {
        let sensitive = |v: String| {
            let mut value = HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""));
            value.set_sensitive(true);
            value
        };
        match &self.placement {
            Placement::Bearer => {
                request.headers_mut().insert(http::header::AUTHORIZATION, sensitive(format!("Bearer {}", secret.expose())));
            }
            Placement::Basic { username } => {
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", secret.expose()));
                request.headers_mut().insert(http::header::AUTHORIZATION, sensitive(format!("Basic {pair}")));
            }
            Placement::Header { name, prefix } => {
                request.headers_mut().insert(name.clone(), sensitive(format!("{prefix}{}", secret.expose())));
            }
            Placement::Query { param } => {
                let url = request.url_mut();
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
    pub fn build(configs: &[CredentialConfig], base_dir: &Path, identity: &IdentityHeaders) -> Result<Self, ConfigError> {
        let mut by_name = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            let at = |f: &str| format!("credentials[{i}].{f}");
            if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(ConfigError::new(at("name"), "must be letters, digits, _ - ."));
            }
            if by_name.contains_key(&c.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate credential {:?}", c.name)));
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
                    if c.placement != PlacementKind::Bearer {
                        return Err(ConfigError::new(at("placement"), "an oauth token is placed as bearer"));
                    }
                    if o.client_secret.expose().is_empty() {
                        return Err(ConfigError::new(at("oauth.client_secret"), "is empty"));
                    }
                    let source = oauth::ClientCredentials::new(o.clone()).map_err(|m| ConfigError::new(at("oauth.token_url"), m))?;
                    let credential =
                        Credential { name: c.name.clone(), source: Source::ClientCredentials(source), placement: Placement::Bearer };
                    by_name.insert(c.name.clone(), Arc::new(credential));
                    continue;
                }
                _ => return Err(ConfigError::new(at("secret"), "set exactly one of secret, secret_file and oauth")),
            };
            if secret.expose().is_empty() {
                return Err(ConfigError::new(at("secret"), "is empty"));
            }
            // A field that this placement does not use is a mistake worth reporting.
            let unused = |field: &str, set: bool, placement: &str| {
                if set { Err(ConfigError::new(at(field), format!("is only used with placement: {placement}"))) } else { Ok(()) }
            };
            let placement = match c.placement {
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
}
