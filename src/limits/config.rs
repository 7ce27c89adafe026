//! The limits' configuration: `limits:` as parsed.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Where rate-limit state lives: `local` (this process) or `redis` (shared by every
    /// replica on `redis.url`). Default: `local`.
    #[serde(default)]
    pub backend: Backend,
    /// The shared Redis, for `backend: redis`.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Rate limits on tool calls.
    #[serde(default)]
    pub rules: Vec<RateRuleConfig>,
    /// Budgets in cost units per calendar day or month, kept in the vault's database.
    #[serde(default)]
    pub quotas: Vec<QuotaConfig>,
    /// The time zone whose calendar days and months quotas count in (an IANA name such as
    /// `Europe/Berlin`). Default: `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// A per-client-IP limit checked before the token is verified.
    #[serde(default)]
    pub pre_auth: Option<PreAuthConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Local,
    /// Shared between replicas through `redis.url`.
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS).
    pub url: crate::secret::Secret,
    /// How long one decision may wait for Redis before the rule's `fallback` applies.
    /// Default: 50ms.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Put before every key Warden writes. Default: `warden:rl:`.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRuleConfig {
    /// Unique; audit events of refused calls name it as `limits/<name>`.
    pub name: String,
    /// Targets as in policy rules (name, glob, `tag:`, `server:`). Default: every tool.
    #[serde(default)]
    pub tools: Vec<String>,
    /// What one bucket is for: any of `subject`, `tenant`, `client`, `tool`, `server`, or
    /// `{expr: <CEL>}`. Default: `[subject]`.
    #[serde(default)]
    pub key: Key,
    /// `N/second`, `N/minute` or `N/hour`.
    pub rate: String,
    /// Calls allowed at once before the rate applies. Default: N.
    #[serde(default)]
    pub burst: Option<u32>,
    /// With `backend: redis`, when Redis cannot answer in time: `local` (this replica's own
    /// bucket decides) or `fail_closed` (the call is refused). Default: `local`.
    #[serde(default)]
    pub fallback: Fallback,
}

/// What a bucket or budget is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// Any combination of the caller's and the tool's facts.
    Parts(Vec<KeyPart>),
    /// A CEL expression over `principal`, `tool` and `request` (as policy conditions see
    /// them) whose value (a string, number, bool or null) names the bucket.
    Expr { expr: String },
}

impl Default for Key {
    fn default() -> Self {
        Self::Parts(vec![KeyPart::Subject])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPart {
    Subject,
    Tenant,
    Client,
    Tool,
    Server,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    #[default]
    Local,
    FailClosed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Unique; refusals and usage name it as `quotas/<name>`.
    pub name: String,
    /// Targets as in policy rules. Default: every tool.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Whose budget: any of `subject`, `tenant`, `client`, `tool`, `server`. Default:
    /// `[subject]`.
    #[serde(default = "default_parts")]
    pub key: Vec<KeyPart>,
    /// `day` or `month`, calendar periods in `limits.timezone`.
    pub period: Period,
    /// Cost units per period (a tool's `cost` defaults to 1).
    pub budget: u64,
    /// Percent of the budget at which one `quota_warning` audit event is written per period
    /// and key. Default: 80; 0 turns the warning off.
    #[serde(default = "default_warn")]
    pub warn_at_percent: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreAuthConfig {
    /// Requests per client IP: `N/second`, `N/minute` or `N/hour`.
    pub rate: String,
    #[serde(default)]
    pub burst: Option<u32>,
}

fn default_parts() -> Vec<KeyPart> {
    vec![KeyPart::Subject]
}

fn default_warn() -> u8 {
    80
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}

fn default_redis_prefix() -> String {
    "warden:rl:".into()
}
