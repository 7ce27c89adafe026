//! `api_keys:` as written in the config file.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// Whether `wdn_` API keys are accepted at all (they need `vault`, where they are kept).
    /// Default: false.
    pub enabled: bool,
    /// The server secret keys are hashed with (HMAC-SHA-256), at least 32 characters, usually
    /// `${WARDEN_API_KEY_HASH_KEY}`; the same on every replica. Changing it invalidates every
    /// key. Required when enabled.
    pub hash_key: Option<crate::secret::Secret>,
    /// The scopes a key may carry at most; a key asking for another is refused at creation, and
    /// a scope later removed here stops counting on existing keys. Default: any scope.
    pub max_scopes: Option<Vec<String>>,
    /// A key's lifetime when the request names none. Default: 90d.
    #[serde(with = "humantime_serde")]
    pub default_lifetime: Duration,
    /// The longest lifetime a key may be given. Default: 365d.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// How long a replica remembers a verified key: a revocation reaches other replicas within
    /// this time (at once on the one that revoked). At most 60s. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            hash_key: None,
            max_scopes: None,
            default_lifetime: Duration::from_secs(90 * 86_400),
            max_lifetime: Duration::from_secs(365 * 86_400),
            cache_ttl: Duration::from_secs(10),
        }
    }
}
