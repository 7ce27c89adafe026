//! The signed identity assertion: a compact JWS on every upstream request that says who the
//! caller is, which client acts for them and for which backend it was made, signed with a key
//! Warden keeps (ES256, `signing::ASSERTIONS`) and published at `{public_url}/.well-known/jwks.json`.
//!
//! A backend that verifies it (signature against the JWKS, `alg` pinned to ES256, `iss`,
//! `aud`, `exp`) knows the identity came from Warden and was meant for it: the plain identity
//! headers can be set by anything that reaches the backend's port; this cannot.
//!
//! In: the principal, the call's request id, the audience (the backend's origin unless
//! configured). Out: a header value. The keys live in the vault's store; this module sees them
//! only through [`AssertionSigner`], so the upstream stage does not depend on the vault.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::clock::SharedClock;
use crate::identity::Principal;

/// The JOSE `typ` of an assertion (RFC 8725 §3.11: explicit typing, so an assertion is never
/// taken for an access token and the other way round).
pub const ASSERTION_TYP: &str = "warden-identity+jwt";

/// Signs claims with Warden's current assertion key (implemented by `signing::Keys`).
pub trait AssertionSigner: Send + Sync {
    fn sign_assertion<'a>(&'a self, claims: &'a Value) -> BoxFuture<'a, Result<String, String>>;
}

/// The configured assertion: header, lifetime, issuer and signer.
pub struct Assertions {
    pub header: HeaderName,
    ttl: Duration,
    issuer: String,
    signer: Arc<dyn AssertionSigner>,
    clock: SharedClock,
}

impl std::fmt::Debug for Assertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertions").field("header", &self.header).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Assertions {
    pub fn new(header: HeaderName, ttl: Duration, issuer: String, signer: Arc<dyn AssertionSigner>, clock: SharedClock) -> Self {
        Self { header, ttl, issuer, signer, clock }
    }

    /// The assertion for `principal`'s request `request_id` to `audience`, as a header value.
    pub async fn header_value(&self, principal: &Principal, request_id: &str, audience: &str) -> Result<HeaderValue, String> {
        let claims = self.claims(principal, request_id, audience);
        let token = self.signer.sign_assertion(&claims).await?;
        let mut value = HeaderValue::from_str(&token).map_err(|_| "the signed assertion is not a header value".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The claims: `iss` (Warden's public URL), `aud`, `sub`, `scope`, `roles`, `tenant`,
    /// `client_id`, `jti` (the request id), `iat`, `exp`, and `act` naming the client that acts
    /// for the subject (RFC 8693 §4.1), with any actor the caller's own token named nested in it.
    pub fn claims(&self, principal: &Principal, request_id: &str, audience: &str) -> Value {
        let now = self.clock.unix();
        let scopes: Vec<&str> = principal.scopes.iter().map(String::as_str).collect();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": principal.subject.as_str(),
            "scope": scopes.join(" "),
            "roles": principal.roles,
            "jti": request_id,
            "iat": now,
            "exp": now + self.ttl.as_secs(),
        });
        if let Some(tenant) = &principal.tenant {
            claims["tenant"] = json!(tenant);
        }
        if let Some(client) = &principal.client_id {
            claims["client_id"] = json!(client);
        }
        if let Some(act) = actor(principal) {
            claims["act"] = act;
        }
        claims
    }
}

/// The actor chain of a call (RFC 8693 §4.1): the client acting for the subject, with the
/// actor the caller's own token named (a delegated token) nested inside. None without a client.
pub fn actor(principal: &Principal) -> Option<Value> {
    let inner = principal.claims.get("act").filter(|a| a.is_object()).cloned();
    match (&principal.client_id, inner) {
        (Some(client), inner) => {
            let mut act = Map::new();
            act.insert("sub".into(), json!(client));
            if let Some(inner) = inner {
                act.insert("act".into(), inner);
            }
            Some(Value::Object(act))
        }
        (None, inner) => inner,
    }
}

/// How many actors stand between the subject and the call: the length of the `act` chain.
pub fn delegation_depth(act: Option<&Value>) -> usize {
    let mut depth = 0;
    let mut at = act;
    while let Some(a) = at.filter(|a| a.is_object()) {
        depth += 1;
        // Bounded by the JSON nesting limit of the token that carried it.
        at = a.get("act");
    }
    depth
}

/// `scheme://host[:port]` of `url` (no trailing slash, default port left out): an assertion's
/// audience unless the tool, server or route names another.
pub fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(client: Option<&str>, act: Option<Value>) -> Principal {
        let mut claims = Map::new();
        if let Some(a) = act {
            claims.insert("act".into(), a);
        }
        Principal {
            subject: crate::identity::Subject::new("alice").unwrap_or_else(crate::identity::Subject::gateway),
            issuer: "https://idp.example".into(),
            client_id: client.map(str::to_owned),
            scopes: ["b", "a"].into_iter().map(str::to_owned).collect(),
            roles: vec!["admin".into()],
            tenant: Some("acme".into()),
            claims,
            tools: None,
            token: None,
        }
    }

    #[test]
    fn the_actor_chain_names_the_client_and_keeps_an_earlier_actor() {
        assert_eq!(actor(&principal(Some("cursor"), None)), Some(json!({"sub": "cursor"})));
        let nested = actor(&principal(Some("cursor"), Some(json!({"sub": "agent-7"}))));
        assert_eq!(nested, Some(json!({"sub": "cursor", "act": {"sub": "agent-7"}})));
        assert_eq!(delegation_depth(nested.as_ref()), 2);
        assert_eq!(actor(&principal(None, None)), None);
        assert_eq!(actor(&principal(None, Some(json!("not an object")))), None);
        assert_eq!(delegation_depth(None), 0);
    }

    #[test]
    fn the_audience_is_the_origin_without_a_slash_or_default_port() {
        let at = |u: &str| origin(&url::Url::parse(u).unwrap());
        assert_eq!(at("https://api.example.com/v1/items?x=1"), "https://api.example.com");
        assert_eq!(at("https://api.example.com:443/"), "https://api.example.com");
        assert_eq!(at("http://127.0.0.1:8080/mcp"), "http://127.0.0.1:8080");
    }
}
