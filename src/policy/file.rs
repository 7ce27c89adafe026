//! Policy files: parsing, strict, and compiling into rules. A bad file fails as a whole with
//! its name and the failing rule, so a broken edit never half-applies.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cel::Condition;
use super::valid_scope;
use super::{Effect, Rule, Target};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    rules: Vec<RuleConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    /// Unique in the file; the rule is known as `<file stem>/<id>`.
    id: String,
    #[serde(default)]
    description: Option<String>,
    effect: Effect,
    /// Exact tool names, anchored globs (`search*`), or `tag:<tag>`.
    tools: Vec<String>,
    /// All required for the rule to apply.
    #[serde(default)]
    scopes: Vec<String>,
    /// Any one required for the rule to apply.
    #[serde(default)]
    roles: Vec<String>,
    /// A CEL condition over `principal`, `tool`, `args` and `request`.
    #[serde(default)]
    when: Option<String>,
    /// Short text given to the caller when this rule denies (or asks approval).
    #[serde(default)]
    reason: Option<String>,
    /// `approve` rules: who may approve.
    #[serde(default)]
    approvers: Option<ApproversConfig>,
    /// `approve` rules: how long a request may wait. Default 15m; 1m to 7 days.
    #[serde(default, with = "humantime_serde")]
    expires_in: Option<std::time::Duration>,
    /// `approve` rules: whether a caller may approve their own request. Default false.
    #[serde(default)]
    self_approval: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproversConfig {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    subjects: Vec<String>,
}

/// A policy file problem: which file, which rule, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {at}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub at: String,
    pub message: String,
}

/// Every policy file named by `paths` (files, or directories whose `*.yaml` are taken, test
/// fixtures `*.test.yaml` excepted), in a stable order.
pub fn expand_paths(base: &Path, paths: &[String]) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    for p in paths {
        let path = base.join(p);
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|e| PolicyError { file: path.display().to_string(), at: "(directory)".into(), message: e.to_string() })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| is_policy_file(f))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

pub fn is_policy_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.contains(".test.")
}

/// The policy name of a file: its stem (`policies/medical.yaml` → `medical`).
pub fn policy_name(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_owned()
}

/// Parses and compiles one file's rules.
pub fn compile(name: &str, text: &str) -> Result<Vec<Rule>, PolicyError> {
    let err = |at: String, message: String| PolicyError { file: name.to_owned(), at, message };
    let doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| err("(document)".into(), format!("invalid YAML: {e}")))?;
    let file: FileConfig = serde_path_to_error::deserialize(doc).map_err(|e| err(e.path().to_string(), e.into_inner().to_string()))?;
    let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
    for (i, r) in file.rules.into_iter().enumerate() {
        let at = format!("rules[{i}] ({})", r.id);
        if r.id.is_empty() || !r.id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
            return Err(err(format!("rules[{i}].id"), "must be letters, digits, _ - .".into()));
        }
        let id = format!("{name}/{}", r.id);
        if rules.iter().any(|other| other.id == id) {
            return Err(err(at, "duplicate rule id".into()));
        }
        if r.tools.is_empty() {
            return Err(err(at, "tools: at least one target is required".into()));
        }
        let targets =
            r.tools.iter().map(|t| Target::parse(t)).collect::<Result<Vec<_>, _>>().map_err(|m| err(at.clone(), format!("tools: {m}")))?;
        if let Some(bad) = r.scopes.iter().find(|s| !valid_scope(s)) {
            return Err(err(at, format!("scopes: {bad:?} is not a valid scope token")));
        }
        let when = r.when.as_deref().map(Condition::compile).transpose().map_err(|m| err(at.clone(), format!("when: {m}")))?;
        let approval = match (r.effect, r.approvers) {
            (Effect::Approve, Some(a)) if !a.roles.is_empty() || !a.subjects.is_empty() => {
                let expires_in = r.expires_in.unwrap_or(std::time::Duration::from_secs(900));
                if expires_in < std::time::Duration::from_secs(60) || expires_in > std::time::Duration::from_secs(7 * 24 * 3600) {
                    return Err(err(at, "expires_in: between 1m and 7d".into()));
                }
                Some(std::sync::Arc::new(super::Approval {
                    rule: id.clone(),
                    roles: a.roles,
                    subjects: a.subjects,
                    expires_in,
                    self_approval: r.self_approval,
                }))
            }
            (Effect::Approve, _) => return Err(err(at, "approvers: an approve rule names roles or subjects who may approve".into())),
            (_, Some(_)) => return Err(err(at, "approvers: only approve rules have approvers".into())),
            (_, None) if r.expires_in.is_some() || r.self_approval => {
                return Err(err(at, "expires_in and self_approval belong to approve rules".into()));
            }
            (_, None) => None,
        };
        rules.push(Rule {
            id,
            description: r.description,
            effect: r.effect,
            targets,
            scopes: r.scopes,
            roles: r.roles,
            when,
            reason: r.reason,
            approval,
        });
    }
    Ok(rules)
}
