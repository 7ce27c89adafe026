//! The demo backends. The calendar trusts the identity headers Warden injects and never sees a
//! token: each caller gets only their own events. The notes service stands for a third-party API
//! with its own OAuth (like GitHub or Google): it accepts only a bearer token its provider (the
//! development authorization server) issued for it, and serves that token's owner, whoever calls.
//! Both record what they received so tests and the demo can show it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// What one request to the backend carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Default)]
pub struct Calendar {
    events: Mutex<HashMap<String, Vec<Value>>>,
    seen: Mutex<Vec<Seen>>,
    /// The notes service's provider and the audience its tokens carry.
    notes_provider: Mutex<Option<(Arc<crate::devidp::DevIdp>, String)>>,
}

impl Calendar {
    pub fn seeded() -> Arc<Self> {
        let cal = Self::default();
        {
            let mut events = lock(&cal.events);
            events.insert(
                "alice".into(),
                vec![
                    json!({"title": "Quarterly review", "start": "2026-12-01T09:00:00Z", "owner": "alice"}),
                    json!({"title": "Dentist", "start": "2026-12-03T15:30:00Z", "owner": "alice"}),
                ],
            );
            events.insert("bob".into(), vec![json!({"title": "Team lunch", "start": "2026-12-02T12:00:00Z", "owner": "bob"})]);
            events
                .insert("carol".into(), vec![json!({"title": "Globex board meeting", "start": "2026-12-04T10:00:00Z", "owner": "carol"})]);
        }
        Arc::new(cal)
    }

    /// Lets the notes service accept tokens `idp` issued to `audience`.
    pub fn trust_notes_tokens(&self, idp: Arc<crate::devidp::DevIdp>, audience: &str) {
        *lock(&self.notes_provider) = Some((idp, audience.to_owned()));
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn router(cal: Arc<Calendar>) -> Router {
    Router::new()
        .route("/events", get(list).post(create))
        .route("/whoami", get(whoami))
        .route("/models/{model}/chat", axum::routing::post(model_chat))
        .route("/records/{tenant}/{id}", get(get_record))
        .route("/notes", get(notes))
        .with_state(cal)
}

fn note_request(cal: &Calendar, path: &str, headers: &HeaderMap) -> Option<String> {
    lock(&cal.seen).push(Seen { path: path.into(), headers: headers.clone() });
    headers.get("x-user-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn no_identity() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": "no X-User-Id: call through Warden"}))).into_response()
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn list(State(cal): State<Arc<Calendar>>, headers: HeaderMap, Query(p): Query<ListParams>) -> Response {
    let Some(user) = note_request(&cal, "/events", &headers) else { return no_identity() };
    let mut events = lock(&cal.events).get(&user).cloned().unwrap_or_default();
    events.sort_by(|a, b| a["start"].as_str().cmp(&b["start"].as_str()));
    events.truncate(p.limit.unwrap_or(50));
    Json(json!({"user": user, "events": events})).into_response()
}

#[derive(Deserialize)]
struct NewEvent {
    title: String,
    start: String,
}

async fn create(State(cal): State<Arc<Calendar>>, headers: HeaderMap, Json(e): Json<NewEvent>) -> Response {
    let Some(user) = note_request(&cal, "/events (POST)", &headers) else { return no_identity() };
    let event = json!({"title": e.title, "start": e.start, "owner": user});
    lock(&cal.events).entry(user).or_default().push(event.clone());
    (StatusCode::CREATED, Json(event)).into_response()
}

#[derive(Deserialize)]
struct Prompt {
    prompt: String,
}

/// A stand-in model: it answers with who asked and what, and never sees a token.
async fn model_chat(
    State(cal): State<Arc<Calendar>>,
    headers: HeaderMap,
    axum::extract::Path(model): axum::extract::Path<String>,
    Json(p): Json<Prompt>,
) -> Response {
    let Some(user) = note_request(&cal, "/models/chat", &headers) else { return no_identity() };
    Json(
        json!({"model": model, "user": user, "reply": format!("[{model}] considered: {}", p.prompt.chars().take(200).collect::<String>())}),
    )
    .into_response()
}

/// A record store that trusts Warden to have checked the tenant.
async fn get_record(
    State(cal): State<Arc<Calendar>>,
    headers: HeaderMap,
    axum::extract::Path((tenant, id)): axum::extract::Path<(String, String)>,
) -> Response {
    let Some(user) = note_request(&cal, "/records", &headers) else { return no_identity() };
    Json(json!({"tenant": tenant, "id": id, "title": format!("{tenant} record {id}"), "read_by": user})).into_response()
}

async fn whoami(State(cal): State<Arc<Calendar>>, headers: HeaderMap) -> Response {
    let Some(_) = note_request(&cal, "/whoami", &headers) else { return no_identity() };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Json(json!({
        "user_id": h("x-user-id"),
        "scopes": h("x-user-scopes"),
        "roles": h("x-user-roles"),
        "tenant": h("x-tenant-id"),
        "client_id": h("x-client-id"),
        "request_id": h("x-request-id"),
        "traceparent": h("traceparent"),
        "received_authorization_header": headers.contains_key("authorization"),
    }))
    .into_response()
}

/// The notes service: a bearer token from its own provider, with `notes:read`, or 401.
async fn notes(State(cal): State<Arc<Calendar>>, headers: HeaderMap) -> Response {
    lock(&cal.seen).push(Seen { path: "/notes".into(), headers: headers.clone() });
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let provider = lock(&cal.notes_provider).clone();
    let owner = match (token, provider) {
        (Some(token), Some((idp, audience))) => idp.verify(token, &audience),
        _ => None,
    };
    let Some((owner, _)) = owner.filter(|(_, scopes)| scopes.iter().any(|s| s == "notes:read")) else {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
    };
    let notes: Vec<&str> = match owner.as_str() {
        "alice" => vec!["Draft the Q1 plan", "Book flights to Lisbon"],
        "carol" => vec!["Globex board deck"],
        _ => vec![],
    };
    Json(json!({"owner": owner, "notes": notes})).into_response()
}
