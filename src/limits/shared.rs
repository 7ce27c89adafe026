//! Rate limits shared by replicas: GCRA in Redis, one `EVALSHA` per decision covering every
//! rule that applies to the call.
//!
//! Each bucket is one Redis key holding its theoretical arrival time (TAT, microseconds of
//! Redis's own clock, so replicas' clocks do not matter). A call is allowed when, for every
//! bucket, `max(TAT, now) + interval - now <= interval * burst`; then every bucket's TAT moves
//! on by its interval, and the key expires when the bucket would be full again. If any bucket
//! refuses, none is charged, and the answer is that bucket's wait. The script's arguments
//! are numbers only: no caller text is ever evaluated. Times are written with `%.0f`: Lua's own
//! number formatting keeps 14 digits, too few for microseconds since 1970.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::config::RedisConfig;

const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local worst, worst_wait = 0, 0
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval
  local wait = next_tat - now - interval * burst
  if wait > 0 then
    if wait > worst_wait then worst, worst_wait = i, wait end
  end
  tats[i] = next_tat
end
if worst > 0 then return {worst, worst_wait} end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', string.format('%.0f', math.ceil((tats[i] - now) / 1000) + 1))
end
return {0, 0}
";

/// Between two connection attempts while Redis is down, decisions do not wait for it.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct Shared {
    url: crate::secret::Secret,
    timeout: Duration,
    prefix: String,
    script: redis::Script,
    connection: OnceLock<ConnectionManager>,
    /// Unix milliseconds before which no request is sent (after a failure).
    paused_until_ms: AtomicU64,
    /// Whether the last decision could not reach Redis (for the audit of transitions).
    down: AtomicBool,
}

/// One bucket of the decision: its key, and its rule's interval and burst.
pub struct Bucket<'a> {
    pub key: &'a str,
    pub interval: Duration,
    pub burst: u32,
}

/// Redis could not decide in time (unreachable, slow, or an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable;

/// A change of Redis's reachability, for one audit event per transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentDown,
    CameBack,
}

impl Shared {
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        // Checked now so a bad URL is a config error, not a failure at the first call.
        redis::Client::open(config.url.expose()).map_err(|_| "not a redis:// or rediss:// URL".to_owned())?;
        if config.timeout.is_zero() || config.timeout > Duration::from_secs(1) {
            return Err("between 1ms and 1s: a decision must never wait long on Redis".into());
        }
        Ok(Self {
            url: config.url.clone(),
            timeout: config.timeout,
            prefix: config.prefix.clone(),
            script: redis::Script::new(GCRA),
            connection: OnceLock::new(),
            paused_until_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
        })
    }

    /// The key of a bucket in Redis: the prefix, the rule and a digest of the bucket's key
    /// (which may hold claims: never stored in clear).
    pub fn key(&self, rule: &str, bucket: &str) -> String {
        // The first 16 bytes of the digest, in hex.
        format!("{}{rule}:{}", self.prefix, &crate::sha256_hex(bucket)[..32])
    }

    /// One round trip: `Ok(None)` when every bucket had room (all charged), `Ok(Some((i,
    /// wait)))` when bucket `i` refused with the longest wait (none charged).
    pub async fn check(&self, buckets: &[Bucket<'_>]) -> (Result<Option<(usize, Duration)>, Unreachable>, Option<Transition>) {
        let result = self.run(buckets).await;
        let was_down = self.down.swap(result.is_err(), Ordering::Relaxed);
        let transition = match (was_down, result.is_err()) {
            (false, true) => Some(Transition::WentDown),
            (true, false) => Some(Transition::CameBack),
            _ => None,
        };
        (result, transition)
    }

    async fn run(&self, buckets: &[Bucket<'_>]) -> Result<Option<(usize, Duration)>, Unreachable> {
        if unix_ms() < self.paused_until_ms.load(Ordering::Relaxed) {
            return Err(Unreachable);
        }
        let mut connection = self.connection()?;
        let mut invocation = self.script.prepare_invoke();
        for b in buckets {
            let interval = u64::try_from(b.interval.as_micros()).unwrap_or(u64::MAX).max(1);
            invocation.key(b.key).arg(interval).arg(b.burst);
        }
        let answer = tokio::time::timeout(self.timeout, invocation.invoke_async::<(i64, i64)>(&mut connection)).await;
        match answer {
            Ok(Ok((0, _))) => Ok(None),
            Ok(Ok((i, wait_us))) => {
                let i = usize::try_from(i - 1).unwrap_or(0);
                Ok(Some((i, Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis rate-limit decision failed");
                self.pause();
                Err(Unreachable)
            }
            Err(_) => {
                self.pause();
                Err(Unreachable)
            }
        }
    }

    fn pause(&self) {
        let until = unix_ms().saturating_add(u64::try_from(RETRY_AFTER_FAILURE.as_millis()).unwrap_or(u64::MAX));
        self.paused_until_ms.store(until, Ordering::Relaxed);
    }

    /// The connection manager, created on first use (it reconnects by itself).
    fn connection(&self) -> Result<ConnectionManager, Unreachable> {
        if let Some(c) = self.connection.get() {
            return Ok(c.clone());
        }
        let client = redis::Client::open(self.url.expose()).map_err(|_| Unreachable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(|_| Unreachable)?;
        Ok(self.connection.get_or_init(|| manager).clone())
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
