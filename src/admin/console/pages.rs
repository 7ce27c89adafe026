//! The console's pages. Each reads or changes through the admin operations (`crate::admin`),
//! which audit with the signed-in administrator as the actor.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, http::HeaderMap};
use serde::Deserialize;
use serde_json::Value;

use super::{ConsoleState, Session, esc, page, refusal_page};
use crate::admin::api_keys;
use crate::apikeys::NewKey;
use crate::edge::RequestContext;
use crate::error::AdminError;
use crate::identity::{Principal, Subject};
use crate::store::ConnectionKey;

pub async fn home(State(state): State<Arc<ConsoleState>>, headers: HeaderMap) -> Response {
    match state.viewer(&headers).await {
        Ok(_) => Redirect::to("/admin/tools").into_response(),
        Err(to_sign_in) => *to_sign_in,
    }
}

fn time(unix: Option<i64>) -> String {
    unix.and_then(|t| u64::try_from(t).ok())
        .map(|t| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)).to_string())
        .unwrap_or_else(|| "–".into())
}

fn words(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default().split([' ', ',']).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

fn nonempty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty())
}

#[derive(Debug, Deserialize, Default)]
pub struct Preview {
    #[serde(rename = "as")]
    subject: Option<String>,
    roles: Option<String>,
    scopes: Option<String>,
    tenant: Option<String>,
}

/// Tools and routes, with who may see each: "preview as" evaluates the real policy for a
/// principal described in the form (nothing is called).
pub async fn tools(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Query(preview): Query<Preview>,
) -> Response {
    let session = match state.viewer(&headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    state.admin.audit.emit(crate::admin::allowed_by(&ctx, &session.actor(), "admin/console.tools", None, "ok"));
    let who = nonempty(preview.subject.clone()).map(|sub| {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), Value::String(sub.clone()));
        Principal {
            subject: Subject::new(sub).unwrap_or_else(Subject::gateway),
            issuer: "console-preview".into(),
            client_id: None,
            scopes: words(preview.scopes.as_deref()).into_iter().collect::<BTreeSet<_>>(),
            roles: words(preview.roles.as_deref()),
            tenant: nonempty(preview.tenant.clone()),
            claims,
            tools: None,
            token: None,
        }
    });
    let policy = state.policy.load();
    let request = crate::policy::RequestFacts::default();
    let catalog = state.tools.load();
    let mut rows = String::new();
    let mut facts: Vec<(String, &'static str, crate::policy::ToolFacts<'_>)> = Vec::new();
    for tool in catalog.iter() {
        let source = if tool.server.is_some() { "server" } else { "config" };
        facts.push((tool.description.clone(), source, tool.facts()));
    }
    for route in state.routes.iter() {
        facts.push((String::new(), "route", route.facts()));
    }
    facts.sort_by(|a, b| a.2.name.cmp(b.2.name));
    for (description, source, f) in &facts {
        let verdict = who.as_ref().map(|p| {
            let decision = policy.decide(p, f, crate::policy::Stage::List, &request, None);
            match decision.outcome {
                Ok(()) => format!("<td class=\"yes\">visible <small>{}</small></td>", esc(&decision.rule)),
                Err(_) => format!("<td class=\"no\">hidden <small>{}</small></td>", esc(&decision.rule)),
            }
        });
        rows.push_str(&format!(
            "<tr data-tool=\"{n}\"><td><code>{n}</code><br><small>{d}</small></td><td>{source}</td><td>{s}</td><td>{t}</td>{v}</tr>",
            n = esc(f.name),
            d = esc(description),
            s = esc(&f.scopes.join(" ")),
            t = esc(&f.tags.join(", ")),
            v = verdict.unwrap_or_default(),
        ));
    }
    // Federated tools withheld from every caller until an operator approves their new definition.
    for (name, why) in catalog.withheld_names() {
        rows.push_str(&format!(
            "<tr data-tool=\"{n}\" class=\"withheld\"><td><code>{n}</code><br><small>withheld from every caller ({w}): \
             <a href=\"/admin/pins\">review the change</a></small></td><td>server</td><td></td><td></td>{v}</tr>",
            n = esc(name),
            w = esc(why),
            v = if who.is_some() { "<td class=\"no\">withheld</td>" } else { "" },
        ));
    }
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or_default());
    let heading = who.as_ref().map(|p| format!("<th>As {}</th>", esc(p.subject.as_str()))).unwrap_or_default();
    let body = format!(
        "<form method=\"get\" class=\"card inline\" id=\"preview\"><strong>Preview as</strong>\
         <label>subject <input name=\"as\" value=\"{sub}\" placeholder=\"alice\"></label>\
         <label>roles <input name=\"roles\" value=\"{roles}\" placeholder=\"analyst\"></label>\
         <label>scopes <input name=\"scopes\" value=\"{scopes}\" placeholder=\"calendar:read\"></label>\
         <label>tenant <input name=\"tenant\" value=\"{tenant}\"></label><button id=\"preview-button\">Preview</button></form>\
         <p class=\"muted\">The policy in force decides, as at <code>tools/list</code>; conditions on arguments count as satisfiable.</p>\
         <table id=\"tools\"><tr><th>Tool</th><th>Source</th><th>Scopes</th><th>Tags</th>{heading}</tr>{rows}</table>",
        sub = v(&preview.subject),
        roles = v(&preview.roles),
        scopes = v(&preview.scopes),
        tenant = v(&preview.tenant),
    );
    page("Tools", Some(&session), &body)
}

/// Federated tools whose definitions changed, with the change, awaiting approval.
pub async fn pins(State(state): State<Arc<ConsoleState>>, Extension(ctx): Extension<RequestContext>, headers: HeaderMap) -> Response {
    let session = match state.viewer(&headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let pins = match crate::admin::pins(&state.admin, &ctx, &session.actor()).await {
        Ok(p) => p,
        Err(refusal) => return refusal_page(Some(&session), refusal, None),
    };
    let pretty = |text: &str| serde_json::to_string_pretty(&crate::admin::definition(text)).unwrap_or_default();
    let mut pending = String::new();
    for pin in pins.iter().filter(|p| p.pending_hash.is_some()) {
        let (Some(hash), Some(definition)) = (&pin.pending_hash, &pin.pending_definition) else { continue };
        let diff = similar::TextDiff::from_lines(&pretty(&pin.approved_definition), &pretty(definition))
            .unified_diff()
            .context_radius(3)
            .header("approved", "pending")
            .to_string();
        let lines: String = diff
            .lines()
            .map(|l| {
                let class = match l.chars().next() {
                    Some('+') if !l.starts_with("+++") => "add",
                    Some('-') if !l.starts_with("---") => "del",
                    _ => "ctx",
                };
                format!("<span class=\"{class}\">{}</span>\n", esc(l))
            })
            .collect();
        pending.push_str(&format!(
            "<section class=\"card pending\" data-tool=\"{server}/{tool}\"><h2>{server} · <code>{tool}</code></h2><pre class=\"diff\">{lines}</pre>\
             <form method=\"post\" action=\"/admin/pins/approve\">{csrf}<input type=\"hidden\" name=\"server\" value=\"{server}\">\
             <input type=\"hidden\" name=\"tool\" value=\"{tool}\"><input type=\"hidden\" name=\"hash\" value=\"{hash}\">\
             <button class=\"approve\">Approve this definition</button></form></section>",
            server = esc(&pin.server),
            tool = esc(&pin.tool),
            hash = esc(hash),
            csrf = session.csrf_field(),
        ));
    }
    if pending.is_empty() {
        pending = "<p id=\"none-pending\">No changed definitions await approval.</p>".into();
    }
    let approved: String = pins
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&p.server),
                esc(&p.tool),
                esc(&p.approved_hash[..p.approved_hash.len().min(16)]),
                time(Some(p.updated_at))
            )
        })
        .collect();
    let body = format!(
        "{pending}<h2>Pinned definitions</h2><table><tr><th>Server</th><th>Tool</th><th>Approved hash</th><th>Updated</th></tr>{approved}</table>"
    );
    page("Tool approvals", Some(&session), &body)
}

#[derive(Deserialize)]
pub struct Approve {
    csrf: String,
    server: String,
    tool: String,
    hash: String,
}

pub async fn approve(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<Approve>,
) -> Response {
    let (form, session) = match state.posted(&ctx, &headers, "admin/tools.approve", form, |f| &f.csrf).await {
        Ok(done) => done,
        Err(r) => return *r,
    };
    match crate::admin::approve(&state.admin, &ctx, &session.actor(), (&form.server, &form.tool, &form.hash), http::StatusCode::SEE_OTHER)
        .await
    {
        Ok(()) => Redirect::to("/admin/pins").into_response(),
        Err(refusal) => refusal_page(Some(&session), refusal, None),
    }
}

/// OAuth connections: a "Connect" button for shared ones, every user's status for per-user ones.
pub async fn connections(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
) -> Response {
    let session = match state.viewer(&headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let stored = match crate::admin::connections(&state.admin, &ctx, &session.actor(), None).await {
        Ok(c) => c,
        Err(AdminError::NoVault) => Vec::new(),
        Err(refusal) => return refusal_page(Some(&session), refusal, None),
    };
    let mut credentials: Vec<_> = state.admin.credentials.connections().collect();
    credentials.sort_by(|a, b| a.settings.name.cmp(&b.settings.name));
    let mut body = String::new();
    for c in credentials {
        let name = &c.settings.name;
        let shared = c.settings.mode == crate::credentials::oauth::ConnectionMode::Shared;
        let rows: Vec<_> = stored.iter().filter(|s| &s.credential == name).collect();
        let mut table = String::new();
        for s in &rows {
            let owner = if s.subject.is_empty() { "(shared)".to_owned() } else { format!("{} @ {}", s.subject, s.issuer) };
            table.push_str(&format!(
                "<tr><td>{owner}</td><td class=\"status-{st}\">{st}</td><td>{exp}</td><td>{updated}</td><td><form method=\"post\" action=\"/admin/connections/disconnect\">{csrf}\
                 <input type=\"hidden\" name=\"credential\" value=\"{n}\"><input type=\"hidden\" name=\"issuer\" value=\"{i}\"><input type=\"hidden\" name=\"subject\" value=\"{su}\">\
                 <button class=\"danger\" data-confirm=\"Disconnect this connection?\">Disconnect</button></form></td></tr>",
                owner = esc(&owner),
                st = esc(&s.status),
                exp = time(s.expires_at),
                updated = time(Some(s.updated_at)),
                csrf = session.csrf_field(),
                n = esc(name),
                i = esc(&s.issuer),
                su = esc(&s.subject),
            ));
        }
        if table.is_empty() {
            table = "<tr><td colspan=\"5\" class=\"muted\">not connected</td></tr>".into();
        }
        let connect = if shared {
            format!(
                "<form method=\"post\" action=\"/admin/connections/connect\">{}<input type=\"hidden\" name=\"credential\" value=\"{}\"><button class=\"connect\" id=\"connect-{}\">Connect</button></form>",
                session.csrf_field(),
                esc(name),
                esc(name)
            )
        } else {
            "<p class=\"muted\">Each user connects their own account, through the link their tool call returns.</p>".into()
        };
        body.push_str(&format!(
            "<section class=\"card\" data-credential=\"{n}\"><h2><code>{n}</code> · {label} · {mode}</h2>{connect}\
             <table><tr><th>Owner</th><th>Status</th><th>Expires</th><th>Updated</th><th></th></tr>{table}</table></section>",
            n = esc(name),
            label = esc(&c.settings.label),
            mode = if shared { "shared" } else { "per user" },
        ));
    }
    if body.is_empty() {
        body = "<p>No OAuth connections are configured (<code>credentials[].oauth</code>).</p>".into();
    }
    page("Connections", Some(&session), &body)
}

#[derive(Deserialize)]
pub struct Connect {
    csrf: String,
    credential: String,
}

/// Makes a single-use connect link and offers it: the browser then leaves for the provider.
pub async fn connect(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<Connect>,
) -> Response {
    let (form, session) = match state.posted(&ctx, &headers, "admin/connect_link", form, |f| &f.csrf).await {
        Ok(done) => done,
        Err(r) => return *r,
    };
    match crate::admin::shared_connect_link(&state.admin, &ctx, &session.actor(), &form.credential).await {
        Ok(url) => {
            let body = format!(
                "<p>Sign in to the provider as the account every caller of <code>{}</code> will use. The link works once, for ten minutes.</p>\
                 <p><a class=\"button\" id=\"continue\" href=\"{}\">Continue to the provider</a></p>",
                esc(&form.credential),
                esc(&url)
            );
            page("Connect", Some(&session), &body)
        }
        Err(refusal) => refusal_page(Some(&session), refusal, None),
    }
}

#[derive(Deserialize)]
pub struct Disconnect {
    csrf: String,
    credential: String,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    subject: String,
}

pub async fn disconnect(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<Disconnect>,
) -> Response {
    let (form, session) = match state.posted(&ctx, &headers, "admin/connections.delete", form, |f| &f.csrf).await {
        Ok(done) => done,
        Err(r) => return *r,
    };
    let key = ConnectionKey { credential: form.credential, issuer: form.issuer, subject: form.subject };
    match crate::admin::disconnect_connection(&state.admin, &ctx, &session.actor(), &key, http::StatusCode::SEE_OTHER).await {
        Ok(()) => Redirect::to("/admin/connections").into_response(),
        Err(refusal) => refusal_page(Some(&session), refusal, None),
    }
}

/// API keys: create (the key shown once, here), list, revoke.
pub async fn keys(State(state): State<Arc<ConsoleState>>, Extension(ctx): Extension<RequestContext>, headers: HeaderMap) -> Response {
    let session = match state.viewer(&headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    keys_page(&state, &ctx, &session, None).await
}

async fn keys_page(state: &ConsoleState, ctx: &RequestContext, session: &Session, created: Option<(String, String)>) -> Response {
    // The page after a creation is that request's answer: its event is the creation's.
    let listed = match api_keys::list_keys(&state.admin, ctx, &session.actor(), true, created.is_none()).await {
        Ok(k) => k,
        Err((refusal, detail)) => return refusal_page(Some(session), refusal, detail.as_deref()),
    };
    let shown = created
        .map(|(id, key)| {
            format!(
                "<section class=\"card created\"><p>Key <code>{}</code> created. Copy it now: it is not shown again.</p>\
                 <p><code id=\"new-key\">{}</code> <button type=\"button\" class=\"copy\" data-copy=\"new-key\">Copy</button></p></section>",
                esc(&id),
                esc(&key)
            )
        })
        .unwrap_or_default();
    let rows: String = listed
        .iter()
        .map(|k| {
            let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
            let action = if k.revoked_at.is_some() {
                String::new()
            } else {
                format!(
                    "<form method=\"post\" action=\"/admin/keys/revoke\">{}<input type=\"hidden\" name=\"id\" value=\"{}\"><button class=\"danger revoke\" data-confirm=\"Revoke {}?\">Revoke</button></form>",
                    session.csrf_field(),
                    esc(&k.id),
                    esc(&k.name)
                )
            };
            format!(
                "<tr data-key=\"{id}\"><td>{name}</td><td><code>{prefix}…</code></td><td>{subject}</td><td>{scopes}</td><td>{tools}</td><td>{expires}</td><td>{used}</td><td class=\"status-{status}\">{status}</td><td>{action}</td></tr>",
                id = esc(&k.id),
                name = esc(&k.name),
                prefix = esc(&k.prefix),
                subject = esc(&k.subject),
                scopes = esc(&k.scopes.join(" ")),
                tools = esc(&k.tools.as_ref().map(|t| t.join(" ")).unwrap_or_else(|| "(policy)".into())),
                expires = time(Some(k.expires_at)),
                used = time(k.last_used_at),
            )
        })
        .collect();
    let body = format!(
        "{shown}<form method=\"post\" action=\"/admin/keys\" class=\"card\" id=\"create-key\">{csrf}<h2>New key</h2>\
         <label>Name <input name=\"name\" required placeholder=\"ci-nightly\"></label>\
         <label>Subject <input name=\"subject\" required placeholder=\"ci-bot\"></label>\
         <label>Tenant <input name=\"tenant\"></label>\
         <label>Scopes <input name=\"scopes\" placeholder=\"calendar:read\"></label>\
         <label>Roles <input name=\"roles\"></label>\
         <label>Tools <input name=\"tools\" placeholder=\"(what policy allows)\"></label>\
         <label>Expires in <input name=\"expires_in\" value=\"30d\"></label>\
         <label>Environment <select name=\"environment\"><option>live</option><option>test</option></select></label>\
         <button id=\"create\">Create key</button></form>\
         <table id=\"keys\"><tr><th>Name</th><th>Prefix</th><th>Subject</th><th>Scopes</th><th>Tools</th><th>Expires</th><th>Last used</th><th>Status</th><th></th></tr>{rows}</table>",
        csrf = session.csrf_field()
    );
    let mut response = page("API keys", Some(session), &body);
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
pub struct CreateKey {
    csrf: String,
    name: String,
    subject: String,
    tenant: Option<String>,
    scopes: Option<String>,
    roles: Option<String>,
    tools: Option<String>,
    expires_in: Option<String>,
    environment: Option<String>,
}

pub async fn create_key(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<CreateKey>,
) -> Response {
    let (form, session) = match state.posted(&ctx, &headers, "admin/api_keys.create", form, |f| &f.csrf).await {
        Ok(done) => done,
        Err(r) => return *r,
    };
    let tools = words(form.tools.as_deref());
    let new = NewKey {
        name: form.name,
        subject: form.subject,
        tenant: nonempty(form.tenant),
        scopes: words(form.scopes.as_deref()),
        roles: words(form.roles.as_deref()),
        tools: (!tools.is_empty()).then_some(tools),
        expires_in: nonempty(form.expires_in),
        environment: nonempty(form.environment),
    };
    match api_keys::issue(&state.admin, &ctx, &session.actor(), new).await {
        // One request, one event: the page after a creation lists the keys unaudited.
        Ok((record, key)) => keys_page(&state, &ctx, &session, Some((record.id, key.expose().to_owned()))).await,
        Err((refusal, detail)) => refusal_page(Some(&session), refusal, detail.as_deref()),
    }
}

#[derive(Deserialize)]
pub struct Revoke {
    csrf: String,
    id: String,
}

pub async fn revoke_key(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    super::Posted(form): super::Posted<Revoke>,
) -> Response {
    let (form, session) = match state.posted(&ctx, &headers, "admin/api_keys.revoke", form, |f| &f.csrf).await {
        Ok(done) => done,
        Err(r) => return *r,
    };
    match api_keys::revoke_key(&state.admin, &ctx, &session.actor(), &form.id, http::StatusCode::SEE_OTHER).await {
        Ok(_) => Redirect::to("/admin/keys").into_response(),
        Err((refusal, detail)) => refusal_page(Some(&session), refusal, detail.as_deref()),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AuditSearch {
    subject: Option<String>,
    tool: Option<String>,
    decision: Option<String>,
    since: Option<String>,
    until: Option<String>,
    verify: Option<String>,
}

/// Audit search over the database sink, and the chain's verification on request.
pub async fn audit(
    State(state): State<Arc<ConsoleState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Query(q): Query<AuditSearch>,
) -> Response {
    let session = match state.viewer(&headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let filter = crate::store::audit::AuditFilter {
        subject: nonempty(q.subject.clone()),
        tool: nonempty(q.tool.clone()),
        decision: nonempty(q.decision.clone()),
        tenant: None,
        since: nonempty(q.since.clone()),
        until: nonempty(q.until.clone()),
        limit: 200,
    };
    let records = match crate::admin::audit_records(&state.admin, &ctx, &session.actor(), &filter).await {
        Ok(r) => r,
        Err(refusal) => {
            return refusal_page(Some(&session), refusal, Some("the console searches the audit database sink (audit.sinks: database)"));
        }
    };
    let verification = if q.verify.is_some() { Some(verify(&state).await) } else { None };
    let text = |r: &Value, k: &str| esc(r.get(k).and_then(Value::as_str).unwrap_or_default());
    let rows: String = records
        .iter()
        .map(|r| {
            format!(
                "<tr class=\"decision-{d}\"><td>{ts}</td><td>{sub}</td><td>{m}</td><td>{tool}</td><td>{d}</td><td>{reason}</td><td>{status}</td><td><code>{id}</code></td></tr>",
                ts = text(r, "ts"),
                sub = text(r, "subject"),
                m = text(r, "method"),
                tool = text(r, "tool"),
                d = text(r, "decision"),
                reason = text(r, "reason"),
                status = r.get("status").and_then(Value::as_u64).unwrap_or_default(),
                id = text(r, "request_id"),
            )
        })
        .collect();
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or_default());
    let decision_options: String = ["", "allow", "deny", "error"]
        .iter()
        .map(|d| {
            let selected = if q.decision.as_deref().unwrap_or_default() == *d { " selected" } else { "" };
            format!("<option value=\"{d}\"{selected}>{}</option>", if d.is_empty() { "any" } else { d })
        })
        .collect();
    let body = format!(
        "<section class=\"card\" id=\"chain\"><h2>Hash chain</h2>{status}\
         <form method=\"get\"><input type=\"hidden\" name=\"verify\" value=\"1\"><button id=\"verify\">Verify the chain now</button></form></section>\
         <form method=\"get\" class=\"card inline\" id=\"search\">\
         <label>subject <input name=\"subject\" value=\"{sub}\"></label><label>tool <input name=\"tool\" value=\"{tool}\"></label>\
         <label>decision <select name=\"decision\">{decision_options}</select></label>\
         <label>since <input name=\"since\" value=\"{since}\" placeholder=\"2026-11-30T00:00:00Z\"></label>\
         <label>until <input name=\"until\" value=\"{until}\"></label><button id=\"search-button\">Search</button></form>\
         <p class=\"muted\" id=\"count\">{n} record(s), newest first</p>\
         <table id=\"records\"><tr><th>Time</th><th>Subject</th><th>Method</th><th>Tool</th><th>Decision</th><th>Reason</th><th>Status</th><th>Request</th></tr>{rows}</table>",
        status = verification.unwrap_or_else(|| "<p class=\"muted\" id=\"chain-status\">Not verified on this page yet.</p>".into()),
        sub = v(&q.subject),
        tool = v(&q.tool),
        since = v(&q.since),
        until = v(&q.until),
        n = records.len(),
    );
    page("Audit", Some(&session), &body)
}

/// Verifies every chain in the database against this gateway's checkpoint key.
async fn verify(state: &ConsoleState) -> String {
    let Some(vault) = &state.admin.vault else { return "<p class=\"error\" id=\"chain-status\">No vault database.</p>".into() };
    let keys = state.admin.audit.verification_keys();
    let verified = async { crate::audit::verify::store(vault.store().await?, &keys).await };
    match verified.await {
        Ok(reports) if reports.is_empty() => "<p id=\"chain-status\">No records in the database yet.</p>".into(),
        Ok(reports) => reports
            .iter()
            .map(|(chain, report)| match &report.fault {
                Some(fault) => format!(
                    "<p class=\"error\" id=\"chain-status\">Chain <code>{}</code>: FAULT {} at {}: {}</p>",
                    esc(chain),
                    esc(fault.kind),
                    esc(&fault.at),
                    esc(&fault.detail)
                ),
                None => format!(
                    "<p class=\"ok\" id=\"chain-status\">Chain <code>{}</code>: verified {} record(s), {} signed checkpoint(s){}.</p>",
                    esc(chain),
                    report.records,
                    report.checkpoints,
                    if report.unsigned_tail > 0 {
                        format!("; {} record(s) after the last checkpoint", report.unsigned_tail)
                    } else {
                        String::new()
                    }
                ),
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "audit chain verification could not read the database");
            "<p class=\"error\" id=\"chain-status\">The database could not be read.</p>".into()
        }
    }
}

/// Quota usage per bucket and period.
pub async fn limits(State(state): State<Arc<ConsoleState>>, Extension(ctx): Extension<RequestContext>, headers: HeaderMap) -> Response {
    let session = match state.viewer(&headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let usage = match crate::admin::quota_usage(&state.admin, &ctx, &session.actor(), &crate::store::usage::UsageFilter::default()).await {
        Ok(u) => u,
        Err(refusal) => return refusal_page(Some(&session), refusal, None),
    };
    let rows: String = usage
        .iter()
        .map(|u| {
            let who = [
                ("subject", &u.usage.subject),
                ("tenant", &u.usage.tenant),
                ("client", &u.usage.client),
                ("tool", &u.usage.tool),
                ("server", &u.usage.server),
            ]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
            .collect::<Vec<_>>()
            .join(", ");
            let budget = u.budget.map_or_else(|| "–".into(), |b| b.to_string());
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {budget}</td><td>{}</td></tr>",
                esc(&u.usage.quota),
                esc(&u.usage.period),
                esc(&who),
                u.usage.used,
                esc(u.resets_at.as_deref().unwrap_or("–"))
            )
        })
        .collect();
    let body = format!(
        "<table id=\"usage\"><tr><th>Quota</th><th>Period</th><th>Bucket</th><th>Used / budget</th><th>Resets</th></tr>{rows}</table>\
         <p class=\"muted\">Rate limits keep no history; their refusals are in the audit log (reason <code>rate_limited</code>).</p>"
    );
    page("Limits and quotas", Some(&session), &body)
}
