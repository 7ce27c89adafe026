//! The peers of the CPU-per-request benchmark (`scripts/bench-cpu`), in one process apart from
//! the gateway: an issuer's JWKS (`/jwks.json`), the echo backend (`POST /echo`), and one RS256
//! access token for the gateway's resource, written to a file.
//!
//!     cargo run --release --example bench_peer -- ADDR RESOURCE TOKEN_FILE
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, resource, token_file] = args.as_slice() else {
        eprintln!("usage: bench_peer ADDR RESOURCE TOKEN_FILE");
        std::process::exit(2);
    };
    warden::install_crypto();
    let key = warden::devidp::SigningKey::generate().unwrap();
    let issuer = format!("http://{addr}");
    let now = warden::unix_now();
    let token = key
        .sign(&json!({
            "iss": issuer, "sub": "bench-user", "aud": resource, "iat": now, "exp": now + 24 * 3600,
            "scope": "echo:call", "client_id": "bench",
        }))
        .unwrap();
    std::fs::write(token_file, token).unwrap();
    let jwks = serde_json::to_value(warden::devidp::SigningKey::jwks(&[&key])).unwrap();
    let app = Router::new()
        .route("/jwks.json", get(move || async move { axum::Json(jwks.clone()) }))
        .route("/echo", post(|axum::Json(body): axum::Json<Value>| async move { axum::Json(body) }));
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
