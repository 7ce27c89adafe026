use super::*;
use crate::config::IdentityHeadersConfig;

fn identity() -> IdentityHeaders {
    IdentityHeaders::from_config(&IdentityHeadersConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn parse(yaml: &str) -> Vec<CredentialConfig> {
    #[derive(Deserialize)]
    struct Doc {
        credentials: Vec<CredentialConfig>,
    }
    let doc: Doc = serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    doc.credentials
}

fn build(yaml: &str) -> Result<Credentials, ConfigError> {
    Credentials::build(&parse(yaml), Path::new("."), &identity())
}

#[test]
fn secrets_never_print() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
    assert_eq!(format!("{s}"), "[REDACTED]");
    let creds = build("credentials:\n  - {name: k, secret: hunter2, placement: bearer}\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{creds:?}").contains("hunter2"));
    assert!(!format!("{:?}", parse("credentials:\n  - {name: k, secret: hunter2, placement: bearer}\n")).contains("hunter2"));
}

#[test]
fn impossible_combinations_are_refused_with_their_path() {
    for (yaml, path) in [
        ("{name: k, secret: s, placement: header}", "credentials[0].header"),
        ("{name: k, secret: s, placement: query}", "credentials[0].query_param"),
        ("{name: k, secret: s, placement: basic}", "credentials[0].username"),
        ("{name: k, secret: s, placement: bearer, prefix: 'x '}", "credentials[0].prefix"),
        ("{name: k, secret: s, placement: query, query_param: q, header: X-K}", "credentials[0].header"),
        ("{name: k, secret: s, placement: header, header: Authorization}", "credentials[0].header"),
        ("{name: k, secret: s, placement: header, header: X-User-Id}", "credentials[0].header"),
        ("{name: k, secret: s, placement: header, header: Host}", "credentials[0].header"),
        ("{name: k, secret: s, placement: basic, username: 'a:b'}", "credentials[0].username"),
        ("{name: k, placement: bearer}", "credentials[0].secret"),
        ("{name: k, secret: s, secret_file: f, placement: bearer}", "credentials[0].secret"),
        ("{name: k, secret: '', placement: bearer}", "credentials[0].secret"),
        ("{name: k, secret: \"a\\nb\", placement: bearer}", "credentials[0].secret"),
        ("{name: 'bad name', secret: s, placement: bearer}", "credentials[0].name"),
        ("{name: k, secret_file: /nonexistent/warden-secret, placement: bearer}", "credentials[0].secret_file"),
    ] {
        match build(&format!("credentials:\n  - {yaml}\n")) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => {
                assert_eq!(e.path, path, "{yaml}: {e}");
                assert!(!e.message.contains("s\"") && !e.message.contains("hunter"), "{e}");
            }
        }
    }
    let dup = build("credentials:\n  - {name: k, secret: a, placement: bearer}\n  - {name: k, secret: b, placement: bearer}\n")
        .map(|_| ())
        .unwrap_err();
    assert_eq!(dup.path, "credentials[1].name");
}

#[test]
fn secret_files_are_read_without_the_trailing_newline() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("token"), "s3cr3t\n").unwrap_or_else(|e| panic!("{e}"));
    let creds = Credentials::build(&parse("credentials:\n  - {name: k, secret_file: token, placement: bearer}\n"), dir.path(), &identity())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut req =
        reqwest::Request::new(reqwest::Method::GET, url::Url::parse("https://api.example.com/x").unwrap_or_else(|e| panic!("{e}")));
    creds.get("k").unwrap_or_else(|| unreachable!()).apply(&mut req);
    assert_eq!(req.headers()["authorization"], "Bearer s3cr3t");
}

fn applied(placement_yaml: &str, url: &str) -> reqwest::Request {
    let creds = build(&format!("credentials:\n  - {{name: k, secret: 's3cr3t', {placement_yaml}}}\n")).unwrap_or_else(|e| panic!("{e}"));
    let mut req = reqwest::Request::new(reqwest::Method::GET, url::Url::parse(url).unwrap_or_else(|e| panic!("{e}")));
    req.headers_mut().insert("authorization", HeaderValue::from_static("Bearer client-token"));
    creds.get("k").unwrap_or_else(|| unreachable!()).apply(&mut req);
    req
}

#[test]
fn each_placement_puts_the_secret_in_its_place() {
    let r = applied("placement: bearer", "https://a.example/x");
    assert_eq!(r.headers()["authorization"], "Bearer s3cr3t");
    assert!(r.headers()["authorization"].is_sensitive());
    let r = applied("placement: header, header: X-Api-Key, prefix: 'Token '", "https://a.example/x");
    assert_eq!(r.headers()["x-api-key"], "Token s3cr3t");
    assert!(r.headers()["x-api-key"].is_sensitive());
    let r = applied("placement: basic, username: svc", "https://a.example/x");
    assert_eq!(r.headers()["authorization"], format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("svc:s3cr3t")));
    // A query credential replaces any same-named parameter the arguments produced.
    let r = applied("placement: query, query_param: api_key", "https://a.example/x?q=1&api_key=injected");
    let pairs: Vec<(String, String)> = r.url().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert_eq!(pairs, [("q".to_owned(), "1".to_owned()), ("api_key".to_owned(), "s3cr3t".to_owned())]);
}
