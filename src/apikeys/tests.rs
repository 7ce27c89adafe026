use std::sync::Arc;

use super::*;

fn keys(config: &str) -> Result<Option<Arc<ApiKeys>>, ConfigError> {
    keys_in(config, &std::env::temp_dir().join("unused.db"))
}

fn keys_in(config: &str, db: &std::path::Path) -> Result<Option<Arc<ApiKeys>>, ConfigError> {
    let config: ApiKeysConfig = serde_norway::from_str(config).unwrap_or_else(|e| panic!("{e}"));
    let ring = crate::store::envelope::KeyRing::parse(&crate::secret::Secret::new(format!(
        "k1:{}",
        crate::store::envelope::KeyRing::generate_key().expose()
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let audit = Arc::new(crate::audit::AuditSink::open("off").unwrap_or_else(|e| panic!("{e}")));
    let url = format!("sqlite://{}", db.display());
    let vault = Arc::new(Vault::new(url, Arc::new(ring), "https://gw.example".into(), audit));
    ApiKeys::build(&config, Some(&vault), &crate::clock::system())
}

const ON: &str = "enabled: true\nhash_key: 0123456789abcdef0123456789abcdef\n";

#[test]
fn keys_are_off_by_default_and_need_a_long_hash_key_and_a_short_cache() {
    assert!(keys("{}").unwrap().is_none());
    assert_eq!(keys("enabled: true").unwrap_err().path, "api_keys.hash_key");
    assert_eq!(keys("enabled: true\nhash_key: short").unwrap_err().path, "api_keys.hash_key");
    assert_eq!(keys(&format!("{ON}cache_ttl: 5m")).unwrap_err().path, "api_keys.cache_ttl");
    assert_eq!(keys(&format!("{ON}default_lifetime: 400d")).unwrap_err().path, "api_keys.default_lifetime");
    assert_eq!(keys(&format!("{ON}max_scopes: ['a b']")).unwrap_err().path, "api_keys.max_scopes");
    assert!(keys(ON).unwrap().is_some());
}

#[test]
fn the_digest_is_keyed() {
    let a = keys(ON).unwrap().unwrap();
    let b = keys("enabled: true\nhash_key: fedcba9876543210fedcba9876543210\n").unwrap().unwrap();
    assert_eq!(a.digest("wdn_live_x"), a.digest("wdn_live_x"));
    assert_ne!(a.digest("wdn_live_x"), a.digest("wdn_live_y"));
    assert_ne!(a.digest("wdn_live_x"), b.digest("wdn_live_x"), "another server secret, another digest");
}

#[tokio::test]
async fn issued_keys_are_random_and_checked_against_the_scope_ceiling() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let keys = keys_in(&format!("{ON}max_scopes: [read]"), &dir.path().join("keys.db")).unwrap().unwrap();
    let new = |scopes: &[&str]| NewKey {
        name: "n".into(),
        subject: "s".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..NewKey::default()
    };
    let (record, key) = keys.issue(new(&["read"]), "admin").await.unwrap();
    let (_, other) = keys.issue(new(&["read"]), "admin").await.unwrap();
    assert_ne!(key, other);
    assert!(key.expose().starts_with(&record.prefix) && key.expose().len() == "wdn_live_".len() + RANDOM_CHARS);
    assert!(matches!(keys.issue(new(&["write"]), "admin").await, Err(ApiKeyError::ScopeNotAllowed(s)) if s == "write"));
    let principal = keys.check(key.expose()).await.unwrap();
    assert_eq!((principal.subject.as_str(), principal.issuer.as_str()), ("s", ISSUER));
    assert_eq!(principal.client_id.as_deref(), Some(record.id.as_str()));
    assert!(matches!(keys.check("wdn_live_unknown").await, Err(AuthError::UnknownApiKey)));
    assert!(matches!(keys.check("wdn_prod_x").await, Err(AuthError::Malformed)));
}

#[test]
fn a_tool_list_is_a_ceiling_with_prefixes() {
    let fixture: crate::policy::fixtures::FixturePrincipal = serde_norway::from_str("sub: ci").unwrap_or_else(|e| panic!("{e}"));
    let mut p = fixture.principal();
    assert!(p.may_reach("anything"), "no list: policy alone decides");
    p.tools = Some(Arc::from(vec!["search".to_owned(), "route:crm*".to_owned()]));
    assert!(p.may_reach("search") && p.may_reach("route:crm") && p.may_reach("route:crm-eu"));
    assert!(!p.may_reach("searcher") && !p.may_reach("route:billing"));
}
