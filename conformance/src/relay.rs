//! A token-adding relay for clients that cannot send a bearer token (the official MCP
//! conformance suite): every request is forwarded unchanged, `Host` and `Origin` included, with
//! `Authorization: Bearer <fresh token from the suite's issuer>`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use warden::devidp::SigningKey;

struct Relay {
    http: reqwest::Client,
    upstream: String,
    audience: String,
    issuer: String,
    scope: String,
    key: Arc<SigningKey>,
}

const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "authorization"];

pub async fn serve(listen: SocketAddr, upstream: String, issuer: String, scope: String, key: Arc<SigningKey>) -> Result<(), String> {
    let audience = upstream.clone();
    let base = match url::Url::parse(&upstream) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(e) => return Err(format!("--upstream: {e}")),
    };
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let relay = Arc::new(Relay { http, upstream: base, audience, issuer, scope, key });
    let app = axum::Router::new().fallback(forward).with_state(relay);
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("relay listening on http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

async fn forward(State(relay): State<Arc<Relay>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let claims = json!({"iss": relay.issuer, "sub": "conformance-relay", "aud": relay.audience, "iat": now, "nbf": now - 5, "exp": now + 300, "scope": relay.scope, "client_id": "conformance-relay"});
    let token = relay.key.sign(&claims).unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = relay.http.request(parts.method.clone(), format!("{}{path}", relay.upstream)).body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            req = req.header(name, value);
        }
    }
    req = req.bearer_auth(token);
    match req.send().await {
        Ok(resp) => {
            let mut out = Response::builder().status(resp.status().as_u16());
            for (name, value) in resp.headers() {
                if !HOP_BY_HOP.contains(&name.as_str()) {
                    out = out.header(HeaderName::from(name), value);
                }
            }
            out.body(Body::from_stream(resp.bytes_stream())).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
