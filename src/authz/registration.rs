//! Clients: dynamic registration (RFC 7591) at `/oauth/register`, and the rules every
//! redirect URI follows.
//!
//! By default a client may register any `https` redirect URI and loopback `http` ones
//! (`127.0.0.1`, `[::1]`, `localhost`), whose port is not compared at `/authorize` (RFC 8252
//! §7.3: a native app listens on whatever port is free). `registration.redirect_uris` replaces
//! that with an allow-list of patterns (`*` matches any run of characters), which is also how
//! private-use schemes (`cursor://…`) are allowed. A client secret is returned once and stored
//! as its SHA-256 only.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AuthServer, Refusal, Step};
use crate::audit::Verdict;
use crate::credentials::vault::{digest, random_token};
use crate::edge::RequestContext;
use crate::store::StoreError;

/// How long a fetched client ID metadata document is used before it is fetched again.
const DOCUMENT_FRESH_SECS: i64 = 3600;
const DOCUMENT_MAX_BYTES: usize = 5 * 1024;
const MAX_REDIRECT_URIS: usize = 10;

/// Why a client could not be looked up.
#[derive(Debug)]
pub enum Lookup {
    Store(StoreError),
    /// The client's metadata document could not be used: why.
    Metadata(String),
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => e.fmt(f),
            Self::Metadata(why) => f.write_str(why),
        }
    }
}

/// A `client_id` that names a metadata document: an `https` URL with a path, no fragment and no
/// credentials.
fn metadata_document_url(client_id: &str) -> Option<url::Url> {
    let url = url::Url::parse(client_id).ok()?;
    (url.scheme() == "https" && url.path() != "/" && url.fragment().is_none() && url.username().is_empty() && url.password().is_none())
        .then_some(url)
}
const MAX_URI_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 200;
const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", super::idjag::GRANT_TYPE];

/// A client's registered metadata (what is kept of the registration request).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub metadata: ClientMetadata,
    pub secret_hash: Option<String>,
}

impl Client {
    pub fn public(&self) -> bool {
        self.metadata.token_endpoint_auth_method == "none"
    }

    pub fn may_use(&self, grant_type: &str) -> bool {
        self.metadata.grant_types.iter().any(|g| g == grant_type)
    }

    /// Whether `uri` is one of the registered redirect URIs: exactly, or for a loopback `http`
    /// one, on any port (RFC 8252 §7.3).
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.metadata.redirect_uris.iter().any(|registered| registered == uri || same_but_port(registered, uri))
    }
}

fn loopback(url: &url::Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        }
}

fn same_but_port(registered: &str, uri: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(registered), url::Url::parse(uri)) else { return false };
    loopback(&a) && loopback(&b) && a.host() == b.host() && a.path() == b.path() && a.query() == b.query() && b.fragment().is_none()
}

/// A redirect URI pattern from the config: absolute, no fragment.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    match pattern.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !rest.is_empty() && !pattern.contains('#') => Ok(()),
        _ => Err(format!("{pattern:?} is not an absolute URI pattern (scheme://…, no fragment)")),
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl AuthServer {
    /// Whether a client may register `uri` as a redirect URI.
    fn redirect_allowed(&self, uri: &str) -> Result<(), &'static str> {
        if uri.len() > MAX_URI_LEN {
            return Err("a redirect URI is too long");
        }
        let url = url::Url::parse(uri).map_err(|_| "each redirect URI must be an absolute URI")?;
        if url.fragment().is_some() {
            return Err("a redirect URI must not have a fragment");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a redirect URI must not carry credentials");
        }
        match &self.registration.redirect_uris {
            Some(patterns) => {
                if patterns.iter().any(|p| matches(p, uri)) {
                    Ok(())
                } else {
                    Err("this redirect URI is not allowed here (authorization_server.registration.redirect_uris)")
                }
            }
            None if url.scheme() == "https" && url.host().is_some() => Ok(()),
            None if loopback(&url) => Ok(()),
            None => Err("a redirect URI must be https, or http on a loopback address"),
        }
    }

    /// A client by id: registered here, or (an `https` URL) described by its client ID metadata
    /// document, fetched and kept for [`DOCUMENT_FRESH_SECS`].
    pub(super) async fn find_client(&self, client_id: &str) -> Result<Option<Client>, Lookup> {
        if client_id.len() > MAX_URI_LEN {
            return Ok(None);
        }
        let store = self.vault.store().await.map_err(Lookup::Store)?;
        let cached = store.oauth_client(client_id).await.map_err(Lookup::Store)?;
        let parse = |metadata: &str, secret_hash: Option<String>| {
            serde_json::from_str(metadata).ok().map(|metadata| Client { id: client_id.to_owned(), metadata, secret_hash })
        };
        let Some(url) = metadata_document_url(client_id) else {
            return Ok(cached.and_then(|(metadata, secret_hash, _)| parse(&metadata, secret_hash)));
        };
        if !self.registration.client_id_metadata_documents {
            return Ok(None);
        }
        if let Some((metadata, _, at)) = &cached
            && *at >= self.now() - DOCUMENT_FRESH_SECS
        {
            return Ok(parse(metadata, None));
        }
        let metadata = self.fetch_client_metadata(client_id, url).await.map_err(Lookup::Metadata)?;
        let text = serde_json::to_string(&metadata).unwrap_or_default();
        let stored = match cached {
            Some(_) => store.update_oauth_client(client_id, &text).await,
            None => store.insert_oauth_client(client_id, &text, None).await.map(drop),
        };
        stored.map_err(Lookup::Store)?;
        Ok(Some(Client { id: client_id.to_owned(), metadata, secret_hash: None }))
    }

    /// A client ID metadata document (draft-ietf-oauth-client-id-metadata-document): fetched
    /// through the SSRF guard, HTTPS only, no redirects, at most 5 KiB; it must name its own URL
    /// as `client_id`, describe a public client (no secret can be published), and pass the
    /// rules dynamic registration applies.
    async fn fetch_client_metadata(&self, client_id: &str, url: url::Url) -> Result<ClientMetadata, String> {
        let response = self
            .documents
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("the client metadata document could not be fetched: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("the client metadata document answered HTTP {}", response.status().as_u16()));
        }
        let body = crate::body::read_limited(response, DOCUMENT_MAX_BYTES)
            .await
            .map_err(|_| "the client metadata document is too large".to_owned())?;
        let mut doc: Value = serde_json::from_slice(&body).map_err(|_| "the client metadata document is not JSON".to_owned())?;
        if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
            return Err("the client metadata document names another client_id".into());
        }
        if doc.get("client_secret").is_some() || doc.get("token_endpoint_auth_method").is_some_and(|m| m != "none") {
            return Err("a client metadata document describes a public client (token_endpoint_auth_method: none)".into());
        }
        doc["token_endpoint_auth_method"] = json!("none");
        self.check_registration(&doc).map_err(|refusal| format!("the client metadata document is refused: {}", refusal.description))
    }

    fn check_registration(&self, body: &Value) -> Result<ClientMetadata, Refusal> {
        let invalid = |reason: &'static str, description: &str| Refusal::bad("invalid_client_metadata", reason, description);
        let bad_uri = |description: &str| Refusal::bad("invalid_redirect_uri", "redirect_uri_invalid", description);
        let object = body.as_object().ok_or_else(|| invalid("metadata_invalid", "the body must be a JSON object"))?;
        let strings = |name: &str| -> Result<Option<Vec<String>>, Refusal> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| invalid("metadata_invalid", "lists must hold strings")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(invalid("metadata_invalid", "lists must be JSON arrays")),
            }
        };
        let redirect_uris = strings("redirect_uris")?.unwrap_or_default();
        if redirect_uris.is_empty() {
            return Err(bad_uri("redirect_uris is required"));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(bad_uri("too many redirect_uris"));
        }
        for uri in &redirect_uris {
            self.redirect_allowed(uri).map_err(bad_uri)?;
        }
        let grant_types = strings("grant_types")?.unwrap_or_else(|| vec!["authorization_code".to_owned()]);
        if let Some(g) = grant_types.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
            return Err(invalid("grant_type_unsupported", &format!("grant type {g:?} is not supported")));
        }
        if grant_types.iter().any(|g| g == super::idjag::GRANT_TYPE) && self.id_jag.is_none() {
            return Err(invalid("grant_type_unsupported", "identity assertion grants are not accepted here"));
        }
        if let Some(types) = strings("response_types")?
            && types.iter().any(|t| t != "code")
        {
            return Err(invalid("response_type_unsupported", "only the code response type is supported"));
        }
        let token_endpoint_auth_method = match object.get("token_endpoint_auth_method") {
            None | Some(Value::Null) => "client_secret_basic".to_owned(),
            Some(Value::String(m)) if matches!(m.as_str(), "none" | "client_secret_basic" | "client_secret_post") => m.clone(),
            Some(_) => {
                return Err(invalid(
                    "auth_method_unsupported",
                    "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
                ));
            }
        };
        if token_endpoint_auth_method == "none" && grant_types.iter().any(|g| g == super::idjag::GRANT_TYPE) {
            return Err(invalid("auth_method_unsupported", "identity assertion grants need an authenticated (confidential) client"));
        }
        let client_name = match object.get("client_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) if n.chars().count() <= MAX_NAME_LEN => Some(n.clone()),
            Some(_) => return Err(invalid("metadata_invalid", "client_name must be a string of at most 200 characters")),
        };
        Ok(ClientMetadata { redirect_uris, grant_types, token_endpoint_auth_method, client_name })
    }
}

/// `POST /oauth/register`.
pub async fn register(
    State(server): State<Arc<AuthServer>>,
    Extension(ctx): Extension<RequestContext>,
    peer: super::Peer,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let step = Step::new("oauth/register");
    let refuse = |refusal: Refusal| {
        server.audit(&ctx, &step, Verdict { decision: "deny", reason: refusal.reason, status: refusal.status.as_u16() }, None);
        refusal.response()
    };
    if !server.registration.dynamic {
        return refuse(Refusal::new(StatusCode::FORBIDDEN, "access_denied", "registration_disabled", "dynamic client registration is off"));
    }
    let ip = server.client_ip(peer.map(|p| p.0.0), &headers);
    if let Err(wait) = super::Pace::take(&server.pace.registrations, ip) {
        let mut response = refuse(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too_many_registrations",
            "too many registrations from this address; try again later",
        ));
        super::retry_after(&mut response, wait);
        return response;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return refuse(Refusal::bad("invalid_client_metadata", "metadata_invalid", "the body must be JSON"));
    };
    let metadata = match server.check_registration(&body) {
        Ok(m) => m,
        Err(refusal) => return refuse(refusal),
    };
    let client_id = uuid::Uuid::new_v4().to_string();
    let secret = if metadata.token_endpoint_auth_method == "none" {
        None
    } else {
        match random_token() {
            Some(secret) => Some(secret),
            None => return refuse(Refusal::unavailable(&"no entropy")),
        }
    };
    let stored = async {
        let text = serde_json::to_string(&metadata).unwrap_or_default();
        server.vault.store().await?.insert_oauth_client(&client_id, &text, secret.as_ref().map(|s| digest(s.expose())).as_deref()).await
    };
    if let Err(e) = stored.await {
        return refuse(Refusal::unavailable(&e));
    }
    server.audit(&ctx, &step.client(&client_id), Verdict { decision: "allow", reason: "client_registered", status: 201 }, None);
    let mut answer = json!({
        "client_id": client_id,
        "client_id_issued_at": server.now(),
        "redirect_uris": metadata.redirect_uris,
        "grant_types": metadata.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
    });
    if let Some(name) = &metadata.client_name {
        answer["client_name"] = json!(name);
    }
    if let Some(secret) = &secret {
        answer["client_secret"] = json!(secret.expose());
        answer["client_secret_expires_at"] = json!(0);
    }
    let mut response = (StatusCode::CREATED, axum::Json(answer)).into_response();
    super::no_store(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_runs_of_characters() {
        assert!(matches("https://claude.ai/api/mcp/auth_callback", "https://claude.ai/api/mcp/auth_callback"));
        assert!(matches("cursor://*", "cursor://anysphere.cursor-retrieval/oauth/callback"));
        assert!(matches("https://*.example.com/cb", "https://a.b.example.com/cb"));
        assert!(!matches("https://*.example.com/cb", "https://evil.com/x.example.com/cbx"));
        assert!(!matches("https://app.example/cb", "https://app.example/cb/../x"));
        assert!(matches("http://127.0.0.1:*/cb*", "http://127.0.0.1:5555/cb?x=1"));
    }

    #[test]
    fn loopback_redirects_match_on_any_port_only() {
        let client = Client {
            id: "c".into(),
            metadata: ClientMetadata {
                redirect_uris: vec!["http://127.0.0.1:3000/callback".into(), "https://app.example/cb".into()],
                grant_types: vec![],
                token_endpoint_auth_method: "none".into(),
                client_name: None,
            },
            secret_hash: None,
        };
        assert!(client.allows_redirect("http://127.0.0.1:49152/callback"));
        assert!(client.allows_redirect("https://app.example/cb"));
        assert!(!client.allows_redirect("http://127.0.0.1:49152/other"));
        assert!(!client.allows_redirect("http://localhost:3000/callback"));
        assert!(!client.allows_redirect("https://app.example:8443/cb"));
        assert!(!client.allows_redirect("https://app.example/cb?next=evil"));
    }
}
