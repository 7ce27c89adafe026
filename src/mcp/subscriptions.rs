//! Resource subscriptions of the older revisions' callers (`resources/subscribe`,
//! `resources/unsubscribe`) and the session's own stream (a GET with its `Mcp-Session-Id`),
//! on which `notifications/resources/updated` reach it.
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
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn session_key(principal: &Principal, session: &str) -> String {
    format!("{}\n{}\n{session}", principal.issuer, principal.subject.as_str())
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
    let key = session_key(&a.principal, session);
    if !subs.sessions.contains_key(&key) && subs.sessions.len() >= MAX_SESSIONS {
        return Err(GatewayError::InvalidRequest("too many sessions with resource subscriptions on this replica"));
    }
    let subscriber = Arc::clone(
        subs.sessions
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Subscriber {
                    principal: Arc::clone(&a.principal),
                    facts: Mutex::new(a.facts.clone()),
                    uris: Mutex::default(),
                    stream: Mutex::default(),
                    last_seen: Mutex::new(Instant::now()),
                })
            })
            .value(),
    );
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
    let subscriber = mcp.subscriptions.sessions.get(&session_key(&a.principal, session)).map(|s| Arc::clone(s.value()))?;
    let server = locked(&subscriber.uris).remove(uri).flatten()?;
    mcp.federation.unsubscribe(&server, uri, &a.principal).await;
    Some(server)
}

/// The session's own stream (a GET with its `Mcp-Session-Id`): the resource updates it may
/// hear, as SSE events. A second stream replaces the first.
pub fn stream(mcp: &Arc<Mcp>, principal: &Arc<Principal>, facts: &RequestFacts, session: &str) -> Response {
    start_fan_out(mcp);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let key = session_key(principal, session);
    match mcp.subscriptions.sessions.get(&key) {
        Some(subscriber) => *locked(&subscriber.stream) = Some(tx),
        None if mcp.subscriptions.sessions.len() < MAX_SESSIONS => {
            let subscriber = Subscriber {
                principal: Arc::clone(principal),
                facts: Mutex::new(facts.clone()),
                uris: Mutex::default(),
                stream: Mutex::new(Some(tx)),
                last_seen: Mutex::new(Instant::now()),
            };
            mcp.subscriptions.sessions.insert(key, Arc::new(subscriber));
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
        let mut updates = mcp.federation.resource_updates();
        let mcp = Arc::downgrade(mcp);
        tokio::spawn(async move {
            loop {
                match updates.recv().await {
                    Ok(update) => match Weak::upgrade(&mcp) {
                        Some(mcp) => deliver(&mcp, &update),
                        None => return,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "resource updates were dropped: subscribers fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    });
}

/// An update to every session subscribed to its URI whose caller may read it from that server
/// now (policy with the caller's facts, at this time).
fn deliver(mcp: &Mcp, update: &ResourceUpdated) {
    let policy = mcp.policy.load_full();
    let message = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/resources/updated",
        "params": {"uri": update.uri},
    });
    let event = bytes::Bytes::from(format!("event: message\ndata: {message}\n\n"));
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
            let _ = stream.try_send(event.clone());
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
