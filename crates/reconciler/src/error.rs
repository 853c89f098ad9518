//! The reconciler's error: what stops one reconcile (and is retried with backoff).

use super::model::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("plan: {0}")]
    Plan(#[from] PlanError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{0}")]
    Other(String),
}
