//! The reconciler's own metrics (`--metrics-addr`, see [`super::http`]).

/// Reconciler metrics.
#[derive(Clone)]
pub struct Metrics {
    /// By reconciled kind and result (`success` / `error`).
    pub reconciles: prometheus::IntCounterVec,
    /// Failed reconciliations by Service (for alerting on one stuck Service).
    pub failures: prometheus::IntCounterVec,
    pub applied: prometheus::IntCounterVec,
    pub pruned: prometheus::IntCounterVec,
    pub duration: prometheus::HistogramVec,
    /// 1 while this replica holds the leader Lease (or runs without leader election).
    pub leader: prometheus::IntGauge,
    /// Block deletions of removed tenants by Service and state (`waiting`, `running`,
    /// `failed`): a failed Job needs an operator.
    pub tenant_deletions: prometheus::IntGaugeVec,
    /// Argon2id password hashes computed (the others are reused from the gateway config
    /// Secret): 0 per reconcile while no ruler user or password changes.
    pub password_hashes: prometheus::IntCounter,
}

impl Metrics {
    pub fn new(registry: &prometheus::Registry) -> Metrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels)
                .expect("static metric definition");
            // Registering twice (a second Context on one registry) keeps the first.
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let reconciles = counter(
            "whizard_reconciler_reconciliations_total",
            "Reconciliations by reconciled kind and result (success, error).",
            &["kind", "result"],
        );
        let failures = counter(
            "whizard_reconciler_failures_total",
            "Failed reconciliations of a Service.",
            &["service"],
        );
        let applied = counter(
            "whizard_reconciler_objects_applied_total",
            "Objects applied with server-side apply, by kind.",
            &["kind"],
        );
        let pruned = counter(
            "whizard_reconciler_objects_pruned_total",
            "Generated objects deleted because they are no longer planned, by kind.",
            &["kind"],
        );
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "whizard_reconciler_reconcile_duration_seconds",
                "Duration of one reconciliation, by reconciled kind.",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(duration.clone()));
        let leader = prometheus::IntGauge::new(
            "whizard_reconciler_leader",
            "1 while this replica is the leader (holds the Lease), else 0.",
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(leader.clone()));
        let tenant_deletions = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "whizard_reconciler_tenant_deletions",
                "Pending block deletions of removed tenants, by state (waiting, running, failed).",
            ),
            &["service", "state"],
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(tenant_deletions.clone()));
        let password_hashes = prometheus::IntCounter::new(
            "whizard_reconciler_password_hashes_total",
            "Argon2id password hashes computed for gateway users (unchanged ones are reused).",
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(password_hashes.clone()));
        Metrics {
            reconciles,
            failures,
            applied,
            pruned,
            duration,
            leader,
            tenant_deletions,
            password_hashes,
        }
    }
}
