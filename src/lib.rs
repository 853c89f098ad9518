//! whizard: a multi-tenant gateway and a reconciler for a shared Thanos.
//!
//! The crates of the workspace, re-exported under one name for the binary, the tests and the
//! benchmarks: `whizard-core` (`config` → `auth` → `tenancy` → `enforcement` and
//! `remote_write`, plus `limits`, `metrics`, `cluster`; pure, no pingora, no kube) →
//! `whizard-gateway` (the pingora glue: routing table → handlers) and `whizard-reconciler`
//! (Whizard-compatible CRDs → a pure planner → Kubernetes objects, kube-rs adapter).

pub use whizard_core::{
    auth, cluster, config, enforcement, limits, metrics, remote_write, tenancy,
};
pub use whizard_gateway as gateway;
pub use whizard_gateway::access_log;
pub use whizard_reconciler as reconciler;

/// jemalloc for every binary that links whizard (the gateway, tests, benchmarks): the request
/// path allocates many small, short-lived objects across tasks, where glibc malloc spent ~12% of
/// the gateway's CPU and kept twice the memory after load (bench/results/profile.txt).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts:
/// - its thread caches keep freed blocks of up to 128 KiB (the default stops at 32 KiB).
///   pingora's HTTP/1 client, which carries requests with a body (writes, POSTed queries),
///   allocates a 64 KiB body buffer for every upstream answer, which otherwise takes jemalloc's
///   slow path every time (~5% of such a request's instructions); the short way's own client
///   reads bodies in up to 64 KiB too.
/// - each size class keeps 256 to 1,024 freed blocks per thread (the default: 20 to 200). A
///   thread serving 100+ requests at once (HTTP/2 clients send many streams each) frees more
///   blocks of one class than 20 in a burst and allocates them again in the next: each time
///   jemalloc returned the emptied slabs and refilled from new ones, 3-4k instructions per
///   HTTP/2 request (callgrind; ~5% of it). The cache holds what a burst freed, so memory kept
///   per thread follows the busiest moment's live blocks (at most 1,024 of each class), and
///   jemalloc's cache GC returns what later traffic does not use.
///
/// `_RJEM_MALLOC_CONF` in the environment still overrides.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static _rjem_malloc_conf: &[u8; 75] =
    b"tcache_max:131072,tcache_nslots_small_min:256,tcache_nslots_small_max:1024\0";
