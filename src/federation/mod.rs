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

mod answers;
mod claims;
mod client;
pub mod config;
mod direct;
mod extras;
mod frame;
mod http;
mod link;
pub mod pins;
mod stdio;
mod updates;

use extras::Extras;
pub use extras::{Answer, Source};
use link::{FederatedTool, Link, Transport, connect_tool, service_principal};
pub use updates::ResourceUpdated;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::service::{Peer, RoleClient};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config_error::ConfigError;
use crate::credentials::Credentials;
use crate::tools::{Catalog, Tool, ToolSpec};
use crate::upstream::Upstream;
use config::{McpServerConfig, Pinning};
use pins::{PinVerdict, Pins};

/// How long connecting (start, initialize) may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Restart backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// A session up this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// Catalog reads a notification asks for are at least this far apart.
const REFRESH_SPACING: Duration = Duration::from_secs(1);

/// Every federated server, and the catalog their tools go into.
pub struct Federation {
    /// Replaced whole by a config reload ([`Federation::apply`]).
    servers: ArcSwap<Vec<Arc<Server>>>,
    catalog: Arc<Catalog>,
    pins: Arc<Pins>,
    /// Called after the catalog changed (the composition root rebinds the policy).
    on_change: Box<dyn Fn() + Send + Sync>,
    /// Set by [`Federation::start`]: every supervisor runs under a child of it.
    root: std::sync::OnceLock<CancellationToken>,
    /// Each running supervisor's cancellation, by server name.
    running: std::sync::Mutex<std::collections::HashMap<String, CancellationToken>>,
    /// Who serves each exposed name ([`claims`]).
    claims: std::sync::Mutex<claims::Claims>,
    /// Whether every server's first connection is over: from then on a served name stays with
    /// its server; before, contested names go by config order.
    started: std::sync::atomic::AtomicBool,
    /// Names a configured tool already has that a server offers, as last logged.
    shadowed: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Every server's resource updates ([`updates`]).
    updates: tokio::sync::broadcast::Sender<ResourceUpdated>,
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
    /// The config it was built from (`Debug`, secrets redacted): a reload restarts a server
    /// whose config changed and keeps the others connected.
    fingerprint: String,
    /// Quota cost of a call: the default, and per upstream tool name.
    cost: u64,
    costs: std::collections::BTreeMap<String, u64>,
    audit_arguments: crate::tools::config::AuditArguments,
    link: Arc<Link>,
    /// The last good catalog (served while the server is down).
    tools: ArcSwap<Vec<Arc<Tool>>>,
    withheld: ArcSwap<Vec<(String, &'static str)>>,
    /// Its resources, resource templates and prompts, names prefixed (the last good lists).
    extras: ArcSwap<Extras>,
    /// Those of them it serves (none that another server's claim holds).
    served: ArcSwap<Extras>,
    /// Bounds on reading its catalog.
    catalog: config::CatalogLimits,
    /// Why its catalog was last refused (logged once per reason).
    catalog_refused: std::sync::Mutex<Option<String>>,
    /// Set by `notifications/tools/list_changed`.
    changed: Arc<Notify>,
    /// Whether the first connection attempt is over (either way).
    settled: tokio::sync::watch::Sender<bool>,
}

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
        let servers = Self::prepare(configs, base_dir, upstream, default_timeout, credentials, &catalog.configured())?;
        let updates = updates::channel();
        for server in &servers {
            let _ = server.link.subscribed.updates.set(updates.clone());
        }
        Ok(Self {
            updates,
            servers: ArcSwap::from_pointee(servers),
            catalog,
            pins,
            on_change: Box::new(|| {}),
            root: std::sync::OnceLock::new(),
            running: std::sync::Mutex::default(),
            claims: std::sync::Mutex::default(),
            started: std::sync::atomic::AtomicBool::new(false),
            shadowed: std::sync::Mutex::default(),
        })
    }

    /// Checks `servers[]` against the configured tools and prepares each server, connecting
    /// nothing: for start-up, and for a reload before anything is swapped.
    pub fn prepare(
        configs: &[McpServerConfig],
        base_dir: &std::path::Path,
        upstream: &Upstream,
        default_timeout: Duration,
        credentials: &Credentials,
        configured: &crate::tools::ToolRegistry,
    ) -> Result<Vec<Arc<Server>>, ConfigError> {
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
            // `a_` and `a_b_`: server a's tool `b_x` and server a_b's tool `x` are both `a_b_x`.
            if let Some(other) = servers
                .iter()
                .find(|s| !s.prefix.is_empty() && !prefix.is_empty() && (s.prefix.starts_with(&prefix) || prefix.starts_with(&s.prefix)))
            {
                return Err(ConfigError::new(
                    at("prefix"),
                    format!(
                        "{prefix:?} and the prefix {:?} of server {:?} start alike: their tool names could collide (set a prefix that neither starts with)",
                        other.prefix, other.name
                    ),
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
            let audience = match (crate::config_error::audience(c.audience.as_deref()), &transport) {
                (Err(m), _) => return Err(ConfigError::new(at("audience"), m)),
                (Ok(Some(_)), Transport::Stdio { .. }) => {
                    return Err(ConfigError::new(at("audience"), "a stdio server is sent no identity assertion"));
                }
                (Ok(Some(a)), Transport::Http { .. }) => Some(a),
                (Ok(None), Transport::Http { url }) => {
                    url::Url::parse(url).ok().map(|u| Arc::from(crate::upstream::assertion::origin(&u).as_str()))
                }
                (Ok(None), Transport::Stdio { .. }) => None,
            };
            if c.client_requests.one_call_at_a_time && matches!(transport, Transport::Http { .. }) {
                return Err(ConfigError::new(
                    at("client_requests.one_call_at_a_time"),
                    "stdio servers only: an HTTP server's requests come on the stream of the call they belong to",
                ));
            }
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
            // A caller's own token (a per-user connection, or one exchanged for their identity)
            // is good for their own session only.
            let per_user = credential.as_ref().is_some_and(|c| {
                c.delegates() || c.connection().is_some_and(|conn| conn.settings.mode == crate::credentials::oauth::ConnectionMode::PerUser)
            });
            let changed = Arc::new(Notify::new());
            servers.push(Arc::new(Server {
                name: c.name.clone(),
                fingerprint: format!("{c:?}"),
                prefix,
                include: c.include.clone(),
                exclude: c.exclude.clone(),
                scopes: c.scopes.clone(),
                tags: c.tags.clone(),
                metadata: c.metadata.clone(),
                pinning: c.pinning,
                refresh_interval: c.refresh_interval,
                cost: c.cost,
                costs: c.costs.clone(),
                audit_arguments: c.audit_arguments,
                link: Arc::new(Link {
                    server: c.name.clone(),
                    transport,
                    credential,
                    audience,
                    timeout,
                    upstream: upstream.clone(),
                    session: ArcSwapOption::empty(),
                    per_user,
                    users: dashmap::DashMap::new(),
                    changed: Arc::clone(&changed),
                    progress: Arc::new(dashmap::DashMap::new()),
                    max_bytes: c.max_response_bytes.unwrap_or(upstream.max_response_bytes),
                    stash: Arc::default(),
                    client_requests: c.client_requests,
                    subscribed: updates::Subscribed::default(),
                    turns: c.client_requests.one_call_at_a_time.then(link::Turns::default),
                }),
                tools: ArcSwap::from_pointee(Vec::new()),
                withheld: ArcSwap::from_pointee(Vec::new()),
                extras: ArcSwap::from_pointee(Extras::default()),
                served: ArcSwap::from_pointee(Extras::default()),
                catalog: c.catalog,
                catalog_refused: std::sync::Mutex::new(None),
                changed,
                settled,
            }));
        }
        Ok(servers)
    }

    /// What runs after every catalog change (the policy is rebound to the new tools).
    pub fn on_change(&mut self, f: impl Fn() + Send + Sync + 'static) {
        self.on_change = Box::new(f);
    }

    pub fn is_empty(&self) -> bool {
        self.servers.load().is_empty()
    }

    pub fn pins(&self) -> &Arc<Pins> {
        &self.pins
    }

    /// Starts one supervisor per server, until `cancel`; stdio servers are stopped then.
    pub fn start(self: &Arc<Self>, cancel: &CancellationToken) {
        let _ = self.root.set(cancel.clone());
        for server in self.servers.load().iter() {
            self.launch(server);
        }
    }

    /// Runs `server`'s supervisor under a child of the root cancellation.
    fn launch(self: &Arc<Self>, server: &Arc<Server>) {
        let Some(root) = self.root.get() else { return };
        let token = root.child_token();
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(server.name.clone(), token.clone());
        tokio::spawn(Arc::clone(self).supervise(Arc::clone(server), token));
    }

    /// Puts `next` in force (prepared by [`Federation::prepare`]): a server whose config is
    /// unchanged keeps its session and tools; one removed or changed is stopped (a stdio child
    /// exits), and one added or changed is started. Its tools appear once it is connected.
    pub fn apply(self: &Arc<Self>, next: Vec<Arc<Server>>) {
        let current = self.servers.load_full();
        let next: Vec<Arc<Server>> = next
            .into_iter()
            .map(|n| current.iter().find(|c| c.name == n.name && c.fingerprint == n.fingerprint).map_or(n, Arc::clone))
            .collect();
        for old in current.iter().filter(|c| !next.iter().any(|n| Arc::ptr_eq(n, c))) {
            if let Some(token) = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&old.name) {
                token.cancel();
            }
            tracing::info!(server = %old.name, "federated server stopped by a config reload");
        }
        let started: Vec<Arc<Server>> = next.iter().filter(|n| !current.iter().any(|c| Arc::ptr_eq(n, c))).cloned().collect();
        self.servers.store(Arc::new(next));
        for server in &started {
            tracing::info!(server = %server.name, "federated server started by a config reload");
            let _ = server.link.subscribed.updates.set(self.updates.clone());
            self.launch(server);
        }
        self.publish();
    }

    /// Waits until every server's first connection attempt is over (connected and listed, or
    /// failed), at most `limit`.
    pub async fn settled(&self, limit: Duration) {
        let servers = self.servers.load();
        let all = futures::future::join_all(servers.iter().map(|s| {
            let mut rx = s.settled.subscribe();
            async move {
                let _ = rx.wait_for(|done| *done).await;
            }
        }));
        let _ = tokio::time::timeout(limit, all).await;
        // From now on a served name stays with its server.
        self.started.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Re-reads every connected server's catalog now (after an approval).
    pub fn refresh_all(&self) {
        for server in self.servers.load().iter() {
            server.changed.notify_one();
        }
    }

    /// Puts every server's current tools, resources and prompts in force: each name served by
    /// the server whose claim holds it ([`claims`]); a newcomer's colliding item is withheld,
    /// logged and audited once.
    fn publish(&self) {
        let servers = self.servers.load();
        let offers: Vec<(String, Vec<claims::Key>)> = servers.iter().map(|s| (s.name.clone(), s.keys())).collect();
        let mut held = self.claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let collisions = held.settle(&offers, self.started.load(std::sync::atomic::Ordering::Acquire));
        for c in &collisions {
            tracing::error!(
                kind = c.kind.label(),
                name = %c.name,
                server = %c.newcomer,
                served_by = %c.owner,
                "a federated server offers a name another server already serves: withheld from it"
            );
            self.pins.audit_collision(&c.newcomer, c.kind.label(), &c.name, &c.owner);
        }
        let mut tools = Vec::new();
        let mut withheld = Vec::new();
        for server in servers.iter() {
            for tool in server.tools.load().iter() {
                if held.serves(&server.name, claims::Kind::Tool, &tool.name) {
                    tools.push(Arc::clone(tool));
                } else {
                    withheld.push((tool.name.clone(), "tool_name_collision"));
                }
            }
            withheld.extend(server.withheld.load().iter().cloned());
            server.served.store(Arc::new(server.extras.load().served_by(&held, &server.name)));
        }
        drop(held);
        let shadowed: std::collections::HashSet<(String, String)> = self.catalog.replace(&tools, &withheld).into_iter().collect();
        let mut logged = self.shadowed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, owner) in shadowed.difference(&logged) {
            tracing::error!(tool = %name, owner = %owner, "a federated tool's name is already taken: not exposed");
        }
        *logged = shadowed;
        drop(logged);
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
                Ok(Ok((running, session))) => {
                    let up_since = tokio::time::Instant::now();
                    let peer = running.peer().clone();
                    server.link.session.store(Some(Arc::new(session)));
                    tracing::info!(server = %server.name, "federated server connected");
                    let stop = running.cancellation_token();
                    let mut done = tokio::spawn(running.waiting());
                    self.refresh(&server, &peer).await;
                    let mut refreshed = tokio::time::Instant::now();
                    updates::resubscribe(server.link.subscribed.shared(), &peer, &server.name).await;
                    server.settled.send_replace(true);
                    loop {
                        let interval = server.refresh_interval;
                        let tick =
                            async { if interval.is_zero() { std::future::pending().await } else { tokio::time::sleep(interval).await } };
                        tokio::select! {
                            () = cancel.cancelled() => {
                                server.link.session.store(None);
                                stop.cancel();
                                let _ = tokio::time::timeout(Duration::from_secs(5), &mut done).await;
                                return;
                            }
                            _ = &mut done => break,
                            () = server.changed.notified() => {
                                // Read at once, but a storm of list_changed costs one bounded
                                // read a second.
                                tokio::time::sleep_until(refreshed + REFRESH_SPACING).await;
                                self.refresh(&server, &peer).await;
                                refreshed = tokio::time::Instant::now();
                            }
                            () = tick => {
                                self.refresh(&server, &peer).await;
                                refreshed = tokio::time::Instant::now();
                            }
                            // The server forgot the session and rmcp's client started a new
                            // one in place: it is subscribed again.
                            () = server.link.subscribed.reinitialized.notified() => {
                                updates::resubscribe(server.link.subscribed.shared(), &peer, &server.name).await;
                            }
                        }
                    }
                    server.link.session.store(None);
                    // Only a session that stayed up resets the backoff: one that answers
                    // initialize and then exits is restarted ever more slowly.
                    if up_since.elapsed() >= STABLE_SESSION {
                        backoff = BACKOFF.0;
                    }
                    tracing::warn!(server = %server.name, retry_in = ?backoff, "federated server session ended; reconnecting");
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
            if let Some(session) = server.link.any_user_session() {
                self.refresh(&server, &session.peer).await;
            }
        }
    }

    /// Lists the server's tools and puts the ones included and not withheld in force; on
    /// failure the last good catalog stays.
    async fn refresh(&self, server: &Arc<Server>, peer: &Peer<RoleClient>) {
        // One request at a time (`one_call_at_a_time`): the catalog reads wait their turn too.
        let _turn = match &server.link.turns {
            Some(turns) => Some(turns.turn.lock().await),
            None => None,
        };
        let read = pages(server.catalog, |cursor| async move {
            let page = peer.list_tools(Some(rmcp::model::PaginatedRequestParams::default().with_cursor(cursor))).await?;
            Ok((page.tools, page.next_cursor))
        });
        let listed = match tokio::time::timeout(server.link.timeout, read).await {
            Ok(Ok(tools)) => {
                *server.catalog_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                tools
            }
            Ok(Err(why)) => return server.catalog_refused(&format!("tools/list: {why}")),
            Err(_) => return server.catalog_refused("tools/list timed out"),
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
            let param_headers = promotes_arguments(&upstream_tool.input_schema);
            let backend = FederatedTool { link: Arc::clone(&server.link), upstream_name: upstream_name.clone(), param_headers };
            let spec = ToolSpec {
                name: exposed.clone(),
                description: upstream_tool,
                scopes: server.scopes.clone(),
                tags: server.tags.clone(),
                metadata: server.metadata.clone(),
                server: Some(server.name.clone()),
                cost: server.costs.get(&upstream_name).copied().unwrap_or(server.cost),
                audit_arguments: server.audit_arguments,
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
        let mut extras = Extras { completions: caps.completions.is_some(), ..Extras::default() };
        if caps.resources.is_some() {
            let read = pages(self.catalog, |cursor| async move {
                let page = peer.list_resources(Some(rmcp::model::PaginatedRequestParams::default().with_cursor(cursor))).await?;
                Ok((page.resources, page.next_cursor))
            });
            extras.resources = match tokio::time::timeout(limit, read).await {
                Ok(Ok(list)) => list
                    .into_iter()
                    .map(|mut r| {
                        r.name = format!("{}{}", self.prefix, r.name);
                        r
                    })
                    .collect(),
                _ => last.resources.clone(),
            };
            let read = pages(self.catalog, |cursor| async move {
                let page = peer.list_resource_templates(Some(rmcp::model::PaginatedRequestParams::default().with_cursor(cursor))).await?;
                Ok((page.resource_templates, page.next_cursor))
            });
            extras.templates = match tokio::time::timeout(limit, read).await {
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
            let read = pages(self.catalog, |cursor| async move {
                let page = peer.list_prompts(Some(rmcp::model::PaginatedRequestParams::default().with_cursor(cursor))).await?;
                Ok((page.prompts, page.next_cursor))
            });
            extras.prompts = match tokio::time::timeout(limit, read).await {
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

    /// Every name it offers now, for [`claims`].
    fn keys(&self) -> Vec<claims::Key> {
        let extras = self.extras.load();
        let tools = self.tools.load();
        let mut keys: Vec<claims::Key> = tools.iter().map(|t| (claims::Kind::Tool, t.name.clone())).collect();
        keys.extend(extras.resources.iter().map(|r| (claims::Kind::Resource, r.uri.clone())));
        keys.extend(extras.templates.iter().map(|t| (claims::Kind::Template, t.uri_template.clone())));
        keys.extend(extras.prompts.iter().map(|p| (claims::Kind::Prompt, p.name.clone())));
        keys
    }

    /// A catalog read failed or passed a bound: the last good catalog stays; logged once per
    /// reason.
    fn catalog_refused(&self, why: &str) {
        let mut last = self.catalog_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() != Some(why) {
            tracing::warn!(server = %self.name, reason = %why, "the server's catalog was not read; the last good catalog stays");
            *last = Some(why.to_owned());
        }
    }

    fn includes(&self, name: &str) -> bool {
        let matches = |g: &String| crate::policy::glob(g.as_bytes(), name.as_bytes());
        (self.include.is_empty() || self.include.iter().any(matches)) && !self.exclude.iter().any(matches)
    }
}

/// Every page of one list, within `limits`: a cursor seen before, more pages, items or bytes
/// (items as JSON) than the limits allow fail the read (the caller keeps its last good list).
async fn pages<T, F, Fut>(limits: config::CatalogLimits, mut page: F) -> Result<Vec<T>, String>
where
    T: serde::Serialize,
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), rmcp::service::ServiceError>>,
{
    let mut items = Vec::new();
    let mut bytes = 0usize;
    let mut cursors = std::collections::HashSet::new();
    let mut cursor = None;
    for _ in 0..limits.max_pages {
        let (batch, next) = page(cursor.take()).await.map_err(|e| e.to_string())?;
        for item in &batch {
            let mut counter = ByteCounter(0);
            let _ = serde_json::to_writer(&mut counter, item);
            bytes += counter.0;
        }
        items.extend(batch);
        if items.len() > limits.max_items {
            return Err(format!("more than catalog.max_items ({}) items", limits.max_items));
        }
        if bytes > limits.max_bytes {
            return Err(format!("more than catalog.max_bytes ({}) bytes", limits.max_bytes));
        }
        match next {
            None => return Ok(items),
            Some(next) if !cursors.insert(next.clone()) => return Err(format!("the cursor {next:?} came back: the list never ends")),
            Some(next) => cursor = Some(next),
        }
    }
    Err(format!("more than catalog.max_pages ({}) pages", limits.max_pages))
}

/// Counts what is written.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a tool's input schema promotes arguments to `Mcp-Param-*` headers (SEP-2243's
/// `x-mcp-header` annotation, anywhere in it).
fn promotes_arguments(schema: &serde_json::Map<String, serde_json::Value>) -> bool {
    fn annotated(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(o) => o.contains_key("x-mcp-header") || o.values().any(annotated),
            serde_json::Value::Array(a) => a.iter().any(annotated),
            _ => false,
        }
    }
    schema.contains_key("x-mcp-header") || schema.values().any(annotated)
}
