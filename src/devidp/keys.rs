//! RSA signing keys for the development authorization server (and for tests that need to mint
//! tokens): generated with aws-lc-rs, published as a JWK with a `kid`.

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// A private RS256 key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
    /// PKCS#8 PEM of the private key, for `to_pem`; never logged (`Debug` prints the kid only).
    pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("key generation failed: {0}")]
pub struct KeyError(String);

impl SigningKey {
    /// A fresh 2048-bit RSA key with a random `kid`.
    pub fn generate() -> Result<Self, KeyError> {
        let kid = format!("dev-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self::generate_with_kid(kid)
    }

    pub fn generate_with_kid(kid: String) -> Result<Self, KeyError> {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|e| KeyError(e.to_string()))?;
        let der = pair.as_der().map_err(|e| KeyError(e.to_string()))?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Self::from_pem(kid, &pem)
    }

    /// A key from its PKCS#8 (or PKCS#1) PEM.
    pub fn from_pem(kid: String, pem: &str) -> Result<Self, KeyError> {
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| KeyError(e.to_string()))?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).map_err(|e| KeyError(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { kid, encoding, jwk, pem: pem.to_owned() })
    }

    /// A key from its PEM whose `kid` is its RFC 7638 thumbprint, so the same key always has the
    /// same `kid` (a restarted server keeps publishing the keys its tokens name).
    pub fn from_pem_with_thumbprint_kid(pem: &str) -> Result<Self, KeyError> {
        Self::from_pem(String::new(), pem)?.with_thumbprint_kid()
    }

    fn with_thumbprint_kid(mut self) -> Result<Self, KeyError> {
        let thumbprint = self.jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).map_err(|e| KeyError(e.to_string()))?;
        self.kid = format!("dev-{}", thumbprint.chars().take(16).collect::<String>());
        self.jwk.common.key_id = Some(self.kid.clone());
        Ok(self)
    }

    /// The key kept in `path` (PKCS#8 PEM), its `kid` its thumbprint.
    pub fn load(path: &std::path::Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        Self::from_pem_with_thumbprint_kid(&pem)
    }

    /// The key kept in `path`, created there (mode 0600) if the file does not exist.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Self::load(path);
        }
        let fresh = Self::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        std::io::Write::write_all(&mut file, fresh.pem.as_bytes()).map_err(|e| KeyError(format!("{}: {e}", path.display())))?;
        fresh.with_thumbprint_kid()
    }

    /// The private key as PEM, to store it (the conformance suite keeps its issuer key on disk).
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// The public half.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A JWK Set holding the public halves of `keys`.
    pub fn jwks(keys: &[&SigningKey]) -> JwkSet {
        JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() }
    }

    /// Signs claims as an RS256 JWT with `typ: at+jwt` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        self.sign_with_header(&header, claims)
    }

    /// Signs with a caller-chosen header (tests use it for `kid`-less or odd tokens).
    pub fn sign_with_header<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, KeyError> {
        jsonwebtoken::encode(header, claims, &self.encoding).map_err(|e| KeyError(e.to_string()))
    }
}
