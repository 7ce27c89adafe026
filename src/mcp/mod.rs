//! MCP stage: Streamable HTTP at `/mcp` on rmcp, behind Warden's gate.
//!
//! The order in which a request meets the stages is written here, once:
//! 0. `server::serve` (every connection): the header-read timeout and the per-IP connection
//!    limit, before any request exists to spend work on.
//! 1. `edge::layer` (all routes): request id and trace context first, so every later refusal
//!    is correlated.
//! 2. `cors::mcp`: a browser's preflight is answered before authentication (it carries no
//!    token), for allowed origins only.
//! 3. [`gate`]: `Host`/`Origin` (DNS rebinding) before anything costly; then identity (401;
//!    400 for two credentials) before the body is read, so anonymous callers cannot make us
//!    buffer; then the bounded body read (in size and time) and the strict JSON-RPC checks
//!    ([`message`]) that rmcp would otherwise answer with plain-text errors; then the
//!    call-time policy decision, which must be able to answer HTTP 403 (step-up) and so cannot
//!    wait for the JSON-RPC handler.
//! 4. rmcp's `StreamableHttpService` (stateless, JSON responses), which negotiates protocol
//!    revisions and dispatches to [`handler::McpHandler`].
//! 5. The handler: policy at list time; for a call, argument validation and the tool's
//!    upstream call with the arguments the gate decided on.
//!
//! Every request gets exactly one audit event: see [`gate`].

pub mod gate;
pub mod handler;
pub mod message;
#[cfg(test)]
mod tests;

/// Facts the gate learned about a request, handed to the handler through extensions.
#[derive(Debug, Clone)]
pub struct GateInfo {
    pub jsonrpc_id: Option<serde_json::Value>,
    pub method: Option<String>,
}
