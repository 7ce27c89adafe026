//! Cost of one local rate-limit decision (`Limits::check_call`): three rules, one targeted by
//! name, keys over subject, tenant and tool, 1,000 distinct callers. Goal: under 1 µs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Instant;

use serde_json::Map;
use warden::identity::{Principal, Subject};
use warden::limits::Limits;
use warden::limits::config::{Fallback, Key, KeyPart, LimitsConfig, RateRuleConfig};
use warden::limits::{CallFacts, Context};
use warden::policy::RequestFacts;
use warden::policy::ToolFacts;

const ITERATIONS: usize = 1_000_000;

fn main() {
    let rule = |name: &str, tools: &[&str], key: &[KeyPart]| RateRuleConfig {
        name: name.into(),
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        key: Key::Parts(key.to_vec()),
        rate: "1000000/second".into(),
        burst: None,
        fallback: Fallback::Local,
    };
    let config = LimitsConfig {
        rules: vec![
            rule("per-user", &[], &[KeyPart::Subject]),
            rule("per-tenant-tool", &[], &[KeyPart::Tenant, KeyPart::Tool]),
            rule("search", &["search"], &[KeyPart::Subject]),
        ],
        ..LimitsConfig::default()
    };
    let audit = std::sync::Arc::new(warden::audit::AuditSink::open("off").unwrap());
    let context = Context { trusted_proxies: Vec::new(), vault: None, audit, clock: warden::clock::system() };
    let limits = Limits::build(&config, context).unwrap();
    let (args, request) = (serde_json::Value::Null, RequestFacts::default());
    let principals: Vec<Principal> = (0..1000)
        .map(|i| Principal {
            subject: Subject::new(format!("user-{i}")).unwrap(),
            issuer: "https://idp.example.com".into(),
            client_id: Some("agent".into()),
            scopes: BTreeSet::new(),
            roles: Vec::new(),
            tenant: Some(format!("tenant-{}", i % 20)),
            claims: Map::new(),
            tools: None,
            token: None,
        })
        .collect();
    let metadata = Map::new();
    let tool = ToolFacts { name: "search", tags: &[], metadata: &metadata, scopes: &[], server: None };
    let call = |principal| CallFacts { principal, tool, cost: 1, arguments: &args, request: &request, request_ids: ("r", "") };
    for p in &principals {
        let _ = limits.check_call(&call(p));
    }
    let start = Instant::now();
    let mut refused = 0usize;
    for i in 0..ITERATIONS {
        if limits.check_call(black_box(&call(&principals[i % principals.len()]))).is_err() {
            refused += 1;
        }
    }
    let per = start.elapsed().as_nanos() as f64 / ITERATIONS as f64;
    println!("| local rate limit, 3 rules, 1,000 callers | {per:.0} ns per decision | {refused} refused |");

    // The same three rules shared through Redis: one script call per decision, one after
    // another (so the figure is the round trip on loopback plus Warden's side of it).
    let Ok(url) = std::env::var("WARDEN_REDIS_URL") else {
        println!("| shared rate limit (Redis) | not measured: set WARDEN_REDIS_URL (scripts/bench starts one) | |");
        return;
    };
    let yaml = format!("backend: redis\nredis: {{url: \"{url}\", timeout: 1s, prefix: \"bench:{}:\"}}\nrules: []\n", std::process::id());
    let mut shared: LimitsConfig = serde_norway::from_str(&yaml).unwrap();
    shared.rules = config.rules.clone();
    let audit = std::sync::Arc::new(warden::audit::AuditSink::open("off").unwrap());
    let context = Context { trusted_proxies: Vec::new(), vault: None, audit, clock: warden::clock::system() };
    let limits = Limits::build(&shared, context).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    const SHARED_ITERATIONS: usize = 20_000;
    runtime.block_on(async {
        for p in principals.iter().take(100) {
            limits.admit(&call(p)).await.unwrap();
        }
        let start = Instant::now();
        let mut local = 0usize;
        for i in 0..SHARED_ITERATIONS {
            if limits.admit(&call(&principals[i % principals.len()])).await.is_ok_and(|a| a.audit_note().is_some()) {
                local += 1;
            }
        }
        let per = start.elapsed().as_micros() as f64 / SHARED_ITERATIONS as f64;
        println!("| shared rate limit (Redis on loopback), 3 rules, 1,000 callers | {per:.1} µs per decision (one round trip) | {local} decided locally |");
    });
}
