//! whizard's core: what the gateway decides, without any server around it.
//!
//! `config` (one typed model, validated once) → `auth` (who is calling) → `tenancy` (which
//! tenants a request acts for) → `enforcement` (PromQL and `match[]`, pure) and `remote_write`
//! (the codec, pure); `limits` (per-tenant rate and size limits), `metrics` (the Prometheus
//! registry), `cluster` (the peers that share rate limits) and `per_thread` (state each thread
//! writes on a cache line of its own) and `sync` (locks a panic does not stop). No pingora, no kube: the
//! gateway and the reconciler crates build on this one.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod digest_hash;
pub mod enforcement;
pub mod limits;
pub mod metrics;
pub mod per_thread;
pub mod remote_write;
pub mod sync;
pub mod tenancy;
