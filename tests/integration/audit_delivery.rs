//! Audit delivery that loses nothing: a webhook receiver (speaking Splunk HEC or NDJSON) that
//! is down for a while, then up, gets every record once; a gateway killed with SIGKILL while
//! its receiver is down delivers its spool after a restart; with `on_failure: refuse`, a full
//! spool refuses new requests (`audit_unavailable`) until it drains. Records are counted
//! against the responses the clients got.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{Serving, TestIssuer, listen, serve};

/// A SIEM collector: refuses with 503 while down; up, records each record's `id` and the
/// `Authorization` it was sent with.
#[derive(Clone, Default)]
struct Receiver {
    up: Arc<AtomicBool>,
    /// Every record received, in order of arrival (duplicates kept, to be counted).
    records: Arc<Mutex<Vec<Value>>>,
    authorization: Arc<Mutex<HashSet<String>>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let (listener, url) = listen().await;
        let app = axum::Router::new().route("/collector", axum::routing::post(collect)).with_state(receiver.clone());
        serve(listener, app);
        (receiver, format!("{url}/collector"))
    }

    fn ids(&self, method: Option<&str>) -> Vec<String> {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .filter(|r| method.is_none_or(|m| r["method"] == m))
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn collect(State(r): State<Receiver>, headers: http::HeaderMap, body: axum::body::Bytes) -> axum::response::Response {
    if !r.up.load(Ordering::SeqCst) {
        return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(auth) = headers.get("authorization") {
        r.authorization.lock().unwrap().insert(auth.to_str().unwrap().to_owned());
    }
    let mut records = r.records.lock().unwrap();
    for value in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let value = value.unwrap();
        // Splunk HEC wraps each record as `event`; NDJSON sends it as it is.
        records.push(if value.get("sourcetype").is_some() { value["event"].clone() } else { value });
    }
    axum::Json(serde_json::json!({"text": "Success", "code": 0})).into_response()
}

/// Records of `dir/audit.jsonl`.
fn file_records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn ids_of(records: &[Value], method: Option<&str>) -> Vec<String> {
    records.iter().filter(|r| method.is_none_or(|m| r["method"] == m)).map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

/// The config: a webhook sink first (so a record in the file is in the spool already), then a
/// file, with `extra` lines in `audit:`.
fn config(issuer: &TestIssuer, addr: &str, url: &str, webhook: &str, extra: &str) -> String {
    format!(
        "server:\n  listen: {addr}\n  public_url: {url}\nidentity:\n  issuers:\n    - issuer: {iss}\naudit:\n  sinks:\n    - {webhook}\n    - {{type: file, path: audit.jsonl}}\n{extra}tools: []\n",
        iss = issuer.url
    )
}

/// A gateway in-process on `dir/warden.yaml` (written from `yaml`, `${VAR}`s from `env`): its
/// audit handle, its shutdown, and the task serving it.
fn run_in(
    dir: &Path,
    yaml: &str,
    env: &HashMap<String, String>,
    listener: tokio::net::TcpListener,
) -> (Arc<warden::audit::AuditSink>, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
    std::fs::write(dir.join("warden.yaml"), yaml).unwrap();
    let config = warden::config::load_file(&dir.join("warden.yaml"), env).unwrap();
    let gw = warden::Gateway::build(&config).unwrap_or_else(|e| panic!("{e}"));
    let audit = Arc::clone(&gw.audit);
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(warden::run(gw, listener, shutdown.clone().cancelled_owned()));
    (audit, shutdown, served)
}

async fn list(http: &reqwest::Client, url: &str, token: &str, id: usize) -> reqwest::Response {
    http.post(format!("{url}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
}

async fn until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_once(ids: &[String]) {
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a record arrived twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_then_up_gets_every_record_once() {
    let issuer = TestIssuer::start().await;
    let (receiver, hook) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (listener, url) = listen().await;
    let webhook = format!(
        "{{type: webhook, url: \"{hook}\", body: splunk_hec, headers: {{Authorization: \"Splunk ${{HEC_TOKEN}}\"}}, batch_max_events: 7, allow_cidrs: [127.0.0.0/8]}}"
    );
    let yaml = config(&issuer, &listener.local_addr().unwrap().to_string(), &url, &webhook, "");
    let env = HashMap::from([("HEC_TOKEN".to_owned(), "hec-7d1f-secret".to_owned())]);
    let (audit, shutdown, served) = run_in(dir.path(), &yaml, &env, listener);
    let http = reqwest::Client::new();
    let token = issuer.sign(&issuer.claims("alice", "", &format!("{url}/mcp")));

    // The collector is down: every call is answered, its record waits in the spool.
    for i in 0..40 {
        assert_eq!(list(&http, &url, &token, i).await.status(), 200);
    }
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("warden_audit_spool_bytes{sink=\"webhook-") && !l.ends_with(" 0")),
        "the spool holds the records: {metrics}"
    );
    assert!(metrics.contains("outcome=\"retry\""), "{metrics}");
    assert!(receiver.records.lock().unwrap().is_empty());
    assert!(dir.path().join("audit-spool").is_dir());

    // Up again: the backlog arrives, then new records follow it.
    receiver.up.store(true, Ordering::SeqCst);
    for i in 40..50 {
        assert_eq!(list(&http, &url, &token, i).await.status(), 200);
    }
    assert!(tokio::task::spawn_blocking(move || audit.flush(Duration::from_secs(60))).await.unwrap(), "the spool drained");
    shutdown.cancel();
    served.await.unwrap().unwrap();

    let written = file_records(dir.path());
    let received = receiver.ids(None);
    assert_once(&received);
    let (received, written): (HashSet<String>, HashSet<String>) =
        (received.into_iter().collect(), ids_of(&written, None).into_iter().collect());
    assert_eq!(received, written, "the collector has exactly the records the file has");
    assert_eq!(receiver.ids(Some("tools/list")).len(), 50, "one per answered call");
    let auth = receiver.authorization.lock().unwrap().clone();
    assert_eq!(auth, HashSet::from(["Splunk hec-7d1f-secret".to_owned()]));
    let spooled: String = walk(&dir.path().join("audit-spool"));
    assert!(!spooled.contains("hec-7d1f-secret") && !metrics.contains("hec-7d1f-secret"));
}

/// The text of every file under `dir`.
fn walk(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&walk(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spooled_before_a_sigkill_are_delivered_after_the_restart() {
    let issuer = TestIssuer::start().await;
    let (receiver, hook) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let webhook = format!("{{type: webhook, url: \"{hook}\", bearer: hook-bearer-5e2, allow_cidrs: [127.0.0.1/32]}}");
    let yaml = config(&issuer, &format!("127.0.0.1:{port}"), &url, &webhook, "");
    let path = dir.path().join("warden.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let http = reqwest::Client::new();
    let token = issuer.sign(&issuer.claims("alice", "", &format!("{url}/mcp")));

    let mut first = Serving::start(&path, &url).await;
    for i in 0..25 {
        assert_eq!(list(&http, &url, &token, i).await.status(), 200);
    }
    // Written to the file means spooled (the webhook's spool comes first).
    until("the records are written", Duration::from_secs(10), || ids_of(&file_records(dir.path()), Some("tools/list")).len() == 25).await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let answered: HashSet<String> = ids_of(&file_records(dir.path()), Some("tools/list")).into_iter().collect();
    assert!(receiver.records.lock().unwrap().is_empty(), "nothing was delivered before the kill");

    receiver.up.store(true, Ordering::SeqCst);
    let mut second = Serving::start(&path, &url).await;
    until("the spool is delivered", Duration::from_secs(30), || receiver.ids(Some("tools/list")).len() >= 25).await;
    second.0.kill().unwrap();
    second.0.wait().unwrap();
    let received = receiver.ids(Some("tools/list"));
    assert_once(&received);
    assert_eq!(received.into_iter().collect::<HashSet<_>>(), answered, "every answered call's record, once");
    assert_eq!(receiver.authorization.lock().unwrap().clone(), HashSet::from(["Bearer hook-bearer-5e2".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_requests_until_it_drains() {
    let issuer = TestIssuer::start().await;
    let (receiver, hook) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (listener, url) = listen().await;
    let webhook = format!("{{type: webhook, url: \"{hook}\", allow_cidrs: [127.0.0.1/32]}}");
    let extra = "  spool: {max_bytes: 65536}\n  on_failure: refuse\n";
    let yaml = config(&issuer, &listener.local_addr().unwrap().to_string(), &url, &webhook, extra);
    let (audit, shutdown, served) = run_in(dir.path(), &yaml, &HashMap::new(), listener);
    let http = reqwest::Client::new();
    let token = issuer.sign(&issuer.claims("alice", "", &format!("{url}/mcp")));

    let mut allowed = 0;
    let mut refused = 0;
    for i in 0..2000 {
        let r = list(&http, &url, &token, i).await;
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "5");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "audit_unavailable");
            refused += 1;
            break;
        }
        assert_eq!(r.status(), 200);
        allowed += 1;
        // Let the writer catch up, so the refusal comes at the bound, not behind it.
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(refused == 1 && allowed > 50, "64 KiB holds some records, not 2000: {allowed} allowed");
    assert_eq!(http.get(format!("{url}/readyz")).send().await.unwrap().status(), 503);
    for i in 0..5 {
        let r = list(&http, &url, &token, 5000 + i).await;
        assert_eq!(r.status(), 503, "still full");
        refused += 1;
    }

    receiver.up.store(true, Ordering::SeqCst);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < end, "requests were never accepted again");
        let r = list(&http, &url, &token, 9000).await;
        if r.status() == 200 {
            allowed += 1;
            break;
        }
        refused += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(tokio::task::spawn_blocking(move || audit.flush(Duration::from_secs(60))).await.unwrap());
    shutdown.cancel();
    served.await.unwrap().unwrap();

    let written = file_records(dir.path());
    let allowed_written = written.iter().filter(|r| r["method"] == "tools/list").count();
    let refused_written = written.iter().filter(|r| r["reason"] == "audit_unavailable").count();
    assert_eq!((allowed_written, refused_written), (allowed, refused), "each answer recorded once in the file");
    let received = receiver.ids(Some("tools/list"));
    assert_once(&received);
    assert_eq!(received.len(), allowed, "every call that ran reached the collector");
}
