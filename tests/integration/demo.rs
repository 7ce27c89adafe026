//! The demo wiring, end to end through the development authorization server's real OAuth flow
//! (registration, authorize with PKCE, token), driven by hand over HTTP.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden::demo::Demo;

use crate::common::demo;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Dynamic client registration; returns the registration response.
async fn register(http: &reqwest::Client, demo: &Demo, metadata: Value) -> Value {
    http.post(format!("{}/register", demo.issuer)).json(&metadata).send().await.unwrap().json().await.unwrap()
}

/// Registration → authorize (auto-approved) → token, as an MCP client does.
async fn sign_in(demo: &Demo, scope: &str) -> Value {
    let http = no_redirects();
    let reg = register(
        &http,
        demo,
        json!({"redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none", "client_name": "t"}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap();
    let verifier = "v".repeat(64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let resp = http
        .get(format!("{}/authorize", demo.issuer))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:33418/callback"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "s1"),
            ("scope", scope),
            ("resource", &demo.resource),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "{:?}", resp.text().await);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "s1");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", q["code"].as_str()),
        ("redirect_uri", "http://127.0.0.1:33418/callback"),
        ("code_verifier", &verifier),
        ("client_id", client_id),
        ("resource", &demo.resource),
    ];
    let token: Value = http.post(format!("{}/token", demo.issuer)).form(&form).send().await.unwrap().json().await.unwrap();
    // The code is single-use.
    let again = http.post(format!("{}/token", demo.issuer)).form(&form).send().await.unwrap();
    assert_eq!(again.status(), 400);
    token
}

async fn call(demo: &Demo, token: &str, tool: &str, args: Value) -> (u16, Value) {
    let (status, _, body) =
        crate::common::mcp_post(&reqwest::Client::new(), &demo.mcp_url, token, &crate::common::tool_call(1, tool, args)).await;
    (status, body)
}

#[tokio::test]
async fn each_caller_sees_only_their_own_events() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let token = sign_in(&demo, "calendar:read calendar:write").await;
    assert_eq!(token["scope"], "calendar:read calendar:write");
    let access = token["access_token"].as_str().unwrap();
    let (status, body) = call(&demo, access, "list_events", json!({"limit": 10})).await;
    assert_eq!(status, 200, "{body}");
    let events = body["result"]["structuredContent"]["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["owner"] == "alice"), "{events:?}");
    let seen = demo.calendar.seen();
    assert_eq!(seen.last().unwrap().headers["x-user-id"], "alice");
    assert!(!seen.last().unwrap().headers.contains_key("authorization"));
    shutdown.cancel();
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let (demo, shutdown) = demo(Some("bob")).await;
    let token = sign_in(&demo, "calendar:read").await;
    let http = no_redirects();
    let refresh = token["refresh_token"].as_str().unwrap();
    let client_id = {
        // The access token names its client.
        let payload = token["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["aud"], demo.resource.as_str());
        assert_eq!(claims["sub"], "bob");
        claims["client_id"].as_str().unwrap().to_owned()
    };
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client_id.as_str())];
    let first = http.post(format!("{}/token", demo.issuer)).form(&form).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_ne!(first["refresh_token"], token["refresh_token"]);
    let replay = http.post(format!("{}/token", demo.issuer)).form(&form).send().await.unwrap();
    assert_eq!(replay.status(), 400, "a rotated refresh token was accepted twice");
    let (status, _) = call(&demo, first["access_token"].as_str().unwrap(), "whoami", json!({})).await;
    assert_eq!(status, 200);
    shutdown.cancel();
}

#[tokio::test]
async fn bob_is_stepped_up_for_writes() {
    let (demo, shutdown) = demo(Some("bob")).await;
    let token = sign_in(&demo, "calendar:read calendar:write").await;
    // Bob may not hold calendar:write: the server grants what he has.
    assert_eq!(token["scope"], "calendar:read");
    let (status, _) =
        call(&demo, token["access_token"].as_str().unwrap(), "create_event", json!({"title": "x", "start": "2026-12-24T10:00:00Z"})).await;
    assert_eq!(status, 403);
    shutdown.cancel();
}

#[tokio::test]
async fn asking_only_for_scopes_the_user_may_not_have_is_invalid_scope() {
    let (demo, shutdown) = demo(Some("bob")).await;
    let http = no_redirects();
    let reg = register(
        &http,
        &demo,
        json!({"redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none", "client_name": "t"}),
    )
    .await;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest("v".repeat(64).as_bytes()));
    let resp = http
        .get(format!("{}/authorize", demo.issuer))
        .query(&[
            ("response_type", "code"),
            ("client_id", reg["client_id"].as_str().unwrap()),
            ("redirect_uri", "http://127.0.0.1:33418/callback"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "s1"),
            ("scope", "calendar:write"),
            ("resource", &demo.resource),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!((q.get("error").map(String::as_str), q.get("state").map(String::as_str)), (Some("invalid_scope"), Some("s1")), "{q:?}");
    assert!(!q.contains_key("code"), "no code for an empty grant: {q:?}");

    // Narrowing a refresh to nothing granted is refused too.
    let token = sign_in(&demo, "calendar:read").await;
    let payload = token["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token["refresh_token"].as_str().unwrap()),
        ("client_id", claims["client_id"].as_str().unwrap()),
        ("scope", "calendar:write"),
    ];
    let r = http.post(format!("{}/token", demo.issuer)).form(&form).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_scope")), "{body}");
    shutdown.cancel();
}

#[tokio::test]
async fn authorize_refuses_plain_pkce_and_unregistered_redirects() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let http = no_redirects();
    let reg = register(&http, &demo, json!({"redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none"})).await;
    let client_id = reg["client_id"].as_str().unwrap();
    let challenge = "c".repeat(43);
    let base = [("response_type", "code"), ("client_id", client_id), ("code_challenge", challenge.as_str()), ("state", "s")];
    let resp = http
        .get(format!("{}/authorize", demo.issuer))
        .query(&base)
        .query(&[("redirect_uri", "http://127.0.0.1:1/cb"), ("code_challenge_method", "plain")])
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["location"].to_str().unwrap().contains("error=invalid_request"));
    let resp = http
        .get(format!("{}/authorize", demo.issuer))
        .query(&base)
        .query(&[("redirect_uri", "http://evil.example/cb"), ("code_challenge_method", "S256")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "an unregistered redirect URI must not be redirected to");
    shutdown.cancel();
}

#[tokio::test]
async fn the_consent_page_lists_users_and_approves() {
    let (demo, shutdown) = demo(None).await;
    let http = no_redirects();
    let reg = register(&http, &demo, json!({"redirect_uris": ["http://127.0.0.1:1/cb"]})).await;
    assert!(reg["client_secret"].is_string(), "confidential clients get a secret");
    let client_id = reg["client_id"].as_str().unwrap();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(b"verifier-verifier-verifier-verifier-verifier"));
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", "http://127.0.0.1:1/cb"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "<script>"),
    ];
    let page = http.get(format!("{}/authorize", demo.issuer)).query(&params).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Alice (analyst, acme)") && page.contains("Nurse Joy (nurse)"));
    assert!(!page.contains("<script>"), "state must be escaped");
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.extend([("user", "carol"), ("action", "approve")]);
    let resp = http.post(format!("{}/authorize/decide", demo.issuer)).form(&form).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://127.0.0.1:1/cb?code="), "{location}");
    shutdown.cancel();
}

#[tokio::test]
async fn loopback_redirects_match_on_any_port() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let http = no_redirects();
    let reg = register(
        &http,
        &demo,
        json!({"redirect_uris": ["http://127.0.0.1/", "https://vscode.dev/redirect"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let client_id = reg["client_id"].as_str().unwrap();
    let challenge = "c".repeat(43);
    let authorize = |redirect: &'static str| {
        http.get(format!("{}/authorize", demo.issuer))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("redirect_uri", redirect),
            ])
            .send()
    };
    let r = authorize("http://127.0.0.1:51234/").await.unwrap();
    assert!(r.headers()["location"].to_str().unwrap().starts_with("http://127.0.0.1:51234/?code="), "RFC 8252: any loopback port");
    assert_eq!(authorize("http://127.0.0.1:51234/other").await.unwrap().status(), 400, "the path must match");
    assert_eq!(authorize("https://vscode.dev:8443/redirect").await.unwrap().status(), 400, "only loopback http ignores the port");
    shutdown.cancel();
}

/// The demo's notes service has its own accounts: each user connects theirs through the link
/// Warden returns, and the service then sees that user's own token, never the MCP token.
#[tokio::test]
async fn notes_need_each_users_own_connection() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let alice = demo.idp.mint("alice", "t", &["notes:read".into()], &demo.resource).unwrap();
    let carol = demo.idp.mint("carol", "t", &["notes:read".into()], &demo.resource).unwrap();

    let (_, first) = call(&demo, &alice, "my_notes", json!({})).await;
    assert_eq!(first["error"]["code"], -32042, "{first}");
    let link = first["error"]["data"]["elicitations"][0]["url"].as_str().unwrap();
    let (callback, cookie) = crate::common::provider::sign_in(link, "alice", false).await;
    let (status, page) = crate::common::provider::visit(&callback, Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");

    let (_, second) = call(&demo, &alice, "my_notes", json!({})).await;
    let result = &second["result"]["structuredContent"];
    assert_eq!(result["owner"], "alice", "{second}");
    assert_eq!(result["notes"][0], "Draft the Q1 plan");
    let seen = demo.calendar.seen().into_iter().rfind(|s| s.path == "/notes").unwrap();
    let upstream = seen.headers["authorization"].to_str().unwrap();
    assert_ne!(upstream, format!("Bearer {alice}"), "the MCP token went upstream");
    assert_eq!(seen.headers["x-user-id"], "alice");

    // Carol has not connected: she is asked to, and never gets Alice's notes.
    let (_, other) = call(&demo, &carol, "my_notes", json!({})).await;
    assert_eq!(other["error"]["code"], -32042, "{other}");
    shutdown.cancel();
}

/// A `tools/call` as a 2026-07-28 client sends it: the revision's headers and `_meta`, URL
/// elicitation declared (or not), and the answers of a previous round.
async fn call_2026(demo: &Demo, token: &str, tool: &str, url_elicitation: bool, responses: Option<Value>) -> (u16, Value) {
    call_2026_args(demo, token, tool, json!({}), url_elicitation, responses).await
}

/// As [`call_2026`] with URL elicitation declared, with `arguments`.
async fn call_2026_with(demo: &Demo, token: &str, tool: &str, arguments: Value, responses: Option<Value>) -> (u16, Value) {
    call_2026_args(demo, token, tool, arguments, true, responses).await
}

async fn call_2026_args(
    demo: &Demo,
    token: &str,
    tool: &str,
    arguments: Value,
    url_elicitation: bool,
    responses: Option<Value>,
) -> (u16, Value) {
    let capabilities = if url_elicitation { json!({"elicitation": {"url": {}}}) } else { json!({}) };
    let mut params = json!({
        "name": tool,
        "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        },
    });
    if let Some(responses) = responses {
        params["inputResponses"] = responses;
    }
    let r = reqwest::Client::new()
        .post(&demo.mcp_url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// 2026-07-28 has no -32042: the request to connect is an `InputRequiredResult` whose input
/// request is the URL elicitation, and the retried call completes once the user connected.
#[tokio::test]
async fn a_2026_client_is_asked_to_connect_by_an_input_required_result_and_its_retry_completes() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let alice = demo.idp.mint("alice", "t", &["notes:read".into()], &demo.resource).unwrap();

    let (status, first) = call_2026(&demo, &alice, "my_notes", true, None).await;
    assert_eq!(status, 200, "{first}");
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let request = &result["inputRequests"]["connect"];
    assert_eq!((request["method"].as_str(), request["params"]["mode"].as_str()), (Some("elicitation/create"), Some("url")), "{first}");
    assert!(request["params"]["elicitationId"].is_string());
    let link = request["params"]["url"].as_str().unwrap();

    // Retried before connecting: asked again.
    let declined = json!({"connect": {"action": "accept"}});
    let (_, again) = call_2026(&demo, &alice, "my_notes", true, Some(declined.clone())).await;
    assert_eq!(again["result"]["resultType"], "input_required", "{again}");

    let (callback, cookie) = crate::common::provider::sign_in(link, "alice", false).await;
    let (status, page) = crate::common::provider::visit(&callback, Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");
    let (status, done) = call_2026(&demo, &alice, "my_notes", true, Some(declined)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["result"]["structuredContent"]["owner"], "alice", "{done}");
    assert_ne!(done["result"]["resultType"], "input_required");

    // A 2026-07-28 client that did not declare URL elicitation gets the link as text.
    let carol = demo.idp.mint("carol", "t", &["notes:read".into()], &demo.resource).unwrap();
    let (_, text) = call_2026(&demo, &carol, "my_notes", false, None).await;
    assert_eq!(text["result"]["isError"], true, "{text}");
    assert!(text["result"]["content"][0]["text"].as_str().unwrap().contains("http"), "{text}");
    shutdown.cancel();
}

/// The demo serves the admin console (sign-in through its authorization server offered) and
/// accepts API keys made with its admin token: a key acts as its subject, within its scopes.
#[tokio::test]
async fn the_demo_has_a_console_and_takes_api_keys() {
    let (demo, _stop) = demo(None).await;
    let base = demo.mcp_url.trim_end_matches("/mcp").to_owned();
    let page = reqwest::get(format!("{base}/admin/sign-in")).await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"oidc-sign-in\"") && page.contains(&demo.issuer), "{page}");
    let made: Value = reqwest::Client::new()
        .post(format!("{base}/admin/v1/api-keys"))
        .bearer_auth(demo.admin_token.expose())
        .json(&json!({"name": "demo", "subject": "ci-bot", "scopes": ["calendar:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().unwrap_or_else(|| panic!("{made}"));
    let (status, body) = call(&demo, key, "whoami", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("ci-bot"), "the backend sees the key's subject: {body}");
    let (_, refused) = call(&demo, key, "create_event", json!({"title": "x", "start": "2026-12-24T10:00:00Z"})).await;
    assert!(refused.get("error").is_some() || refused["result"]["isError"] == true, "no calendar:write: {refused}");
}

/// `warden demo --enterprise`: clients are sent to Warden's own authorization server, which
/// sends the person to the development server (the company IdP stand-in) and back, asks
/// consent, and issues its own token, which the demo's tools accept.
#[tokio::test]
async fn the_enterprise_demo_signs_in_through_warden_in_front_of_the_development_server() {
    let (demo, shutdown) = crate::common::demo_options(Some("alice"), |o| o.enterprise = true).await;
    let base = demo.mcp_url.trim_end_matches("/mcp").to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let prm: Value = http.get(format!("{base}/.well-known/oauth-protected-resource/mcp")).send().await.unwrap().json().await.unwrap();
    assert_eq!(prm["authorization_servers"], json!([base]));
    assert!(demo.instructions().contains("company IdP"));
    let registered: Value = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1:7777/cb"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = registered["client_id"].as_str().unwrap();
    let verifier = "demo-verifier-0123456789abcdefghijklmnopqrstuvwxyz";
    let mut authorize = url::Url::parse(&format!("{base}/oauth/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", "http://127.0.0.1:7777/cb")
        .append_pair("code_challenge", &warden::credentials::vault::pkce_challenge(verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "calendar:read")
        .append_pair("resource", &demo.mcp_url);
    let r = http.get(authorize).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let to_idp = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_idp.starts_with(&demo.issuer), "{to_idp}");
    let r = http.get(to_idp).send().await.unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_owned();
    let page = http.get(callback).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let consent = page.split("name=consent value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = http
        .post(format!("{base}/oauth/consent"))
        .header("cookie", &cookie)
        .form(&[("consent", consent.as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens: Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("code_verifier", verifier), ("client_id", client)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, answer) = call(&demo, tokens["access_token"].as_str().unwrap(), "list_events", json!({"limit": 5})).await;
    assert_eq!(status, 200, "{answer}");
    let events = answer["result"]["structuredContent"]["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["owner"] == "alice"), "{answer}");
    shutdown.cancel();
}

/// The demo's worked approval: an all-hands event lands in everyone's calendar, so it waits for
/// a manager (policies/calendar.yaml); Dana approves as herself, and Alice's retry creates it once.
#[tokio::test]
async fn the_demo_holds_an_all_hands_event_for_a_managers_yes() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let alice = demo.idp.mint("alice", "demo-cli", &["calendar:write".into()], &demo.resource).unwrap();
    let dana = demo.idp.mint("dana", "demo-cli", &["calendar:read".into()], &demo.resource).unwrap();
    let args = json!({"title": "all-hands: Q4 plans", "start": "2026-12-10T10:00:00Z"});
    let created = |d: &Demo| d.calendar.seen().iter().filter(|s| s.path == "/events (POST)").count();
    let (status, held) = call(&demo, &alice, "create_event", args.clone()).await;
    assert_eq!((status, held["error"]["code"].as_i64()), (200, Some(-32042)), "{held}");
    assert_eq!(created(&demo), 0);
    let base = demo.mcp_url.trim_end_matches("/mcp").to_owned();
    let http = reqwest::Client::new();
    let listed: Value = http.get(format!("{base}/admin/v1/approvals")).bearer_auth(&dana).send().await.unwrap().json().await.unwrap();
    let id = listed["approvals"][0]["id"].as_str().unwrap_or_else(|| panic!("{listed}")).to_owned();
    let approved = http.post(format!("{base}/admin/v1/approvals/{id}/approve")).bearer_auth(&dana).send().await.unwrap();
    assert_eq!(approved.status(), 200);
    let (_, ran) = call(&demo, &alice, "create_event", args).await;
    assert_eq!(ran["result"]["isError"], false, "{ran}");
    assert_eq!(created(&demo), 1);
    assert!(demo.instructions().contains("warden approvals approve"));
    shutdown.cancel();
}

/// On 2026-07-28 the held-back call is an `InputRequiredResult` whose input request links to
/// the approval's status page; the client's retry of the same call runs once it is approved.
#[tokio::test]
async fn a_2026_client_waits_for_an_approval_by_an_input_required_result() {
    let (demo, shutdown) = demo(Some("alice")).await;
    let alice = demo.idp.mint("alice", "t", &["calendar:write".into()], &demo.resource).unwrap();
    let dana = demo.idp.mint("dana", "t", &["calendar:read".into()], &demo.resource).unwrap();
    let (status, first) =
        call_2026_with(&demo, &alice, "create_event", json!({"title": "all-hands 2026", "start": "2026-12-10T10:00:00Z"}), None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let request = &first["result"]["inputRequests"]["approval"];
    let link = request["params"]["url"].as_str().unwrap_or_else(|| panic!("{first}"));
    let id = link.rsplit('/').next().unwrap().to_owned();
    let base = demo.mcp_url.trim_end_matches("/mcp").to_owned();
    let approved = reqwest::Client::new().post(format!("{base}/admin/v1/approvals/{id}/approve")).bearer_auth(&dana).send().await.unwrap();
    assert_eq!(approved.status(), 200);
    let answered = json!({"approval": {"action": "accept"}});
    let (_, done) =
        call_2026_with(&demo, &alice, "create_event", json!({"title": "all-hands 2026", "start": "2026-12-10T10:00:00Z"}), Some(answered))
            .await;
    assert_ne!(done["result"]["resultType"], "input_required", "{done}");
    assert_eq!(done["result"]["isError"], false, "{done}");
    shutdown.cancel();
}
