//! What verifying a bearer token costs the identity stage: a token of an upstream issuer (RS256,
//! keys fetched once over HTTP) against one Warden's own authorization server issued (RS256, keys
//! read from the vault's store), each through the full check (`Authenticator::authenticate`:
//! parse, key lookup, signature, claims) and through the per-token cache every later request of
//! the same token takes (`authenticate_header`); and what signing the identity assertion
//! (`identity_headers.assertion`, ES256) adds to each upstream request. `scripts/bench` runs it in
//! release mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use warden::devidp::SigningKey;

const ITERATIONS: u32 = 20_000;

async fn measure<F, Fut>(name: &str, f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..2_000 {
        assert!(f().await, "{name}: the token did not verify");
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        black_box(f().await);
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERATIONS);
    eprintln!("{name:<58} {us:>7.1} µs/token");
    us
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    warden::install_crypto();
    let key = Arc::new(SigningKey::generate().unwrap());
    let issuer_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", issuer_l.local_addr().unwrap());
    let jwks = json!(SigningKey::jwks(&[&key]));
    tokio::spawn(async move { axum::serve(issuer_l, Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }))).await });

    let dir = std::env::temp_dir().join(format!("warden-bench-tokens-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("vault.db").display());
    let keys = format!("k1:{}", warden::credentials::envelope::KeyRing::generate_key().expose());
    let public = "https://warden.example";
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  public_url: {public}\nidentity:\n  issuers:\n    - issuer: {issuer}\n      jwks_uri: {issuer}/jwks\nauthorization_server:\n  upstream: {{issuer: \"https://idp.example\", client_id: c, client_secret: s}}\nvault:\n  database: \"{db}\"\n  keys: \"{keys}\"\naudit:\n  output: off\ntools: []\n"
    );
    let config = warden::config::parse(&yaml, &HashMap::<String, String>::new()).unwrap();
    let gateway = warden::Gateway::build(&config).unwrap();
    let auth = Arc::clone(&gateway.authenticator);

    let ring = Arc::new(warden::credentials::envelope::KeyRing::parse(&warden::credentials::Secret::new(keys)).unwrap());
    let store = warden::store::Store::open(&db, ring).await.unwrap();
    let own = warden::signing::KeySet::load_or_create(&store, warden::signing::ACCESS_TOKENS).await.unwrap();
    let now = warden::unix_now();
    let claims = |iss: &str| {
        json!({"iss": iss, "sub": "bench-user", "aud": format!("{public}/mcp"), "exp": now + 3600, "iat": now, "scope": "bench",
               "client_id": "bench-client", "roles": ["analyst"], "jti": "j"})
    };
    let upstream_token = key.sign(&claims(&issuer)).unwrap();
    let own_token = own.current(warden::signing::ACCESS_TOKENS).unwrap().sign("at+jwt", &claims(public)).unwrap();
    let header = |t: &str| http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
    let (upstream_header, own_header) = (header(&upstream_token), header(&own_token));

    eprintln!("Verifying a bearer token ({ITERATIONS} times each, one thread)");
    let upstream_full =
        measure("upstream issuer (RS256, JWKS over HTTP), full check", || async { auth.authenticate(&upstream_token).await.is_ok() }).await;
    let own_full = measure("Warden's authorization server (RS256, keys from the store), full check", || async {
        auth.authenticate(&own_token).await.is_ok()
    })
    .await;
    let upstream_cached = measure("upstream issuer, cached (every later request)", || async {
        auth.authenticate_header(Some(&upstream_header)).await.is_ok()
    })
    .await;
    let own_cached =
        measure("Warden's authorization server, cached", || async { auth.authenticate_header(Some(&own_header)).await.is_ok() }).await;
    eprintln!("ratio own/upstream: full {:.2}, cached {:.2}", own_full / upstream_full, own_cached / upstream_cached);

    // The identity assertion: claims built from the principal, signed with the ES256 key.
    struct Local(warden::signing::KeySet);
    impl warden::upstream::assertion::AssertionSigner for Local {
        fn sign_assertion<'a>(&'a self, claims: &'a serde_json::Value) -> futures::future::BoxFuture<'a, Result<String, String>> {
            Box::pin(async move {
                let key = self.0.current(warden::signing::ASSERTIONS).map_err(|e| e.to_string())?;
                key.sign(warden::upstream::assertion::ASSERTION_TYP, claims).map_err(|e| e.to_string())
            })
        }
    }
    let set = warden::signing::KeySet::load_or_create(&store, warden::signing::ASSERTIONS).await.unwrap();
    let assertions = warden::upstream::assertion::Assertions::new(
        http::HeaderName::from_static("x-warden-identity"),
        std::time::Duration::from_secs(60),
        public.to_owned(),
        Arc::new(Local(set)),
        warden::clock::system(),
    );
    let principal = auth.authenticate(&upstream_token).await.unwrap();
    measure("identity assertion (ES256) for one upstream request", || async {
        assertions.header_value(&principal, "0193f1a2-7c3e-7a51-9d2e-5f0c8b1e4a77", "https://api.example.com").await.is_ok()
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
