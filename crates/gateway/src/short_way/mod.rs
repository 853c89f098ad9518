//! The short way for GETs (HTTP/1.1, plain or TLS, and HTTP/2 streams): the same hooks,
//! without pingora's proxy engine.
//!
//! pingora's proxy runs every request through a general engine: a boxed future sized for every
//! protocol and cache path (~30 KB, copied into the heap per request), a duplex pair of tasks
//! joined by channels, and an upstream pool whose idle connections each hold a watching task.
//! For a GET without a body none of that is needed, and it is most of the gateway's CPU per
//! read (the bench's floor row shows how little the job itself costs). A GET that the
//! keep-alive loop recognises from its first bytes ([`parse_get`]) is served here instead, by
//! the very same [`ProxyHttp`] hooks of [`Gateway`] — request filter (authentication, tenancy,
//! enforcement, limits), upstream peer, upstream request filter, response filter, failure
//! answer, logging — in one straight sequence, over a lean HTTP/1.1 server session for the
//! client's side ([`h1_server`]), a lean HTTP/1.1 client for the upstream's side
//! ([`h1_client`]) and a per-thread pool of idle upstream connections. Anything else —
//! a body, an upgrade, `Expect`, HTTP/1.0, HEAD, a head not complete in the first read, a
//! target not in origin form — goes to pingora's engine as before. Pipelined GETs are served
//! here in order, each with its own hooks, the next one's bytes kept while one is answered. On
//! HTTP/2, a stream whose request is a GET without a body is served here over pingora's own
//! HTTP/2 session ([`FastGet::serve_h2`]); any other stream goes to the engine.

pub mod cpus;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod h1_client;
mod h1_server;
pub mod keepalive;
mod lean_tcp;
pub mod placement;
mod rewound;

use super::h1_fields::HOP_BY_HOP;
use super::proxy::{Ctx, Gateway};
use async_trait::async_trait;
use bytes::Bytes;
use h1_client::Exchange;
use h1_server::{parse_get, Handback, LeanSession};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::protocols::http::v2::server::HttpSession as H2Stream;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use whizard_core::digest_hash::DigestHashing;
use whizard_core::per_thread::Slots;

/// Idle upstream connections kept per thread and upstream. Every request in flight holds one,
/// and an HTTP/2 client has many in flight on one connection (h2load -c32 -m8: 256): a pool
/// smaller than the peak closes connections only to open them again at once (at 64, a fifth of
/// the gateway's CPU under that load went to connect and close).
const POOL_PER_UPSTREAM: usize = 512;

/// How long an idle upstream connection is kept at most, whatever the peer's idle timeout
/// says: the oldest ones are let go when a connection is put back after them.
const POOL_IDLE_MAX: Duration = Duration::from_secs(60);

/// Idle upstream connections by peer hash, each with the time it became idle, newest last.
type IdlePool = HashMap<u64, Vec<(Stream, Instant)>, DigestHashing>;

thread_local! {
    /// Idle upstream connections of this thread, by peer, newest last. A worker thread runs its
    /// own runtime (see `server.work_stealing`), so a connection is taken back by the thread
    /// that released it, without a lock; with work stealing a task may resume on another
    /// thread and simply uses that thread's pool.
    /// Keyed by the peer's hash, which is hashed no further.
    static IDLE: RefCell<IdlePool> = RefCell::new(HashMap::default());
}

/// The newest idle connection to the peer of `key` that has been idle less than `max_idle`
/// at `now` and is still quiet.
fn take_idle(key: u64, max_idle: Duration, now: Instant) -> Option<Stream> {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&key)?;
        while let Some((mut stream, since)) = idle.pop() {
            if now.saturating_duration_since(since) < max_idle && quiet(&mut stream) {
                return Some(stream);
            }
        }
        None
    })
}

/// Whether an idle upstream connection has nothing to read: no close and no bytes the upstream
/// sent unasked (say a 408 before closing), which would otherwise be read as the answer to
/// the next request. One poll, no waiting; the runtime knows the socket's readiness, so a
/// quiet connection costs no system call.
fn quiet(stream: &mut Stream) -> bool {
    use tokio::io::AsyncRead;
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(stream)
        .poll_read(&mut cx, &mut buf)
        .is_pending()
}

/// Keeps `stream` as idle since `now`: the start of the request it served (which saves a
/// clock read per request; a connection is then taken for idle a little longer than it is,
/// so it is let go early rather than late).
fn put_idle(key: u64, stream: Stream, now: Instant) {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(key).or_default();
        // Connections are taken newest first, so after a burst the oldest wait at the front;
        // they go once stale (and the oldest when the pool is full: the one most likely to
        // have been closed by the upstream).
        let stale = idle
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= POOL_IDLE_MAX)
            .count();
        let over = (idle.len() + 1).saturating_sub(POOL_PER_UPSTREAM);
        idle.drain(..stale.max(over));
        idle.push((stream, now));
    });
}

pub struct FastGet {
    gateway: Gateway,
    connector: TransportConnector,
    /// The downstream modules, built per thread: each request's session takes a reference on
    /// their shared index, which would otherwise be one count written by every thread
    /// (`whizard_core::per_thread`).
    modules: Slots<OnceLock<HttpModules>>,
}

impl FastGet {
    pub fn new(gateway: Gateway, conf: &ServerConf) -> Self {
        FastGet {
            gateway,
            connector: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            modules: Slots::default(),
        }
    }

    /// This thread's downstream modules.
    fn modules(&self) -> &HttpModules {
        self.modules.here().get_or_init(|| {
            let mut modules = HttpModules::new();
            self.gateway.init_downstream_modules(&mut modules);
            modules
        })
    }

    /// Sends the filtered request upstream and the answer back, like pingora's engine does for
    /// a request without a body.
    async fn proxy(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<()> {
        let gw = &self.gateway;
        let kept = gw.upstream_peer(session, ctx).await?;
        let (peer, pool_key) = (&kept.peer, kept.pool_key);
        let mut req = upstream_request(session.req_header(), ctx.forwarded_fields())?;
        gw.upstream_request_filter(session, &mut req, ctx).await?;

        let (mut upstream, reused) = self.connect(peer, pool_key, ctx.started()).await?;
        let client = &mut session.downstream_session;
        let first = unless_client_leaves(client, exchange_head(&mut upstream, &req)).await;
        let (mut upstream, mut header) = match first {
            Ok(header) => (upstream, header),
            // A pooled connection the upstream closed while it was idle: the GET is sent again
            // on a new connection, as pingora retries a failed reused connection. Not after a
            // timeout (the upstream may be working on it) nor after an answer that does not
            // parse (an upstream speaking garbage gets no second request). The request is made again by the
            // same filter from the same enforced target (cheaper than keeping a copy of every
            // request for this rare case).
            Err(e)
                if reused
                    && matches!(
                        e.etype(),
                        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
                    ) =>
            {
                drop(upstream);
                // Boxed: rare, and inline its state would enlarge every request's future.
                Box::pin(self.again_on_a_new_connection(session, ctx, peer)).await?
            }
            Err(e) => return Err(e),
        };
        let mut end = upstream.is_body_done();
        // An answer without a length would end the client's connection: chunked instead, as
        // pingora's engine does.
        if !end
            && !matches!(header.status.as_u16(), 204 | 304)
            && header
                .headers
                .get(http::header::TRANSFER_ENCODING)
                .is_none()
            && header.headers.get(http::header::CONTENT_LENGTH).is_none()
        {
            header.set_version(http::Version::HTTP_11);
            header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        gw.response_filter(session, &mut header, ctx).await?;
        session
            .write_response_header(Box::new(header), end)
            .await
            .map_err(|e| e.into_down())?;
        while !end {
            let next = async { upstream.read_body().await.map_err(|e| e.into_up()) };
            let body = unless_client_leaves(&mut session.downstream_session, next).await?;
            end = upstream.is_body_done() || body.is_none();
            session
                .write_response_body(body, end)
                .await
                .map_err(|e| e.into_down())?;
        }
        if let Some(stream) = upstream.into_reusable() {
            put_idle(pool_key, stream, ctx.started());
        }
        Ok(())
    }

    /// The request of `session` made again and sent on a new connection to `peer`: the
    /// exchange and the answer's head.
    async fn again_on_a_new_connection(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        peer: &HttpPeer,
    ) -> pingora::Result<(Exchange, ResponseHeader)> {
        let gw = &self.gateway;
        let mut req = upstream_request(session.req_header(), ctx.forwarded_fields())?;
        gw.upstream_request_filter(session, &mut req, ctx).await?;
        let mut fresh = self.new_exchange(peer).await?;
        let client = &mut session.downstream_session;
        let header = unless_client_leaves(client, exchange_head(&mut fresh, &req)).await?;
        Ok((fresh, header))
    }

    /// An exchange over an idle pooled connection to `peer` (`true`) or a new one; `pool_key`:
    /// the peer's `Peer::reuse_hash` (hashed once per kept peer: it hashes the whole peer);
    /// `now`: the request's start, for the idle connections' age.
    async fn connect(
        &self,
        peer: &HttpPeer,
        pool_key: u64,
        now: Instant,
    ) -> pingora::Result<(Exchange, bool)> {
        let max_idle = peer.options.idle_timeout.unwrap_or(Duration::from_secs(60));
        match take_idle(pool_key, max_idle, now) {
            Some(stream) => Ok((exchange(stream, peer), true)),
            None => Ok((self.new_exchange(peer).await?, false)),
        }
    }

    async fn new_exchange(&self, peer: &HttpPeer) -> pingora::Result<Exchange> {
        // Boxed: a connect (with its TLS handshake) is an ~8 KB future, and rare once the pool
        // is warm; inline it would be copied with every request's future.
        let stream = Box::pin(self.connector.new_stream(peer))
            .await
            .map_err(|e| e.into_up())?;
        Ok(exchange(lean_tcp::registered_here(stream), peer))
    }
}

/// An exchange on `stream` with the peer's read and write timeouts.
fn exchange(stream: Stream, peer: &HttpPeer) -> Exchange {
    Exchange::new(
        stream,
        peer.options.read_timeout,
        peer.options.write_timeout,
    )
}

/// Runs `work` (an upstream step) unless the client hangs up first: then the upstream request
/// is abandoned (its connection closed) and the request ends as the client's doing (logged
/// 499), as in pingora's engine. The idle read is pingora's own: it consumes nothing a
/// well-behaved client sent.
async fn unless_client_leaves<T>(
    client: &mut pingora::protocols::http::ServerSession,
    work: impl std::future::Future<Output = pingora::Result<T>>,
) -> pingora::Result<T> {
    tokio::select! {
        biased;
        done = work => done,
        left = client.read_body_or_idle(true) => match left {
            Err(e) => Err(e.into_down()),
            Ok(_) => Error::e_explain(ErrorType::ConnectionClosed, "the client sent data while waiting")
                .map_err(|e| e.into_down()),
        },
    }
}

/// Writes the request head and reads the answer's head, with room for what the short way and
/// the response filter add ([`ADDED_ANSWER`]), so that neither grows the map.
async fn exchange_head(
    upstream: &mut Exchange,
    req: &RequestHeader,
) -> pingora::Result<ResponseHeader> {
    upstream.send(req).await.map_err(|e| e.into_up())?;
    upstream
        .receive(ADDED_ANSWER)
        .await
        .map_err(|e| e.into_up())
}

/// Fields the upstream request filter may add (tenant header, host), besides the client's.
const ADDED_UPSTREAM: usize = 2;

/// Fields the short way and the response filter may add to an answer (transfer-encoding,
/// request id); the server session writes its `Date` and `Connection` outside the map.
const ADDED_ANSWER: usize = 2;

/// The request sent upstream, before the upstream request filter: the client's method, target
/// and the end-to-end fields among `forwarded` (hop-by-hop ones and those the client nominated
/// in `Connection` stay behind). `forwarded` is the route's contract, which the upstream
/// request filter enforces anyway; fields outside it are not copied only to be removed there.
/// Built at once in a map with room for what the filter adds: pingora sizes a parsed map
/// exactly, so a copy of it would grow (rehash and copy) on the first added field, and keeps a
/// second map of the client's spelling of every name, which the upstream does not need (names
/// go in their canonical spelling).
fn upstream_request(
    client: &RequestHeader,
    forwarded: &[http::HeaderName],
) -> pingora::Result<RequestHeader> {
    let nominated = super::h1_fields::connection_nominated(&client.headers);
    let mut headers = http::HeaderMap::with_capacity(client.headers.len() + ADDED_UPSTREAM);
    for (name, value) in &client.headers {
        if forwarded.contains(name) && !HOP_BY_HOP.contains(name) && !nominated.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = client.method.clone();
    parts.uri = client.uri.clone();
    // The upstream is spoken to in HTTP/1.1 whatever the client spoke (HTTP/2 included).
    parts.version = http::Version::HTTP_11;
    parts.headers = headers;
    let mut req = RequestHeader::from(parts);
    if let Some(raw) = verbatim_target(client) {
        req.set_raw_path(raw)?;
    }
    Ok(req)
}

/// The request target as it came, when the URI does not reproduce it (not origin-form, not
/// UTF-8): a header rebuilt from the URI would otherwise lose it.
fn verbatim_target(header: &RequestHeader) -> Option<&[u8]> {
    let raw = header.raw_path();
    (header.uri.path_and_query().map(|p| p.as_str().as_bytes()) != Some(raw)).then_some(raw)
}

#[async_trait]
impl keepalive::Shortcut for FastGet {
    fn request(&self, head: &Bytes) -> Option<(RequestHeader, usize)> {
        if !self.gateway.short_way_enabled() {
            return None;
        }
        parse_get(head)
    }

    /// Serves `req` (parsed from `head`), as pingora's `process_new_http` would; the
    /// connection comes back for the next request unless it must close.
    async fn serve(
        &self,
        stream: Stream,
        head: Bytes,
        pipelined: Bytes,
        req: RequestHeader,
        keep_alive: bool,
    ) -> Option<(Stream, Bytes)> {
        let handback = Handback::default();
        let lean = LeanSession::new(stream, head, pipelined, req, keep_alive, handback.clone());
        let mut session = self.session(Box::new(ServerSession::new_custom(Box::new(lean))));
        let reuse = self.run(&mut session).await;
        let lean = session.downstream_session.as_custom_mut()?;
        if !reuse {
            // Sends what is pending (an answer cut short shows as such) and closes.
            lean.abandon("the request failed").await;
            return None;
        }
        lean.finish().await.ok()?;
        handback.take()
    }

    /// A GET without a body, on HTTP/2 as on HTTP/1.1: the answer comes from an HTTP/1.1
    /// upstream either way.
    fn takes_h2(&self, stream: &H2Stream) -> bool {
        self.gateway.short_way_enabled()
            && stream.req_header().method == http::Method::GET
            && stream.is_body_done()
    }

    async fn serve_h2(&self, stream: Box<ServerSession>) {
        let mut session = self.session(stream);
        if self.run(&mut session).await {
            // Ends the stream if the answer did not (an empty DATA frame); a failed request's
            // stream is reset when the session drops, as in pingora's engine. The HTTP/2
            // session's own (synchronous) finish: the general one's future is sized for
            // HTTP/1 and would make this one, boxed per request, kilobytes larger.
            if let ServerSession::H2(stream) = &mut *session.downstream_session {
                let _ = stream.finish();
            }
        }
    }
}

impl FastGet {
    /// pingora's `Session` around the client's side of one request.
    fn session(&self, downstream: Box<ServerSession>) -> Session {
        // pingora makes its `Session` only around an HTTP/1 session of a stream; the given one
        // takes that session's place before anything reads it (its box with it: no copy).
        let mut session = Session::new_h1_with_modules(placeholder(), self.modules());
        session.downstream_session = downstream;
        session
    }

    /// Runs the hooks on the request of `session` and proxies it: whether the client's
    /// connection (HTTP/1.1) or stream (HTTP/2) may be finished normally.
    async fn run(&self, session: &mut Session) -> bool {
        whizard_core::metrics::metrics().short_way_request();
        let gw = &self.gateway;
        let mut ctx = gw.new_ctx();
        let outcome = match gw.request_filter(session, &mut ctx).await {
            Ok(true) => Ok(()),
            Ok(false) => self.proxy(session, &mut ctx).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                gw.logging(session, None, &mut ctx).await;
                true
            }
            Err(e) => {
                let failed = gw.fail_to_proxy(session, &e, &mut ctx).await;
                gw.logging(session, Some(&e), &mut ctx).await;
                session.downstream_session.on_proxy_failure(e);
                failed.can_reuse_downstream
            }
        }
        // `ctx` ends here: the request (its limits and in-flight count) ends before the
        // connection waits for the next one.
    }
}

/// The hooks of [`Gateway`]'s `ProxyHttp` implementation, each of which the short way runs in
/// pingora's order for a request without a body: request filter, then (when it did not answer)
/// upstream peer, upstream request filter, response filter; on failure the failure answer;
/// logging last; `new_ctx` and `init_downstream_modules` at the start. The test
/// `every_engine_hook_is_a_short_way_step` holds both sides to this list: a hook added to the
/// implementation fails it until the short way runs it too.
#[cfg(test)]
pub(super) const STEPS: [&str; 8] = [
    "init_downstream_modules",
    "new_ctx",
    "request_filter",
    "upstream_peer",
    "upstream_request_filter",
    "response_filter",
    "fail_to_proxy",
    "logging",
];

/// A stream that is never read or written: pingora's `Session` is made around one, then
/// given the lean session instead.
fn placeholder() -> Stream {
    Box::new(std::io::Cursor::new(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::{upstream_request, RequestHeader, ADDED_UPSTREAM, STEPS};
    use crate::contract;

    /// The names of the functions defined in the block of `source` that starts with `opening`
    /// and ends at the next line that is `}`.
    fn functions_of(source: &str, opening: &str) -> Vec<String> {
        let block = source
            .split_once(opening)
            .map(|(_, rest)| rest.split("\n}\n").next().unwrap_or(rest))
            .unwrap_or_default();
        block
            .lines()
            .filter_map(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("async ").unwrap_or(l);
                let name = l.strip_prefix("fn ")?;
                Some(name.split(['(', '<']).next()?.to_string())
            })
            .collect()
    }

    #[test]
    fn every_engine_hook_is_a_short_way_step() {
        let engine = functions_of(include_str!("../proxy.rs"), "impl ProxyHttp for Gateway {");
        let mut hooks = engine.clone();
        hooks.sort();
        let mut steps: Vec<String> = STEPS.iter().map(|s| s.to_string()).collect();
        steps.sort();
        assert_eq!(
            hooks, steps,
            "the engine's hooks and the short way's steps differ: run the new hook in the \
             short way (short_way/mod.rs) and list it in STEPS"
        );
        // And the short way calls each of them.
        let own = include_str!("mod.rs");
        for step in STEPS {
            let called =
                own.contains(&format!("gw.{step}(")) || own.contains(&format!("gateway.{step}("));
            assert!(called, "the short way does not run {step}");
        }
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_stay_behind() {
        let mut req = RequestHeader::build("GET", b"/api/v1/query", None).unwrap();
        for (name, value) in [
            ("Connection", "keep-alive, X-Private"),
            ("Keep-Alive", "timeout=5"),
            ("X-Private", "secret"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Accept", "application/json"),
            ("X-Request-Id", "abc"),
            ("Accept", "text/plain"),
        ] {
            req.append_header(name, value).unwrap();
        }
        // Even a contract that named them would not pass hop-by-hop or nominated fields on.
        let every: Vec<http::HeaderName> = req.headers.keys().cloned().collect();
        let up = upstream_request(&req, &every).unwrap();
        let mut left: Vec<(&str, &str)> = up
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ("accept", "application/json"),
                ("accept", "text/plain"),
                ("x-request-id", "abc")
            ]
        );
        assert_eq!((&up.method, up.version), (&req.method, req.version));
        assert_eq!(up.raw_path(), b"/api/v1/query");

        let mut plain = RequestHeader::build("GET", b"/x?a=1", None).unwrap();
        plain.append_header("Accept", "*/*").unwrap();
        let up = upstream_request(&plain, &contract::READ).unwrap();
        assert_eq!(up.headers.len(), 1);
        assert_eq!(up.raw_path(), b"/x?a=1");
    }

    #[test]
    fn only_the_contracts_fields_are_copied() {
        let mut req = RequestHeader::build("GET", b"/api/v1/query?query=up", None).unwrap();
        for (name, value) in [
            ("Host", "gw"),
            ("Authorization", "Basic YTpi"),
            ("THANOS-TENANT", "team-b"),
            ("Cookie", "whizard_session=x"),
            ("User-Agent", "grafana"),
            ("Accept", "application/json"),
        ] {
            req.append_header(name, value).unwrap();
        }
        let up = upstream_request(&req, &contract::READ).unwrap();
        let mut left: Vec<&str> = up.headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "user-agent"]);
    }

    #[test]
    fn the_upstream_request_has_room_for_the_filter_and_keeps_odd_targets() {
        let mut req = RequestHeader::build("GET", b"/q", Some(2)).unwrap();
        req.append_header("Host", "gw").unwrap();
        req.append_header("Authorization", "Basic YTpi").unwrap();
        let up = upstream_request(&req, &contract::READ).unwrap();
        assert!(up.headers.capacity() >= req.headers.len() + ADDED_UPSTREAM);

        // An absolute-form target is not reproduced by the URI: its bytes go as they came.
        let absolute = RequestHeader::build("GET", b"http://gw/api/v1/labels", None).unwrap();
        let up = upstream_request(&absolute, &contract::READ).unwrap();
        assert_eq!(up.raw_path(), b"http://gw/api/v1/labels");
    }
}
