//! How the gateway reaches its upstreams, said once: timeouts, idle pooling and TLS from
//! `upstreams.*`, applied alike to pingora's peers (the engine and the short way, which carry
//! reads) and to the HTTP client that carries what the gateway reads whole first (writes,
//! rules, alerts, silences, POSTed queries).

use super::tls;
use pingora::upstreams::peer::{HttpPeer, Peer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use whizard_core::config::{Config, Upstream};
use whizard_core::per_thread::Slots;
use whizard_core::sync::lock;

/// An idle upstream connection is kept this long, by either kind of connection pool.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections the HTTP client keeps per upstream host.
const CLIENT_IDLE_PER_HOST: usize = 256;

/// The HTTP client for every upstream of `config`: its timeouts, pooling and `upstreams.tls`.
pub fn client(config: &Config) -> Result<reqwest::Client, String> {
    let up = &config.upstreams;
    tls::upstream_client_builder(up.tls.as_ref())?
        .connect_timeout(up.connect_timeout)
        .timeout(up.timeout)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(CLIENT_IDLE_PER_HOST)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the upstream client: {e}"))
}

/// pingora's peer for `upstream` at `addr`, with the same timeouts, pooling and TLS as
/// [`client`].
pub fn peer(config: &Config, upstream: &Upstream, addr: SocketAddr) -> pingora::Result<HttpPeer> {
    let up = &config.upstreams;
    let mut peer = HttpPeer::new(addr, upstream.tls, upstream.host.clone());
    if upstream.tls {
        tls::configure_peer(&mut peer, up.tls.as_ref())?;
    }
    peer.options.connection_timeout = Some(up.connect_timeout);
    peer.options.read_timeout = Some(up.timeout);
    peer.options.write_timeout = Some(up.timeout);
    peer.options.idle_timeout = Some(IDLE_TIMEOUT);
    Ok(peer)
}

/// A peer as the proxy uses it: pingora's [`HttpPeer`] and its key in the connection pools.
pub struct KeptPeer {
    pub peer: HttpPeer,
    /// `peer.reuse_hash()`, which hashes the whole peer.
    pub pool_key: u64,
}

/// How one runtime reaches its upstreams, kept per thread: the addresses of upstreams named
/// by host, and pingora's peers, made once per address instead of per request.
///
/// An `HttpPeer` is large (its options alone are hundreds of bytes): made, boxed, hashed for
/// the pool and dropped per request, it cost ~1,100 of a plain GET's ~37,900 instructions
/// (callgrind). A name resolved through a cache every thread shares had that cache's read log
/// written by every thread on every request. Each thread keeps its own of both, so that taking
/// one writes only memory no other thread writes (`whizard_core::per_thread`). A reload makes
/// a new runtime, and with it new peers with the new timeouts and TLS, and names resolved anew.
#[derive(Default)]
pub struct Peers {
    here: Slots<Mutex<Vec<PeerAt>>>,
    resolved_here: Slots<Mutex<Vec<Resolved>>>,
}

/// A thread's peer of one upstream at one address.
struct PeerAt {
    upstream: &'static str,
    addr: SocketAddr,
    peer: Arc<KeptPeer>,
}

/// Peers a thread keeps at most: one per upstream and address. More means DNS answers that
/// keep changing; the thread then starts over.
const PEERS_PER_THREAD: usize = 16;

/// An upstream's `host:port` as a thread resolved it, and until when it is used.
struct Resolved {
    address: String,
    addr: SocketAddr,
    until: Instant,
}

/// How long a resolved upstream address is used before the name is resolved again.
pub const RESOLVED_FOR: Duration = Duration::from_secs(30);
/// Names a thread keeps resolved at most: a runtime has few upstreams.
const RESOLVED_PER_THREAD: usize = 64;

impl Peers {
    /// The socket address of `up` at `now`: its IP address, or its name as this thread
    /// resolved it less than [`RESOLVED_FOR`] ago (resolved again after that). `None`: the
    /// name does not resolve.
    pub async fn address(&self, up: &Upstream, now: Instant) -> Option<SocketAddr> {
        if let Some(ip) = up.ip {
            return Some(SocketAddr::new(ip, up.port));
        }
        {
            let mut resolved = lock(self.resolved_here.here());
            resolved.retain(|r| r.until > now);
            if let Some(r) = resolved.iter().find(|r| r.address == up.address) {
                return Some(r.addr);
            }
        }
        // Not under the lock: another request of this thread may resolve meanwhile.
        let addr = tokio::net::lookup_host(&up.address).await.ok()?.next()?;
        let mut resolved = lock(self.resolved_here.here());
        if resolved.len() >= RESOLVED_PER_THREAD {
            resolved.clear();
        }
        resolved.retain(|r| r.address != up.address);
        resolved.push(Resolved {
            address: up.address.clone(),
            addr,
            until: now + RESOLVED_FOR,
        });
        Some(addr)
    }

    /// How many names this thread holds resolved (for tests).
    #[cfg(test)]
    pub fn names_resolved_here(&self) -> usize {
        lock(self.resolved_here.here()).len()
    }

    /// This thread's peer of the upstream named `name` at `addr`, made by `make` the first time.
    pub fn at(
        &self,
        name: &'static str,
        addr: SocketAddr,
        make: impl FnOnce() -> pingora::Result<HttpPeer>,
    ) -> pingora::Result<Arc<KeptPeer>> {
        let mut kept = lock(self.here.here());
        if let Some(at) = kept.iter().find(|p| p.upstream == name && p.addr == addr) {
            return Ok(at.peer.clone());
        }
        let peer = make()?;
        let made = Arc::new(KeptPeer {
            pool_key: peer.reuse_hash(),
            peer,
        });
        if kept.len() >= PEERS_PER_THREAD {
            kept.clear();
        }
        kept.push(PeerAt {
            upstream: name,
            addr,
            peer: made.clone(),
        });
        Ok(made)
    }
}

/// The URL of `upstream` for the HTTP client: its scheme, address and path prefix.
pub fn url(upstream: &Upstream) -> String {
    format!(
        "{}://{}{}",
        if upstream.tls { "https" } else { "http" },
        upstream.address,
        upstream.path
    )
}

#[cfg(test)]
mod tests {
    use super::{Peers, PEERS_PER_THREAD, RESOLVED_FOR};
    use pingora::upstreams::peer::{HttpPeer, Peer};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;
    use whizard_core::config::Upstream;

    /// The upstream `http://{host}:9090`, as the config would hold it.
    fn upstream(host: &str) -> Upstream {
        Upstream {
            tls: false,
            host: host.into(),
            port: 9090,
            address: format!("{host}:9090"),
            ip: host.parse().ok(),
            host_header: http::HeaderValue::from_str(&format!("{host}:9090")).unwrap(),
            path: String::new(),
            url: format!("http://{host}:9090"),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_thread_makes_a_peer_once_per_upstream_and_address() {
        let peers = Peers::default();
        let made = AtomicUsize::new(0);
        let make = |port: u16| {
            made.fetch_add(1, Ordering::Relaxed);
            Ok(HttpPeer::new(addr(port), false, "thanos".into()))
        };
        let first = peers.at("query", addr(9090), || make(9090)).unwrap();
        let again = peers.at("query", addr(9090), || make(9090)).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(made.load(Ordering::Relaxed), 1);
        assert_eq!(first.pool_key, first.peer.reuse_hash());

        // A new address (DNS answered differently) and another upstream get peers of their own.
        let moved = peers.at("query", addr(9091), || make(9091)).unwrap();
        assert_eq!(moved.peer.address().to_string(), "127.0.0.1:9091");
        let other = peers.at("receive", addr(9090), || make(9090)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(made.load(Ordering::Relaxed), 3);

        // Another thread makes its own: no reference count shared between threads.
        let theirs = std::thread::scope(|s| {
            s.spawn(|| peers.at("query", addr(9090), || make(9090)).unwrap())
                .join()
                .unwrap()
        });
        assert!(!Arc::ptr_eq(&first, &theirs));

        // A failure to make one is the request's error, and nothing is kept.
        let failed = peers.at("query", addr(1), || {
            pingora::Error::e_explain(pingora::ErrorType::InternalError, "no TLS trust")
        });
        assert!(failed.is_err());
        peers.at("query", addr(1), || make(1)).unwrap();
    }

    /// A named upstream is resolved once per thread and period: the next requests take the
    /// thread's answer until it is due, and another thread resolves on its own.
    #[tokio::test(flavor = "current_thread")]
    async fn a_thread_resolves_an_upstream_name_once_per_period() {
        let peers = Peers::default();
        let named = upstream("localhost");
        let kept = |peers: &Peers| {
            super::lock(peers.resolved_here.here())
                .iter()
                .map(|r| (r.address.clone(), r.until))
                .collect::<Vec<_>>()
        };

        let start = Instant::now();
        let addr = peers
            .address(&named, start)
            .await
            .expect("localhost resolves");
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 9090);
        let first = kept(&peers);
        assert_eq!(first, [(named.address.clone(), start + RESOLVED_FOR)]);
        // Within the period the thread's answer is used as it is.
        let later = start + RESOLVED_FOR / 2;
        assert_eq!(peers.address(&named, later).await, Some(addr));
        assert_eq!(kept(&peers), first);
        // Once due, the name is resolved again, and kept once.
        let due = start + RESOLVED_FOR;
        assert_eq!(peers.address(&named, due).await, Some(addr));
        assert_eq!(kept(&peers), [(named.address.clone(), due + RESOLVED_FOR)]);
        // Another thread has answers of its own.
        std::thread::scope(|s| {
            s.spawn(|| assert!(kept(&peers).is_empty())).join().unwrap();
        });
        // An IP address is never resolved nor kept.
        let ip = upstream("127.0.0.1");
        assert_eq!(
            peers
                .address(&ip, start)
                .await
                .map(|a| a.to_string())
                .as_deref(),
            Some("127.0.0.1:9090")
        );
        assert_eq!(kept(&peers).len(), 1);
    }

    #[test]
    fn addresses_that_keep_changing_do_not_grow_a_thread_s_peers() {
        let peers = Peers::default();
        for port in 0..(3 * PEERS_PER_THREAD as u16) {
            peers
                .at("query", addr(port), || {
                    Ok(HttpPeer::new(addr(port), false, "thanos".into()))
                })
                .unwrap();
        }
        let kept = super::lock(peers.here.here()).len();
        assert!((1..=PEERS_PER_THREAD).contains(&kept), "{kept} kept");
    }
}
