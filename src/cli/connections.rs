//! `warden connections`: the admin API from the command line.

use std::process::ExitCode;

use std::time::Duration;

use super::{ConnectionsCommand, fail};
/// `warden connections`: one admin API call, its result printed.
pub async fn run(gateway: &str, command: ConnectionsCommand) -> ExitCode {
    let Ok(token) = std::env::var("WARDEN_ADMIN_TOKEN") else {
        eprintln!("error: set WARDEN_ADMIN_TOKEN to the gateway's admin.token");
        return ExitCode::from(2);
    };
    let client = match crate::upstream::control_plane_client() {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let base = gateway.trim_end_matches('/');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let request = match &command {
        ConnectionsCommand::List { credential } => {
            let query = credential.as_deref().map(|c| format!("?credential={}", enc(c))).unwrap_or_default();
            client.get(format!("{base}/admin/v1/connections{query}"))
        }
        ConnectionsCommand::Disconnect { credential, issuer, subject } => {
            let query = match (issuer, subject) {
                (Some(i), Some(s)) => format!("?issuer={}&subject={}", enc(i), enc(s)),
                _ => String::new(),
            };
            client.delete(format!("{base}/admin/v1/connections/{}{query}", enc(credential)))
        }
        ConnectionsCommand::ConnectLink { credential } => {
            client.post(format!("{base}/admin/v1/connections/{}/connect-link", enc(credential)))
        }
    };
    let response = match request.bearer_auth(token).send().await {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot reach the gateway at {base}: {e}")),
    };
    let status = response.status();
    let body: serde_json::Value = match crate::upstream::read_limited(response, 4 * 1024 * 1024).await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        Err(e) => return fail(format!("reading the gateway's answer: {e}")),
    };
    if !status.is_success() {
        return fail(format!("{status}: {}", body.get("message").and_then(|m| m.as_str()).unwrap_or("request failed")));
    }
    match command {
        ConnectionsCommand::List { .. } => {
            let rows = body.get("connections").and_then(|c| c.as_array()).cloned().unwrap_or_default();
            println!("{:<20} {:<40} {:<10} {:<32} EXPIRES", "CREDENTIAL", "OWNER", "STATUS", "REASON");
            for r in &rows {
                let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                let owner =
                    if text("subject").is_empty() { "(shared)".to_owned() } else { format!("{} @ {}", text("subject"), text("issuer")) };
                let expires = r
                    .get("expires_at")
                    .and_then(serde_json::Value::as_u64)
                    .map(|t| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t)).to_string())
                    .unwrap_or_else(|| "-".into());
                println!("{:<20} {:<40} {:<10} {:<32} {expires}", text("credential"), owner, text("status"), text("status_reason"));
            }
            println!("{} connection(s)", rows.len());
        }
        ConnectionsCommand::Disconnect { credential, .. } => println!("disconnected {credential}"),
        ConnectionsCommand::ConnectLink { .. } => {
            println!("{}", body.get("url").and_then(|u| u.as_str()).unwrap_or_default());
            eprintln!("single use, valid for 10 minutes: open it in a browser and sign in to the provider");
        }
    }
    ExitCode::SUCCESS
}
