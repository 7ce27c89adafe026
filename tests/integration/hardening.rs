//! Regressions for the defects a black-box run found (issue 9): each test sends what the
//! attacker sent, against the real gateway and a recording backend.

use serde_json::json;

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
