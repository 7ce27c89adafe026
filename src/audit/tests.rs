use super::writer::{BACKLOG_MAX, WriteCtx};
use super::*;

#[test]
fn long_values_keep_their_start_length_and_digest() {
    assert_eq!(bounded("search"), "search");
    let exact = "x".repeat(FIELD_LIMIT);
    assert_eq!(bounded(&exact), exact.as_str());
    let long = format!("{}{}", "é".repeat(100), "y".repeat(900_000));
    let b = bounded(&long);
    assert!(b.len() < 200, "{b}");
    assert!(b.starts_with(&"é".repeat(32)), "cut on a character boundary: {b}");
    assert!(b.ends_with(&format!("…[truncated: {} bytes, sha256:{}]", long.len(), crate::sha256_hex(&long))), "{b}");
    // Two long values that share their start stay distinguishable.
    assert_ne!(bounded(&format!("{long}a")), bounded(&format!("{long}b")));
}

#[test]
fn a_request_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("audit.jsonl");
    let sink = AuditSink::open(&path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
    let once = AuditOnce::default();
    assert!(!once.written());
    assert!(once.emit(&sink, AuditEvent { request_id: "r".into(), reason: "ok".into(), ..AuditEvent::default() }));
    assert!(!once.emit(&sink, AuditEvent { request_id: "r".into(), reason: "again".into(), ..AuditEvent::default() }));
    assert!(once.written());
    assert!(sink.flush(std::time::Duration::from_secs(5)));
    let lines = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.contains("\"reason\":\"ok\""));
}

#[test]
fn every_client_controlled_field_is_bounded() {
    let long = "z".repeat(10_000);
    let mut event = AuditEvent {
        request_id: long.clone(),
        jsonrpc_id: Some(serde_json::Value::String(long.clone())),
        subject: Some(long.clone()),
        client_id: Some(long.clone()),
        tenant: Some(long.clone()),
        method: Some(long.clone()),
        tool: Some(long.clone()),
        ..AuditEvent::default()
    };
    event.bound_fields();
    let line = serde_json::to_string(&event).unwrap_or_default();
    assert!(line.len() < 2_000, "{}", line.len());
}

#[test]
fn a_record_left_unfinished_by_a_crash_is_cut_off_and_the_chain_resumes_before_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("audit.jsonl");
    let sink = AuditSink::open(&path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
    for reason in ["one", "two"] {
        sink.emit(AuditEvent { request_id: "r".into(), reason: reason.into(), ..AuditEvent::default() });
    }
    assert!(sink.flush(std::time::Duration::from_secs(5)));
    drop(sink);
    let whole = std::fs::read_to_string(&path).unwrap_or_default();
    // kill -9 in the middle of writing a third record.
    std::fs::write(&path, format!("{whole}{{\"chain\":\"x\",\"reas")).unwrap_or_else(|e| panic!("{e}"));
    let sink = AuditSink::open(&path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
    sink.emit(AuditEvent { request_id: "r".into(), reason: "three".into(), ..AuditEvent::default() });
    assert!(sink.flush(std::time::Duration::from_secs(5)));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(text.starts_with(&whole) && !text.contains("\"reas\n"), "{text}");
    let mut verifier = chain::Verifier::new(&[]);
    for (i, line) in text.lines().enumerate() {
        verifier.line(line, || format!("line {}", i + 1));
    }
    let report = verifier.finish();
    assert_eq!((report.fault, report.records), (None, 3), "{text}");
}

#[test]
fn files_rotate_by_size_and_keep_at_most_n() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = config::AuditConfig {
        sinks: vec![SinkConfig::File(config::FileSinkConfig {
            path: "audit.jsonl".into(),
            format: Format::Json,
            max_bytes: Some(1500),
            max_age: None,
            keep: 2,
        })],
        ..config::AuditConfig::default()
    };
    let sink = AuditSink::from_config(&config, dir.path(), None, None).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..40 {
        sink.emit(AuditEvent { request_id: format!("r{i}"), reason: "ok".into(), ..AuditEvent::default() });
        assert!(sink.flush(std::time::Duration::from_secs(5)));
    }
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"], "two rotated files kept");
    for name in &names {
        let len = std::fs::metadata(dir.path().join(name)).map(|m| m.len()).unwrap_or(0);
        assert!(len <= 1500, "{name}: {len} bytes");
    }
}

#[test]
fn each_sink_gets_every_record_in_its_own_format() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = |path: &str, format: Format| {
        SinkConfig::File(config::FileSinkConfig { path: path.into(), format, max_bytes: None, max_age: None, keep: 1 })
    };
    let config = config::AuditConfig {
        sinks: vec![file("ocsf.jsonl", Format::Ocsf), file("audit.jsonl", Format::Json)],
        ..config::AuditConfig::default()
    };
    let sink = AuditSink::from_config(&config, dir.path(), None, None).unwrap_or_else(|e| panic!("{e}"));
    for reason in ["ok", "policy_denied"] {
        sink.emit(AuditEvent {
            request_id: "r".into(),
            reason: reason.into(),
            decision: "allow",
            method: Some("tools/call".into()),
            ..AuditEvent::default()
        });
    }
    assert!(sink.flush(std::time::Duration::from_secs(5)));
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(name)).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    };
    let (json, ocsf) = (read("audit.jsonl"), read("ocsf.jsonl"));
    assert_eq!((json.len(), ocsf.len()), (2, 2));
    assert_eq!(ocsf[1]["class_uid"], 6003);
    assert_eq!(ocsf[1]["status_code"], "policy_denied");
    assert_eq!(ocsf[1]["unmapped"]["warden"]["hash"], json[1]["hash"], "the same chained record");
    assert_eq!(json[1]["seq"], 2, "the JSON file holds the chain");
}

/// A sink that fails while `failing` is set (a full disk), recording what it took.
struct Flaky {
    failing: Arc<AtomicBool>,
    took: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Sink for Flaky {
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("no space left on device"));
        }
        self.took.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(lines);
        Ok(())
    }
}

fn flaky_out() -> (Out, Arc<AtomicBool>, Arc<std::sync::Mutex<Vec<u8>>>) {
    let failing = Arc::new(AtomicBool::new(true));
    let took = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Flaky { failing: Arc::clone(&failing), took: Arc::clone(&took) };
    (Out { lane: Lane::Direct(Box::new(sink)), format: Format::Json, backlog: Vec::new(), name: "flaky".into() }, failing, took)
}

#[test]
fn a_failing_sink_keeps_its_records_in_order_and_writes_them_when_it_recovers() {
    let (mut out, failing, took) = flaky_out();
    let ctx = WriteCtx { on_failure: OnFailure::Block, metrics: None };
    assert!(!out.write(b"{\"n\":1}\n", &ctx));
    assert!(!out.write(b"{\"n\":2}\n", &ctx));
    assert_eq!(out.backlog, b"{\"n\":1}\n{\"n\":2}\n");
    failing.store(false, Ordering::SeqCst);
    assert!(out.write(b"{\"n\":3}\n", &ctx), "the backlog first, then the new batch");
    assert_eq!(*took.lock().unwrap_or_else(std::sync::PoisonError::into_inner), b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    assert!(out.backlog.is_empty());
}

#[test]
fn a_full_backlog_drops_under_refuse_and_waits_under_block() {
    let line = vec![b'x'; 1023].into_iter().chain([b'\n']).collect::<Vec<u8>>();
    let batch: Vec<u8> = line.iter().copied().cycle().take(line.len() * 1024).collect();
    // refuse: past BACKLOG_MAX, a batch is dropped (the gate refuses new requests by then).
    let (mut out, _failing, took) = flaky_out();
    let ctx = WriteCtx { on_failure: OnFailure::Refuse, metrics: None };
    for _ in 0..(BACKLOG_MAX / batch.len()) {
        assert!(!out.write(&batch, &ctx));
    }
    assert_eq!(out.backlog.len(), BACKLOG_MAX);
    assert!(!out.write(&batch, &ctx));
    assert_eq!(out.backlog.len(), BACKLOG_MAX, "dropped, not kept past the bound");
    assert!(took.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty());
    // block: past BACKLOG_MAX, the writer waits until the sink takes everything.
    let (mut out, failing, took) = flaky_out();
    let ctx = WriteCtx { on_failure: OnFailure::Block, metrics: None };
    for _ in 0..(BACKLOG_MAX / batch.len()) {
        assert!(!out.write(&batch, &ctx));
    }
    let recover = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        failing.store(false, Ordering::SeqCst);
    });
    assert!(out.write(&batch, &ctx), "returns once written");
    recover.join().unwrap_or_else(|_| panic!("recover"));
    assert_eq!(took.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len(), BACKLOG_MAX + batch.len());
    assert!(out.backlog.is_empty());
}
