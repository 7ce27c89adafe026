//! Warden's own signing keys: ES256 key pairs that sign what Warden issues (its authorization
//! server's access tokens and the identity assertions it sends backends, issues 26 and 28),
//! kept in the vault's store with the private key sealed under the vault's key ring, and
//! published as a JWK set in which the previous key stays beside the current one after a
//! rotation, so what it signed still verifies until it expires.
//!
//! In: the vault's store. Out: a [`KeySet`] that signs JWTs and publishes its public keys.
//! Never logs, prints or returns a private key (`Debug` shows the `kid` only).

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::store::{Store, StoreError};

/// The one algorithm Warden signs with.
pub const ALGORITHM: &str = "ES256";
/// Keys published at once: the current one and the one before it.
const PUBLISHED: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no entropy to make a key")]
    Entropy,
    #[error("not a P-256 PKCS#8 key")]
    BadKey,
    #[error("signing failed")]
    Sign,
    #[error("the signing keys could not be stored or read: {0}")]
    Store(#[from] StoreError),
}

/// A private ES256 key and its public JWK; its `kid` is its RFC 7638 thumbprint.
pub struct SigningKey {
    pub kid: String,
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
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, SigningError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| SigningError::Entropy)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SigningError> {
        aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| SigningError::BadKey)?;
        let encoding = EncodingKey::from_ec_der(der);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|_| SigningError::BadKey)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|_| SigningError::BadKey)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { kid, encoding, jwk, pkcs8: Zeroizing::new(der.to_vec()) })
    }

    /// A compact JWS of `claims`, with this key's `kid` and the media type `typ` (for example
    /// `at+jwt`, RFC 9068).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SigningError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| SigningError::Sign)
    }

    /// The public key, as a JWK with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

/// The keys in force: the newest signs, and it and the one before it are published.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

impl KeySet {
    /// The key that signs.
    pub fn current(&self) -> &SigningKey {
        // A set is never empty: `load_or_create` and `rotate` make a key first.
        &self.keys[0]
    }

    /// The public keys, current first.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.keys.iter().map(|k| k.jwk.clone()).collect() }
    }

    /// The keys in the store, a first one made if there is none. Replicas that start together
    /// may each make one; all then sign with the newest (by creation, then `kid`) and publish
    /// both.
    pub async fn load_or_create(store: &Store) -> Result<Self, SigningError> {
        if let Some(set) = Self::load(store).await? {
            return Ok(set);
        }
        let key = SigningKey::generate()?;
        store.insert_signing_key(&key.kid, ALGORITHM, &key.pkcs8).await?;
        Self::load(store).await?.ok_or(SigningError::BadKey)
    }

    /// A new key signs from now on; the one before it stays published, older ones are retired.
    pub async fn rotate(store: &Store) -> Result<Self, SigningError> {
        let key = SigningKey::generate()?;
        store.insert_signing_key(&key.kid, ALGORITHM, &key.pkcs8).await?;
        store.retire_signing_keys_beyond(PUBLISHED).await?;
        Self::load(store).await?.ok_or(SigningError::BadKey)
    }

    /// The keys not retired, newest first, at most [`PUBLISHED`].
    async fn load(store: &Store) -> Result<Option<Self>, SigningError> {
        let mut keys = Vec::new();
        for (_, alg, der) in store.signing_keys().await?.into_iter().take(PUBLISHED) {
            if alg == ALGORITHM {
                keys.push(SigningKey::from_pkcs8(&der)?);
            }
        }
        Ok((!keys.is_empty()).then_some(Self { keys }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_published_key_only() {
        let key = SigningKey::generate().unwrap();
        let claims =
            serde_json::json!({"iss": "https://warden.example", "sub": "alice", "aud": "https://api.example", "exp": 4_000_000_000u64});
        let token = key.sign("at+jwt", &claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.kid.as_deref(), header.typ.as_deref()), (Algorithm::ES256, Some(key.kid.as_str()), Some("at+jwt")));
        let decoding = jsonwebtoken::DecodingKey::from_jwk(key.jwk()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://api.example"]);
        let verified = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(verified.claims["sub"], "alice");
        let other = SigningKey::generate().unwrap();
        assert_ne!(other.kid, key.kid);
        let wrong = jsonwebtoken::DecodingKey::from_jwk(other.jwk()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &wrong, &validation).is_err());
        // The JWK carries no private part, and Debug shows no key.
        let published = serde_json::to_value(key.jwk()).unwrap();
        assert!(published.get("d").is_none(), "{published}");
        assert_eq!(
            (published["kty"].as_str(), published["crv"].as_str(), published["use"].as_str()),
            (Some("EC"), Some("P-256"), Some("sig"))
        );
        assert_eq!(format!("{key:?}"), format!("SigningKey {{ kid: {:?}, .. }}", key.kid));
    }

    #[test]
    fn a_key_keeps_its_kid_across_a_reload() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(&key.pkcs8).unwrap();
        assert_eq!(again.kid, key.kid);
        assert!(matches!(SigningKey::from_pkcs8(b"not a key"), Err(SigningError::BadKey)));
    }
}
