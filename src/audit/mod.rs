//! Audit stage: one JSON event per decision, written as a line to stdout, stderr or a file.
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

pub use config::{AuditConfig, Format, SinkConfig};
pub use sinks::Sink;
use sinks::{Stderr, Stdout};

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

/// Events waiting for the writer, at most. When the queue is full the emitting request waits
/// for room (back-pressure from a slow sink onto the request rate): an event is never dropped.
pub const QUEUE: usize = 8192;

enum Message {
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
}

impl AuditSink {
    /// One sink: `stdout`, `stderr`, `off`, or a file path opened for appending (no signed
    /// checkpoints).
    pub fn open(spec: &str) -> std::io::Result<Self> {
        let config = AuditConfig { output: Some(spec.to_owned()), ..AuditConfig::default() };
        Self::from_config(&config, std::path::Path::new("."), None, None).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The sinks `config` names (paths relative to `base`), with the chain resumed from the
    /// first file sink's last record and checkpoints signed with the configured key.
    pub fn from_config(
        config: &AuditConfig,
        base: &std::path::Path,
        metrics: Option<Arc<crate::telemetry::Metrics>>,
        database: Option<(&str, Arc<crate::store::envelope::KeyRing>)>,
    ) -> Result<Self, ConfigError> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let mut formats: Vec<Format> = Vec::new();
        let mut resume = None;
        let configured = !config.sinks.is_empty();
        if configured && config.output.is_some() {
            return Err(ConfigError::new("audit.output", "give either output (one sink) or sinks, not both"));
        }
        for (i, sink) in config.effective_sinks().iter().enumerate() {
            let at = |field: &str| if configured { format!("audit.sinks[{i}].{field}") } else { "audit.output".to_owned() };
            let format = match sink {
                SinkConfig::File(f) => f.format,
                SinkConfig::Stdout { format } | SinkConfig::Stderr { format } | SinkConfig::Database { format } => *format,
            };
            if format == Format::Ocsf && matches!(sink, SinkConfig::Database { .. }) {
                return Err(ConfigError::new(at("format"), "the database sink keeps Warden's records (json), which verify and query read"));
            }
            formats.push(format);
            match sink {
                SinkConfig::Stdout { .. } => sinks.push(Box::new(Stdout)),
                SinkConfig::Stderr { .. } => sinks.push(Box::new(Stderr)),
                SinkConfig::Database { .. } => {
                    let Some((url, keys)) = &database else {
                        return Err(ConfigError::new(at("type"), "the database sink writes to the vault's database: configure vault"));
                    };
                    sinks.push(Box::new(sinks::DatabaseSink::new((*url).to_owned(), Arc::clone(keys))));
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
                    sinks.push(Box::new(file));
                }
            }
        }
        let healthy = Arc::new(AtomicBool::new(true));
        if sinks.is_empty() {
            return Ok(Self { queue: None, public_keys: None, metrics, healthy });
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
        let writer =
            Writer { sinks: sinks.into_iter().zip(formats).collect(), chain, metrics: metrics.clone(), healthy: Arc::clone(&healthy) };
        let queue = Self::start(writer).map_err(|e| ConfigError::new("audit", format!("cannot start the audit writer: {e}")))?;
        Ok(Self { queue: Some(queue), public_keys, metrics, healthy })
    }

    fn start(writer: Writer) -> std::io::Result<std::sync::mpsc::SyncSender<Message>> {
        let (queue, events) = std::sync::mpsc::sync_channel(QUEUE);
        // A thread, not a task: file and pipe writes block, and must not hold up the runtime.
        std::thread::Builder::new().name("warden-audit".into()).spawn(move || write_events(writer, events))?;
        Ok(queue)
    }

    /// Whether events are being written: the writer runs and its last write succeeded (for
    /// `/readyz`). True when auditing is off.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The public key that verifies checkpoints, as a JWK set (`/.well-known/warden-audit-keys`).
    pub fn public_keys(&self) -> Option<&serde_json::Value> {
        self.public_keys.as_ref()
    }

    /// Queues `event`, stamped with the time of the decision.
    pub fn emit(&self, event: AuditEvent) {
        if let Some(metrics) = &self.metrics {
            metrics.decision(&crate::telemetry::Decision {
                method: event.method.as_deref(),
                tool: event.tool.as_deref(),
                server: event.server.as_deref(),
                decision: event.decision,
                reason: &event.reason,
                latency_ms: (event.status != 0).then_some(event.latency_ms),
            });
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
    /// checkpoint signed if any is due, and the sinks flushed. Shutdown calls this after the
    /// last request has been answered.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let Some(queue) = &self.queue else { return true };
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        queue.send(Message::Flush(done)).is_ok() && wait.recv_timeout(timeout).is_ok()
    }
}

/// The writer thread: takes what is queued, links it into the chain, encodes it, writes it to
/// every sink in one call per batch, and writes checkpoints when due.
/// What the writer thread owns.
struct Writer {
    /// Each sink with the format it is written in.
    sinks: Vec<(Box<dyn Sink>, Format)>,
    chain: chain::Chain,
    metrics: Option<Arc<crate::telemetry::Metrics>>,
    healthy: Arc<AtomicBool>,
}

fn write_events(writer: Writer, events: std::sync::mpsc::Receiver<Message>) {
    let Writer { mut sinks, mut chain, metrics, healthy } = writer;
    // However the thread ends, it is no longer healthy.
    struct Gone(Arc<AtomicBool>);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    let _gone = Gone(Arc::clone(&healthy));
    use std::sync::mpsc::RecvTimeoutError;
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    loop {
        // While a checkpoint is pending, wake for its interval even if no event comes.
        let first = match chain.checkpoint_wait() {
            Some(wait) => match events.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match events.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        let mut next = first;
        let mut count = 0usize;
        let mut taken = 0i64;
        // Drain what is already queued (bounded, so a flood still gets written in pieces).
        while let Some(message) = next.take() {
            count += 1;
            match message {
                Message::Event(at, mut event) => {
                    taken += 1;
                    event.ts = humantime::format_rfc3339_millis(at).to_string();
                    event.bound_fields();
                    if let Ok(serde_json::Value::Object(mut record)) = serde_json::to_value(&*event) {
                        record.insert("id".into(), serde_json::Value::String(uuid::Uuid::now_v7().to_string()));
                        chain.link(record, &mut batch);
                    }
                }
                Message::Flush(done) => acks.push(done),
            }
            if batch.len() < 1 << 20 {
                next = events.try_recv().ok();
            }
        }
        if chain.checkpoint_due(!acks.is_empty()) {
            chain.checkpoint(humantime::format_rfc3339_millis(SystemTime::now()).to_string(), &mut batch);
        }
        let records = u64::try_from(batch.iter().filter(|b| **b == b'\n').count()).unwrap_or(0);
        let failures = write_all(&mut sinks, &mut batch);
        healthy.store(failures == 0, Ordering::Relaxed);
        if let Some(metrics) = &metrics {
            metrics.audit_written(taken, records, failures);
        }
        if !acks.is_empty() {
            for (sink, _) in &mut sinks {
                if let Err(e) = sink.flush() {
                    tracing::error!(error = %e, "an audit sink could not be flushed");
                }
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
    // Every handle is gone: close the chain with a last checkpoint.
    if chain.checkpoint_due(true) {
        chain.checkpoint(humantime::format_rfc3339_millis(SystemTime::now()).to_string(), &mut batch);
        write_all(&mut sinks, &mut batch);
        for (sink, _) in &mut sinks {
            let _ = sink.flush();
        }
    }
}

/// Writes the batch to every sink, in its format; returns how many failed.
fn write_all(sinks: &mut [(Box<dyn Sink>, Format)], batch: &mut Vec<u8>) -> u64 {
    if batch.is_empty() {
        return 0;
    }
    let mut failures = 0;
    let mut ocsf = Vec::new();
    if sinks.iter().any(|(_, f)| *f == Format::Ocsf) {
        ocsf::batch(batch, &mut ocsf);
    }
    for (sink, format) in sinks.iter_mut() {
        let lines = match format {
            Format::Json => &batch[..],
            Format::Ocsf => &ocsf[..],
        };
        if let Err(e) = sink.write(lines) {
            failures += 1;
            tracing::error!(error = %e, "audit events could not be written to a sink");
        }
    }
    batch.clear();
    failures
}

/// How long the writer lets events gather while busy; an event waits at most about this long.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
