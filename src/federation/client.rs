//! What Warden's client is toward a federated server: who it says it is and what it declares
//! (on 2026-07-28 none of its own: a caller's are passed per request; on the older revisions
//! what the server may ask callers, over HTTP), how a session starts (`server/discover` first, else `initialize`), and what it hears besides
//! answers (progress for a call, list changes, also over `subscriptions/listen` on a 2026-07-28
//! session). `Link` starts sessions with these; `direct` answers as this client does.

use std::sync::Arc;
use std::time::Duration;

use rmcp::service::{RoleClient, RunningService};
use tokio::sync::Notify;

/// Answers the server's notifications: a changed tool, prompt or resource list triggers a
/// catalog refresh; a call's progress goes to its caller; a resource update goes to the front.
#[derive(Clone)]
pub(super) struct Watcher {
    /// What `initialize` declares (see [`super::config::ClientRequests::declared`]).
    pub(super) declared: rmcp::model::ClientCapabilities,
    pub(super) changed: Arc<Notify>,
    pub(super) progress: Arc<dashmap::DashMap<String, tokio::sync::mpsc::Sender<crate::upstream::Report>>>,
    /// The server's name.
    pub(super) server: Arc<str>,
    /// What the server may ask of callers.
    pub(super) client_requests: super::config::ClientRequests,
    /// Over stdio, one request at a time: the asker of the call in progress, to which a request
    /// the server makes belongs (`None` otherwise: such a request cannot be attributed).
    pub(super) current: Option<Arc<super::link::CurrentAsker>>,
    /// Where a resource update goes.
    pub(super) updates: Option<tokio::sync::broadcast::Sender<super::updates::ResourceUpdated>>,
}

impl Watcher {
    /// The server said a resource changed: to the front, which decides who hears of it.
    fn updated(&self, uri: String) {
        if let Some(updates) = &self.updates {
            // Nobody listening (no subscriber yet) is no failure.
            let _ = updates.send(super::updates::ResourceUpdated { server: Arc::clone(&self.server), uri });
        }
    }

    /// A request the server makes of a client outside a call's own stream: the current call's
    /// client's answer, when one call at a time makes it that call's; refused otherwise.
    async fn relay<P: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        params: Option<&P>,
    ) -> Result<R, rmcp::ErrorData> {
        let asker = self.current.as_ref().and_then(|c| c.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone());
        let Some(asker) = asker else { return Err(unattributed(method)) };
        let params = params.map(|p| serde_json::to_value(p).unwrap_or_default());
        let answer = asker.ask(self.client_requests.ask(&self.server, method, params)).await?;
        serde_json::from_value(answer)
            .map_err(|_| rmcp::ErrorData::invalid_params(format!("{method}: the client's answer cannot be read"), None))
    }
}

impl rmcp::ClientHandler for Watcher {
    async fn on_progress(&self, params: rmcp::model::ProgressNotificationParam, _context: rmcp::service::NotificationContext<RoleClient>) {
        let key = serde_json::to_string(&params.progress_token).unwrap_or_default();
        if let Some(caller) = self.progress.get(&key) {
            // A caller that cannot keep up misses a report, never stalls the session.
            let progress = crate::upstream::Progress { progress: params.progress, total: params.total, message: params.message };
            let _ = caller.try_send(crate::upstream::Report::Progress(progress));
        }
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }

    async fn on_resource_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.updated(params.uri);
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        // Over HTTP, what the server may ask callers: its requests during a call come on the
        // call's own stream, and reach that call's client (`direct`); over stdio nothing, since
        // a request on a shared pipe says nothing of the call it belongs to.
        let mut info = rmcp::model::ClientConfig::default();
        // What `initialize` names (rmcp's default, 2026-07-28, has no handshake).
        info.protocol_version = INITIALIZE_REVISION;
        info.capabilities = self.declared.clone();
        info.client_info = client_info();
        info
    }

    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        self.relay("sampling/createMessage", Some(&params)).await
    }

    #[allow(deprecated)]
    async fn list_roots(
        &self,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        self.relay::<(), _>("roots/list", None).await
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        self.relay("elicitation/create", Some(&request)).await
    }
}

/// Who Warden's client says it is to federated servers.
pub(super) fn client_info() -> rmcp::model::Implementation {
    rmcp::model::Implementation::new("warden", env!("CARGO_PKG_VERSION"))
}

/// How a session with a federated server starts: `server/discover` first, so a server that
/// speaks 2026-07-28 is spoken to in it (per-request `_meta`, multi round-trip results); a server
/// that reports itself legacy (or does not answer the probe) is initialized with 2025-11-25, the
/// newest revision that has an `initialize` handshake.
pub(super) fn lifecycle() -> rmcp::service::ClientLifecycleMode {
    rmcp::service::ClientLifecycleMode::Auto {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
        legacy_version: Some(INITIALIZE_REVISION),
    }
}

/// The revision Warden's `initialize` names: the newest that has the handshake.
const INITIALIZE_REVISION: rmcp::model::ProtocolVersion = rmcp::model::ProtocolVersion::V_2025_11_25;

/// Whether a session speaks 2026-07-28 (no standalone stream, no `resources/subscribe`).
pub(super) fn modern(peer: &rmcp::service::Peer<RoleClient>) -> bool {
    peer.peer_info().is_some_and(|info| info.protocol_version >= rmcp::model::ProtocolVersion::V_2026_07_28)
}

/// On a 2026-07-28 session, which has no standalone stream, what the server says of its lists
/// and of the resources Warden's callers subscribed to comes on a `subscriptions/listen` request
/// held open for the session's life (reopened after a pause if it ends while the session lives):
/// a list change wakes the catalog refresh, as `list_changed` does on the older revisions'
/// stream; a resource update goes to the front. When the URIs `wanted` change, a listen with
/// the new filter is opened before the old one is cancelled, so no update falls between them.
pub(super) fn listen(running: &RunningService<RoleClient, Watcher>, changed: Arc<Notify>, mut wanted: super::updates::Wanted) {
    let peer = running.peer().clone();
    if !modern(&peer) {
        return;
    }
    let watcher = running.service().clone();
    // The session's end closes its transport, which ends the listening too.
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(1);
        // The subscription in force, kept until its successor is acknowledged.
        let mut current: Option<rmcp::service::Subscription> = None;
        while !peer.is_transport_closed() {
            wanted.changes.mark_unchanged();
            let uris = wanted.uris();
            let mut filter =
                rmcp::model::SubscriptionFilter::builder().tools_list_changed().prompts_list_changed().resources_list_changed().build();
            filter.resource_subscriptions = (!uris.is_empty()).then(|| uris.clone());
            match peer.listen(filter).await {
                // The server does not offer it (-32601, say): the refresh interval stands in.
                Err(rmcp::ServiceError::McpError(_)) => return,
                Err(_) => current = None,
                Ok(subscription) => {
                    pause = Duration::from_secs(1);
                    // The previous one, if any, is cancelled as it is dropped.
                    let subscription = current.insert(subscription);
                    loop {
                        tokio::select! {
                            heard = subscription.next() => match heard {
                                Ok(Some(
                                    rmcp::model::ServerNotification::ToolListChangedNotification(_)
                                    | rmcp::model::ServerNotification::PromptListChangedNotification(_)
                                    | rmcp::model::ServerNotification::ResourceListChangedNotification(_),
                                )) => changed.notify_one(),
                                Ok(Some(rmcp::model::ServerNotification::ResourceUpdatedNotification(updated))) => {
                                    watcher.updated(updated.params.uri);
                                }
                                Ok(Some(_)) => {}
                                Ok(None) | Err(_) => break,
                            },
                            seen = wanted.changes.changed() => match seen {
                                Ok(()) if wanted.uris() != uris => break,
                                Ok(()) => {}
                                // Never told again (the server was removed): keep listening as is.
                                Err(_) => std::future::pending::<()>().await,
                            },
                        }
                    }
                    // The URIs changed: listen again at once, with the old one still open.
                    if subscription.end().is_none() && !peer.is_transport_closed() && wanted.uris() != uris {
                        continue;
                    }
                    current = None;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    });
}

/// A server's request to a client that Warden cannot attribute to a call (it came outside a
/// call's own stream: over stdio, on the standalone stream), or one made during a call whose
/// client cannot be asked: JSON-RPC "method not found", as for an undeclared capability.
pub(super) fn unattributed(method: &'static str) -> rmcp::ErrorData {
    rmcp::ErrorData::new(
        rmcp::model::ErrorCode::METHOD_NOT_FOUND,
        format!("{method}: not relayed; Warden relays a request to the client only on the stream of the call it belongs to"),
        None,
    )
}
