//! Resource subscriptions: the older revisions' (`resources/subscribe`, `resources/unsubscribe`,
//! and the session's own stream, a GET with its `Mcp-Session-Id`, on which
//! `notifications/resources/updated` reach it) and 2026-07-28's (`subscriptions/listen` with
//! `resourceSubscriptions`: the request's own stream, each notification tagged with its
//! subscription id, the subscriptions released when the stream ends).
//!
//! A subscription belongs to a session ([`super::sessions`]) and lives in the memory of the
//! replica that served it, as the session's log level does. Subscribing a URI that a federated
//! server offers to this caller subscribes that server (once for all subscribers,
//! `federation::updates`); a URI no server offers this caller is remembered and nothing is
//! asked (a caller learns nothing of what it may not see). Every update is checked against
//! policy when it arrives, with the caller's facts and the time of delivery: it reaches a
//! subscriber only if the caller may read that resource from the server that sent it then.
//!
//! Bounded: at most [`MAX_SESSIONS`] sessions with subscriptions and [`MAX_URIS`] URIs each; a
//! session unseen for [`IDLE`] and without an open stream is forgotten (its upstream
//! subscriptions released) when another subscribes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};

use super::{Admitted, Mcp};
use crate::error::GatewayError;
use crate::federation::ResourceUpdated;
use crate::identity::Principal;
use crate::policy::RequestFacts;

pub const MAX_SESSIONS: usize = 10_000;
pub const MAX_URIS: usize = 100;
pub const IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// Every session's subscriptions.
#[derive(Default)]
pub struct Subscriptions {
    sessions: dashmap::DashMap<String, Arc<Subscriber>>,
    /// The task that hands the federation's updates to subscribers, once started.
    fan_out: std::sync::OnceLock<()>,
}

struct Subscriber {
    principal: Arc<Principal>,
    /// The facts of the session's last subscribe: policy sees them at delivery, with its time.
    facts: Mutex<RequestFacts>,
    /// Each URI, with the server subscribed for it (`None`: none offered it to this caller).
    uris: Mutex<HashMap<String, Option<String>>>,
    /// The session's open stream, if any.
    stream: Mutex<Option<tokio::sync::mpsc::Sender<bytes::Bytes>>>,
    last_seen: Mutex<Instant>,
    /// A `subscriptions/listen` stream's subscription id, which its notifications carry.
    tag: Option<serde_json::Value>,
    /// The list changes it hears of: tools, prompts, resources (a session's stream: all).
    lists: [bool; 3],
}

impl Subscriber {
    /// A session's: no URI yet, every list change, `stream` if it has one open.
    fn session(principal: &Arc<Principal>, facts: &RequestFacts, stream: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>) -> Self {
        Self {
            principal: Arc::clone(principal),
            facts: Mutex::new(facts.clone()),
            uris: Mutex::default(),
            stream: Mutex::new(stream),
            last_seen: Mutex::new(Instant::now()),
            tag: None,
            lists: [true; 3],
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").field("sessions", &self.sessions.len()).finish_non_exhaustive()
    }
}

/// `resources/subscribe` of `uri` in `session`: the server that offers it to this caller is
/// subscribed (its refusal is the caller's error); the server's name, if one was.
pub async fn subscribe(mcp: &Arc<Mcp>, a: &Admitted, session: &str, uri: &str) -> Result<Option<String>, GatewayError> {
    start_fan_out(mcp);
    let subs = &mcp.subscriptions;
    forget_idle(mcp).await;
    let key = a.principal.key_for(session);
    if !subs.sessions.contains_key(&key) && subs.sessions.len() >= MAX_SESSIONS {
        return Err(GatewayError::InvalidRequest("too many sessions with resource subscriptions on this replica"));
    }
    let subscriber =
        Arc::clone(subs.sessions.entry(key).or_insert_with(|| Arc::new(Subscriber::session(&a.principal, &a.facts, None))).value());
    *locked(&subscriber.facts) = a.facts.clone();
    *locked(&subscriber.last_seen) = Instant::now();
    {
        let uris = locked(&subscriber.uris);
        if uris.contains_key(uri) {
            return Ok(uris.get(uri).cloned().flatten());
        }
        if uris.len() >= MAX_URIS {
            return Err(GatewayError::InvalidRequest("too many resource subscriptions in this session"));
        }
    }
    let policy = mcp.policy.load_full();
    let source = mcp.federation.locate_resource(uri, |facts| policy.visible(&a.principal, facts, &a.facts));
    let server = match &source {
        Some(source) => {
            mcp.federation
                .subscribe(source, uri, &a.principal)
                .await
                .map_err(|failure| GatewayError::SourceFailed(failure.code(), crate::error::source_failure_text(&failure)))?;
            Some(source.server().to_owned())
        }
        None => None,
    };
    locked(&subscriber.uris).insert(uri.to_owned(), server.clone());
    Ok(server)
}

/// `resources/unsubscribe` of `uri` in `session`: the server subscribed for it is released.
pub async fn unsubscribe(mcp: &Arc<Mcp>, a: &Admitted, session: &str, uri: &str) -> Option<String> {
    let subscriber = mcp.subscriptions.sessions.get(&a.principal.key_for(session)).map(|s| Arc::clone(s.value()))?;
    let server = locked(&subscriber.uris).remove(uri).flatten()?;
    mcp.federation.unsubscribe(&server, uri, &a.principal).await;
    Some(server)
}

/// The session's own stream (a GET with its `Mcp-Session-Id`): the resource updates it may
/// hear, as SSE events. A second stream replaces the first.
pub fn stream(mcp: &Arc<Mcp>, principal: &Arc<Principal>, facts: &RequestFacts, session: &str) -> Response {
    start_fan_out(mcp);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let key = principal.key_for(session);
    match mcp.subscriptions.sessions.get(&key) {
        Some(subscriber) => *locked(&subscriber.stream) = Some(tx),
        None if mcp.subscriptions.sessions.len() < MAX_SESSIONS => {
            mcp.subscriptions.sessions.insert(key, Arc::new(Subscriber::session(principal, facts, Some(tx))));
        }
        // Nothing will ever be sent on it: the stream stays open and silent.
        None => drop(tx),
    }
    let events =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|event| (Ok::<_, std::convert::Infallible>(event), rx)) });
    // Shutdown ends it, so that draining does not wait for a stream that never ends.
    let events = futures::StreamExt::take_until(events, mcp.closing.clone().cancelled_owned());
    let mut response = Response::new(Body::from_stream(events));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Starts, once, the task that hands the federation's resource updates to subscribers. It holds
/// the endpoint weakly: it ends with it.
fn start_fan_out(mcp: &Arc<Mcp>) {
    mcp.subscriptions.fan_out.get_or_init(|| {
        use tokio::sync::broadcast::error::RecvError;
        let mut updates = mcp.federation.resource_updates();
        let mut changes = mcp.tools.changes();
        let mcp = Arc::downgrade(mcp);
        tokio::spawn(async move {
            loop {
                let heard = tokio::select! {
                    update = updates.recv() => update.map(Heard::Updated),
                    change = changes.recv() => change.map(Heard::Changed),
                };
                match heard {
                    Ok(heard) => match Weak::upgrade(&mcp) {
                        Some(mcp) => deliver(&mcp, &heard),
                        None => return,
                    },
                    Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "notifications were dropped: subscribers fell behind"),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    });
}

/// What the fan-out heard.
enum Heard {
    Updated(ResourceUpdated),
    Changed(crate::tools::Changed),
}

/// A notification as one SSE event, tagged with a `subscriptions/listen` stream's id.
fn event(method: &str, params: serde_json::Value, tag: Option<&serde_json::Value>) -> bytes::Bytes {
    let mut params = params;
    if let Some(tag) = tag {
        params["_meta"] = serde_json::json!({SUBSCRIPTION_ID: tag});
    }
    let message = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params});
    super::dispatch::sse_data(&message.to_string())
}

/// A list change to every stream that hears of it; a resource update to every session
/// subscribed to its URI whose caller may read it from that server now (policy with the
/// caller's facts, at this time).
fn deliver(mcp: &Mcp, heard: &Heard) {
    let update = match heard {
        Heard::Updated(update) => update,
        Heard::Changed(change) => {
            let lists: &[(usize, &str)] = match change {
                crate::tools::Changed::Tools => &[(0, "notifications/tools/list_changed")],
                crate::tools::Changed::ResourcesAndPrompts => {
                    &[(1, "notifications/prompts/list_changed"), (2, "notifications/resources/list_changed")]
                }
            };
            for entry in &mcp.subscriptions.sessions {
                let subscriber = entry.value();
                let Some(stream) = locked(&subscriber.stream).clone() else { continue };
                for (list, method) in lists {
                    if subscriber.lists[*list] {
                        let _ = stream.try_send(event(method, serde_json::json!({}), subscriber.tag.as_ref()));
                    }
                }
            }
            return;
        }
    };
    let policy = mcp.policy.load_full();
    let untagged = event("notifications/resources/updated", serde_json::json!({"uri": update.uri}), None);
    for entry in &mcp.subscriptions.sessions {
        let subscriber = entry.value();
        if locked(&subscriber.uris).get(&update.uri).is_none_or(|server| server.as_deref() != Some(&*update.server)) {
            continue;
        }
        let Some(stream) = locked(&subscriber.stream).clone() else { continue };
        let mut facts = locked(&subscriber.facts).clone();
        facts.time = std::time::SystemTime::now();
        let allowed = |f: &crate::policy::ToolFacts<'_>| policy.visible(&subscriber.principal, f, &facts);
        let readable = mcp.federation.locate_resource(&update.uri, allowed).is_some_and(|source| source.server() == &*update.server);
        if readable {
            // A stream that cannot keep up misses an update, never stalls the others.
            let tagged = |tag| event("notifications/resources/updated", serde_json::json!({"uri": update.uri}), Some(tag));
            let _ = stream.try_send(subscriber.tag.as_ref().map_or_else(|| untagged.clone(), tagged));
        }
    }
}

/// Forgets sessions unseen for [`IDLE`] whose stream is closed, releasing their servers'
/// subscriptions.
async fn forget_idle(mcp: &Mcp) {
    let idle: Vec<(String, Arc<Subscriber>)> = mcp
        .subscriptions
        .sessions
        .iter()
        .filter(|e| {
            let s = e.value();
            locked(&s.last_seen).elapsed() > IDLE && locked(&s.stream).as_ref().is_none_or(tokio::sync::mpsc::Sender::is_closed)
        })
        .map(|e| (e.key().clone(), Arc::clone(e.value())))
        .collect();
    for (key, subscriber) in idle {
        mcp.subscriptions.sessions.remove(&key);
        let uris: Vec<(String, String)> =
            locked(&subscriber.uris).drain().filter_map(|(uri, server)| server.map(|server| (uri, server))).collect();
        for (uri, server) in uris {
            mcp.federation.unsubscribe(&server, &uri, &subscriber.principal).await;
        }
    }
}

/// Where a 2026-07-28 notification names the subscription it belongs to.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// `subscriptions/listen` (2026-07-28): the request's own SSE stream, which starts with the
/// acknowledgement of what Warden accepted of `filter` — the list changes asked for, and
/// resource subscriptions: each URI a server offers this caller, once that server is subscribed
/// (a server that refuses leaves its URI out), and each URI no server offers it, which is kept
/// and never heard of — then carries those list changes and the resource updates the caller
/// may read, each tagged with the request's id. When the stream ends (the client goes, or shutdown, which sends the final
/// result first), its servers are released.
pub async fn listen(mcp: &Arc<Mcp>, a: &Admitted, id: &rmcp::model::RequestId, filter: rmcp::model::SubscriptionFilter) -> Response {
    start_fan_out(mcp);
    let tag = serde_json::to_value(id).unwrap_or_default();
    let policy = mcp.policy.load_full();
    let mut uris = HashMap::new();
    let mut accepted = Vec::new();
    for uri in filter.resource_subscriptions.iter().flatten().take(MAX_URIS) {
        let source = mcp.federation.locate_resource(uri, |facts| policy.visible(&a.principal, facts, &a.facts));
        let server = match source {
            Some(source) => match mcp.federation.subscribe(&source, uri, &a.principal).await {
                Ok(()) => Some(source.server().to_owned()),
                Err(_) => continue,
            },
            None => None,
        };
        uris.insert(uri.clone(), server);
        accepted.push(uri.clone());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let key = a.principal.key_for(format_args!("listen {}", uuid::Uuid::new_v4()));
    let subscriber = Subscriber {
        uris: Mutex::new(uris),
        tag: Some(tag.clone()),
        lists: [filter.tools_list_changed, filter.prompts_list_changed, filter.resources_list_changed].map(|w| w == Some(true)),
        ..Subscriber::session(&a.principal, &a.facts, Some(tx))
    };
    mcp.subscriptions.sessions.insert(key.clone(), Arc::new(subscriber));
    let mut granted = rmcp::model::SubscriptionFilter::default();
    granted.resource_subscriptions = filter.resource_subscriptions.is_some().then_some(accepted);
    let asked = |wanted: Option<bool>| (wanted == Some(true)).then_some(true);
    granted.tools_list_changed = asked(filter.tools_list_changed);
    granted.prompts_list_changed = asked(filter.prompts_list_changed);
    granted.resources_list_changed = asked(filter.resources_list_changed);
    let ack = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": granted, "_meta": {SUBSCRIPTION_ID: tag}},
    });
    let done = serde_json::json!({"jsonrpc": "2.0", "id": tag, "result": {"resultType": "complete", "_meta": {SUBSCRIPTION_ID: tag}}});
    let sse = |message: &serde_json::Value| super::dispatch::sse_data(&message.to_string());
    let release = Release { mcp: Arc::downgrade(mcp), key };
    let updates =
        futures::stream::unfold((rx, release), |(mut rx, release)| async move { rx.recv().await.map(|event| (event, (rx, release))) });
    let closing = mcp.closing.clone();
    let updates = futures::StreamExt::take_until(updates, closing.clone().cancelled_owned());
    // The final result only when Warden ends the subscription (shutdown).
    let finale = futures::stream::iter([sse(&done)]);
    let finale = futures::StreamExt::filter(finale, move |_| std::future::ready(closing.is_cancelled()));
    let events = futures::StreamExt::chain(futures::StreamExt::chain(futures::stream::iter([sse(&ack)]), updates), finale);
    let events = futures::StreamExt::map(events, Ok::<_, std::convert::Infallible>);
    let mut response = Response::new(Body::from_stream(events));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Ends a `subscriptions/listen` subscriber with its stream: forgotten, and its servers released.
struct Release {
    mcp: Weak<Mcp>,
    key: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let Some(mcp) = self.mcp.upgrade() else { return };
        let Some((_, subscriber)) = mcp.subscriptions.sessions.remove(&self.key) else { return };
        let uris: Vec<(String, String)> = locked(&subscriber.uris).drain().filter_map(|(uri, server)| server.map(|s| (uri, s))).collect();
        if uris.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for (uri, server) in uris {
                    mcp.federation.unsubscribe(&server, &uri, &subscriber.principal).await;
                }
            });
        }
    }
}
