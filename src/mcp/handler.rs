//! The MCP server handler: runtime tool lists filtered by policy, and tool calls.
//!
//! Served from an [`Admitted`]: the principal, the request's facts and, for a call, the tool
//! and the arguments the gate's policy decision was made on. Dispatch calls these functions for
//! every revision; nothing is served that did not come as an `Admitted`.

use std::sync::Arc;

use rmcp::model::{CallToolResponse, ErrorData, Implementation, InitializeResult, ListToolsResult, ProtocolVersion, ServerCapabilities};
use serde_json::{Map, Value};

use super::{Admitted, CallAllowed, Mcp};
use crate::audit::{AuditEvent, Verdict};
use crate::error::GatewayError;
use crate::federation::Answer;
use crate::tools::ResultBody;
use crate::tools::ToolFailure;
use crate::upstream::{CallContext, Progress, Report};

/// The protocol revisions Warden serves, newest first.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] =
    &[ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2025_06_18];

/// What `initialize` and `server/discover` say of this server: the tools capability, and
/// resources, prompts, completions and logging when federated servers offer them (`federates`).
#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
pub fn info(federates: bool) -> InitializeResult {
    let capabilities = if federates {
        // Logging: a federated server's logs of a call reach the caller that asked for them.
        // Resource subscriptions and list changes: on a session's stream on the older
        // revisions, on `subscriptions/listen` on 2026-07-28 (`subscriptions`).
        ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_completions()
            .enable_logging()
            .build()
    } else {
        ServerCapabilities::builder().enable_tools().build()
    };
    InitializeResult::new(capabilities)
        .with_server_info(Implementation::new("warden", env!("CARGO_PKG_VERSION")).with_title("Warden MCP gateway"))
        .with_instructions("Tools exposed by this gateway are filtered by your identity and scopes.")
}

/// A backend's progress report, as the client's `notifications/progress` (with its own token).
pub fn progress_param(token: &rmcp::model::ProgressToken, p: Progress) -> rmcp::model::ProgressNotificationParam {
    let mut param = rmcp::model::ProgressNotificationParam::new(token.clone(), p.progress);
    param.total = p.total;
    param.message = p.message;
    param
}

/// A `tools/call` whose backend reports during the call (progress; the call's logs from
/// `log_level` on, 2026-07-28): each report goes to `forward` as it comes, and those that came
/// with the answer go before it. If `forward` fails (its client went away), the call is dropped,
/// which cancels it upstream and audits it `client_closed`.
#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
pub async fn call_with_progress<E, F: Future<Output = Result<(), E>>>(
    mcp: &Mcp,
    a: Admitted,
    log_level: Option<rmcp::model::LoggingLevel>,
    mut forward: impl FnMut(Report) -> F,
) -> Result<Result<ToolResponse, ErrorData>, E> {
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::channel::<Report>(16);
    let call = call_tool(mcp, a, Some(Listening { reports: progress_tx, log_level }));
    tokio::pin!(call);
    let answer = loop {
        tokio::select! {
            biased;
            Some(p) = progress_rx.recv() => forward(p).await?,
            answer = &mut call => break answer,
        }
    };
    while let Ok(p) = progress_rx.try_recv() {
        forward(p).await?;
    }
    Ok(answer)
}

/// Where a call's reports go while it runs (an SSE response), and from which level its logs.
#[allow(deprecated, reason = "logging is deprecated by SEP-2577 but still part of 2026-07-28")]
pub struct Listening {
    pub reports: tokio::sync::mpsc::Sender<Report>,
    pub log_level: Option<rmcp::model::LoggingLevel>,
}

/// `tools/list`: the tools this caller may call.
pub fn list_tools(mcp: &Mcp, a: &Admitted) -> ListToolsResult {
    let policy = mcp.policy.load();
    let tools: Vec<rmcp::model::Tool> =
        mcp.tools.load().iter().filter(|t| policy.visible(&a.principal, &t.facts(), &a.facts)).map(|t| t.descriptor()).collect();
    let verdict = Verdict { decision: "allow", reason: "ok", status: 200 };
    a.once.emit(&mcp.audit, AuditEvent::request(&a.ctx, Some(&a.principal), a.jsonrpc_id.clone(), Some("tools/list".into()), verdict));
    ListToolsResult::with_all_items(tools)
}

/// `tools/call` of a call the gate allowed: argument validation, then the tool's upstream call
/// with the arguments policy decided on.
///
/// The call is registered by caller and id while it runs, so the caller's
/// `notifications/cancelled` stops it (and the backend is told); if the client goes away
/// instead, the call is audited as `client_closed` when its future is dropped: every call is
/// audited once, however it ends. `listening`: where the backend's reports during the call go
/// (progress; on 2026-07-28 the call's logs), when the client can receive them.
///
/// A federated server may answer with input requests (2026-07-28): they reach the caller with
/// Warden's sealed state ([`super::rounds`]), and the caller's retry comes back here with it.
pub async fn call_tool(mcp: &Mcp, a: Admitted, listening: Option<Listening>) -> Result<ToolResponse, ErrorData> {
    let Admitted { principal, ctx, jsonrpc_id, call, once, url_elicitation, facts, revision, client_capabilities, .. } = a;
    let refused = |error: &GatewayError| Verdict { decision: error.decision(), reason: error.reason(), status: error.status().as_u16() };
    let Some(CallAllowed { tool, rule, arguments, held, retry }) = call else {
        // The gate decides every call it admits; a call without a decision is never served.
        let error = GatewayError::NoDecision;
        once.emit(&mcp.audit, AuditEvent::request(&ctx, Some(&principal), jsonrpc_id, Some("tools/call".into()), refused(&error)));
        return Err(error.into_error_data());
    };
    let arguments_sha256 = (tool.audit_arguments == crate::tools::config::AuditArguments::Digest).then(|| {
        let mut canonical = Vec::new();
        crate::audit::chain::canonical(&arguments, &mut canonical);
        crate::sha256_hex(&String::from_utf8_lossy(&canonical))
    });
    let event = |verdict| AuditEvent {
        server: tool.server.clone(),
        arguments_sha256: arguments_sha256.clone(),
        ..AuditEvent::tool_call(&ctx, &principal, jsonrpc_id.clone(), &tool.name, Some(rule.clone()), verdict)
    };
    if let Err(reason) = tool.validate_arguments(&arguments) {
        // A tool execution error the model can act on, not a protocol error (SEP-1303,
        // 2025-11-25): the validator's words name the argument and the rule, never its value.
        let error = GatewayError::InvalidArguments(reason);
        once.emit(&mcp.audit, event(refused(&error)));
        return Ok(ToolResponse::Rpc(CallToolResponse::Complete(crate::error::invalid_arguments_result(&error))));
    }
    // A retried call of a federated tool (2026-07-28): the round its state names, for this
    // caller and tool only, and the client's answers. Answers without a state (a server that
    // keeps none) go to the server as they came.
    let (round, input) = match tool.server.as_deref().map(|server| open_round(mcp, &principal, &tool.name, server, retry)) {
        Some(Ok(opened)) => opened,
        Some(Err(error)) => {
            once.emit(&mcp.audit, event(refused(&error)));
            return Err(error.into_error_data());
        }
        None => (None, None),
    };
    let round_note = round.as_ref().map(round_note);
    let event = |verdict| AuditEvent { explanation: round_note.clone(), ..event(verdict) };
    // Held back by an `approve` rule: runs only with this caller's approval of exactly this
    // call, used up here; otherwise the request is recorded (or reported) and nothing runs.
    let mut approved = None;
    if let (Some((approval, reason, version)), Some(approvals)) = (&held, &mcp.approvals) {
        let call = crate::approvals::Call {
            principal: &principal,
            tool: &tool.name,
            server: tool.server.as_deref(),
            arguments: &arguments,
            approval,
            reason,
            policy_version: version,
        };
        match approvals.resolve(&call).await {
            Ok(crate::approvals::Held::Run { approval }) => approved = Some(approval),
            Ok(crate::approvals::Held::Wait(pending)) => {
                let verdict = Verdict { decision: "deny", reason: pending.reason, status: 200 };
                once.emit(&mcp.audit, AuditEvent { explanation: Some(format!("approval {}", pending.id)), ..event(verdict) });
                return Ok(match url_elicitation {
                    super::Elicitation::Text => {
                        ToolResponse::Rpc(CallToolResponse::Complete(crate::error::approval_result(&pending.message)))
                    }
                    super::Elicitation::Error => {
                        return Err(GatewayError::ApprovalPending { url: pending.url, message: pending.message, code: pending.reason }
                            .into_error_data());
                    }
                    super::Elicitation::InputRequired => {
                        ToolResponse::Rpc(CallToolResponse::InputRequired(url_input_required("approval", pending.url, pending.message)))
                    }
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "approvals unavailable");
                let error =
                    GatewayError::ApprovalsUnavailable { rule: rule.clone(), tool: Box::new(crate::error::LimitedItem::tool(&tool)) };
                once.emit(&mcp.audit, event(refused(&error)));
                return Err(error.into_error_data());
            }
        }
    }
    // What the event says beside the outcome: the approval it ran under, the round it is.
    let explanation = match (approved.as_ref(), round_note.as_ref()) {
        (Some(id), Some(round)) => Some(format!("approval {id}; {round}")),
        (Some(id), None) => Some(format!("approval {id}")),
        (None, round) => round.cloned(),
    };
    let event = |verdict| AuditEvent { explanation: explanation.clone(), ..event(verdict) };
    // Within the caller's rate limits and quotas? (After validation: a malformed call spends
    // nothing.)
    let mut limits_note = None;
    if !mcp.limits.is_empty() {
        let call = crate::limits::CallFacts {
            principal: &principal,
            tool: tool.facts(),
            cost: tool.cost,
            arguments: &arguments,
            request: &facts,
            request_ids: (&ctx.request_id, &ctx.traceparent),
        };
        match mcp.limits.admit(&call).await {
            Ok(admission) => limits_note = admission.audit_note(),
            Err(refusal) => {
                let error = limits_error(refusal, crate::error::LimitedItem::tool(&tool));
                let details = error.audit_details();
                let verdict = refused(&error);
                once.emit(&mcp.audit, AuditEvent { rule: details.rule, explanation: details.explanation, ..event(verdict) });
                return Err(error.into_error_data());
            }
        }
    }
    let event = |verdict| AuditEvent { limits: limits_note, ..event(verdict) };
    let args: &Map<String, Value> = arguments.as_object().unwrap_or(&EMPTY);
    // The upstream call's client span; what goes upstream names it as the parent.
    let span = tool.backend.client_span(&ctx.span, &tool.name);
    let traceparent = crate::telemetry::traces::traceparent(&span).unwrap_or_else(|| ctx.traceparent.clone());
    let client_capabilities = client_capabilities.filter(|_| tool.server.is_some());
    let (progress, log_level) = listening.map_or((None, None), |l| (Some(l.reports), l.log_level));
    // On the older revisions, what a federated server asks of the caller during the call goes
    // to it on the call's stream, as far as it declared it can be asked (`asks`).
    let record = || super::asks::AskRecord {
        audit: Arc::clone(&mcp.audit),
        principal: Arc::clone(&principal),
        ctx: ctx.clone(),
        call_id: jsonrpc_id.clone(),
        tool: tool.name.clone(),
        asked: std::sync::atomic::AtomicU32::new(0),
    };
    let asker = (revision == super::dispatch::Revision::Handshake && tool.server.is_some()).then(|| {
        let asker = super::asks::CallerAsker {
            record: record(),
            pending: Arc::clone(&mcp.asks),
            capabilities: client_capabilities.clone(),
            stream: progress.clone(),
        };
        Arc::new(asker) as Arc<dyn crate::upstream::Asker>
    });
    let mut call = CallContext { request_id: ctx.request_id.clone(), traceparent, progress, log_level, input, client_capabilities, asker };
    let running = Running::start(mcp, &principal, jsonrpc_id.as_ref(), &once, || event(closed()));
    let started = std::time::Instant::now();
    // What the server may ask the caller during the call, as the caller's revision allows
    // (`held`): a 2026-07-28 caller's retry may name a call held for its answer.
    let holdable = call.client_capabilities.as_ref().and_then(super::sessions::relayable).is_some();
    let up =
        super::held::Upstream { mcp, tool: &tool, principal: &principal, args, span: &span, cancelled: &running.token, record: &record };
    let resume = round.as_ref().and_then(|r| r.held.as_deref());
    let super::held::Called { outcome, held, asked_rounds } = match super::held::call(&up, &mut call, revision, resume, holdable).await {
        Ok(called) => called,
        Err(error) => {
            running.finish();
            once.emit(&mcp.audit, event(refused(&error)));
            return Err(error.into_error_data());
        }
    };
    match &outcome {
        Ok(answer) => crate::telemetry::traces::record_outcome(&span, Some(answer.upstream_status), None),
        Err(failure) => crate::telemetry::traces::record_outcome(&span, failure.upstream_status(), Some(failure.code())),
    }
    let (kind, target) = match &tool.server {
        Some(server) => ("mcp", server.as_str()),
        None => ("http", tool.name.as_str()),
    };
    mcp.metrics.upstream(kind, target, outcome.as_ref().map_or_else(ToolFailure::code, |_| "ok"), started.elapsed());
    // Answered: from here the call's own event is written below.
    running.finish();
    let credential = tool.credential_name().map(str::to_owned);
    let delegation = tool.backend.delegates().then(|| crate::audit::Delegation::of(&principal));
    let failure = match outcome {
        Ok(crate::tools::ToolResult { result, upstream_status }) => {
            let ok = Verdict { decision: "allow", reason: "ok", status: 200 };
            let (verdict, explanation, response) = match result {
                ResultBody::Typed(mut result) => {
                    // A federated server of an older revision sends no `resultType`; 2026-07-28
                    // requires it (the older revisions' path strips it again).
                    result.result_type.get_or_insert(rmcp::model::ResultType::COMPLETE);
                    (ok, None, ToolResponse::Rpc(CallToolResponse::Complete(result)))
                }
                ResultBody::Raw(raw) => (ok, None, ToolResponse::Raw(raw)),
                // The server needs input first: relayed with Warden's state for the next round.
                ResultBody::InputRequired(asked) => {
                    let server = tool.server.as_deref().unwrap_or_default();
                    let asked_for = asked_for(&asked);
                    let relayed =
                        next_round(mcp, &principal, (&tool.name, server), revision, (round.as_ref(), held), &ctx.request_id, asked);
                    let (verdict, explanation) = input_verdict(relayed.is_some(), &asked_for, round_note.as_deref());
                    let response = match relayed {
                        Some(relayed) => CallToolResponse::InputRequired(relayed),
                        None => CallToolResponse::Complete(crate::error::input_required_unsupported_result()),
                    };
                    (verdict, explanation, ToolResponse::Rpc(response))
                }
            };
            let mut event = AuditEvent { upstream_status: Some(upstream_status), credential, delegation, ..event(verdict) };
            if explanation.is_some() {
                event.explanation = explanation;
            }
            if asked_rounds > 0 {
                let asked = format!("the server's input requests answered by the client in {asked_rounds} round(s)");
                event.explanation = Some(event.explanation.map_or_else(|| asked.clone(), |e| format!("{e}; {asked}")));
            }
            once.emit(&mcp.audit, event);
            return Ok(response);
        }
        Err(failure) => failure,
    };
    let decision = if failure.denies() { "deny" } else { "error" };
    let verdict = Verdict { decision, reason: failure.code(), status: 200 };
    let explanation = failure.audit_explanation();
    once.emit(&mcp.audit, AuditEvent { upstream_status: failure.upstream_status(), credential, explanation, delegation, ..event(verdict) });
    // The caller must connect an account first: never a token that is not theirs.
    if let ToolFailure::ConnectionRequired(connect) = &failure {
        match url_elicitation {
            super::Elicitation::Text => {}
            super::Elicitation::Error => {
                return Err(
                    GatewayError::ConnectionRequired { url: connect.url.clone(), message: connect.message.clone() }.into_error_data()
                );
            }
            super::Elicitation::InputRequired => {
                let input = url_input_required("connect", connect.url.clone(), connect.message.clone());
                return Ok(ToolResponse::Rpc(CallToolResponse::InputRequired(input)));
            }
        }
    }
    // A federated server's own JSON-RPC error (invalid params, a refused request state) is a
    // protocol error: the caller gets it as the server sent it, not as a tool result.
    // Its data too, when it sent some; else Warden's stable code and the server's name.
    if let (ToolFailure::Rpc { code, message, data }, Some(server)) = (&failure, &tool.server) {
        let data = data.as_deref().cloned().unwrap_or_else(|| serde_json::json!({"code": "upstream_error", "server": server}));
        return Err(ErrorData::new(rmcp::model::ErrorCode(*code), message.clone(), Some(data)));
    }
    Ok(ToolResponse::Rpc(CallToolResponse::Complete(crate::error::tool_failure_result(&failure))))
}

/// A `tools/call`'s answer: one Warden built or rmcp's types hold, or a federated server's
/// result passed through as it came.
#[derive(Debug)]
pub enum ToolResponse {
    Rpc(CallToolResponse),
    Raw(crate::tools::RawResult),
}

/// A passed-through result at least this large goes out in the buffer it came in.
const LARGE_RESULT: usize = 64 * 1024;

/// A `tools/call`'s response body ([`ToolResponse::into_body`]).
pub enum ResponseBody {
    Text(String),
    Pieces([bytes::Bytes; 3]),
}

impl ToolResponse {
    /// The JSON-RPC response to request `id` in `revision`'s shape, as a body: for a large
    /// passed-through result that goes out unchanged, in pieces (the envelope's head, the
    /// result's bytes in the buffer they came in — no copy — and the envelope's tail); else
    /// [`Self::into_json`].
    pub fn into_body(self, id: &rmcp::model::RequestId, revision: super::dispatch::Revision) -> ResponseBody {
        let raw = match self {
            Self::Raw(raw) if raw.text_len() >= LARGE_RESULT => raw,
            other => return ResponseBody::Text(other.into_json(id, revision)),
        };
        match raw.into_bytes(revision == super::dispatch::Revision::Handshake) {
            Ok(result) => {
                let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
                let head = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":");
                ResponseBody::Pieces([bytes::Bytes::from(head), result, bytes::Bytes::from_static(b"}")])
            }
            Err(raw) => ResponseBody::Text(Self::Raw(raw).into_json(id, revision)),
        }
    }

    /// The JSON-RPC response to request `id` in `revision`'s shape, as JSON text: a
    /// passed-through result is copied in as it came (with `resultType` added or removed).
    pub fn into_json(self, id: &rmcp::model::RequestId, revision: super::dispatch::Revision) -> String {
        match self {
            Self::Rpc(response) => {
                let mut result = rmcp::model::ServerResult::from(response);
                if revision == super::dispatch::Revision::Handshake {
                    result.strip_result_type_for_legacy_peer();
                }
                serde_json::to_string(&rmcp::model::ServerJsonRpcMessage::response(result, id.clone())).unwrap_or_default()
            }
            Self::Raw(raw) => {
                let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
                let result = raw.to_json(revision == super::dispatch::Revision::Handshake);
                let mut out = String::with_capacity(result.len() + id.len() + 40);
                out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
                out.push_str(&id);
                out.push_str(",\"result\":");
                out.push_str(&result);
                out.push('}');
                out
            }
        }
    }
}

/// A page the person must visit, as a 2026-07-28 `InputRequiredResult`: one URL-mode elicitation
/// under `key` (`connect`: connect an account; `approval`: the approval's status page). Nothing
/// is kept here between the rounds: the retried call resolves the caller's credential, or finds
/// the approval, again.
fn url_input_required(key: &str, url: String, message: String) -> rmcp::model::InputRequiredResult {
    let params = rmcp::model::ElicitRequestParams::UrlElicitationParams {
        meta: None,
        message,
        url,
        elicitation_id: uuid::Uuid::now_v7().to_string(),
    };
    let request = rmcp::model::InputRequest::Elicitation(rmcp::model::ElicitRequest::new(params));
    rmcp::model::InputRequiredResult::new(Some([(key.to_owned(), request)].into_iter().collect()), None)
}

/// The method of a server's input request, for the audit.
pub(super) fn input_method(request: &rmcp::model::InputRequest) -> &'static str {
    match request {
        rmcp::model::InputRequest::Elicitation(_) => "elicitation/create",
        rmcp::model::InputRequest::CreateMessage(_) => "sampling/createMessage",
        rmcp::model::InputRequest::ListRoots(_) => "roots/list",
        // A kind a later revision adds.
        _ => "another input",
    }
}

/// A retried request's round (2026-07-28), opened for this caller and this tool, prompt or
/// resource of `server`: the round its state names (none without a state), and what goes to the
/// server (the client's answers; the server's own state, restored). Answers sent without a
/// state (a server that keeps none) go to the server as they came.
fn open_round(
    mcp: &Mcp,
    principal: &crate::identity::Principal,
    name: &str,
    server: &str,
    retry: Option<super::Retry>,
) -> Result<(Option<super::rounds::Round>, Option<Arc<crate::upstream::UpstreamInput>>), GatewayError> {
    let Some(super::Retry { responses, state }) = retry else { return Ok((None, None)) };
    let round = match state {
        Some(state) => {
            Some(mcp.rounds.open(principal, name, server, &state, crate::unix_now()).map_err(|_| GatewayError::InvalidRequestState)?)
        }
        None => None,
    };
    let input = crate::upstream::UpstreamInput { responses, state: round.as_ref().and_then(|r| r.server_state.clone()) };
    Ok((round, Some(Arc::new(input))))
}

/// The server's input requests as the caller gets them, with Warden's state for the next
/// round; `None` for a caller of a revision before 2026-07-28, which cannot be sent them.
fn next_round(
    mcp: &Mcp,
    principal: &crate::identity::Principal,
    (name, server): (&str, &str),
    revision: super::dispatch::Revision,
    (round, held): (Option<&super::rounds::Round>, Option<String>),
    request_id: &str,
    asked: rmcp::model::InputRequiredResult,
) -> Option<rmcp::model::InputRequiredResult> {
    if revision != super::dispatch::Revision::PerRequest {
        return None;
    }
    let next = super::rounds::Round {
        server_state: asked.request_state,
        number: round.map_or(2, |r| r.number + 1),
        first: round.map_or_else(|| request_id.to_owned(), |r| r.first.clone()),
        expires: crate::unix_now() + super::rounds::STATE_TTL.as_secs(),
        held,
    };
    let state = mcp.rounds.seal(principal, name, server, &next)?;
    Some(rmcp::model::InputRequiredResult::new(asked.input_requests, Some(state)))
}

/// What a retry's audit event says of its round.
fn round_note(round: &super::rounds::Round) -> String {
    format!("round {} of the call first made as request {}", round.number, round.first)
}

/// The methods a server's input requests ask for, for the audit (never their content).
fn asked_for(asked: &rmcp::model::InputRequiredResult) -> String {
    asked.input_requests.iter().flat_map(|r| r.values()).map(input_method).collect::<Vec<_>>().join(", ")
}

/// The verdict and explanation of a request the server answered with input requests: relayed,
/// or not (the caller's revision cannot take them).
fn input_verdict(relayed: bool, asked_for: &str, round: Option<&str>) -> (Verdict<'static>, Option<String>) {
    let verdict = if relayed {
        Verdict { decision: "allow", reason: "input_required", status: 200 }
    } else {
        Verdict { decision: "error", reason: "input_required_unsupported", status: 200 }
    };
    let explanation = match round {
        Some(round) => format!("asked the client for {asked_for}; {round}"),
        None => format!("asked the client for {asked_for}"),
    };
    (verdict, Some(explanation))
}

/// A refusal of the limits, as the error the caller gets.
fn limits_error(refusal: crate::limits::Refusal, tool: crate::error::LimitedItem) -> GatewayError {
    use crate::limits::{QuotaRefusal, Refusal};
    let tool = Box::new(tool);
    match refusal {
        Refusal::Rate(limited) => GatewayError::RateLimited { retry_after: limited.retry_after_secs(), rule: limited.rule, tool },
        Refusal::Quota(QuotaRefusal::Exceeded { quota, resets_at, retry_after }) => GatewayError::QuotaExceeded {
            quota,
            resets_at: resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            retry_after,
            tool,
        },
        Refusal::Quota(QuotaRefusal::Unavailable { quota: rule }) | Refusal::Unavailable { rule } => {
            GatewayError::LimitsUndecided { rule, reason: "limits_unavailable", tool }
        }
        Refusal::KeyError { rule } => GatewayError::LimitsUndecided { rule, reason: "limit_key_error", tool },
    }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// The verdict of a call whose client went away before its answer (nginx's 499).
fn closed() -> Verdict<'static> {
    Verdict { decision: "error", reason: "client_closed", status: 499 }
}

/// A call in progress: cancellable by its caller, and audited if dropped unanswered.
struct Running<'a, F: FnOnce() -> AuditEvent> {
    mcp: &'a Mcp,
    key: Option<String>,
    token: Arc<tokio_util::sync::CancellationToken>,
    once: &'a crate::audit::AuditOnce,
    on_drop: Option<F>,
}

impl<'a, F: FnOnce() -> AuditEvent> Running<'a, F> {
    fn start(
        mcp: &'a Mcp,
        principal: &crate::identity::Principal,
        id: Option<&Value>,
        once: &'a crate::audit::AuditOnce,
        on_drop: F,
    ) -> Self {
        let token = Arc::new(tokio_util::sync::CancellationToken::new());
        let key = id.map(|id| super::in_flight_key(principal, id));
        if let Some(key) = &key {
            mcp.in_flight.insert(key.clone(), Arc::clone(&token));
        }
        Self { mcp, key, token, once, on_drop: Some(on_drop) }
    }

    /// The call ended with an answer: no longer cancellable, and its caller writes its event.
    fn finish(mut self) {
        self.on_drop = None;
    }
}

impl<F: FnOnce() -> AuditEvent> Drop for Running<'_, F> {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.mcp.in_flight.remove_if(key, |_, token| Arc::ptr_eq(token, &self.token));
        }
        if !self.once.written()
            && let Some(event) = self.on_drop.take()
        {
            self.once.emit(&self.mcp.audit, event());
        }
    }
}

/// What this caller may see of a federated resource or prompt: policy on its exposed name.
fn visible<'a>(mcp: &'a Mcp, a: &'a Admitted) -> impl Fn(&crate::policy::ToolFacts<'_>) -> bool + 'a {
    let policy = mcp.policy.load_full();
    move |facts| policy.visible(&a.principal, facts, &a.facts)
}

fn listed(mcp: &Mcp, a: &Admitted) {
    let verdict = Verdict { decision: "allow", reason: "ok", status: 200 };
    a.once.emit(&mcp.audit, AuditEvent::request(&a.ctx, Some(&a.principal), a.jsonrpc_id.clone(), a.method.clone(), verdict));
}

/// `resources/list`: the federated servers' resources this caller may see.
pub fn list_resources(mcp: &Mcp, a: &Admitted) -> rmcp::model::ListResourcesResult {
    let resources = mcp.federation.resources(visible(mcp, a));
    listed(mcp, a);
    rmcp::model::ListResourcesResult::with_all_items(resources)
}

/// `resources/templates/list`.
pub fn list_resource_templates(mcp: &Mcp, a: &Admitted) -> rmcp::model::ListResourceTemplatesResult {
    let templates = mcp.federation.resource_templates(visible(mcp, a));
    listed(mcp, a);
    rmcp::model::ListResourceTemplatesResult::with_all_items(templates)
}

/// `prompts/list`.
pub fn list_prompts(mcp: &Mcp, a: &Admitted) -> rmcp::model::ListPromptsResult {
    let prompts = mcp.federation.prompts(visible(mcp, a));
    listed(mcp, a);
    rmcp::model::ListPromptsResult::with_all_items(prompts)
}

/// `resources/read` of a federated resource the caller may see; audited with its exposed name.
pub async fn read_resource(
    mcp: &Mcp,
    a: Admitted,
    uri: &str,
    retry: Option<super::Retry>,
) -> Result<Answer<rmcp::model::ReadResourceResult>, ErrorData> {
    let source = mcp.federation.locate_resource(uri, visible(mcp, &a));
    let not_found = || GatewayError::ResourceNotFound(crate::audit::bounded(uri).into_owned());
    let name = source.as_ref().map(|s| s.name.clone());
    let sought = Sought { name, arguments: &Value::Object(Map::new()), retry };
    from_source(mcp, &a, source, sought, not_found, async |s, ctx| s.read_resource(uri, &a.principal, ctx).await).await
}

/// `prompts/get` of a federated prompt the caller may see.
pub async fn get_prompt(
    mcp: &Mcp,
    a: Admitted,
    name: &str,
    arguments: Option<Map<String, Value>>,
    retry: Option<super::Retry>,
) -> Result<Answer<rmcp::model::GetPromptResult>, ErrorData> {
    let source = mcp.federation.locate_prompt(name, visible(mcp, &a));
    let exposed = crate::audit::bounded(name).into_owned();
    let args = Value::Object(arguments.clone().unwrap_or_default());
    let not_found = || GatewayError::PromptNotFound(exposed.clone());
    let sought = Sought { name: Some(exposed.clone()), arguments: &args, retry };
    from_source(mcp, &a, source, sought, not_found, async |s, ctx| s.get_prompt(arguments, &a.principal, ctx).await).await
}

/// `completion/complete` for an argument of a federated prompt or resource template the caller
/// may see; audited with the prompt's exposed name or the template's URI.
pub async fn complete(
    mcp: &Mcp,
    a: Admitted,
    params: rmcp::model::CompleteRequestParams,
) -> Result<rmcp::model::CompleteResult, ErrorData> {
    let reference = match &params.r#ref {
        rmcp::model::Reference::Prompt(p) => crate::audit::bounded(&p.name).into_owned(),
        rmcp::model::Reference::Resource(r) => crate::audit::bounded(&r.uri).into_owned(),
        // A kind of reference a later revision adds: no server is asked about it.
        _ => "(unknown reference type)".to_owned(),
    };
    let source = mcp.federation.locate_reference(&params.r#ref, visible(mcp, &a));
    let not_found = || GatewayError::CompletionRefNotFound(reference.clone());
    let sought = Sought { name: Some(reference.clone()), arguments: &Value::Object(Map::new()), retry: None };
    let answer =
        from_source(mcp, &a, source, sought, not_found, async |s, ctx| s.complete(params, &a.principal, ctx).await.map(Answer::Complete))
            .await?;
    match answer {
        Answer::Complete(result) => Ok(result),
        // A completion is never answered with input requests (`complete` asks for none).
        Answer::Input(_) => Err(GatewayError::NoDecision.into_error_data()),
    }
}

/// What a federated request seeks, besides its source: the name it is audited under, the
/// arguments limits read, and a retry's answers and state (2026-07-28).
struct Sought<'a> {
    name: Option<String>,
    arguments: &'a Value,
    retry: Option<super::Retry>,
}

/// A federated resource read, prompt get or completion: `source` is what policy let the
/// caller see (`not_found` when none), then the caller's rate limits decide (with `arguments`
/// as `args`; quotas budget tool calls and are not spent here), then `ask` sends it. Audited
/// once, under `name`.
async fn from_source<T>(
    mcp: &Mcp,
    a: &Admitted,
    source: Option<crate::federation::Source>,
    sought: Sought<'_>,
    not_found: impl FnOnce() -> GatewayError,
    ask: impl AsyncFnOnce(&crate::federation::Source, &CallContext) -> Result<Answer<T>, ToolFailure>,
) -> Result<Answer<T>, ErrorData> {
    let Sought { name, arguments, retry } = sought;
    let refused = |error: GatewayError, server: Option<String>| {
        let details = error.audit_details();
        let verdict = Verdict { decision: error.decision(), reason: error.reason(), status: 200 };
        let event = AuditEvent {
            tool: name.clone(),
            server: details.server.or(server),
            rule: details.rule,
            explanation: details.explanation,
            ..AuditEvent::request(&a.ctx, Some(&a.principal), a.jsonrpc_id.clone(), a.method.clone(), verdict)
        };
        a.once.emit(&mcp.audit, event);
        Err(error.into_error_data())
    };
    let Some(source) = source else { return refused(not_found(), None) };
    let (round, input) = match open_round(mcp, &a.principal, &source.name, source.server(), retry) {
        Ok(opened) => opened,
        Err(error) => return refused(error, Some(source.server().to_owned())),
    };
    let mut limits_note = None;
    if !mcp.limits.is_empty() {
        let call = crate::limits::CallFacts {
            principal: &a.principal,
            tool: source.facts(),
            cost: 0,
            arguments,
            request: &a.facts,
            request_ids: (&a.ctx.request_id, &a.ctx.traceparent),
        };
        match mcp.limits.admit_rate(&call).await {
            Ok(admission) => limits_note = admission.audit_note(),
            Err(refusal) => {
                let item = crate::error::LimitedItem { name: source.name.clone(), server: Some(source.server().to_owned()) };
                return refused(limits_error(refusal, item), None);
            }
        }
    }
    let ctx = CallContext {
        request_id: a.ctx.request_id.clone(),
        traceparent: a.ctx.traceparent.clone(),
        input,
        client_capabilities: a.client_capabilities.clone(),
        ..Default::default()
    };
    let served = |verdict, explanation| AuditEvent {
        tool: name.clone(),
        server: Some(source.server().to_owned()),
        limits: limits_note,
        explanation,
        ..AuditEvent::request(&a.ctx, Some(&a.principal), a.jsonrpc_id.clone(), a.method.clone(), verdict)
    };
    let round_note = round.as_ref().map(round_note);
    match ask(&source, &ctx).await {
        Ok(Answer::Complete(result)) => {
            a.once.emit(&mcp.audit, served(Verdict { decision: "allow", reason: "ok", status: 200 }, round_note));
            Ok(Answer::Complete(result))
        }
        Ok(Answer::Input(asked)) => {
            let asked_for = asked_for(&asked);
            let relayed = next_round(
                mcp,
                &a.principal,
                (&source.name, source.server()),
                a.revision,
                (round.as_ref(), None),
                &a.ctx.request_id,
                asked,
            );
            let (verdict, explanation) = input_verdict(relayed.is_some(), &asked_for, round_note.as_deref());
            a.once.emit(&mcp.audit, served(verdict, explanation));
            match relayed {
                Some(relayed) => Ok(Answer::Input(relayed)),
                None => Err(ErrorData::internal_error(
                    "the MCP server needs input from the client, which this gateway relays to clients of MCP 2026-07-28 only",
                    Some(serde_json::json!({"code": "input_required_unsupported"})),
                )),
            }
        }
        Err(failure) => {
            let error = GatewayError::SourceFailed(failure.code(), crate::error::source_failure_text(&failure));
            refused(error, Some(source.server().to_owned()))
        }
    }
}
