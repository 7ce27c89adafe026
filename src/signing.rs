//! Warden's own signing keys: the key pairs that sign what Warden issues (its authorization
//! server's access tokens, and the identity assertions it will send backends, issue 28), kept
//! in the vault's store with the private key sealed under the vault's key ring, and published
//! as a JWK set in which the previous key of each algorithm stays beside the current one after a
//! rotation, so what it signed still verifies until it expires.
//!
//! Access tokens are RS256: a resource server verifies them on every new token, and an RSA-2048
//! signature verifies in half the time of a P-256 one (benches/tokens.rs: 19 µs against 40 µs
//! here), so verifying Warden's own tokens costs what verifying an IdP's does. Signing, once per
//! token issued, is the slow side, and rare. Assertions (compact, for any JWT library) are
//! ES256.
//!
//! In: the vault's store. Out: a [`KeySet`] that signs JWTs and publishes its public keys.
//! Never logs, prints or returns a private key (`Debug` shows the `kid` only).

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::store::{Store, StoreError};

/// The algorithm of Warden's access tokens.
pub const ACCESS_TOKENS: Algorithm = Algorithm::RS256;
/// The algorithm of the identity assertions Warden signs for backends.
pub const ASSERTIONS: Algorithm = Algorithm::ES256;
/// Keys published at once per algorithm: the current one and the one before it.
const PUBLISHED: usize = 2;
/// How long a new assertion key is published before it signs (seconds): the JWK set's
/// `max-age`, so a backend that cached the set before a rotation never meets an unknown `kid`.
pub const ASSERTION_KEY_SETTLE: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no entropy to make a key")]
    Entropy,
    #[error("not a PKCS#8 key of the expected algorithm")]
    BadKey,
    #[error("Warden signs with ES256 and RS256 only")]
    Algorithm,
    #[error("signing failed")]
    Sign,
    #[error("the signing keys could not be stored or read: {0}")]
    Store(#[from] StoreError),
}

/// A private key and its public JWK; its `kid` is its RFC 7638 thumbprint.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    /// When it was stored (Unix seconds; 0 for a key not read from the store).
    pub created_at: i64,
    encoding: EncodingKey,
    jwk: Jwk,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key: P-256 for ES256, RSA-2048 for RS256.
    pub fn generate(alg: Algorithm) -> Result<Self, SigningError> {
        let der: Zeroizing<Vec<u8>> = match alg {
            Algorithm::ES256 => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let signing = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(signing, &rng).map_err(|_| SigningError::Entropy)?;
                Zeroizing::new(pkcs8.as_ref().to_vec())
            }
            Algorithm::RS256 => {
                use aws_lc_rs::encoding::AsDer;
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| SigningError::Entropy)?;
                Zeroizing::new(pair.as_der().map_err(|_| SigningError::Entropy)?.as_ref().to_vec())
            }
            _ => return Err(SigningError::Algorithm),
        };
        Self::from_pkcs8(alg, &der)
    }

    /// A key of `alg` from its PKCS#8 DER.
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self, SigningError> {
        let encoding = match alg {
            Algorithm::ES256 => {
                aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| SigningError::BadKey)?;
                EncodingKey::from_ec_der(der)
            }
            Algorithm::RS256 => {
                aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|_| SigningError::BadKey)?;
                EncodingKey::from_rsa_pem(pkcs8_pem(der).as_bytes()).map_err(|_| SigningError::BadKey)?
            }
            _ => return Err(SigningError::Algorithm),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|_| SigningError::BadKey)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|_| SigningError::BadKey)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { kid, alg, created_at: 0, encoding, jwk, pkcs8: Zeroizing::new(der.to_vec()) })
    }

    /// A compact JWS of `claims`, with this key's `kid` and the media type `typ` (for example
    /// `at+jwt`, RFC 9068).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SigningError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| SigningError::Sign)
    }

    /// The public key, as a JWK with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

/// PKCS#8 DER as PEM (what `jsonwebtoken` reads RSA private keys from).
fn pkcs8_pem(der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The keys in force: for each algorithm the newest signs, and it and the one before it are
/// published.
#[derive(Debug)]
pub struct KeySet {
    /// Newest first.
    keys: Vec<SigningKey>,
}

impl KeySet {
    /// The key that signs with `alg`.
    pub fn current(&self, alg: Algorithm) -> Result<&SigningKey, SigningError> {
        self.keys.iter().find(|k| k.alg == alg).ok_or(SigningError::BadKey)
    }

    /// The key that signs with `alg` for verifiers that cache the JWK set: the newest one that
    /// has been published for `delay` at `now` (Unix seconds), else the oldest one published (a
    /// new key is then still being picked up by verifiers' caches; the first key ever signs at
    /// once, as nobody can have cached anything older).
    pub fn settled(&self, alg: Algorithm, now: i64, delay: i64) -> Result<&SigningKey, SigningError> {
        let mut of_alg = self.keys.iter().filter(|k| k.alg == alg);
        let newest = of_alg.clone().find(|k| k.created_at.saturating_add(delay) <= now);
        newest.or_else(|| of_alg.next_back()).ok_or(SigningError::BadKey)
    }

    /// The public keys, newest first.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.keys.iter().map(|k| k.jwk.clone()).collect() }
    }

    /// The keys in the store, a first key of `alg` made if there is none. Replicas that start
    /// together may each make one; all then sign with the newest (by creation, then `kid`) and
    /// publish both.
    pub async fn load_or_create(store: &Store, alg: Algorithm) -> Result<Self, SigningError> {
        let set = Self::load(store).await?;
        if set.current(alg).is_ok() {
            return Ok(set);
        }
        let key = SigningKey::generate(alg)?;
        store.insert_signing_key(&key.kid, &format!("{alg:?}"), &key.pkcs8).await?;
        Self::load(store).await
    }

    /// A new key of `alg` signs from now on; the one before it stays published, older ones of
    /// that algorithm are retired.
    pub async fn rotate(store: &Store, alg: Algorithm) -> Result<Self, SigningError> {
        let key = SigningKey::generate(alg)?;
        let name = format!("{alg:?}");
        store.insert_signing_key(&key.kid, &name, &key.pkcs8).await?;
        store.retire_signing_keys_beyond(&name, PUBLISHED).await?;
        Self::load(store).await
    }

    /// The keys not retired, newest first, at most [`PUBLISHED`] per algorithm.
    pub async fn load(store: &Store) -> Result<Self, SigningError> {
        let mut keys: Vec<SigningKey> = Vec::new();
        for stored in store.signing_keys().await? {
            let Ok(alg) = stored.alg.parse::<Algorithm>() else { continue };
            if matches!(alg, Algorithm::ES256 | Algorithm::RS256) && keys.iter().filter(|k| k.alg == alg).count() < PUBLISHED {
                let mut key = SigningKey::from_pkcs8(alg, &stored.pkcs8)?;
                key.created_at = stored.created_at;
                keys.push(key);
            }
        }
        Ok(Self { keys })
    }
}

/// How often the signing keys are read again (a rotation on another replica is picked up).
const KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(60);

/// Warden's signing keys as the running gateway uses them: read from the vault's store (a first
/// key of each algorithm in use made there), read again every minute so a rotation on another
/// replica is picked up. One for the whole gateway: the authorization server signs access tokens
/// with it, the upstream stage identity assertions, and `/.well-known/jwks.json` publishes it.
pub struct Keys {
    vault: std::sync::Arc<crate::credentials::Vault>,
    algorithms: Vec<Algorithm>,
    loaded: arc_swap::ArcSwapOption<Loaded>,
    lock: tokio::sync::Mutex<()>,
    clock: crate::clock::SharedClock,
}

/// The keys as last read.
pub struct Loaded {
    pub set: KeySet,
    at: std::time::Instant,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("algorithms", &self.algorithms).finish_non_exhaustive()
    }
}

impl Keys {
    /// Keys of `algorithms`, kept in `vault`'s store.
    pub fn new(vault: std::sync::Arc<crate::credentials::Vault>, algorithms: Vec<Algorithm>, clock: crate::clock::SharedClock) -> Self {
        Self { vault, algorithms, loaded: arc_swap::ArcSwapOption::empty(), lock: tokio::sync::Mutex::new(()), clock }
    }

    fn fresh(&self, loaded: &Loaded) -> bool {
        self.clock.now().saturating_duration_since(loaded.at) < KEY_RELOAD
    }

    /// The keys, read again when they are older than a minute.
    pub async fn current(&self) -> Result<std::sync::Arc<Loaded>, SigningError> {
        if let Some(loaded) = self.loaded.load_full().filter(|l| self.fresh(l)) {
            return Ok(loaded);
        }
        self.reload(false).await
    }

    /// The keys read from the store now (with `force`) or when stale, once for all callers.
    pub async fn reload(&self, force: bool) -> Result<std::sync::Arc<Loaded>, SigningError> {
        let _one = self.lock.lock().await;
        if let Some(loaded) = self.loaded.load_full().filter(|l| !force && self.fresh(l)) {
            return Ok(loaded);
        }
        let store = self.vault.store().await?;
        let mut set = KeySet::load(store).await?;
        for alg in &self.algorithms {
            if set.current(*alg).is_err() {
                set = KeySet::load_or_create(store, *alg).await?;
            }
        }
        let loaded = std::sync::Arc::new(Loaded { set, at: self.clock.now() });
        self.loaded.store(Some(std::sync::Arc::clone(&loaded)));
        Ok(loaded)
    }

    /// The published JWK set (`/.well-known/jwks.json`): only the algorithms in use here.
    pub async fn jwks(&self) -> Result<JwkSet, SigningError> {
        let loaded = self.current().await?;
        let keys = loaded.set.keys.iter().filter(|k| self.algorithms.contains(&k.alg)).map(|k| k.jwk.clone()).collect();
        Ok(JwkSet { keys })
    }
}

impl crate::identity::LocalKeys for Keys {
    fn keys(&self) -> futures::future::BoxFuture<'_, Result<Vec<serde_json::Value>, String>> {
        Box::pin(async {
            let loaded = self.reload(true).await.map_err(|e| e.to_string())?;
            let set = serde_json::to_value(loaded.set.jwks()).map_err(|e| e.to_string())?;
            Ok(set.get("keys").and_then(serde_json::Value::as_array).cloned().unwrap_or_default())
        })
    }
}

impl crate::upstream::assertion::AssertionSigner for Keys {
    fn sign_assertion<'a>(&'a self, claims: &'a serde_json::Value) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let loaded = self.current().await.map_err(|e| e.to_string())?;
            let now = i64::try_from(self.clock.unix()).unwrap_or(i64::MAX);
            let key = loaded.set.settled(ASSERTIONS, now, ASSERTION_KEY_SETTLE).map_err(|e| e.to_string())?;
            key.sign(crate::upstream::assertion::ASSERTION_TYP, claims).map_err(|e| e.to_string())
        })
    }
}

/// `GET /.well-known/jwks.json`: the public keys that verify what Warden signs (access tokens,
/// identity assertions), cacheable for five minutes.
pub async fn jwks_document(axum::extract::State(keys): axum::extract::State<std::sync::Arc<Keys>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match keys.jwks().await {
        Ok(set) => {
            let mut response = axum::Json(set).into_response();
            response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=300"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "signing keys unavailable");
            let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": "signing keys unavailable"});
            (http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_published_key_only() {
        for alg in [ACCESS_TOKENS, ASSERTIONS] {
            sign_and_verify(alg);
        }
    }

    fn sign_and_verify(alg: Algorithm) {
        let key = SigningKey::generate(alg).unwrap();
        let claims =
            serde_json::json!({"iss": "https://warden.example", "sub": "alice", "aud": "https://api.example", "exp": 4_000_000_000u64});
        let token = key.sign("at+jwt", &claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.kid.as_deref(), header.typ.as_deref()), (alg, Some(key.kid.as_str()), Some("at+jwt")));
        let decoding = jsonwebtoken::DecodingKey::from_jwk(key.jwk()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_audience(&["https://api.example"]);
        let verified = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(verified.claims["sub"], "alice");
        let other = SigningKey::generate(alg).unwrap();
        assert_ne!(other.kid, key.kid);
        let wrong = jsonwebtoken::DecodingKey::from_jwk(other.jwk()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &wrong, &validation).is_err());
        // The JWK carries no private part, and Debug shows no key.
        let published = serde_json::to_value(key.jwk()).unwrap();
        assert!(published.get("d").is_none(), "{published}");
        let kty = if alg == Algorithm::ES256 { "EC" } else { "RSA" };
        assert_eq!((published["kty"].as_str(), published["use"].as_str()), (Some(kty), Some("sig")));
        assert_eq!(format!("{key:?}"), format!("SigningKey {{ kid: {:?}, .. }}", key.kid));
    }

    #[test]
    fn a_new_assertion_key_signs_only_once_it_has_been_published_long_enough() {
        let key = |created_at| {
            let mut k = SigningKey::generate(ASSERTIONS).unwrap();
            k.created_at = created_at;
            k
        };
        let (new, old) = (key(1_000), key(100));
        let (new_kid, old_kid) = (new.kid.clone(), old.kid.clone());
        let set = KeySet { keys: vec![new, old] };
        assert_eq!(set.settled(ASSERTIONS, 1_100, 300).unwrap().kid, old_kid, "the new key is still being picked up");
        assert_eq!(set.settled(ASSERTIONS, 1_300, 300).unwrap().kid, new_kid, "published long enough");
        assert_eq!(set.current(ASSERTIONS).unwrap().kid, new_kid, "access tokens take the newest at once");
        let first = KeySet { keys: vec![key(1_000)] };
        assert!(first.settled(ASSERTIONS, 1_000, 300).is_ok(), "the first key ever signs at once");
        assert!(first.settled(ACCESS_TOKENS, 1_000, 300).is_err());
    }

    #[test]
    fn a_key_keeps_its_kid_across_a_reload() {
        for alg in [ACCESS_TOKENS, ASSERTIONS] {
            let key = SigningKey::generate(alg).unwrap();
            let again = SigningKey::from_pkcs8(alg, &key.pkcs8).unwrap();
            assert_eq!(again.kid, key.kid);
            assert!(matches!(SigningKey::from_pkcs8(alg, b"not a key"), Err(SigningError::BadKey)));
        }
        let es = SigningKey::generate(ASSERTIONS).unwrap();
        assert!(SigningKey::from_pkcs8(ACCESS_TOKENS, &es.pkcs8).is_err(), "a key read as another algorithm's");
    }
}
