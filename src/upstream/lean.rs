//! The lean upstream client: hyper's pooled client, with the same guard as the shared client,
//! for the request that is made once per call: of a federated tool, and of an HTTP tool.
//!
//! reqwest wraps hyper's client with what Warden's hot path does not use — a redirect layer
//! (never following, but parsing each request's URL for its policy), a URL parse per request
//! and per response, a request builder moved through every header — about a tenth of a
//! federated call's instructions (docs/performance.md). This client sends an `http::Request`
//! as built: one pooled connection per origin (HTTP/1.1, or HTTP/2 where TLS negotiates it),
//! the SSRF guard's resolver (a name resolves only to permitted addresses; an IP literal is
//! checked by the caller with [`super::AddressPolicy::permits_literal`], as for reqwest),
//! redirects never followed (hyper's client does not), no proxy from the environment, the
//! platform's trust store (as reqwest's), the same connect and idle timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

use super::ssrf::{AddressPolicy, Blocked};

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedDns>>;

/// hyper's client over the guarded connector.
#[derive(Clone)]
pub struct Lean {
    client: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
}

impl std::fmt::Debug for Lean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lean")
    }
}

impl Lean {
    pub fn new(policy: &Arc<AddressPolicy>) -> Result<Self, String> {
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(BuilderVerifierExt::with_platform_verifier)
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(GuardedDns { policy: Arc::clone(policy) });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https);
        Ok(Self { client })
    }

    /// Sends a request; the response's body is read by the caller (within its bound).
    pub async fn send(
        &self,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        request.headers_mut().entry(http::header::USER_AGENT).or_insert(http::HeaderValue::from_static(super::USER_AGENT));
        self.client.request(request).await
    }
}

/// The SSRF guard's resolution for hyper's connector: only permitted addresses, or an error.
#[derive(Clone)]
pub struct GuardedDns {
    policy: Arc<AddressPolicy>,
}

impl tower::Service<Name> for GuardedDns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved.filter(|a| policy.permits(a.ip())).collect();
            if allowed.is_empty() {
                return Err(std::io::Error::other(Blocked));
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that resolves only to a denied address is refused before any connection.
    #[tokio::test]
    async fn a_name_resolving_to_a_denied_address_is_not_connected_to() {
        let lean = Lean::new(&Arc::new(AddressPolicy::default())).unwrap();
        let request = http::Request::post("http://localhost:9/mcp").body(Full::new(Bytes::new())).unwrap();
        let error = lean.send(request).await.unwrap_err();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut blocked = false;
        while let Some(s) = source {
            blocked |= s.downcast_ref::<std::io::Error>().and_then(|e| e.get_ref()).is_some_and(|inner| inner.is::<Blocked>());
            source = s.source();
        }
        assert!(blocked, "{error:?}");
    }
}
