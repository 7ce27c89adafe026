use std::collections::BTreeSet;

use serde_json::Map;

use super::config::{Fallback, Key, KeyPart, LimitsConfig, PreAuthConfig, RateRuleConfig};
use super::*;
use crate::audit::AuditSink;
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
        tools: None,
        token: None,
    }
}

fn rule(name: &str, tools: &[&str], key: &[KeyPart], rate: &str) -> RateRuleConfig {
    RateRuleConfig {
        name: name.into(),
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        key: Key::Parts(key.to_vec()),
        rate: rate.into(),
        burst: None,
        fallback: Fallback::Local,
    }
}

fn context(trusted_proxies: Vec<ipnet::IpNet>) -> Context {
    let audit = Arc::new(AuditSink::open("off").unwrap_or_else(|e| panic!("{e}")));
    Context { trusted_proxies, vault: None, audit, clock: crate::clock::system() }
}

fn build(config: &LimitsConfig) -> Result<Limits, ConfigError> {
    Limits::build(config, context(Vec::new()))
}

fn limits(rules: Vec<RateRuleConfig>) -> Limits {
    build(&LimitsConfig { rules, ..LimitsConfig::default() }).unwrap_or_else(|e| panic!("{e}"))
}

static NO_ARGS: serde_json::Value = serde_json::Value::Null;
static REQUEST: std::sync::LazyLock<RequestFacts> = std::sync::LazyLock::new(RequestFacts::default);

/// One local decision.
fn check(l: &Limits, principal: &Principal, tool: &ToolFacts<'_>) -> Result<(), Limited> {
    let call = CallFacts { principal, tool: *tool, cost: 1, arguments: &NO_ARGS, request: &REQUEST, request_ids: ("r", "") };
    l.check_call(&call).map_err(|r| match r {
        Refusal::Rate(limited) => limited,
        other => panic!("{other:?}"),
    })
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
    assert!(check(&l, &alice, &t).is_ok() && check(&l, &alice, &t).is_ok());
    let limited = check(&l, &alice, &t).unwrap_err();
    assert_eq!(limited.rule, "limits/per-user");
    assert!((29..=30).contains(&limited.retry_after_secs()), "{limited:?}");
    assert!(check(&l, &bob, &t).is_ok(), "bob has his own bucket");
}

#[test]
fn tenant_and_tool_keys_and_targets() {
    let tags = vec!["llm".to_owned()];
    let l = limits(vec![rule("tenant-llm", &["tag:llm"], &[KeyPart::Tenant, KeyPart::Tool], "1/hour")]);
    let (a1, a2, b) = (principal("a1", Some("acme")), principal("a2", Some("acme")), principal("b", Some("beta")));
    let (gpt, other) = (facts("gpt", &tags), facts("search", &[]));
    assert!(check(&l, &a1, &gpt).is_ok());
    assert!(check(&l, &a2, &gpt).is_err(), "one bucket for the tenant and tool");
    assert!(check(&l, &b, &gpt).is_ok(), "another tenant");
    assert!(check(&l, &a1, &facts("claude", &tags)).is_ok(), "another tool");
    for _ in 0..10 {
        assert!(check(&l, &a1, &other).is_ok(), "untargeted tools are not limited");
    }
}

#[test]
fn the_tightest_rule_decides() {
    let l = limits(vec![rule("loose", &[], &[KeyPart::Subject], "100/minute"), rule("tight", &["search"], &[KeyPart::Subject], "1/hour")]);
    let alice = principal("alice", None);
    assert!(check(&l, &alice, &facts("search", &[])).is_ok());
    let limited = check(&l, &alice, &facts("search", &[])).unwrap_err();
    assert_eq!(limited.rule, "limits/tight");
    assert!(limited.retry_after_secs() > 3000);
}

#[test]
fn forwarded_for_counts_only_from_trusted_proxies() {
    let proxies = vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
    let l = Limits::build(&LimitsConfig::default(), context(proxies)).unwrap_or_else(|e| panic!("{e}"));
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
    let l = build(&config).unwrap_or_else(|e| panic!("{e}"));
    let (a, b): (IpAddr, IpAddr) =
        ("192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}")), "192.0.2.2".parse().unwrap_or_else(|e| panic!("{e}")));
    assert!(l.check_ip(a).is_ok() && l.check_ip(a).is_ok());
    assert!(l.check_ip(a).is_err());
    assert!(l.check_ip(b).is_ok());
}

#[test]
fn config_errors_name_their_path() {
    let bad = |rules: Vec<RateRuleConfig>| match build(&LimitsConfig { rules, ..LimitsConfig::default() }) {
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
    assert!(build(&redis).is_err_and(|e| e.to_string().contains("limits.redis.url")));
}

#[test]
fn a_cel_key_names_the_bucket_and_an_error_refuses() {
    let mut r = rule("per-org", &[], &[], "1/hour");
    r.key = Key::Expr { expr: "principal.claims.org".into() };
    let l = limits(vec![r]);
    let member = |sub: &str, org: Option<&str>| {
        let mut p = principal(sub, None);
        if let Some(org) = org {
            p.claims.insert("org".into(), serde_json::json!(org));
        }
        p
    };
    let t = facts("search", &[]);
    assert!(check(&l, &member("a1", Some("acme")), &t).is_ok());
    assert_eq!(check(&l, &member("a2", Some("acme")), &t).unwrap_err().rule, "limits/per-org", "one bucket per org");
    assert!(check(&l, &member("b1", Some("beta")), &t).is_ok(), "another org");
    let call =
        CallFacts { principal: &member("nobody", None), tool: t, cost: 1, arguments: &NO_ARGS, request: &REQUEST, request_ids: ("r", "") };
    assert_eq!(l.check_call(&call), Err(Refusal::KeyError { rule: "limits/per-org".into() }), "no claim: refused, not shared");

    let mut bad = rule("bad", &[], &[], "1/hour");
    bad.key = Key::Expr { expr: "secrets.x".into() };
    assert!(
        build(&LimitsConfig { rules: vec![bad], ..LimitsConfig::default() })
            .is_err_and(|e| e.to_string().contains("limits.rules[0].key.expr"))
    );
}

#[test]
fn calendar_periods_follow_the_time_zone() {
    use chrono::TimeZone;
    use config::Period;
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{e}")).with_timezone(&chrono::Utc);
    let utc = chrono_tz::Tz::UTC;
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap_or_else(|e| panic!("{e}"));
    let now = at("2026-11-30T23:30:00Z");
    assert_eq!(quota::period_of(now, utc, Period::Day), ("2026-11-30".into(), at("2026-12-01T00:00:00Z")));
    assert_eq!(quota::period_of(now, utc, Period::Month), ("2026-11".into(), at("2026-12-01T00:00:00Z")));
    // 00:30 on 1 December in Berlin: a new day and month there already.
    assert_eq!(quota::period_of(now, berlin, Period::Day), ("2026-12-01".into(), at("2026-12-01T23:00:00Z")));
    assert_eq!(quota::period_of(now, berlin, Period::Month), ("2026-12".into(), at("2026-12-31T23:00:00Z")));
    assert_eq!(quota::period_of(at("2026-12-31T12:00:00Z"), utc, Period::Month).1, at("2027-01-01T00:00:00Z"), "into the next year");
    // A day that starts in a DST gap (Santiago skips 00:00-01:00 on 6 September 2026).
    let santiago: chrono_tz::Tz = "America/Santiago".parse().unwrap_or_else(|e| panic!("{e}"));
    let (_, resets) = quota::period_of(at("2026-09-05T12:00:00Z"), santiago, Period::Day);
    assert_eq!(resets.with_timezone(&santiago), santiago.with_ymd_and_hms(2026, 9, 6, 1, 0, 0).unwrap(), "the first hour that exists");
}

#[test]
fn quotas_need_the_vault_and_sound_settings() {
    use config::{Period, QuotaConfig};
    let quota = |budget: u64, warn: u8| QuotaConfig {
        name: "monthly".into(),
        tools: Vec::new(),
        key: vec![KeyPart::Tenant],
        period: Period::Month,
        budget,
        warn_at_percent: warn,
    };
    let err = |config: LimitsConfig| build(&config).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(LimitsConfig { quotas: vec![quota(10, 80)], ..LimitsConfig::default() }).contains("limits.quotas"), "no vault");
    assert!(err(LimitsConfig { timezone: Some("Mars/Olympus".into()), ..LimitsConfig::default() }).contains("limits.timezone"));
    let with_vault = |q: QuotaConfig| {
        let spec = crate::secret::Secret::new(format!("k1:{}", crate::store::envelope::KeyRing::generate_key().expose()));
        let keys = crate::store::envelope::KeyRing::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
        let vault = crate::credentials::Vault::new("sqlite://unused.db".into(), Arc::new(keys), "http://x".into(), context(vec![]).audit);
        let config = LimitsConfig { quotas: vec![q], ..LimitsConfig::default() };
        Limits::build(&config, Context { vault: Some(Arc::new(vault)), ..context(vec![]) }).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(with_vault(quota(0, 80)).contains("limits.quotas[0].budget"));
    assert!(with_vault(quota(10, 101)).contains("limits.quotas[0].warn_at_percent"));
    assert_eq!(with_vault(quota(10, 80)), "");
}
