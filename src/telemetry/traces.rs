//! OpenTelemetry traces: a server span per request (named per the MCP semantic conventions
//! once the method is known: `tools/call search`), a client span per upstream call (an HTTP
//! tool, a federated server, a token endpoint, a JWKS fetch), exported over OTLP/HTTP
//! (protobuf) by a batch exporter on its own thread.
//!
//! Spans are `tracing` spans of target [`TARGET`], turned into OpenTelemetry spans by
//! `tracing-opentelemetry`; the layer sits in the process's subscriber from the start (a
//! [`Deferred`] slot, empty) and is filled once, when `serve` has read its config. Until then,
//! and when traces are off, no span is created at all: every constructor here checks
//! [`enabled`] first, so the request path pays one atomic load.
//!
//! Attributes carry names and codes only: methods, tool and server names, hosts, stable
//! reasons, status codes. Never a token, a credential, an argument, a subject, or a URL path
//! or query (a tool's URL may hold a key in either).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config_error::ConfigError;
use crate::secret::Secret;

/// The target of every span this module makes (and of no log line).
pub const TARGET: &str = "warden::otel";

/// The OpenTelemetry layer, first on the registry.
pub type OtelLayer = tracing_opentelemetry::OpenTelemetryLayer<tracing_subscriber::Registry, opentelemetry_sdk::trace::SdkTracer>;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being made and exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The process's subscriber: logs to stderr (`WARDEN_LOG`, default `warden=info`) and, when
/// given, the OpenTelemetry layer. Trace spans (target [`TARGET`]) always pass the filter
/// (none is made while traces are off) and are not printed as logs. Set once per process;
/// a second call changes nothing.
pub fn init_subscriber(otel: Option<OtelLayer>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let traced = otel.is_some();
    if tracing_subscriber::registry().with(otel).with(log_filter()).with(log_layer()).try_init().is_ok() && traced {
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// The subscriber `serve` reads its config under, before the global one (which may need the
/// config's trace exporter) is set.
pub fn log_subscriber() -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry().with(log_filter()).with(log_layer())
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warden=info"));
    if let Ok(spans) = format!("{TARGET}=trace").parse() {
        filter = filter.add_directive(spans);
    }
    filter
}

fn log_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| m.target() != TARGET))
}

/// Where spans go, once decided: the endpoint (None: the exporter reads the `OTEL_*`
/// variables) and the rest of the config.
pub struct Plan {
    endpoint: Option<String>,
    headers: BTreeMap<String, Secret>,
    ratio: f64,
    service: String,
}

impl super::TelemetryConfig {
    /// Checks the trace keys; `Ok(None)` when traces are off (no endpoint configured or in `env`).
    pub fn trace_plan(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Plan>, ConfigError> {
        let ratio = self.trace_sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::new("telemetry.trace_sample_ratio", "must be between 0 and 1"));
        }
        for name in self.otlp_headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::new(format!("telemetry.otlp_headers.{name}"), "not a valid header name"));
            }
        }
        let endpoint = match &self.otlp_endpoint {
            Some(e) => {
                let url = url::Url::parse(e).map_err(|_| ConfigError::new("telemetry.otlp_endpoint", "not a valid URL"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ConfigError::new("telemetry.otlp_endpoint", "must be http(s)"));
                }
                Some(if url.path() == "/" { format!("{}/v1/traces", e.trim_end_matches('/')) } else { e.clone() })
            }
            None => {
                let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
                if !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    return Ok(None);
                }
                None
            }
        };
        let service =
            self.service_name.clone().or_else(|| env("OTEL_SERVICE_NAME").filter(|s| !s.is_empty())).unwrap_or_else(|| "warden".into());
        Ok(Some(Plan { endpoint, headers: self.otlp_headers.clone(), ratio, service }))
    }
}

/// Flushes and stops the exporter when dropped (at the end of `serve`).
pub struct Installed {
    provider: SdkTracerProvider,
}

impl Drop for Installed {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        // The batch exporter blocks while it sends what is left: not on a runtime thread.
        let provider = self.provider.clone();
        let _ = std::thread::spawn(move || {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
            }
        })
        .join();
    }
}

/// The exporter `plan` asks for, and the layer that feeds it (for [`init_subscriber`]).
pub fn exporter(plan: &Plan) -> Result<(OtelLayer, Installed), ConfigError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_headers(plan.headers.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect());
    if let Some(endpoint) = &plan.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let exporter =
        builder.build().map_err(|e| ConfigError::new("telemetry.otlp_endpoint", format!("cannot build the OTLP exporter: {e}")))?;
    let sampler =
        opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(plan.ratio)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(plan.service.clone()).build())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("warden"))
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false);
    Ok((layer, Installed { provider }))
}

struct Headers<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The W3C `traceparent` of a started span.
fn traceparent_of(cx: &opentelemetry::Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The server span of a request, child of the caller's `traceparent` when it sent a valid
/// one, and the `traceparent` that names it (for audit and upstream calls); `None` when
/// traces are off.
pub fn server_span(method: &http::Method, path: &str, headers: &http::HeaderMap) -> Option<(tracing::Span, String)> {
    if !enabled() {
        return None;
    }
    // MCP requests are renamed once their method is read (`tools/call search`).
    let name = if path == "/mcp" { format!("{method} /mcp") } else { method.to_string() };
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %name,
        otel.kind = "server",
        http.request.method = %method,
        url.scheme = "http",
        network.protocol.name = "http",
    );
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
    let traceparent = traceparent_of(&span.context())?;
    Some((span, traceparent))
}

/// Records the HTTP status a request was answered with (routes without an audit decision
/// get theirs here; a decision's own status is the same).
pub fn record_status(span: &tracing::Span, status: u16) {
    if span.is_none() {
        return;
    }
    let cx = span.context();
    let s = cx.span();
    s.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    if status >= 500 {
        s.set_status(Status::error(format!("HTTP {status}")));
    }
}

/// Longest text kept in an attribute a client can influence (an id, a tool name).
const ATTRIBUTE_LIMIT: usize = 256;

fn bounded(value: &str) -> String {
    let mut cut = value.len().min(ATTRIBUTE_LIMIT);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    value[..cut].to_owned()
}

/// Records a request's decision on its server span: the MCP name and attributes, the outcome.
pub fn record_decision(span: &tracing::Span, d: &super::Decision<'_>) {
    if span.is_none() {
        return;
    }
    let cx = span.context();
    let s = cx.span();
    let mut attributes = vec![
        KeyValue::new("http.response.status_code", i64::from(d.status)),
        KeyValue::new("warden.decision", d.decision.to_owned()),
        KeyValue::new("warden.reason", bounded(d.reason)),
        KeyValue::new("warden.request_id", bounded(d.request_id)),
    ];
    if let Some(method) = d.method {
        // A name a client made up is an attribute, not part of the span's name.
        let known = crate::telemetry::known_method(method);
        match d.tool.filter(|_| known && d.reason != "unknown_tool") {
            Some(tool) if known => s.update_name(format!("{method} {}", bounded(tool))),
            _ if known => s.update_name(method.to_owned()),
            _ => {}
        }
        if method == "tools/call" {
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        attributes.push(KeyValue::new("mcp.method.name", bounded(method)));
    }
    if let Some(tool) = d.tool {
        attributes.push(KeyValue::new("gen_ai.tool.name", bounded(tool)));
    }
    if let Some(id) = d.jsonrpc_id {
        let id = match id {
            serde_json::Value::String(s) => bounded(s),
            other => bounded(&other.to_string()),
        };
        attributes.push(KeyValue::new("jsonrpc.request.id", id));
    }
    for (key, value) in [("warden.server", d.server), ("warden.rule", d.rule), ("warden.credential", d.credential)] {
        if let Some(value) = value {
            attributes.push(KeyValue::new(key, bounded(value)));
        }
    }
    if d.decision != "allow" {
        attributes.push(KeyValue::new("error.type", bounded(d.reason)));
    }
    s.set_attributes(attributes);
    if d.decision == "error" {
        s.set_status(Status::error(bounded(d.reason)));
    }
}

/// A client span for a call to `url` (a host and port only are recorded), child of
/// `parent` (or of the current span), named as the HTTP conventions name client spans.
pub fn http_client_span(parent: Option<&tracing::Span>, method: &str, url: &url::Url, what: &'static str) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let host = url.host_str().unwrap_or_default();
    let port = i64::from(url.port_or_known_default().unwrap_or(0));
    match parent {
        Some(parent) => tracing::info_span!(
            target: TARGET, parent: parent, "upstream",
            otel.name = method, otel.kind = "client", http.request.method = method,
            server.address = host, server.port = port, url.scheme = url.scheme(), warden.upstream = what,
            gen_ai.tool.name = tracing::field::Empty,
        ),
        None => tracing::info_span!(
            target: TARGET, "upstream",
            otel.name = method, otel.kind = "client", http.request.method = method,
            server.address = host, server.port = port, url.scheme = url.scheme(), warden.upstream = what,
            gen_ai.tool.name = tracing::field::Empty,
        ),
    }
}

/// A client span for a `tools/call` to a federated server, per the MCP conventions.
pub fn mcp_client_span(parent: &tracing::Span, server: &str, tool: &str, url: Option<&str>) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let url = url.and_then(|u| url::Url::parse(u).ok());
    let host = url.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let port = url.as_ref().and_then(url::Url::port_or_known_default).map_or(0, i64::from);
    tracing::info_span!(
        target: TARGET, parent: parent, "upstream",
        otel.name = %format!("tools/call {tool}"), otel.kind = "client",
        mcp.method.name = "tools/call", gen_ai.tool.name = tool, gen_ai.operation.name = "execute_tool",
        warden.server = server, warden.upstream = "mcp",
        network.transport = if url.is_some() { "tcp" } else { "pipe" },
        server.address = %host, server.port = port,
    )
}

/// The `traceparent` to send upstream from within `span` (started now), if traces are on.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if span.is_none() {
        return None;
    }
    traceparent_of(&span.context())
}

/// Records a client call's outcome: the backend's HTTP status, or the failure's stable code.
pub fn record_outcome(span: &tracing::Span, status: Option<u16>, failure: Option<&str>) {
    if span.is_none() {
        return;
    }
    let cx = span.context();
    let s = cx.span();
    if let Some(status) = status {
        s.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    if let Some(code) = failure {
        s.set_attribute(KeyValue::new("error.type", code.to_owned()));
        s.set_status(Status::error(code.to_owned()));
    }
}
