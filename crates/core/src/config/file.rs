//! The on-disk YAML shape of the gateway config (DESIGN.md "Gateway configuration").
//! These types only mirror the file; `super::validate` lowers them into the runtime model.
//! Unknown keys are collected with `serde_ignored` so that every one of them is reported.
//!
//! The types also serialise (the reconciler writes the gateway's config through them): a
//! serialised [`File`] holds only the keys that were set (plus `tenancy`, `tenants` and
//! `users`, always written), and reads back into an equal `File`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// `skip_serializing_if` of a section whose default is what an absent key reads as.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Durations in seconds are written as integers when whole (`15`, not `15.0`): both read back
/// as the same `f64`, and the integer is what a person (and the reconciler, whose timeouts
/// are whole seconds) writes.
fn seconds<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    // Below 2^53 every whole f64 is exactly an integer, so the cast loses nothing.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match *v {
        Some(x) if x.fract() == 0.0 && (0.0..EXACT).contains(&x) => s.serialize_u64(x as u64),
        Some(x) => s.serialize_f64(x),
        None => s.serialize_none(),
    }
}

/// Why a JSON value is not a section of the config file.
#[derive(Debug, thiserror::Error)]
pub enum FromJsonError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown key(s): {}", .0.join(", "))]
    UnknownKeys(Vec<String>),
}

/// Reads a section of the config file (e.g. an [`Oidc`] entry) from a JSON value as the
/// gateway's loader would: unknown keys are an error rather than dropped, since the
/// gateway refuses them.
pub fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, FromJsonError> {
    let mut unknown = Vec::new();
    let t = serde_ignored::deserialize(v, |path| unknown.push(key_path(&path.to_string())))
        .map_err(|e| FromJsonError::Invalid(e.to_string()))?;
    if unknown.is_empty() {
        Ok(t)
    } else {
        Err(FromJsonError::UnknownKeys(unknown))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct File {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Listen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Upstreams>,
    /// Always written, like `tenants` and `users`: the sections every gateway config has.
    #[serde(default)]
    pub tenancy: Tenancy,
    #[serde(default, skip_serializing_if = "is_default")]
    pub defaults: Defaults,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oidc: Vec<Oidc>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ui: Ui,
    #[serde(default, skip_serializing_if = "is_default")]
    pub server: Server,
    #[serde(default, skip_serializing_if = "is_default")]
    pub logging: Logging,
    /// A fleet of replicas sharing every per-tenant limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
}

/// `cluster`: how a replica finds the others (exactly one of `dns` and `peers`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Cluster {
    /// `HOST:PORT`: A/AAAA records of the replicas (a headless Service), resolved every round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// `HOST:PORT` of every replica's metrics listener, this one included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
    /// Seconds between two rounds of probes (default 5).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seconds")]
    pub refresh_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Logging {
    /// `logfmt` (default) or `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `error`, `warn`, `info` (default), `debug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// One line per request (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Listen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct ListenTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// Serve an expired certificate instead of refusing to start (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_expired: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Upstreams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_writes: Vec<RemoteWriteTarget>,
    /// `thanos` (default) or `prometheus`: what serves `query`, for APIs whose enforcement
    /// depends on the backend honouring `match[]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_kind: Option<String>,
    /// Seconds to wait for an upstream connection.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seconds")]
    pub connect_timeout_seconds: Option<f64>,
    /// Seconds to wait for an upstream response (reads and writes).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seconds")]
    pub timeout_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct UpstreamTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct RemoteWriteTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    /// Seconds for one copy (default 30).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seconds")]
    pub timeout_seconds: Option<f64>,
    /// Extra headers sent with every copy (e.g. an API key of the target).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Tenancy {
    #[serde(default = "default_header")]
    pub header: String,
    #[serde(default = "default_label")]
    pub label: String,
    #[serde(default = "default_true")]
    pub inject_label_on_write: bool,
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy {
            header: default_header(),
            label: default_label(),
            inject_label_on_write: true,
        }
    }
}

fn default_header() -> String {
    "THANOS-TENANT".to_string()
}
fn default_label() -> String {
    "tenant_id".to_string()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_samples_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u64>,
    /// Longest PromQL query text, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_query_length: Option<u64>,
    /// Longest time range (`end - start`) of a read, in seconds.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seconds")]
    pub max_query_range: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Tenant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// The client certificate that logs in as this user (no implicit match on `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<UserCertificate>,
    /// Always written (also when empty), like `access`.
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub access: Vec<String>,
    /// `named` (default) or `by_label`: see [`crate::config::WriteRouting`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_routing: Option<String>,
    /// With `write_routing: by_label`: the tenant of series without the tenant label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_tenant: Option<String>,
}

/// `users[].certificate`: `{field: cn | dns | uri | email, value: "..."}`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct UserCertificate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Oidc {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_tenants: BTreeMap<String, Vec<String>>,
    /// How the provider's certificate is verified (default: the system roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<OidcTls>,
}

/// `oidc[].tls`: trust for one provider only, independent of `upstreams.tls`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct OidcTls {
    /// PEM CA bundle: the only roots trusted for this provider (the system roots are not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Client certificate for providers that authenticate the gateway by mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Ui {
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_secret: Option<String>,
    /// Lifetime of a browser session from login (default 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_hours: Option<u64>,
    /// How often a session is renewed at the provider (default 300).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_renew_seconds: Option<u64>,
}

/// Process-level settings (not in DESIGN.md's example; all optional).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Server {
    /// Worker threads for the proxy service (default: number of CPUs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Let idle worker threads take tasks from busy ones (default: false, one runtime per thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_stealing: Option<bool>,
    /// Pin each worker thread to its own CPU of the process's allowed set (default: false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_workers: Option<bool>,
    /// Seconds to finish in-flight requests after SIGTERM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u64>,
    /// Seconds a verified Basic Auth credential stays cached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_cache_ttl_seconds: Option<u64>,
    /// Unix socket for handing the listeners to a new process (`--upgrade`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_socket: Option<String>,
    /// Serve plain HTTP/1.1 GETs on the short way (default: true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_way: Option<bool>,
}

/// `serde_ignored`'s path (`users.0.?.name`) in the notation of our messages (`users[0].name`).
pub(super) fn key_path(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for seg in raw.split('.').filter(|s| *s != "?") {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}
