//! Baseline benchmark: `tools/call` through Warden against the same backend called directly.
//!
//! Everything runs in this process on loopback: a JWKS issuer, a small JSON backend, the
//! gateway, and the load generator (which shares the machine's cores with the servers, so the
//! absolute numbers understate a dedicated deployment; the ratio is the figure to watch).
//! `scripts/bench` runs it in release mode and writes `docs/performance.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warden::devidp::SigningKey;

const WARMUP: Duration = Duration::from_millis(500);
const CONCURRENCY: &[usize] = &[1, 8, 32];

struct Stats {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: usize,
}

/// One concurrency level's measurements.
struct Row {
    c: usize,
    /// The backend called directly.
    direct: Stats,
    /// `tools/call` through Warden, no credential.
    through: Stats,
    /// MCP `ping`.
    ping: Stats,
    /// `tools/call` with a per-user connection, token cache on.
    connected: Stats,
    /// The same with the token cache off.
    uncached: Stats,
}

async fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// Runs `concurrency` workers issuing `request` until `duration` is up.
async fn load<F, Fut>(concurrency: usize, duration: Duration, request: F) -> Stats
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = Instant::now() + WARMUP;
    while Instant::now() < deadline {
        request().await;
    }
    let start = Instant::now();
    let end = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    request().await;
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats { rps: all.len() as f64 / elapsed, p50_us: pct(0.50), p99_us: pct(0.99), requests: all.len() }
}

/// A request closure posting `body` to the MCP endpoint with the bearer token.
fn mcp_request(
    client: reqwest::Client,
    mcp: String,
    token: String,
    body: String,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Clone + Send + 'static {
    move || {
        let (cl, mcp, token, body) = (client.clone(), mcp.clone(), token.clone(), body.clone());
        Box::pin(async move {
            let r = cl
                .post(&mcp)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap();
        })
    }
}

#[tokio::main]
async fn main() {
    let mut out_path = None;
    let mut seconds = 3u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--write" => out_path = args.next(),
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(3),
            _ => {}
        }
    }
    let duration = Duration::from_secs(seconds);
    warden::install_crypto();

    // Backend.
    let (backend_l, backend) = listen().await;
    let app = Router::new().route(
        "/echo",
        get(|headers: axum::http::HeaderMap| async move {
            axum::Json(json!({"user": headers.get("x-user-id").and_then(|v| v.to_str().ok()), "items": [1, 2, 3]}))
        }),
    );
    tokio::spawn(async move { axum::serve(backend_l, app).await });

    // Issuer.
    let key = Arc::new(SigningKey::generate().unwrap());
    let (issuer_l, issuer) = listen().await;
    let jwks = json!(SigningKey::jwks(&[&key]));
    let app = Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(issuer_l, app).await });

    // Gateways. A per-user OAuth connection's token is already in the vault (a SQLite file), so a
    // call through `echo_connected` takes the caller's token from the vault: cached for 5 s (the
    // default) on the first gateway, read and decrypted on every call on the second.
    let vault_path = std::env::temp_dir().join(format!("warden-bench-vault-{}.db", uuid::Uuid::now_v7().simple()));
    let vault_db = format!("sqlite://{}", vault_path.display());
    let keys = format!("k1:{}", warden::credentials::envelope::KeyRing::generate_key().expose());
    let shutdown = CancellationToken::new();
    let start = |token_cache: &'static str| {
        let (issuer, backend, vault_db, keys, shutdown) =
            (issuer.clone(), backend.clone(), vault_db.clone(), keys.clone(), shutdown.clone());
        async move {
            let (gw_l, gw) = listen().await;
            let yaml = format!(
                "server:\n  listen: {addr}\n  public_url: {gw}\nidentity:\n  issuers:\n    - issuer: {issuer}\n      jwks_uri: {issuer}/jwks\nupstream:\n  allow_cidrs: [127.0.0.1/32]\naudit:\n  output: off\nvault:\n  database: \"{vault_db}\"\n  keys: \"{keys}\"\n  token_cache: {token_cache}\ncredentials:\n  - name: conn\n    placement: bearer\n    oauth: {{grant: authorization_code, mode: per_user, authorize_url: \"{backend}/authorize\", token_url: \"{backend}/token\", client_id: c, client_secret: s}}\ntools:\n  - name: echo\n    description: Echo.\n    scopes: [bench]\n    http:\n      url: {backend}/echo\n  - name: echo_connected\n    description: Echo, with the caller's own upstream token.\n    scopes: [bench]\n    credential: conn\n    http:\n      url: {backend}/echo\n",
                addr = gw_l.local_addr().unwrap()
            );
            let config = warden::config::parse(&yaml, &HashMap::<String, String>::new()).unwrap();
            tokio::spawn(warden::run(warden::Gateway::build(&config).unwrap(), gw_l, shutdown.cancelled_owned()));
            gw
        }
    };
    let gw = start("5s").await;
    let gw_uncached = start("0s").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |gw: &str| {
        key.sign(&json!({"iss": issuer, "sub": "bench-user", "aud": format!("{gw}/mcp"), "exp": now + 3600, "scope": "bench"})).unwrap()
    };
    let token = sign(&gw);
    let token_uncached = sign(&gw_uncached);

    let ring = Arc::new(warden::credentials::envelope::KeyRing::parse(&warden::credentials::Secret::new(keys.clone())).unwrap());
    let store = warden::store::Store::open(&vault_db, ring).await.unwrap();
    let who = warden::store::ConnectionKey { credential: "conn".into(), issuer: issuer.clone(), subject: "bench-user".into() };
    let stored = warden::store::Tokens {
        access_token: warden::credentials::Secret::new("upstream-token-of-bench-user"),
        refresh_token: None,
        expires_at: None,
        scope: None,
    };
    store.put_tokens(&who, &stored).await.unwrap();

    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let mcp = format!("{gw}/mcp");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}).to_string();

    // Sanity: both paths work before measuring.
    let check = client
        .post(&mcp)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let check: serde_json::Value = check.json().await.unwrap();
    assert_eq!(check["result"]["structuredContent"]["user"], "bench-user", "{check}");

    let connected_body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo_connected", "arguments": {}}}).to_string();
    let check: serde_json::Value = client
        .post(&mcp)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(connected_body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["result"]["structuredContent"]["user"], "bench-user", "{check}");
    let ping_body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let direct_url = format!("{backend}/echo");
    let mut rows = Vec::new();
    for &c in CONCURRENCY {
        let cl = client.clone();
        let url = direct_url.clone();
        let direct = load(c, duration, move || {
            let (cl, url) = (cl.clone(), url.clone());
            async move {
                let r = cl.get(&url).header("x-user-id", "bench-user").send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
            }
        })
        .await;
        let through = load(c, duration, mcp_request(client.clone(), mcp.clone(), token.clone(), body.clone())).await;
        let ping = load(c, duration, mcp_request(client.clone(), mcp.clone(), token.clone(), ping_body.clone())).await;
        let connected = load(c, duration, mcp_request(client.clone(), mcp.clone(), token.clone(), connected_body.clone())).await;
        let uncached =
            load(c, duration, mcp_request(client.clone(), format!("{gw_uncached}/mcp"), token_uncached.clone(), connected_body.clone()))
                .await;
        eprintln!(
            "c={c:>2}  direct {:>8.0} req/s p50 {:>6.0} µs p99 {:>6.0} µs | warden {:>8.0} req/s p50 {:>6.0} µs p99 {:>6.0} µs | ratio {:.2} | ping {:>8.0} req/s p50 {:>6.0} µs | per-user connection {:>8.0} req/s p50 {:>6.0} µs (uncached {:>8.0} req/s p50 {:>6.0} µs)",
            direct.rps,
            direct.p50_us,
            direct.p99_us,
            through.rps,
            through.p50_us,
            through.p99_us,
            through.rps / direct.rps,
            ping.rps,
            ping.p50_us,
            connected.rps,
            connected.p50_us,
            uncached.rps,
            uncached.p50_us
        );
        rows.push(Row { c, direct, through, ping, connected, uncached });
    }
    shutdown.cancel();
    let _ = std::fs::remove_file(&vault_path);

    if let Some(path) = out_path {
        let mut md = String::from(
            "# Performance\n\nBaseline of `tools/call` through Warden against the same backend called directly, measured by \
`scripts/bench` (`cargo bench --bench gateway`, release build). Everything runs in one process on loopback: a JWKS issuer, \
a small JSON backend, the gateway, and the load generator, which shares the cores with the servers. Each path is \
warmed up for 0.5 s, then driven for the stated time by N workers issuing requests back to back over pooled \
HTTP/1.1 connections. A call through Warden includes JWT verification (RS256, cached JWKS), JSON-RPC parsing, policy, \
JSON Schema validation, identity injection, the upstream call and response mapping, and the MCP framing of the \
result; audit output is off (it is a single buffered line per call).\n\n",
        );
        md.push_str(&format!(
            "Measured {} on a machine with {} cores, {seconds} s per run.\n\n",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        ));
        md.push_str("| concurrency | direct req/s | direct p50 | direct p99 | Warden req/s | Warden p50 | Warden p99 | throughput ratio | added p50 |\n");
        md.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for Row { c, direct: d, through: w, .. } in &rows {
            md.push_str(&format!(
                "| {c} | {:.0} | {:.0} µs | {:.0} µs | {:.0} | {:.0} µs | {:.0} µs | {:.2} | {:.0} µs |\n",
                d.rps,
                d.p50_us,
                d.p99_us,
                w.rps,
                w.p50_us,
                w.p99_us,
                w.rps / d.rps,
                w.p50_us - d.p50_us
            ));
        }
        md.push_str("\nThe gateway's own path without a backend call, measured with MCP `ping` (authentication, JSON-RPC checks, rmcp dispatch):\n\n| concurrency | ping req/s | p50 | p99 |\n|---:|---:|---:|---:|\n");
        for Row { c, ping: p, .. } in &rows {
            md.push_str(&format!("| {c} | {:.0} | {:.0} µs | {:.0} µs |\n", p.rps, p.p50_us, p.p99_us));
        }
        md.push_str("\nThe same call with a per-user OAuth connection (`credentials[].oauth`, `mode: per_user`): the caller's upstream token comes from the vault (a SQLite file, AES-256-GCM envelopes). With the default `vault.token_cache: 5s` a fresh token is read and decrypted once per 5 s per caller; with `0s`, on every call:\n\n| concurrency | cached req/s | cached p50 | cached p99 | throughput against the call without a credential | uncached req/s | uncached p50 | uncached throughput against the call without a credential |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for Row { c, through: w, connected: v, uncached: u, .. } in &rows {
            md.push_str(&format!(
                "| {c} | {:.0} | {:.0} µs | {:.0} µs | {:.2} | {:.0} | {:.0} µs | {:.2} |\n",
                v.rps,
                v.p50_us,
                v.p99_us,
                v.rps / w.rps,
                u.rps,
                u.p50_us,
                u.rps / w.rps
            ));
        }
        let total: usize = rows.iter().flat_map(|r| [&r.direct, &r.through, &r.ping, &r.connected, &r.uncached]).map(|s| s.requests).sum();
        md.push_str(&format!(
            "\n{total} requests in all. The throughput ratio is Warden's requests/s over the direct path's; a call through \
Warden makes the same backend request plus the gateway's own work, and here the load generator, the gateway and \
the backend all share the same cores, so the ratio also carries the load generator's own cost for the extra hop.\n\n\
## Where the time goes\n\n\
A `perf` profile of this benchmark (release build, DWARF call graphs) shows no single hot spot in the gateway. The \
CPU a call costs is spread over the two HTTP exchanges it makes instead of one (hyper server for the client's \
request, reqwest/hyper client for the backend's), RS256 signature verification (about a tenth of all CPU in the \
run, in aws-lc's RSA), rmcp's per-request dispatch in stateless mode, and JSON encoding and decoding. Verified \
tokens are now remembered (by hash, for at most 30 s, never past `exp`, and only while the issuer's key set is \
unchanged), so repeat calls with the same token skip the RSA verification; on this shared 2-core host, runs of \
the same binary vary by up to about 40% between runs, more than that gain. A known improvement not yet made: one \
JSON parse of the request body shared by the gate and rmcp.\n"
        ));
        std::fs::write(&path, md).unwrap();
        eprintln!("wrote {path}");
    }
}
