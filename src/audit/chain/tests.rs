use super::*;

fn signer() -> Signer {
    let (pkcs8, _) = generate_key().unwrap_or_else(|e| panic!("{e}"));
    Signer::from_file_contents(pkcs8.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// Ten events with a checkpoint after every fourth, and the last.
fn log(signer: Signer) -> (Vec<String>, Vec<(String, Vec<u8>)>) {
    let keys = vec![(signer.key_id.clone(), signer.public_key().to_vec())];
    let mut chain = Chain::new(None, Some(signer), Checkpoints { every: 4, interval: None });
    let mut out = Vec::new();
    for i in 0..10 {
        let mut event = Map::new();
        event.insert("reason".into(), Value::String(format!("ok-{i}")));
        event.insert("latency_ms".into(), Value::from(0.1 + f64::from(i)));
        event.insert("nested".into(), serde_json::json!({"b": [1, {"z": null, "a": "é"}], "a": true}));
        chain.link(event, &mut out);
        if chain.checkpoint_due(i == 9) {
            chain.checkpoint(format!("t{i}"), &mut out);
        }
    }
    let lines = String::from_utf8(out).unwrap_or_default().lines().map(str::to_owned).collect();
    (lines, keys)
}

fn verify(lines: &[String], keys: &[(String, Vec<u8>)]) -> Report {
    let mut v = Verifier::new(keys);
    for (i, line) in lines.iter().enumerate() {
        v.line(line, || format!("line {}", i + 1));
    }
    v.finish()
}

fn fault(lines: &[String], keys: &[(String, Vec<u8>)]) -> (&'static str, String) {
    let f = verify(lines, keys).fault.unwrap_or_else(|| panic!("no fault found"));
    (f.kind, f.at)
}

#[test]
fn an_untouched_log_verifies_with_its_checkpoints() {
    let (lines, keys) = log(signer());
    assert_eq!(lines.len(), 13, "10 events and 3 checkpoints");
    let report = verify(&lines, &keys);
    assert_eq!((report.fault, report.records, report.checkpoints, report.unsigned_tail), (None, 13, 3, 0));
}

#[test]
fn each_tampering_is_found_and_located() {
    let (lines, keys) = log(signer());
    // Altered: one field of one event.
    let mut altered = lines.clone();
    altered[2] = altered[2].replace("ok-2", "ok-X");
    assert_eq!(fault(&altered, &keys), ("altered", "line 3".into()));
    // Deleted.
    let mut deleted = lines.clone();
    deleted.remove(3);
    assert_eq!(fault(&deleted, &keys).0, "deleted");
    // Reordered.
    let mut reordered = lines.clone();
    reordered.swap(5, 6);
    assert!(matches!(fault(&reordered, &keys).0, "deleted" | "reordered"), "{:?}", fault(&reordered, &keys));
    // Inserted: a copy of an earlier event.
    let mut inserted = lines.clone();
    inserted.insert(7, lines[1].clone());
    assert_eq!(fault(&inserted, &keys), ("reordered", "line 8".into()), "a replayed record");
    // Inserted: a forged event, chained correctly onto its predecessor, then everything after
    // re-hashed by the forger: the next checkpoint's signature gives it away.
    let mut forged = lines[..5].to_vec();
    let resume = Resume::from_line(&forged[4]).unwrap_or_else(|| panic!("a chain record"));
    let mut chain = Chain::new(Some(resume), None, Checkpoints { every: u64::MAX, interval: None });
    let mut out = Vec::new();
    let mut evil = Map::new();
    evil.insert("reason".into(), Value::String("forged".into()));
    chain.link(evil, &mut out);
    for line in &lines[5..] {
        let Ok(Value::Object(mut record)) = serde_json::from_str::<Value>(line) else { panic!() };
        for field in ["chain", "seq", "prev_hash", "hash"] {
            record.remove(field);
        }
        let signature = record.remove("signature");
        chain.link(record, &mut out);
        if let Some(signature) = signature {
            // Keep the original signature on the re-hashed checkpoint.
            let last = String::from_utf8(out.clone()).unwrap_or_default().lines().last().unwrap_or_default().to_owned();
            let Ok(Value::Object(mut cp)) = serde_json::from_str::<Value>(&last) else { panic!() };
            cp.insert("signature".into(), signature);
            let cut = out.len() - last.len() - 1;
            out.truncate(cut);
            canonical(&Value::Object(cp), &mut out);
            out.push(b'\n');
        }
    }
    forged.extend(String::from_utf8(out).unwrap_or_default().lines().map(str::to_owned));
    assert_eq!(fault(&forged, &keys).0, "bad_signature");
    // The same forgery passes a verifier given no key: keys are what make it evidence.
    assert_eq!(verify(&forged, &[]).fault, None);
    // Truncated: the tail after the last checkpoint is reported as uncovered.
    let (mut open_tail, keys2) = log(signer());
    open_tail.pop();
    let report = verify(&open_tail, &keys2);
    assert_eq!((report.fault, report.unsigned_tail), (None, 2), "the final checkpoint is gone: two events uncovered");
    // A key that is not the gateway's.
    let other = vec![(keys[0].0.clone(), signer().public_key().to_vec())];
    assert_eq!(fault(&lines, &other).0, "bad_signature");
    assert_eq!(fault(&lines, &[("nope".into(), keys[0].1.clone())]).0, "unknown_key");
}

#[test]
fn a_resumed_chain_continues_without_a_seam() {
    let (lines, keys) = log(signer());
    let resume = Resume::from_line(lines.last().unwrap_or_else(|| panic!())).unwrap_or_else(|| panic!());
    assert_eq!(resume.seq, 13);
    let mut chain = Chain::new(Some(resume), None, Checkpoints { every: 4, interval: None });
    let mut out = Vec::new();
    chain.link(Map::new(), &mut out);
    let mut all = lines.clone();
    all.push(String::from_utf8(out).unwrap_or_default().trim_end().to_owned());
    let report = verify(&all, &keys);
    assert_eq!((report.fault, report.records, report.unsigned_tail), (None, 14, 1));
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let mut out = Vec::new();
    canonical(&serde_json::json!({"b": 1, "a": {"d": [true, {"y": 1, "x": 2}], "c": "é\""}}), &mut out);
    assert_eq!(String::from_utf8(out).unwrap_or_default(), r#"{"a":{"c":"é\"","d":[true,{"x":2,"y":1}]},"b":1}"#);
}
