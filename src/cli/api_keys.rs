//! `warden api-keys`: the admin API's keys from the command line. The new key goes to standard
//! output alone (so `KEY=$(warden api-keys create …)` works); everything else to standard error.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use super::ApiKeysCommand;
use super::admin_client::AdminClient;

/// `warden api-keys`: one admin API call, its result printed.
pub async fn run(gateway: &str, command: ApiKeysCommand) -> ExitCode {
    let admin = match AdminClient::new(gateway) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match command {
        ApiKeysCommand::Create { name, subject, tenant, scopes, roles, tools, expires_in, test } => {
            let mut body = json!({"name": name, "subject": subject, "scopes": scopes, "roles": roles});
            if let Some(t) = tenant {
                body["tenant"] = json!(t);
            }
            if !tools.is_empty() {
                body["tools"] = json!(tools);
            }
            if let Some(e) = expires_in {
                body["expires_in"] = json!(e);
            }
            if test {
                body["environment"] = json!("test");
            }
            let created = match admin.call(reqwest::Method::POST, "/admin/v1/api-keys", Some(body)).await {
                Ok(b) => b,
                Err(code) => return code,
            };
            let text = |k: &str| created.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            eprintln!(
                "created {} ({}), expires {}; the key is shown this once:",
                text("id"),
                text("prefix"),
                time(created.get("expires_at"))
            );
            println!("{}", text("key"));
        }
        ApiKeysCommand::List { all, json } => {
            let path = if all { "/admin/v1/api-keys?all=true" } else { "/admin/v1/api-keys" };
            let body = match admin.call(reqwest::Method::GET, path, None).await {
                Ok(b) => b,
                Err(code) => return code,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            let rows = body.get("api_keys").and_then(Value::as_array).cloned().unwrap_or_default();
            println!("{:<38} {:<20} {:<22} {:<20} {:<30} {:<21} LAST USED", "ID", "NAME", "PREFIX", "SUBJECT", "SCOPES", "EXPIRES");
            for r in &rows {
                let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                let scopes: Vec<&str> =
                    r.get("scopes").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let expires = if r.get("revoked_at").is_some() { "revoked".to_owned() } else { time(r.get("expires_at")) };
                println!(
                    "{:<38} {:<20} {:<22} {:<20} {:<30} {:<21} {}",
                    text("id"),
                    text("name"),
                    text("prefix"),
                    text("subject"),
                    scopes.join(" "),
                    expires,
                    time(r.get("last_used_at"))
                );
            }
            println!("{} key(s)", rows.len());
        }
        ApiKeysCommand::Revoke { id } => {
            let path = format!("/admin/v1/api-keys/{}", AdminClient::enc(&id));
            let body = match admin.call(reqwest::Method::DELETE, &path, None).await {
                Ok(b) => b,
                Err(code) => return code,
            };
            let within = body.get("other_replicas_within_seconds").and_then(Value::as_u64).unwrap_or_default();
            println!("revoked {id} (refused at once by this gateway, by other replicas within {within} s)");
        }
    }
    ExitCode::SUCCESS
}

fn time(v: Option<&Value>) -> String {
    v.and_then(Value::as_u64)
        .map(|t| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t)).to_string())
        .unwrap_or_else(|| "-".into())
}
