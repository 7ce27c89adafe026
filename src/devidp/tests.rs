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

#[test]
fn a_kept_key_keeps_its_kid_and_a_rotated_server_publishes_both() {
    crate::install_crypto();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (old_path, new_path) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    let old = SigningKey::load_or_create(&old_path).unwrap_or_else(|e| panic!("{e}"));
    let again = SigningKey::load_or_create(&old_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.kid, again.kid, "the same file is the same kid");
    assert!(old.kid.starts_with("dev-") && old.kid.len() == 20, "{}", old.kid);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&old_path).unwrap_or_else(|e| panic!("{e}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let new = SigningKey::load_or_create(&new_path).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(old.kid, new.kid);
    let users = UsersFile::parse(DEMO_USERS).unwrap_or_else(|e| panic!("{e}")).users;
    let cfg = DevIdpConfig {
        issuer: "http://i".into(),
        users,
        auto_approve: None,
        access_token_ttl: Duration::from_secs(60),
        client_metadata_ca: None,
    };
    let new_kid = new.kid.clone();
    let idp = DevIdp::with_keys(cfg, new, &[again]).unwrap_or_else(|e| panic!("{e}"));
    let kids: Vec<_> = idp.jwks().keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
    assert_eq!(kids, vec![new_kid.clone(), old.kid.clone()], "the signing key first, then the earlier one");
    let token = idp.mint("alice", "c", &[], "http://r").unwrap_or_else(|| panic!("minted"));
    let header = jsonwebtoken::decode_header(&token).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header.kid, Some(new_kid), "new tokens name the new key");
}
