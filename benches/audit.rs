//! Cost of chaining one audit record on the writer thread: the event as a JSON value, its
//! canonical form, the SHA-256 link, and the line (what `audit::chain` adds to each event).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use warden::audit::AuditEvent;
use warden::audit::chain::{Chain, Checkpoints};

const ITERATIONS: u32 = 200_000;

fn main() {
    let event = AuditEvent {
        ts: "2026-11-30T08:00:00.123Z".into(),
        request_id: "01a22b3f-bef6-734c-a546-d62056f18700".into(),
        trace_id: "557a51f93c654a44b5700af98b1d7fe6".into(),
        jsonrpc_id: Some(serde_json::json!(7)),
        subject: Some("alice@example.com".into()),
        issuer: Some("https://login.example.com/".into()),
        client_id: Some("claude-desktop".into()),
        tenant: Some("acme".into()),
        method: Some("tools/call".into()),
        tool: Some("search".into()),
        decision: "allow",
        reason: "ok".into(),
        rule: Some("search/signed-in".into()),
        status: 200,
        upstream_status: Some(200),
        latency_ms: 1.234,
        ..AuditEvent::default()
    };
    let mut chain = Chain::new(None, None, Checkpoints { every: u64::MAX, interval: None });
    let mut out = Vec::with_capacity(1 << 20);
    let plain = Instant::now();
    for _ in 0..ITERATIONS {
        out.clear();
        serde_json::to_writer(&mut out, black_box(&event)).unwrap();
    }
    let plain = plain.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    let t = Instant::now();
    for _ in 0..ITERATIONS {
        black_box(serde_json::to_value(black_box(&event)).unwrap());
    }
    let to_value = t.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    let value = serde_json::to_value(&event).unwrap();
    let t = Instant::now();
    for _ in 0..ITERATIONS {
        out.clear();
        warden::audit::chain::canonical(black_box(&value), &mut out);
    }
    let canonical = t.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    let t = Instant::now();
    for _ in 0..ITERATIONS {
        black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(&out)));
    }
    let sha = t.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    println!("| parts: to_value {to_value:.0} ns, canonical {canonical:.0} ns, sha256 of {} bytes {sha:.0} ns |", out.len());
    let chained = Instant::now();
    for _ in 0..ITERATIONS {
        out.clear();
        let serde_json::Value::Object(record) = serde_json::to_value(black_box(&event)).unwrap() else { unreachable!() };
        chain.link(record, &mut out);
    }
    let chained = chained.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    println!("| audit record, encoded as before (serde_json::to_writer) | {plain:.0} ns |");
    println!("| audit record, chained (to_value, canonical JSON, SHA-256, line) | {chained:.0} ns |");
}
