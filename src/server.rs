//! Connections: the accept loop in front of the router. It bounds what a client can hold open
//! before a request even starts: the time to send a request's headers
//! (`server.header_read_timeout`, after which the connection is closed) and the number of
//! connections one IP may keep open at once (`server.max_connections_per_ip`; more are closed
//! as they arrive). Bodies are bounded in time by the gate (`server.body_read_timeout`, 408)
//! and by a body-timeout layer for every other route.
//!
//! It serves HTTP/1.1 and HTTP/2 (prior knowledge) with hyper, puts the peer address in each
//! request's extensions (`ConnectInfo`), and on shutdown stops accepting and lets in-flight
//! requests finish.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use dashmap::DashMap;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What one client may hold open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    /// `0`: no limit.
    pub max_per_ip: usize,
}

/// Open connections per client IP.
#[derive(Default)]
struct PerIp {
    open: DashMap<IpAddr, usize>,
}

/// One counted connection; uncounted when dropped.
struct Slot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut count = self.open.entry(ip).or_insert(0);
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot { table: Arc::clone(self), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Remove the entry with the last connection, so the table holds only IPs with some open.
        self.table.open.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the connections in progress to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let per_ip = Arc::new(PerIp::default());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = per_ip.acquire(remote.ip(), limits.max_per_ip) else {
            tracing::warn!(client_ip = %remote.ip(), limit = limits.max_per_ip, "connection refused: too many open from this IP");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
            request.map(axum::body::Body::new)
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service)).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
