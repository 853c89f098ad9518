//! Client connections from accept to close: where they are served (`placement.rs`), the TLS
//! handshake of the HTTPS listener, the HTTP/1 keep-alive loop and the HTTP/2 accept loop.
//!
//! pingora starts a request's processing (a boxed future sized for the whole proxy state
//! machine, ~30 KB, plus header buffers) before the request's first byte arrives, so every idle
//! keep-alive connection holds one: ~43 KB per connection, 400+ MiB at 10,000 idle clients.
//! [`LeanKeepAlive`] runs the HTTP/1 connection loop itself and waits for the next request's
//! first bytes with a future of a few hundred bytes and no read buffer, in a task of its own;
//! only then does it hand the request to pingora. Behaviour is pingora's own loop (keep-alive
//! 60 s, request limit, reuse of the persistent settings). Bytes the shortcut does not take are
//! put back in front of the stream for pingora to read: into the plain connection's own buffer
//! ([`LeanTcp`]), or over TLS into a wrapper ([`Rewound`]). Pipelined requests (bytes after a
//! head the shortcut took, or read while it was answered) are parsed before the socket is read
//! again, a head cut between two reads completed from the socket first.
//!
//! HTTP/2 over TLS runs pingora's accept loop here too ([`LeanKeepAlive::serve_h2`]), with two
//! differences: each stream is served on the connection's own thread (pingora hands each to a
//! random thread's runtime, so every stream's frames cross threads, with a wake-up each way),
//! and a stream the shortcut takes (a GET without a body) is served by it. h2c, custom
//! protocols and an HTTP/2 idle timeout go to pingora unchanged.

use super::h1_server::head_incomplete;
use super::lean_tcp::{registered_here, LeanTcp};
use super::placement::Workers;
use super::rewound::Rewound;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::http::RequestHeader;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::v2::server::{self as h2_server, H2Accept, HttpSession as H2Stream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Digest, GetSocketDigest, Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::Sleep;

/// pingora's idle timeout between requests on a keep-alive connection.
const KEEPALIVE: Duration = Duration::from_secs(60);

pub struct LeanKeepAlive<A> {
    app: Arc<A>,
    shortcut: Box<dyn Shortcut>,
    workers: Workers,
    /// The HTTPS listener, whose TLS handshakes run here (pingora sees a plain TCP listener).
    tls: Option<TlsListener>,
}

/// An HTTPS listener: its address, to tell its connections from the plain listener's, and the
/// TLS acceptor (certificates, client verification, ALPN) that pingora's TLS listener would use.
pub struct TlsListener {
    pub addr: std::net::SocketAddr,
    pub acceptor: Acceptor,
}

/// How long a client has for its TLS handshake: pingora's own bound.
const HANDSHAKE: Duration = Duration::from_secs(60);

impl<A> LeanKeepAlive<A> {
    /// `shortcut` serves the plain-TCP requests it recognises from their first bytes.
    pub fn new(app: A, shortcut: Box<dyn Shortcut>) -> Self {
        LeanKeepAlive {
            app: Arc::new(app),
            shortcut,
            workers: Workers::default(),
            tls: None,
        }
    }

    /// Pins each worker thread, as it is first handed a connection, to the next of `cpus`
    /// (`server.pin_workers`, see `cpus.rs`).
    pub fn with_pinned_workers(mut self, cpus: Vec<usize>) -> Self {
        self.workers = Workers::pinned(cpus);
        self
    }

    /// Runs the TLS of the HTTPS listener at `tls.addr` (added to pingora as a plain TCP
    /// listener), so that its connections are placed like plain ones (see `placement.rs`).
    pub fn with_tls(mut self, tls: TlsListener) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A cheaper way to serve some HTTP/1 requests than `app`'s (see `short_way/mod.rs`).
#[async_trait]
pub trait Shortcut: Send + Sync + 'static {
    /// The request that `head` (the first read of a request) starts with, if
    /// [`Shortcut::serve`] serves it, and the length of its head: bytes after it are the
    /// client's next requests (pipelined).
    fn request(&self, head: &Bytes) -> Option<(RequestHeader, usize)>;
    /// Serves `req`, parsed from `head`; `pipelined`: the bytes that came after the head.
    /// `keep_alive`: whether the server lets the connection carry another request. The
    /// connection comes back unless it must close, with the bytes of the client's next
    /// requests read so far.
    async fn serve(
        &self,
        stream: Stream,
        head: Bytes,
        pipelined: Bytes,
        req: RequestHeader,
        keep_alive: bool,
    ) -> Option<(Stream, Bytes)>;
    /// Whether [`Shortcut::serve_h2`] serves the request of this HTTP/2 stream.
    fn takes_h2(&self, stream: &H2Stream) -> bool;
    /// Serves the request of one HTTP/2 stream, as pingora's `process_new_http` would.
    async fn serve_h2(&self, session: Box<ServerSession>);
}

/// Rejected (malformed) streams an HTTP/2 connection may open before it is closed: pingora's
/// own budget, which its public accept call does not keep across calls.
const MAX_REJECTED_STREAMS: usize = 32;

/// The first read of each request: at most pingora's initial request-head buffer, so pingora
/// gets the whole head from one `recv`.
const FIRST_READ: usize = 4096;

/// A stream the first bytes of a request can be put back into, for pingora to read.
trait PutBack: AsyncRead + Unpin {
    fn put_back(&mut self, bytes: &[u8]);
}

impl PutBack for LeanTcp {
    fn put_back(&mut self, bytes: &[u8]) {
        self.rewind(bytes);
    }
}

impl PutBack for Rewound {
    fn put_back(&mut self, bytes: &[u8]) {
        self.rewind(bytes);
    }
}

/// Reads the next request's first bytes: the shortcut's request, or else put back for pingora
/// to read. The read buffer exists only while `poll` runs, so a connection waiting here holds
/// no buffer at all: on a plain connection it is the only read buffer (the listener's l4 read
/// buffer is off). Ready with the byte count (0: the client closed the connection) and the
/// shortcut's request, if it takes it.
struct FirstBytes<'a, S>(&'a mut S, Option<&'a dyn Shortcut>);

/// A request the shortcut takes: its head's bytes, the bytes read after them (the client's
/// next requests) and the header parsed from the head.
type Taken = (Bytes, Bytes, RequestHeader);

impl<S: PutBack> Future for FirstBytes<'_, S> {
    type Output = io::Result<(usize, Option<Taken>)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut head = [MaybeUninit::<u8>::uninit(); FIRST_READ];
        let mut buf = ReadBuf::uninit(&mut head);
        ready!(Pin::new(&mut *self.0).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n > 0 {
            if let Some(shortcut) = self.1 {
                let read = Bytes::copy_from_slice(buf.filled());
                if let Ok(taken) = take(shortcut, read) {
                    return Poll::Ready(Ok((n, Some(taken))));
                }
            }
        }
        self.0.put_back(buf.filled());
        Poll::Ready(Ok((n, None)))
    }
}

/// The request `read` starts with, if the shortcut takes it; else `read` back.
#[inline]
fn take(shortcut: &dyn Shortcut, read: Bytes) -> Result<Taken, Bytes> {
    let Some((req, len)) = shortcut.request(&read) else {
        return Err(read);
    };
    if len == read.len() {
        // Nothing pipelined, the usual case: the bytes move on as they are.
        return Ok((read, Bytes::new(), req));
    }
    let after = read.slice(len..);
    let mut head = read;
    head.truncate(len);
    Ok((head, after, req))
}

/// Waits until the client sends the next request's first bytes; `None`: the client closed the
/// connection, the read failed, or it stayed idle past the keep-alive timeout (`idle`, the
/// connection's timer: see [`within_keepalive`]). Idle connections left at shutdown are closed
/// with the server, as pingora's own would be. With the request, if the shortcut (when there
/// is one) takes it. `pipelined`: bytes of the client's next requests read while the previous
/// one was answered, which come first.
async fn next_request(
    stream: Stream,
    shortcut: Option<&dyn Shortcut>,
    mut pipelined: Bytes,
    idle: Pin<&mut Sleep>,
) -> Option<(Stream, Option<Taken>)> {
    if !pipelined.is_empty() {
        // A whole request the shortcut takes, the usual case of a pipelining client: at once.
        if let Some(shortcut) = shortcut {
            pipelined = match take(shortcut, pipelined) {
                Ok(taken) => return Some((stream, Some(taken))),
                Err(back) => back,
            };
        }
        // Boxed: rare, and inline its state would enlarge every idle connection's future.
        return Box::pin(pipelined_request(stream, shortcut, pipelined)).await;
    }
    if stream.as_any().is::<LeanTcp>() {
        let mut plain = stream.into_any().downcast::<LeanTcp>().ok()?;
        return match within_keepalive(idle, FirstBytes(&mut *plain, shortcut)).await {
            Some(Ok((n, taken))) if n > 0 => Some((plain, taken)),
            _ => None,
        };
    }
    // TLS (or a plain connection left as pingora's l4 stream): the bytes the shortcut leaves
    // are put back into a wrapper around the stream, which stays on for the connection's life
    // (one allocation per connection, not per request).
    let mut tls = match Rewound::of(stream) {
        Ok(tls) => tls,
        // Bytes put back earlier and not yet read: pingora's, at once.
        Err(stream) => return Some((stream, None)),
    };
    match within_keepalive(idle, FirstBytes(&mut *tls, shortcut)).await {
        Some(Ok((n, taken))) if n > 0 => Some((tls, taken)),
        _ => None,
    }
}

/// `wait`'s output, or `None` once it has taken `KEEPALIVE` from now. `idle` is the
/// connection's one timer, kept registered for the connection's life and moved only when it
/// fires early (it then points at an earlier wait's end): a new timer per wait cost a timer
/// wheel insert and removal per request, and, whenever the thread had parked with no timer
/// pending, a wake-up write to the runtime's eventfd (0.3 per request under load).
async fn within_keepalive<F: Future>(mut idle: Pin<&mut Sleep>, wait: F) -> Option<F::Output> {
    let deadline = tokio::time::Instant::now() + KEEPALIVE;
    let mut wait = std::pin::pin!(wait);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = wait.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        while idle.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            idle.as_mut().reset(deadline);
        }
        Poll::Pending
    })
    .await
}

/// The next request from bytes the client pipelined: the shortcut's when they hold a whole
/// request it takes (the head's end read from the socket when only its start came with the
/// previous request), else put back for pingora to read.
async fn pipelined_request(
    mut stream: Stream,
    shortcut: Option<&dyn Shortcut>,
    mut pipelined: Bytes,
) -> Option<(Stream, Option<Taken>)> {
    if let Some(shortcut) = shortcut {
        // One bound for the whole head, however the client dribbles it.
        let deadline = tokio::time::Instant::now() + KEEPALIVE;
        loop {
            pipelined = match take(shortcut, pipelined) {
                Ok(taken) => return Some((stream, Some(taken))),
                Err(back) => back,
            };
            // A whole head the shortcut does not take, a long one or no head: pingora's.
            if !head_incomplete(&pipelined) || pipelined.len() >= FIRST_READ {
                break;
            }
            // Room for the rest of a first read: a read fills at most the spare capacity.
            let mut more = BytesMut::with_capacity(FIRST_READ);
            more.extend_from_slice(&pipelined);
            let read = stream.read_buf(&mut more);
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(n)) if n > 0 => pipelined = more.freeze(),
                // Closed or failed mid-head: pingora answers what came.
                _ => break,
            }
        }
    }
    Some((put_back(stream, &pipelined), None))
}

/// `stream` with `bytes` put back in front of whatever it holds, to be read first.
fn put_back(stream: Stream, bytes: &[u8]) -> Stream {
    if stream.as_any().is::<LeanTcp>() {
        if let Ok(mut plain) = stream.into_any().downcast::<LeanTcp>() {
            plain.rewind(bytes);
            return plain;
        }
        unreachable!("checked to be a LeanTcp above");
    }
    Rewound::put_back(stream, bytes)
}

impl<A> LeanKeepAlive<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// The connection's keep-alive state and remaining request budget for its next request.
    fn prepare(
        &self,
        session: &mut ServerSession,
        persistent: Option<HttpPersistentSettings>,
        shutdown: &ShutdownWatch,
    ) {
        match persistent {
            Some(settings) => HttpPersistentSettings::apply_to_session(settings, session),
            None => {
                session.set_keepalive(Some(KEEPALIVE.as_secs()));
                let limit = self
                    .app
                    .server_options()
                    .and_then(|o| o.keepalive_request_limit);
                session.set_keepalive_reuses_remaining(limit);
            }
        }
        // Finish this request, then close, when the server is going away.
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
    }

    /// pingora's HTTP/1 connection loop, waiting for each request outside pingora's state.
    async fn serve_http1(self: Arc<Self>, mut stream: Stream, shutdown: ShutdownWatch) {
        // The shortcut keeps no per-connection request count: with a request limit set, every
        // request goes to pingora, which counts them.
        let shortcut = self
            .app
            .server_options()
            .is_none_or(|o| o.keepalive_request_limit.is_none())
            .then_some(&*self.shortcut);
        let mut persistent = None;
        let mut pipelined = Bytes::new();
        // The keep-alive timer, one for the connection (see `within_keepalive`).
        let mut idle = std::pin::pin!(tokio::time::sleep(KEEPALIVE));
        loop {
            let waiting = std::mem::take(&mut pipelined);
            let next = next_request(stream, shortcut, waiting, idle.as_mut()).await;
            let Some((arrived, taken)) = next else {
                return;
            };
            // The shortcut's (boxed) future is made in this statement, so the parsed head moves
            // into it at once rather than keeping room in this future, which every idle
            // connection holds (~350 bytes each).
            let short = match (shortcut, taken) {
                // Finish this request, then close, when the server is going away. Between
                // requests the keep-alive timeout is the loop's own (`KEEPALIVE`).
                (Some(shortcut), Some((head, after, req))) => {
                    Ok(shortcut.serve(arrived, head, after, req, !*shutdown.borrow()))
                }
                _ => Err(arrived),
            };
            match short {
                Ok(serving) => {
                    persistent = None;
                    match serving.await {
                        Some((next, after)) => (stream, pipelined) = (next, after),
                        None => return,
                    }
                }
                Err(arrived) => {
                    let mut session = ServerSession::new_http1(arrived);
                    self.prepare(&mut session, persistent.take(), &shutdown);
                    let Some(reused) = self.app.process_new_http(session, &shutdown).await else {
                        return;
                    };
                    let (next, settings) = reused.consume();
                    stream = next;
                    persistent = settings;
                }
            }
        }
    }
}

impl<A> LeanKeepAlive<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// The acceptor of the HTTPS listener, if `stream` came in on it: by the address the
    /// connection reached, the port alone when the listener binds every address (0.0.0.0, ::).
    fn tls_of(&self, stream: &Stream) -> Option<&Acceptor> {
        let tls = self.tls.as_ref()?;
        let local = stream
            .get_socket_digest()?
            .local_addr()?
            .as_inet()
            .copied()?;
        let listened = tls.addr;
        let same_ip = listened.ip().is_unspecified() || local.ip() == listened.ip();
        (local.port() == listened.port() && same_ip).then_some(&tls.acceptor)
    }

    /// The TLS handshake of a connection of the HTTPS listener, then the connection.
    async fn serve_tls(self: Arc<Self>, stream: Stream, shutdown: ShutdownWatch) {
        let Some(acceptor) = self.tls_of(&stream) else {
            return;
        };
        // Boxed: the handshake's state is not kept for the connection's life.
        if let Some(stream) = Box::pin(handshake(acceptor, stream)).await {
            self.serve(stream, shutdown).await;
        }
    }

    /// Serves an established connection (TLS done) by its protocol, as pingora would.
    async fn serve(self: Arc<Self>, stream: Stream, shutdown: ShutdownWatch) {
        let options = self.app.server_options();
        let alpn = stream.selected_alpn_proto();
        if matches!(alpn, Some(ALPN::H2)) && options.is_none_or(|o| o.h2_idle_timeout.is_none()) {
            return Box::pin(self.serve_h2(stream, shutdown)).await;
        }
        let other = options.is_some_and(|o| o.h2c || o.force_custom)
            || matches!(alpn, Some(ALPN::H2 | ALPN::Custom(_)));
        if other {
            let _ = ServerApp::process_new(&self.app, stream, &shutdown).await;
            return;
        }
        self.serve_http1(stream, shutdown).await
    }

    /// pingora's HTTP/2 accept loop (graceful GOAWAY at shutdown, a bound on rejected streams),
    /// each stream served in a task on this thread: by the shortcut when it takes the request,
    /// else by pingora's `process_new_http`.
    async fn serve_h2(self: Arc<Self>, stream: Stream, mut shutdown: ShutdownWatch) {
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let Ok(mut conn) = h2_server::handshake(stream, self.app.h2_options()).await else {
            return;
        };
        let mut draining = false;
        let mut rejected = 0;
        // The engine's streams get clones of `seen`, which also tells (without waiting) whether
        // the shutdown was signalled; `shutdown` is waited on by one `changed` future for the
        // whole connection (a new one per accepted stream registered and removed a waiter each
        // time: ~300 instructions per request).
        let seen = shutdown.clone();
        let mut signalled = std::pin::pin!(shutdown.changed());
        // Each stream's task holds the app through this connection's own reference: the
        // app's count is written by every thread, this one only by the connection's.
        let app = Arc::new(self);
        loop {
            // A signal is seen even under a stream of requests, when accepting never waits
            // (the sender gone counts as a signal, as it ends `changed` too).
            if !draining && seen.has_changed().unwrap_or(true) {
                conn.graceful_shutdown();
                draining = true;
            }
            let accepted = if draining {
                H2Stream::from_h2_conn(&mut conn, digest.clone()).await
            } else {
                tokio::select! {
                    // Accepting first: the signal's future is polled (and its waiter checked)
                    // only when there is nothing to accept. Accepting is cancel-safe and starts
                    // again next time round; once the signal has fired, `draining` keeps its
                    // future from being polled again.
                    biased;
                    accepted = H2Stream::from_h2_conn(&mut conn, digest.clone()) => accepted,
                    _ = &mut signalled => {
                        conn.graceful_shutdown();
                        draining = true;
                        continue;
                    }
                }
            };
            match accepted {
                Ok(Some(H2Accept::Session(stream))) => {
                    let this = app.clone();
                    if this.shortcut.takes_h2(&stream) {
                        // Boxed before the task is made: the task's future is then a few
                        // words instead of the stream's ~700 bytes, which tokio moves whole
                        // into the task and again when it ends.
                        let session = Box::new(ServerSession::new_http2(stream));
                        tokio::spawn(async move { this.shortcut.serve_h2(session).await });
                    } else {
                        let shutdown = seen.clone();
                        tokio::spawn(async move {
                            let session = ServerSession::new_http2(stream);
                            this.app.process_new_http(session, &shutdown).await;
                        });
                    }
                }
                Ok(Some(H2Accept::Rejected)) => {
                    rejected += 1;
                    if rejected >= MAX_REJECTED_STREAMS {
                        log::warn!(
                            "closing an HTTP/2 connection after {rejected} malformed requests"
                        );
                        return;
                    }
                }
                // The client closed the connection (or broke the protocol): nothing to tell it.
                Ok(None) | Err(_) => return,
            }
        }
    }
}

#[async_trait]
impl<A> ServerApp for LeanKeepAlive<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // A new connection of a plain TCP listener (the HTTPS one included, whose TLS runs
        // here): served on the worker serving the fewest connections, its socket registered
        // with that worker's reactor (`placement.rs`), in a task of a few hundred bytes —
        // pingora's connection task is sized for its TLS handshake (~18 KB) and would live as
        // long as the connection.
        if stream.as_any().is::<L4Stream>() {
            let (this, shutdown) = (self.clone(), shutdown.clone());
            // Every idle plain connection holds this future: the TLS side (a handshake, an
            // HTTP/2 connection: kilobytes) is boxed, so only TLS connections pay for it.
            let serve = async move {
                let stream = registered_here(stream);
                if this.tls_of(&stream).is_some() {
                    Box::pin(this.serve_tls(stream, shutdown)).await
                } else {
                    this.serve_http1(stream, shutdown).await
                }
            };
            match self.workers.place() {
                Some((runtime, live)) => runtime.spawn(async move {
                    let _live = live;
                    serve.await
                }),
                None => tokio::spawn(serve),
            };
            return None;
        }
        // Every listener of the service is plain TCP (the HTTPS one included); any other kind of
        // stream is served where pingora placed it, by its protocol.
        self.clone().serve(stream, shutdown.clone()).await;
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

/// The TLS handshake of a client of the HTTPS listener, within pingora's time bound; `None`
/// when it fails (logged as pingora logs it).
async fn handshake(acceptor: &Acceptor, stream: Stream) -> Option<Stream> {
    // Placed as a `LeanTcp` (an l4 stream when that failed); the acceptor takes an l4 stream.
    let plain = match stream.into_any().downcast::<LeanTcp>() {
        Ok(lean) => Box::new(lean.into_l4()),
        Err(other) => other.downcast::<L4Stream>().ok()?,
    };
    let peer = plain
        .get_socket_digest()
        .and_then(|d| d.peer_addr().cloned());
    match tokio::time::timeout(HANDSHAKE, acceptor.tls_handshake(*plain)).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err(e)) => {
            log::error!("Downstream handshake error from {peer:?}: {e}");
            None
        }
        Err(_) => {
            log::error!("Downstream handshake timeout from {peer:?}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{within_keepalive, KEEPALIVE};
    use std::time::Duration;
    use tokio::time::Instant;

    /// Each wait gets the whole keep-alive timeout from its own start, though the connection's
    /// one timer was set for an earlier wait.
    #[tokio::test(start_paused = true)]
    async fn each_wait_gets_the_whole_timeout_from_its_start() {
        let mut idle = std::pin::pin!(tokio::time::sleep(KEEPALIVE));
        // A first wait that ends after 50 s: its answer, not a timeout.
        let first = within_keepalive(idle.as_mut(), async {
            tokio::time::sleep(Duration::from_secs(50)).await;
            7
        });
        assert_eq!(first.await, Some(7));

        // A second wait that never ends: not over when the timer first fires (60 s after the
        // connection started), over 60 s after the wait began.
        let started = Instant::now();
        let second = within_keepalive(idle.as_mut(), std::future::pending::<()>()).await;
        assert_eq!(second, None);
        assert_eq!(started.elapsed(), KEEPALIVE);
    }

    /// A wait that ends in time after the timer has fired and moved still gives its answer; an
    /// idle connection is let go after the timeout, not before.
    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_with_its_answer_or_at_the_timeout() {
        let mut idle = std::pin::pin!(tokio::time::sleep(KEEPALIVE));
        tokio::time::sleep(Duration::from_secs(90)).await;
        // The timer fired during "a request" (nothing polled it): the next wait is not cut
        // short by it.
        let answer = within_keepalive(idle.as_mut(), async {
            tokio::time::sleep(KEEPALIVE - Duration::from_millis(1)).await;
            "request"
        });
        assert_eq!(answer.await, Some("request"));
        let started = Instant::now();
        assert_eq!(
            within_keepalive(idle.as_mut(), std::future::pending::<()>()).await,
            None
        );
        assert_eq!(started.elapsed(), KEEPALIVE);
    }
}
