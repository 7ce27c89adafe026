//! `warden approvals list|approve|deny`: the calls `approve` policy rules hold back
//! (docs/approvals.md). An approver acts as themselves: their own bearer token in
//! WARDEN_APPROVER_TOKEN; without it, the admin token (WARDEN_ADMIN_TOKEN) lists, and decides
//! only where `approvals.admin_token_may_approve` allows it.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::ApprovalsCommand;
use super::admin_client::AdminClient;

pub async fn run(gateway: &str, command: ApprovalsCommand) -> ExitCode {
    let client = match std::env::var("WARDEN_APPROVER_TOKEN") {
        Ok(token) => AdminClient::with_token(gateway, token),
        Err(_) => AdminClient::new(gateway),
    };
    let client = match client {
        Ok(c) => c,
        Err(code) => return code,
    };
    match command {
        ApprovalsCommand::List { all, json } => {
            let path = if all { "/admin/v1/approvals" } else { "/admin/v1/approvals?status=pending" };
            let body = match client.call(reqwest::Method::GET, path, None).await {
                Ok(b) => b,
                Err(code) => return code,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            println!("{:<38} {:<9} {:<20} {:<24} {:<34} ARGUMENTS", "ID", "STATUS", "CALLER", "TOOL", "RULE");
            for r in body.get("approvals").and_then(Value::as_array).into_iter().flatten() {
                let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                let arguments = r.get("arguments").map(Value::to_string).unwrap_or_default();
                println!(
                    "{:<38} {:<9} {:<20} {:<24} {:<34} {arguments}",
                    text("id"),
                    text("status"),
                    text("subject"),
                    text("tool"),
                    text("rule")
                );
            }
        }
        ApprovalsCommand::Approve { id, comment } => return decide(&client, &id, "approve", comment).await,
        ApprovalsCommand::Deny { id, comment } => return decide(&client, &id, "deny", comment).await,
    }
    ExitCode::SUCCESS
}

async fn decide(client: &AdminClient, id: &str, verb: &str, comment: Option<String>) -> ExitCode {
    let path = format!("/admin/v1/approvals/{}/{verb}", AdminClient::enc(id));
    let body = comment.map_or_else(|| json!({}), |c| json!({"comment": c}));
    match client.call(reqwest::Method::POST, &path, Some(body)).await {
        Ok(answer) => {
            let text = |k: &str| answer.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            println!("{} {} by {}", text("id"), text("status"), text("decided_by"));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
