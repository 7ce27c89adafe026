//! Strict comparisons for policy conditions: `==`, `!=` and `in` whose operands are of
//! different kinds are errors, never `false`.
//!
//! A deny rule `args.q == "forbidden"` must not stop applying because the caller sent
//! `["forbidden"]` or a number: the argument mapping would still put the forbidden text on the
//! wire. So every comparison the parser produces is renamed to one of the functions below
//! before evaluation, and those refuse to compare a string with a list, a number with a
//! string, and so on, at any depth. Numbers are one kind (`1 == 1.0`, as CEL has it); `null`
//! equals only `null`, and comparing with `null` is never an error (`x == null` is how a policy
//! asks whether a value is absent).

use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};
use cel::common::types::{CelBool, CelList, CelMap, DYN_TYPE, Kind};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError};

const EQ: &str = "__warden_strict_eq";
const NE: &str = "__warden_strict_ne";
const IN: &str = "__warden_strict_in";

/// The standard environment plus the strict comparison functions.
pub fn env() -> Env {
    let mut env = Env::stdlib();
    for (name, op) in [(EQ, eq as cel::common::functions::Function), (NE, ne), (IN, contains)] {
        // The names are Warden's own: a clash would be a programming error caught by every test.
        if let Err(e) = env.add_overload(name, name, vec![DYN_TYPE, DYN_TYPE], op) {
            tracing::error!(error = %e, "strict comparison not registered");
        }
    }
    env
}

/// Renames every `_==_`, `_!=_` and `@in` call (macro expansions included) to its strict form.
pub fn rewrite(e: &mut IdedExpr) {
    match &mut e.expr {
        Expr::Call(c) => {
            if c.target.is_none() && c.args.len() == 2 {
                let strict = match c.func_name.as_str() {
                    operators::EQUALS => Some(EQ),
                    operators::NOT_EQUALS => Some(NE),
                    operators::IN => Some(IN),
                    _ => None,
                };
                if let Some(name) = strict {
                    c.func_name = name.to_owned();
                }
            }
            if let Some(t) = &mut c.target {
                rewrite(t);
            }
            c.args.iter_mut().for_each(rewrite);
        }
        Expr::Select(s) => rewrite(&mut s.operand),
        Expr::List(l) => l.elements.iter_mut().for_each(rewrite),
        Expr::Map(m) => m.entries.iter_mut().for_each(|en| entry(&mut en.expr)),
        Expr::Struct(s) => s.entries.iter_mut().for_each(|en| entry(&mut en.expr)),
        Expr::Comprehension(c) => {
            for part in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                rewrite(part);
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entry(e: &mut EntryExpr) {
    match e {
        EntryExpr::StructField(f) => rewrite(&mut f.value),
        EntryExpr::MapEntry(m) => {
            rewrite(&mut m.key);
            rewrite(&mut m.value);
        }
    }
}

fn bool<'b, 'v>(b: bool) -> CowVal<'b, 'v> {
    CowVal::owned(CelBool::from(b))
}

fn two<'b, 'v>(name: &str, mut args: Vec<CowVal<'b, 'v>>) -> Result<(CowVal<'b, 'v>, CowVal<'b, 'v>), ExecutionError> {
    let rhs = args.pop();
    let lhs = args.pop();
    match (lhs, rhs) {
        (Some(l), Some(r)) if args.is_empty() => Ok((l, r)),
        _ => Err(ExecutionError::function_error(name, "expects two operands")),
    }
}

fn eq<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (l, r) = two("==", args)?;
    strict_eq(l.as_ref(), r.as_ref()).map(bool).map_err(|m| m.error("=="))
}

fn ne<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (l, r) = two("!=", args)?;
    strict_eq(l.as_ref(), r.as_ref()).map(|b| bool(!b)).map_err(|m| m.error("!="))
}

fn contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (needle, haystack) = two("in", args)?;
    strict_in(needle.as_ref(), haystack.as_ref()).map(bool).map_err(|m| m.error("in"))
}

/// Two operands of kinds that must not be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub left: Kind,
    pub right: Kind,
}

impl Mismatch {
    fn error(self, op: &str) -> ExecutionError {
        ExecutionError::function_error(op, format!("cannot compare {} with {}", name(self.left), name(self.right)))
    }
}

fn name(k: Kind) -> &'static str {
    match k {
        Kind::Boolean => "bool",
        Kind::Bytes => "bytes",
        Kind::Double | Kind::Int | Kind::UInt => "number",
        Kind::Duration => "duration",
        Kind::List => "list",
        Kind::Map => "map",
        Kind::NullType => "null",
        Kind::String => "string",
        Kind::Timestamp => "timestamp",
        Kind::Type => "type",
        _ => "value",
    }
}

fn is_number(k: Kind) -> bool {
    matches!(k, Kind::Int | Kind::UInt | Kind::Double)
}

/// Whether two kinds may be compared: the same kind, two numbers, or `null` with anything.
fn comparable(a: Kind, b: Kind) -> bool {
    a == b || (is_number(a) && is_number(b)) || a == Kind::NullType || b == Kind::NullType
}

/// Equality that refuses operands of different kinds, at any depth.
pub fn strict_eq(a: &dyn Val, b: &dyn Val) -> Result<bool, Mismatch> {
    let (ka, kb) = (a.get_type().kind(), b.get_type().kind());
    if !comparable(ka, kb) {
        return Err(Mismatch { left: ka, right: kb });
    }
    if ka == Kind::NullType || kb == Kind::NullType {
        return Ok(ka == kb);
    }
    match ka {
        Kind::List => {
            let (Some(la), Some(lb)) = (a.downcast_ref::<CelList>(), b.downcast_ref::<CelList>()) else {
                return Ok(a.equals(b));
            };
            let (la, lb) = (la.inner(), lb.inner());
            let mut equal = la.len() == lb.len();
            // Every pair is compared, so a mismatch deep in the list is an error even after a
            // difference was found.
            for (x, y) in la.iter().zip(lb.iter()) {
                equal &= strict_eq(x.as_ref(), y.as_ref())?;
            }
            Ok(equal)
        }
        Kind::Map => {
            let (Some(ma), Some(mb)) = (a.downcast_ref::<CelMap>(), b.downcast_ref::<CelMap>()) else {
                return Ok(a.equals(b));
            };
            let (ma, mb) = (ma.inner(), mb.inner());
            let mut equal = ma.len() == mb.len();
            for (k, va) in ma {
                let found = mb.iter().find(|(kb, _)| kb.inner().equals(k.inner()));
                match found {
                    Some((_, vb)) => equal &= strict_eq(va.as_ref(), vb.as_ref())?,
                    None => equal = false,
                }
            }
            Ok(equal)
        }
        _ => Ok(a.equals(b)),
    }
}

/// `needle in haystack`: a list's elements, or a map's keys. A needle of a kind that no element
/// has (a list looked up among strings) is an error; elements of other kinds are skipped, so a
/// mixed list in a policy does not turn every lookup into an error.
pub fn strict_in(needle: &dyn Val, haystack: &dyn Val) -> Result<bool, Mismatch> {
    let kn = needle.get_type().kind();
    let candidates: Vec<&dyn Val> = match haystack.get_type().kind() {
        Kind::List => match haystack.downcast_ref::<CelList>() {
            Some(l) => l.inner().iter().map(|v| v.as_ref()).collect(),
            None => return Err(Mismatch { left: kn, right: Kind::List }),
        },
        Kind::Map => match haystack.downcast_ref::<CelMap>() {
            Some(m) => m.inner().keys().map(|k| k.inner()).collect(),
            None => return Err(Mismatch { left: kn, right: Kind::Map }),
        },
        other => return Err(Mismatch { left: kn, right: other }),
    };
    let mut first_mismatch = None;
    let mut compared = false;
    for c in candidates {
        let kc = c.get_type().kind();
        // `null` is comparable with anything, but only stands in for its own kind here.
        if kn != kc && !(is_number(kn) && is_number(kc)) {
            first_mismatch.get_or_insert(Mismatch { left: kn, right: kc });
            continue;
        }
        compared = true;
        if strict_eq(needle, c)? {
            return Ok(true);
        }
    }
    match first_mismatch {
        Some(m) if !compared => Err(m),
        _ => Ok(false),
    }
}
