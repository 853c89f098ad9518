//! The planner's vocabulary, shared with its parts: what it reads ([`Inputs`]), the
//! tenants and tenancy it works with, and how it reports trouble ([`Problem`], [`PlanError`]).

use std::collections::BTreeMap;

use super::crd::*;
use super::credentials::StoredHashes;
use super::deletion::{JobState, PendingDeletion};
use super::naming::nonempty;

/// Secret name → key → value (decoded), in the Service's namespace.
pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

pub const DEFAULT_TENANT_HEADER: &str = "WHIZARD-TENANT";
pub const DEFAULT_TENANT_ID: &str = "default-tenant";
pub const DEFAULT_TENANT_LABEL: &str = "tenant_id";

/// Everything the planner looks at. Lists may hold objects of other services; the planner
/// filters by the linking labels.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub service: Service,
    pub storages: Vec<Storage>,
    pub tenants: Vec<Tenant>,
    pub gateways: Vec<Gateway>,
    pub routers: Vec<Router>,
    pub queries: Vec<Query>,
    pub query_frontends: Vec<QueryFrontend>,
    pub ingesters: Vec<Ingester>,
    pub compactors: Vec<Compactor>,
    pub stores: Vec<Store>,
    pub rulers: Vec<Ruler>,
    pub rule_groups: Vec<RuleGroup>,
    pub cluster_rule_groups: Vec<ClusterRuleGroup>,
    pub global_rule_groups: Vec<GlobalRuleGroup>,
    /// prometheus-operator PrometheusRules (all namespaces), selected by the rulers'
    /// `ruleSelectors` / `ruleNamespaceSelector` or the tenant label.
    pub prometheus_rules: Vec<PrometheusRule>,
    /// Secrets of the Service's namespace referenced by the Service (name → key → value).
    pub secrets: Secrets,
    /// Namespace name → labels, for `ruleNamespaceSelector`.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Pending block deletions of removed tenants, read back from the cluster.
    pub pending_deletions: Vec<PendingDeletion>,
    /// States of existing deletion Jobs by `(tenant, storage)`.
    pub deletion_jobs: BTreeMap<(String, String), JobState>,
    /// Unix seconds.
    pub now: u64,
    /// Seed for ruler credentials (overridden by the Service's `credentials-seed` annotation).
    pub seed: String,
    /// Password hashes kept from the last render (the gateway config Secret's
    /// [`super::credentials::HASHES_KEY`]), reused when their check still matches.
    pub password_hashes: StoredHashes,
}

/// Tenancy settings of a Service with Whizard's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenancy {
    pub header: String,
    pub default_tenant: String,
    pub label: String,
}

/// A tenant as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    /// Name of the Tenant CR.
    pub cr_name: String,
    pub id: String,
    pub exclusive: bool,
    /// `None`: local storage; else the Storage's `(namespace, name)`.
    pub storage: Option<(String, String)>,
    pub spec: TenantSpec,
}

/// How the gateway routes a write of a [`GatewayUser`](super::credentials::GatewayUser) that names no tenant (the gateway
/// config's `users[].write_routing`). Users absent from [`Plan::write_routing`](super::planner::Plan::write_routing) keep the
/// gateway's default, `named` (a write names its tenant, or the user has only one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRouting {
    /// `write_routing: by_label`: the write is split per series by the value of the tenancy
    /// label each series carries; series without it go to `default_tenant` (one of the
    /// user's tenants).
    ByLabel { default_tenant: String },
}

/// A problem of one tenant (or one generated object) that does not stop the rest of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Name of the Tenant CR concerned, if any.
    pub tenant_cr: Option<String>,
    /// CamelCase reason (the condition and event reason).
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tenant_cr {
            Some(t) => write!(f, "Tenant {t}: {} ({})", self.message, self.reason),
            None => write!(f, "{} ({})", self.message, self.reason),
        }
    }
}

pub fn problem(tenant_cr: Option<&str>, reason: &str, message: String) -> Problem {
    Problem {
        tenant_cr: tenant_cr.map(str::to_string),
        reason: reason.to_string(),
        message,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("Service {0} has no namespace")]
    NoNamespace(String),
    #[error("invalid duration {value:?} in {field}")]
    Duration { field: String, value: String },
    #[error("{field}: Secret {secret} has no key {key:?}")]
    MissingSecret {
        field: String,
        secret: String,
        key: String,
    },
    #[error("{field}: {reason}")]
    RemoteWrite { field: String, reason: String },
    #[error("{field}: {reason}")]
    WebConfig { field: String, reason: String },
    #[error("tenant label name {0:?} is not a valid Prometheus label name")]
    LabelName(String),
    #[error("ruler {ruler}: {source}")]
    Selector {
        ruler: String,
        source: super::selector::SelectorError,
    },
}

pub fn tenancy(svc: &ServiceSpec) -> Tenancy {
    Tenancy {
        header: nonempty(&svc.tenant_header, DEFAULT_TENANT_HEADER),
        default_tenant: nonempty(&svc.default_tenant_id, DEFAULT_TENANT_ID),
        label: nonempty(&svc.tenant_label_name, DEFAULT_TENANT_LABEL),
    }
}
