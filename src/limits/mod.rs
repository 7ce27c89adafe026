//! Limits stage: rate limits on tool calls per identity, and a per-client-IP limit before
//! authentication.
//!
//! In: `limits:` and `server.trusted_proxies` from the config. Out: [`Limits`], asked by the
//! gate: [`Limits::check_ip`] before the token is verified (so a flood cannot make Warden spend
//! RSA verifications) and [`Limits::check_call`] after policy allowed a `tools/call`
//! (`tools/list` is never counted). Token buckets are `governor`'s GCRA, keyed in a `DashMap`;
//! keys idle long enough to be full again are dropped now and then, so memory follows the
//! active callers. Several rules may apply to a call; the tightest (the longest wait) decides.

pub mod config;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config_error::ConfigError;
use crate::identity::Principal;
use crate::policy::{Target, ToolFacts};
use config::{Backend, KeyPart, LimitsConfig};

/// Checks between two purges of idle buckets.
const PURGE_EVERY: u64 = 4096;

pub struct Limits {
    rules: Vec<RateRule>,
    pre_auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<ipnet::IpNet>,
    checks: AtomicU64,
    /// The limiters' clock, read only to say how long a refused caller must wait.
    clock: DefaultClock,
}

struct RateRule {
    name: String,
    targets: Vec<Target>,
    key: Vec<KeyPart>,
    limiter: DefaultKeyedRateLimiter<String>,
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
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// `N/second|minute|hour` (and a burst, default N) as a quota.
pub fn parse_rate(text: &str, burst: Option<u32>) -> Result<Quota, String> {
    let (n, unit) = text.split_once('/').ok_or("a rate is N/second, N/minute or N/hour")?;
    let n: u32 = n.trim().parse().map_err(|_| format!("{n:?} is not a whole number"))?;
    let n = NonZeroU32::new(n).ok_or("the rate must be at least 1")?;
    let unit = match unit.trim() {
        "second" | "s" => Duration::from_secs(1),
        "minute" | "m" => Duration::from_secs(60),
        "hour" | "h" => Duration::from_secs(3600),
        other => return Err(format!("unknown unit {other:?}: second, minute or hour")),
    };
    let burst = match burst {
        Some(b) => NonZeroU32::new(b).ok_or("burst must be at least 1")?,
        None => n,
    };
    let quota = Quota::with_period(unit / n.get()).ok_or("the rate is too high")?;
    Ok(quota.allow_burst(burst))
}

impl Limits {
    pub fn build(config: &LimitsConfig, trusted_proxies: &[ipnet::IpNet]) -> Result<Self, ConfigError> {
        if config.backend == Backend::Redis {
            return Err(ConfigError::new("limits.backend", "redis is not available yet; use local"));
        }
        let mut rules: Vec<RateRule> = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.iter().enumerate() {
            let at = |field: &str| format!("limits.rules[{i}].{field}");
            if r.name.is_empty() || !r.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(ConfigError::new(at("name"), "must be letters, digits, _ - ."));
            }
            if rules.iter().any(|o| o.name == r.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate rule name {:?}", r.name)));
            }
            if r.key.is_empty() {
                return Err(ConfigError::new(at("key"), "name at least one of subject, tenant, client, tool, server"));
            }
            let mut targets = Vec::with_capacity(r.tools.len());
            for (j, t) in r.tools.iter().enumerate() {
                targets.push(Target::parse(t).map_err(|m| ConfigError::new(format!("limits.rules[{i}].tools[{j}]"), m))?);
            }
            let quota = parse_rate(&r.rate, r.burst).map_err(|m| ConfigError::new(at("rate"), m))?;
            rules.push(RateRule { name: r.name.clone(), targets, key: r.key.clone(), limiter: RateLimiter::dashmap(quota) });
        }
        let pre_auth = match &config.pre_auth {
            Some(p) => {
                let quota = parse_rate(&p.rate, p.burst).map_err(|m| ConfigError::new("limits.pre_auth.rate", m))?;
                Some(RateLimiter::dashmap(quota))
            }
            None => None,
        };
        Ok(Self { rules, pre_auth, trusted_proxies: trusted_proxies.to_vec(), checks: AtomicU64::new(0), clock: DefaultClock::default() })
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

    /// The rate limits that apply to a call of `tool` by `principal`: each applicable rule
    /// spends one token of its bucket; if any bucket is empty the call is refused, naming the
    /// rule with the longest wait.
    pub fn check_call(&self, principal: &Principal, tool: &ToolFacts<'_>) -> Result<(), Limited> {
        if self.rules.is_empty() {
            return Ok(());
        }
        self.tick();
        let mut tightest: Option<Limited> = None;
        for rule in &self.rules {
            if !rule.targets.is_empty() && !rule.targets.iter().any(|t| t.matches(tool)) {
                continue;
            }
            let key = bucket_key(&rule.key, principal, tool);
            if let Err(not_until) = rule.limiter.check_key(&key) {
                let wait = not_until.wait_time_from(self.clock.now());
                if tightest.as_ref().is_none_or(|t| wait > t.retry_after) {
                    tightest = Some(Limited { rule: format!("limits/{}", rule.name), retry_after: wait });
                }
            }
        }
        tightest.map_or(Ok(()), Err)
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

/// One bucket per distinct value of the key's parts (an absent tenant or client is its own
/// value, never another caller's).
fn bucket_key(parts: &[KeyPart], principal: &Principal, tool: &ToolFacts<'_>) -> String {
    let mut key = String::with_capacity(64);
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
    key
}

#[cfg(test)]
mod tests;
