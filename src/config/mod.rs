//! Configuration stage: the YAML file as it is written (`*Config` structs), parsed strictly.
//!
//! In: the text of `warden.yaml` and an environment lookup. Out: a [`Config`] whose every
//! field has passed [`Config::validate`], or a [`ConfigError`] naming the failing path
//! (`tools[2].http.url: ...`). Runtime types (compiled tools, issuers) are built from a
//! validated `Config` by the stages that own them. Never echoes interpolated secret values in
//! an error.

mod load;
#[cfg(test)]
mod tests;
pub(crate) mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

pub use load::{ConfigError, Env, ProcessEnv, load_file, parse};

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway listens and how it names itself.
    pub server: ServerConfig,
    /// Trusted token issuers.
    pub identity: IdentityConfig,
    /// Names of the identity headers injected into every upstream call.
    #[serde(default)]
    pub identity_headers: IdentityHeadersConfig,
    /// Upstream HTTP client and SSRF guard.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Audit event sink.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Where the vault keeps connections and the keys that encrypt them.
    #[serde(default)]
    pub vault: Option<VaultConfig>,
    /// The admin API (connections: status, disconnect, shared connect links). Off without it.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Upstream credentials tools can reference by name.
    #[serde(default)]
    pub credentials: Vec<crate::credentials::CredentialConfig>,
    /// Policy files (deny-by-default rules over scopes, roles, claims and arguments).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The tools this gateway exposes.
    #[serde(default)]
    pub tools: Vec<ToolConfig>,
    /// The directory relative paths in this config are resolved against (the config file's
    /// directory; the working directory for config given as text).
    #[serde(skip)]
    pub base_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `sqlite://PATH` (created if missing; relative to the working directory) or
    /// `postgres://…` for several replicas.
    pub database: String,
    /// The key ring: `kid:base64key,…`, the first one active; usually `${WARDEN_VAULT_KEYS}`.
    /// Generate a key with `warden keys generate`. Exactly one of `keys` and `keys_file`.
    #[serde(default)]
    pub keys: Option<crate::credentials::Secret>,
    /// A file holding the key ring (e.g. a mounted secret), relative to the config file; the
    /// same format, commas or newlines between keys.
    #[serde(default)]
    pub keys_file: Option<String>,
    /// How long a replica may reuse a fresh upstream token it read from the database before
    /// reading it again; `0s` reads on every call. A disconnect or refresh on this replica takes
    /// effect at once; on other replicas within this time. At most 60s. Default: 5s.
    #[serde(default = "default_token_cache", with = "humantime_serde")]
    pub token_cache: Duration,
}

fn default_token_cache() -> Duration {
    Duration::from_secs(5)
}

impl VaultConfig {
    /// The key ring, from `keys` or `keys_file`.
    pub fn key_ring(&self, base_dir: &std::path::Path) -> Result<crate::credentials::envelope::KeyRing, ConfigError> {
        let spec = match (&self.keys, &self.keys_file) {
            (Some(keys), None) => keys.clone(),
            (None, Some(file)) => {
                let path = base_dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::new("vault.keys_file", format!("cannot read {}: {}", path.display(), e.kind())))?;
                let joined: Vec<&str> = text.split([',', '\n', '\r']).map(str::trim).filter(|k| !k.is_empty()).collect();
                crate::credentials::Secret::new(joined.join(","))
            }
            _ => return Err(ConfigError::new("vault.keys", "set exactly one of keys and keys_file")),
        };
        let field = if self.keys.is_some() { "vault.keys" } else { "vault.keys_file" };
        crate::credentials::envelope::KeyRing::parse(&spec).map_err(|e| ConfigError::new(field, e.to_string()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer token the admin API and `warden connections` require: at least 32
    /// characters, usually `${WARDEN_ADMIN_TOKEN}`. It is the admin API's own credential, never
    /// an identity-provider token.
    pub token: crate::credentials::Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Policy files or directories (every `*.yaml` in them, fixtures excluded), relative to
    /// the config file. With none, a tool's `scopes` alone decide. Default: none.
    pub files: Vec<String>,
    /// How often policy files are checked for changes; `0s` turns polling off (SIGHUP still
    /// reloads). Default: 2s.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Request headers exposed to conditions as `request.headers` (lower-case names).
    /// `authorization` and `cookie` are never exposed. Default: `[user-agent]`.
    pub request_headers: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { files: Vec::new(), reload_interval: Duration::from_secs(2), request_headers: vec!["user-agent".into()] }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to bind. Default: `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The externally visible base URL (scheme, host, port, optional path prefix). The
    /// canonical MCP resource is `{public_url}/mcp`; it is the `resource` in the Protected
    /// Resource Metadata and the audience every token must carry.
    /// Default: `http://{listen}`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `Host` header values accepted on `/mcp` (DNS-rebinding protection).
    /// Default: the host of `public_url`, plus `localhost`, `127.0.0.1` and `::1`.
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// Browser `Origin`s accepted on `/mcp`, besides `public_url`'s own origin, which is always
    /// accepted. A request carrying any other `Origin` is refused with 403; requests without
    /// one (non-browser clients) pass. Default: loopback origins on any port
    /// (`http://localhost:*`, `http://127.0.0.1:*`, `http://[::1]:*` and their https forms),
    /// which a DNS-rebinding page can never have. Setting the list replaces the default.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    /// Largest accepted request body. Default: 1 MiB.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers, from the connection (or the previous
    /// response) on; past it the connection is closed. Default: 10s.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body once its headers arrived; past it the request
    /// gets 408. Default: 30s.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Open connections accepted from one client IP at a time; more are closed at once.
    /// `0` means no limit (for example behind a load balancer whose address every connection
    /// has). Default: 256.
    #[serde(default = "default_connections_per_ip")]
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Trusted issuers; a token from any other issuer is rejected.
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
    pub preset: crate::identity::Preset,
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

/// Header names for the identity Warden injects upstream. Defaults as named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeadersConfig {
    /// Default: `X-User-Id` (the token's `sub`).
    pub user_id: String,
    /// Default: `X-User-Scopes` (space-separated).
    pub scopes: String,
    /// Default: `X-User-Roles` (comma-separated).
    pub roles: String,
    /// Default: `X-Tenant-Id` (sent only when the tenant is known).
    pub tenant: String,
    /// Default: `X-Client-Id` (the OAuth client the token was issued to, when known).
    pub client_id: String,
    /// Default: `X-Request-Id`.
    pub request_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Let tools reach loopback, private, link-local and other internal addresses. Off by
    /// default: prefer `allow_cidrs`. Default: false.
    pub dangerous_allow_private_upstreams: bool,
    /// Internal ranges tools may reach despite the SSRF guard, e.g. `127.0.0.1/32`.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Per-call timeout when a tool sets none. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub default_timeout: Duration,
    /// Largest upstream response body read. Default: 4 MiB.
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `stdout`, `stderr`, `off`, or a file path (appended to). Default: `stdout`.
    pub output: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// MCP tool name: 1 to 128 of `A-Z a-z 0-9 _ - .`, unique.
    pub name: String,
    /// Human-readable title.
    #[serde(default)]
    pub title: Option<String>,
    pub description: String,
    /// JSON Schema of the arguments. Default: `{"type": "object"}`.
    #[serde(default = "default_input_schema")]
    pub input_schema: serde_json::Value,
    /// Scopes a caller must hold, all of them, to see and call this tool. Default: none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Labels policies can target (`tools: [tag:finance]`). Default: none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form facts conditions can read as `tool.metadata`. Default: none.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The upstream credential (from `credentials[]`) put on every call. Default: none.
    #[serde(default)]
    pub credential: Option<String>,
    pub http: HttpToolConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToolConfig {
    /// Default: `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute http(s) URL; `{arg}` placeholders are allowed in the path only and are
    /// replaced by the percent-encoded argument.
    pub url: String,
    /// Query parameter name → argument name.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Request header name → argument name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Where arguments not used by the path, `query` or `headers` go. Default: `query` for
    /// GET, HEAD and DELETE, `json` otherwise.
    #[serde(default)]
    pub rest: Option<RestArgs>,
    /// Call timeout. Default: `upstream.default_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestArgs {
    /// As query parameters.
    Query,
    /// As the members of a JSON object body.
    Json,
    /// Dropped.
    None,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connections_per_ip() -> usize {
    256
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
fn default_input_schema() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}
fn default_method() -> String {
    "GET".to_owned()
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        Self {
            user_id: "X-User-Id".into(),
            scopes: "X-User-Scopes".into(),
            roles: "X-User-Roles".into(),
            tenant: "X-Tenant-Id".into(),
            client_id: "X-Client-Id".into(),
            request_id: "X-Request-Id".into(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            dangerous_allow_private_upstreams: false,
            allow_cidrs: Vec::new(),
            default_timeout: Duration::from_secs(30),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { output: "stdout".into() }
    }
}

impl ServerConfig {
    /// The base URL without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The canonical MCP resource URI: the audience every token must carry.
    pub fn resource(&self) -> String {
        format!("{}/mcp", self.public_base())
    }
}
