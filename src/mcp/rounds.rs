//! Multi round-trip requests relayed (2026-07-28, SEP-2322): a federated server answers a call
//! with an `InputRequiredResult` (ask the user, ask the model, list roots) and expects the
//! client to call again with the answers and the server's `requestState`.
//!
//! The client never sees the server's state. It gets Warden's instead: the server's state, the
//! round's number and the first round's request id, encrypted and authenticated with the vault's
//! key ring (AES-256-GCM, `store::envelope`) and bound, as associated data, to the caller
//! (issuer and subject), the tool and its server. A state altered in any byte, sealed for
//! another caller or another tool, or older than [`STATE_TTL`] does not open, so a client can
//! neither forge a server's state nor replay another caller's. Without a vault the key is made
//! at start-up: rounds then work within one process (a replica restarted, or another replica,
//! refuses the state, and the client starts the call again).
//!
//! In: what a retried call carries. Out: the server's state to send on, or a refusal; and the
//! state to hand the client for the next round.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::identity::Principal;
use crate::store::envelope::KeyRing;

/// How long a client may take to answer a round.
pub const STATE_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// What Warden keeps in the state it hands the client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Round {
    /// The server's own `requestState`, as it sent it.
    #[serde(rename = "s", skip_serializing_if = "Option::is_none")]
    pub server_state: Option<String>,
    /// Which round the retry is (the first call is round 1).
    #[serde(rename = "n")]
    pub number: u32,
    /// The request id of the first round: the audit events of one call's rounds share it.
    #[serde(rename = "f")]
    pub first: String,
    /// Unix seconds after which the state no longer opens.
    #[serde(rename = "e")]
    pub expires: u64,
    /// The call held upstream for the answer (a server of the older revisions asked during it;
    /// `held`), on the replica that holds it.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// Seals and opens what Warden hands a client to bring back: a round's request state, and a
/// caller's session on the older revisions ([`super::sessions`]).
pub struct Rounds {
    ring: Arc<KeyRing>,
}

/// Why a retried call's state was refused (one answer for all: the client learns nothing more).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused;

impl Rounds {
    /// With the vault's key ring, so every replica opens what any replica sealed; `None`: a key
    /// made now, for this process only.
    pub fn new(ring: Option<Arc<KeyRing>>) -> Self {
        let ring = ring.unwrap_or_else(|| {
            let spec = crate::secret::Secret::new(format!("rounds:{}", KeyRing::generate_key().expose()));
            // A key just generated always parses.
            Arc::new(KeyRing::parse(&spec).unwrap_or_else(|_| unreachable!("a generated key parses")))
        });
        Self { ring }
    }

    /// The state for the client's next call: `round`, bound to this caller, tool and server.
    pub fn seal(&self, principal: &Principal, tool: &str, server: &str, round: &Round) -> Option<String> {
        self.seal_value(STATE_DOMAIN, &[principal.issuer.as_str(), principal.subject.as_str(), tool, server], round)
    }

    /// The round a retried call's state names, if it opens for this caller, tool and server and
    /// has not expired at `now` (unix seconds).
    pub fn open(&self, principal: &Principal, tool: &str, server: &str, state: &str, now: u64) -> Result<Round, Refused> {
        let round: Round = self.open_value(STATE_DOMAIN, &[principal.issuer.as_str(), principal.subject.as_str(), tool, server], state)?;
        if round.expires < now {
            return Err(Refused);
        }
        Ok(round)
    }

    /// `value` sealed for what `parts` name, in `domain` (what it is: a round's state, a
    /// session), as URL-safe Base64.
    pub(super) fn seal_value(&self, domain: &[u8], parts: &[&str], value: &impl Serialize) -> Option<String> {
        let payload = serde_json::to_vec(value).ok()?;
        let sealed = self.ring.encrypt(&payload, &binding(domain, parts)).ok()?;
        use base64::Engine;
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
    }

    /// What [`Rounds::seal_value`] sealed, if it opens for the same `domain` and `parts`.
    pub(super) fn open_value<T: serde::de::DeserializeOwned>(&self, domain: &[u8], parts: &[&str], sealed: &str) -> Result<T, Refused> {
        use base64::Engine;
        let envelope = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).map_err(|_| Refused)?;
        let envelope = std::str::from_utf8(&envelope).map_err(|_| Refused)?;
        let payload = self.ring.decrypt(envelope, &binding(domain, parts)).map_err(|_| Refused)?;
        serde_json::from_slice(&payload).map_err(|_| Refused)
    }
}

/// What a round's state is.
const STATE_DOMAIN: &[u8] = b"warden/request-state/v1";

/// What a sealed value is bound to: what it is, then who, which tool, which server (each
/// length-prefixed, so no two different lists read the same).
fn binding(domain: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut out = domain.to_vec();
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A caller of `https://idp.example` (the sealing tests' and `sessions`').
    pub(in crate::mcp) fn principal(subject: &str) -> Principal {
        Principal {
            subject: crate::identity::Subject::new(subject).unwrap_or_else(crate::identity::Subject::gateway),
            issuer: "https://idp.example".into(),
            client_id: None,
            scopes: Default::default(),
            roles: Vec::new(),
            tenant: None,
            claims: Default::default(),
            tools: None,
            token: None,
        }
    }

    #[test]
    fn a_state_opens_only_for_its_caller_tool_and_server_and_in_time() {
        let rounds = Rounds::new(None);
        let (alice, bob) = (principal("alice"), principal("bob"));
        let round = Round { server_state: Some("server's".into()), number: 2, first: "req-1".into(), expires: 1_000, held: None };
        let sealed = rounds.seal(&alice, "fx_ask", "fx", &round).unwrap();
        assert!(!sealed.contains("server's"), "the server's state is not readable");
        assert_eq!(rounds.open(&alice, "fx_ask", "fx", &sealed, 999), Ok(round));
        assert_eq!(rounds.open(&bob, "fx_ask", "fx", &sealed, 999), Err(Refused), "another caller's");
        assert_eq!(rounds.open(&alice, "fx_other", "fx", &sealed, 999), Err(Refused), "another tool's");
        assert_eq!(rounds.open(&alice, "fx_ask", "gx", &sealed, 999), Err(Refused), "another server's");
        assert_eq!(rounds.open(&alice, "fx_ask", "fx", &sealed, 1_001), Err(Refused), "expired");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(rounds.open(&alice, "fx_ask", "fx", std::str::from_utf8(&tampered).unwrap(), 999), Err(Refused));
        assert_eq!(rounds.open(&alice, "fx_ask", "fx", &format!("{sealed}-TAMPERED"), 999), Err(Refused));
        assert_eq!(Rounds::new(None).open(&alice, "fx_ask", "fx", &sealed, 999), Err(Refused), "another key");
    }

    /// Every replica with the same vault key ring opens what another sealed; a ring rotated to a
    /// new active key still opens what the old key sealed while it holds it.
    #[test]
    fn replicas_sharing_the_key_ring_open_each_others_state() {
        let spec = |keys: &str| Arc::new(KeyRing::parse(&crate::secret::Secret::new(keys.to_owned())).unwrap());
        let (old, new) = (KeyRing::generate_key(), KeyRing::generate_key());
        let (old, new) = (old.expose(), new.expose());
        let one = Rounds::new(Some(spec(&format!("k1:{old}"))));
        let two = Rounds::new(Some(spec(&format!("k1:{old}"))));
        let rotated = Rounds::new(Some(spec(&format!("k2:{new},k1:{old}"))));
        let alice = principal("alice");
        let round = Round { server_state: None, number: 2, first: "req-1".into(), expires: 1_000, held: None };
        let sealed = one.seal(&alice, "t", "s", &round).unwrap();
        assert_eq!(two.open(&alice, "t", "s", &sealed, 1), Ok(round.clone()));
        assert_eq!(rotated.open(&alice, "t", "s", &sealed, 1), Ok(round.clone()));
        let resealed = rotated.seal(&alice, "t", "s", &round).unwrap();
        assert_eq!(one.open(&alice, "t", "s", &resealed, 1), Err(Refused), "the new key is not the old replicas'");
    }
}
