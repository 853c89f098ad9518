//! Custom resources of group `monitoring.whizard.io/v1alpha1`.
//!
//! Field names and defaults follow the Go Whizard (`pkg/api/monitoring/v1alpha1`). Kubernetes
//! sub-structures that the reconciler only passes through (resources, affinity, tolerations,
//! security contexts, volume claims, secret key selectors) are kept as free-form JSON objects
//! (`x-kubernetes-preserve-unknown-fields`), so the CRDs stay small and the API server keeps
//! whatever the user wrote.
//!
//! Additions over Whizard (all optional): `Tenant.spec.{externalLabels,limits,retention,access}`,
//! `Gateway.spec.oidc`,
//! `Service.spec.tlsSecret`, and the rule-group kinds `RuleGroup`, `ClusterRuleGroup` and
//! `GlobalRuleGroup` (one rule group of at most 40 rules each).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "monitoring.whizard.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "monitoring.whizard.io/v1alpha1";

/// Linking and state labels/annotations (Whizard-compatible names).
pub mod labels {
    pub const SERVICE: &str = "monitoring.whizard.io/service";
    pub const STORAGE: &str = "monitoring.whizard.io/storage";
    pub const EXCLUSIVE: &str = "monitoring.whizard.io/exclusive";
    pub const SOFT_TENANT: &str = "monitoring.whizard.io/soft-tenant";
    pub const TENANT: &str = "monitoring.whizard.io/tenant";
    /// Set on every object the reconciler generates.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "whizard-reconciler";
    pub const NAME: &str = "app.kubernetes.io/name";
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Ingester scale-down annotations (Whizard names).
    pub const INGESTER_STATE: &str = "monitoring.whizard.io/ingester-state";
    pub const INGESTER_DELETING_TIME: &str = "monitoring.whizard.io/ingester-deleting-time";
    /// Service annotation holding the seed from which ruler credentials are derived.
    pub const CREDENTIALS_SEED: &str = "monitoring.whizard.io/credentials-seed";
    /// Tenant and storage (`<ns>.<name>`) whose blocks a deletion Job removes.
    pub const DELETION_TENANT: &str = "monitoring.whizard.io/deletion-tenant";
    pub const DELETION_STORAGE: &str = "monitoring.whizard.io/deletion-storage";
    /// Ruler shard label on ruler pods.
    pub const RULER_SHARD: &str = "monitoring.whizard.io/ruler-shard";
    pub const DEFAULT_STORAGE: &str = "default";
    pub const LOCAL_STORAGE: &str = "local";
}

// ---------------------------------------------------------------------------------------------
// Schema helpers

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn free_form_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// Any JSON value (object or list), kept as written: Whizard's `runtime.RawExtension`.
fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A duration written as a string (`5m`) or, as Whizard's Go types serialize
/// `time.Duration`, an integer number of nanoseconds.
fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

/// `300000000000` (nanoseconds, Go's `time.Duration` in JSON) → `5m`; whole milliseconds at
/// least (`1500000` → `1ms`, rounded down), in the largest unit that divides it exactly.
pub fn nanos_to_duration(ns: i64) -> String {
    let ms = ns.max(0) / 1_000_000;
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Deserializes a duration given as a string or as Go nanoseconds (see [`nanos_to_duration`]).
fn duration_or_nanos<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Number(n) => n
            .as_i64()
            .map(nanos_to_duration)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {n}"))),
        other => Err(serde::de::Error::custom(format!(
            "invalid duration {other}: expected a string or nanoseconds"
        ))),
    }
}

/// Whizard's `Duration`: y, w, d, h, m, s, ms, e.g. `30s`, `1h20m15s`.
fn duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
    })
}

fn is_false(b: &bool) -> bool {
    !*b
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// Fields every workload component has (Whizard `CommonSpec`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// Number of component instances to deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Component container image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["", "Always", "Never", "IfNotPresent"]))]
    pub image_pull_policy: String,
    /// Container resource requirements (core/v1 ResourceRequirements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub resources: Option<Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["", "debug", "info", "warn", "error"]))]
    pub log_level: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["", "logfmt", "json"]))]
    pub log_format: String,
    /// Extra flags: repeatable ones are appended, others replace the generated flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Labels and annotations propagated to the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<EmbeddedObjectMetadata>,
    /// ConfigMaps mounted at /etc/whizard/configmaps/<name>.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_maps: Vec<String>,
    /// Secrets mounted at /etc/whizard/secrets/<name>.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub image_pull_secrets: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub security_context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub affinity: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub tolerations: Vec<Value>,
    /// Containers patched into the generated pod (Whizard's `containers`): one with the
    /// name of the generated main container (ours, `thanos`/`whizard`, or Whizard's, e.g.
    /// `receive`, `compactor`, `store`, `query`, `rule`, `gateway`) is merged into it, the
    /// others are added as sidecars (see [`super::adopt::patch_containers`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub containers: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct EmbeddedObjectMetadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Storage of a component: an emptyDir (default) or a PVC template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub empty_dir: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub persistent_volume_claim: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub persistent_volume_claim_retention_policy: Option<Value>,
}

#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A key of a Secret (core/v1 SecretKeySelector).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretKeySelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub resources: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebConfig {
    /// `{certSecret, keySecret, clientCASecret}` (Whizard's field name).
    #[serde(
        rename = "httpServerTLSConfig",
        alias = "httpServerTlsConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "free_form")]
    pub http_server_tls_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub http_server_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub basic_auth_users: Vec<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
}

// ---------------------------------------------------------------------------------------------
// Service

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Service",
    plural = "services",
    derive = "Default",
    namespaced,
    shortname = "wsvc",
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Header carrying the tenant on writes to the router (default `WHIZARD-TENANT`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant_header: String,
    /// Tenant of writes without a tenant header (default `default-tenant`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_tenant_id: String,
    /// Label holding the tenant (default `tenant_id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant_label_name: String,
    /// The object storage (a `Storage` CR) used by tenants with the `default` storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<ObjectReference>,
    /// Extra remote-write targets that receive a copy of every write (via the gateway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_writes: Vec<RemoteWriteSpec>,
    /// Query a remote Prometheus-compatible endpoint instead of the local Query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_query: Option<RemoteQuerySpec>,
    /// Secret (keys `tls.crt`, `tls.key`, `ca.crt`) for TLS between components (addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls_secret: String,

    #[serde(default)]
    pub gateway_template_spec: GatewaySpec,
    #[serde(default)]
    pub query_frontend_template_spec: QueryFrontendSpec,
    #[serde(default)]
    pub query_template_spec: QuerySpec,
    #[serde(default)]
    pub ruler_template_spec: RulerTemplateSpec,
    #[serde(default)]
    pub router_template_spec: RouterSpec,
    #[serde(default)]
    pub ingester_template_spec: IngesterTemplateSpec,
    #[serde(default)]
    pub store_template_spec: StoreSpec,
    #[serde(default)]
    pub compactor_template_spec: CompactorTemplateSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteWriteSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "duration_schema")]
    pub remote_timeout: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bearer_token: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteQuerySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bearer_token: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngesterTemplateSpec {
    #[serde(flatten)]
    pub spec: IngesterSpec,
    /// Tenants per shared ingester (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tenants_per_ingester: Option<i32>,
    /// How long an emptied ingester is kept before removal (default `3h`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "duration_schema")]
    pub default_ingester_retention_period: String,
    /// Skip the TSDB cleanup init container (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_tsdb_cleanup: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactorTemplateSpec {
    #[serde(flatten)]
    pub spec: CompactorSpec,
    /// Tenants per compactor (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tenants_per_compactor: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulerTemplateSpec {
    #[serde(flatten)]
    pub spec: RulerSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_alerting_rules_auto_selection: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Tenant

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    status = "TenantStatus",
    category = "whizard",
    printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".spec.tenant"}"#,
    printcolumn = r#"{"name":"Ingester","type":"string","jsonPath":".status.ingester.name"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Tenant id; defaults to the object's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// Labels the gateway injects into every series written by this tenant (addition).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    /// Gateway limits for this tenant (addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TenantLimits>,
    /// Overrides the compactor retention of the Service template (addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Who may write and read this tenant through the gateway (addition): gateway users
    /// (password and/or client certificate) and OIDC groups. Secrets are read in the Service's
    /// namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<TenantAccess>,
}

/// One entry of `Tenant.spec.access`: a gateway user (`name`, with a password and/or a client
/// certificate) or an OIDC group (`oidcGroup`), never both.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantAccess {
    /// Gateway user name (unique across the Service's tenants and its rulers' users).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// An OIDC group whose members get this tenant (`group_tenants` of every OIDC provider of
    /// the gateway); their access comes from the token's access claim.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oidc_group: String,
    /// `read` and/or `write` (users only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<String>,
    /// A Secret key holding the plaintext password; the reconciler hashes it (argon2id) and
    /// keeps the hash in the gateway config Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeySelector>,
    /// A Secret key holding a bcrypt or argon2id hash of the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash_secret: Option<SecretKeySelector>,
    /// The client certificate that logs in as this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<AccessCertificate>,
}

/// A client certificate mapping (`users[].certificate` of the gateway config).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AccessCertificate {
    /// `cn`, `dns`, `uri` or `email`.
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_samples_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TenantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruler: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compactor: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingester: Option<ObjectReference>,
    /// `Ready`: `True` when the tenant is planned and routed; `False` with the reason when it
    /// is skipped (e.g. `StorageNotFound`, `InvalidTenantId`) or cannot receive writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TenantCondition>,
}

/// A status condition of a Tenant (the usual Kubernetes shape, without timestamps: the
/// planner has no clock of its own and the status is rewritten on every reconcile).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TenantCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Storage

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Storage",
    plural = "storages",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub block_manager: Option<Value>,
    #[serde(rename = "S3", default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3 {
    pub bucket: String,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub signature_version2: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub aws_sdk_auth: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
    /// `http_config` of the objstore config (Whizard's `S3HTTPConfig`, camelCase keys);
    /// durations as strings or Go nanoseconds. `tlsConfig` `ca`/`cert`/`key` Secrets are not
    /// mounted (warned); its `serverName` and `insecureSkipVerify` are honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub http_config: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_dualstack: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub put_user_metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<S3TraceConfig>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub list_objects_version: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub send_content_md5: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_multipart: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_config: Option<S3SseConfig>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sts_endpoint: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct S3TraceConfig {
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable: bool,
}

/// Server-side encryption (Whizard's `S3SSEConfig`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3SseConfig {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kms_key_id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kms_encryption_context: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encryption_key: String,
}

impl S3 {
    /// The objstore `config` keys of the fields beyond bucket, endpoint, region, insecure,
    /// signature and credentials (Thanos objstore names), as Whizard writes them.
    pub fn objstore_extra(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        let mut flag = |k: &str, b: bool| {
            if b {
                m.insert(k.into(), Value::Bool(true));
            }
        };
        flag("disable_dualstack", self.disable_dualstack);
        flag("send_content_md5", self.send_content_md5);
        flag("disable_multipart", self.disable_multipart);
        if !self.put_user_metadata.is_empty() {
            m.insert(
                "put_user_metadata".into(),
                serde_json::json!(self.put_user_metadata),
            );
        }
        if self.trace.as_ref().is_some_and(|t| t.enable) {
            m.insert("trace".into(), serde_json::json!({"enable": true}));
        }
        if !self.list_objects_version.is_empty() {
            m.insert(
                "list_objects_version".into(),
                Value::String(self.list_objects_version.clone()),
            );
        }
        if let Some(p) = self.part_size.filter(|p| *p > 0) {
            m.insert("part_size".into(), serde_json::json!(p));
        }
        if !self.sts_endpoint.is_empty() {
            m.insert(
                "sts_endpoint".into(),
                Value::String(self.sts_endpoint.clone()),
            );
        }
        if let Some(sse) = &self.sse_config {
            let mut v = serde_json::Map::new();
            for (k, x) in [
                ("type", &sse.type_),
                ("kms_key_id", &sse.kms_key_id),
                ("encryption_key", &sse.encryption_key),
            ] {
                if !x.is_empty() {
                    v.insert(k.into(), Value::String(x.clone()));
                }
            }
            if !sse.kms_encryption_context.is_empty() {
                v.insert(
                    "kms_encryption_context".into(),
                    serde_json::json!(sse.kms_encryption_context),
                );
            }
            if !v.is_empty() {
                m.insert("sse_config".into(), Value::Object(v));
            }
        }
        if let Some(h) = self.http_config.as_ref().and_then(|h| h.as_object()) {
            let mut v = serde_json::Map::new();
            for (k, x) in h {
                match (k.as_str(), x) {
                    ("tlsConfig", Value::Object(tls)) => {
                        let mut t = serde_json::Map::new();
                        for (tk, tx) in tls {
                            // Secret references (`ca`, `cert`, `key`) are not mounted.
                            if matches!(tk.as_str(), "serverName" | "insecureSkipVerify") {
                                t.insert(snake_case(tk), tx.clone());
                            }
                        }
                        if !t.is_empty() {
                            v.insert("tls_config".into(), Value::Object(t));
                        }
                    }
                    (k, Value::Number(n)) if k.ends_with("Timeout") => {
                        let d = n.as_i64().map(nanos_to_duration).unwrap_or_default();
                        v.insert(snake_case(k), Value::String(d));
                    }
                    (_, Value::Null) => {}
                    (k, x) => {
                        v.insert(snake_case(k), x.clone());
                    }
                }
            }
            if !v.is_empty() {
                m.insert("http_config".into(), Value::Object(v));
            }
        }
        m
    }

    /// The fields of [`S3::objstore_extra`]'s input it leaves out (as dotted paths under
    /// `spec.S3`): the `httpConfig.tlsConfig` Secret references.
    pub fn ignored_fields(&self) -> Vec<String> {
        let tls = self
            .http_config
            .as_ref()
            .and_then(|h| h.get("tlsConfig"))
            .and_then(|t| t.as_object());
        let mut out = Vec::new();
        for k in ["ca", "cert", "key"] {
            if tls.and_then(|t| t.get(k)).is_some_and(|v| !v.is_null()) {
                out.push(format!("httpConfig.tlsConfig.{k}"));
            }
        }
        out
    }
}

/// `maxIdleConnsPerHost` → `max_idle_conns_per_host`.
fn snake_case(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Components

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Gateway",
    plural = "gateways",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_config: Option<WebConfig>,
    #[serde(rename = "debug", default, skip_serializing_if = "is_false")]
    pub debug_mode: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled_tenants_admission: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
    /// OIDC providers of the gateway (addition): `oidc[]` entries of the gateway config,
    /// passed through; the `oidcGroup` entries of the Tenants are added to each provider's
    /// `group_tenants`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub oidc: Vec<Value>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Router",
    plural = "routers",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct RouterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["", "protobuf", "capnproto"]))]
    pub replication_protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_config: Option<WebConfig>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Ingester",
    plural = "ingesters",
    namespaced,
    status = "IngesterStatus",
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct IngesterSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_enable_target_info: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub otlp_resource_attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_tsdb_retention: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<KubernetesVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingester_tsdb_cleanup: Option<SidecarSpec>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct IngesterStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<IngesterTenantStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct IngesterTenantStatus {
    pub name: String,
    pub obsolete: bool,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Query",
    plural = "queries",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct QuerySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["", "prometheus", "thanos"]))]
    pub promql_engine: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_label_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_config: Option<WebConfig>,
    /// Extra store API endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<QueryStores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy: Option<SidecarSpec>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryStores {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeySelector>,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "QueryFrontend",
    plural = "queryfrontends",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct QueryFrontendSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_config: Option<ResponseCacheProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_config: Option<WebConfig>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseCacheProviderConfig {
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["IN-MEMORY", "MEMCACHED", "REDIS"]))]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_memory: Option<InMemoryResponseCacheConfig>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InMemoryResponseCacheConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_items: Option<i64>,
    /// A duration (`1h`), or Go nanoseconds as Whizard's CRD has it (`3600000000000`).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "duration_or_nanos"
    )]
    #[schemars(schema_with = "int_or_string")]
    pub validity: String,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Store",
    plural = "stores",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub min_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_time: String,
    /// One store partition (StatefulSet) per range; Thanos time syntax (`-30d`, RFC3339).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_ranges: Vec<TimeRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub index_cache_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<KubernetesVolume>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeRange {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub min_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_time: String,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Compactor",
    plural = "compactors",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct CompactorSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_downsampling: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<KubernetesVolume>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "duration_schema")]
    pub retention_raw: String,
    #[serde(
        rename = "retention5m",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub retention_5m: String,
    #[serde(
        rename = "retention1h",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(schema_with = "duration_schema")]
    pub retention_1h: String,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "Ruler",
    plural = "rulers",
    namespaced,
    category = "whizard"
)]
#[serde(rename_all = "camelCase")]
pub struct RulerSpec {
    /// Label selectors (ORed) for rule groups, in addition to the tenant's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_form_list")]
    pub rule_selectors: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub rule_namespace_selector: Option<Value>,
    /// Number of shards rule groups are spread over (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub shards: Option<i32>,
    /// Tenant whose rules this ruler evaluates; empty means the global ruler.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_config: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_write_config: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_drop_labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers_url: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanagers_config: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "duration_schema")]
    pub evaluation_interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume: Option<KubernetesVolume>,
    /// Whizard's ruler sidecars (accepted, not used: rulers query and write through
    /// `whizard gateway`, and the rule-file reloader is ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruler_query_proxy: Option<SidecarSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruler_write_proxy: Option<SidecarSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_config_reloader: Option<SidecarSpec>,
    #[serde(flatten)]
    pub common: CommonSpec,
}

// ---------------------------------------------------------------------------------------------
// Rule groups

/// One rule as in a Prometheus rules file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub expr: String,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One rule group; the group is named after the object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RuleGroupSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub interval: Option<String>,
    #[schemars(length(min = 1, max = 40))]
    pub rules: Vec<Rule>,
}

/// `RuleGroup`: one rule group (see [`RuleGroupSpec`]).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "RuleGroup",
    plural = "rulegroups",
    namespaced,
    category = "whizard"
)]
pub struct RuleGroupKindSpec {
    #[serde(flatten)]
    pub group: RuleGroupSpec,
}

/// `ClusterRuleGroup`: one rule group (see [`RuleGroupSpec`]).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "ClusterRuleGroup",
    plural = "clusterrulegroups",
    category = "whizard"
)]
pub struct ClusterRuleGroupSpec {
    #[serde(flatten)]
    pub group: RuleGroupSpec,
}

/// `GlobalRuleGroup`: one rule group (see [`RuleGroupSpec`]).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.whizard.io",
    version = "v1alpha1",
    kind = "GlobalRuleGroup",
    plural = "globalrulegroups",
    namespaced,
    category = "whizard"
)]
pub struct GlobalRuleGroupSpec {
    #[serde(flatten)]
    pub group: RuleGroupSpec,
}

/// Every CustomResourceDefinition of the reconciler, in a fixed order.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        Service::crd(),
        Tenant::crd(),
        Storage::crd(),
        Gateway::crd(),
        Router::crd(),
        Ingester::crd(),
        Query::crd(),
        QueryFrontend::crd(),
        Store::crd(),
        Compactor::crd(),
        Ruler::crd(),
        RuleGroup::crd(),
        ClusterRuleGroup::crd(),
        GlobalRuleGroup::crd(),
    ]
}

// ---------------------------------------------------------------------------------------------
// prometheus-operator PrometheusRule (read only; not one of our CRDs)

/// The part of `monitoring.coreos.com/v1` `PrometheusRule` the rulers use. Groups are kept
/// as written (everything besides `name` passes through to the rule file).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PrometheusRule",
    plural = "prometheusrules",
    namespaced
)]
pub struct PrometheusRuleSpec {
    #[serde(default)]
    pub groups: Vec<PrometheusRuleGroup>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PrometheusRuleGroup {
    pub name: String,
    /// `interval`, `rules`, `limit`, `partial_response_strategy`, ... as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub rest: BTreeMap<String, Value>,
}
