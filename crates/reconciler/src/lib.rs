//! `whizard reconciler`: manages a Thanos stack from Whizard-compatible CRDs
//! (`monitoring.whizard.io/v1alpha1`).
//!
//! Layout: [`crd`] (the 14 kinds) → [`planner`] (pure: CR snapshot + `now` + seed → desired
//! state; its vocabulary in [`model`], naming rules in [`naming`], the validated tenants in
//! [`tenants`]; uses [`merge`] for the three configuration layers, [`assign`] for tenant placement
//! on ingesters/compactors, [`shard`] for Whizard's md5 ruler sharding) → [`render`]
//! (Kubernetes objects, deterministic YAML for `render --from DIR`) → [`controller`] (kube-rs:
//! server-side apply, prune, owner references, finalizer, Tenant status, events, backoff).
//! [`gateway_config`] renders the router hashring and the `whizard gateway` config Secret,
//! with [`remote_write`] (fan-out targets), [`web`] (the Gateway's `webConfig`) and [`access`]
//! (the Tenants' `spec.access`: per-tenant users and OIDC groups).
//! [`adopt`] takes over what the Go Whizard left (its Ingester/Compactor/Store CRs with their
//! names and placement; its workloads are replaced) and reports the fields of its types that
//! are accepted but not used.
//! [`deletion`] decides when a removed tenant's blocks are deleted, [`selector`] matches the
//! rulers' label selectors against PrometheusRules, [`leader`] elects one working replica
//! with a Lease, and [`http`] serves `/metrics` ([`metrics`]) and `/healthz`. Modules import
//! only downwards in this order: leaves (`crd`, `selector`, `merge`, `deletion`, `shard`) →
//! `naming`, `credentials` → `model` → `tenants`, `assign`, `remote_write`, `web`, `access` →
//! `adopt` → `planner` → `gateway_config` → `render` → `error`, `metrics`, `leader`, `http` →
//! `controller`.
//!
//! Level-triggered, one reconcile per `Service`: every Tenant, component CR and rule group
//! linked to the Service (label `monitoring.whizard.io/service=<ns>.<name>`) is read, the whole
//! stack is planned, applied and pruned. Placement state lives in the generated Ingester and
//! Compactor CRs (`spec.tenants`, `ingester-deleting-time` annotation) and in the ConfigMap
//! `<svc>-tenant-deletions` (pending block deletions), so it survives restarts and a planner
//! run is reproducible from the cluster alone.
//!
//! Ruler credentials: passwords and argon2id salts derive from a per-Service seed (Secret
//! `<svc>-credentials-seed` with random bytes, created once; or the Service annotation
//! `monitoring.whizard.io/credentials-seed`, which makes `render` reproducible). Without either,
//! `render` uses a fixed placeholder seed and says so in a comment at the top of its output.
//! [`credentials`] derives them and keeps their argon2id hashes in the gateway config Secret,
//! so an unchanged reconcile hashes nothing.
//!
//! Watches ([`controller::controller`]): every kind the plan reads and the Secrets the last
//! reconcile of a Service read trigger that Service's reconcile at once.
pub mod access;
#[cfg(test)]
mod access_tests;
pub mod adopt;
#[cfg(test)]
mod adopt_tests;
pub mod assign;
pub mod controller;
#[cfg(test)]
mod controller_tests;
pub mod crd;
pub mod credentials;
pub mod deletion;
pub mod error;
pub mod gateway_config;
#[cfg(test)]
mod global_ruler_tests;
#[cfg(test)]
mod hash_tests;
pub mod http;
pub mod leader;
#[cfg(test)]
mod leader_tests;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod naming;
pub mod planner;
pub mod remote_write;
pub mod render;
#[cfg(test)]
mod resilience_tests;
pub mod selector;
pub mod shard;
pub mod tenants;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod watch_tests;
pub mod web;

pub use controller::{run, run_controller, RunOptions};
pub use error::Error;
pub use render::{render_dir, render_dir_at, render_dir_warnings, RenderError};

/// The CustomResourceDefinitions as a YAML stream (`whizard crds`).
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crd::crds() {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd).expect("CRDs serialize"));
    }
    out
}
