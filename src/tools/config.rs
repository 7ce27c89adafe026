//! The tool registry's configuration: HTTP endpoint tools, as parsed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

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
    /// JSON Schema of the call's `structuredContent` (an object schema), declared to clients as
    /// the tool's `outputSchema`. Default: none.
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
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
    /// The `aud` of the signed identity assertion (`identity_headers.assertion`) sent to it.
    /// Default: the upstream's origin, `scheme://host[:port]`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Cost units one call spends of each quota it falls under (`limits.quotas`). Default: 1.
    #[serde(default = "default_cost")]
    pub cost: u64,
    /// What a call's audit event says of its arguments: `none` (default) or `digest` (a
    /// SHA-256 of their canonical JSON, to match a call to known arguments without keeping them).
    #[serde(default)]
    pub audit_arguments: AuditArguments,
    pub http: HttpToolConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditArguments {
    #[default]
    None,
    Digest,
}

pub fn default_cost() -> u64 {
    1
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
    /// The argument whose value is the whole JSON request body (an array, or an object beside
    /// arguments of the same names). Not with `rest: json`. Default: none.
    #[serde(default)]
    pub body: Option<String>,
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

fn default_input_schema() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}
fn default_method() -> String {
    "GET".to_owned()
}
