//! Regressions for the defects a black-box run found (issue 9): each test sends what the
//! attacker sent, against the real gateway and a recording backend.

use serde_json::{Value, json};

use crate::common::{TestGateway, TestIssuer, Upstream, gateway};

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A gateway with `tools` (UPSTREAM replaced) and the policy `rules`.
async fn with_policy(tools: &str, rules: &str) -> (TestIssuer, Upstream, TestGateway, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "p.yaml", rules);
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\npolicy:\n  files: [{policy}]\n  reload_interval: 0s");
    let gw = gateway(&issuer, &tools.replace("UPSTREAM", &upstream.url), &extra).await;
    let mut claims = issuer.claims("carl", "", &gw.mcp);
    claims["roles"] = json!(["contractor"]);
    claims["org_id"] = json!("acme");
    let token = issuer.sign(&claims);
    (issuer, upstream, gw, token, dir)
}

#[tokio::test]
async fn a_deny_rule_holds_whatever_json_type_carries_the_value() {
    let tools = "  - {name: search, description: Search., http: {url: UPSTREAM/search}}\n  - {name: send_memo, description: Send., http: {method: POST, url: UPSTREAM/memo}}\n";
    let rules = r#"
rules:
  - {id: all, effect: allow, tools: [search]}
  - {id: no-forbidden, effect: deny, tools: [search], when: 'has(args.q) && args.q == "forbidden"'}
  - {id: no-account, effect: deny, tools: [search], when: 'has(args.account) && args.account == "1001"'}
  - {id: messaging, effect: allow, tools: ["send_*"]}
  - id: contractors-no-confidential
    effect: deny
    tools: ["send_*"]
    roles: [contractor]
    when: has(args.classification) && args.classification in ["confidential", "restricted"]
"#;
    let (_issuer, upstream, gw, token, _dir) = with_policy(tools, rules).await;
    for (tool, args, rule) in [
        ("search", json!({"q": "forbidden"}), "p/no-forbidden"),
        ("search", json!({"q": ["forbidden"]}), "p/no-forbidden"),
        ("search", json!({"q": [["forbidden"]]}), "p/no-forbidden"),
        ("search", json!({"q": {"v": "forbidden"}}), "p/no-forbidden"),
        ("search", json!({"account": 1001}), "p/no-account"),
        ("search", json!({"account": [1001]}), "p/no-account"),
        ("send_memo", json!({"classification": ["confidential"]}), "p/contractors-no-confidential"),
        ("send_memo", json!({"classification": "restricted"}), "p/contractors-no-confidential"),
    ] {
        let r = gw.call(&token, tool, args.clone()).await;
        assert_eq!(r.error_code(), Some(-32003), "{tool} {args}: {:?}", r.body);
        assert_eq!(r.body["error"]["data"]["rule"], rule, "{tool} {args}");
    }
    assert!(upstream.requests().is_empty(), "a denied call reached the backend: {:?}", upstream.requests());
    // A rule that compares `q` with a string fails closed on any other kind of `q`, even one
    // without the forbidden value; values of the compared kind pass, as sent.
    let r = gw.call(&token, "search", json!({"q": ["fine", "ok"]})).await;
    assert_eq!(r.body["error"]["data"]["reason"], "policy condition could not be evaluated", "{:?}", r.body);
    let r = gw.call(&token, "search", json!({"q": "fine", "tags": ["a", "b"]})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    assert_eq!(upstream.last().query.as_deref(), Some("q=fine&tags=a&tags=b"));
    let r = gw.call(&token, "send_memo", json!({"classification": "public"})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
}

#[tokio::test]
async fn an_unmapped_argument_cannot_pollute_a_mapped_parameter() {
    let tools = "  - name: records\n    description: Records.\n    input_schema: {type: object, properties: {t: {type: string}}}\n    http: {url: UPSTREAM/records, query: {tenant: t}}\n";
    let rules = "rules:\n  - {id: own-tenant, effect: allow, tools: [records], when: 'args.t == principal.tenant'}\n";
    let (_issuer, upstream, gw, token, _dir) = with_policy(tools, rules).await;
    for args in [json!({"t": "acme", "tenant": "globex"}), json!({"t": "acme", "TENANT": "globex"})] {
        let r = gw.call(&token, "records", args.clone()).await;
        assert_eq!(r.result()["isError"], true, "{args}: {:?}", r.body);
        let text = r.result()["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains("would duplicate the query parameter \"tenant\""), "{text}");
        let event = gw.audit().pop().unwrap();
        assert_eq!((event["decision"].as_str(), event["reason"].as_str()), (Some("error"), Some("invalid_arguments")), "{event}");
    }
    assert!(upstream.requests().is_empty(), "a polluted call reached the backend");
    let r = gw.call(&token, "records", json!({"t": "acme", "other": "x"})).await;
    assert_eq!(r.result()["isError"], false, "{:?}", r.body);
    assert_eq!(upstream.last().query.as_deref(), Some("tenant=acme&other=x"));
}

/// `(name, method, body, extra headers, expected status, expected stable code when refused)`.
type Case<'a> = (&'a str, &'a str, String, Vec<(&'a str, String)>, u16, Option<&'a str>);

/// Every answered request to `/mcp`: one JSON body with a stable code when refused, and exactly
/// one audit event. The black-box run found eight of 601 answered by the MCP library with no
/// event, some in plain text.
#[tokio::test]
async fn every_request_is_answered_in_json_and_audited_exactly_once() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let tools = format!("  - {{name: echo, description: Echo., http: {{url: {}/echo}}}}\n", upstream.url);
    let gw = gateway(&issuer, &tools, "upstream:\n  allow_cidrs: [127.0.0.1/32]").await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let bearer = format!("Bearer {token}");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let rpc = |id: Value, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    let long = "n".repeat(30_000);
    let cases: Vec<Case> = vec![
        (
            "unsupported revision",
            "POST",
            rpc(json!(1), "tools/list", json!({})),
            vec![("mcp-protocol-version", "1999-01-01".into())],
            400,
            Some("unsupported_protocol_version"),
        ),
        (
            "tools/call without id",
            "POST",
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo"}}).to_string(),
            vec![],
            400,
            Some("invalid_request"),
        ),
        (
            "duplicate keys",
            "POST",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"other"}}"#.into(),
            vec![],
            400,
            Some("invalid_request"),
        ),
        (
            "2026-07-28 without Mcp-Method",
            "POST",
            rpc(json!(2), "tools/list", json!({"_meta": meta})),
            vec![("mcp-protocol-version", "2026-07-28".into())],
            400,
            Some("header_mismatch"),
        ),
        (
            "2026-07-28 without _meta",
            "POST",
            rpc(json!(3), "tools/list", json!({})),
            vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "tools/list".into())],
            400,
            Some("invalid_params"),
        ),
        ("Accept */*", "POST", rpc(json!(4), "ping", json!({})), vec![("accept", "*/*".into())], 200, None),
        ("GET", "GET", String::new(), vec![], 405, Some("method_not_allowed")),
        ("DELETE", "DELETE", String::new(), vec![], 405, Some("method_not_allowed")),
        (
            "two Authorization headers",
            "POST",
            rpc(json!(5), "ping", json!({})),
            vec![("authorization", "Bearer garbage".into())],
            400,
            Some("invalid_request"),
        ),
        ("token in the query", "POST?access_token=x", rpc(json!(6), "ping", json!({})), vec![], 400, Some("invalid_request")),
        ("notification", "POST", json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(), vec![], 202, None),
        // A stateless server sends no requests, so it takes no responses (rmcp's refusal).
        ("response", "POST", json!({"jsonrpc": "2.0", "id": 9, "result": {}}).to_string(), vec![], 400, Some("unexpected_response")),
        ("ping", "POST", rpc(json!(7), "ping", json!({})), vec![], 200, None),
        ("unknown method", "POST", rpc(json!(8), "resources/list", json!({})), vec![], 200, Some("method_not_found")),
        ("unknown tool", "POST", rpc(json!(10), "tools/call", json!({"name": "nope"})), vec![], 200, Some("unknown_tool")),
        ("huge tool name", "POST", rpc(json!(long.clone()), "tools/call", json!({"name": long})), vec![], 200, Some("unknown_tool")),
        ("call", "POST", rpc(json!(11), "tools/call", json!({"name": "echo", "arguments": {}})), vec![], 200, None),
        ("not JSON", "POST", "{nope".into(), vec![], 400, Some("parse_error")),
    ];
    let mut ids = Vec::new();
    for (i, (what, method, body, headers, status, code)) in cases.into_iter().enumerate() {
        let request_id = format!("hardening-{i}");
        let (verb, query) = method.split_once('?').map_or((method, ""), |(v, q)| (v, q));
        let url = if query.is_empty() { gw.mcp.clone() } else { format!("{}?{query}", gw.mcp) };
        let mut req = gw.http.request(verb.parse().unwrap(), &url).header("authorization", &bearer).header("x-request-id", &request_id);
        if verb == "POST" {
            req = req.header("content-type", "application/json").body(body);
            if !headers.iter().any(|(k, _)| *k == "accept") {
                req = req.header("accept", "application/json, text/event-stream");
            }
        }
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        if status != 202 {
            assert_eq!(content_type.as_deref(), Some("application/json"), "{what}: {text}");
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
            let stable = body["error"]["data"]["code"].as_str().or(body["error"].as_str());
            assert_eq!(stable, code, "{what}: {body}");
        }
        ids.push((what, request_id));
    }
    let audit = gw.audit();
    for (what, id) in ids {
        let events: Vec<&Value> = audit.iter().filter(|e| e["request_id"] == id.as_str()).collect();
        assert_eq!(events.len(), 1, "{what}: {events:?}");
    }
    // Client-controlled values are bounded in the audit trail, with a digest of the whole.
    let huge = audit.iter().find(|e| e["request_id"] == "hardening-15").unwrap();
    for field in ["tool", "jsonrpc_id"] {
        let v = huge[field].as_str().unwrap_or_default();
        assert!(v.len() < 400 && v.contains("truncated: 30000 bytes, sha256:"), "{field}: {v}");
    }
    assert!(audit.iter().all(|e| e.to_string().len() < 4096), "an audit line is unbounded");
}

/// The SSRF guard judges an IPv6 literal that carries an IPv4 address by that address.
#[tokio::test]
async fn ipv6_literals_carrying_loopback_are_blocked() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let port = upstream.url.rsplit(':').next().unwrap().to_owned();
    let hosts = ["[::127.0.0.1]", "[::ffff:0:127.0.0.1]", "[64:ff9b::127.0.0.1]", "[2002:7f00:1::1]", "[::ffff:127.0.0.1]"];
    let tools: String = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("  - {{name: t{i}, description: d, http: {{url: 'http://{h}:{port}/x'}}}}\n"))
        .collect();
    let gw = gateway(&issuer, &tools, "").await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    for (i, host) in hosts.iter().enumerate() {
        let r = gw.call(&token, &format!("t{i}"), json!({})).await;
        assert_eq!(r.result()["isError"], true, "{host}: {:?}", r.body);
        assert_eq!(gw.audit().pop().unwrap()["reason"], "upstream_blocked", "{host}");
    }
    assert!(upstream.requests().is_empty());
}

mod connections {
    //! Slow and greedy clients: headers and bodies in bounded time, connections per IP bounded.
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::common::{TestIssuer, gateway_with};

    fn addr(url: &str) -> String {
        url.trim_start_matches("http://").to_owned()
    }

    /// Whether the server closed the connection (EOF or reset) before `limit`; `limit` only stops
    /// the test, it measures nothing.
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(seen),
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Sends `bytes` one every 200 ms, as a slowloris client would; whether the server closed
    /// the connection meanwhile or within 5 s after.
    async fn trickled_until_closed(stream: &mut TcpStream, bytes: &[u8]) -> bool {
        for byte in bytes {
            if stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_within(stream, Duration::from_secs(5)).await.is_some()
    }

    /// One `GET /healthz` on a kept-alive connection, its whole answer read; `None` if the
    /// connection was closed instead.
    async fn healthz(stream: &mut TcpStream) -> Option<String> {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.ok()?;
        answer(stream).await
    }

    /// One whole answer (head and `Content-Length` body); `None` if the connection was closed.
    async fn answer(stream: &mut TcpStream) -> Option<String> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                    .and_then(|n| n.trim().parse::<usize>().ok())?;
                if body.len() >= length {
                    return Some(text);
                }
            }
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// A kept-alive connection waits `idle_timeout` for its next request, not the header
    /// timeout: a client pool that reuses it after a pause is answered.
    #[tokio::test]
    async fn a_kept_alive_connection_waits_idle_longer_than_the_header_timeout() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "  header_read_timeout: 1s\n  idle_timeout: 20s\n").await;
        let mut stream = TcpStream::connect(addr(&gw.url)).await.unwrap();
        assert!(healthz(&mut stream).await.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let again = healthz(&mut stream).await;
        assert!(again.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200")), "closed while idle: {again:?}");
    }

    /// A request refused before its body is read (401 without a token, 406 framing, 405) whose
    /// body comes in a write of its own 2 ms after the headers, as httpx sends it: the answer
    /// comes, and the same connection serves the next request (the client's metadata GET).
    #[tokio::test]
    async fn a_refusal_before_the_body_keeps_the_connection_usable() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "").await;
        let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let cases = [
            ("POST", String::new(), "application/json, text/event-stream", "401"),
            ("POST", format!("Authorization: Bearer {token}\r\n"), "text/html", "406"),
            ("PUT", format!("Authorization: Bearer {token}\r\n"), "application/json, text/event-stream", "405"),
        ];
        for round in 0..10 {
            for (method, auth, accept, status) in &cases {
                let mut stream = TcpStream::connect(addr(&gw.url)).await.unwrap();
                let head = format!(
                    "{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nAccept: {accept}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                stream.write_all(body).await.unwrap();
                let first = answer(&mut stream).await;
                assert!(first.as_deref().is_some_and(|a| a.starts_with(&format!("HTTP/1.1 {status}"))), "round {round}: {first:?}");
                assert!(!first.as_deref().unwrap_or_default().to_ascii_lowercase().contains("connection: close"), "{first:?}");
                let get = "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
                stream.write_all(get.as_bytes()).await.unwrap();
                let second = answer(&mut stream).await;
                assert!(
                    second.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 200")),
                    "round {round}, after {status}: the connection did not serve the next request: {second:?}"
                );
            }
        }
    }

    /// Past `idle_timeout` without a request, the connection is closed.
    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "  header_read_timeout: 10s\n  idle_timeout: 1s\n").await;
        let mut stream = TcpStream::connect(addr(&gw.url)).await.unwrap();
        assert!(healthz(&mut stream).await.is_some());
        assert!(closed_within(&mut stream, Duration::from_secs(6)).await.is_some(), "still open after the idle timeout");
    }

    /// On a kept-alive connection, the header timeout counts from the next request's first
    /// byte: a client trickling it is cut off long before the idle timeout.
    #[tokio::test]
    async fn a_second_request_trickling_its_headers_is_disconnected() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "  header_read_timeout: 1s\n  idle_timeout: 60s\n").await;
        let mut stream = TcpStream::connect(addr(&gw.url)).await.unwrap();
        assert!(healthz(&mut stream).await.is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let trickle = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(trickled_until_closed(&mut stream, trickle).await, "the trickling request was never cut off");
    }

    #[tokio::test]
    async fn a_client_trickling_headers_is_disconnected() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "  header_read_timeout: 1s\n").await;
        let mut stream = TcpStream::connect(addr(&gw.url)).await.unwrap();
        // One header byte every 200 ms: a slowloris client that would hold the connection for
        // as long as it liked.
        let trickle = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(trickled_until_closed(&mut stream, trickle).await, "the trickling client was never disconnected");
        // The gateway still serves others.
        assert_eq!(reqwest::get(format!("{}/healthz", gw.url)).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_gets_408_and_an_audit_event() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "  body_read_timeout: 1s\n").await;
        let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
        let mut stream = TcpStream::connect(addr(&gw.url)).await.unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nX-Request-Id: slow-body\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = closed_within(&mut stream, Duration::from_secs(10)).await.expect("no answer to a body that never came");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"body_timeout\""), "{text}");
        let events: Vec<_> = gw.audit().into_iter().filter(|e| e["request_id"] == "slow-body").collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["reason"], "body_timeout");
    }

    #[tokio::test]
    async fn connections_per_ip_are_bounded() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "  max_connections_per_ip: 3\n  header_read_timeout: 30s\n").await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr(&gw.url)).await.unwrap());
        }
        // The fourth is closed at once, without an answer.
        let mut extra = TcpStream::connect(addr(&gw.url)).await.unwrap();
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
        let answer = closed_within(&mut extra, Duration::from_secs(10)).await.expect("the fourth connection was kept open");
        assert!(answer.is_empty(), "the fourth connection was served: {}", String::from_utf8_lossy(&answer));
        // Closing one frees a place.
        drop(held.pop());
        let mut served = false;
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr(&gw.url)).await.unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
            let answer = closed_within(&mut s, Duration::from_secs(10)).await.unwrap_or_default();
            if String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served, "a freed place was never reused");
    }
}

mod cors {
    //! Browser-based MCP clients: preflights before authentication for allowed origins only.
    use crate::common::{TestIssuer, gateway, gateway_with};

    async fn preflight(http: &reqwest::Client, url: &str, origin: &str, headers: &str) -> reqwest::Response {
        http.request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn allowed_origins_get_preflights_and_readable_challenges() {
        let issuer = TestIssuer::start().await;
        let gw = gateway(&issuer, "  []", "").await;
        let origin = "http://localhost:6274";
        let r = preflight(&gw.http, &gw.mcp, origin, "authorization, content-type, mcp-protocol-version").await;
        assert_eq!(r.status(), 204);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
        assert!(h["access-control-allow-headers"].to_str().unwrap().contains("mcp-protocol-version"));
        // The unauthenticated call that follows: the browser may read the challenge.
        let r = gw.http.post(&gw.mcp).header("origin", origin).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["access-control-allow-origin"], origin);
        let exposed = r.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
        for name in ["www-authenticate", "mcp-session-id", "mcp-protocol-version"] {
            assert!(exposed.contains(name), "{name} not exposed: {exposed}");
        }
        // The metadata document is public.
        let r = gw.http.get(gw.metadata_url()).header("origin", "https://any.example").send().await.unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        let audit = gw.audit();
        assert_eq!(audit.iter().filter(|e| e["reason"] == "cors_preflight").count(), 1, "{audit:?}");
    }

    #[tokio::test]
    async fn other_origins_are_refused_without_cors_headers() {
        let issuer = TestIssuer::start().await;
        let gw = gateway_with(&[&issuer], "  []", "", "  allowed_origins: [https://app.example]\n").await;
        for (origin, headers) in
            [("https://evil.example", "authorization"), ("http://localhost:6274", "authorization"), ("https://app.example", "x-custom")]
        {
            let r = preflight(&gw.http, &gw.mcp, origin, headers).await;
            assert_eq!(r.status(), 403, "{origin} {headers}");
            assert!(r.headers().get("access-control-allow-origin").is_none(), "{origin}");
        }
        let r = preflight(&gw.http, &gw.mcp, "https://app.example", "authorization, mcp-param-region").await;
        assert_eq!(r.status(), 204);
        let r = gw.http.post(&gw.mcp).header("origin", "https://evil.example").send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let audit = gw.audit();
        assert_eq!(audit.len(), 5, "one event per request: {audit:?}");
    }
}
