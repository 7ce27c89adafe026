//! The HTTP side of the federation's MCP client: rmcp's Streamable HTTP client worker (sessions,
//! SSE responses, session recovery) over Warden's guarded upstream client, with Warden's
//! credential and the caller's identity put on each POST.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions};
use rmcp::transport::streamable_http_client::{StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse};
use sse_stream::{Error as SseError, Sse};

use crate::credentials::Credential;
use crate::identity::Principal;
use crate::upstream::{CallContext, Upstream};

/// What a `tools/call` carries to the transport, in the request's extensions: the headers the
/// call goes out with (the caller's identity, Warden's credential for the server) and the URL
/// when the credential is a query parameter. Computed per call by the tool, so the transport
/// never decides whose identity a request carries.
#[derive(Clone)]
pub struct CallHeaders {
    pub headers: HeaderMap,
    pub uri: Option<Arc<str>>,
}

/// Warden's HTTP client as rmcp's transport sees it.
#[derive(Clone)]
pub struct FederatedHttp {
    pub upstream: Upstream,
    /// Warden's credential for the server, for requests that belong to no call (initialize,
    /// tools/list, the session's streams).
    pub credential: Option<Arc<Credential>>,
    /// Who session requests are made as when the credential needs a principal.
    pub service: Arc<Principal>,
    /// What a `429` from the server parks (see `Link::parking_key`).
    pub parking_key: Arc<str>,
}

type Error = StreamableHttpError<reqwest::Error>;

fn refused(why: &'static str) -> Error {
    StreamableHttpError::Io(std::io::Error::other(why))
}

impl FederatedHttp {
    /// The headers and URL of a request outside any call: the credential only, no identity.
    async fn session_parts(&self, uri: Arc<str>) -> Result<(Arc<str>, HashMap<HeaderName, HeaderValue>), Error> {
        let mut url = url::Url::parse(&uri).map_err(|_| refused("invalid server URL"))?;
        self.upstream.check_literal(&url).map_err(|_| refused("destination not allowed"))?;
        let mut headers = HeaderMap::new();
        if let Some(credential) = &self.credential {
            let ctx = CallContext { request_id: uuid::Uuid::now_v7().to_string(), traceparent: String::new(), progress: None };
            let (secret, _) =
                credential.resolve(&self.upstream, &self.service, &ctx, None).await.map_err(|_| refused("credential unavailable"))?;
            credential.apply_parts(&mut headers, Some(&mut url), &secret);
        }
        let uri = if url.as_str() == &*uri { uri } else { Arc::from(url.as_str()) };
        Ok((uri, to_map(headers)))
    }

    async fn parts_for(
        &self,
        uri: Arc<str>,
        message: &ClientJsonRpcMessage,
        custom: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(Arc<str>, HashMap<HeaderName, HeaderValue>), Error> {
        let call = match message {
            ClientJsonRpcMessage::Request(r) => r.request.extensions().get::<CallHeaders>().cloned(),
            _ => None,
        };
        let (uri, mut headers) = match call {
            Some(call) => {
                let uri = call.uri.unwrap_or(uri);
                let url = url::Url::parse(&uri).map_err(|_| refused("invalid server URL"))?;
                self.upstream.check_literal(&url).map_err(|_| refused("destination not allowed"))?;
                (uri, to_map(call.headers))
            }
            None => self.session_parts(uri).await?,
        };
        for (name, value) in custom {
            headers.entry(name).or_insert(value);
        }
        Ok((uri, headers))
    }
}

impl FederatedHttp {
    /// A `429` with `Retry-After` parks the server for this session's credential holder (rmcp
    /// keeps the status and the header's value for Warden).
    fn park_on_429<T>(&self, sent: &Result<T, Error>) {
        if let Err(StreamableHttpError::HttpStatus(e)) = sent
            && e.status == 429
            && let Some(wait) =
                e.retry_after.as_deref().and_then(|v| crate::upstream::parking::parse_retry_after(v, std::time::SystemTime::now()))
        {
            self.upstream.parking.park(self.parking_key.to_string(), wait);
        }
    }
}

fn to_map(headers: HeaderMap) -> HashMap<HeaderName, HeaderValue> {
    let mut map = HashMap::with_capacity(headers.len());
    let mut last = None;
    for (name, value) in headers {
        if let Some(name) = name {
            last = Some(name);
        }
        if let Some(name) = &last {
            map.insert(name.clone(), value);
        }
    }
    map
}

impl StreamableHttpClient for FederatedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let (uri, headers) = self.parts_for(uri, &message, custom_headers).await?;
        let sent = self.upstream.client().post_message(uri, message, session_id, None, headers).await;
        self.park_on_429(&sent);
        sent
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let (uri, headers) = self.parts_for(uri, &message, custom_headers).await?;
        let sent =
            self.upstream.client().post_message_with_max_sse_event_size(uri, message, session_id, None, headers, max_sse_event_size).await;
        self.park_on_429(&sent);
        sent
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let (uri, mut headers) = self.session_parts(uri).await?;
        headers.extend(custom_headers);
        self.upstream.client().delete_session(uri, session_id, None, headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let (uri, mut headers) = self.session_parts(uri).await?;
        headers.extend(custom_headers);
        self.upstream.client().get_stream(uri, session_id, last_event_id, None, headers).await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let (uri, mut headers) = self.session_parts(uri).await?;
        headers.extend(custom_headers);
        self.upstream.client().get_stream_with_max_sse_event_size(uri, session_id, last_event_id, None, headers, max_sse_event_size).await
    }
}
