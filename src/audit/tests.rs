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
