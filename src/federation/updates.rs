#![allow(
    deprecated,
    reason = "resources/subscribe is the older revisions' (rmcp marks it legacy-only, 2026-07-28 having subscriptions/listen): what this serves"
)]
//! Resource subscriptions toward the federated servers (the older revisions'
//! `resources/subscribe`): Warden subscribes a server to a URI once, however many of its callers
//! want it (a count per URI, per session: the server's shared one, or a caller's own with a
//! per-user credential), subscribes a shared session again when it is started again, and hands
//! every `notifications/resources/updated` a server sends to the front as a [`ResourceUpdated`],
//! which decides who may hear of it (`mcp::subscriptions`).

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
    counts: Mutex<HashMap<String, usize>>,
    /// Set when the server is put in force by the federation.
    pub(super) updates: std::sync::OnceLock<tokio::sync::broadcast::Sender<ResourceUpdated>>,
    /// Told when rmcp's client starts the shared session again in place (`http`).
    pub(super) reinitialized: Arc<tokio::sync::Notify>,
}

impl Default for Subscribed {
    fn default() -> Self {
        Self { counts: Mutex::default(), updates: std::sync::OnceLock::new(), reinitialized: Arc::default() }
    }
}

impl Subscribed {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The URIs the server's shared session is subscribed to.
    pub(super) fn shared(&self) -> Vec<String> {
        self.counts().keys().filter(|k| !k.contains('\n')).cloned().collect()
    }

    /// Whether the caller whose per-user session key is `user` (issuer and subject) is
    /// subscribed to anything: its session is then kept open, idle or not.
    pub(super) fn any_of(&self, user: &str) -> bool {
        let prefix = format!("{user}\n");
        self.counts().keys().any(|k| k.starts_with(&prefix))
    }

    /// The URIs a caller's own session (with a per-user credential) is subscribed to.
    pub(super) fn of(&self, principal: &Principal) -> Vec<String> {
        let prefix = key(true, principal, "");
        self.counts().keys().filter_map(|k| k.strip_prefix(&prefix)).map(str::to_owned).collect()
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
        let request = ClientRequest::SubscribeRequest(rmcp::model::SubscribeRequest::new(rmcp::model::SubscribeRequestParams::new(uri)));
        let asked = link.request(request, principal, &CallContext::default()).await;
        if asked.is_err() {
            let mut counts = link.subscribed.counts();
            if let Some(count) = counts.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
        asked.map(|_| ())
    }

    /// One subscriber fewer of `uri` at `server`: the server is told (`resources/unsubscribe`)
    /// when it was the last.
    pub async fn unsubscribe(&self, server: &str, uri: &str, principal: &Principal) {
        let Some(server) = self.servers.load().iter().find(|s| s.name == server).cloned() else { return };
        let link = &server.link;
        let key = key(link.per_user, principal, uri);
        let last = {
            let mut counts = link.subscribed.counts();
            match counts.get_mut(&key) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    counts.remove(&key);
                    true
                }
                None => false,
            }
        };
        if last {
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
    for uri in uris {
        let request = ClientRequest::SubscribeRequest(rmcp::model::SubscribeRequest::new(rmcp::model::SubscribeRequestParams::new(&uri)));
        if let Err(e) = peer.send_request(request).await {
            tracing::warn!(server, uri = %crate::audit::bounded(&uri), error = %e, "a federated server could not be subscribed again");
        }
    }
}
