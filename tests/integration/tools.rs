//! HTTP endpoint tools: validation, argument mapping, identity injection, header stripping,
//! upstream result mapping and the SSRF guard.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestGateway, TestIssuer, Upstream, gateway};

const TOOLS: &str = "
  - name: get_user
    description: Path, query and header mapping on GET.
    input_schema:
      type: object
      properties:
        user: {type: string}
        fields: {type: array, items: {type: string}}
        trace_tag: {type: string}
        verbose: {type: boolean}
      required: [user]
      additionalProperties: false
    http:
      url: UPSTREAM/users/{user}/profile
      query: {f: fields}
      headers: {X-Trace-Tag: trace_tag}
  - name: create_item
    description: JSON body on POST.
    input_schema:
      type: object
      properties:
        id: {type: integer}
        title: {type: string, minLength: 1}
        tags: {type: array}
      required: [id, title]
    http:
      method: POST
      url: UPSTREAM/items/{id}
  - name: status
    description: Answers the status asked for.
    input_schema:
      type: object
      properties:
        code: {type: integer}
      required: [code]
    http:
      url: UPSTREAM/status/{code}
  - name: slow
    description: Never answers in time.
    http:
      url: UPSTREAM/slow
      timeout: 500ms
  - name: text
    description: Plain text.
    http:
      url: UPSTREAM/text
  - name: array
    description: A JSON array.
    http:
      url: UPSTREAM/array
  - name: closed
    description: Nobody listens there.
    http:
      url: CLOSED/nothing
  - name: metadata
    description: The cloud metadata address.
    http:
      url: http://169.254.169.254/latest/meta-data/
";

async fn setup() -> (TestIssuer, Upstream, TestGateway, String) {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let tools = TOOLS.replace("UPSTREAM", &upstream.url).replace("CLOSED", &closed);
    let gw = gateway(&issuer, &tools, "upstream:\n  allow_cidrs: [127.0.0.1/32]").await;
    let mut claims = issuer.claims("user-42", "files:read", &gw.mcp);
    claims["roles"] = json!(["analyst", "admin"]);
    claims["org_id"] = json!("acme");
    let token = issuer.sign(&claims);
    (issuer, upstream, gw, token)
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_any_upstream_call() {
    let (_i, upstream, gw, token) = setup().await;
    for (args, needle) in [
        (json!({}), "user"),
        (json!({"user": 7}), "/user"),
        (json!({"user": "a", "extra": 1}), "extra"),
        (json!({"user": "a", "fields": "not-an-array"}), "/fields"),
    ] {
        // A tool execution error the model can correct (SEP-1303), not a protocol error.
        let r = gw.call(&token, "get_user", args.clone()).await;
        assert_eq!((r.status.as_u16(), r.result()["isError"].as_bool()), (200, Some(true)), "{args}: {:?}", r.body);
        let message = r.result()["content"][0]["text"].as_str().unwrap();
        assert!(message.starts_with("invalid arguments: "), "{message}");
        assert!(message.contains(needle), "{args}: {message}");
        let event = gw.audit().pop().unwrap();
        assert_eq!((event["decision"].as_str(), event["reason"].as_str()), (Some("deny"), Some("invalid_arguments")), "{event}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn unknown_tool_is_invalid_params() {
    let (_i, upstream, gw, token) = setup().await;
    let r = gw.call(&token, "no_such_tool", json!({})).await;
    assert_eq!(r.error_code(), Some(-32602));
    assert_eq!(r.body["error"]["message"], "unknown tool: no_such_tool");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn arguments_map_onto_path_query_headers_and_body() {
    let (_i, upstream, gw, token) = setup().await;
    let r = gw.call(&token, "get_user", json!({"user": "a/../b c", "fields": ["x", "y z"], "trace_tag": "t-1", "verbose": true})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.result()["isError"], false);
    let got = upstream.last();
    assert_eq!(got.method, "GET");
    // One path segment, percent-encoded: no traversal.
    assert_eq!(got.path, "/users/a%2F..%2Fb%20c/profile");
    assert_eq!(got.query.as_deref(), Some("f=x&f=y+z&verbose=true"));
    assert_eq!(got.headers["x-trace-tag"], "t-1");
    assert!(got.body.is_empty());

    let r = gw.call(&token, "create_item", json!({"id": 7, "title": "Hello", "tags": ["a"]})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    let got = upstream.last();
    assert_eq!((got.method.as_str(), got.path.as_str()), ("POST", "/items/7"));
    assert_eq!(got.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body, json!({"title": "Hello", "tags": ["a"]}));
}

#[tokio::test]
async fn dot_segments_are_refused() {
    let (_i, upstream, gw, token) = setup().await;
    for user in ["..", "."] {
        let r = gw.call(&token, "get_user", json!({"user": user})).await;
        assert_eq!(r.result()["isError"], true, "{user}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn identity_is_injected_and_client_headers_are_stripped() {
    let (_i, upstream, gw, token) = setup().await;
    let body =
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "get_user", "arguments": {"user": "x"}}}).to_string();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = gw
        .post_raw(
            Some(&token),
            body,
            &[
                ("x-user-id", "forged"),
                ("x-user-roles", "superuser"),
                ("x-tenant-id", "other"),
                ("x-request-id", "req-abc-123"),
                ("traceparent", traceparent),
                ("cookie", "session=secret"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["x-request-id"], "req-abc-123");
    let h = upstream.last().headers;
    assert_eq!(h["x-user-id"], "user-42");
    assert_eq!(h["x-user-scopes"], "files:read");
    assert_eq!(h["x-user-roles"], "analyst,admin");
    assert_eq!(h["x-tenant-id"], "acme");
    assert_eq!(h["x-client-id"], "test-client");
    assert_eq!(h["x-request-id"], "req-abc-123");
    let tp = h["traceparent"].to_str().unwrap();
    assert!(tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "trace id not kept: {tp}");
    assert_ne!(tp, traceparent, "the gateway's span must be a new parent");
    assert!(!h.contains_key("authorization"), "the client's token went upstream");
    assert!(!h.contains_key("cookie"));
    assert_eq!(h.get_all("x-user-id").iter().count(), 1);
}

#[tokio::test]
async fn a_new_request_id_is_minted_when_none_or_a_bad_one_is_sent() {
    let (_i, upstream, gw, token) = setup().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "text"}}).to_string();
    let r = gw.post_raw(Some(&token), body, &[("x-request-id", "bad id with spaces")]).await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    assert!(uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 7), "{id}");
    assert_eq!(upstream.last().headers["x-request-id"], id.as_str());
}

#[tokio::test]
async fn upstream_errors_become_is_error_results() {
    let (_i, _upstream, gw, token) = setup().await;
    for code in [400, 404, 500, 503] {
        let r = gw.call(&token, "status", json!({"code": code})).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.result()["isError"], true, "{code}");
        let text = text_of(r.result());
        assert!(text.contains(&code.to_string()) && text.contains("backend says"), "{code}: {text}");
    }
}

#[tokio::test]
async fn a_slow_upstream_times_out_as_is_error() {
    let (_i, _upstream, gw, token) = setup().await;
    let r = tokio::time::timeout(Duration::from_secs(10), gw.call(&token, "slow", json!({}))).await.expect("the gateway hung");
    assert_eq!(r.result()["isError"], true);
    assert_eq!(text_of(r.result()), "upstream did not answer within 500ms");
    let e = gw.audit().pop().unwrap();
    assert_eq!((e["decision"].as_str(), e["reason"].as_str()), (Some("error"), Some("upstream_timeout")));
}

#[tokio::test]
async fn unreachable_and_forbidden_destinations_are_is_error() {
    let (_i, _upstream, gw, token) = setup().await;
    let r = gw.call(&token, "closed", json!({})).await;
    assert_eq!(r.result()["isError"], true);
    assert_eq!(text_of(r.result()), "upstream unreachable");
    let r = gw.call(&token, "metadata", json!({})).await;
    assert_eq!(r.result()["isError"], true);
    assert!(text_of(r.result()).contains("SSRF"));
    assert_eq!(gw.audit().pop().unwrap()["reason"], "upstream_blocked");
}

#[tokio::test]
async fn host_names_are_checked_after_dns_resolution() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let port = upstream.url.rsplit(':').next().unwrap();
    // No allow-list: `localhost` resolves to loopback, which the guard refuses.
    let tools = format!("  - name: local\n    description: Loopback by name.\n    http:\n      url: http://localhost:{port}/x\n");
    let gw = gateway(&issuer, &tools, "").await;
    let token = issuer.sign(&issuer.claims("a", "", &gw.mcp));
    let r = gw.call(&token, "local", json!({})).await;
    assert_eq!(r.result()["isError"], true);
    assert!(upstream.requests().is_empty());
    assert_eq!(gw.audit().pop().unwrap()["reason"], "upstream_blocked");
}

#[tokio::test]
async fn responses_map_to_structured_content_and_text() {
    let (_i, _upstream, gw, token) = setup().await;
    let r = gw.call(&token, "get_user", json!({"user": "u"})).await;
    let result = r.result();
    assert_eq!(result["structuredContent"]["path"], "/users/u/profile");
    let text: Value = serde_json::from_str(&text_of(result)).unwrap();
    assert_eq!(text, result["structuredContent"]);

    let r = gw.call(&token, "array", json!({})).await;
    assert_eq!(r.result()["structuredContent"], json!({"result": [1, 2, 3]}));

    let r = gw.call(&token, "text", json!({})).await;
    assert_eq!(text_of(r.result()), "plain words");
    assert!(r.result().get("structuredContent").is_none());
}

#[tokio::test]
async fn a_successful_call_is_audited_once_with_its_facts() {
    let (_i, _upstream, gw, token) = setup().await;
    let before = gw.audit().len();
    let r = gw.call(&token, "get_user", json!({"user": "u"})).await;
    let request_id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let events = gw.audit();
    assert_eq!(events.len(), before + 1, "one event per decision");
    let e = events.last().unwrap();
    assert_eq!(e["request_id"], request_id.as_str());
    assert_eq!(e["subject"], "user-42");
    assert_eq!(e["client_id"], "test-client");
    assert_eq!(e["tenant"], "acme");
    assert_eq!(e["method"], "tools/call");
    assert_eq!(e["tool"], "get_user");
    assert_eq!(e["jsonrpc_id"], 1);
    assert_eq!((e["decision"].as_str(), e["reason"].as_str()), (Some("allow"), Some("ok")));
    assert_eq!((e["status"].as_u64(), e["upstream_status"].as_u64()), (Some(200), Some(200)));
    assert!(e["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(e["trace_id"].as_str().unwrap().len(), 32);
}
