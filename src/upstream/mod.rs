//! Upstream stage: the one HTTP client that talks to backends, and the one function that
//! puts identity on a request.
//!
//! In: a request a tool built from scratch (never a copy of the client's request), plus the
//! principal. Out: the backend's response, bounded in time and size. The client's
//! `Authorization` and identity headers never pass: nothing of the inbound request is copied,
//! and identity headers are set last so an argument mapping cannot forge them. Every
//! destination passes the SSRF guard; redirects are not followed; no proxy from the
//! environment is used.

mod ssrf;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

pub use ssrf::{AddressPolicy, Blocked, is_internal};

use crate::config::{ConfigError, IdentityHeadersConfig, UpstreamConfig};
use crate::credentials::Credential;
use crate::identity::Principal;

const USER_AGENT: &str = concat!("warden/", env!("CARGO_PKG_VERSION"));

/// Why an upstream call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("destination not allowed")]
    Blocked,
    #[error("timed out")]
    Timeout,
    #[error("unreachable")]
    Unreachable,
    #[error("response too large")]
    TooLarge,
    #[error("upstream credential: {0}")]
    Credential(crate::credentials::CredentialError),
}

/// The shared upstream client, with the SSRF guard built in.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    headers: Arc<IdentityHeaders>,
    pub max_response_bytes: usize,
}

/// Parsed identity header names.
#[derive(Debug)]
pub struct IdentityHeaders {
    pub user_id: HeaderName,
    pub scopes: HeaderName,
    pub roles: HeaderName,
    pub tenant: HeaderName,
    pub client_id: HeaderName,
    pub request_id: HeaderName,
}

impl IdentityHeaders {
    pub fn from_config(c: &IdentityHeadersConfig) -> Result<Self, ConfigError> {
        let parse = |field: &str, v: &str| {
            HeaderName::from_bytes(v.as_bytes())
                .map_err(|_| ConfigError::new(format!("identity_headers.{field}"), "not a valid header name"))
        };
        Ok(Self {
            user_id: parse("user_id", &c.user_id)?,
            scopes: parse("scopes", &c.scopes)?,
            roles: parse("roles", &c.roles)?,
            tenant: parse("tenant", &c.tenant)?,
            client_id: parse("client_id", &c.client_id)?,
            request_id: parse("request_id", &c.request_id)?,
        })
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        [&self.user_id, &self.scopes, &self.roles, &self.tenant, &self.client_id, &self.request_id].contains(&name)
    }
}

/// The request-scoped facts an upstream call carries besides the principal.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub request_id: String,
    pub traceparent: String,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, headers: &IdentityHeadersConfig) -> Result<Self, ConfigError> {
        let policy =
            Arc::new(AddressPolicy { allow_private: config.dangerous_allow_private_upstreams, allow_cidrs: config.allow_cidrs.clone() });
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(Arc::new(ssrf::GuardedResolver { policy: Arc::clone(&policy) }))
            .build()
            .map_err(|e| ConfigError::new("upstream", format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            policy,
            headers: Arc::new(IdentityHeaders::from_config(headers)?),
            max_response_bytes: config.max_response_bytes,
        })
    }

    pub fn identity_headers(&self) -> &IdentityHeaders {
        &self.headers
    }

    /// Starts a request. The URL's literal IP, if any, is checked here; host names are checked
    /// by the resolver after DNS.
    pub fn request(&self, method: reqwest::Method, url: url::Url) -> Result<reqwest::RequestBuilder, UpstreamError> {
        if let Some(host) = url.host() {
            let ip = match host {
                url::Host::Ipv4(v4) => Some(std::net::IpAddr::V4(v4)),
                url::Host::Ipv6(v6) => Some(std::net::IpAddr::V6(v6)),
                url::Host::Domain(_) => None,
            };
            if ip.is_some_and(|ip| !self.policy.permits(ip)) {
                return Err(UpstreamError::Blocked);
            }
        }
        Ok(self.client.request(method, url))
    }

    /// Puts identity and the tool's credential on the request and sends it: the only way a tool
    /// reaches a backend.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        principal: &Principal,
        ctx: &CallContext,
        timeout: Duration,
        credential: Option<&Credential>,
    ) -> Result<(http::StatusCode, HeaderMap, Bytes), UpstreamError> {
        let mut request = request.timeout(timeout).build().map_err(|_| UpstreamError::Unreachable)?;
        inject_identity(request.headers_mut(), &self.headers, principal, ctx);
        // The credential goes on last, after the client's `Authorization` is gone, so nothing
        // of the client's can replace it or travel beside it.
        let mut generation = None;
        if let Some(credential) = credential {
            let (secret, g) = credential.resolve(self, principal, ctx, None).await.map_err(UpstreamError::Credential)?;
            credential.apply(&mut request, &secret);
            generation = g;
        }
        let replay = credential.filter(|c| c.refreshable()).and_then(|_| request.try_clone());
        let mut response =
            tokio::time::timeout(timeout, self.client.execute(request)).await.map_err(|_| UpstreamError::Timeout)?.map_err(classify)?;
        // A refreshable token the backend rejects: one forced refresh and one replay, never more.
        if response.status() == http::StatusCode::UNAUTHORIZED
            && let (Some(credential), Some(mut again)) = (credential, replay)
        {
            let (secret, _) = credential.resolve(self, principal, ctx, generation).await.map_err(UpstreamError::Credential)?;
            credential.apply(&mut again, &secret);
            response =
                tokio::time::timeout(timeout, self.client.execute(again)).await.map_err(|_| UpstreamError::Timeout)?.map_err(classify)?;
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(timeout, read_limited(response, self.max_response_bytes))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|e| match e {
                ReadError::TooLarge => UpstreamError::TooLarge,
                ReadError::Http(e) => classify(e),
            })?;
        Ok((status, headers, body))
    }
}

fn classify(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        return UpstreamError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<Blocked>() {
            return UpstreamError::Blocked;
        }
        source = s.source();
    }
    UpstreamError::Unreachable
}

/// Header values that are not visible ASCII are percent-encoded (`%` too, so decoding is
/// unambiguous), so a claim can never inject a header line.
const HEADER_UNSAFE: &AsciiSet = &CONTROLS.add(b'%').add(b'\x7f');

fn header_value(s: &str) -> HeaderValue {
    let encoded = utf8_percent_encode(s, HEADER_UNSAFE).to_string();
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sets the identity headers, replacing any value already present.
pub fn inject_identity(headers: &mut HeaderMap, names: &IdentityHeaders, principal: &Principal, ctx: &CallContext) {
    headers.insert(names.user_id.clone(), header_value(principal.subject.as_str()));
    let scopes: Vec<&str> = principal.scopes.iter().map(String::as_str).collect();
    headers.insert(names.scopes.clone(), header_value(&scopes.join(" ")));
    headers.insert(names.roles.clone(), header_value(&principal.roles.join(",")));
    match &principal.tenant {
        Some(t) => headers.insert(names.tenant.clone(), header_value(t)),
        None => headers.remove(&names.tenant),
    };
    match &principal.client_id {
        Some(c) => headers.insert(names.client_id.clone(), header_value(c)),
        None => headers.remove(&names.client_id),
    };
    headers.insert(names.request_id.clone(), header_value(&ctx.request_id));
    headers.insert(HeaderName::from_static("traceparent"), header_value(&ctx.traceparent));
    headers.remove(http::header::AUTHORIZATION);
}

/// Why a bounded body read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("body exceeds the limit")]
    TooLarge,
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// Reads a response body, refusing more than `limit` bytes.
pub async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A client for the control plane: fetching issuer metadata and JWKS from operator-configured
/// URLs. No redirects, no environment proxy, short timeouts.
pub fn control_plane_client() -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ConfigError::new("identity", format!("cannot build HTTP client: {e}")))
}
