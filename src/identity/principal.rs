//! The verified caller, and how it is read out of token claims.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// The token's subject (`sub`). Never empty.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (!s.is_empty()).then_some(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The gateway itself, for requests it makes on no caller's behalf.
    pub fn gateway() -> Self {
        Self("warden".to_owned())
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({:?})", self.0)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified caller: who, for which client, with which scopes, roles and tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: Subject,
    pub issuer: String,
    pub client_id: Option<String>,
    pub scopes: BTreeSet<String>,
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// All claims of the token, for policy conditions.
    pub claims: Map<String, Value>,
    /// The tools (and `route:NAME`s) this credential may reach at most, whatever policy
    /// allows: an API key's allow-list. None: policy alone decides.
    pub tools: Option<std::sync::Arc<[String]>>,
    /// The bearer token the caller presented, when it was a JWT from a trusted issuer: the
    /// subject token of a token exchange (`credentials[].token_exchange`). Redacted in `Debug`;
    /// never sent upstream as it is.
    pub token: Option<crate::secret::Secret>,
}

impl Principal {
    /// What is this caller's alone, as a map key: `item` under the caller's issuer and subject
    /// (a call in flight, a session's state, a held call). Newline-separated, which neither an
    /// issuer URL nor a subject claim can hold unescaped.
    pub fn key_for(&self, item: impl fmt::Display) -> String {
        format!("{}\n{}\n{item}", self.issuer, self.subject.as_str())
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// Whether the credential's own allow-list (an API key's `tools`) lets it reach `target`
    /// (a tool's name, or `route:NAME`). Entries may end in `*` (a prefix).
    pub fn may_reach(&self, target: &str) -> bool {
        self.tools.as_deref().is_none_or(|allowed| {
            allowed.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => target.starts_with(prefix),
                None => a == target,
            })
        })
    }
}

/// How roles and tenant are located in one issuer's claims.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// Claim paths whose roles are merged; `{client_id}` stands for the token's client.
    pub roles_claims: Vec<String>,
    /// Also take roles from every top-level claim named `<namespace>/roles` (Auth0).
    pub namespaced_roles: bool,
    pub tenant_claim: Option<String>,
}

impl ClaimMapping {
    /// Builds the principal from verified claims. `sub` must be present: checked by the caller.
    pub fn principal(&self, subject: Subject, issuer: String, claims: Map<String, Value>) -> Principal {
        let scopes = scopes_of(&claims);
        let client_id = ["client_id", "azp", "cid"].iter().find_map(|k| claims.get(*k).and_then(Value::as_str).map(str::to_owned));
        let mut roles: Vec<String> = Vec::new();
        let mut add = |v: &Value| {
            for r in strings_of(v) {
                if !roles.contains(&r) {
                    roles.push(r);
                }
            }
        };
        for path in &self.roles_claims {
            let path = match (&client_id, path.contains("{client_id}")) {
                (Some(c), true) => path.replace("{client_id}", c),
                (None, true) => continue,
                (_, false) => path.clone(),
            };
            if let Some(v) = lookup(&claims, &path) {
                add(v);
            }
        }
        if self.namespaced_roles {
            for (k, v) in &claims {
                if k.contains("://") && k.ends_with("/roles") {
                    add(v);
                }
            }
        }
        let tenant = self.tenant_claim.as_deref().and_then(|p| lookup(&claims, p)).and_then(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let client_id = ["client_id", "azp", "cid"].iter().find_map(|k| claims.get(*k).and_then(Value::as_str).map(str::to_owned));
        Principal { subject, issuer, client_id, scopes, roles, tenant, claims, tools: None, token: None }
    }
}

/// Scopes from `scope` (RFC 9068, space-separated), `scp` (Entra, Okta: string or array) and
/// `permissions` (Auth0: array). All present sources are merged.
pub fn scopes_of(claims: &Map<String, Value>) -> BTreeSet<String> {
    ["scope", "scp", "permissions"].iter().filter_map(|k| claims.get(*k)).flat_map(strings_of).collect()
}

/// A claim path: `a.b.c` walks nested objects. A key that itself contains dots (Auth0's
/// namespaced claims such as `https://example.com/roles`) is tried whole first.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// A string is split on white space; an array contributes its string members.
fn strings_of(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}
