//! whizard: a multi-tenant gateway (and, later, reconciler) in front of Thanos.
//!
//! Module map: `config` (one typed model, validated once) → `auth` (who is calling) →
//! `tenancy` (which tenants a request acts for) → `enforcement` (PromQL and `match[]`, pure) and
//! `remote_write` (codec, pure) → `gateway` (the pingora glue: routing table → handlers).

pub mod access_log;
pub mod auth;
pub mod config;
pub mod enforcement;
pub mod gateway;
pub mod limits;
pub mod metrics;
pub mod remote_write;
pub mod tenancy;
