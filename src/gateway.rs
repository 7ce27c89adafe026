//! The gateway: runtime state built from a validated config, the HTTP router, and `run`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditSink;
use crate::config::{Config, ConfigError};
use crate::identity::Authenticator;
use crate::identity::metadata::ResourceMetadata;
use crate::mcp::handler::McpHandler;
use crate::tools::ToolRegistry;
use crate::upstream::{Upstream, control_plane_client};

/// Everything a request needs, built once from config.
pub struct Gateway {
    pub authenticator: Authenticator,
    pub tools: ToolRegistry,
    pub upstream: Upstream,
    pub metadata: ResourceMetadata,
    pub audit: AuditSink,
    pub origin_guard: OriginGuard,
    pub max_body_bytes: usize,
}

impl Gateway {
    /// Builds every runtime type; fails on the first config problem without binding anything.
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        let upstream = Upstream::new(&config.upstream, &config.identity_headers)?;
        let tools = ToolRegistry::build(&config.tools, upstream.identity_headers(), config.upstream.default_timeout)?;
        let resource = config.server.resource();
        let authenticator = Authenticator::new(&config.identity, resource.clone(), control_plane_client()?)?;
        let metadata = ResourceMetadata::new(&config.server.public_base(), resource, authenticator.issuer_ids(), tools.scopes());
        let audit = AuditSink::open(&config.audit.output).map_err(|e| ConfigError::new("audit.output", format!("cannot open: {e}")))?;
        let origin_guard = OriginGuard::from_config(config)?;
        Ok(Self { authenticator, tools, upstream, metadata, audit, origin_guard, max_body_bytes: config.server.max_body_bytes })
    }
}

/// `Host` and `Origin` checks on `/mcp` (DNS-rebinding protection).
#[derive(Debug)]
pub struct OriginGuard {
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl OriginGuard {
    fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let base = url::Url::parse(&config.server.public_base()).map_err(|_| ConfigError::new("server.public_url", "invalid URL"))?;
        let public_host = base.host_str().unwrap_or_default().trim_matches(['[', ']']).to_ascii_lowercase();
        let hosts = match &config.server.allowed_hosts {
            Some(h) => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
            None => vec![public_host, "localhost".into(), "127.0.0.1".into(), "::1".into()],
        };
        let mut origins: Vec<String> = config.server.allowed_origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        origins.push(base.origin().ascii_serialization().to_ascii_lowercase());
        Ok(Self { hosts, origins })
    }

    /// `Err(code)` when the request must be refused.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).ok_or("host_not_allowed")?.to_ascii_lowercase();
        let bare = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
            None => host.rsplit_once(':').map_or(host.clone(), |(h, _)| h.to_owned()),
        };
        if !self.hosts.iter().any(|h| *h == bare || *h == host) {
            return Err("host_not_allowed");
        }
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| "origin_not_allowed")?.to_ascii_lowercase();
            if !self.origins.contains(&origin) {
                return Err("origin_not_allowed");
            }
        }
        Ok(())
    }
}

/// The HTTP application: metadata, health, and `/mcp` behind the gate.
pub fn router(gateway: Arc<Gateway>, shutdown: CancellationToken) -> Router {
    let handler = McpHandler { gateway: Arc::clone(&gateway) };
    let mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(gateway.max_body_bytes)
        .with_cancellation_token(shutdown);
    let service = StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(NeverSessionManager::default()), mcp_config);
    let mcp = Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&gateway), crate::mcp::gate::gate));
    Router::new()
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(resource_metadata))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(gateway)
        .merge(mcp)
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found"}))) })
        .layer(axum::middleware::from_fn(crate::edge::layer))
}

async fn resource_metadata(State(gw): State<Arc<Gateway>>) -> Response {
    let mut response = axum::Json(gw.metadata.document()).into_response();
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=300"));
    response
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn run(gateway: Gateway, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let cancel = CancellationToken::new();
    let app = router(Arc::new(gateway), cancel.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            cancel.cancel();
        })
        .await
}

/// Installs process-wide crypto providers. Idempotent; call before verifying or signing.
pub fn install_crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
