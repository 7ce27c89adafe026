//! Decision cost of the policy engine with 100 rules. `scripts/bench` runs it in release mode
//! and appends the result to `docs/performance.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use serde_json::{Map, Value, json};
use warden::policy::fixtures::FixturePrincipal;
use warden::policy::{PolicySet, RequestFacts, Stage, ToolFacts};

const ITERATIONS: u32 = 200_000;

/// 100 rules over 50 tools: exact names, globs and tags, a third with CEL conditions over
/// principal and arguments, a fifth of them denies.
fn hundred_rules() -> String {
    let mut y = String::from("rules:\n");
    for i in 0..100 {
        let effect = if i % 5 == 0 { "deny" } else { "allow" };
        let target = match i % 3 {
            0 => format!("tool_{}", i % 50),
            1 => format!("tool_{}*", i % 10),
            _ => format!("tag:t{}", i % 7),
        };
        let when = match i % 3 {
            0 => ", when: \"has(args.tenant) && args.tenant == principal.tenant\"".to_owned(),
            1 if effect == "deny" => ", when: \"has(args.classification) && args.classification == 'restricted'\"".to_owned(),
            _ => String::new(),
        };
        y.push_str(&format!("  - {{id: r{i}, effect: {effect}, tools: [\"{target}\"], roles: [analyst, r{i}]{when}}}\n"));
    }
    y
}

/// 100 rules that all apply to the one tool called, each with a condition: the worst case.
fn hundred_rules_one_tool() -> String {
    let mut y = String::from("rules:\n");
    for i in 0..100 {
        let effect = if i % 10 == 0 { "deny" } else { "allow" };
        // Every condition distinct, so nothing could be shared between rules.
        let when = if effect == "deny" {
            format!("has(args.classification) && args.classification == 'restricted-{i}'")
        } else {
            format!("args.tenant == principal.tenant && 'analyst' in principal.roles && size(principal.sub) > {}", i % 3)
        };
        y.push_str(&format!("  - {{id: r{i}, effect: {effect}, tools: [\"tool_*\"], when: \"{when}\"}}\n"));
    }
    y
}

fn measure(name: &str, f: impl Fn() -> bool) -> (String, f64) {
    for _ in 0..10_000 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        black_box(f());
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    eprintln!("{name:<60} {:>8.0} ns/decision", ns);
    (name.to_owned(), ns)
}

fn main() {
    let out_path = std::env::args().skip_while(|a| a != "--write").nth(1);
    let tags: Vec<Vec<String>> = (0..50).map(|i| vec![format!("t{}", i % 7)]).collect();
    let names: Vec<String> = (0..50).map(|i| format!("tool_{i}")).collect();
    let metadata = Map::new();
    let tools: Vec<ToolFacts<'_>> =
        (0..50).map(|i| ToolFacts { name: &names[i], tags: &tags[i], metadata: &metadata, scopes: &[], server: None }).collect();
    let mut claims = Map::new();
    claims.insert("email".into(), json!("ann@acme.example"));
    claims.insert("department".into(), json!("finance"));
    let principal = FixturePrincipal {
        sub: "ann".into(),
        issuer: "https://issuer.example".into(),
        client_id: Some("client".into()),
        tenant: Some("acme".into()),
        roles: vec!["analyst".into()],
        scopes: vec!["finance:read".into()],
        claims,
    }
    .principal();
    let request = RequestFacts::default();
    let args: Value = json!({"tenant": "acme", "quarter": "Q3", "classification": "internal"});

    let mixed = PolicySet::from_sources([("bench".to_owned(), hundred_rules().as_str())]).unwrap().bind(tools.iter().copied());
    let worst = PolicySet::from_sources([("bench".to_owned(), hundred_rules_one_tool().as_str())]).unwrap().bind(tools.iter().copied());
    let tool = tools[12];
    let applicable = mixed.set.rules.iter().filter(|r| r.targets.iter().any(|t| t.matches(&tool))).count();

    let all = warden::policy::Roots { principal: true, tool: true, args: true, request: true };
    let activation_cost = measure("activation with all four variables, built alone", || {
        warden::policy::cel::activation(all, &principal, &tool, Some(&args), &request).get_variable("args").is_some()
    });
    let cond = warden::policy::Condition::compile("has(args.classification) && args.classification == 'restricted'").unwrap();
    let act = warden::policy::cel::activation(all, &principal, &tool, Some(&args), &request);
    let one_condition = measure("one CEL condition, evaluated alone", || cond.eval(&act).unwrap_or(false));
    let rows = [
        measure(&format!("call: 100 rules, {applicable} apply to the tool"), || {
            mixed.decide(&principal, &tool, Stage::Call(&args), &request, None).outcome.is_ok()
        }),
        measure("call: 100 rules, all apply, each with a condition", || {
            worst.decide(&principal, &tool, Stage::Call(&args), &request, None).outcome.is_ok()
        }),
        measure("list: 50 tools filtered under 100 rules (per tool)", || {
            tools.iter().filter(|t| mixed.visible(&principal, t, &request)).count() > 0
        }),
    ];
    let list_per_tool = rows[2].1 / 50.0;

    if let Some(path) = out_path {
        let mut md = String::from("\n## Policy decision cost\n\nMeasured by `cargo bench --bench policy` (release build, one core, ");
        md.push_str(&format!("{ITERATIONS} decisions per row after warm-up). A decision includes building the CEL activation (principal, tool, arguments, request) when a condition needs it.\n\n"));
        md.push_str("| case | ns per decision |\n|---|---:|\n");
        md.push_str(&format!("| {} | {:.0} |\n", rows[0].0, rows[0].1));
        md.push_str(&format!("| {} | {:.0} |\n", rows[1].0, rows[1].1));
        md.push_str(&format!("| list time, 100 rules, per tool | {list_per_tool:.0} |\n"));
        md.push_str(&format!("| (part) {} | {:.0} |\n", activation_cost.0, activation_cost.1));
        md.push_str(&format!("| (part) {} | {:.0} |\n", one_condition.0, one_condition.1));
        md.push_str("\nRules are indexed by tool when the policy is loaded, so a decision only looks at the rules that can apply to the tool called, and the CEL activation binds only the variables those rules' conditions read, borrowing rather than copying the caller's claims. The target is under 5 µs (5000 ns) per decision with 100 rules. A realistic set, where a handful of rules apply to each tool, is far under it. The worst case, where all 100 rules apply to the tool called, each with its own condition, costs about one activation plus one interpreted CEL evaluation per deny rule and per allow rule tried before one applies; each evaluation is a few hundred nanoseconds in the `cel` interpreter, so a tool governed by dozens of conditional rules can exceed the target.\n");
        let mut doc = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(i) = doc.find("\n## Policy decision cost") {
            doc.truncate(i);
        }
        doc.push_str(&md);
        std::fs::write(&path, doc).unwrap();
        eprintln!("appended to {path}");
    }
}
