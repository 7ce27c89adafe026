//! Proxy routes (`/proxy/{name}/…`) for apps that are not MCP clients, against a real upstream
//! on 127.0.0.1: identity headers and the route's credential injected, the client's
//! `Authorization`, cookies and hop-by-hop headers never passed, traversal and host tricks
//! refused before anything is sent, methods and path prefixes enforced, policy on
//! `route:NAME` with method and path, limits, bodies bounded both ways, upstream status and
//! headers passed back (never `Set-Cookie`), a timeout as 504, and one audit event per request.

use serde_json::{Value, json};

use crate::common::provider::keyring;
use crate::common::{Db, TestGateway, TestIssuer, Upstream, gateway};

const SECRET: &str = "route-upstream-s3cr3t";
const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

fn config(upstream: &Upstream, more: &str) -> String {
    format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\ncredentials:\n  - {{name: crm-key, secret: {SECRET}, placement: header, header: X-Api-Key}}\nroutes:\n  - name: crm\n    upstream: \"{u}\"\n    methods: [GET, POST, DELETE]\n    paths: [/contacts, /deals, /status, /slow, /cookie, /big, /big-stream]\n    scopes: [crm:read]\n    credential: crm-key\n    timeout: 1s\n    max_request_bytes: 1024\n    max_response_bytes: 65536\n  - name: open\n    upstream: \"{u}/base/\"\n  - name: metadata\n    upstream: \"http://169.254.169.254/latest\"\n{more}",
        u = upstream.url
    )
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> reqwest::Response {
    let mut r = gw.http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", gw.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    r.send().await.unwrap()
}

async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A raw request line over TCP: for paths an HTTP client would normalize before sending.
async fn raw(gw: &TestGateway, path: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_route_injects_identity_and_its_credential_and_passes_nothing_of_the_clients() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&issuer, "", &config(&upstream, "")).await;
    let mut claims = issuer.claims("alice", "crm:read", &gw.mcp);
    claims["org_id"] = json!("acme");
    let alice = issuer.sign(&claims);

    let hostile = [
        ("cookie", "session=client-cookie"),
        ("x-user-id", "mallory"),
        ("x-forwarded-for", "10.0.0.1"),
        ("connection", "x-hop"),
        ("x-hop", "hop-by-hop"),
        ("x-app", "kept"),
        ("content-type", "application/json"),
    ];
    let r = send(&gw, "POST", "/proxy/crm/contacts/7?expand=deals", Some(&alice), &hostile, Some(br#"{"name":"Ada"}"#.to_vec())).await;
    let status = r.status();
    let request_id = r.headers().get("x-request-id").cloned();
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{echoed}");
    assert!(request_id.is_some());
    assert_eq!((echoed["path"].as_str(), echoed["query"].as_str()), (Some("/contacts/7"), Some("expand=deals")));
    assert_eq!(echoed["body"], r#"{"name":"Ada"}"#, "the body streams through");
    let sent = upstream.last();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.headers["x-api-key"], SECRET, "the route's credential");
    assert_eq!(sent.headers["x-user-id"], "alice", "identity from the token, not the client's header");
    assert_eq!(sent.headers["x-tenant-id"], "acme");
    assert_eq!(sent.headers["x-user-scopes"], "crm:read");
    assert_eq!(sent.headers["x-app"], "kept");
    assert_eq!(sent.headers["content-type"], "application/json");
    for gone in ["authorization", "cookie", "x-hop"] {
        assert!(sent.headers.get(gone).is_none(), "{gone} must not pass: {:?}", sent.headers.get(gone));
    }
    // The client's X-Forwarded-For never passes; Warden sets the address it saw (issue 25).
    assert_eq!(sent.headers["x-forwarded-for"], "127.0.0.1", "the client's 10.0.0.1 must not pass");
    assert!(!sent.headers.values().any(|v| v.to_str().unwrap_or_default().contains(alice.as_str())), "the token never goes upstream");

    // Upstream status and headers come back; Set-Cookie never does.
    let r = send(&gw, "GET", "/proxy/crm/status/404", Some(&alice), &[], None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "backend says 404");
    let r = send(&gw, "GET", "/proxy/crm/cookie", Some(&alice), &[], None).await;
    assert_eq!((r.status().as_u16(), r.headers()["x-upstream"].to_str().unwrap()), (200, "yes"));
    assert!(r.headers().get("set-cookie").is_none());

    // A base path is kept; no trailing slash games.
    let open_token = issuer.sign(&issuer.claims("bob", "", &gw.mcp));
    let (status, echoed) = status_and_body(send(&gw, "GET", "/proxy/open/x/y", Some(&open_token), &[], None).await).await;
    assert_eq!((status, echoed["path"].as_str()), (200, Some("/base/x/y")));
    let (status, echoed) = status_and_body(send(&gw, "GET", "/proxy/open", Some(&open_token), &[], None).await).await;
    assert_eq!((status, echoed["path"].as_str()), (200, Some("/base")));

    let events: Vec<Value> = gw.audit().into_iter().filter(|e| e["method"] == "proxy").collect();
    assert_eq!(events.len(), 5, "one event per request: {events:#?}");
    let first = &events[0];
    assert_eq!(
        (first["tool"].as_str(), first["decision"].as_str(), first["status"].as_u64()),
        (Some("route:crm"), Some("allow"), Some(200))
    );
    assert_eq!(first["explanation"], "POST /contacts/7");
    assert_eq!(first["subject"], "alice");
    assert!(!gw.audit_text().contains(SECRET) && !gw.audit_text().contains(&alice));
}

#[tokio::test]
async fn no_spelling_of_identity_or_forwarding_headers_reaches_the_backend() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&issuer, "", &config(&upstream, "")).await;
    // No tenant in the token: a client must not be able to supply one.
    let alice = issuer.sign(&issuer.claims("alice", "crm:read", &gw.mcp));
    let hostile = [
        ("X_User_Id", "mallory"),
        ("X-User_Id", "mallory"),
        ("X_Tenant_Id", "evilcorp"),
        ("X_User_Roles", "admin"),
        ("X_User_Scopes", "crm:admin"),
        ("X_Client_Id", "trusted-app"),
        ("X_Request_Id", "forged"),
        ("X_Forwarded_For", "10.0.0.1"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Forwarded-Uri", "/admin"),
        ("X-Forwarded-Server", "internal"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Scheme", "https"),
        ("X-Forwarded-Path", "/admin"),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "for=10.0.0.1;host=evil.example"),
        ("X_Real_Ip", "10.0.0.1"),
        ("X-Kept_Header", "kept"),
    ];
    let r = send(&gw, "GET", "/proxy/crm/contacts", Some(&alice), &hostile, None).await;
    assert_eq!(r.status(), 200);
    let sent = upstream.last();
    let names: Vec<String> = sent.headers.keys().map(|n| n.as_str().to_owned()).collect();
    for (name, _) in hostile.iter().filter(|(n, _)| *n != "X-Kept_Header") {
        let lower = name.to_ascii_lowercase();
        if ["x-forwarded-for", "x-forwarded-host"].contains(&lower.as_str()) {
            continue;
        }
        assert!(!names.contains(&lower), "{name} must not pass: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains('_') && n != "x-kept_header"), "no underscore spelling passes: {names:?}");
    assert_eq!(sent.headers["x-kept_header"], "kept", "other headers pass");
    assert_eq!(sent.headers["x-user-id"], "alice");
    assert!(sent.headers.get("x-tenant-id").is_none(), "no tenant in the token, none sent");
    assert!(
        !sent
            .headers
            .values()
            .any(|v| ["mallory", "evilcorp", "trusted-app", "forged", "evil.example", "/admin"].contains(&v.to_str().unwrap_or_default()))
    );
    // What Warden vouches for: the client's address and how Warden was reached.
    assert_eq!(sent.headers["x-forwarded-for"], "127.0.0.1");
    let public = url::Url::parse(&gw.mcp).unwrap();
    assert_eq!(sent.headers["x-forwarded-proto"], public.scheme());
    assert_eq!(sent.headers["x-forwarded-host"].to_str().unwrap(), format!("{}:{}", public.host_str().unwrap(), public.port().unwrap()));
}

#[tokio::test]
async fn traversal_and_host_tricks_are_refused_before_anything_is_sent() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&issuer, "", &config(&upstream, "")).await;
    let alice = issuer.sign(&issuer.claims("alice", "crm:read", &gw.mcp));
    for (path, code) in [
        ("/proxy/crm/contacts/../admin", 400),
        ("/proxy/crm/contacts/%2e%2e/admin", 400),
        ("/proxy/crm/contacts/%2E%2E/%2e%2e/etc/passwd", 400),
        ("/proxy/crm/contacts/..%2fadmin", 400),
        ("/proxy/crm/contacts%2f..%2f..%2fadmin", 400),
        ("/proxy/crm/contacts/%252e%252e/admin", 400),
        ("/proxy/crm/contacts\\..\\admin", 400),
        ("/proxy/crm//evil.example/contacts", 400),
        ("/proxy/crm/http:%2f%2fevil.example/", 400),
        ("/proxy/crm/contacts/%00", 400),
        // Servlet containers drop `;params` before resolving dot segments.
        ("/proxy/crm/contacts/..;/admin", 400),
        ("/proxy/crm/contacts/%2e%2e;/admin", 400),
        ("/proxy/crm/contacts/..%3b/admin", 400),
        ("/proxy/crm/contacts/.;/admin", 400),
        ("/proxy/crm/contacts/..;jsessionid=x/admin", 400),
        ("/proxy/crm/contactsX", 403),
        ("/proxy/crm/admin", 403),
        ("/proxy/crm", 403),
        ("/proxy/nope/contacts", 404),
    ] {
        assert_eq!(raw(&gw, path, &alice).await, code, "{path}");
    }
    // The SSRF guard applies to routes as to every upstream: the cloud metadata address.
    let (status, body) = status_and_body(send(&gw, "GET", "/proxy/metadata/meta-data/iam", Some(&alice), &[], None).await).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("upstream_blocked")));
    // An absolute-form request target changes nothing: the URL is built from the route's base.
    assert_eq!(raw(&gw, "http://evil.example/proxy/crm/contacts/../x", &alice).await, 400);
    assert!(
        upstream.requests().is_empty(),
        "nothing reached the upstream: {:?}",
        upstream.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );

    let reasons: Vec<String> = gw.audit().iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect();
    for reason in
        ["path_traversal", "path_encoded_separator", "path_empty_segment", "path_double_encoded", "path_not_allowed", "route_not_found"]
    {
        assert!(reasons.iter().any(|r| r == reason), "{reason} not in {reasons:?}");
    }
}

#[tokio::test]
async fn methods_scopes_policy_limits_and_bounds_are_enforced() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        "rules:\n  - id: crm-readers\n    effect: allow\n    tools: [route:crm]\n    when: request.method == 'GET' || principal.roles.exists(r, r == 'crm-writer')\n  - id: no-deals-deletes\n    effect: deny\n    tools: ['route:*']\n    when: request.method == 'DELETE' && request.path.startsWith('/deals')\n  - id: everyone-open\n    effect: allow\n    tools: [route:open]\n",
    )
    .unwrap();
    let more = format!(
        "policy:\n  files: [\"{}\"]\nlimits:\n  rules:\n    - {{name: per-user, tools: [route:open], key: [subject], rate: 2/minute}}\n",
        dir.path().join("routes.yaml").display()
    );
    let gw = gateway(&issuer, "", &config(&upstream, &more)).await;
    let reader = issuer.sign(&issuer.claims("alice", "crm:read", &gw.mcp));
    let mut writer_claims = issuer.claims("wendy", "crm:read", &gw.mcp);
    writer_claims["roles"] = json!(["crm-writer"]);
    let writer = issuer.sign(&writer_claims);
    let scopeless = issuer.sign(&issuer.claims("sam", "", &gw.mcp));

    // Authentication: a challenge like /mcp's.
    let r = send(&gw, "GET", "/proxy/crm/contacts", None, &[], None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("resource_metadata="));
    // Scopes: a step-up challenge.
    let r = send(&gw, "GET", "/proxy/crm/contacts", Some(&scopeless), &[], None).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    // Methods.
    let r = send(&gw, "PUT", "/proxy/crm/contacts", Some(&writer), &[], None).await;
    assert_eq!((r.status().as_u16(), r.headers()["allow"].to_str().unwrap()), (405, "GET, POST, DELETE"));
    // Policy sees the method and the path.
    assert_eq!(send(&gw, "GET", "/proxy/crm/contacts", Some(&reader), &[], None).await.status(), 200);
    let (status, body) = status_and_body(send(&gw, "POST", "/proxy/crm/contacts", Some(&reader), &[], Some(b"{}".to_vec())).await).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("policy_denied")), "{body}");
    assert_eq!(send(&gw, "POST", "/proxy/crm/contacts", Some(&writer), &[], Some(b"{}".to_vec())).await.status(), 200);
    assert_eq!(send(&gw, "DELETE", "/proxy/crm/contacts/1", Some(&writer), &[], None).await.status(), 200);
    assert_eq!(send(&gw, "DELETE", "/proxy/crm/deals/1", Some(&writer), &[], None).await.status(), 403, "the deny rule on the path");

    // Bodies: bounded in, bounded out (declared or streamed), and time.
    let big = vec![b'a'; 4096];
    assert_eq!(send(&gw, "POST", "/proxy/crm/contacts", Some(&writer), &[], Some(big.clone())).await.status(), 413);
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 512]))));
    let r = gw.http.post(format!("{}/proxy/crm/contacts", gw.url)).bearer_auth(&writer).body(chunked).send().await.unwrap();
    assert_eq!(r.status(), 413, "a streamed body past the bound");
    let (status, body) = status_and_body(send(&gw, "GET", "/proxy/crm/big", Some(&reader), &[], None).await).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("upstream_too_large")));
    let streamed = send(&gw, "GET", "/proxy/crm/big-stream", Some(&reader), &[], None).await;
    assert_eq!(streamed.status(), 200, "the head passes before the cut");
    let cut = streamed.bytes().await;
    assert!(cut.as_ref().map_or(true, |b| b.len() <= 65536 + 4096), "the body is cut at the bound: {:?}", cut.map(|b| b.len()));
    let (status, body) = status_and_body(send(&gw, "GET", "/proxy/crm/slow", Some(&reader), &[], None).await).await;
    assert_eq!((status, body["error"].as_str()), (504, Some("upstream_timeout")));

    // Limits: per subject, on the route.
    for _ in 0..2 {
        assert_eq!(send(&gw, "GET", "/proxy/open/x", Some(&reader), &[], None).await.status(), 200);
    }
    let r = send(&gw, "GET", "/proxy/open/x", Some(&reader), &[], None).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    let events: Vec<Value> = gw.audit().into_iter().filter(|e| e["method"] == "proxy").collect();
    let denied = events
        .iter()
        .find(|e| e["rule"].as_str().is_some_and(|r| r.ends_with("no-deals-deletes")))
        .unwrap_or_else(|| panic!("the deny is audited with its rule: {events:#?}"));
    assert_eq!((denied["decision"].as_str(), denied["explanation"].as_str()), (Some("deny"), Some("DELETE /deals/1")));
    assert!(events.iter().any(|e| e["reason"] == "rate_limited" && e["rule"] == "limits/per-user"));
    assert!(events.iter().any(|e| e["reason"] == "upstream_timeout" && e["decision"] == "error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_reaches_only_the_routes_it_was_issued_for() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let more = format!(
        "vault:\n  database: \"{}\"\n  keys: \"{}\"\nadmin:\n  token: {ADMIN}\napi_keys:\n  enabled: true\n  hash_key: api-key-hash-key-0123456789abcdef0123\n",
        db.url,
        keyring()
    );
    let gw = gateway(&issuer, "", &config(&upstream, &more)).await;
    let made: Value = gw
        .http
        .post(format!("{}/admin/v1/api-keys", gw.url))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "crm-sync", "subject": "crm-sync", "scopes": ["crm:read"], "tools": ["route:crm"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().unwrap();
    assert_eq!(send(&gw, "GET", "/proxy/crm/contacts", Some(key), &[], None).await.status(), 200);
    let sent = upstream.last();
    assert_eq!(
        (sent.headers["x-user-id"].to_str().unwrap(), sent.headers["x-client-id"].to_str().unwrap()),
        ("crm-sync", made["id"].as_str().unwrap())
    );
    assert!(sent.headers.get("authorization").is_none());
    let (status, body) = status_and_body(send(&gw, "GET", "/proxy/open/x", Some(key), &[], None).await).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("policy_denied")), "route:open is not on the key's list");
}
