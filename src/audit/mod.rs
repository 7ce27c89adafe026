//! Audit stage: one JSON event per decision, hash-chained, written as a line to every sink:
//! files, stdout or stderr directly; a webhook and the database through a spool on disk.
//!
//! In: [`AuditEvent`]s from the edge, gate, MCP handler, vault and admin API. Out: JSON lines,
//! written by one writer thread fed through a bounded queue ([`AuditSink`]), so no request
//! thread writes or waits on a lock; a full queue makes the emitter wait, never drops. Events
//! carry identifiers, decisions and reason codes only: never a token, a credential or an
//! argument value.

pub mod chain;
pub mod config;
mod ocsf;
mod sinks;
mod spool;
pub mod verify;
pub mod webhook;
mod writer;

pub use config::{AuditConfig, Format, OnFailure, SinkConfig};
pub use sinks::Sink;
use sinks::{Stderr, Stdout};
use spool::Spool;
use writer::{Lane, Out, Writer, write_events};

use crate::config_error::ConfigError;

use std::sync::Arc;
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
    /// A call made with the caller's identity delegated (a token exchange): who acts for the
    /// subject, and through how many parties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Delegation>,
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
    /// SHA-256 (hex) of the call's arguments in canonical JSON, for tools with
    /// `audit_arguments: digest`; never the arguments themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
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

/// The delegation of a call whose upstream token was exchanged for the caller's: `actor` is the
/// RFC 8693 actor chain (the MCP client, then any actor its token named), `depth` the parties
/// between the subject and the upstream (those actors and Warden, which exchanged the token).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delegation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<serde_json::Value>,
    pub depth: usize,
}

impl Delegation {
    pub fn of(principal: &crate::identity::Principal) -> Self {
        let actor = crate::upstream::assertion::actor(principal);
        let depth = crate::upstream::assertion::delegation_depth(actor.as_ref()) + 1;
        Self { actor, depth }
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
        (tool, server): (&str, Option<&str>),
        explanation: String,
    ) -> Self {
        Self {
            request_id: request_id.to_owned(),
            trace_id: crate::edge::trace_id(traceparent).to_owned(),
            method: Some("limits/quota_warning".into()),
            tool: Some(tool.to_owned()),
            server: server.map(str::to_owned),
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

    /// A reload of the config file's tools (SIGHUP), not on any request.
    pub fn config_reload(verdict: Verdict<'_>) -> Self {
        Self { method: Some("config/reload".into()), ..Self::policy_reload(verdict) }
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
#[derive(Debug)]
pub struct AuditOnce {
    written: AtomicBool,
    /// The request's server span, which gets the decision too (none while traces are off).
    span: tracing::Span,
}

impl Default for AuditOnce {
    fn default() -> Self {
        Self::for_span(tracing::Span::none())
    }
}

impl AuditOnce {
    /// For a request traced in `span`.
    pub fn for_span(span: tracing::Span) -> Self {
        Self { written: AtomicBool::new(false), span }
    }

    /// Writes `event` unless this request's event was written already; returns whether it wrote.
    pub fn emit(&self, sink: &AuditSink, event: AuditEvent) -> bool {
        if self.written.swap(true, Ordering::AcqRel) {
            tracing::error!(request_id = %event.request_id, reason = %event.reason, "a second audit event for one request was dropped");
            return false;
        }
        crate::telemetry::traces::record_decision(&self.span, &event.decided());
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
    /// What metrics and the request's server span read of this event.
    fn decided(&self) -> crate::telemetry::Decision<'_> {
        crate::telemetry::Decision {
            method: self.method.as_deref(),
            tool: self.tool.as_deref(),
            server: self.server.as_deref(),
            rule: self.rule.as_deref(),
            credential: self.credential.as_deref(),
            jsonrpc_id: self.jsonrpc_id.as_ref(),
            decision: self.decision,
            reason: &self.reason,
            status: self.status,
            request_id: &self.request_id,
            latency_ms: (self.status != 0).then_some(self.latency_ms),
        }
    }

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

/// Events waiting for the writer, at most. When the queue is full the emitting request waits
/// for room (back-pressure from a slow sink onto the request rate): an event is never dropped.
pub const QUEUE: usize = 8192;

pub(super) enum Message {
    Event(SystemTime, Box<AuditEvent>),
    /// Write everything queued before this, flush the sink, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The audit stage's handle: events go through a bounded channel to one writer thread, which
/// links them into the hash chain, encodes them and writes them to every sink in batches.
/// Cheap to share; every stage emits through it.
pub struct AuditSink {
    queue: Option<std::sync::mpsc::SyncSender<Message>>,
    /// Counts every decision as it is emitted, and the writer's work.
    metrics: Option<Arc<crate::telemetry::Metrics>>,
    /// False once the writer thread is gone or its last write failed.
    healthy: Arc<AtomicBool>,
    /// The checkpoint key's public half as a JWK set, when checkpoints are signed.
    public_keys: Option<serde_json::Value>,
    /// A file or stdout sink keeps failing and its memory backlog is full.
    backlogged: Arc<AtomicBool>,
    /// The spools in front of the webhook and database sinks.
    spools: Vec<Arc<Spool>>,
    on_failure: OnFailure,
    /// Ends the delivery threads (when this handle goes).
    stop: Arc<AtomicBool>,
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        // The writer ends once the queue's last sender is gone, and closes the spools; what
        // they hold is delivered at the next start.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A sink's name in logs and metric labels.
fn sink_name(sink: &SinkConfig) -> String {
    match sink {
        SinkConfig::File(f) => format!("file:{}", f.path.display()),
        SinkConfig::Webhook(w) => w.spool_name(),
        SinkConfig::Database { .. } => "database".into(),
        SinkConfig::Stdout { .. } => "stdout".into(),
        SinkConfig::Stderr { .. } => "stderr".into(),
    }
}

impl AuditSink {
    /// One sink: `stdout`, `stderr`, `off`, or a file path opened for appending (no signed
    /// checkpoints).
    pub fn open(spec: &str) -> std::io::Result<Self> {
        let config = AuditConfig { output: Some(spec.to_owned()), ..AuditConfig::default() };
        Self::from_config(&config, std::path::Path::new("."), None, None).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The sinks `config` names (paths relative to `base`), with the chain resumed from the
    /// first file sink's last record and checkpoints signed with the configured key. The
    /// webhook and database sinks get a spool each and a delivery thread.
    pub fn from_config(
        config: &AuditConfig,
        base: &std::path::Path,
        metrics: Option<Arc<crate::telemetry::Metrics>>,
        database: Option<(&str, Arc<crate::store::envelope::KeyRing>)>,
    ) -> Result<Self, ConfigError> {
        let mut outs: Vec<Out> = Vec::new();
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut resume = None;
        let configured = !config.sinks.is_empty();
        if configured && config.output.is_some() {
            return Err(ConfigError::new("audit.output", "give either output (one sink) or sinks, not both"));
        }
        if config.spool.max_bytes < 64 * 1024 {
            return Err(ConfigError::new("audit.spool.max_bytes", "must be at least 65536"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        for (i, sink) in config.effective_sinks().iter().enumerate() {
            let at = |field: &str| if configured { format!("audit.sinks[{i}].{field}") } else { "audit.output".to_owned() };
            let format = match sink {
                SinkConfig::File(f) => f.format,
                SinkConfig::Webhook(w) => w.format,
                SinkConfig::Stdout { format } | SinkConfig::Stderr { format } | SinkConfig::Database { format } => *format,
            };
            if format == Format::Ocsf && matches!(sink, SinkConfig::Database { .. }) {
                return Err(ConfigError::new(at("format"), "the database sink keeps Warden's records (json), which verify and query read"));
            }
            let mut spooled = |name: String, deliver: Box<dyn webhook::Deliver>, batch: (usize, usize)| {
                if deliveries.iter().any(|(s, ..)| s.name == name) {
                    return Err(ConfigError::new(at("name"), format!("two sinks spool as {name}: give each a name")));
                }
                let dir = base.join(&config.spool.dir).join(&name);
                let spool = Spool::open(dir.clone(), name, config.spool.max_bytes, metrics.clone())
                    .map_err(|e| ConfigError::new("audit.spool.dir", format!("cannot open {}: {e}", dir.display())))?;
                let spool = Arc::new(spool);
                deliveries.push((Arc::clone(&spool), deliver, batch));
                Ok(Lane::Spooled(spool))
            };
            let lane = match sink {
                SinkConfig::Stdout { .. } => Lane::Direct(Box::new(Stdout)),
                SinkConfig::Stderr { .. } => Lane::Direct(Box::new(Stderr)),
                SinkConfig::Webhook(w) => {
                    let deliver = webhook::Webhook::new(w, &at)?;
                    spooled(w.spool_name(), Box::new(deliver), (w.batch_max_events, w.batch_max_bytes))?
                }
                SinkConfig::Database { .. } => {
                    let Some((url, keys)) = &database else {
                        return Err(ConfigError::new(at("type"), "the database sink writes to the vault's database: configure vault"));
                    };
                    let deliver = sinks::DatabaseSink::new((*url).to_owned(), Arc::clone(keys));
                    spooled("database".to_owned(), Box::new(deliver), (1000, 4 << 20))?
                }
                SinkConfig::File(f) => {
                    if f.max_bytes == Some(0) {
                        return Err(ConfigError::new(at("max_bytes"), "must be greater than 0"));
                    }
                    // `output` is a path as given (from the working directory, as it always was);
                    // `sinks[].path` is relative to the config file, like every other path in it.
                    let path = if configured { base.join(&f.path) } else { f.path.clone() };
                    let (file, last) = sinks::RotatingFile::open(f, path.clone())
                        .map_err(|e| ConfigError::new(at("path"), format!("cannot open {}: {e}", path.display())))?;
                    // The chain resumes from the first file in Warden's format.
                    if resume.is_none() && f.format == Format::Json {
                        resume = Some(last.as_deref().and_then(chain::Resume::from_line));
                    }
                    Lane::Direct(Box::new(file))
                }
            };
            outs.push(Out { lane, format, backlog: Vec::new(), name: sink_name(sink) });
        }
        let healthy = Arc::new(AtomicBool::new(true));
        let backlogged = Arc::new(AtomicBool::new(false));
        if outs.is_empty() {
            return Ok(Self {
                queue: None,
                public_keys: None,
                metrics,
                healthy,
                backlogged,
                spools: Vec::new(),
                on_failure: config.on_failure,
                stop,
            });
        }
        let signer = match &config.chain.signing_key_file {
            Some(file) => {
                let path = base.join(file);
                let contents = std::fs::read(&path)
                    .map_err(|e| ConfigError::new("audit.chain.signing_key_file", format!("cannot read {}: {e}", path.display())))?;
                Some(chain::Signer::from_file_contents(&contents).map_err(|m| ConfigError::new("audit.chain.signing_key_file", m))?)
            }
            None => None,
        };
        if config.chain.checkpoint_every == 0 {
            return Err(ConfigError::new("audit.chain.checkpoint_every", "must be at least 1"));
        }
        let checkpoints = chain::Checkpoints {
            every: config.chain.checkpoint_every,
            interval: config.chain.checkpoint_interval.filter(|d| !d.is_zero()),
        };
        let public_keys = signer.as_ref().map(|s| serde_json::json!({"keys": [s.jwk()]}));
        let chain = chain::Chain::new(resume.flatten(), signer, checkpoints);
        let spools: Vec<Arc<Spool>> = deliveries.iter().map(|(s, ..)| Arc::clone(s)).collect();
        for (spool, mut deliver, batch) in deliveries {
            let (metrics, stop) = (metrics.clone(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("warden-audit-{}", spool.name))
                .spawn(move || webhook::deliver_spool(&spool, deliver.as_mut(), batch, metrics.as_deref(), &stop))
                .map_err(|e| ConfigError::new("audit", format!("cannot start an audit delivery thread: {e}")))?;
        }
        let writer = Writer {
            outs,
            chain,
            metrics: metrics.clone(),
            healthy: Arc::clone(&healthy),
            backlogged: Arc::clone(&backlogged),
            on_failure: config.on_failure,
            spools: spools.clone(),
        };
        let queue = Self::start(writer).map_err(|e| ConfigError::new("audit", format!("cannot start the audit writer: {e}")))?;
        Ok(Self { queue: Some(queue), public_keys, metrics, healthy, backlogged, spools, on_failure: config.on_failure, stop })
    }

    fn start(writer: Writer) -> std::io::Result<std::sync::mpsc::SyncSender<Message>> {
        let (queue, events) = std::sync::mpsc::sync_channel(QUEUE);
        // A thread, not a task: file and pipe writes block, and must not hold up the runtime.
        std::thread::Builder::new().name("warden-audit".into()).spawn(move || write_events(writer, events))?;
        Ok(queue)
    }

    /// Whether events are being written: the writer runs, its last write succeeded, and (with
    /// `on_failure: refuse`) new requests are accepted (for `/readyz`). True when auditing is
    /// off.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.accepting()
    }

    /// Whether a new request may run: false only with `on_failure: refuse`, while a sink's
    /// spool (or memory backlog) is full. The gate refuses with `audit_unavailable` then.
    pub fn accepting(&self) -> bool {
        self.on_failure == OnFailure::Block || (!self.backlogged.load(Ordering::Relaxed) && !self.spools.iter().any(|s| s.full()))
    }

    /// The public key that verifies checkpoints, as a JWK set (`/.well-known/warden-audit-keys`).
    /// The checkpoint key as `warden audit verify` takes it (key id, raw Ed25519 public key),
    /// read back from the published JWK; empty when checkpoints are not signed.
    pub fn verification_keys(&self) -> Vec<(String, Vec<u8>)> {
        let x = self.public_keys.as_ref().and_then(|k| k["keys"][0]["x"].as_str());
        x.and_then(|x| chain::parse_public_key(x).ok()).into_iter().collect()
    }

    pub fn public_keys(&self) -> Option<&serde_json::Value> {
        self.public_keys.as_ref()
    }

    /// Queues `event`, stamped with the time of the decision.
    pub fn emit(&self, event: AuditEvent) {
        if let Some(metrics) = &self.metrics {
            metrics.decision(&event.decided());
        }
        let Some(queue) = &self.queue else { return };
        if let Some(metrics) = &self.metrics {
            metrics.audit_queued();
        }
        if queue.send(Message::Event(SystemTime::now(), Box::new(event))).is_err() {
            tracing::error!("the audit writer has stopped; an event could not be recorded");
        }
    }

    /// Waits (at most `timeout`) until every event emitted before this call is written, a
    /// checkpoint signed if any is due, the sinks flushed, and the spools delivered. Shutdown
    /// calls this after the last request has been answered; what a spool still holds then is
    /// on disk, and delivered at the next start.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let Some(queue) = &self.queue else { return true };
        let deadline = std::time::Instant::now() + timeout;
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if queue.send(Message::Flush(done)).is_err() || wait.recv_timeout(timeout).is_err() {
            return false;
        }
        self.spools.iter().all(|spool| spool.wait_delivered(spool.position(), deadline))
    }

    /// Bytes the spools hold, not yet delivered.
    pub fn spooled(&self) -> u64 {
        self.spools.iter().map(|s| s.pending()).sum()
    }
}

/// A spooled sink's delivery: its spool, what delivers, and its batch limits (records, bytes).
type Delivery = (Arc<Spool>, Box<dyn webhook::Deliver>, (usize, usize));
