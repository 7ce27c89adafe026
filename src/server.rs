//! Connections: the accept loop in front of the router. It bounds what a client can hold open
//! before a request even starts: the time to send a request's headers
//! (`server.header_read_timeout`, after which the connection is closed), the time a kept-alive
//! connection may wait idle for its next request (`server.idle_timeout`), and the number of
//! connections one IP may keep open at once (`server.max_connections_per_ip`; more are closed
//! as they arrive). Bodies are bounded in time by the gate (`server.body_read_timeout`, 408)
//! and by a body-timeout layer for every other route.
//!
//! hyper has one timer for both waits: its header timeout starts when it waits for the next
//! request, idle or not, so a kept-alive connection was closed after 10 s idle, and a client
//! whose pool kept it longer could send a request just as it closed. Here each connection's
//! bytes are watched ([`Activity`]): hyper's header timer (a [`ConnectionTimer`]) waits
//! `idle_timeout` from the last response while no byte of the next request has come, and
//! `header_read_timeout` from that request's first byte once one has (from the accept for the
//! first request), so a client trickling a header is still cut off on time.
//!
//! It serves HTTP/1.1 and HTTP/2 (prior knowledge) with hyper, puts the peer address in each
//! request's extensions (`ConnectInfo`), and on shutdown stops accepting and lets in-flight
//! requests finish.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use dashmap::DashMap;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What one client may hold open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
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
    builder.http1().header_read_timeout(limits.header_read_timeout);
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
        // This connection's own header timer, watching its own bytes.
        let activity = Arc::new(Activity::new());
        let mut builder = builder.clone();
        builder.http1().timer(ConnectionTimer { activity: Arc::clone(&activity), limits });
        let stream = Watched { inner: stream, activity };
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

/// What a connection's bytes say about its wait for the next request: when the first byte of
/// the request being read came (none yet: `NONE`), and when the last response was written, as
/// nanoseconds since the connection was accepted.
struct Activity {
    accepted: Instant,
    first_byte: AtomicU64,
    last_write: AtomicU64,
}

impl Activity {
    const NONE: u64 = u64::MAX;

    /// A new connection: its first request is due from now on.
    fn new() -> Self {
        Self { accepted: Instant::now(), first_byte: AtomicU64::new(0), last_write: AtomicU64::new(0) }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_nanos()).unwrap_or(Self::NONE - 1)
    }

    /// Bytes came from the client: the first after a response starts the next request.
    fn read(&self) {
        if self.first_byte.load(Ordering::Relaxed) == Self::NONE {
            self.first_byte.store(self.now(), Ordering::Relaxed);
        }
    }

    /// Bytes went to the client: a response, after whose last byte the connection waits idle
    /// (a response that streams for minutes does not use up the idle time).
    fn wrote(&self) {
        self.last_write.store(self.now(), Ordering::Relaxed);
        self.first_byte.store(Self::NONE, Ordering::Relaxed);
    }

    /// When the wait for the next request's headers ends.
    fn deadline(&self, limits: &ConnectionLimits) -> Instant {
        let at = |nanos: u64| self.accepted + Duration::from_nanos(nanos);
        match self.first_byte.load(Ordering::Relaxed) {
            Self::NONE => at(self.last_write.load(Ordering::Relaxed)) + limits.idle_timeout,
            first => at(first) + limits.header_read_timeout,
        }
    }
}

/// A TCP stream whose reads and writes are noted in its connection's [`Activity`].
struct Watched {
    inner: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl Watched {
    /// Notes a write that sent bytes.
    fn noted(&self, polled: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.noted(polled)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        self.noted(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's HTTP/1 timer for one connection. hyper uses it only for the header timeout; the
/// deadline it asks for is replaced by the one the connection's [`Activity`] gives, checked
/// again each time hyper polls (which it does when bytes arrive).
#[derive(Clone)]
struct ConnectionTimer {
    activity: Arc<Activity>,
    limits: ConnectionLimits,
}

impl hyper::rt::Timer for ConnectionTimer {
    /// Not called by hyper's HTTP/1 server, which asks only `sleep_until` (for the header wait);
    /// given for the trait, as the same wait.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let deadline = self.activity.deadline(&self.limits);
        Box::pin(HeaderWait { timer: self.clone(), sleep: tokio::time::sleep_until(deadline.into()) })
    }
}

pin_project_lite::pin_project! {
    /// The header wait of one connection: idle, or reading a request's headers.
    struct HeaderWait {
        timer: ConnectionTimer,
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl Future for HeaderWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let deadline = tokio::time::Instant::from_std(this.timer.activity.deadline(&this.timer.limits));
        if deadline != this.sleep.deadline() {
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.poll(cx)
    }
}

impl hyper::rt::Sleep for HeaderWait {}
