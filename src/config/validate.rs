//! Cross-field rules that serde cannot express. Tool definitions are checked where they are
//! compiled (`tools::ToolRegistry::build`), so one piece of code owns each rule.

use std::collections::HashSet;
use std::time::Duration;

use super::{Config, ConfigError};

pub use crate::upstream::config::RESERVED_UPSTREAM_HEADERS;

impl Config {
    /// Checks the rules that span fields. Called by [`super::parse`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let base = self.server.public_base();
        match url::Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() && u.fragment().is_none() => {}
            _ => return Err(ConfigError::new("server.public_url", "must be an absolute http(s) URL without query or fragment")),
        }
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::new("server.max_body_bytes", "must be greater than 0"));
        }
        let server = &self.server;
        for (field, d) in [
            ("header_read_timeout", server.header_read_timeout),
            ("body_read_timeout", server.body_read_timeout),
            ("idle_timeout", server.idle_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(600) {
                return Err(ConfigError::new(format!("server.{field}"), "must be between 1ms and 600s"));
            }
        }
        for (i, origin) in self.server.allowed_origins.iter().flatten().enumerate() {
            if !(origin == "null" || origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::new(format!("server.allowed_origins[{i}]"), "must start with http:// or https://"));
            }
        }

        if self.identity.issuers.is_empty() && self.authorization_server.is_none() {
            return Err(ConfigError::new("identity.issuers", "at least one trusted issuer is required (or `authorization_server:`)"));
        }
        for (i, s) in self.identity.challenge_scopes.iter().flatten().enumerate() {
            if !crate::tools::valid_scope(s) {
                return Err(ConfigError::new(format!("identity.challenge_scopes[{i}]"), "not a valid OAuth scope token"));
            }
        }
        if self.identity.clock_skew > Duration::from_secs(300) {
            return Err(ConfigError::new("identity.clock_skew", "must be at most 300s"));
        }
        let mut seen = HashSet::new();
        for (i, iss) in self.identity.issuers.iter().enumerate() {
            let at = |f: &str| format!("identity.issuers[{i}].{f}");
            if iss.issuer.is_empty() {
                return Err(ConfigError::new(at("issuer"), "must not be empty"));
            }
            if !seen.insert(iss.issuer.as_str()) {
                return Err(ConfigError::new(at("issuer"), "duplicate issuer"));
            }
            if iss.jwks_uri.is_none() {
                check_http_url(&iss.issuer)
                    .map_err(|m| ConfigError::new(at("issuer"), format!("{m} (needed to discover the JWKS; or set jwks_uri)")))?;
            }
            if let Some(uri) = &iss.jwks_uri {
                check_http_url(uri).map_err(|m| ConfigError::new(at("jwks_uri"), m))?;
            }
            crate::identity::pinned_algorithms(&iss.algorithms, &at("algorithms"))?;
            if iss.roles_claim.as_deref().is_some_and(str::is_empty) {
                return Err(ConfigError::new(at("roles_claim"), "must not be empty"));
            }
            if iss.roles_claim.is_some() && iss.roles_claims.is_some() {
                return Err(ConfigError::new(at("roles_claim"), "set roles_claim or roles_claims, not both"));
            }
            if iss.jwks_ttl.is_zero() {
                return Err(ConfigError::new(at("jwks_ttl"), "must be greater than 0"));
            }
        }

        let h = &self.identity_headers;
        let mut names = HashSet::new();
        let assertion = h.assertion.as_ref().map(|a| ("assertion.header", &a.header));
        for (field, name) in [
            ("user_id", &h.user_id),
            ("scopes", &h.scopes),
            ("roles", &h.roles),
            ("tenant", &h.tenant),
            ("client_id", &h.client_id),
            ("request_id", &h.request_id),
        ]
        .into_iter()
        .chain(assertion)
        {
            let at = format!("identity_headers.{field}");
            let parsed =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConfigError::new(at.clone(), "not a valid header name"))?;
            if RESERVED_UPSTREAM_HEADERS.contains(&parsed.as_str()) {
                return Err(ConfigError::new(at, "reserved header name"));
            }
            if !names.insert(parsed) {
                return Err(ConfigError::new(at, "the same header is used for two identity fields"));
            }
        }

        if let Some(a) = &h.assertion {
            if a.ttl < Duration::from_secs(10) || a.ttl > Duration::from_secs(600) {
                return Err(ConfigError::new("identity_headers.assertion.ttl", "must be between 10s and 10m"));
            }
            if self.vault.is_none() {
                return Err(ConfigError::new("identity_headers.assertion", "needs `vault:` (the signing key is kept there, sealed)"));
            }
        }

        if self.upstream.default_timeout.is_zero() {
            return Err(ConfigError::new("upstream.default_timeout", "must be greater than 0"));
        }
        if self.upstream.max_response_bytes == 0 {
            return Err(ConfigError::new("upstream.max_response_bytes", "must be greater than 0"));
        }
        for (i, h) in self.policy.request_headers.iter().enumerate() {
            let name = http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| ConfigError::new(format!("policy.request_headers[{i}]"), "not a valid header name"))?;
            if matches!(name.as_str(), "authorization" | "cookie" | "proxy-authorization") {
                return Err(ConfigError::new(format!("policy.request_headers[{i}]"), "credentials are never exposed to policy conditions"));
            }
        }
        if self.audit.output.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new("audit.output", "must be stdout, stderr, off or a file path"));
        }
        Ok(())
    }
}

fn check_http_url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err("must be an absolute http(s) URL".into()),
    }
}
