//! Upstream stage: the one HTTP client that talks to backends, and the one function that
//! puts identity on a request.
//!
//! In: a request a tool built from scratch (never a copy of the client's request), plus the
//! principal. Out: the backend's response, bounded in time and size. The client's
//! `Authorization` and identity headers never pass: nothing of the inbound request is copied,
//! and identity headers are set last so an argument mapping cannot forge them. Every
//! destination passes the SSRF guard; redirects are not followed; no proxy from the
//! environment is used.

pub mod assertion;
pub mod config;
pub mod lean;
pub mod parking;
mod ssrf;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

pub use ssrf::{AddressPolicy, Blocked, is_internal};

use crate::config_error::ConfigError;
use crate::identity::Principal;
use config::{IdentityHeadersConfig, UpstreamConfig};

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
    /// The signed identity assertion could not be made (the signing keys are unavailable):
    /// nothing is sent, as a backend that expects one would take the call as anonymous.
    #[error("identity assertion unavailable")]
    Assertion,
}

/// The shared upstream client, with the SSRF guard built in.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    /// hyper's client under the same guard, for federated calls ([`lean`]).
    lean: lean::Lean,
    policy: Arc<AddressPolicy>,
    headers: Arc<IdentityHeaders>,
    /// The signed identity assertion, when `identity_headers.assertion` is set.
    assertions: Option<Arc<assertion::Assertions>>,
    pub max_response_bytes: usize,
    /// Upstreams parked after a `429`, shared by every tool.
    pub parking: Arc<parking::Parking>,
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
    /// The signed identity assertion's header, when it is on.
    pub assertion: Option<HeaderName>,
}

impl IdentityHeaders {
    /// Every name Warden sets from the principal.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        [&self.user_id, &self.scopes, &self.roles, &self.tenant, &self.client_id, &self.request_id].into_iter().chain(&self.assertion)
    }

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
            assertion: c.assertion.as_ref().map(|a| parse("assertion.header", &a.header)).transpose()?,
        })
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.names().any(|n| n == name)
    }
}

/// The request-scoped facts an upstream call carries besides the principal.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request_id: String,
    pub traceparent: String,
    /// Where a backend that reports during a call (a federated MCP server: progress, logs)
    /// sends it, when the client asked for it and can receive it (an SSE response).
    pub progress: Option<tokio::sync::mpsc::Sender<Report>>,
    /// The client asked for the server's logs of this call, from this level (2026-07-28
    /// `_meta` `logLevel`).
    #[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
    pub log_level: Option<rmcp::model::LoggingLevel>,
    /// A retried call's answers to a federated server's input requests, and that server's own
    /// request state, restored from Warden's (2026-07-28 multi round-trip requests).
    pub input: Option<std::sync::Arc<UpstreamInput>>,
    /// What the calling client can be asked (2026-07-28: the server sees it in `_meta`), as far
    /// as the server may ask it; `None`: Warden's own (nothing).
    pub client_capabilities: Option<rmcp::model::ClientCapabilities>,
    /// Where a federated server's requests to the calling client go during the call (the
    /// revisions before 2026-07-28, whose clients are asked on the call's own stream).
    pub asker: Option<std::sync::Arc<dyn Asker>>,
}

/// A federated server's request to the calling client during a call: `elicitation/create`,
/// `sampling/createMessage` or `roots/list`.
#[derive(Debug)]
pub struct Ask<'a> {
    pub server: &'a str,
    pub method: &'static str,
    /// The request as the server sent it: its `method` and `params`.
    pub request: serde_json::Value,
    /// The server's `client_requests` forbid this kind: refused, and audited as such.
    pub forbidden: bool,
}

/// Asks the calling client what a federated server asks of it, and returns the client's
/// result (as JSON) or the error the server is to get. Every ask is audited by the asker.
pub trait Asker: Send + Sync + std::fmt::Debug {
    /// Whether the client can be sent anything at all (its call is answered as a stream).
    fn can_ask(&self) -> bool;
    fn ask<'a>(&'a self, ask: Ask<'a>) -> futures::future::BoxFuture<'a, Result<serde_json::Value, rmcp::ErrorData>>;
}

/// The second and later rounds of a multi round-trip request, as the federated server gets them.
#[derive(Debug)]
pub struct UpstreamInput {
    pub responses: Option<rmcp::model::InputResponses>,
    pub state: Option<String>,
}

impl CallContext {
    /// A retried request's `inputResponses` and `requestState`, for its params (none on a
    /// first round).
    pub fn input_params(&self) -> (Option<rmcp::model::InputResponses>, Option<String>) {
        self.input.as_ref().map_or((None, None), |input| (input.responses.clone(), input.state.clone()))
    }
}

/// What a backend reports to the caller during a call.
#[derive(Debug, Clone, PartialEq)]
#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
pub enum Report {
    Progress(Progress),
    /// A log message the server sent on the call's own stream (`notifications/message`).
    Log(rmcp::model::LoggingMessageNotificationParam),
    /// A request to the calling client, as the JSON-RPC message it is sent as (see [`Asker`]).
    Request(String),
}

/// One progress report of a running call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, headers: &IdentityHeadersConfig) -> Result<Self, ConfigError> {
        let policy = AddressPolicy::of(config);
        let client = guarded_client(&policy).map_err(|e| ConfigError::new("upstream", format!("cannot build HTTP client: {e}")))?;
        let lean = lean::Lean::new(&policy).map_err(|e| ConfigError::new("upstream", format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            lean,
            policy,
            headers: Arc::new(IdentityHeaders::from_config(headers)?),
            assertions: None,
            max_response_bytes: config.max_response_bytes,
            parking: Arc::default(),
        })
    }

    pub fn identity_headers(&self) -> &IdentityHeaders {
        &self.headers
    }

    /// Signs an identity assertion onto every request from now on (`identity_headers.assertion`).
    pub fn set_assertions(&mut self, assertions: assertion::Assertions) {
        self.assertions = Some(Arc::new(assertions));
    }

    /// Puts the signed identity assertion for `audience` on `headers`, when assertions are on
    /// (replacing any value already there).
    pub async fn assert_identity(
        &self,
        headers: &mut HeaderMap,
        principal: &Principal,
        ctx: &CallContext,
        audience: &str,
    ) -> Result<(), UpstreamError> {
        let Some(assertions) = &self.assertions else { return Ok(()) };
        match assertions.header_value(principal, &ctx.request_id, audience).await {
            Ok(value) => {
                headers.insert(assertions.header.clone(), value);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "identity assertion could not be signed");
                Err(UpstreamError::Assertion)
            }
        }
    }

    /// Starts a request. The URL's literal IP, if any, is checked here; host names are checked
    /// by the resolver after DNS.
    pub fn request(&self, method: reqwest::Method, url: url::Url) -> Result<reqwest::RequestBuilder, UpstreamError> {
        self.check_literal(&url)?;
        Ok(self.client.request(method, url))
    }

    /// The guarded client itself, for a protocol client that builds its own requests (the
    /// federation's MCP client); check each URL with [`Upstream::check_literal`] first.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// hyper's client under the same guard, for the request of each federated call; check each
    /// URL with [`Upstream::check_literal`] first.
    pub fn lean(&self) -> &lean::Lean {
        &self.lean
    }

    /// Refuses a URL whose host is an IP literal the SSRF guard does not permit (host names
    /// are checked by the resolver, after DNS).
    pub fn check_literal(&self, url: &url::Url) -> Result<(), UpstreamError> {
        if self.policy.permits_literal(url) { Ok(()) } else { Err(UpstreamError::Blocked) }
    }

    /// Sends a request with identity on it and nothing of the client's: the way a tool without
    /// a credential reaches its backend (one with a credential goes through
    /// `credentials::Credential::send`, which uses the same steps).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        principal: &Principal,
        ctx: &CallContext,
        timeout: Duration,
        audience: Option<&str>,
    ) -> Result<(http::StatusCode, HeaderMap, Bytes), UpstreamError> {
        let request = self.prepare(request, principal, ctx, timeout, audience).await?;
        let response = self.call(request, timeout).await?;
        self.read(response, timeout).await
    }

    /// Builds the request and puts identity on it (the signed assertion for `audience`, else
    /// for the request's origin); the client's `Authorization` is removed.
    pub async fn prepare(
        &self,
        request: reqwest::RequestBuilder,
        principal: &Principal,
        ctx: &CallContext,
        timeout: Duration,
        audience: Option<&str>,
    ) -> Result<reqwest::Request, UpstreamError> {
        let mut request = request.timeout(timeout).build().map_err(|_| UpstreamError::Unreachable)?;
        inject_identity(request.headers_mut(), &self.headers, principal, ctx);
        if self.assertions.is_some() {
            let audience = audience.map_or_else(|| assertion::origin(request.url()), str::to_owned);
            self.assert_identity(request.headers_mut(), principal, ctx, &audience).await?;
        }
        Ok(request)
    }

    /// Sends a prepared request through the guarded client, within `timeout` (a proxy route's,
    /// whose bodies stream).
    pub async fn execute(&self, request: reqwest::Request, timeout: Duration) -> Result<reqwest::Response, UpstreamError> {
        tokio::time::timeout(timeout, self.client.execute(request)).await.map_err(|_| UpstreamError::Timeout)?.map_err(|e| classify(&e))
    }

    /// Sends a tool's prepared request within `timeout`, over the lean client (hyper's, under
    /// the same guard: [`lean`]): a tool's call is made once per call, its body whole. The
    /// request is built with reqwest's builder, which the credential's placement and its replay
    /// use.
    pub async fn call(&self, request: reqwest::Request, timeout: Duration) -> Result<http::Response<hyper::body::Incoming>, UpstreamError> {
        let request = lean_request(request)?;
        tokio::time::timeout(timeout, self.lean.send(request)).await.map_err(|_| UpstreamError::Timeout)?.map_err(|e| classify(&e))
    }

    /// Reads a tool call's response within `timeout` and the size limit.
    pub async fn read(
        &self,
        response: http::Response<hyper::body::Incoming>,
        timeout: Duration,
    ) -> Result<(http::StatusCode, HeaderMap, Bytes), UpstreamError> {
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(timeout, crate::body::read_body_limited(body, self.max_response_bytes))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|e| match e {
                ReadError::TooLarge => UpstreamError::TooLarge,
                ReadError::Http(e) => classify(&e),
                ReadError::Body(_) => UpstreamError::Unreachable,
            })?;
        Ok((parts.status, parts.headers, body))
    }
}

/// A request built with reqwest's builder, as the lean client sends it: its method, URL and
/// headers moved over, its body (whole: a tool's body is built whole) as bytes.
fn lean_request(request: reqwest::Request) -> Result<http::Request<http_body_util::Full<Bytes>>, UpstreamError> {
    let (parts, body) = http::Request::<reqwest::Body>::try_from(request).map_err(|_| UpstreamError::Unreachable)?.into_parts();
    let bytes = match body.as_bytes() {
        Some(bytes) => Bytes::copy_from_slice(bytes),
        // A streamed body: never built for a tool's call.
        None => return Err(UpstreamError::Unreachable),
    };
    Ok(http::Request::from_parts(parts, http_body_util::Full::new(bytes)))
}

/// What a failed exchange means for the caller: the SSRF guard's refusal (anywhere in the
/// error's chain, also wrapped in an I/O error as hyper's resolver returns it), else the
/// backend could not be reached.
fn classify(e: &(dyn std::error::Error + 'static)) -> UpstreamError {
    let mut source = Some(e);
    while let Some(s) = source {
        let wrapped = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).is_some_and(|inner| inner.is::<Blocked>());
        if s.is::<Blocked>() || wrapped {
            return UpstreamError::Blocked;
        }
        if s.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout) {
            return UpstreamError::Timeout;
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

pub use crate::body::{ReadError, read_limited};

/// A client that reaches only what `policy` permits (checked after DNS; check IP-literal URLs
/// with [`AddressPolicy::permits_literal`]), follows no redirect and uses no proxy from the
/// environment: for tools, federated servers and the audit webhook.
pub fn guarded_client(policy: &Arc<AddressPolicy>) -> reqwest::Result<reqwest::Client> {
    guarded_builder(policy).build()
}

/// [`guarded_client`]'s settings, for a client that adds its own.
fn guarded_builder(policy: &Arc<AddressPolicy>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .dns_resolver(Arc::new(ssrf::GuardedResolver { policy: Arc::clone(policy) }))
}

/// A client for documents that callers name by URL (an OAuth client's metadata document): what
/// [`guarded_client`] permits, HTTPS only, within 5 s, trusting `extra_roots` besides the
/// system's.
pub fn document_client(config: &UpstreamConfig, extra_roots: &[reqwest::Certificate]) -> Result<reqwest::Client, ConfigError> {
    let mut builder = guarded_builder(&AddressPolicy::of(config)).https_only(true).timeout(Duration::from_secs(5));
    for root in extra_roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder.build().map_err(|e| ConfigError::new("authorization_server.registration", format!("cannot build HTTP client: {e}")))
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
