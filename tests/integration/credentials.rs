//! Static upstream credentials: injected in the configured place, never the client's token,
//! never in audit or errors.

use base64::Engine;
use serde_json::json;

use crate::common::{TestGateway, TestIssuer, Upstream, gateway};

const SECRET: &str = "upstream-s3cr3t-value";

async fn setup() -> (TestIssuer, Upstream, TestGateway, String) {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let extra = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\ncredentials:\n  - {{name: bearer, secret: {SECRET}, placement: bearer}}\n  - {{name: header, secret: {SECRET}, placement: header, header: X-Api-Key, prefix: 'Token '}}\n  - {{name: query, secret: {SECRET}, placement: query, query_param: api_key}}\n  - {{name: basic, secret: {SECRET}, placement: basic, username: svc}}"
    );
    let tool = |name: &str, url: &str| {
        format!("  - {{name: {name}, description: d, credential: {name}, input_schema: {{type: object}}, http: {{url: \"{url}\"}}}}\n")
    };
    let tools = [
        tool("bearer", &format!("{}/b", upstream.url)),
        tool("header", &format!("{}/h", upstream.url)),
        tool("query", &format!("{}/q", upstream.url)),
        tool("basic", &format!("{}/s", upstream.url)),
    ]
    .concat()
        + &format!("  - {{name: unreachable, description: d, credential: query, http: {{url: \"http://{closed}/x\"}}}}\n");
    let gw = gateway(&issuer, &tools, &extra).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    (issuer, upstream, gw, token)
}

#[tokio::test]
async fn each_placement_reaches_the_backend_and_the_client_token_does_not() {
    let (_i, upstream, gw, token) = setup().await;
    // An argument named like the credential's query parameter is refused, never sent beside it.
    let seen = upstream.requests().len();
    let r = gw.call(&token, "query", json!({"api_key": "from-arguments"})).await;
    assert_eq!(r.result()["isError"], true, "{:?}", r.body);
    assert_eq!(upstream.requests().len(), seen, "the refused call reached the backend");
    for tool in ["bearer", "header", "query", "basic"] {
        let args = if tool == "query" { json!({}) } else { json!({"api_key": "from-arguments"}) };
        let r = gw.call(&token, tool, args).await;
        assert_eq!(r.result()["isError"], false, "{tool}: {:?}", r.body);
        let got = upstream.last();
        assert_eq!(got.headers["x-user-id"], "alice", "{tool}: identity still injected");
        let auth = got.headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
        assert!(auth.as_deref().is_none_or(|a| !a.contains(&token[..20])), "{tool}: the client's token reached the backend");
        match tool {
            "bearer" => assert_eq!(auth.as_deref(), Some(format!("Bearer {SECRET}").as_str())),
            "header" => {
                assert_eq!(got.headers["x-api-key"], format!("Token {SECRET}").as_str());
                assert!(auth.is_none());
            }
            "query" => {
                assert_eq!(got.query.as_deref(), Some(format!("api_key={SECRET}").as_str()));
                assert!(auth.is_none());
            }
            _ => assert_eq!(auth, Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("svc:{SECRET}"))))),
        }
    }
}

#[tokio::test]
async fn the_secret_appears_in_no_audit_line_and_no_error() {
    let (_i, _upstream, gw, token) = setup().await;
    let r = gw.call(&token, "unreachable", json!({})).await;
    assert_eq!(r.result()["isError"], true);
    let text = r.body.to_string();
    assert!(!text.contains(SECRET), "the secret leaked into an error: {text}");
    for tool in ["bearer", "header", "query", "basic"] {
        gw.call(&token, tool, json!({})).await;
    }
    let audit = gw.audit_text();
    assert!(audit.lines().count() >= 5);
    assert!(!audit.contains(SECRET), "the secret is in the audit log");
}
