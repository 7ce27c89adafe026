//! Federation stage: the MCP servers people already run (remote over Streamable HTTP, local over
//! stdio), their tools exposed as Warden tools behind the same identity, policy, credentials and
//! audit.
//!
//! In: `servers[]` from the config. Out: tools in the [`Catalog`], each a [`Tool`] whose backend
//! is a federated call. Warden's front stays stateless; toward each server one supervisor task
//! keeps a client session (rmcp's client: initialize, `Mcp-Session-Id`, session recovery),
//! restarts it with backoff when it ends (a stdio process that exits is started again), re-reads
//! the catalog on `notifications/tools/list_changed` and every `refresh_interval`, and keeps the
//! last good catalog while the server is down; calls to it then fail at once with
//! `upstream_unavailable`. Every definition is checked against its pin ([`pins`]).
//!
//! The client's token never goes upstream: a call carries the caller's identity headers (HTTP)
//! and Warden's credential for the server, put on by the tool, per call.

pub mod config;
mod http;
pub mod pins;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use futures::future::BoxFuture;
use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest, GetExtensions, ServerResult};
use rmcp::service::{Peer, PeerRequestOptions, RoleClient, RunningService, ServiceError};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config_error::ConfigError;
use crate::credentials::{Credential, CredentialError, Credentials};
use crate::identity::Principal;
use crate::tools::{Catalog, Tool, ToolBackend, ToolFailure, ToolOutcome, ToolResult, ToolSpec};
use crate::upstream::{CallContext, Upstream, inject_identity};
use config::{McpServerConfig, Pinning};
use pins::{PinVerdict, Pins};

/// How long connecting (start, initialize) may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Restart backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// A line of a stdio server's stderr is logged up to this many bytes.
const STDERR_LINE: usize = 2048;

/// Every federated server, and the catalog their tools go into.
pub struct Federation {
    servers: Vec<Arc<Server>>,
    catalog: Arc<Catalog>,
    pins: Arc<Pins>,
    /// Called after the catalog changed (the composition root rebinds the policy).
    on_change: Box<dyn Fn() + Send + Sync>,
}

/// One server: what the config says, and the tools it has now.
pub struct Server {
    pub name: String,
    prefix: String,
    include: Vec<String>,
    exclude: Vec<String>,
    scopes: Vec<String>,
    tags: Vec<String>,
    metadata: Map<String, Value>,
    pinning: Pinning,
    refresh_interval: Duration,
    link: Arc<Link>,
    /// The last good catalog (served while the server is down).
    tools: ArcSwap<Vec<Arc<Tool>>>,
    withheld: ArcSwap<Vec<(String, &'static str)>>,
    /// Its resources, resource templates and prompts, names prefixed (the last good lists).
    extras: ArcSwap<Extras>,
    /// Set by `notifications/tools/list_changed`.
    changed: Arc<Notify>,
    /// Whether the first connection attempt is over (either way).
    settled: tokio::sync::watch::Sender<bool>,
}

/// How calls reach one server: the current session, and what each call needs.
pub struct Link {
    server: String,
    transport: Transport,
    credential: Option<Arc<Credential>>,
    timeout: Duration,
    upstream: Upstream,
    /// The shared session (stdio, or HTTP with no per-user credential).
    peer: ArcSwapOption<Peer<RoleClient>>,
    /// With a per-user credential: one session per caller, each with that caller's token.
    per_user: bool,
    users: dashmap::DashMap<String, Arc<tokio::sync::Mutex<Option<UserSession>>>>,
    /// Set when a catalog refresh should run (a notification, a first user session).
    changed: Arc<Notify>,
    /// Calls whose caller wants progress, by the progress token of the upstream request.
    progress: Arc<dashmap::DashMap<String, tokio::sync::mpsc::Sender<crate::upstream::Progress>>>,
}

/// A caller's own session with a server whose credential is per user.
struct UserSession {
    peer: Arc<Peer<RoleClient>>,
    stop: CancellationToken,
    last_used: std::sync::Mutex<std::time::Instant>,
}

/// Per-user sessions idle this long are closed; at most this many are kept per server.
const USER_SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
const USER_SESSIONS_MAX: usize = 1000;

enum Transport {
    Http { url: Arc<str> },
    Stdio { command: String, args: Vec<String>, env: Vec<(String, String)>, cwd: Option<PathBuf> },
}

/// Variables a stdio server gets from Warden's environment; everything else it must be given.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

impl Federation {
    /// Checks `servers[]` and prepares each server; connects nothing (see [`Federation::start`]).
    pub fn build(
        configs: &[McpServerConfig],
        base_dir: &std::path::Path,
        upstream: &Upstream,
        default_timeout: Duration,
        credentials: &Credentials,
        catalog: Arc<Catalog>,
        pins: Arc<Pins>,
    ) -> Result<Self, ConfigError> {
        let configured = catalog.configured();
        let mut servers: Vec<Arc<Server>> = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let at = |field: &str| format!("servers[{i}].{field}");
            if c.name.is_empty() || c.name.len() > 64 || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')) {
                return Err(ConfigError::new(at("name"), "must be 1 to 64 characters of A-Z a-z 0-9 _ -"));
            }
            if let Some(other) = servers.iter().find(|s| s.name == c.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate server name {:?}", other.name)));
            }
            let prefix = c.prefix();
            if !prefix.is_empty() && !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(ConfigError::new(at("prefix"), "must be characters of A-Z a-z 0-9 _ - . (or empty)"));
            }
            if let Some(other) = servers.iter().find(|s| s.prefix == prefix) {
                return Err(ConfigError::new(
                    at("prefix"),
                    format!("{prefix:?} is also the prefix of server {:?}: their tool names could collide", other.name),
                ));
            }
            if let Some(tool) = configured.iter().find(|t| !prefix.is_empty() && t.name.starts_with(&prefix)) {
                return Err(ConfigError::new(
                    at("prefix"),
                    format!("tools[] {:?} starts with {prefix:?}: it could collide with a tool of server {:?}", tool.name, c.name),
                ));
            }
            for (field, globs) in [("include", &c.include), ("exclude", &c.exclude)] {
                for (j, g) in globs.iter().enumerate() {
                    if g.is_empty() {
                        return Err(ConfigError::new(format!("servers[{i}].{field}[{j}]"), "must not be empty"));
                    }
                }
            }
            for (j, t) in c.tags.iter().enumerate() {
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')) {
                    return Err(ConfigError::new(format!("servers[{i}].tags[{j}]"), "tags are letters, digits, _ - . :"));
                }
            }
            for (j, s) in c.scopes.iter().enumerate() {
                if !crate::policy::valid_scope(s) {
                    return Err(ConfigError::new(format!("servers[{i}].scopes[{j}]"), "not a valid OAuth scope token"));
                }
            }
            let transport = match (&c.url, &c.command) {
                (Some(url), None) => {
                    let parsed = url::Url::parse(url)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                        .ok_or_else(|| ConfigError::new(at("url"), "must be an absolute http(s) URL"))?;
                    if upstream.check_literal(&parsed).is_err() {
                        return Err(ConfigError::new(at("url"), "destination not allowed by the SSRF guard (see upstream.allow_cidrs)"));
                    }
                    if !c.args.is_empty() || !c.env.is_empty() || c.cwd.is_some() {
                        return Err(ConfigError::new(at("args"), "args, env and cwd are for a command, not a url"));
                    }
                    Transport::Http { url: Arc::from(url.as_str()) }
                }
                (None, Some(command)) => {
                    if command.trim().is_empty() {
                        return Err(ConfigError::new(at("command"), "must not be empty"));
                    }
                    if c.credential.is_some() {
                        return Err(ConfigError::new(
                            at("credential"),
                            "a stdio server is given its secrets through env, not a credential",
                        ));
                    }
                    let env = c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    Transport::Stdio { command: command.clone(), args: c.args.clone(), env, cwd: c.cwd.as_ref().map(|d| base_dir.join(d)) }
                }
                _ => return Err(ConfigError::new(at("url"), "set exactly one of url and command")),
            };
            let credential = match &c.credential {
                None => None,
                Some(name) => {
                    let credential = credentials
                        .get(name)
                        .ok_or_else(|| ConfigError::new(at("credential"), format!("no credential named {name:?} in credentials[]")))?;
                    Some(Arc::clone(credential))
                }
            };
            let timeout = c.timeout.unwrap_or(default_timeout);
            if timeout.is_zero() {
                return Err(ConfigError::new(at("timeout"), "must be greater than 0"));
            }
            let (settled, _) = tokio::sync::watch::channel(false);
            let per_user = credential
                .as_ref()
                .and_then(|c| c.connection())
                .is_some_and(|conn| conn.settings.mode == crate::credentials::oauth::ConnectionMode::PerUser);
            let changed = Arc::new(Notify::new());
            servers.push(Arc::new(Server {
                name: c.name.clone(),
                prefix,
                include: c.include.clone(),
                exclude: c.exclude.clone(),
                scopes: c.scopes.clone(),
                tags: c.tags.clone(),
                metadata: c.metadata.clone(),
                pinning: c.pinning,
                refresh_interval: c.refresh_interval,
                link: Arc::new(Link {
                    server: c.name.clone(),
                    transport,
                    credential,
                    timeout,
                    upstream: upstream.clone(),
                    peer: ArcSwapOption::empty(),
                    per_user,
                    users: dashmap::DashMap::new(),
                    changed: Arc::clone(&changed),
                    progress: Arc::new(dashmap::DashMap::new()),
                }),
                tools: ArcSwap::from_pointee(Vec::new()),
                withheld: ArcSwap::from_pointee(Vec::new()),
                extras: ArcSwap::from_pointee(Extras::default()),
                changed,
                settled,
            }));
        }
        Ok(Self { servers, catalog, pins, on_change: Box::new(|| {}) })
    }

    /// What runs after every catalog change (the policy is rebound to the new tools).
    pub fn on_change(&mut self, f: impl Fn() + Send + Sync + 'static) {
        self.on_change = Box::new(f);
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    pub fn pins(&self) -> &Arc<Pins> {
        &self.pins
    }

    /// Starts one supervisor per server, until `cancel`; stdio servers are stopped then.
    pub fn start(self: &Arc<Self>, cancel: &CancellationToken) {
        for server in &self.servers {
            tokio::spawn(Arc::clone(self).supervise(Arc::clone(server), cancel.clone()));
        }
    }

    /// Waits until every server's first connection attempt is over (connected and listed, or
    /// failed), at most `limit`.
    pub async fn settled(&self, limit: Duration) {
        let all = futures::future::join_all(self.servers.iter().map(|s| {
            let mut rx = s.settled.subscribe();
            async move {
                let _ = rx.wait_for(|done| *done).await;
            }
        }));
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// Re-reads every connected server's catalog now (after an approval).
    pub fn refresh_all(&self) {
        for server in &self.servers {
            server.changed.notify_one();
        }
    }

    /// Puts every server's current tools in force.
    fn publish(&self) {
        let mut tools = Vec::new();
        let mut withheld = Vec::new();
        for server in &self.servers {
            tools.extend(server.tools.load().iter().cloned());
            withheld.extend(server.withheld.load().iter().cloned());
        }
        for (name, owner) in self.catalog.replace(&tools, &withheld) {
            tracing::error!(tool = %name, owner = %owner, "a federated tool's name is already taken: not exposed");
        }
        self.catalog.set_governed(self.governed());
        (self.on_change)();
    }

    async fn supervise(self: Arc<Self>, server: Arc<Server>, cancel: CancellationToken) {
        if server.link.per_user {
            return self.supervise_per_user(server, cancel).await;
        }
        let mut backoff = BACKOFF.0;
        loop {
            let connected = tokio::select! {
                () = cancel.cancelled() => return,
                r = tokio::time::timeout(CONNECT_TIMEOUT, server.link.connect(Arc::new(service_principal()))) => r,
            };
            match connected {
                Ok(Ok(running)) => {
                    backoff = BACKOFF.0;
                    let peer = running.peer().clone();
                    server.link.peer.store(Some(Arc::new(peer.clone())));
                    tracing::info!(server = %server.name, "federated server connected");
                    let stop = running.cancellation_token();
                    let mut done = tokio::spawn(running.waiting());
                    self.refresh(&server, &peer).await;
                    server.settled.send_replace(true);
                    loop {
                        let interval = server.refresh_interval;
                        let tick =
                            async { if interval.is_zero() { std::future::pending().await } else { tokio::time::sleep(interval).await } };
                        tokio::select! {
                            () = cancel.cancelled() => {
                                server.link.peer.store(None);
                                stop.cancel();
                                let _ = tokio::time::timeout(Duration::from_secs(5), &mut done).await;
                                return;
                            }
                            _ = &mut done => break,
                            () = server.changed.notified() => self.refresh(&server, &peer).await,
                            () = tick => self.refresh(&server, &peer).await,
                        }
                    }
                    server.link.peer.store(None);
                    tracing::warn!(server = %server.name, "federated server session ended; reconnecting");
                }
                Ok(Err(e)) => {
                    tracing::warn!(server = %server.name, error = %e, retry_in = ?backoff, "federated server unavailable");
                    server.settled.send_replace(true);
                }
                Err(_) => {
                    tracing::warn!(server = %server.name, retry_in = ?backoff, "federated server did not initialize in time");
                    server.settled.send_replace(true);
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// A server whose credential is per user has no session of its own: its catalog is read
    /// through any caller's session. Until one exists, it offers one tool, `{prefix}connect`,
    /// through which a caller connects their account (a URL elicitation) and so brings the
    /// catalog in. Idle caller sessions are closed.
    async fn supervise_per_user(self: Arc<Self>, server: Arc<Server>, cancel: CancellationToken) {
        if server.tools.load().is_empty() {
            server.tools.store(Arc::new(connect_tool(&server).into_iter().collect()));
            self.publish();
        }
        server.settled.send_replace(true);
        loop {
            let interval = if server.refresh_interval.is_zero() {
                Duration::from_secs(60)
            } else {
                server.refresh_interval.min(Duration::from_secs(60))
            };
            tokio::select! {
                () = cancel.cancelled() => {
                    server.link.close_all();
                    return;
                }
                () = server.changed.notified() => {}
                () = tokio::time::sleep(interval) => server.link.close_idle(),
            }
            if let Some(peer) = server.link.any_user_peer() {
                self.refresh(&server, &peer).await;
            }
        }
    }

    /// Lists the server's tools and puts the ones included and not withheld in force; on
    /// failure the last good catalog stays.
    async fn refresh(&self, server: &Arc<Server>, peer: &Peer<RoleClient>) {
        let listed = match tokio::time::timeout(server.link.timeout, peer.list_all_tools()).await {
            Ok(Ok(tools)) => tools,
            Ok(Err(e)) => {
                tracing::warn!(server = %server.name, error = %e, "tools/list failed; the last catalog stays");
                return;
            }
            Err(_) => {
                tracing::warn!(server = %server.name, "tools/list timed out; the last catalog stays");
                return;
            }
        };
        let mut tools = Vec::with_capacity(listed.len());
        let mut withheld = Vec::new();
        for upstream_tool in listed {
            let upstream_name = upstream_tool.name.to_string();
            if !server.includes(&upstream_name) {
                continue;
            }
            let exposed = format!("{}{upstream_name}", server.prefix);
            if self.pins.check(&server.name, &upstream_tool, server.pinning).await == PinVerdict::Withhold {
                withheld.push((exposed, "tool_definition_changed"));
                continue;
            }
            let backend = FederatedTool { link: Arc::clone(&server.link), upstream_name: upstream_name.clone() };
            let spec = ToolSpec {
                name: exposed.clone(),
                description: upstream_tool,
                scopes: server.scopes.clone(),
                tags: server.tags.clone(),
                metadata: server.metadata.clone(),
                server: Some(server.name.clone()),
                backend: Box::new(backend),
            };
            match Tool::from_spec(spec) {
                Ok(tool) => tools.push(Arc::new(tool)),
                Err(why) => tracing::warn!(server = %server.name, tool = %upstream_name, %why, "federated tool not exposed"),
            }
        }
        server.tools.store(Arc::new(tools));
        server.withheld.store(Arc::new(withheld));
        server.extras.store(Arc::new(server.list_extras(peer).await));
        self.publish();
    }
}

impl Server {
    /// The server's resources, templates and prompts (those its capabilities offer), names
    /// prefixed; on failure, the last good lists stay.
    async fn list_extras(&self, peer: &Peer<RoleClient>) -> Extras {
        let last = self.extras.load_full();
        let caps = peer.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
        let limit = self.link.timeout;
        let mut extras = Extras::default();
        if caps.resources.is_some() {
            extras.resources = match tokio::time::timeout(limit, peer.list_all_resources()).await {
                Ok(Ok(list)) => list
                    .into_iter()
                    .map(|mut r| {
                        r.name = format!("{}{}", self.prefix, r.name);
                        r
                    })
                    .collect(),
                _ => last.resources.clone(),
            };
            extras.templates = match tokio::time::timeout(limit, peer.list_all_resource_templates()).await {
                Ok(Ok(list)) => list
                    .into_iter()
                    .map(|mut t| {
                        t.name = format!("{}{}", self.prefix, t.name);
                        t
                    })
                    .collect(),
                _ => last.templates.clone(),
            };
        }
        if caps.prompts.is_some() {
            extras.prompts = match tokio::time::timeout(limit, peer.list_all_prompts()).await {
                Ok(Ok(list)) => list
                    .into_iter()
                    .map(|mut p| {
                        p.name = format!("{}{}", self.prefix, p.name);
                        p
                    })
                    .collect(),
                _ => last.prompts.clone(),
            };
        }
        extras
    }

    /// What policy sees of one of this server's resources or prompts: its exposed name and the
    /// server's scopes, tags and metadata.
    fn facts<'a>(&'a self, name: &'a str) -> crate::policy::ToolFacts<'a> {
        crate::policy::ToolFacts { name, tags: &self.tags, metadata: &self.metadata, scopes: &self.scopes, server: Some(&self.name) }
    }

    fn includes(&self, name: &str) -> bool {
        let matches = |g: &String| crate::policy::glob(g.as_bytes(), name.as_bytes());
        (self.include.is_empty() || self.include.iter().any(matches)) && !self.exclude.iter().any(matches)
    }
}

/// Answers the server's notifications: a changed tool list triggers a catalog refresh; a
/// call's progress goes to its caller.
#[derive(Clone)]
struct Watcher {
    changed: Arc<Notify>,
    progress: Arc<dashmap::DashMap<String, tokio::sync::mpsc::Sender<crate::upstream::Progress>>>,
}

impl rmcp::ClientHandler for Watcher {
    async fn on_progress(&self, params: rmcp::model::ProgressNotificationParam, _context: rmcp::service::NotificationContext<RoleClient>) {
        let key = serde_json::to_string(&params.progress_token).unwrap_or_default();
        if let Some(caller) = self.progress.get(&key) {
            // A caller that cannot keep up misses a report, never stalls the session.
            let _ = caller.try_send(crate::upstream::Progress { progress: params.progress, total: params.total, message: params.message });
        }
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut info = rmcp::model::ClientConfig::default();
        info.client_info = rmcp::model::Implementation::new("warden", env!("CARGO_PKG_VERSION"));
        info
    }
}

impl Link {
    /// Starts a session: spawns the process (stdio) or initializes over HTTP.
    async fn connect(&self, owner: Arc<Principal>) -> Result<RunningService<RoleClient, Watcher>, String> {
        let watcher = Watcher { changed: Arc::clone(&self.changed), progress: Arc::clone(&self.progress) };
        match &self.transport {
            Transport::Http { url } => {
                let client = http::FederatedHttp { upstream: self.upstream.clone(), credential: self.credential.clone(), service: owner };
                let mut config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(Arc::clone(url));
                config.reinit_on_expired_session = true;
                let transport = rmcp::transport::StreamableHttpClientTransport::with_client(client, config);
                rmcp::serve_client(watcher, transport).await.map_err(|e| e.to_string())
            }
            Transport::Stdio { command, args, env, cwd } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).env_clear();
                for name in INHERITED_ENV {
                    if let Ok(v) = std::env::var(name) {
                        cmd.env(name, v);
                    }
                }
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start {command}: {}", e.kind()))?;
                if let Some(stderr) = stderr {
                    tokio::spawn(log_stderr(self.server.clone(), stderr));
                }
                rmcp::serve_client(watcher, transport).await.map_err(|e| e.to_string())
            }
        }
    }

    /// One `tools/call` as `principal`: identity and credential on it (HTTP), within the
    /// timeout; cancelled upstream if the caller goes away first.
    async fn call(&self, name: &str, principal: &Principal, ctx: &CallContext, args: &Map<String, Value>) -> ToolOutcome {
        let peer = if self.per_user {
            self.user_peer(principal, ctx).await?
        } else {
            self.peer.load_full().ok_or(ToolFailure::ServerUnavailable)?
        };
        let mut generation = None;
        let mut rejected = None;
        for _attempt in 0..2 {
            let mut request = CallToolRequest::new(CallToolRequestParams::new(name.to_owned()).with_arguments(args.clone()));
            if matches!(self.transport, Transport::Http { .. }) {
                let (headers, g) = self.call_headers(principal, ctx, rejected).await?;
                generation = g;
                request.extensions_mut().insert(headers);
            }
            let options = PeerRequestOptions::with_timeout(self.timeout);
            let handle = peer
                .send_request_with_option(ClientRequest::CallToolRequest(request), options)
                .await
                .map_err(|e| failure(e, self.timeout))?;
            let guard = CancelOnDrop { peer: Some((*peer).clone()), id: handle.id.clone() };
            let progress_key = ctx.progress.as_ref().map(|caller| {
                let key = serde_json::to_string(&handle.progress_token).unwrap_or_default();
                self.progress.insert(key.clone(), caller.clone());
                ProgressGuard { map: &self.progress, key }
            });
            let answer = handle.await_response().await;
            if progress_key.is_some() {
                // rmcp hands each notification to its own task, so reports sent just before the
                // result may still be on their way: let them through before forwarding stops.
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            }
            drop(progress_key);
            guard.disarm();
            match answer {
                Ok(ServerResult::CallToolResult(result)) => return Ok(ToolResult { result, upstream_status: 200 }),
                Ok(_) => return Err(ToolFailure::Rpc { code: -32603, message: "unexpected result type".into() }),
                Err(e) if auth_required(&e) && rejected.is_none() && self.credential.as_ref().is_some_and(|c| c.refreshable()) => {
                    rejected = generation;
                    if rejected.is_none() {
                        return Err(failure(e, self.timeout));
                    }
                }
                Err(e) => return Err(failure(e, self.timeout)),
            }
        }
        Err(ToolFailure::Credential(CredentialError::Unhealthy))
    }

    /// One request other than a tool call (a resource read, a prompt), as `principal`, with
    /// identity and credential on it (HTTP), within the timeout, cancelled upstream if dropped.
    async fn request(&self, mut request: ClientRequest, principal: &Principal, ctx: &CallContext) -> Result<ServerResult, ToolFailure> {
        let peer = if self.per_user {
            self.user_peer(principal, ctx).await?
        } else {
            self.peer.load_full().ok_or(ToolFailure::ServerUnavailable)?
        };
        if matches!(self.transport, Transport::Http { .. }) {
            let (headers, _) = self.call_headers(principal, ctx, None).await?;
            request.extensions_mut().insert(headers);
        }
        let handle = peer
            .send_request_with_option(request, PeerRequestOptions::with_timeout(self.timeout))
            .await
            .map_err(|e| failure(e, self.timeout))?;
        let guard = CancelOnDrop { peer: Some((*peer).clone()), id: handle.id.clone() };
        let answer = handle.await_response().await;
        guard.disarm();
        answer.map_err(|e| failure(e, self.timeout))
    }

    /// The caller's own session, started on first use. The caller's token is checked first, so
    /// an unconnected caller gets the connection request (a URL elicitation), not an error.
    async fn user_peer(&self, principal: &Principal, ctx: &CallContext) -> Result<Arc<Peer<RoleClient>>, ToolFailure> {
        if let Some(credential) = &self.credential {
            credential.resolve(&self.upstream, principal, ctx, None).await.map_err(credential_failure)?;
        }
        let key = format!("{}\n{}", principal.issuer, principal.subject.as_str());
        let slot = Arc::clone(self.users.entry(key.clone()).or_default().value());
        let mut session = slot.lock().await;
        if let Some(s) = session.as_ref().filter(|s| !s.peer.is_transport_closed()) {
            *s.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
            return Ok(Arc::clone(&s.peer));
        }
        let running = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(Arc::new(principal.clone()))).await {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                tracing::warn!(server = %self.server, error = %e, "a caller's session could not be started");
                return Err(ToolFailure::ServerUnavailable);
            }
            Err(_) => return Err(ToolFailure::ServerUnavailable),
        };
        let peer = Arc::new(running.peer().clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let service_stop = running.cancellation_token();
        tokio::spawn(async move {
            let done = running.waiting();
            tokio::pin!(done);
            tokio::select! {
                _ = &mut done => {}
                () = stopped.cancelled() => {
                    service_stop.cancel();
                    let _ = done.await;
                }
            }
        });
        *session = Some(UserSession { peer: Arc::clone(&peer), stop, last_used: std::sync::Mutex::new(std::time::Instant::now()) });
        drop(session);
        if self.users.len() > USER_SESSIONS_MAX {
            self.evict_oldest(&key);
        }
        // A first session brings the catalog in; later ones keep it fresh.
        self.changed.notify_one();
        Ok(peer)
    }

    /// A live caller session, for reading the catalog.
    fn any_user_peer(&self) -> Option<Arc<Peer<RoleClient>>> {
        self.users.iter().find_map(|entry| {
            let session = entry.value().try_lock().ok()?;
            session.as_ref().filter(|s| !s.peer.is_transport_closed()).map(|s| Arc::clone(&s.peer))
        })
    }

    /// Closes caller sessions idle longer than [`USER_SESSION_IDLE`] or already ended.
    fn close_idle(&self) {
        self.users.retain(|_, slot| {
            let Ok(session) = slot.try_lock() else { return true };
            let Some(s) = session.as_ref() else { return false };
            let fresh = s.last_used.lock().map(|t| t.elapsed() < USER_SESSION_IDLE).unwrap_or(false);
            if fresh && !s.peer.is_transport_closed() {
                return true;
            }
            s.stop.cancel();
            false
        });
    }

    /// Closes every caller session (shutdown).
    fn close_all(&self) {
        for entry in &self.users {
            if let Ok(session) = entry.value().try_lock()
                && let Some(s) = session.as_ref()
            {
                s.stop.cancel();
            }
        }
    }

    /// Closes the least recently used caller session other than `keep`.
    fn evict_oldest(&self, keep: &str) {
        let oldest = self
            .users
            .iter()
            .filter(|e| e.key() != keep)
            .filter_map(|e| {
                let session = e.value().try_lock().ok()?;
                let at = *session.as_ref()?.last_used.lock().ok()?;
                Some((e.key().clone(), at))
            })
            .min_by_key(|(_, at)| *at);
        if let Some((key, _)) = oldest
            && let Some((_, slot)) = self.users.remove(&key)
            && let Ok(session) = slot.try_lock()
            && let Some(s) = session.as_ref()
        {
            s.stop.cancel();
        }
    }

    /// The headers a call goes out with: the caller's identity, then Warden's credential.
    async fn call_headers(
        &self,
        principal: &Principal,
        ctx: &CallContext,
        rejected: Option<u64>,
    ) -> Result<(http::CallHeaders, Option<u64>), ToolFailure> {
        let mut headers = ::http::HeaderMap::new();
        inject_identity(&mut headers, self.upstream.identity_headers(), principal, ctx);
        let mut uri = None;
        let mut generation = None;
        if let Some(credential) = &self.credential {
            let (secret, g) = credential.resolve(&self.upstream, principal, ctx, rejected).await.map_err(credential_failure)?;
            generation = g;
            if credential.query_param().is_some()
                && let Transport::Http { url } = &self.transport
                && let Ok(mut parsed) = url::Url::parse(url)
            {
                credential.apply_parts(&mut headers, Some(&mut parsed), &secret);
                uri = Some(Arc::from(parsed.as_str()));
            } else {
                credential.apply_parts(&mut headers, None, &secret);
            }
        }
        Ok((http::CallHeaders { headers, uri }, generation))
    }
}

/// The principal a server session's own requests are made as (initialize, tools/list): no
/// caller's, so no identity headers.
fn service_principal() -> Principal {
    Principal {
        subject: crate::identity::Subject::gateway(),
        issuer: String::new(),
        client_id: None,
        scopes: Default::default(),
        roles: Vec::new(),
        tenant: None,
        claims: Map::new(),
    }
}

fn credential_failure(e: CredentialError) -> ToolFailure {
    match e {
        CredentialError::ConnectionRequired { url, message } => {
            ToolFailure::ConnectionRequired(crate::tools::ConnectRequired { url, message })
        }
        e => ToolFailure::Credential(e),
    }
}

/// Whether the server refused Warden's credential (HTTP 401).
fn auth_required(e: &ServiceError) -> bool {
    let ServiceError::TransportSend(e) = e else { return false };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(StreamableHttpErrorRef::AuthRequired(_)) = s.downcast_ref::<StreamableHttpErrorRef>() {
            return true;
        }
        source = s.source();
    }
    false
}

type StreamableHttpErrorRef = rmcp::transport::streamable_http_client::StreamableHttpError<reqwest::Error>;

fn failure(e: ServiceError, timeout: Duration) -> ToolFailure {
    match e {
        ServiceError::McpError(error) => {
            ToolFailure::Rpc { code: error.code.0, message: crate::audit::bounded(&error.message).into_owned() }
        }
        ServiceError::Timeout { .. } => ToolFailure::Timeout(timeout),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => ToolFailure::Unreachable,
        ServiceError::Cancelled { .. } => ToolFailure::ServerUnavailable,
        _ => ToolFailure::Unreachable,
    }
}

/// Sends `notifications/cancelled` for a call whose caller went away before its answer.
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: rmcp::model::RequestId,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.peer = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else { return };
        let id = self.id.clone();
        tokio::spawn(async move {
            let params = rmcp::model::CancelledNotificationParam::new(Some(id), Some("the client went away".into()));
            let _ = peer.notify_cancelled(params).await;
        });
    }
}

async fn log_stderr(server: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(STDERR_LINE).collect();
        tracing::info!(server = %server, "{line}");
    }
}

/// A tool of a federated server.
struct FederatedTool {
    link: Arc<Link>,
    upstream_name: String,
}

impl ToolBackend for FederatedTool {
    fn credential_name(&self) -> Option<&str> {
        self.link.credential.as_ref().map(|c| c.name.as_str())
    }

    fn call<'a>(
        &'a self,
        _upstream: &'a Upstream,
        principal: &'a Principal,
        ctx: &'a CallContext,
        args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(self.link.call(&self.upstream_name, principal, ctx, args))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The one tool a per-user server offers before any caller has connected: calling it asks the
/// caller to connect their account, which brings the server's catalog in.
fn connect_tool(server: &Server) -> Option<Arc<Tool>> {
    let description = format!(
        "Connect your account to use the tools of {}: call this, then open the link you are given. The tools are listed once connected.",
        server.name
    );
    let schema = serde_json::json!({"type": "object", "properties": {}});
    let spec = ToolSpec {
        name: format!("{}connect", server.prefix),
        description: rmcp::model::Tool::new("connect", description, Arc::new(schema.as_object().cloned().unwrap_or_default())),
        scopes: server.scopes.clone(),
        tags: server.tags.clone(),
        metadata: server.metadata.clone(),
        server: Some(server.name.clone()),
        backend: Box::new(ConnectTool { link: Arc::clone(&server.link) }),
    };
    Tool::from_spec(spec)
        .map(Arc::new)
        .map_err(|why| tracing::error!(server = %server.name, %why, "the connect tool could not be built"))
        .ok()
}

/// `{prefix}connect`: starts the caller's session, or asks them to connect first.
struct ConnectTool {
    link: Arc<Link>,
}

impl ToolBackend for ConnectTool {
    fn credential_name(&self) -> Option<&str> {
        self.link.credential.as_ref().map(|c| c.name.as_str())
    }

    fn call<'a>(
        &'a self,
        _upstream: &'a Upstream,
        principal: &'a Principal,
        ctx: &'a CallContext,
        _args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(async move {
            self.link.user_peer(principal, ctx).await?;
            let text = format!("Connected to {}: list the tools again to see its tools.", self.link.server);
            Ok(ToolResult {
                result: rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)]),
                upstream_status: 200,
            })
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Stops forwarding a call's progress when the call ends, however it ends.
struct ProgressGuard<'a> {
    map: &'a dashmap::DashMap<String, tokio::sync::mpsc::Sender<crate::upstream::Progress>>,
    key: String,
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        self.map.remove(&self.key);
    }
}

/// A server's resources, resource templates and prompts, names prefixed.
#[derive(Debug, Default)]
struct Extras {
    resources: Vec<rmcp::model::Resource>,
    templates: Vec<rmcp::model::ResourceTemplate>,
    prompts: Vec<rmcp::model::Prompt>,
}

/// Why a federated resource read or prompt get was not answered.
#[derive(Debug)]
pub enum SourceError {
    /// No server offers it, or policy does not let this caller see it (the same answer, so a
    /// caller learns nothing of what it may not see).
    NotFound,
    Failed(ToolFailure),
}

/// Resources and prompts of the federated servers, filtered by `allowed` (policy on the
/// exposed name, as for tools).
impl Federation {
    /// Whether Warden offers resources and prompts at all (any server configured).
    pub fn offers_extras(&self) -> bool {
        !self.servers.is_empty()
    }

    /// The names policy governs besides tools: every server's resources, templates and prompts.
    fn governed(&self) -> Vec<crate::tools::Governed> {
        let mut out = Vec::new();
        for server in &self.servers {
            let extras = server.extras.load();
            let names = extras
                .resources
                .iter()
                .map(|r| &r.name)
                .chain(extras.templates.iter().map(|t| &t.name))
                .chain(extras.prompts.iter().map(|p| &p.name));
            out.extend(names.map(|name| crate::tools::Governed {
                name: name.clone(),
                tags: server.tags.clone(),
                metadata: server.metadata.clone(),
                scopes: server.scopes.clone(),
                server: Some(server.name.clone()),
            }));
        }
        out
    }

    pub fn resources(&self, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Vec<rmcp::model::Resource> {
        self.servers
            .iter()
            .flat_map(|s| {
                let extras = s.extras.load_full();
                extras.resources.iter().filter(|r| allowed(&s.facts(&r.name))).cloned().collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn resource_templates(&self, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Vec<rmcp::model::ResourceTemplate> {
        self.servers
            .iter()
            .flat_map(|s| {
                let extras = s.extras.load_full();
                extras.templates.iter().filter(|t| allowed(&s.facts(&t.name))).cloned().collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn prompts(&self, allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool) -> Vec<rmcp::model::Prompt> {
        self.servers
            .iter()
            .flat_map(|s| {
                let extras = s.extras.load_full();
                extras.prompts.iter().filter(|p| allowed(&s.facts(&p.name))).cloned().collect::<Vec<_>>()
            })
            .collect()
    }

    /// `resources/read`: the server that listed the URI (or whose template matches it), if
    /// policy lets the caller see that resource. Returns the exposed name with the result.
    pub async fn read_resource(
        &self,
        uri: &str,
        principal: &Principal,
        ctx: &CallContext,
        allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool,
    ) -> (Option<String>, Result<rmcp::model::ReadResourceResult, SourceError>) {
        let found = self.servers.iter().find_map(|s| {
            let extras = s.extras.load_full();
            let name = extras
                .resources
                .iter()
                .find(|r| r.uri == uri)
                .map(|r| r.name.clone())
                .or_else(|| extras.templates.iter().find(|t| template_matches(&t.uri_template, uri)).map(|t| t.name.clone()))?;
            Some((Arc::clone(s), name))
        });
        let Some((server, name)) = found.filter(|(s, name)| allowed(&s.facts(name))) else { return (None, Err(SourceError::NotFound)) };
        let request =
            ClientRequest::ReadResourceRequest(rmcp::model::ReadResourceRequest::new(rmcp::model::ReadResourceRequestParams::new(uri)));
        let answer = match server.link.request(request, principal, ctx).await {
            Ok(ServerResult::ReadResourceResult(result)) => Ok(result),
            Ok(_) => Err(SourceError::Failed(ToolFailure::Rpc { code: -32603, message: "unexpected result type".into() })),
            Err(failure) => Err(SourceError::Failed(failure)),
        };
        (Some(name), answer)
    }

    /// `prompts/get` of an exposed prompt name, if policy lets the caller see it.
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<Map<String, Value>>,
        principal: &Principal,
        ctx: &CallContext,
        allowed: impl Fn(&crate::policy::ToolFacts<'_>) -> bool,
    ) -> Result<rmcp::model::GetPromptResult, SourceError> {
        let server = self
            .servers
            .iter()
            .find(|s| s.extras.load().prompts.iter().any(|p| p.name == name) && allowed(&s.facts(name)))
            .ok_or(SourceError::NotFound)?;
        let upstream_name = name.strip_prefix(server.prefix.as_str()).unwrap_or(name);
        let mut params = rmcp::model::GetPromptRequestParams::new(upstream_name);
        params.arguments = arguments;
        let request = ClientRequest::GetPromptRequest(rmcp::model::GetPromptRequest::new(params));
        match server.link.request(request, principal, ctx).await {
            Ok(ServerResult::GetPromptResult(result)) => Ok(result),
            Ok(_) => Err(SourceError::Failed(ToolFailure::Rpc { code: -32603, message: "unexpected result type".into() })),
            Err(failure) => Err(SourceError::Failed(failure)),
        }
    }
}

/// Whether `uri` matches an RFC 6570 template's literal parts, each `{…}` expression standing
/// for any text.
fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::with_capacity(template.len());
    let mut in_expression = false;
    for c in template.chars() {
        match (c, in_expression) {
            ('{', false) => {
                in_expression = true;
                pattern.push('*');
            }
            ('}', true) => in_expression = false,
            (_, true) => {}
            ('*' | '?', false) => return false,
            (c, false) => pattern.push(c),
        }
    }
    !in_expression && crate::policy::glob(pattern.as_bytes(), uri.as_bytes())
}
