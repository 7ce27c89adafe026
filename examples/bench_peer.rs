//! The peers of the CPU-per-request benchmark (`scripts/bench-cpu`), in one process apart from
//! the gateway: an issuer's JWKS (`/jwks.json`), the echo backend (`POST /echo`), an MCP server
//! with an `echo` tool (`/mcp`, rmcp's stateless Streamable HTTP in JSON mode: the federated
//! server, callable directly too), and one RS256 access token for the gateway's resource,
//! written to a file.
//!
//!     cargo run --release --example bench_peer -- ADDR RESOURCE TOKEN_FILE
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, InitializeResult, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, resource, token_file] = args.as_slice() else {
        eprintln!("usage: bench_peer ADDR RESOURCE TOKEN_FILE");
        std::process::exit(2);
    };
    warden::install_crypto();
    let key = warden::devidp::SigningKey::generate().unwrap();
    let issuer = format!("http://{addr}");
    let now = warden::unix_now();
    let token = key
        .sign(&json!({
            "iss": issuer, "sub": "bench-user", "aud": resource, "iat": now, "exp": now + 24 * 3600,
            "scope": "echo:call", "client_id": "bench",
        }))
        .unwrap();
    std::fs::write(token_file, token).unwrap();
    let jwks = serde_json::to_value(warden::devidp::SigningKey::jwks(&[&key])).unwrap();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts();
    let mcp = StreamableHttpService::new(|| Ok(Echo), Arc::new(NeverSessionManager::default()), config);
    let app = Router::new()
        .route("/jwks.json", get(move || async move { axum::Json(jwks.clone()) }))
        .route("/echo", post(|axum::Json(body): axum::Json<Value>| async move { axum::Json(body) }))
        .nest_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// The federated MCP server: one `echo` tool.
#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(&self, _r: Option<PaginatedRequestParams>, _c: RequestContext<RoleServer>) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]});
        Ok(ListToolsResult::with_all_items(vec![Tool::new("echo", "Echo the message.", Arc::new(schema.as_object().unwrap().clone()))]))
    }

    async fn call_tool(&self, request: CallToolRequestParams, _c: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let message = request.arguments.as_ref().and_then(|a| a.get("message")).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(message)])))
    }
}
