//! Audit stage: one JSON event per decision, written as a line to stdout, stderr or a file.
//!
//! In: [`AuditEvent`]s from the edge, gate and MCP handler. Out: JSON lines. Events carry
//! identifiers, decisions and reason codes only: never a token, a credential or an argument
//! value.

use std::io::Write;
use std::sync::Mutex;
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

enum Output {
    Off,
    Stdout,
    Stderr,
    File(Mutex<std::fs::File>),
}

/// Where events go.
pub struct AuditSink {
    output: Output,
}

impl AuditSink {
    /// `stdout`, `stderr`, `off`, or a file path opened for appending.
    pub fn open(spec: &str) -> std::io::Result<Self> {
        let output = match spec {
            "off" => Output::Off,
            "stdout" | "-" => Output::Stdout,
            "stderr" => Output::Stderr,
            path => Output::File(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)),
        };
        Ok(Self { output })
    }

    pub fn emit(&self, mut event: AuditEvent) {
        event.ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        event.bound_fields();
        let Ok(mut line) = serde_json::to_vec(&event) else { return };
        line.push(b'\n');
        // A line is written with one call so concurrent events never interleave.
        let written = match &self.output {
            Output::Off => Ok(()),
            Output::Stdout => std::io::stdout().lock().write_all(&line),
            Output::Stderr => std::io::stderr().lock().write_all(&line),
            Output::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(&line),
                Err(_) => Ok(()),
            },
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "audit event could not be written");
        }
    }
}
