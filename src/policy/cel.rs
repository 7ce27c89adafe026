//! The bridge to CEL: compiling conditions with a load-time check of the variables they use,
//! and the per-decision activation (`principal`, `tool`, `args`, `request`).

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use serde_json::{Map, Value, json};

use super::{RequestFacts, ToolFacts};
use crate::identity::Principal;

/// The variables a condition may use.
pub const ROOTS: &[&str] = &["principal", "tool", "args", "request"];

static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

/// A compiled `when` expression.
pub struct Condition {
    pub source: String,
    program: cel::Program,
    /// Whether it reads the call's arguments (unknown at list time).
    pub uses_args: bool,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Condition {
    /// Compiles and checks that every free variable is one of [`ROOTS`].
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = ENV.compile(source).map_err(|e| format!("invalid CEL: {e}"))?;
        let mut free = BTreeSet::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        if let Some(unknown) = free.iter().find(|v| !ROOTS.contains(&v.as_str())) {
            return Err(format!("unknown variable {unknown:?}; conditions may use {}", ROOTS.join(", ")));
        }
        Ok(Self { source: source.to_owned(), uses_args: free.contains("args"), program })
    }

    /// `Ok(true/false)`, or the evaluation error (a missing key, a type mismatch, a non-bool).
    pub fn eval(&self, activation: &cel::Context<'_, '_>) -> Result<bool, String> {
        match self.program.execute(activation) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("condition returned {:?}, not a bool", other.type_of())),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Identifiers used free (not bound by a comprehension such as `exists(r, …)`).
fn free_variables(e: &IdedExpr, bound: &mut Vec<String>, out: &mut BTreeSet<String>) {
    match &e.expr {
        Expr::Ident(name) => {
            if !bound.contains(name) {
                out.insert(name.clone());
            }
        }
        Expr::Select(s) => free_variables(&s.operand, bound, out),
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_variables(t, bound, out);
            }
            c.args.iter().for_each(|a| free_variables(a, bound, out));
        }
        Expr::List(l) => l.elements.iter().for_each(|a| free_variables(a, bound, out)),
        Expr::Map(m) => m.entries.iter().for_each(|en| entry(&en.expr, bound, out)),
        Expr::Struct(s) => s.entries.iter().for_each(|en| entry(&en.expr, bound, out)),
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                free_variables(part, bound, out);
            }
            bound.truncate(depth);
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entry(e: &EntryExpr, bound: &mut Vec<String>, out: &mut BTreeSet<String>) {
    match e {
        EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
        EntryExpr::MapEntry(m) => {
            free_variables(&m.key, bound, out);
            free_variables(&m.value, bound, out);
        }
    }
}

/// The activation for one decision. `args: None` (list time) binds `args` to an empty map.
pub fn activation(
    principal: &Principal,
    tool: &ToolFacts<'_>,
    args: Option<&Value>,
    request: &RequestFacts,
) -> cel::Context<'static, 'static> {
    let mut ctx = cel::Context::with_env(Arc::clone(&ENV));
    let p = json!({
        "sub": principal.subject.as_str(),
        "issuer": principal.issuer,
        "tenant": principal.tenant,
        "client_id": principal.client_id,
        "roles": principal.roles,
        "scopes": principal.scopes,
        "claims": principal.claims,
    });
    let t = json!({"name": tool.name, "tags": tool.tags, "metadata": tool.metadata});
    let empty = Value::Object(Map::new());
    // Plain JSON values: conversion cannot fail; if it did, the variable would stay unbound and
    // conditions using it would fail closed.
    let _ = ctx.add_variable("principal", p);
    let _ = ctx.add_variable("tool", t);
    let _ = ctx.add_variable("args", args.unwrap_or(&empty));
    let time: chrono::DateTime<chrono::FixedOffset> = chrono::DateTime::<chrono::Utc>::from(request.time).into();
    let key = |k: &str| cel::objects::Key::String(Arc::new(k.to_owned()));
    let mut req = std::collections::HashMap::new();
    req.insert(key("time"), cel::Value::Timestamp(time));
    req.insert(key("client_ip"), request.client_ip.map_or(cel::Value::Null, |ip| cel::Value::String(Arc::new(ip.to_string()))));
    req.insert(key("headers"), cel::to_value(&request.headers).unwrap_or(cel::Value::Null));
    ctx.add_variable_from_value("request", cel::Value::Map(cel::objects::Map { map: Arc::new(req) }));
    ctx
}
