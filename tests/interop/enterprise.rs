//! Warden's authorization server in front of company IdPs emulated by node-oidc-provider with
//! each provider's documented quirks (`tests/interop/enterprise_idp.mjs`: Entra, Google, Okta),
//! signed in through by the official SDKs' OAuth clients, headless: registration at Warden,
//! the redirect to the IdP, its sign-in, Warden's consent page, the code, Warden's token, and a
//! tool call whose backend sees the person as the preset maps them.

use std::process::Command;

use serde_json::{Value, json};

use crate::{flow, report};

/// The client id and secret an admin registered for Warden at the emulated IdP.
const CLIENT_ID: &str = "warden-at-the-idp";
const CLIENT_SECRET: &str = "idp-secret-0123456789abcdef";

fn node() -> (String, std::path::PathBuf) {
    let bin = std::env::var("WARDEN_NODE_BIN").expect("WARDEN_NODE_BIN must name the directory holding node: run scripts/test");
    let modules = std::path::Path::new(&bin).parent().unwrap().to_owned();
    (format!("{bin}/node"), modules)
}

/// Starts the emulated IdP; returns its issuer and the child.
fn start_idp(preset: &str, redirect_uri: &str, extra: &[&str]) -> (String, std::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/enterprise_idp.mjs");
    let mut args = vec![
        script,
        "--preset",
        preset,
        "--port",
        &port,
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--redirect-uri",
        redirect_uri,
        "--user",
        "alice",
        "--roles",
        "analyst",
    ];
    args.extend_from_slice(extra);
    crate::start_node_issuer(&args)
}

struct Company {
    mcp: String,
    backend_url: String,
    idp_issuer: String,
    calendar: std::sync::Arc<warden::demo::backend::Calendar>,
    audit_path: std::path::PathBuf,
    idp: std::process::Child,
    shutdown: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Company {
    fn drop(&mut self) {
        let _ = self.idp.kill();
        self.shutdown.cancel();
    }
}

/// Warden with `authorization_server:` in front of the emulated `preset` IdP.
async fn company(preset: &str, upstream_extra: &str, idp_extra: &[&str]) -> Company {
    company_with(preset, upstream_extra, idp_extra, None, false).await
}

/// As [`company`]; with `id_jag`, the IdP also issues ID-JAGs (naming the client id that file
/// holds) and Warden accepts them; with `exchange`, `list_events` calls the calendar with a
/// token the IdP exchanges (RFC 8693) for the one it gave Warden at the caller's sign-in.
async fn company_with(preset: &str, upstream_extra: &str, idp_extra: &[&str], id_jag: Option<&std::path::Path>, exchange: bool) -> Company {
    warden::install_crypto();
    let (calendar, backend_url) = crate::common::calendar().await;
    let (listener, gateway) = crate::common::listen().await;
    let file = id_jag.map(|f| f.display().to_string());
    let mut idp_args = idp_extra.to_vec();
    if let Some(file) = &file {
        idp_args.extend(["--id-jag", file.as_str()]);
    }
    if exchange {
        idp_args.extend(["--downstream", backend_url.as_str()]);
    }
    let (issuer, idp) = start_idp(preset, &format!("{gateway}/oauth/callback"), &idp_args);
    let upstream_extra = match id_jag {
        Some(_) => format!(
            "{upstream_extra}  id_jag:\n    issuers:\n      - {{issuer: \"{issuer}\", jwks_uri: \"{issuer}/id-jag/jwks\", preset: okta}}\n"
        ),
        None => upstream_extra.to_owned(),
    };
    let (credentials, credential) = if exchange {
        (
            format!(
                "credentials:\n  - name: calendar-for-the-caller\n    token_exchange: {{token_endpoint: \"{issuer}/token\", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}, audience: \"{backend_url}\", scopes: [calendar.read]}}\n"
            ),
            "    credential: calendar-for-the-caller\n",
        )
    } else {
        (String::new(), "")
    };
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let yaml = format!(
        "{credentials}server:\n  listen: {addr}\n  public_url: {gateway}\nauthorization_server:\n  upstream:\n    issuer: {issuer}\n    preset: {preset}\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n{upstream_extra}vault:\n  database: \"sqlite://{db}\"\n  keys: \"k1:{key}\"\nupstream:\n  allow_cidrs: [127.0.0.1/32]\naudit:\n  output: {audit}\ntools:\n  - name: list_events\n    description: The caller's events.\n    scopes: [\"calendar:read\"]\n{credential}    http:\n      url: {backend_url}/events\n",
        addr = listener.local_addr().unwrap(),
        db = dir.path().join("vault.db").display(),
        key = warden::credentials::envelope::KeyRing::generate_key().expose(),
        audit = audit_path.display(),
    );
    let config =
        warden::config::parse(&yaml, &std::collections::HashMap::<String, String>::new()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(warden::run(warden::Gateway::build(&config).unwrap(), listener, shutdown.clone().cancelled_owned()));
    Company { mcp: format!("{gateway}/mcp"), backend_url, idp_issuer: issuer, calendar, audit_path, idp, shutdown, _dir: dir }
}

impl Company {
    fn audit(&self, method: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["method"] == method)
            .collect()
    }

    /// The person the backend saw last: (X-User-Id, X-User-Roles, X-Tenant-Id).
    fn seen(&self) -> (String, String, String) {
        let seen = self.calendar.seen();
        let last = seen.last().expect("the backend was never called");
        let header = |name: &str| last.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (header("x-user-id"), header("x-user-roles"), header("x-tenant-id"))
    }
}

async fn python(var: &str, url: &str) -> Result<Value, String> {
    let python = std::env::var(var).unwrap_or_else(|_| panic!("{var} must name a Python with the mcp package: run scripts/test"));
    crate::try_client(python, url, "list_events", json!({}), &[]).await
}

async fn typescript(url: &str) -> Result<Value, String> {
    let (node, modules) = node();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ts_client.mjs");
    let args =
        [script.to_owned(), "--url".into(), url.to_owned(), "--tool".into(), "list_events".into(), "--package".into(), "client".into()];
    let output = tokio::task::spawn_blocking(move || Command::new(node).args(&args).env("WARDEN_NODE_MODULES", modules).output())
        .await
        .unwrap()
        .expect("cannot run node");
    report(output)
}

fn assert_signed_in_at_warden(report: &Value, company: &Company) {
    let flow = flow(report);
    assert!(flow.iter().any(|e| e == "POST /oauth/register 201"), "registered at Warden: {flow:?}");
    assert!(flow.iter().any(|e| e == "POST /oauth/token 200"), "a token from Warden: {flow:?}");
    assert_eq!(report["tools"], json!(["list_events"]), "{report}");
    assert!(report["result"]["isError"] != json!(true), "{report}");
    for step in ["oauth/register", "oauth/authorize", "oauth/callback", "oauth/consent", "oauth/token"] {
        assert!(company.audit(step).iter().any(|e| e["decision"] == "allow"), "{step} audited");
    }
}

#[tokio::test]
#[ignore = "needs the Python SDK, Node and oidc-provider: run scripts/test"]
async fn entra_like_idp_the_python_sdk_and_the_typescript_client_sign_in_through_warden() {
    let company = company("entra", "", &[]).await;
    let report = python("WARDEN_PYTHON", &company.mcp).await.unwrap_or_else(|e| panic!("Python SDK: {e}"));
    assert_signed_in_at_warden(&report, &company);
    // Entra's stable user id is `oid` (its `sub` is pairwise per application), the tenant `tid`,
    // app roles in `roles`.
    let (user, roles, tenant) = company.seen();
    assert_eq!(user, "00000000-0000-4000-8000-616c69636500");
    assert_eq!((roles.as_str(), tenant.as_str()), ("analyst", "72f988bf-86f1-41af-91ab-2d7cd011db47"));
    // The same with the official TypeScript client (2.x), on the same Warden.
    let report = typescript(&company.mcp).await.unwrap_or_else(|e| panic!("TypeScript client: {e}"));
    assert_signed_in_at_warden(&report, &company);
    assert_eq!(company.seen().0, "00000000-0000-4000-8000-616c69636500");
    let token = company.audit("oauth/token").into_iter().find(|e| e["decision"] == "allow").unwrap();
    assert_eq!(token["tenant"], "72f988bf-86f1-41af-91ab-2d7cd011db47", "{token}");
}

/// With Warden as the authorization server the caller's token is Warden's own; a token exchange
/// presents the IdP's access token kept (sealed) from the person's sign-in instead, and the
/// backend receives a token the IdP issued for it, for that person, naming Warden as the actor.
#[tokio::test]
#[ignore = "needs the Python SDK, Node and oidc-provider: run scripts/test"]
async fn the_idp_token_kept_from_a_sign_in_through_warden_is_exchanged_for_the_backend() {
    let company = company_with("okta", "", &[], None, true).await;
    let report = python("WARDEN_PYTHON", &company.mcp).await.unwrap_or_else(|e| panic!("Python SDK: {e}"));
    assert_signed_in_at_warden(&report, &company);
    let seen = company.calendar.seen();
    let authorization = seen.last().unwrap().headers["authorization"].to_str().unwrap().to_owned();
    let token = authorization.strip_prefix("Bearer ").unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(format!("{}/exchange/jwks", company.idp_issuer)).await.unwrap().json().await.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[company.idp_issuer.as_str()]);
    validation.set_audience(&[company.backend_url.as_str()]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap_or_else(|e| panic!("{e}")).claims;
    assert_eq!((claims["sub"].as_str(), claims["act"]["sub"].as_str()), (Some("00ualice"), Some(CLIENT_ID)));
    assert_eq!(claims["scope"], "calendar.read");
}

/// The IdP's access token kept from the sign-in is about to expire (the IdP gives 20 s): Warden
/// refreshes it with the refresh token it kept (offline_access) before exchanging it.
#[tokio::test]
#[ignore = "needs the Python SDK, Node and oidc-provider: run scripts/test"]
async fn a_kept_idp_token_about_to_expire_is_refreshed_before_it_is_exchanged() {
    let scopes = "    scopes: [openid, profile, email, groups, offline_access]\n";
    let company = company_with("okta", scopes, &["--access-ttl", "20"], None, true).await;
    let report = python("WARDEN_PYTHON", &company.mcp).await.unwrap_or_else(|e| panic!("Python SDK: {e}"));
    assert_signed_in_at_warden(&report, &company);
    let refreshes: Value = reqwest::get(format!("{}/refreshes", company.idp_issuer)).await.unwrap().json().await.unwrap();
    assert!(refreshes["refreshes"].as_u64().unwrap() >= 1, "the kept IdP token was refreshed: {refreshes}");
    let seen = company.calendar.seen();
    let authorization = seen.last().unwrap().headers["authorization"].to_str().unwrap().to_owned();
    assert!(authorization.starts_with("Bearer ey"), "an exchanged token reached the backend");
}

#[tokio::test]
#[ignore = "needs the Python SDK, Node and oidc-provider: run scripts/test"]
async fn google_like_idp_maps_the_workspace_domain_and_allowed_domains_hold() {
    let company = company("google", "    allowed_domains: [acme.example]\n", &["--hd", "acme.example"]).await;
    let report = typescript(&company.mcp).await.unwrap_or_else(|e| panic!("TypeScript client: {e}"));
    assert_signed_in_at_warden(&report, &company);
    let (user, roles, tenant) = company.seen();
    assert_eq!((user.as_str(), roles.as_str(), tenant.as_str()), ("1616c696365", "", "acme.example"));
    // A person of another Workspace domain is refused at the callback.
    let other = company_of_domain("other.example").await;
    let failed = python("WARDEN_PYTHON", &other.mcp).await.expect_err("another domain signed in");
    assert!(failed.contains("access_denied"), "{failed}");
    assert!(other.audit("oauth/callback").iter().any(|e| e["reason"] == "domain_not_allowed"), "{:?}", other.audit("oauth/callback"));
}

async fn company_of_domain(hd: &str) -> Company {
    company("google", "    allowed_domains: [acme.example]\n", &["--hd", hd]).await
}

#[tokio::test]
#[ignore = "needs the Python SDK, Node and oidc-provider: run scripts/test"]
async fn okta_like_idp_groups_become_roles_for_the_last_python_sdk_1x() {
    let company = company("okta", "", &[]).await;
    let report = python("WARDEN_PYTHON_1X", &company.mcp).await.unwrap_or_else(|e| panic!("Python SDK 1.x: {e}"));
    assert_signed_in_at_warden(&report, &company);
    let (user, roles, _) = company.seen();
    assert_eq!((user.as_str(), roles.as_str()), ("00ualice", "Everyone,analyst"));
}

#[tokio::test]
#[ignore = "needs the Python SDK, Node and oidc-provider: run scripts/test"]
async fn a_sign_in_the_idp_refuses_reaches_the_client_as_access_denied() {
    let company = company("entra", "", &["--deny"]).await;
    let failed = python("WARDEN_PYTHON", &company.mcp).await.expect_err("a refused sign-in succeeded");
    assert!(failed.contains("access_denied"), "{failed}");
    let refused = company.audit("oauth/callback");
    assert!(refused.iter().any(|e| e["reason"] == "idp_denied" && e["decision"] == "deny"), "{refused:?}");
    assert!(company.audit("oauth/token").is_empty(), "no token after a refusal");
}

/// Client ID metadata documents at Warden's authorization server: the latest Python SDK signs in
/// with an HTTPS URL as its client id, with no registration; Warden fetches the document
/// through its SSRF guard (trusting the test CA as configured). A document that names another
/// URL is refused on Warden's page.
#[tokio::test]
#[ignore = "needs the Python SDK, Node, oidc-provider and openssl: run scripts/test"]
async fn the_python_sdk_signs_in_with_a_client_id_metadata_document() {
    let python = std::env::var("WARDEN_PYTHON").expect("WARDEN_PYTHON");
    let document = crate::metadata_document(&python, "http://127.0.0.1:65531/callback", None);
    let registration = format!("  registration:\n    client_metadata_ca_file: {}\n", document.ca.display());
    let company = company("entra", &registration, &[]).await;
    let report =
        crate::run_client_with(python.clone(), &company.mcp, "list_events", json!({}), &["--client-metadata-url", &document.client_id])
            .await;
    let flow = flow(&report);
    assert!(!flow.iter().any(|e| e.contains("/register")), "no registration: {flow:?}");
    assert!(flow.iter().any(|e| e == "POST /oauth/token 200"), "{flow:?}");
    assert_eq!(company.seen().0, "00000000-0000-4000-8000-616c69636500");
    assert!(document.fetched.lock().unwrap().iter().any(|l| l.contains("/warden-interop/client.json")));
    let token = company.audit("oauth/token").into_iter().find(|e| e["decision"] == "allow").unwrap();
    assert_eq!(token["client_id"], document.client_id.as_str());

    let lying = crate::metadata_document(&python, "http://127.0.0.1:65531/callback", Some("https://someone-else.example/client.json"));
    let registration = format!("  registration:\n    client_metadata_ca_file: {}\n", lying.ca.display());
    let refusing = self::company("entra", &registration, &[]).await;
    let failed = crate::try_client(python, &refusing.mcp, "list_events", json!({}), &["--client-metadata-url", &lying.client_id]).await;
    assert!(failed.is_err(), "{failed:?}");
    let refused = refusing.audit("oauth/authorize");
    assert!(refused.iter().any(|e| e["reason"] == "client_metadata_invalid"), "{refused:?}");
}

/// A browser for a sign-in: follows redirects, carries cookies per host, allows Warden's
/// consent page, and stops at the first URL under `until`, which it returns.
pub(crate) async fn browse(start: &str, until: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar: std::collections::HashMap<String, std::collections::BTreeMap<String, String>> = std::collections::HashMap::new();
    let mut url = start.to_owned();
    let mut form: Option<Vec<(String, String)>> = None;
    for _ in 0..15 {
        if url.starts_with(until) {
            return url;
        }
        let host = url::Url::parse(&url).unwrap().host_str().unwrap().to_owned()
            + &url::Url::parse(&url).unwrap().port().map(|p| format!(":{p}")).unwrap_or_default();
        let cookies: Vec<String> = jar.get(&host).into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        let request = match form.take() {
            Some(fields) => http.post(&url).form(&fields),
            None => http.get(&url),
        };
        let r = request.header("cookie", cookies.join("; ")).send().await.unwrap();
        for c in r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let pair = c.split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                jar.entry(host.clone()).or_default().insert(k.trim().to_owned(), v.to_owned());
            }
        }
        if let Some(location) = r.headers().get("location") {
            url = url::Url::parse(&url).unwrap().join(location.to_str().unwrap()).unwrap().to_string();
            continue;
        }
        let page = r.text().await.unwrap();
        let consent =
            page.split("name=consent value=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_else(|| panic!("{url}: {page}"));
        let action = page.split("<form method=post action=\"").nth(1).and_then(|s| s.split('"').next()).unwrap();
        url = action.replace("&amp;", "&");
        form = Some(vec![("consent".into(), consent.into()), ("decision".into(), "allow".into())]);
    }
    panic!("too many redirects from {start}");
}

/// The official conformance suite's authorization server scenarios (RFC 8414 metadata, and the
/// authorization code grant with PKCE and `resource`) against Warden's own authorization
/// server, in front of the Entra-like IdP; the suite's sign-in URL is completed by [`browse`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node, oidc-provider and the conformance suite: run scripts/test"]
async fn the_official_conformance_suite_passes_against_warden_as_authorization_server() {
    use std::io::BufRead;
    let company = company("entra", "", &[]).await;
    let base = company.mcp.trim_end_matches("/mcp").to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let registered: Value = reqwest::Client::new()
        .post(format!("{base}/oauth/register"))
        .json(&json!({"redirect_uris": [callback], "token_endpoint_auth_method": "none", "client_name": "conformance"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let bin = std::env::var("WARDEN_NODE_BIN").unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut suite = Command::new(format!("{bin}/conformance"))
        .args(["authorization", "--url", &base, "--client-id", &client_id, "--resource", &company.mcp, "--port", &port.to_string()])
        .args(["-o", out.path().to_str().unwrap()])
        .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the conformance suite");
    // The suite's output is read on a thread of its own: it prints the sign-in URL once it has
    // read Warden's metadata, and then waits for the callback.
    let (url_tx, url_rx) = tokio::sync::oneshot::channel();
    let stdout = suite.stdout.take().unwrap();
    let prefix = format!("{base}/oauth/authorize");
    let reader = std::thread::spawn(move || {
        let mut url_tx = Some(url_tx);
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&prefix)
                && let Some(tx) = url_tx.take()
            {
                let _ = tx.send(line.clone());
            }
            seen.push(line);
        }
        seen
    });
    let authorize = tokio::time::timeout(std::time::Duration::from_secs(60), url_rx).await.expect("no sign-in URL from the suite").unwrap();
    let back = browse(&authorize, &callback).await;
    reqwest::get(&back).await.unwrap();
    let status = tokio::task::spawn_blocking(move || suite.wait().unwrap()).await.unwrap();
    let report = reader.join().unwrap().join("\n");
    assert!(status.success(), "{report}");
    assert!(report.contains("authorization-code-grant: 1 passed, 0 failed"), "{report}");
    assert!(report.contains("authorization-server-metadata-endpoint: 2 passed, 0 failed"), "{report}");
    eprintln!("{report}");
}

/// Enterprise-managed authorization end to end: the official TypeScript client's
/// CrossAppAccessProvider gets an ID token from the Okta-like IdP, exchanges it there for an
/// ID-JAG naming Warden, and redeems it at Warden for an access token, with no consent page;
/// the backend sees the person, and the assertion cannot be redeemed again.
#[tokio::test]
#[ignore = "needs Node and oidc-provider: run scripts/test"]
async fn the_typescript_cross_app_access_provider_signs_in_with_an_id_jag() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("client-id");
    std::fs::write(&mapping, "not-yet").unwrap();
    let company = company_with("okta", "", &[], Some(&mapping), false).await;
    let base = company.mcp.trim_end_matches("/mcp").to_owned();
    let registered: Value = reqwest::Client::new()
        .post(format!("{base}/oauth/register"))
        .json(&json!({"redirect_uris": ["https://agent.example/cb"], "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "token_endpoint_auth_method": "client_secret_basic", "client_name": "agent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (client_id, secret) =
        (registered["client_id"].as_str().unwrap().to_owned(), registered["client_secret"].as_str().unwrap().to_owned());
    std::fs::write(&mapping, &client_id).unwrap();
    let (node, modules) = node();
    let idp = company.idp_issuer.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ts_cross_app.mjs");
    let args = [
        script.to_owned(),
        "--url".into(),
        company.mcp.clone(),
        "--idp".into(),
        idp,
        "--client-id".into(),
        client_id.clone(),
        "--client-secret".into(),
        secret,
        "--tool".into(),
        "list_events".into(),
    ];
    let output = tokio::task::spawn_blocking(move || Command::new(node).args(&args).env("WARDEN_NODE_MODULES", modules).output())
        .await
        .unwrap()
        .unwrap();
    let report = report(output).unwrap_or_else(|e| panic!("cross-app client: {e}"));
    let flow = flow(&report);
    assert!(flow.iter().any(|e| e == "POST /oauth/token 200"), "{flow:?}");
    assert!(!flow.iter().any(|e| e.contains("/oauth/authorize") || e.contains("/oauth/register")), "no browser, no registration: {flow:?}");
    assert_eq!(report["tools"], json!(["list_events"]), "{report}");
    let (user, roles, _) = company.seen();
    assert_eq!((user.as_str(), roles.as_str()), ("00ualice", "Everyone,analyst"));
    let redeemed = company.audit("oauth/token").into_iter().find(|e| e["reason"] == "assertion_redeemed").expect("audited");
    assert_eq!((&redeemed["client_id"], &redeemed["issuer"]), (&json!(client_id), &json!(company.idp_issuer)));
    assert!(redeemed["explanation"].as_str().unwrap().contains("jti"), "{redeemed}");
}

/// mcp-remote (a stdio bridge many desktop clients use) signs in through Warden's authorization
/// server: it registers, opens "the browser" ($BROWSER names the headless one, browser.mjs),
/// which goes through the Entra-like IdP and Warden's consent to mcp-remote's own callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node, mcp-remote and oidc-provider: run scripts/test"]
async fn mcp_remote_signs_in_through_warden_with_a_browser() {
    let company = company("entra", "", &[]).await;
    let bin = std::env::var("WARDEN_NODE_BIN").unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut child = tokio::process::Command::new(format!("{bin}/node"))
        .arg(format!("{bin}/mcp-remote"))
        .args([company.mcp.as_str(), &port, "--transport", "http-only", "--allow-http"])
        .env("MCP_REMOTE_CONFIG_DIR", config_dir.path())
        .env("BROWSER", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/browser.mjs"))
        .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run mcp-remote");
    let mut peer = crate::StdioPeer::new(&mut child);
    let init = peer
        .ask(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "stdio-client", "version": "1"}}),
        )
        .await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    let listed = peer.ask(2, "tools/list", json!({})).await;
    assert_eq!(listed["result"]["tools"][0]["name"], "list_events", "{listed}");
    let called = peer.ask(3, "tools/call", json!({"name": "list_events", "arguments": {}})).await;
    assert!(called["result"]["isError"] != json!(true), "{called}");
    assert_eq!(company.seen().0, "00000000-0000-4000-8000-616c69636500");
    for step in ["oauth/register", "oauth/consent", "oauth/token"] {
        assert!(company.audit(step).iter().any(|e| e["decision"] == "allow"), "{step}");
    }
    let _ = child.kill().await;
}

/// FastMCP 4's client (the standalone `fastmcp` package) signs in through Warden with its OAuth
/// helper; its browser is the headless one ($BROWSER), through the Google-like IdP and Warden's
/// consent to FastMCP's callback server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FastMCP 4, Node and oidc-provider: run scripts/test"]
async fn fastmcp_4_client_signs_in_through_warden() {
    let python = std::env::var("WARDEN_PYTHON_FASTMCP").expect("WARDEN_PYTHON_FASTMCP must name a Python with fastmcp 4: run scripts/test");
    let company = company("google", "", &[]).await;
    let bin = std::env::var("WARDEN_NODE_BIN").unwrap();
    let url = company.mcp.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/fastmcp_client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &url, "list_events"])
            .env("BROWSER", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/browser.mjs"))
            .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()))
            .env_remove("DISPLAY")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let report = report(output).unwrap_or_else(|e| panic!("FastMCP client: {e}"));
    assert!(report["fastmcp_version"].as_str().unwrap().starts_with("4."), "{report}");
    assert_eq!((&report["tools"], &report["is_error"]), (&json!(["list_events"]), &json!(false)), "{report}");
    assert_eq!(company.seen().0, "1616c696365");
    assert!(company.audit("oauth/consent").iter().any(|e| e["reason"] == "consent_given"));
}
