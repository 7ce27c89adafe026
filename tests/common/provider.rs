//! A local OAuth provider that speaks the real protocol over HTTP, standing in for GitHub or
//! Google (which cannot run here): RFC 8414 metadata, an authorization endpoint that checks the
//! client, redirect URI and PKCE S256 and redirects back with a code, a token endpoint with the
//! authorization-code and refresh-token grants (refresh tokens rotate: each is single use), and
//! an API that checks the bearer. Failures can be injected: 503s, `invalid_grant`, malformed
//! responses, revoked access tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;
use sha2::Digest;

use super::{listen, serve};

pub const CLIENT_ID: &str = "warden-client";
pub const CLIENT_SECRET: &str = "provider-s3cret";

#[derive(Default)]
pub struct ProviderState {
    inner: Mutex<Inner>,
    /// Lifetime of issued access tokens, seconds.
    pub access_ttl: AtomicU64,
    pub code_requests: AtomicUsize,
    pub refresh_requests: AtomicUsize,
    pub api_calls: AtomicUsize,
    /// Answer this many token requests with 503.
    pub fail_next: AtomicUsize,
    /// Refuse refresh with `invalid_grant`.
    pub refuse_refresh: AtomicBool,
    /// Answer the next refresh with a 200 that holds no token.
    pub malformed_next: AtomicBool,
    /// The API refuses every token.
    pub api_rejects_all: AtomicBool,
    pub redirect_uri: Mutex<Option<String>>,
}

#[derive(Default)]
struct Inner {
    n: u64,
    /// code → (account, challenge, redirect_uri)
    codes: HashMap<String, (String, String, String)>,
    /// access token → (account, expires)
    access: HashMap<String, (String, Instant)>,
    /// live refresh tokens → account
    refresh: HashMap<String, String>,
}

pub struct FakeProvider {
    pub url: String,
    pub state: Arc<ProviderState>,
}

impl FakeProvider {
    pub async fn start(access_ttl: u64) -> Self {
        let state = Arc::new(ProviderState { access_ttl: AtomicU64::new(access_ttl), ..ProviderState::default() });
        let (listener, url) = listen().await;
        let app = Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/api/me", get(me))
            .route("/api/status/{code}", get(status))
            .with_state((Arc::clone(&state), url.clone()));
        serve(listener, app);
        Self { url, state }
    }

    pub fn refreshes(&self) -> usize {
        self.state.refresh_requests.load(Ordering::SeqCst)
    }

    /// Revokes every access token issued so far (the API will answer 401 to them).
    pub fn revoke_access_tokens(&self) {
        self.state.inner.lock().unwrap().access.clear();
    }

    /// Every token the provider issued, to grep storage for.
    pub fn issued_secrets(&self) -> Vec<String> {
        let inner = self.state.inner.lock().unwrap();
        inner.access.keys().chain(inner.refresh.keys()).cloned().collect()
    }
}

/// How a test gateway's connection is set up.
pub struct ConnectionOptions<'a> {
    pub database: &'a str,
    pub keys: &'a str,
    pub name: &'a str,
    /// `per_user` or `shared`.
    pub mode: &'a str,
    /// Find the provider through `issuer:` discovery instead of explicit URLs.
    pub discover: bool,
    pub admin_token: &'a str,
    /// `vault.token_cache`; `0s` when a test changes the database behind the gateway's back.
    pub token_cache: &'a str,
}

/// Gateway config for tools `me` and `status` at this provider's API, carrying the OAuth
/// connection `o.name` stored in the vault at `o.database`, with the admin API on
/// `o.admin_token`. Returns the `tools:` list and the extra top-level YAML for
/// [`super::gateway`].
pub fn connection_config(provider: &str, o: &ConnectionOptions<'_>) -> (String, String) {
    let ConnectionOptions { database, keys, name, mode, discover, admin_token, token_cache } = o;
    let endpoints = if *discover {
        format!("issuer: {provider}")
    } else {
        format!("authorize_url: {provider}/authorize\n      token_url: {provider}/token")
    };
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\nvault:\n  database: \"{database}\"\n  keys: \"{keys}\"\n  token_cache: {token_cache}\nadmin:\n  token: {admin_token}\ncredentials:\n  - name: {name}\n    placement: bearer\n    oauth:\n      grant: authorization_code\n      mode: {mode}\n      {endpoints}\n      client_id: {CLIENT_ID}\n      client_secret: {CLIENT_SECRET}\n      scopes: [read]\n      refresh_before: 60s",
    );
    let tools = format!(
        "  - {{name: me, description: d, credential: {name}, http: {{url: \"{provider}/api/me\"}}}}\n  - {{name: status, description: d, credential: {name}, input_schema: {{type: object, properties: {{code: {{type: integer}}}}, required: [code]}}, http: {{url: \"{provider}/api/status/{{code}}\"}}}}\n",
    );
    (tools, extra)
}

/// A new vault key ring with one key, `k1`.
pub fn keyring() -> String {
    format!("k1:{}", warden::credentials::envelope::KeyRing::generate_key().expose())
}

/// A browser: no automatic redirects, cookies carried by hand.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").unwrap_or_else(|| panic!("no redirect: {}", r.status())).to_str().unwrap().to_owned()
}

/// Opens the connect link and signs in at the provider as `account` (the fake provider reads
/// `x-account`; an auto-approving development server ignores it); returns the callback URL and
/// the browser-binding cookie, without visiting the callback yet.
pub async fn sign_in(link: &str, account: &str, deny: bool) -> (String, String) {
    let b = browser();
    let start = b.get(link).send().await.unwrap();
    assert_eq!(start.status(), 302, "connect link refused");
    let cookie = start.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut at_provider = b.get(location(&start)).header("x-account", account);
    if deny {
        at_provider = at_provider.header("x-deny", "1");
    }
    let back = at_provider.send().await.unwrap();
    assert!(back.status().is_redirection(), "the provider did not redirect back: {}", back.status());
    (location(&back), cookie)
}

pub async fn visit(url: &str, cookie: Option<&str>) -> (u16, String) {
    let mut r = browser().get(url);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

type S = State<(Arc<ProviderState>, String)>;

async fn metadata(State((_, url)): S) -> Response {
    axum::Json(json!({
        "issuer": url,
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
}

/// The browser says who is signing in with `x-account`, and can refuse with `x-deny`.
async fn authorize(State((p, url)): S, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let redirect_uri = get("redirect_uri");
    *p.redirect_uri.lock().unwrap() = Some(redirect_uri.clone());
    if get("client_id") != CLIENT_ID || get("response_type") != "code" || redirect_uri.is_empty() {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
        return (StatusCode::BAD_REQUEST, "PKCE S256 required").into_response();
    }
    let state = get("state");
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    // RFC 9207: name the issuer in every authorization response.
    let iss: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    if headers.contains_key("x-deny") {
        return redirect(format!("{redirect_uri}{sep}error=access_denied&state={state}&iss={iss}"));
    }
    let account = headers.get("x-account").and_then(|v| v.to_str().ok()).unwrap_or("nobody").to_owned();
    let code = {
        let mut inner = p.inner.lock().unwrap();
        inner.n += 1;
        let code = format!("code-{}", inner.n);
        inner.codes.insert(code.clone(), (account, get("code_challenge"), redirect_uri.clone()));
        code
    };
    redirect(format!("{redirect_uri}{sep}code={code}&state={state}&iss={iss}"))
}

fn oauth_error(code: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": code}))).into_response()
}

fn issue(p: &ProviderState, account: &str) -> Response {
    let ttl = p.access_ttl.load(Ordering::SeqCst);
    let mut inner = p.inner.lock().unwrap();
    inner.n += 1;
    let n = inner.n;
    let access = format!("at-{account}-{n}");
    let refresh = format!("rt-{account}-{n}");
    inner.access.insert(access.clone(), (account.to_owned(), Instant::now() + Duration::from_secs(ttl)));
    inner.refresh.insert(refresh.clone(), account.to_owned());
    axum::Json(json!({"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": ttl, "scope": "read"}))
        .into_response()
}

async fn token(State((p, _)): S, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let grant = get("grant_type");
    if grant == "refresh_token" {
        p.refresh_requests.fetch_add(1, Ordering::SeqCst);
    } else {
        p.code_requests.fetch_add(1, Ordering::SeqCst);
    }
    // Let concurrent callers pile up, so single flight is really exercised.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if p.fail_next.load(Ordering::SeqCst) > 0 {
        p.fail_next.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    let by_basic = headers.get("authorization").is_some_and(|v| v == basic.as_str());
    let by_post = get("client_id") == CLIENT_ID && get("client_secret") == CLIENT_SECRET;
    if !by_basic && !by_post {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    match grant.as_str() {
        "authorization_code" => {
            let entry = p.inner.lock().unwrap().codes.remove(&get("code"));
            let Some((account, challenge, redirect_uri)) = entry else { return oauth_error("invalid_grant") };
            let verifier_hash =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
            if redirect_uri != get("redirect_uri") || verifier_hash != challenge {
                return oauth_error("invalid_grant");
            }
            issue(&p, &account)
        }
        "refresh_token" => {
            if p.malformed_next.swap(false, Ordering::SeqCst) {
                return axum::Json(json!({"token_type": "Bearer"})).into_response();
            }
            if p.refuse_refresh.load(Ordering::SeqCst) {
                return oauth_error("invalid_grant");
            }
            // Rotation: a refresh token works once.
            let account = p.inner.lock().unwrap().refresh.remove(&get("refresh_token"));
            match account {
                Some(account) => issue(&p, &account),
                None => oauth_error("invalid_grant"),
            }
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

fn bearer_account(p: &ProviderState, headers: &HeaderMap) -> Option<String> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    let inner = p.inner.lock().unwrap();
    let (account, expires) = inner.access.get(token)?;
    (*expires > Instant::now()).then(|| account.clone())
}

async fn me(State((p, _)): S, headers: HeaderMap) -> Response {
    p.api_calls.fetch_add(1, Ordering::SeqCst);
    if p.api_rejects_all.load(Ordering::SeqCst) {
        return (StatusCode::UNAUTHORIZED, "rejected").into_response();
    }
    match bearer_account(&p, &headers) {
        Some(account) => axum::Json(json!({"account": account})).into_response(),
        None => (StatusCode::UNAUTHORIZED, "invalid token").into_response(),
    }
}

async fn status(State((p, _)): S, Path(code): Path<u16>) -> Response {
    p.api_calls.fetch_add(1, Ordering::SeqCst);
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "status as asked").into_response()
}
