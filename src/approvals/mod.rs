//! Approvals: a call an `approve` policy rule holds back waits for a person's yes
//! (docs/approvals.md).
//!
//! A request is bound to the exact call: the caller (issuer and subject), the tool, a SHA-256 of
//! the arguments in canonical JSON, and the policy version. The first call records a pending
//! request and does not reach the upstream; the caller is told who must approve and how to
//! retry. An approver decides through the admin API as themselves (their own bearer token, whose
//! principal must be one of the rule's approvers; not their own request unless the rule allows
//! it). Once approved, the same caller retrying the same call runs it once: using an approval is
//! a conditional write, so of concurrent retries on any replica exactly one runs. Other
//! arguments, another caller, another tool, a changed policy or an expired request do not.
//!
//! In: the policy's `ApprovalRequired`, the vault's store. Out: a run (with the approval's id for
//! the audit) or an answer for the caller; one audit event per admin request.

pub mod api;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::audit::AuditSink;
use crate::credentials::Vault;
use crate::identity::Principal;
use crate::policy::Approval;
use crate::store::StoreError;
use crate::store::approvals::{ApprovalRecord, NewApproval};

/// `approvals:` as written.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Whether the admin token may decide requests (recorded as `admin`). Default: false:
    /// approvers decide as themselves, with their own token.
    #[serde(default)]
    pub admin_token_may_approve: bool,
    /// Where to announce each new request: a Slack-compatible incoming webhook (a JSON body
    /// with `text`; the request's fields beside it, never its arguments). Reached through the
    /// upstream SSRF guard.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: crate::secret::Secret,
}

/// Announces new requests to the configured webhook, without holding up the call.
struct Notifier {
    url: url::Url,
    client: reqwest::Client,
}

impl Notifier {
    fn announce(&self, body: Value) {
        let (client, url) = (self.client.clone(), self.url.clone());
        tokio::spawn(async move {
            let sent = client.post(url).timeout(std::time::Duration::from_secs(5)).json(&body).send().await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "the approvals webhook refused a notification"),
                Err(e) => tracing::warn!(error = %e.without_url(), "the approvals webhook could not be reached"),
            }
        });
    }
}

pub struct Approvals {
    vault: Arc<Vault>,
    audit: Arc<AuditSink>,
    /// Where status pages live: `{public_url}/approvals/{id}`.
    public_base: String,
    /// The admin API's token: it may list requests, and decide them only when
    /// `approvals.admin_token_may_approve` is set (recorded as `admin`).
    admin_token: Option<crate::secret::Secret>,
    admin_token_may_approve: bool,
    authenticator: Arc<crate::identity::Authenticator>,
    notifier: Option<Notifier>,
    /// The tools, whose input schemas say which arguments an approver sees redacted.
    tools: Option<Arc<crate::tools::Catalog>>,
}

/// What becomes of a held-back call.
#[derive(Debug)]
pub enum Held {
    /// Approved: run it (once; this caller won the approval).
    Run { approval: String },
    /// Not (yet) approved: what to tell the caller.
    Wait(Pending),
}

/// A call that waits, or was refused.
#[derive(Debug)]
pub struct Pending {
    pub id: String,
    /// `approval_requested`, `approval_expired` (an earlier request expired; a new one is made),
    /// `approval_pending`, `approval_denied` or `approval_used`: the call's audit reason.
    pub reason: &'static str,
    /// What the caller reads.
    pub message: String,
    /// The request's status page.
    pub url: String,
}

/// The SHA-256 (hex) of arguments in canonical JSON (the audit chain's encoding).
pub fn arguments_digest(arguments: &Value) -> String {
    let mut canonical = Vec::new();
    crate::audit::chain::canonical(arguments, &mut canonical);
    crate::sha256_hex(&String::from_utf8_lossy(&canonical))
}

/// What the held-back call is.
pub struct Call<'a> {
    pub principal: &'a Principal,
    pub tool: &'a str,
    pub server: Option<&'a str>,
    pub arguments: &'a Value,
    pub approval: &'a Approval,
    pub reason: &'a str,
    pub policy_version: &'a str,
}

impl Approvals {
    pub fn new(
        vault: Arc<Vault>,
        audit: Arc<AuditSink>,
        public_base: String,
        admin_token: Option<crate::secret::Secret>,
        config: &ApprovalsConfig,
        upstream: &crate::upstream::config::UpstreamConfig,
        authenticator: Arc<crate::identity::Authenticator>,
    ) -> Result<Self, crate::config_error::ConfigError> {
        let notifier = match &config.webhook {
            Some(hook) => {
                let field = "approvals.webhook.url";
                let url = url::Url::parse(hook.url.expose())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| crate::config_error::ConfigError::new(field, "must be an absolute http(s) URL"))?;
                let client = crate::upstream::guarded_client(&crate::upstream::AddressPolicy::of(upstream))
                    .map_err(|e| crate::config_error::ConfigError::new(field, format!("cannot build HTTP client: {e}")))?;
                Some(Notifier { url, client })
            }
            None => None,
        };
        Ok(Self {
            vault,
            audit,
            public_base,
            admin_token,
            admin_token_may_approve: config.admin_token_may_approve,
            authenticator,
            notifier,
            tools: None,
        })
    }

    /// Redacts, in what approvers are shown, the arguments these tools' schemas mark secret.
    pub fn with_tools(mut self, tools: Arc<crate::tools::Catalog>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// The arguments as an approver sees them: a property the tool's input schema marks
    /// `writeOnly` or `format: password` is `[redacted]`.
    pub fn shown(&self, tool: &str, arguments: &Value) -> Value {
        let mut arguments = arguments.clone();
        let schema = self.tools.as_ref().and_then(|c| c.load().get(tool).map(|t| Arc::clone(&t.input_schema)));
        if let (Some(schema), Some(object)) = (schema, arguments.as_object_mut()) {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, value) in object.iter_mut() {
                let secret = properties.and_then(|p| p.get(name)).is_some_and(|p| {
                    p.get("writeOnly") == Some(&Value::Bool(true)) || p.get("format").and_then(Value::as_str) == Some("password")
                });
                if secret {
                    *value = Value::String("[redacted]".into());
                }
            }
        }
        arguments
    }

    fn now(&self) -> i64 {
        i64::try_from(self.vault.clock.unix()).unwrap_or(i64::MAX)
    }

    fn status_url(&self, id: &str) -> String {
        format!("{}/approvals/{id}", self.public_base)
    }

    /// Runs the call if this caller holds an approval for exactly it (using it up), else
    /// records or reports the request.
    pub async fn resolve(&self, call: &Call<'_>) -> Result<Held, StoreError> {
        let store = self.vault.store().await?;
        let digest = arguments_digest(call.arguments);
        let (issuer, subject) = (call.principal.issuer.as_str(), call.principal.subject.as_str());
        let open = store.open_approvals(issuer, subject, call.tool, &digest, call.policy_version).await?;
        let approvers = call.approval.approvers();
        let waiting = |found: &ApprovalRecord| {
            let message = format!(
                "This call is waiting for approval by {approvers} (request {}, until {}). Retry the same call with the same arguments once it is approved; it runs once.",
                found.id,
                time(found.expires_at)
            );
            Held::Wait(Pending { id: found.id.clone(), reason: "approval_pending", message, url: self.status_url(&found.id) })
        };
        // Approved and not yet used: this attempt runs it, unless a concurrent one did.
        if let Some(found) = open.iter().find(|a| a.status == "approved") {
            if store.use_approval(&found.id).await? {
                return Ok(Held::Run { approval: found.id.clone() });
            }
            let message = format!(
                "This call's approval (request {}) was used by another attempt of the same call, which ran. Call again to ask for a new approval.",
                found.id
            );
            return Ok(Held::Wait(Pending { id: found.id.clone(), reason: "approval_used", message, url: self.status_url(&found.id) }));
        }
        if let Some(found) = open.iter().find(|a| a.status == "pending") {
            return Ok(waiting(found));
        }
        if let Some(found) = open.iter().find(|a| a.status == "denied") {
            let by = found.decided_by.as_deref().unwrap_or("an approver");
            let comment = found.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
            let message = format!("This call was denied by {by}{comment} (request {}). It will not run.", found.id);
            return Ok(Held::Wait(Pending { id: found.id.clone(), reason: "approval_denied", message, url: self.status_url(&found.id) }));
        }
        let expired = store.expired_approval(issuer, subject, call.tool, &digest).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let expires_at = self.now() + i64::try_from(call.approval.expires_in.as_secs()).unwrap_or(900);
        let approvers_json =
            json!({"roles": call.approval.roles, "subjects": call.approval.subjects, "self_approval": call.approval.self_approval});
        let inserted = store
            .insert_approval(&NewApproval {
                id: &id,
                issuer,
                subject,
                client_id: call.principal.client_id.as_deref(),
                tool: call.tool,
                server: call.server,
                arguments_sha256: &digest,
                arguments: call.arguments,
                policy_version: call.policy_version,
                rule: &call.approval.rule,
                reason: call.reason,
                approvers: &approvers_json,
                expires_at,
            })
            .await?;
        if !inserted {
            // A concurrent attempt of the same call opened the request: wait on that one.
            let open = store.open_approvals(issuer, subject, call.tool, &digest, call.policy_version).await?;
            return match open.iter().find(|a| a.status == "pending") {
                Some(found) => Ok(waiting(found)),
                None => Err(StoreError::Database(sqlx::Error::RowNotFound)),
            };
        }
        if let Some(notifier) = &self.notifier {
            notifier.announce(json!({
                "text": format!(
                    "Approval needed: {subject} asks to call {} ({}). Approvers: {approvers}. Request {id}, until {}: warden approvals approve {id}",
                    call.tool,
                    call.reason,
                    time(expires_at)
                ),
                "approval": {
                    "id": id, "caller": subject, "issuer": issuer, "tool": call.tool, "server": call.server,
                    "rule": call.approval.rule, "reason": call.reason, "approvers": approvers_json, "expires_at": expires_at,
                    "status_url": self.status_url(&id),
                },
            }));
        }
        let earlier = if expired { " The earlier request for this call expired." } else { "" };
        let message = format!(
            "This call needs approval by {approvers}: {}. Request {id} is pending until {}; once it is approved, retry the same call with the same arguments and it runs once.{earlier}",
            call.reason,
            time(expires_at)
        );
        // An earlier request of this call expired undecided: this call's event says so (the new
        // request's id beside it).
        let reason = if expired { "approval_expired" } else { "approval_requested" };
        Ok(Held::Wait(Pending { id: id.clone(), reason, message, url: self.status_url(&id) }))
    }
}

/// Unix seconds as RFC 3339 (UTC).
fn time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(|| unix.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Who decides a request.
pub enum Decider<'a> {
    /// The admin token (recorded as `admin`), where the config allows it.
    AdminToken,
    /// A person, as the identity stage (or the console's sign-in) knows them.
    Person(&'a Principal),
}

impl<'a> Decider<'a> {
    /// A person when one signed in, else the admin token.
    pub fn of(person: Option<&'a Principal>) -> Self {
        person.map_or(Self::AdminToken, Self::Person)
    }

    fn name(&self) -> String {
        match self {
            Self::AdminToken => "admin".into(),
            Self::Person(p) => p.subject.as_str().to_owned(),
        }
    }
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("no such approval request")]
    Unknown,
    #[error("the request is {0}")]
    NotPending(String),
    #[error("approvers decide with their own sign-in")]
    AdminTokenMayNot,
    #[error("you are not an approver of this request")]
    NotAnApprover,
    #[error("you may not decide your own request")]
    SelfApproval,
    #[error("try again shortly")]
    Unavailable,
}

impl DecideError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::Unknown => "approval_unknown",
            Self::NotPending(_) => "approval_not_pending",
            Self::AdminTokenMayNot => "admin_token_may_not_approve",
            Self::NotAnApprover => "not_an_approver",
            Self::SelfApproval => "self_approval",
            Self::Unavailable => "store_unavailable",
        }
    }

    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Unknown => StatusCode::NOT_FOUND,
            Self::NotPending(_) => StatusCode::CONFLICT,
            Self::AdminTokenMayNot | Self::NotAnApprover | Self::SelfApproval => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl Approvals {
    /// Decides request `id` as `decider` (once, while it waits), and audits the outcome either
    /// way: `approval_granted` / `approval_denied` with the approver, the tool, the rule and the
    /// comment, or the refusal. Returns who decided.
    pub async fn decide(
        &self,
        ctx: &crate::edge::RequestContext,
        decider: &Decider<'_>,
        id: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<String, DecideError> {
        let method = if approve { "approvals/approve" } else { "approvals/deny" };
        let refuse = |refused: DecideError| {
            self.audit_refusal(ctx, decider, method, id, &refused);
            Err(refused)
        };
        if comment.is_some_and(|c| c.chars().count() > 1000) {
            return refuse(DecideError::Invalid("the comment is at most 1000 characters"));
        }
        let Ok(store) = self.vault.store().await else { return refuse(DecideError::Unavailable) };
        let request = match store.approval(id).await {
            Ok(Some(request)) => request,
            Ok(None) => return refuse(DecideError::Unknown),
            Err(_) => return refuse(DecideError::Unavailable),
        };
        match decider {
            Decider::AdminToken if !self.admin_token_may_approve => return refuse(DecideError::AdminTokenMayNot),
            Decider::AdminToken => {}
            Decider::Person(p) => match may_decide(p, &request) {
                Ok(()) => {}
                Err("self_approval") => return refuse(DecideError::SelfApproval),
                Err(_) => return refuse(DecideError::NotAnApprover),
            },
        }
        if request.status != "pending" {
            return refuse(DecideError::NotPending(request.status));
        }
        let by = decider.name();
        let window = (request.expires_at - request.created_at).max(60);
        match store.decide_approval(id, approve, &by, comment, window).await {
            Ok(true) => {}
            Ok(false) => return refuse(DecideError::NotPending("decided or expired meanwhile".into())),
            Err(_) => return refuse(DecideError::Unavailable),
        }
        let reason = if approve { "approval_granted" } else { "approval_denied" };
        let said = comment.map(|c| format!(": {c}")).unwrap_or_default();
        let explanation = format!("approval {id} of {} for {}{said}", request.subject, request.tool);
        let mut event = self.decider_event(ctx, decider, method, crate::audit::Verdict { decision: "allow", reason, status: 200 });
        event.explanation = Some(explanation);
        event.tool = Some(request.tool.clone());
        event.server = request.server.clone();
        event.rule = Some(request.rule.clone());
        self.audit.emit(event);
        Ok(by)
    }

    /// Audits a refused decision.
    pub fn audit_refusal(&self, ctx: &crate::edge::RequestContext, decider: &Decider<'_>, method: &str, id: &str, refused: &DecideError) {
        let verdict = crate::audit::Verdict { decision: "deny", reason: refused.code(), status: refused.status().as_u16() };
        let mut event = self.decider_event(ctx, decider, method, verdict);
        event.explanation = Some(format!("approval {}", crate::audit::bounded(id)));
        self.audit.emit(event);
    }

    fn decider_event(
        &self,
        ctx: &crate::edge::RequestContext,
        decider: &Decider<'_>,
        method: &str,
        verdict: crate::audit::Verdict<'_>,
    ) -> crate::audit::AuditEvent {
        match decider {
            Decider::Person(p) => crate::audit::AuditEvent::request(ctx, Some(p), None, Some(method.to_owned()), verdict),
            Decider::AdminToken => {
                let mut event = crate::audit::AuditEvent::connect(ctx, method, None, None, verdict);
                event.subject = Some("admin".into());
                event
            }
        }
    }

    /// The requests, newest first (`pending` narrows to those waiting), that `decider` may see:
    /// the admin token all, a person those they may decide.
    pub async fn list(&self, decider: &Decider<'_>, status: Option<&str>) -> Result<Vec<ApprovalRecord>, StoreError> {
        let all = self.vault.store().await?.list_approvals(status).await?;
        let mut visible: Vec<ApprovalRecord> = match decider {
            Decider::AdminToken => all,
            Decider::Person(p) => all.into_iter().filter(|r| may_decide(p, r).is_ok()).collect(),
        };
        for r in &mut visible {
            r.arguments = self.shown(&r.tool, &r.arguments);
        }
        Ok(visible)
    }
}

/// Whether `principal` may decide `request`, by the approvers the rule named when it was made.
pub fn may_decide(principal: &Principal, request: &ApprovalRecord) -> Result<(), &'static str> {
    let list = |k: &str| -> Vec<String> {
        request
            .approvers
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let rule = Approval {
        rule: request.rule.clone(),
        roles: list("roles"),
        subjects: list("subjects"),
        expires_in: std::time::Duration::ZERO,
        self_approval: request.approvers.get("self_approval").and_then(Value::as_bool).unwrap_or(false),
    };
    rule.may_decide(principal, (&request.issuer, &request.subject))
}
