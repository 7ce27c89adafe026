//! Telemetry stage: Prometheus metrics.
//!
//! Most metrics come from the audit stream: every decision is an audit event, so counting
//! events by method, tool, decision and reason (and their latency) counts requests, refusals,
//! limiter decisions, credential refreshes and policy reloads from one place, and no request
//! can be counted without being audited. What events do not carry is measured where it
//! happens: upstream call latency (the handler), JWKS fetches (identity), the audit queue
//! (the writer).
//!
//! Labels are bounded: methods outside Warden's known set are `other`, a tool name a client
//! made up (an `unknown_tool` refusal) is never a label, and no subject, tenant or token is one.
//!
//! Traces: [`traces`].

pub mod traces;

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The methods that may appear as a label; any other is `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    // A federated server's requests to the calling client, each audited.
    "elicitation/create",
    "sampling/createMessage",
    "roots/list",
    "notifications/initialized",
    "notifications/cancelled",
    "policy/reload",
    "tools/pin",
    "credential/refresh",
    "limits/quota_warning",
    "limits/backend",
    "oauth/connect",
    "oauth/callback",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    tool: String,
    server: String,
    decision: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    /// `http` (an HTTP tool) or `mcp` (a federated server).
    kind: String,
    /// The tool (HTTP) or the server (federated).
    target: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    sink: String,
    /// `ok`, `retry`, `too_large` or `rejected`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    issuer: String,
    outcome: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<MethodLabels, Histogram>,
    upstream_seconds: Family<UpstreamLabels, Histogram>,
    jwks_fetches: Family<FetchLabels, Counter>,
    audit_records: Counter,
    audit_write_failures: Counter,
    audit_queue: Gauge,
    queued: AtomicI64,
    audit_spool: Family<SinkLabels, Gauge>,
    audit_deliveries: Family<DeliveryLabels, Counter>,
    audit_dropped: Family<SinkLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms to about 33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "decisions",
            "Audited decisions (requests and events outside one) by method, tool, server, decision and reason",
            requests.clone(),
        );
        let request_seconds = Family::<MethodLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        registry.register("request_duration_seconds", "Time from a request's arrival to its decision, by method", request_seconds.clone());
        let upstream_seconds = Family::<UpstreamLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        registry.register("upstream_duration_seconds", "Upstream call time by kind, target and outcome", upstream_seconds.clone());
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        registry.register("jwks_fetches", "JWKS and issuer metadata fetches by issuer and outcome", jwks_fetches.clone());
        let audit_records = Counter::default();
        registry.register("audit_records", "Audit records written (events and checkpoints)", audit_records.clone());
        let audit_write_failures = Counter::default();
        registry.register("audit_write_failures", "Batches a sink failed to write", audit_write_failures.clone());
        let audit_queue = Gauge::default();
        registry.register("audit_queue_depth", "Audit events waiting for the writer", audit_queue.clone());
        let audit_spool = Family::<SinkLabels, Gauge>::default();
        registry.register("audit_spool_bytes", "Audit bytes spooled on disk, not yet delivered, by sink", audit_spool.clone());
        let audit_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "audit_delivered_records",
            "Spooled audit records by sink and delivery outcome (ok, retry, too_large, rejected)",
            audit_deliveries.clone(),
        );
        let audit_dropped = Family::<SinkLabels, Counter>::default();
        registry.register(
            "audit_dropped_records",
            "Audit records a sink could not take with its backlog full (on_failure: refuse)",
            audit_dropped.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            upstream_seconds,
            jwks_fetches,
            audit_records,
            audit_write_failures,
            audit_queue,
            queued: AtomicI64::new(0),
            audit_spool,
            audit_deliveries,
            audit_dropped,
        }
    }
}

/// What metrics and a request's server span read of its audit event (`AuditEvent::decided`).
#[derive(Default)]
pub struct Decision<'a> {
    pub method: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub server: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub credential: Option<&'a str>,
    pub jsonrpc_id: Option<&'a serde_json::Value>,
    pub decision: &'a str,
    pub reason: &'a str,
    /// HTTP status to the client (0 outside a request).
    pub status: u16,
    pub request_id: &'a str,
    /// Present for events about a request.
    pub latency_ms: Option<f64>,
}

/// Whether `method` is one Warden knows (a label, a span name), not one a client made up.
pub fn known_method(method: &str) -> bool {
    METHODS.contains(&method) || method.starts_with("admin/") && method.len() <= 40
}

impl Metrics {
    /// Counts one audited decision.
    pub fn decision(&self, d: &Decision<'_>) {
        let method = match d.method {
            Some(m) if known_method(m) => m,
            Some(_) => "other",
            None => "",
        };
        // A name a client made up is not a label.
        let tool = if d.reason == "unknown_tool" || d.reason == "unknown_prompt" { "" } else { d.tool.unwrap_or("") };
        let labels = RequestLabels {
            method: method.to_owned(),
            tool: tool.to_owned(),
            server: d.server.unwrap_or("").to_owned(),
            decision: d.decision.to_owned(),
            reason: d.reason.to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
        if let Some(ms) = d.latency_ms {
            self.request_seconds.get_or_create(&MethodLabels { method: method.to_owned() }).observe(ms / 1000.0);
        }
    }

    /// One upstream call: `kind` `http` or `mcp`, its target and its outcome code.
    pub fn upstream(&self, kind: &str, target: &str, outcome: &str, elapsed: std::time::Duration) {
        let labels = UpstreamLabels { kind: kind.to_owned(), target: target.to_owned(), outcome: outcome.to_owned() };
        self.upstream_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn jwks_fetch(&self, issuer: &str, ok: bool) {
        let labels = FetchLabels { issuer: issuer.to_owned(), outcome: if ok { "ok" } else { "error" }.to_owned() };
        self.jwks_fetches.get_or_create(&labels).inc();
    }

    /// An event entered the audit queue.
    pub fn audit_queued(&self) {
        self.audit_queue.set(self.queued.fetch_add(1, Ordering::Relaxed) + 1);
    }

    /// The writer took `n` events off the queue and wrote `records` records.
    pub fn audit_written(&self, taken: i64, records: u64, failures: u64) {
        self.audit_queue.set(self.queued.fetch_sub(taken, Ordering::Relaxed) - taken);
        self.audit_records.inc_by(records);
        self.audit_write_failures.inc_by(failures);
    }

    /// What a sink's spool holds now.
    pub fn audit_spool(&self, sink: &str, bytes: u64) {
        self.audit_spool.get_or_create(&SinkLabels { sink: sink.to_owned() }).set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A delivery attempt of `records` spooled records.
    pub fn audit_delivery(&self, sink: &str, outcome: &str, records: usize) {
        let labels = DeliveryLabels { sink: sink.to_owned(), outcome: outcome.to_owned() };
        self.audit_deliveries.get_or_create(&labels).inc_by(u64::try_from(records).unwrap_or(0));
    }

    pub fn audit_dropped(&self, sink: &str, records: usize) {
        self.audit_dropped.get_or_create(&SinkLabels { sink: sink.to_owned() }).inc_by(u64::try_from(records).unwrap_or(0));
    }

    /// The exposition in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The exposition in the classic Prometheus text format (0.0.4), for scrapers and tools
    /// that do not ask for OpenMetrics (`promtool check metrics` among them). The two differ
    /// only in how counters are named in `# HELP`/`# TYPE` (OpenMetrics names the family
    /// without `_total`), `# UNIT` lines and the closing `# EOF`.
    pub fn encode_prometheus(&self) -> String {
        let open = self.encode();
        let counters: std::collections::HashSet<&str> =
            open.lines().filter_map(|l| l.strip_prefix("# TYPE ").and_then(|t| t.strip_suffix(" counter"))).collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ')?;
                counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded_and_the_exposition_names_every_family() {
        let m = Metrics::default();
        let made_up = format!("tool-{}", "x".repeat(50));
        m.decision(&Decision {
            method: Some("tools/call"),
            tool: Some(&made_up),
            server: None,
            decision: "deny",
            reason: "unknown_tool",
            latency_ms: Some(1.0),
            ..Decision::default()
        });
        m.decision(&Decision {
            method: Some("no/such/method"),
            tool: None,
            server: None,
            decision: "deny",
            reason: "method_not_found",
            latency_ms: Some(2.0),
            ..Decision::default()
        });
        m.decision(&Decision {
            method: Some("tools/call"),
            tool: Some("search"),
            server: None,
            decision: "allow",
            reason: "ok",
            latency_ms: Some(3.0),
            ..Decision::default()
        });
        m.upstream("http", "search", "ok", std::time::Duration::from_millis(20));
        m.jwks_fetch("https://idp", true);
        let text = m.encode();
        assert!(!text.contains(&made_up), "a client's tool name is not a label");
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(
            text.contains("warden_decisions_total{method=\"tools/call\",tool=\"search\",server=\"\",decision=\"allow\",reason=\"ok\"} 1"),
            "{text}"
        );
        for family in
            ["warden_request_duration_seconds", "warden_upstream_duration_seconds", "warden_jwks_fetches_total", "warden_audit_queue_depth"]
        {
            assert!(text.contains(family), "{family}: {text}");
        }
    }
}

/// `telemetry:` as parsed.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Serve `/metrics`. Default: true.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// A separate listener for `/metrics`, `/healthz` and `/readyz` (then `/metrics` is not on
    /// the main listener). Default: none (all on the main listener).
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Traces: the OTLP/HTTP base URL (`http://collector:4318`; `/v1/traces` is added when the
    /// URL has no path), or the full traces URL. Default: from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`; with neither,
    /// traces are off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Headers on every export (a hosted collector's API key), kept secret; added to those of
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    #[serde(default)]
    pub otlp_headers: std::collections::BTreeMap<String, crate::secret::Secret>,
    /// The share of traces started here that are kept (0 to 1); a caller's `traceparent`
    /// decides for the traces it started. Default: 1.
    #[serde(default)]
    pub trace_sample_ratio: Option<f64>,
    /// `service.name`. Default: `OTEL_SERVICE_NAME`, else `warden`.
    #[serde(default)]
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics: true,
            listen: None,
            otlp_endpoint: None,
            otlp_headers: std::collections::BTreeMap::new(),
            trace_sample_ratio: None,
            service_name: None,
        }
    }
}

fn yes() -> bool {
    true
}
