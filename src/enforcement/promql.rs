//! The PromQL rewrite: bound the input, parse, enforce on every selector, print, verify.

use std::panic::{catch_unwind, AssertUnwindSafe};

use promql_parser::label::{Matcher, Matchers};
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};

use super::matchers::sort_matchers;
use super::{EnforceError, TenantMatcher, MAX_DEPTH, MAX_OUTPUT_BYTES, MAX_QUERY_BYTES};

/// Rewrites a PromQL expression so every vector/matrix selector (also inside subqueries,
/// functions, aggregations, binary ops, @/offset) carries the tenant matcher. Returns the
/// rewritten query text.
pub fn enforce_query(query: &str, tenant: &TenantMatcher) -> Result<String, EnforceError> {
    let mut expr = parse_bounded(query)?;
    let selectors = enforce_expr(&mut expr, tenant, 0)?;
    let out = print(&expr)?;
    verify_enforced(&out, &expr, selectors, tenant)?;
    Ok(out)
}

/// For the match[] APIs (series, labels, label values, federate, status/tsdb): enforces each
/// series selector; when `selectors` is empty, returns one: `tenant.selector()`.
pub fn enforce_match_selectors(
    selectors: &[&str],
    tenant: &TenantMatcher,
) -> Result<Vec<String>, EnforceError> {
    if selectors.is_empty() {
        return Ok(vec![tenant.selector()]);
    }
    selectors
        .iter()
        .map(|s| enforce_match_selector(s, tenant))
        .collect()
}

/// Enforces one `match[]` series selector (a bare selector, no offset or @).
pub fn enforce_match_selector(input: &str, tenant: &TenantMatcher) -> Result<String, EnforceError> {
    let expr = parse_bounded(input)?;
    // Like Prometheus' ParseMetricSelector: a bare selector, no offset or @.
    let mut vs = match expr {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => vs,
        _ => {
            return Err(EnforceError::NotASelector {
                input: shorten(input),
            })
        }
    };
    tenant.enforce(&mut vs.matchers)?;
    let expr = Expr::VectorSelector(vs);
    let out = print(&expr)?;
    verify_enforced(&out, &expr, 1, tenant)?;
    Ok(out)
}

/// Size and nesting checks, then parse. The nesting bound is established on the raw text
/// because the parser's type checks, the printer and `Drop` all recurse over the AST.
pub(crate) fn parse_bounded(input: &str) -> Result<Expr, EnforceError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(EnforceError::TooLarge {
            size: input.len(),
            limit: MAX_QUERY_BYTES,
        });
    }
    if depth_bound(input) > MAX_DEPTH {
        return Err(EnforceError::TooDeep { limit: MAX_DEPTH });
    }
    parse(input).map_err(|message| EnforceError::Parse { message })
}

/// promql-parser on bounded input; a panic inside it is turned into a parse error so that a
/// parser bug fails closed instead of taking the request handler down.
fn parse(input: &str) -> Result<Expr, String> {
    catch_unwind(|| parser::parse(input))
        .unwrap_or_else(|_| Err("the parser failed on this input".to_string()))
}

fn print(expr: &Expr) -> Result<String, EnforceError> {
    let out = catch_unwind(AssertUnwindSafe(|| expr.to_string())).map_err(|_| {
        EnforceError::Verification {
            detail: "printing the rewritten query failed".into(),
        }
    })?;
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(EnforceError::TooLarge {
            size: out.len(),
            limit: MAX_OUTPUT_BYTES,
        });
    }
    Ok(out)
}

/// Adds the tenant matcher to every selector below `expr`; returns how many selectors it saw.
fn enforce_expr(
    expr: &mut Expr,
    tenant: &TenantMatcher,
    depth: usize,
) -> Result<usize, EnforceError> {
    if depth > MAX_DEPTH {
        return Err(EnforceError::TooDeep { limit: MAX_DEPTH });
    }
    let next = depth + 1;
    match expr {
        Expr::Aggregate(agg) => {
            // `by ()` is printed as nothing; normalise to the equivalent "no modifier" so the
            // re-parsed output compares equal.
            if matches!(&agg.modifier, Some(LabelModifier::Include(l)) if l.is_empty()) {
                agg.modifier = None;
            }
            let mut n = 0;
            if let Some(param) = agg.param.as_deref_mut() {
                n += enforce_expr(param, tenant, next)?;
            }
            Ok(n + enforce_expr(&mut agg.expr, tenant, next)?)
        }
        Expr::Unary(u) => enforce_expr(&mut u.expr, tenant, next),
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
            let n = enforce_expr(&mut bin.lhs, tenant, next)?;
            Ok(n + enforce_expr(&mut bin.rhs, tenant, next)?)
        }
        Expr::Paren(p) => enforce_expr(&mut p.expr, tenant, next),
        Expr::Subquery(sq) => enforce_expr(&mut sq.expr, tenant, next),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(0),
        Expr::VectorSelector(vs) => enforce_selector(vs, tenant),
        Expr::MatrixSelector(ms) => enforce_selector(&mut ms.vs, tenant),
        Expr::Call(call) => {
            if call.func.name == "info" {
                return Err(unsupported_info());
            }
            let mut n = 0;
            for arg in call.args.args.iter_mut() {
                n += enforce_expr(arg, tenant, next)?;
            }
            Ok(n)
        }
        Expr::Extension(_) => Err(unsupported_extension()),
    }
}

fn enforce_selector(
    vs: &mut VectorSelector,
    tenant: &TenantMatcher,
) -> Result<usize, EnforceError> {
    tenant.enforce(&mut vs.matchers)?;
    Ok(1)
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

/// [`verify`], for a regex tenant matcher first with its equality stand-in in both the printed
/// text and the AST, which spares the re-parse compiling the regex once per selector.
///
/// Why this proves the same thing: the real and the stand-in matcher are both `label op
/// "string"` to the lexer, so swapping one's printed text for the other's inside a selector
/// swaps the matchers in the parsed tree and changes nothing else. A swap anywhere else (inside
/// a string literal, say) changes a node the verifier compares, and the check fails. Text that
/// already contains the stand-in is not swapped. Whenever the stand-in check does not pass, the
/// query is verified again with the real matcher, which decides.
pub(super) fn verify_enforced(
    out: &str,
    enforced: &Expr,
    selectors: usize,
    tenant: &TenantMatcher,
) -> Result<(), EnforceError> {
    if let Some(stand_in) = tenant.stand_in() {
        if !out.contains(&stand_in.text) {
            let swapped = out.replace(&stand_in.real_text, &stand_in.text);
            let mut expected = enforced.clone();
            let swap = &mut |m: &mut Matchers| {
                for x in m.matchers.iter_mut().filter(|x| *x == tenant.matcher()) {
                    *x = stand_in.matcher.clone();
                }
                sort_matchers(&mut m.matchers);
                Ok(())
            };
            if visit_selectors(&mut expected, 0, swap).is_ok()
                && verify(&swapped, &expected, selectors, &stand_in.matcher).is_ok()
            {
                return Ok(());
            }
        }
        #[cfg(test)]
        REGEX_VERIFICATIONS.with(|n| n.set(n.get() + 1));
    }
    verify(out, enforced, selectors, tenant.matcher())
}

#[cfg(test)]
thread_local! {
    /// How often a regex tenant matcher was verified the slow way, on this thread.
    pub(crate) static REGEX_VERIFICATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Re-parses the printed query and proves it is the enforced AST: every selector carries the
/// tenant matcher exactly, none has or-groups, the selector count is unchanged, and the whole
/// tree equals `enforced` up to matcher order. Any difference means the printer changed the
/// query, and we refuse rather than forward it.
fn verify(
    out: &str,
    enforced: &Expr,
    selectors: usize,
    tenant: &Matcher,
) -> Result<(), EnforceError> {
    let fail = |detail: String| EnforceError::Verification { detail };
    if depth_bound(out) > MAX_DEPTH {
        return Err(fail("the output nests deeper than allowed".into()));
    }
    let mut reparsed = parse(out).map_err(|e| fail(format!("the output does not parse: {e}")))?;
    let seen = visit_selectors(&mut reparsed, 0, &mut |m| check_selector(m, tenant))?;
    if seen != selectors {
        return Err(fail(format!(
            "the output has {seen} selectors instead of {selectors}"
        )));
    }
    if reparsed != *enforced {
        return Err(fail(
            "the printed query differs from the rewritten one".into(),
        ));
    }
    Ok(())
}

/// Calls `f` on the matchers of every selector of a tree; returns how many there are.
fn visit_selectors(
    expr: &mut Expr,
    depth: usize,
    f: &mut impl FnMut(&mut Matchers) -> Result<(), EnforceError>,
) -> Result<usize, EnforceError> {
    if depth > MAX_DEPTH {
        return Err(EnforceError::TooDeep { limit: MAX_DEPTH });
    }
    let next = depth + 1;
    match expr {
        Expr::Aggregate(agg) => {
            let mut n = 0;
            if let Some(param) = agg.param.as_deref_mut() {
                n += visit_selectors(param, next, f)?;
            }
            Ok(n + visit_selectors(&mut agg.expr, next, f)?)
        }
        Expr::Unary(u) => visit_selectors(&mut u.expr, next, f),
        Expr::Binary(bin) => {
            let n = visit_selectors(&mut bin.lhs, next, f)?;
            Ok(n + visit_selectors(&mut bin.rhs, next, f)?)
        }
        Expr::Paren(p) => visit_selectors(&mut p.expr, next, f),
        Expr::Subquery(sq) => visit_selectors(&mut sq.expr, next, f),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(0),
        Expr::VectorSelector(vs) => f(&mut vs.matchers).map(|()| 1),
        Expr::MatrixSelector(ms) => f(&mut ms.vs.matchers).map(|()| 1),
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

/// Checks one selector of a re-parsed tree (and sorts its matchers for the comparison).
fn check_selector(matchers: &mut Matchers, tenant: &Matcher) -> Result<(), EnforceError> {
    if !matchers.or_matchers.is_empty() {
        return Err(EnforceError::Verification {
            detail: "a selector in the output has `or` matcher groups".into(),
        });
    }
    if !matchers.matchers.contains(tenant) {
        return Err(EnforceError::Verification {
            detail: "a selector in the output lacks the tenant matcher".into(),
        });
    }
    sort_matchers(&mut matchers.matchers);
    Ok(())
}

/// An upper bound of the AST depth of `input`, from a linear scan of the text that follows
/// promql-parser's lexer (strings with backslash escapes in all three quote styles, `#`
/// comments, label matchers in braces). Input the lexer rejects is never parsed, so the scan
/// only has to be exact for lexable input.
///
/// Per bracket level, every AST node on a root-to-leaf path is either a binary or unary operator
/// or a subquery `[` at that level, or the Paren/Call/Aggregate node of the level itself; so
/// `bound(level) = 1 + ops(level) + max(1, bound(children))`. Over-counting (a `-` in `1e-3`,
/// `==` counted twice, keywords used as names) only makes the bound safer.
pub(crate) fn depth_bound(input: &str) -> usize {
    struct Level {
        ops: usize,
        deepest_child: usize,
    }
    let bytes = input.as_bytes();
    let mut levels = vec![Level {
        ops: 0,
        deepest_child: 0,
    }];
    let mut in_braces = false;
    let mut i = 0;
    let close = |levels: &mut Vec<Level>| {
        if levels.len() > 1 {
            if let Some(l) = levels.pop() {
                let bound = 1 + l.ops + l.deepest_child.max(1);
                if let Some(parent) = levels.last_mut() {
                    parent.deepest_child = parent.deepest_child.max(bound);
                }
            }
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'}' if in_braces => in_braces = false,
            _ if in_braces => {}
            b'{' => in_braces = true,
            b'(' | b'[' => {
                if c == b'[' {
                    // A subquery adds a node at the current level.
                    if let Some(l) = levels.last_mut() {
                        l.ops += 1;
                    }
                }
                levels.push(Level {
                    ops: 0,
                    deepest_child: 0,
                });
                if levels.len() > MAX_DEPTH + 1 {
                    return levels.len();
                }
            }
            b')' | b']' => close(&mut levels),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => {
                if let Some(l) = levels.last_mut() {
                    l.ops += 1;
                }
            }
            _ if c == b'_' || c == b':' || c.is_ascii_alphanumeric() => {
                let start = i;
                while i + 1 < bytes.len()
                    && (bytes[i + 1] == b'_'
                        || bytes[i + 1] == b':'
                        || bytes[i + 1].is_ascii_alphanumeric())
                {
                    i += 1;
                }
                let word = &bytes[start..=i];
                let is_op = ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k.as_bytes()));
                if is_op {
                    if let Some(l) = levels.last_mut() {
                        l.ops += 1;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    while levels.len() > 1 {
        close(&mut levels);
    }
    levels
        .first()
        .map_or(0, |root| root.ops + root.deepest_child.max(1))
}

/// Input echoed in an error message, cut to a readable length on a char boundary.
fn shorten(input: &str) -> String {
    const MAX: usize = 200;
    if input.len() <= MAX {
        return input.to_string();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &input[..end])
}
