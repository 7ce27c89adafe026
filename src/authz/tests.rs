//! The upstream leg's ID token check, against a real JWKS served over HTTP: each forgery and
//! mismatch is refused with its own reason; each preset maps the claims it is for.

use serde_json::{Value, json};

use super::config::UpstreamIdpConfig;
use super::upstream::{UpstreamError, UpstreamIdp};
use crate::devidp::SigningKey;
use crate::identity::Preset;

const CLIENT: &str = "warden-at-idp";

/// An IdP's discovery document and JWKS over HTTP; returns its issuer.
async fn idp(key: &SigningKey) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let jwks = json!(SigningKey::jwks(&[key]));
    let meta = json!({"issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"), "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/jwks")});
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", axum::routing::get(move || async move { axum::Json(meta) }))
        .route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

fn upstream(issuer: &str, preset: Preset, allowed_domains: &[&str]) -> UpstreamIdp {
    let config: UpstreamIdpConfig = serde_norway::from_str(&format!(
        "{{issuer: \"{issuer}\", preset: {preset}, client_id: {CLIENT}, client_secret: s, allowed_domains: {domains:?}}}",
        preset = serde_json::to_value(format!("{preset:?}").to_lowercase()).unwrap().as_str().unwrap(),
        domains = allowed_domains,
    ))
    .unwrap();
    UpstreamIdp::new(&config, "https://warden.example", crate::upstream::control_plane_client().unwrap(), crate::clock::system()).unwrap()
}

fn id_token(key: &SigningKey, issuer: &str, overrides: Value) -> String {
    let now = crate::unix_now();
    let mut claims = json!({"iss": issuer, "sub": "u1", "aud": CLIENT, "iat": now, "exp": now + 300, "nonce": "n-1"});
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    key.sign_with_header(&header, &claims).unwrap()
}

#[tokio::test]
async fn an_id_token_is_refused_for_each_forgery_and_mismatch() {
    crate::install_crypto();
    let key = SigningKey::generate().unwrap();
    let issuer = idp(&key).await;
    let up = upstream(&issuer, Preset::Generic, &[]);
    let verify = |token: String, nonce: &'static str| {
        let up = &up;
        async move { up.verify_id_token(&token, nonce).await.map(|_| ()).map_err(|e| e.to_string()) }
    };
    assert_eq!(verify(id_token(&key, &issuer, json!({})), "n-1").await, Ok(()));
    let now = crate::unix_now();
    let other = SigningKey::generate_with_kid(key.kid.clone()).unwrap();
    for (token, nonce, reason) in [
        (id_token(&key, &issuer, json!({})), "n-2", "nonce_mismatch"),
        (id_token(&key, &issuer, json!({"nonce": null})), "n-1", "nonce_mismatch"),
        (id_token(&key, &issuer, json!({"aud": "someone-else"})), "n-1", "audience_mismatch"),
        (id_token(&key, &issuer, json!({"iss": "https://evil.example"})), "n-1", "issuer_mismatch"),
        (id_token(&key, &issuer, json!({"exp": now - 3600})), "n-1", "expired"),
        (id_token(&key, &issuer, json!({"iat": now + 3600, "exp": now + 7200})), "n-1", "issued_in_future"),
        (id_token(&key, &issuer, json!({"aud": [CLIENT, "other"], "azp": "other"})), "n-1", "azp_mismatch"),
        (id_token(&other, &issuer, json!({})), "n-1", "signature_invalid"),
        (key.sign(&json!({"iss": issuer, "sub": "u1", "aud": CLIENT, "exp": now + 60, "nonce": "n-1"})).unwrap(), "n-1", "type_invalid"),
        ("not.a.jwt".to_owned(), "n-1", "malformed"),
    ] {
        let refused = verify(token, nonce).await.expect_err(reason);
        assert!(refused.ends_with(reason), "{reason}: {refused}");
    }
}

#[tokio::test]
async fn presets_pick_the_stable_subject_roles_tenant_and_domain() {
    crate::install_crypto();
    let key = SigningKey::generate().unwrap();
    let issuer = idp(&key).await;
    let entra = upstream(&issuer, Preset::Entra, &[]);
    let token = id_token(
        &key,
        &issuer,
        json!({"sub": "pairwise", "oid": "0f0e", "tid": "72f9", "roles": ["Finance.Analyst"], "preferred_username": "a@acme.example"}),
    );
    let identity = entra.identity(entra.verify_id_token(&token, "n-1").await.unwrap()).unwrap();
    assert_eq!(
        (identity.subject.as_str(), identity.tenant.as_deref(), identity.roles.as_slice(), identity.username.as_deref()),
        ("0f0e", Some("72f9"), &["Finance.Analyst".to_owned()][..], Some("a@acme.example"))
    );
    let google = upstream(&issuer, Preset::Google, &["acme.example"]);
    let ok = google.verify_id_token(&id_token(&key, &issuer, json!({"hd": "ACME.example"})), "n-1").await.unwrap();
    assert_eq!(google.identity(ok).unwrap().tenant.as_deref(), Some("ACME.example"));
    for claims in [json!({"hd": "other.example"}), json!({})] {
        let token = google.verify_id_token(&id_token(&key, &issuer, claims), "n-1").await.unwrap();
        assert_eq!(google.identity(token).unwrap_err(), UpstreamError::Domain);
    }
    let okta = upstream(&issuer, Preset::Okta, &[]);
    let token = okta.verify_id_token(&id_token(&key, &issuer, json!({"groups": ["Everyone", "admins"]})), "n-1").await.unwrap();
    assert_eq!(okta.identity(token).unwrap().roles, vec!["Everyone".to_owned(), "admins".to_owned()]);
}

#[tokio::test]
async fn the_redirect_to_the_idp_never_carries_the_resource_and_asks_the_preset_scopes() {
    crate::install_crypto();
    let key = SigningKey::generate().unwrap();
    let issuer = idp(&key).await;
    let url = upstream(&issuer, Preset::Okta, &[]).authorization_url("as.s", "n", "c").await.unwrap();
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["scope"], "openid profile email groups");
    assert_eq!(query["redirect_uri"], "https://warden.example/oauth/callback");
    assert_eq!((query["code_challenge_method"].as_str(), query["client_id"].as_str()), ("S256", CLIENT));
    assert!(!query.contains_key("resource"));
}

/// What `authorization_server:` needs and refuses, named by its path.
#[test]
fn the_config_needs_a_vault_a_public_url_and_sane_lifetimes() {
    crate::install_crypto();
    let build = |server: &str, extra: &str| {
        let yaml = format!(
            "server:\n  listen: 127.0.0.1:0\n{server}authorization_server:\n  upstream: {{issuer: \"https://idp.example\", client_id: c, client_secret: s}}\n{extra}audit:\n  output: off\ntools: []\n"
        );
        let config = crate::config::parse(&yaml, &std::collections::HashMap::<String, String>::new()).map_err(|e| e.to_string())?;
        crate::Gateway::build(&config).map(drop).map_err(|e| e.to_string())
    };
    let public = "  public_url: https://mcp.example\n";
    let vault = format!(
        "vault:\n  database: \"sqlite://{}/v.db\"\n  keys: \"k1:{}\"\n",
        std::env::temp_dir().display(),
        crate::credentials::envelope::KeyRing::generate_key().expose()
    );
    assert!(build(public, "").unwrap_err().contains("vault"), "no vault");
    assert!(build("", &vault).unwrap_err().contains("server.public_url"), "no public URL");
    let ttl = |t: &str| build(public, &format!("  access_token_ttl: {t}\n{vault}"));
    assert!(ttl("2h").unwrap_err().contains("access_token_ttl"));
    assert!(ttl("10s").unwrap_err().contains("access_token_ttl"));
    let algorithms =
        build(public, &format!("  id_jag:\n    issuers: [{{issuer: \"https://corp.example\", algorithms: [HS256]}}]\n{vault}"));
    assert!(algorithms.unwrap_err().contains("authorization_server.id_jag.issuers[0].algorithms[0]"));
    let pattern = build(public, &format!("  registration:\n    redirect_uris: [\"not a uri\"]\n{vault}"));
    assert!(pattern.unwrap_err().contains("registration.redirect_uris[0]"));
    assert_eq!(build(public, &vault), Ok(()), "no identity.issuers needed beside it");
}

#[test]
fn google_id_tokens_may_name_the_issuer_without_its_scheme_and_no_one_else_may() {
    use super::upstream::accepted_issuers;
    assert_eq!(accepted_issuers(Preset::Google, "https://accounts.google.com"), ["https://accounts.google.com", "accounts.google.com"]);
    assert_eq!(accepted_issuers(Preset::Generic, "https://accounts.google.com"), ["https://accounts.google.com"]);
    assert_eq!(accepted_issuers(Preset::Google, "https://idp.example"), ["https://idp.example"]);
}
