//! `warden limits`: quota usage, through the admin API.

use std::process::ExitCode;

use serde_json::Value;

use super::LimitsCommand;
use super::admin_client::AdminClient;

pub async fn run(gateway: &str, command: LimitsCommand) -> ExitCode {
    let admin = match AdminClient::new(gateway) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let LimitsCommand::Usage { subject, tenant, client, quota, period, json } = command;
    let query: Vec<String> = [("subject", subject), ("tenant", tenant), ("client", client), ("quota", quota), ("period", period)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", AdminClient::enc(&v))))
        .collect();
    let path = if query.is_empty() { "/admin/v1/limits/usage".to_owned() } else { format!("/admin/v1/limits/usage?{}", query.join("&")) };
    let body = match admin.call(reqwest::Method::GET, &path, None).await {
        Ok(body) => body,
        Err(code) => return code,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let rows = body.get("usage").and_then(Value::as_array).cloned().unwrap_or_default();
    println!("{:<20} {:<11} {:<32} {:>10} {:>10}  RESETS", "QUOTA", "PERIOD", "FOR", "USED", "BUDGET");
    for r in &rows {
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let whom: Vec<String> =
            ["subject", "tenant", "client", "tool", "server"].iter().filter_map(|k| r[*k].as_str().map(|v| format!("{k}={v}"))).collect();
        let number = |k: &str| r[k].as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
        let resets = r["resets_at"].as_str().unwrap_or("(past period)");
        println!(
            "{:<20} {:<11} {:<32} {:>10} {:>10}  {resets}",
            text("quota"),
            text("period"),
            whom.join(" "),
            number("used"),
            number("budget")
        );
    }
    println!("{} row(s)", rows.len());
    ExitCode::SUCCESS
}
