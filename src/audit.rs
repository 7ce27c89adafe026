//! Audit stage: one JSON event per decision, written as a line to stdout, stderr or a file.
//!
//! In: [`AuditEvent`]s from the edge, gate, MCP handler, vault and admin API. Out: JSON lines,
//! written by one writer thread fed through a bounded queue ([`AuditSink`]), so no request
//! thread writes or waits on a lock; a full queue makes the emitter wait, never drops. Events
//! carry identifiers, decisions and reason codes only: never a token, a credential or an
//! argument value.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde::Serialize;

#[cfg(test)]
mod tests;

/// One decision about one request.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditEvent {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub request_id: String,
    pub trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonrpc_id: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The federated MCP server the tool comes from (`servers[].name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The upstream credential (connection) concerned, by name: never its secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// `allow`, `deny` or `error`.
    pub decision: &'static str,
    /// A stable code: `ok`, `token_expired`, `insufficient_scope`, `upstream_timeout`, ...
    pub reason: String,
    /// The rule that decided, when policy decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why, in words, when a rule denied (its `reason`); never argument values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// HTTP status returned to the client.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// How the call's rate limits were decided when not as configured: `local_fallback` (the
    /// shared Redis did not answer; this replica's buckets decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<&'static str>,
    pub latency_ms: f64,
}

impl AuditEvent {
    /// The fields every event about this HTTP request shares: ids, the caller when known, and
    /// the latency so far.
    pub fn for_request(
        ctx: &crate::edge::RequestContext,
        principal: Option<&crate::identity::Principal>,
        jsonrpc_id: Option<serde_json::Value>,
    ) -> Self {
        Self {
            request_id: ctx.request_id.clone(),
            trace_id: ctx.trace_id().to_owned(),
            jsonrpc_id,
            latency_ms: ctx.elapsed_ms(),
            ..principal.map(Self::for_caller).unwrap_or_default()
        }
    }

    /// The caller's fields: subject, issuer, client and tenant.
    pub fn for_caller(principal: &crate::identity::Principal) -> Self {
        Self {
            subject: Some(principal.subject.to_string()),
            issuer: Some(principal.issuer.clone()),
            client_id: principal.client_id.clone(),
            tenant: principal.tenant.clone(),
            ..Self::default()
        }
    }
}

/// What every event says of its outcome: `allow`, `deny` or `error`, a stable reason code, and
/// the HTTP status the client got (0 where there was no client, as for a policy reload).
#[derive(Debug, Clone, Copy)]
pub struct Verdict<'a> {
    pub decision: &'static str,
    pub reason: &'a str,
    pub status: u16,
}

/// One constructor per kind of event; the fields each kind carries are set here, not at the
/// call sites.
impl AuditEvent {
    /// A request (to `/mcp`, or any route whose caller is known) and its verdict.
    pub fn request(
        ctx: &crate::edge::RequestContext,
        principal: Option<&crate::identity::Principal>,
        jsonrpc_id: Option<serde_json::Value>,
        method: Option<String>,
        verdict: Verdict<'_>,
    ) -> Self {
        Self {
            method,
            decision: verdict.decision,
            reason: verdict.reason.into(),
            status: verdict.status,
            ..Self::for_request(ctx, principal, jsonrpc_id)
        }
    }

    /// A `tools/call`: the tool and, once policy allowed it, the rule that did.
    pub fn tool_call(
        ctx: &crate::edge::RequestContext,
        principal: &crate::identity::Principal,
        jsonrpc_id: Option<serde_json::Value>,
        tool: &str,
        rule: Option<String>,
        verdict: Verdict<'_>,
    ) -> Self {
        Self { tool: Some(tool.to_owned()), rule, ..Self::request(ctx, Some(principal), jsonrpc_id, Some("tools/call".into()), verdict) }
    }

    /// A browser's CORS preflight: no caller, since preflights carry no token.
    pub fn preflight(ctx: &crate::edge::RequestContext, verdict: Verdict<'_>) -> Self {
        Self::request(ctx, None, None, None, verdict)
    }

    /// A federated tool's definition, outside any request: first pinned, changed, approved.
    pub fn tool_pin(server: &str, tool: &str, explanation: Option<String>, verdict: Verdict<'_>) -> Self {
        Self {
            request_id: uuid::Uuid::now_v7().to_string(),
            method: Some("tools/pin".into()),
            tool: Some(tool.to_owned()),
            server: Some(server.to_owned()),
            explanation,
            decision: verdict.decision,
            reason: verdict.reason.into(),
            status: verdict.status,
            ..Self::default()
        }
    }

    /// A quota's warning threshold crossed by a caller's call (once per period and bucket).
    pub fn quota_warning(
        (request_id, traceparent): (&str, &str),
        principal: &crate::identity::Principal,
        quota: &str,
        tool: &crate::policy::ToolFacts<'_>,
        explanation: String,
    ) -> Self {
        Self {
            request_id: request_id.to_owned(),
            trace_id: crate::edge::trace_id(traceparent).to_owned(),
            method: Some("limits/quota_warning".into()),
            tool: Some(tool.name.to_owned()),
            server: tool.server.map(str::to_owned),
            rule: Some(quota.to_owned()),
            explanation: Some(explanation),
            decision: "allow",
            reason: "quota_warning".into(),
            ..Self::for_caller(principal)
        }
    }

    /// The shared rate-limit backend (Redis) stopped or started answering.
    pub fn limits_backend(verdict: Verdict<'_>) -> Self {
        Self {
            request_id: uuid::Uuid::now_v7().to_string(),
            method: Some("limits/backend".into()),
            decision: verdict.decision,
            reason: verdict.reason.into(),
            status: verdict.status,
            ..Self::default()
        }
    }

    /// A policy reload, outside any request.
    pub fn policy_reload(verdict: Verdict<'_>) -> Self {
        Self {
            request_id: uuid::Uuid::now_v7().to_string(),
            method: Some("policy/reload".into()),
            decision: verdict.decision,
            reason: verdict.reason.into(),
            status: verdict.status,
            ..Self::default()
        }
    }

    /// An admin API action, by the admin credential (`subject: admin`).
    pub fn admin(ctx: &crate::edge::RequestContext, action: &str, credential: Option<&str>, verdict: Verdict<'_>) -> Self {
        Self {
            subject: Some("admin".into()),
            credential: credential.map(str::to_owned),
            ..Self::request(ctx, None, None, Some(action.into()), verdict)
        }
    }

    /// A step of the connect flow (`oauth/connect`, `oauth/callback`) for a connection; the
    /// person connecting, as `(issuer, subject)`, when the connection is theirs.
    pub fn connect(
        ctx: &crate::edge::RequestContext,
        step: &str,
        credential: Option<&str>,
        person: Option<(&str, &str)>,
        verdict: Verdict<'_>,
    ) -> Self {
        Self {
            issuer: person.map(|(issuer, _)| issuer.to_owned()),
            subject: person.map(|(_, subject)| subject.to_owned()),
            credential: credential.map(str::to_owned),
            ..Self::request(ctx, None, None, Some(step.into()), verdict)
        }
    }

    /// A refresh of a caller's upstream token, during their call.
    pub fn credential_refresh(
        request_id: &str,
        traceparent: &str,
        principal: &crate::identity::Principal,
        credential: &str,
        verdict: Verdict<'_>,
    ) -> Self {
        Self {
            request_id: request_id.to_owned(),
            trace_id: crate::edge::trace_id(traceparent).to_owned(),
            method: Some("credential/refresh".into()),
            credential: Some(credential.to_owned()),
            decision: verdict.decision,
            reason: verdict.reason.into(),
            status: verdict.status,
            ..Self::for_caller(principal)
        }
    }
}

/// The one audit event of one request. Whichever stage decides writes it; a second write is a
/// bug, dropped and logged, so no request is ever recorded twice. The gate writes a fallback
/// event from the response when no stage did, so none is recorded zero times.
#[derive(Debug, Default)]
pub struct AuditOnce {
    written: AtomicBool,
}

impl AuditOnce {
    /// Writes `event` unless this request's event was written already; returns whether it wrote.
    pub fn emit(&self, sink: &AuditSink, event: AuditEvent) -> bool {
        if self.written.swap(true, Ordering::AcqRel) {
            tracing::error!(request_id = %event.request_id, reason = %event.reason, "a second audit event for one request was dropped");
            return false;
        }
        sink.emit(event);
        true
    }

    pub fn written(&self) -> bool {
        self.written.load(Ordering::Acquire)
    }
}

/// Longest text kept whole in an audit field. Longer values (a 900 KB tool name or JSON-RPC id
/// is something a client can send) keep their start, a marker, their length and a SHA-256 of
/// the whole value, so an event stays small and a value can still be matched.
pub const FIELD_LIMIT: usize = 256;
/// How much of a longer value is kept.
const KEPT: usize = 64;

/// `value`, or its start, length and digest when it is longer than [`FIELD_LIMIT`] bytes.
pub fn bounded(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= FIELD_LIMIT {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut cut = KEPT;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…[truncated: {} bytes, sha256:{}]", &value[..cut], value.len(), crate::sha256_hex(value)))
}

impl AuditEvent {
    /// Bounds every text field a client can influence (see [`bounded`]).
    fn bound_fields(&mut self) {
        let bound = |s: &mut String| {
            if let std::borrow::Cow::Owned(b) = bounded(s) {
                *s = b;
            }
        };
        bound(&mut self.request_id);
        bound(&mut self.reason);
        for field in [
            &mut self.subject,
            &mut self.issuer,
            &mut self.client_id,
            &mut self.tenant,
            &mut self.method,
            &mut self.tool,
            &mut self.credential,
            &mut self.rule,
            &mut self.explanation,
        ] {
            if let Some(s) = field.as_mut() {
                bound(s);
            }
        }
        if let Some(serde_json::Value::String(id)) = self.jsonrpc_id.as_mut() {
            bound(id);
        }
    }
}

/// Where encoded events go: one batch of JSON lines at a time, on the writer thread only. A
/// new destination (a database, a webhook, a SIEM) is a new `Sink`; the stages never see it.
pub trait Sink: Send + 'static {
    /// Writes whole lines; a batch is never split between two calls.
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()>;
    /// Makes what was written durable as far as this sink can.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Stdout;
struct Stderr;

impl Sink for Stdout {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(lines)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

impl Sink for Stderr {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(lines)
    }
}

impl Sink for std::fs::File {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.write_all(lines)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Events waiting for the writer, at most. When the queue is full the emitting request waits
/// for room (back-pressure from a slow sink onto the request rate): an event is never dropped.
pub const QUEUE: usize = 8192;

enum Message {
    Event(SystemTime, Box<AuditEvent>),
    /// Write everything queued before this, flush the sink, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The audit stage's handle: events go through a bounded channel to one writer thread, which
/// encodes them and writes them in batches. Cheap to share; every stage emits through it.
pub struct AuditSink {
    queue: Option<std::sync::mpsc::SyncSender<Message>>,
}

impl AuditSink {
    /// `stdout`, `stderr`, `off`, or a file path opened for appending.
    pub fn open(spec: &str) -> std::io::Result<Self> {
        let sink: Box<dyn Sink> = match spec {
            "off" => return Ok(Self { queue: None }),
            "stdout" | "-" => Box::new(Stdout),
            "stderr" => Box::new(Stderr),
            path => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        Self::start(sink)
    }

    /// Starts the writer thread for `sink`.
    pub fn start(sink: Box<dyn Sink>) -> std::io::Result<Self> {
        let (queue, events) = std::sync::mpsc::sync_channel(QUEUE);
        // A thread, not a task: file and pipe writes block, and must not hold up the runtime.
        std::thread::Builder::new().name("warden-audit".into()).spawn(move || write_events(sink, events))?;
        Ok(Self { queue: Some(queue) })
    }

    /// Queues `event`, stamped with the time of the decision.
    pub fn emit(&self, event: AuditEvent) {
        let Some(queue) = &self.queue else { return };
        if queue.send(Message::Event(SystemTime::now(), Box::new(event))).is_err() {
            tracing::error!("the audit writer has stopped; an event could not be recorded");
        }
    }

    /// Waits (at most `timeout`) until every event emitted before this call is written and the
    /// sink flushed. Shutdown calls this after the last request has been answered.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let Some(queue) = &self.queue else { return true };
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        queue.send(Message::Flush(done)).is_ok() && wait.recv_timeout(timeout).is_ok()
    }
}

/// The writer thread: takes what is queued, encodes it, writes it in one call per batch.
fn write_events(mut sink: Box<dyn Sink>, events: std::sync::mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    while let Ok(first) = events.recv() {
        let mut next = Some(first);
        let mut count = 0usize;
        // Drain what is already queued (bounded, so a flood still gets written in pieces).
        while let Some(message) = next.take() {
            count += 1;
            match message {
                Message::Event(at, mut event) => {
                    event.ts = humantime::format_rfc3339_millis(at).to_string();
                    event.bound_fields();
                    if serde_json::to_writer(&mut batch, &event).is_ok() {
                        batch.push(b'\n');
                    }
                }
                Message::Flush(done) => acks.push(done),
            }
            if batch.len() < 1 << 20 {
                next = events.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = sink.write(&batch) {
                tracing::error!(error = %e, "audit events could not be written");
            }
            batch.clear();
        }
        if !acks.is_empty() {
            if let Err(e) = sink.flush() {
                tracing::error!(error = %e, "the audit sink could not be flushed");
            }
            for done in acks.drain(..) {
                let _ = done.send(());
            }
        }
        // Busy: let events gather for a moment, so that one wake-up and one `write` serve many
        // requests (waking this thread for every event cost more CPU than writing the event).
        // Quiet: the thread sleeps in `recv` and costs nothing.
        if count > 1 {
            std::thread::sleep(GATHER);
        }
    }
}

/// How long the writer lets events gather while busy; an event waits at most about this long.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
