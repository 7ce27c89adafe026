//! The gateway: runtime state built from a validated config, the HTTP router, and `run`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditSink;
use crate::clock::SharedClock;
use crate::config::{Config, ConfigError};
use crate::federation::Federation;
use crate::federation::pins::Pins;
use crate::identity::Authenticator;
use crate::identity::metadata::ResourceMetadata;
use crate::policy::reload::{Binder, PolicySource, Reloader};
use crate::policy::{PolicyError, PolicySet};
use crate::tools::{Catalog, ToolRegistry};
use crate::upstream::{Upstream, control_plane_client};

/// Everything a request needs, built once from config.
pub struct Gateway {
    pub authenticator: Arc<Authenticator>,
    /// Prometheus metrics, shared by the stages that count.
    pub metrics: Arc<crate::telemetry::Metrics>,
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The tools in force: the configured ones and, once connected, the federated servers'.
    pub tools: Arc<Catalog>,
    /// The federated MCP servers (started by [`run`]).
    pub federation: Arc<Federation>,
    /// Rate limits.
    pub limits: Arc<crate::limits::Limits>,
    pub upstream: Arc<Upstream>,
    pub metadata: Arc<ResourceMetadata>,
    /// Warden's own authorization server, when configured.
    pub auth_server: Option<Arc<crate::authz::AuthServer>>,
    /// Warden's signing keys, published at `/.well-known/jwks.json` (with the authorization
    /// server or identity assertions).
    pub signing: Option<Arc<crate::signing::Keys>>,
    /// Calls `approve` policy rules hold back (with the vault).
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
    /// Seals the request state of relayed multi round-trip requests (the vault's key ring).
    pub rounds: Arc<crate::mcp::rounds::Rounds>,
    /// Cancelled when shutdown begins: the streams that would stay open (a session's own) end.
    pub closing: tokio_util::sync::CancellationToken,
    pub audit: Arc<AuditSink>,
    /// Upstream credentials, by name.
    pub credentials: Arc<crate::credentials::Credentials>,
    /// The vault, when configured.
    pub vault: Option<Arc<crate::credentials::Vault>>,
    /// The admin API's credential; no admin API without one.
    pub admin_token: Option<crate::credentials::Secret>,
    /// Gateway-issued API keys, when enabled.
    pub api_keys: Option<Arc<crate::apikeys::ApiKeys>>,
    /// Proxy routes for apps that are not MCP clients.
    pub routes: Arc<crate::routes::Routes>,
    /// The admin console's settings (served when `admin_token` is set).
    pub console: crate::admin::console::ConsoleConfig,
    /// `server.public_url` (or `http://{listen}`), without a trailing slash.
    pub public_base: String,
    /// The config file `warden serve` read: set, its tools reload on SIGHUP ([`crate::reload`]).
    pub config_file: Option<std::path::PathBuf>,
    /// The config as built, for telling what a reload changed.
    pub config_snapshot: crate::reload::Snapshot,
    pub origin_guard: Arc<crate::edge::OriginGuard>,
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// What one client may hold open (the accept loop's limits).
    pub connection_limits: crate::server::ConnectionLimits,
    /// The policy in force (`policy_reloader.policy()`), renewed when its sources change.
    pub policy_reloader: Arc<Reloader>,
    /// Where stages read the time.
    pub clock: SharedClock,
    /// Request headers exposed to policy conditions.
    pub policy_headers: Arc<[http::HeaderName]>,
}

impl Gateway {
    /// Builds every runtime type; fails on the first config problem without binding anything.
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        Self::build_with_clock(config, crate::clock::system())
    }

    /// As [`Gateway::build`], with the policy from `source` instead of `config.policy.files`.
    pub fn build_with_policy(config: &Config, source: PolicySource) -> Result<Self, ConfigError> {
        Self::build_with(config, source, crate::clock::system())
    }

    /// As [`Gateway::build`], reading the time from `clock` (tests move a manual one).
    pub fn build_with_clock(config: &Config, clock: SharedClock) -> Result<Self, ConfigError> {
        let source = if config.policy.files.is_empty() {
            PolicySource::None
        } else {
            PolicySource::Files { base: config.base_dir.clone(), paths: config.policy.files.clone() }
        };
        Self::build_with(config, source, clock)
    }

    fn build_with(config: &Config, source: PolicySource, clock: SharedClock) -> Result<Self, ConfigError> {
        let mut upstream = Upstream::new(&config.upstream, &config.identity_headers)?;
        // The trace keys are checked here (the environment is read when `serve` starts them).
        config.telemetry.trace_plan(&|_| None)?;
        let metrics = Arc::new(crate::telemetry::Metrics::default());
        let vault_keys = match &config.vault {
            Some(v) => Some(Arc::new(v.key_ring(&config.base_dir)?)),
            None => None,
        };
        let database = config.vault.as_ref().zip(vault_keys.clone()).map(|(v, keys)| (v.database.as_str(), keys));
        let rounds = Arc::new(crate::mcp::rounds::Rounds::new(vault_keys.clone()));
        let audit = Arc::new(AuditSink::from_config(&config.audit, &config.base_dir, Some(Arc::clone(&metrics)), database)?);
        let vault = match (&config.vault, vault_keys) {
            (Some(v), Some(keys)) => {
                if !["sqlite:", "postgres://", "postgresql://"].iter().any(|p| v.database.starts_with(p)) {
                    return Err(ConfigError::new("vault.database", "use sqlite://PATH or postgres://…"));
                }
                if v.token_cache > Duration::from_secs(60) {
                    return Err(ConfigError::new("vault.token_cache", "at most 60s: a disconnect must reach every replica quickly"));
                }
                let public_base = config.server.public_base();
                let mut vault = crate::credentials::Vault::new(v.database.clone(), keys, public_base, Arc::clone(&audit));
                vault.token_cache = v.token_cache;
                vault.clock = Arc::clone(&clock);
                Some(Arc::new(vault))
            }
            _ => None,
        };
        // One set of signing keys for what Warden signs: access tokens (RS256) with the
        // authorization server, identity assertions (ES256) with `identity_headers.assertion`.
        let mut algorithms = Vec::new();
        if config.authorization_server.is_some() {
            algorithms.push(crate::signing::ACCESS_TOKENS);
        }
        if config.identity_headers.assertion.is_some() {
            algorithms.push(crate::signing::ASSERTIONS);
        }
        let signing = match &vault {
            Some(vault) if !algorithms.is_empty() => {
                Some(Arc::new(crate::signing::Keys::new(Arc::clone(vault), algorithms, Arc::clone(&clock))))
            }
            _ => None,
        };
        if let (Some(a), Some(keys)) = (&config.identity_headers.assertion, &signing) {
            let header =
                upstream.identity_headers().assertion.clone().ok_or_else(|| ConfigError::new("identity_headers.assertion", "no header"))?;
            let signer = Arc::clone(keys) as Arc<dyn crate::upstream::assertion::AssertionSigner>;
            upstream.set_assertions(crate::upstream::assertion::Assertions::new(
                header,
                a.ttl,
                config.server.public_base(),
                signer,
                Arc::clone(&clock),
            ));
        }
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
            &clock,
        )?);
        if credentials.connections().next().is_some() && config.server.public_url.is_none() {
            return Err(ConfigError::new(
                "server.public_url",
                "authorization_code credentials need the public URL providers send browsers back to ({public_url}/oauth/callback)",
            ));
        }
        // OpenAPI operations are tools like those written by hand, after them.
        let mut tool_configs = config.tools.clone();
        tool_configs.extend(crate::tools::openapi::expand_all(&config.openapi, &config.base_dir, &config.upstream)?);
        let tools = ToolRegistry::build(&tool_configs, upstream.identity_headers(), config.upstream.default_timeout, &credentials)?;
        let routes = Arc::new(crate::routes::Routes::build(
            &config.routes,
            &credentials,
            config.upstream.default_timeout,
            config.upstream.max_response_bytes,
        )?);
        let resource = config.server.resource();
        let mut authenticator =
            Authenticator::new(&config.identity, resource.clone(), control_plane_client()?, Arc::clone(&clock), Arc::clone(&metrics))?;
        let api_keys = crate::apikeys::ApiKeys::build(&config.api_keys, vault.as_ref(), &clock)?;
        if let Some(oidc) = config.admin.as_ref().and_then(|a| a.console.oidc.as_ref())
            && !authenticator.issuer_ids().contains(&oidc.issuer)
        {
            return Err(ConfigError::new(
                "admin.console.oidc.issuer",
                "must be one of identity.issuers (its tokens are verified as theirs)",
            ));
        }
        if let Some(keys) = &api_keys {
            authenticator = authenticator.with_api_keys(Arc::clone(keys) as Arc<dyn crate::identity::KeyVerifier>);
        }
        let scopes = crate::reload::scopes_supported(tools.scopes(), &config.servers, &routes);
        // With Warden's own authorization server, clients are sent to it alone; the issuers
        // listed under `identity` stay trusted (the console's sign-in, machine clients).
        let authorization_servers =
            if config.authorization_server.is_some() { vec![config.server.public_base()] } else { authenticator.issuer_ids() };
        let metadata = Arc::new(ResourceMetadata::new(
            &config.server.public_base(),
            resource.clone(),
            authorization_servers,
            scopes,
            config.identity.challenge_scopes.clone(),
        ));
        let limits = Arc::new(crate::limits::Limits::build(
            &config.limits,
            crate::limits::Context {
                trusted_proxies: config.server.trusted_proxies.clone(),
                vault: vault.clone(),
                audit: Arc::clone(&audit),
                clock: Arc::clone(&clock),
            },
        )?);
        let auth_server = match &config.authorization_server {
            Some(c) => {
                if authenticator.issuer_ids().contains(&config.server.public_base()) {
                    return Err(ConfigError::new("identity.issuers", "Warden's own issuer (server.public_url) is trusted already"));
                }
                let server = crate::authz::AuthServer::build(
                    c,
                    crate::authz::Parts {
                        public_base: config.server.public_base(),
                        resource,
                        vault: vault.clone(),
                        metadata: Arc::clone(&metadata),
                        audit: Arc::clone(&audit),
                        http: control_plane_client()?,
                        clock: Arc::clone(&clock),
                        public_url_set: config.server.public_url.is_some(),
                        upstream_config: config.upstream.clone(),
                        base_dir: config.base_dir.clone(),
                        limits: Arc::clone(&limits),
                        keys: signing.clone(),
                        keep_idp_tokens: credentials.exchanges().next().is_some(),
                    },
                )?;
                let server = Arc::new(server);
                for exchange in credentials.exchanges() {
                    exchange.set_subject_tokens(Arc::clone(&server) as Arc<dyn crate::credentials::exchange::SubjectTokens>);
                }
                let keys = Arc::clone(&server.keys) as Arc<dyn crate::identity::LocalKeys>;
                authenticator = authenticator.with_own_issuer(server.issuer.clone(), crate::signing::ACCESS_TOKENS, keys);
                Some(server)
            }
            None => None,
        };
        let origin_guard = crate::edge::OriginGuard::new(
            &config.server.public_base(),
            config.server.allowed_hosts.as_deref(),
            config.server.allowed_origins.as_ref(),
        )?;
        let policy_error = |e: PolicyError| ConfigError::new("policy.files", e.to_string());
        let tools = Arc::new(Catalog::new(tools));
        let pins = Arc::new(Pins::new(vault.clone(), Arc::clone(&audit)));
        let mut federation = Federation::build(
            &config.servers,
            &config.base_dir,
            &upstream,
            config.upstream.default_timeout,
            &credentials,
            Arc::clone(&tools),
            pins,
        )?;
        let (catalog, bound_routes) = (Arc::clone(&tools), Arc::clone(&routes));
        let bind: Binder = Box::new(move |set: Arc<PolicySet>| {
            let (tools, governed) = (catalog.load(), catalog.governed());
            let facts = tools.iter().map(|t| t.facts()).chain(governed.iter().map(|g| g.facts()));
            PolicySet::bind_shared(set, facts.chain(bound_routes.iter().map(|r| r.facts())))
        });
        let told = Arc::clone(&tools);
        let reloader = Reloader::new(source, bind, Arc::clone(&audit), config.policy.reload_interval).map_err(policy_error)?;
        let reloader = Arc::new(reloader.on_reload(move || told.visibility_changed()));
        let rebind = Arc::clone(&reloader);
        federation.on_change(move || rebind.rebind());
        let policy_headers: Arc<[http::HeaderName]> = config
            .policy
            .request_headers
            .iter()
            .filter_map(|h| http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
            .collect();
        let authenticator = Arc::new(authenticator);
        let approvals = match &vault {
            Some(vault) => Some(Arc::new(
                crate::approvals::Approvals::new(
                    Arc::clone(vault),
                    Arc::clone(&audit),
                    config.server.public_base(),
                    admin_token.clone(),
                    &config.approvals,
                    &config.upstream,
                    Arc::clone(&authenticator),
                )?
                .with_tools(Arc::clone(&tools)),
            )),
            None if config.approvals.webhook.is_some() => {
                return Err(ConfigError::new("approvals", "approvals need `vault:` (requests are kept in its store)"));
            }
            None => None,
        };
        Ok(Self {
            authenticator,
            approvals,
            rounds,
            closing: tokio_util::sync::CancellationToken::new(),
            metrics,
            telemetry: config.telemetry.clone(),
            tools,
            federation: Arc::new(federation),
            limits,
            upstream: Arc::new(upstream),
            metadata,
            auth_server,
            signing,
            audit,
            credentials,
            vault,
            admin_token,
            api_keys,
            routes,
            console: config.admin.as_ref().map(|a| a.console.clone()).unwrap_or_default(),
            public_base: config.server.public_base(),
            config_file: None,
            config_snapshot: crate::reload::Snapshot::of(config),
            origin_guard: Arc::new(origin_guard),
            max_body_bytes: config.server.max_body_bytes,
            body_read_timeout: config.server.body_read_timeout,
            connection_limits: crate::server::ConnectionLimits {
                header_read_timeout: config.server.header_read_timeout,
                idle_timeout: config.server.idle_timeout,
                max_per_ip: config.server.max_connections_per_ip,
            },
            policy_reloader: reloader,
            clock,
            policy_headers,
        })
    }

    /// The MCP endpoint's share of the gateway.
    pub fn mcp(&self) -> crate::mcp::Mcp {
        crate::mcp::Mcp {
            authenticator: Arc::clone(&self.authenticator),
            tools: Arc::clone(&self.tools),
            policy: self.policy_reloader.policy(),
            upstream: Arc::clone(&self.upstream),
            metadata: Arc::clone(&self.metadata),
            audit: Arc::clone(&self.audit),
            origin_guard: Arc::clone(&self.origin_guard),
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: self.body_read_timeout,
            policy_headers: Arc::clone(&self.policy_headers),
            in_flight: dashmap::DashMap::new(),
            asks: Arc::default(),
            held: Arc::default(),
            log_levels: Arc::default(),
            subscriptions: Arc::default(),
            closing: self.closing.clone(),
            federation: Arc::clone(&self.federation),
            limits: Arc::clone(&self.limits),
            metrics: Arc::clone(&self.metrics),
            approvals: self.approvals.clone(),
            rounds: Arc::clone(&self.rounds),
        }
    }

    /// Whether this replica can serve: the vault's database answers, every issuer's keys have
    /// been fetched (fetched now if not yet), and the audit writer is healthy. Each check is
    /// bounded, so a probe never hangs.
    pub async fn ready(&self) -> Result<(), &'static str> {
        if !self.audit.healthy() {
            return Err("audit_unhealthy");
        }
        if let Some(vault) = &self.vault {
            let ping = async { vault.store().await?.ping().await };
            if !matches!(tokio::time::timeout(READY_CHECK, ping).await, Ok(Ok(()))) {
                return Err("database_unavailable");
            }
        }
        if !tokio::time::timeout(READY_CHECK, self.authenticator.ready()).await.unwrap_or(false) {
            return Err("issuer_keys_unavailable");
        }
        Ok(())
    }
}

/// The HTTP application: metadata, health, and `/mcp` behind the gate.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let mcp = Arc::new(gateway.mcp());
    // CORS runs before the gate: a browser's preflight carries no token.
    let mcp = Router::new()
        .route("/mcp", axum::routing::any(crate::mcp::gate::endpoint))
        .with_state(Arc::clone(&mcp))
        .layer(axum::middleware::from_fn_with_state(mcp, crate::cors::mcp));
    let metadata = Router::new()
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(resource_metadata))
        .route("/.well-known/warden-audit-keys", get(audit_keys).with_state(Arc::clone(&gateway.audit)))
        .layer(axum::middleware::from_fn(crate::cors::public))
        .with_state(Arc::clone(&gateway.metadata));
    let body_timeout = gateway.body_read_timeout;
    let admin = Arc::new(crate::admin::AdminState {
        admin_token: gateway.admin_token.clone(),
        vault: gateway.vault.clone(),
        credentials: Arc::clone(&gateway.credentials),
        audit: Arc::clone(&gateway.audit),
        federation: Arc::clone(&gateway.federation),
        limits: Arc::clone(&gateway.limits),
        api_keys: gateway.api_keys.clone(),
        attempts: crate::admin::attempts::FailedAttempts::default(),
    });
    let console = crate::admin::console::ConsoleState::new(
        Arc::clone(&admin),
        Arc::clone(&gateway.tools),
        Arc::clone(&gateway.routes),
        gateway.policy_reloader.policy(),
        Arc::clone(&gateway.authenticator),
        gateway.public_base.clone(),
        gateway.console.clone(),
    )
    .map_or_else(Router::new, |state| crate::admin::console::routes(Arc::new(state.with_approvals(gateway.approvals.clone()))));
    // Proxy routes stream bodies both ways, bounded by each route's size and time limits.
    let proxy =
        Router::new().route("/proxy/{*rest}", axum::routing::any(crate::routes::handle)).with_state(Arc::new(crate::routes::ProxyState {
            authenticator: Arc::clone(&gateway.authenticator),
            routes: Arc::clone(&gateway.routes),
            policy: gateway.policy_reloader.policy(),
            limits: Arc::clone(&gateway.limits),
            upstream: Arc::clone(&gateway.upstream),
            audit: Arc::clone(&gateway.audit),
            metadata: Arc::clone(&gateway.metadata),
            policy_headers: Arc::clone(&gateway.policy_headers),
        }));
    Router::new()
        .route("/oauth/connect/{link}", get(crate::connect::start))
        .route("/oauth/callback", get(crate::connect::callback))
        .with_state(Arc::new(crate::connect::ConnectState {
            vault: gateway.vault.clone(),
            credentials: Arc::clone(&gateway.credentials),
            audit: Arc::clone(&gateway.audit),
            upstream: Arc::clone(&gateway.upstream),
            authz: gateway.auth_server.clone(),
        }))
        .merge(gateway.auth_server.clone().map_or_else(Router::new, crate::authz::routes))
        .merge(gateway.signing.clone().map_or_else(Router::new, |keys| {
            Router::new()
                .route("/.well-known/jwks.json", get(crate::signing::jwks_document))
                .layer(axum::middleware::from_fn(crate::cors::oauth))
                .with_state(keys)
        }))
        .merge(gateway.approvals.clone().map_or_else(Router::new, |approvals| {
            let admin = Arc::clone(&admin) as Arc<dyn crate::approvals::api::WrongTokens>;
            crate::approvals::api::routes(Arc::new(crate::approvals::api::Api { approvals, admin }))
        }))
        .merge(crate::admin::routes(Arc::clone(&admin)))
        .merge(console)
        // These routes' bodies in bounded time; the gate bounds /mcp's itself, with a 408.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout))
        .merge(metadata)
        .merge(mcp)
        .merge(proxy)
        .merge(telemetry_routes(&gateway, gateway.telemetry.listen.is_none()))
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found"}))) })
        .layer(axum::middleware::from_fn_with_state(
            crate::edge::DrainLimits { max_bytes: gateway.max_body_bytes, timeout: gateway.body_read_timeout },
            crate::edge::drain_unread,
        ))
        .layer(axum::middleware::from_fn(crate::edge::layer))
}

/// The public key that verifies the audit chain's signed checkpoints (a JWK set); 404 when
/// checkpoints are not signed.
async fn audit_keys(State(audit): State<Arc<AuditSink>>) -> Response {
    match audit.public_keys() {
        Some(keys) => axum::Json(keys.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found"}))).into_response(),
    }
}

async fn resource_metadata(State(metadata): State<Arc<ResourceMetadata>>) -> Response {
    let mut response = axum::Json(metadata.document()).into_response();
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
    tokio::spawn(Arc::clone(&gateway.policy_reloader).watch(cancel.clone()));
    if let Some(path) = &gateway.config_file {
        let reload = crate::reload::ToolsReload {
            path: path.clone(),
            tools: Arc::clone(&gateway.tools),
            credentials: Arc::clone(&gateway.credentials),
            upstream: Arc::clone(&gateway.upstream),
            policy: Arc::clone(&gateway.policy_reloader),
            federation: Arc::clone(&gateway.federation),
            routes: Arc::clone(&gateway.routes),
            metadata: Arc::clone(&gateway.metadata),
            audit: Arc::clone(&gateway.audit),
            last: std::sync::Mutex::new(gateway.config_snapshot.clone()),
        };
        tokio::spawn(Arc::new(reload).watch(cancel.clone()));
    }
    // Federated servers connect before the first request, so their tools are listed from the
    // start; one that is slow or down does not hold the gateway back beyond this.
    gateway.federation.start(&cancel);
    gateway.federation.settled(FEDERATION_START).await;
    // Metrics and probes on their own listener, when configured (kept off the public one).
    if let Some(addr) = gateway.telemetry.listen {
        let telemetry = tokio::net::TcpListener::bind(addr).await?;
        let routes = telemetry_routes(&gateway, true);
        let stop = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(telemetry, routes).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "the telemetry listener failed");
            }
        });
    }
    let limits = gateway.connection_limits;
    let audit = Arc::clone(&gateway.audit);
    let closing = gateway.closing.clone();
    let app = router(gateway);
    let served = crate::server::serve(listener, app, limits, async move {
        shutdown.await;
        cancel.cancel();
        closing.cancel();
    })
    .await;
    // Every request has been answered: now every event it left must be written before exit.
    let flushed = tokio::task::spawn_blocking(move || {
        let flushed = audit.flush(AUDIT_DRAIN);
        (flushed, audit.spooled())
    })
    .await
    .unwrap_or((false, 0));
    match flushed {
        (true, _) => {}
        (false, 0) => tracing::error!("audit events were still queued when shutdown gave up waiting for them"),
        (false, bytes) => tracing::warn!(bytes, "audit records not yet delivered stay in the spool; they are delivered at the next start"),
    }
    served
}

/// `/healthz` (alive), `/readyz` (ready to serve: [`Gateway::ready`]) and, with `metrics`,
/// `/metrics`.
fn telemetry_routes(gateway: &Arc<Gateway>, metrics: bool) -> Router {
    let mut routes = Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(readyz));
    if metrics && gateway.telemetry.metrics {
        routes = routes.route("/metrics", get(metrics_text));
    }
    routes.with_state(Arc::clone(gateway))
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.ready().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(why) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "not_ready", "reason": why}))).into_response()
        }
    }
}

/// OpenMetrics when the scraper asks for it, the classic text format otherwise.
async fn metrics_text(State(gateway): State<Arc<Gateway>>, headers: http::HeaderMap) -> Response {
    let openmetrics =
        headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (gateway.metrics.encode(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        (gateway.metrics.encode_prometheus(), "text/plain; version=0.0.4; charset=utf-8")
    };
    let mut response = body.into_response();
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

/// How long each readiness check may take.
const READY_CHECK: Duration = Duration::from_secs(2);

/// How long start-up waits for the federated servers' first catalogs.
const FEDERATION_START: Duration = Duration::from_secs(15);

/// How long shutdown waits for queued audit events to be written.
const AUDIT_DRAIN: Duration = Duration::from_secs(30);

/// Installs process-wide crypto providers. Idempotent; call before verifying or signing.
pub fn install_crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
