//! `warden policy test` and `warden policy explain`.

use std::process::ExitCode;

use super::{EXIT_RUNTIME, config_error, fail, load};
pub fn test(dir: &std::path::Path) -> ExitCode {
    let results = match crate::policy::fixtures::run_dir(dir) {
        Ok(r) => r,
        Err(e) => return config_error(e),
    };
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        println!("{} {}: {} — {}", if r.passed { "ok  " } else { "FAIL" }, r.file, r.name, r.detail);
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
}

pub fn explain(config: &std::path::Path, token: &str, tool: &str, args: Option<&str>) -> ExitCode {
    let (_, gateway) = match load(config) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let principal = match gateway.authenticator.principal_unverified(token) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot read the token: {e}")),
    };
    let tools = gateway.tools.load();
    let Some(tool) = tools.get(tool) else {
        return fail(format!("no tool named {tool:?} in {}", config.display()));
    };
    let args: Option<serde_json::Value> = match args.map(serde_json::from_str).transpose() {
        Ok(a) => a,
        Err(e) => return fail(format!("--args is not JSON: {e}")),
    };
    let stage = match &args {
        Some(a) => crate::policy::Stage::Call(a),
        None => crate::policy::Stage::List,
    };
    println!("NOTE: the token is decoded, not verified.");
    println!(
        "caller: sub={} issuer={} tenant={} roles=[{}] scopes=[{}]",
        principal.subject,
        principal.issuer,
        principal.tenant.as_deref().unwrap_or("-"),
        principal.roles.join(", "),
        principal.scopes.iter().cloned().collect::<Vec<_>>().join(" ")
    );
    println!("tool: {} at {}", tool.name, if args.is_some() { "call time" } else { "list time" });
    let mut trace = Vec::new();
    let decision = gateway.policy_reloader.policy().load().decide(
        &principal,
        &tool.facts(),
        stage,
        &crate::policy::RequestFacts::default(),
        Some(&mut trace),
    );
    for line in &trace {
        println!("  {line}");
    }
    match decision.outcome {
        Ok(()) => println!("decision: allow (by {})", decision.rule),
        Err(crate::policy::Denial::InsufficientScope { needed, .. }) => {
            println!("decision: step-up, needs {} (by {})", needed.join(" "), decision.rule)
        }
        Err(crate::policy::Denial::Forbidden { reason }) => println!("decision: deny: {reason} (by {})", decision.rule),
        Err(crate::policy::Denial::ApprovalRequired { approval, reason }) => println!(
            "decision: approve: {reason}; approval by {}, within {} (by {})",
            approval.approvers(),
            humantime::format_duration(approval.expires_in),
            decision.rule
        ),
    }
    ExitCode::SUCCESS
}
