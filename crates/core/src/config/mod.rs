//! The gateway's configuration: one typed model, validated once.
//!
//! `file` mirrors the YAML; [`Config::from_yaml`] lowers it into the runtime model below and
//! reports every problem at once (key path, and line where the YAML parser knows it).

/// Public so that the reconciler writes gateway configs through the same model.
pub mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub upstreams: Upstreams,
    pub tenancy: Tenancy,
    /// Tenants by id, with `defaults` already merged in.
    pub tenants: BTreeMap<String, Tenant>,
    pub users: Vec<User>,
    pub oidc: Vec<OidcConfig>,
    pub ui: Ui,
    pub server: Server,
    pub logging: Logging,
    /// `cluster`: per-tenant limits are fleet-wide, shared by the live replicas.
    pub cluster: Option<Cluster>,
}

/// `cluster`: the replicas of a fleet, found through DNS or a static list of their metrics
/// listeners (this replica included), probed on `/-/ready` every `refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub discovery: Discovery,
    pub refresh: Duration,
}

/// How a replica finds the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `cluster.dns`: every address the name resolves to (A and AAAA), on `port`.
    Dns(HostPort),
    /// `cluster.peers`: a fixed list (a host name is resolved every round).
    Peers(Vec<HostPort>),
}

/// A `host:port` of the `cluster` keys; `host` is an IP address or a DNS name (IPv6 without
/// brackets).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port` (`[v6]:port` for IPv6); the error says what is wrong.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port (e.g. 10.0.0.1:9091)"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?}: the port must be a number from 1 to 65535"))?;
        let host = match host.strip_prefix('[') {
            Some(v6) => {
                let v6 = v6
                    .strip_suffix(']')
                    .ok_or_else(|| format!("{s:?}: unbalanced [ ] around the IPv6 address"))?;
                v6.parse::<std::net::Ipv6Addr>()
                    .map_err(|_| format!("{s:?}: {v6:?} is not an IPv6 address"))?;
                v6.to_string()
            }
            None if host.contains(':') => {
                return Err(format!(
                    "{s:?}: write an IPv6 address in brackets, [::1]:9091"
                ))
            }
            None => host.to_string(),
        };
        let is_name = |h: &str| {
            h.len() <= 253
                && h.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        };
        if host.is_empty() {
            return Err(format!("{s:?}: the host is missing"));
        }
        if host.parse::<std::net::IpAddr>().is_err()
            && !is_name(host.strip_suffix('.').unwrap_or(&host))
        {
            return Err(format!(
                "{s:?}: {host:?} is not an IP address or a DNS name"
            ));
        }
        if host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(format!("{s:?}: {host} is not the address of a replica"));
        }
        Ok(HostPort { host, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone)]
pub struct Logging {
    pub format: LogFormat,
    pub level: String,
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub tls: Option<ListenTls>,
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional,
    Require,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Debug, Clone)]
pub struct ListenTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    /// Serve an expired certificate instead of refusing to start.
    pub allow_expired: bool,
}

/// One upstream endpoint, split the way the proxy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `host:port`, what the proxy connects to.
    pub address: String,
    /// The host as an IP address, when it is one: nothing to resolve (read per request).
    pub ip: Option<std::net::IpAddr>,
    /// The `Host` header of requests to it: the host, with the port unless it is the default.
    pub host_header: http::HeaderValue,
    /// Path of the URL without a trailing slash ("" for a bare base URL).
    pub path: String,
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct RemoteWriteTarget {
    pub name: String,
    pub upstream: Upstream,
    pub timeout: Duration,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `None`: every tenant.
    pub tenants: Option<BTreeSet<String>>,
}

/// What serves the query API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Thanos,
    /// Prometheus ignores `match[]` on `/api/v1/status/tsdb`, so that route is denied.
    Prometheus,
}

#[derive(Debug, Clone)]
pub struct Upstreams {
    pub query: Upstream,
    pub query_kind: QueryKind,
    pub receive: Upstream,
    pub otlp: Option<Upstream>,
    pub rules: Upstream,
    pub alertmanager: Option<Upstream>,
    pub tls: Option<UpstreamTls>,
    pub remote_writes: Vec<RemoteWriteTarget>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Tenancy {
    /// Lower-case header name set on every upstream request.
    pub header: String,
    pub label: String,
    pub inject_label_on_write: bool,
}

/// Limits of one tenant; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub requests_per_second: f64,
    pub write_samples_per_second: f64,
    pub max_body_bytes: u64,
    pub max_concurrent_requests: u64,
    /// Longest query text in bytes (0: the enforcer's own 64 KiB bound).
    pub max_query_length: u64,
    /// Longest `end - start` of a read, in seconds (0: unlimited).
    pub max_query_range: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_second: 0.0,
            write_samples_per_second: 0.0,
            max_body_bytes: 10 * 1024 * 1024,
            max_concurrent_requests: 0,
            max_query_length: 0,
            max_query_range: 0.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    /// Labels injected into every written series, sorted by name (tenant label excluded).
    pub external_labels: BTreeMap<String, String>,
    pub limits: Limits,
}

/// A stored password hash, checked for well-formedness at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Argon2id(String),
    Bcrypt(String),
}

impl PasswordHash {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with("$argon2id$") {
            let parsed = argon2::PasswordHash::new(s)
                .map_err(|e| format!("not a valid argon2id PHC string: {e}"))?;
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("the argon2id PHC string lacks its salt or hash".into());
            }
            argon2::Params::try_from(&parsed)
                .map_err(|e| format!("invalid argon2id parameters: {e}"))?;
            Ok(PasswordHash::Argon2id(s.to_string()))
        } else if s.starts_with("$argon2") {
            Err("only the argon2id variant is accepted (run `whizard hash-password`)".into())
        } else if is_bcrypt(s) {
            Ok(PasswordHash::Bcrypt(s.to_string()))
        } else {
            Err(
                "expected an argon2id PHC string ($argon2id$...) or a bcrypt hash ($2a$/$2b$/$2y$)"
                    .into(),
            )
        }
    }
}

fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    let prefix_ok = b.len() == 60
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$';
    let cost_ok = prefix_ok && {
        let cost = (b[4] - b'0') * 10 + (b[5] - b'0');
        (4..=31).contains(&cost)
    };
    cost_ok
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// Basic Auth; `None`: the user cannot log in with a password.
    pub password_hash: Option<PasswordHash>,
    /// `users[].certificate`: the only client certificates that log in as this user. `None`:
    /// no certificate does (a certificate naming the user's `name` is not enough).
    pub certificate: Option<CertificateMatch>,
    pub tenants: Vec<String>,
    pub access: Access,
    pub write_routing: WriteRouting,
}

/// `users[].write_routing`: how a remote write that names no tenant (no `/{tenant}/` prefix,
/// no tenant header) finds its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WriteRouting {
    /// The request names it, or the user has exactly one tenant.
    #[default]
    Named,
    /// Each series goes to the tenant its `tenancy.label` value names (one of the user's
    /// tenants, else the write is refused); series without the label go to `default_tenant`
    /// (refused when there is none). For writers that hold many tenants' series, such as a
    /// global ruler.
    ByLabel { default_tenant: Option<String> },
}

/// Which part of a verified client certificate identifies a user, and the value it must have.
/// At most one user has a given (field, value): a certificate's fields each name one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateMatch {
    pub field: CertificateField,
    /// For `cn`, `uri` and `email` compared byte for byte (case-sensitive). For `dns` stored
    /// in ASCII lowercase and compared ASCII case-insensitively (DNS names are, RFC 4343).
    pub value: String,
}

impl CertificateMatch {
    /// Whether a certificate `field` value equals this mapping's value (the rule above).
    pub fn matches(&self, candidate: &str) -> bool {
        match self.field {
            CertificateField::Dns => candidate.eq_ignore_ascii_case(&self.value),
            CertificateField::Cn | CertificateField::Uri | CertificateField::Email => {
                candidate == self.value
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CertificateField {
    /// A subject common name (any of them, when there are several).
    Cn,
    /// A `dNSName` subject alternative name.
    Dns,
    /// A `uniformResourceIdentifier` subject alternative name (e.g. a SPIFFE ID).
    Uri,
    /// An `rfc822Name` subject alternative name.
    Email,
}

impl CertificateField {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateField::Cn => "cn",
            CertificateField::Dns => "dns",
            CertificateField::Uri => "uri",
            CertificateField::Email => "email",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OidcProvider {
    pub issuer: String,
    pub audience: String,
    pub tenant_claim: String,
    pub access_claim: String,
    pub groups_claim: Option<String>,
    pub group_tenants: BTreeMap<String, Vec<String>>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub redirect_url: Option<String>,
}

/// One `oidc[]` entry: what its tokens must say ([`OidcProvider`], all the verifier needs) and
/// how the gateway reaches the provider ([`OidcTls`], used where its HTTP client is built).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub provider: OidcProvider,
    pub tls: OidcTls,
}

/// `oidc[].tls`: what the gateway trusts when it calls this provider (discovery, JWKS, token
/// endpoint). Deliberately separate from `upstreams.tls`: a lab Thanos with
/// `insecure_skip_verify` or a private CA must not make the identity provider — whose keys
/// decide every tenant — forgeable. The server name checked is always the URL's own host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcTls {
    /// The only roots trusted for this provider; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (together or not at all).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Ui {
    pub enabled: bool,
    pub cookie_secret: Option<String>,
    /// `ui.session_hours`: a session ends this long after login, renewals or not.
    pub session_ttl: Duration,
    /// `ui.session_renew_seconds`: a session is renewed at the provider this often (tenants
    /// and groups re-read, logout elsewhere noticed); without a refresh token it ends then.
    pub session_renew: Duration,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            enabled: false,
            cookie_secret: None,
            session_ttl: Duration::from_secs(8 * 3600),
            session_renew: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub threads: usize,
    /// One tokio runtime shared by all worker threads, which steal each other's tasks, instead
    /// of one single-threaded runtime per thread (see docs/internals.md, "Threads").
    pub work_stealing: bool,
    /// `server.pin_workers`: each worker thread runs on one CPU of its own (see
    /// docs/internals.md, "Threads"). Set at start; a reload does not change it.
    pub pin_workers: bool,
    pub upgrade_socket: PathBuf,
    pub grace_period: Duration,
    pub auth_cache_ttl: Duration,
    /// `server.short_way`: plain HTTP/1.1 GETs skip pingora's proxy engine (`gateway/short_way/mod.rs`);
    /// false sends every request through the engine. Follows reloads.
    pub short_way: bool,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `users[1].tenants[0]`.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {}): {}", self.key, line, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} error(s)", self.source_name, self.errors.len())?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source_name: name.clone(),
            errors: vec![ConfigError {
                key: "(file)".into(),
                line: None,
                message: format!("cannot read: {e}"),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&text, &name, base)
    }

    /// Parses and validates YAML text; relative file paths are resolved against `base_dir`.
    pub fn from_yaml(
        text: &str,
        source_name: &str,
        base_dir: &Path,
    ) -> Result<Config, ConfigErrors> {
        let mut v = Validator {
            errors: Vec::new(),
            text,
            base_dir,
        };
        let mut unknown = Vec::new();
        let de = serde_norway::Deserializer::from_str(text);
        let parsed: Result<file::File, _> =
            serde_ignored::deserialize(de, |path| unknown.push(path.to_string()));
        let raw = match parsed {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                let msg = e.to_string();
                // serde_norway appends "at line X column Y"; keep the message short.
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                let key = msg
                    .split(':')
                    .next()
                    .filter(|k| k.contains('.') || k.contains('['))
                    .unwrap_or("(document)")
                    .to_string();
                v.errors.push(ConfigError {
                    key,
                    line,
                    message: msg,
                });
                return Err(v.finish(source_name).unwrap_err());
            }
        };
        for key in unknown {
            let key = file::key_path(&key);
            let line = v.line_of(&key);
            v.errors.push(ConfigError {
                key,
                line,
                message: "unknown key".into(),
            });
        }
        let config = v.lower(raw);
        match v.finish(source_name) {
            Ok(()) => Ok(config),
            Err(e) => Err(e),
        }
    }

    /// Tenants a user may act for, looked up by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

struct Validator<'a> {
    errors: Vec<ConfigError>,
    text: &'a str,
    base_dir: &'a Path,
}

/// Label names as Prometheus accepts them in the classic (non-UTF-8) charset.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Tenant ids travel in URL paths, headers and label values: keep them boring.
pub fn is_valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `host` (an URL host, IPv6 without brackets) is this machine: 127.0.0.0/8, ::1 or
/// `localhost`. Plain `http://` to an identity provider is only allowed there, where nobody
/// can sit on the path.
pub fn is_loopback_host(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// First path segments that are routes of the gateway itself, so they cannot be tenant ids.
const RESERVED_TENANT_IDS: &[&str] = &[
    "api", "-", "oauth2", "metrics", "federate", "static", "graph",
];

impl Validator<'_> {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let line = self.line_of(&key);
        self.errors.push(ConfigError {
            key,
            line,
            message: message.into(),
        });
    }

    /// Best-effort line of a key path: each segment is searched after its parent, and an index
    /// `[n]` skips to the n-th block-style list item (`- `) below it.
    fn line_of(&self, key: &str) -> Option<usize> {
        let mut start = 0usize;
        for seg in key.split('.') {
            let (name, index) = match seg.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (seg, None),
            };
            if !name.is_empty() {
                let needle = format!("{name}:");
                let rest = &self.text[start..];
                let (i, _) = rest.match_indices(&needle).find(|(i, _)| {
                    matches!(
                        rest[..*i].chars().last(),
                        None | Some(' ') | Some('\n') | Some('-') | Some('{') | Some(',')
                    )
                })?;
                start += i + needle.len();
            }
            if let Some(n) = index {
                start = self.list_item(start, n).unwrap_or(start);
            }
        }
        Some(self.text[..start].matches('\n').count() + 1)
    }

    /// Offset of the n-th `- ` item of the block list that starts after `from`.
    fn list_item(&self, from: usize, n: usize) -> Option<usize> {
        let mut offset = from + self.text[from..].find('\n')? + 1;
        let mut indent = None;
        let mut seen = 0;
        for line in self.text[offset..].split_inclusive('\n') {
            let trimmed = line.trim_start();
            let this_indent = line.len() - trimmed.len();
            if trimmed.starts_with("- ") || trimmed.trim_end() == "-" {
                let first = *indent.get_or_insert(this_indent);
                if this_indent == first {
                    if seen == n {
                        return Some(offset + this_indent + 2);
                    }
                    seen += 1;
                }
            } else if !trimmed.is_empty()
                && !trimmed.starts_with('#')
                && indent.is_some_and(|i| this_indent < i)
            {
                return None;
            }
            offset += line.len();
        }
        None
    }

    fn finish(&mut self, source_name: &str) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors {
                source_name: source_name.to_string(),
                errors: std::mem::take(&mut self.errors),
            })
        }
    }

    fn addr(&mut self, key: &str, value: &Option<String>) -> Option<SocketAddr> {
        let s = value.as_ref()?;
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    key,
                    format!("{s:?} is not a host:port address such as 127.0.0.1:8080"),
                );
                None
            }
        }
    }

    fn file(&mut self, key: &str, value: &Option<String>) -> Option<PathBuf> {
        let s = value.as_ref()?;
        let p = self.base_dir.join(s);
        if let Err(e) = std::fs::metadata(&p).and_then(|_| std::fs::File::open(&p)) {
            self.err(key, format!("cannot read {}: {e}", p.display()));
        }
        Some(p)
    }

    fn upstream(&mut self, key: &str, value: &str) -> Option<Upstream> {
        let parsed = match url::Url::parse(value) {
            Ok(u) => u,
            Err(e) => {
                self.err(key, format!("{value:?} is not a URL: {e}"));
                return None;
            }
        };
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => {
                self.err(
                    key,
                    format!("scheme {other:?} is not supported (http or https)"),
                );
                return None;
            }
        };
        let Some(host) = parsed.host_str() else {
            self.err(key, "the URL has no host");
            return None;
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            self.err(key, "the URL must not have a query or fragment");
            return None;
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            self.err(key, "credentials in upstream URLs are not supported");
            return None;
        }
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let authority = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let address = format!("{authority}:{port}");
        let default_port = if tls { 443 } else { 80 };
        let host_header = if port == default_port {
            authority
        } else {
            address.clone()
        };
        let Ok(host_header) = http::HeaderValue::try_from(host_header) else {
            self.err(key, "the URL's host cannot be sent as a Host header");
            return None;
        };
        Some(Upstream {
            tls,
            ip: host.parse().ok(),
            host,
            port,
            address,
            host_header,
            path: parsed.path().trim_end_matches('/').to_string(),
            url: value.to_string(),
        })
    }

    /// `users[i].write_routing` and `users[i].default_tenant` (`key` is `users[i]`).
    fn write_routing(&mut self, key: &str, u: &file::User, access: Access) -> WriteRouting {
        let by_label = match u.write_routing.as_deref() {
            None | Some("named") => false,
            Some("by_label") => true,
            Some(other) => {
                self.err(
                    format!("{key}.write_routing"),
                    format!("{other:?} is not named or by_label"),
                );
                false
            }
        };
        if by_label && !access.write {
            self.err(
                format!("{key}.write_routing"),
                "by_label routes writes: the user needs write access",
            );
        }
        match (&u.default_tenant, by_label) {
            (Some(_), false) => {
                self.err(
                    format!("{key}.default_tenant"),
                    "only used with write_routing: by_label",
                );
                WriteRouting::Named
            }
            (Some(t), true) if !u.tenants.contains(t) => {
                self.err(
                    format!("{key}.default_tenant"),
                    format!("{t:?} is not one of this user's tenants"),
                );
                WriteRouting::Named
            }
            (default_tenant, true) => WriteRouting::ByLabel {
                default_tenant: default_tenant.clone(),
            },
            (None, false) => WriteRouting::Named,
        }
    }

    /// `users[i].certificate` (`key` is `users[i]`); `None` after reporting what is wrong.
    fn certificate_match(
        &mut self,
        key: &str,
        raw: &file::UserCertificate,
    ) -> Option<CertificateMatch> {
        let field = match raw.field.as_deref() {
            Some("cn") => Some(CertificateField::Cn),
            Some("dns") => Some(CertificateField::Dns),
            Some("uri") => Some(CertificateField::Uri),
            Some("email") => Some(CertificateField::Email),
            Some(other) => {
                self.err(
                    format!("{key}.certificate.field"),
                    format!("{other:?} is not cn, dns, uri or email"),
                );
                None
            }
            None => {
                self.err(
                    format!("{key}.certificate.field"),
                    "required (cn, dns, uri or email)",
                );
                None
            }
        };
        let value_key = format!("{key}.certificate.value");
        let value = match raw.value.as_deref() {
            None => {
                self.err(value_key, "required");
                return None;
            }
            Some("") => {
                self.err(value_key, "must not be empty");
                return None;
            }
            Some(v) if v.trim() != v || v.chars().any(char::is_control) => {
                self.err(
                    value_key,
                    "must not start or end with whitespace or contain control characters",
                );
                return None;
            }
            Some(v) => v,
        };
        let field = field?;
        // dNSName, URI and rfc822Name SANs are IA5String (ASCII): anything else never matches.
        if field != CertificateField::Cn && !value.is_ascii() {
            self.err(
                value_key,
                format!(
                    "a {} value is ASCII (internationalised names in their xn-- form)",
                    field.as_str()
                ),
            );
            return None;
        }
        let value = match field {
            CertificateField::Dns => value.to_ascii_lowercase(),
            _ => value.to_string(),
        };
        Some(CertificateMatch { field, value })
    }

    fn limits(&mut self, key: &str, base: &Limits, raw: &file::Limits) -> Limits {
        let mut out = *base;
        if let Some(v) = raw.requests_per_second {
            if !(v >= 0.0 && v.is_finite()) {
                self.err(
                    format!("{key}.requests_per_second"),
                    "must be a number >= 0",
                );
            } else {
                out.requests_per_second = v;
            }
        }
        if let Some(v) = raw.write_samples_per_second {
            if !(v >= 0.0 && v.is_finite()) {
                self.err(
                    format!("{key}.write_samples_per_second"),
                    "must be a number >= 0",
                );
            } else {
                out.write_samples_per_second = v;
            }
        }
        if let Some(v) = raw.max_body_bytes {
            out.max_body_bytes = v;
        }
        if let Some(v) = raw.max_concurrent_requests {
            out.max_concurrent_requests = v;
        }
        if let Some(v) = raw.max_query_length {
            out.max_query_length = v;
        }
        if let Some(v) = raw.max_query_range {
            if !(v >= 0.0 && v.is_finite()) {
                self.err(
                    format!("{key}.max_query_range"),
                    "must be a number of seconds >= 0",
                );
            } else {
                out.max_query_range = v;
            }
        }
        if out.max_body_bytes == 0 {
            self.err(format!("{key}.max_body_bytes"), "must be > 0");
        }
        out
    }

    fn labels(&mut self, key: &str, labels: &BTreeMap<String, String>, tenant_label: &str) {
        for (name, value) in labels {
            if !is_valid_label_name(name) || name.starts_with("__") {
                self.err(
                    format!("{key}.{name}"),
                    "not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
                );
            } else if name == tenant_label {
                self.err(
                    format!("{key}.{name}"),
                    "the tenant label is set by the gateway and cannot be an external label",
                );
            }
            if value.is_empty() {
                self.err(
                    format!("{key}.{name}"),
                    "an empty label value would delete the label",
                );
            }
        }
    }

    fn lower(&mut self, raw: file::File) -> Config {
        // listen
        let listen_raw = raw.listen.unwrap_or_default();
        let http = self.addr("listen.http", &listen_raw.http);
        let https = self.addr("listen.https", &listen_raw.https);
        let metrics = self.addr("listen.metrics", &listen_raw.metrics);
        if listen_raw.http.is_none() && listen_raw.https.is_none() {
            self.err("listen", "set listen.http, listen.https or both");
        }
        if let (Some(http), Some(https)) = (http, https) {
            // HTTPS connections are told from plain ones by the port they reach.
            if http.port() == https.port() {
                self.err("listen.https", "must not use the port of listen.http");
            }
        }
        let tls = match (&listen_raw.tls, &listen_raw.https) {
            (None, Some(_)) => {
                self.err("listen.tls", "required when listen.https is set");
                None
            }
            (Some(t), _) => self.listen_tls(t),
            (None, None) => None,
        };

        // upstreams
        let up = raw.upstreams.unwrap_or_default();
        let need = |v: &mut Self, key: &str, s: &Option<String>| -> Option<Upstream> {
            match s {
                Some(s) => v.upstream(key, s),
                None => {
                    v.err(key, "required");
                    None
                }
            }
        };
        let query = need(self, "upstreams.query", &up.query);
        let receive = need(self, "upstreams.receive", &up.receive);
        let otlp = up
            .otlp
            .as_ref()
            .and_then(|s| self.upstream("upstreams.otlp", s));
        let rules = up
            .rules
            .as_ref()
            .and_then(|s| self.upstream("upstreams.rules", s));
        let alertmanager = up
            .alertmanager
            .as_ref()
            .and_then(|s| self.upstream("upstreams.alertmanager", s));
        let upstream_tls = up.tls.as_ref().map(|t| UpstreamTls {
            ca_file: self.file("upstreams.tls.ca_file", &t.ca_file),
            cert_file: self.file("upstreams.tls.cert_file", &t.cert_file),
            key_file: self.file("upstreams.tls.key_file", &t.key_file),
            server_name: t.server_name.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        });
        if let Some(t) = &up.tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                self.err("upstreams.tls", "cert_file and key_file go together");
            }
        }
        let timeout = |v: &mut Self, key: &str, value: Option<f64>, default: f64| -> Duration {
            match value {
                None => Duration::from_secs_f64(default),
                Some(s) if s > 0.0 && s.is_finite() && s < 86_400.0 => Duration::from_secs_f64(s),
                Some(_) => {
                    v.err(key, "must be a number of seconds > 0");
                    Duration::from_secs_f64(default)
                }
            }
        };
        let connect_timeout = timeout(
            self,
            "upstreams.connect_timeout_seconds",
            up.connect_timeout_seconds,
            5.0,
        );
        let query_kind = match up.query_kind.as_deref() {
            None | Some("thanos") => QueryKind::Thanos,
            Some("prometheus") => QueryKind::Prometheus,
            Some(other) => {
                self.err(
                    "upstreams.query_kind",
                    format!("{other:?} is not thanos or prometheus"),
                );
                QueryKind::Thanos
            }
        };
        let request_timeout = timeout(self, "upstreams.timeout_seconds", up.timeout_seconds, 120.0);

        // tenancy
        let tenancy = Tenancy {
            header: raw.tenancy.header.to_ascii_lowercase(),
            label: raw.tenancy.label.clone(),
            inject_label_on_write: raw.tenancy.inject_label_on_write,
        };
        if http::HeaderName::from_bytes(tenancy.header.as_bytes()).is_err()
            || tenancy.header.is_empty()
        {
            self.err(
                "tenancy.header",
                format!("{:?} is not a valid HTTP header name", raw.tenancy.header),
            );
        } else if matches!(
            tenancy.header.as_str(),
            "authorization"
                | "host"
                | "cookie"
                | "content-type"
                | "content-length"
                | "content-encoding"
                | "transfer-encoding"
                | "connection"
        ) {
            self.err(
                "tenancy.header",
                format!("{:?} is a standard HTTP header", raw.tenancy.header),
            );
        }
        if !is_valid_label_name(&tenancy.label) || tenancy.label.starts_with("__") {
            self.err(
                "tenancy.label",
                format!("{:?} is not a valid label name", tenancy.label),
            );
        }

        // defaults and tenants
        let default_limits =
            self.limits("defaults.limits", &Limits::default(), &raw.defaults.limits);
        self.labels(
            "defaults.external_labels",
            &raw.defaults.external_labels,
            &tenancy.label,
        );
        let mut tenants = BTreeMap::new();
        for (i, t) in raw.tenants.iter().enumerate() {
            let key = format!("tenants[{i}]");
            let Some(id) = t.id.clone() else {
                self.err(format!("{key}.id"), "required");
                continue;
            };
            if !is_valid_tenant_id(&id) {
                self.err(
                    format!("{key}.id"),
                    format!(
                        "{id:?} is not a valid tenant id (1-128 of [A-Za-z0-9._-], not . or ..)"
                    ),
                );
            } else if RESERVED_TENANT_IDS.contains(&id.as_str()) {
                self.err(
                    format!("{key}.id"),
                    format!("{id:?} is reserved for a gateway route"),
                );
            }
            self.labels(
                &format!("{key}.external_labels"),
                &t.external_labels,
                &tenancy.label,
            );
            let mut external_labels = raw.defaults.external_labels.clone();
            external_labels.extend(t.external_labels.clone());
            let limits = self.limits(&format!("{key}.limits"), &default_limits, &t.limits);
            if tenants
                .insert(
                    id.clone(),
                    Tenant {
                        id: id.clone(),
                        external_labels,
                        limits,
                    },
                )
                .is_some()
            {
                self.err(
                    format!("{key}.id"),
                    format!("tenant {id:?} is declared twice"),
                );
            }
        }

        // users
        let mut users = Vec::new();
        let mut names = BTreeSet::new();
        // (field, value) → (index, name) of the user it identifies.
        let mut certificates: BTreeMap<(CertificateField, String), (usize, String)> =
            BTreeMap::new();
        for (i, u) in raw.users.iter().enumerate() {
            let key = format!("users[{i}]");
            let name = match &u.name {
                Some(n) if !n.is_empty() && !n.contains(':') => n.clone(),
                Some(_) => {
                    self.err(
                        format!("{key}.name"),
                        "must be non-empty and must not contain ':'",
                    );
                    continue;
                }
                None => {
                    self.err(format!("{key}.name"), "required");
                    continue;
                }
            };
            if !names.insert(name.clone()) {
                self.err(
                    format!("{key}.name"),
                    format!("user {name:?} is declared twice"),
                );
            }
            let password_hash = match &u.password_hash {
                Some(h) => match PasswordHash::parse(h) {
                    Ok(h) => Some(h),
                    Err(m) => {
                        self.err(format!("{key}.password_hash"), m);
                        None
                    }
                },
                // Users without a password can only authenticate with a client certificate.
                None => None,
            };
            let certificate = u
                .certificate
                .as_ref()
                .and_then(|c| self.certificate_match(&key, c));
            if let Some(m) = &certificate {
                if let Some((j, other)) = certificates.get(&(m.field, m.value.clone())) {
                    self.err(
                        format!("{key}.certificate.value"),
                        format!(
                            "certificate {} {:?} already identifies user {other:?} (users[{j}]); \
                             a certificate must name one user",
                            m.field.as_str(),
                            m.value
                        ),
                    );
                } else {
                    certificates.insert((m.field, m.value.clone()), (i, name.clone()));
                }
            }
            if u.password_hash.is_none() && u.certificate.is_none() {
                self.err(
                    key.clone(),
                    "set password_hash, certificate, or both: without either the user cannot log in",
                );
            }
            if u.tenants.is_empty() {
                self.err(format!("{key}.tenants"), "a user needs at least one tenant");
            }
            for (j, t) in u.tenants.iter().enumerate() {
                if !tenants.contains_key(t) {
                    self.err(
                        format!("{key}.tenants[{j}]"),
                        format!("unknown tenant {t:?} (not in tenants)"),
                    );
                }
            }
            let mut access = Access::default();
            if u.access.is_empty() {
                self.err(format!("{key}.access"), "list read and/or write");
            }
            for (j, a) in u.access.iter().enumerate() {
                match a.as_str() {
                    "read" => access.read = true,
                    "write" => access.write = true,
                    other => self.err(
                        format!("{key}.access[{j}]"),
                        format!("{other:?} is not read or write"),
                    ),
                }
            }
            let write_routing = self.write_routing(&key, u, access);
            users.push(User {
                name,
                password_hash,
                certificate,
                tenants: u.tenants.clone(),
                access,
                write_routing,
            });
        }

        // remote write copies
        let mut remote_writes = Vec::new();
        for (i, rw) in up.remote_writes.iter().enumerate() {
            let key = format!("upstreams.remote_writes[{i}]");
            let name = rw
                .name
                .clone()
                .unwrap_or_else(|| format!("remote_write_{i}"));
            let Some(url) = &rw.url else {
                self.err(format!("{key}.url"), "required");
                continue;
            };
            let Some(upstream) = self.upstream(&format!("{key}.url"), url) else {
                continue;
            };
            if let Some(ts) = &rw.tenants {
                for (j, t) in ts.iter().enumerate() {
                    if !tenants.contains_key(t) {
                        self.err(
                            format!("{key}.tenants[{j}]"),
                            format!("unknown tenant {t:?}"),
                        );
                    }
                }
            }
            let mut headers = Vec::new();
            for (k, v) in &rw.headers {
                match (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(v),
                ) {
                    (Ok(k), Ok(v)) => headers.push((k, v)),
                    _ => self.err(format!("{key}.headers.{k}"), "not a valid HTTP header"),
                }
            }
            let timeout = match rw.timeout_seconds {
                None => Duration::from_secs(30),
                Some(s) if s > 0.0 && s.is_finite() && s < 3600.0 => Duration::from_secs_f64(s),
                Some(_) => {
                    self.err(
                        format!("{key}.timeout_seconds"),
                        "must be a number of seconds > 0",
                    );
                    Duration::from_secs(30)
                }
            };
            if remote_writes
                .iter()
                .any(|r: &RemoteWriteTarget| r.name == name)
            {
                self.err(
                    format!("{key}.name"),
                    format!("remote write target {name:?} is declared twice"),
                );
            }
            remote_writes.push(RemoteWriteTarget {
                name,
                upstream,
                timeout,
                headers,
                tenants: rw.tenants.as_ref().map(|t| t.iter().cloned().collect()),
            });
        }

        // oidc
        let mut oidc: Vec<OidcConfig> = Vec::new();
        for (i, o) in raw.oidc.iter().enumerate() {
            let key = format!("oidc[{i}]");
            let issuer = match &o.issuer {
                Some(s) => {
                    let issuer_key = format!("{key}.issuer");
                    if let Some(up) = self.upstream(&issuer_key, s) {
                        // Whoever can answer for the issuer mints tokens for every tenant (and
                        // reads `client_secret`): cleartext only where nobody is on the path.
                        if !up.tls && !is_loopback_host(&up.host) {
                            self.err(
                                &issuer_key,
                                format!(
                                    "{s:?} is plain http: use https:// (http:// is only \
                                     accepted on loopback: 127.0.0.0/8, ::1, localhost)"
                                ),
                            );
                        }
                    }
                    s.trim_end_matches('/').to_string()
                }
                None => {
                    self.err(format!("{key}.issuer"), "required");
                    continue;
                }
            };
            // The verifier picks the provider by `iss`, first match wins: a second entry for
            // the same issuer would never be used, whatever its audience or claims say.
            if let Some(j) = oidc.iter().position(|p| p.provider.issuer == issuer) {
                self.err(
                    format!("{key}.issuer"),
                    format!("issuer {issuer:?} is already configured in oidc[{j}]"),
                );
            }
            for (group, ids) in &o.group_tenants {
                for (j, t) in ids.iter().enumerate() {
                    let tkey = format!("{key}.group_tenants.{group}[{j}]");
                    if !is_valid_tenant_id(t) {
                        self.err(tkey, format!("{t:?} is not a valid tenant id"));
                    } else if !tenants.contains_key(t) {
                        self.err(tkey, format!("unknown tenant {t:?} (not in tenants)"));
                    }
                }
            }
            let tls = match &o.tls {
                Some(t) => self.oidc_tls(&format!("{key}.tls"), t),
                None => OidcTls::default(),
            };
            let Some(audience) = o.audience.clone() else {
                self.err(format!("{key}.audience"), "required");
                continue;
            };
            oidc.push(OidcConfig {
                provider: OidcProvider {
                    issuer,
                    audience,
                    tenant_claim: o.tenant_claim.clone().unwrap_or_else(|| "tenant".into()),
                    access_claim: o.access_claim.clone().unwrap_or_else(|| "scope".into()),
                    groups_claim: o.groups_claim.clone(),
                    group_tenants: o.group_tenants.clone(),
                    client_id: o.client_id.clone(),
                    client_secret: o.client_secret.clone(),
                    redirect_url: o.redirect_url.clone(),
                },
                tls,
            });
        }

        // ui
        let session_hours = raw.ui.session_hours.unwrap_or(8);
        if !(1..=24).contains(&session_hours) {
            self.err("ui.session_hours", "must be 1 to 24");
        }
        let session_renew_seconds = raw.ui.session_renew_seconds.unwrap_or(300);
        if !(1..=3600).contains(&session_renew_seconds) {
            self.err("ui.session_renew_seconds", "must be 1 to 3600");
        }
        if raw.ui.enabled {
            match &raw.ui.cookie_secret {
                Some(s) if s.len() >= 32 => {}
                Some(_) => self.err("ui.cookie_secret", "must be at least 32 bytes"),
                None => self.err("ui.cookie_secret", "required when ui.enabled is true"),
            }
        }

        if raw.server.pin_workers == Some(true) && raw.server.work_stealing == Some(true) {
            // With one shared runtime a connection's tasks move between threads: pinning the
            // threads would not keep anything on a CPU of its own.
            self.err(
                "server.pin_workers",
                "needs one runtime per thread (server.work_stealing: false)",
            );
        }
        let server = Server {
            threads: raw
                .server
                .threads
                .unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2)
                })
                .max(1),
            work_stealing: raw.server.work_stealing.unwrap_or(false),
            pin_workers: raw.server.pin_workers.unwrap_or(false),
            short_way: raw.server.short_way.unwrap_or(true),
            grace_period: Duration::from_secs(raw.server.grace_period_seconds.unwrap_or(30)),
            auth_cache_ttl: Duration::from_secs(raw.server.auth_cache_ttl_seconds.unwrap_or(300)),
            upgrade_socket: PathBuf::from(
                raw.server
                    .upgrade_socket
                    .clone()
                    .unwrap_or_else(|| "/tmp/whizard_upgrade.sock".into()),
            ),
        };

        let logging = Logging {
            format: match raw.logging.format.as_deref() {
                None | Some("logfmt") => LogFormat::Logfmt,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    self.err("logging.format", format!("{other:?} is not logfmt or json"));
                    LogFormat::Logfmt
                }
            },
            level: match raw.logging.level.as_deref() {
                None => "info".to_string(),
                Some(l @ ("error" | "warn" | "info" | "debug" | "trace")) => l.to_string(),
                Some(other) => {
                    self.err(
                        "logging.level",
                        format!("{other:?} is not error, warn, info or debug"),
                    );
                    "info".to_string()
                }
            },
            access_log: raw.logging.access_log.unwrap_or(true),
        };
        let cluster = raw.cluster.as_ref().and_then(|c| self.cluster(c, metrics));
        let fallback = Upstream {
            tls: false,
            host: String::new(),
            port: 0,
            address: String::new(),
            ip: None,
            host_header: http::HeaderValue::from_static(""),
            path: String::new(),
            url: String::new(),
        };
        let query = query.unwrap_or_else(|| fallback.clone());
        Config {
            listen: Listen {
                http,
                https,
                tls,
                metrics,
            },
            upstreams: Upstreams {
                rules: rules.unwrap_or_else(|| query.clone()),
                query,
                query_kind,
                receive: receive.unwrap_or(fallback),
                otlp,
                alertmanager,
                tls: upstream_tls,
                remote_writes,
                connect_timeout,
                timeout: request_timeout,
            },
            tenancy,
            tenants,
            users,
            oidc,
            ui: Ui {
                enabled: raw.ui.enabled,
                cookie_secret: raw.ui.cookie_secret,
                session_ttl: Duration::from_secs(session_hours.clamp(1, 24) * 3600),
                session_renew: Duration::from_secs(session_renew_seconds.clamp(1, 3600)),
            },
            server,
            logging,
            cluster,
        }
    }

    /// `cluster`: exactly one of `dns` and `peers`; the metrics listener is what the other
    /// replicas probe, so it is required.
    fn cluster(&mut self, raw: &file::Cluster, metrics: Option<SocketAddr>) -> Option<Cluster> {
        let refresh = match raw.refresh_seconds {
            None => Duration::from_secs(5),
            Some(s) if (0.1..=3600.0).contains(&s) => Duration::from_secs_f64(s),
            Some(_) => {
                self.err(
                    "cluster.refresh_seconds",
                    "must be a number of seconds from 0.1 to 3600",
                );
                Duration::from_secs(5)
            }
        };
        if metrics.is_none() {
            self.err(
                "cluster",
                "requires listen.metrics: the replicas probe each other's /-/ready on their \
                 metrics listeners",
            );
        }
        let discovery = match (&raw.dns, &raw.peers) {
            (Some(_), Some(_)) => {
                self.err(
                    "cluster",
                    "set exactly one of cluster.dns and cluster.peers, not both",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    "cluster",
                    "set exactly one of cluster.dns (HOST:PORT of a headless Service) and \
                     cluster.peers (a list of HOST:PORT)",
                );
                return None;
            }
            (Some(dns), None) => match HostPort::parse(dns) {
                Ok(hp) => Discovery::Dns(hp),
                Err(e) => {
                    self.err("cluster.dns", e);
                    return None;
                }
            },
            (None, Some(peers)) => {
                if peers.is_empty() {
                    self.err(
                        "cluster.peers",
                        "list every replica's metrics listener (HOST:PORT), this one included",
                    );
                    return None;
                }
                let mut out: Vec<HostPort> = Vec::with_capacity(peers.len());
                let mut ok = true;
                for (i, p) in peers.iter().enumerate() {
                    match HostPort::parse(p) {
                        Ok(hp) if out.contains(&hp) => {
                            self.err(
                                format!("cluster.peers[{i}]"),
                                format!("{p:?} is listed twice"),
                            );
                            ok = false;
                        }
                        Ok(hp) => out.push(hp),
                        Err(e) => {
                            self.err(format!("cluster.peers[{i}]"), e);
                            ok = false;
                        }
                    }
                }
                if !ok {
                    return None;
                }
                Discovery::Peers(out)
            }
        };
        Some(Cluster { discovery, refresh })
    }

    /// `oidc[N].tls`: files must be readable (their PEM content is checked where the client is
    /// built, and by `check-config`); a client certificate needs its key and the other way round.
    fn oidc_tls(&mut self, key: &str, t: &file::OidcTls) -> OidcTls {
        let tls = OidcTls {
            ca_file: self.file(&format!("{key}.ca_file"), &t.ca_file),
            cert_file: self.file(&format!("{key}.cert_file"), &t.cert_file),
            key_file: self.file(&format!("{key}.key_file"), &t.key_file),
        };
        match (&t.cert_file, &t.key_file) {
            (Some(_), None) => self.err(format!("{key}.key_file"), "required with cert_file"),
            (None, Some(_)) => self.err(format!("{key}.cert_file"), "required with key_file"),
            _ => {}
        }
        tls
    }

    fn listen_tls(&mut self, t: &file::ListenTls) -> Option<ListenTls> {
        let cert_file = self.file("listen.tls.cert_file", &t.cert_file);
        let key_file = self.file("listen.tls.key_file", &t.key_file);
        let client_ca_file = self.file("listen.tls.client_ca_file", &t.client_ca_file);
        if t.cert_file.is_none() {
            self.err("listen.tls.cert_file", "required");
        }
        if t.key_file.is_none() {
            self.err("listen.tls.key_file", "required");
        }
        let client_auth = match t.client_auth.as_deref() {
            None if client_ca_file.is_some() => ClientAuth::Optional,
            None | Some("none") => ClientAuth::None,
            Some("optional") => ClientAuth::Optional,
            Some("require") => ClientAuth::Require,
            Some(other) => {
                self.err(
                    "listen.tls.client_auth",
                    format!("{other:?} is not none, optional or require"),
                );
                ClientAuth::None
            }
        };
        if client_auth != ClientAuth::None && client_ca_file.is_none() {
            self.err(
                "listen.tls.client_ca_file",
                "required when client_auth is optional or require",
            );
        }
        let min_version = match t.min_version.as_deref() {
            None | Some("1.2") => TlsVersion::V1_2,
            Some("1.3") => TlsVersion::V1_3,
            Some(other) => {
                self.err(
                    "listen.tls.min_version",
                    format!("{other:?} is not \"1.2\" or \"1.3\""),
                );
                TlsVersion::V1_2
            }
        };
        Some(ListenTls {
            cert_file: cert_file?,
            key_file: key_file?,
            client_ca_file,
            client_auth,
            min_version,
            allow_expired: t.allow_expired.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests;
