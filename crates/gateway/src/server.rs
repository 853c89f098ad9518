//! Starting and running the gateway: listeners and services, logging, graceful exit on
//! signals, and the config reload triggers (file watcher, SIGHUP).

use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use whizard_core::config::Config;
use whizard_core::metrics::metrics;

use super::runtime::{unix_now, Runtime, State};
use super::short_way::{self, keepalive};
use super::{proxy, tls};

/// Runs the gateway until it is told to stop. Never returns on success.
pub fn run(config_path: &Path, upgrade: bool) -> Result<(), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    init_logging(&config.logging);
    crate::access_log::init();
    let runtime = Runtime::new(config.clone(), None)?;
    let m = metrics();
    m.config_last_reload_successful.set(1);
    m.config_last_reload_success_timestamp.set(unix_now());
    let state = Arc::new(State::new(runtime, config_path)?);

    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: config.server.upgrade_socket.display().to_string(),
        pid_file: format!("/tmp/whizard_{}.pid", std::process::id()),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let main = proxy::Gateway::new(state.clone());
    let fast = short_way::FastGet::new(proxy::Gateway::new(state.clone()), &server.configuration);
    let mut app = keepalive::LeanKeepAlive::new(
        pingora::proxy::http_proxy(&server.configuration, main),
        Box::new(fast),
    );
    if config.server.pin_workers {
        let cpus = short_way::cpus::allowed()
            .map_err(|e| format!("server.pin_workers: cannot read the allowed CPUs: {e}"))?;
        if cpus.len() < config.server.threads {
            // Workers are pinned in turn, so some share a CPU: what pinning is meant to avoid.
            tracing::warn!(
                threads = config.server.threads,
                cpus = cpus.len(),
                "server.pin_workers with more threads than allowed CPUs: some workers share a CPU"
            );
        }
        app = app.with_pinned_workers(cpus);
    }
    // No l4 read buffer: it would stay allocated for the life of the connection, idle or not
    // (pingora's default 64 KiB: ~1 GiB at 10,000 idle clients). The keep-alive loop reads each
    // request's first bytes into a buffer that exists only during that read, and pingora reads
    // the rest into its own request buffers.
    let tcp = |addr: std::net::SocketAddr| {
        pingora::listeners::ListenerConfig::tcp(addr.to_string())
            .l4_buffer(pingora::listeners::L4BufferSettings::default().read(0))
    };
    let mut listeners = Vec::new();
    if let Some(addr) = config.listen.http {
        listeners.push(tcp(addr));
    }
    if let (Some(addr), Some(t)) = (config.listen.https, &config.listen.tls) {
        // Files are loaded and checked here (pingora's rustls path would panic on bad ones);
        // the certificate is re-read when the files or `listen.tls` change. pingora listens
        // on plain TCP and whizard runs the handshake, on the thread that serves the
        // connection (short_way/placement.rs).
        let listener = tls::ListenerTls::new(t)?;
        let acceptor = listener.settings()?.build();
        app = app.with_tls(keepalive::TlsListener { addr, acceptor });
        listeners.push(tcp(addr));
        let st = state.clone();
        listener.spawn_reloader(t, move || st.runtime.load().config.listen.tls.clone());
    }
    let mut service =
        pingora::services::listening::Service::new("whizard gateway".to_string(), app);
    for listener in listeners {
        service.add_listener(listener);
    }
    server.add_service(service);

    if let Some(addr) = config.listen.metrics {
        let admin = proxy::Gateway::admin(state.clone());
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            admin,
            "whizard metrics",
        );
        service.add_tcp(&addr.to_string());
        server.add_service(service);
    }
    spawn_sighup_reloader(state.clone());
    spawn_config_watcher(state.clone());
    spawn_graceful_exit(state, config.server.grace_period);
    tracing::info!(http = ?config.listen.http, metrics = ?config.listen.metrics, "whizard gateway starting");
    server.run_forever()
}

fn init_logging(logging: &whizard_core::config::Logging) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHIZARD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{},pingora_core=warn,pingora_proxy=warn",
            logging.level
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match logging.format {
        whizard_core::config::LogFormat::Json => builder.json().try_init(),
        whizard_core::config::LogFormat::Logfmt => builder.try_init(),
    };
    // pingora logs through the `log` crate, and its debug and trace lines carry whole request
    // heads (`Authorization`, cookies). Whatever WHIZARD_LOG asks for, `log` records stop at
    // info, so credentials reach no log at any level. (The gateway's own `tracing` events never
    // carry header values.)
    log::set_max_level(log::LevelFilter::Info);
}

/// On SIGTERM pingora stops accepting connections and then sleeps for the whole grace period.
/// This exits as soon as no request is in flight any more (or when the grace period is over),
/// so a rolling update does not wait for nothing. On SIGINT (a fast shutdown) it exits at once:
/// pingora's own fast shutdown drops its runtimes under their running accept loops, which then
/// spun on the dropped reactor ("Accept() failed") instead of exiting (seen 2 in 15 runs).
fn spawn_graceful_exit(state: Arc<State>, grace: Duration) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut interrupt)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                got = term.recv() => if got.is_none() {
                    return;
                },
                got = interrupt.recv() => {
                    if got.is_some() {
                        tracing::info!("SIGINT: exiting at once");
                        // `exit` runs the access log's flush (registered with `atexit`).
                        std::process::exit(0);
                    }
                    return;
                }
            }
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "SIGTERM: finishing in-flight requests"
            );
            let deadline = tokio::time::Instant::now() + grace;
            // Give pingora a moment to close its listeners before counting.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while state.active_requests() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let left = state.active_requests();
            if left > 0 {
                tracing::warn!(
                    requests = left,
                    "grace period over; exiting with requests in flight"
                );
            } else {
                tracing::info!("no request in flight; exiting");
            }
            // `exit` runs the access log's flush (registered with `atexit`).
            std::process::exit(0);
        });
    });
}

/// Reloads when the config file changes. The directory is watched, not the file, because
/// Kubernetes updates ConfigMaps and Secrets by swapping a symlink; a reload happens only
/// when the content really changed.
fn spawn_config_watcher(state: Arc<State>) {
    use notify::{RecursiveMode, Watcher};
    let dir = state
        .config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::thread::spawn(move || {
        let name = state.config_path.file_name().map(|n| n.to_os_string());
        // Only the config file itself, or Kubernetes' `..data` symlink swap, matters; other
        // files in the directory (logs, for instance) may change all the time. They are
        // filtered out in notify's own thread so they never wake this one.
        // Reads (ours included: digesting the file opens it) are not changes.
        let relevant = move |e: &notify::Event| {
            !matches!(e.kind, notify::EventKind::Access(_))
                && e.paths.iter().any(|p| {
                    p.file_name().is_some_and(|f| {
                        Some(f) == name.as_deref() || f.as_encoded_bytes().starts_with(b"..")
                    })
                })
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = match notify::recommended_watcher(
            move |e: notify::Result<notify::Event>| {
                if e.as_ref().is_ok_and(&relevant) {
                    let _ = tx.send(());
                }
            },
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the config directory; reload with SIGHUP or /-/reload");
                return;
            }
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::error!(error = %e, dir = %dir.display(), "cannot watch the config directory");
            return;
        }
        let digest = |p: &Path| std::fs::read(p).ok().map(|b| blake3::hash(&b));
        let mut last = digest(&state.config_path);
        while let Ok(()) = rx.recv() {
            // Let the rest of a burst (write, rename, symlink swap) land, for at most 200 ms.
            let settle = std::time::Instant::now() + Duration::from_millis(200);
            while let Some(left) = settle.checked_duration_since(std::time::Instant::now()) {
                if rx.recv_timeout(left).is_err() {
                    break;
                }
            }
            let now = digest(&state.config_path);
            if now.is_some() && now != last {
                last = now;
                let _ = state.reload();
            }
        }
    });
}

/// SIGHUP reloads the config, as Prometheus users expect.
fn spawn_sighup_reloader(state: Arc<State>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            tracing::error!("cannot start the SIGHUP reloader");
            return;
        };
        rt.block_on(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::error!("cannot listen for SIGHUP");
                return;
            };
            while hup.recv().await.is_some() {
                let _ = state.reload();
            }
        });
    });
}
