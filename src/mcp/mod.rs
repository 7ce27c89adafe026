//! MCP stage: Streamable HTTP at `/mcp`, behind Warden's gate.
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
//!    buffer; then the bounded body read (in size and time), the one parse into a typed message
//!    and the strict JSON-RPC checks ([`message`]); then the call-time policy decision, which
//!    must be able to answer HTTP 403 (step-up) and so cannot wait for the JSON-RPC handler.
//!    What the gate admits is one typed value, [`Admitted`].
//! 4. [`dispatch`]: the admitted message is served (stateless, JSON responses; SSE for a
//!    federated call's progress and logs), for every revision: the revisions that negotiate with
//!    `initialize` and the 2026-07-28 per-request lifecycle differ only in what dispatch says
//!    of them (see its docs). The gate has checked that lifecycle's headers (SEP-2243) and
//!    `_meta` (SEP-2575) before the decision.
//! 5. [`handler`]: policy at list time; for a call, argument validation and the tool's
//!    upstream call with the arguments the gate decided on. A federated server's input
//!    requests (2026-07-28) go back to the caller with Warden's sealed state, which a retry
//!    must bring back ([`rounds`]); on the older revisions a server's requests to the client
//!    go to it on the call's stream and its answers come back as POSTed responses ([`asks`]),
//!    for what it declared in its session ([`sessions`]).
//!
//! Every request gets exactly one audit event: see [`gate`].
//!
//! Proxy routes (`/proxy/{name}/…`, the `routes` stage) are a second front door through the
//! same stages in the same order: pre-authentication limit, identity, the audit gate, then the
//! route's own checks (method, path), policy, limits, and the upstream call.

pub mod asks;
pub mod dispatch;
pub mod gate;
pub mod handler;
pub mod held;
pub mod message;
pub mod rounds;
pub mod sessions;
pub mod subscriptions;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditOnce, AuditSink};
use crate::edge::OriginGuard;
use crate::edge::RequestContext;
use crate::identity::metadata::ResourceMetadata;
use crate::identity::{Authenticator, Principal};
use crate::policy::{RequestFacts, SharedPolicy};
use crate::tools::{Catalog, Tool};
use crate::upstream::Upstream;

/// What the MCP endpoint uses, and nothing else of the gateway.
pub struct Mcp {
    pub authenticator: Arc<Authenticator>,
    pub tools: Arc<Catalog>,
    pub policy: SharedPolicy,
    pub upstream: Arc<Upstream>,
    pub metadata: Arc<ResourceMetadata>,
    pub audit: Arc<AuditSink>,
    pub origin_guard: Arc<OriginGuard>,
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// Request headers exposed to policy conditions.
    pub policy_headers: Arc<[http::HeaderName]>,
    /// Calls in progress, by caller and JSON-RPC id, so the caller's `notifications/cancelled`
    /// (a separate HTTP request, in stateless serving) reaches the call.
    pub in_flight: dashmap::DashMap<String, Arc<tokio_util::sync::CancellationToken>>,
    /// Federated servers' requests to callers (older revisions), awaiting the callers' answers.
    pub asks: Arc<asks::Pending>,
    /// Federated calls held for their 2026-07-28 caller's answer to their server's request.
    pub held: Arc<held::Held>,
    /// The log levels the older revisions' callers set for their sessions.
    pub log_levels: Arc<sessions::LogLevels>,
    /// The older revisions' callers' resource subscriptions, by session.
    pub subscriptions: Arc<subscriptions::Subscriptions>,
    /// Cancelled when shutdown begins: a session's own stream then ends.
    pub closing: tokio_util::sync::CancellationToken,
    /// Federated servers' resources and prompts.
    pub federation: Arc<crate::federation::Federation>,
    pub limits: Arc<crate::limits::Limits>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// Calls `approve` rules hold back (with the vault).
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
    /// Warden's request state for a federated server's multi round-trip requests.
    pub rounds: Arc<rounds::Rounds>,
}

/// The key of a call in [`Mcp::in_flight`]: a caller may cancel only their own calls.
pub fn in_flight_key(principal: &Principal, id: &serde_json::Value) -> String {
    principal.key_for(id)
}

/// A request the gate let through: who sent it, its context, its one typed message, and for a
/// `tools/call` the tool and the decision. The handler serves only what comes as an
/// `Admitted`; there are no defaults to fall back on.
#[derive(Debug)]
pub struct Admitted {
    pub principal: Arc<Principal>,
    pub ctx: RequestContext,
    pub facts: RequestFacts,
    /// The JSON-RPC id as sent, for audit.
    pub jsonrpc_id: Option<serde_json::Value>,
    pub method: Option<String>,
    /// How a request to connect an account reaches this client (see [`gate`]).
    pub url_elicitation: Elicitation,
    /// The lifecycle the request is answered on.
    pub revision: dispatch::Revision,
    /// What the client says it can be asked: on 2026-07-28 in the request's `_meta`; on the
    /// older revisions what its session carries ([`sessions`]: what it declared in
    /// `initialize`, as far as a federated server may use it), `None` without one.
    pub client_capabilities: Option<rmcp::model::ClientCapabilities>,
    /// The client's session on the older revisions (its `Mcp-Session-Id`, opened for this
    /// caller), if it has one.
    pub session: Option<String>,
    /// The call-time decision of a `tools/call`.
    pub call: Option<CallAllowed>,
    /// This request's one audit event.
    pub once: Arc<AuditOnce>,
}

/// How the caller is asked to connect an account (a per-user credential it lacks), by what its
/// revision and capabilities allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elicitation {
    /// Older revisions, or no URL elicitation capability: the link as readable `isError` text.
    Text,
    /// 2025-11-25: error -32042 (`URLElicitationRequiredError`) carrying the URL elicitation.
    Error,
    /// 2026-07-28: an `InputRequiredResult` whose input request is the URL elicitation; the
    /// client retries the call once the user has connected (multi round-trip requests).
    InputRequired,
}

/// The gate's call-time decision: the tool decided on (the handler calls this one, not a
/// second lookup), the rule that allowed the call and the arguments it was decided on, which
/// are the arguments the call uses.
#[derive(Debug)]
pub struct CallAllowed {
    pub tool: Arc<Tool>,
    pub rule: String,
    /// A JSON object.
    pub arguments: serde_json::Value,
    /// Allowed only once a person approves this exact call: the rule's terms, its reason, and
    /// the policy version it was decided under.
    pub held: Option<(Arc<crate::policy::Approval>, String, String)>,
    /// A retried call (2026-07-28): the client's answers to input requests, and the
    /// `requestState` it was given.
    pub retry: Option<Retry>,
}

/// What a retried call (SEP-2322) carries beside its arguments.
#[derive(Debug)]
pub struct Retry {
    pub responses: Option<rmcp::model::InputResponses>,
    pub state: Option<String>,
}
