use std::collections::BTreeSet;

use serde_json::Map;

use super::config::{KeyPart, LimitsConfig, PreAuthConfig, RateRuleConfig};
use super::*;
use crate::identity::Subject;

fn principal(sub: &str, tenant: Option<&str>) -> Principal {
    Principal {
        subject: Subject::new(sub).unwrap_or_else(Subject::gateway),
        issuer: "https://idp".into(),
        client_id: Some("agent".into()),
        scopes: BTreeSet::new(),
        roles: Vec::new(),
        tenant: tenant.map(str::to_owned),
        claims: Map::new(),
    }
}

fn rule(name: &str, tools: &[&str], key: &[KeyPart], rate: &str) -> RateRuleConfig {
    RateRuleConfig {
        name: name.into(),
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        key: key.to_vec(),
        rate: rate.into(),
        burst: None,
    }
}

fn limits(rules: Vec<RateRuleConfig>) -> Limits {
    Limits::build(&LimitsConfig { rules, ..LimitsConfig::default() }, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn facts<'a>(name: &'a str, tags: &'a [String]) -> ToolFacts<'a> {
    static EMPTY: std::sync::LazyLock<Map<String, serde_json::Value>> = std::sync::LazyLock::new(Map::new);
    ToolFacts { name, tags, metadata: &EMPTY, scopes: &[], server: None }
}

#[test]
fn rates_parse_with_their_burst() {
    assert!(parse_rate("60/minute", None).is_ok());
    assert!(parse_rate("5/s", Some(10)).is_ok());
    for bad in ["60", "0/minute", "x/minute", "5/fortnight", "5/second"] {
        let burst = if bad == "5/second" { Some(0) } else { None };
        assert!(parse_rate(bad, burst).is_err(), "{bad}");
    }
}

#[test]
fn a_subject_key_isolates_callers_and_the_limit_says_when_to_retry() {
    let l = limits(vec![rule("per-user", &[], &[KeyPart::Subject], "2/minute")]);
    let (alice, bob) = (principal("alice", None), principal("bob", None));
    let t = facts("search", &[]);
    assert!(l.check_call(&alice, &t).is_ok() && l.check_call(&alice, &t).is_ok());
    let limited = l.check_call(&alice, &t).unwrap_err();
    assert_eq!(limited.rule, "limits/per-user");
    assert!((29..=30).contains(&limited.retry_after_secs()), "{limited:?}");
    assert!(l.check_call(&bob, &t).is_ok(), "bob has his own bucket");
}

#[test]
fn tenant_and_tool_keys_and_targets() {
    let tags = vec!["llm".to_owned()];
    let l = limits(vec![rule("tenant-llm", &["tag:llm"], &[KeyPart::Tenant, KeyPart::Tool], "1/hour")]);
    let (a1, a2, b) = (principal("a1", Some("acme")), principal("a2", Some("acme")), principal("b", Some("beta")));
    let (gpt, other) = (facts("gpt", &tags), facts("search", &[]));
    assert!(l.check_call(&a1, &gpt).is_ok());
    assert!(l.check_call(&a2, &gpt).is_err(), "one bucket for the tenant and tool");
    assert!(l.check_call(&b, &gpt).is_ok(), "another tenant");
    assert!(l.check_call(&a1, &facts("claude", &tags)).is_ok(), "another tool");
    for _ in 0..10 {
        assert!(l.check_call(&a1, &other).is_ok(), "untargeted tools are not limited");
    }
}

#[test]
fn the_tightest_rule_decides() {
    let l = limits(vec![rule("loose", &[], &[KeyPart::Subject], "100/minute"), rule("tight", &["search"], &[KeyPart::Subject], "1/hour")]);
    let alice = principal("alice", None);
    assert!(l.check_call(&alice, &facts("search", &[])).is_ok());
    let limited = l.check_call(&alice, &facts("search", &[])).unwrap_err();
    assert_eq!(limited.rule, "limits/tight");
    assert!(limited.retry_after_secs() > 3000);
}

#[test]
fn forwarded_for_counts_only_from_trusted_proxies() {
    let proxies = vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
    let l = Limits::build(&LimitsConfig::default(), &proxies).unwrap_or_else(|e| panic!("{e}"));
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", http::HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.0.0.2"));
    let proxy: IpAddr = "10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
    let stranger: IpAddr = "192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.client_ip(proxy, &headers).to_string(), "198.51.100.7", "the nearest untrusted hop");
    assert_eq!(l.client_ip(stranger, &headers), stranger, "a spoofed header changes nothing");
}

#[test]
fn the_pre_auth_limit_is_per_ip() {
    let config = LimitsConfig { pre_auth: Some(PreAuthConfig { rate: "2/minute".into(), burst: None }), ..LimitsConfig::default() };
    let l = Limits::build(&config, &[]).unwrap_or_else(|e| panic!("{e}"));
    let (a, b): (IpAddr, IpAddr) =
        ("192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}")), "192.0.2.2".parse().unwrap_or_else(|e| panic!("{e}")));
    assert!(l.check_ip(a).is_ok() && l.check_ip(a).is_ok());
    assert!(l.check_ip(a).is_err());
    assert!(l.check_ip(b).is_ok());
}

#[test]
fn config_errors_name_their_path() {
    let bad = |rules: Vec<RateRuleConfig>| match Limits::build(&LimitsConfig { rules, ..LimitsConfig::default() }, &[]) {
        Err(e) => e.to_string(),
        Ok(_) => String::new(),
    };
    assert!(bad(vec![rule("a", &[], &[KeyPart::Subject], "sixty")]).contains("limits.rules[0].rate"));
    assert!(
        bad(vec![rule("a", &[], &[KeyPart::Subject], "1/s"), rule("a", &[], &[KeyPart::Subject], "1/s")]).contains("limits.rules[1].name")
    );
    assert!(bad(vec![rule("a", &["bad name"], &[KeyPart::Subject], "1/s")]).contains("limits.rules[0].tools[0]"));
    assert!(bad(vec![rule("a", &[], &[], "1/s")]).contains("limits.rules[0].key"));
    let redis = LimitsConfig { backend: config::Backend::Redis, ..LimitsConfig::default() };
    assert!(Limits::build(&redis, &[]).is_err_and(|e| e.to_string().contains("limits.backend")));
}
