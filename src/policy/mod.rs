//! Policy stage: may this principal see or call this tool, with these arguments?
//!
//! Deny by default, in two layers. A tool's own `scopes` (config) are the floor: a caller
//! missing one is refused with a step-up (HTTP 403 naming the scopes). Above it, when policy
//! files are configured, a call needs an `allow` rule that applies (its scopes all held, one of
//! its roles held, its CEL condition true), and any `deny` rule that applies overrides every
//! allow. Conditions that fail to evaluate fail closed: an allow does not apply, a deny does.
//!
//! Two evaluation points share one function: list time (`args: None`; a condition reading
//! `args` is assumed satisfiable for allows and not to hold for denies, so a tool is listed iff
//! some arguments could be allowed) and call time (with arguments). Every decision names the
//! rule that made it. Never logs argument values.

pub mod cel;
mod file;
pub mod fixtures;
pub mod reload;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use self::cel::{Condition, ROOTS, Roots};
pub use file::{PolicyError, compile, expand_paths, is_policy_file, policy_name};

use crate::identity::Principal;

/// The facts about a tool that policy sees.
#[derive(Debug, Clone, Copy)]
pub struct ToolFacts<'a> {
    pub name: &'a str,
    pub tags: &'a [String],
    pub metadata: &'a Map<String, Value>,
    /// The tool's own required scopes (the floor).
    pub scopes: &'a [String],
    /// The federated MCP server it comes from (`servers[].name`); none for a configured tool.
    pub server: Option<&'a str>,
}

/// The facts about the request that policy sees.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub time: SystemTime,
    pub client_ip: Option<IpAddr>,
    /// Only the headers named in `policy.request_headers`, lower-case.
    pub headers: BTreeMap<String, String>,
    /// The HTTP method (`POST` on `/mcp`; the app's own on a proxy route).
    pub method: http::Method,
    /// The path: `/mcp`, or on a proxy route the path under the route (`/v1/contacts/7`),
    /// percent-decoded once.
    pub path: std::borrow::Cow<'static, str>,
}

impl Default for RequestFacts {
    fn default() -> Self {
        Self {
            time: SystemTime::now(),
            client_ip: None,
            headers: BTreeMap::new(),
            method: http::Method::POST,
            path: std::borrow::Cow::Borrowed("/mcp"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
    /// An otherwise allowed call waits for a person's approval (docs/approvals.md).
    Approve,
}

/// Who may approve what an `approve` rule holds back, and for how long a request waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The rule that asks (`<policy>/<rule>`).
    pub rule: String,
    /// An approver holds one of these roles, or is one of these subjects.
    pub roles: Vec<String>,
    pub subjects: Vec<String>,
    /// How long a request may wait for a decision.
    pub expires_in: std::time::Duration,
    /// Whether the caller may approve their own request.
    pub self_approval: bool,
}

impl Approval {
    /// Whether `principal` may decide a request this rule made for `requester` (issuer, subject).
    pub fn may_decide(&self, principal: &Principal, requester: (&str, &str)) -> Result<(), &'static str> {
        let named = self.subjects.iter().any(|s| s == principal.subject.as_str());
        let holds_role = self.roles.iter().any(|r| principal.roles.contains(r));
        if !named && !holds_role {
            return Err("not_an_approver");
        }
        if !self.self_approval && principal.issuer == requester.0 && principal.subject.as_str() == requester.1 {
            return Err("self_approval");
        }
        Ok(())
    }

    /// Who may approve, in words (`roles finance-manager; alice`).
    pub fn approvers(&self) -> String {
        let mut parts = Vec::new();
        if !self.roles.is_empty() {
            parts.push(format!("role {}", self.roles.join(" or ")));
        }
        if !self.subjects.is_empty() {
            parts.push(self.subjects.join(", "));
        }
        parts.join("; ")
    }
}

/// How a rule names its tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Exact(String),
    /// Anchored: `*` any run of characters, `?` one character.
    Glob(String),
    Tag(String),
    /// Every tool of a federated MCP server (`server:NAME`).
    Server(String),
}

/// How policy names a proxy route: `route:NAME` (see the `routes` stage).
pub const ROUTE_PREFIX: &str = "route:";

impl Target {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(route) = s.strip_prefix(ROUTE_PREFIX) {
            if route.is_empty() || !route.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'*' | b'?')) {
                return Err(format!("{s:?}: a route pattern is route:<name>, with * and ? wildcards"));
            }
            return Ok(if route.contains(['*', '?']) { Self::Glob(s.to_owned()) } else { Self::Exact(s.to_owned()) });
        }
        if let Some(tag) = s.strip_prefix("tag:") {
            return if tag.is_empty() { Err("empty tag".into()) } else { Ok(Self::Tag(tag.to_owned())) };
        }
        if let Some(server) = s.strip_prefix("server:") {
            return if server.is_empty() { Err("empty server name".into()) } else { Ok(Self::Server(server.to_owned())) };
        }
        if s.is_empty() {
            return Err("empty tool pattern".into());
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'*' | b'?')) {
            return Err(format!("{s:?}: a pattern is a tool name with * and ? wildcards, tag:<tag>, server:<name> or route:<name>"));
        }
        Ok(if s.contains(['*', '?']) { Self::Glob(s.to_owned()) } else { Self::Exact(s.to_owned()) })
    }

    pub fn matches(&self, tool: &ToolFacts<'_>) -> bool {
        match self {
            Self::Exact(n) => n == tool.name,
            // A pattern reaches proxy routes only when it says `route:` itself: `*` means every
            // tool, never every route as well.
            Self::Glob(g) => g.starts_with(ROUTE_PREFIX) == tool.name.starts_with(ROUTE_PREFIX) && glob(g.as_bytes(), tool.name.as_bytes()),
            Self::Tag(t) => tool.tags.iter().any(|x| x == t),
            Self::Server(s) => tool.server == Some(s.as_str()),
        }
    }
}

/// Anchored wildcard match: the whole name must match the whole pattern.
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// `<policy>/<rule>`.
    pub id: String,
    pub description: Option<String>,
    pub effect: Effect,
    pub targets: Vec<Target>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub when: Option<Condition>,
    pub reason: Option<String>,
    /// For `approve` rules: who approves, and how long a request waits.
    pub approval: Option<Arc<Approval>>,
}

/// All rules from all policy files. `enabled` is false when no policy files are configured:
/// then tool scopes alone decide.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub enabled: bool,
    pub rules: Vec<Rule>,
    /// SHA-256 (hex) of every source, by name: an approval is bound to the policy it was asked
    /// under, so a changed policy never runs a call approved under another.
    pub version: String,
}

impl PolicySet {
    /// Compiles named sources (`(policy name, YAML text)`); the first error fails the set.
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = (String, &'a str)>) -> Result<Self, PolicyError> {
        let mut set = Self { enabled: true, ..Self::default() };
        let mut digest = String::new();
        for (name, text) in sources {
            digest.push_str(&format!("{name}\n{}\n", crate::sha256_hex(text)));
            let rules = compile(&name, text)?;
            if let Some(dup) = rules.iter().find(|r| set.rules.iter().any(|o| o.id == r.id)) {
                return Err(PolicyError {
                    file: name,
                    at: dup.id.clone(),
                    message: "rule id used by another file of the same name".into(),
                });
            }
            set.rules.extend(rules);
        }
        set.version = crate::sha256_hex(&digest);
        Ok(set)
    }

    /// Reads and compiles files.
    pub fn from_files(files: &[std::path::PathBuf]) -> Result<Self, PolicyError> {
        let mut texts = Vec::with_capacity(files.len());
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| PolicyError {
                file: f.display().to_string(),
                at: "(file)".into(),
                message: e.to_string(),
            })?;
            texts.push((policy_name(f), text));
        }
        Self::from_sources(texts.iter().map(|(n, t)| (n.clone(), t.as_str())))
    }

    /// Binds the rules to a set of tools: each tool's applicable rules, looked up once here so
    /// a decision never scans rules that cannot apply.
    pub fn bind<'a>(self, tools: impl IntoIterator<Item = ToolFacts<'a>>) -> Policy {
        Self::bind_shared(Arc::new(self), tools)
    }

    /// As [`PolicySet::bind`], for a set already in force (rebinding it to a changed catalog).
    pub fn bind_shared<'a>(set: Arc<Self>, tools: impl IntoIterator<Item = ToolFacts<'a>>) -> Policy {
        let index = tools
            .into_iter()
            .map(|t| {
                let rules: Vec<usize> = (0..set.rules.len()).filter(|&i| set.rules[i].targets.iter().any(|x| x.matches(&t))).collect();
                let roots = rules.iter().filter_map(|&i| set.rules[i].when.as_ref()).fold(Roots::default(), |r, c| r.union(c.roots));
                (t.name.to_owned(), Applicable { rules, roots })
            })
            .collect();
        Policy { set, index }
    }
}

/// A policy set bound to the tools it governs.
#[derive(Debug, Default)]
pub struct Policy {
    pub set: Arc<PolicySet>,
    index: HashMap<String, Applicable>,
}

/// The rules that can apply to one tool, and the variables their conditions read.
#[derive(Debug, Default)]
struct Applicable {
    rules: Vec<usize>,
    roots: Roots,
}

/// Why a call is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Only scopes are missing: `needed` is every scope this call needs, `challenge` what a
    /// step-up asks for: the token's scopes and `needed` (a client that replaces its scopes
    /// with the challenge's keeps what it had; MCP 2025-11-25, step-up).
    InsufficientScope { needed: Vec<String>, missing: Vec<String>, challenge: Vec<String> },
    /// A deny rule applied, or no allow rule did.
    Forbidden { reason: String },
    /// Allowed once a person approves this exact call (an `approve` rule applied).
    ApprovalRequired { approval: Arc<Approval>, reason: String },
}

/// The scopes a step-up challenge names: those the token holds and those the call needs,
/// sorted, each once.
fn step_up_challenge(principal: &Principal, needed: &[String]) -> Vec<String> {
    let mut all: std::collections::BTreeSet<&String> = principal.scopes.iter().collect();
    all.extend(needed);
    all.into_iter().cloned().collect()
}

/// A decision and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Result<(), Denial>,
    /// `tool:<name>:scopes`, `<policy>/<rule>`, or `default-deny`.
    pub rule: String,
}

/// When a decision is made: what is known about the arguments.
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    List,
    Call(&'a Value),
}

impl Policy {
    /// The decision, with an optional human-readable trace of every step.
    pub fn decide(
        &self,
        principal: &Principal,
        tool: &ToolFacts<'_>,
        stage: Stage<'_>,
        request: &RequestFacts,
        mut trace: Option<&mut Vec<String>>,
    ) -> Decision {
        let mut note = |line: String| {
            if let Some(t) = trace.as_deref_mut() {
                t.push(line);
            }
        };
        // The credential's own ceiling (an API key's tool list) comes before any rule: no
        // policy can widen what the key was issued for.
        if !principal.may_reach(tool.name) {
            note(format!("credential:tools: {} is not among the tools this API key was issued for → deny", tool.name));
            return Decision {
                outcome: Err(Denial::Forbidden { reason: "this API key is not issued for this tool".into() }),
                rule: "api-key:tools".into(),
            };
        }
        let missing: Vec<String> = tool.scopes.iter().filter(|s| !principal.has_scope(s)).cloned().collect();
        let floor = format!("tool:{}:scopes", tool.name);
        if !missing.is_empty() {
            note(format!("{floor}: missing {} → step-up", missing.join(" ")));
            let needed = tool.scopes.to_vec();
            let challenge = step_up_challenge(principal, &needed);
            return Decision { outcome: Err(Denial::InsufficientScope { needed, missing, challenge }), rule: floor };
        }
        note(format!("{floor}: held ({})", if tool.scopes.is_empty() { "none required".into() } else { tool.scopes.join(" ") }));
        if !self.set.enabled {
            note("no policy files configured: tool scopes decide → allow".into());
            return Decision { outcome: Ok(()), rule: floor };
        }
        let applicable = self.index.get(tool.name);
        let roots = applicable.map(|a| a.roots).unwrap_or_default();
        let indices: &[usize] = applicable.map_or(&[], |a| a.rules.as_slice());
        let rules = || indices.iter().map(|&i| &self.set.rules[i]);
        if indices.is_empty() {
            note("no rule targets this tool → default deny".into());
            return default_deny();
        }
        let args = match stage {
            Stage::Call(a) => Some(a),
            Stage::List => None,
        };
        let mut activation = None;
        let mut condition = |rule: &Rule| -> Result<bool, String> {
            let Some(c) = &rule.when else { return Ok(true) };
            if args.is_none() && c.uses_args {
                // List time: arguments are unknown.
                return Ok(rule.effect == Effect::Allow);
            }
            let ctx = activation.get_or_insert_with(|| cel::activation(roots, principal, tool, args, request));
            c.eval(ctx)
        };

        // Denies first: one that applies overrides every allow.
        for rule in rules().filter(|r| r.effect == Effect::Deny) {
            let gates = gates(rule, principal);
            if let Err(why) = &gates {
                note(format!("{} (deny): not applicable, {why}", rule.id));
                continue;
            }
            match condition(rule) {
                Ok(false) => note(format!("{} (deny): condition false", rule.id)),
                Ok(true) => {
                    note(format!("{} (deny): applies → deny", rule.id));
                    return forbidden(rule, rule.reason.clone().unwrap_or_else(|| "denied by policy".into()));
                }
                Err(e) => {
                    note(format!("{} (deny): condition error ({e}) → deny (fail closed)", rule.id));
                    return forbidden(rule, "policy condition could not be evaluated".into());
                }
            }
        }
        let mut step_up: Option<(&Rule, Vec<String>)> = None;
        let mut last_refusal: Option<&Rule> = None;
        for rule in rules().filter(|r| r.effect == Effect::Allow) {
            let missing: Vec<String> = rule.scopes.iter().filter(|s| !principal.has_scope(s)).cloned().collect();
            let role_ok = rule.roles.is_empty() || rule.roles.iter().any(|r| principal.roles.contains(r));
            if !role_ok {
                note(format!("{} (allow): not applicable, needs a role of {}", rule.id, rule.roles.join(", ")));
                last_refusal = Some(rule);
                continue;
            }
            match condition(rule) {
                Ok(true) if missing.is_empty() => {
                    note(format!("{} (allow): applies → allow", rule.id));
                    // Allowed: unless an approve rule holds this call back for a person's yes.
                    if args.is_some() {
                        for held in rules().filter(|r| r.effect == Effect::Approve) {
                            if let Err(why) = gates(held, principal) {
                                note(format!("{} (approve): not applicable, {why}", held.id));
                                continue;
                            }
                            let applies = match condition(held) {
                                Ok(applies) => applies,
                                Err(e) => {
                                    note(format!("{} (approve): condition error ({e}) → approval (fail closed)", held.id));
                                    true
                                }
                            };
                            if !applies {
                                note(format!("{} (approve): condition false", held.id));
                                continue;
                            }
                            let Some(approval) = held.approval.clone() else { continue };
                            note(format!("{} (approve): applies → approval by {}", held.id, approval.approvers()));
                            let reason = held.reason.clone().unwrap_or_else(|| "this call needs approval".into());
                            return Decision { outcome: Err(Denial::ApprovalRequired { approval, reason }), rule: held.id.clone() };
                        }
                    }
                    return Decision { outcome: Ok(()), rule: rule.id.clone() };
                }
                Ok(true) => {
                    note(format!("{} (allow): would apply, missing {}", rule.id, missing.join(" ")));
                    if step_up.as_ref().is_none_or(|(_, m)| missing.len() < m.len()) {
                        step_up = Some((rule, missing));
                    }
                }
                Ok(false) => {
                    note(format!("{} (allow): condition false", rule.id));
                    last_refusal = Some(rule);
                }
                Err(e) => {
                    note(format!("{} (allow): condition error ({e}) → not applicable (fail closed)", rule.id));
                    last_refusal = Some(rule);
                }
            }
        }
        if let Some((rule, missing)) = step_up {
            let mut needed: Vec<String> = tool.scopes.to_vec();
            for s in &rule.scopes {
                if !needed.contains(s) {
                    needed.push(s.clone());
                }
            }
            note(format!("→ step-up: {}", needed.join(" ")));
            let challenge = step_up_challenge(principal, &needed);
            return Decision { outcome: Err(Denial::InsufficientScope { needed, missing, challenge }), rule: rule.id.clone() };
        }
        match last_refusal {
            Some(rule) => {
                note(format!("no allow rule applies → deny ({})", rule.id));
                forbidden(rule, rule.reason.clone().unwrap_or_else(|| "not allowed by policy".into()))
            }
            None => {
                note("no allow rule applies → default deny".into());
                default_deny()
            }
        }
    }

    /// List time: shown iff some arguments could be allowed.
    pub fn visible(&self, principal: &Principal, tool: &ToolFacts<'_>, request: &RequestFacts) -> bool {
        self.decide(principal, tool, Stage::List, request, None).outcome.is_ok()
    }
}

/// Scopes and roles of a deny rule: it applies only to callers that hold them.
fn gates(rule: &Rule, principal: &Principal) -> Result<(), String> {
    if let Some(s) = rule.scopes.iter().find(|s| !principal.has_scope(s)) {
        return Err(format!("caller lacks {s}"));
    }
    if !rule.roles.is_empty() && !rule.roles.iter().any(|r| principal.roles.contains(r)) {
        return Err("caller has none of its roles".into());
    }
    Ok(())
}

fn forbidden(rule: &Rule, reason: String) -> Decision {
    Decision { outcome: Err(Denial::Forbidden { reason }), rule: rule.id.clone() }
}

fn default_deny() -> Decision {
    Decision { outcome: Err(Denial::Forbidden { reason: "no policy rule allows this call".into() }), rule: "default-deny".into() }
}

/// Shared, swappable policy (hot reload replaces it whole).
pub type SharedPolicy = Arc<arc_swap::ArcSwap<Policy>>;

/// RFC 6749 §3.3 scope-token: printable ASCII without space, `"` and `\`.
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}
