//! Why enforcement refuses a query or selector, and the size limits behind some refusals.

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
