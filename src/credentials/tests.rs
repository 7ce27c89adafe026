use super::*;
use crate::upstream::config::IdentityHeadersConfig;

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
    Credentials::build(&parse(yaml), Path::new("."), &identity(), None, &crate::clock::system())
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
        ("{name: k, secret: s}", "credentials[0].placement"),
        (
            "{name: k, secret: s, token_exchange: {token_endpoint: 'https://idp/t', client_id: c, client_secret: x}}",
            "credentials[0].token_exchange",
        ),
        (
            "{name: k, placement: header, header: X-K, token_exchange: {token_endpoint: 'https://idp/t', client_id: c, client_secret: x}}",
            "credentials[0].placement",
        ),
        (
            "{name: k, token_exchange: {token_endpoint: 'ftp://idp/t', client_id: c, client_secret: x}}",
            "credentials[0].token_exchange.token_endpoint",
        ),
        (
            "{name: k, token_exchange: {token_endpoint: 'https://idp/t', client_id: '', client_secret: x}}",
            "credentials[0].token_exchange.client_id",
        ),
        (
            "{name: k, token_exchange: {token_endpoint: 'https://idp/t', client_id: c, client_secret: ''}}",
            "credentials[0].token_exchange.client_secret",
        ),
        (
            "{name: k, token_exchange: {token_endpoint: 'https://idp/t', style: entra_obo, client_id: c, client_secret: x}}",
            "credentials[0].token_exchange.scopes",
        ),
        (
            "{name: k, token_exchange: {token_endpoint: 'https://idp/t', style: entra_obo, client_id: c, client_secret: x, scopes: [a], resource: 'https://api'}}",
            "credentials[0].token_exchange.resource",
        ),
        (
            "{name: k, token_exchange: {token_endpoint: 'https://idp/t', client_id: c, client_secret: x, audience: 'two words'}}",
            "credentials[0].token_exchange.audience",
        ),
        (
            "{name: k, token_exchange: {token_endpoint: 'https://idp/t', client_id: c, client_secret: x, scopes: ['a b']}}",
            "credentials[0].token_exchange.scopes",
        ),
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
    let creds = Credentials::build(
        &parse("credentials:\n  - {name: k, secret_file: token, placement: bearer}\n"),
        dir.path(),
        &identity(),
        None,
        &crate::clock::system(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut req =
        reqwest::Request::new(reqwest::Method::GET, url::Url::parse("https://api.example.com/x").unwrap_or_else(|e| panic!("{e}")));
    creds.get("k").unwrap_or_else(|| unreachable!()).apply(&mut req, &Secret::new("s3cr3t"));
    assert_eq!(req.headers()["authorization"], "Bearer s3cr3t");
}

fn applied(placement_yaml: &str, url: &str) -> reqwest::Request {
    let creds = build(&format!("credentials:\n  - {{name: k, secret: 's3cr3t', {placement_yaml}}}\n")).unwrap_or_else(|e| panic!("{e}"));
    let mut req = reqwest::Request::new(reqwest::Method::GET, url::Url::parse(url).unwrap_or_else(|e| panic!("{e}")));
    req.headers_mut().insert("authorization", HeaderValue::from_static("Bearer client-token"));
    let credential = creds.get("k").unwrap_or_else(|| unreachable!());
    credential.apply(&mut req, &Secret::new("s3cr3t"));
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

fn test_vault() -> Arc<Vault> {
    let keys = crate::credentials::envelope::KeyRing::parse(&Secret::new("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="))
        .unwrap_or_else(|e| panic!("{e}"));
    let audit = crate::audit::AuditSink::open("off").unwrap_or_else(|e| panic!("{e}"));
    Arc::new(Vault::new("sqlite::memory:".into(), Arc::new(keys), "https://gw.example".into(), Arc::new(audit)))
}

fn build_oauth(oauth: &str) -> Result<Credentials, ConfigError> {
    let yaml = format!("credentials:\n  - name: c\n    placement: bearer\n    oauth: {{client_id: id, client_secret: s, {oauth}}}\n");
    Credentials::build(&parse(&yaml), Path::new("."), &identity(), Some(&test_vault()), &crate::clock::system())
}

#[test]
fn oauth_configs_that_cannot_work_are_refused_with_their_path() {
    for (oauth, path) in [
        ("grant: authorization_code, provider: github, pkce: plain", "credentials[0].oauth.pkce"),
        ("grant: client_credentials, token_url: 'https://t.example/token', mode: per_user", "credentials[0].oauth.mode"),
        ("grant: client_credentials, token_url: 'https://t.example/token', pkce: S256", "credentials[0].oauth.pkce"),
        (
            "grant: client_credentials, token_url: 'https://t.example/token', authorize_url: 'https://t.example/a'",
            "credentials[0].oauth.authorize_url",
        ),
        ("grant: authorization_code, token_url: 'https://t.example/token'", "credentials[0].oauth.authorize_url"),
        ("grant: authorization_code", "credentials[0].oauth.token_url"),
        ("grant: authorization_code, provider: github, tenant: contoso", "credentials[0].oauth.tenant"),
        ("grant: authorization_code, provider: microsoft, tenant: 'a/../b'", "credentials[0].oauth.tenant"),
        ("grant: authorization_code, provider: github, issuer: 'https://i.example'", "credentials[0].oauth.issuer"),
        ("grant: authorization_code, issuer: 'ftp://i.example'", "credentials[0].oauth.issuer"),
        ("grant: authorization_code, provider: google, authorize_params: {state: x}", "credentials[0].oauth.authorize_params.state"),
    ] {
        match build_oauth(oauth) {
            Ok(_) => panic!("accepted: {oauth}"),
            Err(e) => assert_eq!(e.path, path, "{oauth}: {e}"),
        }
    }
    let yaml = "credentials:\n  - name: c\n    placement: bearer\n    oauth: {grant: authorization_code, provider: github, client_id: '', client_secret: s}\n";
    let e = Credentials::build(&parse(yaml), Path::new("."), &identity(), Some(&test_vault()), &crate::clock::system())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.path, "credentials[0].oauth.client_id");
    // Authorization-code connections live in the vault.
    let yaml = "credentials:\n  - name: c\n    placement: bearer\n    oauth: {grant: authorization_code, provider: github, client_id: i, client_secret: s}\n";
    let e = Credentials::build(&parse(yaml), Path::new("."), &identity(), None, &crate::clock::system()).map(|_| ()).unwrap_err();
    assert_eq!(e.path, "credentials[0].oauth.grant");
    // An oauth token is a bearer token.
    let yaml = "credentials:\n  - name: c\n    placement: header\n    header: X-Key\n    oauth: {grant: client_credentials, token_url: 'https://t.example/t', client_id: i, client_secret: s}\n";
    let e = Credentials::build(&parse(yaml), Path::new("."), &identity(), None, &crate::clock::system()).map(|_| ()).unwrap_err();
    assert_eq!(e.path, "credentials[0].placement");
}

#[tokio::test]
async fn presets_fill_endpoints_scopes_and_parameters_and_config_overrides_them() {
    let upstream = crate::upstream::Upstream::new(&Default::default(), &IdentityHeadersConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let url_for = |oauth: &str| {
        let creds = build_oauth(oauth).unwrap_or_else(|e| panic!("{oauth}: {e}"));
        let connection = Arc::clone(creds.connection("c").unwrap_or_else(|| panic!("no connection")));
        let upstream = upstream.clone();
        async move { connection.authorization_url(&upstream, "st", "ch").await.unwrap_or_else(|e| panic!("{e}")) }
    };
    let query = |u: &url::Url| u.query_pairs().into_owned().collect::<std::collections::HashMap<String, String>>();

    let github = url_for("grant: authorization_code, provider: github").await;
    assert_eq!(github.as_str().split('?').next(), Some("https://github.com/login/oauth/authorize"));
    let q = query(&github);
    assert_eq!(q["scope"], "read:user");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], "https://gw.example/oauth/callback");
    assert_eq!((q["state"].as_str(), q["code_challenge"].as_str(), q["response_type"].as_str()), ("st", "ch", "code"));

    let google =
        query(&url_for("grant: authorization_code, provider: google, scopes: ['https://www.googleapis.com/auth/calendar.readonly']").await);
    assert_eq!(google["access_type"], "offline", "Google issues refresh tokens only when asked");
    assert_eq!(google["scope"], "https://www.googleapis.com/auth/calendar.readonly", "config overrides the preset's scopes");
    let google = query(&url_for("grant: authorization_code, provider: google, authorize_params: {prompt: select_account}").await);
    assert_eq!(google["prompt"], "select_account", "config overrides a preset parameter");

    let slack = query(&url_for("grant: authorization_code, provider: slack, scopes: [channels:read, chat:write]").await);
    assert_eq!(slack["scope"], "channels:read,chat:write", "Slack separates scopes with commas");
    let ms = url_for("grant: authorization_code, provider: microsoft, tenant: contoso.onmicrosoft.com").await;
    assert!(ms.as_str().starts_with("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize?"));
    assert!(query(&ms)["scope"].contains("offline_access"));
    for provider in ["notion", "linear", "stripe"] {
        let u = url_for(&format!("grant: authorization_code, provider: {provider}")).await;
        assert_eq!(u.scheme(), "https", "{provider}");
    }
    let custom = url_for("grant: authorization_code, provider: github, authorize_url: 'https://ghe.example/login/oauth/authorize'").await;
    assert_eq!(custom.host_str(), Some("ghe.example"), "config overrides the preset's URL");
}

mod envelope {
    use proptest::prelude::*;

    use crate::credentials::Secret;
    use crate::credentials::envelope::{EnvelopeError, KeyRing};

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(&Secret::new(spec)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn key() -> String {
        KeyRing::generate_key().expose().to_owned()
    }

    #[test]
    fn round_trip_binds_to_associated_data() {
        let r = ring(&format!("k1:{}", key()));
        let env = r.encrypt(b"gho_secret_token", b"connection:1:access_token").unwrap_or_else(|e| panic!("{e}"));
        assert!(!env.contains("gho_secret_token"), "plaintext in the envelope");
        let parsed: serde_json::Value = serde_json::from_str(&env).unwrap_or_default();
        assert_eq!(parsed["kid"], "k1");
        assert_eq!(r.decrypt(&env, b"connection:1:access_token"), Ok(b"gho_secret_token".to_vec()));
        // Copied onto another record, it does not decrypt.
        assert_eq!(r.decrypt(&env, b"connection:2:access_token"), Err(EnvelopeError::Undecryptable));
        // Two encryptions of the same value differ (fresh nonces).
        assert_ne!(env, r.encrypt(b"gho_secret_token", b"connection:1:access_token").unwrap_or_default());
    }

    #[test]
    fn altered_envelopes_and_wrong_keys_fail() {
        use base64::Engine;
        let r = ring(&format!("k1:{}", key()));
        let env = r.encrypt(b"value", b"aad").unwrap_or_default();
        let mut parsed: serde_json::Value = serde_json::from_str(&env).unwrap_or_default();
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(parsed["d"].as_str().unwrap_or_default()).unwrap_or_default();
        for i in [0, 12, bytes.len() - 1] {
            bytes[i] ^= 1;
            parsed["d"] = base64::engine::general_purpose::STANDARD.encode(&bytes).into();
            assert_eq!(r.decrypt(&parsed.to_string(), b"aad"), Err(EnvelopeError::Undecryptable), "byte {i}");
            bytes[i] ^= 1;
        }
        let other = ring(&format!("k1:{}", key()));
        assert_eq!(other.decrypt(&env, b"aad"), Err(EnvelopeError::Undecryptable), "same kid, other key");
        let unknown = ring(&format!("k9:{}", key()));
        assert_eq!(unknown.decrypt(&env, b"aad"), Err(EnvelopeError::UnknownKey("k1".into())));
        for bad in ["", "{}", "{\"kid\":\"k1\",\"d\":\"!!\"}", "{\"kid\":\"k1\",\"d\":\"AAAA\"}"] {
            assert!(matches!(r.decrypt(bad, b"aad"), Err(EnvelopeError::Malformed | EnvelopeError::UnknownKey(_))), "{bad}");
        }
    }

    #[test]
    fn rotation_re_encrypts_and_old_keys_decrypt_until_removed() {
        let (k1, k2) = (key(), key());
        let old = ring(&format!("k1:{k1}"));
        let env = old.encrypt(b"refresh-token", b"c:7").unwrap_or_default();
        let rotated = ring(&format!("k2:{k2},k1:{k1}"));
        assert_eq!(rotated.active_kid(), "k2");
        assert_eq!(rotated.needs_rotation(&env), Ok(true));
        assert_eq!(rotated.decrypt(&env, b"c:7"), Ok(b"refresh-token".to_vec()), "old keys still decrypt");
        let renewed = rotated.reencrypt(&env, b"c:7").unwrap_or_default();
        assert_eq!(rotated.needs_rotation(&renewed), Ok(false));
        assert_eq!(rotated.reencrypt(&renewed, b"c:7").as_deref(), Ok(renewed.as_str()), "nothing to do twice");
        let retired = ring(&format!("k2:{k2}"));
        assert_eq!(retired.decrypt(&renewed, b"c:7"), Ok(b"refresh-token".to_vec()));
        assert_eq!(retired.decrypt(&env, b"c:7"), Err(EnvelopeError::UnknownKey("k1".into())));
    }

    #[test]
    fn bad_key_rings_are_refused_without_echoing_material() {
        let k = key();
        for spec in ["", "k1", "k1:not-base64!", "k1:AAAA", &format!("k1:{k},k1:{k}"), &format!("bad id:{k}")] {
            let e = KeyRing::parse(&Secret::new(spec)).map(|_| ()).unwrap_err();
            assert!(matches!(e, EnvelopeError::KeyRing(_)), "{spec}: {e}");
            assert!(!e.to_string().contains(&k), "key material in an error");
        }
        assert!(!format!("{:?}", ring(&format!("k1:{k}"))).contains(&k), "key material in Debug");
    }

    proptest! {
        #[test]
        fn any_value_round_trips(value in prop::collection::vec(any::<u8>(), 0..512), aad in prop::collection::vec(any::<u8>(), 0..64)) {
            let r = ring("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
            let env = r.encrypt(&value, &aad).unwrap_or_default();
            prop_assert_eq!(r.decrypt(&env, &aad), Ok(value));
        }
    }
}

#[test]
fn a_token_exchange_is_a_refreshable_bearer_credential_whose_debug_shows_no_secret() {
    let yaml = "credentials:\n  - {name: graph, token_exchange: {token_endpoint: 'https://login.example/t', style: entra_obo, client_id: warden, client_secret: hunter2, audience: 'https://graph.example', scopes: [User.Read, 'api://other/x']}}\n";
    let creds = build(yaml).unwrap_or_else(|e| panic!("{e}"));
    let graph = creds.get("graph").unwrap_or_else(|| panic!("no credential"));
    assert!(graph.refreshable() && graph.exchange().is_some());
    assert_eq!(graph.header(), Some(&http::header::AUTHORIZATION));
    assert_eq!(creds.exchanges().count(), 1);
    assert!(!format!("{creds:?}").contains("hunter2"));
}

#[test]
fn an_idps_refusal_keeps_its_code_and_words_and_only_the_caller_is_blamed_for_theirs() {
    use exchange::ExchangeError;
    let refusal = |error: &str| {
        ExchangeError::Refused(oauth::OAuthRefusal {
            error: error.into(),
            description: Some("AADSTS65001: not consented".into()),
            suberror: Some("consent_required".into()),
        })
    };
    let consent = refusal("invalid_grant");
    assert_eq!(
        consent.to_string(),
        "the identity provider refused to exchange the caller's token: invalid_grant (consent_required): AADSTS65001: not consented"
    );
    assert_eq!(consent.audit_explanation().as_deref(), Some("invalid_grant (consent_required)"));
    assert!(consent.callers());
    assert!(!refusal("invalid_client").callers(), "Warden's own client refused: the operator's to fix");
    assert_eq!(CredentialError::from(consent).code(), "token_exchange_refused");
    assert!(ExchangeError::NoSubjectToken.callers());
}

#[test]
fn a_token_endpoints_error_is_kept_bounded_and_clean_or_not_at_all() {
    let long = "x".repeat(1000);
    let body = serde_json::json!({"error": "invalid_grant", "error_description": format!("line one\nline\u{7} two {long}"), "suberror": "consent_required", "error_codes": [65001]});
    let r = oauth::refusal(body.to_string().as_bytes()).unwrap_or_else(|| panic!("no refusal"));
    assert_eq!((r.error.as_str(), r.suberror.as_deref()), ("invalid_grant", Some("consent_required")));
    let d = r.description.unwrap_or_default();
    assert!(d.starts_with("line oneline two") && d.chars().count() <= 300, "{d}");
    for bad in
        [r#"{"error": "has space"}"#, r#"{"error": ""}"#, r#"{"error": "quote\""}"#, "not json", r#"{"error_description": "no code"}"#]
    {
        assert_eq!(oauth::refusal(bad.as_bytes()), None, "{bad}");
    }
}
