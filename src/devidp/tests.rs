use super::*;

#[test]
fn demo_users_parse() {
    let users = UsersFile::parse(DEMO_USERS).unwrap_or_else(|e| panic!("{e}"));
    assert!(users.users.iter().any(|u| u.id == "alice"));
}

#[test]
fn users_files_are_strict() {
    assert!(UsersFile::parse("users: []").is_err());
    assert!(UsersFile::parse("users:\n  - id: a\n    name: A\n    password: x\n").is_err());
}

#[test]
fn signed_tokens_verify_with_the_published_key() {
    crate::install_crypto();
    let key = SigningKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let token = key.sign(&serde_json::json!({"sub": "a", "exp": 4_000_000_000u64})).unwrap_or_else(|e| panic!("{e}"));
    let decoding = jsonwebtoken::DecodingKey::from_jwk(key.jwk()).unwrap_or_else(|e| panic!("{e}"));
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.claims["sub"], "a");
    let header = jsonwebtoken::decode_header(&token).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
}

#[test]
fn auto_approve_must_name_a_known_user() {
    crate::install_crypto();
    let users = UsersFile::parse(DEMO_USERS).unwrap_or_else(|e| panic!("{e}")).users;
    let cfg = DevIdpConfig {
        issuer: "http://i".into(),
        users,
        auto_approve: Some("mallory".into()),
        access_token_ttl: Duration::from_secs(60),
        client_metadata_ca: None,
    };
    assert!(DevIdp::new(cfg).is_err());
}
