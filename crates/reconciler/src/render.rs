//! Plan → Kubernetes objects (built as k8s-openapi types, handed on as JSON values with
//! `apiVersion`/`kind` set), and `render --from DIR`.
//!
//! The CRs' free-form fields (resources, affinity, tolerations, claim templates, container
//! patches, ...) are set on an object's JSON as written (see [`Verbatim`]).
//!
//! Names follow Whizard: `<component>-<cr name>[-suffix]` (`ingester-<n>` StatefulSet with
//! headless Service `ingester-<n>-operated`, `router-<n>-hashrings-config`, `store-<n>` /
//! `store-<n>-partition-<i>`, `ruler-<n>-<shard>`, `ruler-<n>-rulefiles-<shard>-<k>`).
//! Output order is fixed (by kind, then name), so `render` is deterministic.

use std::collections::BTreeMap;
use std::path::Path;

use kube::ResourceExt;
use md5::{Digest, Md5};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

// Core `Service`/`ServiceSpec`/`SecretKeySelector` go by `corev1::`: the CRDs have their own.
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    self as corev1, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretVolumeSource, SecurityContext,
    ServicePort, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::crd::{labels as L, *};
use super::gateway_config::{self as gc, *};
use super::merge::merge_flags;
use super::model::{self, Inputs};
use super::naming;
use super::planner::{self, effective, Plan, PlannedRuler};

const DATA_DIR: &str = "/thanos";
const OBJSTORE_DIR: &str = "/etc/whizard/objstore";
const TLS_DIR: &str = "/etc/whizard/tls";
/// Rule ConfigMaps are mounted at `<RULES_DIR>/<configmap>`.
const RULES_DIR: &str = "/etc/thanos/rules";
/// External label of each ruler pod (its name); dropped from alerts.
const RULER_REPLICA_LABEL: &str = "ruler_replica";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index}: {message}")]
    Parse {
        path: String,
        index: usize,
        message: String,
    },
    #[error("Service {service}: {source}")]
    Plan {
        service: String,
        source: model::PlanError,
    },
    /// Everything else was rendered (`output`), but some objects could not be, or the input
    /// has fields the reconciler does not know.
    #[error("{} problem(s):\n  {}", problems.len(), problems.join("\n  "))]
    Problems {
        output: String,
        problems: Vec<String>,
    },
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Ctx<'a> {
    plan: &'a Plan,
    svc: &'a ServiceSpec,
    ns: &'a str,
    svc_key: String,
}

impl Ctx<'_> {
    fn labels(&self, component: &str, instance: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector(component, instance);
        labels.extend([
            (L::COMPONENT.into(), component.into()),
            (L::MANAGED_BY.into(), L::MANAGED_BY_VALUE.into()),
            (L::SERVICE.into(), self.svc_key.clone()),
        ]);
        labels
    }
    fn selector(&self, component: &str, instance: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (L::NAME.into(), component.into()),
            (L::INSTANCE.into(), instance.into()),
        ])
    }
    fn label_selector(&self, component: &str, instance: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector(component, instance)),
            match_expressions: None,
        }
    }
    fn meta(&self, name: &str, component: &str, instance: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.ns.into()),
            labels: Some(self.labels(component, instance)),
            ..ObjectMeta::default()
        }
    }
    fn tls(&self) -> bool {
        !self.svc.tls_secret.is_empty()
    }
}

fn log_flags(c: &CommonSpec) -> Vec<String> {
    let mut v = Vec::new();
    if !c.log_level.is_empty() {
        v.push(format!("--log.level={}", c.log_level));
    }
    if !c.log_format.is_empty() {
        v.push(format!("--log.format={}", c.log_format));
    }
    v
}

/// JSON of a typed object: sorting, [`clean`] and the YAML output work on JSON values, and
/// `serde_json`'s maps keep keys sorted, so the bytes do not depend on the types' field order.
fn to_json<T: Serialize>(typed: &T) -> Value {
    // k8s-openapi types have string keys only: serializing them to a `Value` cannot fail.
    serde_json::to_value(typed).expect("k8s-openapi objects serialize to JSON")
}

/// A typed object and fields set verbatim on its JSON: the CRs' free-form fields (resources,
/// affinity, claim templates, container patches, ...) are passed on as written, since typing
/// them would drop fields the types lack and refuse what the API server takes (`cpu: 1`).
struct Verbatim<T> {
    typed: T,
    fields: Vec<(&'static str, Value)>,
}

impl<T: Serialize> Verbatim<T> {
    fn json(&self) -> Value {
        let mut v = to_json(&self.typed);
        for (k, x) in &self.fields {
            v[*k] = x.clone();
        }
        v
    }
}

impl<T> From<T> for Verbatim<T> {
    fn from(typed: T) -> Self {
        Verbatim {
            typed,
            fields: Vec::new(),
        }
    }
}

fn some_if_set(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn mount(vol: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: vol.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn secret_volume(vol: &str, secret: &str) -> Volume {
    Volume {
        name: vol.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn configmap_volume(vol: &str, cm: &str) -> Volume {
    Volume {
        name: vol.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: cm.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn empty_dir_volume(vol: &str) -> Volume {
    Volume {
        name: vol.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(source),
    }
}

/// `POD_NAME` from the downward API.
fn env_pod_name() -> EnvVar {
    env_from(
        "POD_NAME",
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.name".into(),
            }),
            ..EnvVarSource::default()
        },
    )
}

fn http_probe(path: &str, port: IntOrString, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port,
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

struct Pod {
    component: String,
    instance: String,
    args: Vec<String>,
    common: CommonSpec,
    env: Vec<EnvVar>,
    volumes: Vec<Verbatim<Volume>>,
    mounts: Vec<VolumeMount>,
    ports: Vec<(String, u16)>,
    annotations: BTreeMap<String, String>,
    extra_labels: BTreeMap<String, String>,
    command: Option<Vec<String>>,
    container: &'static str,
    init_containers: Vec<Verbatim<Container>>,
    /// Containers after the main one (the rulers' config reloader).
    sidecars: Vec<Container>,
    /// The StatefulSet's `persistentVolumeClaimRetentionPolicy`, when its data is a claim.
    claim_retention: Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,
    /// The pod's `restartPolicy` when not the default (`Never` for Jobs).
    restart_policy: Option<&'static str>,
}

impl Pod {
    fn new(component: &str, instance: &str, common: &CommonSpec) -> Pod {
        Pod {
            component: component.to_string(),
            instance: instance.to_string(),
            args: Vec::new(),
            common: common.clone(),
            env: vec![env_pod_name()],
            volumes: Vec::new(),
            mounts: Vec::new(),
            ports: Vec::new(),
            annotations: BTreeMap::new(),
            extra_labels: BTreeMap::new(),
            command: None,
            container: "thanos",
            init_containers: Vec::new(),
            sidecars: Vec::new(),
            claim_retention: None,
            restart_policy: None,
        }
    }

    fn mount_secret(&mut self, vol: &str, secret: &str, path: &str) {
        self.volumes.push(secret_volume(vol, secret).into());
        self.mounts.push(mount(vol, path, true));
    }
    fn mount_configmap(&mut self, vol: &str, cm: &str, path: &str) {
        self.volumes.push(configmap_volume(vol, cm).into());
        self.mounts.push(mount(vol, path, true));
    }
    /// Renames volume `from` to `to` in the mounts of the main and the init containers.
    fn rename_volume(&mut self, from: &str, to: &str) {
        let init = self
            .init_containers
            .iter_mut()
            .flat_map(|c| c.typed.volume_mounts.iter_mut().flatten());
        for m in self.mounts.iter_mut().chain(init) {
            if m.name == from {
                m.name = to.into();
            }
        }
    }

    fn template(&self, ctx: &Ctx, with_common_mounts: bool) -> Value {
        let c = &self.common;
        let mut labels = ctx.labels(&self.component, &self.instance);
        let mut annotations = self.annotations.clone();
        if let Some(pm) = &c.pod_metadata {
            labels.extend(pm.labels.clone());
            annotations.extend(pm.annotations.clone());
        }
        labels.extend(self.extra_labels.clone());
        let mut volumes: Vec<Value> = self.volumes.iter().map(Verbatim::json).collect();
        let mut mounts = self.mounts.clone();
        if with_common_mounts {
            let common = c.config_maps.iter().map(|cm| {
                let vol = format!("configmap-{cm}");
                let path = format!("/etc/whizard/configmaps/{cm}");
                (configmap_volume(&vol, cm), mount(&vol, &path, true))
            });
            let secrets = c.secrets.iter().map(|s| {
                let vol = format!("secret-{s}");
                (
                    secret_volume(&vol, s),
                    mount(&vol, &format!("/etc/whizard/secrets/{s}"), true),
                )
            });
            for (v, m) in common.chain(secrets) {
                volumes.push(to_json(&v));
                mounts.push(m);
            }
        }
        let http = self
            .ports
            .iter()
            .find(|(n, _)| n == "http")
            .map(|(_, p)| IntOrString::Int((*p).into()));
        let container = Verbatim {
            typed: Container {
                name: self.container.into(),
                image: Some(c.image.clone()),
                args: Some(self.args.clone()),
                command: self.command.clone(),
                env: Some(self.env.clone()),
                ports: Some(
                    self.ports
                        .iter()
                        .map(|(n, p)| container_port(n, *p))
                        .collect(),
                ),
                volume_mounts: Some(mounts),
                image_pull_policy: some_if_set(&c.image_pull_policy),
                liveness_probe: http.clone().map(|p| http_probe("/-/healthy", p, 30, 4)),
                readiness_probe: http.map(|p| http_probe("/-/ready", p, 5, 3)),
                ..Container::default()
            },
            fields: c
                .resources
                .iter()
                .map(|r| ("resources", r.clone()))
                .collect(),
        };
        // Containers go through the CR's `containers` patches, which are free-form JSON.
        let containers: Vec<Value> = std::iter::once(container.json())
            .chain(self.sidecars.iter().map(to_json))
            .collect();
        let containers =
            super::adopt::patch_containers(containers, c.containers.as_ref(), &self.component);
        let mut spec = Verbatim {
            typed: PodSpec {
                termination_grace_period_seconds: Some(120),
                node_selector: (!c.node_selector.is_empty()).then(|| c.node_selector.clone()),
                restart_policy: self.restart_policy.map(String::from),
                ..PodSpec::default()
            },
            fields: vec![
                ("containers", Value::Array(containers)),
                ("volumes", Value::Array(volumes)),
            ],
        };
        if !self.init_containers.is_empty() {
            let init = self.init_containers.iter().map(Verbatim::json).collect();
            spec.fields.push(("initContainers", Value::Array(init)));
        }
        // The CRs' free-form pod fields, as written.
        if !c.tolerations.is_empty() {
            spec.fields
                .push(("tolerations", Value::Array(c.tolerations.clone())));
        }
        if let Some(a) = &c.affinity {
            spec.fields.push(("affinity", a.clone()));
        }
        if let Some(s) = &c.security_context {
            spec.fields.push(("securityContext", s.clone()));
        }
        if !c.image_pull_secrets.is_empty() {
            let secrets = Value::Array(c.image_pull_secrets.clone());
            spec.fields.push(("imagePullSecrets", secrets));
        }
        let template = Verbatim {
            typed: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: None,
            },
            fields: vec![("spec", spec.json())],
        };
        template.json()
    }
}
/// The `data` mount, and its volume: an emptyDir on the pod or (returned) the claim template,
/// both as the CR wrote them (free-form JSON there).
fn data_volume(pod: &mut Pod, dv: &Option<KubernetesVolume>) -> Option<Value> {
    pod.mounts.push(mount("data", DATA_DIR, false));
    match dv {
        Some(KubernetesVolume {
            empty_dir: None,
            persistent_volume_claim: Some(pvc),
            persistent_volume_claim_retention_policy: policy,
        }) => {
            let mut pvc = pvc.clone();
            // Free-form in the CR (and unchecked in `render --from DIR`): indexing a non-object
            // would panic, so a claim template or its metadata that is not an object (which
            // the API server refuses anyway) becomes one that holds just the name.
            if !pvc.is_object() {
                pvc = json!({});
            }
            if !pvc["metadata"].is_object() {
                pvc["metadata"] = json!({});
            }
            pvc["metadata"]["name"] = json!("data");
            pod.claim_retention = claim_retention(&pod.component, policy.as_ref());
            Some(pvc)
        }
        Some(KubernetesVolume {
            empty_dir: Some(e), ..
        }) => {
            pod.volumes.push(Verbatim {
                typed: Volume {
                    name: "data".into(),
                    ..Volume::default()
                },
                fields: vec![("emptyDir", e.clone())],
            });
            None
        }
        _ => {
            pod.volumes.push(empty_dir_volume("data").into());
            None
        }
    }
}

/// `--tsdb.max-block-duration` of an ingester on local storage only, as Whizard sets it: a
/// tenth of the retention (15 days when it does not parse), between the 2-hour head block and
/// 31 days, so that the TSDB compacts its own blocks (no compactor does it for local storage).
pub(super) fn local_max_block_duration(retention: &str) -> String {
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    let retention = naming::parse_duration(retention).unwrap_or(15 * DAY);
    let secs = if retention == 0 {
        31 * DAY
    } else {
        (retention / 10).clamp(2 * HOUR, 31 * DAY)
    };
    let mut out = String::new();
    let (d, h, m, s) = (secs / DAY, secs % DAY / HOUR, secs % HOUR / 60, secs % 60);
    for (n, name) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
        if n > 0 {
            out.push_str(&format!("{n}{name}"));
        }
    }
    out
}

/// `dataVolume.persistentVolumeClaimRetentionPolicy` when it is one Kubernetes takes (each of
/// `whenDeleted`, `whenScaled` `Retain` or `Delete`; anything else is reported by the planner's
/// field check and left out); without one, a compactor's claims go with its StatefulSet (they
/// only hold a cache of downloaded blocks, as Whizard's deletePVC finalizer had it) and the
/// other components' are kept (Kubernetes' default).
fn claim_retention(
    component: &str,
    policy: Option<&Value>,
) -> Option<StatefulSetPersistentVolumeClaimRetentionPolicy> {
    let valid = |p: &Value| {
        p.as_object().is_some_and(|o| {
            !o.is_empty()
                && o.iter().all(|(k, v)| {
                    matches!(k.as_str(), "whenDeleted" | "whenScaled")
                        && matches!(v.as_str(), Some("Retain" | "Delete"))
                })
        })
    };
    let typed = |deleted: Option<&str>, scaled: Option<&str>| {
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: deleted.map(String::from),
            when_scaled: scaled.map(String::from),
        })
    };
    match policy {
        Some(p) if valid(p) => typed(p["whenDeleted"].as_str(), p["whenScaled"].as_str()),
        _ if component == "compactor" => typed(Some("Delete"), Some("Retain")),
        _ => None,
    }
}

/// The pod template and claim template are JSON (see [`Pod::template`], [`data_volume`]).
fn statefulset(ctx: &Ctx, name: &str, pod: &Pod, headless: &str, pvc: Option<Value>) -> Value {
    let mut spec = Verbatim {
        typed: StatefulSetSpec {
            replicas: Some(pod.common.replicas.unwrap_or(1)),
            service_name: Some(headless.into()),
            pod_management_policy: Some("Parallel".into()),
            selector: ctx.label_selector(&pod.component, &pod.instance),
            ..StatefulSetSpec::default()
        },
        fields: vec![("template", pod.template(ctx, true))],
    };
    if let Some(p) = pvc {
        spec.fields
            .push(("volumeClaimTemplates", Value::Array(vec![p])));
        spec.typed.persistent_volume_claim_retention_policy = pod.claim_retention.clone();
    }
    let sts = Verbatim {
        typed: StatefulSet {
            metadata: ctx.meta(name, &pod.component, &pod.instance),
            spec: None,
            status: None,
        },
        fields: vec![("spec", spec.json())],
    };
    sts.json()
}

fn deployment(ctx: &Ctx, name: &str, pod: &Pod) -> Value {
    let spec = Verbatim {
        typed: DeploymentSpec {
            replicas: Some(pod.common.replicas.unwrap_or(1)),
            selector: ctx.label_selector(&pod.component, &pod.instance),
            ..DeploymentSpec::default()
        },
        fields: vec![("template", pod.template(ctx, true))],
    };
    let dep = Verbatim {
        typed: Deployment {
            metadata: ctx.meta(name, &pod.component, &pod.instance),
            spec: None,
            status: None,
        },
        fields: vec![("spec", spec.json())],
    };
    dep.json()
}

fn service(ctx: &Ctx, name: &str, pod: &Pod, headless: bool, node_port: Option<i32>) -> Value {
    let ports = pod
        .ports
        .iter()
        .map(|(n, p)| ServicePort {
            name: Some(n.clone()),
            port: (*p).into(),
            target_port: Some(IntOrString::String(n.clone())),
            protocol: Some("TCP".into()),
            node_port: node_port.filter(|_| matches!(n.as_str(), "http" | "https")),
            ..ServicePort::default()
        })
        .collect();
    to_json(&corev1::Service {
        metadata: ctx.meta(name, &pod.component, &pod.instance),
        spec: Some(corev1::ServiceSpec {
            selector: Some(ctx.selector(&pod.component, &pod.instance)),
            ports: Some(ports),
            cluster_ip: headless.then(|| "None".into()),
            publish_not_ready_addresses: headless.then_some(true),
            type_: node_port.map(|_| "NodePort".into()),
            ..corev1::ServiceSpec::default()
        }),
        status: None,
    })
}

/// ConfigMap or Secret data from `(key, value)` pairs.
fn string_map<const N: usize>(entries: [(&str, String); N]) -> BTreeMap<String, String> {
    entries.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

fn configmap(
    ctx: &Ctx,
    name: &str,
    component: &str,
    instance: &str,
    data: BTreeMap<String, String>,
) -> Value {
    to_json(&ConfigMap {
        metadata: ctx.meta(name, component, instance),
        data: Some(data),
        ..ConfigMap::default()
    })
}

/// `data`: a map of strings, typed or as JSON (how the gateway's config Secret is put
/// together); a value that is not a string would go in as its JSON text.
fn secret(ctx: &Ctx, name: &str, component: &str, instance: &str, data: impl Serialize) -> Value {
    let data = match to_json(&data) {
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    to_json(&Secret {
        metadata: ctx.meta(name, component, instance),
        type_: Some("Opaque".into()),
        string_data: Some(data),
        ..Secret::default()
    })
}

fn thanos_ports(pod: &mut Pod, grpc: bool, remote_write: bool) {
    if grpc {
        pod.ports.push(("grpc".into(), GRPC_PORT));
        pod.args.push(format!("--grpc-address=0.0.0.0:{GRPC_PORT}"));
    }
    pod.ports.push(("http".into(), HTTP_PORT));
    pod.args.push(format!("--http-address=0.0.0.0:{HTTP_PORT}"));
    if remote_write {
        pod.ports.push(("remote-write".into(), REMOTE_WRITE_PORT));
        pod.args.push(format!(
            "--remote-write.address=0.0.0.0:{REMOTE_WRITE_PORT}"
        ));
    }
}

fn tls_server(ctx: &Ctx, pod: &mut Pod) {
    if !ctx.tls() {
        return;
    }
    pod.mount_secret("tls", &ctx.svc.tls_secret, TLS_DIR);
    pod.args.extend([
        format!("--grpc-server-tls-cert={TLS_DIR}/tls.crt"),
        format!("--grpc-server-tls-key={TLS_DIR}/tls.key"),
        format!("--grpc-server-tls-client-ca={TLS_DIR}/ca.crt"),
    ]);
}

fn objstore_secret_name(ctx: &Ctx, storage: &(String, String)) -> String {
    format!("{}-{}-objstore", ctx.plan.service_name, storage.1)
}

fn objstore(ctx: &Ctx, pod: &mut Pod, storage: &(String, String)) {
    pod.mount_secret(
        "objstore",
        &objstore_secret_name(ctx, storage),
        OBJSTORE_DIR,
    );
    pod.args.push(format!(
        "--objstore.config-file={OBJSTORE_DIR}/objstore.yaml"
    ));
    if let Some(s3) = ctx
        .plan
        .storages
        .get(storage)
        .and_then(|s| s.spec.s3.as_ref())
    {
        for (env, sel) in [
            ("OBJSTORE_ACCESS_KEY", &s3.access_key),
            ("OBJSTORE_SECRET_KEY", &s3.secret_key),
        ] {
            if let Some(sel) = sel {
                let key = corev1::SecretKeySelector {
                    name: sel.name.clone(),
                    key: sel.key.clone(),
                    optional: None,
                };
                pod.env.push(env_from(
                    env,
                    EnvVarSource {
                        secret_key_ref: Some(key),
                        ..EnvVarSource::default()
                    },
                ));
            }
        }
    }
}

/// The Thanos objstore config of a Storage; credentials come from env vars (`$(VAR)`
/// substitution in Thanos) so no secret value is copied.
fn objstore_config(storage: &Storage) -> String {
    let mut cfg = serde_json::Map::new();
    if let Some(s3) = &storage.spec.s3 {
        cfg.insert("bucket".into(), json!(s3.bucket));
        cfg.insert("endpoint".into(), json!(s3.endpoint));
        if !s3.region.is_empty() {
            cfg.insert("region".into(), json!(s3.region));
        }
        if s3.insecure {
            cfg.insert("insecure".into(), json!(true));
        }
        if s3.signature_version2 {
            cfg.insert("signature_version2".into(), json!(true));
        }
        if s3.aws_sdk_auth {
            cfg.insert("aws_sdk_auth".into(), json!(true));
        }
        if s3.access_key.is_some() {
            cfg.insert("access_key".into(), json!("$(OBJSTORE_ACCESS_KEY)"));
        }
        if s3.secret_key.is_some() {
            cfg.insert("secret_key".into(), json!("$(OBJSTORE_SECRET_KEY)"));
        }
        cfg.extend(s3.objstore_extra());
    }
    serde_norway::to_string(&json!({"type": "S3", "config": cfg})).unwrap()
}

fn tenancy_flags(ctx: &Ctx) -> Vec<String> {
    let t = &ctx.plan.tenancy;
    vec![
        format!("--receive.tenant-header={}", t.header),
        format!("--receive.tenant-label-name={}", t.label),
        format!("--receive.default-tenant-id={}", t.default_tenant),
    ]
}

/// A `--selector.relabel-config` keeping exactly `tenants` (regex-quoted, anchored).
pub fn keep_tenants_relabel(label: &str, tenants: &[String]) -> String {
    let regex = tenants
        .iter()
        .map(|t| format!("^{}$", regex_quote(t)))
        .collect::<Vec<_>>()
        .join("|");
    serde_json::to_string(&json!([{"action": "keep", "source_labels": [label], "regex": regex}]))
        .unwrap()
}

fn regex_quote(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn storage_of_label(v: Option<&String>) -> Option<(String, String)> {
    let v = v?;
    if v == L::LOCAL_STORAGE {
        return None;
    }
    v.split_once('.')
        .map(|(a, b)| (a.to_string(), b.to_string()))
}

/// Removes, at pod start, the TSDB directories of tenants the ingester no longer serves.
/// Only directories holding a `wal` (a tenant TSDB of Thanos receive's multi-TSDB) are
/// touched; without a tenant list nothing is removed.
const TSDB_CLEANUP_SCRIPT: &str = r#"set -eu
keep=/etc/whizard/ingester-tenants/tenants
if [ ! -s "$keep" ]; then echo "no tenant list; nothing removed"; exit 0; fi
cd /thanos
for d in */; do
  d=${d%/}
  [ -d "$d/wal" ] || continue
  if ! grep -qxF -- "$d" "$keep"; then
    echo "removing the TSDB of tenant $d (no longer on this ingester)"
    rm -rf -- "$d"
  fi
done
"#;

/// The TSDB-cleanup init container of an ingester pod, and the ConfigMap with its tenant list
/// (returned for the output). The list lives in the ConfigMap, not in the pod template, so
/// adding or removing a tenant never changes the template and never restarts the ingester
/// (Whizard issue #284); the list is read when a pod starts, which is when cleanup runs.
fn tsdb_cleanup_init(ctx: &Ctx, pod: &mut Pod, name: &str, eff: &IngesterSpec) -> Value {
    let cm = format!("ingester-{name}-tenants");
    let side = eff.ingester_tsdb_cleanup.clone().unwrap_or_default();
    let image = if side.image.is_empty() {
        eff.common.image.clone()
    } else {
        side.image
    };
    pod.volumes
        .push(configmap_volume("ingester-tenants", &cm).into());
    pod.init_containers.push(Verbatim {
        typed: Container {
            name: "tsdb-cleanup".into(),
            image: Some(image),
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                TSDB_CLEANUP_SCRIPT.into(),
            ]),
            volume_mounts: Some(vec![
                mount("data", DATA_DIR, false),
                mount("ingester-tenants", "/etc/whizard/ingester-tenants", true),
            ]),
            ..Container::default()
        },
        // Free-form in the CR: passed on as written.
        fields: side
            .resources
            .map(|r| ("resources", r))
            .into_iter()
            .collect(),
    });
    let mut tenants: Vec<&String> = ctx
        .plan
        .ingesters
        .iter()
        .find(|i| i.name_any() == name)
        .map(|i| i.spec.tenants.iter().collect())
        .unwrap_or_default();
    tenants.sort();
    let list: String = tenants.iter().map(|t| format!("{t}\n")).collect();
    configmap(ctx, &cm, "ingester", name, string_map([("tenants", list)]))
}

fn render_ingesters(ctx: &Ctx, out: &mut Vec<Value>) {
    // Whizard's `disableTsdbCleanup` defaults to true: cleanup only when set to false.
    let tsdb_cleanup = ctx.svc.ingester_template_spec.disable_tsdb_cleanup == Some(false);
    for ing in &ctx.plan.ingesters {
        let n = ing.name_any();
        let eff = effective::ingester(ctx.svc, &ing.spec);
        let headless = format!("ingester-{n}-operated");
        let mut pod = Pod::new("ingester", &n, &eff.common);
        pod.args.push("receive".into());
        thanos_ports(&mut pod, true, true);
        pod.ports.push(("capnproto".into(), CAPNPROTO_PORT));
        pod.args.extend([
            format!(
                "--receive.local-endpoint=$(POD_NAME).{headless}.{}.svc:{GRPC_PORT}",
                ctx.ns
            ),
            format!("--receive.capnproto-address=0.0.0.0:{CAPNPROTO_PORT}"),
            format!("--tsdb.path={DATA_DIR}"),
            format!("--tsdb.retention={}", eff.local_tsdb_retention),
            "--label=receive_replica=\"$(POD_NAME)\"".into(),
        ]);
        pod.args.extend(tenancy_flags(ctx));
        pod.args.extend(log_flags(&eff.common));
        // Thanos turns target_info on by default: only `false` needs saying.
        if eff.otlp_enable_target_info == Some(false) {
            pod.args.push("--no-receive.otlp-enable-target-info".into());
        }
        for a in &eff.otlp_resource_attributes {
            pod.args
                .push(format!("--receive.otlp-promote-resource-attributes={a}"));
        }
        match storage_of_label(ing.labels().get(L::STORAGE)) {
            Some(st) => objstore(ctx, &mut pod, &st),
            None => pod.args.push(format!(
                "--tsdb.max-block-duration={}",
                local_max_block_duration(&eff.local_tsdb_retention)
            )),
        }
        tls_server(ctx, &mut pod);
        pod.args = merge_flags(&pod.args, &eff.common.flags);
        let mut pvc = data_volume(&mut pod, &eff.data_volume);
        if tsdb_cleanup && !ing.spec.tenants.is_empty() {
            out.push(tsdb_cleanup_init(ctx, &mut pod, &n, &eff));
        }
        if let (Some(p), Some(claim)) = (pvc.as_mut(), super::adopt::data_claim(ing)) {
            // An ingester adopted from Whizard keeps its claim name, so it keeps its volumes.
            p["metadata"]["name"] = json!(claim);
            pod.rename_volume("data", claim);
        }
        out.push(statefulset(
            ctx,
            &format!("ingester-{n}"),
            &pod,
            &headless,
            pvc,
        ));
        out.push(service(ctx, &headless, &pod, true, None));
    }
}

fn render_router(ctx: &Ctx, out: &mut Vec<Value>) {
    let rings = gc::hashrings(ctx.plan, ctx.svc);
    let rings_text = serde_json::to_string_pretty(&rings).unwrap();
    for r in &ctx.plan.routers {
        let n = r.name_any();
        let eff = effective::router(ctx.svc, &r.spec);
        let cm = format!("router-{n}-hashrings-config");
        let mut pod = Pod::new("router", &n, &eff.common);
        pod.args.push("receive".into());
        thanos_ports(&mut pod, true, true);
        pod.args.extend([
            "--receive.hashrings-file=/etc/whizard/hashrings/hashrings.json".to_string(),
            "--receive.hashrings-file-refresh-interval=1m".to_string(),
            format!(
                "--receive.replication-factor={}",
                eff.replication_factor.unwrap_or(1)
            ),
            format!(
                "--receive.replication-protocol={}",
                eff.replication_protocol
            ),
            "--label=receive=\"true\"".to_string(),
        ]);
        pod.args.extend(tenancy_flags(ctx));
        pod.args.extend(log_flags(&eff.common));
        pod.mount_configmap("hashrings", &cm, "/etc/whizard/hashrings");
        if ctx.tls() {
            pod.mount_secret("tls", &ctx.svc.tls_secret, TLS_DIR);
            pod.args.extend([
                "--remote-write.client-tls-secure".to_string(),
                format!("--remote-write.client-tls-cert={TLS_DIR}/tls.crt"),
                format!("--remote-write.client-tls-key={TLS_DIR}/tls.key"),
                format!("--remote-write.client-tls-ca={TLS_DIR}/ca.crt"),
            ]);
        }
        pod.args = merge_flags(&pod.args, &eff.common.flags);
        out.push(configmap(
            ctx,
            &cm,
            "router",
            &n,
            string_map([("hashrings.json", rings_text.clone())]),
        ));
        out.push(deployment(ctx, &format!("router-{n}"), &pod));
        out.push(service(ctx, &format!("router-{n}"), &pod, false, None));
    }
}

/// Store partitions: `(statefulset name, min, max)`.
pub fn store_partitions(name: &str, spec: &StoreSpec) -> Vec<(String, String, String)> {
    let ranges = if spec.time_ranges.is_empty() {
        vec![TimeRange {
            min_time: spec.min_time.clone(),
            max_time: spec.max_time.clone(),
        }]
    } else {
        spec.time_ranges.clone()
    };
    ranges
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let n = if i == 0 {
                format!("store-{name}")
            } else {
                format!("store-{name}-partition-{i}")
            };
            (n, r.min_time, r.max_time)
        })
        .collect()
}

fn render_stores(ctx: &Ctx, out: &mut Vec<Value>) {
    for st in &ctx.plan.stores {
        let n = st.name_any();
        let eff = effective::store(ctx.svc, &st.spec);
        let Some(storage) = storage_of_label(st.labels().get(L::STORAGE)) else {
            continue;
        };
        let tenants: Vec<String> = ctx
            .plan
            .tenants
            .iter()
            .filter(|t| t.storage.as_ref() == Some(&storage))
            .map(|t| t.id.clone())
            .collect();
        for (sts, min, max) in store_partitions(&n, &eff) {
            let mut pod = Pod::new("store", &sts, &eff.common);
            pod.args.push("store".into());
            thanos_ports(&mut pod, true, false);
            pod.args.push(format!("--data-dir={DATA_DIR}"));
            pod.args.extend(super::adopt::index_cache_flag(&eff));
            pod.args.push(format!(
                "--selector.relabel-config={}",
                keep_tenants_relabel(&ctx.plan.tenancy.label, &tenants)
            ));
            if !min.is_empty() {
                pod.args.push(format!("--min-time={min}"));
            }
            if !max.is_empty() {
                pod.args.push(format!("--max-time={max}"));
            }
            pod.args.extend(log_flags(&eff.common));
            objstore(ctx, &mut pod, &storage);
            tls_server(ctx, &mut pod);
            pod.args = merge_flags(&pod.args, &eff.common.flags);
            let pvc = data_volume(&mut pod, &eff.data_volume);
            let headless = format!("{sts}-operated");
            out.push(statefulset(ctx, &sts, &pod, &headless, pvc));
            out.push(service(ctx, &headless, &pod, true, None));
        }
    }
}

fn render_compactors(ctx: &Ctx, out: &mut Vec<Value>) {
    for c in &ctx.plan.compactors {
        let n = c.name_any();
        let eff = effective::compactor(ctx.svc, &c.spec);
        let Some(storage) = storage_of_label(c.labels().get(L::STORAGE)) else {
            continue;
        };
        let mut pod = Pod::new("compactor", &n, &eff.common);
        pod.args.push("compact".into());
        thanos_ports(&mut pod, false, false);
        pod.args.extend([
            "--wait".to_string(),
            "--wait-interval=1h".to_string(),
            format!("--data-dir={DATA_DIR}"),
            "--deduplication.replica-label=receive_replica".to_string(),
            "--deduplication.replica-label=ruler_replica".to_string(),
            format!(
                "--selector.relabel-config={}",
                keep_tenants_relabel(&ctx.plan.tenancy.label, &c.spec.tenants)
            ),
        ]);
        let r = eff.retention.clone().unwrap_or_default();
        pod.args.extend([
            format!("--retention.resolution-raw={}", nz(&r.retention_raw)),
            format!("--retention.resolution-5m={}", nz(&r.retention_5m)),
            format!("--retention.resolution-1h={}", nz(&r.retention_1h)),
        ]);
        if eff.disable_downsampling == Some(true) {
            pod.args.push("--downsampling.disable".into());
        }
        pod.args.extend(log_flags(&eff.common));
        objstore(ctx, &mut pod, &storage);
        pod.args = merge_flags(&pod.args, &eff.common.flags);
        let pvc = data_volume(&mut pod, &eff.data_volume);
        let headless = format!("compactor-{n}-operated");
        out.push(statefulset(
            ctx,
            &format!("compactor-{n}"),
            &pod,
            &headless,
            pvc,
        ));
        out.push(service(ctx, &headless, &pod, true, None));
    }
}

fn nz(s: &str) -> String {
    if s.is_empty() || s == "0" {
        "0d".into()
    } else {
        s.to_string()
    }
}

/// The ruler's `/-/reload` URL as its final command line serves it: the port of
/// `--http-address` (default [`HTTP_PORT`]) and the `--web.route-prefix`, on loopback (the
/// sidecar shares the pod's network). Plain HTTP: [`tls_server`] puts TLS on the gRPC listener
/// only, and nothing the reconciler renders sets `--http.config`. (A user flag
/// `--http.config` enabling TLS on the HTTP listener would need `https://` here; the
/// reloader's client skips certificate verification, but we do not guess at it.)
fn ruler_reload_url(args: &[String]) -> String {
    let flag = |name: &str| {
        args.iter()
            .rev()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    };
    let port = flag("--http-address")
        .and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok())
        .unwrap_or(HTTP_PORT);
    let prefix = flag("--web.route-prefix")
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .map(|p| format!("/{p}"))
        .unwrap_or_default();
    format!("http://127.0.0.1:{port}{prefix}/-/reload")
}

/// The rulers' `config-reloader` sidecar (prometheus-operator's prometheus-config-reloader, as
/// Whizard runs it): watches each rule ConfigMap directory (`mounts`: volume, mount path) and
/// POSTs the ruler's `/-/reload` when one changes. Small requests; metrics on `:8080`
/// (`reloader_last_reload_successful`), not exposed by the Services.
fn config_reloader(
    ruler_args: &[String],
    mounts: &[(String, String)],
    c: &CommonSpec,
) -> Container {
    let mut args = vec![
        "--listen-address=:8080".to_string(),
        format!("--reload-url={}", ruler_reload_url(ruler_args)),
    ];
    args.extend(mounts.iter().map(|(_, dir)| format!("--watched-dir={dir}")));
    if !c.log_level.is_empty() {
        args.push(format!("--log-level={}", c.log_level));
    }
    if !c.log_format.is_empty() {
        args.push(format!("--log-format={}", c.log_format));
    }
    let quantities = |q: &[(&str, &str)]| {
        Some(
            q.iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        )
    };
    Container {
        name: "config-reloader".into(),
        image: Some(planner::CONFIG_RELOADER_IMAGE.into()),
        image_pull_policy: some_if_set(&c.image_pull_policy),
        args: Some(args),
        env: Some(vec![env_pod_name()]),
        ports: Some(vec![container_port("reloader-web", 8080)]),
        resources: Some(ResourceRequirements {
            requests: quantities(&[("cpu", "10m"), ("memory", "32Mi")]),
            limits: quantities(&[("memory", "64Mi")]),
            claims: None,
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            mounts
                .iter()
                .map(|(vol, dir)| mount(vol, dir, true))
                .collect(),
        ),
        ..Container::default()
    }
}

fn render_rulers(ctx: &Ctx, out: &mut Vec<Value>) {
    let gw = ctx.plan.gateways[0].name_any();
    let gw_host = format!("gateway-{gw}.{}.svc:{GATEWAY_PORT}", ctx.ns);
    // A TLS gateway (webConfig) is reached over HTTPS; its server CA is not part of the
    // webConfig, so rulers do not verify the certificate (as Whizard's components do).
    let gw_tls = ctx
        .plan
        .gateway_web
        .get(&gw)
        .is_some_and(|w| w.tls.is_some());
    let scheme = if gw_tls { "https" } else { "http" };
    let users: BTreeMap<&str, &super::credentials::GatewayUser> = ctx
        .plan
        .users
        .iter()
        .map(|u| (u.name.as_str(), u))
        .collect();
    for PlannedRuler {
        ruler,
        spec: eff,
        shards,
        query_user,
        write_user,
    } in &ctx.plan.rulers
    {
        let n = ruler.name_any();
        let creds = format!("ruler-{n}-gateway-credentials");
        let q = users[query_user.as_str()];
        let w = users[write_user.as_str()];
        let mut query_http = json!({"basic_auth": {"username": q.name, "password_file": "/etc/whizard/gateway-credentials/query-password"}});
        let mut rw = json!({
            "name": "whizard-gateway",
            "url": format!("{scheme}://{gw_host}/api/v1/receive"),
            "basic_auth": {"username": w.name, "password_file": "/etc/whizard/gateway-credentials/write-password"},
        });
        if gw_tls {
            query_http["tls_config"] = json!({"insecure_skip_verify": true});
            rw["tls_config"] = json!({"insecure_skip_verify": true});
        }
        let query_yaml = serde_norway::to_string(&json!([{
            "http_config": query_http,
            "static_configs": [gw_host],
            "scheme": scheme,
        }]))
        .unwrap();
        let rw_yaml = serde_norway::to_string(&json!({"remote_write": [rw]})).unwrap();
        out.push(secret(
            ctx,
            &creds,
            "ruler",
            &n,
            string_map([
                ("query.yaml", query_yaml),
                ("remote-write.yaml", rw_yaml),
                ("query-password", q.password.clone()),
                ("write-password", w.password.clone()),
            ]),
        ));
        for (s, bins) in shards.iter().enumerate() {
            let inst = format!("{n}-{s}");
            let mut pod = Pod::new("ruler", &inst, &eff.common);
            pod.extra_labels
                .insert(L::RULER_SHARD.to_string(), s.to_string());
            pod.args.push("rule".into());
            thanos_ports(&mut pod, true, false);
            pod.args.extend([
                format!("--data-dir={DATA_DIR}"),
                format!("--eval-interval={}", eff.evaluation_interval),
                format!("--rule-file={RULES_DIR}/*/*.yaml"),
                format!("--label={RULER_REPLICA_LABEL}=\"$(POD_NAME)\""),
                "--query.config-file=/etc/whizard/gateway-credentials/query.yaml".to_string(),
                "--remote-write.config-file=/etc/whizard/gateway-credentials/remote-write.yaml"
                    .to_string(),
            ]);
            for (k, v) in &eff.labels {
                pod.args.push(format!("--label={k}=\"{v}\""));
            }
            for u in &eff.alertmanagers_url {
                pod.args.push(format!("--alertmanagers.url={u}"));
            }
            // As Whizard: alerts never carry the per-pod replica label (two replicas' alerts
            // are one alert), whatever `alertDropLabels` says; each label dropped once.
            let mut dropped = vec![RULER_REPLICA_LABEL];
            for l in &eff.alert_drop_labels {
                if !dropped.contains(&l.as_str()) {
                    dropped.push(l);
                }
            }
            for l in dropped {
                pod.args.push(format!("--alert.label-drop={l}"));
            }
            pod.args.extend(log_flags(&eff.common));
            pod.mount_secret(
                "gateway-credentials",
                &creds,
                "/etc/whizard/gateway-credentials",
            );
            // Rule files reach a running ruler without a restart: each ConfigMap is a volume
            // (no subPath, so the kubelet updates its files in place) and the config reloader
            // POSTs /-/reload when a watched directory changes; the pod template does not
            // depend on the rules. A shard without rules still gets one (empty) ConfigMap, so
            // its first rules arrive the same way. A change in the number of ConfigMaps (rules
            // outgrowing `shard::MAX_CONFIGMAP_BYTES` per ConfigMap, or shrinking back) changes
            // the volumes and so restarts the pods.
            let empty = [BTreeMap::new()];
            let bins = if bins.is_empty() {
                &empty[..]
            } else {
                &bins[..]
            };
            let mut rule_mounts = Vec::new();
            for (k, files) in bins.iter().enumerate() {
                let cm = format!("ruler-{n}-rulefiles-{s}-{k}");
                let (vol, dir) = (format!("rulefiles-{k}"), format!("{RULES_DIR}/{cm}"));
                pod.mount_configmap(&vol, &cm, &dir);
                rule_mounts.push((vol, dir));
                out.push(configmap(ctx, &cm, "ruler", &inst, files.clone()));
            }
            tls_server(ctx, &mut pod);
            pod.args = merge_flags(&pod.args, &eff.common.flags);
            pod.sidecars
                .push(config_reloader(&pod.args, &rule_mounts, &eff.common));
            let pvc = data_volume(&mut pod, &eff.data_volume);
            let headless = format!("ruler-{inst}-operated");
            out.push(statefulset(
                ctx,
                &format!("ruler-{inst}"),
                &pod,
                &headless,
                pvc,
            ));
            out.push(service(ctx, &headless, &pod, true, None));
        }
    }
}

fn render_query(ctx: &Ctx, out: &mut Vec<Value>) {
    let ns = ctx.ns;
    let mut endpoints = Vec::new();
    for ing in &ctx.plan.ingesters {
        endpoints.push(format!(
            "--endpoint=dnssrv+_grpc._tcp.ingester-{}-operated.{ns}.svc",
            ing.name_any()
        ));
    }
    for st in &ctx.plan.stores {
        let eff = effective::store(ctx.svc, &st.spec);
        for (sts, _, _) in store_partitions(&st.name_any(), &eff) {
            endpoints.push(format!(
                "--endpoint=dnssrv+_grpc._tcp.{sts}-operated.{ns}.svc"
            ));
        }
    }
    for r in &ctx.plan.rulers {
        for s in 0..r.shards.len() {
            endpoints.push(format!(
                "--endpoint=dnssrv+_grpc._tcp.ruler-{}-{s}-operated.{ns}.svc",
                r.ruler.name_any()
            ));
        }
    }
    for q in &ctx.plan.queries {
        let n = q.name_any();
        let eff = effective::query(ctx.svc, &q.spec);
        let mut pod = Pod::new("query", &n, &eff.common);
        pod.args.push("query".into());
        thanos_ports(&mut pod, true, false);
        pod.args.extend(endpoints.clone());
        for l in &eff.replica_label_names {
            pod.args.push(format!("--query.replica-label={l}"));
        }
        for (k, v) in &eff.selector_labels {
            pod.args.push(format!("--selector-label={k}=\"{v}\""));
        }
        for s in &eff.stores {
            for a in &s.addresses {
                pod.args.push(format!("--endpoint={a}"));
            }
        }
        if !eff.promql_engine.is_empty() {
            pod.args
                .push(format!("--query.promql-engine={}", eff.promql_engine));
        }
        if ctx.tls() {
            pod.mount_secret("tls", &ctx.svc.tls_secret, TLS_DIR);
            pod.args.extend([
                "--grpc-client-tls-secure".to_string(),
                format!("--grpc-client-tls-cert={TLS_DIR}/tls.crt"),
                format!("--grpc-client-tls-key={TLS_DIR}/tls.key"),
                format!("--grpc-client-tls-ca={TLS_DIR}/ca.crt"),
            ]);
        }
        pod.args.extend(log_flags(&eff.common));
        pod.args = merge_flags(&pod.args, &eff.common.flags);
        out.push(deployment(ctx, &format!("query-{n}"), &pod));
        out.push(service(ctx, &format!("query-{n}"), &pod, false, None));
    }
    let query_url = url("query", &ctx.plan.queries[0].name_any(), ns, HTTP_PORT);
    for qf in &ctx.plan.query_frontends {
        let n = qf.name_any();
        let eff = effective::query_frontend(ctx.svc, &qf.spec);
        let mut pod = Pod::new("query-frontend", &n, &eff.common);
        pod.args.push("query-frontend".into());
        thanos_ports(&mut pod, false, false);
        pod.args
            .push(format!("--query-frontend.downstream-url={query_url}"));
        if let Some(cc) = &eff.cache_config {
            if let Some(m) = &cc.in_memory {
                let cfg = json!({"type": "IN-MEMORY", "config": {
                    "max_size": m.max_size, "max_size_items": m.max_size_items.unwrap_or(0), "validity": m.validity}});
                pod.args.push(format!(
                    "--query-range.response-cache-config={}",
                    serde_json::to_string(&cfg).unwrap()
                ));
            }
        }
        pod.args.extend(log_flags(&eff.common));
        pod.args = merge_flags(&pod.args, &eff.common.flags);
        out.push(deployment(ctx, &format!("query-frontend-{n}"), &pod));
        out.push(service(
            ctx,
            &format!("query-frontend-{n}"),
            &pod,
            false,
            None,
        ));
    }
}

fn render_gateways(ctx: &Ctx, out: &mut Vec<Value>) {
    let no_web = super::web::GatewayWeb::default();
    for g in &ctx.plan.gateways {
        let n = g.name_any();
        let eff = effective::gateway(ctx.svc, &g.spec);
        let web = ctx.plan.gateway_web.get(&n).unwrap_or(&no_web);
        let (oidc, bad_oidc) = super::access::oidc_entries(&eff.oidc, &ctx.plan.oidc_groups);
        // A provider the gateway would refuse is left out rather than failing its whole
        // config (the gateway would not start); the planner reports it as a problem.
        for e in bad_oidc {
            tracing::warn!(gateway = %n, "{e}");
        }
        let config = gc::gateway_config(ctx.plan, ctx.svc, web, &oidc);
        let sec = format!("gateway-{n}-config");
        let mut pod = Pod::new("gateway", &n, &eff.common);
        pod.container = "whizard";
        pod.env.clear();
        pod.args = vec![
            "gateway".into(),
            "--config".into(),
            "/etc/whizard/gateway/gateway.yaml".into(),
        ];
        let main_port = if web.tls.is_some() { "https" } else { "http" };
        pod.ports.push((main_port.into(), GATEWAY_PORT));
        pod.ports.push(("metrics".into(), GATEWAY_METRICS_PORT));
        pod.mount_secret("config", &sec, "/etc/whizard/gateway");
        if let Some(t) = &web.tls {
            let mut names: Vec<&str> = [Some(&t.cert_secret), Some(&t.key_secret)]
                .into_iter()
                .chain([t.client_ca_secret.as_ref()])
                .flatten()
                .map(|s| s.name.as_str())
                .collect();
            names.sort();
            names.dedup();
            for (i, name) in names.into_iter().enumerate() {
                pod.mount_secret(
                    &format!("web-tls-{i}"),
                    name,
                    &format!("{}/{name}", super::web::WEB_DIR),
                );
            }
        }
        out.push(secret(
            ctx,
            &sec,
            "gateway",
            &n,
            json!({
                "gateway.yaml": config,
                super::credentials::HASHES_KEY: super::credentials::serialize(ctx.plan.stored_hash_entries()),
            }),
        ));
        let mut dep = deployment(ctx, &format!("gateway-{n}"), &pod);
        if web.tls.is_some() {
            // Probes go to the plain metrics listener, which answers /-/healthy and /-/ready.
            let c = &mut dep["spec"]["template"]["spec"]["containers"][0];
            c["livenessProbe"] = json!({"httpGet": {"path": "/-/healthy", "port": "metrics"}, "periodSeconds": 30, "failureThreshold": 4});
            c["readinessProbe"] = json!({"httpGet": {"path": "/-/ready", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 3});
        }
        out.push(dep);
        out.push(service(
            ctx,
            &format!("gateway-{n}"),
            &pod,
            false,
            g.spec.node_port.or(eff.node_port),
        ));
    }
}

/// Name of the ConfigMap holding pending block deletions (see [`super::deletion`]).
pub fn deletions_configmap_name(service: &str) -> String {
    format!("{service}-tenant-deletions")
}

/// Key of the pending deletions (JSON list) in that ConfigMap.
pub const DELETIONS_KEY: &str = "deletions.json";

/// The deletion Job's script (Thanos v0.38 `tools bucket`: `ls` has no selector flag, so the
/// tenant's blocks are picked from a template listing; `mark` takes explicit ids; `cleanup`
/// with the tenant selector and no delay then removes exactly the marked blocks of the tenant).
const DELETE_BLOCKS_SCRIPT: &str = r#"set -eu
CFG=--objstore.config-file=/etc/whizard/objstore/objstore.yaml
thanos tools bucket ls "$CFG" --exclude-delete --output="{{.ULID}} {{index .Thanos.Labels \"$TENANT_LABEL\"}}" > /tmp/blocks
: > /tmp/ids
while read -r id t; do
  if [ "$t" = "$TENANT" ]; then echo "--id=$id" >> /tmp/ids; fi
done < /tmp/blocks
echo "tenant $TENANT: $(wc -l < /tmp/ids) blocks to delete"
xargs -r -n 100 thanos tools bucket mark "$CFG" --marker=deletion-mark.json --details="tenant $TENANT removed" < /tmp/ids
thanos tools bucket cleanup "$CFG" --delete-delay=0s --selector.relabel-config="$SELECTOR"
"#;

/// `[a-z0-9-]` only, no leading/trailing `-` (for object names built from tenant ids).
fn dns_label(s: &str) -> String {
    let mapped: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    mapped.trim_matches('-').to_string()
}

/// The state ConfigMap (first in the output, so it is applied before the Compactors change)
/// and one Job per due deletion.
fn render_deletions(ctx: &Ctx, out: &mut Vec<Value>) {
    let plan = ctx.plan;
    if plan.deletions.is_empty() {
        return;
    }
    let svc_name = &plan.service_name;
    out.push(configmap(
        ctx,
        &deletions_configmap_name(svc_name),
        "tenant-deletions",
        svc_name,
        string_map([(
            DELETIONS_KEY,
            serde_json::to_string_pretty(&plan.deletions).unwrap(),
        )]),
    ));
    let eff = effective::compactor(ctx.svc, &CompactorSpec::default());
    for d in &plan.due_deletions {
        let storage = naming::storage_of(&d.storage);
        let mut pod = Pod::new("tenant-deletion", svc_name, &eff.common);
        pod.container = "delete-blocks";
        objstore(ctx, &mut pod, &storage);
        // The script names the objstore file itself; `sh -c` takes no flags.
        pod.args.clear();
        pod.command = Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            DELETE_BLOCKS_SCRIPT.into(),
        ]);
        let selector = keep_tenants_relabel(&plan.tenancy.label, std::slice::from_ref(&d.tenant));
        pod.env.extend([
            env_value("TENANT", &d.tenant),
            env_value("TENANT_LABEL", &plan.tenancy.label),
            env_value("SELECTOR", &selector),
        ]);
        pod.volumes.push(empty_dir_volume("tmp").into());
        pod.mounts.push(mount("tmp", "/tmp", false));
        pod.restart_policy = Some("Never");
        let template = pod.template(ctx, false);
        // The name carries a hash of the pod spec: a Job's template is immutable, so a changed
        // spec (e.g. a new image) makes a new Job and the old one is pruned.
        let hash = md5_hex(&format!("{}\n{}\n{template}", d.tenant, d.storage));
        let name = naming::short_name(
            &format!("{svc_name}-delete-{}-{}", dns_label(&d.tenant), &hash[..8]),
            52,
        );
        let mut meta = ctx.meta(&name, "tenant-deletion", svc_name);
        meta.annotations = Some(string_map([
            (L::DELETION_TENANT, d.tenant.clone()),
            (L::DELETION_STORAGE, d.storage.clone()),
        ]));
        let spec = Verbatim {
            typed: JobSpec {
                backoff_limit: Some(3),
                ..JobSpec::default()
            },
            fields: vec![("template", template)],
        };
        let job = Verbatim {
            typed: Job {
                metadata: meta,
                spec: None,
                status: None,
            },
            fields: vec![("spec", spec.json())],
        };
        out.push(job.json());
    }
}

fn render_storages(ctx: &Ctx, out: &mut Vec<Value>) {
    let mut used: Vec<&(String, String)> = ctx
        .plan
        .tenants
        .iter()
        .filter_map(|t| t.storage.as_ref())
        .collect();
    used.sort();
    used.dedup();
    for st in used {
        if let Some(s) = ctx.plan.storages.get(st) {
            out.push(secret(
                ctx,
                &objstore_secret_name(ctx, st),
                "storage",
                &st.1,
                string_map([("objstore.yaml", objstore_config(s))]),
            ));
        }
    }
}

/// Managed CRs (Ingester, Compactor, Store, Ruler) as they are applied.
fn managed_crs(plan: &Plan, out: &mut Vec<Value>) {
    for i in plan
        .ingesters
        .iter()
        .filter(|i| naming::is_managed(&i.metadata))
    {
        let mut v = serde_json::to_value(i).unwrap();
        v["spec"] = serde_json::to_value(&i.spec).unwrap();
        out.push(v);
    }
    for c in &plan.compactors {
        out.push(serde_json::to_value(c).unwrap());
    }
    for s in &plan.stores {
        out.push(serde_json::to_value(s).unwrap());
    }
    for r in &plan.rulers {
        out.push(serde_json::to_value(&r.ruler).unwrap());
    }
}

fn clean(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            if let Some(Value::Null) = m.get("status") {
                m.remove("status");
            }
            for x in m.values_mut() {
                clean(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(clean),
        _ => {}
    }
}

/// Every object for `plan`, in a fixed order.
pub fn render_plan(plan: &Plan, svc: &Service) -> Vec<Value> {
    let ctx = Ctx {
        plan,
        svc: &svc.spec,
        ns: &plan.namespace,
        svc_key: naming::service_key(svc),
    };
    let mut out = Vec::new();
    managed_crs(plan, &mut out);
    render_storages(&ctx, &mut out);
    render_gateways(&ctx, &mut out);
    render_router(&ctx, &mut out);
    render_ingesters(&ctx, &mut out);
    render_query(&ctx, &mut out);
    render_stores(&ctx, &mut out);
    render_compactors(&ctx, &mut out);
    render_rulers(&ctx, &mut out);
    render_deletions(&ctx, &mut out);
    for v in &mut out {
        clean(v);
        if v["spec"].as_object().is_some_and(|m| m.is_empty()) && v["kind"] != "Service" {
            v["spec"] = json!({});
        }
    }
    out.sort_by_key(sort_key);
    out
}

fn sort_key(v: &Value) -> (usize, String, String) {
    const ORDER: &[&str] = &[
        "Ingester",
        "Compactor",
        "Store",
        "Ruler",
        "Secret",
        "ConfigMap",
        "Service",
        "Deployment",
        "StatefulSet",
        "Job",
    ];
    let kind = v["kind"].as_str().unwrap_or("");
    let group = v["apiVersion"].as_str().unwrap_or("");
    let mut idx = ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len()) + 1;
    // Pending deletions first: applied before a Compactor forgets a removed tenant.
    if kind == "ConfigMap" && v["metadata"]["labels"][L::COMPONENT] == "tenant-deletions" {
        idx = 0;
    }
    // Thanos CRs named "Service" do not appear here, but keep core Services apart anyway.
    if kind == "Service" && group != "v1" {
        idx = ORDER.len() + 1;
    }
    (
        idx,
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

/// A YAML stream of `objects`.
pub fn to_yaml_stream(objects: &[Value]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(o).expect("object serializes"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// render --from DIR

fn parse<T: DeserializeOwned>(v: Value, path: &str, index: usize) -> Result<T, RenderError> {
    serde_json::from_value(v).map_err(|e| RenderError::Parse {
        path: path.to_string(),
        index,
        message: e.to_string(),
    })
}

/// Fields of `input` that do not survive a round trip through the typed object `typed`
/// (the reconciler's own types, which ignore unknown fields), as dotted paths. A field whose
/// value is empty (`null`, `""`, `false`, `0`, `[]`, `{}`) is not reported: the types omit
/// those when serializing. Keys differing only in case count as known (serde aliases such as
/// `httpServerTlsConfig`). `status` at the top is not compared.
pub fn unknown_fields(input: &Value, typed: &Value) -> Vec<String> {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(m) => m.is_empty(),
        }
    }
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(ma), Value::Object(mb)) => {
                for (k, va) in ma {
                    if path.is_empty() && k == "status" {
                        continue;
                    }
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let vb = mb.get(k).or_else(|| {
                        mb.iter()
                            .find(|(kb, _)| kb.eq_ignore_ascii_case(k))
                            .map(|(_, v)| v)
                    });
                    match vb {
                        Some(vb) => walk(&p, va, vb, out),
                        None if empty(va) => {}
                        None => out.push(p),
                    }
                }
            }
            (Value::Array(xa), Value::Array(xb)) if xa.len() == xb.len() => {
                for (i, (x, y)) in xa.iter().zip(xb).enumerate() {
                    walk(&format!("{path}[{i}]"), x, y, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", input, typed, &mut out);
    out
}

/// [`parse`], and the fields the typed object dropped (see [`unknown_fields`]) as problems
/// naming the object, e.g. `Service whizard/central: unknown field
/// spec.ingesterTemplateSpec.defaultTenantsPerIngestor (ignored)`.
fn parse_checked<T: DeserializeOwned + serde::Serialize>(
    v: Value,
    path: &str,
    index: usize,
    problems: &mut Vec<String>,
) -> Result<T, RenderError> {
    let what = format!(
        "{} {}{}",
        v["kind"].as_str().unwrap_or_default(),
        v["metadata"]["namespace"]
            .as_str()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    );
    let typed: T = parse(v.clone(), path, index)?;
    let back = serde_json::to_value(&typed).unwrap_or(Value::Null);
    for f in unknown_fields(&v, &back) {
        problems.push(format!(
            "{path}: document {index}: {what}: unknown field {f} (ignored)"
        ));
    }
    Ok(typed)
}

/// Reads every `*.yaml`/`*.yml`/`*.json` file of `dir` (sorted, multi-document) into planner
/// inputs (all services together; `service` is left default). Besides our kinds it reads
/// prometheus-operator `PrometheusRule`s and `Namespace`s (for `ruleNamespaceSelector`);
/// other objects are skipped.
pub fn read_dir(dir: &Path) -> Result<(Vec<Service>, Inputs), RenderError> {
    read_dir_checked(dir).map(|(s, i, _)| (s, i))
}

/// [`read_dir`], and the unknown fields of our kinds as problems (see [`unknown_fields`]).
pub fn read_dir_checked(dir: &Path) -> Result<(Vec<Service>, Inputs, Vec<String>), RenderError> {
    let mut problems = Vec::new();
    let io = |e, p: &Path| RenderError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(e, dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    paths.sort();
    let mut services: Vec<Service> = Vec::new();
    let mut inputs = Inputs::default();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| io(e, &p))?;
        let ps = p.display().to_string();
        let mut docs = Vec::new();
        for (index, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let v: Value =
                serde::Deserialize::deserialize(doc).map_err(|e| RenderError::Parse {
                    path: ps.clone(),
                    index,
                    message: e.to_string(),
                })?;
            // `kubectl get -o yaml` writes a List: its items are the objects.
            match v["items"].as_array() {
                Some(items) if v["kind"] == "List" => {
                    docs.extend(items.iter().map(|i| (index, i.clone())))
                }
                _ => docs.push((index, v)),
            }
        }
        for (index, v) in docs {
            if v.is_null() {
                continue;
            }
            let api = v["apiVersion"].as_str().unwrap_or("");
            match (api, v["kind"].as_str().unwrap_or("")) {
                ("monitoring.coreos.com/v1", "PrometheusRule") => {
                    inputs.prometheus_rules.push(parse(v, &ps, index)?);
                    continue;
                }
                ("v1", "Namespace") => {
                    let ns: k8s_openapi::api::core::v1::Namespace = parse(v, &ps, index)?;
                    inputs
                        .namespaces
                        .insert(ns.name_any(), ns.metadata.labels.unwrap_or_default());
                    continue;
                }
                ("v1", "Secret") => {
                    // Only for remoteWrites basicAuth; `stringData` as written, `data` decoded.
                    let name = v["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut data = std::collections::BTreeMap::new();
                    if let Some(m) = v["data"].as_object() {
                        use base64::Engine;
                        for (k, x) in m {
                            let raw = x.as_str().unwrap_or_default();
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(raw)
                                .map_err(|e| RenderError::Parse {
                                    path: ps.clone(),
                                    index,
                                    message: format!("Secret {name} key {k}: {e}"),
                                })?;
                            data.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
                        }
                    }
                    if let Some(m) = v["stringData"].as_object() {
                        for (k, x) in m {
                            data.insert(k.clone(), x.as_str().unwrap_or_default().to_string());
                        }
                    }
                    inputs.secrets.insert(name, data);
                    continue;
                }
                _ if api != API_VERSION => continue,
                _ => {}
            }
            let kind = v["kind"].as_str().unwrap_or("").to_string();
            let mut v = v;
            if v.get("spec").is_none_or(|s| s.is_null()) {
                v["spec"] = json!({});
            }
            match kind.as_str() {
                "Service" => services.push(parse_checked(v, &ps, index, &mut problems)?),
                "Tenant" => inputs
                    .tenants
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "Storage" => inputs
                    .storages
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "Gateway" => inputs
                    .gateways
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "Router" => inputs
                    .routers
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "Query" => inputs
                    .queries
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "QueryFrontend" => {
                    inputs
                        .query_frontends
                        .push(parse_checked(v, &ps, index, &mut problems)?)
                }
                "Ingester" => inputs
                    .ingesters
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "Compactor" => inputs
                    .compactors
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "Store" => inputs
                    .stores
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "Ruler" => inputs
                    .rulers
                    .push(parse_checked(v, &ps, index, &mut problems)?),
                "RuleGroup" => {
                    inputs
                        .rule_groups
                        .push(parse_checked(v, &ps, index, &mut problems)?)
                }
                "ClusterRuleGroup" => {
                    inputs
                        .cluster_rule_groups
                        .push(parse_checked(v, &ps, index, &mut problems)?)
                }
                "GlobalRuleGroup" => {
                    inputs
                        .global_rule_groups
                        .push(parse_checked(v, &ps, index, &mut problems)?)
                }
                other => {
                    return Err(RenderError::Parse {
                        path: ps.clone(),
                        index,
                        message: format!("unknown kind {other} in {API_VERSION}"),
                    })
                }
            }
        }
    }
    for s in &mut services {
        if s.metadata.namespace.is_none() {
            s.metadata.namespace = Some("default".into());
        }
    }
    // A previously rendered gateway config Secret in the directory lends its password hashes.
    for data in inputs.secrets.values() {
        if let Some(h) = data
            .get(super::credentials::HASHES_KEY)
            .and_then(|t| super::credentials::parse(t))
        {
            inputs.password_hashes.extend(h);
        }
    }
    services.sort_by_key(|s| (s.namespace(), s.name_any()));
    Ok((services, inputs, problems))
}

/// `render --from DIR` at time `now` (unix seconds; only matters for ingester removal times).
///
/// Problems confined to some objects (a Tenant naming a missing Storage, an ingester without
/// replicas, an unknown field) do not stop the render: everything else is rendered and the
/// result is [`RenderError::Problems`] carrying the output and the problems.
pub fn render_dir_at(dir: &Path, now: u64) -> Result<String, RenderError> {
    render_dir_warnings_at(dir, now).map(|(out, _)| out)
}

/// [`render_dir_at`], and the warnings of the plans (objects adopted from Whizard, fields of
/// its types accepted but not used; see [`super::adopt`]). Warnings do not fail a render;
/// with problems they are listed after them (`warning: ...`).
pub fn render_dir_warnings_at(dir: &Path, now: u64) -> Result<(String, Vec<String>), RenderError> {
    let mut warnings = Vec::new();
    let (services, mut inputs, mut problems) = read_dir_checked(dir)?;
    inputs.now = now;
    let mut out = String::from(
        "# whizard reconciler render: objects it would apply (server-side apply, field manager\n\
         # \"whizard-reconciler\"; owner references to the Service are added when applied).\n",
    );
    for svc in services {
        inputs.service = svc.clone();
        let plan = planner::plan(&inputs).map_err(|e| RenderError::Plan {
            service: naming::service_key(&svc),
            source: e,
        })?;
        if plan.placeholder_credentials && !plan.users.is_empty() {
            out.push_str(&format!(
                "# WARNING Service {}: ruler passwords derive from a placeholder seed; set the \
                 annotation {} to a secret value.\n",
                naming::service_key(&svc),
                L::CREDENTIALS_SEED
            ));
        }
        for p in &plan.problems {
            problems.push(format!("Service {}: {p}", naming::service_key(&svc)));
        }
        warnings.extend(plan.adoption.warnings.iter().cloned());
        out.push_str(&to_yaml_stream(&render_plan(&plan, &svc)));
    }
    if problems.is_empty() {
        Ok((out, warnings))
    } else {
        problems.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
        Err(RenderError::Problems {
            output: out,
            problems,
        })
    }
}

/// `render --from DIR`, deterministic: pending removals are computed at time 0 unless
/// `WHIZARD_RENDER_NOW` (unix seconds) is set.
pub fn render_dir(dir: &Path) -> Result<String, RenderError> {
    render_dir_warnings(dir).map(|(out, _)| out)
}

/// [`render_dir`] with the warnings (see [`render_dir_warnings_at`]).
pub fn render_dir_warnings(dir: &Path) -> Result<(String, Vec<String>), RenderError> {
    let now = std::env::var("WHIZARD_RENDER_NOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    render_dir_warnings_at(dir, now)
}
