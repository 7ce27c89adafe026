//! A federated tool's upstream call, as the caller's revision lets its server ask the caller
//! things during it.
//!
//! Four meetings of revisions, one place:
//! - a 2026-07-28 server asks with an `InputRequiredResult`: relayed to a 2026-07-28 caller
//!   with Warden's sealed state (the handler, [`super::rounds`]);
//! - the same, for a caller of an older revision with a session: Warden puts the requests to
//!   the caller on the call's stream ([`super::asks`]) and makes the call again with the
//!   answers, at most [`MAX_ASKED_ROUNDS`] times ([`call`], here);
//! - a server of the older revisions asks with a request during the call: for an older caller
//!   it goes on the call's stream (`asks`), the upstream call waiting for the answer;
//! - the same, for a 2026-07-28 caller, which can only be asked by a result: the upstream call
//!   is **held** — it runs on in a task of its own, waiting for the answer — while the caller
//!   gets an `InputRequiredResult` with the server's request and a state naming the held call;
//!   the caller's retry brings the answer, which goes to the waiting server, and the call goes
//!   on to its result or to the next request ([`Held`]).
//!
//! A held call lives in the memory of the replica that holds it: a retry that reaches another
//! replica (or comes after [`super::rounds::STATE_TTL`]) finds nothing and is refused
//! `invalid_request_state`; the held call is then abandoned (its task aborted).

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::ErrorData;
use serde_json::{Map, Value};

use super::Mcp;
use crate::identity::Principal;
use crate::tools::{ResultBody, Tool, ToolFailure, ToolOutcome, ToolResult};
use crate::upstream::{Ask, Asker, CallContext};

/// How many times one call of an older revision's caller is made again with the caller's
/// answers to a 2026-07-28 server's input requests.
pub const MAX_ASKED_ROUNDS: u32 = 8;

/// At most this many calls are held at once on a replica.
const MAX_HELD: usize = 10_000;

/// Calls waiting for their 2026-07-28 caller's answer, by id.
#[derive(Default)]
pub struct Held {
    calls: dashmap::DashMap<String, HeldCall>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("calls", &self.calls.len()).finish()
    }
}

/// A call running upstream, whose server asked the caller something.
struct HeldCall {
    /// Whose it is (issuer and subject) and which tool: a retry must match both.
    owner: String,
    held_at: Instant,
    task: tokio::task::JoinHandle<ToolOutcome>,
    asks: tokio::sync::mpsc::Receiver<Posed>,
    /// The request the caller was given, waiting for its answer.
    posed: Option<Posed>,
}

impl Drop for HeldCall {
    fn drop(&mut self) {
        // Abandoned (never retried, refused, replaced): the upstream call is given up on.
        self.task.abort();
    }
}

/// A server's request to the caller, as the held call's asker hands it over.
struct Posed {
    key: String,
    request: Value,
    answer: tokio::sync::oneshot::Sender<Result<Value, ErrorData>>,
}

/// What one upstream call came to: its outcome (for a held call, the server's request as an
/// `InputRequiredResult`), the held call's id if it is held, and how many rounds of input the
/// caller answered on the call's stream.
pub(super) struct Called {
    pub outcome: ToolOutcome,
    pub held: Option<String>,
    pub asked_rounds: u32,
}

/// What the upstream call needs of the handler's.
pub(super) struct Upstream<'a> {
    pub mcp: &'a Mcp,
    pub tool: &'a Arc<Tool>,
    pub principal: &'a Arc<Principal>,
    pub args: &'a Map<String, Value>,
    pub span: &'a tracing::Span,
    pub cancelled: &'a tokio_util::sync::CancellationToken,
    /// Makes the record of the call's asks (`asks::AskRecord`).
    pub record: &'a (dyn Fn() -> super::asks::AskRecord + Sync),
}

/// The upstream call for a caller of `revision` (see the module docs). `resume`: the held call
/// a 2026-07-28 caller's retry names; `holdable`: whether a server's request during the call
/// may be held for such a caller (it declared a capability the server may use).
pub(super) async fn call(
    up: &Upstream<'_>,
    call: &mut CallContext,
    revision: super::dispatch::Revision,
    resume: Option<&str>,
    holdable: bool,
) -> Result<Called, crate::error::GatewayError> {
    if let Some(id) = resume {
        return resumed(up, call, id).await;
    }
    if revision == super::dispatch::Revision::PerRequest && up.tool.server.is_some() {
        if holdable {
            return Ok(held_or_done(up, start(up, call)).await);
        }
        // Nothing the server may use was declared: its requests are refused as such.
        call.asker = Some(Arc::new(HoldingAsker { posed: None, capabilities: None, record: (up.record)() }));
    }
    let mut asked_rounds = 0;
    loop {
        let outcome = tokio::select! {
            outcome = tracing::Instrument::instrument(up.tool.backend.call(&up.mcp.upstream, up.principal, call, up.args), up.span.clone()) => outcome,
            () = up.cancelled.cancelled() => Err(ToolFailure::Cancelled),
        };
        // A 2026-07-28 server's input requests, for a caller of an older revision: put to the
        // caller on the call's stream, and the call made again with its answers.
        let (Ok(ToolResult { result: ResultBody::InputRequired(asked), .. }), Some(asker)) = (&outcome, &call.asker) else {
            return Ok(Called { outcome, held: None, asked_rounds });
        };
        if asked_rounds == MAX_ASKED_ROUNDS || !asker.can_ask() {
            return Ok(Called { outcome, held: None, asked_rounds });
        }
        let server = up.tool.server.as_deref().unwrap_or_default();
        let answers = tokio::select! {
            answers = ask_for_input(asker.as_ref(), server, asked) => answers,
            () = up.cancelled.cancelled() => Err(ToolFailure::Cancelled),
        };
        match answers {
            Ok(responses) => {
                let state = asked.request_state.clone();
                call.input = Some(Arc::new(crate::upstream::UpstreamInput { responses: Some(responses), state }));
                asked_rounds += 1;
            }
            Err(failure) => return Ok(Called { outcome: Err(failure), held: None, asked_rounds }),
        }
    }
}

/// The call started in a task of its own, its server's requests handed over by a [`HoldingAsker`].
fn start(up: &Upstream<'_>, call: &mut CallContext) -> HeldCall {
    let (tx, asks) = tokio::sync::mpsc::channel(1);
    let asker = HoldingAsker { posed: Some(tx), capabilities: call.client_capabilities.clone(), record: (up.record)() };
    call.asker = Some(Arc::new(asker));
    let (tool, upstream, principal, ctx, args) =
        (Arc::clone(up.tool), Arc::clone(&up.mcp.upstream), Arc::clone(up.principal), call.clone(), up.args.clone());
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move { tool.backend.call(&upstream, &principal, &ctx, &args).await },
        up.span.clone(),
    ));
    HeldCall { owner: up.principal.key_for(&up.tool.name), held_at: Instant::now(), task, asks, posed: None }
}

/// A 2026-07-28 caller's retry of a held call: its answer to the server's request, then the
/// call goes on.
async fn resumed(up: &Upstream<'_>, call: &CallContext, id: &str) -> Result<Called, crate::error::GatewayError> {
    let refused = crate::error::GatewayError::InvalidRequestState;
    // Only its own caller, for its own tool, takes it (anyone else leaves it waiting).
    let owner = up.principal.key_for(&up.tool.name);
    let Some((_, mut held)) = up.mcp.held.calls.remove_if(id, |_, held| held.owner == owner) else { return Err(refused) };
    if let Some(posed) = held.posed.take() {
        let answer = call.input.as_ref().and_then(|i| i.responses.as_ref()).and_then(|r| r.get(&posed.key)).cloned();
        let answer = answer.ok_or_else(|| ErrorData::invalid_params("the client did not answer the request", None));
        let _ = posed.answer.send(answer);
    }
    Ok(held_or_done(up, held).await)
}

/// Waits for the held call's outcome, or for its server's next request, which is then held for
/// the caller to answer.
async fn held_or_done(up: &Upstream<'_>, mut held: HeldCall) -> Called {
    let outcome = tokio::select! {
        outcome = &mut held.task => outcome.unwrap_or(Err(ToolFailure::Cancelled)),
        Some(posed) = held.asks.recv() => {
            let asked = rmcp::model::InputRequiredResult::new(
                serde_json::from_value(serde_json::json!({ posed.key.clone(): posed.request })).ok(),
                None,
            );
            held.posed = Some(posed);
            held.held_at = Instant::now();
            let id = format!("held-{}", uuid::Uuid::new_v4());
            forget_stale(&up.mcp.held);
            if up.mcp.held.calls.len() >= MAX_HELD {
                return Called { outcome: Err(ToolFailure::ServerUnavailable), held: None, asked_rounds: 0 };
            }
            up.mcp.held.calls.insert(id.clone(), held);
            let result = ResultBody::InputRequired(asked);
            return Called { outcome: Ok(ToolResult { result, upstream_status: 200 }), held: Some(id), asked_rounds: 0 };
        }
        () = up.cancelled.cancelled() => Err(ToolFailure::Cancelled),
    };
    Called { outcome, held: None, asked_rounds: 0 }
}

/// Drops held calls whose caller did not come back in time.
fn forget_stale(held: &Held) {
    held.calls.retain(|_, call| call.held_at.elapsed() < super::rounds::STATE_TTL);
}

/// Hands a held call's server requests over to the handler, which gives them to the caller.
#[derive(Debug)]
struct HoldingAsker {
    /// Where requests go; `None` when the caller declared nothing they could be.
    posed: Option<tokio::sync::mpsc::Sender<Posed>>,
    /// What the 2026-07-28 caller declared (`_meta`).
    capabilities: Option<rmcp::model::ClientCapabilities>,
    record: super::asks::AskRecord,
}

impl Asker for HoldingAsker {
    fn can_ask(&self) -> bool {
        self.posed.is_some()
    }

    fn ask<'a>(&'a self, ask: Ask<'a>) -> futures::future::BoxFuture<'a, Result<Value, ErrorData>> {
        Box::pin(async move {
            let key = format!("warden-{}", uuid::Uuid::new_v4().simple());
            self.record.decide(&ask, (self.capabilities.as_ref(), self.posed.is_some()), &Value::String(key.clone()))?;
            let Some(posed) = &self.posed else { return Err(ErrorData::internal_error("the calling client cannot be asked", None)) };
            let (answer, answered) = tokio::sync::oneshot::channel();
            posed.send(Posed { key, request: ask.request, answer }).await.map_err(|_| super::asks::gone())?;
            super::asks::answered(answered).await
        })
    }
}

/// A 2026-07-28 server's input requests put to a caller of an older revision, one at a time, on
/// the call's stream: its answers, by the server's keys. A request the caller refuses or cannot
/// be sent fails the call (the server has no way to hear of it).
async fn ask_for_input(
    asker: &dyn Asker,
    server: &str,
    asked: &rmcp::model::InputRequiredResult,
) -> Result<rmcp::model::InputResponses, ToolFailure> {
    let mut responses = rmcp::model::InputResponses::new();
    for (key, request) in asked.input_requests.iter().flatten() {
        let method = super::handler::input_method(request);
        let request = serde_json::to_value(request).map_err(|_| ToolFailure::ClientRequestFailed(method))?;
        let answer = asker.ask(Ask { server, method, request, forbidden: false }).await;
        responses.insert(key.clone(), answer.map_err(|_| ToolFailure::ClientRequestFailed(method))?);
    }
    Ok(responses)
}
