//! A fleet of gateways (`cluster`, DESIGN.md "A fleet of gateways"): how many replicas are
//! live, so that every per-tenant limit is shared among them.
//!
//! Every `refresh` a background task finds the replicas (`cluster.peers`, or the A/AAAA records
//! of `cluster.dns`, resolved each round), sends each one `GET /-/ready` on its metrics
//! listener (plain HTTP/1.1, a short timeout) and publishes the number that answered 200 in an
//! atomic that the limiters read on every request (one relaxed load, no lock). A listed address
//! that is this replica's own metrics listener counts as live without a probe: this process is
//! serving. The count is never below 1: a replica that sees nobody, itself included, enforces
//! every limit in full alone (and says so in its log) — never "unlimited".
//!
//! One membership task runs per process: a reload that keeps `cluster` (and `listen.metrics`)
//! keeps the task and its count; one that changes it starts a new task, and the old one ends
//! at its next round without publishing anything.

use crate::config::{Cluster as ClusterConfig, Discovery, HostPort};
use crate::metrics::metrics;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The id of the membership task allowed to publish; any other one ends.
static ACTIVE: AtomicU64 = AtomicU64::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The membership of this replica's fleet, built from `cluster`.
#[derive(Debug)]
pub struct Cluster {
    id: u64,
    config: ClusterConfig,
    /// `listen.metrics`: a listed peer at this address is this process.
    own: Option<SocketAddr>,
    /// Live replicas (>= 1), read by the limiters.
    live: Arc<AtomicU32>,
    started: AtomicBool,
}

impl Cluster {
    /// A membership for `config`. Until its first round ends, the count is `previous_live`
    /// (the count of the config this one replaces) or, for a static list, every peer — the
    /// cautious guess: a fleet that is starting up does not admit more than the limit.
    pub fn new(
        config: &ClusterConfig,
        own: Option<SocketAddr>,
        previous_live: Option<u32>,
    ) -> Cluster {
        let initial = previous_live.unwrap_or(match &config.discovery {
            Discovery::Peers(p) => p.len() as u32,
            Discovery::Dns(_) => 1,
        });
        Cluster {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config: config.clone(),
            own,
            live: Arc::new(AtomicU32::new(initial.max(1))),
            started: AtomicBool::new(false),
        }
    }

    /// Whether this membership was built from the same settings (a reload keeps it then).
    pub fn same(&self, config: &ClusterConfig, own: Option<SocketAddr>) -> bool {
        self.config == *config && self.own == own
    }

    /// The live count the limiters share (always >= 1).
    pub fn live_handle(&self) -> Arc<AtomicU32> {
        self.live.clone()
    }

    pub fn live(&self) -> u32 {
        self.live.load(Ordering::Relaxed).max(1)
    }

    /// Starts the membership task on the current tokio runtime (once; later calls do nothing)
    /// and makes it the one that publishes.
    pub fn spawn(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        ACTIVE.store(self.id, Ordering::Release);
        let this = self.clone();
        tokio::spawn(async move { this.run().await });
    }

    /// No membership task publishes any more (a config without `cluster`); the metric goes.
    pub fn deactivate_all() {
        ACTIVE.store(0, Ordering::Release);
        metrics().cluster_peers.reset();
    }

    fn active(&self) -> bool {
        ACTIVE.load(Ordering::Acquire) == self.id
    }

    async fn run(self: Arc<Self>) {
        let timeout = probe_timeout(self.config.refresh);
        let mut last: Option<(u32, u32)> = None;
        let mut next = tokio::time::Instant::now();
        loop {
            if !self.active() {
                return;
            }
            let round = self.round(timeout).await;
            if !self.active() {
                return;
            }
            self.publish(&round, &mut last);
            next += self.config.refresh;
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            tokio::time::sleep_until(next).await;
        }
    }

    /// One round: find the replicas, probe them all at once.
    async fn round(&self, timeout: Duration) -> Round {
        let targets = discover(&self.config.discovery, timeout).await;
        let mut round = Round {
            live: 0,
            down: 0,
            resolve_error: targets.error,
        };
        let mut probes = tokio::task::JoinSet::new();
        for t in targets.targets {
            match t {
                Some(addr) if is_own(addr, self.own) => round.live += 1,
                Some(addr) => {
                    probes.spawn(probe(addr, timeout));
                }
                None => round.down += 1,
            }
        }
        while let Some(r) = probes.join_next().await {
            if r.unwrap_or(false) {
                round.live += 1;
            } else {
                round.down += 1;
            }
        }
        round
    }

    fn publish(&self, round: &Round, last: &mut Option<(u32, u32)>) {
        let live = round.live.max(1);
        self.live.store(live, Ordering::Relaxed);
        let m = &metrics().cluster_peers;
        m.with_label_values(&["live"]).set(round.live as i64);
        m.with_label_values(&["down"]).set(round.down as i64);
        let now = (round.live, round.down);
        if *last == Some(now) {
            return;
        }
        *last = Some(now);
        if let Some(e) = &round.resolve_error {
            tracing::warn!(error = %e, "cluster: cannot resolve the replicas");
        }
        if round.live == 0 {
            tracing::warn!(
                down = round.down,
                "cluster: no replica answered /-/ready, this one included (is its metrics \
                 listener listed?); enforcing every limit in full on this replica alone"
            );
        } else if round.live == 1 && round.down > 0 {
            tracing::warn!(
                down = round.down,
                "cluster: no other replica answered /-/ready; enforcing every limit in full on \
                 this replica alone"
            );
        } else {
            tracing::info!(
                live = round.live,
                down = round.down,
                "cluster: membership changed; every per-tenant limit is now shared by {live} \
                 replica(s)"
            );
        }
    }
}

/// What one round found.
#[derive(Debug)]
struct Round {
    live: u32,
    down: u32,
    resolve_error: Option<String>,
}

/// The replicas of a round: one entry per replica, `None` for a peer whose name did not
/// resolve (it counts as down).
struct Targets {
    targets: Vec<Option<SocketAddr>>,
    error: Option<String>,
}

/// `cluster.dns`: every resolved address (duplicates removed) is a replica. `cluster.peers`:
/// each entry is one replica (a name's first address).
async fn discover(d: &Discovery, timeout: Duration) -> Targets {
    match d {
        Discovery::Dns(hp) => match resolve(hp, timeout).await {
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                Targets {
                    targets: addrs.into_iter().map(Some).collect(),
                    error: None,
                }
            }
            Err(e) => Targets {
                targets: Vec::new(),
                error: Some(format!("{hp}: {e}")),
            },
        },
        Discovery::Peers(peers) => {
            let mut targets = Vec::with_capacity(peers.len());
            let mut error = None;
            for hp in peers {
                match resolve(hp, timeout).await {
                    Ok(a) => targets.push(a.first().copied()),
                    Err(e) => {
                        error.get_or_insert_with(|| format!("{hp}: {e}"));
                        targets.push(None)
                    }
                }
            }
            Targets { targets, error }
        }
    }
}

async fn resolve(hp: &HostPort, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = hp.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, hp.port)]);
    }
    match tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((hp.host.as_str(), hp.port)),
    )
    .await
    {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// How long a probe (or a name lookup) may take: half a round, between 100 ms and 2 s, so a
/// replica that stopped answering is noticed within one round plus this.
pub fn probe_timeout(refresh: Duration) -> Duration {
    (refresh / 2).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// Whether `addr` is this process's metrics listener `own`: the same port, and the same
/// address — or, for a listener on 0.0.0.0/::, an address of this machine (one a socket can
/// be bound to).
fn is_own(addr: SocketAddr, own: Option<SocketAddr>) -> bool {
    let Some(own) = own else { return false };
    if addr.port() != own.port() {
        return false;
    }
    if own.ip().is_unspecified() {
        std::net::UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
    } else {
        addr.ip() == own.ip()
    }
}

/// `GET /-/ready` on a replica's metrics listener: true for a 200 within `timeout`.
async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let _ = s.set_nodelay(true);
        let req = format!(
            "GET /-/ready HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: whizard-cluster\r\n\
             Connection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 32];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.ok()?;
            if r == 0 {
                break;
            }
            n += r;
        }
        Some(status_is_200(&buf[..n]))
    };
    matches!(
        tokio::time::timeout(timeout, exchange).await,
        Ok(Some(true))
    )
}

fn status_is_200(head: &[u8]) -> bool {
    head.len() >= 12
        && (head.starts_with(b"HTTP/1.1 ") || head.starts_with(b"HTTP/1.0 "))
        && &head[9..12] == b"200"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_address() {
        let own: SocketAddr = "127.0.0.1:9091".parse().unwrap();
        assert!(is_own(own, Some(own)));
        assert!(!is_own("127.0.0.1:9092".parse().unwrap(), Some(own)));
        assert!(!is_own("127.0.0.2:9091".parse().unwrap(), Some(own)));
        assert!(!is_own(own, None));
        let any: SocketAddr = "0.0.0.0:9091".parse().unwrap();
        assert!(is_own("127.0.0.1:9091".parse().unwrap(), Some(any)));
        // TEST-NET-3: not an address of this machine.
        assert!(!is_own("203.0.113.7:9091".parse().unwrap(), Some(any)));
    }

    #[test]
    fn status_line() {
        assert!(status_is_200(b"HTTP/1.1 200 OK\r\n"));
        assert!(!status_is_200(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!status_is_200(b"HTTP/1.1 20"));
        assert!(!status_is_200(b"SSH-2.0-OpenSSH_9.2p1\r\n"));
    }

    #[test]
    fn probe_timeouts() {
        assert_eq!(
            probe_timeout(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(
            probe_timeout(Duration::from_secs(5)),
            Duration::from_secs(2)
        );
        assert_eq!(
            probe_timeout(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }

    #[tokio::test]
    async fn a_round_counts_answering_replicas_and_itself() {
        // Two listeners answering 200, one 503, one closed port; the own address is not probed.
        async fn serve(status: &'static str) -> SocketAddr {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                }
            });
            a
        }
        let ok1 = serve("200 OK").await;
        let ok2 = serve("200 OK").await;
        let bad = serve("503 Service Unavailable").await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let own: SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let peers = [ok1, ok2, bad, closed, own]
            .iter()
            .map(|a| HostPort::parse(&a.to_string()).unwrap())
            .collect();
        let c = Cluster::new(
            &ClusterConfig {
                discovery: Discovery::Peers(peers),
                refresh: Duration::from_secs(1),
            },
            Some(own),
            None,
        );
        assert_eq!(c.live(), 5, "every listed peer until the first round");
        let r = c.round(Duration::from_millis(500)).await;
        assert_eq!((r.live, r.down), (3, 2), "{r:?}");
    }
}
