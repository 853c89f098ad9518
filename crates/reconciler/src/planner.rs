//! The pure planner: a snapshot of CRs in, the desired state out. No I/O, no clock (the
//! caller passes `now`), no randomness (credentials derive from a seed).
//!
//! One plan per `Service`. It covers every Tenant labelled
//! `monitoring.whizard.io/service=<ns>.<name>`:
//! * storage of a tenant: label `monitoring.whizard.io/storage` empty or `default` →
//!   `Service.spec.storage` (or `local` when the Service has none); `local` → local disk; any
//!   other value `<ns>.<name>` names a Storage;
//! * ingesters per (service, storage): [`assign::assign_ingesters`], prefix `<svc>-<storage>`
//!   where `<storage>` is the Storage's name or `local`, cap `defaultTenantsPerIngester` (3),
//!   emptied ones kept `defaultIngesterRetentionPeriod` (3h; for local storage the ingester's
//!   `localTsdbRetention`), state read back from the managed Ingester CRs
//!   (`spec.tenants` and the `ingester-deleting-time` annotation); the Ingester, Compactor
//!   and Store CRs Whizard (Go) created count as managed, names and placement kept (see
//!   [`super::adopt`]);
//! * compactors per (service, storage, retention) for object storage only:
//!   [`assign::assign_compactors`], cap `defaultTenantsPerCompactor` (10); tenants whose
//!   `spec.retention` differs from the template get compactors of their own retention class
//!   (Thanos applies one retention per compactor);
//! * one Store per (service, object storage) with tenants, partitioned by `timeRanges`;
//! * one Ruler per tenant (named after the tenant, truncated to 30 characters with an md5
//!   suffix), evaluating the tenant's `RuleGroup`s and `ClusterRuleGroup`s (label
//!   `monitoring.whizard.io/tenant=<tenant>`) and the PrometheusRules it selects;
//! * a global ruler `<svc>-global`, sharded with [`shard::shard_of`], only when it is asked
//!   for: a global Ruler CR (labelled with the service, empty `spec.tenant`, not one the
//!   reconciler generated) or at least one `GlobalRuleGroup` exists. It then also evaluates
//!   the PrometheusRules its `ruleSelectors` select, but selectors (of the Service template
//!   or the CR) alone never create it. It reads every tenant of the Service plus the default
//!   tenant, and writes through a gateway user with the same tenants and
//!   `write_routing: by_label` ([`WriteRouting`]): each recorded series goes to the tenant
//!   its tenant label names, series without one to the default tenant;
//! * Gateway, Router, Query and QueryFrontend: the CRs labelled with the service, or one of
//!   each named after the service when there is none;
//! * the router hashring and the gateway config (see [`crate::gateway_config`]).
//!
//! Every spec is merged `code defaults → Service template → CR` (see [`merge`]).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use serde_json::json;

use super::assign::{self, Slot, TenantReq};
use super::crd::{labels as L, *};
use super::credentials::GatewayUser;
use super::deletion::{self, PendingDeletion};
use super::merge::layered;
use super::model::{
    problem, tenancy, Inputs, PlanError, Problem, Tenancy, TenantInfo, WriteRouting,
};
use super::naming::*;
use super::shard;
use super::tenants::{tenants_of, CheckedTenants};

pub const THANOS_IMAGE: &str = "thanosio/thanos:v0.38.0";
/// Image of the rulers' `config-reloader` sidecar (prometheus-operator's, as Whizard uses),
/// which POSTs the ruler's `/-/reload` when its rule ConfigMaps change. The Ruler CRD has no
/// field for it (Whizard's `prometheusConfigReloader` is not modelled), so it is fixed here.
pub const CONFIG_RELOADER_IMAGE: &str =
    "quay.io/prometheus-operator/prometheus-config-reloader:v0.81.0";
/// Image of `whizard gateway` (placeholder registry path; override with the Gateway image).
pub const WHIZARD_IMAGE: &str = "ghcr.io/whizard/whizard:latest";
pub const DEFAULT_TENANTS_PER_INGESTER: usize = 3;
pub const DEFAULT_INGESTER_RETENTION: &str = "3h";
pub const DEFAULT_TENANTS_PER_COMPACTOR: usize = 10;
/// Seed used by `render` when the Service carries no `credentials-seed` annotation.
pub const PLACEHOLDER_SEED: &str = "whizard-render-placeholder-seed";

/// A planned ruler with its rule files per shard.
#[derive(Debug, Clone)]
pub struct PlannedRuler {
    pub ruler: Ruler,
    /// Effective spec (defaults → template → CR).
    pub spec: RulerSpec,
    /// `shards[s]` = ConfigMaps (each `file name → content`) of shard `s`.
    pub shards: Vec<Vec<BTreeMap<String, String>>>,
    /// Gateway user for queries and (per-tenant rulers) writes.
    pub query_user: String,
    pub write_user: String,
}

/// The desired state of one Service.
#[derive(Debug, Clone)]
pub struct Plan {
    pub namespace: String,
    pub service_name: String,
    pub tenancy: Tenancy,
    pub tenants: Vec<TenantInfo>,
    pub storages: BTreeMap<(String, String), Storage>,
    /// Ingester CRs: managed ones as planned plus user-declared ones as found.
    pub ingesters: Vec<Ingester>,
    pub compactors: Vec<Compactor>,
    pub stores: Vec<Store>,
    pub rulers: Vec<PlannedRuler>,
    pub gateways: Vec<Gateway>,
    pub routers: Vec<Router>,
    pub queries: Vec<Query>,
    pub query_frontends: Vec<QueryFrontend>,
    pub users: Vec<GatewayUser>,
    /// Write routing of those [`Plan::users`] that do not use the default (`named`), by user
    /// name: the global ruler's write user routes by label. Kept beside the users because
    /// [`super::credentials::Credentials::user`] builds them.
    pub write_routing: BTreeMap<String, WriteRouting>,
    /// Gateway users declared by the Tenants (`spec.access`, see [`super::access`]).
    pub access_users: Vec<super::access::AccessUser>,
    /// OIDC group → tenant ids, from the Tenants' `spec.access[].oidcGroup`.
    pub oidc_groups: BTreeMap<String, Vec<String>>,
    /// `webConfig` of each gateway (by Gateway name).
    pub gateway_web: BTreeMap<String, super::web::GatewayWeb>,
    /// The gateway's remote-write fan-out targets.
    pub remote_writes: Vec<super::remote_write::Target>,
    /// Per Tenant CR name.
    pub tenant_status: BTreeMap<String, TenantStatus>,
    /// Pending block deletions of removed tenants (the state to store).
    pub deletions: Vec<PendingDeletion>,
    /// Deletions whose Job should run now.
    pub due_deletions: Vec<PendingDeletion>,
    /// Earliest pending ingester removal or block deletion (unix seconds): requeue then.
    pub requeue_at: Option<u64>,
    /// Whether the credentials seed is the render placeholder.
    pub placeholder_credentials: bool,
    /// Problems confined to one tenant or one object: the rest of the plan is complete
    /// (see [`Problem`]). Reported on the Tenant's status and as events; `render` prints them
    /// and exits non-zero.
    pub problems: Vec<Problem>,
    /// Ingesters left out of the router hashring (no replicas, or fewer replicas than the
    /// router's replication factor): Thanos refuses a hashring without endpoints and cannot
    /// write a hashring with fewer endpoints than the replication factor.
    pub unrouted_ingesters: BTreeSet<String>,
    /// Argon2id password hashes computed by this plan (the others were reused from
    /// [`Inputs::password_hashes`]).
    pub password_hashes_computed: usize,
    /// Whizard's (Go) objects adopted or replaced, and warnings about fields of its types
    /// that are accepted but not used (see [`super::adopt`]).
    pub adoption: super::adopt::Adoption,
}

impl Plan {
    /// The stored hash entries `(user, hash, check)` of this plan's users (see
    /// [`super::credentials::serialize`]).
    pub fn stored_hash_entries(&self) -> Vec<(&str, &str, &str)> {
        let rulers = self
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.password_hash.as_str(), u.check.as_str()));
        let access = self.access_users.iter().filter_map(|u| {
            Some((
                u.name.as_str(),
                u.password_hash.as_deref()?,
                u.check.as_deref()?,
            ))
        });
        rulers.chain(access).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Code defaults (layer 1)

fn common(replicas: i32, image: &str) -> CommonSpec {
    CommonSpec {
        replicas: Some(replicas),
        image: image.to_string(),
        log_level: "info".into(),
        log_format: "logfmt".into(),
        ..Default::default()
    }
}

pub fn default_gateway() -> GatewaySpec {
    GatewaySpec {
        common: common(2, WHIZARD_IMAGE),
        ..Default::default()
    }
}
pub fn default_router() -> RouterSpec {
    RouterSpec {
        replication_factor: Some(1),
        replication_protocol: "protobuf".into(),
        common: common(2, THANOS_IMAGE),
        ..Default::default()
    }
}
pub fn default_ingester() -> IngesterSpec {
    IngesterSpec {
        local_tsdb_retention: "7d".into(),
        common: common(2, THANOS_IMAGE),
        ..Default::default()
    }
}
pub fn default_query() -> QuerySpec {
    QuerySpec {
        replica_label_names: vec!["receive_replica".into(), "ruler_replica".into()],
        common: common(3, THANOS_IMAGE),
        ..Default::default()
    }
}
pub fn default_query_frontend() -> QueryFrontendSpec {
    QueryFrontendSpec {
        common: common(2, THANOS_IMAGE),
        ..Default::default()
    }
}
pub fn default_store() -> StoreSpec {
    StoreSpec {
        time_ranges: vec![TimeRange {
            min_time: String::new(),
            max_time: "-36h".into(),
        }],
        common: common(2, THANOS_IMAGE),
        ..Default::default()
    }
}
pub fn default_compactor() -> CompactorSpec {
    CompactorSpec {
        retention: Some(Retention {
            retention_raw: "0".into(),
            retention_5m: "0".into(),
            retention_1h: "0".into(),
        }),
        common: common(1, THANOS_IMAGE),
        ..Default::default()
    }
}
pub fn default_ruler() -> RulerSpec {
    RulerSpec {
        shards: Some(1),
        evaluation_interval: "1m".into(),
        common: common(1, THANOS_IMAGE),
        ..Default::default()
    }
}

/// Effective specs (defaults → Service template → CR).
pub mod effective {
    use super::*;
    pub fn gateway(svc: &ServiceSpec, cr: &GatewaySpec) -> GatewaySpec {
        layered(&default_gateway(), &svc.gateway_template_spec, cr)
    }
    pub fn router(svc: &ServiceSpec, cr: &RouterSpec) -> RouterSpec {
        layered(&default_router(), &svc.router_template_spec, cr)
    }
    pub fn ingester(svc: &ServiceSpec, cr: &IngesterSpec) -> IngesterSpec {
        layered(&default_ingester(), &svc.ingester_template_spec.spec, cr)
    }
    pub fn query(svc: &ServiceSpec, cr: &QuerySpec) -> QuerySpec {
        layered(&default_query(), &svc.query_template_spec, cr)
    }
    pub fn query_frontend(svc: &ServiceSpec, cr: &QueryFrontendSpec) -> QueryFrontendSpec {
        layered(
            &default_query_frontend(),
            &svc.query_frontend_template_spec,
            cr,
        )
    }
    pub fn store(svc: &ServiceSpec, cr: &StoreSpec) -> StoreSpec {
        // Whizard's `minTime`/`maxTime` apply when no layer sets `timeRanges`: the code
        // default's range must not hide them.
        let t = &svc.store_template_spec;
        let range = [t, cr]
            .iter()
            .any(|s| !s.min_time.is_empty() || !s.max_time.is_empty());
        let ranges = [t, cr].iter().any(|s| !s.time_ranges.is_empty());
        let mut defaults = default_store();
        if range && !ranges {
            defaults.time_ranges.clear();
        }
        layered(&defaults, t, cr)
    }
    pub fn compactor(svc: &ServiceSpec, cr: &CompactorSpec) -> CompactorSpec {
        layered(&default_compactor(), &svc.compactor_template_spec.spec, cr)
    }
    pub fn ruler(svc: &ServiceSpec, cr: &RulerSpec) -> RulerSpec {
        layered(&default_ruler(), &svc.ruler_template_spec.spec, cr)
    }
}

// ---------------------------------------------------------------------------------------------

/// Secrets (of the Service's namespace) the plan needs to read: remoteWrites basicAuth, the
/// gateways' webConfig basicAuthUsers and the Tenants' `spec.access` passwords. TLS Secrets
/// are only mounted, never read.
pub fn referenced_secret_names(inputs: &Inputs) -> BTreeSet<String> {
    let spec = &inputs.service.spec;
    let key = service_key(&inputs.service);
    let mut out: BTreeSet<String> = spec
        .remote_writes
        .iter()
        .filter_map(|rw| rw.basic_auth.as_ref())
        .flat_map(|b| [&b.username, &b.password])
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    let template = spec.gateway_template_spec.web_config.as_ref();
    out.extend(super::web::secret_names(template));
    for g in inputs
        .gateways
        .iter()
        .filter(|g| has_service(&g.metadata, &key))
    {
        out.extend(super::web::secret_names(g.spec.web_config.as_ref()));
    }
    for t in inputs
        .tenants
        .iter()
        .filter(|t| has_service(&t.metadata, &key))
    {
        out.extend(super::access::secret_names(&t.spec));
    }
    out
}

fn duration_field(field: &str, value: &str) -> Result<u64, PlanError> {
    parse_duration(value).ok_or_else(|| PlanError::Duration {
        field: field.to_string(),
        value: value.to_string(),
    })
}

fn slot_of_ingester(i: &Ingester) -> Slot {
    let ann = i.metadata.annotations.clone().unwrap_or_default();
    Slot {
        name: i.name_any(),
        tenants: i.spec.tenants.clone(),
        exclusive: label(&i.metadata, L::EXCLUSIVE) == Some("true"),
        deleting_at: ann
            .get(L::INGESTER_DELETING_TIME)
            .and_then(|v| v.parse().ok()),
    }
}

/// Computes the plan of `inputs.service`.
pub fn plan(inputs: &Inputs) -> Result<Plan, PlanError> {
    // What Whizard (Go) left is planned as ours, names and placement kept (see `adopt`).
    let adopted = super::adopt::adopt(inputs);
    let inputs = adopted.inputs.as_ref().unwrap_or(inputs);
    let svc = &inputs.service;
    let ns = svc
        .namespace()
        .ok_or_else(|| PlanError::NoNamespace(svc.name_any()))?;
    let svc_name = svc.name_any();
    let key = service_key(svc);
    let spec = &svc.spec;
    let tenancy = tenancy(spec);
    let CheckedTenants {
        tenants,
        mut problems,
        held,
    } = tenants_of(inputs);

    let storages: BTreeMap<(String, String), Storage> = inputs
        .storages
        .iter()
        .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s.clone()))
        .collect();

    // Tenants grouped by storage.
    let mut by_storage: BTreeMap<Option<(String, String)>, Vec<&TenantInfo>> = BTreeMap::new();
    for t in &tenants {
        by_storage.entry(t.storage.clone()).or_default().push(t);
    }
    // Make sure storages with only leftover (emptied) ingesters are still planned.
    for i in inputs
        .ingesters
        .iter()
        .filter(|i| has_service(&i.metadata, &key) && is_managed(&i.metadata))
    {
        let st = label(&i.metadata, L::STORAGE).unwrap_or(L::LOCAL_STORAGE);
        let storage = if st == L::LOCAL_STORAGE {
            None
        } else {
            st.split_once('.')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        };
        by_storage.entry(storage).or_default();
    }

    // ---- ingesters
    let tmpl = &spec.ingester_template_spec;
    let cap = tmpl
        .default_tenants_per_ingester
        .filter(|c| *c > 0)
        .map(|c| c as usize)
        .unwrap_or(DEFAULT_TENANTS_PER_INGESTER);
    let object_retention = duration_field(
        "ingesterTemplateSpec.defaultIngesterRetentionPeriod",
        &nonempty(
            &tmpl.default_ingester_retention_period,
            DEFAULT_INGESTER_RETENTION,
        ),
    )?;
    let local_retention = duration_field(
        "ingesterTemplateSpec.localTsdbRetention",
        &effective::ingester(spec, &IngesterSpec::default()).local_tsdb_retention,
    )?;
    let mut ingesters: Vec<Ingester> = Vec::new();
    let mut requeue_at: Option<u64> = None;
    let mut tenant_status: BTreeMap<String, TenantStatus> = tenants
        .iter()
        .map(|t| (t.cr_name.clone(), TenantStatus::default()))
        .collect();
    let cr_of: BTreeMap<&str, &str> = tenants
        .iter()
        .map(|t| (t.id.as_str(), t.cr_name.as_str()))
        .collect();

    for (storage, ts) in &by_storage {
        let prefix = slot_prefix(&svc_name, storage);
        let storage_label = match storage {
            Some((n, s)) => format!("{n}.{s}"),
            None => L::LOCAL_STORAGE.to_string(),
        };
        let existing: Vec<Slot> = inputs
            .ingesters
            .iter()
            .filter(|i| {
                has_service(&i.metadata, &key)
                    && is_managed(&i.metadata)
                    && label(&i.metadata, L::STORAGE).unwrap_or(L::LOCAL_STORAGE) == storage_label
            })
            .map(slot_of_ingester)
            .collect();
        let reqs: Vec<TenantReq> = ts
            .iter()
            .map(|t| TenantReq {
                id: t.id.clone(),
                exclusive: t.exclusive,
            })
            .collect();
        let retention = if storage.is_some() {
            object_retention
        } else {
            local_retention
        };
        let slots = super::adopt::assign_ingesters(
            &prefix, &existing, &reqs, &held, cap, retention, inputs.now,
        );
        if let Some(at) = assign::next_deletion(&slots) {
            requeue_at = Some(requeue_at.map_or(at, |r: u64| r.min(at)));
        }
        for s in slots {
            let mut extra = vec![(L::STORAGE, storage_label.clone())];
            if s.exclusive {
                extra.push((L::EXCLUSIVE, "true".to_string()));
            }
            let mut meta = managed_meta(&s.name, &ns, &key, &extra);
            if let Some(at) = s.deleting_at {
                let mut ann = BTreeMap::new();
                ann.insert(L::INGESTER_STATE.to_string(), "deleting".to_string());
                ann.insert(L::INGESTER_DELETING_TIME.to_string(), at.to_string());
                meta.annotations = Some(ann);
            }
            let current = inputs.ingesters.iter().find(|i| i.name_any() == s.name);
            super::adopt::carry_annotations(&mut meta, current);
            for t in &s.tenants {
                if let Some(cr) = cr_of.get(t.as_str()) {
                    tenant_status.get_mut(*cr).unwrap().ingester = Some(ObjectReference {
                        namespace: ns.clone(),
                        name: s.name.clone(),
                    });
                }
            }
            ingesters.push(Ingester {
                metadata: meta,
                spec: IngesterSpec {
                    tenants: s.tenants,
                    ..Default::default()
                },
                status: None,
            });
        }
    }
    // User-declared (unmanaged) ingesters, e.g. soft-tenant ones.
    for i in inputs
        .ingesters
        .iter()
        .filter(|i| has_service(&i.metadata, &key) && !is_managed(&i.metadata))
    {
        ingesters.push(i.clone());
    }
    ingesters.sort_by_key(|i| i.name_any());

    // ---- compactors (object storage only), per retention class
    let ctmpl = &spec.compactor_template_spec;
    let ccap = ctmpl
        .default_tenants_per_compactor
        .filter(|c| *c > 0)
        .map(|c| c as usize)
        .unwrap_or(DEFAULT_TENANTS_PER_COMPACTOR);
    let base_retention = effective::compactor(spec, &CompactorSpec::default())
        .retention
        .unwrap_or_default();
    let mut compactors: Vec<Compactor> = Vec::new();
    // (storage, retention) → tenants
    let mut classes: BTreeMap<(String, String), (Retention, Vec<TenantReq>, String)> =
        BTreeMap::new();
    for t in &tenants {
        let Some(st) = &t.storage else { continue };
        let retention = match &t.spec.retention {
            Some(r) => super::merge::merge(r, &base_retention),
            None => base_retention.clone(),
        };
        for (f, v) in [
            ("retentionRaw", &retention.retention_raw),
            ("retention5m", &retention.retention_5m),
            ("retention1h", &retention.retention_1h),
        ] {
            duration_field(&format!("compactorTemplateSpec.retention.{f}"), v)?;
        }
        let prefix = compactor_prefix(&svc_name, st, &retention, &base_retention);
        let storage_label = format!("{}.{}", st.0, st.1);
        classes
            .entry((storage_label, prefix))
            .or_insert_with(|| (retention.clone(), Vec::new(), String::new()))
            .1
            .push(TenantReq {
                id: t.id.clone(),
                exclusive: t.exclusive,
            });
    }
    // A compactor belongs to the class of its storage and the retention it applies (its
    // `spec.retention`, absent = the Service's), never to a class whose name merely shares a
    // prefix: otherwise a tenant whose retention changed stayed in its old compactor, now
    // planned twice under one name with two retentions.
    let managed_compactors: Vec<&Compactor> = inputs
        .compactors
        .iter()
        .filter(|c| has_service(&c.metadata, &key) && is_managed(&c.metadata))
        .collect();
    let class_of = |c: &Compactor| -> Option<(String, Retention)> {
        let storage = label(&c.metadata, L::STORAGE)?.to_string();
        Some((
            storage,
            c.spec.retention.clone().unwrap_or(base_retention.clone()),
        ))
    };
    // Classes that only held (skipped) tenants still occupy keep their compactors.
    for c in &managed_compactors {
        if !c.spec.tenants.iter().any(|t| held.contains(t)) {
            continue;
        }
        let Some((storage_label, retention)) = class_of(c) else {
            continue;
        };
        let st = storage_of(&storage_label);
        let prefix = compactor_prefix(&svc_name, &st, &retention, &base_retention);
        classes
            .entry((storage_label, prefix))
            .or_insert_with(|| (retention, Vec::new(), String::new()));
    }
    for ((storage_label, prefix), (retention, reqs, _)) in &classes {
        let existing: Vec<Slot> = managed_compactors
            .iter()
            .filter(|c| class_of(c).as_ref() == Some(&(storage_label.clone(), retention.clone())))
            .map(|c| Slot {
                name: c.name_any(),
                tenants: c.spec.tenants.clone(),
                exclusive: label(&c.metadata, L::EXCLUSIVE) == Some("true"),
                deleting_at: None,
            })
            .collect();
        for s in super::adopt::assign_compactors(prefix, &existing, reqs, &held, ccap) {
            let mut extra = vec![(L::STORAGE, storage_label.clone())];
            if s.exclusive {
                extra.push((L::EXCLUSIVE, "true".to_string()));
            }
            for t in &s.tenants {
                if let Some(cr) = cr_of.get(t.as_str()) {
                    tenant_status.get_mut(*cr).unwrap().compactor = Some(ObjectReference {
                        namespace: ns.clone(),
                        name: s.name.clone(),
                    });
                }
            }
            let custom = *retention != base_retention;
            compactors.push(Compactor {
                metadata: managed_meta(&s.name, &ns, &key, &extra),
                spec: CompactorSpec {
                    tenants: s.tenants,
                    retention: custom.then(|| retention.clone()),
                    ..Default::default()
                },
            });
        }
    }
    compactors.sort_by_key(|c| c.name_any());

    // ---- blocks of tenants removed from an object storage (see [`deletion`])
    let present: BTreeSet<(String, String)> = tenants
        .iter()
        .filter_map(|t| {
            t.storage
                .as_ref()
                .map(|(n, s)| (t.id.clone(), format!("{n}.{s}")))
        })
        .collect();
    let mut removed = Vec::new();
    for c in inputs
        .compactors
        .iter()
        .filter(|c| has_service(&c.metadata, &key) && is_managed(&c.metadata))
    {
        let Some(storage) = label(&c.metadata, L::STORAGE) else {
            continue;
        };
        let r = c.spec.retention.clone().unwrap_or(base_retention.clone());
        // An unparsable stored retention counts as unlimited: never delete by mistake.
        let secs: Vec<u64> = [&r.retention_raw, &r.retention_5m, &r.retention_1h]
            .iter()
            .map(|v| parse_duration(v).unwrap_or(0))
            .collect();
        for t in &c.spec.tenants {
            // A skipped (held) tenant is broken, not removed: its blocks are never scheduled.
            if held.contains(t) || present.contains(&(t.clone(), storage.to_string())) {
                continue;
            }
            if let Some(at) = deletion::deadline(inputs.now, &secs, object_retention) {
                removed.push(PendingDeletion {
                    tenant: t.clone(),
                    storage: storage.to_string(),
                    removed_at: inputs.now,
                    delete_at: at,
                });
            }
        }
    }
    let mut dplan = deletion::plan_deletions(
        &inputs.pending_deletions,
        &removed,
        &present,
        &inputs.deletion_jobs,
        inputs.now,
    );
    if let Some(at) = dplan.next_deadline {
        requeue_at = Some(requeue_at.map_or(at, |r: u64| r.min(at)));
    }
    // Without its Storage the Job has no bucket to work on: keep the record until it is back.
    dplan
        .due
        .retain(|d| storages.contains_key(&storage_of(&d.storage)));
    if !dplan.due.is_empty() && !is_label_name(&tenancy.label) {
        // The Job's block listing names the label in a template.
        return Err(PlanError::LabelName(tenancy.label.clone()));
    }

    // ---- stores: one per object storage with tenants
    let mut stores = Vec::new();
    for (storage, ts) in &by_storage {
        let Some(st) = storage else { continue };
        if ts.is_empty() {
            continue;
        }
        let name = super::adopt::store_name(inputs, &key, &svc_name, st);
        let user = inputs
            .stores
            .iter()
            .find(|s| has_service(&s.metadata, &key) && s.name_any() == name)
            .map(|s| s.spec.clone())
            .unwrap_or_default();
        stores.push(Store {
            metadata: managed_meta(
                &name,
                &ns,
                &key,
                &[(L::STORAGE, format!("{}.{}", st.0, st.1))],
            ),
            spec: user,
        });
    }

    // ---- rulers
    let seed = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(L::CREDENTIALS_SEED))
        .cloned()
        .unwrap_or_else(|| inputs.seed.clone());
    let placeholder_credentials = seed.is_empty() || seed == PLACEHOLDER_SEED;
    let seed = if seed.is_empty() {
        PLACEHOLDER_SEED.to_string()
    } else {
        seed
    };
    let mut creds = super::credentials::Credentials::new(&seed, &inputs.password_hashes);
    let mut rulers = Vec::new();
    let mut users = Vec::new();
    let mut write_routing = BTreeMap::new();
    let tenant_ids: Vec<String> = tenants.iter().map(|t| t.id.clone()).collect();
    for t in &tenants {
        let name = ruler_name(&t.id);
        let user_cr = inputs
            .rulers
            .iter()
            .find(|r| has_service(&r.metadata, &key) && r.spec.tenant == t.id)
            .map(|r| r.spec.clone())
            .unwrap_or_default();
        let mut rspec = user_cr;
        rspec.tenant = t.id.clone();
        let eff = effective::ruler(spec, &rspec);
        let mut files = RuleFiles::new();
        for g in inputs.rule_groups.iter().filter(|g| {
            label(&g.metadata, L::TENANT) == Some(t.id.as_str())
                && g.metadata.deletion_timestamp.is_none()
        }) {
            let file = format!(
                "{}-{}.yaml",
                g.namespace().unwrap_or_default(),
                g.name_any()
            );
            add_group(&mut files, file, &g.name_any(), &g.spec.group);
        }
        for g in inputs.cluster_rule_groups.iter().filter(|g| {
            label(&g.metadata, L::TENANT) == Some(t.id.as_str())
                && g.metadata.deletion_timestamp.is_none()
        }) {
            let file = format!("cluster-{}.yaml", g.name_any());
            add_group(&mut files, file, &g.name_any(), &g.spec.group);
        }
        let selected =
            select_prometheus_rules(inputs, &eff, &ns, Some(&t.id)).map_err(|source| {
                PlanError::Selector {
                    ruler: name.clone(),
                    source,
                }
            })?;
        add_prometheus_rules(&mut files, &selected);
        let user = format!("whizard-ruler-{}", t.id);
        users.push(creds.user(&user, vec![t.id.clone()], &["read", "write"]));
        tenant_status.get_mut(&t.cr_name).unwrap().ruler = Some(ObjectReference {
            namespace: ns.clone(),
            name: name.clone(),
        });
        rulers.push(PlannedRuler {
            shards: shard_files(&files, eff.shards.unwrap_or(1).max(1) as u64),
            ruler: Ruler {
                metadata: managed_meta(&name, &ns, &key, &[(L::TENANT, t.id.clone())]),
                spec: rspec,
            },
            spec: eff,
            query_user: user.clone(),
            write_user: user,
        });
    }
    let globals: Vec<&GlobalRuleGroup> = inputs
        .global_rule_groups
        .iter()
        .filter(|g| {
            g.metadata.deletion_timestamp.is_none()
                && (has_service(&g.metadata, &key)
                    || (label(&g.metadata, L::SERVICE).is_none()
                        && g.namespace().as_deref() == Some(ns.as_str())))
        })
        .collect();
    let global_name = dns(&format!("{svc_name}-global"));
    // Global Ruler CRs: labelled with the service, no tenant. The one the reconciler applies
    // itself (`<svc>-global`, managed-by label) comes back in `inputs.rulers` and must not
    // keep the global ruler alive, so only the others ask for one.
    let global_crs: Vec<&Ruler> = inputs
        .rulers
        .iter()
        .filter(|r| has_service(&r.metadata, &key) && r.spec.tenant.is_empty())
        .collect();
    let user_global_cr = global_crs
        .iter()
        .filter(|r| {
            r.metadata.deletion_timestamp.is_none()
                && label(&r.metadata, L::MANAGED_BY) != Some(L::MANAGED_BY_VALUE)
        })
        .min_by_key(|r| r.name_any());
    // No global ruler unless asked for: a global Ruler CR or a GlobalRuleGroup. The rule
    // selectors (template or CR) only add PrometheusRules to a global ruler that exists.
    if user_global_cr.is_some() || !globals.is_empty() {
        let name = global_name;
        // The spec: the user's CR; else the generated one as applied last time (a user CR
        // named `<svc>-global` is merged into it); else the defaults.
        let user_cr = user_global_cr
            .or_else(|| global_crs.iter().find(|r| r.name_any() == name))
            .map(|r| r.spec.clone())
            .unwrap_or_default();
        let eff = effective::ruler(spec, &user_cr);
        let global_prom = select_prometheus_rules(inputs, &eff, &ns, None).map_err(|source| {
            PlanError::Selector {
                ruler: name.clone(),
                source,
            }
        })?;
        let mut files = RuleFiles::new();
        for g in globals {
            let file = format!(
                "{}-{}.yaml",
                g.namespace().unwrap_or_default(),
                g.name_any()
            );
            add_group(&mut files, file, &g.name_any(), &g.spec.group);
        }
        add_prometheus_rules(&mut files, &global_prom);
        let read_user = "whizard-global-ruler-read".to_string();
        let write_user = "whizard-global-ruler-write".to_string();
        // Both users have every tenant of the Service plus the default tenant. The write
        // user's writes name no tenant: the gateway splits them by the tenant label of each
        // series (a recording rule keeping `tenant_id` writes to that tenant), series without
        // one go to the default tenant.
        let mut all_tenants = tenant_ids.clone();
        if !all_tenants.contains(&tenancy.default_tenant) {
            all_tenants.push(tenancy.default_tenant.clone());
        }
        users.push(creds.user(&read_user, all_tenants.clone(), &["read"]));
        users.push(creds.user(&write_user, all_tenants, &["write"]));
        write_routing.insert(
            write_user.clone(),
            WriteRouting::ByLabel {
                default_tenant: tenancy.default_tenant.clone(),
            },
        );
        rulers.push(PlannedRuler {
            shards: shard_files(&files, eff.shards.unwrap_or(1).max(1) as u64),
            ruler: Ruler {
                metadata: managed_meta(&name, &ns, &key, &[]),
                spec: user_cr,
            },
            spec: eff,
            query_user: read_user,
            write_user,
        });
    }

    // ---- singletons: gateway, router, query, query frontend
    fn pick<T: Clone + kube::Resource>(list: &[T], key: &str, make: impl Fn() -> T) -> Vec<T> {
        let mut v: Vec<T> = list
            .iter()
            .filter(|o| has_service(o.meta(), key))
            .cloned()
            .collect();
        if v.is_empty() {
            v.push(make());
        }
        v.sort_by_key(|o| o.meta().name.clone());
        v
    }
    let auto_meta = || managed_meta(&svc_name, &ns, &key, &[]);
    let gateways = pick(&inputs.gateways, &key, || Gateway {
        metadata: auto_meta(),
        spec: Default::default(),
    });
    let routers = pick(&inputs.routers, &key, || Router {
        metadata: auto_meta(),
        spec: Default::default(),
    });
    let queries = pick(&inputs.queries, &key, || Query {
        metadata: auto_meta(),
        spec: Default::default(),
    });
    let query_frontends = pick(&inputs.query_frontends, &key, || QueryFrontend {
        metadata: auto_meta(),
        spec: Default::default(),
    });

    let mut gateway_web = BTreeMap::new();
    for g in &gateways {
        let eff = effective::gateway(spec, &g.spec);
        let field = format!("Gateway {}: webConfig", g.name_any());
        let web = super::web::resolve(eff.web_config.as_ref(), &inputs.secrets, &field)?;
        if let Some(u) = web
            .users
            .iter()
            .find(|u| users.iter().any(|r: &GatewayUser| r.name == u.name))
        {
            return Err(PlanError::WebConfig {
                field,
                reason: format!("user {:?} is reserved for a ruler", u.name),
            });
        }
        gateway_web.insert(g.name_any(), web);
        // `spec.oidc` is free-form in the CRD: an entry the gateway would refuse is left out
        // of its config by the renderer, and reported here so it is not lost silently.
        let (_, refused) = super::access::oidc_entries(&eff.oidc, &BTreeMap::new());
        for e in refused {
            problems.push(problem(
                None,
                "InvalidOidcProvider",
                format!("Gateway {}: {e}", g.name_any()),
            ));
        }
    }

    // ---- per-tenant access (Tenant.spec.access): bad entries are problems of their Tenant.
    let reserved: BTreeSet<String> = users
        .iter()
        .map(|u| u.name.clone())
        .chain(
            gateway_web
                .values()
                .flat_map(|w| w.users.iter().map(|u| u.name.clone())),
        )
        .collect();
    let oidc_configured = gateways.iter().any(|g| {
        effective::gateway(spec, &g.spec)
            .oidc
            .iter()
            .any(|p| p.get("groups_claim").is_some_and(|c| c.is_string()))
    });
    let access = super::access::resolve(
        &tenants,
        &inputs.secrets,
        &reserved,
        oidc_configured,
        &mut creds,
    );
    problems.extend(access.problems);

    // ---- never two objects under one name (a generated name may meet a user-declared one or,
    // against all odds, an md5 prefix of another): the first keeps it, the others are dropped
    // and their tenants reported.
    let mut dropped: Vec<(String, String, Vec<String>)> = Vec::new();
    let ingesters = unique_names(
        ingesters,
        "Ingester",
        |i| i.spec.tenants.clone(),
        &mut dropped,
    );
    let compactors = unique_names(
        compactors,
        "Compactor",
        |c| c.spec.tenants.clone(),
        &mut dropped,
    );
    let stores = unique_names(stores, "Store", |_| Vec::new(), &mut dropped);
    // The global ruler first: a tenant whose ruler name is `<svc>-global` yields.
    let (globals, mut tenant_rulers): (Vec<_>, Vec<_>) = rulers
        .into_iter()
        .partition(|r: &PlannedRuler| r.ruler.spec.tenant.is_empty());
    let mut rulers = globals;
    rulers.append(&mut tenant_rulers);
    let rulers = unique_names(
        rulers,
        "Ruler",
        |r| {
            (!r.ruler.spec.tenant.is_empty())
                .then(|| r.ruler.spec.tenant.clone())
                .into_iter()
                .collect()
        },
        &mut dropped,
    );
    for (kind, name, ts) in dropped {
        for t in ts {
            let Some(cr) = cr_of.get(t.as_str()).copied() else {
                continue;
            };
            if let Some(st) = tenant_status.get_mut(cr) {
                for r in [&mut st.ingester, &mut st.compactor, &mut st.ruler] {
                    if r.as_ref().is_some_and(|r| r.name == name) {
                        *r = None;
                    }
                }
            }
            problems.push(problem(
                Some(cr),
                "NameCollision",
                format!("{kind} {name} is generated for another object too; this tenant's is not rendered"),
            ));
        }
    }

    // ---- ingesters the router cannot write to: no replicas, or fewer than its replication
    // factor. Left out of the hashring (Thanos refuses a hashring without endpoints, and
    // every write to one with fewer endpoints than the replication factor fails).
    let rf = routers
        .iter()
        .map(|r| {
            (
                r.name_any(),
                effective::router(spec, &r.spec)
                    .replication_factor
                    .unwrap_or(1),
            )
        })
        .max_by_key(|(_, f)| *f)
        .unwrap_or_default();
    let mut unrouted_ingesters = BTreeSet::new();
    for i in &ingesters {
        if i.spec.tenants.is_empty() {
            continue;
        }
        let replicas = effective::ingester(spec, &i.spec)
            .common
            .replicas
            .unwrap_or(1);
        let (reason, why) = if replicas < 1 {
            (
                "IngesterHasNoReplicas",
                format!("Ingester {} has {replicas} replicas", i.name_any()),
            )
        } else if (replicas as i64) < rf.1 as i64 {
            (
                "ReplicationFactorTooHigh",
                format!(
                    "Router {} has replicationFactor {} but Ingester {} only {replicas} replicas",
                    rf.0,
                    rf.1,
                    i.name_any()
                ),
            )
        } else {
            continue;
        };
        unrouted_ingesters.insert(i.name_any());
        for t in &i.spec.tenants {
            let cr = cr_of.get(t.as_str()).copied();
            if cr.is_none() && !held.contains(t) {
                continue;
            }
            problems.push(problem(
                cr,
                reason,
                format!("{why}: its hashring is left out and tenant {t:?} receives no writes"),
            ));
        }
    }

    // ---- conditions
    for (cr, st) in tenant_status.iter_mut() {
        let mine: Vec<&Problem> = problems
            .iter()
            .filter(|p| p.tenant_cr.as_deref() == Some(cr.as_str()))
            .collect();
        st.conditions = vec![ready_condition(&mine)];
    }
    for p in &problems {
        let Some(cr) = &p.tenant_cr else { continue };
        if tenant_status.contains_key(cr) {
            continue;
        }
        let mine: Vec<&Problem> = problems
            .iter()
            .filter(|q| q.tenant_cr.as_deref() == Some(cr.as_str()))
            .collect();
        tenant_status.insert(
            cr.clone(),
            TenantStatus {
                conditions: vec![ready_condition(&mine)],
                ..Default::default()
            },
        );
    }

    Ok(Plan {
        namespace: ns,
        service_name: svc_name,
        tenancy,
        tenants,
        storages,
        ingesters,
        compactors,
        stores,
        rulers,
        gateways,
        routers,
        queries,
        query_frontends,
        users,
        write_routing,
        access_users: access.users,
        oidc_groups: access.groups,
        tenant_status,
        gateway_web,
        remote_writes: super::remote_write::targets(&spec.remote_writes, &inputs.secrets)?,
        deletions: dplan.pending,
        due_deletions: dplan.due,
        requeue_at,
        placeholder_credentials,
        problems,
        unrouted_ingesters,
        password_hashes_computed: creds.hashes_computed,
        adoption: adopted.adoption,
    })
}

/// `Ready` from the problems of one tenant.
fn ready_condition(problems: &[&Problem]) -> TenantCondition {
    match problems.first() {
        None => TenantCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Planned".into(),
            message: String::new(),
        },
        Some(first) => TenantCondition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: first.reason.clone(),
            message: problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}

/// Keeps the first object of each name (in `items` order, which is kept); the others are
/// dropped and recorded in `dropped` as `(kind, name, tenants)`.
fn unique_names<T>(
    items: Vec<T>,
    kind: &str,
    tenants: impl Fn(&T) -> Vec<String>,
    dropped: &mut Vec<(String, String, Vec<String>)>,
) -> Vec<T>
where
    T: HasName,
{
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for item in items {
        let name = item.object_name();
        if seen.insert(name.clone()) {
            out.push(item);
        } else {
            dropped.push((kind.to_string(), name, tenants(&item)));
        }
    }
    out
}

/// The object name of a planned object.
trait HasName {
    fn object_name(&self) -> String;
}
impl<K: kube::Resource> HasName for K {
    fn object_name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }
}
impl HasName for PlannedRuler {
    fn object_name(&self) -> String {
        self.ruler.name_any()
    }
}

/// Rule files: file name → its groups `(name, group as written in a rules file)`.
pub type RuleFiles = BTreeMap<String, Vec<(String, serde_json::Value)>>;

/// Adds one group of a RuleGroup-kind CR to `files`.
fn add_group(files: &mut RuleFiles, file: String, name: &str, spec: &RuleGroupSpec) {
    let mut g = serde_json::Map::new();
    g.insert("name".into(), json!(name));
    if let Some(i) = &spec.interval {
        g.insert("interval".into(), json!(i));
    }
    g.insert("rules".into(), json!(spec.rules));
    files
        .entry(file)
        .or_default()
        .push((name.to_string(), serde_json::Value::Object(g)));
}

/// Adds every group of each PrometheusRule as file `<ns>-<name>.yaml` (as Whizard names it).
fn add_prometheus_rules(files: &mut RuleFiles, rules: &[&PrometheusRule]) {
    for r in rules {
        let file = format!(
            "{}-{}.yaml",
            r.namespace().unwrap_or_default(),
            r.name_any()
        );
        for g in &r.spec.groups {
            let mut v = serde_json::Map::new();
            v.insert("name".into(), json!(g.name));
            for (k, x) in &g.rest {
                v.insert(k.clone(), x.clone());
            }
            files
                .entry(file.clone())
                .or_default()
                .push((g.name.clone(), serde_json::Value::Object(v)));
        }
    }
}

/// PrometheusRules a ruler evaluates: those labelled with its tenant
/// (`monitoring.whizard.io/tenant`, any namespace, like RuleGroups), and those matching any of
/// its `ruleSelectors` in a namespace matched by `ruleNamespaceSelector` (absent: the ruler's
/// own namespace only; `{}`: every namespace), as prometheus-operator selects them.
pub fn select_prometheus_rules<'a>(
    inputs: &'a Inputs,
    eff: &RulerSpec,
    ruler_ns: &str,
    tenant: Option<&str>,
) -> Result<Vec<&'a PrometheusRule>, super::selector::SelectorError> {
    use super::selector;
    let mut out = Vec::new();
    let empty = BTreeMap::new();
    for r in inputs
        .prometheus_rules
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
    {
        let labels = r.metadata.labels.as_ref().unwrap_or(&empty);
        let by_tenant = tenant.is_some() && labels.get(L::TENANT).map(String::as_str) == tenant;
        let rns = r.namespace().unwrap_or_default();
        let ns_ok = match &eff.rule_namespace_selector {
            None => rns == ruler_ns,
            Some(sel) => selector::matches(sel, inputs.namespaces.get(&rns).unwrap_or(&empty))?,
        };
        let by_selector = ns_ok && selector::matches_any(&eff.rule_selectors, labels)?;
        if by_tenant || by_selector {
            out.push(r);
        }
    }
    out.sort_by_key(|r| (r.namespace(), r.name_any()));
    Ok(out)
}

/// Rule files → per shard, ConfigMap bins of `file → YAML`. Each group goes to
/// [`shard::shard_of`]`(file, group)`; a file holds the groups of its shard.
pub fn shard_files(files: &RuleFiles, shards: u64) -> Vec<Vec<BTreeMap<String, String>>> {
    let mut per_shard: Vec<BTreeMap<String, Vec<serde_json::Value>>> =
        vec![BTreeMap::new(); shards as usize];
    for (file, groups) in files {
        for (name, group) in groups {
            let s = shard::shard_of(file, name, shards) as usize;
            per_shard[s]
                .entry(file.clone())
                .or_default()
                .push(group.clone());
        }
    }
    per_shard
        .iter()
        .map(|f| {
            let docs: BTreeMap<String, String> = f
                .iter()
                .map(|(file, groups)| {
                    let doc = json!({ "groups": groups });
                    (file.clone(), serde_norway::to_string(&doc).unwrap())
                })
                .collect();
            shard::pack_files(&docs, shard::MAX_CONFIGMAP_BYTES)
        })
        .collect()
}
