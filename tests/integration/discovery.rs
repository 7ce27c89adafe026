//! Protected Resource Metadata, list-time filtering, step-up, and Host/Origin checks.

use serde_json::json;

use crate::common::{TestGateway, TestIssuer, Upstream, gateway};

const TOOLS: &str = "
  - name: read_files
    description: Read.
    scopes: [files:read]
    http:
      url: UPSTREAM/read
  - name: write_files
    description: Write.
    scopes: [files:read, files:write]
    http:
      method: POST
      url: UPSTREAM/write
  - name: public_info
    description: Open to any authenticated caller.
    http:
      url: UPSTREAM/info
";

async fn setup() -> (TestIssuer, Upstream, TestGateway) {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&issuer, &TOOLS.replace("UPSTREAM", &upstream.url), "upstream:\n  allow_cidrs: [127.0.0.1/32]").await;
    (issuer, upstream, gw)
}

#[tokio::test]
async fn both_metadata_locations_serve_the_same_document() {
    let (issuer, _upstream, gw) = setup().await;
    let expected = json!({
        "resource": gw.mcp,
        "authorization_servers": [issuer.url],
        "scopes_supported": ["files:read", "files:write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Warden MCP gateway",
    });
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        // Public: no token needed, and a bad token is ignored.
        for auth in [None, Some("Bearer garbage")] {
            let mut req = gw.http.get(format!("{}{path}", gw.url));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let doc: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(doc, expected, "{path}");
        }
    }
}

#[tokio::test]
async fn the_metadata_resource_is_the_accepted_audience() {
    let (issuer, _upstream, gw) = setup().await;
    let doc: serde_json::Value = gw.http.get(gw.metadata_url()).send().await.unwrap().json().await.unwrap();
    let resource = doc["resource"].as_str().unwrap();
    let token = issuer.sign(&issuer.claims("alice", "", resource));
    assert_eq!(gw.rpc(&token, "ping", json!({})).await.status, 200);
}

#[tokio::test]
async fn tools_list_shows_only_what_the_caller_may_call() {
    let (issuer, _upstream, gw) = setup().await;
    let token = |scope: &str| issuer.sign(&issuer.claims("alice", scope, &gw.mcp));
    assert_eq!(gw.tool_names(&token("")).await, ["public_info"]);
    assert_eq!(gw.tool_names(&token("files:read")).await, ["read_files", "public_info"]);
    assert_eq!(gw.tool_names(&token("files:write")).await, ["public_info"]);
    assert_eq!(gw.tool_names(&token("files:read files:write")).await, ["read_files", "write_files", "public_info"]);
}

#[tokio::test]
async fn missing_scope_is_a_403_step_up_and_the_backend_is_not_contacted() {
    let (issuer, upstream, gw) = setup().await;
    let token = issuer.sign(&issuer.claims("alice", "files:read", &gw.mcp));
    let r = gw.call(&token, "write_files", json!({})).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.challenge(),
        format!("Bearer error=\"insufficient_scope\", scope=\"files:read files:write\", resource_metadata=\"{}\"", gw.metadata_url())
    );
    // The body is a JSON-RPC error with the request's id, for SDKs that show it to the model.
    assert_eq!(r.body["error"]["data"]["code"], "insufficient_scope", "{}", r.body);
    assert_eq!(r.body["error"]["data"]["missing"], json!(["files:write"]));
    assert_eq!(r.body["error"]["code"], -32004);
    assert!(!r.body["id"].is_null(), "{}", r.body);
    assert!(upstream.requests().is_empty());
    let e = gw.audit().pop().unwrap();
    assert_eq!(
        (e["decision"].as_str(), e["reason"].as_str(), e["tool"].as_str()),
        (Some("deny"), Some("insufficient_scope"), Some("write_files"))
    );
    assert_eq!(e["rule"], "tool:write_files:scopes");

    // Stepped up, the same call goes through.
    let token = issuer.sign(&issuer.claims("alice", "files:read files:write", &gw.mcp));
    let r = gw.call(&token, "write_files", json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream.requests().len(), 1);

    // A step-up keeps what the token already holds: a client that replaces its scopes with the
    // challenge's (MCP 2025-11-25) must not lose them.
    let token = issuer.sign(&issuer.claims("alice", "files:read calendar:read", &gw.mcp));
    let r = gw.call(&token, "write_files", json!({})).await;
    assert_eq!(r.status, 403);
    assert!(r.challenge().contains("scope=\"calendar:read files:read files:write\""), "{}", r.challenge());
}

#[tokio::test]
async fn scopes_from_scp_and_permissions_count() {
    let (issuer, _upstream, gw) = setup().await;
    let mut c = issuer.claims("alice", "", &gw.mcp);
    c["scp"] = json!(["files:read"]);
    assert_eq!(gw.tool_names(&issuer.sign(&c)).await, ["read_files", "public_info"]);
    let mut c = issuer.claims("alice", "", &gw.mcp);
    c["permissions"] = json!(["files:read", "files:write"]);
    assert_eq!(gw.tool_names(&issuer.sign(&c)).await, ["read_files", "write_files", "public_info"]);
}

#[tokio::test]
async fn foreign_host_and_origin_are_refused() {
    let (issuer, upstream, gw) = setup().await;
    let token = issuer.sign(&issuer.claims("alice", "files:read", &gw.mcp));
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let r = gw.post_raw(Some(&token), ping.clone(), &[("host", "evil.example")]).await;
    assert_eq!((r.status.as_u16(), r.body["error"].as_str()), (403, Some("host_not_allowed")));
    let r = gw.post_raw(Some(&token), ping.clone(), &[("origin", "https://evil.example")]).await;
    assert_eq!((r.status.as_u16(), r.body["error"].as_str()), (403, Some("origin_not_allowed")));
    // The gateway's own origin is fine, loopback origins are by default (a rebinding page never
    // has one), and so is no Origin at all.
    let r = gw.post_raw(Some(&token), ping.clone(), &[("origin", gw.url.as_str())]).await;
    assert_eq!(r.status, 200);
    for origin in ["http://localhost:6274", "http://127.0.0.1:3000", "https://[::1]:8443"] {
        assert_eq!(gw.post_raw(Some(&token), ping.clone(), &[("origin", origin)]).await.status, 200, "{origin}");
    }
    for origin in ["http://localhost.evil.example", "http://127.0.0.1.evil.example:80", "null"] {
        assert_eq!(gw.post_raw(Some(&token), ping.clone(), &[("origin", origin)]).await.status, 403, "{origin}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_public_hostname_can_be_allowed() {
    let issuer = TestIssuer::start().await;
    // allowed_hosts replaces the default list: the public name works, unlisted ones do not.
    let gw = crate::common::gateway_with(&[&issuer], "  []", "", "  allowed_hosts: [mcp.example.com]\n").await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    assert_eq!(gw.post_raw(Some(&token), ping.clone(), &[("host", "mcp.example.com")]).await.status, 200);
    assert_eq!(gw.post_raw(Some(&token), ping.clone(), &[("host", "mcp.example.com:443")]).await.status, 200);
    assert_eq!(gw.post_raw(Some(&token), ping.clone(), &[("host", "other.example.com")]).await.status, 403);
    assert_eq!(gw.post_raw(Some(&token), ping, &[]).await.status, 403, "loopback host is not in the replaced list");
}

#[tokio::test]
async fn configured_origins_replace_the_loopback_default() {
    let issuer = TestIssuer::start().await;
    let gw = crate::common::gateway_with(&[&issuer], "  []", "", "  allowed_origins: [\"https://app.example.com\"]\n").await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    assert_eq!(gw.post_raw(Some(&token), ping.clone(), &[("origin", "https://app.example.com")]).await.status, 200);
    assert_eq!(gw.post_raw(Some(&token), ping.clone(), &[("origin", gw.url.as_str())]).await.status, 200);
    assert_eq!(gw.post_raw(Some(&token), ping, &[("origin", "http://localhost:6274")]).await.status, 403);
}
