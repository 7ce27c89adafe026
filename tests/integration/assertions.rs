//! The signed identity assertion (`identity_headers.assertion`): every upstream request of an
//! HTTP tool, an OpenAPI tool and a route carries a JWT that verifies against the JWKS Warden
//! publishes over HTTP, for that upstream's origin (or the configured audience), naming the
//! caller and the client acting for them; a caller cannot forge or replace it; a rotated key is
//! published beside the old one; with the keys unavailable nothing is sent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Db, TestGateway, TestIssuer, Upstream, gateway};

const HEADER: &str = "x-warden-identity";

/// A backend's check, as any JWT library does it: the key by `kid` from the published JWKS,
/// the algorithm pinned to ES256, `iss`, `aud` and `exp` required and checked.
pub(crate) async fn verify(gw_url: &str, token: &str, audience: &str) -> Result<Value, String> {
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(format!("{gw_url}/.well-known/jwks.json")).await.unwrap().json().await.map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.alg != jsonwebtoken::Algorithm::ES256 || header.typ.as_deref() != Some("warden-identity+jwt") {
        return Err(format!("unexpected header {header:?}"));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[gw_url]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|d| d.claims).map_err(|e| e.to_string())
}

fn assertion(r: &crate::common::Received) -> String {
    r.headers.get(HEADER).unwrap_or_else(|| panic!("no assertion on {}", r.path)).to_str().unwrap().to_owned()
}

fn origin(url: &str) -> String {
    url::Url::parse(url).unwrap().origin().ascii_serialization()
}

struct Setup {
    gw: TestGateway,
    issuer: TestIssuer,
    upstream: Upstream,
    db: Db,
    keys: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let keys = crate::common::provider::keyring();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("api.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.0.3\ninfo: {title: Items, version: '1'}\npaths:\n  /items:\n    get:\n      operationId: listItems\n      responses: {'200': {description: ok}}\n",
    )
    .unwrap();
    let u = &upstream.url;
    let tools = format!(
        "  - {{name: whoami, description: Who am I., http: {{url: \"{u}/whoami\"}}}}\n  - {{name: pay, description: Pay., audience: \"api://payments\", http: {{url: \"{u}/pay\", method: POST}}}}\n"
    );
    let extra = format!(
        "identity_headers:\n  assertion: {{header: X-Warden-Identity, ttl: 30s}}\nupstream:\n  allow_cidrs: [127.0.0.1/32]\nvault:\n  database: \"{db}\"\n  keys: \"{keys}\"\n\
         openapi:\n  - {{name: items, spec: \"{spec}\", base_url: \"{u}\", audience: \"https://items.example\"}}\n\
         routes:\n  - {{name: crm, upstream: \"{u}/crm\", methods: [GET, POST]}}\n",
        db = db.url,
        spec = spec.display(),
    );
    let gw = gateway(&issuer, &tools, &extra).await;
    Setup { gw, issuer, upstream, db, keys, _dir: dir }
}

impl Setup {
    fn token(&self, sub: &str) -> String {
        let mut claims = self.issuer.claims(sub, "crm:read", &self.gw.mcp);
        claims["roles"] = json!(["analyst"]);
        claims["org_id"] = json!("acme");
        claims["act"] = json!({"sub": "scheduler-agent"});
        // Valid past the rotation test's jump of the gateway's clock.
        claims["exp"] = json!(crate::common::now() + 3600);
        self.issuer.sign(&claims)
    }
}

#[tokio::test]
async fn every_upstream_request_carries_an_assertion_that_verifies_against_the_published_keys() {
    let s = setup().await;
    let alice = s.token("alice");

    let reply = s.gw.call(&alice, "whoami", json!({})).await;
    assert!(reply.result()["isError"] != true, "{reply:?}");
    let received = s.upstream.last();
    let token = assertion(&received);
    let claims = verify(&s.gw.url, &token, &origin(&s.upstream.url)).await.unwrap_or_else(|e| panic!("{e}: {token}"));
    assert_eq!(claims["iss"], s.gw.url.as_str(), "the public URL, exactly");
    assert_eq!(claims["aud"], origin(&s.upstream.url).as_str(), "the upstream's origin, no trailing slash");
    assert_eq!((claims["sub"].as_str(), claims["scope"].as_str()), (Some("alice"), Some("crm:read")));
    assert_eq!((claims["roles"].clone(), claims["tenant"].clone()), (json!(["analyst"]), json!("acme")));
    assert_eq!(claims["client_id"], "test-client");
    assert_eq!(claims["act"], json!({"sub": "test-client", "act": {"sub": "scheduler-agent"}}), "the client acts, after the earlier actor");
    let request_id = received.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(claims["jti"], request_id, "the request id");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 30, "the configured lifetime");
    // Not for another backend: a backend that checks its audience refuses it.
    assert!(verify(&s.gw.url, &token, "https://other.example").await.unwrap_err().contains("InvalidAudience"));

    // A configured audience, on a tool and on an OpenAPI source.
    s.gw.call(&alice, "pay", json!({})).await;
    let paid = assertion(&s.upstream.last());
    assert_eq!(verify(&s.gw.url, &paid, "api://payments").await.unwrap()["aud"], "api://payments");
    assert!(verify(&s.gw.url, &paid, &origin(&s.upstream.url)).await.is_err(), "the tool's audience, not the origin");
    let listed = s.gw.call(&alice, "items_listItems", json!({})).await;
    assert!(listed.result()["isError"] != true, "{listed:?}");
    assert_eq!(s.upstream.last().path, "/items");
    verify(&s.gw.url, &assertion(&s.upstream.last()), "https://items.example").await.unwrap();

    // A route: a caller's own X-Warden-Identity never passes; Warden's replaces it.
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.";
    let r = s.gw.http.get(format!("{}/proxy/crm/contacts", s.gw.url)).bearer_auth(&alice).header(HEADER, forged).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let routed = s.upstream.last();
    assert_eq!(routed.path, "/crm/contacts");
    assert_eq!(routed.headers.get_all(HEADER).iter().count(), 1);
    let claims = verify(&s.gw.url, &assertion(&routed), &origin(&s.upstream.url)).await.unwrap();
    assert_eq!(claims["sub"], "alice");

    // The JWKS is public, cacheable, and holds no private part.
    let r = s.gw.http.get(format!("{}/.well-known/jwks.json", s.gw.url)).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "max-age=300");
    let jwks: Value = r.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    assert_eq!((jwks["keys"][0]["kty"].as_str(), jwks["keys"][0]["alg"].as_str()), (Some("EC"), Some("ES256")));
    assert!(jwks["keys"][0].get("d").is_none());
    // The private key is sealed in the store.
    let d = jwks["keys"][0]["x"].as_str().unwrap();
    assert!(!s.db.dump().contains(d), "the stored key is encrypted");
}

#[tokio::test]
async fn a_rotated_key_is_published_first_and_signs_once_caches_have_it() {
    let s = setup().await;
    let alice = s.token("alice");
    s.gw.call(&alice, "whoami", json!({})).await;
    let before = assertion(&s.upstream.last());
    let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let published = || async {
        let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", s.gw.url)).await.unwrap().json().await.unwrap();
        jwks["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect::<Vec<_>>()
    };

    let ring = warden::credentials::envelope::KeyRing::parse(&warden::secret::Secret::new(s.keys.clone())).unwrap();
    let store = warden::store::Store::open(&s.db.url, Arc::new(ring)).await.unwrap().with_clock(s.gw.clock.clone());
    let rotated = warden::signing::KeySet::rotate(&store, warden::signing::ASSERTIONS).await.unwrap();
    let new_kid = rotated.current(warden::signing::ASSERTIONS).unwrap().kid.clone();
    assert_ne!(new_kid, old_kid);

    // Within a minute every replica publishes the new key, and the old one still signs.
    s.gw.clock.advance(Duration::from_secs(61));
    assert_eq!(published().await, [new_kid.clone(), old_kid.clone()], "newest first, the previous one still published");
    s.gw.call(&alice, "whoami", json!({})).await;
    assert_eq!(kid_of(&assertion(&s.upstream.last())), old_kid, "not before caches can have the new key");

    // Once published for the JWKS's max-age, the new key signs; both verify.
    s.gw.clock.advance(Duration::from_secs(240));
    s.gw.call(&alice, "whoami", json!({})).await;
    let after = assertion(&s.upstream.last());
    assert_eq!(kid_of(&after), new_kid, "the new key signs");
    let audience = origin(&s.upstream.url);
    verify(&s.gw.url, &after, &audience).await.unwrap();
    // The old key is still published: what it signed still verifies (the backend's clock is
    // the real one, which the test did not move).
    assert_eq!(verify(&s.gw.url, &before, &audience).await.unwrap()["sub"], "alice");
}

#[tokio::test]
async fn without_its_signing_key_a_call_is_refused_and_nothing_is_sent() {
    let s = setup().await;
    let alice = s.token("alice");
    s.gw.call(&alice, "whoami", json!({})).await;
    let sent = s.upstream.requests().len();
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&s.db.url).await.unwrap();
    sqlx::Executor::execute(&mut db, "DROP TABLE signing_keys").await.unwrap();
    s.gw.clock.advance(Duration::from_secs(61));

    let reply = s.gw.call(&alice, "whoami", json!({})).await;
    assert_eq!(reply.result()["isError"], true, "{reply:?}");
    let text = reply.result()["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("identity assertion"), "{text}");
    let r = s.gw.http.get(format!("{}/proxy/crm/contacts", s.gw.url)).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "identity_assertion_unavailable");
    assert_eq!(s.upstream.requests().len(), sent, "nothing reached the backend without its assertion");
    let events = s.gw.audit();
    assert!(events.iter().any(|e| e["tool"] == "whoami" && e["reason"] == "identity_assertion_unavailable"), "audited");
}

#[tokio::test]
async fn assertion_settings_are_checked() {
    let parse = |extra: &str| {
        let yaml = format!("server: {{listen: \"127.0.0.1:0\"}}\nidentity: {{issuers: [{{issuer: \"https://idp.example\"}}]}}\n{extra}");
        warden::config::parse(&yaml, &std::collections::HashMap::<String, String>::new())
            .and_then(|c| warden::Gateway::build(&c).map(|_| ()))
            .map_err(|e| e.to_string())
    };
    let vault = format!(
        "vault: {{database: \"sqlite:///tmp/unused-{}.db\", keys: \"{}\"}}\n",
        uuid::Uuid::now_v7(),
        crate::common::provider::keyring()
    );
    let on = "identity_headers:\n  assertion: {}\n";
    let no_vault = parse(on).unwrap_err();
    assert!(no_vault.contains("identity_headers.assertion"), "needs a vault: {no_vault}");
    assert!(parse(&format!("{on}{vault}")).is_ok());
    let short = format!("identity_headers:\n  assertion: {{ttl: 5s}}\n{vault}");
    assert!(parse(&short).unwrap_err().contains("identity_headers.assertion.ttl"));
    let clash = format!("identity_headers:\n  assertion: {{header: X-User-Id}}\n{vault}");
    assert!(parse(&clash).unwrap_err().contains("identity_headers.assertion.header"));
    let stdio = format!("{on}{vault}servers:\n  - {{name: local, command: \"true\", audience: \"api://x\"}}\n");
    assert!(parse(&stdio).unwrap_err().contains("servers[0].audience"));
    let bad = format!(
        "{on}{vault}tools:\n  - {{name: t, description: d, audience: \"has space\", http: {{url: \"https://api.example.com/\"}}}}\n"
    );
    assert!(parse(&bad).unwrap_err().contains("tools[0].audience"));
}

/// Replicas share the vault: two gateways started at once on one database sign with the same
/// key, and what one signed verifies against the other's published keys.
#[tokio::test]
async fn replicas_on_one_vault_sign_with_one_key_and_publish_the_same_set() {
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let db = Db::sqlite();
    let keys = crate::common::provider::keyring();
    let tools = format!("  - {{name: whoami, description: Who am I., http: {{url: \"{}/whoami\"}}}}\n", upstream.url);
    let extra = format!(
        "identity_headers:\n  assertion: {{}}\nupstream:\n  allow_cidrs: [127.0.0.1/32]\nvault:\n  database: \"{}\"\n  keys: \"{keys}\"\n",
        db.url
    );
    let (a, b) = tokio::join!(gateway(&issuer, &tools, &extra), gateway(&issuer, &tools, &extra));
    // Both make their first key at once (neither finds one), as replicas starting together do.
    let (ta, tb) = (issuer.sign(&issuer.claims("alice", "", &a.mcp)), issuer.sign(&issuer.claims("alice", "", &b.mcp)));
    let (ra, rb) = tokio::join!(a.call(&ta, "whoami", json!({})), b.call(&tb, "whoami", json!({})));
    assert!(ra.result()["isError"] != true && rb.result()["isError"] != true, "{ra:?} {rb:?}");
    let assertions: Vec<String> = upstream.requests().iter().map(assertion).collect();
    assert_eq!(assertions.len(), 2);
    let mut kids = Vec::new();
    for token in &assertions {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        // Each verifies against either replica's published keys (only the key is shared: each
        // replica's issuer is its own URL here).
        for published_by in [&a, &b] {
            let jwks: jsonwebtoken::jwk::JwkSet =
                reqwest::get(format!("{}/.well-known/jwks.json", published_by.url)).await.unwrap().json().await.unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).expect("published by both")).unwrap();
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
            validation.set_audience(&[origin(&upstream.url)]);
            validation.set_issuer(&[a.url.as_str(), b.url.as_str()]);
            jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
        }
        kids.push(kid);
    }
    assert_eq!(kids[0], kids[1], "one signing key for both replicas");
}
