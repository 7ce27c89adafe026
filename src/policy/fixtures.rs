//! Policy as code: fixture files (`*.test.yaml` beside the policies) state principals, tools
//! and arguments with the decision and rule expected; `warden policy test` runs them all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Denial, Policy, PolicySet, RequestFacts, Stage, ToolFacts, expand_paths};
use crate::identity::{Principal, Subject};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    /// The tools the cases refer to.
    tools: Vec<FixtureTool>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureTool {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

/// A principal as a fixture states it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixturePrincipal {
    pub sub: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: Map<String, Value>,
}

fn default_issuer() -> String {
    "https://issuer.test".into()
}

impl FixturePrincipal {
    pub fn principal(&self) -> Principal {
        Principal {
            subject: Subject::new(self.sub.clone()).unwrap_or_else(|| Subject::new("?").unwrap_or_else(|| unreachable!())),
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.iter().cloned().collect::<BTreeSet<_>>(),
            roles: self.roles.clone(),
            tenant: self.tenant.clone(),
            claims: self.claims.clone(),
            tools: None,
            token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: FixturePrincipal,
    tool: String,
    /// Call-time arguments. Default: `{}`.
    #[serde(default)]
    args: Option<Value>,
    /// `call` (default) or `list`.
    #[serde(default)]
    at: At,
    expect: Expect,
    /// The rule expected to decide.
    #[serde(default)]
    rule: Option<String>,
    /// For `step_up`: the scopes expected in the challenge.
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum At {
    #[default]
    Call,
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Deny,
    StepUp,
    /// Allowed once a person approves.
    Approve,
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub passed: bool,
    /// What happened, for the report.
    pub detail: String,
}

/// Runs every fixture in `dir` against the policies in `dir`. Errors are load failures.
pub fn run_dir(dir: &Path) -> Result<Vec<CaseResult>, String> {
    let files = expand_paths(Path::new(""), &[dir.display().to_string()]).map_err(|e| e.to_string())?;
    // Loaded once up front so a broken policy fails the run before any case.
    PolicySet::from_files(&files).map_err(|e| e.to_string())?;
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml")))
        .collect();
    fixtures.sort();
    if fixtures.is_empty() {
        return Err(format!("{}: no *.test.yaml fixtures", dir.display()));
    }
    let mut results = Vec::new();
    for path in fixtures {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let doc: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| format!("{name}: invalid YAML: {e}"))?;
        let file: FixtureFile = serde_path_to_error::deserialize(doc).map_err(|e| format!("{name}: {}: {}", e.path(), e.inner()))?;
        // Each fixture file gets the same policies, bound to its own tools.
        let policy = PolicySet::from_files(&files).map_err(|e| e.to_string())?.bind(file.tools.iter().map(facts));
        for case in &file.cases {
            results.push(run_case(&name, &policy, &file.tools, case));
        }
    }
    Ok(results)
}

fn facts(t: &FixtureTool) -> ToolFacts<'_> {
    ToolFacts { name: &t.name, tags: &t.tags, metadata: &t.metadata, scopes: &t.scopes, server: None }
}

fn run_case(file: &str, policy: &Policy, tools: &[FixtureTool], case: &Case) -> CaseResult {
    let result = |passed: bool, detail: String| CaseResult { file: file.to_owned(), name: case.name.clone(), passed, detail };
    let Some(tool) = tools.iter().find(|t| t.name == case.tool) else {
        return result(false, format!("tool {:?} is not among the fixture's tools", case.tool));
    };
    let empty = Value::Object(Map::new());
    let args = case.args.as_ref().unwrap_or(&empty);
    let stage = match case.at {
        At::Call => Stage::Call(args),
        At::List => Stage::List,
    };
    let decision = policy.decide(&case.principal.principal(), &facts(tool), stage, &RequestFacts::default(), None);
    let (got, scopes) = match &decision.outcome {
        Ok(()) => (Expect::Allow, None),
        Err(Denial::InsufficientScope { needed, .. }) => (Expect::StepUp, Some(needed.clone())),
        Err(Denial::Forbidden { .. }) => (Expect::Deny, None),
        Err(Denial::ApprovalRequired { .. }) => (Expect::Approve, None),
    };
    let mut problems = Vec::new();
    if got != case.expect {
        problems.push(format!("expected {:?}, got {got:?}", case.expect));
    }
    if let Some(rule) = &case.rule
        && *rule != decision.rule
    {
        problems.push(format!("expected rule {rule}, decided by {}", decision.rule));
    }
    if let (Some(want), Some(got)) = (&case.scopes, &scopes)
        && want != got
    {
        problems.push(format!("expected step-up scopes {want:?}, got {got:?}"));
    }
    let summary = format!("{got:?} by {}", decision.rule);
    if problems.is_empty() { result(true, summary) } else { result(false, format!("{} ({summary})", problems.join("; "))) }
}
