//! Admin API: the vault's connections, for operators and `warden connections`.
//!
//! Protected by its own credential (`admin.token`, compared in constant time), never by an
//! identity-provider token, and absent (404) when none is configured. Every call is audited.
//! Responses never carry a token.
//!
//! - `GET /admin/v1/connections[?credential=NAME]`: status of every connection.
//! - `DELETE /admin/v1/connections/{credential}[?issuer=…&subject=…]`: disconnect (a shared
//!   connection without the query).
//! - `POST /admin/v1/connections/{credential}/connect-link`: a single-use link to make or renew
//!   a shared connection.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::audit::{AuditEvent, Verdict};
use crate::credentials::oauth::ConnectionMode;
use crate::edge::RequestContext;
use crate::store::ConnectionKey;

/// What the admin API uses: its credential, the vault, the credentials and the audit sink.
pub struct AdminState {
    /// No admin API without one.
    pub admin_token: Option<crate::credentials::Secret>,
    pub vault: Option<Arc<crate::credentials::Vault>>,
    pub credentials: Arc<crate::credentials::Credentials>,
    pub audit: Arc<crate::audit::AuditSink>,
}

pub fn routes(gateway: Arc<AdminState>) -> Router {
    Router::new()
        .route("/admin/v1/connections", get(list))
        .route("/admin/v1/connections/{credential}", delete(disconnect))
        .route("/admin/v1/connections/{credential}/connect-link", post(connect_link))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&gateway), authorize))
        .with_state(gateway)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

/// Requires `Authorization: Bearer <admin.token>`; digests are compared so neither the length
/// nor a prefix of the token leaks through timing.
async fn authorize(State(gw): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    let Some(expected) = &gw.admin_token else { return error(StatusCode::NOT_FOUND, "not_found", "the admin API is not enabled") };
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let ok = sha2::Sha256::digest(presented.as_bytes()).ct_eq(&sha2::Sha256::digest(expected.expose().as_bytes()));
    if !bool::from(ok) {
        let ctx = request.extensions().get::<RequestContext>().cloned();
        if let Some(ctx) = ctx {
            gw.audit.emit(admin_event(&ctx, "admin/authenticate", None, "deny", "admin_unauthorized", 401));
        }
        let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid admin token is required");
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer realm=\"warden-admin\""));
        return response;
    }
    next.run(request).await
}

fn admin_event(
    ctx: &RequestContext,
    method: &str,
    credential: Option<&str>,
    decision: &'static str,
    reason: &str,
    status: u16,
) -> AuditEvent {
    AuditEvent::admin(ctx, method, credential, Verdict { decision, reason, status })
}

fn vault_unavailable(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "vault storage failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "vault_unavailable", "the credential store is unavailable")
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    credential: Option<String>,
}

async fn list(State(gw): State<Arc<AdminState>>, Extension(ctx): Extension<RequestContext>, Query(q): Query<ListQuery>) -> Response {
    let Some(vault) = &gw.vault else { return error(StatusCode::NOT_FOUND, "no_vault", "no vault is configured") };
    let store = match vault.store().await {
        Ok(s) => s,
        Err(e) => return vault_unavailable(&e),
    };
    match store.list_connections(q.credential.as_deref()).await {
        Ok(connections) => {
            gw.audit.emit(admin_event(&ctx, "admin/connections.list", q.credential.as_deref(), "allow", "ok", 200));
            Json(json!({ "connections": connections })).into_response()
        }
        Err(e) => vault_unavailable(&e),
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
    Path(credential): Path<String>,
    Query(who): Query<Who>,
) -> Response {
    let Some(vault) = &gw.vault else { return error(StatusCode::NOT_FOUND, "no_vault", "no vault is configured") };
    let key =
        ConnectionKey { credential: credential.clone(), issuer: who.issuer.unwrap_or_default(), subject: who.subject.unwrap_or_default() };
    let store = match vault.store().await {
        Ok(s) => s,
        Err(e) => return vault_unavailable(&e),
    };
    match store.delete_connection(&key).await {
        Ok(true) => {
            if let Some(connection) = gw.credentials.connection(&credential) {
                connection.forget(&key);
            }
            let mut e = admin_event(&ctx, "admin/connections.delete", Some(&credential), "allow", "connection_deleted", 200);
            e.explanation = (!key.subject.is_empty()).then(|| format!("connection of {} at {}", key.subject, key.issuer));
            gw.audit.emit(e);
            Json(json!({"deleted": true})).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "not_found", "no such connection"),
        Err(e) => vault_unavailable(&e),
    }
}

async fn connect_link(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Path(credential): Path<String>,
) -> Response {
    let Some(vault) = &gw.vault else { return error(StatusCode::NOT_FOUND, "no_vault", "no vault is configured") };
    let Some(connection) = gw.credentials.connection(&credential) else {
        return error(StatusCode::NOT_FOUND, "unknown_credential", "no authorization_code credential by that name");
    };
    if connection.settings.mode != ConnectionMode::Shared {
        return error(
            StatusCode::BAD_REQUEST,
            "not_shared",
            "per-user connections are made by each user, through the link their tool call returns",
        );
    }
    let key = ConnectionKey { credential: credential.clone(), issuer: String::new(), subject: String::new() };
    match vault.connect_link(&key).await {
        Ok(url) => {
            gw.audit.emit(admin_event(&ctx, "admin/connect_link", Some(&credential), "allow", "connect_link_created", 200));
            Json(json!({"url": url, "expires_in": crate::credentials::vault::FLOW_LIFETIME_SECS})).into_response()
        }
        Err(e) => vault_unavailable(&e),
    }
}
