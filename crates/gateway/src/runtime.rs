//! The per-config runtime: everything built from one config (authenticators, limiters,
//! clients, matchers), swapped whole on reload, and the process-wide state that holds it.

use super::{respond, tls};
use arc_swap::ArcSwap;
use moka::sync::Cache;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use whizard_core::auth::basic::BasicAuth;
use whizard_core::config::{Config, ConfigErrors};
use whizard_core::metrics::metrics;
use whizard_core::per_thread::{Line, Slots};
use whizard_core::sync::lock;

/// Everything built from one config; replaced whole on reload so a request sees one version.
pub struct Runtime {
    pub config: Config,
    pub basic: BasicAuth,
    /// Client for requests whose body the gateway rewrites (writes, POST forms).
    pub client: reqwest::Client,
    /// Per tenant: the labels injected into written series (tenant label included).
    pub write_labels: HashMap<String, whizard_core::remote_write::LabelSet>,
    pub limiters: whizard_core::limits::Limiters,
    /// The fleet's membership (`cluster`): how many replicas share every limit. Kept across a
    /// reload that does not change `cluster` or `listen.metrics`.
    pub cluster: Option<Arc<whizard_core::cluster::Cluster>>,
    /// Bearer tokens of the `oidc` providers (None without providers).
    pub oidc: Option<Arc<whizard_core::auth::oidc::OidcAuth>>,
    /// Browser sessions (None without `ui.cookie_secret`).
    pub sessions: Option<Arc<whizard_core::auth::session::Sessions>>,
    /// Browser login (an `oidc` provider with `client_id` and `redirect_url`, plus sessions);
    /// session cookies are accepted only through it, so they end with the provider's config.
    pub login: Option<Arc<whizard_core::auth::login::LoginFlow>>,
    /// Tenant matchers by scope (`a|b`): built once, not per request.
    matchers: Cache<String, Arc<whizard_core::enforcement::TenantMatcher>>,
    /// Enforced queries by (scope, query): dashboards send the same text on every refresh, and
    /// the rewrite (two parses, regex compilation) costs tens of microseconds.
    /// Keyed by a BLAKE3 hash of (scope, query), so a lookup allocates nothing.
    rewrites: Cache<[u8; 32], Arc<str>>,
    /// `tenancy.header` as pingora takes a header name without copying it per request.
    pub tenant_header: bytes::Bytes,
    /// `tenancy.header` parsed once: for reading and removing client-sent copies and for the
    /// requests the gateway builds itself (pingora copies a non-standard `HeaderName` per
    /// insert, hence `tenant_header` beside it).
    pub tenant_header_name: http::HeaderName,
    /// pingora's peers for the upstreams of `config`, kept per thread and address.
    pub peers: super::upstream::Peers,
}

impl Runtime {
    /// Builds the runtime of `config`; limiter state carries over from `previous`.
    pub fn new(config: Config, previous: Option<&Runtime>) -> Result<Runtime, String> {
        let client = super::upstream::client(&config)?;
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
            let set = whizard_core::remote_write::LabelSet::new(pairs)
                .map_err(|e| format!("tenant {id}: labels to inject: {e}"))?;
            write_labels.insert(id.clone(), set);
        }
        // Each provider has its own client, built from its own `oidc[].tls`: `client` above
        // follows `upstreams.tls` (insecure_skip_verify, a private CA, a server_name), which is
        // about the Thanos components and must never decide who may sign tokens.
        let oidc = (!config.oidc.is_empty())
            .then(|| {
                whizard_core::auth::oidc::OidcAuth::for_config(
                    &config.oidc,
                    whizard_core::auth::oidc::OidcOptions::default(),
                    previous.and_then(|p| p.oidc.as_deref()),
                    |i, o| oidc_client(i, &o.tls),
                )
                .map(Arc::new)
            })
            .transpose()?;
        // Sessions (their logout and renewal records) survive a reload that keeps the cookie
        // secret and the session lifetimes.
        let same_sessions = |p: &Runtime| {
            p.config.ui.cookie_secret == config.ui.cookie_secret
                && p.config.ui.session_ttl == config.ui.session_ttl
                && p.config.ui.session_renew == config.ui.session_renew
        };
        let sessions = match previous.filter(|p| same_sessions(p)) {
            Some(p) => p.sessions.clone(),
            None => whizard_core::auth::session::Sessions::new(&config.ui).map(Arc::new),
        };
        let login = match (&oidc, &sessions) {
            (Some(o), Some(s)) => o.login_issuer().map(|issuer| {
                // The token-endpoint call carries `client_secret`: the provider's own client.
                let http = issuer.http().clone();
                whizard_core::auth::login::LoginFlow::new(issuer, s.clone(), http)
                    .map(Arc::new)
                    .map_err(|e| format!("browser login: {e}"))
            }),
            _ => None,
        }
        .transpose()?;
        let tenant_header_name = http::HeaderName::from_bytes(config.tenancy.header.as_bytes())
            .map_err(|e| format!("tenancy.header: {e}"))?;
        let own_metrics = config.listen.metrics;
        let previous_cluster = previous.and_then(|p| p.cluster.as_ref());
        let cluster = config.cluster.as_ref().map(|c| {
            match previous_cluster.filter(|p| p.same(c, own_metrics)) {
                Some(p) => p.clone(),
                None => Arc::new(whizard_core::cluster::Cluster::new(
                    c,
                    own_metrics,
                    previous_cluster.map(|p| p.live()),
                )),
            }
        });
        Ok(Runtime {
            matchers: Cache::builder().max_capacity(10_000).build(),
            rewrites: Cache::builder()
                .weigher(|_: &[u8; 32], v: &Arc<str>| (32 + v.len()).try_into().unwrap_or(u32::MAX))
                .max_capacity(64 << 20)
                .build(),
            oidc,
            sessions,
            login,
            limiters: whizard_core::limits::Limiters::new(
                &config,
                previous.map(|p| &p.limiters),
                cluster.as_ref().map(|c| c.live_handle()),
            ),
            cluster,
            basic: BasicAuth::new(&config),
            client,
            write_labels,
            tenant_header: bytes::Bytes::from(config.tenancy.header.clone()),
            tenant_header_name,
            peers: Default::default(),
            config,
        })
    }
}

/// The HTTP client of provider `oidc[index]`: TLS from its `tls` only (see
/// [`tls::oidc_client_config`]); no redirects (a 3xx could lead to plain http or another host),
/// no proxy, like the upstream client. Timeouts are per request (discovery/JWKS, token call),
/// so no setting of `upstreams` applies here.
fn oidc_client(index: usize, t: &whizard_core::config::OidcTls) -> Result<reqwest::Client, String> {
    let tls = tls::oidc_client_config(&format!("oidc[{index}].tls"), t)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("oidc[{index}]: cannot build the HTTP client: {e}"))
}

#[derive(Clone, Copy)]
enum Rewrite {
    Query = 1,
    MatchSelector = 2,
}

impl Runtime {
    /// `enforce_query` for `scope`, served from a cache of earlier successes.
    pub fn enforce_query_cached(
        &self,
        scope: &str,
        query: &str,
        matcher: &whizard_core::enforcement::TenantMatcher,
    ) -> Result<String, whizard_core::enforcement::EnforceError> {
        self.rewrite_cached(Rewrite::Query, scope, query, || {
            whizard_core::enforcement::enforce_query(query, matcher)
        })
    }

    /// `enforce_match_selector` for `scope`, served from the same cache: dashboards ask for
    /// the same label values over and over, and each rewrite costs two parses.
    pub fn enforce_match_cached(
        &self,
        scope: &str,
        selector: &str,
        matcher: &whizard_core::enforcement::TenantMatcher,
    ) -> Result<String, whizard_core::enforcement::EnforceError> {
        self.rewrite_cached(Rewrite::MatchSelector, scope, selector, || {
            whizard_core::enforcement::enforce_match_selector(selector, matcher)
        })
    }

    /// Successful rewrites only are cached (errors are cheap to recompute and carry the
    /// client's text). The key hashes the kind too: a text that is a valid query need not be
    /// a valid `match[]` selector (`up offset 5m`).
    fn rewrite_cached(
        &self,
        kind: Rewrite,
        scope: &str,
        text: &str,
        rewrite: impl FnOnce() -> Result<String, whizard_core::enforcement::EnforceError>,
    ) -> Result<String, whizard_core::enforcement::EnforceError> {
        let mut h = blake3::Hasher::new();
        h.update(&[kind as u8]);
        h.update(&(scope.len() as u64).to_le_bytes());
        h.update(scope.as_bytes());
        h.update(text.as_bytes());
        let key = *h.finalize().as_bytes();
        if let Some(hit) = self.rewrites.get(&key) {
            return Ok(hit.to_string());
        }
        let enforced = rewrite()?;
        self.rewrites.insert(key, Arc::from(enforced.as_str()));
        Ok(enforced)
    }

    /// The tenant matcher of a read scope; `key` is the scope's `a|b` form.
    pub fn matcher(
        &self,
        key: &str,
        tenants: &[String],
    ) -> Result<Arc<whizard_core::enforcement::TenantMatcher>, respond::Refusal> {
        if let Some(m) = self.matchers.get(key) {
            return Ok(m);
        }
        let m = whizard_core::enforcement::TenantMatcher::new(
            self.config.tenancy.label.clone(),
            tenants.iter().cloned(),
        )
        .map(Arc::new)
        .map_err(|e| respond::Refusal::new(403, e.to_string()))?;
        self.matchers.insert(key.to_string(), m.clone());
        Ok(m)
    }
}

/// State shared by every listener and request.
pub struct State {
    /// The current runtime; requests take it through [`State::runtime_here`].
    pub runtime: ArcSwap<Runtime>,
    /// Bumped after each store into `runtime`.
    generation: AtomicU64,
    /// Per thread: the runtime of `generation` as that thread took it last, in an `Arc` of
    /// its own (see [`RuntimeHere`]). Emptied on reload, so that no idle thread keeps an old
    /// runtime (and its background work) alive.
    runtimes_here: Slots<Mutex<Option<(u64, RuntimeHere)>>>,
    pub config_path: PathBuf,
    /// Requests being handled, for graceful shutdown: counted per thread
    /// ([`State::active_requests`] adds them up).
    active: Slots<Arc<Line<AtomicUsize>>>,
    pub throttle: whizard_core::auth::throttle::Throttle,
    /// Runs background work (key refreshes) independent of the listeners.
    background: tokio::runtime::Runtime,
}

/// Counts one request as in flight until dropped (on the count of the thread it started on).
pub struct ActiveRequest(Arc<Line<AtomicUsize>>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The runtime as one thread took it: an `Arc` of that thread's own around the shared one, so
/// that the requests holding it count on a reference count only their thread writes (see
/// `whizard_core::per_thread`). Dereferences to the shared `Arc<Runtime>`.
#[derive(Clone)]
pub struct RuntimeHere(Arc<Line<Arc<Runtime>>>);

impl std::ops::Deref for RuntimeHere {
    type Target = Arc<Runtime>;
    fn deref(&self) -> &Arc<Runtime> {
        &self.0 .0
    }
}

impl State {
    /// The state of a gateway starting with `runtime`, its background work started.
    pub fn new(runtime: Runtime, config_path: &Path) -> Result<State, String> {
        let state = State {
            runtime: ArcSwap::from_pointee(runtime),
            generation: AtomicU64::new(0),
            runtimes_here: Slots::default(),
            config_path: config_path.to_path_buf(),
            active: Slots::default(),
            throttle: Default::default(),
            background: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("whizard-background")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the background runtime: {e}"))?,
        };
        state.start_background(&state.runtime.load());
        Ok(state)
    }

    /// Starts what a new runtime needs in the background (OIDC key refresh, which ends by
    /// itself when the runtime is replaced; the fleet's membership task).
    fn start_background(&self, rt: &Runtime) {
        let _guard = self.background.enter();
        if let Some(oidc) = &rt.oidc {
            oidc.spawn_refresh();
        }
        // The fleet's membership task (once per membership; a reload that keeps it keeps the
        // task); without `cluster` no task publishes and the limits hold per replica.
        match &rt.cluster {
            Some(c) => c.spawn(),
            None => whizard_core::cluster::Cluster::deactivate_all(),
        }
    }

    pub fn active_request(&self) -> ActiveRequest {
        let here = self.active.here();
        here.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(here.clone())
    }

    /// Requests in flight.
    pub fn active_requests(&self) -> usize {
        self.active.iter().map(|c| c.load(Ordering::Acquire)).sum()
    }

    /// The current runtime, for one request on this thread.
    pub fn runtime_here(&self) -> RuntimeHere {
        let generation = self.generation.load(Ordering::Acquire);
        let mut slot = lock(self.runtimes_here.here());
        match &*slot {
            Some((taken, rt)) if *taken == generation => rt.clone(),
            _ => {
                // Loaded after reading `generation`: at least as new as that generation's.
                let rt = RuntimeHere(Arc::new(Line(self.runtime.load_full())));
                *slot = Some((generation, rt.clone()));
                rt
            }
        }
    }

    /// Makes `rt` the current runtime.
    fn store(&self, rt: Runtime) {
        self.runtime.store(Arc::new(rt));
        self.generation.fetch_add(1, Ordering::AcqRel);
        for slot in self.runtimes_here.iter() {
            lock(slot).take();
        }
    }

    /// Loads and validates the config file again; keeps the old runtime on any error.
    pub fn reload(&self) -> Result<(), String> {
        let m = metrics();
        let result = Config::load(&self.config_path)
            .map_err(|e: ConfigErrors| e.to_string())
            .and_then(|c| Runtime::new(c, Some(&self.runtime.load())));
        match result {
            Ok(rt) => {
                self.start_background(&rt);
                self.store(rt);
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
}

pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{Runtime, State};
    use std::sync::Arc;
    use whizard_core::config::Config;

    fn config_text(tenant: &str) -> String {
        format!(
            "listen: {{http: \"127.0.0.1:0\"}}\n\
             upstreams: {{query: \"http://127.0.0.1:9090\", receive: \"http://127.0.0.1:9090/api/v1/write\"}}\n\
             tenants: [{{id: {tenant}}}]\n"
        )
    }

    /// A gateway's state with one tenant, its config file `whizard.yaml` in the directory.
    fn state_of(tenant: &str) -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whizard.yaml");
        std::fs::write(&path, config_text(tenant)).unwrap();
        let config = Config::load(&path).unwrap();
        let state = State::new(Runtime::new(config, None).unwrap(), &path).unwrap();
        (dir, state)
    }

    /// A reload's runtime reaches its upstreams afresh: names resolved under the old config
    /// are not used under the new one.
    #[test]
    fn a_reload_forgets_the_upstream_names_resolved() {
        let (dir, state) = state_of("first");
        // The state holds a runtime of its own, which must not be dropped inside another.
        let run = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = Config::load(&dir.path().join("whizard.yaml")).unwrap();
        let mut up = config.upstreams.query.clone();
        up.address = format!("localhost:{}", up.port);
        up.ip = None;
        let now = std::time::Instant::now();
        let resolved = |state: &State| {
            let rt = state.runtime_here();
            run.block_on(rt.peers.address(&up, now))
        };
        assert!(resolved(&state).is_some());
        let before = state.runtime_here();
        assert_eq!(before.peers.names_resolved_here(), 1);
        state.reload().unwrap();
        let after = state.runtime_here();
        assert_eq!(after.peers.names_resolved_here(), 0);
        assert!(resolved(&state).is_some());
        assert_eq!(after.peers.names_resolved_here(), 1);
    }

    /// Each thread holds the runtime through a reference of its own, takes the new one after
    /// a reload, and no thread keeps the old one alive once its requests are done.
    #[test]
    fn each_thread_takes_the_current_runtime_through_its_own_reference() {
        let (dir, state) = state_of("first");
        let path = dir.path().join("whizard.yaml");
        let tenant = |rt: &Runtime| rt.config.tenants.keys().next().cloned().unwrap_or_default();

        let here = state.runtime_here();
        assert!(Arc::ptr_eq(&here.0, &state.runtime_here().0));
        assert_eq!(tenant(&here), "first");
        let old = Arc::downgrade(&here);
        std::thread::scope(|s| {
            // Another thread that took the runtime and stays, idle, through the reload.
            let (reloaded, wait) = std::sync::mpsc::channel::<()>();
            let (state, tenant) = (&state, &tenant);
            let other = s.spawn(move || {
                let there = state.runtime_here();
                assert!(Arc::ptr_eq(&*there, &*state.runtime_here()));
                let same_runtime = Arc::ptr_eq(&there, &state.runtime.load_full());
                let own_reference = Arc::as_ptr(&there.0) as usize;
                drop(there);
                wait.recv().unwrap();
                (same_runtime, own_reference, tenant(&state.runtime_here()))
            });
            std::fs::write(&path, config_text("second")).unwrap();
            // The other thread has taken its reference by the time it reads the channel.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while state
                .runtimes_here
                .iter()
                .filter(|s| super::lock(s).is_some())
                .count()
                < 2
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the other thread took nothing"
                );
                std::thread::yield_now();
            }
            state.reload().unwrap();
            assert_eq!(tenant(&state.runtime_here()), "second");
            // The request holding the old runtime ends: nothing else holds it.
            drop(here);
            assert!(old.upgrade().is_none(), "a thread keeps the old runtime");
            reloaded.send(()).unwrap();
            let (same_runtime, own_reference, after) = other.join().unwrap();
            assert!(same_runtime);
            assert_ne!(own_reference, Arc::as_ptr(&state.runtime_here().0) as usize);
            assert_eq!(after, "second");
        });
    }

    #[test]
    fn requests_in_flight_are_counted_across_threads() {
        let (_dir, state) = state_of("t");
        let here = state.active_request();
        let there = std::thread::scope(|s| s.spawn(|| state.active_request()).join().unwrap());
        assert_eq!(state.active_requests(), 2);
        // Ended on another thread than the one it started on.
        std::thread::scope(|s| s.spawn(move || drop(here)).join().unwrap());
        assert_eq!(state.active_requests(), 1);
        drop(there);
        assert_eq!(state.active_requests(), 0);
    }
}
