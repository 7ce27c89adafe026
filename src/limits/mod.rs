//! Limits stage: rate limits and quotas on tool calls per identity, and a per-client-IP limit
//! before authentication.
//!
//! In: `limits:` and `server.trusted_proxies` from the config. Out: [`Limits`], asked by the
//! gate ([`Limits::check_ip`], before the token is verified, so a flood cannot make Warden
//! spend RSA verifications) and by the handler ([`Limits::admit`], once policy allowed a
//! `tools/call` and its arguments are valid; `tools/list` is never counted).
//!
//! Rate limits are GCRA token buckets: `governor`'s, keyed in a `DashMap`, in this process
//! (`backend: local`), or one Lua script in Redis shared by every replica (`backend: redis`,
//! [`shared`]), with each rule's `fallback` deciding when Redis does not answer in time.
//! Several rules may apply to a call; the tightest (the longest wait) decides. Quotas
//! ([`quota`]) are budgets per calendar day or month kept in the vault's database, charged
//! after the rate limits passed.

pub mod config;
pub mod quota;
mod shared;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use serde_json::Value;

use crate::audit::{AuditEvent, AuditSink, Verdict};
use crate::config_error::ConfigError;
use crate::identity::Principal;
use crate::policy::cel::Condition;
use crate::policy::{RequestFacts, Target, ToolFacts};
use config::{Backend, Fallback, Key, KeyPart, LimitsConfig};
pub use quota::QuotaRefusal;

/// Checks between two purges of idle buckets.
const PURGE_EVERY: u64 = 4096;

pub struct Limits {
    rules: Vec<RateRule>,
    quotas: quota::Quotas,
    shared: Option<shared::Shared>,
    audit: Arc<AuditSink>,
    pre_auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<ipnet::IpNet>,
    checks: AtomicU64,
    /// The limiters' clock, read only to say how long a refused caller must wait.
    clock: DefaultClock,
}

struct RateRule {
    name: String,
    targets: Vec<Target>,
    key: BucketKey,
    rate: Rate,
    fallback: Fallback,
    /// This process's buckets: the whole story locally, the fallback with Redis.
    limiter: DefaultKeyedRateLimiter<String>,
}

enum BucketKey {
    Parts(Vec<KeyPart>),
    Expr(Box<Condition>),
}

/// A rate: one call per `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub interval: Duration,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> governor::Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        governor::Quota::with_period(self.interval).map_or_else(|| governor::Quota::per_second(burst), |q| q.allow_burst(burst))
    }
}

/// A call refused by a rate limit: which rule, and when a retry can succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub rule: String,
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds to wait, at least 1 (what `Retry-After` and `retryAfterSeconds` carry).
    pub fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.retry_after)
    }
}

/// `wait` in whole seconds, rounded up, at least 1: a `Retry-After` value.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Why [`Limits::admit`] refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over a rate limit.
    Rate(Limited),
    /// Over a quota, or the quota's database did not answer.
    Quota(QuotaRefusal),
    /// Redis did not answer and the rule (`limits/<name>`) says `fallback: fail_closed`.
    Unavailable { rule: String },
    /// The rule's CEL key could not be evaluated for this call: refused, as a policy
    /// condition's error is.
    KeyError { rule: String },
}

/// How the call's limits were decided, for its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// As configured.
    Decided,
    /// Redis did not answer: this replica's own buckets decided (`fallback: local`).
    LocalFallback,
}

impl Admission {
    /// What the audit event's `limits` field says; none when decided as configured.
    pub fn audit_note(self) -> Option<&'static str> {
        match self {
            Self::Decided => None,
            Self::LocalFallback => Some("local_fallback"),
        }
    }
}

/// What the limits see of one call.
pub struct CallFacts<'a> {
    pub principal: &'a Principal,
    pub tool: ToolFacts<'a>,
    /// Cost units the call spends of each quota it falls under.
    pub cost: u64,
    pub arguments: &'a Value,
    pub request: &'a RequestFacts,
    /// The request's id and `traceparent`, for the events the limits write themselves.
    pub request_ids: (&'a str, &'a str),
}

/// `N/second|minute|hour` (and a burst, default N).
pub fn parse_rate(text: &str, burst: Option<u32>) -> Result<Rate, String> {
    let (n, unit) = text.split_once('/').ok_or("a rate is N/second, N/minute or N/hour")?;
    let n: u32 = n.trim().parse().map_err(|_| format!("{n:?} is not a whole number"))?;
    if n == 0 {
        return Err("the rate must be at least 1".into());
    }
    let unit = match unit.trim() {
        "second" | "s" => Duration::from_secs(1),
        "minute" | "m" => Duration::from_secs(60),
        "hour" | "h" => Duration::from_secs(3600),
        other => return Err(format!("unknown unit {other:?}: second, minute or hour")),
    };
    let burst = burst.unwrap_or(n);
    if burst == 0 {
        return Err("burst must be at least 1".into());
    }
    let interval = unit / n;
    if interval.is_zero() {
        return Err("the rate is too high".into());
    }
    Ok(Rate { interval, burst })
}

/// Rule and quota names: they appear in audit events, errors and Redis keys.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err("must be 1 to 64 letters, digits, _ - .");
    }
    Ok(())
}

fn parse_targets(tools: &[String], at: impl Fn(usize) -> String) -> Result<Vec<Target>, ConfigError> {
    tools.iter().enumerate().map(|(j, t)| Target::parse(t).map_err(|m| ConfigError::new(at(j), m))).collect()
}

/// What [`Limits::build`] needs besides the config.
pub struct Context {
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub vault: Option<Arc<crate::credentials::Vault>>,
    pub audit: Arc<AuditSink>,
    pub clock: crate::clock::SharedClock,
}

impl Limits {
    pub fn build(config: &LimitsConfig, context: Context) -> Result<Self, ConfigError> {
        let shared = match (config.backend, &config.redis) {
            (Backend::Local, _) => None,
            (Backend::Redis, None) => return Err(ConfigError::new("limits.redis.url", "backend: redis needs redis.url")),
            (Backend::Redis, Some(redis)) => Some(shared::Shared::new(redis).map_err(|m| ConfigError::new("limits.redis", m))?),
        };
        let mut rules: Vec<RateRule> = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.iter().enumerate() {
            let at = |field: &str| format!("limits.rules[{i}].{field}");
            check_name(&r.name).map_err(|m| ConfigError::new(at("name"), m))?;
            if rules.iter().any(|o| o.name == r.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate rule name {:?}", r.name)));
            }
            let key = match &r.key {
                Key::Parts(parts) if parts.is_empty() => {
                    return Err(ConfigError::new(at("key"), "name at least one of subject, tenant, client, tool, server"));
                }
                Key::Parts(parts) => BucketKey::Parts(parts.clone()),
                Key::Expr { expr } => BucketKey::Expr(Box::new(Condition::compile(expr).map_err(|m| ConfigError::new(at("key.expr"), m))?)),
            };
            let rate = parse_rate(&r.rate, r.burst).map_err(|m| ConfigError::new(at("rate"), m))?;
            rules.push(RateRule {
                name: r.name.clone(),
                targets: parse_targets(&r.tools, |j| format!("limits.rules[{i}].tools[{j}]"))?,
                key,
                rate,
                fallback: r.fallback,
                limiter: RateLimiter::dashmap(rate.quota()),
            });
        }
        let pre_auth = match &config.pre_auth {
            Some(p) => {
                let rate = parse_rate(&p.rate, p.burst).map_err(|m| ConfigError::new("limits.pre_auth.rate", m))?;
                Some(RateLimiter::dashmap(rate.quota()))
            }
            None => None,
        };
        let quotas =
            quota::Quotas::build(&config.quotas, config.timezone.as_deref(), context.vault, Arc::clone(&context.audit), context.clock)?;
        Ok(Self {
            rules,
            quotas,
            shared,
            audit: context.audit,
            pre_auth,
            trusted_proxies: context.trusted_proxies,
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        })
    }

    /// The client's IP: the socket's, or, when the socket is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy. A header from anyone
    /// else changes nothing.
    pub fn client_ip(&self, socket: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&socket) {
            return socket;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        hops.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(socket)
    }

    /// The pre-authentication limit for one client IP.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        let Some(limiter) = &self.pre_auth else { return Ok(()) };
        self.tick();
        limiter
            .check_key(&ip)
            .map_err(|not_until| Limited { rule: "limits/pre_auth".into(), retry_after: not_until.wait_time_from(self.clock.now()) })
    }

    /// Whether any rate limit or quota can apply to a call (if not, [`Limits::admit`] is not
    /// worth a future).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.quotas.is_empty()
    }

    /// The rate limits, then the quotas, of one call. A call refused by a rate limit spends no
    /// quota.
    pub async fn admit(&self, call: &CallFacts<'_>) -> Result<Admission, Refusal> {
        let admission = self.admit_rate(call).await?;
        if !self.quotas.is_empty() {
            self.quotas.charge(call.principal, &call.tool, call.cost, call.request_ids).await.map_err(Refusal::Quota)?;
        }
        Ok(admission)
    }

    /// The rate limits only: for a federated resource read, prompt get or completion, which
    /// spend no quota (quotas budget tool calls).
    pub async fn admit_rate(&self, call: &CallFacts<'_>) -> Result<Admission, Refusal> {
        match &self.shared {
            Some(shared) => self.check_shared(shared, call).await,
            None => {
                self.check_call(call)?;
                Ok(Admission::Decided)
            }
        }
    }

    /// The rules that apply to a call, with each one's bucket key.
    fn applicable<'r>(&'r self, call: &CallFacts<'_>) -> Result<Vec<(&'r RateRule, String)>, Refusal> {
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.applies(&call.tool)) {
            let mut key = String::with_capacity(64);
            rule.bucket(call, &mut key)?;
            out.push((rule, key));
        }
        Ok(out)
    }

    /// The local rate limits of a call: each applicable rule spends one token of its bucket;
    /// if any bucket is empty the call is refused, naming the rule with the longest wait. One
    /// key buffer serves every rule (a bucket's key is copied only when the bucket is new).
    pub fn check_call(&self, call: &CallFacts<'_>) -> Result<(), Refusal> {
        if self.rules.is_empty() {
            return Ok(());
        }
        self.tick();
        let mut key = String::with_capacity(96);
        let mut tightest: Option<Limited> = None;
        for rule in self.rules.iter().filter(|r| r.applies(&call.tool)) {
            key.clear();
            rule.bucket(call, &mut key)?;
            rule.spend(&key, &self.clock, &mut tightest);
        }
        tightest.map_or(Ok(()), |l| Err(Refusal::Rate(l)))
    }

    fn check_local(applicable: &[(&RateRule, String)], clock: &DefaultClock) -> Result<(), Refusal> {
        let mut tightest: Option<Limited> = None;
        for (rule, key) in applicable {
            rule.spend(key, clock, &mut tightest);
        }
        tightest.map_or(Ok(()), |l| Err(Refusal::Rate(l)))
    }

    /// The rate limits in Redis: one round trip for every applicable rule. When Redis does not
    /// answer in time, a `fail_closed` rule refuses; otherwise the local buckets decide.
    async fn check_shared(&self, shared: &shared::Shared, call: &CallFacts<'_>) -> Result<Admission, Refusal> {
        let applicable = self.applicable(call)?;
        if applicable.is_empty() {
            return Ok(Admission::Decided);
        }
        let keys: Vec<String> = applicable.iter().map(|(rule, key)| shared.key(&rule.name, key)).collect();
        let buckets: Vec<shared::Bucket<'_>> = applicable
            .iter()
            .zip(&keys)
            .map(|((rule, _), key)| shared::Bucket { key, interval: rule.rate.interval, burst: rule.rate.burst })
            .collect();
        let (answer, transition) = shared.check(&buckets).await;
        if let Some(transition) = transition {
            let (decision, reason) = match transition {
                shared::Transition::WentDown => ("error", "limits_backend_unavailable"),
                shared::Transition::CameBack => ("allow", "limits_backend_recovered"),
            };
            tracing::warn!(reason, "rate-limit backend (redis)");
            self.audit.emit(AuditEvent::limits_backend(Verdict { decision, reason, status: 0 }));
        }
        match answer {
            Ok(None) => Ok(Admission::Decided),
            Ok(Some((i, wait))) => {
                let rule = applicable.get(i).map_or_else(String::new, |(r, _)| format!("limits/{}", r.name));
                Err(Refusal::Rate(Limited { rule, retry_after: wait }))
            }
            Err(shared::Unreachable) => {
                if let Some((rule, _)) = applicable.iter().find(|(r, _)| r.fallback == Fallback::FailClosed) {
                    return Err(Refusal::Unavailable { rule: format!("limits/{}", rule.name) });
                }
                self.tick();
                Self::check_local(&applicable, &self.clock)?;
                Ok(Admission::LocalFallback)
            }
        }
    }

    /// Quota usage, for `warden limits usage` and the admin API.
    pub async fn usage(&self, filter: &crate::store::usage::UsageFilter) -> Result<Vec<quota::UsageReport>, crate::store::StoreError> {
        self.quotas.usage(filter).await
    }

    /// Now and then, drops the buckets that are full again (their callers went quiet).
    fn tick(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            for rule in &self.rules {
                rule.limiter.retain_recent();
            }
            if let Some(limiter) = &self.pre_auth {
                limiter.retain_recent();
            }
        }
    }
}

impl RateRule {
    fn applies(&self, tool: &ToolFacts<'_>) -> bool {
        self.targets.is_empty() || self.targets.iter().any(|t| t.matches(tool))
    }

    /// Writes the call's bucket key for this rule into `key`.
    fn bucket(&self, call: &CallFacts<'_>, key: &mut String) -> Result<(), Refusal> {
        match &self.key {
            BucketKey::Parts(parts) => write_key(parts, call.principal, &call.tool, key),
            BucketKey::Expr(expr) => {
                let activation = crate::policy::cel::activation(expr.roots, call.principal, &call.tool, Some(call.arguments), call.request);
                key.push_str(&expr.eval_key(&activation).map_err(|why| {
                    tracing::debug!(rule = %self.name, %why, "rate-limit key not evaluated: call refused");
                    Refusal::KeyError { rule: format!("limits/{}", self.name) }
                })?);
            }
        }
        Ok(())
    }

    /// Spends a token of `key`'s bucket, or records the wait if this rule is the tightest yet.
    fn spend(&self, key: &String, clock: &DefaultClock, tightest: &mut Option<Limited>) {
        if let Err(not_until) = self.limiter.check_key(key) {
            let wait = not_until.wait_time_from(clock.now());
            if tightest.as_ref().is_none_or(|t| wait > t.retry_after) {
                *tightest = Some(Limited { rule: format!("limits/{}", self.name), retry_after: wait });
            }
        }
    }
}

/// One bucket per distinct value of the key's parts (an absent tenant or client is its own
/// value, never another caller's).
fn bucket_key(parts: &[KeyPart], principal: &Principal, tool: &ToolFacts<'_>) -> String {
    let mut key = String::with_capacity(64);
    write_key(parts, principal, tool, &mut key);
    key
}

fn write_key(parts: &[KeyPart], principal: &Principal, tool: &ToolFacts<'_>, key: &mut String) {
    for part in parts {
        match part {
            KeyPart::Subject => {
                key.push_str(&principal.issuer);
                key.push('\u{1f}');
                key.push_str(principal.subject.as_str());
            }
            KeyPart::Tenant => key.push_str(principal.tenant.as_deref().unwrap_or("\u{0}")),
            KeyPart::Client => key.push_str(principal.client_id.as_deref().unwrap_or("\u{0}")),
            KeyPart::Tool => key.push_str(tool.name),
            KeyPart::Server => key.push_str(tool.server.unwrap_or("\u{0}")),
        }
        key.push('\u{1e}');
    }
}

#[cfg(test)]
mod tests;
