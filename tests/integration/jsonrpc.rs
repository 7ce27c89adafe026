//! Malformed JSON-RPC of each kind gets the right code, and protocol revisions negotiate.

use serde_json::{Value, json};

use crate::common::{TestGateway, TestIssuer, gateway};

async fn setup() -> (TestIssuer, TestGateway, String) {
    let issuer = TestIssuer::start().await;
    let gw = gateway(&issuer, "  []", "").await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    (issuer, gw, token)
}

#[tokio::test]
async fn malformed_messages_get_stable_json_rpc_errors() {
    let (_issuer, gw, token) = setup().await;
    let cases: Vec<(&str, String, u16, i64, Value)> = vec![
        ("not JSON", "{nope".into(), 400, -32700, Value::Null),
        ("empty body", String::new(), 400, -32700, Value::Null),
        ("batch", json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]).to_string(), 400, -32600, Value::Null),
        ("scalar", "42".into(), 400, -32600, Value::Null),
        ("no jsonrpc", json!({"id": 1, "method": "ping"}).to_string(), 400, -32600, json!(1)),
        ("wrong jsonrpc", json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}).to_string(), 400, -32600, json!(1)),
        ("object id", json!({"jsonrpc": "2.0", "id": {}, "method": "ping"}).to_string(), 400, -32600, Value::Null),
        ("fractional id", json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}).to_string(), 400, -32600, Value::Null),
        ("method not a string", json!({"jsonrpc": "2.0", "id": 2, "method": 7}).to_string(), 400, -32600, json!(2)),
        ("neither request nor response", json!({"jsonrpc": "2.0", "id": 3}).to_string(), 400, -32600, json!(3)),
        ("array params", json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": []}).to_string(), 400, -32602, json!(4)),
        (
            "tools/call without a name",
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {}}).to_string(),
            400,
            -32602,
            json!(5),
        ),
        ("unknown method", json!({"jsonrpc": "2.0", "id": "u", "method": "resources/list"}).to_string(), 200, -32601, json!("u")),
    ];
    for (what, body, status, code, id) in cases {
        let r = gw.post_raw(Some(&token), body, &[]).await;
        assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
        assert_eq!(r.error_code(), Some(code), "{what}: {:?}", r.body);
        assert_eq!(r.body["id"], id, "{what}");
        assert_eq!(r.body["jsonrpc"], "2.0", "{what}");
        assert!(r.body["error"]["data"]["code"].is_string(), "{what}: no stable code");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let (_issuer, gw, token) = setup().await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(70_000)}}).to_string();
    let r = gw.post_raw(Some(&token), big, &[]).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.body["error"]["data"]["code"], "body_too_large");
    assert_eq!(gw.audit().pop().unwrap()["reason"], "body_too_large");
}

#[tokio::test]
async fn hostile_bodies_never_crash_the_gateway() {
    let (_issuer, gw, token) = setup().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [deep, "\u{0}\u{1}".into(), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"".into(), "null".into()] {
        let r = gw.post_raw(Some(&token), body, &[]).await;
        assert!(r.status.is_client_error(), "{:?}", r.body);
    }
    assert_eq!(gw.rpc(&token, "ping", json!({})).await.status, 200, "gateway unhealthy after hostile input");
}

#[tokio::test]
async fn notifications_are_accepted_with_202() {
    let (_issuer, gw, token) = setup().await;
    let r = gw.post_raw(Some(&token), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(), &[]).await;
    assert_eq!(r.status, 202);
}

fn initialize(version: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}})
    .to_string()
}

#[tokio::test]
async fn initialize_negotiates_supported_revisions() {
    let (_issuer, gw, token) = setup().await;
    for (asked, agreed) in [("2025-06-18", "2025-06-18"), ("2025-11-25", "2025-11-25"), ("2099-01-01", "2025-11-25")] {
        // The first initialize of a session carries no MCP-Protocol-Version header.
        let r = gw.post_raw(Some(&token), initialize(asked), &[("mcp-protocol-version", asked)]).await;
        assert_eq!(r.status, 200, "{asked}: {:?}", r.body);
        assert_eq!(r.result()["protocolVersion"], agreed, "{asked}");
        assert_eq!(r.result()["serverInfo"]["name"], "warden");
        assert!(r.result()["capabilities"]["tools"].is_object());
    }
}

fn meta_2026() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

#[tokio::test]
async fn revision_2026_07_28_discovers_without_initialize() {
    let (_issuer, gw, token) = setup().await;
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")];
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta_2026()}}).to_string();
    let r = gw.post_raw(Some(&token), body, &headers).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.result()["supportedVersions"], json!(["2026-07-28", "2025-11-25", "2025-06-18"]));
    assert!(r.result()["capabilities"]["tools"].is_object());

    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")];
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta_2026()}}).to_string();
    let r = gw.post_raw(Some(&token), body, &headers).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.result()["tools"], json!([]));
    // Tool lists differ per caller: never cacheable across users.
    assert_eq!(r.result()["cacheScope"], "private");
}

#[tokio::test]
async fn framing_errors_are_json_with_stable_codes() {
    let (_issuer, gw, token) = setup().await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let send = |content_type: &'static str, accept: &'static str| {
        gw.http.post(&gw.mcp).bearer_auth(&token).header("content-type", content_type).header("accept", accept).body(ping.clone()).send()
    };
    let r = send("text/plain", "application/json, text/event-stream").await.unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["data"]["code"], "unsupported_media_type");
    let r = send("application/json", "application/json").await.unwrap();
    assert_eq!(r.status(), 406);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["data"]["code"], "not_acceptable");
    assert_eq!(send("application/json; charset=utf-8", "application/json, text/event-stream").await.unwrap().status(), 200);
    assert_eq!(gw.audit().iter().filter(|e| e["decision"] == "deny").count(), 2);
}

/// 2026-07-28 (SEP-2575): an unknown method, or one that revision removed (`initialize`,
/// `logging/setLevel`, `resources/subscribe`), is HTTP 404 with -32601; and the `Mcp-Method`
/// and `Mcp-Name` headers must agree with the body (SEP-2243).
#[tokio::test]
async fn revision_2026_07_28_answers_unknown_methods_404_and_checks_its_headers() {
    let (_issuer, gw, token) = setup().await;
    let send = |method: &str, params: Value, headers: Vec<(&'static str, String)>| {
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params}).to_string();
        let gw = &gw;
        let token = token.clone();
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            gw.post_raw(Some(&token), body, &headers).await
        }
    };
    let with_meta = |mut params: Value| {
        params["_meta"] = meta_2026();
        params
    };
    for method in ["no/such/method", "initialize", "logging/setLevel", "resources/subscribe", "prompts/list"] {
        let headers = vec![("mcp-protocol-version", "2026-07-28".to_owned()), ("mcp-method", method.to_owned())];
        let r = send(method, with_meta(json!({})), headers).await;
        assert_eq!((r.status.as_u16(), r.error_code()), (404, Some(-32601)), "{method}: {:?}", r.body);
        assert_eq!(r.body["id"], 3);
    }
    // The same unknown method on an older revision: a JSON-RPC error on HTTP 200, as before.
    let r = send("no/such/method", json!({}), vec![("mcp-protocol-version", "2025-11-25".to_owned())]).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (200, Some(-32601)));

    // Headers that disagree with the body.
    let call = with_meta(json!({"name": "nothing", "arguments": {}}));
    let mismatched = [
        vec![
            ("mcp-protocol-version", "2026-07-28".to_owned()),
            ("mcp-method", "tools/list".to_owned()),
            ("mcp-name", "nothing".to_owned()),
        ],
        vec![("mcp-protocol-version", "2026-07-28".to_owned()), ("mcp-method", "tools/call".to_owned()), ("mcp-name", "other".to_owned())],
    ];
    for headers in mismatched {
        let r = send("tools/call", call.clone(), headers.clone()).await;
        assert_eq!(r.status.as_u16(), 400, "{headers:?}: {:?}", r.body);
        assert_eq!(r.error_code(), Some(-32020), "{headers:?}: {:?}", r.body);
    }
}

/// 2026-07-28 (SEP-2575): each request names its revision in `_meta` and in
/// `MCP-Protocol-Version`, the two agree, the revision is one Warden serves, and the client's
/// capabilities come with it; `ping` is gone. Each refusal is audited once, with its status.
#[tokio::test]
async fn revision_2026_07_28_requests_carry_their_revision_and_capabilities() {
    let (_issuer, gw, token) = setup().await;
    let list = |meta: Option<Value>, header: Option<&'static str>| {
        let mut params = json!({});
        if let Some(meta) = meta {
            params["_meta"] = meta;
        }
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": params}).to_string();
        let (gw, token) = (&gw, token.clone());
        async move {
            let mut headers = vec![("mcp-method", "tools/list")];
            headers.extend(header.map(|h| ("mcp-protocol-version", h)));
            gw.post_exact(Some(&token), body, &headers).await
        }
    };
    let with = |key: &str, value: Value| {
        let mut meta = meta_2026();
        meta[key] = value;
        meta
    };
    let without_capabilities = {
        let mut meta = meta_2026();
        meta.as_object_mut().unwrap().remove("io.modelcontextprotocol/clientCapabilities");
        meta
    };
    let v2099 = with("io.modelcontextprotocol/protocolVersion", json!("2099-01-01"));
    // What is sent (`_meta`, the header) and what comes back (status, JSON-RPC code).
    type Case = (&'static str, Option<Value>, Option<&'static str>, u16, i64);
    let cases: Vec<Case> = vec![
        ("no _meta, 2026-07-28 header", None, Some("2026-07-28"), 400, -32602),
        ("no capabilities", Some(without_capabilities), Some("2026-07-28"), 400, -32602),
        (
            "capabilities not an object",
            Some(with("io.modelcontextprotocol/clientCapabilities", json!("all"))),
            Some("2026-07-28"),
            400,
            -32602,
        ),
        ("header disagrees with _meta", Some(meta_2026()), Some("2025-11-25"), 400, -32020),
        ("_meta without the header", Some(meta_2026()), None, 400, -32020),
        ("a revision Warden does not serve", Some(v2099), Some("2099-01-01"), 400, -32022),
    ];
    for (case, meta, header, status, code) in cases {
        let r = list(meta, header).await;
        assert_eq!((r.status.as_u16(), r.error_code()), (status, Some(code)), "{case}: {:?}", r.body);
        assert_eq!(r.body["id"], 7, "{case}");
    }
    let r = list(Some(with("io.modelcontextprotocol/protocolVersion", json!("2099-01-01"))), Some("2099-01-01")).await;
    assert_eq!(r.body["error"]["data"]["supported"], json!(["2026-07-28", "2025-11-25", "2025-06-18"]));
    assert_eq!(r.body["error"]["data"]["requested"], "2099-01-01");

    // Well formed: served in 2026-07-28's shape.
    let r = list(Some(meta_2026()), Some("2026-07-28")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!((r.result()["resultType"].as_str(), r.result()["ttlMs"].as_u64()), (Some("complete"), Some(0)));
    // `_meta` naming an older revision: that revision's shape (no `resultType`).
    let old = with("io.modelcontextprotocol/protocolVersion", json!("2025-11-25"));
    let r = list(Some(old), Some("2025-11-25")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.result().get("resultType").is_none(), "{:?}", r.body);

    // 2026-07-28 removed `ping`.
    let ping = json!({"jsonrpc": "2.0", "id": 8, "method": "ping", "params": {"_meta": meta_2026()}}).to_string();
    let r = gw.post_raw(Some(&token), ping, &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "ping")]).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (404, Some(-32601)), "{:?}", r.body);

    // Every request recorded once, refusals with the status they were answered with.
    let audit = gw.audit();
    let statuses: Vec<u64> = audit.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![400, 400, 400, 400, 400, 400, 400, 200, 200, 404], "{audit:#?}");
    let reasons: Vec<&str> = audit.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons[..6],
        ["invalid_params", "invalid_params", "invalid_params", "header_mismatch", "header_mismatch", "unsupported_protocol_version"]
    );
}

/// 2026-07-28 (SEP-2243): an argument the tool's schema promotes with `x-mcp-header` travels as
/// `Mcp-Param-{name}` too; a missing, mismatched or unexpected header refuses the call before
/// it reaches the backend (-32020, HTTP 400), and the older revisions do not use them.
#[tokio::test]
async fn revision_2026_07_28_checks_promoted_arguments_against_their_headers() {
    let issuer = TestIssuer::start().await;
    let upstream = crate::common::Upstream::start().await;
    let tools = format!(
        "
  - name: route
    description: Routes by region.
    input_schema:
      type: object
      properties:
        region: {{type: string, x-mcp-header: Region}}
        options:
          type: object
          properties:
            dry_run: {{type: [boolean, 'null'], x-mcp-header: Dry-Run}}
        note: {{type: string}}
      required: [region]
    http:
      method: POST
      url: {}/route
",
        upstream.url
    );
    let gw = gateway(&issuer, &tools, "upstream:\n  allow_cidrs: [127.0.0.1/32]").await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let call = |arguments: Value, extra: Vec<(&'static str, &'static str)>, revision: &'static str| {
        let mut params = json!({"name": "route", "arguments": arguments});
        if revision == "2026-07-28" {
            params["_meta"] = meta_2026();
        }
        let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}).to_string();
        let (gw, token) = (&gw, token.clone());
        async move {
            let mut headers = vec![("mcp-protocol-version", revision), ("mcp-method", "tools/call"), ("mcp-name", "route")];
            headers.extend(extra);
            gw.post_raw(Some(&token), body, &headers).await
        }
    };
    let eu = json!({"region": "eu-west", "options": {"dry_run": true}});
    let served = [
        (eu.clone(), vec![("mcp-param-region", "eu-west"), ("mcp-param-dry-run", "true")]),
        // Base64-wrapped (SEP-2243's form for values a header cannot carry as they are).
        (json!({"region": "eu-west"}), vec![("mcp-param-region", "=?base64?ZXUtd2VzdA==?=")]),
        // A promoted argument that is null or absent has no header.
        (json!({"region": "eu-west", "options": {"dry_run": null}}), vec![("mcp-param-region", "eu-west")]),
    ];
    for (arguments, headers) in served {
        let r = call(arguments.clone(), headers.clone(), "2026-07-28").await;
        assert_eq!(r.status, 200, "{arguments} {headers:?}: {:?}", r.body);
        assert_eq!(r.result()["isError"], false, "{arguments} {headers:?}: {:?}", r.body);
    }
    let reached = upstream.requests().len();
    let refused = [
        ("missing", eu.clone(), vec![("mcp-param-region", "eu-west")]),
        ("mismatched", eu.clone(), vec![("mcp-param-region", "us-east"), ("mcp-param-dry-run", "true")]),
        ("for an absent argument", json!({"region": "eu-west"}), vec![("mcp-param-region", "eu-west"), ("mcp-param-dry-run", "false")]),
        ("sent twice", json!({"region": "eu-west"}), vec![("mcp-param-region", "eu-west"), ("mcp-param-region", "eu-west")]),
        ("not Base64", json!({"region": "eu-west"}), vec![("mcp-param-region", "=?base64?@@@?=")]),
    ];
    for (case, arguments, headers) in refused {
        let r = call(arguments, headers, "2026-07-28").await;
        assert_eq!((r.status.as_u16(), r.error_code()), (400, Some(-32020)), "{case}: {:?}", r.body);
        assert!(!r.body["error"]["message"].as_str().unwrap().contains("us-east"), "no value is echoed: {:?}", r.body);
    }
    assert_eq!(upstream.requests().len(), reached, "a refused call never reaches the backend");
    // The revisions before 2026-07-28 have no such headers.
    let r = call(eu, vec![], "2025-11-25").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    let audit = gw.audit();
    assert_eq!(audit.iter().filter(|e| e["reason"] == "header_mismatch" && e["status"] == 400).count(), 5, "{audit:#?}");
}
