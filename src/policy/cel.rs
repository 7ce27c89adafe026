//! The bridge to CEL: compiling conditions with a load-time check of the variables they use,
//! and the per-decision activation (`principal`, `tool`, `args`, `request`).
//!
//! Comparisons are strict. CEL's own `==`, `!=` and `in` answer `false` when the operands are
//! of different kinds (`["x"] == "x"`, `1001 == "1001"`), which would let a caller slip past a
//! deny rule by sending the forbidden value with another JSON type. Every `==`, `!=` and `in` is
//! rewritten at compile time into [`strict`]'s functions, which raise an error for operands of
//! different kinds (numbers compare by value across int, uint and double; `null` equals only
//! `null`), recursively inside lists and maps. An error fails closed: a deny rule applies, an
//! allow rule does not.

mod strict;

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{RequestFacts, ToolFacts};
use crate::identity::Principal;

/// The variables a condition may use.
pub const ROOTS: &[&str] = &["principal", "tool", "args", "request"];

static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(strict::env()));

/// Which of the [`ROOTS`] a set of conditions reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roots {
    pub principal: bool,
    pub tool: bool,
    pub args: bool,
    pub request: bool,
}

impl Roots {
    pub fn union(self, o: Self) -> Self {
        Self {
            principal: self.principal || o.principal,
            tool: self.tool || o.tool,
            args: self.args || o.args,
            request: self.request || o.request,
        }
    }
}

/// A compiled `when` expression.
pub struct Condition {
    pub source: String,
    /// The parsed expression, its comparisons made strict.
    expression: IdedExpr,
    /// Whether it reads the call's arguments (unknown at list time).
    pub uses_args: bool,
    /// The variables it reads: only these are bound when it is evaluated.
    pub roots: Roots,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Condition {
    /// Compiles and checks that every free variable is one of [`ROOTS`].
    pub fn compile(source: &str) -> Result<Self, String> {
        let mut expression = ENV.parser().parse(source).map_err(|e| format!("invalid CEL: {e}"))?;
        strict::rewrite(&mut expression);
        let mut free = BTreeSet::new();
        free_variables(&expression, &mut Vec::new(), &mut free);
        if let Some(unknown) = free.iter().find(|v| !ROOTS.contains(&v.as_str())) {
            return Err(format!("unknown variable {unknown:?}; conditions may use {}", ROOTS.join(", ")));
        }
        let roots = Roots {
            principal: free.contains("principal"),
            tool: free.contains("tool"),
            args: free.contains("args"),
            request: free.contains("request"),
        };
        Ok(Self { source: source.to_owned(), uses_args: roots.args, roots, expression })
    }

    /// `Ok(true/false)`, or the evaluation error (a missing key, a type mismatch, a non-bool).
    pub fn eval(&self, activation: &cel::Context<'_, '_>) -> Result<bool, String> {
        match cel::Value::resolve(&self.expression, activation) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("condition returned {:?}, not a bool", other.type_of())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The value as a bucket name (a rate limit's `key: {expr}`): a string, number, bool or
    /// null, each kind kept apart (`"1"` and `1` are different buckets); anything else is an
    /// error.
    pub fn eval_key(&self, activation: &cel::Context<'_, '_>) -> Result<String, String> {
        match cel::Value::resolve(&self.expression, activation) {
            Ok(cel::Value::String(s)) => Ok(format!("s:{s}")),
            Ok(cel::Value::Int(i)) => Ok(format!("n:{i}")),
            Ok(cel::Value::UInt(u)) => Ok(format!("n:{u}")),
            Ok(cel::Value::Bool(b)) => Ok(format!("b:{b}")),
            Ok(cel::Value::Null) => Ok("null".into()),
            Ok(other) => Err(format!("a key expression returned {:?}: use a string, number, bool or null", other.type_of())),
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

/// A CEL value borrowing from the decision's inputs.
type Val<'a> = Box<dyn cel::common::value::Val + 'a>;

/// The activation for one decision, binding only the variables in `roots`. Values are built
/// once, directly as CEL's value objects, borrowing strings from the principal, tool, arguments
/// and request rather than copying them. `args: None` (list time) binds `args` to an empty map.
pub fn activation<'a>(
    roots: Roots,
    principal: &'a Principal,
    tool: &'a ToolFacts<'a>,
    args: Option<&'a Value>,
    request: &'a RequestFacts,
) -> cel::Context<'a, 'a> {
    let mut ctx = cel::Context::with_env(Arc::clone(&ENV));
    if roots.principal {
        let optional = |v: &'a Option<String>| v.as_deref().map_or_else(null, text);
        let value = map([
            ("sub", text(principal.subject.as_str())),
            ("issuer", text(&principal.issuer)),
            ("tenant", optional(&principal.tenant)),
            ("client_id", optional(&principal.client_id)),
            ("roles", list(principal.roles.iter().map(|s| text(s)))),
            ("scopes", list(principal.scopes.iter().map(|s| text(s)))),
            ("claims", object(&principal.claims)),
        ]);
        ctx.add_variable_as_val("principal", value);
    }
    if roots.tool {
        let value = map([
            ("name", text(tool.name)),
            ("tags", list(tool.tags.iter().map(|s| text(s)))),
            ("metadata", object(tool.metadata)),
            ("server", text(tool.server.unwrap_or_default())),
        ]);
        ctx.add_variable_as_val("tool", value);
    }
    if roots.args {
        ctx.add_variable_as_val("args", args.map_or_else(|| map([]), json));
    }
    if roots.request {
        let time: chrono::DateTime<chrono::FixedOffset> = chrono::DateTime::<chrono::Utc>::from(request.time).into();
        let value = map([
            ("time", Box::new(cel::common::types::CelTimestamp::from(time)) as Val<'a>),
            ("client_ip", request.client_ip.map_or_else(null, |ip| Box::new(cel::common::types::CelString::from(ip.to_string())))),
            ("method", text(request.method.as_str())),
            ("path", text(&request.path)),
            (
                "headers",
                Box::new(cel::common::types::CelMap::from(
                    request.headers.iter().map(|(k, v)| (key(k), text(v))).collect::<HashMap<_, _>>(),
                )),
            ),
        ]);
        ctx.add_variable_as_val("request", value);
    }
    ctx
}

fn null<'a>() -> Val<'a> {
    Box::new(cel::common::types::CelNull)
}

fn text(s: &str) -> Val<'_> {
    Box::new(cel::common::types::CelString::from(s))
}

fn key(s: &str) -> cel::common::types::CelMapKey<'_> {
    cel::common::types::CelMapKey::String(cel::common::types::CelString::from(s))
}

fn list<'a>(items: impl Iterator<Item = Val<'a>>) -> Val<'a> {
    Box::new(cel::common::types::CelList::from(items.collect::<Vec<_>>()))
}

fn map<'a, const N: usize>(entries: [(&'a str, Val<'a>); N]) -> Val<'a> {
    Box::new(cel::common::types::CelMap::from(entries.into_iter().map(|(k, v)| (key(k), v)).collect::<HashMap<_, _>>()))
}

fn object(m: &Map<String, Value>) -> Val<'_> {
    Box::new(cel::common::types::CelMap::from(m.iter().map(|(k, v)| (key(k), json(v))).collect::<HashMap<_, _>>()))
}

/// JSON to CEL: integers stay integers (unsigned beyond i64), other numbers become doubles.
fn json(v: &Value) -> Val<'_> {
    use cel::common::types::{CelBool, CelDouble, CelInt, CelUInt};
    match v {
        Value::Null => null(),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            (None, None) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => text(s),
        Value::Array(items) => list(items.iter().map(json)),
        Value::Object(m) => object(m),
    }
}
