//! Admin API: the vault's connections, for operators and `warden connections`.
//!
//! Protected by its own credential (`admin.token`, compared in constant time), never by an
//! identity-provider token, and absent (404) when none is configured. Every call is audited,
//! refusals included; refusals are `error::AdminError`s. Responses never carry a token.
//!
//! - `GET /admin/v1/connections[?credential=NAME]`: status of every connection.
//! - `DELETE /admin/v1/connections/{credential}[?issuer=…&subject=…]`: disconnect (a shared
//!   connection without the query).
//! - `POST /admin/v1/connections/{credential}/connect-link`: a single-use link to make or renew
//!   a shared connection.
//! - `GET /admin/v1/tools/pins`: every federated tool's pinned definition, and a changed one
//!   awaiting approval.
//! - `POST /admin/v1/tools/pins/{server}/{tool}/approve` with `{"hash": …}`: approves the
//!   pending definition with that hash (the one the operator reviewed), and re-reads catalogs.
//! - `GET /admin/v1/audit[?subject=…&tool=…&decision=…&tenant=…&since=…&until=…&limit=N]`:
//!   audit events from the database sink, newest first (at most `limit`, default 100).
//! - `GET /admin/v1/limits/usage[?subject=…&tenant=…&client=…&quota=…&period=…]`: quota usage
//!   per bucket and period, with each quota's budget and, for the current period, its reset.
//! - `POST /admin/v1/api-keys`, `GET /admin/v1/api-keys[?all=true]`,
//!   `DELETE /admin/v1/api-keys/{id}`: gateway-issued API keys ([`api_keys`]).
//!
//! Each change is audited with who made it ([`Actor`]): the admin token, or an administrator
//! signed in to the console.

pub mod api_keys;
pub mod attempts;
pub mod console;

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::audit::{AuditEvent, Verdict};
use crate::credentials::oauth::ConnectionMode;
use crate::edge::RequestContext;
use crate::error::AdminError;
use crate::store::ConnectionKey;

/// Who made an admin call: the admin token's holder, or an administrator signed in to the
/// console (their issuer and subject). Audited as the event's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub issuer: Option<String>,
    /// The person's roles at sign-in (none for the admin token): what an approval checks.
    pub roles: Vec<String>,
}

impl Actor {
    /// Whoever presented `admin.token`.
    pub fn admin_token() -> Self {
        Self { subject: "admin".into(), issuer: None, roles: Vec::new() }
    }

    /// Who decides an approval from the console: the admin token, or the person signed in.
    pub fn principal(&self) -> Option<crate::identity::Principal> {
        let issuer = self.issuer.clone()?;
        Some(crate::identity::Principal {
            subject: crate::identity::Subject::new(self.subject.clone())?,
            issuer,
            client_id: None,
            scopes: Default::default(),
            roles: self.roles.clone(),
            tenant: None,
            claims: Default::default(),
            tools: None,
            token: None,
        })
    }
}

/// What the admin API uses: its credential, the vault, the credentials and the audit sink.
pub struct AdminState {
    /// No admin API without one.
    pub admin_token: Option<crate::credentials::Secret>,
    pub vault: Option<Arc<crate::credentials::Vault>>,
    pub credentials: Arc<crate::credentials::Credentials>,
    pub audit: Arc<crate::audit::AuditSink>,
    /// Federated servers and their tool pins.
    pub federation: Arc<crate::federation::Federation>,
    /// Quota usage.
    pub limits: Arc<crate::limits::Limits>,
    /// Gateway-issued API keys, when enabled.
    pub api_keys: Option<Arc<crate::apikeys::ApiKeys>>,
    /// Wrong admin tokens per client IP (the API's and the console's sign-in together).
    pub attempts: attempts::FailedAttempts,
}

impl AdminState {
    /// The client IP the limits stage trusts: the socket's, or a trusted proxy's forwarded one.
    pub fn client_ip(&self, socket: Option<std::net::SocketAddr>, headers: &http::HeaderMap) -> std::net::IpAddr {
        self.limits.client_ip(socket.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |s| s.ip()), headers)
    }

    /// The refusal of a client that presented too many wrong tokens lately (before any
    /// comparison), if it is blocked.
    pub fn refusal_if_blocked(&self, ctx: Option<&RequestContext>, action: &str, ip: std::net::IpAddr) -> Option<Response> {
        self.attempts.blocked(ip).map(|wait| too_many(self, ctx, action, wait))
    }

    /// Counts a wrong token; the refusal to send (401, or 429 once there were too many).
    pub fn wrong_token(&self, ctx: Option<&RequestContext>, action: &str, ip: std::net::IpAddr) -> Response {
        match self.attempts.failed(ip) {
            Some(wait) => too_many(self, ctx, action, wait),
            None => refuse(self, ctx, action, None, AdminError::Unauthorized),
        }
    }
}

impl crate::approvals::api::WrongTokens for AdminState {
    fn client_ip(&self, socket: Option<std::net::SocketAddr>, headers: &http::HeaderMap) -> std::net::IpAddr {
        AdminState::client_ip(self, socket, headers)
    }
    fn refusal_if_blocked(&self, ctx: Option<&RequestContext>, action: &str, ip: std::net::IpAddr) -> Option<Response> {
        AdminState::refusal_if_blocked(self, ctx, action, ip)
    }
    fn wrong_token(&self, ctx: Option<&RequestContext>, action: &str, ip: std::net::IpAddr) -> Response {
        AdminState::wrong_token(self, ctx, action, ip)
    }
}

fn too_many(gw: &AdminState, ctx: Option<&RequestContext>, action: &str, wait: std::time::Duration) -> Response {
    tracing::warn!(action, "too many wrong admin tokens from one address");
    let mut response = refuse(gw, ctx, action, None, AdminError::TooManyAttempts);
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(crate::limits::retry_after_secs(wait)));
    response
}

pub fn routes(gateway: Arc<AdminState>) -> Router {
    Router::new()
        .route("/admin/v1/connections", get(list))
        .route("/admin/v1/connections/{credential}", delete(disconnect))
        .route("/admin/v1/connections/{credential}/connect-link", post(connect_link))
        .route("/admin/v1/tools/pins", get(list_pins))
        .route("/admin/v1/tools/pins/{server}/{tool}/approve", post(approve_pin))
        .route("/admin/v1/limits/usage", get(usage))
        .route("/admin/v1/audit", get(audit_query))
        .route("/admin/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/admin/v1/api-keys/{id}", delete(api_keys::revoke))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&gateway), authorize))
        .with_state(gateway)
}

/// Audits a refusal and renders it (`error`); the storage error's detail goes to the log only.
fn refuse(gw: &AdminState, ctx: Option<&RequestContext>, action: &str, credential: Option<&str>, refusal: AdminError) -> Response {
    if let Some(ctx) = ctx {
        gw.audit.emit(refused(ctx, &Actor::admin_token(), action, credential, refusal));
    }
    refusal.into_response()
}

/// The audit event of a refused admin call.
pub fn refused(ctx: &RequestContext, actor: &Actor, action: &str, credential: Option<&str>, refusal: AdminError) -> AuditEvent {
    let verdict = Verdict { decision: refusal.decision(), reason: refusal.reason(), status: refusal.status().as_u16() };
    by(actor, AuditEvent::admin(ctx, action, credential, verdict))
}

/// The audit event of an admin call that was carried out.
pub fn allowed_by(ctx: &RequestContext, actor: &Actor, action: &str, credential: Option<&str>, reason: &str) -> AuditEvent {
    by(actor, AuditEvent::admin(ctx, action, credential, Verdict { decision: "allow", reason, status: 200 }))
}

fn by(actor: &Actor, mut event: AuditEvent) -> AuditEvent {
    event.subject = Some(actor.subject.clone());
    event.issuer = actor.issuer.clone();
    event
}

fn storage_failed(e: &crate::store::StoreError) -> AdminError {
    tracing::error!(error = %e, "vault storage failed");
    AdminError::VaultUnavailable
}

/// Requires `Authorization: Bearer <admin.token>`; digests are compared so neither the length
/// nor a prefix of the token leaks through timing.
async fn authorize(State(gw): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    const ACTION: &str = "admin/authenticate";
    let ctx = request.extensions().get::<RequestContext>().cloned();
    let Some(expected) = &gw.admin_token else { return refuse(&gw, ctx.as_ref(), ACTION, None, AdminError::Disabled) };
    let socket = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    let ip = gw.client_ip(socket, request.headers());
    if let Some(refusal) = gw.refusal_if_blocked(ctx.as_ref(), ACTION, ip) {
        return refusal;
    }
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let ok = sha2::Sha256::digest(presented.as_bytes()).ct_eq(&sha2::Sha256::digest(expected.expose().as_bytes()));
    if !bool::from(ok) {
        return gw.wrong_token(ctx.as_ref(), ACTION, ip);
    }
    let mut request = request;
    request.extensions_mut().insert(Actor::admin_token());
    next.run(request).await
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    credential: Option<String>,
}

/// Audits the outcome of an operation: `ok_reason` when it was carried out, the refusal's
/// reason otherwise.
fn audited<T>(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    action: &str,
    credential: Option<&str>,
    ok_reason: &str,
    outcome: Result<T, AdminError>,
) -> Result<T, AdminError> {
    match &outcome {
        Ok(_) => gw.audit.emit(allowed_by(ctx, actor, action, credential, ok_reason)),
        Err(refusal) => gw.audit.emit(refused(ctx, actor, action, credential, *refusal)),
    }
    outcome
}

/// Connections, never a token.
pub async fn connections(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    credential: Option<&str>,
) -> Result<Vec<crate::store::ConnectionStatus>, AdminError> {
    let listed = async {
        let vault = gw.vault.as_ref().ok_or(AdminError::NoVault)?;
        let store = vault.store().await.map_err(|e| storage_failed(&e))?;
        store.list_connections(credential).await.map_err(|e| storage_failed(&e))
    };
    audited(gw, ctx, actor, "admin/connections.list", credential, "ok", listed.await)
}

/// Deletes a connection (shared when `key` names no person).
pub async fn disconnect_connection(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    key: &ConnectionKey,
    answered: http::StatusCode,
) -> Result<(), AdminError> {
    const ACTION: &str = "admin/connections.delete";
    let deleted = async {
        let vault = gw.vault.as_ref().ok_or(AdminError::NoVault)?;
        let store = vault.store().await.map_err(|e| storage_failed(&e))?;
        match store.delete_connection(key).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdminError::NoSuchConnection),
            Err(e) => Err(storage_failed(&e)),
        }
    };
    let credential = Some(key.credential.as_str());
    match deleted.await {
        Ok(()) => {
            if let Some(connection) = gw.credentials.connection(&key.credential) {
                connection.forget(key);
            }
            let mut e = allowed_by(ctx, actor, ACTION, credential, "connection_deleted");
            e.status = answered.as_u16();
            e.explanation = (!key.subject.is_empty()).then(|| format!("connection of {} at {}", key.subject, key.issuer));
            gw.audit.emit(e);
            Ok(())
        }
        Err(refusal) => {
            gw.audit.emit(refused(ctx, actor, ACTION, credential, refusal));
            Err(refusal)
        }
    }
}

/// A single-use link that makes or renews a shared connection.
pub async fn shared_connect_link(gw: &AdminState, ctx: &RequestContext, actor: &Actor, credential: &str) -> Result<String, AdminError> {
    let made = async {
        let vault = gw.vault.as_ref().ok_or(AdminError::NoVault)?;
        let connection = gw.credentials.connection(credential).ok_or(AdminError::UnknownCredential)?;
        if connection.settings.mode != ConnectionMode::Shared {
            return Err(AdminError::NotShared);
        }
        let key = ConnectionKey { credential: credential.to_owned(), issuer: String::new(), subject: String::new() };
        vault.connect_link(&key).await.map_err(|e| storage_failed(&e))
    };
    audited(gw, ctx, actor, "admin/connect_link", Some(credential), "connect_link_created", made.await)
}

/// Every federated tool's pin.
pub async fn pins(gw: &AdminState, ctx: &RequestContext, actor: &Actor) -> Result<Vec<crate::store::ToolPin>, AdminError> {
    let listed = gw.federation.pins().list().await.map_err(|e| storage_failed(&e));
    audited(gw, ctx, actor, "admin/tools.pins", None, "ok", listed)
}

/// Approves the pending definition with `hash` (the one reviewed) and re-reads catalogs.
/// `answered` is the status the client gets for a success (the console redirects: 303).
pub async fn approve(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    (server, tool, hash): (&str, &str, &str),
    answered: http::StatusCode,
) -> Result<(), AdminError> {
    const ACTION: &str = "admin/tools.approve";
    let approved = match gw.federation.pins().approve(server, tool, hash).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(AdminError::NoSuchPendingDefinition),
        Err(e) => Err(storage_failed(&e)),
    };
    match approved {
        Ok(()) => {
            gw.federation.refresh_all();
            let mut e = allowed_by(ctx, actor, ACTION, None, "tool_definition_approved");
            e.status = answered.as_u16();
            e.tool = Some(tool.to_owned());
            e.server = Some(server.to_owned());
            gw.audit.emit(e);
            Ok(())
        }
        Err(refusal) => {
            gw.audit.emit(refused(ctx, actor, ACTION, None, refusal));
            Err(refusal)
        }
    }
}

/// Quota usage.
pub async fn quota_usage(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    filter: &crate::store::usage::UsageFilter,
) -> Result<Vec<crate::limits::quota::UsageReport>, AdminError> {
    let usage = gw.limits.usage(filter).await.map_err(|e| storage_failed(&e));
    audited(gw, ctx, actor, "admin/limits.usage", None, "ok", usage)
}

/// Audit records from the database sink, newest first.
pub async fn audit_records(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    filter: &crate::store::audit::AuditFilter,
) -> Result<Vec<serde_json::Value>, AdminError> {
    let read = async {
        let vault = gw.vault.as_ref().ok_or(AdminError::NoVault)?;
        let store = vault.store().await.map_err(|e| storage_failed(&e))?;
        store.query_audit(filter).await.map_err(|e| storage_failed(&e))
    };
    let lines = audited(gw, ctx, actor, "admin/audit.query", None, "ok", read.await)?;
    Ok(lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

async fn list(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<ListQuery>,
) -> Response {
    match connections(&gw, &ctx, &actor, q.credential.as_deref()).await {
        Ok(connections) => Json(json!({ "connections": connections })).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct Who {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    subject: Option<String>,
}

async fn disconnect(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    Path(credential): Path<String>,
    Query(who): Query<Who>,
) -> Response {
    let key = ConnectionKey { credential, issuer: who.issuer.unwrap_or_default(), subject: who.subject.unwrap_or_default() };
    match disconnect_connection(&gw, &ctx, &actor, &key, http::StatusCode::OK).await {
        Ok(()) => Json(json!({"deleted": true})).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn connect_link(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    Path(credential): Path<String>,
) -> Response {
    match shared_connect_link(&gw, &ctx, &actor, &credential).await {
        Ok(url) => Json(json!({"url": url, "expires_in": crate::credentials::vault::FLOW_LIFETIME_SECS})).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// A stored definition as JSON (null when unreadable).
pub fn definition(text: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(text).unwrap_or(serde_json::Value::Null)
}

async fn list_pins(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
) -> Response {
    match pins(&gw, &ctx, &actor).await {
        Ok(pins) => {
            let pins: Vec<serde_json::Value> = pins
                .iter()
                .map(|p| {
                    json!({
                        "server": p.server,
                        "tool": p.tool,
                        "approved_hash": p.approved_hash,
                        "approved": definition(&p.approved_definition),
                        "pending_hash": p.pending_hash,
                        "pending": p.pending_definition.as_deref().map(definition),
                        "updated_at": p.updated_at,
                    })
                })
                .collect();
            Json(json!({"durable": gw.federation.pins().durable(), "pins": pins})).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct Approval {
    hash: String,
}

async fn approve_pin(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    Path((server, tool)): Path<(String, String)>,
    body: Result<Json<Approval>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(approval)) = body else {
        gw.audit.emit(refused(&ctx, &actor, "admin/tools.approve", None, AdminError::InvalidBody));
        return AdminError::InvalidBody.into_response();
    };
    match approve(&gw, &ctx, &actor, (&server, &tool, &approval.hash), http::StatusCode::OK).await {
        Ok(()) => Json(json!({"approved": true})).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    quota: Option<String>,
    period: Option<String>,
    subject: Option<String>,
    tenant: Option<String>,
    client: Option<String>,
}

async fn usage(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    const ACTION: &str = "admin/limits.usage";
    let Ok(Query(q)) = query else { return refuse(&gw, Some(&ctx), ACTION, None, AdminError::InvalidBody) };
    let filter =
        crate::store::usage::UsageFilter { quota: q.quota, period: q.period, subject: q.subject, tenant: q.tenant, client: q.client };
    match quota_usage(&gw, &ctx, &actor, &filter).await {
        Ok(usage) => Json(json!({"usage": usage})).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    subject: Option<String>,
    tool: Option<String>,
    decision: Option<String>,
    tenant: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
}

async fn audit_query(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    const ACTION: &str = "admin/audit.query";
    let Ok(Query(q)) = query else { return refuse(&gw, Some(&ctx), ACTION, None, AdminError::InvalidBody) };
    let filter = crate::store::audit::AuditFilter {
        subject: q.subject,
        tool: q.tool,
        decision: q.decision,
        tenant: q.tenant,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(100),
    };
    match audit_records(&gw, &ctx, &actor, &filter).await {
        Ok(records) => Json(json!({"records": records})).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}
