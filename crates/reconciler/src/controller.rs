//! The thin kube adapter: read the CRs of a Service, run the planner and renderer, apply the
//! result with server-side apply (field manager `whizard-reconciler`), prune what is no longer
//! wanted, write `status` on Tenants, publish events on errors, back off on failure.
//!
//! Ownership: every generated object carries an owner reference to its `Service` CR, so
//! deleting the Service garbage-collects the stack; the Service carries the finalizer
//! [`FINALIZER`], whose cleanup clears the status of the Service's Tenants.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::{json, Value};

use super::crd::{labels as L, *};
use super::deletion::{JobState, PendingDeletion};
use super::error::Error;
use super::metrics::Metrics;
use super::model::{self, Inputs};
use super::naming;
use super::planner;
use super::render;

pub const FIELD_MANAGER: &str = "whizard-reconciler";
pub const FINALIZER: &str = "monitoring.whizard.io/reconciler";
const MAX_CONFLICT_RETRIES: usize = 3;

pub struct Context {
    pub client: Client,
    pub recorder: Option<Recorder>,
    pub metrics: Metrics,
    /// Consecutive failures per Service, for exponential backoff.
    pub failures: Mutex<BTreeMap<String, u32>>,
    /// Clock (unix seconds); replaceable in tests.
    pub now: fn() -> u64,
    /// What each Service's last reconcile read, for mapping Secret and rule group changes to
    /// the Services they concern.
    pub watched: Watched,
}

/// The Secrets and tenant ids each Service's last reconcile read: a change to a Secret or a
/// RuleGroup/ClusterRuleGroup (which name no Service) reconciles exactly the Services that
/// read it.
#[derive(Debug, Default)]
pub struct Watched {
    reads: Mutex<std::collections::HashMap<ObjectRef<Service>, Reads>>,
}

#[derive(Debug, Default, Clone)]
struct Reads {
    /// `(namespace, name)`.
    secrets: BTreeSet<(String, String)>,
    tenants: BTreeSet<String>,
}

impl Watched {
    /// Records what `inputs` (of its Service) read: the referenced Secrets and the ids of the
    /// Service's tenants.
    pub fn record(&self, inputs: &Inputs) {
        let svc = &inputs.service;
        let ns = svc.namespace().unwrap_or_default();
        let key = naming::service_key(svc);
        let reads = Reads {
            secrets: planner::referenced_secret_names(inputs)
                .into_iter()
                .map(|n| (ns.clone(), n))
                .collect(),
            tenants: inputs
                .tenants
                .iter()
                .filter(|t| t.labels().get(L::SERVICE) == Some(&key))
                .map(|t| {
                    if t.spec.tenant.is_empty() {
                        t.name_any()
                    } else {
                        t.spec.tenant.clone()
                    }
                })
                .collect(),
        };
        self.reads
            .lock()
            .unwrap()
            .insert(ObjectRef::from_obj(svc), reads);
    }

    /// Forgets a deleted Service.
    pub fn forget(&self, svc: &Service) {
        self.reads.lock().unwrap().remove(&ObjectRef::from_obj(svc));
    }

    fn services(&self, pred: impl Fn(&Reads) -> bool) -> Vec<ObjectRef<Service>> {
        let reads = self.reads.lock().unwrap();
        reads
            .iter()
            .filter(|(_, r)| pred(r))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The Services whose last reconcile read Secret `ns/name`.
    pub fn secret_readers(&self, ns: &str, name: &str) -> Vec<ObjectRef<Service>> {
        let k = (ns.to_string(), name.to_string());
        self.services(|r| r.secrets.contains(&k))
    }

    /// The Services with a tenant `id`.
    pub fn tenant_services(&self, id: &str) -> Vec<ObjectRef<Service>> {
        self.services(|r| r.tenants.contains(id))
    }
}

/// The Service named by `meta`'s `monitoring.whizard.io/service=<ns>.<name>` label.
pub fn labelled_service(meta: &kube::api::ObjectMeta) -> Option<ObjectRef<Service>> {
    let v = meta.labels.as_ref()?.get(L::SERVICE)?;
    let (ns, name) = v.split_once('.')?;
    Some(ObjectRef::new(name).within(ns))
}

/// Services concerned by a change of a namespaced object the planner reads by namespace
/// (Storage, Store, Ruler, QueryFrontend, GlobalRuleGroup): the labelled Service, else every
/// Service of the object's namespace.
pub fn services_of_namespaced(
    meta: &kube::api::ObjectMeta,
    services: &[Arc<Service>],
) -> Vec<ObjectRef<Service>> {
    if let Some(s) = labelled_service(meta) {
        return vec![s];
    }
    services
        .iter()
        .filter(|s| s.metadata.namespace.is_some() && s.metadata.namespace == meta.namespace)
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Services concerned by a RuleGroup or ClusterRuleGroup: the labelled Service, else the
/// Services with the tenant of its `monitoring.whizard.io/tenant` label.
pub fn services_of_rule_group(
    meta: &kube::api::ObjectMeta,
    watched: &Watched,
) -> Vec<ObjectRef<Service>> {
    if let Some(s) = labelled_service(meta) {
        return vec![s];
    }
    match meta.labels.as_ref().and_then(|l| l.get(L::TENANT)) {
        Some(t) => watched.tenant_services(t),
        None => Vec::new(),
    }
}

/// Services concerned by a Secret: those whose last reconcile read it. Generated Secrets
/// (managed-by the reconciler) concern none: their changes are the reconciler's own.
pub fn services_of_secret(
    meta: &kube::api::ObjectMeta,
    watched: &Watched,
) -> Vec<ObjectRef<Service>> {
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(L::MANAGED_BY))
        .is_some_and(|v| v == L::MANAGED_BY_VALUE);
    match (&meta.namespace, &meta.name) {
        (Some(ns), Some(name)) if !managed => watched.secret_readers(ns, name),
        _ => Vec::new(),
    }
}

fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Context {
    pub fn new(client: Client, registry: &prometheus::Registry) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Some(Recorder::new(client.clone(), reporter)),
            client,
            metrics: Metrics::new(registry),
            failures: Mutex::new(BTreeMap::new()),
            now: system_now,
            watched: Watched::default(),
        }
    }
}

/// Options of `whizard reconciler`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Address of `/metrics` and `/healthz`.
    pub metrics_addr: std::net::SocketAddr,
    /// Leader election (None: this replica always works).
    pub leader: Option<super::leader::LeaderConfig>,
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs `whizard reconciler` until SIGTERM/SIGINT: the metrics/health listener and the
/// controller.
pub async fn run(opts: RunOptions) -> Result<(), Error> {
    let registry = prometheus::Registry::new();
    let client = Client::try_default().await?;
    let ctx = Arc::new(Context::new(client.clone(), &registry));
    let listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .map_err(|e| Error::Other(format!("metrics listener {}: {e}", opts.metrics_addr)))?;
    tracing::info!(addr = %opts.metrics_addr, "serving /metrics and /healthz");
    tokio::spawn(super::http::serve(listener, registry));
    match opts.leader {
        None => {
            ctx.metrics.leader.set(1);
            run_controller(client, ctx).await
        }
        Some(cfg) => {
            tracing::info!(lease = %format!("{}/{}", cfg.namespace, cfg.name), identity = %cfg.identity, "leader election");
            let lock = super::leader::LeaseLock::new(client.clone(), cfg);
            let gauge = ctx.metrics.leader.clone();
            let work = move || run_controller(client.clone(), ctx.clone());
            super::leader::lead(lock, gauge, work, shutdown_signal()).await
        }
    }
}

/// The controller of Services with every watch that changes a plan, except PrometheusRules
/// (see [`run_controller`]):
/// * generated objects (managed-by label) through their owner reference;
/// * Tenant, Gateway, Router, Query: the Service of their `service` label;
/// * Storage, Store, Ruler, QueryFrontend, GlobalRuleGroup: the labelled Service, else every
///   Service of their namespace ([`services_of_namespaced`]);
/// * RuleGroup, ClusterRuleGroup: the labelled Service, else the Services of their tenant
///   ([`services_of_rule_group`]);
/// * Secrets: the Services whose last reconcile read them ([`services_of_secret`]; Helm
///   release Secrets are not watched).
pub fn controller(client: Client, ctx: Arc<Context>) -> Controller<Service> {
    use k8s_openapi::api::core::v1::Secret;
    let by_service_label = |meta: &kube::api::ObjectMeta| labelled_service(meta);
    let owned =
        watcher::Config::default().labels(&format!("{}={}", L::MANAGED_BY, L::MANAGED_BY_VALUE));
    let controller = Controller::new(Api::<Service>::all(client.clone()), Default::default());
    let services = controller.store();
    let in_namespace =
        move |meta: &kube::api::ObjectMeta| services_of_namespaced(meta, &services.state());
    let (rg_ctx, crg_ctx, secret_ctx) = (ctx.clone(), ctx.clone(), ctx);
    controller
        .owns(Api::<Ingester>::all(client.clone()), owned.clone())
        .owns(Api::<Compactor>::all(client.clone()), owned.clone())
        .owns(
            Api::<k8s_openapi::api::apps::v1::StatefulSet>::all(client.clone()),
            owned.clone(),
        )
        .owns(
            Api::<k8s_openapi::api::apps::v1::Deployment>::all(client.clone()),
            owned.clone(),
        )
        .owns(
            Api::<k8s_openapi::api::batch::v1::Job>::all(client.clone()),
            owned.clone(),
        )
        .watches(
            Api::<Tenant>::all(client.clone()),
            Default::default(),
            move |t| by_service_label(&t.metadata),
        )
        .watches(
            Api::<Gateway>::all(client.clone()),
            Default::default(),
            move |o| by_service_label(&o.metadata),
        )
        .watches(
            Api::<Router>::all(client.clone()),
            Default::default(),
            move |o| by_service_label(&o.metadata),
        )
        .watches(
            Api::<Query>::all(client.clone()),
            Default::default(),
            move |o| by_service_label(&o.metadata),
        )
        .watches(Api::<Storage>::all(client.clone()), Default::default(), {
            let f = in_namespace.clone();
            move |o| f(&o.metadata)
        })
        .watches(Api::<Store>::all(client.clone()), Default::default(), {
            let f = in_namespace.clone();
            move |o| f(&o.metadata)
        })
        .watches(Api::<Ruler>::all(client.clone()), Default::default(), {
            let f = in_namespace.clone();
            move |o| f(&o.metadata)
        })
        .watches(
            Api::<QueryFrontend>::all(client.clone()),
            Default::default(),
            {
                let f = in_namespace.clone();
                move |o| f(&o.metadata)
            },
        )
        .watches(
            Api::<GlobalRuleGroup>::all(client.clone()),
            Default::default(),
            move |o| in_namespace(&o.metadata),
        )
        .watches(
            Api::<RuleGroup>::all(client.clone()),
            Default::default(),
            move |o| services_of_rule_group(&o.metadata, &rg_ctx.watched),
        )
        .watches(
            Api::<ClusterRuleGroup>::all(client.clone()),
            Default::default(),
            move |o| services_of_rule_group(&o.metadata, &crg_ctx.watched),
        )
        .watches(
            Api::<Secret>::all(client),
            watcher::Config::default().fields("type!=helm.sh/release.v1"),
            move |o| services_of_secret(&o.metadata, &secret_ctx.watched),
        )
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run_controller(client: Client, ctx: Arc<Context>) -> Result<(), Error> {
    let mut controller = controller(client.clone(), ctx.clone());
    // PrometheusRules name no Service: any change reconciles every Service (few per cluster).
    // Without prometheus-operator's CRD there is nothing to watch.
    let prom: Api<PrometheusRule> = Api::all(client.clone());
    match prom.list(&ListParams::default().limit(1)).await {
        Ok(_) => {
            let trigger = watcher(prom, watcher::Config::default())
                .default_backoff()
                .touched_objects()
                .filter_map(|r| futures_util::future::ready(r.ok().map(|_| ())));
            controller = controller.reconcile_all_on(trigger);
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::info!("PrometheusRule CRD not installed; not watching PrometheusRules");
        }
        Err(e) => return Err(e.into()),
    }
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(service = %obj, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
    Ok(())
}

/// One reconciliation of a Service (finalizer-wrapped).
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let key = naming::service_key(&svc);
    let _timer = ctx
        .metrics
        .duration
        .with_label_values(&["Service"])
        .start_timer();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let res = finalizer(&api, FINALIZER, svc.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(svc) => apply_service(&svc, &ctx).await,
            FinalizerEvent::Cleanup(svc) => cleanup_service(&svc, &ctx).await,
        }
    })
    .await;
    let result = if res.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciles
        .with_label_values(&["Service", result])
        .inc();
    match res {
        Ok(action) => {
            ctx.failures.lock().unwrap().remove(&key);
            Ok(action)
        }
        Err(e) => {
            let msg = e.to_string();
            if let Some(rec) = &ctx.recorder {
                let _ = rec
                    .publish(
                        &Event {
                            type_: EventType::Warning,
                            reason: "ReconcileFailed".into(),
                            note: Some(msg.chars().take(1000).collect()),
                            action: "Reconcile".into(),
                            secondary: None,
                        },
                        &svc.object_ref(&()),
                    )
                    .await;
            }
            Err(Error::Finalizer(msg))
        }
    }
}

/// Exponential backoff per Service: 5s, 10s, 20s, ... capped at 5 minutes.
pub fn error_policy(svc: Arc<Service>, _err: &Error, ctx: Arc<Context>) -> Action {
    let key = naming::service_key(&svc);
    ctx.metrics.failures.with_label_values(&[&key]).inc();
    let mut f = ctx.failures.lock().unwrap();
    let n = f.entry(key).or_insert(0);
    *n = n.saturating_add(1);
    Action::requeue(backoff(*n))
}

pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(300))
}

async fn list_ns<K>(client: &Client, ns: &str) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api.list(&ListParams::default()).await?.items)
}

async fn list_all<K>(client: &Client) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Reads everything the planner needs for `svc`.
pub async fn load_inputs(svc: &Service, ctx: &Context) -> Result<Inputs, Error> {
    let c = &ctx.client;
    let ns = svc.namespace().unwrap_or_default();
    let seed = ensure_seed(svc, ctx).await?;
    let mut inputs = Inputs {
        service: svc.clone(),
        storages: list_ns(c, &ns).await?,
        tenants: list_all(c).await?,
        gateways: list_ns(c, &ns).await?,
        routers: list_ns(c, &ns).await?,
        queries: list_ns(c, &ns).await?,
        query_frontends: list_ns(c, &ns).await?,
        ingesters: list_ns(c, &ns).await?,
        compactors: list_ns(c, &ns).await?,
        stores: list_ns(c, &ns).await?,
        rulers: list_ns(c, &ns).await?,
        rule_groups: list_all(c).await?,
        cluster_rule_groups: list_all(c).await?,
        global_rule_groups: list_ns(c, &ns).await?,
        prometheus_rules: prometheus_rules(c).await?,
        secrets: Default::default(),
        namespaces: list_all::<k8s_openapi::api::core::v1::Namespace>(c)
            .await?
            .into_iter()
            .map(|n| (n.name_any(), n.metadata.labels.unwrap_or_default()))
            .collect(),
        pending_deletions: read_deletions(svc, ctx).await?,
        deletion_jobs: deletion_jobs(svc, ctx).await?,
        now: (ctx.now)(),
        seed,
        password_hashes: stored_password_hashes(svc, ctx).await?,
    };
    inputs.secrets = referenced_secrets(&inputs, ctx).await?;
    Ok(inputs)
}

/// The Secrets the plan reads ([`planner::referenced_secret_names`]); absent ones are left
/// out (the planner reports them unless optional).
async fn referenced_secrets(
    inputs: &Inputs,
    ctx: &Context,
) -> Result<super::model::Secrets, Error> {
    use k8s_openapi::api::core::v1::Secret;
    let ns = inputs.service.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut out = BTreeMap::new();
    for name in planner::referenced_secret_names(inputs) {
        if let Some(sec) = api.get_opt(&name).await? {
            let data = sec
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            out.insert(name, data);
        }
    }
    Ok(out)
}

/// The password hashes kept in the Service's gateway config Secrets (see
/// [`super::credentials`]); unreadable ones are ignored (those hashes are computed anew).
async fn stored_password_hashes(
    svc: &Service,
    ctx: &Context,
) -> Result<super::credentials::StoredHashes, Error> {
    use k8s_openapi::api::core::v1::Secret;
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{},{}=gateway", managed_selector(svc), L::COMPONENT);
    let mut out = BTreeMap::new();
    for sec in api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let Some(v) = sec
            .data
            .as_ref()
            .and_then(|d| d.get(super::credentials::HASHES_KEY))
        else {
            continue;
        };
        match super::credentials::parse(&String::from_utf8_lossy(&v.0)) {
            Some(h) => out.extend(h),
            None => {
                tracing::warn!(secret = %sec.name_any(), "unreadable stored password hashes; hashing anew")
            }
        }
    }
    Ok(out)
}

/// Every PrometheusRule; none when prometheus-operator's CRD is not installed (404).
async fn prometheus_rules(client: &Client) -> Result<Vec<PrometheusRule>, Error> {
    match list_all::<PrometheusRule>(client).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => Ok(Vec::new()),
        other => other,
    }
}

/// Pending block deletions from the state ConfigMap (absent: none). A corrupt ConfigMap is
/// an error, not "none": forgetting a pending deletion would leave the blocks forever.
async fn read_deletions(svc: &Service, ctx: &Context) -> Result<Vec<PendingDeletion>, Error> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let name = render::deletions_configmap_name(&svc.name_any());
    let Some(cm) = api.get_opt(&name).await? else {
        return Ok(Vec::new());
    };
    match cm.data.as_ref().and_then(|d| d.get(render::DELETIONS_KEY)) {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::Other(format!("ConfigMap {ns}/{name}: {e}"))),
    }
}

/// States of the Service's deletion Jobs by `(tenant, storage)`; a success anywhere wins.
async fn deletion_jobs(
    svc: &Service,
    ctx: &Context,
) -> Result<BTreeMap<(String, String), JobState>, Error> {
    use k8s_openapi::api::batch::v1::Job;
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let list = api
        .list(&ListParams::default().labels(&managed_selector(svc)))
        .await?;
    let mut out = BTreeMap::new();
    for job in list.items {
        let ann = job.annotations();
        let (Some(t), Some(s)) = (ann.get(L::DELETION_TENANT), ann.get(L::DELETION_STORAGE)) else {
            continue;
        };
        let st = job.status.clone().unwrap_or_default();
        let has = |kind: &str| {
            st.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == kind && c.status == "True")
        };
        let state = if st.succeeded.unwrap_or(0) > 0 || has("Complete") {
            JobState::Succeeded
        } else if has("Failed") {
            JobState::Failed
        } else {
            JobState::Running
        };
        let e = out.entry((t.clone(), s.clone())).or_insert(state);
        if state == JobState::Succeeded {
            *e = state;
        }
    }
    Ok(out)
}

fn managed_selector(svc: &Service) -> String {
    format!(
        "{}={},{}={}",
        L::MANAGED_BY,
        L::MANAGED_BY_VALUE,
        L::SERVICE,
        naming::service_key(svc)
    )
}

fn seed_secret_name(svc: &Service) -> String {
    format!("{}-credentials-seed", svc.name_any())
}

/// The credentials seed lives in a Secret `<svc>-credentials-seed` created once with random
/// bytes (unless the Service pins one with the `credentials-seed` annotation).
async fn ensure_seed(svc: &Service, ctx: &Context) -> Result<String, Error> {
    use k8s_openapi::api::core::v1::Secret;
    if let Some(s) = svc.annotations().get(L::CREDENTIALS_SEED) {
        return Ok(s.clone());
    }
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = seed_secret_name(svc);
    if let Some(sec) = api.get_opt(&name).await? {
        if let Some(v) = sec.data.as_ref().and_then(|d| d.get("seed")) {
            return Ok(String::from_utf8_lossy(&v.0).into_owned());
        }
    }
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::Other(format!("reading /dev/urandom: {e}")))?;
    let seed: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns, "labels": {
            L::MANAGED_BY: L::MANAGED_BY_VALUE, L::SERVICE: naming::service_key(svc)}},
        "stringData": {"seed": seed},
    });
    set_owner(&mut obj, svc);
    // Create, not apply: a concurrent creator wins and we read theirs next time.
    let sec: Secret = serde_json::from_value(obj).map_err(|e| Error::Other(e.to_string()))?;
    match api.create(&Default::default(), &sec).await {
        Ok(_) => Ok(seed),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Other(
            "credentials seed Secret created concurrently; retrying".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

fn set_owner(obj: &mut Value, svc: &Service) {
    if let Some(o) = svc.controller_owner_ref(&()) {
        obj["metadata"]["ownerReferences"] = json!([o]);
    }
}

fn api_for(client: &Client, obj: &Value) -> Result<(Api<DynamicObject>, ApiResource), Error> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let plural = match kind {
        "Query" => "queries".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    Ok((Api::namespaced_with(client.clone(), ns, &ar), ar))
}

/// Server-side apply of one object, retrying on 409 conflicts.
pub async fn apply_object(client: &Client, obj: &Value) -> Result<(), Error> {
    let (api, _) = api_for(client, obj)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut attempt = 0;
    loop {
        match api.patch(name, &pp, &Patch::Apply(obj)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < MAX_CONFLICT_RETRIES => {
                attempt += 1;
                tracing::info!(name, attempt, "conflict applying; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Kinds the reconciler generates, for pruning: `(apiVersion, kind)`.
pub const PRUNED_KINDS: &[(&str, &str)] = &[
    (API_VERSION, "Ingester"),
    (API_VERSION, "Compactor"),
    (API_VERSION, "Store"),
    (API_VERSION, "Ruler"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("batch/v1", "Job"),
];

/// Deletes managed objects of the Service that are not in `desired`; returns the kinds of the
/// deleted objects (one entry each).
pub async fn prune(
    client: &Client,
    svc: &Service,
    desired: &[Value],
) -> Result<Vec<&'static str>, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let keep: BTreeSet<(String, String)> = desired
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let selector = managed_selector(svc);
    let mut deleted = Vec::new();
    for (api_version, kind) in PRUNED_KINDS {
        let probe = json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": ns}});
        let (api, _) = api_for(client, &probe)?;
        let list = api.list(&ListParams::default().labels(&selector)).await?;
        for o in list.items {
            let name = o.name_any();
            if *kind == "Secret" && name == seed_secret_name(svc) {
                continue;
            }
            if !keep.contains(&(kind.to_string(), name.clone())) {
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => deleted.push(*kind),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(deleted)
}

/// Writes `status` of each Tenant (merge patch on the status subresource).
pub async fn write_tenant_status(
    client: &Client,
    status: &BTreeMap<String, TenantStatus>,
) -> Result<(), Error> {
    let api: Api<Tenant> = Api::all(client.clone());
    for (name, st) in status {
        let patch = json!({"status": st});
        let mut attempt = 0;
        loop {
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 404 => break,
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn apply_service(svc: &Service, ctx: &Context) -> Result<Action, Error> {
    let inputs = load_inputs(svc, ctx).await?;
    ctx.watched.record(&inputs);
    let plan = planner::plan(&inputs)?;
    ctx.metrics
        .password_hashes
        .inc_by(plan.password_hashes_computed as u64);
    let mut objects = render::render_plan(&plan, svc);
    // Whizard's (Go) workloads are replaced, not run beside ours (see `adopt`).
    super::adopt::before_apply(&ctx.client, &plan.namespace, &plan.adoption).await?;
    for o in &mut objects {
        set_owner(o, svc);
        apply_object(&ctx.client, o).await?;
        ctx.metrics
            .applied
            .with_label_values(&[o["kind"].as_str().unwrap_or_default()])
            .inc();
    }
    for kind in prune(&ctx.client, svc, &objects).await? {
        ctx.metrics.pruned.with_label_values(&[kind]).inc();
    }
    super::adopt::after_apply(&ctx.client, &plan.namespace, &plan.adoption, &objects).await?;
    write_tenant_status(&ctx.client, &plan.tenant_status).await?;
    report_problems(svc, &inputs, &plan, ctx).await;
    super::adopt::report(svc, &plan.adoption, ctx.recorder.as_ref()).await;
    let key = naming::service_key(svc);
    let failed = plan
        .due_deletions
        .iter()
        .filter(|d| {
            inputs
                .deletion_jobs
                .get(&(d.tenant.clone(), d.storage.clone()))
                == Some(&JobState::Failed)
        })
        .count();
    let due = plan.due_deletions.len();
    for (state, n) in [
        ("waiting", plan.deletions.len() - due),
        ("running", due - failed),
        ("failed", failed),
    ] {
        ctx.metrics
            .tenant_deletions
            .with_label_values(&[key.as_str(), state])
            .set(n as i64);
    }
    let now = inputs.now;
    Ok(match plan.requeue_at {
        Some(at) => Action::requeue(Duration::from_secs(at.saturating_sub(now).max(1))),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Logs each per-tenant problem of the plan and publishes it as a Warning event on its Tenant
/// (or on the Service when no Tenant is concerned). The rest of the plan is applied anyway.
async fn report_problems(
    svc: &Service,
    inputs: &model::Inputs,
    plan: &planner::Plan,
    ctx: &Context,
) {
    let key = naming::service_key(svc);
    for p in &plan.problems {
        tracing::warn!(service = %key, tenant = p.tenant_cr.as_deref().unwrap_or(""), reason = %p.reason, "{}", p.message);
        let Some(rec) = &ctx.recorder else { continue };
        let target = p
            .tenant_cr
            .as_ref()
            .and_then(|cr| inputs.tenants.iter().find(|t| t.name_any() == *cr))
            .map(|t| t.object_ref(&()))
            .unwrap_or_else(|| svc.object_ref(&()));
        let _ = rec
            .publish(
                &Event {
                    type_: EventType::Warning,
                    reason: p.reason.chars().take(128).collect(),
                    note: Some(
                        format!("Service {key}: {}", p.message)
                            .chars()
                            .take(1000)
                            .collect(),
                    ),
                    action: "Plan".into(),
                    secondary: None,
                },
                &target,
            )
            .await;
    }
}

async fn cleanup_service(svc: &Service, ctx: &Context) -> Result<Action, Error> {
    // Generated objects are garbage-collected through their owner references; clear the
    // status of the Service's tenants so they do not point at deleted components.
    ctx.watched.forget(svc);
    let key = naming::service_key(svc);
    let tenants: Vec<Tenant> = list_all(&ctx.client).await?;
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    for t in tenants
        .iter()
        .filter(|t| t.labels().get(L::SERVICE) == Some(&key))
    {
        let patch = json!({"status": null});
        match api
            .patch_status(
                &t.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}
