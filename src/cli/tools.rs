//! `warden tools`: federated tools' pinned definitions, through the admin API.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::ToolsCommand;
use super::admin_client::AdminClient;

pub async fn run(gateway: &str, command: ToolsCommand) -> ExitCode {
    let admin = match AdminClient::new(gateway) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let pins = match admin.call(reqwest::Method::GET, "/admin/v1/tools/pins", None).await {
        Ok(body) => body.get("pins").and_then(Value::as_array).cloned().unwrap_or_default(),
        Err(code) => return code,
    };
    let find = |server: &str, tool: &str| pins.iter().find(|p| p["server"] == server && p["tool"] == tool).cloned();
    match command {
        ToolsCommand::Pins => {
            println!("{:<20} {:<40} {:<14} CHANGED", "SERVER", "TOOL", "APPROVED");
            for p in &pins {
                let text = |k: &str| p[k].as_str().unwrap_or("").to_owned();
                let short = |h: String| h.chars().take(12).collect::<String>();
                let changed = if p["pending_hash"].is_string() { format!("yes ({})", short(text("pending_hash"))) } else { "no".into() };
                println!("{:<20} {:<40} {:<14} {changed}", text("server"), text("tool"), short(text("approved_hash")));
            }
            println!("{} pinned tool(s)", pins.len());
            ExitCode::SUCCESS
        }
        ToolsCommand::Diff { server, tool } => {
            let Some(pin) = find(&server, &tool) else { return super::fail(format!("no pin for {server}/{tool}")) };
            if pin["pending"].is_null() {
                println!("{server}/{tool}: unchanged since approved (sha256:{})", pin["approved_hash"].as_str().unwrap_or(""));
                return ExitCode::SUCCESS;
            }
            print!("{}", diff(&pin));
            ExitCode::SUCCESS
        }
        ToolsCommand::Approve { server, tool } => {
            let Some(pin) = find(&server, &tool) else { return super::fail(format!("no pin for {server}/{tool}")) };
            approve(&admin, &server, &tool, &pin).await
        }
        ToolsCommand::Pin { server } => {
            let pending: Vec<&Value> = pins.iter().filter(|p| p["server"] == server.as_str() && !p["pending"].is_null()).collect();
            if pending.is_empty() {
                println!("{server}: every tool's definition is the approved one");
            }
            for pin in pending {
                let tool = pin["tool"].as_str().unwrap_or_default().to_owned();
                let code = approve(&admin, &server, &tool, pin).await;
                if code != ExitCode::SUCCESS {
                    return code;
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// Shows the change, then approves exactly that definition (by its hash).
async fn approve(admin: &AdminClient, server: &str, tool: &str, pin: &Value) -> ExitCode {
    let Some(hash) = pin["pending_hash"].as_str() else {
        println!("{server}/{tool}: nothing to approve (unchanged since approved)");
        return ExitCode::SUCCESS;
    };
    print!("{}", diff(pin));
    let path = format!("/admin/v1/tools/pins/{}/{}/approve", AdminClient::enc(server), AdminClient::enc(tool));
    match admin.call(reqwest::Method::POST, &path, Some(json!({"hash": hash}))).await {
        Ok(_) => {
            println!("approved {server}/{tool} (sha256:{hash})");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// A unified diff of the approved and the pending definition, pretty-printed.
fn diff(pin: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let (old, new) = (pretty(&pin["approved"]), pretty(&pin["pending"]));
    let name = format!("{}/{}", pin["server"].as_str().unwrap_or(""), pin["tool"].as_str().unwrap_or(""));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (approved)"), &format!("{name} (now presented)"))
        .to_string()
}
