//! The admin console's guards, over plain HTTP (the flows run in Chromium in tests/browser.rs):
//! no page without a session, sign-in with the admin token (a wrong one refused and audited), a
//! session cookie that is HttpOnly, SameSite=Strict and tamper-evident, CSRF and Origin checks
//! on every change, a strict Content-Security-Policy, an API key shown once and never again, and
//! no console without an admin token.

use serde_json::Value;

use crate::common::provider::keyring;
use crate::common::{Db, TestGateway, TestIssuer, gateway};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

fn config(db: &Db) -> String {
    format!(
        "vault:\n  database: \"{}\"\n  keys: \"{}\"\nadmin:\n  token: {ADMIN}\napi_keys:\n  enabled: true\n  hash_key: api-key-hash-key-0123456789abcdef0123\n",
        db.url,
        keyring()
    )
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|v| v.starts_with(&format!("{name}="))).map(str::to_owned)
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

pub(crate) fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} field in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in with the admin token; returns the session cookie (`name=value`).
pub(crate) async fn sign_in(gw: &TestGateway, token: &str) -> (u16, Option<String>) {
    let (status, cookie, _) = sign_in_from(gw, token, "").await;
    (status, cookie)
}

/// Signs in with the admin token from the client `forwarded` names (through a trusted proxy,
/// when not empty); returns the status, the session cookie and the page.
async fn sign_in_from(gw: &TestGateway, token: &str, forwarded: &str) -> (u16, Option<String>, String) {
    let b = browser();
    let page = b.get(format!("{}/admin/sign-in", gw.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let pre = pair(&set_cookie(&page, "warden_console_pre").expect("the sign-in form's CSRF cookie"));
    let csrf = field(&page.text().await.unwrap(), "csrf");
    let mut request = b.post(format!("{}/admin/sign-in", gw.url)).header("cookie", pre);
    if !forwarded.is_empty() {
        request = request.header("x-forwarded-for", forwarded);
    }
    let r = request.form(&[("token", token), ("csrf", csrf.as_str())]).send().await.unwrap();
    let (status, cookie) = (r.status().as_u16(), set_cookie(&r, "warden_console"));
    (status, cookie, r.text().await.unwrap())
}

async fn get(gw: &TestGateway, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut r = browser().get(format!("{}{path}", gw.url));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn the_console_guards_its_sessions_and_every_change() {
    let issuer = TestIssuer::start().await;
    let db = Db::sqlite();
    let gw = gateway(&issuer, "  - {name: echo, description: d, http: {url: \"https://backend.example/echo\"}}\n", &config(&db)).await;

    // Nothing without a session.
    for path in ["/admin", "/admin/tools", "/admin/keys", "/admin/audit", "/admin/pins", "/admin/connections", "/admin/limits"] {
        let r = get(&gw, path, None).await;
        assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/admin/sign-in"), "{path}");
    }
    let forged = "warden_console=eyJzdWJqZWN0IjoiYWRtaW4iLCJleHAiOjk5OTk5OTk5OTksImNzcmYiOiJ4In0.AAAA";
    assert_eq!(get(&gw, "/admin/keys", Some(forged)).await.status(), 303, "an unsigned session is none");

    // Sign-in: the wrong token is refused and audited; the right one gives a guarded cookie.
    let (status, cookie) = sign_in(&gw, "admin-token-0123456789abcdef012345678X").await;
    assert_eq!((status, cookie), (401, None));
    let (status, cookie) = sign_in(&gw, ADMIN).await;
    assert_eq!(status, 200, "a page of this origin moves on to the console");
    let cookie = cookie.unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let session = pair(&cookie);
    let (payload, signature) = session.split_once('.').unwrap();
    let tampered = format!("{}.{signature}", payload.replace('a', "b"));
    assert_eq!(get(&gw, "/admin/keys", Some(&tampered)).await.status(), 303, "a changed session is none");

    // Pages: a strict CSP, no caching, no framing.
    let page = get(&gw, "/admin/keys", Some(&session)).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"] {
        assert!(csp.contains(directive), "{directive} missing: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains("style=\""), "no inline script or style");
    let csrf = field(&html, "csrf");

    // Changes need the session's CSRF token and this origin.
    let create = |csrf: String, origin: Option<&'static str>| {
        let session = session.clone();
        let url = format!("{}/admin/keys", gw.url);
        async move {
            let mut r = browser().post(url).header("cookie", session).form(&[
                ("csrf", csrf.as_str()),
                ("name", "ci"),
                ("subject", "ci-bot"),
                ("expires_in", "30d"),
            ]);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            r.send().await.unwrap()
        }
    };
    assert_eq!(create("wrong".into(), None).await.status(), 403);
    assert_eq!(create(csrf.clone(), Some("https://evil.example")).await.status(), 403, "another origin");
    let no_session = browser()
        .post(format!("{}/admin/keys", gw.url))
        .form(&[("csrf", csrf.as_str()), ("name", "x"), ("subject", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), 401);
    let created = create(csrf.clone(), Some(Box::leak(gw.url.clone().into_boxed_str()))).await;
    assert_eq!(created.status(), 200);
    let html = created.text().await.unwrap();
    let key = html.split("id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(key.starts_with("wdn_live_"), "{key}");
    assert_eq!(gw.rpc(&key, "tools/list", serde_json::json!({})).await.status, 200, "the key works");
    let again = get(&gw, "/admin/keys", Some(&session)).await.text().await.unwrap();
    assert!(again.contains("ci-bot") && !again.contains(&key), "the key is shown once");

    // Every change is audited with who made it; refusals too.
    let events = gw.audit();
    let by_method = |m: &str| events.iter().filter(|e| e["method"] == m).cloned().collect::<Vec<Value>>();
    let sign_ins = by_method("admin/console.sign_in");
    assert_eq!(sign_ins.iter().map(|e| e["decision"].as_str().unwrap()).collect::<Vec<_>>(), ["deny", "allow"]);
    let creates = by_method("admin/api_keys.create");
    let reasons: Vec<&str> = creates.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["csrf_failed", "csrf_failed", "admin_unauthorized", "api_key_created"]);
    assert!(!gw.audit_text().contains(&key) && !gw.audit_text().contains(ADMIN));

    // Signing out needs the token too.
    let out = browser()
        .post(format!("{}/admin/sign-out", gw.url))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(set_cookie(&out, "warden_console").unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn wrong_admin_tokens_are_bounded_per_client_address() {
    let issuer = TestIssuer::start().await;
    let db = Db::sqlite();
    let gw = crate::common::gateway_with(&[&issuer], "", &config(&db), "  trusted_proxies: [127.0.0.1/32]\n").await;
    let api = |token: &'static str, client: &'static str| {
        browser().get(format!("{}/admin/v1/api-keys", gw.url)).bearer_auth(token).header("x-forwarded-for", client).send()
    };
    let (a, b) = ("198.51.100.7", "198.51.100.8");
    let right = || ADMIN;

    // Five wrong tokens from one address are refused as wrong; the sixth blocks the address.
    for _ in 0..5 {
        assert_eq!(api("wrong-token", a).await.unwrap().status(), 401);
    }
    let blocked = api("wrong-token", a).await.unwrap();
    assert_eq!(blocked.status(), 429);
    let retry: u64 = blocked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
    assert_eq!(blocked.json::<Value>().await.unwrap()["error"], "too_many_attempts");

    // While blocked, not even the right token is compared: the API and the console's sign-in
    // share the budget. Another address is not affected, and right tokens never count.
    assert_eq!(api(right(), a).await.unwrap().status(), 429);
    let (status, cookie, page) = sign_in_from(&gw, ADMIN, a).await;
    assert_eq!((status, cookie), (429, None));
    assert!(page.contains("Too many wrong admin tokens"), "{page}");
    for _ in 0..8 {
        assert_eq!(api(right(), b).await.unwrap().status(), 200);
    }
    let (status, cookie, _) = sign_in_from(&gw, ADMIN, b).await;
    assert_eq!((status, cookie.is_some()), (200, true));

    // Each refusal is audited once, with its reason; the token never appears.
    let events = gw.audit();
    let reasons =
        |m: &str| events.iter().filter(|e| e["method"] == m).map(|e| e["reason"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let mut expected = vec!["admin_unauthorized"; 5];
    expected.extend(["too_many_attempts", "too_many_attempts"]);
    assert_eq!(reasons("admin/authenticate"), expected);
    assert_eq!(reasons("admin/console.sign_in"), ["too_many_attempts", "signed_in_with_admin_token"]);
    assert!(!gw.audit_text().contains(ADMIN));
}

#[tokio::test]
async fn there_is_no_console_without_an_admin_token() {
    let issuer = TestIssuer::start().await;
    let gw = gateway(&issuer, "", "").await;
    assert_eq!(get(&gw, "/admin/sign-in", None).await.status(), 404);
    assert_eq!(get(&gw, "/admin/tools", None).await.status(), 404);
}

/// Sign-out ends the session server-side: the old cookie is refused on every replica sharing the
/// vault's database (two gateways here). A form without its `csrf` field, or not a form at all
/// (a forged cross-site form is `text/plain`), is `403 csrf_failed` and audited; each request is
/// one event, with the status the client got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_session_on_every_replica_and_every_form_is_audited_once() {
    let issuer = TestIssuer::start().await;
    let db = Db::sqlite();
    let one = gateway(&issuer, "  []", &config(&db)).await;
    let two = gateway(&issuer, "  []", &config(&db)).await;
    let (_, cookie) = sign_in(&one, ADMIN).await;
    let session = pair(&cookie.unwrap());
    let page = get(&two, "/admin/keys", Some(&session)).await;
    assert_eq!(page.status(), 200, "the session is valid on the other replica");
    let csrf = field(&page.text().await.unwrap(), "csrf");

    // Forms that cannot be read: no csrf field, and a text/plain body.
    let post = |path: &'static str, body: &'static str, content_type: &'static str| {
        let (session, url) = (session.clone(), format!("{}{path}", one.url));
        async move {
            browser()
                .post(url)
                .header("cookie", session)
                .header("content-type", content_type)
                .header("x-request-id", format!("forged-{}", path.replace('/', "-")))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for path in ["/admin/keys", "/admin/keys/revoke", "/admin/sign-out"] {
        assert_eq!(post(path, "name=x&subject=y", "application/x-www-form-urlencoded").await, 403, "{path} without csrf");
        assert_eq!(post(path, "csrf=x&name=y=", "text/plain").await, 403, "{path} as text/plain");
    }
    let events = one.audit();
    for (path, method) in [
        ("/admin/keys", "admin/api_keys.create"),
        ("/admin/keys/revoke", "admin/api_keys.revoke"),
        ("/admin/sign-out", "admin/console.sign_out"),
    ] {
        let id = format!("forged-{}", path.replace('/', "-"));
        let refused: Vec<&Value> = events.iter().filter(|e| e["request_id"] == id.as_str()).collect();
        assert_eq!(refused.len(), 2, "{path}: one event per request: {refused:#?}");
        assert!(refused.iter().all(|e| e["method"] == method && e["reason"] == "csrf_failed" && e["status"] == 403), "{refused:#?}");
    }

    // Creating a key is one event.
    let created = browser()
        .post(format!("{}/admin/keys", one.url))
        .header("cookie", &session)
        .header("x-request-id", "create-one")
        .form(&[("csrf", csrf.as_str()), ("name", "ci"), ("subject", "ci-bot")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let events: Vec<Value> = one.audit().into_iter().filter(|e| e["request_id"] == "create-one").collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["method"], "admin/api_keys.create");

    // Sign-out: 303, audited 303; the cookie is refused on both replicas.
    let out = browser()
        .post(format!("{}/admin/sign-out", one.url))
        .header("cookie", &session)
        .header("x-request-id", "sign-out")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let event = one.audit().into_iter().find(|e| e["request_id"] == "sign-out").unwrap();
    assert_eq!((event["reason"].as_str(), event["status"].as_u64()), (Some("signed_out"), Some(303)));
    for gw in [&one, &two] {
        let r = get(gw, "/admin/keys", Some(&session)).await;
        assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/admin/sign-in"));
        let change = browser()
            .post(format!("{}/admin/keys", gw.url))
            .header("cookie", &session)
            .form(&[("csrf", csrf.as_str()), ("name", "late"), ("subject", "late")])
            .send()
            .await
            .unwrap();
        assert_eq!(change.status(), 401, "a signed-out session changes nothing");
    }

    // Rotating the admin token ends every session: a replica restarted with a new token (the
    // same database) refuses a cookie signed under the old one.
    let (_, cookie) = sign_in(&one, ADMIN).await;
    let live = pair(&cookie.unwrap());
    assert_eq!(get(&two, "/admin/keys", Some(&live)).await.status(), 200);
    let rotated = gateway(&issuer, "  []", &config(&db).replace(ADMIN, "admin-token-rotated-0123456789abcdef01234")).await;
    assert_eq!(get(&rotated, "/admin/keys", Some(&live)).await.status(), 303, "a session of the old token");
}
