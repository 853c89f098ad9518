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
mod error;
mod matchers;
mod promql;
pub mod response;
mod scan;
pub mod silence;
#[cfg(test)]
mod tests;
mod walk;

pub use error::{EnforceError, MAX_DEPTH, MAX_OUTPUT_BYTES, MAX_QUERY_BYTES};
pub use matchers::TenantMatcher;
pub use promql::{enforce_match_selector, enforce_match_selectors, enforce_query};
#[cfg(any(test, feature = "fuzzing"))]
pub use promql::{enforce_match_selector_general, enforce_query_general};
