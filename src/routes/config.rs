//! `routes:` as written in the config file.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Served at `/proxy/{name}/…`; policy names it `route:{name}`. 1 to 64 of
    /// `a-z A-Z 0-9 _ - .`, unique.
    pub name: String,
    /// The base URL requests go to: `/proxy/{name}/v1/x?q` goes to `{upstream}/v1/x?q`. http or
    /// https, no query, fragment or user info; checked by the SSRF guard like every upstream.
    pub upstream: String,
    /// Methods passed on; any other is 405. Default: `[GET, HEAD]`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Path prefixes (under the route) that may be reached, matched on segment boundaries:
    /// `/v1/contacts` allows `/v1/contacts` and `/v1/contacts/7`, not `/v1/contactsX`.
    /// Default: every path.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Scopes a caller must hold, all of them. Default: none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Labels policies can target (`tools: [tag:crm]`). Default: none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form facts conditions read as `tool.metadata`. Default: none.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The upstream credential (from `credentials[]`) put on every request. Default: none.
    #[serde(default)]
    pub credential: Option<String>,
    /// The `aud` of the signed identity assertion (`identity_headers.assertion`) sent to it.
    /// Default: the upstream's origin, `scheme://host[:port]`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Cost units a request spends of each quota it falls under. Default: 1.
    #[serde(default = "crate::tools::config::default_cost")]
    pub cost: u64,
    /// Time for the whole exchange, response body included; past it the caller gets 504 (or,
    /// once the response has begun, a cut body). Default: `upstream.default_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Largest request body passed on; a larger one is 413. Default: 10 MiB.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u64,
    /// Largest response body passed back; a larger declared one is 502, a longer stream is cut.
    /// Default: `upstream.max_response_bytes`.
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
}

fn default_methods() -> Vec<String> {
    vec!["GET".into(), "HEAD".into()]
}

fn default_max_request() -> u64 {
    10 * 1024 * 1024
}
