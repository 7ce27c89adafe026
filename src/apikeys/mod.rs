//! Gateway-issued API keys (`wdn_live_…`, `wdn_test_…`): for callers that cannot run an OAuth
//! flow (a CI job, a cron agent, an app that is not an MCP client).
//!
//! In: a bearer beginning with `wdn_`, handed over by the identity stage ([`KeyVerifier`]). Out:
//! a [`Principal`] like a JWT's, so policy, limits and audit treat both alike; the key's id is
//! the principal's `client_id`, and its tool list a ceiling policy cannot widen.
//!
//! A key is shown once, at creation. The database keeps only HMAC-SHA-256 of it under the
//! server's `api_keys.hash_key` (a dump cannot be brute-forced without that secret) and a short
//! display prefix; the digest found is compared with the one computed in constant time. A
//! verified key is remembered for `cache_ttl` (default 10 s): a revocation takes effect at once
//! on the replica that revoked it and within that time on every other one. Never logs, audits
//! or returns a key after creation.

mod config;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use rand::Rng;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

pub use config::ApiKeysConfig;

use crate::config_error::ConfigError;
use crate::credentials::Vault;
use crate::identity::{AuthError, KeyVerifier, Principal, Subject};
use crate::secret::Secret;
use crate::store::api_keys::ApiKeyRecord;

/// The `iss` of every key's principal (keys are issued by this gateway, not an IdP).
pub const ISSUER: &str = "urn:warden:api-key";

/// Random characters after `wdn_live_` (base62, about 238 bits).
const RANDOM_CHARS: usize = 40;
/// Random characters kept in the display prefix.
const PREFIX_RANDOM_CHARS: usize = 8;
/// Remembered keys at most; the cache is emptied when full.
const CACHE_ENTRIES: usize = 10_000;
/// `last_used_at` is written at most this often per key (one write per key and minute, not
/// one per request).
const TOUCH_EVERY_SECS: i64 = 60;
/// Longest name, subject or tenant accepted.
const MAX_TEXT: usize = 200;
/// Most scopes, roles or tools on one key.
const MAX_ITEMS: usize = 64;

/// Why a key could not be issued or revoked (the admin API turns each into an `AdminError`).
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("scope {0:?} is beyond what api_keys.max_scopes allows")]
    ScopeNotAllowed(String),
    #[error("no such API key")]
    NotFound,
    #[error("storage failed")]
    Storage(#[from] crate::store::StoreError),
}

/// What the admin asks for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    /// The service, or the person the key acts for.
    pub subject: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tool names (or `route:NAME`, or a prefix ending in `*`) the key may call; omitted: what
    /// policy allows.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// `30d`, `12h`…; default `api_keys.default_lifetime`, at most `api_keys.max_lifetime`.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// `live` (default) or `test`: only the key's prefix differs, so leaked test keys are told
    /// apart at a glance.
    #[serde(default)]
    pub environment: Option<String>,
}

/// A verified key, remembered: the principal, or why the key is refused.
struct Cached {
    outcome: Result<(Arc<Principal>, i64), AuthError>,
    key_id: Option<String>,
    until: Instant,
}

/// The keys at run time.
pub struct ApiKeys {
    hash_key: hmac::Key,
    max_scopes: Option<BTreeSet<String>>,
    default_lifetime: Duration,
    max_lifetime: Duration,
    cache_ttl: Duration,
    vault: Arc<Vault>,
    clock: crate::clock::SharedClock,
    /// By the keyed hash of the key.
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    /// When each key's `last_used_at` was last written by this replica.
    touched: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").field("cache_ttl", &self.cache_ttl).finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// `None` when keys are off. Keys live in the vault's database, so they need one.
    pub fn build(
        config: &ApiKeysConfig,
        vault: Option<&Arc<Vault>>,
        clock: &crate::clock::SharedClock,
    ) -> Result<Option<Arc<Self>>, ConfigError> {
        if !config.enabled {
            return Ok(None);
        }
        let err = |field: &str, m: &str| ConfigError::new(format!("api_keys.{field}"), m);
        let vault = vault.ok_or_else(|| err("enabled", "API keys are kept in the vault's database: configure vault"))?;
        let Some(hash_key) = &config.hash_key else {
            return Err(err("hash_key", "required when API keys are enabled (at least 32 characters, e.g. from `warden keys generate`)"));
        };
        if hash_key.expose().len() < 32 {
            return Err(err("hash_key", "must be at least 32 characters (e.g. from `warden keys generate`)"));
        }
        if config.cache_ttl > Duration::from_secs(60) {
            return Err(err("cache_ttl", "at most 60s: a revocation must reach every replica quickly"));
        }
        if config.default_lifetime.is_zero() || config.default_lifetime > config.max_lifetime {
            return Err(err("default_lifetime", "must be greater than 0 and at most max_lifetime"));
        }
        if let Some(scopes) = &config.max_scopes
            && let Some(bad) = scopes.iter().find(|s| !crate::policy::valid_scope(s))
        {
            return Err(err("max_scopes", &format!("{bad:?} is not a valid scope")));
        }
        Ok(Some(Arc::new(Self {
            hash_key: hmac::Key::new(hmac::HMAC_SHA256, hash_key.expose().as_bytes()),
            max_scopes: config.max_scopes.as_ref().map(|s| s.iter().cloned().collect()),
            default_lifetime: config.default_lifetime,
            max_lifetime: config.max_lifetime,
            cache_ttl: config.cache_ttl,
            vault: Arc::clone(vault),
            clock: Arc::clone(clock),
            cache: Mutex::default(),
            touched: Mutex::default(),
        })))
    }

    fn digest(&self, key: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.hash_key, key.as_bytes()).as_ref());
        out
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.unix()).unwrap_or(i64::MAX)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a key: the record (as the admin API shows it) and the key, shown once.
    pub async fn issue(&self, new: NewKey, created_by: &str) -> Result<(ApiKeyRecord, Secret), ApiKeyError> {
        let invalid = |m: &str| ApiKeyError::Invalid(m.to_owned());
        let text_ok = |s: &str| !s.trim().is_empty() && s.len() <= MAX_TEXT && !s.chars().any(char::is_control);
        if !text_ok(&new.name) {
            return Err(invalid("name: 1 to 200 characters, no control characters"));
        }
        if !text_ok(&new.subject) {
            return Err(invalid("subject: 1 to 200 characters, no control characters"));
        }
        if new.tenant.as_deref().is_some_and(|t| !text_ok(t)) {
            return Err(invalid("tenant: 1 to 200 characters, no control characters"));
        }
        let lists = [&new.scopes, &new.roles].into_iter().chain(new.tools.as_ref());
        if lists.into_iter().any(|l| l.len() > MAX_ITEMS || l.iter().any(|s| !text_ok(s))) {
            return Err(invalid("scopes, roles and tools: at most 64 each, 1 to 200 characters"));
        }
        if let Some(bad) = new.scopes.iter().find(|s| !crate::policy::valid_scope(s)) {
            return Err(ApiKeyError::Invalid(format!("scope {bad:?} is not a valid scope")));
        }
        if let Some(max) = &self.max_scopes
            && let Some(bad) = new.scopes.iter().find(|s| !max.contains(*s))
        {
            return Err(ApiKeyError::ScopeNotAllowed(bad.clone()));
        }
        let lifetime = match new.expires_in.as_deref() {
            None => self.default_lifetime,
            Some(text) => humantime::parse_duration(text).map_err(|_| invalid("expires_in: a duration such as 30d or 12h"))?,
        };
        if lifetime.is_zero() || lifetime > self.max_lifetime {
            return Err(ApiKeyError::Invalid(format!(
                "expires_in: greater than 0 and at most {} (api_keys.max_lifetime)",
                humantime::format_duration(self.max_lifetime)
            )));
        }
        let environment = match new.environment.as_deref() {
            None | Some("live") => "live",
            Some("test") => "test",
            Some(_) => return Err(invalid("environment: live or test")),
        };
        let random: String = {
            let mut rng = rand::rng();
            (0..RANDOM_CHARS).map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())])).collect()
        };
        let key = Secret::new(format!("wdn_{environment}_{random}"));
        let prefix = format!("wdn_{environment}_{}", &random[..PREFIX_RANDOM_CHARS]);
        let now = self.now();
        let mut scopes = new.scopes;
        scopes.sort();
        scopes.dedup();
        let record = ApiKeyRecord {
            id: format!("key_{}", uuid::Uuid::now_v7().simple()),
            prefix,
            name: new.name,
            subject: new.subject,
            tenant: new.tenant,
            scopes,
            roles: new.roles,
            tools: new.tools,
            created_by: created_by.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            revoked_at: None,
            last_used_at: None,
        };
        let store = self.vault.store().await?;
        store.create_api_key(&record, &hex(&self.digest(key.expose()))).await?;
        Ok((record, key))
    }

    /// Every key that is not revoked (with `all`, revoked ones too); never a key or a hash.
    pub async fn list(&self, all: bool) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        Ok(self.vault.store().await?.list_api_keys(all).await?)
    }

    /// Revokes a key: refused at once on this replica, within `cache_ttl` on the others.
    pub async fn revoke(&self, id: &str) -> Result<ApiKeyRecord, ApiKeyError> {
        let record = self.vault.store().await?.revoke_api_key(id).await?.ok_or(ApiKeyError::NotFound)?;
        self.cache().retain(|_, c| c.key_id.as_deref() != Some(id));
        Ok(record)
    }

    /// How long a revocation may take to reach other replicas.
    pub fn cache_ttl(&self) -> Duration {
        self.cache_ttl
    }

    async fn check(&self, key: &str) -> Result<Arc<Principal>, AuthError> {
        if key.len() > 256 || !(key.starts_with("wdn_live_") || key.starts_with("wdn_test_")) {
            return Err(AuthError::Malformed);
        }
        let digest = self.digest(key);
        let now = self.now();
        let instant = self.clock.now();
        let cached = self.cache().get(&digest).filter(|c| instant < c.until).map(|c| c.outcome.clone());
        let outcome = match cached {
            Some(outcome) => outcome,
            None => {
                let looked_up = self.look_up(&digest).await;
                if matches!(looked_up, Err(AuthError::KeyStoreUnavailable)) {
                    return looked_up.map(|(p, _)| p);
                }
                let key_id = looked_up.as_ref().ok().and_then(|(p, _)| p.client_id.clone());
                let mut cache = self.cache();
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(digest, Cached { outcome: looked_up.clone(), key_id, until: instant + self.cache_ttl });
                looked_up
            }
        };
        let (principal, expires_at) = outcome?;
        // Checked on every use, cached or not: a key stops at its expiry to the second.
        if now >= expires_at {
            return Err(AuthError::ExpiredApiKey);
        }
        self.touch(&principal, now);
        Ok(principal)
    }

    /// The key stored under `digest`, as a principal with its expiry.
    async fn look_up(&self, digest: &[u8; 32]) -> Result<(Arc<Principal>, i64), AuthError> {
        let computed = hex(digest);
        let found = async { self.vault.store().await?.api_key_by_hash(&computed).await };
        let (record, stored) = match found.await {
            Ok(Some(row)) => row,
            Ok(None) => return Err(AuthError::UnknownApiKey),
            Err(e) => {
                tracing::error!(error = %e, "the API key store failed");
                return Err(AuthError::KeyStoreUnavailable);
            }
        };
        if !bool::from(stored.as_bytes().ct_eq(computed.as_bytes())) {
            return Err(AuthError::UnknownApiKey);
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::RevokedApiKey);
        }
        let expires_at = record.expires_at;
        Ok((Arc::new(self.principal(record)), expires_at))
    }

    /// A key's principal: its subject, tenant, roles and tool list; its scopes within
    /// `max_scopes` as configured now (lowering the ceiling lowers existing keys too).
    fn principal(&self, record: ApiKeyRecord) -> Principal {
        let scopes: BTreeSet<String> =
            record.scopes.into_iter().filter(|s| self.max_scopes.as_ref().is_none_or(|m| m.contains(s))).collect();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(ISSUER));
        claims.insert("sub".into(), json!(record.subject));
        claims.insert("key_id".into(), json!(record.id));
        claims.insert("key_name".into(), json!(record.name));
        claims.insert("exp".into(), json!(record.expires_at));
        claims.insert("scope".into(), json!(scopes.iter().cloned().collect::<Vec<_>>().join(" ")));
        claims.insert("roles".into(), json!(record.roles));
        if let Some(t) = &record.tenant {
            claims.insert("tenant".into(), Value::String(t.clone()));
        }
        Principal {
            subject: Subject::new(record.subject).unwrap_or_else(Subject::gateway),
            issuer: ISSUER.to_owned(),
            client_id: Some(record.id),
            scopes,
            roles: record.roles,
            tenant: record.tenant,
            claims,
            tools: record.tools.map(Arc::from),
            token: None,
        }
    }

    /// Writes `last_used_at`, at most once a minute per key, off the request path.
    fn touch(&self, principal: &Principal, now: i64) {
        let Some(id) = &principal.client_id else { return };
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            if touched.get(id).is_some_and(|t| now - t < TOUCH_EVERY_SECS) {
                return;
            }
            if touched.len() >= CACHE_ENTRIES {
                touched.clear();
            }
            touched.insert(id.clone(), now);
        }
        let (vault, id) = (Arc::clone(&self.vault), id.clone());
        tokio::spawn(async move {
            let touched = async { vault.store().await?.touch_api_key(&id, now).await };
            if let Err(e) = touched.await {
                tracing::warn!(error = %e, "could not record an API key's last use");
            }
        });
    }
}

impl KeyVerifier for ApiKeys {
    fn verify<'a>(&'a self, key: &'a str) -> futures::future::BoxFuture<'a, Result<Arc<Principal>, AuthError>> {
        Box::pin(self.check(key))
    }
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
