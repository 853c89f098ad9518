//! The reconciler (see module docs of [`planner`] for the algorithms).
pub mod crd;
