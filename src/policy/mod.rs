//! Policy stage: may this principal see or call this tool?
//!
//! Deny by default. Today a tool's rule is its required scopes (all of them); the full engine
//! (roles, CEL conditions over claims and arguments, deny rules, policy files) grows here
//! behind the same two entry points: [`visible`] at list time and [`decide`] at call time.
//! Every decision names the rule that decided, for the audit record.

use crate::identity::Principal;
use crate::tools::Tool;

/// Why a call is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The caller lacks scopes; `needed` is every scope the tool requires (for step-up).
    InsufficientScope { needed: Vec<String>, missing: Vec<String> },
}

/// A decision and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Result<(), Denial>,
    /// e.g. `tool:list_events:scopes`.
    pub rule: String,
}

/// The call-time decision.
pub fn decide(principal: &Principal, tool: &Tool) -> Decision {
    let missing: Vec<String> = tool.scopes.iter().filter(|s| !principal.has_scope(s)).cloned().collect();
    let rule = format!("tool:{}:scopes", tool.name);
    if missing.is_empty() {
        Decision { outcome: Ok(()), rule }
    } else {
        Decision { outcome: Err(Denial::InsufficientScope { needed: tool.scopes.clone(), missing }), rule }
    }
}

/// The list-time decision: shown only if some call could be allowed.
pub fn visible(principal: &Principal, tool: &Tool) -> bool {
    decide(principal, tool).outcome.is_ok()
}
