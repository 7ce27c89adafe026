//! MCP stage: Streamable HTTP at `/mcp` on rmcp, behind Warden's gate.
//!
//! The order in which a request meets the stages is written here, once:
//! 1. `edge::layer` (all routes): request id and trace context first, so every later refusal
//!    is correlated.
//! 2. [`gate`]: `Host`/`Origin` (DNS rebinding) before anything costly; then identity (401)
//!    before the body is read, so anonymous callers cannot make us buffer; then the bounded
//!    body read and JSON-RPC checks (-32700 / -32600 / -32602) that rmcp would otherwise
//!    answer with plain-text 415s; then the call-time scope check, which must be an HTTP 403
//!    (step-up) and so cannot wait for the JSON-RPC handler.
//! 3. rmcp's `StreamableHttpService` (stateless, JSON responses), which negotiates protocol
//!    revisions and dispatches to [`handler::McpHandler`].
//! 4. The handler: policy at list time, argument validation, policy again at call time
//!    (defence in depth), then the tool's upstream call.

pub mod gate;
pub mod handler;
pub mod message;

/// Facts the gate learned about a request, handed to the handler through extensions.
#[derive(Debug, Clone)]
pub struct GateInfo {
    pub jsonrpc_id: Option<serde_json::Value>,
    pub method: Option<String>,
}
