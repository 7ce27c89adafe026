//! Property-based fuzzing of what a client or an operator controls, on stable Rust (proptest):
//! the JSON-RPC gate, bearer and JWT parsing, URL templates and argument mapping, identity
//! header building, config loading, the policy language, and proxy route paths. Each target
//! asserts no panic and only stable outcomes (an error code from a known set, a URL on the
//! configured host, header values that cannot split a line).
//!
//! Cases per target: `WARDEN_FUZZ_CASES` (default 256, what CI runs); `scripts/fuzz` runs them by
//! the hundred thousand. A failure proptest finds is saved under `proptest-regressions/` and
//! replayed first on every later run: it stays a regression test.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn cases() -> u32 {
    std::env::var("WARDEN_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), max_shrink_iters: 2048, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just(""), Just("."), Just(".."), Just("/"), Just("%2e%2e"), Just("a/../b"), Just("\r\nX: y"), Just("\u{0}")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every code the gate may refuse a message with, before it reaches a handler.
const GATE_CODES: &[&str] =
    &["parse_error", "invalid_request", "invalid_params", "method_not_found", "unknown_tool", "body_too_large", "header_mismatch"];

proptest! {
    #![proptest_config(config())]

    /// The gate: any bytes, and any JSON shaped like a request, get a message or a refusal
    /// with a stable code, and the refusal renders.
    #[test]
    fn the_gate_gives_every_body_a_stable_verdict(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        id in json_value(),
        method in prop_oneof![Just("tools/call".to_owned()), Just("tools/list".to_owned()), ".{0,16}"],
        params in json_value(),
        extra in json_value(),
    ) {
        let unserved = |m: &str, _: bool| (m.starts_with('x')).then_some(crate::error::GatewayError::MethodNotFound);
        let structured = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params, "x": extra}).to_string();
        for body in [&bytes[..], structured.as_bytes()] {
            if let Err(refused) = crate::mcp::message::check_message(body, &unserved) {
                let e = refused.1;
                prop_assert!(GATE_CODES.contains(&e.reason()), "unstable code {}", e.reason());
                let meta = crate::identity::metadata::ResourceMetadata::new("https://gw.example", "https://gw.example/mcp".into(), vec![], vec![], None);
                let _ = e.into_response(&meta, None);
            }
        }
    }

    /// Bearer and JWT parsing: any header value, and tokens shaped like JWTs with any header
    /// and claims, are refused with a stable reason (none verifies: nothing here is signed by
    /// a trusted key), without a panic.
    #[test]
    fn bearer_values_and_forged_jwts_are_refused_with_a_reason(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        header in json_value(),
        claims in json_value(),
        alg in prop_oneof![Just("RS256".to_owned()), Just("none".to_owned()), Just("HS256".to_owned()), Just("ES256".to_owned()), ".{0,6}"],
        trusted in any::<bool>(),
        signature in "[A-Za-z0-9_-]{0,40}",
    ) {
        use base64::Engine;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let mut header = header;
        if let Value::Object(h) = &mut header {
            h.insert("alg".into(), json!(alg));
        }
        let mut claims = claims;
        if let (Value::Object(c), true) = (&mut claims, trusted) {
            c.insert("iss".into(), json!(ISSUER));
        }
        let jwt = format!("Bearer {}.{}.{signature}", b64(&header), b64(&claims));
        let authenticator = authenticator();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        for value in [http::HeaderValue::from_bytes(&raw).ok(), http::HeaderValue::from_str(&jwt).ok()].into_iter().flatten() {
            let outcome = runtime.block_on(authenticator.authenticate_header(Some(&value)));
            prop_assert!(outcome.is_err(), "an unsigned token verified");
            let code = outcome.err().map(crate::identity::AuthError::code).unwrap_or_default();
            prop_assert!(!code.is_empty());
        }
        let _ = authenticator.principal_unverified(&jwt[7..]);
    }

    /// URL templates: any template parses or is refused; an expansion with any values stays on
    /// the template's host and under its path, one argument one segment.
    #[test]
    fn url_templates_keep_every_value_inside_its_segment(template in ".{0,40}", a in ".{0,20}", b in json_value()) {
        let _ = crate::tools::template::UrlTemplate::parse(&template);
        let fixed = crate::tools::template::UrlTemplate::parse("https://api.example/v1/{a}/items/{b}").map_err(TestCaseError::fail)?;
        let mut args = Map::new();
        args.insert("a".into(), json!(a));
        args.insert("b".into(), b);
        if let Ok(url) = fixed.expand(&args) {
            prop_assert_eq!(url.host_str(), Some("api.example"));
            let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
            prop_assert_eq!(segments.len(), 4, "{}", url);
            prop_assert_eq!((segments[0], segments[2]), ("v1", "items"));
            let decoded = percent_encoding::percent_decode_str(segments[1]).decode_utf8_lossy().into_owned();
            prop_assert_eq!(decoded, a);
        }
    }

    /// Argument mapping: any arguments encode to a request on the tool's host with valid
    /// header values, or are refused with a message.
    #[test]
    fn any_arguments_encode_onto_the_tools_host_or_are_refused(args in prop::collection::btree_map("[a-zA-Z_-]{1,8}", json_value(), 0..8)) {
        let tool = http_tool();
        let args: Map<String, Value> = args.into_iter().collect();
        match tool.encode(&args) {
            Ok(wire) => {
                prop_assert_eq!(wire.url.host_str(), Some("api.example"));
                prop_assert!(wire.url.path().starts_with("/v1/"));
                for (_, v) in &wire.headers {
                    prop_assert!(!v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
                }
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    /// Identity headers: any subject, roles, scopes and tenant become header values that cannot
    /// split a header line, and decode back to what the token said.
    #[test]
    fn identity_headers_never_split_a_line(subject in ".{1,40}", roles in prop::collection::vec(".{0,12}", 0..4), tenant in ".{0,20}", scope in "[!-~]{1,12}") {
        let principal = crate::identity::Principal {
            subject: crate::identity::Subject::new(subject.clone()).ok_or_else(|| TestCaseError::reject("empty"))?,
            issuer: "https://idp.example".into(),
            client_id: Some(tenant.clone()),
            scopes: [scope].into_iter().collect(),
            roles,
            tenant: Some(tenant),
            claims: Map::new(),
            tools: None,
            token: None,
        };
        let names = crate::upstream::IdentityHeaders::from_config(&crate::upstream::config::IdentityHeadersConfig::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer client-token"));
        let ctx = crate::upstream::CallContext { request_id: "r".into(), traceparent: "t".into(), ..Default::default() };
        crate::upstream::inject_identity(&mut headers, &names, &principal, &ctx);
        prop_assert!(headers.get(http::header::AUTHORIZATION).is_none(), "the client's token never passes");
        for (_, v) in &headers {
            prop_assert!(!v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        }
        let user = percent_encoding::percent_decode(headers[&names.user_id].as_bytes()).decode_utf8_lossy().into_owned();
        prop_assert_eq!(user, subject);
    }

    /// Config loading: any text, and YAML assembled from real keys with hostile values, is a
    /// config or an error naming a path, never a panic.
    #[test]
    fn any_config_text_loads_or_names_its_failing_path(
        text in ".{0,200}",
        pieces in prop::collection::vec(prop_oneof![
            Just("server:\n  listen: 127.0.0.1:0\n"), Just("identity:\n  issuers: []\n"),
            Just("identity:\n  issuers:\n    - issuer: https://i.example\n"), Just("tools:\n  - {name: t, description: d, http: {url: 'https://a.example/{x}'}}\n"),
            Just("routes:\n  - {name: r, upstream: 'http://a/../b'}\n"), Just("api_keys: {enabled: true}\n"), Just("limits: {rules: [{name: x, rate: 0/second}]}\n"),
            Just("policy: {files: ['/nonexistent']}\n"), Just("  - ${UNSET}\n"), Just("audit: {sinks: [{type: webhook, url: 'http://10.0.0.1'}]}\n"),
            Just("x: &a [*a]\n"), Just("- !!binary AAAA\n"), Just("\t\n"), Just("{\n"),
        ], 0..8),
    ) {
        let env = std::collections::HashMap::<String, String>::new();
        for candidate in [text, pieces.concat()] {
            if let Err(e) = crate::config::parse(&candidate, &env)
                .and_then(|c| crate::gateway::Gateway::build(&c).map(|_| ()))
            {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// The policy language: conditions assembled from CEL's pieces compile or are refused, and
    /// any that compiles evaluates over any arguments to a boolean or an error.
    #[test]
    fn conditions_compile_and_evaluate_or_fail_closed(
        pieces in prop::collection::vec(prop_oneof![
            Just("args"), Just("."), Just("amount"), Just("principal.roles"), Just("principal.claims"), Just("request.time"),
            Just(" in "), Just(" && "), Just(" || "), Just("!"), Just("=="), Just("<"), Just("("), Just(")"), Just("["), Just("]"),
            Just("'x'"), Just("1"), Just("-9223372036854775808"), Just("1.5"), Just("size("), Just("has("), Just(".exists(r, r == 'a')"),
            Just("matches('(a+)+$')"), Just("timestamp('x')"), Just("duration('1h')"), Just("tool.name"), Just("null"), Just("true"),
        ], 1..14),
        args in json_value(),
        file in ".{0,120}",
    ) {
        let source = pieces.concat();
        let _ = crate::policy::compile("fuzz", &file);
        if let Ok(condition) = crate::policy::Condition::compile(&source) {
            let principal = crate::identity::Principal {
                subject: crate::identity::Subject::gateway(),
                issuer: "i".into(),
                client_id: None,
                scopes: Default::default(),
                roles: vec!["a".into()],
                tenant: None,
                claims: args.as_object().cloned().unwrap_or_default(),
                tools: None,
                token: None,
            };
            let metadata = Map::new();
            let facts = crate::policy::ToolFacts { name: "t", tags: &[], metadata: &metadata, scopes: &[], server: None };
            let request = crate::policy::RequestFacts::default();
            let roots = crate::policy::Roots { principal: true, tool: true, args: true, request: true };
            let activation = crate::policy::cel::activation(roots, &principal, &facts, Some(&args), &request);
            let _ = condition.eval(&activation);
        }
    }

    /// Redirect URI patterns (`authorization_server.registration.redirect_uris`): any pattern
    /// against any URI answers without a panic, a pattern without `*` matches itself only, and
    /// `prefix*` matches what starts with the prefix.
    #[test]
    fn redirect_patterns_match_what_they_say(pattern in "[a-z:/.*é]{0,16}", text in "[a-z:/.é]{0,24}") {
        let matched = crate::authz::registration::matches(&pattern, &text);
        if !pattern.contains('*') {
            prop_assert_eq!(matched, pattern == text);
        }
        prop_assert!(crate::authz::registration::matches("*", &text));
        let prefix: String = pattern.chars().filter(|c| *c != '*').collect();
        prop_assert_eq!(crate::authz::registration::matches(&format!("{prefix}*"), &text), text.starts_with(&prefix));
    }

    /// A passed-through result's `resultType`, wherever it stands and however the object is
    /// spaced, leaves the rest of the object as it was for an older revision's caller.
    #[test]
    fn result_type_comes_out_of_any_result(
        members in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..6),
        position in 0usize..7,
        pretty in any::<bool>(),
    ) {
        let mut object: Vec<(String, Value)> = members.into_iter().collect();
        let at = position.min(object.len());
        object.insert(at, ("resultType".to_owned(), json!("complete")));
        let map: Map<String, Value> = object.iter().cloned().collect();
        let text = if pretty { serde_json::to_string_pretty(&map) } else { serde_json::to_string(&map) }.unwrap_or_default();
        // `content` absent or a list of typed items passes the check; others are refused as before.
        let Ok(raw) = crate::tools::RawResult::check(serde_json::value::RawValue::from_string(text.clone()).unwrap_or_else(|e| panic!("{e}"))) else {
            return Ok(());
        };
        let out: Value = serde_json::from_str(&raw.to_json(true)).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut expected = map;
        expected.remove("resultType");
        prop_assert_eq!(out, Value::Object(expected));
    }
}

const ISSUER: &str = "https://issuer.fuzz.example";

/// An authenticator trusting one issuer whose keys cannot be fetched (nothing listens there).
fn authenticator() -> Arc<crate::identity::Authenticator> {
    static ONE: std::sync::OnceLock<Arc<crate::identity::Authenticator>> = std::sync::OnceLock::new();
    Arc::clone(ONE.get_or_init(|| {
        crate::gateway::install_crypto();
        let config: crate::identity::config::IdentityConfig = serde_norway::from_str(&format!(
            "issuers:\n  - {{issuer: '{ISSUER}', jwks_uri: 'http://127.0.0.1:9/jwks', jwks_min_refresh: 1h}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let http = crate::upstream::control_plane_client().unwrap_or_else(|e| panic!("{e}"));
        Arc::new(
            crate::identity::Authenticator::new(
                &config,
                "https://gw.example/mcp".into(),
                http,
                crate::clock::system(),
                Arc::new(crate::telemetry::Metrics::default()),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }))
}

fn http_tool() -> crate::tools::http::HttpTool {
    let config: crate::tools::config::HttpToolConfig = serde_norway::from_str(
        "{method: POST, url: 'https://api.example/v1/{id}', query: {q: query, tenant: tenant}, headers: {X-Trace: trace}, rest: json}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names = crate::upstream::IdentityHeaders::from_config(&crate::upstream::config::IdentityHeadersConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    crate::tools::http::HttpTool::compile(&config, &names, std::time::Duration::from_secs(5), None)
        .unwrap_or_else(|e| panic!("{}: {}", e.path, e.message))
}
