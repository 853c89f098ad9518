//! The short way for plain HTTP/1.1 GETs: the same hooks, without pingora's proxy engine.
//!
//! pingora's proxy runs every request through a general engine: a boxed future sized for every
//! protocol and cache path (~30 KB, copied into the heap per request), a duplex pair of tasks
//! joined by channels, and an upstream pool whose idle connections each hold a watching task.
//! For a GET without a body none of that is needed, and it is most of the gateway's CPU per
//! read (the bench's floor row shows how little the job itself costs). A GET that the
//! keep-alive loop recognises from its first bytes ([`takes`]) is served here instead, by the
//! very same [`ProxyHttp`] hooks of [`Gateway`] — request filter (authentication, tenancy,
//! enforcement, limits), upstream peer, upstream request filter, response filter, failure
//! answer, logging — in one straight sequence, over pingora's own HTTP/1 server and client
//! sessions (which parse and frame both sides), with a per-thread pool of idle upstream
//! connections. Anything else — a body, an upgrade, `Expect`, HTTP/1.0, HEAD, a head not
//! complete in the first read, pipelined bytes — goes to pingora's engine as before.

use super::proxy::{Ctx, Gateway};
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::modules::http::HttpModules;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::HttpTask;
use pingora::protocols::Stream;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Whether a request whose first read is `head` is a GET the short way serves: a complete
/// HTTP/1.1 head and nothing after it, no body, no upgrade, no `Expect`. Pure; the keep-alive
/// loop asks before pingora sees the request, since a request pingora has started cannot be
/// handed over.
pub fn takes(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(head) else {
        return false;
    };
    if len != head.len() || req.method != Some("GET") || req.version != Some(1) {
        return false;
    }
    req.headers.iter().all(|h| {
        let name = h.name.as_bytes();
        !(name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"http2-settings"))
    })
}

/// Idle upstream connections kept per thread and upstream.
const POOL_PER_UPSTREAM: usize = 64;

thread_local! {
    /// Idle upstream connections of this thread, by peer, newest last. A worker thread runs its
    /// own runtime (see `server.work_stealing`), so a connection is taken back by the thread
    /// that released it, without a lock; with work stealing a task may resume on another
    /// thread and simply uses that thread's pool.
    static IDLE: RefCell<HashMap<u64, Vec<(Stream, Instant)>>> = RefCell::new(HashMap::new());
}

fn take_idle(key: u64, max_idle: Duration) -> Option<Stream> {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&key)?;
        while let Some((mut stream, since)) = idle.pop() {
            if since.elapsed() < max_idle && quiet(&mut stream) {
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

fn put_idle(key: u64, stream: Stream) {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(key).or_default();
        if idle.len() >= POOL_PER_UPSTREAM {
            // The oldest is the most likely to have been closed by the upstream.
            idle.remove(0);
        }
        idle.push((stream, Instant::now()));
    });
}

pub struct FastGet {
    gateway: Gateway,
    connector: TransportConnector,
    modules: HttpModules,
}

impl FastGet {
    pub fn new(gateway: Gateway, conf: &ServerConf) -> Self {
        FastGet {
            gateway,
            connector: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            modules: HttpModules::new(),
        }
    }

    /// Sends the filtered request upstream and the answer back, like pingora's engine does for
    /// a request without a body.
    async fn proxy(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<()> {
        let gw = &self.gateway;
        let peer = gw.upstream_peer(session, ctx).await?;
        let mut req = session.req_header().clone();
        strip_hop_by_hop(&mut req);
        gw.upstream_request_filter(session, &mut req, ctx).await?;

        let (mut upstream, reused) = self.connect(&peer).await?;
        // Kept for a second attempt only when the connection came from the pool.
        let again = reused.then(|| req.clone());
        let client = &mut session.downstream_session;
        let first = unless_client_leaves(client, exchange_head(&mut upstream, req)).await;
        let (mut upstream, mut header) = match (first, again) {
            (Ok(header), _) => (upstream, header),
            // A pooled connection the upstream closed while it was idle: the GET is sent again
            // on a new connection, as pingora retries a failed reused connection. Not after a
            // timeout: the upstream may be working on it.
            (Err(e), Some(req))
                if !matches!(
                    e.etype(),
                    ErrorType::ReadTimedout | ErrorType::WriteTimedout
                ) =>
            {
                let mut fresh = self.new_session(&peer).await?;
                let header = unless_client_leaves(client, exchange_head(&mut fresh, req)).await?;
                (fresh, header)
            }
            (Err(e), _) => return Err(e),
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
            .write_response_header(header, end)
            .await
            .map_err(|e| e.into_down())?;
        while !end {
            let next = async { upstream.read_body_bytes().await.map_err(|e| e.into_up()) };
            let body = unless_client_leaves(&mut session.downstream_session, next).await?;
            end = upstream.is_body_done() || body.is_none();
            session
                .write_response_body(body, end)
                .await
                .map_err(|e| e.into_down())?;
        }
        upstream.respect_keepalive();
        if let Some(stream) = upstream.reuse().await {
            put_idle(peer.reuse_hash(), stream);
        }
        Ok(())
    }

    /// An idle pooled connection to `peer` (`true`) or a new one.
    async fn connect(&self, peer: &HttpPeer) -> pingora::Result<(UpstreamSession, bool)> {
        let max_idle = peer.options.idle_timeout.unwrap_or(Duration::from_secs(60));
        match take_idle(peer.reuse_hash(), max_idle) {
            Some(stream) => Ok((UpstreamSession::new_with_options(stream, peer), true)),
            None => Ok((self.new_session(peer).await?, false)),
        }
    }

    async fn new_session(&self, peer: &HttpPeer) -> pingora::Result<UpstreamSession> {
        // Boxed: a connect (with its TLS handshake) is an ~8 KB future, and rare once the pool
        // is warm; inline it would be copied with every request's future.
        let stream = Box::pin(self.connector.new_stream(peer))
            .await
            .map_err(|e| e.into_up())?;
        Ok(UpstreamSession::new_with_options(stream, peer))
    }
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

/// Writes the request head and reads the response head (skipping informational answers).
async fn exchange_head(
    upstream: &mut UpstreamSession,
    req: pingora::http::RequestHeader,
) -> pingora::Result<Box<pingora::http::ResponseHeader>> {
    upstream
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| e.into_up())?;
    loop {
        match upstream
            .read_response_task()
            .await
            .map_err(|e| e.into_up())?
        {
            // A GET asks for no upgrade: a 101 is refused, as pingora's engine refuses it.
            HttpTask::Header(h, _) if h.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "unasked 101 upstream")
                    .map_err(|e| e.into_up())
            }
            HttpTask::Header(h, _) if h.status.is_informational() => continue,
            HttpTask::Header(h, _) => return Ok(h),
            _ => {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "no upstream response")
                    .map_err(|e| e.into_up())
            }
        }
    }
}

/// The hop-by-hop fields a request must not carry upstream (RFC 9110 §7.6.1), as pingora's
/// engine strips them. `takes` already refused `Upgrade`, `Transfer-Encoding` and
/// `HTTP2-Settings`.
fn strip_hop_by_hop(req: &mut pingora::http::RequestHeader) {
    const HOP_BY_HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
    ];
    // One pass over the names finds them; a request pays a removal only for those it has.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in req.headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| name == h) {
            present[i] = true;
        }
    }
    if present[0] {
        // Fields the client nominated in `Connection` are hop-by-hop too.
        let nominated: Vec<http::HeaderName> = req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in nominated {
            req.remove_header(&name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        req.remove_header(*name);
    }
}

#[async_trait]
impl super::keepalive::Shortcut for FastGet {
    fn takes(&self, head: &[u8]) -> bool {
        takes(head)
    }

    /// The session for a connection's next request, as pingora's engine would make it.
    fn session(&self, stream: Stream) -> Session {
        Session::new_h1_with_modules(stream, &self.modules)
    }

    /// Serves one request of `session`, as pingora's `process_new_http` would; the connection
    /// comes back for the next request unless it must close.
    async fn serve(&self, mut session: Session) -> Option<ReusedHttpStream> {
        let gw = &self.gateway;
        match session.downstream_session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = session.downstream_session.respond_error(400).await;
                }
                session.downstream_session.shutdown().await;
                return None;
            }
        }
        let mut ctx = gw.new_ctx();
        let outcome = match gw.request_filter(&mut session, &mut ctx).await {
            Ok(true) => Ok(()),
            Ok(false) => self.proxy(&mut session, &mut ctx).await,
            Err(e) => Err(e),
        };
        let reuse = match outcome {
            Ok(()) => {
                gw.logging(&mut session, None, &mut ctx).await;
                true
            }
            Err(e) => {
                let failed = gw.fail_to_proxy(&mut session, &e, &mut ctx).await;
                gw.logging(&mut session, Some(&e), &mut ctx).await;
                session.downstream_session.on_proxy_failure(e);
                failed.can_reuse_downstream
            }
        };
        // Ends the request (and its limits and in-flight count) before the connection waits.
        drop(ctx);
        if !reuse {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session.downstream_session);
        // Boxed: finishing is a ~4 KB future that would otherwise be copied with every
        // request's future; one small allocation is cheaper.
        let finish = Box::pin(session.downstream_session.finish());
        let reusable = finish.await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::{strip_hop_by_hop, takes};

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_stay_behind() {
        let mut req = pingora::http::RequestHeader::build("GET", b"/api/v1/query", None).unwrap();
        for (name, value) in [
            ("Connection", "keep-alive, X-Private"),
            ("Keep-Alive", "timeout=5"),
            ("X-Private", "secret"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Accept", "application/json"),
            ("X-Request-Id", "abc"),
        ] {
            req.append_header(name, value).unwrap();
        }
        strip_hop_by_hop(&mut req);
        let mut left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-request-id"]);

        let mut plain = pingora::http::RequestHeader::build("GET", b"/x", None).unwrap();
        plain.append_header("Accept", "*/*").unwrap();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.headers.len(), 1);
    }

    #[test]
    fn takes_only_complete_bodiless_http11_gets() {
        let get =
            b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTpi\r\n\r\n";
        assert!(takes(get));
        let refused: &[&[u8]] = &[
            b"GET /x HTTP/1.1\r\nHost: x\r\n",      // head not complete yet
            b"GET /x HTTP/1.0\r\nHost: x\r\n\r\n",  // HTTP/1.0
            b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n", // not GET
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
            b"GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", // a body length, even 0
            b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\n\r\n", // pipelined
            b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n", // malformed: pingora answers
            b"",
        ];
        for head in refused {
            assert!(!takes(head), "{}", String::from_utf8_lossy(head));
        }
    }
}
