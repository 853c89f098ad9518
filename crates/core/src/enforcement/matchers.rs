//! The tenant matcher and the same-label rules applied to each selector.

use std::cmp::Ordering;

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{self, Expr};
use promql_parser::util::escape_string;

use super::error::EnforceError;

/// The label matcher every selector must carry: `label="v"` for one tenant, `label=~"v1|v2"`
/// (each value regex-quoted) for several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMatcher {
    label: String,
    /// Sorted and deduplicated, so output is deterministic and `allows` can binary-search.
    values: Vec<String>,
    /// The enforced matcher exactly as promql-parser builds it from `selector`, so that the
    /// verifier can compare it with what a re-parse of the output yields (regexes compare by
    /// their anchored source text).
    matcher: Matcher,
    selector: String,
}

impl TenantMatcher {
    /// Builds the matcher for `label` and the allowed tenant `values`.
    ///
    /// The label must be a classic Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`) not starting
    /// with `__`, so older Thanos/Prometheus versions accept it unquoted. Values must be non-empty:
    /// `label=""` would select every series that lacks the label.
    pub fn new(
        label: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, EnforceError> {
        let label = label.into();
        if !is_legacy_label_name(&label) || label.starts_with("__") {
            return Err(invalid(format!(
                "label {label:?} must match [a-zA-Z_][a-zA-Z0-9_]* and must not start with __"
            )));
        }
        let mut values: Vec<String> = values.into_iter().map(Into::into).collect();
        values.sort();
        values.dedup();
        if values.is_empty() {
            return Err(invalid("at least one tenant value is required".into()));
        }
        if values.iter().any(String::is_empty) {
            return Err(invalid("a tenant value must not be empty".into()));
        }

        let text = match values.as_slice() {
            [one] => format!("{{{label}=\"{}\"}}", escape_string(one)),
            many => {
                let alternation = many
                    .iter()
                    .map(|v| quote_meta(v))
                    .collect::<Vec<_>>()
                    .join("|");
                format!("{{{label}=~\"{}\"}}", escape_string(&alternation))
            }
        };

        // Round-trip through the parser: proves the text is valid PromQL and yields the matcher
        // in exactly the form a re-parse of our output will contain.
        let matcher = match parser::parse(&text) {
            Ok(Expr::VectorSelector(vs))
                if vs.name.is_none()
                    && vs.offset.is_none()
                    && vs.at.is_none()
                    && vs.matchers.or_matchers.is_empty()
                    && vs.matchers.matchers.len() == 1 =>
            {
                vs.matchers.matchers.into_iter().next()
            }
            _ => None,
        }
        .ok_or_else(|| invalid(format!("{text} does not parse as a single label matcher")))?;

        // The matcher must select each tenant and never the empty value (series without the label).
        if matcher.name != label
            || !values.iter().all(|v| matcher.is_match(v))
            || matcher.is_match("")
        {
            return Err(invalid(format!(
                "{text} does not select exactly the tenant values"
            )));
        }

        let selector = format!("{{{matcher}}}");
        Ok(TenantMatcher {
            label,
            values,
            matcher,
            selector,
        })
    }

    /// The enforced label name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The allowed tenant values, sorted and deduplicated.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `value` is one of the allowed tenants.
    pub fn allows(&self, value: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }

    /// The selector text `{label="v"}` / `{label=~"a|b"}` used when match[] is absent.
    pub fn selector(&self) -> String {
        self.selector.clone()
    }

    /// The matcher that is added to every selector.
    pub(crate) fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Enforces the tenant on one selector's matchers: checks the user's same-label matchers,
    /// adds the enforced matcher (once) and sorts the matchers as the printer will.
    pub(crate) fn enforce(&self, matchers: &mut Matchers) -> Result<(), EnforceError> {
        if !matchers.or_matchers.is_empty() {
            // promql-parser prints only the or-groups when they exist, so an added matcher
            // would silently disappear from the output.
            return Err(EnforceError::Unsupported {
                what: "label matchers combined with `or` inside braces",
            });
        }
        for m in matchers.matchers.iter().filter(|m| m.name == self.label) {
            // Prometheus semantics: regexes are fully anchored, which the parser already did.
            if !self.values.iter().any(|v| m.is_match(v)) {
                return Err(EnforceError::Disjoint {
                    label: self.label.clone(),
                    matcher: m.to_string(),
                });
            }
        }
        if !matchers.matchers.contains(&self.matcher) {
            matchers.matchers.push(self.matcher.clone());
        }
        sort_matchers(&mut matchers.matchers);
        Ok(())
    }
}

fn invalid(reason: String) -> EnforceError {
    EnforceError::InvalidTenant { reason }
}

pub(crate) fn is_legacy_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Escapes regex metacharacters like Go's `regexp.QuoteMeta`, so the pattern means the same
/// to RE2 (Thanos/Prometheus) and to the Rust regex crate (promql-parser, our own checks).
pub(crate) fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Sorts matchers by (name, operator, value): a canonical order that makes an AST comparable
/// with the AST of its own printed form (the printer sorts matchers by their text).
pub(crate) fn sort_matchers(matchers: &mut [Matcher]) {
    matchers.sort_by(cmp_matcher);
}

fn cmp_matcher(a: &Matcher, b: &Matcher) -> Ordering {
    (a.name.as_str(), op_rank(&a.op), a.value.as_str()).cmp(&(
        b.name.as_str(),
        op_rank(&b.op),
        b.value.as_str(),
    ))
}

fn op_rank(op: &MatchOp) -> u8 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Re(_) => 2,
        MatchOp::NotRe(_) => 3,
    }
}
