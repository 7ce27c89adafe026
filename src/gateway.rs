//! The gateway: runtime state built from a validated config, the HTTP router, and `run`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditEvent, AuditSink};
use crate::config::{Config, ConfigError};
use crate::identity::Authenticator;
use crate::identity::metadata::ResourceMetadata;
use crate::mcp::handler::McpHandler;
use crate::policy::{Policy, PolicyError, PolicySet, SharedPolicy};
use crate::tools::ToolRegistry;
use crate::upstream::{Upstream, control_plane_client};

/// Everything a request needs, built once from config.
pub struct Gateway {
    pub authenticator: Arc<Authenticator>,
    pub tools: Arc<ToolRegistry>,
    pub upstream: Arc<Upstream>,
    pub metadata: Arc<ResourceMetadata>,
    pub audit: Arc<AuditSink>,
    /// Upstream credentials, by name.
    pub credentials: Arc<crate::credentials::Credentials>,
    /// The vault, when configured.
    pub vault: Option<Arc<crate::credentials::Vault>>,
    /// The admin API's credential; no admin API without one.
    pub admin_token: Option<crate::credentials::Secret>,
    pub origin_guard: Arc<OriginGuard>,
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// What one client may hold open (the accept loop's limits).
    pub connection_limits: crate::server::ConnectionLimits,
    /// The policy in force; replaced whole on reload.
    pub policy: SharedPolicy,
    policy_source: PolicySource,
    policy_fingerprint: Mutex<Option<[u8; 32]>>,
    pub policy_reload_interval: Duration,
    /// Request headers exposed to policy conditions.
    pub policy_headers: Arc<[http::HeaderName]>,
}

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// No policy files: tool scopes alone decide.
    None,
    /// Files and directories, relative to `base`; reloaded when they change.
    Files { base: PathBuf, paths: Vec<String> },
    /// Policies compiled into the binary (the demo).
    Embedded(Vec<(String, &'static str)>),
}

/// Policy sources as read: `(policy name, text)` pairs and a fingerprint of them all.
struct PolicyTexts {
    texts: Vec<(String, String)>,
    fingerprint: [u8; 32],
}

impl PolicySource {
    /// The sources' names and texts, and a fingerprint of them.
    fn read(&self) -> Result<PolicyTexts, PolicyError> {
        use sha2::Digest;
        let texts: Vec<(String, String)> = match self {
            Self::None => Vec::new(),
            Self::Embedded(list) => list.iter().map(|(n, t)| (n.clone(), (*t).to_owned())).collect(),
            Self::Files { base, paths } => {
                let files = crate::policy::expand_paths(base, paths)?;
                let mut out = Vec::with_capacity(files.len());
                for f in files {
                    let text = std::fs::read_to_string(&f).map_err(|e| PolicyError {
                        file: f.display().to_string(),
                        at: "(file)".into(),
                        message: e.to_string(),
                    })?;
                    out.push((crate::policy::policy_name(&f), text));
                }
                out
            }
        };
        let mut hash = sha2::Sha256::new();
        for (n, t) in &texts {
            hash.update(n.as_bytes());
            hash.update([0]);
            hash.update(t.as_bytes());
            hash.update([0]);
        }
        Ok(PolicyTexts { texts, fingerprint: hash.finalize().into() })
    }

    fn compile(&self, texts: &[(String, String)], tools: &ToolRegistry) -> Result<Policy, PolicyError> {
        let set = match self {
            Self::None => PolicySet::default(),
            Self::Files { .. } | Self::Embedded(_) => PolicySet::from_sources(texts.iter().map(|(n, t)| (n.clone(), t.as_str())))?,
        };
        Ok(set.bind(tools.iter().map(|t| t.facts())))
    }
}

impl Gateway {
    /// Builds every runtime type; fails on the first config problem without binding anything.
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        let source = if config.policy.files.is_empty() {
            PolicySource::None
        } else {
            PolicySource::Files { base: config.base_dir.clone(), paths: config.policy.files.clone() }
        };
        Self::build_with_policy(config, source)
    }

    /// As [`Gateway::build`], with the policy from `source` instead of `config.policy.files`.
    pub fn build_with_policy(config: &Config, source: PolicySource) -> Result<Self, ConfigError> {
        let upstream = Upstream::new(&config.upstream, &config.identity_headers)?;
        let audit =
            Arc::new(AuditSink::open(&config.audit.output).map_err(|e| ConfigError::new("audit.output", format!("cannot open: {e}")))?);
        let vault = match &config.vault {
            Some(v) => {
                let keys = v.key_ring(&config.base_dir)?;
                if !["sqlite:", "postgres://", "postgresql://"].iter().any(|p| v.database.starts_with(p)) {
                    return Err(ConfigError::new("vault.database", "use sqlite://PATH or postgres://…"));
                }
                if v.token_cache > Duration::from_secs(60) {
                    return Err(ConfigError::new("vault.token_cache", "at most 60s: a disconnect must reach every replica quickly"));
                }
                let public_base = config.server.public_base();
                let mut vault = crate::credentials::Vault::new(v.database.clone(), Arc::new(keys), public_base, Arc::clone(&audit));
                vault.token_cache = v.token_cache;
                Some(Arc::new(vault))
            }
            None => None,
        };
        let admin_token = match &config.admin {
            Some(a) if a.token.expose().len() < 32 => {
                return Err(ConfigError::new("admin.token", "must be at least 32 characters (e.g. from `warden keys generate`)"));
            }
            Some(a) => Some(a.token.clone()),
            None => None,
        };
        let credentials = Arc::new(crate::credentials::Credentials::build(
            &config.credentials,
            &config.base_dir,
            upstream.identity_headers(),
            vault.as_ref(),
        )?);
        if credentials.connections().next().is_some() && config.server.public_url.is_none() {
            return Err(ConfigError::new(
                "server.public_url",
                "authorization_code credentials need the public URL providers send browsers back to ({public_url}/oauth/callback)",
            ));
        }
        let tools = ToolRegistry::build(&config.tools, upstream.identity_headers(), config.upstream.default_timeout, &credentials)?;
        let resource = config.server.resource();
        let authenticator = Authenticator::new(&config.identity, resource.clone(), control_plane_client()?)?;
        let mut metadata = ResourceMetadata::new(&config.server.public_base(), resource, authenticator.issuer_ids(), tools.scopes());
        if let Some(scopes) = &config.identity.challenge_scopes {
            metadata.challenge_scopes = scopes.clone();
        }
        let origin_guard = OriginGuard::from_config(config)?;
        let policy_error = |e: PolicyError| ConfigError::new("policy.files", e.to_string());
        let PolicyTexts { texts, fingerprint } = source.read().map_err(policy_error)?;
        let policy = source.compile(&texts, &tools).map_err(policy_error)?;
        let policy_headers: Arc<[http::HeaderName]> = config
            .policy
            .request_headers
            .iter()
            .filter_map(|h| http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
            .collect();
        Ok(Self {
            authenticator: Arc::new(authenticator),
            tools: Arc::new(tools),
            upstream: Arc::new(upstream),
            metadata: Arc::new(metadata),
            audit,
            credentials,
            vault,
            admin_token,
            origin_guard: Arc::new(origin_guard),
            max_body_bytes: config.server.max_body_bytes,
            body_read_timeout: config.server.body_read_timeout,
            connection_limits: crate::server::ConnectionLimits {
                header_read_timeout: config.server.header_read_timeout,
                max_per_ip: config.server.max_connections_per_ip,
            },
            policy: Arc::new(arc_swap::ArcSwap::from_pointee(policy)),
            policy_source: source,
            policy_fingerprint: Mutex::new(Some(fingerprint)),
            policy_reload_interval: config.policy.reload_interval,
            policy_headers,
        })
    }

    /// Re-reads the policy sources; when they changed, compiles and swaps them in. A broken
    /// source keeps the last good policy in force; the error is logged and audited. In-flight
    /// requests finish with the policy they started with. Returns whether a new policy is in
    /// force.
    pub fn reload_policy(&self) -> Result<bool, PolicyError> {
        let result = self.policy_source.read().and_then(|PolicyTexts { texts, fingerprint }| {
            let mut last = self.policy_fingerprint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *last == Some(fingerprint) {
                return Ok(false);
            }
            let policy = self.policy_source.compile(&texts, &self.tools)?;
            self.policy.store(Arc::new(policy));
            *last = Some(fingerprint);
            Ok(true)
        });
        let event = |decision, reason: &str| AuditEvent {
            request_id: uuid::Uuid::now_v7().to_string(),
            method: Some("policy/reload".into()),
            decision,
            reason: reason.into(),
            ..AuditEvent::default()
        };
        match &result {
            Ok(true) => {
                tracing::info!(rules = self.policy.load().set.rules.len(), "policy reloaded");
                self.audit.emit(event("allow", "policy_reloaded"));
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the last good policy stays in force");
                self.audit.emit(event("error", "policy_invalid"));
            }
        }
        result
    }

    /// The MCP endpoint's share of the gateway.
    pub fn mcp(&self) -> crate::mcp::Mcp {
        crate::mcp::Mcp {
            authenticator: Arc::clone(&self.authenticator),
            tools: Arc::clone(&self.tools),
            policy: Arc::clone(&self.policy),
            upstream: Arc::clone(&self.upstream),
            metadata: Arc::clone(&self.metadata),
            audit: Arc::clone(&self.audit),
            origin_guard: Arc::clone(&self.origin_guard),
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: self.body_read_timeout,
            policy_headers: Arc::clone(&self.policy_headers),
        }
    }

    fn reloads(&self) -> bool {
        matches!(self.policy_source, PolicySource::Files { .. })
    }
}

/// `Host` and `Origin` checks on `/mcp` (DNS-rebinding protection).
#[derive(Debug)]
pub struct OriginGuard {
    hosts: Vec<String>,
    origins: Vec<String>,
    /// Accept `http(s)://` loopback origins on any port.
    loopback_origins: bool,
}

impl OriginGuard {
    fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let base = url::Url::parse(&config.server.public_base()).map_err(|_| ConfigError::new("server.public_url", "invalid URL"))?;
        let public_host = base.host_str().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase();
        let hosts = match &config.server.allowed_hosts {
            Some(h) => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
            None => vec![public_host, "localhost".into(), "127.0.0.1".into(), "::1".into()],
        };
        let configured = config.server.allowed_origins.as_ref();
        let mut origins: Vec<String> = configured.into_iter().flatten().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        origins.push(base.origin().ascii_serialization().to_ascii_lowercase());
        Ok(Self { hosts, origins, loopback_origins: configured.is_none() })
    }

    /// `Err(code)` when the request must be refused.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).ok_or("host_not_allowed")?.to_ascii_lowercase();
        if !self.hosts.iter().any(|h| *h == host_only(&host) || *h == host) {
            return Err("host_not_allowed");
        }
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| "origin_not_allowed")?.to_ascii_lowercase();
            let loopback = self.loopback_origins && is_loopback_origin(&origin);
            if !loopback && !self.origins.contains(&origin) {
                return Err("origin_not_allowed");
            }
        }
        Ok(())
    }
}

/// `host[:port]` or `[v6][:port]` without the port.
fn host_only(authority: &str) -> String {
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => authority.rsplit_once(':').map_or(authority.to_owned(), |(h, _)| h.to_owned()),
    }
}

fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else { return false };
    matches!(host_only(rest).as_str(), "localhost" | "127.0.0.1" | "::1")
}

/// The HTTP application: metadata, health, and `/mcp` behind the gate.
pub fn router(gateway: Arc<Gateway>, shutdown: CancellationToken) -> Router {
    let mcp = Arc::new(gateway.mcp());
    let handler = McpHandler { mcp: Arc::clone(&mcp) };
    let mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(gateway.max_body_bytes)
        .with_cancellation_token(shutdown);
    let rmcp = StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(NeverSessionManager::default()), mcp_config);
    let endpoint = Arc::new(crate::mcp::gate::Endpoint { mcp, rmcp });
    // CORS runs before the gate: a browser's preflight carries no token.
    let mcp = Router::new()
        .route("/mcp", axum::routing::any(crate::mcp::gate::endpoint))
        .with_state(endpoint)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&gateway), crate::cors::mcp));
    let metadata = Router::new()
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(resource_metadata))
        .layer(axum::middleware::from_fn(crate::cors::public))
        .with_state(Arc::clone(&gateway));
    let body_timeout = gateway.body_read_timeout;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/oauth/connect/{link}", get(crate::credentials::connect::start))
        .route("/oauth/callback", get(crate::credentials::connect::callback))
        .with_state(Arc::clone(&gateway))
        .merge(crate::admin::routes(gateway))
        // These routes' bodies in bounded time; the gate bounds /mcp's itself, with a 408.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout))
        .merge(metadata)
        .merge(mcp)
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found"}))) })
        .layer(axum::middleware::from_fn(crate::edge::layer))
}

async fn resource_metadata(State(gw): State<Arc<Gateway>>) -> Response {
    let mut response = axum::Json(gw.metadata.document()).into_response();
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=300"));
    response
}

/// Serves until `shutdown` resolves, then drains in-flight requests. Policy files are
/// reloaded when they change (polled) and on SIGHUP.
pub async fn run(gateway: Gateway, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let cancel = CancellationToken::new();
    let gateway = Arc::new(gateway);
    // Always: SIGHUP means "reload" to operators, and must never terminate the gateway, even when
    // there is nothing to reload.
    tokio::spawn(watch_policy(Arc::clone(&gateway), cancel.clone()));
    let limits = gateway.connection_limits;
    let audit = Arc::clone(&gateway.audit);
    let app = router(gateway, cancel.clone());
    let served = crate::server::serve(listener, app, limits, async move {
        shutdown.await;
        cancel.cancel();
    })
    .await;
    // Every request has been answered: now every event it left must be written before exit.
    let flushed = tokio::task::spawn_blocking(move || audit.flush(AUDIT_DRAIN)).await.unwrap_or(false);
    if !flushed {
        tracing::error!("audit events were still queued when shutdown gave up waiting for them");
    }
    served
}

/// How long shutdown waits for queued audit events to be written.
const AUDIT_DRAIN: Duration = Duration::from_secs(30);

async fn watch_policy(gateway: Arc<Gateway>, cancel: CancellationToken) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let interval = gateway.policy_reload_interval;
    loop {
        let tick = async { if interval.is_zero() { std::future::pending().await } else { tokio::time::sleep(interval).await } };
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick => {}
            _ = hangup => tracing::info!(policy_files = gateway.reloads(), "SIGHUP: reloading policy"),
        }
        if !gateway.reloads() {
            continue;
        }
        let gw = Arc::clone(&gateway);
        // File reads and compilation are blocking work.
        let _ = tokio::task::spawn_blocking(move || gw.reload_policy()).await;
    }
}

/// Installs process-wide crypto providers. Idempotent; call before verifying or signing.
pub fn install_crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
