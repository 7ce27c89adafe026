//! The vault at run time: the store (opened on first use, or at start-up by `warden serve`),
//! the public base URL that connect links and the OAuth callback live under, and the audit
//! sink connection events go to.

use std::sync::Arc;

use base64::Engine;
use sha2::Digest;

use super::Secret;
use crate::audit::AuditSink;
use crate::store::envelope::KeyRing;
use crate::store::{ConnectionKey, Store, StoreError};

/// How long a connect link, and then the OAuth state it starts, can be used.
pub const FLOW_LIFETIME_SECS: i64 = 600;

pub struct Vault {
    database: String,
    keys: Arc<KeyRing>,
    store: tokio::sync::OnceCell<Store>,
    public_base: String,
    pub audit: Arc<AuditSink>,
    /// How long a fresh token read from the database may be reused without reading again.
    pub token_cache: std::time::Duration,
    /// Token lifetimes and the token cache read the time here.
    pub clock: crate::clock::SharedClock,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("public_base", &self.public_base).finish_non_exhaustive()
    }
}

impl Vault {
    pub fn new(database: String, keys: Arc<KeyRing>, public_base: String, audit: Arc<AuditSink>) -> Self {
        Self {
            database,
            keys,
            store: tokio::sync::OnceCell::new(),
            public_base,
            audit,
            token_cache: std::time::Duration::ZERO,
            clock: crate::clock::system(),
        }
    }

    /// The store, opened and migrated on first use.
    pub async fn store(&self) -> Result<&Store, StoreError> {
        self.store
            .get_or_try_init(|| async {
                Ok::<_, StoreError>(Store::open(&self.database, Arc::clone(&self.keys)).await?.with_clock(Arc::clone(&self.clock)))
            })
            .await
    }

    /// Where providers send the browser back: register this at the provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/callback", self.public_base)
    }

    pub fn public_base(&self) -> &str {
        &self.public_base
    }

    /// A new single-use connect link for `key`, valid [`FLOW_LIFETIME_SECS`]. Only its hash is
    /// stored.
    pub async fn connect_link(&self, key: &ConnectionKey) -> Result<String, StoreError> {
        let link = random_token().ok_or(StoreError::NoEntropy)?;
        self.store().await?.create_link(&digest(link.expose()), key).await?;
        Ok(format!("{}/oauth/connect/{}", self.public_base, link.expose()))
    }
}

/// 32 random bytes from the system RNG, base64url without padding; `None` only without an
/// entropy source.
pub fn random_token() -> Option<Secret> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// Hex SHA-256: how links, states and browser bindings are stored and looked up.
pub fn digest(value: &str) -> String {
    crate::sha256_hex(value)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}
