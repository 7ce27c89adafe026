//! The development server's endpoints.

// Handlers short-circuit with a ready `Response` as the error; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Client, DevIdp, DevUser, Grant};

const CODE_TTL: Duration = Duration::from_secs(60);
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn router(idp: Arc<DevIdp>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/jwks", get(jwks))
        .route("/register", post(register))
        .route("/authorize", get(authorize))
        .route("/authorize/decide", post(decide))
        .route("/token", post(token))
        .with_state(idp)
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn metadata(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    let iss = idp.issuer();
    let mut scopes: Vec<&String> = idp.config.users.iter().flat_map(|u| &u.scopes).collect();
    scopes.sort();
    scopes.dedup();
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "registration_endpoint": format!("{iss}/register"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "scopes_supported": scopes,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],

        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
    }))
}

async fn jwks(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    Json(json!(idp.jwks()))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (status, Json(json!({"error": error, "error_description": description}))).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

/// RFC 7591 dynamic client registration.
async fn register(State(idp): State<Arc<DevIdp>>, Json(body): Json<Value>) -> Response {
    let redirect_uris: Vec<String> = body
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if redirect_uris.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_redirect_uri", "redirect_uris is required");
    }
    for uri in &redirect_uris {
        match url::Url::parse(uri) {
            Ok(u) if u.fragment().is_none() && !u.cannot_be_a_base() => {}
            _ => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_redirect_uri",
                    "each redirect URI must be absolute and have no fragment",
                );
            }
        }
    }
    let auth_method = body.get("token_endpoint_auth_method").and_then(Value::as_str).unwrap_or("client_secret_basic").to_owned();
    if !matches!(auth_method.as_str(), "none" | "client_secret_post" | "client_secret_basic") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", "unsupported token_endpoint_auth_method");
    }
    let client_id = format!("client-{}", uuid::Uuid::new_v4().simple());
    let secret = (auth_method != "none").then(random_token);
    lock(&idp.clients).insert(
        client_id.clone(),
        Client { redirect_uris: redirect_uris.clone(), secret: secret.clone(), auth_method: auth_method.clone() },
    );
    let mut response = body.as_object().cloned().unwrap_or_default();
    response.insert("client_id".into(), json!(client_id));
    response.insert("client_id_issued_at".into(), json!(crate::unix_now()));
    response.insert("redirect_uris".into(), json!(redirect_uris));
    response.insert("token_endpoint_auth_method".into(), json!(auth_method));
    response.insert("grant_types".into(), json!(["authorization_code", "refresh_token"]));
    response.insert("response_types".into(), json!(["code"]));
    if let Some(secret) = secret {
        response.insert("client_secret".into(), json!(secret));
        response.insert("client_secret_expires_at".into(), json!(0));
    }
    (StatusCode::CREATED, Json(Value::Object(response))).into_response()
}

#[derive(Debug, Clone, Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    nonce: Option<String>,
}

/// Scopes of OpenID Connect itself, granted to every user (they name no permission).
const OPENID_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The checked request: either a page to show (the redirect URI cannot be trusted) or the
/// redirect URI errors go to.
enum Checked {
    Page(Response),
    Redirect { redirect_uri: String, error: &'static str, state: Option<String> },
}

fn check_authorize(idp: &DevIdp, p: &AuthorizeParams) -> Result<String, Checked> {
    let bad_page = |msg: &str| {
        Checked::Page((StatusCode::BAD_REQUEST, Html(format!("<h1>Authorization error</h1><p>{}</p>", escape(msg)))).into_response())
    };
    let client_id = p.client_id.as_deref().ok_or_else(|| bad_page("client_id is required"))?;
    let client = lock(&idp.clients).get(client_id).cloned().ok_or_else(|| bad_page("unknown client_id"))?;
    let redirect_uri = match &p.redirect_uri {
        Some(uri) if client.redirect_uris.iter().any(|r| redirect_matches(r, uri)) => uri.clone(),
        Some(_) => return Err(bad_page("redirect_uri is not registered for this client")),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return Err(bad_page("redirect_uri is required")),
    };
    let redirect_error = |error| Checked::Redirect { redirect_uri: redirect_uri.clone(), error, state: p.state.clone() };
    if p.response_type.as_deref() != Some("code") {
        return Err(redirect_error("unsupported_response_type"));
    }
    if p.code_challenge.as_deref().is_none_or(|c| c.len() < 43 || c.len() > 128) || p.code_challenge_method.as_deref() != Some("S256") {
        return Err(redirect_error("invalid_request"));
    }
    if let Some(resource) = &p.resource {
        match url::Url::parse(resource) {
            Ok(u) if u.fragment().is_none() => {}
            _ => return Err(redirect_error("invalid_target")),
        }
    }
    Ok(redirect_uri)
}

/// Exact match, except that a loopback `http` redirect matches on any port (RFC 8252 §7.3):
/// native clients such as VS Code register `http://127.0.0.1/` and use whatever port is free.
fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(a), Ok(b)) = (url::Url::parse(registered), url::Url::parse(requested)) else { return false };
    let loopback = matches!(a.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    loopback
        && a.scheme() == "http"
        && b.scheme() == "http"
        && a.host_str() == b.host_str()
        && a.path() == b.path()
        && a.query() == b.query()
}

fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "bad redirect_uri");
    };
    url.query_pairs_mut().extend_pairs(pairs.iter().copied());
    Redirect::to(url.as_str()).into_response()
}

fn checked_response(c: Checked) -> Response {
    match c {
        Checked::Page(r) => r,
        Checked::Redirect { redirect_uri, error, state } => {
            let mut pairs = vec![("error", error)];
            if let Some(s) = &state {
                pairs.push(("state", s));
            }
            redirect_with(&redirect_uri, &pairs)
        }
    }
}

/// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, the MCP
/// 2025-11-25 recommendation): a `client_id` that is an HTTPS URL with a path names a JSON
/// document the client publishes. Fetched (no redirects, at most 5 KiB, 10 s), it must name
/// that same URL as its `client_id`, list `redirect_uris`, and be a public client (`none`; no
/// secret can be published). The client is then known, as if registered, until the server
/// stops. A client already known by that URL is not fetched again.
async fn client_from_metadata(idp: &DevIdp, client_id: &str) -> Result<(), String> {
    let Ok(url) = url::Url::parse(client_id) else { return Ok(()) };
    if url.scheme() != "https" || url.path() == "/" || url.fragment().is_some() || !url.username().is_empty() {
        return Ok(());
    }
    if lock(&idp.clients).contains_key(client_id) {
        return Ok(());
    }
    let response = idp
        .metadata_client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("the client metadata document could not be fetched: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("the client metadata document answered HTTP {}", response.status().as_u16()));
    }
    let body = crate::body::read_limited(response, 5 * 1024).await.map_err(|_| "the client metadata document is too large".to_owned())?;
    let doc: Value = serde_json::from_slice(&body).map_err(|_| "the client metadata document is not JSON".to_owned())?;
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err("the client metadata document names another client_id".into());
    }
    let method = doc.get("token_endpoint_auth_method").and_then(Value::as_str).unwrap_or("none");
    if method != "none" || doc.get("client_secret").is_some() {
        return Err("a client metadata document describes a public client (token_endpoint_auth_method: none)".into());
    }
    let redirect_uris: Vec<String> =
        doc.get("redirect_uris").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
    if redirect_uris.is_empty() || redirect_uris.iter().any(|u| url::Url::parse(u).map_or(true, |u| u.fragment().is_some())) {
        return Err("the client metadata document needs absolute redirect_uris without fragments".into());
    }
    lock(&idp.clients).insert(client_id.to_owned(), Client { redirect_uris, secret: None, auth_method: "none".into() });
    Ok(())
}

async fn authorize(State(idp): State<Arc<DevIdp>>, Query(p): Query<AuthorizeParams>) -> Response {
    if let Some(client_id) = p.client_id.as_deref()
        && let Err(why) = client_from_metadata(&idp, client_id).await
    {
        return (StatusCode::BAD_REQUEST, Html(format!("<h1>Authorization error</h1><p>{}</p>", escape(&why)))).into_response();
    }
    let redirect_uri = match check_authorize(&idp, &p) {
        Ok(r) => r,
        Err(c) => return checked_response(c),
    };
    if let Some(user) = idp.config.auto_approve.clone() {
        return issue_code(&idp, &p, &redirect_uri, &user);
    }
    Html(consent_page(&idp.config.users, &p)).into_response()
}

#[derive(Debug, Deserialize)]
struct Decision {
    #[serde(flatten)]
    params: AuthorizeParams,
    user: Option<String>,
    action: String,
}

async fn decide(State(idp): State<Arc<DevIdp>>, Form(d): Form<Decision>) -> Response {
    let redirect_uri = match check_authorize(&idp, &d.params) {
        Ok(r) => r,
        Err(c) => return checked_response(c),
    };
    let state = d.params.state.clone().unwrap_or_default();
    match (d.action.as_str(), d.user) {
        ("approve", Some(user)) if idp.config.users.iter().any(|u| u.id == user) => issue_code(&idp, &d.params, &redirect_uri, &user),
        _ => redirect_with(&redirect_uri, &[("error", "access_denied"), ("state", &state)]),
    }
}

fn issue_code(idp: &DevIdp, p: &AuthorizeParams, redirect_uri: &str, user_id: &str) -> Response {
    let Some(user) = idp.config.users.iter().find(|u| u.id == user_id) else {
        return redirect_with(redirect_uri, &[("error", "access_denied")]);
    };
    let asked: Vec<&str> = p.scope.as_deref().unwrap_or_default().split_whitespace().collect();
    let openid = asked.contains(&"openid");
    let permissions: Vec<&str> = asked.iter().copied().filter(|s| !OPENID_SCOPES.contains(s)).collect();
    let scope = granted_scope(user, p.scope.as_ref().map(|_| permissions.join(" ")).as_deref());
    if scope.is_empty() && !permissions.is_empty() {
        // Asked only for scopes this user may not have: no token with an empty scope (RFC 6749
        // §4.1.2.1).
        let mut pairs = vec![
            ("error", "invalid_scope"),
            ("error_description", "none of the requested scopes may be granted to this user"),
            ("iss", idp.issuer()),
        ];
        if let Some(s) = &p.state {
            pairs.push(("state", s));
        }
        return redirect_with(redirect_uri, &pairs);
    }
    let code = random_token();
    let grant = Grant {
        client_id: p.client_id.clone().unwrap_or_default(),
        user: user.id.clone(),
        scope,
        resource: p.resource.clone(),
        redirect_uri: redirect_uri.to_owned(),
        code_challenge: p.code_challenge.clone().unwrap_or_default(),
        expires: tokio::time::Instant::now() + CODE_TTL,
        openid,
        nonce: p.nonce.clone(),
    };
    lock(&idp.codes).insert(code.clone(), grant);
    // RFC 9207: name the issuer in the response so clients can detect mix-up attacks.
    let mut pairs = vec![("code", code.as_str()), ("iss", idp.issuer())];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    redirect_with(redirect_uri, &pairs)
}

/// Requested scopes the user may have; all the user's scopes when none are requested.
fn granted_scope(user: &DevUser, requested: Option<&str>) -> Vec<String> {
    match requested.map(str::split_whitespace) {
        Some(req) => {
            let req: Vec<&str> = req.collect();
            if req.is_empty() { user.scopes.clone() } else { user.scopes.iter().filter(|s| req.contains(&s.as_str())).cloned().collect() }
        }
        None => user.scopes.clone(),
    }
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

/// The client, authenticated as it registered: Basic, POST body, or none (public).
fn authenticate_client(idp: &DevIdp, headers: &HeaderMap, t: &TokenRequest) -> Result<String, Response> {
    let invalid = || oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(i, p)| (form_decode(i), form_decode(p))));
    let (client_id, secret) = match (&basic, &t.client_id) {
        (Some((id, secret)), _) => (id.clone(), Some(secret.clone())),
        (None, Some(id)) => (id.clone(), t.client_secret.clone()),
        (None, None) => return Err(invalid()),
    };
    let client = lock(&idp.clients).get(&client_id).cloned().ok_or_else(invalid)?;
    let ok = match (&client.secret, client.auth_method.as_str()) {
        (None, _) => true,
        (Some(expected), "client_secret_basic" | "client_secret_post") => secret.as_deref().is_some_and(|s| ct_eq(s, expected)),
        _ => false,
    };
    if ok { Ok(client_id) } else { Err(invalid()) }
}

fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

async fn token(State(idp): State<Arc<DevIdp>>, headers: HeaderMap, Form(t): Form<TokenRequest>) -> Response {
    let client_id = match authenticate_client(&idp, &headers, &t) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let invalid_grant = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
    let grant = match t.grant_type.as_deref() {
        Some("authorization_code") => {
            let Some(grant) = t.code.as_ref().and_then(|c| lock(&idp.codes).remove(c)) else {
                return invalid_grant("unknown or used code");
            };
            if grant.client_id != client_id || grant.expires < tokio::time::Instant::now() {
                return invalid_grant("code expired or issued to another client");
            }
            if t.redirect_uri.as_deref().is_some_and(|r| r != grant.redirect_uri) {
                return invalid_grant("redirect_uri mismatch");
            }
            let verifier = t.code_verifier.as_deref().unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if verifier.len() < 43 || !ct_eq(&computed, &grant.code_challenge) {
                return invalid_grant("PKCE verification failed");
            }
            grant
        }
        Some("refresh_token") => {
            let Some(grant) = t.refresh_token.as_ref().and_then(|r| lock(&idp.refresh_tokens).remove(r)) else {
                return invalid_grant("unknown or used refresh token");
            };
            if grant.client_id != client_id || grant.expires < tokio::time::Instant::now() {
                return invalid_grant("refresh token expired or issued to another client");
            }
            let mut grant = grant;
            if let Some(scope) = &t.scope {
                let narrowed: Vec<String> =
                    scope.split_whitespace().filter(|s| grant.scope.iter().any(|g| g == s)).map(str::to_owned).collect();
                if narrowed.is_empty() && !scope.trim().is_empty() {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "none of the requested scopes was granted");
                }
                grant.scope = narrowed;
            }
            grant
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "authorization_code or refresh_token"),
    };
    let resource = match (&grant.resource, &t.resource) {
        (Some(g), Some(r)) if g != r => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "resource differs from the authorization request");
        }
        (Some(g), _) => Some(g.clone()),
        (None, r) => r.clone(),
    };
    let Some(user) = idp.config.users.iter().find(|u| u.id == grant.user) else {
        return invalid_grant("user no longer exists");
    };
    let access = match idp.access_token(user, &client_id, &grant.scope, resource.as_deref()) {
        Ok(a) => a,
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed"),
    };
    let id_token = match grant.openid.then(|| idp.id_token(user, &client_id, grant.nonce.as_deref())).transpose() {
        Ok(t) => t,
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed"),
    };
    let refresh = random_token();
    let scope = grant.scope.join(" ");
    // A refreshed ID token carries no nonce (OpenID Connect Core §12.2).
    let refreshed = Grant { resource, expires: tokio::time::Instant::now() + REFRESH_TTL, nonce: None, ..grant };
    lock(&idp.refresh_tokens).insert(refresh.clone(), refreshed);
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": idp.config.access_token_ttl.as_secs(),
        "refresh_token": refresh,
        "scope": scope,
    });
    if let Some(id_token) = id_token {
        answer["id_token"] = json!(id_token);
    }
    let mut r = Json(answer).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

impl DevIdp {
    /// An OpenID Connect ID token for `client_id`: who the user is, with the `nonce` the
    /// authorization request sent.
    pub(super) fn id_token(&self, user: &DevUser, client_id: &str, nonce: Option<&str>) -> Result<String, super::KeyError> {
        let now = crate::unix_now();
        let mut claims = json!({
            "iss": self.config.issuer,
            "sub": user.id,
            "aud": client_id,
            "iat": now,
            "exp": now + 600,
            "name": user.name,
            "preferred_username": user.id,
            "roles": user.roles,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(tenant) = &user.tenant {
            claims["tenant"] = json!(tenant);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.key.kid.clone());
        header.typ = Some("JWT".into());
        self.key.sign_with_header(&header, &claims)
    }

    /// An RFC 9068 access token. Without a resource the audience is the client itself, which
    /// no resource server accepts: clients must send `resource` (RFC 8707), as MCP requires.
    pub(super) fn access_token(
        &self,
        user: &DevUser,
        client_id: &str,
        scope: &[String],
        resource: Option<&str>,
    ) -> Result<String, super::KeyError> {
        let now = crate::unix_now();
        let mut claims = json!({
            "iss": self.config.issuer,
            "sub": user.id,
            "aud": resource.unwrap_or(client_id),
            "client_id": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.config.access_token_ttl.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
            "scope": scope.join(" "),
            "roles": user.roles,
            "name": user.name,
        });
        if let (Some(tenant), Some(obj)) = (&user.tenant, claims.as_object_mut()) {
            obj.insert("tenant".into(), json!(tenant));
        }
        self.key.sign(&claims)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn consent_page(users: &[DevUser], p: &AuthorizeParams) -> String {
    let mut hidden = String::new();
    let fields: HashMap<&str, &Option<String>> = HashMap::from([
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
        ("state", &p.state),
        ("scope", &p.scope),
        ("resource", &p.resource),
        ("nonce", &p.nonce),
    ]);
    for (name, value) in fields {
        if let Some(v) = value {
            hidden.push_str(&format!(r#"<input type="hidden" name="{name}" value="{}">"#, escape(v)));
        }
    }
    let mut buttons = String::new();
    for u in users {
        buttons.push_str(&format!(
            r#"<li><button name="user" value="{}">{}</button> <small>roles: {} · scopes: {}</small></li>"#,
            escape(&u.id),
            escape(&u.name),
            escape(&u.roles.join(", ")),
            escape(&u.scopes.join(" ")),
        ));
    }
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Warden dev sign-in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto}}li{{margin:.5rem 0}}</style></head>
<body><h1>Sign in (development server)</h1>
<p>Client <code>{client}</code> asks for <code>{scope}</code> on <code>{resource}</code>. Pick a demo user:</p>
<form method="post" action="authorize/decide">{hidden}<input type="hidden" name="action" value="approve"><ul>{buttons}</ul></form>
<form method="post" action="authorize/decide">{hidden}<input type="hidden" name="action" value="deny"><button>Deny</button></form>
<p><small>This server is for demos and tests only.</small></p></body></html>"#,
        client = escape(p.client_id.as_deref().unwrap_or_default()),
        scope = escape(p.scope.as_deref().unwrap_or("(default)")),
        resource = escape(p.resource.as_deref().unwrap_or("(none)")),
    )
}
