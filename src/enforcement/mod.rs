//! Tenant label enforcement for the read path.
//!
//! Every PromQL query and every `match[]` series selector a tenant sends is rewritten so that
//! each vector and matrix selector carries the tenant matcher (`tenant_id="a"` or
//! `tenant_id=~"a|b"`). The rewrite works on the promql-parser AST, never on the text, and is
//! verified by parsing the printed result again: anything that cannot be proven enforced is
//! refused with an [`EnforceError`], never forwarded.
//!
//! Same-label matchers written by the user follow "reject when disjoint, otherwise intersect":
//! a user matcher on the tenant label that selects none of the allowed tenants is an error
//! ([`EnforceError::Disjoint`]); otherwise it is kept next to the enforced matcher, so a user can
//! narrow within their tenants but never widen.
//!
//! A silence a tenant posts is decoded into an exact model of Alertmanager's body
//! ([`silence::PostableSilence`], refusing any key Alertmanager could read differently) and made
//! the tenant's by [`response::enforce_silence`].

mod canonical;
mod deferred;
mod matchers;
mod promql;
pub mod response;
mod scan;
pub mod silence;
#[cfg(test)]
mod tests;
mod walk;

pub use matchers::TenantMatcher;
pub use promql::{enforce_match_selector, enforce_match_selectors, enforce_query};
#[cfg(any(test, feature = "fuzzing"))]
pub use promql::{enforce_match_selector_general, enforce_query_general};

/// Longest query (or `match[]` selector) accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Deepest expression nesting accepted. The parser, the printer and `Drop` of the AST all
/// recurse, so depth is bounded before parsing to rule out stack overflows.
pub const MAX_DEPTH: usize = 256;

/// Longest rewritten query produced. Adding a long multi-tenant regex to thousands of selectors
/// could otherwise multiply the size of a query far beyond what an upstream accepts.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Why a query or selector was refused. Every message is meant for the API user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnforceError {
    /// The input is not valid PromQL; `message` is the parser's.
    #[error("parse error: {message}")]
    Parse { message: String },

    /// A `match[]` value that parses, but is not a plain series selector.
    #[error("invalid match[] {input}: expected a series selector such as up{{job=\"a\"}}, without functions, operators, offset or @")]
    NotASelector { input: String },

    /// A user matcher on the tenant label selects none of the allowed tenants.
    #[error("label matcher {matcher} selects no series of the tenants this request may read (label \"{label}\")")]
    Disjoint { label: String, matcher: String },

    /// A construct the enforcer cannot label safely.
    #[error("unsupported query: {what}")]
    Unsupported { what: &'static str },

    /// The rewritten query did not re-parse to the enforced AST.
    #[error("query refused: the tenant-enforced rewrite could not be verified ({detail})")]
    Verification { detail: String },

    /// Input longer than [`MAX_QUERY_BYTES`] or output longer than [`MAX_OUTPUT_BYTES`].
    #[error("query too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("query nested too deeply: more than {limit} levels")]
    TooDeep { limit: usize },

    /// The tenant matcher itself cannot be built (configuration or programming error).
    #[error("invalid tenant matcher: {reason}")]
    InvalidTenant { reason: String },
}

impl EnforceError {
    /// A short, fixed value for the `reason` label of `whizard_enforcement_rejections_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            EnforceError::Parse { .. } => "parse",
            EnforceError::NotASelector { .. } => "not_a_selector",
            EnforceError::Disjoint { .. } => "disjoint",
            EnforceError::Unsupported { .. } => "unsupported",
            EnforceError::Verification { .. } => "verify",
            EnforceError::TooLarge { .. } => "too_large",
            EnforceError::TooDeep { .. } => "too_deep",
            EnforceError::InvalidTenant { .. } => "invalid_tenant",
        }
    }
}
