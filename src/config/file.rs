//! The on-disk YAML shape of the gateway config (DESIGN.md "Gateway configuration").
//! These types only mirror the file; `super::validate` lowers them into the runtime model.
//! Unknown keys are collected with `serde_ignored` so that every one of them is reported.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default)]
pub struct File {
    pub listen: Option<Listen>,
    pub upstreams: Option<Upstreams>,
    #[serde(default)]
    pub tenancy: Tenancy,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub oidc: Vec<Oidc>,
    #[serde(default)]
    pub ui: Ui,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub logging: Logging,
    /// A fleet of replicas sharing every per-tenant limit.
    pub cluster: Option<Cluster>,
}

/// `cluster`: how a replica finds the others (exactly one of `dns` and `peers`).
#[derive(Debug, Deserialize, Default)]
pub struct Cluster {
    /// `HOST:PORT`: A/AAAA records of the replicas (a headless Service), resolved every round.
    pub dns: Option<String>,
    /// `HOST:PORT` of every replica's metrics listener, this one included.
    pub peers: Option<Vec<String>>,
    /// Seconds between two rounds of probes (default 5).
    pub refresh_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Logging {
    /// `logfmt` (default) or `json`.
    pub format: Option<String>,
    /// `error`, `warn`, `info` (default), `debug`.
    pub level: Option<String>,
    /// One line per request (default true).
    pub access_log: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Listen {
    pub http: Option<String>,
    pub https: Option<String>,
    pub tls: Option<ListenTls>,
    pub metrics: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ListenTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_auth: Option<String>,
    pub min_version: Option<String>,
    /// Serve an expired certificate instead of refusing to start (default false).
    pub allow_expired: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Upstreams {
    pub query: Option<String>,
    pub receive: Option<String>,
    pub otlp: Option<String>,
    pub rules: Option<String>,
    pub alertmanager: Option<String>,
    pub tls: Option<UpstreamTls>,
    #[serde(default)]
    pub remote_writes: Vec<RemoteWriteTarget>,
    /// `thanos` (default) or `prometheus`: what serves `query`, for APIs whose enforcement
    /// depends on the backend honouring `match[]`.
    pub query_kind: Option<String>,
    /// Seconds to wait for an upstream connection.
    pub connect_timeout_seconds: Option<f64>,
    /// Seconds to wait for an upstream response (reads and writes).
    pub timeout_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct UpstreamTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct RemoteWriteTarget {
    pub name: Option<String>,
    pub url: Option<String>,
    pub tenants: Option<Vec<String>>,
    /// Seconds for one copy (default 30).
    pub timeout_seconds: Option<f64>,
    /// Extra headers sent with every copy (e.g. an API key of the target).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize, Default, Clone)]
pub struct Limits {
    pub requests_per_second: Option<f64>,
    pub write_samples_per_second: Option<f64>,
    pub max_body_bytes: Option<u64>,
    pub max_concurrent_requests: Option<u64>,
    /// Longest PromQL query text, in bytes.
    pub max_query_length: Option<u64>,
    /// Longest time range (`end - start`) of a read, in seconds.
    pub max_query_range: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Defaults {
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Tenant {
    pub id: Option<String>,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Deserialize, Default)]
pub struct User {
    pub name: Option<String>,
    pub password_hash: Option<String>,
    /// The client certificate that logs in as this user (no implicit match on `name`).
    pub certificate: Option<UserCertificate>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub access: Vec<String>,
    /// `named` (default) or `by_label`: see [`crate::config::WriteRouting`].
    pub write_routing: Option<String>,
    /// With `write_routing: by_label`: the tenant of series without the tenant label.
    pub default_tenant: Option<String>,
}

/// `users[].certificate`: `{field: cn | dns | uri | email, value: "..."}`.
#[derive(Debug, Deserialize, Default)]
pub struct UserCertificate {
    pub field: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Oidc {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub tenant_claim: Option<String>,
    pub access_claim: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub redirect_url: Option<String>,
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub group_tenants: BTreeMap<String, Vec<String>>,
    /// How the provider's certificate is verified (default: the system roots).
    pub tls: Option<OidcTls>,
}

/// `oidc[].tls`: trust for one provider only, independent of `upstreams.tls`.
#[derive(Debug, Deserialize, Default)]
pub struct OidcTls {
    /// PEM CA bundle: the only roots trusted for this provider (the system roots are not).
    pub ca_file: Option<String>,
    /// Client certificate for providers that authenticate the gateway by mTLS.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Ui {
    #[serde(default)]
    pub enabled: bool,
    pub cookie_secret: Option<String>,
    /// Lifetime of a browser session from login (default 8).
    pub session_hours: Option<u64>,
    /// How often a session is renewed at the provider (default 300).
    pub session_renew_seconds: Option<u64>,
}

/// Process-level settings (not in DESIGN.md's example; all optional).
#[derive(Debug, Deserialize, Default)]
pub struct Server {
    /// Worker threads for the proxy service (default: number of CPUs).
    pub threads: Option<usize>,
    /// Let idle worker threads take tasks from busy ones (default: false, one runtime per thread).
    pub work_stealing: Option<bool>,
    /// Seconds to finish in-flight requests after SIGTERM.
    pub grace_period_seconds: Option<u64>,
    /// Seconds a verified Basic Auth credential stays cached.
    pub auth_cache_ttl_seconds: Option<u64>,
    /// Unix socket for handing the listeners to a new process (`--upgrade`).
    pub upgrade_socket: Option<String>,
    /// Serve plain HTTP/1.1 GETs on the short way (default: true).
    pub short_way: Option<bool>,
}
