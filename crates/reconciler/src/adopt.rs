//! Migration from the Go Whizard: adopting what its controller left in the cluster, and the
//! fields of its `v1alpha1` types that are accepted but not used.
//!
//! # What Whizard (Go) leaves behind
//! * Ingester CRs labelled `monitoring.whizard.io/service=<ns>.<name>` and
//!   `monitoring.whizard.io/storage=<ns>.<storage>` (or `local`), named
//!   `<svc>-<storage>-auto-<i>` (shared, `i` from 0) or, for an exclusive tenant
//!   (`monitoring.whizard.io/exclusive=true`), after the Tenant CR; placement is
//!   `spec.tenants`, an emptied one carries `ingester-state: deleting` and
//!   `ingester-deleting-time`.
//! * Compactor CRs with the same labels, named `<svc>-<storage>-<5 random characters>`
//!   (`generateName`) or, exclusive, after the Tenant CR. When filling an existing compactor
//!   Whizard appends the Tenant CR *name*, not `spec.tenant`.
//! * One Store CR per (service, object storage), `<svc>-<storage>-<random>`.
//! * Per tenant a Ruler CR named after the Tenant CR (owned by the Tenant).
//! * For each of these and for the user's Gateway/Router/Query/QueryFrontend/Ruler CRs:
//!   StatefulSets/Deployments named `<component>-<cr name>[...]` and Services, labelled
//!   `app.kubernetes.io/name=<component>` and `app.kubernetes.io/managed-by=<cr name>`
//!   (their selector). None of these objects carries our `managed-by=whizard-reconciler`.
//! * Finalizers `finalizers.monitoring.whizard.io/{ingester,compactor}` on every Tenant and
//!   `.../deletePVC` on Compactors, which nobody removes once Whizard is gone.
//!
//! # Adoption ([`adopt`])
//! The planner runs on a rewritten snapshot in which Whizard's Ingester, Compactor and Store
//! CRs of the Service are ours (labelled managed): they keep their names and their tenants
//! (Tenant CR names in a Compactor are read as the tenant's id; entries naming no tenant of
//! the Service are dropped, so no block deletion is ever scheduled for them), a tenant listed
//! twice stays where its Tenant's `status` says (else on Whizard's object, else the first by
//! name), and nothing is re-packed. [`assign_ingesters`] and [`assign_compactors`] place
//! new tenants with the usual first fit, treating an adopted object whose name is not one of
//! ours as the next free `auto` index (shared) or as the tenant's exclusive slot, so
//! Whizard's compactors are filled before new ones are made and an exclusive tenant stays on
//! the ingester named after its Tenant CR. The Store of a storage keeps Whizard's name.
//!
//! The workloads keep their names (`ingester-<name>`, `compactor-<name>`, `store-<name>`,
//! ...), but their label selectors differ and are immutable, so Whizard's StatefulSets,
//! Deployments and Services are deleted right before ours are applied
//! ([`Adoption::legacy_owners`], [`before_apply`]): replaced, never run beside ours.
//! Persistent volumes survive: an adopted ingester keeps Whizard's claim name (`tsdb`, see
//! [`DATA_CLAIM`]). Adopted CRs that are no longer planned are deleted ([`after_apply`]),
//! and Whizard's finalizers are removed.
//!
//! # Accepted, not used ([`ignored_fields`])
//! Every field of Whizard's types deserializes; those the reconciler does not honour are
//! reported as warnings (`render` prints them on stderr, the controller logs them and
//! publishes a Warning event on the Service). See docs/migration.md for the table.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::ObjectMeta;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::assign::{self, Slot, TenantReq};
use super::crd::{labels as L, *};
use super::model::Inputs;
use super::{naming, tenants};

/// Prefix of the finalizers the Go controller puts on Tenants and Compactors.
pub const GO_FINALIZER_PREFIX: &str = "finalizers.monitoring.whizard.io/";
/// Annotation on an adopted Ingester: the name of the volume claim template of its
/// StatefulSet (Whizard's `tsdb`), so the new StatefulSet binds the existing volumes
/// (`<claim>-ingester-<name>-<i>`).
pub const DATA_CLAIM: &str = "monitoring.whizard.io/data-volume-claim";
/// Whizard's claim template name when `dataVolume.persistentVolumeClaim` has none.
pub const GO_CLAIM: &str = "tsdb";
/// `app.kubernetes.io/name` of the workloads the Go controller creates, by our kind.
pub const GO_COMPONENTS: &[(&str, &str)] = &[
    ("Gateway", "gateway"),
    ("Router", "router"),
    ("Query", "query"),
    ("QueryFrontend", "query-frontend"),
    ("Ingester", "ingester"),
    ("Ruler", "ruler"),
    ("Store", "store"),
    ("Compactor", "compactor"),
];

/// What the plan must do beyond applying and pruning, because of Whizard's leftovers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adoption {
    /// Whizard's CRs taken over, `(kind, name)`: applied as ours when planned, deleted when
    /// not (see [`after_apply`]).
    pub adopted: Vec<(String, String)>,
    /// `(component, CR name)` of every component CR of the Service: a StatefulSet,
    /// Deployment or Service labelled `app.kubernetes.io/name=<component>,
    /// app.kubernetes.io/managed-by=<CR name>` is Whizard's and is replaced (see
    /// [`is_legacy`]).
    pub legacy_owners: BTreeSet<(String, String)>,
    /// Objects whose Whizard finalizers are removed.
    pub finalizers: Vec<FinalizerStrip>,
    /// Adoption notes and fields accepted but not used (one line each).
    pub warnings: Vec<String>,
}

/// An object to rewrite the finalizers of: keep `keep`, drop Whizard's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizerStrip {
    /// `Tenant`, `Ingester`, `Compactor` or `Store`.
    pub kind: String,
    /// `None` for Tenants (cluster-scoped).
    pub namespace: Option<String>,
    pub name: String,
    /// For optimistic concurrency of the patch.
    pub resource_version: Option<String>,
    pub keep: Vec<String>,
}

/// The result of [`adopt`]: the snapshot to plan from (`None`: the input, unchanged) and
/// what else to do.
#[derive(Debug, Clone, Default)]
pub struct Adopted {
    pub inputs: Option<Inputs>,
    pub adoption: Adoption,
}

fn label<'a>(meta: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(k))
        .map(|s| s.as_str())
}

fn has_service(meta: &ObjectMeta, key: &str) -> bool {
    label(meta, L::SERVICE) == Some(key)
}

fn live(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_none()
}

/// The finalizers of `meta` without Whizard's, when it has any of Whizard's.
pub fn without_go_finalizers(meta: &ObjectMeta) -> Option<Vec<String>> {
    let all = meta.finalizers.as_ref()?;
    if !all.iter().any(|f| f.starts_with(GO_FINALIZER_PREFIX)) {
        return None;
    }
    Some(
        all.iter()
            .filter(|f| !f.starts_with(GO_FINALIZER_PREFIX))
            .cloned()
            .collect(),
    )
}

fn strip(kind: &str, meta: &ObjectMeta, namespaced: bool) -> Option<FinalizerStrip> {
    without_go_finalizers(meta).map(|keep| FinalizerStrip {
        kind: kind.to_string(),
        namespace: if namespaced {
            meta.namespace.clone()
        } else {
            None
        },
        name: meta.name.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone(),
        keep,
    })
}

/// An Ingester of the Service Whizard created: not ours, not a user's soft-tenant ingester
/// (`monitoring.whizard.io/soft-tenant=true`, kept as declared), not being deleted, and
/// holding tenants or emptied by Whizard (`ingester-state` annotation): Whizard creates
/// ingesters only for tenants, so an empty one without that mark is a user's, kept as declared.
pub fn is_go_ingester(i: &Ingester, key: &str) -> bool {
    let emptied = i
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(L::INGESTER_STATE));
    has_service(&i.metadata, key)
        && !naming::is_managed(&i.metadata)
        && label(&i.metadata, L::SOFT_TENANT) != Some("true")
        && live(&i.metadata)
        && (!i.spec.tenants.is_empty() || emptied)
}

/// A Compactor of the Service Whizard created: it always sets the storage label (without it
/// Whizard ignores the object too) and deletes a compactor it empties, so it has tenants.
pub fn is_go_compactor(c: &Compactor, key: &str) -> bool {
    has_service(&c.metadata, key)
        && !naming::is_managed(&c.metadata)
        && label(&c.metadata, L::STORAGE).is_some()
        && live(&c.metadata)
        && !c.spec.tenants.is_empty()
}

/// A Store of the Service Whizard created: not ours, with a storage label, and not named like
/// the Store the reconciler plans for that storage (a user's Store of that name is the
/// reconciler's way to configure it, see the planner).
pub fn is_go_store(s: &Store, key: &str, svc_name: &str, svc_ns: &str) -> bool {
    let Some(st) = label(&s.metadata, L::STORAGE) else {
        return false;
    };
    let st = normalize_storage(st, svc_ns);
    let prefix = naming::slot_prefix(svc_name, &Some(naming::storage_of(&st)));
    has_service(&s.metadata, key)
        && !naming::is_managed(&s.metadata)
        && live(&s.metadata)
        && s.name_any() != prefix
}

/// Whizard writes `<ns>.<name>` of `Service.spec.storage` as it is, so a Service whose
/// storage reference has no namespace yields `.<name>`: the Service's namespace is meant.
pub fn normalize_storage(v: &str, svc_ns: &str) -> String {
    match v.strip_prefix('.') {
        Some(name) => format!("{svc_ns}.{name}"),
        None => v.to_string(),
    }
}

/// The claim template name Whizard gave an ingester's data volume: the PVC's
/// `metadata.name` of its `dataVolume` (the CR's, else the Service template's), else `tsdb`.
pub fn go_claim_name(cr: &IngesterSpec, template: &IngesterSpec) -> String {
    [cr, template]
        .iter()
        .filter_map(|s| s.data_volume.as_ref())
        .filter_map(|d| d.persistent_volume_claim.as_ref())
        .filter_map(|p| p["metadata"]["name"].as_str())
        .find(|n| !n.is_empty())
        .unwrap_or(GO_CLAIM)
        .to_string()
}

/// The claim name an (adopted) ingester's StatefulSet must use, if not ours.
pub fn data_claim(i: &Ingester) -> Option<&str> {
    i.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DATA_CLAIM))
        .map(|s| s.as_str())
        .filter(|s| !s.is_empty())
}

/// Copies the annotations adoption relies on ([`DATA_CLAIM`]) from the current CR to the
/// planned one, so they survive server-side apply.
pub fn carry_annotations(meta: &mut ObjectMeta, current: Option<&Ingester>) {
    let Some(claim) = current.and_then(data_claim) else {
        return;
    };
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(DATA_CLAIM.to_string(), claim.to_string());
}

fn mark_managed(meta: &mut ObjectMeta, svc_ns: &str) {
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(L::MANAGED_BY.into(), L::MANAGED_BY_VALUE.into());
    if let Some(st) = labels.get(L::STORAGE).cloned() {
        labels.insert(L::STORAGE.into(), normalize_storage(&st, svc_ns));
    }
}

/// Spec fields of an adopted CR besides its tenants: the planned CR does not keep them.
fn extra_spec_fields<T: serde::Serialize>(spec: &T) -> Vec<String> {
    let v = serde_json::to_value(spec).unwrap_or(Value::Null);
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, x)| k.as_str() != "tenants" && !is_empty(x))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Empty as Whizard writes unset fields: `null`, `false`, `""`, and lists and objects of
/// nothing but those (its non-pointer structs serialize as `{resources: {}}`,
/// `{username: {key: ""}}`, ...).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_empty),
        Value::Object(m) => m.values().all(is_empty),
        Value::Number(_) => false,
    }
}

/// The tenants of an adopted CR: Tenant CR names read as their ids (Whizard's compactor
/// bug), duplicates and entries naming no tenant of the Service dropped. Returns the kept
/// and the dropped entries.
fn adopt_tenants(
    list: &[String],
    known: &BTreeSet<String>,
    id_of_cr: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let mut kept: Vec<String> = Vec::new();
    let mut dropped = Vec::new();
    for t in list {
        let id = if known.contains(t) {
            Some(t.clone())
        } else {
            id_of_cr.get(t).filter(|id| known.contains(*id)).cloned()
        };
        match id {
            Some(id) if !kept.contains(&id) => kept.push(id),
            Some(_) => {}
            None => dropped.push(t.clone()),
        }
    }
    (kept, dropped)
}

/// Rewrites `inputs` so that Whizard's Ingester, Compactor and Store CRs of the Service are
/// planned as ours (see the module docs), and lists what else the apply must do.
pub fn adopt(inputs: &Inputs) -> Adopted {
    let svc = &inputs.service;
    let key = naming::service_key(svc);
    let ns = svc.namespace().unwrap_or_default();
    let svc_name = svc.name_any();
    let checked = tenants::tenants_of(inputs);
    let mut a = Adoption {
        warnings: ignored_fields(inputs, &checked),
        ..Default::default()
    };

    // Every component CR of the Service may own Whizard workloads.
    let mut owners = BTreeSet::new();
    let mut add = |kind: &str, meta: &ObjectMeta| {
        if has_service(meta, &key) {
            let c = GO_COMPONENTS.iter().find(|(k, _)| *k == kind).unwrap().1;
            owners.insert((c.to_string(), meta.name.clone().unwrap_or_default()));
        }
    };
    inputs
        .gateways
        .iter()
        .for_each(|o| add("Gateway", &o.metadata));
    inputs
        .routers
        .iter()
        .for_each(|o| add("Router", &o.metadata));
    inputs
        .queries
        .iter()
        .for_each(|o| add("Query", &o.metadata));
    inputs
        .query_frontends
        .iter()
        .for_each(|o| add("QueryFrontend", &o.metadata));
    inputs
        .ingesters
        .iter()
        .for_each(|o| add("Ingester", &o.metadata));
    inputs.rulers.iter().for_each(|o| add("Ruler", &o.metadata));
    inputs.stores.iter().for_each(|o| add("Store", &o.metadata));
    inputs
        .compactors
        .iter()
        .for_each(|o| add("Compactor", &o.metadata));
    a.legacy_owners = owners;

    // Whizard's finalizers on the Service's Tenants, and on its CRs stuck in deletion.
    let mut tenants: Vec<&Tenant> = inputs
        .tenants
        .iter()
        .filter(|t| has_service(&t.metadata, &key))
        .collect();
    tenants.sort_by_key(|t| t.name_any());
    for t in tenants {
        a.finalizers.extend(strip("Tenant", &t.metadata, false));
    }
    let stuck =
        |meta: &ObjectMeta| has_service(meta, &key) && !naming::is_managed(meta) && !live(meta);
    for i in inputs.ingesters.iter().filter(|i| stuck(&i.metadata)) {
        a.finalizers.extend(strip("Ingester", &i.metadata, true));
    }
    for c in inputs.compactors.iter().filter(|c| stuck(&c.metadata)) {
        a.finalizers.extend(strip("Compactor", &c.metadata, true));
    }
    for s in inputs.stores.iter().filter(|s| stuck(&s.metadata)) {
        a.finalizers.extend(strip("Store", &s.metadata, true));
    }

    let go_ing: Vec<usize> = (0..inputs.ingesters.len())
        .filter(|&i| is_go_ingester(&inputs.ingesters[i], &key))
        .collect();
    let go_comp: Vec<usize> = (0..inputs.compactors.len())
        .filter(|&i| is_go_compactor(&inputs.compactors[i], &key))
        .collect();
    let go_store: Vec<usize> = (0..inputs.stores.len())
        .filter(|&i| is_go_store(&inputs.stores[i], &key, &svc_name, &ns))
        .collect();
    if go_ing.is_empty() && go_comp.is_empty() && go_store.is_empty() {
        return Adopted {
            inputs: None,
            adoption: a,
        };
    }

    let known: BTreeSet<String> = checked
        .tenants
        .iter()
        .map(|t| t.id.clone())
        .chain(checked.held.iter().cloned())
        .collect();
    let mut svc_tenants: Vec<&Tenant> = inputs
        .tenants
        .iter()
        .filter(|t| has_service(&t.metadata, &key) && live(&t.metadata))
        .collect();
    svc_tenants.sort_by_key(|t| t.name_any());
    let id_of = |t: &Tenant| {
        if t.spec.tenant.is_empty() {
            t.name_any()
        } else {
            t.spec.tenant.clone()
        }
    };
    let id_of_cr: BTreeMap<String, String> = svc_tenants
        .iter()
        .map(|t| (t.name_any(), id_of(t)))
        .collect();
    let mut status_of: BTreeMap<String, &TenantStatus> = BTreeMap::new();
    for t in &svc_tenants {
        if let Some(st) = &t.status {
            status_of.entry(id_of(t)).or_insert(st);
        }
    }

    let mut out = inputs.clone();
    let template = &svc.spec.ingester_template_spec.spec;
    for &i in &go_ing {
        let ing = &mut out.ingesters[i];
        let name = ing.name_any();
        let (kept, dropped) = adopt_tenants(&ing.spec.tenants, &known, &id_of_cr);
        let extra = extra_spec_fields(&ing.spec);
        if ing
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(L::STORAGE))
            .is_none()
        {
            ing.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(L::STORAGE.into(), L::LOCAL_STORAGE.into());
        }
        mark_managed(&mut ing.metadata, &ns);
        let claim = go_claim_name(&ing.spec, template);
        ing.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(DATA_CLAIM.into(), claim);
        a.warnings.push(format!(
            "adopting Ingester {ns}/{name} from Whizard: tenants [{}] stay on it; its \
             StatefulSet ingester-{name} is replaced",
            kept.join(", ")
        ));
        if !dropped.is_empty() {
            a.warnings.push(format!(
                "Ingester {ns}/{name}: [{}] name no tenant of the Service; not adopted",
                dropped.join(", ")
            ));
        }
        if !extra.is_empty() {
            a.warnings.push(format!(
                "Ingester {ns}/{name}: spec.{{{}}} of Whizard's Ingester is not kept (the \
                 reconciler plans its Ingesters); set it in spec.ingesterTemplateSpec",
                extra.join(",")
            ));
        }
        ing.spec.tenants = kept;
        a.finalizers.extend(strip("Ingester", &ing.metadata, true));
        a.adopted.push(("Ingester".into(), name));
    }
    for &i in &go_comp {
        let c = &mut out.compactors[i];
        let name = c.name_any();
        let (kept, dropped) = adopt_tenants(&c.spec.tenants, &known, &id_of_cr);
        let extra = extra_spec_fields(&c.spec);
        mark_managed(&mut c.metadata, &ns);
        a.warnings.push(format!(
            "adopting Compactor {ns}/{name} from Whizard: tenants [{}] stay on it; its \
             StatefulSet compactor-{name} is replaced",
            kept.join(", ")
        ));
        if !dropped.is_empty() {
            a.warnings.push(format!(
                "Compactor {ns}/{name}: [{}] name no tenant of the Service; not adopted (no \
                 block deletion is scheduled for them)",
                dropped.join(", ")
            ));
        }
        let extra: Vec<String> = extra.into_iter().filter(|f| f != "retention").collect();
        if !extra.is_empty() {
            a.warnings.push(format!(
                "Compactor {ns}/{name}: spec.{{{}}} of Whizard's Compactor is not kept (the \
                 reconciler plans its Compactors); set it in spec.compactorTemplateSpec",
                extra.join(",")
            ));
        }
        // A retention of its own would make it a class of its own, and its tenants (whose
        // class follows their Tenant's spec.retention) would move: the tenants stay, and the
        // retention is the one the reconciler gives them (warned above and here).
        if let Some(r) = c.spec.retention.take() {
            a.warnings.push(format!(
                "Compactor {ns}/{name}: its spec.retention (raw {:?}, 5m {:?}, 1h {:?}) is not \
                 kept: its tenants get compactorTemplateSpec.retention or their Tenant's \
                 spec.retention; set that before migrating if blocks must be kept longer",
                r.retention_raw, r.retention_5m, r.retention_1h
            ));
        }
        c.spec.tenants = kept;
        a.finalizers.extend(strip("Compactor", &c.metadata, true));
        a.adopted.push(("Compactor".into(), name));
    }
    for &i in &go_store {
        let s = &mut out.stores[i];
        let name = s.name_any();
        mark_managed(&mut s.metadata, &ns);
        a.warnings.push(format!(
            "adopting Store {ns}/{name} from Whizard: its StatefulSets store-{name}[-partition-<i>] \
             are replaced"
        ));
        a.finalizers.extend(strip("Store", &s.metadata, true));
        a.adopted.push(("Store".into(), name));
    }

    // A tenant on two ingesters (or compactors) stays on one: the one its Tenant's status
    // names, else Whizard's, else the first by name.
    let adopted_names: BTreeSet<(String, String)> = a.adopted.iter().cloned().collect();
    let ours =
        |meta: &ObjectMeta| has_service(meta, &key) && naming::is_managed(meta) && live(meta);
    let slots: Vec<(String, Vec<String>)> = out
        .ingesters
        .iter()
        .filter(|i| ours(&i.metadata))
        .map(|i| (i.name_any(), i.spec.tenants.clone()))
        .collect();
    let drop = dedup(
        &slots,
        |t| status_of.get(t).and_then(|s| s.ingester.as_ref()),
        |n| adopted_names.contains(&("Ingester".into(), n.to_string())),
    );
    for i in out.ingesters.iter_mut().filter(|i| ours(&i.metadata)) {
        let name = i.name_any();
        for t in drop.get(&name).into_iter().flatten() {
            i.spec.tenants.retain(|x| x != t);
            a.warnings.push(format!(
                "tenant {t:?} is listed by several Ingesters; it stays where it is written to \
                 and leaves {name}"
            ));
        }
    }
    let slots: Vec<(String, Vec<String>)> = out
        .compactors
        .iter()
        .filter(|c| ours(&c.metadata))
        .map(|c| (c.name_any(), c.spec.tenants.clone()))
        .collect();
    let drop = dedup(
        &slots,
        |t| status_of.get(t).and_then(|s| s.compactor.as_ref()),
        |n| adopted_names.contains(&("Compactor".into(), n.to_string())),
    );
    for c in out.compactors.iter_mut().filter(|c| ours(&c.metadata)) {
        let name = c.name_any();
        for t in drop.get(&name).into_iter().flatten() {
            c.spec.tenants.retain(|x| x != t);
            a.warnings.push(format!(
                "tenant {t:?} is listed by several Compactors; it stays on one and leaves {name}"
            ));
        }
    }
    Adopted {
        inputs: Some(out),
        adoption: a,
    }
}

/// For each tenant listed by several `slots` (`(name, tenants)`), the slots it leaves: it
/// stays on the one `status` names (if among them), else the first `preferred` one, else
/// the first by name. Returns slot name → tenants to drop.
pub fn dedup<'a>(
    slots: &[(String, Vec<String>)],
    status: impl Fn(&str) -> Option<&'a ObjectReference>,
    preferred: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, tenants) in slots {
        for t in tenants {
            let h = holders.entry(t.as_str()).or_default();
            if !h.contains(&name.as_str()) {
                h.push(name.as_str());
            }
        }
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, mut hs) in holders {
        if hs.len() < 2 {
            continue;
        }
        hs.sort();
        let by_status = status(t)
            .map(|r| r.name.as_str())
            .filter(|n| hs.contains(n));
        let keep = by_status
            .or_else(|| hs.iter().copied().find(|n| preferred(n)))
            .unwrap_or(hs[0]);
        for h in hs.into_iter().filter(|h| *h != keep) {
            out.entry(h.to_string()).or_default().push(t.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Placement keeping Whizard's names

fn compactor_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

/// Whether `name` is `auto(prefix, i)` for some `i`.
fn is_auto(name: &str, prefix: &str, auto: fn(&str, usize) -> String) -> bool {
    let digits: String = name
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits
        .parse::<usize>()
        .is_ok_and(|i| auto(prefix, i) == name)
}

/// Names the placement works with for `existing` slots whose names are not ours (alias →
/// real name): a shared one is the lowest `auto` index no slot uses, so first fit fills it
/// before making a new slot; an exclusive one holding an exclusive tenant is that tenant's
/// exclusive name, so the tenant is not moved. An alias some existing slot already has is
/// not used (the slot keeps its name and is treated as before).
pub fn aliases(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    auto: fn(&str, usize) -> String,
) -> BTreeMap<String, String> {
    let exclusive: BTreeSet<&str> = tenants
        .iter()
        .filter(|t| t.exclusive)
        .map(|t| t.id.as_str())
        .collect();
    let mut taken: BTreeSet<String> = existing.iter().map(|s| s.name.clone()).collect();
    let mut sorted: Vec<&Slot> = existing.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted.dedup_by(|a, b| a.name == b.name);
    let mut out = BTreeMap::new();
    let mut next = 0;
    for s in sorted {
        let own_exclusive = s.exclusive
            && s.tenants
                .iter()
                .any(|t| assign::exclusive_name(prefix, t) == s.name);
        if is_auto(&s.name, prefix, auto) || own_exclusive {
            continue;
        }
        let alias = if s.exclusive {
            match s.tenants.iter().find(|t| exclusive.contains(t.as_str())) {
                Some(t) => assign::exclusive_name(prefix, t),
                None => continue,
            }
        } else {
            loop {
                let a = auto(prefix, next);
                next += 1;
                if !taken.contains(&a) {
                    break a;
                }
            }
        };
        if taken.insert(alias.clone()) {
            out.insert(alias, s.name.clone());
        }
    }
    out
}

fn with_aliases(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    auto: fn(&str, usize) -> String,
    run: impl FnOnce(&[Slot]) -> Vec<Slot>,
) -> Vec<Slot> {
    let map = aliases(prefix, existing, tenants, auto);
    if map.is_empty() {
        return run(existing);
    }
    let back: BTreeMap<&String, &String> = map.iter().map(|(a, r)| (r, a)).collect();
    let renamed: Vec<Slot> = existing
        .iter()
        .map(|s| Slot {
            name: back.get(&s.name).map_or(s.name.clone(), |a| (*a).clone()),
            ..s.clone()
        })
        .collect();
    let mut out: Vec<Slot> = run(&renamed)
        .into_iter()
        .map(|mut s| {
            if let Some(real) = map.get(&s.name) {
                s.name = real.clone();
            }
            s
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// [`assign::assign_ingesters_holding`], keeping the names of slots not named by our rule
/// (Whizard's; see [`aliases`]).
pub fn assign_ingesters(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    held: &BTreeSet<String>,
    cap: usize,
    retention_secs: u64,
    now: u64,
) -> Vec<Slot> {
    with_aliases(prefix, existing, tenants, assign::auto_name, |ex| {
        assign::assign_ingesters_holding(prefix, ex, tenants, held, cap, retention_secs, now)
    })
}

/// [`assign::assign_compactors_holding`], keeping the names of slots not named by our rule
/// (Whizard's `generateName` compactors and exclusive ones named after the Tenant CR).
pub fn assign_compactors(
    prefix: &str,
    existing: &[Slot],
    tenants: &[TenantReq],
    held: &BTreeSet<String>,
    cap: usize,
) -> Vec<Slot> {
    with_aliases(prefix, existing, tenants, compactor_name, |ex| {
        assign::assign_compactors_holding(prefix, ex, tenants, held, cap)
    })
}

/// The name of the Store of `storage`: the user's or ours named `<svc>-<storage>` if there
/// is one, else an adopted (managed) Store of that storage (Whizard's name), else
/// `<svc>-<storage>`.
pub fn store_name(
    inputs: &Inputs,
    key: &str,
    svc_name: &str,
    storage: &(String, String),
) -> String {
    let prefix = naming::slot_prefix(svc_name, &Some(storage.clone()));
    let value = format!("{}.{}", storage.0, storage.1);
    let mine: Vec<&Store> = inputs
        .stores
        .iter()
        .filter(|s| has_service(&s.metadata, key) && live(&s.metadata))
        .collect();
    if mine.iter().any(|s| s.name_any() == prefix) {
        return prefix;
    }
    mine.iter()
        .filter(|s| {
            naming::is_managed(&s.metadata) && label(&s.metadata, L::STORAGE) == Some(&value)
        })
        .map(|s| s.name_any())
        .min()
        .unwrap_or(prefix)
}

// ---------------------------------------------------------------------------------------------
// Whizard's workloads

/// Label selector of Whizard's workloads (any component, not ours).
pub fn legacy_selector() -> String {
    let names: Vec<&str> = GO_COMPONENTS.iter().map(|(_, c)| *c).collect();
    format!(
        "{m},{m}!={v},{n} in ({})",
        names.join(","),
        m = L::MANAGED_BY,
        v = L::MANAGED_BY_VALUE,
        n = L::NAME
    )
}

/// Whether an object with `labels` is a workload Whizard made for a component CR of the
/// Service (see [`Adoption::legacy_owners`]).
pub fn is_legacy(adoption: &Adoption, labels: &BTreeMap<String, String>) -> bool {
    let (Some(name), Some(by)) = (labels.get(L::NAME), labels.get(L::MANAGED_BY)) else {
        return false;
    };
    by != L::MANAGED_BY_VALUE && adoption.legacy_owners.contains(&(name.clone(), by.clone()))
}

// ---------------------------------------------------------------------------------------------
// Fields of Whizard's types: honoured through these helpers, or reported

/// Whizard's name of the main container of each component.
pub fn go_main_container(component: &str) -> Option<&'static str> {
    Some(match component {
        "ingester" | "router" => "receive",
        "compactor" => "compactor",
        "store" => "store",
        "query" => "query",
        "query-frontend" => "query-frontend",
        "ruler" => "rule",
        "gateway" => "gateway",
        _ => return None,
    })
}

/// The key items of a container list field are merged on (strategic merge patch keys).
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "env" => "name",
        "volumeMounts" => "mountPath",
        "ports" => "containerPort",
        "volumeDevices" => "devicePath",
        _ => return None,
    })
}

fn merge_object(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                    continue;
                }
                match (a.get_mut(k), merge_key(k), v) {
                    (Some(Value::Array(items)), Some(mk), Value::Array(add)) => {
                        for x in add {
                            match items.iter_mut().find(|i| i[mk] == x[mk]) {
                                Some(i) => merge_object(i, x),
                                None => items.push(x.clone()),
                            }
                        }
                    }
                    (Some(cur @ Value::Object(_)), _, Value::Object(_)) => merge_object(cur, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

/// Whizard's `containers` applied to the generated `containers` of a pod of `component`:
/// an entry named like a generated container — the main one may also be named as Whizard
/// named it (`receive`, `compactor`, ...) — is merged into it (objects key by key, `env`,
/// `volumeMounts`, `ports` and `volumeDevices` item by item on their merge key, other lists
/// replaced, `null` removes); any other entry is added as a container. Not a list: ignored
/// (reported by [`ignored_fields`]).
pub fn patch_containers(
    mut containers: Vec<Value>,
    patch: Option<&Value>,
    component: &str,
) -> Vec<Value> {
    let Some(Value::Array(entries)) = patch else {
        return containers;
    };
    let go_main = go_main_container(component);
    for p in entries {
        let name = p["name"].as_str().unwrap_or_default();
        let at = containers
            .iter()
            .position(|c| c["name"] == name)
            .or_else(|| (go_main == Some(name) && !containers.is_empty()).then_some(0));
        match at {
            Some(i) => {
                let mut p = p.clone();
                if let Some(m) = p.as_object_mut() {
                    m.remove("name");
                }
                merge_object(&mut containers[i], &p);
            }
            None => containers.push(p.clone()),
        }
    }
    containers
}

/// The store's `--index-cache.config` from Whizard's `indexCacheConfig.inMemory.maxSize`.
pub fn index_cache_flag(spec: &StoreSpec) -> Option<String> {
    let max = spec.index_cache_config.as_ref()?["inMemory"]["maxSize"].as_str()?;
    if max.is_empty() {
        return None;
    }
    let cfg = json!({"type": "IN-MEMORY", "config": {"max_size": max}});
    Some(format!("--index-cache.config={cfg}"))
}

/// Whether `path` (dotted, from `v`) holds a non-empty value.
fn present(v: &Value, path: &str) -> bool {
    let mut cur = v;
    for p in path.split('.') {
        cur = &cur[p];
    }
    !is_empty(cur)
}

/// `(path in a component spec, why it is not used)`; `*` components: every component.
const UNUSED: &[(&str, &str, &str)] = &[
    (
        "gateway",
        "debug",
        "the web UI is served behind login with the gateway config's `ui` settings",
    ),
    (
        "query",
        "envoy",
        "there is no envoy sidecar; spec.stores addresses are queried directly",
    ),
    (
        "query",
        "webConfig",
        "only the Gateway's webConfig is used (TLS between components: Service.spec.tlsSecret)",
    ),
    (
        "queryFrontend",
        "webConfig",
        "only the Gateway's webConfig is used (TLS between components: Service.spec.tlsSecret)",
    ),
    (
        "router",
        "webConfig",
        "only the Gateway's webConfig is used (TLS between components: Service.spec.tlsSecret)",
    ),
    (
        "ruler",
        "queryConfig",
        "rulers query through whizard gateway with credentials the reconciler creates",
    ),
    (
        "ruler",
        "remoteWriteConfig",
        "rulers write through whizard gateway with credentials the reconciler creates",
    ),
    ("ruler", "alertmanagersConfig", "use alertmanagersUrl"),
    (
        "ruler",
        "rulerQueryProxy",
        "rulers query through whizard gateway (no proxy sidecar)",
    ),
    (
        "ruler",
        "rulerWriteProxy",
        "rulers write through whizard gateway (no proxy sidecar)",
    ),
    (
        "ruler",
        "prometheusConfigReloader",
        "the rule-file reloader sidecar is the reconciler's own",
    ),
];

fn component_warnings(
    what: &str,
    base: &str,
    component: &str,
    spec: &Value,
    out: &mut Vec<String>,
) {
    for (c, path, why) in UNUSED {
        if (*c == "*" || *c == component) && present(spec, path) {
            out.push(format!(
                "{what}: {base}{path} is accepted but not used: {why}"
            ));
        }
    }
    if component == "query" {
        if let Some(stores) = spec["stores"].as_array() {
            for (i, s) in stores.iter().enumerate() {
                if present(s, "caSecret") {
                    out.push(format!(
                        "{what}: {base}stores[{i}].caSecret is accepted but not used: extra \
                         stores are reached without TLS"
                    ));
                }
            }
        }
    }
    if component == "queryFrontend" && present(spec, "cacheConfig") {
        let t = spec["cacheConfig"]["type"].as_str().unwrap_or_default();
        if t != "IN-MEMORY" || !present(spec, "cacheConfig.inMemory") {
            out.push(format!(
                "{what}: {base}cacheConfig is accepted but not used: only type IN-MEMORY with \
                 inMemory is rendered (got type {t:?})"
            ));
        }
    }
    if present(spec, "containers") && !spec["containers"].is_array() {
        out.push(format!(
            "{what}: {base}containers is accepted but not used: it must be a list of containers"
        ));
    }
}

fn what(kind: &str, meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{kind} {ns}/{}", meta.name.clone().unwrap_or_default()),
        None => format!("{kind} {}", meta.name.clone().unwrap_or_default()),
    }
}

/// Fields of Whizard's types the Service's objects set but the reconciler does not use, one
/// line each (`Service ns/name: spec.rulerTemplateSpec.rulerWriteProxy is accepted but not
/// used: ...`). Covers the Service (its templates, `remoteQuery` credentials and
/// `rulerTemplateSpec.disableAlertingRulesAutoSelection: false`), its component CRs and the
/// Storages its tenants use (`blockManager`, S3 `httpConfig.tlsConfig` Secrets).
pub fn ignored_fields(inputs: &Inputs, checked: &tenants::CheckedTenants) -> Vec<String> {
    let svc = &inputs.service;
    let key = naming::service_key(svc);
    let mut out = Vec::new();
    let sw = what("Service", &svc.metadata);
    let spec = serde_json::to_value(&svc.spec).unwrap_or(Value::Null);
    for (field, component) in [
        ("gatewayTemplateSpec", "gateway"),
        ("routerTemplateSpec", "router"),
        ("queryTemplateSpec", "query"),
        ("queryFrontendTemplateSpec", "queryFrontend"),
        ("ingesterTemplateSpec", "ingester"),
        ("storeTemplateSpec", "store"),
        ("compactorTemplateSpec", "compactor"),
        ("rulerTemplateSpec", "ruler"),
    ] {
        component_warnings(
            &sw,
            &format!("spec.{field}."),
            component,
            &spec[field],
            &mut out,
        );
    }
    for f in ["basicAuth", "bearerToken"] {
        if present(&spec["remoteQuery"], f) {
            out.push(format!(
                "{sw}: spec.remoteQuery.{f} is accepted but not used: the gateway reads from \
                 remoteQuery.url without credentials"
            ));
        }
    }
    if svc
        .spec
        .ruler_template_spec
        .disable_alerting_rules_auto_selection
        == Some(false)
    {
        out.push(format!(
            "{sw}: spec.rulerTemplateSpec.disableAlertingRulesAutoSelection: false is accepted \
             but not used: rulers the reconciler creates get no automatic KubeSphere rule \
             selector (Ruler CRs Whizard created keep theirs); add it to ruleSelectors"
        ));
    }
    fn crs<T: serde::Serialize + kube::Resource>(
        list: &[T],
        key: &str,
        kind: &str,
        component: &str,
        out: &mut Vec<String>,
    ) {
        let mut mine: Vec<&T> = list
            .iter()
            .filter(|o| has_service(o.meta(), key) && !naming::is_managed(o.meta()))
            .collect();
        mine.sort_by_key(|o| o.meta().name.clone());
        for o in mine {
            let v = serde_json::to_value(o).unwrap_or(Value::Null);
            component_warnings(&what(kind, o.meta()), "spec.", component, &v["spec"], out);
        }
    }
    crs(&inputs.gateways, &key, "Gateway", "gateway", &mut out);
    crs(&inputs.routers, &key, "Router", "router", &mut out);
    crs(&inputs.queries, &key, "Query", "query", &mut out);
    crs(
        &inputs.query_frontends,
        &key,
        "QueryFrontend",
        "queryFrontend",
        &mut out,
    );
    crs(&inputs.stores, &key, "Store", "store", &mut out);
    crs(&inputs.rulers, &key, "Ruler", "ruler", &mut out);

    let mut used: BTreeSet<(String, String)> = checked
        .tenants
        .iter()
        .filter_map(|t| t.storage.clone())
        .collect();
    if let Some(r) = svc.spec.storage.as_ref().filter(|r| !r.name.is_empty()) {
        let ns = if r.namespace.is_empty() {
            svc.namespace().unwrap_or_default()
        } else {
            r.namespace.clone()
        };
        used.insert((ns, r.name.clone()));
    }
    for s in &inputs.storages {
        if !used.contains(&(s.namespace().unwrap_or_default(), s.name_any())) {
            continue;
        }
        let w = what("Storage", &s.metadata);
        if s.spec.block_manager.as_ref().is_some_and(|b| !is_empty(b)) {
            out.push(format!(
                "{w}: spec.blockManager is accepted but not used: there is no block manager; \
                 removed tenants' blocks are deleted by Jobs (docs/reconciler.md)"
            ));
        }
        for f in s.spec.s3.iter().flat_map(|s3| s3.ignored_fields()) {
            out.push(format!(
                "{w}: spec.S3.{f} is accepted but not used: the Secret is not mounted into the \
                 components"
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Applying (the controller's part)

/// Before our objects are applied: deletes Whizard's workloads of the Service's component CRs
/// (their immutable selectors differ from ours; the objects are recreated under the same
/// names by the apply) and removes Whizard's finalizers. Returns the number of workloads
/// deleted.
pub async fn before_apply(
    client: &kube::Client,
    ns: &str,
    adoption: &Adoption,
) -> Result<usize, kube::Error> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    use k8s_openapi::api::core::v1::Service as CoreService;
    use kube::api::{Api, DeleteParams, ListParams};

    let mut deleted = 0;
    if !adoption.legacy_owners.is_empty() {
        let lp = ListParams::default().labels(&legacy_selector());
        macro_rules! replace {
            ($t:ty) => {{
                let api: Api<$t> = Api::namespaced(client.clone(), ns);
                for o in api.list(&lp).await?.items {
                    if !is_legacy(adoption, o.labels()) {
                        continue;
                    }
                    let name = o.name_any();
                    tracing::info!(
                        name,
                        kind = stringify!($t),
                        "deleting Whizard's workload (replaced)"
                    );
                    match api.delete(&name, &DeleteParams::background()).await {
                        Ok(_) => deleted += 1,
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }};
        }
        replace!(StatefulSet);
        replace!(Deployment);
        replace!(CoreService);
    }
    for f in &adoption.finalizers {
        let mut patch = json!({"metadata": {"finalizers": f.keep}});
        if let Some(rv) = &f.resource_version {
            patch["metadata"]["resourceVersion"] = json!(rv);
        }
        let pp = kube::api::PatchParams::default();
        let p = kube::api::Patch::Merge(&patch);
        let ns = f.namespace.as_deref().unwrap_or(ns);
        let r = match f.kind.as_str() {
            "Tenant" => Api::<Tenant>::all(client.clone())
                .patch(&f.name, &pp, &p)
                .await
                .map(|_| ()),
            "Ingester" => Api::<Ingester>::namespaced(client.clone(), ns)
                .patch(&f.name, &pp, &p)
                .await
                .map(|_| ()),
            "Compactor" => Api::<Compactor>::namespaced(client.clone(), ns)
                .patch(&f.name, &pp, &p)
                .await
                .map(|_| ()),
            "Store" => Api::<Store>::namespaced(client.clone(), ns)
                .patch(&f.name, &pp, &p)
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
        match r {
            Ok(()) => {
                tracing::info!(kind = %f.kind, name = %f.name, "removed Whizard's finalizers")
            }
            // Gone, or changed since it was read: the next reconcile tries again.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// After applying and pruning: deletes adopted CRs that are not in `desired` (e.g. an
/// emptied ingester past its retention); pruning does not see them, they are not labelled
/// ours. Returns how many were deleted.
pub async fn after_apply(
    client: &kube::Client,
    ns: &str,
    adoption: &Adoption,
    desired: &[Value],
) -> Result<usize, kube::Error> {
    use kube::api::{Api, DeleteParams};
    let mut deleted = 0;
    for (kind, name) in &adoption.adopted {
        let planned = desired
            .iter()
            .any(|o| o["kind"] == kind.as_str() && o["metadata"]["name"] == name.as_str());
        if planned {
            continue;
        }
        let dp = DeleteParams::background();
        let r = match kind.as_str() {
            "Ingester" => Api::<Ingester>::namespaced(client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "Compactor" => Api::<Compactor>::namespaced(client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "Store" => Api::<Store>::namespaced(client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
        match r {
            Ok(()) => deleted += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Logs the warnings and publishes them as one Warning event on the Service.
pub async fn report(
    svc: &Service,
    adoption: &Adoption,
    recorder: Option<&kube::runtime::events::Recorder>,
) {
    use kube::runtime::events::{Event, EventType};
    use kube::Resource;
    if adoption.warnings.is_empty() {
        return;
    }
    let key = naming::service_key(svc);
    for w in &adoption.warnings {
        tracing::warn!(service = %key, "{w}");
    }
    let Some(rec) = recorder else { return };
    let note = format!(
        "{} warning(s) about Whizard objects and fields: {}",
        adoption.warnings.len(),
        adoption.warnings.join("; ")
    );
    let _ = rec
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: "WhizardCompatibility".into(),
                note: Some(note.chars().take(1000).collect()),
                action: "Plan".into(),
                secondary: None,
            },
            &svc.object_ref(&()),
        )
        .await;
}
