//! The approvers' surface: `GET /admin/v1/approvals` (requests, newest first; `?status=pending`),
//! `POST /admin/v1/approvals/{id}/approve` and `…/deny` (optional `{"comment": "…"}`), and the
//! caller's status page `GET /approvals/{id}`.
//!
//! Approvers act as themselves: their own bearer token, verified by the identity stage, whose
//! principal must be one of the request's approvers (and not its requester, unless the rule
//! allows it); they list only what they may decide. The admin token lists everything, and
//! decides only with `approvals.admin_token_may_approve` (recorded as `admin`). Each request is
//! audited once: `approval_granted`, `approval_denied`, or the refusal.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::Approvals;
use crate::audit::{AuditEvent, Verdict};
use crate::edge::RequestContext;
use crate::identity::Principal;

/// Who is asking.
enum Actor {
    /// The admin token.
    Admin,
    Person(Arc<Principal>),
}

impl Actor {
    fn decider(&self) -> super::Decider<'_> {
        match self {
            Self::Admin => super::Decider::AdminToken,
            Self::Person(p) => super::Decider::Person(p),
        }
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    answer(status, json!({"error": code, "message": message}))
}

/// The admin API's bound on wrong tokens per client address, which these routes share (so they
/// are no faster way to guess the admin token). The admin API implements it.
pub trait WrongTokens: Send + Sync {
    /// The client's address (behind `server.trusted_proxies`, the forwarded one).
    fn client_ip(&self, socket: Option<std::net::SocketAddr>, headers: &HeaderMap) -> std::net::IpAddr;
    /// The refusal of an address that presented too many wrong tokens lately, if it is blocked.
    fn refusal_if_blocked(&self, ctx: Option<&RequestContext>, action: &str, ip: std::net::IpAddr) -> Option<Response>;
    /// Counts a wrong token; the refusal to send.
    fn wrong_token(&self, ctx: Option<&RequestContext>, action: &str, ip: std::net::IpAddr) -> Response;
}

/// The API's state: the approvals, and the admin API's bound on wrong tokens.
pub struct Api {
    pub approvals: Arc<Approvals>,
    pub admin: Arc<dyn WrongTokens>,
}

/// The connection's address, when the server recorded it.
type Peer = Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

impl Api {
    /// Who presents the request's bearer token: the admin token, or a person whose token the
    /// identity stage verifies. A wrong token that is not a JWT counts against the address as a
    /// wrong admin token does at the admin API (so neither is a faster way to guess it).
    async fn actor(&self, ctx: &RequestContext, action: &str, peer: Peer, headers: &HeaderMap) -> Result<Actor, Response> {
        let ip = self.admin.client_ip(peer.map(|p| p.0.0), headers);
        if let Some(blocked) = self.admin.refusal_if_blocked(Some(ctx), action, ip) {
            return Err(blocked);
        }
        let approvals = &self.approvals;
        let presented = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(presented) = presented else {
            approvals.audit.emit(approvals.event(
                ctx,
                None,
                action,
                Verdict { decision: "deny", reason: "token_missing", status: 401 },
                None,
            ));
            return Err(refusal(StatusCode::UNAUTHORIZED, "token_missing", "an approver's bearer token or the admin token is required"));
        };
        if let Some(admin) = &approvals.admin_token {
            let same = sha2::Sha256::digest(presented.as_bytes()).ct_eq(&sha2::Sha256::digest(admin.expose().as_bytes()));
            if bool::from(same) {
                return Ok(Actor::Admin);
            }
        }
        match approvals.authenticator.authenticate_header(headers.get(http::header::AUTHORIZATION)).await {
            // A person decides, never a machine credential: API keys are not approvers.
            Ok(principal) if principal.issuer == crate::apikeys::ISSUER => {
                approvals.audit.emit(approvals.event(
                    ctx,
                    None,
                    action,
                    Verdict { decision: "deny", reason: "api_key_not_an_approver", status: 403 },
                    None,
                ));
                Err(refusal(StatusCode::FORBIDDEN, "api_key_not_an_approver", "approvers use their own sign-in, not an API key"))
            }
            Ok(principal) => Ok(Actor::Person(principal)),
            Err(_) if presented.split('.').count() != 3 && !presented.starts_with(crate::identity::API_KEY_PREFIX) => {
                Err(self.admin.wrong_token(Some(ctx), action, ip))
            }
            Err(e) => {
                let verdict = Verdict { decision: "deny", reason: e.code(), status: 401 };
                approvals.audit.emit(approvals.event(ctx, None, action, verdict, None));
                Err(refusal(StatusCode::UNAUTHORIZED, e.code(), "the bearer token is invalid"))
            }
        }
    }
}

impl Approvals {
    fn event(
        &self,
        ctx: &RequestContext,
        actor: Option<&Actor>,
        method: &str,
        verdict: Verdict<'_>,
        explanation: Option<String>,
    ) -> AuditEvent {
        let mut event = match actor {
            Some(Actor::Person(p)) => AuditEvent::request(ctx, Some(p), None, Some(method.to_owned()), verdict),
            _ => AuditEvent::connect(ctx, method, None, None, verdict),
        };
        if let Some(Actor::Admin) = actor {
            event.subject = Some("admin".into());
        }
        event.explanation = explanation;
        event
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
}

/// `GET /admin/v1/approvals`.
pub async fn list(
    State(api): State<Arc<Api>>,
    Extension(ctx): Extension<RequestContext>,
    peer: Peer,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    const METHOD: &str = "approvals/list";
    let actor = match api.actor(&ctx, METHOD, peer, &headers).await {
        Ok(actor) => actor,
        Err(refused) => return refused,
    };
    let approvals = &api.approvals;
    let visible = match approvals.list(&actor.decider(), query.status.as_deref()).await {
        Ok(visible) => visible,
        Err(e) => {
            tracing::error!(error = %e, "approvals unavailable");
            approvals.audit.emit(approvals.event(
                &ctx,
                Some(&actor),
                METHOD,
                Verdict { decision: "error", reason: "store_unavailable", status: 503 },
                None,
            ));
            return refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "try again shortly");
        }
    };
    approvals.audit.emit(approvals.event(&ctx, Some(&actor), METHOD, Verdict { decision: "allow", reason: "ok", status: 200 }, None));
    answer(StatusCode::OK, json!({"approvals": visible}))
}

#[derive(Debug, Default, Deserialize)]
struct Decision {
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /admin/v1/approvals/{id}/approve`.
pub async fn approve(
    state: State<Arc<Api>>,
    ctx: Extension<RequestContext>,
    peer: Peer,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    decide(state, ctx, peer, headers, id, body, true).await
}

/// `POST /admin/v1/approvals/{id}/deny`.
pub async fn deny(
    state: State<Arc<Api>>,
    ctx: Extension<RequestContext>,
    peer: Peer,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    decide(state, ctx, peer, headers, id, body, false).await
}

async fn decide(
    State(api): State<Arc<Api>>,
    Extension(ctx): Extension<RequestContext>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
    approve: bool,
) -> Response {
    let method = if approve { "approvals/approve" } else { "approvals/deny" };
    let actor = match api.actor(&ctx, method, peer, &headers).await {
        Ok(actor) => actor,
        Err(refused) => return refused,
    };
    let decider = actor.decider();
    let comment = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Decision>(&body) {
            Ok(d) => d.comment,
            Err(_) => {
                let refused = super::DecideError::Invalid("the body is {\"comment\": \"…\"} or nothing");
                api.approvals.audit_refusal(&ctx, &decider, method, &id, &refused);
                return refusal(refused.status(), refused.code(), &refused.to_string());
            }
        }
    };
    match api.approvals.decide(&ctx, &decider, &id, approve, comment.as_deref()).await {
        Ok(by) => answer(StatusCode::OK, json!({"id": id, "status": if approve { "approved" } else { "denied" }, "decided_by": by})),
        Err(refused) => refusal(refused.status(), refused.code(), &refused.to_string()),
    }
}

/// `GET /approvals/{id}`: where the caller's client sends the person, to see how the request
/// stands. Shows no arguments.
pub async fn status_page(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let approvals = &api.approvals;
    let found = async { approvals.vault.store().await?.approval(&id).await };
    let Ok(Some(request)) = found.await else {
        return crate::error::html_page(StatusCode::NOT_FOUND, "Approval", "No such approval request.", "approval_unknown");
    };
    let message = match request.status.as_str() {
        "pending" => format!(
            "The call of {} is waiting for approval: {}. Retry it in your application once it is approved.",
            request.tool, request.reason
        ),
        "approved" => format!("The call of {} is approved. Retry it in your application: it runs once.", request.tool),
        "denied" => {
            format!("The call of {} was denied{}.", request.tool, request.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default())
        }
        "used" => format!("The approved call of {} has run.", request.tool),
        _ => format!("The request for {} expired. Retry the call to ask again.", request.tool),
    };
    crate::error::html_page(StatusCode::OK, "Approval", &message, &format!("approval_{}", request.status))
}

/// The approvals' routes.
pub fn routes(api: Arc<Api>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/admin/v1/approvals", get(list))
        .route("/admin/v1/approvals/{id}/approve", post(approve))
        .route("/admin/v1/approvals/{id}/deny", post(deny))
        .route("/approvals/{id}", get(status_page))
        .with_state(api)
}
