//! The limits' configuration: `limits:` as parsed.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Where rate-limit state lives: `local` (this process). Default: `local`.
    #[serde(default)]
    pub backend: Backend,
    /// Rate limits on tool calls.
    #[serde(default)]
    pub rules: Vec<RateRuleConfig>,
    /// A per-client-IP limit checked before the token is verified.
    #[serde(default)]
    pub pre_auth: Option<PreAuthConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Local,
    /// Shared between replicas (not yet available: refused by `warden check`).
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRuleConfig {
    /// Unique; audit events of refused calls name it as `limits/<name>`.
    pub name: String,
    /// Targets as in policy rules (name, glob, `tag:`, `server:`). Default: every tool.
    #[serde(default)]
    pub tools: Vec<String>,
    /// What one bucket is for: any of `subject`, `tenant`, `client`, `tool`, `server`.
    /// Default: `[subject]`.
    #[serde(default = "default_key")]
    pub key: Vec<KeyPart>,
    /// `N/second`, `N/minute` or `N/hour`.
    pub rate: String,
    /// Calls allowed at once before the rate applies. Default: N.
    #[serde(default)]
    pub burst: Option<u32>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreAuthConfig {
    /// Requests per client IP: `N/second`, `N/minute` or `N/hour`.
    pub rate: String,
    #[serde(default)]
    pub burst: Option<u32>,
}

fn default_key() -> Vec<KeyPart> {
    vec![KeyPart::Subject]
}
