//! A caller's session on the revisions that negotiate with `initialize` (up to 2025-11-25),
//! kept by the caller, not by Warden.
//!
//! Warden serves statelessly: no replica remembers an `initialize`. What a federated server may
//! ask of the caller during a call (elicitation, sampling, roots) depends on what the caller
//! declared there, so Warden hands that declaration back to the caller as its `Mcp-Session-Id`:
//! the capabilities that matter, sealed with the vault's key ring ([`super::rounds::Rounds`],
//! AES-256-GCM) and bound to the caller (issuer and subject), with an expiry. Every request of
//! the session carries it; any replica opens it. An id that does not open for this caller —
//! altered, another caller's, expired, sealed with a key the ring no longer holds — is HTTP 404,
//! after which the client starts a new session (Streamable HTTP's rule).
//!
//! A session is issued only where it changes something: Warden federates servers, and the
//! client declared at least one capability a server may use through Warden. A client that
//! declared none sees no session id, as before.
//!
//! What a session's client sets later — its log level (`logging/setLevel`) — cannot go into an
//! id it already holds: it is kept in memory by the replica that served it ([`LogLevels`]),
//! like the requests that wait for the client's answers (`asks`), which need the same affinity.

use serde::{Deserialize, Serialize};

use super::rounds::{Refused, Rounds};
use crate::identity::Principal;

/// How long a session id opens after its `initialize`. The id grants nothing the caller's token
/// does not (it says what the client can be asked), so it is long: a client whose session
/// expires must start a new one (HTTP 404).
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 60 * 60);

/// What a session is, for the binding.
const DOMAIN: &[u8] = b"warden/session/v1";

/// What Warden keeps in a session id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sealed {
    /// The capabilities the client declared that a federated server may use through Warden.
    #[serde(rename = "c")]
    capabilities: rmcp::model::ClientCapabilities,
    /// Unix seconds after which the id no longer opens.
    #[serde(rename = "e")]
    expires: u64,
}

/// Of what a client declared, what a federated server may use through Warden (elicitation,
/// sampling, roots); `None` when that is nothing.
pub fn relayable(declared: &rmcp::model::ClientCapabilities) -> Option<rmcp::model::ClientCapabilities> {
    let mut kept = rmcp::model::ClientCapabilities::default();
    kept.elicitation.clone_from(&declared.elicitation);
    kept.sampling.clone_from(&declared.sampling);
    kept.roots.clone_from(&declared.roots);
    (kept.elicitation.is_some() || kept.sampling.is_some() || kept.roots.is_some()).then_some(kept)
}

/// The session id for `principal`, who declared `capabilities`, valid until `now` +
/// [`SESSION_TTL`].
pub fn issue(rounds: &Rounds, principal: &Principal, capabilities: rmcp::model::ClientCapabilities, now: u64) -> Option<String> {
    let sealed = Sealed { capabilities, expires: now + SESSION_TTL.as_secs() };
    rounds.seal_value(DOMAIN, &[principal.issuer.as_str(), principal.subject.as_str()], &sealed)
}

/// The capabilities a session id carries, if it opens for `principal` and has not expired.
pub fn open(rounds: &Rounds, principal: &Principal, id: &str, now: u64) -> Result<rmcp::model::ClientCapabilities, Refused> {
    let sealed: Sealed = rounds.open_value(DOMAIN, &[principal.issuer.as_str(), principal.subject.as_str()], id)?;
    if sealed.expires < now {
        return Err(Refused);
    }
    Ok(sealed.capabilities)
}

/// The log levels callers set for their sessions (`logging/setLevel`, the older revisions), in
/// this replica's memory. At most [`MAX_LOG_LEVELS`]: past that, all are forgotten at once (a
/// forgotten level means no logs until the client sets one again, never another's logs).
/// A request's `Mcp-Session-Id`, opened for `principal` now: the id and its capabilities.
pub fn open_header(rounds: &Rounds, principal: &Principal, id: &http::HeaderValue) -> Option<(String, rmcp::model::ClientCapabilities)> {
    let id = id.to_str().ok()?;
    open(rounds, principal, id, crate::unix_now()).ok().map(|capabilities| (id.to_owned(), capabilities))
}

#[derive(Default)]
#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2025-11-25")]
pub struct LogLevels {
    levels: dashmap::DashMap<String, rmcp::model::LoggingLevel>,
}

const MAX_LOG_LEVELS: usize = 100_000;

#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2025-11-25")]
impl LogLevels {
    pub fn set(&self, principal: &Principal, session: &str, level: rmcp::model::LoggingLevel) {
        if self.levels.len() >= MAX_LOG_LEVELS {
            self.levels.clear();
        }
        self.levels.insert(principal.key_for(session), level);
    }

    pub fn get(&self, principal: &Principal, session: &str) -> Option<rmcp::model::LoggingLevel> {
        self.levels.get(&principal.key_for(session)).map(|level| *level)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rounds::tests::principal;
    use super::*;

    #[test]
    fn a_session_opens_only_for_its_caller_in_time_and_carries_only_what_a_server_may_use() {
        let rounds = Rounds::new(None);
        let declared: rmcp::model::ClientCapabilities = serde_json::from_value(serde_json::json!({
            "sampling": {}, "elicitation": {"form": {}}, "experimental": {"x": {}}
        }))
        .unwrap();
        let kept = relayable(&declared).unwrap();
        assert!(kept.experimental.is_none() && kept.sampling.is_some() && kept.roots.is_none());
        assert_eq!(relayable(&rmcp::model::ClientCapabilities::default()), None, "nothing to carry: no session");

        let (alice, bob) = (principal("alice"), principal("bob"));
        let id = issue(&rounds, &alice, kept.clone(), 1_000).unwrap();
        assert!(id.bytes().all(|b| b.is_ascii_graphic()), "a session id is visible ASCII: {id}");
        assert_eq!(open(&rounds, &alice, &id, 1_000 + SESSION_TTL.as_secs()), Ok(kept));
        assert_eq!(open(&rounds, &bob, &id, 1_001), Err(Refused), "another caller's");
        assert_eq!(open(&rounds, &alice, &id, 1_001 + SESSION_TTL.as_secs()), Err(Refused), "expired");
        assert_eq!(open(&rounds, &alice, &format!("{id}x"), 1_001), Err(Refused), "altered");
        // A round's state is not a session, and a session is not a round's state.
        let round = super::super::rounds::Round { server_state: None, number: 2, first: "r".into(), expires: 5_000, held: None };
        let state = rounds.seal(&alice, "", "", &round).unwrap();
        assert_eq!(open(&rounds, &alice, &state, 1_001), Err(Refused));
        assert!(rounds.open(&alice, "", "", &id, 1_001).is_err());
    }
}
