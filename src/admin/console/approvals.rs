//! The console's page of calls waiting for approval (docs/approvals.md): who asks to call what,
//! with which arguments (secrets redacted by the tool's schema), why, and until when; Approve and
//! Deny with a comment. The signed-in person decides as themselves (their roles at sign-in must
//! make them one of the request's approvers); an admin-token session only where
//! `approvals.admin_token_may_approve` allows it. Every decision is audited by the approvals.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, http::HeaderMap};
use serde::Deserialize;

use super::{ConsoleState, esc, page};
use crate::approvals::Decider;
use crate::edge::RequestContext;

#[derive(Deserialize)]
pub struct Notice {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn render(state: &ConsoleState, headers: &HeaderMap, notice: Notice) -> Response {
    let session = match state.viewer(headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(approvals) = &state.approvals else {
        return page("Call approvals", Some(&session), "<p>Approvals need the vault (<code>vault:</code>).</p>");
    };
    // The person signed in decides as themselves; an admin-token session has no principal.
    let principal = session.actor().principal();
    let decider = Decider::of(principal.as_ref());
    let mut body = String::new();
    if let Some(done) = &notice.done {
        body.push_str(&format!("<p class=\"notice\" id=\"done\">{}</p>", esc(done)));
    }
    if let Some(error) = &notice.error {
        body.push_str(&format!("<p class=\"error\" id=\"error\">{}</p>", esc(error)));
    }
    // The admin token sees every request; a person those they may decide.
    let listed = approvals.list(&decider, Some("pending")).await;
    let requests = match listed {
        Ok(r) => r,
        Err(_) => return page("Call approvals", Some(&session), "<p class=\"error\">The vault's database does not answer.</p>"),
    };
    if principal.is_none() {
        body.push_str("<p><small>Signed in with the admin token: every request is shown; deciding needs <code>approvals.admin_token_may_approve</code>.</small></p>");
    }
    for r in &requests {
        body.push_str(&format!(
            "<section class=\"card pending\" data-approval=\"{id}\"><h2><code>{tool}</code> for {who}</h2>\
             <p>{reason} <small>(rule <code>{rule}</code>; until {until})</small></p><pre>{args}</pre>\
             <form method=\"post\" action=\"/admin/approvals/decide\">{csrf}<input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <label>Comment <input name=\"comment\" maxlength=\"1000\"></label> \
             <button class=\"approve\" name=\"decision\" value=\"approve\">Approve</button> \
             <button class=\"danger\" name=\"decision\" value=\"deny\">Deny</button></form></section>",
            id = esc(&r.id),
            tool = esc(&r.tool),
            who = esc(&r.subject),
            reason = esc(&r.reason),
            rule = esc(&r.rule),
            until = esc(&chrono::DateTime::from_timestamp(r.expires_at, 0).map(|t| t.to_rfc3339()).unwrap_or_default()),
            args = esc(&serde_json::to_string_pretty(&r.arguments).unwrap_or_default()),
            csrf = session.csrf_field(),
        ));
    }
    if requests.is_empty() {
        body.push_str("<p id=\"none-pending\">No calls wait for approval.</p>");
    }
    page("Call approvals", Some(&session), &body)
}

/// `GET /admin/approvals`.
pub async fn list(State(state): State<Arc<ConsoleState>>, headers: HeaderMap, Query(notice): Query<Notice>) -> Response {
    render(&state, &headers, notice).await
}

#[derive(Deserialize)]
pub struct Decide {
    csrf: String,
    id: String,
    decision: String,
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /admin/approvals/decide`.
pub async fn decide(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<Decide>,
) -> Response {
    let (form, session) = match state.posted(&ctx, &headers, "admin/approvals.decide", form, |f| &f.csrf).await {
        Ok(done) => done,
        Err(r) => return *r,
    };
    let Some(approvals) = &state.approvals else { return Redirect::to("/admin/approvals").into_response() };
    let principal = session.actor().principal();
    let decider = Decider::of(principal.as_ref());
    let approve = form.decision == "approve";
    let comment = form.comment.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let back = |key: &str, text: String| {
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair(key, &text).finish();
        Redirect::to(&format!("/admin/approvals?{query}")).into_response()
    };
    match approvals.decide(&ctx, &decider, &form.id, approve, comment).await {
        Ok(by) => back("done", format!("Request {} {} by {by}.", form.id, if approve { "approved" } else { "denied" })),
        Err(refused) => back("error", format!("{refused} ({})", refused.code())),
    }
}
