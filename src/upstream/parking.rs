//! Upstreams that said "too many requests": a `429` with `Retry-After` (seconds or an HTTP
//! date) or `RateLimit-Reset` (seconds) parks that upstream, for the credential holder the
//! call was made as, until then. Calls in that window are refused without contacting it
//! (`upstream_rate_limited`, with the time left), so a runaway agent cannot keep hammering an
//! API that already asked it to stop, nor get Warden's shared API key banned.

use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;

/// The longest an upstream is parked, whatever it asks (a hostile or broken upstream cannot
/// take a tool away for days).
pub const MAX_PARK: Duration = Duration::from_secs(3600);

/// Parked upstreams by key (origin and credential holder), with when they may be called again.
#[derive(Debug, Default)]
pub struct Parking {
    parked: DashMap<String, Instant>,
}

impl Parking {
    /// How long `key` stays parked, if it is.
    pub fn remaining(&self, key: &str) -> Option<Duration> {
        let until = *self.parked.get(key)?;
        match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                self.parked.remove_if(key, |_, u| *u == until);
                None
            }
        }
    }

    /// Parks `key` for `wait` (at most [`MAX_PARK`]); a longer park already in place stands.
    pub fn park(&self, key: String, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_PARK);
        self.parked.entry(key).and_modify(|u| *u = (*u).max(until)).or_insert(until);
    }
}

/// How long a `429` asks to wait: `Retry-After` (delay-seconds or an HTTP date), else
/// `RateLimit-Reset` (seconds, the IETF RateLimit fields draft). None without either.
pub fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    text("retry-after")
        .and_then(|v| parse_retry_after(v, now))
        .or_else(|| text("ratelimit-reset").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs))
}

/// One `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value).ok().map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")));
        }
        h
    }

    #[test]
    fn the_wait_comes_from_retry_after_or_ratelimit_reset() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(retry_after(&headers(&[("retry-after", "30")]), now), Some(Duration::from_secs(30)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("ratelimit-reset", "12")]), now), Some(Duration::from_secs(12)));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon"), ("ratelimit-reset", "5")]), now), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn parking_is_per_key_bounded_and_ends() {
        let p = Parking::default();
        p.park("a".into(), Duration::from_secs(86400 * 7));
        assert!(p.remaining("a").is_some_and(|d| d <= MAX_PARK), "capped");
        assert_eq!(p.remaining("b"), None, "another key is not parked");
        p.park("c".into(), Duration::ZERO);
        assert_eq!(p.remaining("c"), None, "a zero wait parks nothing");
    }
}
