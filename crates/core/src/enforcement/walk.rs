//! The one walk over a PromQL tree: every selector, in order, for enforcement (the tenant
//! matcher), verification (the printed query re-parsed), the deferred-regex path and the
//! rules filter.

use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};

use super::error::{EnforceError, MAX_DEPTH};

/// Calls `f` on every selector of a tree; returns how many there are. On the way it refuses
/// what no selector rewrite can make safe (`info()`, extensions, a tree deeper than
/// [`MAX_DEPTH`]) and drops the empty modifiers the printer does not write (`by ()`,
/// `ignoring ()`), so a printed and re-parsed tree compares equal.
pub(crate) fn visit_selectors(
    expr: &mut Expr,
    depth: usize,
    f: &mut impl FnMut(&mut VectorSelector) -> Result<(), EnforceError>,
) -> Result<usize, EnforceError> {
    if depth > MAX_DEPTH {
        return Err(EnforceError::TooDeep { limit: MAX_DEPTH });
    }
    let next = depth + 1;
    match expr {
        Expr::Aggregate(agg) => {
            // `by ()` is printed as nothing; normalise to the equivalent "no modifier" so a
            // re-parsed output compares equal.
            if matches!(&agg.modifier, Some(LabelModifier::Include(l)) if l.is_empty()) {
                agg.modifier = None;
            }
            let mut n = 0;
            if let Some(param) = agg.param.as_deref_mut() {
                n += visit_selectors(param, next, f)?;
            }
            Ok(n + visit_selectors(&mut agg.expr, next, f)?)
        }
        Expr::Unary(u) => visit_selectors(&mut u.expr, next, f),
        Expr::Binary(bin) => {
            // `ignoring ()` is printed as nothing and means the same as no matching clause.
            if let Some(m) = bin.modifier.as_mut() {
                if matches!(&m.matching, Some(LabelModifier::Exclude(l)) if l.is_empty()) {
                    m.matching = None;
                }
                if *m == parser::BinModifier::default() {
                    bin.modifier = None;
                }
            }
            let n = visit_selectors(&mut bin.lhs, next, f)?;
            Ok(n + visit_selectors(&mut bin.rhs, next, f)?)
        }
        Expr::Paren(p) => visit_selectors(&mut p.expr, next, f),
        Expr::Subquery(sq) => visit_selectors(&mut sq.expr, next, f),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(0),
        Expr::VectorSelector(vs) => f(vs).map(|()| 1),
        Expr::MatrixSelector(ms) => f(&mut ms.vs).map(|()| 1),
        Expr::Call(call) => {
            if call.func.name == "info" {
                return Err(unsupported_info());
            }
            let mut n = 0;
            for arg in call.args.args.iter_mut() {
                n += visit_selectors(arg, next, f)?;
            }
            Ok(n)
        }
        Expr::Extension(_) => Err(unsupported_extension()),
    }
}

fn unsupported_info() -> EnforceError {
    // info() looks up target_info series implicitly; that lookup cannot carry our matcher.
    EnforceError::Unsupported {
        what: "the info() function",
    }
}

fn unsupported_extension() -> EnforceError {
    EnforceError::Unsupported {
        what: "extension expressions",
    }
}
