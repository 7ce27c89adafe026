#![allow(
    deprecated,
    reason = "resources/subscribe is the older revisions' (rmcp marks it legacy-only, 2026-07-28 having subscriptions/listen): what this serves"
)]
//! Resource subscriptions toward the federated servers: Warden subscribes a server to a URI
//! once, however many of its callers want it (a count per URI, per session: the server's shared
//! one, or a caller's own with a per-user credential) — with `resources/subscribe` on the older
//! revisions, and on a session of 2026-07-28 (which has no such method) by putting the URI in the
//! filter of the `subscriptions/listen` request Warden holds open toward the server
//! ([`super::client::listen`], reopened with the new filter when the URIs change). A session
//! started again is subscribed again. Every `notifications/resources/updated` a server sends goes
//! to the front as a [`ResourceUpdated`], which decides who may hear of it
//! (`mcp::subscriptions`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::ClientRequest;

use super::{Federation, Source};
use crate::identity::Principal;
use crate::tools::ToolFailure;
use crate::upstream::CallContext;

/// A server said a resource changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUpdated {
    pub server: Arc<str>,
    pub uri: String,
}

/// Updates go through a channel of this many; a front that falls behind misses the oldest.
const UPDATES: usize = 1024;

/// What a server is subscribed to for Warden's callers, and where its updates go.
pub(super) struct Subscribed {
    /// By URI (with a per-user credential, by caller and URI): how many subscribers want it.
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// Bumped when a URI is first wanted or last released: a 2026-07-28 session's listening
    /// then asks for the new set.
    wanted: tokio::sync::watch::Sender<u64>,
    /// Set when the server is put in force by the federation.
    pub(super) updates: std::sync::OnceLock<tokio::sync::broadcast::Sender<ResourceUpdated>>,
    /// Told when rmcp's client starts the shared session again in place (`http`).
    pub(super) reinitialized: Arc<tokio::sync::Notify>,
}

impl Default for Subscribed {
    fn default() -> Self {
        Self {
            counts: Arc::default(),
            wanted: tokio::sync::watch::Sender::new(0),
            updates: std::sync::OnceLock::new(),
            reinitialized: Arc::default(),
        }
    }
}

impl Subscribed {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        locked(&self.counts)
    }

    /// The URIs the server's shared session is subscribed to.
    pub(super) fn shared(&self) -> Vec<String> {
        shared(&self.counts())
    }

    /// What one session (the shared one; with a per-user credential, `owner`'s) is to be
    /// subscribed to, now and as it changes.
    pub(super) fn wanted(&self, per_user: bool, owner: &Principal) -> Wanted {
        Wanted { counts: Arc::clone(&self.counts), user: per_user.then(|| key(true, owner, "")), changes: self.wanted.subscribe() }
    }

    /// One subscriber fewer of `key`: whether it was the last.
    fn release(&self, key: &str) -> bool {
        let mut counts = self.counts();
        match counts.get_mut(key) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                counts.remove(key);
                true
            }
            None => false,
        }
    }

    fn bump(&self) {
        self.wanted.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether the caller whose per-user session key is `user` (`Principal::key_for("")`) is
    /// subscribed to anything: its session is then kept open, idle or not.
    pub(super) fn any_of(&self, user: &str) -> bool {
        self.counts().keys().any(|k| k.starts_with(user))
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shared(counts: &HashMap<String, usize>) -> Vec<String> {
    counts.keys().filter(|k| !k.contains('\n')).cloned().collect()
}

/// What one session is to be subscribed to: read when it starts (again), and by a 2026-07-28
/// session's listening, which asks the server for these URIs, and again whenever they change.
pub(super) struct Wanted {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// The caller's key prefix on a per-user session; `None` on the shared one.
    user: Option<String>,
    pub(super) changes: tokio::sync::watch::Receiver<u64>,
}

impl Wanted {
    /// The URIs, sorted.
    pub(super) fn uris(&self) -> Vec<String> {
        let counts = locked(&self.counts);
        let mut uris = match &self.user {
            Some(prefix) => counts.keys().filter_map(|k| k.strip_prefix(prefix.as_str())).map(str::to_owned).collect(),
            None => shared(&counts),
        };
        uris.sort_unstable();
        uris
    }
}

/// The channel every server's updates go into.
pub(super) fn channel() -> tokio::sync::broadcast::Sender<ResourceUpdated> {
    tokio::sync::broadcast::channel(UPDATES).0
}

/// The key of a subscription: the URI on a shared session, the caller and the URI on theirs.
fn key(per_user: bool, principal: &Principal, uri: &str) -> String {
    if per_user { principal.key_for(uri) } else { uri.to_owned() }
}

impl Federation {
    /// Every server's `notifications/resources/updated`, from now on.
    pub fn resource_updates(&self) -> tokio::sync::broadcast::Receiver<ResourceUpdated> {
        self.updates.subscribe()
    }

    /// One more subscriber of `uri` at the server `source` names: the server is asked
    /// (`resources/subscribe`, on the session `principal`'s requests go through) if it is the
    /// first. Refused by the server: counted for nobody.
    pub async fn subscribe(&self, source: &Source, uri: &str, principal: &Principal) -> Result<(), ToolFailure> {
        let link = &source.server.link;
        let key = key(link.per_user, principal, uri);
        let first = {
            let mut counts = link.subscribed.counts();
            let count = counts.entry(key.clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if !first {
            return Ok(());
        }
        let asked = match link.listens(principal).await {
            // The session's listening asks for it from now on.
            Ok(true) => {
                link.subscribed.bump();
                Ok(())
            }
            Ok(false) => {
                let params = rmcp::model::SubscribeRequestParams::new(uri);
                let request = ClientRequest::SubscribeRequest(rmcp::model::SubscribeRequest::new(params));
                link.request(request, principal, &CallContext::default()).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        if asked.is_err() {
            link.subscribed.release(&key);
        }
        asked
    }

    /// One subscriber fewer of `uri` at `server`: the server is told (`resources/unsubscribe`)
    /// when it was the last.
    pub async fn unsubscribe(&self, server: &str, uri: &str, principal: &Principal) {
        let Some(server) = self.servers.load().iter().find(|s| s.name == server).cloned() else { return };
        let link = &server.link;
        let key = key(link.per_user, principal, uri);
        if !link.subscribed.release(&key) {
            return;
        }
        if link.listens(principal).await.unwrap_or(false) {
            // The session's listening no longer asks for it.
            link.subscribed.bump();
        } else {
            let params = rmcp::model::UnsubscribeRequestParams::new(uri);
            let request = ClientRequest::UnsubscribeRequest(rmcp::model::UnsubscribeRequest::new(params));
            if let Err(e) = link.request(request, principal, &CallContext::default()).await {
                tracing::debug!(server = %server.name, error = %e.code(), "a federated server's unsubscribe failed");
            }
        }
    }
}

/// A session just started again: the server is subscribed again to `uris`, what Warden's
/// callers want of it on that session (a new session knows nothing of the old one's).
pub(super) async fn resubscribe(uris: Vec<String>, peer: &rmcp::service::Peer<rmcp::service::RoleClient>, server: &str) {
    // A 2026-07-28 session's listening asks for them itself.
    if super::client::modern(peer) {
        return;
    }
    for uri in uris {
        let request = ClientRequest::SubscribeRequest(rmcp::model::SubscribeRequest::new(rmcp::model::SubscribeRequestParams::new(&uri)));
        if let Err(e) = peer.send_request(request).await {
            tracing::warn!(server, uri = %crate::audit::bounded(&uri), error = %e, "a federated server could not be subscribed again");
        }
    }
}

impl super::link::Link {
    /// Whether the session `principal`'s requests go through speaks 2026-07-28, where resource
    /// subscriptions travel in the filter Warden listens with. A server of that revision that
    /// does not offer subscriptions is refused here, as the older revisions' server refuses
    /// `resources/subscribe` (-32601).
    async fn listens(&self, principal: &Principal) -> Result<bool, ToolFailure> {
        let session = self.session_for(principal, &CallContext::default()).await?;
        if !super::client::modern(&session.peer) {
            return Ok(false);
        }
        let offered = session.peer.peer_info().and_then(|info| info.capabilities.resources.as_ref().and_then(|r| r.subscribe));
        if offered != Some(true) {
            let message = "resource subscriptions: the server does not offer them".to_owned();
            return Err(ToolFailure::Rpc { code: rmcp::model::ErrorCode::METHOD_NOT_FOUND.0, message, data: None });
        }
        Ok(true)
    }
}
