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

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

pub use load::{ConfigError, Env, ProcessEnv, load_file, parse};
// Each stage owns its configuration; the whole file is composed of them here.
pub use crate::audit::config::AuditConfig;
pub use crate::federation::config::{McpServerConfig, Pinning};
pub use crate::identity::config::{IdentityConfig, IssuerConfig};
pub use crate::limits::config::LimitsConfig;
pub use crate::tools::config::{HttpToolConfig, RestArgs, ToolConfig};
pub use crate::upstream::config::{IdentityHeadersConfig, UpstreamConfig};

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway listens and how it names itself.
    pub server: ServerConfig,
    /// Trusted token issuers.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Warden's own authorization server, bridged to the company's IdP. Off without it.
    #[serde(default)]
    pub authorization_server: Option<crate::authz::AuthorizationServerConfig>,
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
    /// Gateway-issued API keys (`wdn_…`), for callers without an OAuth flow. Off by default.
    #[serde(default)]
    pub api_keys: crate::apikeys::ApiKeysConfig,
    /// Upstream credentials tools can reference by name.
    #[serde(default)]
    pub credentials: Vec<crate::credentials::CredentialConfig>,
    /// Policy files (deny-by-default rules over scopes, roles, claims and arguments).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The tools this gateway exposes.
    #[serde(default)]
    pub tools: Vec<ToolConfig>,
    /// OpenAPI documents whose operations become tools (`tools::openapi`).
    #[serde(default)]
    pub openapi: Vec<crate::tools::openapi::OpenApiConfig>,
    /// Identity-injecting HTTP proxy routes for apps that are not MCP clients (`/proxy/{name}/…`).
    #[serde(default)]
    pub routes: Vec<crate::routes::RouteConfig>,
    /// MCP servers whose tools this gateway exposes as its own (federation).
    #[serde(default)]
    pub servers: Vec<McpServerConfig>,
    /// Rate limits on tool calls and before authentication.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Who may decide the calls `approve` policy rules hold back.
    #[serde(default)]
    pub approvals: crate::approvals::ApprovalsConfig,
    /// Metrics and health endpoints.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
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
    /// The admin console at `/admin` (served whenever `token` is set).
    #[serde(default)]
    pub console: crate::admin::console::ConsoleConfig,
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
    /// Time a client has to send a request's headers: from the connection on for the first
    /// request, and from the request's first byte on a kept-alive connection; past it the
    /// connection is closed. Default: 10s.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a kept-alive HTTP/1.1 connection may stay idle between a response and the next
    /// request; then it is closed. Longer than the idle time of common client pools, so a
    /// client does not reuse a connection just as Warden closes it. Default: 120s.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time a client has to send a request's body once its headers arrived; past it the request
    /// gets 408. Default: 30s.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Open connections accepted from one client IP at a time; more are closed at once.
    /// `0` means no limit (for example behind a load balancer whose address every connection
    /// has). Default: 256.
    #[serde(default = "default_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the client, for the pre-authentication
    /// limit and `request.client_ip`. Default: none (the socket's address is the client's).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
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
fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connections_per_ip() -> usize {
    256
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
