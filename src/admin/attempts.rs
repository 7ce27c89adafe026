//! Failed admin-token presentations, bounded per client IP: the admin API's bearer and the
//! console's sign-in form share one budget, so neither can be used to guess the token faster.
//!
//! Only failures count (automation calling the admin API with the right token is never slowed):
//! each failure takes a cell from a `governor` bucket for the client IP (5 at once, then one
//! every 12 s). A failure the bucket refuses blocks that IP until the bucket would admit
//! another; while blocked, presentations are answered 429 `too_many_attempts` with
//! `Retry-After` before the token is even compared, and audited. The client IP is the one the
//! limits stage trusts (`server.trusted_proxies`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Failures allowed at once from one IP, and how fast that allowance comes back.
const BURST: u32 = 5;
const REFILL: Duration = Duration::from_secs(12);
/// Above this many tracked IPs, entries whose state has fully recovered are dropped.
const TRACKED: usize = 4096;

pub struct FailedAttempts {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    blocked: DashMap<IpAddr, Instant>,
    clock: DefaultClock,
}

impl Default for FailedAttempts {
    fn default() -> Self {
        let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(REFILL).map_or_else(|| Quota::per_minute(burst), |q| q.allow_burst(burst));
        Self { failures: RateLimiter::keyed(quota), blocked: DashMap::new(), clock: DefaultClock::default() }
    }
}

impl FailedAttempts {
    /// How long `ip` must still wait, if it is blocked.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let until = *self.blocked.get(&ip)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.blocked.remove(&ip);
            return None;
        }
        Some(left)
    }

    /// Records a failure from `ip`; returns how long it is now blocked, if this failure was one
    /// too many.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        if self.failures.len() > TRACKED {
            self.failures.retain_recent();
            self.blocked.retain(|_, until| *until > Instant::now());
        }
        let not_until = self.failures.check_key(&ip).err()?;
        let wait = not_until.wait_time_from(self.clock.now()).max(Duration::from_secs(1));
        self.blocked.insert(ip, Instant::now() + wait);
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_count_and_a_blocked_ip_waits() {
        let attempts = FailedAttempts::default();
        let (a, b): (IpAddr, IpAddr) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        for _ in 0..BURST {
            assert_eq!(attempts.failed(a), None, "the first failures are allowed");
            assert_eq!(attempts.blocked(a), None);
        }
        let wait = attempts.failed(a).unwrap_or_else(|| panic!("one failure too many blocks"));
        assert!(wait > Duration::from_secs(10) && wait <= REFILL, "{wait:?}");
        assert!(attempts.blocked(a).is_some_and(|left| left <= wait));
        assert_eq!(crate::limits::retry_after_secs(Duration::from_millis(11_200)), 12);
        assert_eq!(attempts.blocked(b), None, "another address is not blocked");
        assert_eq!(attempts.failed(b), None);
    }
}
