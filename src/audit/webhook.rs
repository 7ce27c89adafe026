//! The webhook sink: batches of records POSTed to a SIEM collector (Splunk HEC, an HTTP
//! input of Elastic, Sumo Logic or Datadog, any receiver of JSON), from the spool, by a thread
//! of its own, with retries and backoff. Each record carries its `id`, which receivers use to
//! drop the rare batch delivered twice (after a crash between delivery and the cursor's move).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::config::Format;
use super::spool::{Chunk, Spool};
use crate::config_error::ConfigError;
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Where batches are POSTed. `https`, or `http` to a loopback address (a local collector).
    pub url: String,
    /// Names the spool (`audit.spool.dir/NAME`) and the metric labels. Default:
    /// `webhook-` and the first 8 hex digits of the URL's SHA-256, so spooled records never go
    /// to another URL.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// How a batch is framed: `ndjson` (default), `json_array`, or `splunk_hec`.
    #[serde(default)]
    pub body: Body,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// Further headers (e.g. `Authorization: Splunk ${HEC_TOKEN}`), values kept secret.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Records per POST, at most. Default: 500.
    #[serde(default = "default_batch_events")]
    pub batch_max_events: usize,
    /// Bytes per POST, at most (a longer record goes alone). Default: 1 MiB.
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: usize,
    /// Per POST. Default: 10s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Internal ranges the collector may be at despite the SSRF guard, e.g. `10.0.4.0/24`.
    #[serde(default)]
    pub allow_cidrs: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The records as lines (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// One JSON array of records (`application/json`).
    JsonArray,
    /// Splunk's HTTP Event Collector (`/services/collector/event`): one
    /// `{"time", "source", "sourcetype", "event"}` object per record.
    SplunkHec,
}

fn default_batch_events() -> usize {
    500
}
fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl WebhookSinkConfig {
    pub fn spool_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("webhook-{}", &crate::sha256_hex(&self.url)[..8]))
    }
}

/// Why a delivery did not go through.
#[derive(Debug)]
pub enum Failure {
    /// Try again later (the receiver is down, slow, overloaded or refused the credential).
    Retry(String),
    /// The receiver will never take this batch as it is (400, 422): set it aside.
    Reject(String),
    /// Too large for the receiver (413): send fewer records at a time.
    TooLarge,
}

/// Delivers a run of lines somewhere; runs on a delivery thread of its own.
pub trait Deliver: Send + 'static {
    fn deliver(&mut self, lines: &[u8]) -> Result<(), Failure>;
}

pub struct Webhook {
    url: url::Url,
    body: Body,
    headers: http::HeaderMap,
    client: reqwest::Client,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
}

impl Webhook {
    pub fn new(config: &WebhookSinkConfig, at: &dyn Fn(&str) -> String) -> Result<Self, ConfigError> {
        let url = url::Url::parse(&config.url).map_err(|_| ConfigError::new(at("url"), "not a valid URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(ConfigError::new(at("url"), "must be https (or http to a loopback address)")),
        }
        if config.batch_max_events == 0 || config.batch_max_bytes == 0 {
            return Err(ConfigError::new(at("batch_max_events"), "batch limits must be greater than 0"));
        }
        let mut headers = http::HeaderMap::new();
        if let Some(bearer) = &config.bearer {
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", bearer.expose()))
                .map_err(|_| ConfigError::new(at("bearer"), "not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        for (name, value) in &config.headers {
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(at(&format!("headers.{name}")), "not a valid header name"))?;
            if ["content-type", "content-length", "host", "transfer-encoding", "connection"].contains(&header.as_str()) {
                return Err(ConfigError::new(at(&format!("headers.{name}")), "set by Warden"));
            }
            let mut value = http::HeaderValue::from_str(value.expose())
                .map_err(|_| ConfigError::new(at(&format!("headers.{name}")), "not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let policy = Arc::new(crate::upstream::AddressPolicy { allow_private: false, allow_cidrs: config.allow_cidrs.clone() });
        if !policy.permits_literal(&url) {
            return Err(ConfigError::new(at("url"), "an internal address: list it in allow_cidrs (the SSRF guard)"));
        }
        let client =
            crate::upstream::guarded_client(&policy).map_err(|e| ConfigError::new(at("url"), format!("cannot build HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConfigError::new(at("type"), format!("cannot start the delivery runtime: {e}")))?;
        Ok(Self { url, body: config.body, headers, client, timeout: config.timeout, runtime })
    }
}

/// The POST body for `lines` in `body`'s framing, and its content type.
pub fn frame(body: Body, lines: &[u8]) -> (Vec<u8>, &'static str) {
    let records = lines.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    match body {
        Body::Ndjson => (lines.to_vec(), "application/x-ndjson"),
        Body::JsonArray => {
            let mut out = Vec::with_capacity(lines.len() + 2);
            out.push(b'[');
            for (i, record) in records.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(record);
            }
            out.push(b']');
            (out, "application/json")
        }
        Body::SplunkHec => {
            let mut out = Vec::with_capacity(lines.len() + lines.len() / 4);
            for record in records {
                let time = serde_json::from_slice::<serde_json::Value>(record).ok().and_then(|v| event_time(&v));
                out.extend_from_slice(b"{");
                if let Some(time) = time {
                    out.extend_from_slice(format!("\"time\":{time:.3},").as_bytes());
                }
                out.extend_from_slice(b"\"source\":\"warden\",\"sourcetype\":\"warden:audit\",\"event\":");
                out.extend_from_slice(record);
                out.extend_from_slice(b"}\n");
            }
            (out, "application/json")
        }
    }
}

/// A record's time in seconds since the epoch: Warden's `ts`, or OCSF's `time` (ms).
fn event_time(record: &serde_json::Value) -> Option<f64> {
    if let Some(ts) = record.get("ts").and_then(serde_json::Value::as_str) {
        let at = humantime::parse_rfc3339(ts).ok()?;
        return Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64());
    }
    record.get("time").and_then(serde_json::Value::as_f64).map(|ms| ms / 1000.0)
}

impl Deliver for Webhook {
    fn deliver(&mut self, lines: &[u8]) -> Result<(), Failure> {
        let (body, content_type) = frame(self.body, lines);
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, content_type)
            .timeout(self.timeout)
            .body(body);
        let answer = self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status();
            // Read (a little of) the answer so the connection can be reused.
            let _ = crate::body::read_limited(response, 64 * 1024).await;
            Ok::<_, reqwest::Error>(status)
        });
        match answer {
            Ok(status) if status.is_success() => Ok(()),
            Ok(http::StatusCode::PAYLOAD_TOO_LARGE) => Err(Failure::TooLarge),
            Ok(status @ (http::StatusCode::BAD_REQUEST | http::StatusCode::UNPROCESSABLE_ENTITY)) => {
                Err(Failure::Reject(format!("the receiver refused the batch (HTTP {})", status.as_u16())))
            }
            Ok(status) => Err(Failure::Retry(format!("HTTP {}", status.as_u16()))),
            // The error's text names the URL, never a header.
            Err(e) => Err(Failure::Retry(if e.is_timeout() { "timed out".into() } else { "connection failed".into() })),
        }
    }
}

/// Backoff between attempts: doubling from this …
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// … to at most this.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A delivery thread's loop: take a run from the spool, deliver it (retrying with backoff,
/// halving the run on a 413), move the cursor; until the spool is closed and empty, or it is
/// closed and a delivery fails (what is left stays for the next start).
pub fn deliver_spool(
    spool: &Spool,
    deliver: &mut dyn Deliver,
    (max_events, max_bytes): (usize, usize),
    metrics: Option<&crate::telemetry::Metrics>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut events = max_events;
    let mut backoff = BACKOFF_FIRST;
    let mut failing = false;
    while let Some(chunk) = spool.next(events, max_bytes, stop) {
        let outcome = deliver.deliver(&chunk.lines);
        let count = |outcome: &str| {
            if let Some(m) = metrics {
                m.audit_delivery(&spool.name, outcome, chunk.events);
            }
        };
        match outcome {
            Ok(()) => {
                count("ok");
                spool.commit(&chunk);
                if failing {
                    tracing::info!(sink = %spool.name, "the audit sink is delivering again");
                }
                failing = false;
                backoff = BACKOFF_FIRST;
                events = max_events;
            }
            Err(Failure::TooLarge) if chunk.events > 1 => {
                count("too_large");
                events = (chunk.events / 2).max(1);
            }
            Err(Failure::TooLarge) => set_aside(spool, &chunk, "the receiver refused one record as too large (HTTP 413)", metrics),
            Err(Failure::Reject(why)) => set_aside(spool, &chunk, &why, metrics),
            Err(Failure::Retry(why)) => {
                count("retry");
                if !failing {
                    tracing::warn!(sink = %spool.name, error = %why, "the audit sink is not taking records; they wait in the spool");
                }
                failing = true;
                if spool.is_closed() {
                    // Shutting down: what is left is delivered at the next start.
                    return;
                }
                sleep_unless(stop, jitter(backoff));
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Records a receiver will never take go to `rejected.jsonl` beside the spool, for an
/// operator; delivery goes on.
fn set_aside(spool: &Spool, chunk: &Chunk, why: &str, metrics: Option<&crate::telemetry::Metrics>) {
    tracing::error!(sink = %spool.name, records = chunk.events, reason = %why, "audit records set aside in rejected.jsonl");
    if let Err(e) = spool.set_aside(&chunk.lines) {
        tracing::error!(sink = %spool.name, error = %e, "the rejected records could not be kept");
    }
    if let Some(m) = metrics {
        m.audit_delivery(&spool.name, "rejected", chunk.events);
    }
    spool.commit(chunk);
}

/// `d` give or take a fifth, so that replicas retrying one collector spread out.
fn jitter(d: Duration) -> Duration {
    let fifth = d / 5;
    let spread = u64::try_from(fifth.as_millis()).unwrap_or(0) * 2 + 1;
    d - fifth + Duration::from_millis(rand::random::<u64>() % spread)
}

fn sleep_unless(stop: &std::sync::atomic::AtomicBool, d: Duration) {
    let deadline = std::time::Instant::now() + d;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_framed_as_each_receiver_expects() {
        let lines = b"{\"ts\":\"2026-11-30T10:00:00.250Z\",\"id\":\"a\"}\n{\"ts\":\"2026-11-30T10:00:01Z\",\"id\":\"b\"}\n";
        let (ndjson, t) = frame(Body::Ndjson, lines);
        assert_eq!((ndjson.as_slice(), t), (&lines[..], "application/x-ndjson"));
        let (array, t) = frame(Body::JsonArray, lines);
        let array: serde_json::Value = serde_json::from_slice(&array).unwrap();
        assert_eq!((array[1]["id"].as_str(), t), (Some("b"), "application/json"));
        let (hec, _) = frame(Body::SplunkHec, lines);
        let hec: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&hec).into_iter().map(Result::unwrap).collect();
        assert_eq!(hec.len(), 2);
        assert_eq!(hec[0]["time"].as_f64(), Some(1_796_032_800.25));
        assert_eq!(hec[0]["sourcetype"], "warden:audit");
        assert_eq!(hec[1]["event"]["id"], "b");
    }

    #[test]
    fn the_url_must_be_https_or_loopback_and_pass_the_ssrf_guard() {
        let config =
            |url: &str| -> WebhookSinkConfig { serde_json::from_value(serde_json::json!({"url": url, "bearer": "s3cret"})).unwrap() };
        let at = |f: &str| format!("audit.sinks[0].{f}");
        assert!(Webhook::new(&config("http://collector.example/x"), &at).is_err());
        assert!(Webhook::new(&config("https://10.0.0.7/x"), &at).is_err(), "internal addresses need allow_cidrs");
        assert!(Webhook::new(&config("https://collector.example/x"), &at).is_ok());
        let mut listed = config("https://10.0.0.7/x");
        listed.allow_cidrs = vec!["10.0.0.0/24".parse().unwrap()];
        assert!(Webhook::new(&listed, &at).is_ok());
        assert!(!format!("{:?}", config("https://collector.example/x")).contains("s3cret"));
    }
}
