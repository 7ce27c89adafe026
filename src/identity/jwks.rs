//! A JWKS cache on `jsonwebtoken::jwk`, one per trusted issuer.
//!
//! Keys are fresh for a TTL; a stale set keeps serving while one background refresh runs. An
//! unknown `kid` triggers a refetch that is single-flight (concurrent callers wait for one
//! fetch) and debounced (at most one attempt per `min_refresh`), so hostile tokens with random
//! `kid`s cannot turn the gateway into a flood against the issuer. When the issuer is down,
//! cached keys keep working. Never logs key material.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::time::Instant;

use crate::clock::SharedClock;

use crate::body::read_limited;

const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("no key matches the token's kid and algorithm")]
    UnknownKey,
    #[error("fetching keys failed: {0}")]
    Fetch(String),
}

/// One verification key from the set.
pub struct Key {
    pub decoding: DecodingKey,
    alg: Option<String>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    without_kid: Vec<Arc<Key>>,
    fetched: Option<Instant>,
    generation: u64,
}

impl KeySet {
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        let fits = |k: &Arc<Key>| k.alg.as_deref().is_none_or(|a| a == alg_name(alg).as_str());
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(|k| fits(k)).cloned(),
            // A token without `kid` is accepted only when the choice is unambiguous.
            None => {
                let mut all = self.by_kid.values().chain(self.without_kid.iter()).filter(|k| fits(k));
                match (all.next(), all.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }
}

/// Keys that need no fetch: Warden's own, read from its store (so a rotation on another replica
/// is found by an unknown `kid` like any issuer's).
pub trait LocalKeys: Send + Sync {
    /// The JWK set's `keys`.
    fn keys(&self) -> futures::future::BoxFuture<'_, Result<Vec<serde_json::Value>, String>>;
}

struct RefreshState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

pub struct JwksCache {
    issuer: String,
    /// None for local keys, which are never fetched.
    http: Option<reqwest::Client>,
    ttl: Duration,
    min_refresh: Duration,
    keys: ArcSwap<KeySet>,
    refresh: tokio::sync::Mutex<RefreshState>,
    clock: SharedClock,
    metrics: Option<Arc<crate::telemetry::Metrics>>,
    local: Option<Arc<dyn LocalKeys>>,
}

impl JwksCache {
    /// `jwks_uri: None` discovers it from the issuer's metadata on first use.
    pub fn new(
        issuer: String,
        jwks_uri: Option<String>,
        http: reqwest::Client,
        ttl: Duration,
        min_refresh: Duration,
        clock: SharedClock,
    ) -> Arc<Self> {
        Self::build(issuer, jwks_uri, Some(http), ttl, min_refresh, clock)
    }

    fn build(
        issuer: String,
        jwks_uri: Option<String>,
        http: Option<reqwest::Client>,
        ttl: Duration,
        min_refresh: Duration,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(Self {
            clock,
            issuer,
            http,
            ttl,
            min_refresh,
            keys: ArcSwap::from_pointee(KeySet::default()),
            refresh: tokio::sync::Mutex::new(RefreshState { last_attempt: None, jwks_uri }),
            metrics: None,
            local: None,
        })
    }

    /// A cache of keys read from `source` instead of fetched.
    pub fn local(issuer: String, source: Arc<dyn LocalKeys>, ttl: Duration, min_refresh: Duration, clock: SharedClock) -> Arc<Self> {
        let mut cache = Self::build(issuer, None, None, ttl, min_refresh, clock);
        if let Some(this) = Arc::get_mut(&mut cache) {
            this.local = Some(source);
        }
        cache
    }

    /// Counts fetches in `metrics`. Call before the cache is shared.
    pub fn with_metrics(mut self: Arc<Self>, metrics: Arc<crate::telemetry::Metrics>) -> Arc<Self> {
        if let Some(this) = Arc::get_mut(&mut self) {
            this.metrics = Some(metrics);
        }
        self
    }

    /// Whether a key set has been fetched; fetches one if not (once per `min_refresh`).
    pub async fn ensure_loaded(&self) -> bool {
        let generation = self.keys.load().generation;
        if generation == 0 {
            let _ = self.refresh(0).await;
        }
        self.keys.load().generation > 0
    }

    /// Which fetch of the key set is in force; changes whenever a new set is stored.
    pub fn generation(&self) -> u64 {
        self.keys.load().generation
    }

    /// The key for a token header, fetching or refreshing the set as needed.
    pub async fn key(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, JwksError> {
        let set = self.keys.load_full();
        if let Some(key) = set.select(kid, alg) {
            let now = self.clock.now();
            let stale = set.fetched.is_none_or(|t| now.saturating_duration_since(t) >= self.ttl);
            if stale {
                let this = Arc::clone(self);
                let generation = set.generation;
                tokio::spawn(async move {
                    if let Err(e) = this.refresh(generation).await {
                        tracing::warn!(issuer = %this.issuer, error = %e, "JWKS refresh failed; serving cached keys");
                    }
                });
            }
            return Ok(key);
        }
        if let Err(e) = self.refresh(set.generation).await {
            tracing::warn!(issuer = %self.issuer, error = %e, "JWKS fetch for unknown kid failed");
        }
        self.keys.load().select(kid, alg).ok_or(JwksError::UnknownKey)
    }

    /// Fetches a new set unless another caller already did since `seen_generation`, or an
    /// attempt was made less than `min_refresh` ago.
    async fn refresh(&self, seen_generation: u64) -> Result<(), JwksError> {
        let mut state = self.refresh.lock().await;
        if self.keys.load().generation != seen_generation {
            return Ok(());
        }
        let now = self.clock.now();
        if state.last_attempt.is_some_and(|t| now.saturating_duration_since(t) < self.min_refresh) {
            return Ok(());
        }
        state.last_attempt = Some(now);
        let doc = match &self.local {
            Some(local) => JwksDocument { keys: local.keys().await.map_err(JwksError::Fetch)? },
            None => self.fetch(&mut state).await?,
        };
        let mut set = KeySet { fetched: Some(self.clock.now()), generation: seen_generation + 1, ..KeySet::default() };
        for raw in doc.keys {
            // One unusable key (unknown kty, encryption key) must not hide the others.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else { continue };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else { continue };
            let alg = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
            let key = Arc::new(Key { decoding, alg });
            match jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid, key);
                }
                None => set.without_kid.push(key),
            }
        }
        tracing::debug!(issuer = %self.issuer, keys = set.by_kid.len() + set.without_kid.len(), "JWKS fetched");
        self.keys.store(Arc::new(set));
        Ok(())
    }

    /// The issuer's JWK set over HTTP, its `jwks_uri` discovered the first time.
    async fn fetch(&self, state: &mut RefreshState) -> Result<JwksDocument, JwksError> {
        let uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let doc: Result<JwksDocument, JwksError> = self.get_json(&uri).await;
        if let Some(metrics) = &self.metrics {
            metrics.jwks_fetch(&self.issuer, doc.is_ok());
        }
        doc
    }

    /// RFC 8414 authorization server metadata, then OpenID Connect discovery.
    async fn discover(&self) -> Result<String, JwksError> {
        let mut last = JwksError::Fetch("no metadata".into());
        for url in metadata_urls(&self.issuer) {
            match self.get_json::<ServerMetadata>(&url).await {
                Ok(meta) if meta.issuer == self.issuer => match meta.jwks_uri {
                    Some(uri) => return Ok(uri),
                    None => last = JwksError::Fetch(format!("{url} has no jwks_uri")),
                },
                Ok(_) => last = JwksError::Fetch(format!("{url} names another issuer")),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, JwksError> {
        use tracing::Instrument;
        let span = match url::Url::parse(url) {
            Ok(parsed) => crate::telemetry::traces::http_client_span(None, "GET", &parsed, "jwks"),
            Err(_) => tracing::Span::none(),
        };
        let fetched = async {
            let http = self.http.as_ref().ok_or_else(|| JwksError::Fetch("local keys are not fetched".into()))?;
            let resp = http.get(url).timeout(FETCH_TIMEOUT).send().await.map_err(|e| JwksError::Fetch(format!("{url}: {e}")))?;
            crate::telemetry::traces::record_outcome(&span, Some(resp.status().as_u16()), None);
            if !resp.status().is_success() {
                return Err(JwksError::Fetch(format!("{url}: HTTP {}", resp.status())));
            }
            let body = read_limited(resp, MAX_DOCUMENT_BYTES).await.map_err(|e| JwksError::Fetch(format!("{url}: {e}")))?;
            serde_json::from_slice(&body).map_err(|e| JwksError::Fetch(format!("{url}: {e}")))
        }
        .instrument(span.clone())
        .await;
        if fetched.is_err() {
            crate::telemetry::traces::record_outcome(&span, None, Some("jwks_fetch_failed"));
        }
        fetched
    }
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    jwks_uri: Option<String>,
}

/// RFC 8414 §3.1: the well-known segment goes between host and path.
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(issuer) else { return Vec::new() };
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
    ]
}

/// The JOSE name of an algorithm (`RS256`, `EdDSA`, ...).
pub fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}
