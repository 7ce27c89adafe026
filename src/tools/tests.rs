use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn args(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn template_placeholders_only_in_the_path() {
    assert!(UrlTemplate::parse("https://api.example.com/users/{id}/x").is_ok());
    for bad in [
        "https://{host}/x",
        "https://api.example.com:{port}/x",
        "{scheme}://api.example.com/x",
        "https://api.example.com/x?q={q}",
        "https://api.example.com/{}",
        "https://api.example.com/{a b}",
        "https://api.example.com/{open",
        "https://api.example.com/x}",
        "ftp://api.example.com/x",
        "/relative/{x}",
        "https://api.example.com/x#frag",
    ] {
        assert!(UrlTemplate::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn expansion_encodes_one_segment() {
    let t = UrlTemplate::parse("https://api.example.com/a/{x}/b").unwrap_or_else(|e| panic!("{e}"));
    let u = t.expand(&args(json!({"x": "../../admin?y=1#z"}))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u.as_str(), "https://api.example.com/a/..%2F..%2Fadmin%3Fy%3D1%23z/b");
    assert_eq!(t.expand(&args(json!({"x": 5}))).map(|u| u.path().to_owned()), Ok("/a/5/b".to_owned()));
    assert!(t.expand(&args(json!({"x": ".."}))).is_err());
    assert!(t.expand(&args(json!({"x": ""}))).is_err());
    assert!(t.expand(&args(json!({"x": {"a": 1}}))).is_err());
    assert!(t.expand(&args(json!({}))).is_err());
}

proptest! {
    #[test]
    fn expansion_never_changes_host_or_depth(value in "\\PC{1,40}") {
        prop_assume!(value != "." && value != "..");
        let t = UrlTemplate::parse("https://api.example.com/a/{x}/b").unwrap_or_else(|e| panic!("{e}"));
        let u = t.expand(&args(json!({"x": value}))).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(u.host_str(), Some("api.example.com"));
        prop_assert_eq!(u.path_segments().map(|s| s.count()), Some(3));
        prop_assert!(u.query().is_none() && u.fragment().is_none());
    }
}

#[test]
fn names_and_scopes_follow_the_specs() {
    assert!(valid_tool_name("crm.search_accounts-v2"));
    assert!(!valid_tool_name(""));
    assert!(!valid_tool_name("has space"));
    assert!(!valid_tool_name(&"x".repeat(129)));
    assert!(valid_scope("calendar:read"));
    assert!(valid_scope("https://graph.microsoft.com/.default"));
    for bad in ["", "a b", "a\"b", "a\\b", "é"] {
        assert!(!valid_scope(bad), "{bad:?}");
    }
}

fn registry(tools_yaml: &str) -> Result<ToolRegistry, crate::config::ConfigError> {
    let text = format!("server: {{}}\nidentity:\n  issuers:\n    - issuer: https://i.example\ntools:\n{tools_yaml}");
    let config = crate::config::parse(&text, &std::collections::HashMap::new())?;
    let headers = crate::upstream::IdentityHeaders::from_config(&config.identity_headers)?;
    let credentials = crate::credentials::Credentials::build(&config.credentials, &config.base_dir, &headers, None)?;
    ToolRegistry::build(&config.tools, &headers, std::time::Duration::from_secs(1), &credentials)
}

#[test]
fn tool_definitions_are_checked_at_load() {
    let ok = "  - name: t\n    description: d\n    input_schema: {type: object, properties: {id: {type: string}}}\n    http:\n      url: https://a.example/{id}\n";
    assert!(registry(ok).is_ok());
    for (yaml, path) in [
        (ok.replace("https://a.example/{id}", "https://a.example/{nope}"), "tools[0].http"),
        (ok.replace("{type: object, properties: {id: {type: string}}}", "{type: array}"), "tools[0].input_schema"),
        (
            ok.replace("{type: object, properties: {id: {type: string}}}", "{type: object, properties: {id: {type: 12}}}"),
            "tools[0].input_schema",
        ),
        (ok.replace("      url:", "      headers: {Authorization: id}\n      url:"), "tools[0].http.headers.Authorization"),
        (ok.replace("      url:", "      headers: {X-User-Id: id}\n      url:"), "tools[0].http.headers.X-User-Id"),
        (ok.replace("      url:", "      method: FETCH\n      url:"), "tools[0].http.method"),
        (ok.replace("      url:", "      rest: json\n      url:"), "tools[0].http.rest"),
        (ok.replace("      url:", "      timeout: 0s\n      url:"), "tools[0].http.timeout"),
        (ok.replace("description: d", "description: \" \""), "tools[0].description"),
    ] {
        match registry(&yaml) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => assert_eq!(e.path, path, "{e}"),
        }
    }
}

#[test]
fn arguments_are_validated_with_a_located_reason() {
    let r = registry("  - name: t\n    description: d\n    input_schema: {type: object, properties: {n: {type: integer, maximum: 3}}, required: [n]}\n    http:\n      url: https://a.example/x\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let tool = r.get("t").unwrap_or_else(|| unreachable!());
    assert!(tool.validate_arguments(&json!({"n": 2})).is_ok());
    let e = tool.validate_arguments(&json!({"n": 9})).unwrap_err();
    assert!(e.starts_with("arguments/n: "), "{e}");
    let e = tool.validate_arguments(&json!({})).unwrap_err();
    assert!(e.starts_with("arguments: ") && e.contains("\"n\""), "{e}");
}

#[test]
fn remote_schema_references_are_not_fetched() {
    let yaml = "  - name: t\n    description: d\n    input_schema: {type: object, properties: {a: {$ref: \"http://169.254.169.254/schema.json\"}}}\n    http:\n      url: https://a.example/x\n";
    assert_eq!(registry(yaml).map(|_| ()).map_err(|e| e.path), Err("tools[0].input_schema".to_owned()));
}

#[test]
fn a_tool_mapping_cannot_overwrite_its_credential() {
    let creds = "credentials:\n  - {name: h, secret: s, placement: header, header: X-Api-Key}\n  - {name: q, secret: s, placement: query, query_param: key}\n";
    let with = |tool: &str| format!("{creds}tools:\n{tool}");
    let registry = |text: &str| {
        let text = format!("server: {{}}\nidentity:\n  issuers:\n    - issuer: https://i.example\n{text}");
        let config = crate::config::parse(&text, &std::collections::HashMap::new())?;
        let headers = crate::upstream::IdentityHeaders::from_config(&config.identity_headers)?;
        let credentials = crate::credentials::Credentials::build(&config.credentials, &config.base_dir, &headers, None)?;
        ToolRegistry::build(&config.tools, &headers, std::time::Duration::from_secs(1), &credentials)
    };
    let schema = "input_schema: {type: object, properties: {k: {type: string}}}";
    for (tool, path) in [
        (
            format!(
                "  - {{name: t, description: d, credential: h, {schema}, http: {{url: 'https://a.example/x', headers: {{X-Api-Key: k}}}}}}\n"
            ),
            "tools[0].http.headers.X-Api-Key",
        ),
        (
            format!("  - {{name: t, description: d, credential: q, {schema}, http: {{url: 'https://a.example/x', query: {{key: k}}}}}}\n"),
            "tools[0].http.query.key",
        ),
        ("  - {name: t, description: d, credential: missing, http: {url: 'https://a.example/x'}}\n".to_owned(), "tools[0].credential"),
    ] {
        match registry(&with(&tool)) {
            Ok(_) => panic!("accepted: {tool}"),
            Err(e) => assert_eq!(e.path, path, "{e}"),
        }
    }
}
