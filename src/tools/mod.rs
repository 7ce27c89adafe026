//! Tools stage: the registry of tools this gateway exposes, compiled from config and extended
//! by tool sources (federated MCP servers) at run time.
//!
//! In: `tools[]` from the config, [`ToolSpec`]s from sources. Out: [`Tool`]s with a compiled
//! argument validator and a backend; the [`Catalog`] of those in force. Arguments are validated against the tool's JSON Schema before any upstream
//! call. Remote `$ref`s are never fetched (the validator is built without network or file
//! resolution).

pub mod config;
pub(crate) mod http;
pub mod openapi;
pub mod raw;
pub(crate) mod template;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

pub use self::http::{ConnectRequired, HttpTool, ResultBody, ToolFailure, ToolOutcome, ToolResult, Wire};
pub use self::raw::RawResult;
pub use template::UrlTemplate;

use crate::config_error::ConfigError;
use crate::credentials::Credentials;
use crate::identity::Principal;
pub use crate::policy::valid_scope;
use crate::upstream::{CallContext, IdentityHeaders, Upstream};
use config::ToolConfig;
use futures::future::BoxFuture;

/// A tool, ready to list and call.
pub struct Tool {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: Arc<Map<String, Value>>,
    validator: jsonschema::Validator,
    /// All required to see and call the tool.
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    /// The federated MCP server it comes from; none for a configured tool.
    pub server: Option<String>,
    /// What the tool says of itself beyond its input: output schema, annotations, icons and
    /// `_meta`, passed through as the upstream server declared them.
    pub extras: Option<Box<rmcp::model::Tool>>,
    /// Cost units one call spends of each quota it falls under.
    pub cost: u64,
    /// A configured tool's `outputSchema` (a federated tool's is in `extras`).
    pub output_schema: Option<Arc<Map<String, Value>>>,
    /// Whether a call's audit event carries a digest of its arguments.
    pub audit_arguments: config::AuditArguments,
    /// Where a call goes: an HTTP endpoint or a federated MCP server (an OpenAPI operation
    /// next).
    pub backend: Box<dyn ToolBackend>,
}

/// A tool from elsewhere (a federated MCP server), as its source describes it.
pub struct ToolSpec {
    pub name: String,
    pub description: rmcp::model::Tool,
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub server: Option<String>,
    pub cost: u64,
    pub audit_arguments: config::AuditArguments,
    pub backend: Box<dyn ToolBackend>,
}

/// How a tool's call reaches its backend: the seam between a tool source and the request path.
/// Policy, limits, audit and identity see only [`Tool`], never where it came from; a new tool
/// source (a federated MCP server, an OpenAPI operation) is a new `ToolBackend`.
pub trait ToolBackend: Send + Sync {
    /// The upstream credential the calls carry, by name (for audit; never its secret).
    fn credential_name(&self) -> Option<&str>;

    /// Whether calls carry the caller's identity delegated upstream (a token-exchange
    /// credential), which their audit events record.
    fn delegates(&self) -> bool {
        false
    }

    /// Calls the backend with arguments policy allowed and the input schema accepted, as
    /// `principal`. A failure is a [`ToolFailure`] with a stable code, which `error` renders
    /// as a tool result with `isError` (the model sees it): never a panic, never a hang.
    fn call<'a>(
        &'a self,
        upstream: &'a Upstream,
        principal: &'a Principal,
        ctx: &'a CallContext,
        args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ToolOutcome>;

    /// The client span a call runs in (child of the request's `parent` span), named and
    /// attributed as its protocol's conventions say; none while traces are off.
    fn client_span(&self, _parent: &tracing::Span, _tool: &str) -> tracing::Span {
        tracing::Span::none()
    }

    /// The concrete backend, for code that knows the kind it wants (tests, diagnostics).
    fn as_any(&self) -> &dyn std::any::Any;
}

impl ToolBackend for HttpTool {
    fn credential_name(&self) -> Option<&str> {
        HttpTool::credential_name(self)
    }

    fn delegates(&self) -> bool {
        HttpTool::delegates(self)
    }

    fn call<'a>(
        &'a self,
        upstream: &'a Upstream,
        principal: &'a Principal,
        ctx: &'a CallContext,
        args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(HttpTool::call(self, upstream, principal, ctx, args))
    }

    fn client_span(&self, parent: &tracing::Span, tool: &str) -> tracing::Span {
        let Ok(origin) = url::Url::parse(self.origin()) else { return tracing::Span::none() };
        let span = crate::telemetry::traces::http_client_span(Some(parent), self.method().as_str(), &origin, "http_tool");
        span.record("gen_ai.tool.name", tool);
        span
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("name", &self.name).field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl Tool {
    /// The upstream credential this tool's calls carry, by name.
    pub fn credential_name(&self) -> Option<&str> {
        self.backend.credential_name()
    }

    /// Checks arguments against the input schema; the error names the first failing location.
    pub fn validate_arguments(&self, args: &Value) -> Result<(), String> {
        match self.validator.iter_errors(args).next() {
            None => Ok(()),
            Some(e) => {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "arguments".to_owned() } else { format!("arguments{at}") };
                Err(format!("{at}: {e}"))
            }
        }
    }

    /// What policy sees of this tool.
    pub fn facts(&self) -> crate::policy::ToolFacts<'_> {
        crate::policy::ToolFacts {
            name: &self.name,
            tags: &self.tags,
            metadata: &self.metadata,
            scopes: &self.scopes,
            server: self.server.as_deref(),
        }
    }

    /// The MCP description of this tool.
    pub fn descriptor(&self) -> rmcp::model::Tool {
        if let Some(extras) = &self.extras {
            let mut tool = (**extras).clone();
            tool.name = self.name.clone().into();
            return tool;
        }
        let mut tool = rmcp::model::Tool::new(self.name.clone(), self.description.clone(), Arc::clone(&self.input_schema));
        tool.output_schema.clone_from(&self.output_schema);
        match &self.title {
            Some(t) => tool.with_title(t.clone()),
            None => tool,
        }
    }

    /// A tool from a source other than the config: its input schema must be an object schema
    /// that compiles (no remote `$ref`s are fetched).
    pub fn from_spec(spec: ToolSpec) -> Result<Self, String> {
        if !valid_tool_name(&spec.name) {
            return Err(format!("{:?} is not a valid tool name", spec.name));
        }
        let schema = Arc::clone(&spec.description.input_schema);
        let validator = jsonschema::validator_for(&Value::Object((*schema).clone())).map_err(|e| format!("invalid input schema: {e}"))?;
        Ok(Self {
            name: spec.name,
            title: spec.description.title.clone(),
            description: spec.description.description.as_deref().unwrap_or_default().to_owned(),
            input_schema: schema,
            validator,
            scopes: spec.scopes,
            tags: spec.tags,
            metadata: spec.metadata,
            server: spec.server,
            extras: Some(Box::new(spec.description)),
            output_schema: None,
            cost: spec.cost,
            audit_arguments: spec.audit_arguments,
            backend: spec.backend,
        })
    }
}

/// The tools in force, by name, and the names withheld from callers (a federated tool whose
/// definition changed and awaits approval), with why.
#[derive(Debug, Default)]
pub struct ToolRegistry {
    tools: Vec<Arc<Tool>>,
    by_name: HashMap<String, Arc<Tool>>,
    withheld: HashMap<String, &'static str>,
}

impl ToolRegistry {
    pub fn build(
        configs: &[ToolConfig],
        identity_headers: &IdentityHeaders,
        default_timeout: Duration,
        credentials: &Credentials,
    ) -> Result<Self, ConfigError> {
        let mut registry = Self::default();
        for (i, c) in configs.iter().enumerate() {
            let at = |field: &str| format!("tools[{i}].{field}");
            if !valid_tool_name(&c.name) {
                return Err(ConfigError::new(at("name"), "must be 1 to 128 characters of A-Z a-z 0-9 _ - ."));
            }
            if registry.by_name.contains_key(&c.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate tool name {:?}", c.name)));
            }
            if c.description.trim().is_empty() {
                return Err(ConfigError::new(at("description"), "must not be empty"));
            }
            for (j, t) in c.tags.iter().enumerate() {
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')) {
                    return Err(ConfigError::new(format!("tools[{i}].tags[{j}]"), "tags are letters, digits, _ - . :"));
                }
            }
            for (j, s) in c.scopes.iter().enumerate() {
                if !valid_scope(s) {
                    return Err(ConfigError::new(format!("tools[{i}].scopes[{j}]"), "not a valid OAuth scope token"));
                }
            }
            let schema = match &c.input_schema {
                Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("object") => m.clone(),
                _ => return Err(ConfigError::new(at("input_schema"), "must be a JSON Schema object with \"type\": \"object\"")),
            };
            let validator = jsonschema::validator_for(&c.input_schema)
                .map_err(|e| ConfigError::new(at("input_schema"), format!("invalid JSON Schema: {e}")))?;
            let output_schema = match &c.output_schema {
                None => None,
                Some(Value::Object(m)) if m.get("type").and_then(Value::as_str) == Some("object") => {
                    jsonschema::validator_for(&Value::Object(m.clone()))
                        .map_err(|e| ConfigError::new(at("output_schema"), format!("invalid JSON Schema: {e}")))?;
                    Some(Arc::new(m.clone()))
                }
                Some(_) => return Err(ConfigError::new(at("output_schema"), "must be a JSON Schema object with \"type\": \"object\"")),
            };
            let credential = match &c.credential {
                None => None,
                Some(name) => Some(Arc::clone(
                    credentials
                        .get(name)
                        .ok_or_else(|| ConfigError::new(at("credential"), format!("no credential named {name:?} in credentials[]")))?,
                )),
            };
            let audience = crate::config_error::audience(c.audience.as_deref()).map_err(|m| ConfigError::new(at("audience"), m))?;
            let http = HttpTool::compile(&c.http, identity_headers, default_timeout, credential)
                .map_err(|e| ConfigError::new(format!("tools[{i}].http.{}", e.path), e.message))?
                .with_audience(audience);
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in http.argument_names() {
                if !properties.is_some_and(|p| p.contains_key(name)) {
                    return Err(ConfigError::new(
                        at("http"),
                        format!("maps argument {name:?}, which input_schema.properties does not declare"),
                    ));
                }
            }
            let tool = Arc::new(Tool {
                name: c.name.clone(),
                title: c.title.clone(),
                description: c.description.clone(),
                input_schema: Arc::new(schema),
                validator,
                scopes: c.scopes.clone(),
                tags: c.tags.clone(),
                metadata: c.metadata.clone(),
                server: None,
                extras: None,
                output_schema,
                cost: c.cost,
                audit_arguments: c.audit_arguments,
                backend: Box::new(http),
            });
            registry.by_name.insert(c.name.clone(), Arc::clone(&tool));
            registry.tools.push(tool);
        }
        Ok(registry)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Tool>> {
        self.by_name.get(name)
    }

    /// Every name withheld from callers, with why, sorted by name.
    pub fn withheld_names(&self) -> Vec<(&str, &'static str)> {
        let mut names: Vec<(&str, &'static str)> = self.withheld.iter().map(|(n, why)| (n.as_str(), *why)).collect();
        names.sort_unstable();
        names
    }

    /// Why a tool by that name is withheld, if it is.
    pub fn withheld(&self, name: &str) -> Option<&'static str> {
        self.withheld.get(name).copied()
    }

    /// These tools plus `more`, and `withheld` names. A name already taken keeps its first
    /// owner; the rejected ones are returned (`(name, owner)`), for the caller to report.
    pub fn extended(&self, more: &[Arc<Tool>], withheld: &[(String, &'static str)]) -> (Self, Vec<(String, String)>) {
        let mut next = Self { tools: self.tools.clone(), by_name: self.by_name.clone(), withheld: self.withheld.clone() };
        let mut collisions = Vec::new();
        for tool in more {
            if let Some(owner) = next.by_name.get(&tool.name) {
                let owner = owner.server.as_deref().map_or_else(|| "tools[]".to_owned(), |s| format!("servers[{s}]"));
                collisions.push((tool.name.clone(), owner));
                continue;
            }
            next.by_name.insert(tool.name.clone(), Arc::clone(tool));
            next.tools.push(Arc::clone(tool));
        }
        for (name, why) in withheld {
            if !next.by_name.contains_key(name) {
                next.withheld.insert(name.clone(), why);
            }
        }
        (next, collisions)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tool>> {
        self.tools.iter()
    }

    /// Every scope some tool requires, sorted: `scopes_supported` in the metadata.
    pub fn scopes(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.tools.iter().flat_map(|t| t.scopes.iter()).collect();
        set.into_iter().cloned().collect()
    }
}

/// MCP tool names: 1 to 128 of ASCII letters, digits, `_`, `-` and `.`.
pub fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The tools in force, swapped whole when a source's catalog changes; a request keeps the
/// registry it started with.
pub struct Catalog {
    /// The configured tools (`tools[]`, `openapi[]`), replaced whole by a reload, and what the
    /// federated servers last offered; the two are combined under this lock, so a reload and a
    /// catalog change never interleave.
    sources: std::sync::Mutex<Sources>,
    current: arc_swap::ArcSwap<ToolRegistry>,
    /// What policy governs besides tools (federated resources and prompts), by name.
    governed: arc_swap::ArcSwap<Vec<Governed>>,
    /// Told of every change of what the catalog offers (for the callers' `list_changed`).
    changes: tokio::sync::broadcast::Sender<Changed>,
}

/// What changed in the catalog: its tools, or its federated resources and prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Tools,
    ResourcesAndPrompts,
}

/// A name policy governs that is not a tool (a federated resource or prompt), with the facts
/// policy sees of it.
#[derive(Debug, Clone)]
pub struct Governed {
    pub name: String,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub scopes: Vec<String>,
    pub server: Option<String>,
}

impl Governed {
    pub fn facts(&self) -> crate::policy::ToolFacts<'_> {
        crate::policy::ToolFacts {
            name: &self.name,
            tags: &self.tags,
            metadata: &self.metadata,
            scopes: &self.scopes,
            server: self.server.as_deref(),
        }
    }
}

/// What the tools in force are made of.
struct Sources {
    configured: Arc<ToolRegistry>,
    sourced: Vec<Arc<Tool>>,
    withheld: Vec<(String, &'static str)>,
}

impl Catalog {
    pub fn new(configured: ToolRegistry) -> Self {
        let configured = Arc::new(configured);
        Self {
            current: arc_swap::ArcSwap::new(Arc::clone(&configured)),
            sources: std::sync::Mutex::new(Sources { configured, sourced: Vec::new(), withheld: Vec::new() }),
            governed: arc_swap::ArcSwap::from_pointee(Vec::new()),
            changes: tokio::sync::broadcast::channel(16).0,
        }
    }

    /// Every change of the tools, resources or prompts offered, from now on.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Changed> {
        self.changes.subscribe()
    }

    /// Puts `next` in force, and says so if what it offers differs (names or definitions).
    fn store(&self, next: ToolRegistry) {
        let before = self.current.swap(Arc::new(next));
        let offered = |r: &ToolRegistry| r.iter().map(|t| serde_json::to_string(&t.descriptor()).unwrap_or_default()).collect::<Vec<_>>();
        if offered(&before) != offered(&self.current.load()) {
            // Nobody listening is no failure.
            let _ = self.changes.send(Changed::Tools);
        }
    }

    /// A new policy is in force: what a caller may see of every list can have changed.
    pub fn visibility_changed(&self) {
        let _ = self.changes.send(Changed::Tools);
        let _ = self.changes.send(Changed::ResourcesAndPrompts);
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The names policy governs besides tools.
    pub fn governed(&self) -> Arc<Vec<Governed>> {
        self.governed.load_full()
    }

    pub fn set_governed(&self, governed: Vec<Governed>) {
        let names = |g: &[Governed]| g.iter().map(|g| (g.name.clone(), g.server.clone())).collect::<Vec<_>>();
        let before = self.governed.swap(Arc::new(governed));
        if names(&before) != names(&self.governed.load()) {
            let _ = self.changes.send(Changed::ResourcesAndPrompts);
        }
    }

    /// The registry in force now.
    pub fn load(&self) -> Arc<ToolRegistry> {
        self.current.load_full()
    }

    /// The configured tools alone (what `warden check` and the metadata know at start).
    pub fn configured(&self) -> Arc<ToolRegistry> {
        Arc::clone(&self.sources().configured)
    }

    /// Puts the configured tools plus `sourced` in force; returns the names refused because a
    /// tool already had them.
    pub fn replace(&self, sourced: &[Arc<Tool>], withheld: &[(String, &'static str)]) -> Vec<(String, String)> {
        let mut sources = self.sources();
        sources.sourced = sourced.to_vec();
        sources.withheld = withheld.to_vec();
        let (next, collisions) = sources.configured.extended(sourced, withheld);
        self.store(next);
        collisions
    }

    /// Replaces the configured tools (a config reload), keeping what the federated servers
    /// offer; returns the federated names now refused because a configured tool has them.
    /// Requests in flight keep the registry they started with.
    pub fn reconfigure(&self, configured: ToolRegistry) -> Vec<(String, String)> {
        let mut sources = self.sources();
        sources.configured = Arc::new(configured);
        let (next, collisions) = sources.configured.extended(&sources.sourced, &sources.withheld);
        self.store(next);
        collisions
    }
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("tools", &self.load().tools.len()).finish()
    }
}
