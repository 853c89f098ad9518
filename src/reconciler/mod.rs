//! The reconciler (see module docs of [`planner`] for the algorithms).
pub mod assign;
pub mod crd;
pub mod gateway_config;
pub mod merge;
pub mod planner;
pub mod render;
pub mod shard;

pub use render::{render_dir, render_dir_at, RenderError};

/// The CustomResourceDefinitions as a YAML stream (`whizard crds`).
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crd::crds() {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd).expect("CRDs serialize"));
    }
    out
}
