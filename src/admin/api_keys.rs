//! `/admin/v1/api-keys`: issue, list and revoke gateway-issued API keys.
//!
//! - `POST` with `{"name", "subject", "tenant"?, "scopes"?, "roles"?, "tools"?, "expires_in"?,
//!   "environment"?}` → `201 {"id", "key", "prefix", …}`: the key, shown this once.
//! - `GET [?all=true]` → `{"api_keys": [...]}`: never a key or its hash; revoked keys with `all`.
//! - `DELETE /{id}` → `{"revoked": true, …}`: refused at once here, on other replicas within
//!   `api_keys.cache_ttl`.
//!
//! The operations are functions of their own, audited with their [`Actor`], so the console
//! and the JSON API share them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::{Actor, AdminState, allowed_by, refused};
use crate::apikeys::{ApiKeyError, ApiKeys, NewKey};
use crate::edge::RequestContext;
use crate::error::AdminError;
use crate::secret::Secret;
use crate::store::api_keys::ApiKeyRecord;

/// A refusal with what to fix, when there is something to say.
pub type Refusal = (AdminError, Option<String>);

fn keys(gw: &AdminState) -> Result<&Arc<ApiKeys>, Refusal> {
    gw.api_keys.as_ref().ok_or((AdminError::ApiKeysDisabled, None))
}

fn refusal(e: ApiKeyError) -> Refusal {
    match e {
        ApiKeyError::Invalid(m) => (AdminError::InvalidApiKey, Some(m)),
        ApiKeyError::ScopeNotAllowed(s) => (AdminError::ScopeNotAllowed, Some(format!("scope {s:?}"))),
        ApiKeyError::NotFound => (AdminError::NoSuchApiKey, None),
        ApiKeyError::Storage(e) => (super::storage_failed(&e), None),
    }
}

fn described(record: &ApiKeyRecord) -> String {
    format!("API key {} ({:?}, {}) for {}", record.id, record.name, record.prefix, record.subject)
}

/// Issues a key, audited; the key is returned this once.
pub async fn issue(gw: &AdminState, ctx: &RequestContext, actor: &Actor, new: NewKey) -> Result<(ApiKeyRecord, Secret), Refusal> {
    const ACTION: &str = "admin/api_keys.create";
    let issued = match keys(gw) {
        Ok(keys) => keys.issue(new, &actor.subject).await.map_err(refusal),
        Err(r) => Err(r),
    };
    match &issued {
        Ok((record, _)) => {
            let mut e = allowed_by(ctx, actor, ACTION, None, "api_key_created");
            e.explanation = Some(format!("{}, scopes [{}]", described(record), record.scopes.join(" ")));
            e.status = 201;
            gw.audit.emit(e);
        }
        Err((refusal, _)) => gw.audit.emit(refused(ctx, actor, ACTION, None, *refusal)),
    }
    issued
}

/// Keys, audited as a read.
/// `audited`: whether the listing is the request's own event (not when a page lists the keys
/// after another change, which has its event).
pub async fn list_keys(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    all: bool,
    audited: bool,
) -> Result<Vec<ApiKeyRecord>, Refusal> {
    const ACTION: &str = "admin/api_keys.list";
    let listed = match keys(gw) {
        Ok(keys) => keys.list(all).await.map_err(refusal),
        Err(r) => Err(r),
    };
    match &listed {
        Ok(_) if !audited => {}
        Ok(_) => gw.audit.emit(allowed_by(ctx, actor, ACTION, None, "ok")),
        Err((refusal, _)) => gw.audit.emit(refused(ctx, actor, ACTION, None, *refusal)),
    }
    listed
}

/// Revokes a key, audited.
/// `answered` is the status the client gets for a success (the console redirects: 303).
pub async fn revoke_key(
    gw: &AdminState,
    ctx: &RequestContext,
    actor: &Actor,
    id: &str,
    answered: http::StatusCode,
) -> Result<ApiKeyRecord, Refusal> {
    const ACTION: &str = "admin/api_keys.revoke";
    let revoked = match keys(gw) {
        Ok(keys) => keys.revoke(id).await.map_err(refusal),
        Err(r) => Err(r),
    };
    match &revoked {
        Ok(record) => {
            let mut e = allowed_by(ctx, actor, ACTION, None, "api_key_revoked");
            e.status = answered.as_u16();
            e.explanation = Some(described(record));
            gw.audit.emit(e);
        }
        Err((refusal, _)) => gw.audit.emit(refused(ctx, actor, ACTION, None, *refusal)),
    }
    revoked
}

fn render((refusal, detail): Refusal) -> Response {
    refusal.into_response_with(detail.as_deref())
}

pub async fn create(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    body: Result<Json<NewKey>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(new)) = body else {
        gw.audit.emit(refused(&ctx, &actor, "admin/api_keys.create", None, AdminError::InvalidBody));
        return AdminError::InvalidBody.into_response();
    };
    match issue(&gw, &ctx, &actor, new).await {
        Ok((record, key)) => {
            let mut body = json!(record);
            body["key"] = json!(key.expose());
            (http::StatusCode::CREATED, Json(body)).into_response()
        }
        Err(r) => render(r),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
}

pub async fn list(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        gw.audit.emit(refused(&ctx, &actor, "admin/api_keys.list", None, AdminError::InvalidBody));
        return AdminError::InvalidBody.into_response();
    };
    match list_keys(&gw, &ctx, &actor, q.all, true).await {
        Ok(keys) => Json(json!({"api_keys": keys})).into_response(),
        Err(r) => render(r),
    }
}

pub async fn revoke(
    State(gw): State<Arc<AdminState>>,
    Extension(ctx): Extension<RequestContext>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Response {
    match revoke_key(&gw, &ctx, &actor, &id, http::StatusCode::OK).await {
        Ok(record) => {
            let propagation = gw.api_keys.as_ref().map(|k| k.cache_ttl().as_secs()).unwrap_or_default();
            Json(json!({"revoked": true, "id": record.id, "revoked_at": record.revoked_at, "other_replicas_within_seconds": propagation}))
                .into_response()
        }
        Err(r) => render(r),
    }
}
