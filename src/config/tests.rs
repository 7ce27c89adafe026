use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

const MINIMAL: &str = "server: {}\nidentity:\n  issuers:\n    - issuer: https://idp.example.com\n";

#[test]
fn defaults_are_documented_values() {
    let c = parse(MINIMAL, &env(&[])).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.resource(), "http://127.0.0.1:8080/mcp");
    assert_eq!(c.server.max_body_bytes, 1024 * 1024);
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(30));
    assert_eq!(c.server.max_connections_per_ip, 256);
    assert_eq!(c.identity.clock_skew, Duration::from_secs(60));
    let iss = &c.identity.issuers[0];
    assert_eq!(iss.algorithms, ["RS256"]);
    assert_eq!(iss.roles_claim, None);
    assert_eq!(iss.preset, crate::identity::Preset::Generic);
    assert_eq!(iss.jwks_ttl, Duration::from_secs(300));
    assert_eq!(c.identity_headers.user_id, "X-User-Id");
    assert!(!c.upstream.dangerous_allow_private_upstreams);
    assert_eq!(c.audit.output, None);
    assert!(matches!(c.audit.effective_sinks().as_slice(), [crate::audit::SinkConfig::Stdout { .. }]), "stdout by default");
}

#[test]
fn public_url_sets_the_resource_without_trailing_slash() {
    let text = MINIMAL.replace("server: {}", "server:\n  public_url: https://gw.example.com/base/");
    assert_eq!(parse(&text, &env(&[])).unwrap().server.resource(), "https://gw.example.com/base/mcp");
}

#[test]
fn interpolation_replaces_variables_in_strings_only() {
    let text = MINIMAL.replace("https://idp.example.com", "https://${HOST}/t/${TENANT}");
    let c = parse(&text, &env(&[("HOST", "login.example.com"), ("TENANT", "t1")])).unwrap();
    assert_eq!(c.identity.issuers[0].issuer, "https://login.example.com/t/t1");
}

#[test]
fn escaped_dollar_brace_is_literal() {
    assert_eq!(load_substitute("a$${B}c", &[]), Ok("a${B}c".to_owned()));
    assert_eq!(load_substitute("cost $5", &[]), Ok("cost $5".to_owned()));
}

/// Interpolates `s` as an issuer's `roles_claim`, a free-form string.
fn load_substitute(s: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
    let text = format!("{MINIMAL}      roles_claim: \"{s}\"\n");
    parse(&text, &env(pairs)).map(|c| c.identity.issuers[0].roles_claim.clone().unwrap_or_default()).map_err(|e| e.to_string())
}

#[test]
fn a_missing_variable_names_path_and_variable() {
    let text = MINIMAL.replace("https://idp.example.com", "${NOPE}");
    let e = parse(&text, &env(&[])).unwrap_err();
    assert_eq!(e.path, "identity.issuers[0].issuer");
    assert!(e.message.contains("NOPE"));
}

#[test]
fn variable_values_are_not_parsed_as_yaml() {
    // A value with YAML syntax stays one string: interpolation happens after parsing.
    let value = "roles\n      algorithms: [HS256]";
    assert_eq!(load_substitute("${V}", &[("V", value)]), Ok(value.to_owned()));
    let c = parse(&format!("{MINIMAL}      roles_claim: ${{V}}\n"), &env(&[("V", value)])).unwrap();
    assert_eq!(c.identity.issuers[0].algorithms, ["RS256"]);
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let e = parse(&format!("{MINIMAL}surprise: 1\n"), &env(&[])).unwrap_err();
    assert_eq!(e.path, "surprise");
    let e = parse(&MINIMAL.replace("server: {}", "server:\n  lisen: 1.2.3.4:1"), &env(&[])).unwrap_err();
    assert_eq!(e.path, "server.lisen");
}

#[test]
fn cross_field_rules() {
    for (from, to, path) in [
        (
            "    - issuer: https://idp.example.com\n",
            "    - issuer: https://idp.example.com\n      algorithms: [none]\n",
            "identity.issuers[0].algorithms[0]",
        ),
        (
            "    - issuer: https://idp.example.com\n",
            "    - issuer: https://idp.example.com\n    - issuer: https://idp.example.com\n",
            "identity.issuers[1].issuer",
        ),
        ("    - issuer: https://idp.example.com\n", "    - issuer: not-a-url\n", "identity.issuers[0].issuer"),
        ("server: {}", "server:\n  public_url: ftp://x", "server.public_url"),
        ("server: {}", "server:\n  max_body_bytes: 0", "server.max_body_bytes"),
        ("server: {}", "server:\n  header_read_timeout: 0s", "server.header_read_timeout"),
        ("server: {}", "server:\n  body_read_timeout: 1h", "server.body_read_timeout"),
        ("server: {}", "server:\n  idle_timeout: 0s", "server.idle_timeout"),
        ("server: {}", "server: {}\nidentity_headers:\n  user_id: Authorization", "identity_headers.user_id"),
        ("server: {}", "server: {}\nidentity_headers:\n  roles: X-User-Id", "identity_headers.roles"),
    ] {
        let e = parse(&MINIMAL.replace(from, to), &env(&[])).unwrap_err();
        assert_eq!(e.path, path, "{e}");
    }
    let e = parse("server: {}\nidentity:\n  issuers: []\n", &env(&[])).unwrap_err();
    assert_eq!(e.path, "identity.issuers");
    let e = parse(&format!("{MINIMAL}  clock_skew: 10m\n"), &env(&[])).unwrap_err();
    assert_eq!(e.path, "identity.clock_skew");
}
