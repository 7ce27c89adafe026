//! How calls reach one federated server: its session (shared, or one per caller with a
//! per-user credential), started by rmcp's client over stdio or Streamable HTTP; a call with the
//! caller's identity and Warden's credential, its progress and its cancellation; and the tool
//! backends that call through it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest, GetExtensions, GetMeta, RequestId, ServerResult};
use rmcp::service::{Peer, PeerRequestOptions, RoleClient, RunningService, ServiceError};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::answers::{Stash, Unreadable};
use super::client::{Watcher, lifecycle, listen};
use super::http;
use super::{CONNECT_TIMEOUT, Server};
use crate::credentials::{Credential, CredentialError};
use crate::identity::Principal;
use crate::tools::{ResultBody, Tool, ToolBackend, ToolFailure, ToolOutcome, ToolResult, ToolSpec};
use crate::upstream::{CallContext, Upstream, inject_identity};

/// How calls reach one server: the current session, and what each call needs.
pub struct Link {
    pub(super) server: String,
    pub(super) transport: Transport,
    pub(super) credential: Option<Arc<Credential>>,
    /// The `aud` of the signed identity assertion (HTTP servers only).
    pub(super) audience: Option<Arc<str>>,
    pub(super) timeout: Duration,
    pub(super) upstream: Upstream,
    /// The shared session (stdio, or HTTP with no per-user credential).
    pub(super) session: ArcSwapOption<Session>,
    /// With a per-user credential: one session per caller, each with that caller's token.
    pub(super) per_user: bool,
    pub(super) users: dashmap::DashMap<String, Arc<tokio::sync::Mutex<Option<UserSession>>>>,
    /// Set when a catalog refresh should run (a notification, a first user session).
    pub(super) changed: Arc<Notify>,
    /// Calls whose caller wants progress, by the progress token of the upstream request.
    pub(super) progress: Arc<dashmap::DashMap<String, tokio::sync::mpsc::Sender<crate::upstream::Report>>>,
    /// The most one answer may hold (`servers[].max_response_bytes`).
    pub(super) max_bytes: usize,
    /// Results of `tools/call` as the server sent them, until their call collects them.
    pub(super) stash: Arc<Stash>,
    /// What the server may ask of the calling client (`servers[].client_requests`).
    pub(super) client_requests: super::config::ClientRequests,
    /// The resources it is subscribed to for Warden's callers, and where its updates go.
    pub(super) subscribed: super::updates::Subscribed,
    /// A stdio server sent one request at a time (`client_requests.one_call_at_a_time`).
    pub(super) turns: Option<Turns>,
}

/// One request at a time on a stdio server's session: the turn each waits for, and the asker
/// of the call that holds it — a request the server makes meanwhile is that call's.
#[derive(Default)]
pub(super) struct Turns {
    pub(super) turn: tokio::sync::Mutex<()>,
    pub(super) current: Arc<CurrentAsker>,
}

/// The asker of the request that holds the turn, if it has one.
pub(super) type CurrentAsker = std::sync::Mutex<Option<Arc<dyn crate::upstream::Asker>>>;

/// While a request holds the turn: its asker is the current one; none once it ends.
struct Holding<'a>(&'a CurrentAsker);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// A session with the server: rmcp's client, and over HTTP the transport it was started on,
/// through which callers' requests go past rmcp's worker once the handshake is done
/// ([`super::direct`]).
pub(super) struct Session {
    pub(super) peer: Peer<RoleClient>,
    http: Option<http::FederatedHttp>,
}

/// A caller's own session with a server whose credential is per user.
pub(super) struct UserSession {
    session: Arc<Session>,
    stop: CancellationToken,
    last_used: std::sync::Mutex<std::time::Instant>,
}

/// Ids of the requests sent past rmcp's worker: strings, so they never meet the worker's own
/// numbers on the same session.
static DIRECT_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Per-user sessions idle this long are closed; at most this many are kept per server.
const USER_SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
const USER_SESSIONS_MAX: usize = 1000;

pub(super) enum Transport {
    Http { url: Arc<str> },
    Stdio { command: String, args: Vec<String>, env: Vec<(String, String)>, cwd: Option<PathBuf> },
}

/// Variables a stdio server gets from Warden's environment; everything else it must be given.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];
impl Link {
    /// Starts a session: spawns the process (stdio) or initializes over HTTP. A server whose
    /// answer to `server/discover` fails the start (neither a result nor the error a server of
    /// the older revisions gives, say an empty result) is started again with `initialize`.
    pub(super) async fn connect(&self, owner: Arc<Principal>) -> Result<(RunningService<RoleClient, Watcher>, Session), String> {
        match self.start(Arc::clone(&owner), lifecycle()).await {
            Ok(started) => Ok(started),
            Err(discover) => {
                tracing::debug!(server = %self.server, error = %discover, "server/discover failed; starting with initialize");
                self.start(owner, rmcp::service::ClientLifecycleMode::Initialize).await.map_err(|e| format!("{discover}; then {e}"))
            }
        }
    }

    async fn start(
        &self,
        owner: Arc<Principal>,
        lifecycle: rmcp::service::ClientLifecycleMode,
    ) -> Result<(RunningService<RoleClient, Watcher>, Session), String> {
        let declared = match (&self.transport, &self.turns) {
            (Transport::Http { .. }, _) | (Transport::Stdio { .. }, Some(_)) => self.client_requests.declared(),
            (Transport::Stdio { .. }, None) => rmcp::model::ClientCapabilities::default(),
        };
        let wanted = self.subscribed.wanted(self.per_user, &owner);
        let watcher = Watcher {
            declared,
            server: Arc::from(self.server.as_str()),
            client_requests: self.client_requests,
            current: self.turns.as_ref().map(|t| Arc::clone(&t.current)),
            changed: Arc::clone(&self.changed),
            progress: Arc::clone(&self.progress),
            updates: self.subscribed.updates.get().cloned(),
        };
        match &self.transport {
            Transport::Http { url } => {
                let parking_key = Arc::from(self.parking_key(&owner));
                let client = http::FederatedHttp {
                    upstream: self.upstream.clone(),
                    credential: self.credential.clone(),
                    service: owner,
                    parking_key,
                    max_bytes: self.max_bytes,
                    stash: Arc::clone(&self.stash),
                    endpoint: http::FederatedHttp::endpoint(&self.upstream, url),
                    session: Arc::default(),
                    // A caller's own session is subscribed again by its own task (`user_session`).
                    reinitialized: if self.per_user { Arc::default() } else { Arc::clone(&self.subscribed.reinitialized) },
                };
                let mut config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(Arc::clone(url));
                config.reinit_on_expired_session = true;
                config.max_sse_event_size = self.max_bytes;
                let transport = rmcp::transport::StreamableHttpClientTransport::with_client(client.clone(), config);
                let running = rmcp::service::serve_client_with_lifecycle(watcher, transport, lifecycle).await.map_err(|e| e.to_string())?;
                listen(&running, Arc::clone(&self.changed), wanted);
                let session = Session { peer: running.peer().clone(), http: Some(client) };
                Ok((running, session))
            }
            Transport::Stdio { command, args, env, cwd } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).env_clear();
                for name in INHERITED_ENV {
                    if let Ok(v) = std::env::var(name) {
                        cmd.env(name, v);
                    }
                }
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let transport = super::stdio::Stdio::spawn(cmd, &self.server, self.max_bytes, Arc::clone(&self.stash))
                    .map_err(|e| format!("cannot start {command}: {}", e.kind()))?;
                let running = rmcp::service::serve_client_with_lifecycle(watcher, transport, lifecycle).await.map_err(|e| e.to_string())?;
                listen(&running, Arc::clone(&self.changed), wanted);
                let session = Session { peer: running.peer().clone(), http: None };
                Ok((running, session))
            }
        }
    }

    /// One `tools/call` as `principal`: identity and credential on it (HTTP), within the
    /// timeout; cancelled upstream if the caller goes away first. `param_headers`: the tool's
    /// schema promotes arguments to `Mcp-Param-*` headers (2026-07-28), which rmcp's worker writes.
    async fn call(
        &self,
        name: &str,
        principal: &Principal,
        ctx: &CallContext,
        args: &Map<String, Value>,
        param_headers: bool,
    ) -> ToolOutcome {
        let parked = self.parking_key(principal);
        if let Some(retry_after) = self.upstream.parking.remaining(&parked) {
            return Err(ToolFailure::UpstreamRateLimited { retry_after, status: None });
        }
        let session = self.session_for(principal, ctx).await?;
        let mut generation = None;
        let mut rejected = None;
        for _attempt in 0..2 {
            let mut params = CallToolRequestParams::new(name.to_owned()).with_arguments(args.clone());
            // The trace context in `_meta` too, as the MCP semantic conventions propagate it
            // (a stdio server has no headers).
            if !ctx.traceparent.is_empty() {
                let mut meta = rmcp::model::RequestMetaObject::new();
                meta.0.0.insert("traceparent".into(), Value::String(ctx.traceparent.clone()));
                params.meta = Some(meta);
            }
            // A retried call (2026-07-28): the client's answers to the server's input requests,
            // and the server's own state, as it gave them.
            (params.input_responses, params.request_state) = ctx.input_params();
            let mut request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
            self.offer_capabilities(&mut request, ctx);
            // The caller's logs of this call, at its level (2026-07-28): what the server sends
            // on the call's own stream reaches the caller ([`super::direct`]).
            if let Some(level) = ctx.log_level {
                request.get_meta_mut().set_log_level(level);
            }
            if matches!(self.transport, Transport::Http { .. }) {
                let (headers, g) = self.call_headers(principal, ctx, rejected).await?;
                generation = g;
                request.extensions_mut().insert(headers);
            }
            match self.send(&session, request, ctx, !param_headers).await {
                Ok(ServerResult::CallToolResult(result)) => {
                    let result = match self.stash.take_for(&result) {
                        Some(raw) => ResultBody::Raw(raw),
                        None => ResultBody::Typed(result),
                    };
                    return Ok(ToolResult { result, upstream_status: 200 });
                }
                Ok(ServerResult::InputRequiredResult(input)) => {
                    self.check_input_requests(&input)?;
                    return Ok(ToolResult { result: ResultBody::InputRequired(input), upstream_status: 200 });
                }
                Ok(_) => return Err(ToolFailure::Rpc { code: -32603, message: "unexpected result type".into(), data: None }),
                Err(e) if auth_required(&e) && rejected.is_none() && self.credential.as_ref().is_some_and(|c| c.refreshable()) => {
                    rejected = generation;
                    if rejected.is_none() {
                        return Err(failure(e, self.timeout));
                    }
                }
                Err(e) => {
                    // The server answered 429: the transport parked it.
                    if let Some(retry_after) = self.upstream.parking.remaining(&parked) {
                        return Err(ToolFailure::UpstreamRateLimited { retry_after, status: Some(429) });
                    }
                    return Err(failure(e, self.timeout));
                }
            }
        }
        Err(ToolFailure::Credential(CredentialError::Unhealthy))
    }

    /// What a server's `429` parks: the server, for everyone (a shared or no credential, a
    /// stdio server) or, with a per-user credential, for that user's session only.
    fn parking_key(&self, principal: &Principal) -> String {
        if self.per_user {
            format!("mcp:{}\u{1f}{}\u{1f}{}", self.server, principal.issuer, principal.subject.as_str())
        } else {
            format!("mcp:{}", self.server)
        }
    }

    /// One request other than a tool call (a resource read, a prompt), as `principal`, with
    /// identity and credential on it (HTTP), within the timeout, cancelled upstream if dropped.
    /// What the caller can be asked, as far as this server may ask it, written into the request
    /// (2026-07-28 `_meta`; rmcp's worker writes its own otherwise).
    pub(super) fn offer_capabilities(&self, request: &mut ClientRequest, ctx: &CallContext) {
        if let Some(capabilities) = &ctx.client_capabilities {
            request.get_meta_mut().set_client_capabilities(self.client_requests.allowed(capabilities));
        }
    }

    /// A server's input requests, refused when one asks for what `client_requests` forbids.
    pub(super) fn check_input_requests(&self, input: &rmcp::model::InputRequiredResult) -> Result<(), ToolFailure> {
        match input.input_requests.as_ref().and_then(|r| self.client_requests.forbidden(r)) {
            Some(method) => Err(ToolFailure::ClientRequestForbidden(method)),
            None => Ok(()),
        }
    }

    pub(super) async fn request(
        &self,
        mut request: ClientRequest,
        principal: &Principal,
        ctx: &CallContext,
    ) -> Result<ServerResult, ToolFailure> {
        let session = self.session_for(principal, ctx).await?;
        if matches!(self.transport, Transport::Http { .. }) {
            let (headers, _) = self.call_headers(principal, ctx, None).await?;
            request.extensions_mut().insert(headers);
        }
        self.send(&session, request, ctx, true).await.map_err(|e| failure(e, self.timeout))
    }

    /// The session a request of `principal` goes through: the caller's own with a per-user
    /// credential, else the server's (none while it is down: refused at once).
    pub(super) async fn session_for(&self, principal: &Principal, ctx: &CallContext) -> Result<Arc<Session>, ToolFailure> {
        // Boxed: starting a caller's session (rmcp's handshake) is a large future, and rare.
        if self.per_user {
            Box::pin(self.user_session(principal, ctx)).await
        } else {
            self.session.load_full().ok_or(ToolFailure::ServerUnavailable)
        }
    }

    /// Sends one request within the timeout and waits for its answer: past rmcp's worker on an
    /// established HTTP session ([`super::direct`]), else through it. Dropped before the answer,
    /// the server is sent `notifications/cancelled`; the server's progress goes to
    /// `ctx.progress` while the request runs.
    async fn send(
        &self,
        session: &Session,
        mut request: ClientRequest,
        ctx: &CallContext,
        direct: bool,
    ) -> Result<ServerResult, ServiceError> {
        if let (Some(http), Transport::Http { url }, true) = (&session.http, &self.transport, direct)
            && let Some(state) = http.session.load_full()
        {
            let id = RequestId::String(format!("warden-{}", DIRECT_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).into());
            let token = rmcp::model::ProgressToken(id.clone());
            if ctx.progress.is_some() {
                request.get_meta_mut().set_progress_token(token.clone());
            }
            let headers = super::direct::prepare(&state, &mut request);
            let message = rmcp::model::ClientJsonRpcMessage::request(request, id.clone());
            let guard = CancelOnDrop { peer: Some(session.peer.clone()), id };
            let listeners = super::direct::Listeners {
                changed: &self.changed,
                progress: ctx.progress.as_ref().map(|p| (&token, p)),
                logs: ctx.progress.as_ref().zip(ctx.log_level),
                asker: ctx.asker.as_deref().map(|asker| (asker, self.server.as_str(), &self.client_requests)),
            };
            match tokio::time::timeout(self.timeout, super::direct::send(http, url, &state, &message, headers, &listeners)).await {
                Ok(Some(answer)) => {
                    guard.disarm();
                    return answer;
                }
                // Forgotten by the server, so not done: sent through rmcp's worker, which
                // starts a new session.
                Ok(None) => {
                    guard.disarm();
                    let Some((sent, _)) = message.into_request() else { return Err(ServiceError::UnexpectedResponse) };
                    request = sent;
                }
                // The guard tells the server the request is given up on.
                Err(_) => return Err(ServiceError::Timeout { timeout: self.timeout }),
            }
        }
        // One request at a time (a stdio server, `one_call_at_a_time`): while this one holds
        // the turn, what the server asks of a client is asked of this call's.
        let _turn = match &self.turns {
            Some(turns) => {
                let turn = tokio::time::timeout(self.timeout, turns.turn.lock())
                    .await
                    .map_err(|_| ServiceError::Timeout { timeout: self.timeout })?;
                *turns.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ctx.asker.clone();
                Some((turn, Holding(&turns.current)))
            }
            None => None,
        };
        // Boxed: rmcp's request future is large, and past the worker it is not taken.
        Box::pin(self.through_worker(&session.peer, request, ctx)).await
    }

    /// Sends one request through rmcp's worker (stdio, a forgotten session, a tool with
    /// `Mcp-Param-*` headers) and waits for its answer.
    async fn through_worker(
        &self,
        peer: &Peer<RoleClient>,
        request: ClientRequest,
        ctx: &CallContext,
    ) -> Result<ServerResult, ServiceError> {
        let mut options = PeerRequestOptions::with_timeout(self.timeout);
        // rmcp writes its own client capabilities into every request on a 2026-07-28 session;
        // the caller's, when the request carries them, are written over them.
        if let Some(capabilities) = request.get_meta().client_capabilities() {
            let mut meta = rmcp::model::RequestMetaObject::new();
            meta.set_client_capabilities(capabilities);
            options.meta = Some(meta);
        }
        let handle = peer.send_request_with_option(request, options).await?;
        let guard = CancelOnDrop { peer: Some(peer.clone()), id: handle.id.clone() };
        let progress_key = ctx.progress.as_ref().map(|caller| {
            let key = serde_json::to_string(&handle.progress_token).unwrap_or_default();
            self.progress.insert(key.clone(), caller.clone());
            ProgressGuard { map: &self.progress, key }
        });
        let answer = handle.await_response().await;
        if progress_key.is_some() {
            // rmcp hands each notification to its own task, so reports sent just before the
            // result may still be on their way: let them through before forwarding stops.
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        }
        drop(progress_key);
        guard.disarm();
        answer
    }

    /// The caller's own session, started on first use. The caller's token is checked first, so
    /// an unconnected caller gets the connection request (a URL elicitation), not an error.
    async fn user_session(&self, principal: &Principal, ctx: &CallContext) -> Result<Arc<Session>, ToolFailure> {
        if let Some(credential) = &self.credential {
            credential.resolve(&self.upstream, principal, ctx, None).await.map_err(credential_failure)?;
        }
        let key = principal.key_for("");
        let slot = Arc::clone(self.users.entry(key.clone()).or_default().value());
        let mut session = slot.lock().await;
        if let Some(s) = session.as_ref().filter(|s| !s.session.peer.is_transport_closed()) {
            *s.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
            return Ok(Arc::clone(&s.session));
        }
        let (running, started) = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(Arc::new(principal.clone()))).await {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                tracing::warn!(server = %self.server, error = %e, "a caller's session could not be started");
                return Err(ToolFailure::ServerUnavailable);
            }
            Err(_) => return Err(ToolFailure::ServerUnavailable),
        };
        let started = Arc::new(started);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let service_stop = running.cancellation_token();
        // A session started again (the last one ended), or that rmcp's client starts again in
        // place (the server forgot it): subscribed again to what this caller wants.
        let restarted = session.is_some();
        let reinitialized = started.http.as_ref().map_or_else(Arc::default, |h| Arc::clone(&h.reinitialized));
        let (peer, server, wanted) = (started.peer.clone(), self.server.clone(), self.subscribed.wanted(true, principal));
        tokio::spawn(async move {
            if restarted {
                super::updates::resubscribe(wanted.uris(), &peer, &server).await;
            }
            let done = running.waiting();
            tokio::pin!(done);
            loop {
                tokio::select! {
                    _ = &mut done => return,
                    () = stopped.cancelled() => {
                        service_stop.cancel();
                        let _ = done.await;
                        return;
                    }
                    () = reinitialized.notified() => super::updates::resubscribe(wanted.uris(), &peer, &server).await,
                }
            }
        });
        let last_used = std::sync::Mutex::new(std::time::Instant::now());
        *session = Some(UserSession { session: Arc::clone(&started), stop, last_used });
        drop(session);
        if self.users.len() > USER_SESSIONS_MAX {
            self.evict_oldest(&key);
        }
        // A first session brings the catalog in; later ones keep it fresh.
        self.changed.notify_one();
        Ok(started)
    }

    /// A live caller session, for reading the catalog.
    pub(super) fn any_user_session(&self) -> Option<Arc<Session>> {
        self.users.iter().find_map(|entry| {
            let session = entry.value().try_lock().ok()?;
            session.as_ref().filter(|s| !s.session.peer.is_transport_closed()).map(|s| Arc::clone(&s.session))
        })
    }

    /// Closes caller sessions idle longer than [`USER_SESSION_IDLE`] or already ended.
    pub(super) fn close_idle(&self) {
        self.users.retain(|user, slot| {
            let Ok(session) = slot.try_lock() else { return true };
            let Some(s) = session.as_ref() else { return false };
            // A session that carries the caller's resource subscriptions is not idle.
            let fresh = s.last_used.lock().map(|t| t.elapsed() < USER_SESSION_IDLE).unwrap_or(false) || self.subscribed.any_of(user);
            if fresh && !s.session.peer.is_transport_closed() {
                return true;
            }
            s.stop.cancel();
            false
        });
    }

    /// Closes every caller session (shutdown).
    pub(super) fn close_all(&self) {
        for entry in &self.users {
            if let Ok(session) = entry.value().try_lock()
                && let Some(s) = session.as_ref()
            {
                s.stop.cancel();
            }
        }
    }

    /// Closes the least recently used caller session other than `keep`.
    fn evict_oldest(&self, keep: &str) {
        let oldest = self
            .users
            .iter()
            .filter(|e| e.key() != keep)
            .filter_map(|e| {
                let session = e.value().try_lock().ok()?;
                let at = *session.as_ref()?.last_used.lock().ok()?;
                Some((e.key().clone(), at))
            })
            .min_by_key(|(_, at)| *at);
        if let Some((key, _)) = oldest
            && let Some((_, slot)) = self.users.remove(&key)
            && let Ok(session) = slot.try_lock()
            && let Some(s) = session.as_ref()
        {
            s.stop.cancel();
        }
    }

    /// The headers a call goes out with: the caller's identity, then Warden's credential.
    async fn call_headers(
        &self,
        principal: &Principal,
        ctx: &CallContext,
        rejected: Option<u64>,
    ) -> Result<(http::CallHeaders, Option<u64>), ToolFailure> {
        let mut headers = ::http::HeaderMap::new();
        inject_identity(&mut headers, self.upstream.identity_headers(), principal, ctx);
        if let Some(audience) = &self.audience {
            self.upstream.assert_identity(&mut headers, principal, ctx, audience).await.map_err(|_| ToolFailure::AssertionUnavailable)?;
        }
        let mut uri = None;
        let mut generation = None;
        if let Some(credential) = &self.credential {
            let (secret, g) = credential.resolve(&self.upstream, principal, ctx, rejected).await.map_err(credential_failure)?;
            generation = g;
            if credential.query_param().is_some()
                && let Transport::Http { url } = &self.transport
                && let Ok(mut parsed) = url::Url::parse(url)
            {
                credential.apply_parts(&mut headers, Some(&mut parsed), &secret);
                uri = Some(Arc::from(parsed.as_str()));
            } else {
                credential.apply_parts(&mut headers, None, &secret);
            }
        }
        Ok((http::CallHeaders { headers, uri }, generation))
    }
}

/// The principal a server session's own requests are made as (initialize, tools/list): no
/// caller's, so no identity headers.
pub(super) fn service_principal() -> Principal {
    Principal {
        subject: crate::identity::Subject::gateway(),
        issuer: String::new(),
        client_id: None,
        scopes: Default::default(),
        roles: Vec::new(),
        tenant: None,
        claims: Map::new(),
        tools: None,
        token: None,
    }
}

fn credential_failure(e: CredentialError) -> ToolFailure {
    match e {
        CredentialError::ConnectionRequired { url, message } => {
            ToolFailure::ConnectionRequired(crate::tools::ConnectRequired { url, message })
        }
        e => ToolFailure::Credential(e),
    }
}

/// Whether the server refused Warden's credential (HTTP 401).
fn auth_required(e: &ServiceError) -> bool {
    let ServiceError::TransportSend(e) = e else { return false };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(StreamableHttpErrorRef::AuthRequired(_)) = s.downcast_ref::<StreamableHttpErrorRef>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The most bytes of a federated server's error data passed on to the caller.
const MAX_ERROR_DATA: usize = 4096;

type StreamableHttpErrorRef = rmcp::transport::streamable_http_client::StreamableHttpError<reqwest::Error>;

fn failure(e: ServiceError, timeout: Duration) -> ToolFailure {
    match e {
        ServiceError::McpError(error) => match Unreadable::from_error(&error) {
            Some(Unreadable::TooLarge) => ToolFailure::TooLarge,
            Some(Unreadable::Invalid(why)) => ToolFailure::InvalidResponse(why),
            None => {
                // The server's data goes with its error when it is small (a -32021's
                // `requiredCapabilities`, a -32602's `uri`).
                let data = error.data.filter(|d| serde_json::to_vec(d).is_ok_and(|b| b.len() <= MAX_ERROR_DATA)).map(Box::new);
                ToolFailure::Rpc { code: error.code.0, message: crate::audit::bounded(&error.message).into_owned(), data }
            }
        },
        ServiceError::Timeout { .. } => ToolFailure::Timeout(timeout),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => ToolFailure::Unreachable,
        ServiceError::Cancelled { .. } => ToolFailure::ServerUnavailable,
        _ => ToolFailure::Unreachable,
    }
}

/// Sends `notifications/cancelled` for a call whose caller went away before its answer.
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: rmcp::model::RequestId,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.peer = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else { return };
        let id = self.id.clone();
        tokio::spawn(async move {
            let params = rmcp::model::CancelledNotificationParam::new(Some(id), Some("the client went away".into()));
            let _ = peer.notify_cancelled(params).await;
        });
    }
}

/// A tool of a federated server.
pub(super) struct FederatedTool {
    pub(super) link: Arc<Link>,
    pub(super) upstream_name: String,
    /// Its schema promotes arguments to `Mcp-Param-*` headers (`x-mcp-header`).
    pub(super) param_headers: bool,
}

impl ToolBackend for FederatedTool {
    fn credential_name(&self) -> Option<&str> {
        self.link.credential.as_ref().map(|c| c.name.as_str())
    }

    fn delegates(&self) -> bool {
        self.link.credential.as_deref().is_some_and(Credential::delegates)
    }

    fn call<'a>(
        &'a self,
        _upstream: &'a Upstream,
        principal: &'a Principal,
        ctx: &'a CallContext,
        args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(self.link.call(&self.upstream_name, principal, ctx, args, self.param_headers))
    }

    fn client_span(&self, parent: &tracing::Span, _tool: &str) -> tracing::Span {
        let url = match &self.link.transport {
            Transport::Http { url } => Some(&**url),
            Transport::Stdio { .. } => None,
        };
        crate::telemetry::traces::mcp_client_span(parent, &self.link.server, &self.upstream_name, url)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The one tool a per-user server offers before any caller has connected: calling it asks the
/// caller to connect their account, which brings the server's catalog in.
pub(super) fn connect_tool(server: &Server) -> Option<Arc<Tool>> {
    let description = format!(
        "Connect your account to use the tools of {}: call this, then open the link you are given. The tools are listed once connected.",
        server.name
    );
    let schema = serde_json::json!({"type": "object", "properties": {}});
    let spec = ToolSpec {
        name: format!("{}connect", server.prefix),
        description: rmcp::model::Tool::new("connect", description, Arc::new(schema.as_object().cloned().unwrap_or_default())),
        scopes: server.scopes.clone(),
        tags: server.tags.clone(),
        metadata: server.metadata.clone(),
        server: Some(server.name.clone()),
        // Connecting is not the server's work: it spends no quota.
        cost: 0,
        audit_arguments: crate::tools::config::AuditArguments::None,
        backend: Box::new(ConnectTool { link: Arc::clone(&server.link) }),
    };
    Tool::from_spec(spec)
        .map(Arc::new)
        .map_err(|why| tracing::error!(server = %server.name, %why, "the connect tool could not be built"))
        .ok()
}

/// `{prefix}connect`: starts the caller's session, or asks them to connect first.
struct ConnectTool {
    link: Arc<Link>,
}

impl ToolBackend for ConnectTool {
    fn credential_name(&self) -> Option<&str> {
        self.link.credential.as_ref().map(|c| c.name.as_str())
    }

    fn call<'a>(
        &'a self,
        _upstream: &'a Upstream,
        principal: &'a Principal,
        ctx: &'a CallContext,
        _args: &'a Map<String, Value>,
    ) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(async move {
            self.link.user_session(principal, ctx).await?;
            let text = format!("Connected to {}: list the tools again to see its tools.", self.link.server);
            Ok(ToolResult {
                result: ResultBody::Typed(rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)])),
                upstream_status: 200,
            })
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Stops forwarding a call's progress when the call ends, however it ends.
struct ProgressGuard<'a> {
    map: &'a dashmap::DashMap<String, tokio::sync::mpsc::Sender<crate::upstream::Report>>,
    key: String,
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        self.map.remove(&self.key);
    }
}
