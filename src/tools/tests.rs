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
    let credentials =
        crate::credentials::Credentials::build(&config.credentials, &config.base_dir, &headers, None, &crate::clock::system())?;
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
        let credentials =
            crate::credentials::Credentials::build(&config.credentials, &config.base_dir, &headers, None, &crate::clock::system())?;
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

/// A tool compiled from one `tools[]` entry (no credential).
fn http_tool(yaml: &str) -> std::sync::Arc<Tool> {
    let r = registry(yaml).unwrap_or_else(|e| panic!("{e}"));
    let t = r.iter().next().cloned();
    t.unwrap_or_else(|| unreachable!())
}

#[test]
fn unmapped_arguments_never_duplicate_a_mapped_parameter() {
    let schema = "input_schema: {type: object, properties: {t: {type: string}, h: {type: string}}}";
    let get = http_tool(&format!(
        "  - {{name: t, description: d, {schema}, http: {{url: 'https://a.example/x', query: {{tenant: t}}, headers: {{X-Tenant: h}}}}}}\n"
    ));
    // The black-box case: the policy checked `t`, and `tenant` came along as a rest argument.
    for polluted in [json!({"t": "acme", "tenant": "globex"}), json!({"t": "acme", "Tenant": "globex"}), json!({"x-tenant": "globex"})] {
        let e = http_of(&get).encode(&args(polluted.clone())).map(|w| w.url.to_string()).unwrap_err();
        assert!(e.contains("would duplicate"), "{polluted}: {e}");
    }
    let wire = http_of(&get).encode(&args(json!({"t": "acme", "h": "x", "other": "y"}))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wire.url.query(), Some("tenant=acme&other=y"));
    assert_eq!(wire.headers.len(), 1);
    // The same for a JSON body: a member named like a mapped parameter is refused too.
    let post = http_tool(&format!(
        "  - {{name: t, description: d, {schema}, http: {{method: POST, url: 'https://a.example/x', query: {{tenant: t}}}}}}\n"
    ));
    assert!(http_of(&post).encode(&args(json!({"t": "acme", "tenant": "globex"}))).is_err());
    let wire = http_of(&post).encode(&args(json!({"t": "acme", "note": "n"}))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wire.body, Some(json!({"note": "n"})));
}

#[test]
fn mappings_cannot_set_one_name_twice() {
    let schema = "input_schema: {type: object, properties: {a: {type: string}, b: {type: string}}}";
    for (http, path) in [
        ("{url: 'https://a.example/x', headers: {X-A: a, x-a: b}}", "tools[0].http.headers.x-a"),
        ("{url: 'https://a.example/x', query: {Tenant: a, tenant: b}}", "tools[0].http.query.tenant"),
    ] {
        match registry(&format!("  - {{name: t, description: d, {schema}, http: {http}}}\n")) {
            Ok(_) => panic!("accepted {http}"),
            Err(e) => assert_eq!(e.path, path, "{e}"),
        }
    }
}

#[test]
fn lists_sent_as_query_parameters_hold_only_scalars() {
    let t = http_tool("  - {name: t, description: d, http: {url: 'https://a.example/x'}}\n");
    let wire = http_of(&t).encode(&args(json!({"q": ["a", 1, true], "o": {"k": 1}, "n": null}))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wire.url.query(), Some("o=%7B%22k%22%3A1%7D&q=a&q=1&q=true"));
    for bad in [json!({"q": [["forbidden"]]}), json!({"q": [null, "x"]}), json!({"q": [{"k": "v"}]})] {
        assert!(http_of(&t).encode(&args(bad.clone())).is_err(), "{bad}");
    }
}

mod shapes {
    //! Policy decides on what will be sent: for any JSON shape of an argument, a call that a
    //! rule allows puts on the wire only values that rule would allow.
    use super::*;
    use crate::policy::fixtures::FixturePrincipal;
    use crate::policy::{PolicySet, RequestFacts, Stage};

    /// A JSON value built from the probe string `v` (and a number), in every shape.
    fn shape(v: &'static str) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!(v)),
            Just(json!(format!("{v}-suffix"))),
            Just(json!("other")),
            Just(json!(1001)),
            Just(json!(1001.0)),
            Just(json!(true)),
            Just(Value::Null),
        ];
        leaf.prop_recursive(3, 12, 4, |inner| {
            prop_oneof![prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array), inner.prop_map(|x| json!({"k": x})),]
        })
    }

    /// The texts the backend receives for argument `q`: repeated query parameters, or every
    /// leaf of the JSON body member.
    fn sent(wire: &Wire) -> Vec<String> {
        if let Some(body) = &wire.body {
            let mut out = Vec::new();
            leaves(body.get("q").unwrap_or(&Value::Null), &mut out);
            return out;
        }
        wire.url.query_pairs().filter(|(k, _)| k == "q").map(|(_, v)| v.into_owned()).collect()
    }

    fn leaves(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Null => {}
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
            Value::Object(m) => m.values().for_each(|i| leaves(i, out)),
            other => out.push(other.to_string()),
        }
    }

    /// What a condition says of one sent text.
    type Holds = fn(&str) -> bool;

    /// `(condition, what it says of one sent text)`.
    fn conditions() -> Vec<(&'static str, Holds)> {
        vec![
            ("args.q == 'forbidden'", |w| w == "forbidden"),
            ("'forbidden' == args.q", |w| w == "forbidden"),
            ("args.q != 'forbidden'", |w| w != "forbidden"),
            ("args.q in ['forbidden', 'restricted']", |w| w == "forbidden" || w == "restricted"),
            ("args.q.startsWith('forb')", |w| w.starts_with("forb")),
            ("args.q.matches('^forb')", |w| w.starts_with("forb")),
            ("args.q == '1001'", |w| w == "1001"),
            // A number rule is about the number: 1001.0 is sent as written, and is 1001.
            ("args.q == 1001", |w| w.parse::<f64>() == Ok(1001.0)),
        ]
    }

    /// A policy from `rules`, compiled once per test run (the tools are both named `search`).
    fn compiled(rules: String) -> &'static crate::policy::Policy {
        static CACHE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, &'static crate::policy::Policy>>> =
            std::sync::LazyLock::new(Default::default);
        let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.entry(rules).or_insert_with_key(|rules| {
            let set = PolicySet::from_sources([("p".to_owned(), rules.as_str())]).unwrap_or_else(|e| panic!("{e}"));
            let name = "search".to_owned();
            let facts = crate::policy::ToolFacts { name: &name, tags: &[], metadata: &Map::new(), scopes: &[], server: None };
            Box::leak(Box::new(set.bind([facts])))
        })
    }

    fn decide(rules: &str, tool: &Tool, args: &Value) -> bool {
        let policy = compiled(rules.to_owned());
        let who = FixturePrincipal {
            sub: "alice".into(),
            issuer: "https://i.example".into(),
            client_id: None,
            tenant: None,
            roles: vec![],
            scopes: vec![],
            claims: Map::new(),
        }
        .principal();
        policy.decide(&who, &tool.facts(), Stage::Call(args), &RequestFacts::default(), None).outcome.is_ok()
    }

    /// What the backend receives for `q`, when policy allows `{"q": value}` and the mapping
    /// can send it; `None` when the call never goes out.
    fn sent_if_allowed(rules: &str, tool: &Tool, value: &Value) -> Option<Vec<String>> {
        let arguments = json!({ "q": value });
        if !decide(rules, tool, &arguments) {
            return None;
        }
        http_of(tool).encode(&args(arguments)).ok().map(|wire| sent(&wire))
    }

    fn tools() -> Vec<std::sync::Arc<Tool>> {
        static TOOLS: std::sync::LazyLock<Vec<std::sync::Arc<Tool>>> = std::sync::LazyLock::new(|| {
            vec![
                http_tool("  - {name: search, description: d, http: {url: 'https://a.example/s'}}\n"),
                http_tool("  - {name: search, description: d, http: {method: POST, url: 'https://a.example/s'}}\n"),
            ]
        });
        TOOLS.clone()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// A deny rule's condition never holds for a value that reaches the backend.
        #[test]
        fn deny_rules_hold_for_every_shape(q in shape("forbidden"), number in shape("1001")) {
            for tool in tools() {
                for (when, holds) in conditions() {
                    let rules = format!("rules:\n  - {{id: all, effect: allow, tools: [search]}}\n  - {{id: no, effect: deny, tools: [search], when: \"has(args.q) && {when}\"}}\n");
                    for value in [&q, &number] {
                        let Some(texts) = sent_if_allowed(&rules, &tool, value) else { continue };
                        prop_assert!(!texts.iter().any(|w| holds(w)), "deny {} bypassed by {}: sent {:?}", when, value, texts);
                    }
                }
            }
        }

        /// An allow rule's condition holds for every value that reaches the backend, and an
        /// allowed call sends at most one value for the argument.
        #[test]
        fn allow_rules_hold_for_every_shape(q in shape("forbidden"), number in shape("1001")) {
            for tool in tools() {
                for (when, holds) in conditions() {
                    let rules = format!("rules:\n  - {{id: only, effect: allow, tools: [search], when: \"{when}\"}}\n");
                    for value in [&q, &number] {
                        let Some(texts) = sent_if_allowed(&rules, &tool, value) else { continue };
                        prop_assert!(texts.len() <= 1 && texts.iter().all(|w| holds(w)), "allow {} satisfied by {}: sent {:?}", when, value, texts);
                    }
                }
            }
        }
    }
}

/// The HTTP backend of a tool built from an `http:` entry.
fn http_of(tool: &Tool) -> &http::HttpTool {
    tool.backend.as_any().downcast_ref::<http::HttpTool>().unwrap_or_else(|| panic!("{} is not an HTTP tool", tool.name))
}
