//! Parsing a query without compiling the regexes enforcement never evaluates.
//!
//! promql-parser compiles every regex matcher it parses (10–100 µs each: most of a rewrite's
//! time whenever a query has one), but enforcement evaluates only matchers on the tenant label.
//! So before parsing, each other regex matcher `name=~"v"` is written as an equality stand-in,
//! `__whizard_regex_<nonce>_N="v"`; after parsing, each stand-in becomes `name=~"v"` again, with
//! a placeholder regex that is never evaluated. The printer writes a matcher's name, operator and
//! value only, so the rewrite prints exactly what the general path prints, and the verifier
//! checks it through its own equality stand-ins, which compile nothing either.
//!
//! Why the restored tree is the one the general path parses: a swap replaces an identifier by an
//! identifier and `=~`/`!~` by `=`/`!=`, and no replacement contains a quote, backslash, brace,
//! `#` or newline. So the lexer splits both texts into the same tokens, wherever the swap landed,
//! and only an identifier's text, an operator's kind or the inside of a string or comment can
//! differ. Every stand-in has to come back from the parser as a label matcher, exactly once and
//! with the swapped operator: then the original has a regex matcher there, with the same value
//! (its string token is untouched). A swap inside a string or a comment leaves its stand-in
//! unfound, and the per-process nonce means no input can spell a stand-in's name itself.
//!
//! What the parser decides from a regex, this module decides without compiling it or leaves to
//! the general path: regex syntax (`regex_syntax`, the parser the regex crate compiles from), the
//! "at least one non-empty matcher" rule (from the regex's minimum length) and "metric name set
//! twice". A parse error, or-groups, a long regex or one with a counted repetition (where
//! compiling can exceed the regex crate's size limit even though the syntax is valid) all go to
//! the general path, so a query's outcome is the same on both paths; only its cost differs.

use std::fmt::Write as _;
use std::sync::OnceLock;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};
use regex::Regex;

use super::matchers::TenantMatcher;
use super::scan::{comment_end, string_end};
use super::walk::visit_selectors;

/// Regex values longer than this are compiled as usual (see the module doc).
const MAX_DEFERRED_REGEX: usize = 256;

/// One regex matcher of the input that was parsed as an equality stand-in.
struct Deferred<'a> {
    name: &'a str,
    negated: bool,
    restored: bool,
}

/// The stand-in names' prefix, unique to this process: `__` names are reserved in Prometheus and
/// the nonce keeps a quoted label name in a query (whose escapes the raw-text check cannot see)
/// from spelling one.
fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(b"whizard");
        format!("__whizard_regex_{:016x}_", h.finish())
    })
}

/// The placeholder regex of a restored matcher. Its source (empty) is never the anchored
/// `^(?:…)$` source of a parsed matcher, so it cannot compare equal to a compiled one.
fn placeholder() -> Option<&'static Regex> {
    static PLACEHOLDER: OnceLock<Option<Regex>> = OnceLock::new();
    PLACEHOLDER.get_or_init(|| Regex::new("").ok()).as_ref()
}

/// Parses `input` with its regex matchers off the tenant label left uncompiled. `None`: the input
/// has none, or the general path has to decide (see the module doc). The caller has bounded the
/// input's size and depth.
pub(super) fn parse(input: &str, tenant: &TenantMatcher) -> Option<Expr> {
    if !input.contains("=~") && !input.contains("!~") {
        return None;
    }
    let prefix = prefix();
    if input.contains(prefix) {
        return None;
    }
    let (swapped, deferred) = swap(input, tenant.label(), prefix)?;
    parse_swapped(&swapped, deferred, prefix)
}

/// Parses the swapped text and restores its stand-ins; `None` unless each one comes back as a
/// label matcher with the swapped operator, exactly once, and passes the parser's rules.
fn parse_swapped(swapped: &str, mut deferred: Vec<Deferred<'_>>, prefix: &str) -> Option<Expr> {
    let mut expr = std::panic::catch_unwind(|| parser::parse(swapped))
        .ok()?
        .ok()?;
    let mut ok = true;
    visit_selectors(&mut expr, 0, &mut |vs| {
        ok = ok && restore(vs, &mut deferred, prefix);
        Ok(())
    })
    .ok()?;
    (ok && deferred.iter().all(|d| d.restored)).then_some(expr)
}

/// Writes every eligible regex matcher of `input` as a stand-in. The scan follows
/// promql-parser's lexer: strings in three quote styles with backslash escapes, `#` comments to
/// the end of the line, label matchers inside braces. It only has to be exact for what it swaps;
/// the parse proves each swap (module doc).
fn swap<'a>(
    input: &'a str,
    tenant_label: &str,
    prefix: &str,
) -> Option<(String, Vec<Deferred<'a>>)> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len() + 64);
    let mut deferred = Vec::new();
    let mut copied = 0;
    let mut in_braces = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => i = string_end(bytes, i) + 1,
            b'#' => i = comment_end(bytes, i),
            b'{' if !in_braces => {
                in_braces = true;
                i += 1;
            }
            b'}' if in_braces => {
                in_braces = false;
                i += 1;
            }
            c if in_braces && (c == b'_' || c.is_ascii_alphabetic()) => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                let name = &input[start..i];
                let Some((op, negated)) = regex_operator(bytes, i) else {
                    continue;
                };
                // `or` followed by a space is the or-operator inside braces.
                if name == tenant_label || name.eq_ignore_ascii_case("or") {
                    continue;
                }
                out.push_str(&input[copied..start]);
                out.push_str(prefix);
                // Writing into a String cannot fail.
                let _ = write!(out, "{}", deferred.len());
                out.push_str(&input[i..op]);
                out.push_str(if negated { "!=" } else { "=" });
                copied = op + 2;
                i = op + 2;
                deferred.push(Deferred {
                    name,
                    negated,
                    restored: false,
                });
            }
            _ => i += 1,
        }
    }
    if deferred.is_empty() {
        return None;
    }
    out.push_str(&input[copied..]);
    Some((out, deferred))
}

/// At `i` (after a label name): optional whitespace, `=~` or `!~`, optional whitespace and a
/// string's opening quote. Returns where the operator starts and whether it is `!~`.
fn regex_operator(bytes: &[u8], mut i: usize) -> Option<(usize, bool)> {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let negated = match bytes.get(i..i + 2)? {
        b"=~" => false,
        b"!~" => true,
        _ => return None,
    };
    let mut j = i + 2;
    while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
        j += 1;
    }
    matches!(bytes.get(j), Some(b'"' | b'\'' | b'`')).then_some((i, negated))
}

/// Turns the stand-ins of one parsed selector back into regex matchers and applies the
/// parser's selector rules to them; false: the general path has to decide.
fn restore(vs: &mut VectorSelector, deferred: &mut [Deferred<'_>], prefix: &str) -> bool {
    // A stand-in in an or-group is not restored, so it counts as not found.
    let is_stand_in = |m: &Matcher| m.name.starts_with(prefix);
    let Some(placeholder) = placeholder() else {
        return false;
    };
    let mut restored_any = false;
    // Whether the selector has a matcher known not to match the empty value.
    let mut non_empty = false;
    for m in vs.matchers.matchers.iter_mut() {
        if !is_stand_in(m) {
            non_empty |= !m.is_match("");
            continue;
        }
        let Some(d) = m.name[prefix.len()..]
            .parse::<usize>()
            .ok()
            .and_then(|n| deferred.get_mut(n))
        else {
            return false;
        };
        let expected = if d.negated {
            MatchOp::NotEqual
        } else {
            MatchOp::Equal
        };
        if d.restored || m.op != expected {
            return false;
        }
        let Some(min_len) = regex_min_len(&m.value) else {
            return false;
        };
        // `=~` with a regex that needs a character (or matches nothing) cannot match "".
        if !d.negated && min_len.is_none_or(|n| n > 0) {
            non_empty = true;
        }
        d.restored = true;
        restored_any = true;
        m.name = d.name.to_string();
        m.op = if d.negated {
            MatchOp::NotRe(placeholder.clone())
        } else {
            MatchOp::Re(placeholder.clone())
        };
    }
    if !restored_any {
        return true;
    }
    match vs.name {
        // "metric name must not be set twice"
        Some(_) => !vs.matchers.matchers.iter().any(|m| m.name == "__name__"),
        // "vector selector must contain at least one non-empty matcher"; when only a regex
        // could decide it, the general path does.
        None => non_empty,
    }
}

/// The minimum length of what the anchored regex matches, when its syntax is valid and it may
/// be deferred (see the module doc): `Some(None)` when it has no minimum (never matches).
fn regex_min_len(value: &str) -> Option<Option<usize>> {
    if value.len() > MAX_DEFERRED_REGEX || value.contains('{') {
        return None;
    }
    let hir = regex_syntax::parse(&format!("^(?:{value})$")).ok()?;
    Some(hir.properties().minimum_len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "__p_";

    fn swapped(input: &str) -> Option<(String, Vec<&str>)> {
        swap(input, "tenant_id", PREFIX).map(|(text, d)| (text, d.iter().map(|d| d.name).collect()))
    }

    /// The swapped text and the names of the swapped matchers.
    type Swap<'a> = Option<(&'a str, &'a [&'a str])>;

    #[test]
    fn the_scan_swaps_only_regex_matchers_off_the_tenant_label() {
        let cases: &[(&str, Swap)] = &[
            (r#"up{a=~"b"}"#, Some((r#"up{__p_0="b"}"#, &["a"]))),
            (
                r#"up{ a !~ 'b' , c=~`d`}"#,
                Some((r#"up{ __p_0 != 'b' , __p_1=`d`}"#, &["a", "c"])),
            ),
            // Strings with escaped quotes of their own kind, other kinds inside, comments.
            (
                r#"label_replace(x{q=~"y"}, "a", "\" {a=~'b'} ", "c", "(.*)")"#,
                Some((
                    r#"label_replace(x{__p_0="y"}, "a", "\" {a=~'b'} ", "c", "(.*)")"#,
                    &["q"],
                )),
            ),
            (
                "x{a=~\"\\\"}\", # b=~\"c\"\nd=~'e'}",
                Some(("x{__p_0=\"\\\"}\", # b=~\"c\"\n__p_1='e'}", &["a", "d"])),
            ),
            (r#"x # {a=~"b"}"#, None),
            (r#"x{tenant_id=~"t", or =~"b", OR=~"c", "q"=~"d"}"#, None),
            (r#"x{a=~~"b", c=~d, e="f"} =~ "g""#, None),
            (r#"x{a="b"}"#, None),
        ];
        for (input, want) in cases {
            let want = want.map(|(text, names)| (text.to_string(), names.to_vec()));
            assert_eq!(swapped(input), want, "{input}");
        }
    }

    fn deferred(names: &[(&'static str, bool)]) -> Vec<Deferred<'static>> {
        names
            .iter()
            .map(|&(name, negated)| Deferred {
                name,
                negated,
                restored: false,
            })
            .collect()
    }

    #[test]
    fn each_stand_in_must_come_back_once_as_a_matcher_with_its_operator() {
        let restored = parse_swapped(r#"up{__p_0="b"}"#, deferred(&[("a", false)]), PREFIX);
        assert_eq!(
            restored.map(|e| e.to_string()),
            Some(r#"up{a=~"b"}"#.into())
        );
        for (text, d) in [
            // In a string or a comment instead of a matcher.
            (
                r#"label_replace(up, "a", "__p_0=\"b\"", "c", "d")"#,
                deferred(&[("a", false)]),
            ),
            ("up # {__p_0=\"b\"}\n", deferred(&[("a", false)])),
            // The wrong operator, twice, an unknown index.
            (r#"up{__p_0!="b"}"#, deferred(&[("a", false)])),
            (r#"up{__p_0=~"b"}"#, deferred(&[("a", false)])),
            (r#"up{__p_0="b"} / x{__p_0="b"}"#, deferred(&[("a", false)])),
            (r#"up{__p_1="b"}"#, deferred(&[("a", false)])),
            // In an or-group (which enforcement refuses anyway).
            (r#"up{x="1" or __p_0="b"}"#, deferred(&[("a", false)])),
        ] {
            assert!(parse_swapped(text, d, PREFIX).is_none(), "{text}");
        }
    }
}

#[cfg(test)]
thread_local! {
    /// How many rewrites on this thread were accepted by the deferred path.
    pub(crate) static TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
