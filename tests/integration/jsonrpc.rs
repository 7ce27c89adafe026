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
