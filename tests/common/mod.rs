//! End-to-end test harness: real components on loopback (see shared DESIGN.md, "Real components
//! in tests").
//!
//! Use from an integration test with `mod common;` and `use common::*;`.
//!
//! | part | type | what runs |
//! |---|---|---|
//! | Thanos-compatible backend | [`Backend`] | `prometheus --web.enable-remote-write-receiver` |
//! | remote_write client | [`Agent`] (built with [`AgentBuilder`]) | `prometheus --enable-feature=agent` |
//! | the binary under test | [`Gateway`] | `whizard gateway --config FILE` |
//! | query client | [`promtool_query`] | `promtool query instant URL EXPR` |
//! | header-level view of an upstream | [`RecordingUpstream`] | an in-process HTTP/1.1 server |
//! | certificates | [`TestPki`] | `openssl` CLI |
//!
//! Rules this harness keeps:
//! - every port is picked by [`free_port`] and every file lives in a temp dir;
//! - every wait polls with a deadline (no fixed sleeps); deadlines can be stretched on a slow
//!   machine with the env var `WHIZARD_TEST_TIMEOUT_SCALE` (e.g. `3`);
//! - every child process is killed when its handle is dropped; when a test panics, the handles
//!   print the tail of their process's log to stderr (cargo shows it for failed tests only);
//! - processes that exit during start-up because their port was taken are restarted on new ports.
//!
//! The gateway binary is `$WHIZARD_BIN` when set, else cargo's `CARGO_BIN_EXE_whizard`.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tempfile::TempDir;

/// A map of label name to label value.
pub type Labels = BTreeMap<String, String>;

pub const PROMETHEUS_BIN: &str = "prometheus";
pub const PROMTOOL_BIN: &str = "promtool";

// ---------------------------------------------------------------------------------------------
// Deadlines, polling
// ---------------------------------------------------------------------------------------------

/// Multiplies `d` by `$WHIZARD_TEST_TIMEOUT_SCALE` (default 1).
pub fn scaled(d: Duration) -> Duration {
    static SCALE: OnceLock<f64> = OnceLock::new();
    let s = *SCALE.get_or_init(|| {
        std::env::var("WHIZARD_TEST_TIMEOUT_SCALE")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(1.0)
    });
    d.mul_f64(s)
}

/// Deadline for a process to become ready.
pub fn startup_deadline() -> Duration {
    scaled(Duration::from_secs(30))
}

/// Deadline for a process to exit after SIGTERM before it is killed.
fn stop_grace() -> Duration {
    scaled(Duration::from_secs(10))
}

fn next_interval(cur: Duration) -> Duration {
    (cur * 2).min(Duration::from_millis(200))
}

/// Starts `command()` with stdout and stderr appended to `log` and waits until `ready` shows up
/// in what it writes. A start that stays silent past the startup deadline (seen once in CI: node
/// alive, nothing after its first warning) is killed and tried once more, so one stuck start
/// does not fail a test; a process that exits fails at once, with its log.
pub async fn spawn_until_logged(
    what: &str,
    mut command: impl FnMut() -> Command,
    log: &Path,
    ready: &str,
) -> Child {
    for attempt in 1..=2 {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let start_len = fs::metadata(log).map(|m| m.len()).unwrap_or(0) as usize;
        let mut child = command()
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let deadline = Instant::now() + startup_deadline();
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if text.get(start_len..).unwrap_or("").contains(ready) {
                return child;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("{what} exited ({st}):\n{text}");
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "{what}: not ready after start {attempt}; log tail:\n{}",
            tail_file(log, 20)
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} did not print {ready:?} in two starts");
}

/// Starts the test identity provider (`node tests/node/idp.mjs`, the real `oidc-provider`) on
/// `port` with its signing keys kept in `keys` (so a restart keeps them), the extra `env`, and
/// its output in `log`; returns once it announces `issuer`.
pub async fn spawn_idp(
    port: u16,
    keys: &Path,
    env: &[(String, String)],
    log: &Path,
    issuer: &str,
) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/idp.mjs");
    let port = port.to_string();
    spawn_until_logged(
        "the identity provider",
        || {
            let mut cmd = Command::new("node");
            cmd.arg(&script)
                .env("IDP_PORT", &port)
                .env("IDP_KEYS_FILE", keys)
                .env("NO_PROXY", "127.0.0.1")
                .env_remove("http_proxy")
                .env_remove("HTTP_PROXY")
                .envs(env.iter().map(|(k, v)| (k, v)));
            cmd
        },
        log,
        &format!("ready {issuer}"),
    )
    .await
}

/// Calls `f` until it returns `Some`, sleeping 10ms..200ms between tries; panics naming `what`
/// when `deadline` (scaled by `WHIZARD_TEST_TIMEOUT_SCALE`) passes.
pub async fn poll_until<F, Fut, T>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = scaled(deadline);
    let start = Instant::now();
    let mut interval = Duration::from_millis(10);
    let mut tries = 0u32;
    loop {
        tries += 1;
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} ({tries} tries) waiting for: {what}");
        }
        tokio::time::sleep(interval).await;
        interval = next_interval(interval);
    }
}

/// Blocking variant of [`poll_until`] for non-async contexts.
pub fn poll_until_blocking<T>(
    deadline: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = scaled(deadline);
    let start = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        std::thread::sleep(interval);
        interval = next_interval(interval);
    }
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

static PORT_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The range free ports are picked from: below the kernel's ephemeral range, so the kernel never
/// hands one of them to an outgoing connection or to another process's `bind(:0)`.
fn port_range() -> (u32, u32) {
    let eph_lo = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    if eph_lo >= 12000 {
        (10000, eph_lo)
    } else {
        // Unusual kernel setting: use the range above the ephemeral one.
        (61000, 65000)
    }
}

fn port_is_free(port: u16) -> bool {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && StdTcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// A free TCP port on 127.0.0.1. Ports are never handed out twice by one process: each call
/// takes the next port after a per-process random start (so concurrent test processes, e.g.
/// under nextest, start far apart) and checks that it can be bound.
pub fn free_port() -> u16 {
    static BASE: OnceLock<u32> = OnceLock::new();
    let (lo, hi) = port_range();
    let span = hi - lo;
    let base = *BASE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut x = (std::process::id() as u64) << 32 | nanos as u64;
        // splitmix64 finaliser
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
        x ^= x >> 31;
        (x % span as u64) as u32
    });
    for _ in 0..span {
        let n = PORT_COUNTER.fetch_add(1, Ordering::SeqCst);
        let port = (lo + (base + n) % span) as u16;
        if port_is_free(port) {
            return port;
        }
    }
    // Everything taken: let the kernel choose.
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn tcp_connects(port: u16) -> bool {
    StdTcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

// ---------------------------------------------------------------------------------------------
// HTTP client and small encoders
// ---------------------------------------------------------------------------------------------

/// A plain-HTTP client for loopback (no proxy, 30s timeout). A new client (and connection
/// pool) per call: each `#[tokio::test]` has its own runtime, and pooled connections must not
/// outlive the runtime that opened them.
/// reqwest is built with rustls but no default crypto provider, and jsonwebtoken with no crypto
/// backend: tests install the gateway's (ring, for both) once per process, before any HTTP
/// client is built or any token signed.
pub fn ensure_crypto_provider() {
    whizard::gateway::tls::install_crypto_provider();
}

pub fn http_client() -> reqwest::Client {
    ensure_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(scaled(Duration::from_secs(30)))
        .build()
        .expect("build reqwest client")
}

/// Same as [`http_client`].
pub fn new_http_client() -> reqwest::Client {
    ensure_crypto_provider();
    http_client()
}

/// `Authorization` header value for Basic Auth.
pub fn basic(user: (&str, &str)) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.0, user.1))
    )
}

/// Percent-encodes a query-string component (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `k1=v1&k2=v2` with both sides percent-encoded.
pub fn query_string(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space).
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=1&b=2` into decoded pairs, keeping order and repeats.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// Last `max_lines` lines (at most 16 KiB) of a file.
pub fn tail_file(path: &Path, max_lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("<no log at {}>", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(max_lines);
    lines[from..].join("\n")
}

/// Sends a signal by name ("HUP", "TERM", "INT", "KILL", "USR1", ...) with `kill(1)`.
pub fn send_signal(pid: u32, sig: &str) {
    let sig = sig.trim_start_matches("SIG");
    let st = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kill(1)");
    assert!(st.success(), "kill -s {sig} {pid} failed: {st}");
}

/// Removes proxy settings so children talk to loopback directly.
fn clean_env(cmd: &mut Command) {
    for k in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost,::1");
    // Plain logs (tracing-subscriber honours NO_COLOR), so tests can grep them.
    cmd.env("NO_COLOR", "1");
}

/// A running child whose stdout and stderr go to `log_path`. Killed on drop; on drop during a
/// panic, prints the log tail.
struct Proc {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log_path: &Path) -> Proc {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", log_path.display()));
        let log2 = log.try_clone().expect("clone log fd");
        clean_env(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
            exit: None,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(status)` once the child has exited (reaped).
    fn exited(&mut self) -> Option<ExitStatus> {
        if let Some(st) = self.exit {
            return Some(st);
        }
        let st = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.exit = Some(st);
        self.child = None;
        Some(st)
    }

    fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    fn signal(&mut self, sig: &str) {
        assert!(self.is_running(), "{} is not running", self.name);
        send_signal(self.pid().unwrap(), sig);
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let mut interval = Duration::from_millis(5);
        loop {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            if start.elapsed() >= within {
                return None;
            }
            std::thread::sleep(interval);
            interval = next_interval(interval);
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal_and_wait("TERM", grace)
    }

    /// Sends `sig`, waits up to `grace` for an exit, then SIGKILL. Returns the exit status.
    fn signal_and_wait(&mut self, sig: &str, grace: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited() {
            return Some(st);
        }
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-s", sig, &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(st) = self.wait_exit(grace) {
            return Some(st);
        }
        eprintln!(
            "[harness] {} did not exit within {grace:?} of SIG{sig}; killing",
            self.name
        );
        self.kill()
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(st) = c.wait() {
                self.exit = Some(st);
            }
        }
        self.exit
    }

    fn tail(&self) -> String {
        tail_file(&self.log_path, 60)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        self.kill();
        if std::thread::panicking() && was_running {
            eprintln!(
                "----- [harness] {} log tail ({}) -----\n{}\n----- end {} -----",
                self.name,
                self.log_path.display(),
                self.tail(),
                self.name
            );
        }
    }
}

/// Why waiting for a process to become ready failed.
enum ReadyError {
    /// It exited; `port_in_use` when its log says a port was taken (worth a retry).
    Exited {
        status: ExitStatus,
        port_in_use: bool,
    },
    Timeout,
}

fn log_says_port_in_use(path: &Path) -> bool {
    let t = tail_file(path, 200).to_ascii_lowercase();
    t.contains("address already in use") || t.contains("addrinuse") || t.contains("os error 98")
}

async fn http_status(url: &str) -> Option<u16> {
    http_client()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Polls `probe` until it is true, failing early if the process exits.
async fn wait_ready<F, Fut>(
    proc_: &mut Proc,
    deadline: Duration,
    mut probe: F,
) -> Result<(), ReadyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(status) = proc_.exited() {
            return Err(ReadyError::Exited {
                status,
                port_in_use: log_says_port_in_use(&proc_.log_path),
            });
        }
        if probe().await {
            return Ok(());
        }
        if start.elapsed() >= deadline {
            return Err(ReadyError::Timeout);
        }
        tokio::time::sleep(interval).await;
        interval = next_interval(interval);
    }
}

/// Start attempts when a port turns out to be taken.
const START_ATTEMPTS: usize = 3;

fn ready_failure(name: &str, p: &Proc, err: &ReadyError) -> String {
    let what = match err {
        ReadyError::Exited { status, .. } => format!("exited during start-up ({status})"),
        ReadyError::Timeout => format!("not ready within {:?}", startup_deadline()),
    };
    format!("{name} {what}; log {}:\n{}", p.log_path.display(), p.tail())
}

// ---------------------------------------------------------------------------------------------
// Command output (promtool, openssl, ...)
// ---------------------------------------------------------------------------------------------

/// Exit code (-1 when killed by a signal or timed out), stdout, stderr.
pub type CmdOutput = (i32, String, String);

/// Runs a command to completion with a deadline (killed past it: code -1 and a note in
/// stderr). Output goes through temp files, so large outputs cannot block the child.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> CmdOutput {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    clean_env(cmd);
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = scaled(deadline);
    let start = Instant::now();
    let mut interval = Duration::from_millis(5);
    let code = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st.code().unwrap_or(-1);
        }
        if start.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -2;
        }
        std::thread::sleep(interval);
        interval = next_interval(interval);
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let mut stderr = fs::read_to_string(&err_path).unwrap_or_default();
    if code == -2 {
        stderr.push_str(&format!("\n[harness] killed after {deadline:?}: {cmd:?}"));
        return (-1, stdout, stderr);
    }
    (code, stdout, stderr)
}

/// `promtool query instant URL EXPR` (blocking, 30s deadline). Credentials go in the URL
/// (`http://user:pass@127.0.0.1:PORT`). Returns (exit code, stdout, stderr).
pub fn promtool_query(url_with_credentials: &str, expr: &str) -> CmdOutput {
    promtool(&["query", "instant", url_with_credentials, expr])
}

/// Any promtool invocation (blocking, 30s deadline).
pub fn promtool(args: &[&str]) -> CmdOutput {
    run_with_deadline(
        Command::new(PROMTOOL_BIN).args(args),
        Duration::from_secs(30),
    )
}

/// [`promtool_query`] on a blocking thread, for async tests that must keep their runtime free
/// (e.g. while an in-runtime server answers).
pub async fn promtool_query_async(url_with_credentials: &str, expr: &str) -> CmdOutput {
    let (u, e) = (url_with_credentials.to_string(), expr.to_string());
    tokio::task::spawn_blocking(move || promtool_query(&u, &e))
        .await
        .expect("promtool task")
}

/// `http://user:pass@host:port` from `http://host:port` (user and password percent-encoded).
pub fn with_credentials(url: &str, user: &str, pass: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with scheme");
    format!(
        "{scheme}://{}:{}@{rest}",
        url_encode(user),
        url_encode(pass)
    )
}

// ---------------------------------------------------------------------------------------------
// Backend: a real Prometheus
// ---------------------------------------------------------------------------------------------

/// One instant-vector sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub metric: Labels,
    pub value: f64,
}

/// Read helpers shared by [`Backend`] and [`Agent`] (anything serving the Prometheus API).
fn labels_of(v: &Value) -> Labels {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A real Prometheus server with the remote-write receiver: the stand-in for Thanos
/// (Receive + Query). Started on a free port with its own temp data dir; killed on drop.
pub struct Backend {
    dir: TempDir,
    port: u16,
    extra_args: Vec<String>,
    proc_: Option<Proc>,
    starts: u32,
}

impl Backend {
    /// Starts `prometheus --web.enable-remote-write-receiver` with an empty scrape config and
    /// waits for `/-/ready`.
    pub async fn start() -> Backend {
        Self::start_with_args(&[]).await
    }

    /// As [`Backend::start`], with extra flags (e.g. `--enable-feature=native-histograms`).
    pub async fn start_with_args(extra_args: &[&str]) -> Backend {
        let config = "global:\n  scrape_interval: 15s\nscrape_configs: []\n";
        Self::start_with_config(config, &[], extra_args).await
    }

    /// A Prometheus server with this `prometheus.yml` and these `files` (relative path,
    /// content) in its directory, e.g. rule files named by a relative `rule_files` glob
    /// (Prometheus resolves them against the config file's directory).
    pub async fn start_with_config(
        config_yaml: &str,
        files: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Backend {
        let dir = tempfile::Builder::new()
            .prefix("whizard-backend-")
            .tempdir()
            .expect("tempdir");
        fs::write(dir.path().join("prometheus.yml"), config_yaml).expect("write prometheus.yml");
        for (path, content) in files {
            let path = dir.path().join(path);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("create config subdirectory");
            }
            fs::write(path, content).expect("write config file");
        }
        let mut b = Backend {
            dir,
            port: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            proc_: None,
            starts: 0,
        };
        for attempt in 1..=START_ATTEMPTS {
            b.port = free_port();
            match b.spawn_and_wait().await {
                Ok(()) => return b,
                Err((msg, retry)) if retry && attempt < START_ATTEMPTS => {
                    eprintln!("[harness] backend port {} taken, retrying: {msg}", b.port);
                }
                Err((msg, _)) => panic!("{msg}"),
            }
        }
        unreachable!()
    }

    async fn spawn_and_wait(&mut self) -> Result<(), (String, bool)> {
        self.starts += 1;
        let log_path = self.log_path();
        {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open backend log");
            let _ = writeln!(
                f,
                "===== [harness] start #{} on port {} =====",
                self.starts, self.port
            );
        }
        let mut cmd = Command::new(PROMETHEUS_BIN);
        cmd.arg("--web.enable-remote-write-receiver")
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .args(&self.extra_args)
            .current_dir(self.dir.path());
        let mut p = Proc::spawn("backend (prometheus)", &mut cmd, &log_path);
        let url = format!("{}/-/ready", self.url());
        let res = wait_ready(&mut p, startup_deadline(), || {
            let url = url.clone();
            async move { http_status(&url).await == Some(200) }
        })
        .await;
        match res {
            Ok(()) => {
                self.proc_ = Some(p);
                Ok(())
            }
            Err(e) => {
                let msg = ready_failure("backend (prometheus)", &p, &e);
                let retry = matches!(
                    e,
                    ReadyError::Exited {
                        port_in_use: true,
                        ..
                    }
                );
                drop(p);
                Err((msg, retry))
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/api/v1/write` — the remote-write receiver (for `upstreams.receive`).
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// Everything the backend printed (all starts).
    pub fn logs(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc_.as_ref().and_then(|p| p.pid())
    }

    pub fn is_running(&mut self) -> bool {
        self.proc_.as_mut().is_some_and(|p| p.is_running())
    }

    /// Graceful stop (SIGTERM, then SIGKILL after 10s). The port and data dir are kept.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            p.terminate(stop_grace());
        }
    }

    /// SIGKILL (a crash). The port and data dir are kept.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            p.kill();
        }
    }

    /// Stops it if running, then starts it again on the same port with the same data dir and
    /// waits for `/-/ready`.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err((msg, _)) = self.spawn_and_wait().await {
            panic!("backend restart on port {} failed: {msg}", self.port);
        }
    }

    /// Starts it again after [`Backend::stop`]/[`Backend::kill`] (same as `restart`).
    pub async fn start_again(&mut self) {
        self.restart().await
    }

    /// `GET /api/v1/query?query=EXPR`; returns the whole JSON answer; panics on a non-2xx.
    pub async fn query(&self, expr: &str) -> Value {
        api_get(&self.url(), "/api/v1/query", &[("query", expr)]).await
    }

    /// The instant vector of `expr` as samples (panics if the result is not a vector).
    pub async fn query_vector(&self, expr: &str) -> Vec<Sample> {
        vector_of(&self.query(expr).await, expr)
    }

    /// `GET /api/v1/series?match[]=MATCH` (last 1h): every series' labels.
    pub async fn series(&self, matcher: &str) -> Vec<Labels> {
        let v = api_get(&self.url(), "/api/v1/series", &[("match[]", matcher)]).await;
        v["data"]
            .as_array()
            .map(|a| a.iter().map(labels_of).collect())
            .unwrap_or_default()
    }

    /// `GET /api/v1/label/NAME/values`.
    pub async fn label_values(&self, name: &str) -> Vec<String> {
        let v = api_get(&self.url(), &format!("/api/v1/label/{name}/values"), &[]).await;
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls [`Backend::series`] until at least one series matches.
    pub async fn wait_for_series(&self, matcher: &str, deadline: Duration) -> Vec<Labels> {
        poll_until(
            deadline,
            &format!("series {matcher} in the backend"),
            || async {
                let s = self.series(matcher).await;
                (!s.is_empty()).then_some(s)
            },
        )
        .await
    }
}

/// `GET BASE PATH?params` against a Prometheus API; returns the JSON; panics on a non-2xx.
pub async fn api_get(base: &str, path: &str, params: &[(&str, &str)]) -> Value {
    let url = if params.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{}", query_string(params))
    };
    let resp = http_client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: bad JSON ({e}): {body}"))
}

/// Samples of a `/api/v1/query` answer whose resultType is vector.
pub fn vector_of(answer: &Value, what: &str) -> Vec<Sample> {
    assert_eq!(
        answer["data"]["resultType"], "vector",
        "{what}: not a vector: {answer}"
    );
    answer["data"]["result"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|r| Sample {
            metric: labels_of(&r["metric"]),
            value: r["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN),
        })
        .collect()
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Proc's own Drop kills it (and prints its log tail during a panic).
        self.proc_.take();
    }
}

// ---------------------------------------------------------------------------------------------
// Agent: Prometheus in agent mode, remote-writing
// ---------------------------------------------------------------------------------------------

/// How the agent authenticates its remote writes.
#[derive(Clone, Debug)]
pub enum RemoteWriteAuth {
    Basic {
        username: String,
        password: String,
    },
    /// OAuth2 client_credentials; `ca_file` verifies an https `token_url`.
    OAuth2 {
        client_id: String,
        client_secret: String,
        token_url: String,
        scopes: Vec<String>,
        endpoint_params: BTreeMap<String, String>,
        ca_file: Option<PathBuf>,
    },
    /// `authorization: {type: Bearer, credentials: TOKEN}`
    Bearer(String),
}

/// `tls_config` of the remote write.
#[derive(Clone, Debug, Default)]
pub struct TlsClientConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

impl TlsClientConfig {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(p) = &self.ca_file {
            m.insert("ca_file".into(), json!(p.display().to_string()));
        }
        if let Some(p) = &self.cert_file {
            m.insert("cert_file".into(), json!(p.display().to_string()));
        }
        if let Some(p) = &self.key_file {
            m.insert("key_file".into(), json!(p.display().to_string()));
        }
        if let Some(s) = &self.server_name {
            m.insert("server_name".into(), json!(s));
        }
        if self.insecure_skip_verify {
            m.insert("insecure_skip_verify".into(), json!(true));
        }
        Value::Object(m)
    }
}

/// Builder for [`Agent`]. Defaults: job `agent`, scrape interval 1s, the agent scrapes its own
/// `/metrics`, remote write without auth, queue tuned for fast flushes in tests.
#[derive(Clone, Debug)]
pub struct AgentBuilder {
    remote_write_url: String,
    job: String,
    targets: Vec<String>,
    metrics_path: Option<String>,
    scrape_interval: String,
    external_labels: Labels,
    target_labels: Labels,
    auth: Option<RemoteWriteAuth>,
    tls: Option<TlsClientConfig>,
    headers: BTreeMap<String, String>,
    keep_metrics: Option<String>,
    send_metadata: Option<bool>,
    remote_timeout: String,
    queue_overrides: serde_json::Map<String, Value>,
    remote_write_extra: serde_json::Map<String, Value>,
    extra_args: Vec<String>,
}

impl AgentBuilder {
    /// Scrape job name (default `agent`).
    pub fn job(mut self, name: &str) -> Self {
        self.job = name.into();
        self
    }

    /// Scrapes `host:port` instead of the agent itself (may be called several times).
    pub fn scrape_target(mut self, host_port: &str) -> Self {
        self.targets.push(host_port.into());
        self
    }

    /// `metrics_path` of the scrape job (default `/metrics`).
    pub fn metrics_path(mut self, path: &str) -> Self {
        self.metrics_path = Some(path.into());
        self
    }

    /// Global `scrape_interval` (default `1s`).
    pub fn scrape_interval(mut self, interval: &str) -> Self {
        self.scrape_interval = interval.into();
        self
    }

    /// Adds a global `external_labels` entry.
    pub fn external_label(mut self, name: &str, value: &str) -> Self {
        self.external_labels.insert(name.into(), value.into());
        self
    }

    /// Adds a label on the scrape target (`static_configs[].labels`).
    pub fn target_label(mut self, name: &str, value: &str) -> Self {
        self.target_labels.insert(name.into(), value.into());
        self
    }

    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.auth = Some(RemoteWriteAuth::Basic {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// OAuth2 client_credentials against `token_url`.
    pub fn oauth2(mut self, client_id: &str, client_secret: &str, token_url: &str) -> Self {
        self.auth = Some(RemoteWriteAuth::OAuth2 {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token_url: token_url.into(),
            scopes: Vec::new(),
            endpoint_params: BTreeMap::new(),
            ca_file: None,
        });
        self
    }

    /// Adds scopes to the OAuth2 config (call after [`AgentBuilder::oauth2`]).
    pub fn oauth2_scopes(mut self, scopes: &[&str]) -> Self {
        match &mut self.auth {
            Some(RemoteWriteAuth::OAuth2 { scopes: s, .. }) => {
                s.extend(scopes.iter().map(|x| x.to_string()))
            }
            _ => panic!("oauth2_scopes needs oauth2 first"),
        }
        self
    }

    /// Adds an `endpoint_params` entry (e.g. `resource`/`audience`) to the token request.
    pub fn oauth2_endpoint_param(mut self, name: &str, value: &str) -> Self {
        match &mut self.auth {
            Some(RemoteWriteAuth::OAuth2 {
                endpoint_params, ..
            }) => {
                endpoint_params.insert(name.into(), value.into());
            }
            _ => panic!("oauth2_endpoint_param needs oauth2 first"),
        }
        self
    }

    /// CA for an https `token_url` (call after [`AgentBuilder::oauth2`]).
    pub fn oauth2_ca_file(mut self, ca: impl AsRef<Path>) -> Self {
        match &mut self.auth {
            Some(RemoteWriteAuth::OAuth2 { ca_file, .. }) => {
                *ca_file = Some(ca.as_ref().to_path_buf())
            }
            _ => panic!("oauth2_ca_file needs oauth2 first"),
        }
        self
    }

    pub fn bearer_token(mut self, token: &str) -> Self {
        self.auth = Some(RemoteWriteAuth::Bearer(token.into()));
        self
    }

    pub fn auth(mut self, auth: RemoteWriteAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// `tls_config.ca_file` (an https remote-write URL).
    pub fn tls_ca_file(mut self, ca: impl AsRef<Path>) -> Self {
        self.tls.get_or_insert_with(Default::default).ca_file = Some(ca.as_ref().to_path_buf());
        self
    }

    /// Client certificate for mTLS.
    pub fn tls_client_cert(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        let t = self.tls.get_or_insert_with(Default::default);
        t.cert_file = Some(cert.as_ref().to_path_buf());
        t.key_file = Some(key.as_ref().to_path_buf());
        self
    }

    pub fn tls(mut self, tls: TlsClientConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Adds a `headers` entry to the remote_write config. NOTE: Debian's Prometheus 2.42
    /// accepts the key but does not send the headers (verified), so a test cannot pick the
    /// tenant with a header from a real agent: use the `/{tenant}/api/v1/receive` path prefix
    /// or a user with one tenant.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Only series whose `__name__` fully matches `regex` are remote-written
    /// (`write_relabel_configs` keep).
    pub fn keep_metrics(mut self, regex: &str) -> Self {
        self.keep_metrics = Some(regex.into());
        self
    }

    /// `metadata_config.send` (Prometheus default: true).
    pub fn send_metadata(mut self, send: bool) -> Self {
        self.send_metadata = Some(send);
        self
    }

    /// `remote_timeout` (default `5s`).
    pub fn remote_timeout(mut self, t: &str) -> Self {
        self.remote_timeout = t.into();
        self
    }

    /// Overrides one `queue_config` key (e.g. `("max_backoff", json!("5s"))`).
    pub fn queue_config(mut self, key: &str, value: Value) -> Self {
        self.queue_overrides.insert(key.into(), value);
        self
    }

    /// Sets any other key of the `remote_write` entry.
    pub fn remote_write_option(mut self, key: &str, value: Value) -> Self {
        self.remote_write_extra.insert(key.into(), value);
        self
    }

    /// Extra command-line flags.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// The agent's `prometheus.yml` for its listen `port` (written as JSON, which is YAML).
    pub fn config_yaml(&self, port: u16) -> String {
        let mut global = serde_json::Map::new();
        global.insert("scrape_interval".into(), json!(self.scrape_interval));
        if !self.external_labels.is_empty() {
            global.insert("external_labels".into(), json!(self.external_labels));
        }
        let targets = if self.targets.is_empty() {
            vec![format!("127.0.0.1:{port}")]
        } else {
            self.targets.clone()
        };
        let mut static_config = json!({ "targets": targets });
        if !self.target_labels.is_empty() {
            static_config["labels"] = json!(self.target_labels);
        }
        let mut job = json!({ "job_name": self.job, "static_configs": [static_config] });
        if let Some(p) = &self.metrics_path {
            job["metrics_path"] = json!(p);
        }

        let mut queue = serde_json::Map::new();
        queue.insert("batch_send_deadline".into(), json!("1s"));
        queue.insert("min_backoff".into(), json!("100ms"));
        queue.insert("max_backoff".into(), json!("1s"));
        queue.insert("max_samples_per_send".into(), json!(2000));
        for (k, v) in &self.queue_overrides {
            queue.insert(k.clone(), v.clone());
        }
        let mut rw = serde_json::Map::new();
        rw.insert("url".into(), json!(self.remote_write_url));
        rw.insert("name".into(), json!("harness"));
        rw.insert("remote_timeout".into(), json!(self.remote_timeout));
        rw.insert("queue_config".into(), Value::Object(queue));
        match &self.auth {
            None => {}
            Some(RemoteWriteAuth::Basic { username, password }) => {
                rw.insert(
                    "basic_auth".into(),
                    json!({"username": username, "password": password}),
                );
            }
            Some(RemoteWriteAuth::OAuth2 {
                client_id,
                client_secret,
                token_url,
                scopes,
                endpoint_params,
                ca_file,
            }) => {
                let mut o = json!({
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "token_url": token_url,
                });
                if !scopes.is_empty() {
                    o["scopes"] = json!(scopes);
                }
                if !endpoint_params.is_empty() {
                    o["endpoint_params"] = json!(endpoint_params);
                }
                if let Some(ca) = ca_file {
                    o["tls_config"] = json!({"ca_file": ca.display().to_string()});
                }
                rw.insert("oauth2".into(), o);
            }
            Some(RemoteWriteAuth::Bearer(token)) => {
                rw.insert(
                    "authorization".into(),
                    json!({"type": "Bearer", "credentials": token}),
                );
            }
        }
        if let Some(tls) = &self.tls {
            rw.insert("tls_config".into(), tls.to_json());
        }
        if !self.headers.is_empty() {
            rw.insert("headers".into(), json!(self.headers));
        }
        if let Some(re) = &self.keep_metrics {
            rw.insert(
                "write_relabel_configs".into(),
                json!([{"source_labels": ["__name__"], "regex": re, "action": "keep"}]),
            );
        }
        if let Some(send) = self.send_metadata {
            rw.insert("metadata_config".into(), json!({ "send": send }));
        }
        for (k, v) in &self.remote_write_extra {
            rw.insert(k.clone(), v.clone());
        }
        let cfg = json!({
            "global": Value::Object(global),
            "scrape_configs": [job],
            "remote_write": [Value::Object(rw)],
        });
        // JSON is YAML, and quoting every string keeps Go's YAML 1.1 parser from reading a
        // value such as `yes`, `on` or `0x10` as a bool or a number.
        serde_json::to_string_pretty(&cfg).expect("serialize agent config")
    }

    /// Starts the agent and waits for its `/-/ready` (it then scrapes and remote-writes on its
    /// own; use [`Agent::wait_samples_sent`] or query the backend to wait for data).
    pub async fn start(self) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("whizard-agent-")
            .tempdir()
            .expect("tempdir");
        let mut agent = Agent {
            dir,
            port: 0,
            builder: self,
            proc_: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            agent.port = free_port();
            match agent.spawn_and_wait().await {
                Ok(()) => return agent,
                Err((msg, retry)) if retry && attempt < START_ATTEMPTS => {
                    eprintln!("[harness] agent port {} taken, retrying: {msg}", agent.port);
                }
                Err((msg, _)) => panic!("{msg}"),
            }
        }
        unreachable!()
    }
}

/// A real Prometheus in agent mode, scraping and remote-writing. Killed on drop.
pub struct Agent {
    dir: TempDir,
    port: u16,
    builder: AgentBuilder,
    proc_: Option<Proc>,
}

impl Agent {
    /// A builder remote-writing to `remote_write_url` (e.g. `format!("{}/api/v1/receive",
    /// gateway.url())` or `backend.write_url()`).
    pub fn builder(remote_write_url: &str) -> AgentBuilder {
        AgentBuilder {
            remote_write_url: remote_write_url.into(),
            job: "agent".into(),
            targets: Vec::new(),
            metrics_path: None,
            scrape_interval: "1s".into(),
            external_labels: Labels::new(),
            target_labels: Labels::new(),
            auth: None,
            tls: None,
            headers: BTreeMap::new(),
            keep_metrics: None,
            send_metadata: None,
            remote_timeout: "5s".into(),
            queue_overrides: serde_json::Map::new(),
            remote_write_extra: serde_json::Map::new(),
            extra_args: Vec::new(),
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), (String, bool)> {
        let cfg_path = self.config_path();
        fs::write(&cfg_path, self.builder.config_yaml(self.port)).expect("write agent config");
        let log_path = self.log_path();
        let mut cmd = Command::new(PROMETHEUS_BIN);
        cmd.arg("--enable-feature=agent")
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.agent.path={}",
                self.dir.path().join("wal").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .args(&self.builder.extra_args)
            .current_dir(self.dir.path());
        let mut p = Proc::spawn(
            "agent (prometheus --enable-feature=agent)",
            &mut cmd,
            &log_path,
        );
        let url = format!("{}/-/ready", self.url());
        let res = wait_ready(&mut p, startup_deadline(), || {
            let url = url.clone();
            async move { http_status(&url).await == Some(200) }
        })
        .await;
        match res {
            Ok(()) => {
                self.proc_ = Some(p);
                Ok(())
            }
            Err(e) => {
                let msg = ready_failure("agent", &p, &e);
                let retry = matches!(
                    e,
                    ReadyError::Exited {
                        port_in_use: true,
                        ..
                    }
                );
                drop(p);
                Err((msg, retry))
            }
        }
    }

    /// `http://127.0.0.1:PORT` (the agent's own web/metrics endpoint).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, as a scrape target.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn job(&self) -> &str {
        &self.builder.job
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.yml")
    }

    pub fn config(&self) -> String {
        fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc_.as_ref().and_then(|p| p.pid())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            p.terminate(stop_grace());
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            p.kill();
        }
    }

    /// Stops it if running and starts it again on the same port with the same WAL dir (it
    /// resumes sending what it had not sent).
    pub async fn restart(&mut self) {
        self.stop();
        if let Err((msg, _)) = self.spawn_and_wait().await {
            panic!("agent restart on port {} failed: {msg}", self.port);
        }
    }

    /// The agent's own `/metrics` as (name, labels, value) triples.
    pub async fn own_metrics(&self) -> Vec<(String, Labels, f64)> {
        let url = format!("{}/metrics", self.url());
        let text = match http_client().get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        parse_prometheus_text(&text)
    }

    /// Sum of every series of `name` in the agent's own `/metrics` (None when absent).
    pub async fn metric_sum(&self, name: &str) -> Option<f64> {
        let m = self.own_metrics().await;
        let vals: Vec<f64> = m
            .into_iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    }

    /// Samples remote-written successfully: `prometheus_remote_storage_samples_total` (which
    /// Prometheus 2.42 increments on every attempt, retries included) minus
    /// `..._samples_retried_total` and `..._samples_failed_total`.
    pub async fn samples_sent(&self) -> f64 {
        let m = self.own_metrics().await;
        let sum = |name: &str| -> f64 {
            m.iter()
                .filter(|(n, _, _)| n == name)
                .map(|(_, _, v)| *v)
                .sum()
        };
        sum("prometheus_remote_storage_samples_total")
            - sum("prometheus_remote_storage_samples_retried_total")
            - sum("prometheus_remote_storage_samples_failed_total")
    }

    /// Samples given up on (non-retryable answers such as 4xx):
    /// `prometheus_remote_storage_samples_failed_total`.
    pub async fn samples_failed(&self) -> f64 {
        self.metric_sum("prometheus_remote_storage_samples_failed_total")
            .await
            .unwrap_or(0.0)
    }

    /// Samples retried (5xx, 429 where enabled, connection errors):
    /// `prometheus_remote_storage_samples_retried_total`.
    pub async fn samples_retried(&self) -> f64 {
        self.metric_sum("prometheus_remote_storage_samples_retried_total")
            .await
            .unwrap_or(0.0)
    }

    /// Waits until the agent has sent at least `n` samples.
    pub async fn wait_samples_sent(&self, n: f64, deadline: Duration) -> f64 {
        poll_until(
            deadline,
            &format!("agent to remote-write {n} samples"),
            || async {
                let s = self.samples_sent().await;
                (s >= n).then_some(s)
            },
        )
        .await
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.proc_.take();
    }
}

/// Parses the Prometheus text exposition format into (name, labels, value); comments and
/// unparsable lines are skipped.
pub fn parse_prometheus_text(text: &str) -> Vec<(String, Labels, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = if let Some(open) = line.find('{') {
            let Some(close) = line.rfind('}') else {
                continue;
            };
            (
                line[..open].to_string(),
                parse_label_set(&line[open + 1..close]),
                &line[close + 1..],
            )
        } else {
            let mut it = line.splitn(2, ' ');
            let name = it.next().unwrap_or_default().to_string();
            (name, Labels::new(), it.next().unwrap_or_default())
        };
        let Some(v) = rest.split_whitespace().next() else {
            continue;
        };
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => match v.parse::<f64>() {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        out.push((name, labels, value));
    }
    out
}

fn parse_label_set(s: &str) -> Labels {
    let mut out = Labels::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key = s[ks..i].trim().to_string();
        i += 1; // '='
        if i >= b.len() || b[i] != b'"' {
            break;
        }
        i += 1;
        let mut val = Vec::new();
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                i += 1;
                val.push(match b[i] {
                    b'n' => b'\n',
                    c => c,
                });
            } else {
                val.push(b[i]);
            }
            i += 1;
        }
        i += 1; // closing quote
        out.insert(key, String::from_utf8_lossy(&val).into_owned());
    }
    out
}

/// Value of the series `name` whose labels include every pair in `want` (summed when several
/// match) from a `/metrics` text; `None` when none matches.
pub fn metric_value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let vals: Vec<f64> = parse_prometheus_text(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum())
}

// ---------------------------------------------------------------------------------------------
// Gateway: the binary under test
// ---------------------------------------------------------------------------------------------

/// The whizard binary: `$WHIZARD_BIN` when set, else cargo's `CARGO_BIN_EXE_whizard` (set when
/// integration tests of this crate are compiled).
pub fn whizard_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WHIZARD_BIN") {
        return PathBuf::from(p);
    }
    match option_env!("CARGO_BIN_EXE_whizard") {
        Some(p) => PathBuf::from(p),
        None => {
            panic!("no whizard binary: set WHIZARD_BIN or run as an integration test of whizard")
        }
    }
}

/// How the gateway signals readiness, chosen from the placeholders in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    /// `GET http://127.0.0.1:${HTTP_PORT}/-/ready` answers 200.
    HttpReady,
    /// Only HTTPS (and maybe metrics): TCP connects on `${HTTPS_PORT}` (and an HTTP answer on
    /// `${METRICS_PORT}` when present).
    Tcp,
}

/// The whizard gateway under test, started from a YAML config.
///
/// Placeholders substituted in the YAML before it is written (each gets a fresh free port):
///
/// | placeholder | value |
/// |---|---|
/// | `${HTTP_PORT}` | port for `listen.http` (write `"127.0.0.1:${HTTP_PORT}"`) |
/// | `${HTTPS_PORT}` | port for `listen.https` |
/// | `${METRICS_PORT}` | port for `listen.metrics` |
/// | `${DIR}` | the gateway's temp dir (absolute; also its working directory) |
///
/// Readiness: with `${HTTP_PORT}` in the config, `GET /-/ready` on it must answer 200;
/// without it, TCP connects to `${HTTPS_PORT}` (and any HTTP answer on `${METRICS_PORT}`).
pub struct Gateway {
    dir: TempDir,
    bin: PathBuf,
    env: Vec<(String, String)>,
    template: String,
    uses_http: bool,
    uses_https: bool,
    uses_metrics: bool,
    http_port: u16,
    https_port: u16,
    metrics_port: u16,
    proc_: Option<Proc>,
}

impl Gateway {
    /// Starts `whizard gateway --config FILE` with `config_yaml` (placeholders substituted) and
    /// waits until it is ready. Panics with the log tail if it exits or is not ready in time.
    pub async fn start(config_yaml: &str) -> Gateway {
        Self::start_full(&whizard_bin(), config_yaml, &[]).await
    }

    /// As [`Gateway::start`], with a given binary.
    pub async fn start_with_binary(bin: &Path, config_yaml: &str) -> Gateway {
        Self::start_full(bin, config_yaml, &[]).await
    }

    /// As [`Gateway::start`], with extra environment variables (e.g. `RUST_LOG`).
    pub async fn start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_full(&whizard_bin(), config_yaml, env).await
    }

    pub async fn start_full(bin: &Path, config_yaml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("whizard-gateway-")
            .tempdir()
            .expect("tempdir");
        let mut g = Gateway {
            dir,
            bin: bin.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            template: config_yaml.to_string(),
            uses_http: config_yaml.contains("${HTTP_PORT}"),
            uses_https: config_yaml.contains("${HTTPS_PORT}"),
            uses_metrics: config_yaml.contains("${METRICS_PORT}"),
            http_port: 0,
            https_port: 0,
            metrics_port: 0,
            proc_: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            g.http_port = free_port();
            g.https_port = free_port();
            g.metrics_port = free_port();
            fs::write(g.config_path(), g.substitute(&g.template)).expect("write gateway config");
            match g.spawn_and_wait().await {
                Ok(()) => return g,
                Err((msg, retry)) if retry && attempt < START_ATTEMPTS => {
                    eprintln!("[harness] gateway port taken, retrying: {msg}");
                }
                Err((msg, _)) => panic!("{msg}"),
            }
        }
        unreachable!()
    }

    /// Runs the gateway with a config that must be refused: waits (30s deadline) for it to
    /// exit and returns (exit code, stderr); -1 when killed by a signal. Panics if it becomes
    /// ready or keeps running.
    pub async fn try_start_expect_failure(config_yaml: &str) -> (i32, String) {
        let (code, _stdout, stderr) =
            Self::try_start_expect_failure_full(&whizard_bin(), config_yaml).await;
        (code, stderr)
    }

    /// As [`Gateway::try_start_expect_failure`] with a given binary; returns (code, stdout,
    /// stderr).
    pub async fn try_start_expect_failure_full(bin: &Path, config_yaml: &str) -> CmdOutput {
        let dir = tempfile::Builder::new()
            .prefix("whizard-gateway-bad-")
            .tempdir()
            .expect("tempdir");
        let (http, https, metrics) = (free_port(), free_port(), free_port());
        let cfg = substitute(config_yaml, http, https, metrics, dir.path());
        let cfg_path = dir.path().join("gateway.yaml");
        fs::write(&cfg_path, cfg).expect("write config");
        let out_path = dir.path().join("stdout.log");
        let err_path = dir.path().join("stderr.log");
        let mut cmd = Command::new(bin);
        cmd.arg("gateway")
            .arg("--config")
            .arg(&cfg_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("stdout file"))
            .stderr(File::create(&err_path).expect("stderr file"));
        clean_env(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut p = Proc {
            name: "gateway (expected to fail)".into(),
            child: Some(child),
            log_path: err_path.clone(),
            exit: None,
        };
        let ready_url = format!("http://127.0.0.1:{http}/-/ready");
        let deadline = scaled(Duration::from_secs(30));
        let start = Instant::now();
        let mut interval = Duration::from_millis(10);
        let status = loop {
            if let Some(st) = p.exited() {
                break st;
            }
            if http_status(&ready_url).await == Some(200) {
                p.kill();
                panic!(
                    "gateway accepted a config it should refuse; stderr:\n{}\nstdout:\n{}",
                    tail_file(&err_path, 40),
                    tail_file(&out_path, 40)
                );
            }
            if start.elapsed() >= deadline {
                p.kill();
                panic!(
                    "gateway still running {deadline:?} after start with a config it should \
                     refuse; stderr:\n{}\nstdout:\n{}",
                    tail_file(&err_path, 40),
                    tail_file(&out_path, 40)
                );
            }
            tokio::time::sleep(interval).await;
            interval = next_interval(interval);
        };
        (
            status.code().unwrap_or(-1),
            fs::read_to_string(&out_path).unwrap_or_default(),
            fs::read_to_string(&err_path).unwrap_or_default(),
        )
    }

    fn readiness(&self) -> Readiness {
        if self.uses_http {
            Readiness::HttpReady
        } else {
            Readiness::Tcp
        }
    }

    /// `yaml` with this gateway's placeholders substituted.
    pub fn substitute(&self, yaml: &str) -> String {
        substitute(
            yaml,
            self.http_port,
            self.https_port,
            self.metrics_port,
            self.dir.path(),
        )
    }

    async fn spawn_and_wait(&mut self) -> Result<(), (String, bool)> {
        let cfg_path = self.config_path();
        let log_path = self.log_path();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("gateway")
            .arg("--config")
            .arg(&cfg_path)
            .current_dir(self.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut p = Proc::spawn("gateway (whizard)", &mut cmd, &log_path);
        let readiness = self.readiness();
        let (has_https, has_metrics) = (self.uses_https, self.uses_metrics);
        let (http, https, metrics) = (self.http_port, self.https_port, self.metrics_port);
        let res = wait_ready(&mut p, startup_deadline(), || async move {
            match readiness {
                Readiness::HttpReady => {
                    http_status(&format!("http://127.0.0.1:{http}/-/ready")).await == Some(200)
                }
                Readiness::Tcp => {
                    (!has_https || tcp_connects(https))
                        && (!has_metrics
                            || http_status(&format!("http://127.0.0.1:{metrics}/metrics"))
                                .await
                                .is_some())
                }
            }
        })
        .await;
        match res {
            Ok(()) => {
                self.proc_ = Some(p);
                Ok(())
            }
            Err(e) => {
                let msg = ready_failure("gateway (whizard)", &p, &e);
                let retry = matches!(
                    e,
                    ReadyError::Exited {
                        port_in_use: true,
                        ..
                    }
                );
                drop(p);
                Err((msg, retry))
            }
        }
    }

    /// `http://127.0.0.1:${HTTP_PORT}`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `https://127.0.0.1:${HTTPS_PORT}` (use a hostname in your certificate's SANs if needed).
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_port)
    }

    /// `/metrics` on `${METRICS_PORT}` when the config uses it, else on the main listener.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.admin_base())
    }

    /// The listener for `/-/reload` and `/metrics`: `${METRICS_PORT}` when the config uses it,
    /// else the main HTTP listener.
    pub fn admin_base(&self) -> String {
        if self.uses_metrics {
            format!("http://127.0.0.1:{}", self.metrics_port)
        } else {
            self.url()
        }
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// The gateway's temp dir (its working directory, `${DIR}`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    /// Replaces the config file atomically (write + rename) with `yaml`, placeholders
    /// substituted with this gateway's ports. Follow with [`Gateway::reload`] or
    /// `signal("HUP")`.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join(".gateway.yaml.tmp");
        fs::write(&tmp, self.substitute(yaml)).expect("write config");
        fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    /// `POST /-/reload` on [`Gateway::admin_base`]; returns (status, body).
    pub async fn reload(&self) -> (u16, String) {
        let url = format!("{}/-/reload", self.admin_base());
        let r = http_client()
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// The gateway's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let url = self.metrics_url();
        let r = http_client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        r.text().await.unwrap_or_default()
    }

    /// One series of the gateway's metrics (summed over series matching `labels`).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.metrics_text().await, name, labels)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// Everything the gateway printed (stdout and stderr interleaved).
    pub fn logs(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Polls the log until it contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, deadline: Duration) {
        poll_until(
            deadline,
            &format!("gateway log to contain {needle:?}"),
            || async { self.logs().contains(needle).then_some(()) },
        )
        .await
    }

    pub fn pid(&self) -> u32 {
        self.proc_
            .as_ref()
            .and_then(|p| p.pid())
            .expect("gateway not running")
    }

    pub fn is_running(&mut self) -> bool {
        self.proc_.as_mut().is_some_and(|p| p.is_running())
    }

    /// Sends a signal by name: "HUP", "TERM", "INT", "KILL", ...
    pub fn signal(&mut self, sig: &str) {
        self.proc_
            .as_mut()
            .expect("gateway not running")
            .signal(sig)
    }

    /// Waits up to `within` for the process to exit on its own (e.g. after `signal("TERM")`).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.proc_.as_mut()?.wait_exit(scaled(within))
    }

    /// Fast stop: SIGINT (pingora's fast shutdown), then SIGKILL after 10s; returns the exit
    /// status. For a graceful stop use [`Gateway::stop_graceful`].
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let st = self.proc_.as_mut()?.signal_and_wait("INT", stop_grace());
        self.proc_ = None;
        st
    }

    /// Graceful stop: SIGTERM, then SIGKILL once `within` (scaled) passes; returns the exit
    /// status. Note: pingora's default SIGTERM handling waits `grace_period_seconds` (300s by
    /// default) before exiting, unless the gateway configures it shorter.
    pub fn stop_graceful(&mut self, within: Duration) -> Option<ExitStatus> {
        let st = self.proc_.as_mut()?.signal_and_wait("TERM", scaled(within));
        self.proc_ = None;
        st
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            p.kill();
        }
    }

    /// Stops it if running, then starts it again with the same ports and the current config
    /// file (as last written by [`Gateway::write_config`]), and waits until ready.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err((msg, _)) = self.spawn_and_wait().await {
            panic!("gateway restart failed: {msg}");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.proc_.take();
    }
}

fn substitute(yaml: &str, http: u16, https: u16, metrics: u16, dir: &Path) -> String {
    yaml.replace("${HTTP_PORT}", &http.to_string())
        .replace("${HTTPS_PORT}", &https.to_string())
        .replace("${METRICS_PORT}", &metrics.to_string())
        .replace("${DIR}", &dir.display().to_string())
}

// ---------------------------------------------------------------------------------------------
// RecordingUpstream: an in-process HTTP/1.1 server that records every request
// ---------------------------------------------------------------------------------------------

/// One request as the recording upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent (`/api/v1/query?query=up`).
    pub target: String,
    pub version: String,
    /// Header (name, value) pairs in arrival order; names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Recorded {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The raw query string ("" when absent).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|x| x.1).unwrap_or_default()
    }

    /// Decoded URL query parameters, in order, repeats kept.
    pub fn query_params(&self) -> Vec<(String, String)> {
        parse_query(self.query())
    }

    /// Decoded form-body parameters (empty unless the content type is urlencoded).
    pub fn form_params(&self) -> Vec<(String, String)> {
        let ct = self
            .header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if ct.starts_with("application/x-www-form-urlencoded") {
            parse_query(&String::from_utf8_lossy(&self.body))
        } else {
            Vec::new()
        }
    }

    /// Every value of parameter `name` from the URL and then the form body.
    pub fn param(&self, name: &str) -> Vec<String> {
        self.query_params()
            .into_iter()
            .chain(self.form_params())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (to provoke upstream timeouts).
    pub delay: Duration,
    /// Close the connection after this answer.
    pub close: bool,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            close: false,
        }
    }

    /// A JSON answer (`content-type: application/json`).
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply::new(status, v.to_string()).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }
}

#[derive(Clone, Debug)]
enum Mode {
    Fixed(Reply),
    /// Pass every request to this base URL and relay its answer.
    Forward(String),
}

struct UpstreamState {
    requests: Vec<Recorded>,
    mode: Mode,
    queue: VecDeque<Reply>,
}

/// A tiny HTTP/1.1 server (own thread and tokio runtime, so it answers even while a test
/// blocks its own thread) that records every request and answers with a configurable reply
/// (changeable at runtime), a queue of one-shot replies, or by forwarding to a real backend.
/// Handles Content-Length and chunked request bodies, `Expect: 100-continue`, keep-alive.
pub struct RecordingUpstream {
    port: u16,
    state: Arc<Mutex<UpstreamState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RecordingUpstream {
    /// Starts it answering `200 {"status":"success","data":{}}`.
    pub fn start() -> RecordingUpstream {
        Self::start_with(Reply::json(200, &json!({"status": "success", "data": {}})))
    }

    /// Starts it answering `reply` to every request.
    pub fn start_with(reply: Reply) -> RecordingUpstream {
        Self::start_mode(Mode::Fixed(reply))
    }

    /// Starts it as a recording pass-through in front of `base_url` (e.g. `backend.url()`).
    pub fn forwarding_to(base_url: &str) -> RecordingUpstream {
        Self::start_mode(Mode::Forward(base_url.trim_end_matches('/').to_string()))
    }

    fn start_mode(mode: Mode) -> RecordingUpstream {
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(UpstreamState {
            requests: Vec::new(),
            mode,
            queue: VecDeque::new(),
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("recording-upstream-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("upstream runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let client = new_http_client();
                    let mut rx = rx;
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            acc = listener.accept() => {
                                if let Ok((sock, _)) = acc {
                                    let st = st.clone();
                                    let client = client.clone();
                                    tokio::spawn(async move {
                                        let _ = serve_conn(sock, st, client).await;
                                    });
                                }
                            }
                        }
                    }
                });
                // Dropping the runtime cancels every connection task.
            })
            .expect("spawn upstream thread");
        RecordingUpstream {
            port,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> MutexGuard<'_, UpstreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The latest request, if any.
    pub fn last(&self) -> Option<Recorded> {
        self.lock().requests.last().cloned()
    }

    pub fn count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.lock().requests.clear();
    }

    /// Answers every later request with `reply` (stops forwarding).
    pub fn set_reply(&self, reply: Reply) {
        self.lock().mode = Mode::Fixed(reply);
    }

    /// Shorthand for `set_reply(Reply::new(status, body))`.
    pub fn set_response(&self, status: u16, body: &str) {
        self.set_reply(Reply::new(status, body));
    }

    /// Forwards every later request to `base_url`.
    pub fn set_forward(&self, base_url: &str) {
        self.lock().mode = Mode::Forward(base_url.trim_end_matches('/').to_string());
    }

    /// Queues one-shot replies used (in order) before the standing reply/forwarding.
    pub fn push_reply(&self, reply: Reply) {
        self.lock().queue.push_back(reply);
    }

    /// Waits until at least `n` requests have arrived; returns them all.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        poll_until(
            deadline,
            &format!("{n} request(s) at the recording upstream"),
            || async {
                let r = self.requests();
                (r.len() >= n).then_some(r)
            },
        )
        .await
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const MAX_HEAD: usize = 1 << 20;

async fn fill(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut tmp = [0u8; 16 * 1024];
    let n = sock.read(&mut tmp).await?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad_input(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads a line ending in CRLF from `buf` (filling from `sock`); returns it without CRLF.
async fn read_line(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        if buf.len() > MAX_HEAD {
            return Err(bad_input("line too long"));
        }
        if fill(sock, buf).await? == 0 {
            return Err(bad_input("eof in chunked body"));
        }
    }
}

async fn read_exact_into(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    while buf.len() < n {
        if fill(sock, buf).await? == 0 {
            return Err(bad_input("eof in body"));
        }
    }
    out.extend_from_slice(&buf[..n]);
    buf.drain(..n);
    Ok(())
}

async fn serve_conn(
    mut sock: tokio::net::TcpStream,
    state: Arc<Mutex<UpstreamState>>,
    client: reqwest::Client,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Request head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_HEAD {
                return Err(bad_input("head too large"));
            }
            if fill(&mut sock, &mut buf).await? == 0 {
                return Ok(()); // client closed
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or("HTTP/1.1").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        let hget = |name: &str| {
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(",")
        };
        let chunked = hget("transfer-encoding").contains("chunked");
        let conn_hdr = hget("connection");
        let mut keep_alive = if version == "HTTP/1.0" {
            conn_hdr.contains("keep-alive")
        } else {
            !conn_hdr.contains("close")
        };
        if hget("expect").contains("100-continue") {
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }

        // Body.
        let mut body = Vec::new();
        if chunked {
            loop {
                let line = read_line(&mut sock, &mut buf).await?;
                let size_str = line.split(';').next().unwrap_or_default().trim();
                let size =
                    usize::from_str_radix(size_str, 16).map_err(|_| bad_input("bad chunk size"))?;
                if size == 0 {
                    // Trailers until an empty line.
                    while !read_line(&mut sock, &mut buf).await?.is_empty() {}
                    break;
                }
                read_exact_into(&mut sock, &mut buf, size, &mut body).await?;
                let mut crlf = Vec::new();
                read_exact_into(&mut sock, &mut buf, 2, &mut crlf).await?;
            }
        } else {
            let len = hget("content-length");
            let n: usize = if len.is_empty() {
                0
            } else {
                len.split(',')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .parse()
                    .map_err(|_| bad_input("bad content-length"))?
            };
            read_exact_into(&mut sock, &mut buf, n, &mut body).await?;
        }

        let rec = Recorded {
            method: method.clone(),
            target: target.clone(),
            version,
            headers: headers.clone(),
            body: body.clone(),
            chunked,
        };
        let action = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.requests.push(rec);
            match st.queue.pop_front() {
                Some(r) => Mode::Fixed(r),
                None => st.mode.clone(),
            }
        };
        let reply = match action {
            Mode::Fixed(r) => r,
            Mode::Forward(base) => forward(&client, &base, &method, &target, &headers, body).await,
        };
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if reply.close {
            keep_alive = false;
        }
        let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        let mut has_len = false;
        for (k, v) in &reply.headers {
            if k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding")
            {
                has_len = true;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        let bodyless = method == "HEAD" || reply.status == 204 || reply.status == 304;
        if !has_len && reply.status != 204 && reply.status != 304 {
            out.push_str(&format!("content-length: {}\r\n", reply.body.len()));
        }
        if !keep_alive {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !bodyless {
            bytes.extend_from_slice(&reply.body);
        }
        sock.write_all(&bytes).await?;
        sock.flush().await?;
        if !keep_alive {
            let _ = sock.shutdown().await;
            return Ok(());
        }
    }
}

const HOP_BY_HOP: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

async fn forward(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Reply {
    let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Reply::new(400, "bad method");
    };
    let mut req = client.request(m, format!("{base}{target}"));
    for (k, v) in headers {
        if HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            continue;
        }
        req = req.header(k.as_str(), v.as_str());
    }
    match req.body(body).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let hdrs: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter(|(k, _)| {
                    !HOP_BY_HOP
                        .iter()
                        .any(|h| k.as_str().eq_ignore_ascii_case(h))
                })
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            Reply {
                status,
                headers: hdrs,
                body,
                delay: Duration::ZERO,
                close: false,
            }
        }
        Err(e) => Reply::new(502, format!("recording upstream: forward failed: {e}")),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------------------------
// TestPki: certificates with the openssl CLI
// ---------------------------------------------------------------------------------------------

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `listen:` with an HTTPS listener on `${HTTPS_PORT}` serving `server`'s certificate: put in
/// place of a config's `listen:` line (its other listeners follow).
pub fn https_listen_lines(server: &CertPair) -> String {
    format!(
        "listen:\n  https: \"127.0.0.1:${{HTTPS_PORT}}\"\n  tls: {{cert_file: \"{}\", key_file: \"{}\"}}\n",
        server.cert.display(),
        server.key.display()
    )
}

/// A client that speaks HTTP/2 only (over TLS, by ALPN), trusting the CA certificate in `ca`.
pub fn h2_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read the CA certificate");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .http2_prior_knowledge()
        // A hang is a gateway bug to report, not a CI run to stall.
        .timeout(scaled(Duration::from_secs(60)))
        .build()
        .expect("build the HTTP/2 client")
}

/// A rustls client configuration that trusts the CA certificates in PEM file `ca`, and no
/// other, without a client certificate.
pub fn tls_client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    ensure_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A throw-away CA (ECDSA P-256, valid 2 days) issuing server and client certificates with
/// the `openssl` CLI, in its own temp dir.
pub struct TestPki {
    dir: TempDir,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
}

/// Runs `openssl ARGS` in `cwd`, failing the test with its output when it fails.
pub fn openssl(args: &[&str], cwd: &Path) {
    let (code, out, err) = run_with_deadline(
        Command::new("openssl").args(args).current_dir(cwd),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "openssl {args:?} failed:\n{out}\n{err}");
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("whizard-pki-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=whizard-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            d,
        );
        TestPki {
            ca_cert: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate `name.crt`/`name.key` for `cn`, signed by the CA, with the openssl
    /// extension lines `ext`.
    pub fn issue(&self, name: &str, cn: &str, ext: &str) -> CertPair {
        let d = self.dir.path();
        let (key, csr, crt, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        fs::write(d.join(&extf), ext).expect("write ext file");
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={cn}"),
            ],
            d,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extf,
            ],
            d,
        );
        CertPair {
            cert: d.join(crt),
            key: d.join(key),
        }
    }

    /// A server certificate for `localhost`, `127.0.0.1`, `::1` and `extra_dns`.
    pub fn server(&self, name: &str, extra_dns: &[&str]) -> CertPair {
        let mut sans = vec![
            "DNS:localhost".to_string(),
            "IP:127.0.0.1".into(),
            "IP:::1".into(),
        ];
        sans.extend(extra_dns.iter().map(|d| format!("DNS:{d}")));
        let ext = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
            sans.join(",")
        );
        self.issue(name, name, &ext)
    }

    /// A client certificate with CN `cn` and `dns_sans` as DNS SANs.
    pub fn client(&self, cn: &str, dns_sans: &[&str]) -> CertPair {
        let mut ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                       extendedKeyUsage=clientAuth\n"
            .to_string();
        if !dns_sans.is_empty() {
            let sans: Vec<String> = dns_sans.iter().map(|d| format!("DNS:{d}")).collect();
            ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        self.issue(&format!("client-{cn}"), cn, &ext)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// POSTs a snappy remote-write v1 `body` to `base` + `path` as `user`, with the headers
/// Prometheus sends.
pub async fn post_write(
    base: &str,
    user: (&str, &str),
    path: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    new_http_client()
        .post(format!("{base}{path}"))
        .basic_auth(user.0, Some(user.1))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Remote write 1.0 messages (prompb/remote.proto, types.proto), for tests that build or read
/// bodies independently of the gateway's own codec.
pub mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
}

// ---------------------------------------------------------------------------------------------
// HAProxy: a load balancer in front of a fleet of gateways (tests/fleet.rs)
// ---------------------------------------------------------------------------------------------

pub const HAPROXY_BIN: &str = "haproxy";

/// Debian's `haproxy` doing HTTP round-robin over some gateways' main listeners, each
/// health-checked on `/-/ready` every 200 ms (down after one failure, up after one success);
/// a request whose connection fails is retried on another server. A stats page tells which
/// servers it considers up. Killed on drop.
pub struct Haproxy {
    dir: TempDir,
    port: u16,
    stats_port: u16,
    proc_: Option<Proc>,
}

impl Haproxy {
    /// Starts haproxy in front of `servers` (`host:port` each) and waits until its stats page
    /// answers.
    pub async fn round_robin(servers: &[String]) -> Haproxy {
        let dir = tempfile::Builder::new()
            .prefix("whizard-haproxy-")
            .tempdir()
            .expect("tempdir");
        for attempt in 1..=START_ATTEMPTS {
            let (port, stats_port) = (free_port(), free_port());
            let mut cfg = format!(
                "global\n  maxconn 4096\n\
                 defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  \
                 timeout server 30s\n  retries 3\n  option redispatch 1\n\
                 frontend fleet\n  bind 127.0.0.1:{port}\n  default_backend gateways\n\
                 frontend stats\n  bind 127.0.0.1:{stats_port}\n  stats enable\n  \
                 stats uri /stats\n  stats refresh 1s\n\
                 backend gateways\n  balance roundrobin\n  option httpchk GET /-/ready\n"
            );
            for (i, s) in servers.iter().enumerate() {
                cfg.push_str(&format!(
                    "  server g{i} {s} check inter 200ms fall 1 rise 1\n"
                ));
            }
            let cfg_path = dir.path().join("haproxy.cfg");
            fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
            let log = dir.path().join("haproxy.log");
            let mut cmd = Command::new(HAPROXY_BIN);
            cmd.arg("-db")
                .arg("-f")
                .arg(&cfg_path)
                .current_dir(dir.path());
            let mut p = Proc::spawn("haproxy", &mut cmd, &log);
            let stats = format!("http://127.0.0.1:{stats_port}/stats;csv");
            let res = wait_ready(&mut p, startup_deadline(), || {
                let stats = stats.clone();
                async move { http_status(&stats).await == Some(200) }
            })
            .await;
            match res {
                Ok(()) => {
                    return Haproxy {
                        dir,
                        port,
                        stats_port,
                        proc_: Some(p),
                    }
                }
                Err(ReadyError::Exited {
                    port_in_use: true, ..
                }) if attempt < START_ATTEMPTS => {
                    eprintln!("[harness] haproxy port taken, retrying");
                }
                Err(e) => panic!("{}", ready_failure("haproxy", &p, &e)),
            }
        }
        unreachable!()
    }

    /// Its statistics page as CSV (a `# ` header line, then a row per proxy and server).
    async fn stats_csv(&self) -> String {
        let url = format!("http://127.0.0.1:{}/stats;csv", self.stats_port);
        http_client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .text()
            .await
            .unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`, the fleet's front door.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How haproxy sees each server (`g0`, `g1`, ... in the order given): its status column
    /// (`UP`, `DOWN`, ...).
    pub async fn server_status(&self) -> Vec<(String, String)> {
        let text = self.stats_csv().await;
        let (header, lines) = csv_header(&text);
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            panic!("haproxy stats without pxname/svname/status:\n{text}");
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.get(px) == Some(&"gateways") && f.get(sv).is_some_and(|s| s.starts_with('g'))
            })
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect()
    }

    /// Polls until haproxy sees exactly the servers whose index is in `up` as UP (the others
    /// not UP).
    pub async fn wait_servers_up(&self, up: &[usize], deadline: Duration) {
        let want: Vec<String> = up.iter().map(|i| format!("g{i}")).collect();
        poll_until(deadline, &format!("haproxy to see {want:?} up"), || async {
            let st = self.server_status().await;
            let now: Vec<String> = st
                .iter()
                .filter(|(_, s)| s.starts_with("UP"))
                .map(|(n, _)| n.clone())
                .collect();
            (now == want).then_some(())
        })
        .await
    }
}

/// Polls until every gateway in `running` reports `live` live and `down` down replicas.
pub async fn wait_membership(gws: &[Gateway], running: &[usize], live: f64, down: f64) {
    poll_until(
        Duration::from_secs(15),
        &format!("gateways {running:?} to see {live} live and {down} down"),
        || async {
            for &i in running {
                let t = gws[i].metrics_text().await;
                let l = metric_value(&t, "whizard_cluster_peers", &[("state", "live")]);
                let d = metric_value(&t, "whizard_cluster_peers", &[("state", "down")]);
                if l != Some(live) || d != Some(down) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

/// Gives every gateway of `gws` the config `config(peers)`, `peers` listing all their metrics
/// listeners (YAML flow items), and polls until each sees all of them live.
pub async fn join_fleet(gws: &[Gateway], config: impl Fn(&str) -> String) {
    let peers = gws
        .iter()
        .map(|g| format!("\"127.0.0.1:{}\"", g.metrics_port()))
        .collect::<Vec<_>>()
        .join(", ");
    let full = config(&peers);
    for g in gws {
        g.write_config(&full);
    }
    let all: Vec<usize> = (0..gws.len()).collect();
    wait_membership(gws, &all, gws.len() as f64, 0.0).await;
}

/// [`Haproxy::round_robin`] over the main listeners of `gws`, once it sees them all up.
pub async fn haproxy_over(gws: &[Gateway]) -> Haproxy {
    let lb = Haproxy::round_robin(
        &gws.iter()
            .map(|g| format!("127.0.0.1:{}", g.http_port()))
            .collect::<Vec<_>>(),
    )
    .await;
    let all: Vec<usize> = (0..gws.len()).collect();
    lb.wait_servers_up(&all, Duration::from_secs(10)).await;
    lb
}

/// The column names of haproxy's statistics CSV, and its other lines.
fn csv_header(text: &str) -> (Vec<&str>, std::str::Lines<'_>) {
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    (header, lines)
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.proc_.take();
    }
}

// ---------------------------------------------------------------------------------------------
// Browser: logs in at the test identity provider over HTTP
// ---------------------------------------------------------------------------------------------

/// A minimal browser for the authorization code flow: keeps the cookies it is given (by name
/// only, for every host: enough for a gateway and a provider on loopback) and follows the
/// provider's redirects by hand.
pub struct Browser {
    pub client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        ensure_crypto_provider();
        Browser {
            client: no_redirect_client(),
            cookies: BTreeMap::new(),
        }
    }

    /// The `Cookie` header this browser sends.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sends `req` with the cookies, and keeps (or drops) the cookies the answer sets.
    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let resp = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.to_ascii_lowercase().contains("max-age=0")
                || attrs.contains("expires=Thu, 01 Jan 1970")
            {
                self.cookies.remove(k.trim());
            } else {
                self.cookies.insert(k.trim().to_string(), val.to_string());
            }
        }
        resp
    }

    /// Logs in as `user` at the provider (its dev interaction: any name, any password), starting
    /// at its authorization URL and following its redirects until one goes to a URL starting
    /// with `callback`, which it returns without requesting it.
    pub async fn login(&mut self, authorize_url: &str, user: &str, callback: &str) -> url::Url {
        let mut next = url::Url::parse(authorize_url).unwrap();
        for _ in 0..10 {
            if next.as_str().starts_with(callback) {
                return next;
            }
            let resp = self.send(self.client.get(next.clone())).await;
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp.headers()["location"].to_str().unwrap().to_string();
                next = next.join(&loc).unwrap();
                continue;
            }
            let body = resp.text().await.unwrap();
            assert!(status.is_success(), "{next}: {status} {body}");
            assert!(
                body.contains("name=\"login\""),
                "expected a login form: {body}"
            );
            let resp = self
                .send(self.client.post(next.clone()).form(&[
                    ("prompt", "login"),
                    ("login", user),
                    ("password", "anything"),
                ]))
                .await;
            assert!(
                resp.status().is_redirection(),
                "login post: {}",
                resp.status()
            );
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            next = next.join(&loc).unwrap();
        }
        panic!("no redirect to the callback; stuck at {next}");
    }
}

// ---------------------------------------------------------------------------------------------
// HAProxy statistics per row (tests/fleet_writes.rs)
// ---------------------------------------------------------------------------------------------

impl Haproxy {
    /// haproxy's statistics, one row per `proxy/server` (`gateways/g0`, ...,
    /// `gateways/BACKEND`, `fleet/FRONTEND`), each as column → value (`status`, `scur`: sessions
    /// now on it, `stot`, `hrsp_5xx`, `wretr`: connection retries, `wredis`: redispatches, ...).
    pub async fn stats(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let text = self.stats_csv().await;
        let (header, lines) = csv_header(&text);
        lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let row: BTreeMap<String, String> = header
                    .iter()
                    .zip(l.split(','))
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect();
                let name = format!(
                    "{}/{}",
                    row.get("pxname").map_or("", |s| s.as_str()),
                    row.get("svname").map_or("", |s| s.as_str())
                );
                (name, row)
            })
            .collect()
    }

    /// One number of [`Haproxy::stats`] (`0` when empty or absent).
    pub async fn stat(&self, row: &str, column: &str) -> u64 {
        self.stats()
            .await
            .get(row)
            .and_then(|r| r.get(column))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// The test identity provider (the real `oidc-provider`, tests/node/idp.mjs)
// ---------------------------------------------------------------------------------------------

/// Sends `req` and reads its answer as JSON (panics on any failure).
pub async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// tests/node: the Node scripts of the tests and their node_modules.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// `node tests/node/idp.mjs` on a port chosen before it starts (so that its issuer can go into a
/// gateway config first). Killed on drop; prints its log tail when a test fails.
pub struct Idp {
    child: Option<Child>,
    port: u16,
    scheme: &'static str,
    dir: TempDir,
    env: Vec<(String, String)>,
}

impl Idp {
    /// A provider that will listen on a free port over HTTP with the extra `env`; start it with
    /// [`Idp::spawn`].
    pub fn new(env: &[(&str, &str)]) -> Idp {
        assert!(
            node_dir().join("node_modules/oidc-provider").exists(),
            "run scripts/install-test-deps.sh (npm ci in {})",
            node_dir().display()
        );
        Idp {
            child: None,
            port: free_port(),
            scheme: "http",
            dir: tempfile::Builder::new()
                .prefix("whizard-idp-")
                .tempdir()
                .unwrap(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// [`Idp::new`], started.
    pub async fn start(env: &[(&str, &str)]) -> Idp {
        let mut idp = Idp::new(env);
        idp.spawn().await;
        idp
    }

    /// Serving HTTPS (idp.mjs with `IDP_TLS_CERT`/`IDP_TLS_KEY` in its env): the issuer is
    /// `https://`.
    pub fn https(mut self) -> Idp {
        self.scheme = "https";
        self
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.push((k.to_string(), v.to_string()));
    }

    pub fn issuer(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("idp.log")
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts (or restarts) it, its signing keys kept across restarts.
    pub async fn spawn(&mut self) {
        let keys = self.dir.path().join("keys.json");
        let child = spawn_idp(
            self.port,
            &keys,
            &self.env,
            &self.log_path(),
            &self.issuer(),
        )
        .await;
        self.child = Some(child);
    }

    /// Starts it with the browser client's redirect URIs (`IDP_REDIRECT_URIS`: the `gateways`'
    /// callbacks) and the extra `env`.
    pub async fn start_for(&mut self, gateways: &[&Gateway], env: &[(&str, &str)]) {
        let callbacks: Vec<String> = gateways
            .iter()
            .map(|g| format!("{}/oauth2/callback", g.url()))
            .collect();
        self.set_env("IDP_REDIRECT_URIS", &callbacks.join(","));
        for (k, v) in env {
            self.set_env(k, v);
        }
        self.spawn().await;
    }

    /// SIGKILL: the provider is gone (port closed).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A real client_credentials access token of a machine client (`<id>-secret`), with the
    /// `extra` form fields.
    pub async fn token(&self, client: &str, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        let resp = http_client()
            .post(self.token_url())
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "token for {client}: {status} {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// A JWT signed by the provider's current key, with claims of our choosing (`/__sign`).
    pub async fn sign(&self, request: Value) -> String {
        let resp = http_client()
            .post(format!("{}/__sign", self.issuer()))
            .json(&request)
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("__sign: {body}"))
            .to_string()
    }

    /// New signing keys (`/__rotate`, the old ones still served when `keep_old`); returns every
    /// kid the provider now serves.
    pub async fn rotate(&self, keep_old: bool) -> Vec<String> {
        let q = if keep_old { "" } else { "?keep_old=0" };
        let body = json_of(http_client().post(format!("{}/__rotate{q}", self.issuer()))).await;
        body["kids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- identity provider log tail ({}) -----\n{}\n-----",
                self.log_path().display(),
                tail_file(&self.log_path(), 40)
            );
        }
    }
}

/// The Chromium the browser tests drive (`CHROMIUM`, else Debian's `/usr/bin/chromium`), with
/// npm `playwright-core` installed in tests/node.
pub fn chromium() -> String {
    assert!(
        node_dir().join("node_modules/playwright-core").exists(),
        "run scripts/install-test-deps.sh"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "no {chromium}");
    chromium
}

/// Runs `node tests/node/<script>` (at most 180 s, off the runtime) driving `chromium` against
/// `gw` and `idp` (`GW_URL`, `IDP_URL`), with the extra `env` and `STEP_TIMEOUT_MS` (30 s,
/// scaled). Asserts that it exits 0 and that its last `RESULT {json}` line says `"ok": true`;
/// returns that result and the script's stdout.
pub async fn run_browser_script(
    script: &str,
    chromium: &str,
    gw: &Gateway,
    idp: &Idp,
    env: Vec<(&'static str, String)>,
) -> (Value, String) {
    let path = node_dir().join(script);
    let started = Instant::now();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (gw_url, idp_url, chromium) = (gw.url(), idp.issuer(), chromium.to_string());
        move || {
            run_with_deadline(
                Command::new("node")
                    .arg(&path)
                    .env("GW_URL", gw_url)
                    .env("IDP_URL", idp_url)
                    .envs(env)
                    .env("CHROMIUM", chromium)
                    .env(
                        "STEP_TIMEOUT_MS",
                        scaled(Duration::from_secs(30)).as_millis().to_string(),
                    ),
                Duration::from_secs(180),
            )
        }
    })
    .await
    .unwrap();
    eprintln!(
        "{script} ran {:.1}s:\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    assert_eq!(
        code,
        0,
        "{script} failed (exit {code}).\nstdout:\n{stdout}\nstderr:\n{stderr}\ngateway log:\n{}",
        tail_file(&gw.log_path(), 30)
    );
    assert_eq!(result["ok"], true, "{stdout}");
    (result, stdout)
}

/// The start of a gateway config: both listeners on `${HTTP_PORT}`/`${METRICS_PORT}`, the
/// `query` and `receive` upstreams (then `upstream_lines`, each indented by two spaces and
/// ending in a newline), tenancy by the `THANOS-TENANT` header and the `tenant_id` label, and
/// `tenants:` with these ids (more top-level keys may follow).
pub fn config_head(query: &str, receive: &str, upstream_lines: &str, tenants: &[&str]) -> String {
    let tenants: String = tenants.iter().map(|t| format!("  - id: {t}\n")).collect();
    format!(
        r#"listen:
  http: "127.0.0.1:${{HTTP_PORT}}"
  metrics: "127.0.0.1:${{METRICS_PORT}}"
upstreams:
  query: "{query}"
  receive: "{receive}"
{upstream_lines}tenancy:
  header: THANOS-TENANT
  label: tenant_id
tenants:
{tenants}"#
    )
}

/// One entry of `oidc:` (its `  - issuer:` line and what follows): audience `whizard`, tenants
/// from the `tenant` claim, access from `access_claim`; with `login`, the browser client
/// `whizard-ui` (secret `whizard-ui-secret`) called back on `${HTTP_PORT}`.
pub fn oidc_provider_lines(issuer: &str, access_claim: &str, login: bool) -> String {
    let login = if login {
        "    client_id: whizard-ui\n    client_secret: whizard-ui-secret\n    \
         redirect_url: \"http://127.0.0.1:${HTTP_PORT}/oauth2/callback\"\n"
    } else {
        ""
    };
    format!(
        "  - issuer: \"{issuer}\"\n    audience: whizard\n    tenant_claim: tenant\n    \
         access_claim: {access_claim}\n{login}"
    )
}

/// A client that does not follow redirects and keeps no cookies.
pub fn no_redirect_client() -> reqwest::Client {
    ensure_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(scaled(Duration::from_secs(30)))
        .build()
        .unwrap()
}
