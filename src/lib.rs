//! whizard: a multi-tenant gateway and a reconciler for a shared Thanos.
//!
//! Module map: `config` (one typed model, validated once) → `auth` (who is calling) →
//! `tenancy` (which tenants a request acts for) → `enforcement` (PromQL and `match[]`, pure) and
//! `remote_write` (codec, pure) → `gateway` (the pingora glue: routing table → handlers);
//! `reconciler`: Whizard-compatible CRDs → a pure planner → Kubernetes objects (kube-rs adapter).

pub mod access_log;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod enforcement;
pub mod gateway;
pub mod limits;
pub mod metrics;
pub mod reconciler;
pub mod remote_write;
pub mod tenancy;

/// jemalloc for every binary that links whizard (the gateway, tests, benchmarks): the request
/// path allocates many small, short-lived objects across tasks, where glibc malloc spent ~12% of
/// the gateway's CPU and kept twice the memory after load (bench/results/profile.txt).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: its thread caches keep freed blocks of up to
/// 128 KiB (the default stops at 32 KiB). pingora's HTTP/1 client, which carries requests with a
/// body (writes, POSTed queries), allocates a 64 KiB body buffer for every upstream answer, which
/// otherwise takes jemalloc's slow path every time (~5% of such a request's instructions); the
/// short way's own client reads bodies in up to 64 KiB too. `_RJEM_MALLOC_CONF` in the
/// environment still overrides.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static _rjem_malloc_conf: &[u8; 18] = b"tcache_max:131072\0";
