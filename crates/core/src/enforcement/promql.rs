//! The PromQL rewrite: bound the input, parse, enforce on every selector, print, verify.

use std::panic::{catch_unwind, AssertUnwindSafe};

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{self, Expr, VectorSelector};

use super::canonical;
use super::deferred;
use super::error::{EnforceError, MAX_DEPTH, MAX_OUTPUT_BYTES, MAX_QUERY_BYTES};
use super::matchers::TenantMatcher;
use super::matchers::{is_legacy_label_name, sort_matchers};
use super::scan::depth_bound;
use super::walk::visit_selectors;

/// Rewrites a PromQL expression so every vector/matrix selector (also inside subqueries,
/// functions, aggregations, binary ops, @/offset) carries the tenant matcher. Returns the
/// rewritten query text.
pub fn enforce_query(query: &str, tenant: &TenantMatcher) -> Result<String, EnforceError> {
    rewrite(query, tenant, true, |e| enforce_whole(e, tenant))
}

/// [`enforce_query`] on the general path alone (every regex compiled): the reference that tests
/// and the fuzzer compare the deferred path with.
#[cfg(any(test, feature = "fuzzing"))]
pub fn enforce_query_general(query: &str, tenant: &TenantMatcher) -> Result<String, EnforceError> {
    rewrite(query, tenant, false, |e| enforce_whole(e, tenant))
}

fn enforce_whole(mut expr: Expr, tenant: &TenantMatcher) -> Result<(Expr, usize), EnforceError> {
    let selectors = visit_selectors(&mut expr, 0, &mut |vs| tenant.enforce(&mut vs.matchers))?;
    Ok((expr, selectors))
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
    rewrite(input, tenant, true, |e| {
        enforce_bare_selector(e, input, tenant)
    })
}

/// [`enforce_match_selector`] on the general path alone, like [`enforce_query_general`].
#[cfg(any(test, feature = "fuzzing"))]
pub fn enforce_match_selector_general(
    input: &str,
    tenant: &TenantMatcher,
) -> Result<String, EnforceError> {
    rewrite(input, tenant, false, |e| {
        enforce_bare_selector(e, input, tenant)
    })
}

fn enforce_bare_selector(
    expr: Expr,
    input: &str,
    tenant: &TenantMatcher,
) -> Result<(Expr, usize), EnforceError> {
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
    Ok((Expr::VectorSelector(vs), 1))
}

/// Bounds `input`, parses it, applies `enforce` (which returns the enforced tree and its
/// selector count), prints and verifies. When `deferring`, a query whose regex matchers off the
/// tenant label can be left uncompiled ([`deferred`]) takes that path first; anything it does
/// not accept, it leaves to the general path, which decides every outcome the same way.
fn rewrite(
    input: &str,
    tenant: &TenantMatcher,
    deferring: bool,
    enforce: impl Fn(Expr) -> Result<(Expr, usize), EnforceError>,
) -> Result<String, EnforceError> {
    check_bounds(input)?;
    let parsed = if deferring {
        deferred::parse(input, tenant)
    } else {
        None
    };
    let fast = parsed.and_then(|expr| {
        let (expr, selectors) = enforce(expr).ok()?;
        let out = print(&expr, input.len()).ok()?;
        // Its placeholder regexes never equal compiled ones: the stand-in check alone decides.
        verify_through_stand_ins(&out, &expr, selectors, tenant).then_some(out)
    });
    if let Some(out) = fast {
        #[cfg(test)]
        deferred::TAKEN.with(|n| n.set(n.get() + 1));
        return Ok(out);
    }
    let expr = parse(input).map_err(|message| EnforceError::Parse { message })?;
    let (expr, selectors) = enforce(expr)?;
    let out = print(&expr, input.len())?;
    verify_enforced(&out, &expr, selectors, tenant)?;
    Ok(out)
}

/// Size and nesting checks, then parse. The nesting bound is established on the raw text
/// because the parser's type checks, the printer and `Drop` all recurse over the AST.
pub(crate) fn parse_bounded(input: &str) -> Result<Expr, EnforceError> {
    check_bounds(input)?;
    parse(input).map_err(|message| EnforceError::Parse { message })
}

fn check_bounds(input: &str) -> Result<(), EnforceError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(EnforceError::TooLarge {
            size: input.len(),
            limit: MAX_QUERY_BYTES,
        });
    }
    if depth_bound(input) > MAX_DEPTH {
        return Err(EnforceError::TooDeep { limit: MAX_DEPTH });
    }
    Ok(())
}

/// promql-parser on bounded input; a panic inside it is turned into a parse error so that a
/// parser bug fails closed instead of taking the request handler down.
fn parse(input: &str) -> Result<Expr, String> {
    catch_unwind(|| parser::parse(input))
        .unwrap_or_else(|_| Err("the parser failed on this input".to_string()))
}

/// Prints the enforced tree into a buffer sized from the input, so the text is not copied again
/// and again as it grows (the printer writes it in many small pieces).
fn print(expr: &Expr, input_len: usize) -> Result<String, EnforceError> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(input_len + PRINT_HEADROOM);
    catch_unwind(AssertUnwindSafe(|| write!(out, "{expr}")))
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| EnforceError::Verification {
            detail: "printing the rewritten query failed".into(),
        })?;
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(EnforceError::TooLarge {
            size: out.len(),
            limit: MAX_OUTPUT_BYTES,
        });
    }
    Ok(out)
}

/// Room for what enforcement adds: a typical query gains one tenant matcher per selector, and
/// the printer's normalisation (spaces, sorted matchers) changes the length a little.
const PRINT_HEADROOM: usize = 128;

/// Label-name prefix of the verification stand-ins (`__` names are reserved in Prometheus).
pub(super) const STAND_IN_NAME: &str = "__whizard_verify_";

/// A regex matcher of the enforced tree and the equality matcher that takes its place while
/// the printed query is verified: same value, `=`/`!=` for `=~`/`!~`, and a numbered name.
struct StandIn {
    real: Matcher,
    /// `real` as the printer writes it.
    real_text: String,
    stand_in: Matcher,
    text: String,
}

/// [`verify`], first with every regex matcher swapped for its equality stand-in, in the printed
/// text and in the tree alike. promql-parser compiles each regex matcher it parses (15–50 µs
/// for a typical pattern), so a plain re-parse compiled every regex of the query a second
/// time, and the tenant regex of a multi-tenant read once per selector.
///
/// Why this proves what [`verify`] proves: a stand-in keeps the matcher's value, so the
/// re-parse still checks that each string prints and lexes back exactly; only `name=~` becomes
/// `__whizard_verify_N=`, which the lexer reads as the same IDENT OP STRING shape. So swapping
/// the texts inside a selector swaps exactly those matchers in the parsed tree. A swap anywhere
/// else changes a node the comparison sees, and the check fails; output that already contains
/// the stand-in prefix, or a matcher whose name would print quoted, skips the swap. Whenever the
/// swapped check does not pass, the query is verified again as printed, and that decides.
pub(super) fn verify_enforced(
    out: &str,
    enforced: &Expr,
    selectors: usize,
    tenant: &TenantMatcher,
) -> Result<(), EnforceError> {
    // Every regex matcher prints as `=~` or `!~`: without them there is nothing to swap.
    if !out.contains("=~") && !out.contains("!~") {
        return verify(out, enforced, selectors, tenant.matcher());
    }
    if verify_through_stand_ins(out, enforced, selectors, tenant) {
        return Ok(());
    }
    #[cfg(test)]
    SLOW_VERIFICATIONS.with(|n| n.set(n.get() + 1));
    verify(out, enforced, selectors, tenant.matcher())
}

/// The stand-in half of [`verify_enforced`]: true when the swapped text verifies.
fn verify_through_stand_ins(
    out: &str,
    enforced: &Expr,
    selectors: usize,
    tenant: &TenantMatcher,
) -> bool {
    if out.contains(STAND_IN_NAME) {
        return false;
    }
    let mut expected = enforced.clone();
    let Some(table) = swap_regex_matchers(&mut expected).filter(|t| !t.is_empty()) else {
        return false;
    };
    let mut swapped = out.to_string();
    for s in &table {
        swapped = swapped.replace(&s.real_text, &s.text);
    }
    let tenant_check = table
        .iter()
        .find(|s| s.real == *tenant.matcher())
        .map_or(tenant.matcher(), |s| &s.stand_in);
    verify(&swapped, &expected, selectors, tenant_check).is_ok()
}

/// Replaces every regex matcher of `expr` by its stand-in (and re-sorts each selector's
/// matchers); returns the distinct ones, longest printed text first, so that no text is
/// swapped inside a longer one. `None`: a regex matcher's name would be printed quoted.
fn swap_regex_matchers(expr: &mut Expr) -> Option<Vec<StandIn>> {
    let mut table: Vec<StandIn> = Vec::new();
    visit_selectors(expr, 0, &mut |vs: &mut VectorSelector| {
        let m = &mut vs.matchers;
        for x in m.matchers.iter_mut() {
            let op = match x.op {
                MatchOp::Re(_) => MatchOp::Equal,
                MatchOp::NotRe(_) => MatchOp::NotEqual,
                _ => continue,
            };
            if !is_legacy_label_name(&x.name) {
                return Err(EnforceError::Unsupported {
                    what: "a quoted label name in the stand-in check",
                });
            }
            let s = match table.iter().position(|s| s.real == *x) {
                Some(i) => &table[i],
                None => {
                    let name = format!("{STAND_IN_NAME}{}", table.len());
                    let stand_in = Matcher::new(op, &name, &x.value);
                    table.push(StandIn {
                        real: x.clone(),
                        real_text: x.to_string(),
                        text: stand_in.to_string(),
                        stand_in,
                    });
                    &table[table.len() - 1]
                }
            };
            *x = s.stand_in.clone();
        }
        sort_matchers(&mut m.matchers);
        Ok(())
    })
    .ok()?;
    table.sort_by_key(|s| std::cmp::Reverse(s.real_text.len()));
    Some(table)
}

#[cfg(test)]
thread_local! {
    /// How often [`canonical`] proved a printed query, on this thread.
    pub(crate) static CANONICAL_PROOFS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    /// How often a query with regex matchers was verified without stand-ins, on this thread.
    pub(crate) static SLOW_VERIFICATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Reads the printed query back and proves it is the enforced AST: every selector carries the
/// tenant matcher exactly, none has or-groups, the selector count is unchanged, and the whole
/// tree equals `enforced` up to matcher order. Any difference means the printer changed the
/// query, and we refuse rather than forward it. The [`canonical`] reading is tried first; what
/// it does not prove, promql-parser's parse decides.
fn verify(
    out: &str,
    enforced: &Expr,
    selectors: usize,
    tenant: &Matcher,
) -> Result<(), EnforceError> {
    if depth_bound(out) > MAX_DEPTH {
        return Err(EnforceError::Verification {
            detail: "the output nests deeper than allowed".into(),
        });
    }
    if canonical::proves(out, enforced, selectors, tenant) {
        #[cfg(test)]
        CANONICAL_PROOFS.with(|n| n.set(n.get() + 1));
        // Every proof is checked against promql-parser's reading wherever that is cheap to
        // afford: tests, fuzzing and debug builds.
        if cfg!(any(debug_assertions, feature = "fuzzing")) {
            if let Err(e) = verify_by_parsing(out, enforced, selectors, tenant) {
                panic!("the canonical reading proved what promql-parser refuses: {e}\n{out}");
            }
        }
        return Ok(());
    }
    verify_by_parsing(out, enforced, selectors, tenant)
}

/// [`verify`] through promql-parser: parse, check every selector, compare the trees.
fn verify_by_parsing(
    out: &str,
    enforced: &Expr,
    selectors: usize,
    tenant: &Matcher,
) -> Result<(), EnforceError> {
    let fail = |detail: String| EnforceError::Verification { detail };
    let mut reparsed = parse(out).map_err(|e| fail(format!("the output does not parse: {e}")))?;
    let seen = visit_selectors(&mut reparsed, 0, &mut |vs| {
        check_selector(&mut vs.matchers, tenant)
    })?;
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
