//! Claim layouts of common identity providers, so roles, scopes and tenant come out right
//! without hand mapping. Scopes are always merged from `scope`, `scp` and `permissions`.

use serde::Deserialize;

use super::ClaimMapping;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Roles in `roles`; no tenant.
    #[default]
    Generic,
    /// Roles in namespaced claims (`https://your.namespace/roles`, added by an Action), scopes in
    /// `scope` and `permissions` (RBAC), tenant in `org_id` (Organizations).
    Auth0,
    /// Roles from `groups` (a groups claim on the authorization server), scopes in `scp`.
    Okta,
    /// Roles from `roles` (app roles), scopes in `scp`, tenant in `tid`.
    Entra,
    /// Roles from `realm_access.roles` and `resource_access.<client>.roles`.
    Keycloak,
    /// No roles; tenant from `hd` (the Workspace domain).
    Google,
    /// Roles from `groups`.
    Authentik,
}

impl Preset {
    fn roles_claims(self) -> Vec<String> {
        let paths: &[&str] = match self {
            Self::Generic | Self::Entra => &["roles"],
            Self::Okta | Self::Authentik => &["groups"],
            Self::Keycloak => &["realm_access.roles", "resource_access.{client_id}.roles"],
            Self::Auth0 | Self::Google => &[],
        };
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    fn tenant_claim(self) -> Option<&'static str> {
        match self {
            Self::Auth0 => Some("org_id"),
            Self::Entra => Some("tid"),
            Self::Google => Some("hd"),
            Self::Generic | Self::Okta | Self::Keycloak | Self::Authentik => None,
        }
    }

    /// The ID token claim that names a person for good: Entra's `oid` (its `sub` differs per
    /// application), `sub` elsewhere.
    pub fn subject_claim(self) -> &'static str {
        match self {
            Self::Entra => "oid",
            _ => "sub",
        }
    }

    /// The scopes Warden's authorization server asks this IdP for when none are configured:
    /// OpenID Connect's, and the groups scope where groups are roles.
    pub fn sign_in_scopes(self) -> Vec<String> {
        let mut scopes = vec!["openid", "profile", "email"];
        if matches!(self, Self::Okta | Self::Authentik) {
            scopes.push("groups");
        }
        scopes.into_iter().map(str::to_owned).collect()
    }

    /// The mapping for this preset, with explicit settings taking precedence.
    pub fn mapping(self, roles_claim: Option<&str>, roles_claims: Option<&[String]>, tenant_claim: Option<&str>) -> ClaimMapping {
        let explicit = roles_claim.is_some() || roles_claims.is_some();
        let roles_claims = match (roles_claim, roles_claims) {
            (Some(one), _) => vec![one.to_owned()],
            (None, Some(many)) => many.to_vec(),
            (None, None) => self.roles_claims(),
        };
        ClaimMapping {
            roles_claims,
            namespaced_roles: self == Self::Auth0 && !explicit,
            tenant_claim: tenant_claim.map(str::to_owned).or_else(|| self.tenant_claim().map(str::to_owned)),
        }
    }
}
