//! A secret string: redacted in `Debug` and `Display`, wiped from memory when dropped.
//!
//! Within [`with_fingerprints`] (and only there), `Debug` prints a digest of the value keyed by
//! a random per-process key instead: a config's snapshot then shows that a secret changed,
//! while neither the snapshot nor anything else can show the secret.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroize;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself: for the one place that puts it on a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

thread_local! {
    static FINGERPRINTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every `Secret`'s `Debug`, on this thread, printing a keyed digest of its value
/// instead of `[REDACTED]`: for comparing configs, never for output.
pub fn with_fingerprints<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            FINGERPRINTS.with(|on| on.set(self.0));
        }
    }
    let _reset = Reset(FINGERPRINTS.with(|on| on.replace(true)));
    f()
}

/// The per-process key of the fingerprints (random; `None` if the system has no randomness,
/// and then secrets stay redacted even in fingerprints).
fn fingerprint_key() -> Option<&'static aws_lc_rs::hmac::Key> {
    static KEY: OnceLock<Option<aws_lc_rs::hmac::Key>> = OnceLock::new();
    KEY.get_or_init(|| aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new()).ok()).as_ref()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match fingerprint_key().filter(|_| FINGERPRINTS.with(Cell::get)) {
            Some(key) => {
                let tag = aws_lc_rs::hmac::sign(key, self.0.as_bytes());
                f.write_str("Secret(")?;
                for b in &tag.as_ref()[..16] {
                    write!(f, "{b:02x}")?;
                }
                f.write_str(")")
            }
            None => f.write_str("Secret([REDACTED])"),
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_only_fingerprints_tell_secrets_apart() {
        let (a, b) = (Secret::new("hunter2-one"), Secret::new("hunter2-two"));
        assert_eq!(format!("{a:?}"), "Secret([REDACTED])");
        assert_eq!(format!("{a}"), "[REDACTED]");
        let (fa, fb, fa2) = with_fingerprints(|| (format!("{a:?}"), format!("{b:?}"), format!("{:?}", a.clone())));
        assert_ne!(fa, fb, "a changed secret shows");
        assert_eq!(fa, fa2, "the same secret has the same fingerprint");
        assert!(!fa.contains("hunter2") && fa.len() == "Secret()".len() + 32, "{fa}");
        assert_eq!(format!("{a:?}"), "Secret([REDACTED])", "redacted again afterwards");
    }
}
