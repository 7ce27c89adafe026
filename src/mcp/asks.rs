//! A federated server's requests to the calling client during a call, on the revisions before
//! 2026-07-28: `elicitation/create`, `sampling/createMessage`, `roots/list`.
//!
//! The server sends its request on the call's own SSE stream (`federation::direct`), or answers
//! the call with input requests that Warden puts to the client itself (`handler`, a 2026-07-28
//! server called for an older caller). Either way the request reaches the client that made the
//! call, on that call's SSE response, under an id of Warden's (unguessable, bound to the
//! caller), and only if the client declared the capability in its session
//! ([`super::sessions`]) and the server's `client_requests` allow the kind. The client answers
//! with a POST of a JSON-RPC response; the gate hands it here ([`Pending::answer`]), and the
//! answer goes back to the server. A response from another caller, or to an id nobody asked
//! under, is refused (`unexpected_response`).
//!
//! Every ask is audited when it is decided: relayed (`client_request`), or refused
//! (`client_request_forbidden`, `client_capability_missing`, `client_request_limit` past
//! [`MAX_ASKS_PER_CALL`]), with the server, the tool and the method; never the content. The
//! client's answer is audited as its own request.
//!
//! Waiting is in memory: the answer must reach the replica that holds the call (with several
//! replicas, affinity on `Mcp-Session-Id`; docs/federation.md).

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ErrorCode, ErrorData};
use serde_json::Value;

use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::edge::RequestContext;
use crate::identity::Principal;
use crate::upstream::{Ask, Asker, Report};

/// How long a client may take to answer (a person fills in a form; a model samples).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How many requests a server may make of one call's client. Past it each is refused at once;
/// the first refused is audited (`client_request_limit`), the rest are not, so a server that
/// asks in a loop cannot flood the audit trail.
pub const MAX_ASKS_PER_CALL: u32 = 32;

/// Requests to callers awaiting their answer, by caller and Warden's request id.
#[derive(Default)]
pub struct Pending {
    waiting: dashmap::DashMap<String, Waiting>,
}

struct Waiting {
    answer: tokio::sync::oneshot::Sender<Result<Value, ErrorData>>,
    /// What was asked, and by which server: for the answer's audit event.
    asked: String,
}

impl Pending {
    /// A client's JSON-RPC response (`Ok`: its result; `Err`: its error) to request `id`:
    /// handed to the ask that waits for it. `None`: no ask of this caller waits under that id.
    /// Returns what had been asked, for the audit.
    pub fn answer(&self, principal: &Principal, id: &Value, answer: Result<Value, ErrorData>) -> Option<String> {
        let (_, waiting) = self.waiting.remove(&principal.key_for(id))?;
        // The ask may have given up (timed out, its call ended) just now: the answer is moot.
        let _ = waiting.answer.send(answer);
        Some(waiting.asked)
    }
}

/// One call's asks, decided and recorded: who the caller is, the call's request (its id and
/// trace go on each event), its tool, and how many requests the server has made of it.
pub struct AskRecord {
    pub audit: Arc<AuditSink>,
    pub principal: Arc<Principal>,
    pub ctx: RequestContext,
    /// The call's JSON-RPC id.
    pub call_id: Option<Value>,
    pub tool: String,
    pub asked: std::sync::atomic::AtomicU32,
}

impl AskRecord {
    /// Decides the server's request: refused past [`MAX_ASKS_PER_CALL`], when its kind is
    /// forbidden, or when the client cannot be sent it (it did not declare the kind in
    /// `capabilities`, or it cannot be `reached`); else relayed, under `id`. Audited once,
    /// except past the limit.
    pub(super) fn decide(
        &self,
        ask: &Ask<'_>,
        (capabilities, reached): (Option<&rmcp::model::ClientCapabilities>, bool),
        id: &Value,
    ) -> Result<(), ErrorData> {
        let sendable = reached && capabilities.is_some_and(|c| declares(c, ask.method, &ask.request));
        let asked = self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let too_many = format!("{}: the server has asked this call's client too often", ask.method);
        if asked > MAX_ASKS_PER_CALL {
            return Err(ErrorData::new(ErrorCode::INVALID_REQUEST, too_many, None));
        }
        let refusal = if asked == MAX_ASKS_PER_CALL {
            Some(("client_request_limit", ErrorCode::INVALID_REQUEST, too_many))
        } else if ask.forbidden {
            let why = format!("{}: the server may not ask this of its callers (client_requests)", ask.method);
            Some(("client_request_forbidden", ErrorCode::METHOD_NOT_FOUND, why))
        } else if !sendable {
            let why = format!("{}: the calling client did not declare this capability", ask.method);
            Some(("client_capability_missing", ErrorCode::METHOD_NOT_FOUND, why))
        } else {
            None
        };
        let decision = match &refusal {
            Some((reason, ..)) => Verdict { decision: "deny", reason, status: 200 },
            None => Verdict { decision: "allow", reason: "client_request", status: 200 },
        };
        let call = self.call_id.as_ref().map_or_else(|| "a call".to_owned(), |id| format!("request {id}"));
        let event = AuditEvent {
            tool: Some(self.tool.clone()),
            server: Some(ask.server.to_owned()),
            explanation: Some(format!("asked by server {} during {call}", ask.server)),
            ..AuditEvent::request(&self.ctx, Some(&self.principal), Some(id.clone()), Some(ask.method.to_owned()), decision)
        };
        self.audit.emit(event);
        match refusal {
            Some((_, code, why)) => Err(ErrorData::new(code, why, None)),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for AskRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AskRecord").field("tool", &self.tool).finish_non_exhaustive()
    }
}

/// Asks the client that made one call, on that call's stream.
#[derive(Debug)]
pub struct CallerAsker {
    pub record: AskRecord,
    pub pending: Arc<Pending>,
    /// What the client declared in its session (none without one).
    pub capabilities: Option<rmcp::model::ClientCapabilities>,
    /// The call's SSE stream, when its response is one.
    pub stream: Option<tokio::sync::mpsc::Sender<Report>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("waiting", &self.waiting.len()).finish()
    }
}

impl Asker for CallerAsker {
    fn can_ask(&self) -> bool {
        self.stream.is_some()
    }

    fn ask<'a>(&'a self, ask: Ask<'a>) -> futures::future::BoxFuture<'a, Result<Value, ErrorData>> {
        Box::pin(self.relay(ask))
    }
}

impl CallerAsker {
    async fn relay(&self, ask: Ask<'_>) -> Result<Value, ErrorData> {
        let id = Value::String(format!("warden-ask-{}", uuid::Uuid::new_v4()));
        self.record.decide(&ask, (self.capabilities.as_ref(), self.stream.is_some()), &id)?;
        let Some(stream) = &self.stream else { return Err(ErrorData::internal_error("the calling client has no stream", None)) };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Keyed by the caller: only its own response is the answer.
        let key = self.record.principal.key_for(&id);
        let asked = format!("{} asked by server {}", ask.method, ask.server);
        self.pending.waiting.insert(key.clone(), Waiting { answer: tx, asked });
        // However the wait ends (answered, timed out, the call dropped), the ask is forgotten.
        let _forget = Forget { pending: &self.pending, key };
        let mut request = ask.request;
        if let Value::Object(fields) = &mut request {
            fields.insert("jsonrpc".into(), Value::String("2.0".into()));
            fields.insert("id".into(), id);
        }
        if stream.send(Report::Request(request.to_string())).await.is_err() {
            return Err(gone());
        }
        answered(rx).await
    }
}

/// The client's answer, when it comes within [`ANSWER_TIMEOUT`]; what the server hears
/// otherwise.
pub(super) async fn answered(answer: tokio::sync::oneshot::Receiver<Result<Value, ErrorData>>) -> Result<Value, ErrorData> {
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(ErrorData::new(ErrorCode(-32001), "the calling client did not answer in time", None)),
    }
}

/// What the server hears of a request whose client went away.
pub(super) fn gone() -> ErrorData {
    ErrorData::internal_error("the calling client is gone", None)
}

/// Drops an ask's entry when its wait ends.
struct Forget<'a> {
    pending: &'a Pending,
    key: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.pending.waiting.remove(&self.key);
    }
}

/// Whether `capabilities` let the client be sent `method` (with these params: a URL-mode
/// elicitation needs `elicitation.url`, a form needs `elicitation.form` or the empty object
/// that means it).
fn declares(capabilities: &rmcp::model::ClientCapabilities, method: &str, request: &Value) -> bool {
    match method {
        "elicitation/create" => {
            let Some(elicitation) = &capabilities.elicitation else { return false };
            let url = request.pointer("/params/mode").and_then(Value::as_str) == Some("url");
            if url { elicitation.url.is_some() } else { elicitation.form.is_some() || elicitation.url.is_none() }
        }
        "sampling/createMessage" => capabilities.sampling.is_some(),
        "roots/list" => capabilities.roots.is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_sent_only_what_it_declared() {
        let caps = |v: Value| serde_json::from_value::<rmcp::model::ClientCapabilities>(v).unwrap();
        let form = serde_json::json!({"method": "elicitation/create", "params": {"message": "?", "requestedSchema": {}}});
        let url = serde_json::json!({"method": "elicitation/create", "params": {"mode": "url", "url": "https://x", "message": "?"}});
        let empty = caps(serde_json::json!({"elicitation": {}}));
        assert!(declares(&empty, "elicitation/create", &form), "{{}} is form mode");
        assert!(!declares(&empty, "elicitation/create", &url));
        let url_only = caps(serde_json::json!({"elicitation": {"url": {}}}));
        assert!(!declares(&url_only, "elicitation/create", &form) && declares(&url_only, "elicitation/create", &url));
        let sampling = caps(serde_json::json!({"sampling": {}}));
        assert!(declares(&sampling, "sampling/createMessage", &Value::Null));
        assert!(!declares(&sampling, "roots/list", &Value::Null) && !declares(&sampling, "elicitation/create", &form));
        assert!(!declares(&caps(serde_json::json!({"roots": {}})), "tools/call", &Value::Null));
    }
}
