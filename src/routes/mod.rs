//! Proxy routes stage: an identity-injecting HTTP reverse proxy for apps that are not MCP
//! clients, at `/proxy/{name}/…`.
//!
//! In: a plain HTTP request with a bearer (a JWT for this resource, or a `wdn_` API key). Out:
//! the upstream's status, headers and body, streamed. A route meets the same stages as a tool,
//! in the same order (`crate::mcp` explains it): pre-authentication limit, identity, the audit
//! gate, then what is particular to a route (name, method, path), then policy (`route:NAME`,
//! with `request.method` and `request.path`), then limits, then the upstream call with
//! identity headers and the route's credential set last. Every request is one audit event.
//!
//! Never passes on the client's `Authorization`, cookies, hop-by-hop headers, forwarding
//! headers or identity headers, and never passes back `Set-Cookie` (the gateway's origin is not
//! the upstream's). The upstream URL is built from the configured base and a checked path only
//! ([`path`]); the SSRF guard applies as to every upstream.

pub mod config;
mod path;
mod proxy;

use std::sync::Arc;
use std::time::Duration;

pub use config::RouteConfig;
pub use proxy::{ProxyState, handle};

use crate::config_error::ConfigError;
use crate::credentials::{Credential, Credentials};

/// One route, compiled.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// `route:NAME`, the name policy and limits know it by.
    pub target: String,
    /// Scheme, authority and base path (no trailing `/`).
    upstream: url::Url,
    methods: Vec<http::Method>,
    /// The `Allow` value for a 405.
    allow: String,
    paths: Option<Vec<String>>,
    scopes: Vec<String>,
    tags: Vec<String>,
    metadata: serde_json::Map<String, serde_json::Value>,
    pub credential: Option<Arc<Credential>>,
    /// The signed identity assertion's audience, when not the upstream's origin.
    pub audience: Option<Arc<str>>,
    cost: u64,
    timeout: Duration,
    max_request_bytes: u64,
    max_response_bytes: u64,
}

impl Route {
    /// What policy and limits see of this route.
    pub fn facts(&self) -> crate::policy::ToolFacts<'_> {
        crate::policy::ToolFacts { name: &self.target, tags: &self.tags, metadata: &self.metadata, scopes: &self.scopes, server: None }
    }
}

/// Every route, by name.
#[derive(Debug, Default)]
pub struct Routes {
    by_name: std::collections::HashMap<String, Arc<Route>>,
}

impl Routes {
    pub fn build(
        configs: &[RouteConfig],
        credentials: &Credentials,
        default_timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, ConfigError> {
        let mut by_name = std::collections::HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            let err = |field: &str, m: String| ConfigError::new(format!("routes[{i}].{field}"), m);
            if c.name.is_empty()
                || c.name.len() > 64
                || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(err("name", "1 to 64 of a-z A-Z 0-9 _ - .".into()));
            }
            if by_name.contains_key(&c.name) {
                return Err(err("name", format!("{:?} is used twice", c.name)));
            }
            let mut upstream = url::Url::parse(&c.upstream).map_err(|e| err("upstream", format!("not a URL: {e}")))?;
            if !matches!(upstream.scheme(), "http" | "https") || upstream.host_str().is_none() {
                return Err(err("upstream", "an http or https URL with a host".into()));
            }
            if upstream.query().is_some()
                || upstream.fragment().is_some()
                || !upstream.username().is_empty()
                || upstream.password().is_some()
            {
                return Err(err("upstream", "no query, fragment or user info (credentials go in credentials[])".into()));
            }
            let base = upstream.path().trim_end_matches('/').to_owned();
            upstream.set_path(&base);
            let mut methods = Vec::new();
            for (j, m) in c.methods.iter().enumerate() {
                let method = http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| err(&format!("methods[{j}]"), "not an HTTP method".into()))?;
                if !matches!(method.as_str(), "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") {
                    return Err(err(&format!("methods[{j}]"), "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS".into()));
                }
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            if methods.is_empty() {
                return Err(err("methods", "at least one method".into()));
            }
            if let Some(paths) = &c.paths {
                for (j, p) in paths.iter().enumerate() {
                    if path::check(p).is_err() || !p.starts_with('/') || p.contains('%') {
                        return Err(err(&format!("paths[{j}]"), "a path starting with /, without dot or empty segments or escapes".into()));
                    }
                }
            }
            if let Some(bad) = c.scopes.iter().find(|s| !crate::policy::valid_scope(s)) {
                return Err(err("scopes", format!("{bad:?} is not a valid scope")));
            }
            let credential = match &c.credential {
                Some(name) => {
                    Some(Arc::clone(credentials.get(name).ok_or_else(|| err("credential", format!("no credential named {name:?}")))?))
                }
                None => None,
            };
            let audience = crate::config_error::audience(c.audience.as_deref()).map_err(|m| err("audience", m.into()))?;
            let timeout = c.timeout.unwrap_or(default_timeout);
            if timeout.is_zero() {
                return Err(err("timeout", "must be greater than 0".into()));
            }
            let allow = methods.iter().map(http::Method::as_str).collect::<Vec<_>>().join(", ");
            let route = Route {
                name: c.name.clone(),
                target: format!("{}{}", crate::policy::ROUTE_PREFIX, c.name),
                upstream,
                methods,
                allow,
                paths: c.paths.clone(),
                scopes: c.scopes.clone(),
                tags: c.tags.clone(),
                metadata: c.metadata.clone(),
                credential,
                audience,
                cost: c.cost,
                timeout,
                max_request_bytes: c.max_request_bytes,
                max_response_bytes: c.max_response_bytes.unwrap_or(max_response_bytes as u64),
            };
            by_name.insert(c.name.clone(), Arc::new(route));
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_name.values()
    }

    /// Scopes some route requires, for the Protected Resource Metadata.
    pub fn scopes(&self) -> impl Iterator<Item = &String> {
        self.by_name.values().flat_map(|r| r.scopes.iter())
    }
}
