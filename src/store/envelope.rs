//! Encryption at rest: AES-256-GCM in a self-describing envelope that names its key,
//! `{"kid": "<key id>", "d": "<base64(nonce | ciphertext | tag)>"}`.
//!
//! A [`KeyRing`] holds every key that may decrypt and one active key that encrypts; rotation
//! adds a new active key and re-encrypts, while old keys decrypt until removed. Each envelope is
//! bound to its record by associated data (for example `connection:42:access_token`), so a
//! ciphertext copied onto another record does not decrypt. Keys never appear in `Debug`,
//! errors or logs.

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

const KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("key ring: {0}")]
    KeyRing(String),
    #[error("envelope is malformed")]
    Malformed,
    #[error("no key {0:?} in the key ring")]
    UnknownKey(String),
    /// Wrong key material, wrong associated data, or altered bytes: indistinguishable by design.
    #[error("envelope does not decrypt")]
    Undecryptable,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    kid: String,
    d: String,
}

/// The keys that decrypt, and the one that encrypts.
pub struct KeyRing {
    active: String,
    keys: HashMap<String, LessSafeKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeyRing").field("active", &self.active).field("kids", &kids).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// `kid:base64key,kid:base64key,…`, the first being the active key (as in an environment
    /// variable or a file). Each key is 32 random bytes.
    pub fn parse(spec: &Secret) -> Result<Self, EnvelopeError> {
        let mut active = None;
        let mut keys = HashMap::new();
        for entry in spec.expose().split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, material) = entry.split_once(':').ok_or_else(|| EnvelopeError::KeyRing("each key is written kid:base64".into()))?;
            if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(EnvelopeError::KeyRing("a key id is letters, digits, _ - .".into()));
            }
            let bytes = STANDARD.decode(material.trim()).map_err(|_| EnvelopeError::KeyRing(format!("key {kid:?} is not base64")))?;
            if bytes.len() != KEY_LEN {
                return Err(EnvelopeError::KeyRing(format!("key {kid:?} must be {KEY_LEN} bytes")));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| EnvelopeError::KeyRing(format!("key {kid:?} is unusable")))?;
            if keys.insert(kid.to_owned(), LessSafeKey::new(key)).is_some() {
                return Err(EnvelopeError::KeyRing(format!("key {kid:?} appears twice")));
            }
            active.get_or_insert_with(|| kid.to_owned());
        }
        let active = active.ok_or_else(|| EnvelopeError::KeyRing("no keys".into()))?;
        Ok(Self { active, keys })
    }

    /// A new random key, written for a key ring entry.
    pub fn generate_key() -> Secret {
        let bytes: [u8; KEY_LEN] = rand::random();
        Secret::new(STANDARD.encode(bytes))
    }

    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// Encrypts with the active key under a fresh random nonce.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, EnvelopeError> {
        let key = self.keys.get(&self.active).ok_or_else(|| EnvelopeError::UnknownKey(self.active.clone()))?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad), &mut sealed)
            .map_err(|_| EnvelopeError::Undecryptable)?;
        let mut d = Vec::with_capacity(NONCE_LEN + sealed.len());
        d.extend_from_slice(&nonce_bytes);
        d.extend_from_slice(&sealed);
        serde_json::to_string(&Envelope { kid: self.active.clone(), d: STANDARD.encode(d) }).map_err(|_| EnvelopeError::Malformed)
    }

    /// Decrypts with the key the envelope names.
    pub fn decrypt(&self, envelope: &str, aad: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let env: Envelope = serde_json::from_str(envelope).map_err(|_| EnvelopeError::Malformed)?;
        let key = self.keys.get(&env.kid).ok_or_else(|| EnvelopeError::UnknownKey(env.kid.clone()))?;
        let d = STANDARD.decode(env.d).map_err(|_| EnvelopeError::Malformed)?;
        if d.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(EnvelopeError::Malformed);
        }
        let (nonce, sealed) = d.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| EnvelopeError::Malformed)?;
        let mut buf = sealed.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| EnvelopeError::Undecryptable)?;
        Ok(plain.to_vec())
    }

    /// Decrypts a secret (UTF-8), for the one place that uses it.
    pub fn decrypt_secret(&self, envelope: &str, aad: &[u8]) -> Result<Secret, EnvelopeError> {
        let bytes = self.decrypt(envelope, aad)?;
        String::from_utf8(bytes).map(Secret::new).map_err(|_| EnvelopeError::Malformed)
    }

    /// Whether an envelope was sealed with a key other than the active one.
    pub fn needs_rotation(&self, envelope: &str) -> Result<bool, EnvelopeError> {
        let env: Envelope = serde_json::from_str(envelope).map_err(|_| EnvelopeError::Malformed)?;
        Ok(env.kid != self.active)
    }

    /// Re-encrypts under the active key (rotation); an envelope already under it is returned as is.
    pub fn reencrypt(&self, envelope: &str, aad: &[u8]) -> Result<String, EnvelopeError> {
        if !self.needs_rotation(envelope)? {
            return Ok(envelope.to_owned());
        }
        let mut plain = self.decrypt(envelope, aad)?;
        let sealed = self.encrypt(&plain, aad);
        zeroize::Zeroize::zeroize(&mut plain);
        sealed
    }
}
