//! `warden connections`: the admin API from the command line.

use std::process::ExitCode;

use std::time::Duration;

use super::ConnectionsCommand;
use super::admin_client::AdminClient;
/// `warden connections`: one admin API call, its result printed.
pub async fn run(gateway: &str, command: ConnectionsCommand) -> ExitCode {
    let admin = match AdminClient::new(gateway) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let enc = AdminClient::enc;
    let (method, path) = match &command {
        ConnectionsCommand::List { credential } => {
            let query = credential.as_deref().map(|c| format!("?credential={}", enc(c))).unwrap_or_default();
            (reqwest::Method::GET, format!("/admin/v1/connections{query}"))
        }
        ConnectionsCommand::Disconnect { credential, issuer, subject } => {
            let query = match (issuer, subject) {
                (Some(i), Some(s)) => format!("?issuer={}&subject={}", enc(i), enc(s)),
                _ => String::new(),
            };
            (reqwest::Method::DELETE, format!("/admin/v1/connections/{}{query}", enc(credential)))
        }
        ConnectionsCommand::ConnectLink { credential } => {
            (reqwest::Method::POST, format!("/admin/v1/connections/{}/connect-link", enc(credential)))
        }
    };
    let body = match admin.call(method, &path, None).await {
        Ok(b) => b,
        Err(code) => return code,
    };
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
