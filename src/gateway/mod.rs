//! The pingora glue: listeners, the per-config runtime, and the routing table → handlers.

mod filtered;
mod forward;
mod params;
mod proxy;
mod respond;
mod routes;
mod write;

pub use routes::{route, Class, Route};

use crate::auth::basic::BasicAuth;
use crate::config::{Config, ConfigErrors, Upstream};
use crate::metrics::metrics;
use arc_swap::ArcSwap;
use moka::sync::Cache;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything built from one config; replaced whole on reload so a request sees one version.
pub struct Runtime {
    pub config: Config,
    pub basic: BasicAuth,
    /// Client for requests whose body the gateway rewrites (writes, POST forms).
    pub client: reqwest::Client,
    /// Per tenant: the labels injected into written series (tenant label included).
    pub write_labels: HashMap<String, crate::remote_write::LabelSet>,
    pub limiters: crate::limits::Limiters,
}

impl Runtime {
    /// Builds the runtime of `config`; limiter state carries over from `previous`.
    pub fn new(config: Config, previous: Option<&Runtime>) -> Result<Runtime, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.upstreams.connect_timeout)
            .timeout(config.upstreams.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the upstream client: {e}"))?;
        let mut write_labels = HashMap::new();
        for (id, tenant) in &config.tenants {
            let mut pairs: Vec<(String, String)> = tenant
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if config.tenancy.inject_label_on_write {
                pairs.push((config.tenancy.label.clone(), id.clone()));
            }
            let set = crate::remote_write::LabelSet::new(pairs)
                .map_err(|e| format!("tenant {id}: labels to inject: {e}"))?;
            write_labels.insert(id.clone(), set);
        }
        Ok(Runtime {
            limiters: crate::limits::Limiters::new(&config, previous.map(|p| &p.limiters)),
            basic: BasicAuth::new(&config),
            client,
            write_labels,
            config,
        })
    }
}

/// State shared by every listener and request.
pub struct State {
    pub runtime: ArcSwap<Runtime>,
    pub config_path: PathBuf,
    resolved: Cache<String, std::net::SocketAddr>,
}

impl State {
    /// Loads and validates the config file again; keeps the old runtime on any error.
    pub fn reload(&self) -> Result<(), String> {
        let m = metrics();
        let result = Config::load(&self.config_path)
            .map_err(|e: ConfigErrors| e.to_string())
            .and_then(|c| Runtime::new(c, Some(&self.runtime.load())));
        match result {
            Ok(rt) => {
                self.runtime.store(Arc::new(rt));
                self.resolved.invalidate_all();
                m.config_last_reload_successful.set(1);
                m.config_last_reload_success_timestamp.set(unix_now());
                tracing::info!(path = %self.config_path.display(), "config reloaded");
                Ok(())
            }
            Err(e) => {
                m.config_last_reload_successful.set(0);
                tracing::error!(error = %e, "config reload refused; keeping the previous config");
                Err(e)
            }
        }
    }

    /// The socket address of an upstream (DNS names resolved off the hot path and cached).
    pub async fn address(&self, up: &Upstream) -> Option<std::net::SocketAddr> {
        if let Ok(ip) = up.host.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, up.port));
        }
        if let Some(a) = self.resolved.get(&up.address) {
            return Some(a);
        }
        let addr = tokio::net::lookup_host(&up.address).await.ok()?.next()?;
        self.resolved.insert(up.address.clone(), addr);
        Some(addr)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the gateway until it is told to stop. Never returns on success.
pub fn run(config_path: &Path) -> Result<(), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let runtime = Runtime::new(config.clone(), None)?;
    let m = metrics();
    m.config_last_reload_successful.set(1);
    m.config_last_reload_success_timestamp.set(unix_now());
    let state = Arc::new(State {
        runtime: ArcSwap::from_pointee(runtime),
        config_path: config_path.to_path_buf(),
        resolved: Cache::builder()
            .time_to_live(Duration::from_secs(30))
            .max_capacity(1024)
            .build(),
    });

    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        upgrade_sock: format!("/tmp/whizard_upgrade_{}.sock", std::process::id()),
        pid_file: format!("/tmp/whizard_{}.pid", std::process::id()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let main = proxy::Gateway::new(state.clone(), config.listen.metrics.is_none());
    let mut service = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        main,
        "whizard gateway",
    );
    if let Some(addr) = config.listen.http {
        service.add_tcp(&addr.to_string());
    }
    if config.listen.https.is_some() {
        return Err("listen.https is not supported yet; use listen.http".into());
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
    spawn_sighup_reloader(state);
    tracing::info!(http = ?config.listen.http, metrics = ?config.listen.metrics, "whizard gateway starting");
    server.run_forever()
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
