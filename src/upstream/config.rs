//! The upstream stage's configuration: the SSRF guard's allow-list, timeouts, and the names of
//! the identity headers, as parsed.

use std::time::Duration;

use serde::Deserialize;

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
    /// A signed identity assertion (a JWT backends verify against Warden's published keys) on
    /// every upstream request. Off without it.
    pub assertion: Option<AssertionConfig>,
}

/// `identity_headers.assertion`: where the signed assertion goes and how long it is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    /// Default: `X-Warden-Identity`.
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// Lifetime of each assertion (10s–10m). Default: 60s.
    #[serde(default = "default_assertion_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_assertion_header() -> String {
    "X-Warden-Identity".into()
}

fn default_assertion_ttl() -> Duration {
    Duration::from_secs(60)
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

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        Self {
            user_id: "X-User-Id".into(),
            scopes: "X-User-Scopes".into(),
            roles: "X-User-Roles".into(),
            tenant: "X-Tenant-Id".into(),
            client_id: "X-Client-Id".into(),
            request_id: "X-Request-Id".into(),
            assertion: None,
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

/// Headers that neither configuration nor arguments may set upstream: the client's
/// credentials, hop-by-hop headers and framing.
pub const RESERVED_UPSTREAM_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "traceparent",
    "tracestate",
];
