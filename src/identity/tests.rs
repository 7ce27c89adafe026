use serde_json::{Map, Value, json};

use super::*;

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn mapping(roles: &str, tenant: Option<&str>) -> ClaimMapping {
    Preset::Generic.mapping(Some(roles), None, tenant)
}

fn principal(m: &ClaimMapping, c: Value) -> Principal {
    m.principal(Subject::new("u").unwrap_or_else(|| unreachable!()), "iss".into(), claims(c))
}

#[test]
fn scopes_merge_scope_scp_and_permissions() {
    let s = scopes_of(&claims(json!({"scope": "a b", "scp": ["c"], "permissions": ["d", "a"]})));
    assert_eq!(s.into_iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    let s = scopes_of(&claims(json!({"scp": "x y"})));
    assert_eq!(s.len(), 2);
    assert!(scopes_of(&claims(json!({"scope": 7}))).is_empty());
}

#[test]
fn roles_follow_nested_and_namespaced_paths() {
    let p = principal(&mapping("realm_access.roles", None), json!({"realm_access": {"roles": ["admin", "user"]}}));
    assert_eq!(p.roles, ["admin", "user"]);
    let p = principal(&mapping("https://example.com/roles", None), json!({"https://example.com/roles": ["doctor"]}));
    assert_eq!(p.roles, ["doctor"]);
    let p = principal(&mapping("groups", None), json!({"groups": "a b"}));
    assert_eq!(p.roles, ["a", "b"]);
    let p = principal(&mapping("missing.path", None), json!({"missing": 1}));
    assert!(p.roles.is_empty());
}

#[test]
fn tenant_and_client_id() {
    let p = principal(&mapping("roles", Some("tid")), json!({"tid": "t-1", "azp": "app"}));
    assert_eq!(p.tenant.as_deref(), Some("t-1"));
    assert_eq!(p.client_id.as_deref(), Some("app"));
    let p = principal(&mapping("roles", Some("org.id")), json!({"org": {"id": 42}, "client_id": "c", "azp": "other"}));
    assert_eq!(p.tenant.as_deref(), Some("42"));
    assert_eq!(p.client_id.as_deref(), Some("c"), "client_id wins over azp");
    let p = principal(&mapping("roles", Some("tid")), json!({"tid": ""}));
    assert_eq!(p.tenant, None);
}

#[test]
fn subject_is_never_empty() {
    assert!(Subject::new("").is_none());
    assert_eq!(Subject::new("a").map(|s| s.to_string()).as_deref(), Some("a"));
}

#[test]
fn metadata_urls_insert_the_well_known_segment() {
    assert_eq!(
        metadata_urls("https://idp.example.com/tenant/v2.0"),
        [
            "https://idp.example.com/.well-known/oauth-authorization-server/tenant/v2.0",
            "https://idp.example.com/tenant/v2.0/.well-known/openid-configuration"
        ]
    );
    assert_eq!(metadata_urls("https://idp.example.com/")[0], "https://idp.example.com/.well-known/oauth-authorization-server");
}

#[test]
fn presets_map_each_provider() {
    let roles = |preset: Preset, c: Value| principal(&preset.mapping(None, None, None), c);
    let p = roles(Preset::Auth0, json!({"https://acme.example/roles": ["doctor"], "permissions": ["medical:write"], "org_id": "org_1"}));
    assert_eq!((p.roles.as_slice(), p.tenant.as_deref()), (&["doctor".to_owned()][..], Some("org_1")));
    assert!(p.has_scope("medical:write"));
    let p = roles(Preset::Okta, json!({"groups": ["Everyone", "analysts"], "scp": ["finance:read"]}));
    assert_eq!(p.roles, ["Everyone", "analysts"]);
    assert!(p.has_scope("finance:read"));
    let p = roles(Preset::Entra, json!({"roles": ["Finance.Analyst"], "scp": "Files.Read", "tid": "72f9"}));
    assert_eq!((p.roles.len(), p.tenant.as_deref()), (1, Some("72f9")));
    let p = roles(
        Preset::Keycloak,
        json!({"azp": "warden", "realm_access": {"roles": ["user"]}, "resource_access": {"warden": {"roles": ["admin", "user"]}, "other": {"roles": ["x"]}}}),
    );
    assert_eq!(p.roles, ["user", "admin"], "realm and this client's roles, merged, not another client's");
    let p = roles(Preset::Google, json!({"hd": "example.com"}));
    assert_eq!((p.roles.len(), p.tenant.as_deref()), (0, Some("example.com")));
    // Explicit settings win over the preset.
    let p = principal(
        &Preset::Entra.mapping(Some("groups"), None, Some("org")),
        json!({"groups": ["g"], "roles": ["r"], "org": "o", "tid": "t"}),
    );
    assert_eq!((p.roles.as_slice(), p.tenant.as_deref()), (&["g".to_owned()][..], Some("o")));
}
