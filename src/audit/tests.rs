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
