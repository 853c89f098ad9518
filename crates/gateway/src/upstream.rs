//! How the gateway reaches its upstreams, said once: timeouts, idle pooling and TLS from
//! `upstreams.*`, applied alike to pingora's peers (the engine and the short way, which carry
//! reads) and to the HTTP client that carries what the gateway reads whole first (writes,
//! rules, alerts, silences, POSTed queries).

use super::tls;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;
use whizard_core::config::{Config, Upstream};

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

/// The URL of `upstream` for the HTTP client: its scheme, address and path prefix.
pub fn url(upstream: &Upstream) -> String {
    format!(
        "{}://{}{}",
        if upstream.tls { "https" } else { "http" },
        upstream.address,
        upstream.path
    )
}
