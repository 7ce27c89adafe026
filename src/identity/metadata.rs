//! Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate` challenges that point
//! clients to it (RFC 6750 §3, MCP authorization).

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

/// Everything a client needs to find how to get a token for this resource.
#[derive(Debug)]
pub struct ResourceMetadata {
    /// The canonical MCP URL; equal to the audience tokens must carry.
    pub resource: String,
    /// Where the metadata document is served (path-suffixed form, RFC 9728 §3.1).
    pub metadata_url: String,
    pub authorization_servers: Vec<String>,
    /// The scopes in force: swapped whole when a reload changes the tools.
    scopes: ArcSwap<Scopes>,
    /// `identity.challenge_scopes`, which only a restart changes.
    challenge_override: Option<Vec<String>>,
}

/// The scopes the tools, servers and routes require, and what a 401 challenge asks for.
#[derive(Debug)]
pub struct Scopes {
    /// Sorted, without repeats.
    pub supported: Vec<String>,
    /// `identity.challenge_scopes` when set, else every supported scope.
    pub challenge: Vec<String>,
}

impl ResourceMetadata {
    pub fn new(
        public_base: &str,
        resource: String,
        authorization_servers: Vec<String>,
        scopes_supported: Vec<String>,
        challenge_override: Option<Vec<String>>,
    ) -> Self {
        let metadata_url = format!("{public_base}/.well-known/oauth-protected-resource/mcp");
        let scopes = ArcSwap::from_pointee(Scopes { supported: Vec::new(), challenge: Vec::new() });
        let metadata = Self { resource, metadata_url, authorization_servers, scopes, challenge_override };
        metadata.set_scopes_supported(scopes_supported);
        metadata
    }

    /// The scopes in force.
    pub fn scopes(&self) -> Arc<Scopes> {
        self.scopes.load_full()
    }

    /// Puts new required scopes in force (sorted and deduplicated here), after a reload.
    pub fn set_scopes_supported(&self, mut supported: Vec<String>) {
        supported.sort();
        supported.dedup();
        let challenge = self.challenge_override.clone().unwrap_or_else(|| supported.clone());
        self.scopes.store(Arc::new(Scopes { supported, challenge }));
    }

    pub fn document(&self) -> Value {
        json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "scopes_supported": self.scopes().supported,
            "bearer_methods_supported": ["header"],
            "resource_name": "Warden MCP gateway",
        })
    }

    /// The challenge for a 401 (`error` is `Some("invalid_token")` when a token was
    /// presented): `Bearer [error="…", ]resource_metadata="…", scope="…"`, parameter order as in
    /// the MCP authorization spec's examples. Scope tokens are validated at load to contain no
    /// quote or backslash, so quoting is safe.
    pub fn unauthorized(&self, error: Option<&str>, scopes: &[String]) -> String {
        let mut out = String::from("Bearer ");
        if let Some(error) = error {
            out.push_str(&format!("error=\"{error}\", "));
        }
        out.push_str(&format!("resource_metadata=\"{}\"", self.metadata_url));
        if !scopes.is_empty() {
            out.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
        }
        out
    }

    /// The step-up challenge for a 403: the scopes this call needs.
    pub fn insufficient_scope(&self, scopes: &[String]) -> String {
        format!("Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"", scopes.join(" "), self.metadata_url)
    }
}
