//! The federation's configuration: `servers[]`, as parsed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// One MCP server whose tools Warden exposes as its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Unique; letters, digits, `_` and `-`. Policy rules target its tools as `server:NAME`.
    pub name: String,
    /// Put before every upstream tool name to make the exposed name. Default: `"{name}_"`; may
    /// be `""`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A remote server over Streamable HTTP. Exactly one of `url` and `command`.
    #[serde(default)]
    pub url: Option<String>,
    /// A local server over stdio, started by Warden.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of the command: only these variables (and `PATH`, `HOME`, `LANG` from
    /// Warden's), so a server never inherits Warden's secrets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the command, relative to the config file.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Globs over upstream tool names: only these. Default: all.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs over upstream tool names: never these (wins over `include`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The upstream credential (from `credentials[]`) Warden presents to a remote server.
    #[serde(default)]
    pub credential: Option<String>,
    /// The `aud` of the signed identity assertion (`identity_headers.assertion`) sent to it.
    /// Default: the upstream's origin, `scheme://host[:port]`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Call timeout. Default: `upstream.default_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Scopes a caller must hold, all of them, to see and call any of this server's tools.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Labels on every tool of this server, for policy (`tag:…`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Facts conditions read as `tool.metadata`.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// What happens when a tool's definition changes: `enforce` (withheld until approved),
    /// `warn` (served, audited), `off`. Default: `enforce`.
    #[serde(default)]
    pub pinning: Pinning,
    /// How often the tool catalog is re-read (besides `notifications/tools/list_changed`).
    /// Default: 5m; `0s`: only on notification.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Cost units one call of any of its tools spends of each quota it falls under. Default: 1.
    #[serde(default = "crate::tools::config::default_cost")]
    pub cost: u64,
    /// Upstream tool name → its cost, where it differs from `cost`.
    #[serde(default)]
    pub costs: BTreeMap<String, u64>,
    /// The most bytes one answer of the server may hold (a result, a catalog page, an SSE
    /// event, a stdio line); a larger one fails its request with `upstream_too_large`.
    /// Default: `upstream.max_response_bytes`.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// Bounds on reading the server's catalog (tools, resources, templates, prompts).
    #[serde(default)]
    pub catalog: CatalogLimits,
    /// `digest`: its tools' audit events carry a SHA-256 of the arguments. Default: `none`.
    #[serde(default)]
    pub audit_arguments: crate::tools::config::AuditArguments,
    /// What the server may ask of the calling client through Warden (2026-07-28 input
    /// requests). Default: all of it, as far as the client itself declared it.
    #[serde(default)]
    pub client_requests: ClientRequests,
}

/// The requests a federated server may send the calling client, by kind. A kind turned off is
/// not among the capabilities the server sees, and a server that asks for it anyway fails the
/// call (`client_request_forbidden`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientRequests {
    /// `elicitation/create`: ask the user.
    pub elicitation: bool,
    /// `sampling/createMessage`: ask the client's model.
    pub sampling: bool,
    /// `roots/list`: the client's roots.
    pub roots: bool,
    /// A stdio server of the older revisions is sent one request at a time, so that a request
    /// it makes of the client belongs to the one call in progress: Warden then declares the
    /// kinds above to it and relays them. Off (the default), Warden declares nothing to a stdio
    /// server and its requests are refused: on a shared pipe they say nothing of whose call
    /// they belong to. Stdio servers only.
    pub one_call_at_a_time: bool,
}

impl Default for ClientRequests {
    fn default() -> Self {
        Self { elicitation: true, sampling: true, roots: true, one_call_at_a_time: false }
    }
}

impl ClientRequests {
    /// The capabilities of `client` the server may see: those the client declared, less what
    /// is turned off here.
    pub fn allowed(&self, client: &rmcp::model::ClientCapabilities) -> rmcp::model::ClientCapabilities {
        let mut allowed = rmcp::model::ClientCapabilities::default();
        if self.elicitation {
            allowed.elicitation.clone_from(&client.elicitation);
        }
        if self.sampling {
            allowed.sampling.clone_from(&client.sampling);
        }
        if self.roots {
            allowed.roots.clone_from(&client.roots);
        }
        allowed
    }

    /// What Warden declares to a server of the older revisions in `initialize`: the kinds it
    /// may ask, which Warden relays to the calling client when that client declared them.
    pub fn declared(&self) -> rmcp::model::ClientCapabilities {
        let mut declared = rmcp::model::ClientCapabilities::default();
        if self.elicitation {
            let mut elicitation = rmcp::model::ElicitationCapability::default();
            elicitation.form = Some(Default::default());
            elicitation.url = Some(Default::default());
            declared.elicitation = Some(elicitation);
        }
        if self.sampling {
            declared.sampling = Some(Default::default());
        }
        if self.roots {
            declared.roots = Some(Default::default());
        }
        declared
    }

    /// A request `server` makes of the calling client during a call (`params` as it sent
    /// them), marked forbidden when this configuration does not let it ask that.
    pub fn ask<'a>(&self, server: &'a str, method: &'static str, params: Option<serde_json::Value>) -> crate::upstream::Ask<'a> {
        let mut request = serde_json::json!({"method": method});
        if let Some(params) = params {
            request["params"] = params;
        }
        crate::upstream::Ask { server, method, request, forbidden: !self.permits(method) }
    }

    /// Whether a server may ask its caller for `method`.
    fn permits(&self, method: &str) -> bool {
        match method {
            "elicitation/create" => self.elicitation,
            "sampling/createMessage" => self.sampling,
            "roots/list" => self.roots,
            _ => false,
        }
    }

    /// The method of the first input request this configuration forbids, if any.
    pub fn forbidden(&self, requests: &rmcp::model::InputRequests) -> Option<&'static str> {
        requests.values().find_map(|request| match request {
            rmcp::model::InputRequest::Elicitation(_) if !self.elicitation => Some("elicitation/create"),
            rmcp::model::InputRequest::CreateMessage(_) if !self.sampling => Some("sampling/createMessage"),
            rmcp::model::InputRequest::ListRoots(_) if !self.roots => Some("roots/list"),
            _ => None,
        })
    }
}

/// How much of a server's catalog Warden reads: a server past a bound keeps its last good
/// catalog (none at first) and is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogLimits {
    /// Pages of one list (`nextCursor` followed). Default: 100.
    pub max_pages: usize,
    /// Items of one list (tools, resources, templates or prompts). Default: 10,000.
    pub max_items: usize,
    /// Bytes of one list, its items as JSON. Default: 32 MiB.
    pub max_bytes: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        Self { max_pages: 100, max_items: 10_000, max_bytes: 32 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pinning {
    #[default]
    Enforce,
    Warn,
    Off,
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

impl McpServerConfig {
    /// The prefix of exposed tool names.
    pub fn prefix(&self) -> String {
        self.prefix.clone().unwrap_or_else(|| format!("{}_", self.name))
    }
}
