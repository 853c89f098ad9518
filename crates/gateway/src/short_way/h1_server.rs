//! The short way's client side: one bodiless HTTP/1.1 GET and its answer, as a pingora custom
//! server session; the client's pipelined requests wait for it.
//!
//! pingora's HTTP/1 server session is general (request bodies, upgrades, pipelining, 1xx,
//! retry buffers) and, per request, allocates its buffers, parses the head again after the
//! keep-alive loop already has, keeps a second map of every field name's spelling, and adds
//! its `Date` and `Connection` fields through that map: about 20k instructions, the largest
//! part of a short-way read. The short way only takes a complete GET without a body that
//! arrived in one read ([`parse_get`]), so what is left is small: the head parsed once from
//! that read's bytes (values share them), one answer written with pingora's framing rules
//! (204/304 empty, chunked when the answer says so, else its `Content-Length`, else until
//! close) and the connection handed back when the answer allowed it ([`Handback`]), with the
//! bytes the client sent after the request (pipelining: a GET has no body, so they are its
//! next requests) to be read before the socket. Being a pingora custom session, it gives the
//! gateway's hooks the same `Session` as before.

use crate::h1_fields::{chunked_last, connection_options, length_token};
use bytes::Bytes;
use futures_util::stream::Stream as BytesStream;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::custom::server::Session as CustomSession;
use pingora::protocols::http::custom::CustomMessageWrite;
use pingora::protocols::http::HttpTask;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::{Digest, SocketDigest, Stream};
use pingora::{Error, ErrorType, OkOrErr, OrErr, Result};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use whizard_core::sync::lock;

/// Fields a short-way request may have; a head with more goes to pingora (limit 256).
const MAX_FIELDS: usize = 64;

/// HTTP/2's upgrade settings (RFC 7540 §3.2.1), a field the short way leaves to pingora. A
/// constant: `from_static` checks its name again every time it runs.
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The GET that `head` (the first read of a request) starts with, when the short way serves
/// it, and the length of its head: a complete HTTP/1.1 head with an origin-form target, no
/// body (`Content-Length`, even 0, or `Transfer-Encoding`), no upgrade, no `Expect`, an
/// unambiguous authority. Bytes after the head are the client's next requests (pipelined; a
/// request without a body ends with its head). Anything else (`None`) goes to pingora's
/// engine, which also answers malformed heads. The header has room for the request id the
/// request filter may add; field values share `head`'s bytes.
pub fn parse_get(head: &Bytes) -> Option<(RequestHeader, usize)> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(len)) = req.parse(head) else {
        return None;
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    // Origin-form only: the URI then reproduces the target byte for byte. Absolute-form and
    // targets `Uri` refuses keep pingora's verbatim handling.
    let target = req.path.filter(|p| p.starts_with('/'))?;
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes())).ok()?;
    // A target the URI does not reproduce (a `#` fragment, which `Uri` drops) is not origin
    // form as the short way reads it: pingora's engine keeps the client's bytes (fuzzing found
    // `?query=#p` read as `?query=`).
    if uri.path_and_query().map(|p| p.as_str()) != Some(target) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len() + 1);
    for field in req.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        if name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || name == UPGRADE
            || name == EXPECT
            || name == HTTP2_SETTINGS
        {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(field.value)).ok()?;
        headers.append(name, value);
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    let req = RequestHeader::from(parts);
    // pingora's own authority checks (one `Host`, no userinfo); pingora answers the refused.
    pingora::protocols::http::authority::validate_request_authority(&req).ok()?;
    Some((req, len))
}

/// Whether `bytes` are the start of a request head that is not complete yet (more may make it
/// one), by the same parser as [`parse_get`]: not a complete head, and not bytes no head can
/// start with.
pub fn head_incomplete(bytes: &[u8]) -> bool {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    matches!(
        httparse::Request::new(&mut fields).parse(bytes),
        Ok(httparse::Status::Partial)
    )
}

/// Whether the client lets the connection stay open after this request: HTTP/1.1 keeps it
/// unless a `Connection` field says `close` (RFC 9112 §9.3; `close` wins over `keep-alive`).
pub fn client_keeps_alive(req: &RequestHeader) -> bool {
    let (close, _) = connection_options(&req.headers);
    !close
}

/// Where a finished session leaves its connection for the keep-alive loop: the session is
/// owned by pingora's `Session` as a trait object, which cannot hand back what it owns.
#[derive(Clone, Default)]
pub struct Handback(Arc<Mutex<Option<Reusable>>>);

/// A connection that may carry another request, and the bytes of the client's next requests
/// already read from it (pipelined), to be read before the socket.
pub type Reusable = (Stream, Bytes);

impl Handback {
    fn put(&self, reusable: Reusable) {
        *lock(&self.0) = Some(reusable);
    }

    /// The connection, if the answer was complete and allowed it to carry another request.
    pub fn take(&self) -> Option<Reusable> {
        lock(&self.0).take()
    }
}

/// The most the session reads of the client's pipelined requests while it answers one, in
/// one read; the rest waits in the socket.
const PIPELINED_READ: usize = 4096;

/// How the answer's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// No answer head yet.
    Unwritten,
    /// This many bytes still to send.
    Length(usize),
    Chunked,
    /// Until the connection closes (no length: the connection cannot be reused).
    UntilClose,
    /// All of it sent (or none allowed: 204, 304, a zero length).
    Done,
}

/// The answer body's framing, by pingora's rules (RFC 9112 §6.3).
fn framing(answer: &ResponseHeader) -> Body {
    if matches!(answer.status.as_u16(), 204 | 304) {
        return Body::Done;
    }
    if answer.headers.contains_key(TRANSFER_ENCODING) {
        return if chunked_last(&answer.headers) {
            Body::Chunked
        } else {
            Body::UntilClose
        };
    }
    // One length: the upstream client collapses repeated ones, and the gateway writes one.
    let mut lengths = answer.headers.get_all(CONTENT_LENGTH).iter();
    let length = match (lengths.next(), lengths.next()) {
        (Some(one), None) => length_token(one.as_bytes()).and_then(|n| usize::try_from(n).ok()),
        _ => None,
    };
    match length {
        Some(0) => Body::Done,
        Some(n) => Body::Length(n),
        None => Body::UntilClose,
    }
}

/// One request's server side on a plain keep-alive connection.
pub struct LeanSession {
    /// `None` once handed back or closed.
    stream: Option<Stream>,
    head: Bytes,
    /// What the client sent after this request: its next requests. Read into only while it is
    /// empty, so it is kept as it came (no copy per pipelined request).
    pipelined: Bytes,
    req: RequestHeader,
    keep_alive: bool,
    answer: Option<Box<ResponseHeader>>,
    body: Body,
    /// Answer bytes not yet written: the head waits for the first piece of a sized body, so
    /// both leave in one write.
    out: Vec<u8>,
    sent: usize,
    socket: Option<Arc<SocketDigest>>,
    /// The connection's facts over TLS (certificate identities, cookie flags); none on plain
    /// TCP, as before the short way took TLS.
    digest: Option<Digest>,
    handback: Handback,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    drain_timeout: Option<Duration>,
}

impl LeanSession {
    /// The session for `req`, parsed from `head` by [`parse_get`]; `pipelined`: the bytes read
    /// after the head. `keep_alive`: whether the server lets the connection carry another
    /// request (not while shutting down); the client's `Connection` field is applied here.
    pub fn new(
        stream: Stream,
        head: Bytes,
        pipelined: Bytes,
        req: RequestHeader,
        keep_alive: bool,
        handback: Handback,
    ) -> Self {
        let keep_alive = keep_alive && client_keeps_alive(&req);
        let digest = stream.get_ssl_digest().map(|ssl| Digest {
            ssl_digest: Some(ssl),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        LeanSession {
            digest,
            socket: stream.get_socket_digest(),
            stream: Some(stream),
            head,
            pipelined,
            req,
            keep_alive,
            answer: None,
            body: Body::Unwritten,
            out: Vec::new(),
            sent: 0,
            handback,
            read_timeout: None,
            write_timeout: None,
            drain_timeout: None,
        }
    }

    /// Writes what is pending.
    async fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let stream = self
            .stream
            .as_mut()
            .or_err(ErrorType::WriteError, "the connection is closed")?;
        let write = async {
            stream.write_all(&self.out).await?;
            stream.flush().await
        };
        let written = match self.write_timeout {
            Some(limit) => match tokio::time::timeout(limit, write).await {
                Ok(written) => written,
                Err(_) => return Error::e_explain(ErrorType::WriteTimedout, "writing the answer"),
            },
            None => write.await,
        };
        self.out.clear();
        written.or_err(ErrorType::WriteError, "writing the answer")
    }

    fn head_bytes(&mut self, answer: &ResponseHeader) {
        let out = &mut self.out;
        out.reserve(512);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(answer.status.as_str().as_bytes());
        out.push(b' ');
        if let Some(reason) = answer.get_reason_phrase() {
            out.extend_from_slice(reason.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        answer.header_to_h1_wire(out);
        if !answer.status.is_informational() {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(pingora::protocols::http::date::get_cached_date().as_bytes());
            out.extend_from_slice(if self.keep_alive {
                b"\r\nConnection: keep-alive\r\n"
            } else {
                b"\r\nConnection: close\r\n"
            });
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Ends the answer; the connection goes back if it may carry another request.
    async fn end(&mut self) -> Result<()> {
        match self.body {
            Body::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
            Body::Length(left) => {
                // Written so far, so the client sees a short body, not nothing.
                let _ = self.flush().await;
                self.body = Body::Done;
                self.keep_alive = false;
                return Error::e_explain(
                    ErrorType::new("PrematureBodyEnd"),
                    format!("the answer ended {left} bytes short of its length"),
                );
            }
            Body::Unwritten | Body::UntilClose | Body::Done => {}
        }
        let was_unwritten = self.body == Body::Unwritten;
        self.flush().await?;
        self.body = Body::Done;
        if let Some(stream) = self.stream.take() {
            if self.keep_alive && !was_unwritten {
                self.handback
                    .put((stream, std::mem::take(&mut self.pipelined)));
            } else {
                let mut stream = stream;
                let _ = stream.shutdown().await;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl CustomSession for LeanSession {
    fn req_header(&self) -> &RequestHeader {
        &self.req
    }

    fn req_header_mut(&mut self) -> &mut RequestHeader {
        &mut self.req
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        Ok(None)
    }

    async fn drain_request_body(&mut self) -> Result<()> {
        Ok(())
    }

    async fn write_response_header(
        &mut self,
        mut answer: Box<ResponseHeader>,
        _end: bool,
    ) -> Result<()> {
        if self.body != Body::Unwritten {
            // As pingora: one final answer per request.
            return Ok(());
        }
        if answer.status.is_informational() {
            // The short way never asks for one (no `Expect`, no upgrade); pass it on.
            self.head_bytes(&answer);
            return self.flush().await;
        }
        self.body = framing(&answer);
        if self.body == Body::UntilClose {
            self.keep_alive = false;
        }
        // This session writes its own `Date` and `Connection`.
        for name in [DATE, CONNECTION] {
            if answer.headers.contains_key(&name) {
                answer.remove_header(&name);
            }
        }
        self.head_bytes(&answer);
        self.answer = Some(answer);
        // A sized body's head waits for its first piece; anything else may be real time.
        if !matches!(self.body, Body::Length(_)) {
            self.flush().await?;
        }
        Ok(())
    }

    async fn write_response_header_ref(
        &mut self,
        answer: &ResponseHeader,
        end: bool,
    ) -> Result<()> {
        self.write_response_header(Box::new(answer.clone()), end)
            .await
    }

    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<()> {
        match self.body {
            Body::Unwritten => {
                return Error::e_explain(ErrorType::WriteError, "a body before the answer head")
            }
            Body::Length(left) => {
                // As pingora: bytes past the length are not sent.
                let take = data.len().min(left);
                self.out.extend_from_slice(&data[..take]);
                self.sent += take;
                self.body = match left - take {
                    0 => Body::Done,
                    rest => Body::Length(rest),
                };
            }
            Body::Chunked if !data.is_empty() => {
                let mut size = [0u8; 16];
                let size = hex(data.len(), &mut size);
                self.out.extend_from_slice(size);
                self.out.extend_from_slice(b"\r\n");
                self.out.extend_from_slice(&data);
                self.out.extend_from_slice(b"\r\n");
                self.sent += data.len();
            }
            Body::UntilClose => {
                self.out.extend_from_slice(&data);
                self.sent += data.len();
            }
            Body::Chunked | Body::Done => {}
        }
        if end || self.body == Body::Done {
            return self.end().await;
        }
        self.flush().await
    }

    async fn write_trailers(&mut self, _trailers: HeaderMap) -> Result<()> {
        // As pingora's HTTP/1 session: trailers are not sent.
        Ok(())
    }

    async fn response_duplex_vec(&mut self, tasks: Vec<HttpTask>) -> Result<bool> {
        let mut ended = false;
        for task in tasks {
            ended = task.is_end();
            match task {
                HttpTask::Header(answer, end) => self.write_response_header(answer, end).await?,
                HttpTask::Body(Some(data), end) => self.write_body(data, end).await?,
                HttpTask::Body(None, true) | HttpTask::Trailer(_) | HttpTask::Done => {
                    self.end().await?
                }
                HttpTask::Body(None, false) => {}
                HttpTask::UpgradedBody(..) => {
                    return Error::e_explain(ErrorType::InternalError, "no upgrades here")
                }
                HttpTask::Failed(e) => return Err(e),
            }
        }
        Ok(ended)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    fn get_read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    fn get_write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    fn set_total_drain_timeout(&mut self, timeout: Option<Duration>) {
        self.drain_timeout = timeout;
    }

    fn get_total_drain_timeout(&self) -> Option<Duration> {
        self.drain_timeout
    }

    fn request_summary(&self) -> String {
        format!("GET {}", self.req.uri)
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        self.answer.as_deref()
    }

    async fn shutdown(&mut self, _code: u32, _ctx: &str) {
        self.keep_alive = false;
        // What is pending (a head waiting for its body) still goes, so the client sees the
        // answer cut short rather than none.
        let _ = self.flush().await;
        if let Some(mut stream) = self.stream.take() {
            let _ = stream.shutdown().await;
        }
    }

    fn is_body_done(&mut self) -> bool {
        true
    }

    async fn finish(&mut self) -> Result<()> {
        self.end().await
    }

    fn is_body_empty(&mut self) -> bool {
        true
    }

    /// Watches the client while the upstream works: a close ends the request (the client
    /// left). Bytes it sends are its next requests (pipelining; the request had no body): they
    /// are kept, with what else has arrived, for after this answer, and the watch ends there,
    /// as nginx's does once pipelined bytes wait (a close after them is seen at the next read).
    async fn read_body_or_idle(&mut self, _no_body_expected: bool) -> Result<Option<Bytes>> {
        let (stream, pipelined) = match (self.stream.as_mut(), &mut self.pipelined) {
            (Some(stream), pipelined) if pipelined.is_empty() => (stream, pipelined),
            _ => return std::future::pending().await,
        };
        // One read of what has arrived, into a buffer on the stack while the read runs: most
        // requests see nothing arrive, and then hold no buffer (a 1-byte read first, then the
        // rest, was two system calls per pipelined batch).
        let read = std::future::poll_fn(|cx| {
            let mut space = [std::mem::MaybeUninit::<u8>::uninit(); PIPELINED_READ];
            let mut buf = tokio::io::ReadBuf::uninit(&mut space);
            std::task::ready!(std::pin::Pin::new(&mut **stream).poll_read(cx, &mut buf))?;
            *pipelined = Bytes::copy_from_slice(buf.filled());
            std::task::Poll::Ready(std::io::Result::Ok(buf.filled().len()))
        })
        .await;
        match read {
            Ok(0) => {
                self.keep_alive = false;
                let when = if self.answer.is_none() {
                    "before the answer head was sent"
                } else {
                    "before the answer body was complete"
                };
                Error::e_explain(ErrorType::ConnectionClosed, when)
            }
            Ok(_) => std::future::pending().await,
            Err(e) => {
                self.keep_alive = false;
                Err(e).or_err(ErrorType::ReadError, "while waiting for the answer")
            }
        }
    }

    fn body_bytes_sent(&self) -> usize {
        self.sent
    }

    fn body_bytes_read(&self) -> usize {
        0
    }

    fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    fn digest_mut(&mut self) -> Option<&mut Digest> {
        self.digest.as_mut()
    }

    fn client_addr(&self) -> Option<&SocketAddr> {
        self.socket.as_ref()?.peer_addr()
    }

    fn server_addr(&self) -> Option<&SocketAddr> {
        self.socket.as_ref()?.local_addr()
    }

    fn pseudo_raw_h1_request_header(&self) -> Bytes {
        self.head.clone()
    }

    fn enable_retry_buffering(&mut self) {}

    fn retry_buffer_truncated(&self) -> bool {
        false
    }

    fn get_retry_buffer(&self) -> Option<Bytes> {
        None
    }

    async fn finish_custom(&mut self) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_reader(
        &mut self,
    ) -> Option<Box<dyn BytesStream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>> {
        None
    }

    fn restore_custom_message_reader(
        &mut self,
        _reader: Box<dyn BytesStream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>,
    ) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_writer(&mut self) -> Option<Box<dyn CustomMessageWrite>> {
        None
    }

    fn restore_custom_message_writer(
        &mut self,
        _writer: Box<dyn CustomMessageWrite>,
    ) -> Result<()> {
        Ok(())
    }
}

/// `n` in lowercase hexadecimal, in `buf`.
fn hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn parses_complete_bodiless_http11_gets_and_nothing_else() {
        let head = Bytes::from_static(
            b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTpi\r\nAccept: a\r\nAccept: b\r\n\r\n",
        );
        let (req, len) = parse_get(&head).unwrap();
        assert_eq!(len, head.len());
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.version, Version::HTTP_11);
        assert_eq!(req.raw_path(), b"/api/v1/query?query=up");
        assert_eq!(req.uri.query(), Some("query=up"));
        assert_eq!(req.headers["host"], "x");
        assert_eq!(req.headers["authorization"], "Basic YTpi");
        let accept: Vec<_> = req.headers.get_all("accept").iter().collect();
        assert_eq!(accept, ["a", "b"]);
        // Room for the request id, and values that share the head's bytes.
        assert!(req.headers.capacity() > req.headers.len());
        let host = req.headers["host"].as_bytes().as_ptr() as usize;
        let range = head.as_ptr() as usize..head.as_ptr() as usize + head.len();
        assert!(range.contains(&host));

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
            b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n", // malformed: pingora answers
            b"GET http://gw/x HTTP/1.1\r\nHost: gw\r\n\r\n", // absolute-form: kept verbatim by pingora
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // ambiguous authority
            b"GET /x HTTP/1.1\r\nHost: user@gw\r\n\r\n",
            b"GET /x?query=#p HTTP/1.1\r\nHost: gw\r\n\r\n", // a fragment `Uri` would drop
            b"",
        ];
        for head in refused {
            let bytes = Bytes::copy_from_slice(head);
            assert!(parse_get(&bytes).is_none(), "{}", head.escape_ascii());
        }
        // More fields than the short way takes: pingora's engine (limit 256) serves it.
        let mut many = b"GET /x HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_FIELDS + 1 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse_get(&Bytes::from(many)).is_none());
    }

    #[test]
    fn only_the_start_of_a_head_is_incomplete() {
        for start in [
            "G",
            "GET / HT",
            "GET /x HTTP/1.1\r\nHost: x\r\n",
            "HEAD / HTTP/1.1\n",
        ] {
            assert!(head_incomplete(start.as_bytes()), "{start:?}");
        }
        // Complete (CRLF or bare LF), or no head at all: nothing more is worth waiting for.
        for done in [
            "GET / HTTP/1.1\r\n\r\n",
            "HEAD / HTTP/1.1\nHost: x\n\n",
            "GET / HTTP/1.1\r\nBad Header\r\n",
            "\x00\x01",
        ] {
            assert!(!head_incomplete(done.as_bytes()), "{done:?}");
        }
    }

    #[test]
    fn bytes_after_the_head_are_the_next_requests_not_this_one() {
        let first = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
        for after in [
            "GET /y HTTP/1.1\r\n\r\n",
            "GET /y HT",
            "POST /y HTTP/1.1\r\n",
            "x",
        ] {
            let head = Bytes::from(format!("{first}{after}"));
            let (req, len) = parse_get(&head).unwrap();
            assert_eq!(len, first.len(), "{after:?}");
            assert_eq!(req.raw_path(), b"/x");
            assert_eq!(req.headers.len(), 1);
        }
    }

    #[test]
    fn close_in_any_connection_field_ends_the_connection() {
        for (fields, keeps) in [
            (&[][..], true),
            (&["keep-alive"][..], true),
            (&["Close"][..], false),
            (&["keep-alive, close"][..], false),
            (&["x-private", " CLOSE "][..], false),
            (&["closed"][..], true),
        ] {
            let mut head = b"GET / HTTP/1.1\r\n".to_vec();
            for f in fields {
                head.extend_from_slice(format!("Connection: {f}\r\n").as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            let (req, _) = parse_get(&Bytes::from(head)).unwrap();
            assert_eq!(client_keeps_alive(&req), keeps, "{fields:?}");
        }
    }

    fn answer(status: u16, fields: &[(&str, &str)]) -> Box<ResponseHeader> {
        let mut a = ResponseHeader::build(status, None).unwrap();
        for (name, value) in fields {
            a.append_header(name.to_string(), *value).unwrap();
        }
        Box::new(a)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        type Fields = &'static [(&'static str, &'static str)];
        let cases: &[(u16, Fields, Body)] = &[
            (200, &[("content-length", "5")], Body::Length(5)),
            (200, &[("content-length", "0")], Body::Done),
            (204, &[("content-length", "5")], Body::Done),
            (304, &[], Body::Done),
            (200, &[("transfer-encoding", "chunked")], Body::Chunked),
            (
                200,
                &[("transfer-encoding", "gzip, chunked")],
                Body::Chunked,
            ),
            (
                200,
                &[("transfer-encoding", "chunked"), ("content-length", "5")],
                Body::Chunked,
            ),
            (200, &[("transfer-encoding", "gzip")], Body::UntilClose),
            (200, &[], Body::UntilClose),
            (200, &[("content-length", "x")], Body::UntilClose),
            (200, &[("content-length", "+5")], Body::UntilClose),
            (
                200,
                &[("content-length", "5"), ("content-length", "5")],
                Body::UntilClose,
            ),
        ];
        for (status, fields, body) in cases {
            assert_eq!(
                framing(&answer(*status, fields)),
                *body,
                "{status} {fields:?}"
            );
        }
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        let mut buf = [0u8; 16];
        for (n, s) in [
            (0, "0"),
            (5, "5"),
            (255, "ff"),
            (65536, "10000"),
            (usize::MAX, "ffffffffffffffff"),
        ] {
            assert_eq!(hex(n, &mut buf), s.as_bytes());
        }
    }

    /// A lean session for `head` over a loopback connection, and the client's end of it.
    async fn session(
        head: &'static [u8],
        keep_alive: bool,
    ) -> (LeanSession, tokio::net::TcpStream, Handback) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream = pingora::protocols::l4::stream::Stream::from(server);
        // As pingora's listener does for every connection it accepts.
        use pingora::protocols::GetSocketDigest;
        use std::os::fd::AsRawFd;
        stream.set_socket_digest(SocketDigest::from_raw_fd(stream.as_raw_fd()));
        let stream: Stream = Box::new(stream);
        let head = Bytes::from_static(head);
        let (req, len) = parse_get(&head).unwrap();
        let handback = Handback::default();
        let lean = LeanSession::new(
            stream,
            head.slice(..len),
            head.slice(len..),
            req,
            keep_alive,
            handback.clone(),
        );
        (lean, client, handback)
    }

    /// What the client received until the server closed or `n` bytes arrived.
    async fn received(client: &mut tokio::net::TcpStream, n: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < n {
            let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
                .await
                .expect("the answer arrives")
                .unwrap();
            if read == 0 {
                break;
            }
            got.extend_from_slice(&buf[..read]);
        }
        String::from_utf8(got).unwrap()
    }

    const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n";

    #[tokio::test]
    async fn a_sized_answer_goes_with_its_own_date_and_connection_and_the_connection_comes_back() {
        let (mut lean, mut client, handback) = session(GET, true).await;
        let up = answer(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "11"),
                ("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                ("connection", "close"),
            ],
        );
        lean.write_response_header(up, false).await.unwrap();
        assert_eq!(lean.response_written().unwrap().status, 200);
        lean.write_body(Bytes::from_static(b"hello "), false)
            .await
            .unwrap();
        assert!(handback.take().is_none(), "not before the body is complete");
        lean.write_body(Bytes::from_static(b"world"), true)
            .await
            .unwrap();
        lean.finish().await.unwrap();
        assert_eq!(lean.body_bytes_sent(), 11);
        assert!(handback.take().is_some());

        let got = received(&mut client, usize::MAX).await;
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "hello world");
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
        let fields: Vec<&str> = lines.collect();
        // The gateway's own answers keep their fields' spelling; the others are titled.
        assert!(
            fields.contains(&"content-type: application/json"),
            "{fields:?}"
        );
        assert!(fields.contains(&"content-length: 11"));
        assert!(fields.contains(&"Connection: keep-alive"));
        assert_eq!(
            fields
                .iter()
                .filter(|f| f.to_ascii_lowercase().starts_with("connection:"))
                .count(),
            1
        );
        let dates: Vec<_> = fields.iter().filter(|f| f.starts_with("Date: ")).collect();
        assert_eq!(dates.len(), 1);
        assert!(!dates[0].contains("1970"), "{dates:?}");
    }

    #[tokio::test]
    async fn a_chunked_answer_is_chunked_on_the_wire_and_ends_with_the_last_chunk() {
        let (mut lean, mut client, handback) = session(GET, true).await;
        let up = answer(200, &[("transfer-encoding", "chunked")]);
        lean.write_response_header(up, false).await.unwrap();
        for piece in ["hello", "", "0123456789abcdefX"] {
            lean.write_body(Bytes::from_static(piece.as_bytes()), false)
                .await
                .unwrap();
        }
        lean.write_body(Bytes::new(), true).await.unwrap();
        assert!(handback.take().is_some());
        let got = received(&mut client, usize::MAX).await;
        let body = got.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(body, "5\r\nhello\r\n11\r\n0123456789abcdefX\r\n0\r\n\r\n");
    }

    #[tokio::test]
    async fn no_length_means_until_close_and_no_reuse() {
        let (mut lean, mut client, handback) = session(GET, true).await;
        lean.write_response_header(answer(200, &[]), false)
            .await
            .unwrap();
        lean.write_body(Bytes::from_static(b"stream"), false)
            .await
            .unwrap();
        lean.finish().await.unwrap();
        assert!(handback.take().is_none());
        let got = received(&mut client, usize::MAX).await;
        assert!(got.contains("\r\nConnection: close\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nstream"), "{got}");
    }

    #[tokio::test]
    async fn the_client_or_the_server_can_ask_to_close() {
        let asked: &'static [u8] = b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n";
        for (head, server_keeps) in [(asked, true), (GET, false)] {
            let (mut lean, mut client, handback) = session(head, server_keeps).await;
            let up = answer(200, &[("content-length", "2")]);
            lean.write_response_header(up, false).await.unwrap();
            lean.write_body(Bytes::from_static(b"ok"), true)
                .await
                .unwrap();
            assert!(handback.take().is_none());
            let got = received(&mut client, usize::MAX).await;
            assert!(got.contains("\r\nConnection: close\r\n"), "{got}");
            assert!(got.ends_with("\r\n\r\nok"), "{got}");
        }
    }

    #[tokio::test]
    async fn bodiless_statuses_end_with_the_head() {
        for status in [204, 304] {
            let (mut lean, mut client, handback) = session(GET, true).await;
            lean.write_response_header(answer(status, &[]), false)
                .await
                .unwrap();
            let got = received(&mut client, 1).await;
            assert!(got.starts_with(&format!("HTTP/1.1 {status} ")), "{got}");
            assert!(got.ends_with("\r\n\r\n"));
            lean.finish().await.unwrap();
            assert!(handback.take().is_some());
        }
    }

    #[tokio::test]
    async fn an_answer_cut_short_reaches_the_client_as_such_and_closes() {
        // Ended early: the client gets the head and what was sent, then the close.
        let (mut lean, mut client, handback) = session(GET, true).await;
        lean.write_response_header(answer(200, &[("content-length", "10")]), false)
            .await
            .unwrap();
        lean.write_body(Bytes::from_static(b"0123"), false)
            .await
            .unwrap();
        let e = lean.finish().await.unwrap_err();
        assert_eq!(e.etype().as_str(), "PrematureBodyEnd");
        assert!(handback.take().is_none());
        drop(lean);
        let got = received(&mut client, usize::MAX).await;
        assert!(
            got.ends_with("Content-Length: 10\r\nDate: ") || got.contains("\r\n\r\n0123"),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\n0123"), "{got}");

        // Abandoned before any body: the waiting head still goes, then the close.
        let (mut lean, mut client, handback) = session(GET, true).await;
        lean.write_response_header(answer(200, &[("content-length", "10")]), false)
            .await
            .unwrap();
        lean.abandon("upstream failed").await;
        assert!(handback.take().is_none());
        let got = received(&mut client, usize::MAX).await;
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("\r\n\r\n"),
            "{got}"
        );

        // Bytes past the length are not sent.
        let (mut lean, mut client, handback) = session(GET, true).await;
        lean.write_response_header(answer(200, &[("content-length", "2")]), false)
            .await
            .unwrap();
        lean.write_body(Bytes::from_static(b"okay"), true)
            .await
            .unwrap();
        assert!(handback.take().is_some());
        drop(handback);
        let got = received(&mut client, usize::MAX).await;
        assert!(got.ends_with("\r\n\r\nok"), "{got}");
    }

    #[tokio::test]
    async fn the_client_leaving_ends_the_wait() {
        let (mut lean, client, _) = session(GET, true).await;
        drop(client);
        let e = lean.read_body_or_idle(true).await.unwrap_err();
        assert_eq!(*e.etype(), ErrorType::ConnectionClosed);

        // A quiet client: the wait goes on.
        let (mut lean, _client, _) = session(GET, true).await;
        let wait = tokio::time::timeout(Duration::from_millis(50), lean.read_body_or_idle(true));
        assert!(wait.await.is_err(), "still waiting");
    }

    /// Polls `lean`'s watch of the client until `n` pipelined bytes are kept (the watch never
    /// ends on them).
    async fn watch_until_kept(lean: &mut LeanSession, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while lean.pipelined.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "kept {:?}",
                lean.pipelined
            );
            let watch = lean.read_body_or_idle(true);
            assert!(
                tokio::time::timeout(Duration::from_millis(20), watch)
                    .await
                    .is_err(),
                "the watch ended on pipelined bytes"
            );
        }
    }

    #[tokio::test]
    async fn pipelined_requests_wait_for_the_answer_and_come_back_with_the_connection() {
        // Sent while the request is answered.
        let (mut lean, mut client, handback) = session(GET, true).await;
        let next = b"GET /y HTTP/1.1\r\nHost: gw\r\n\r\nGET /z";
        client.write_all(next).await.unwrap();
        watch_until_kept(&mut lean, next.len()).await;
        // Once bytes wait, a close is left for the next read to see: the answer still goes.
        client.shutdown().await.unwrap();
        lean.write_response_header(answer(200, &[("content-length", "2")]), false)
            .await
            .unwrap();
        lean.write_body(Bytes::from_static(b"ok"), true)
            .await
            .unwrap();
        let (_, pipelined) = handback.take().expect("the connection comes back");
        assert_eq!(&pipelined[..], next, "the next requests' bytes, in order");
        let got = received(&mut client, usize::MAX).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("Connection: keep-alive\r\n"), "{got}");

        // Read with the request: kept as they are, and the watch reads no further.
        let head: &'static [u8] = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\nGET /y HTTP/1.1\r\n";
        let (mut lean, mut client, handback) = session(head, true).await;
        assert_eq!(lean.pseudo_raw_h1_request_header(), GET);
        client.write_all(b"Host: gw\r\n\r\n").await.unwrap();
        let watch = tokio::time::timeout(Duration::from_millis(50), lean.read_body_or_idle(true));
        assert!(watch.await.is_err(), "still waiting");
        lean.write_response_header(answer(204, &[]), true)
            .await
            .unwrap();
        lean.finish().await.unwrap();
        let (_, pipelined) = handback.take().expect("the connection comes back");
        assert_eq!(&pipelined[..], b"GET /y HTTP/1.1\r\n");

        // A client that asked to close: what it pipelined is not served.
        let head: &'static [u8] =
            b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\nGET /y HTTP/1.1\r\n\r\n";
        let (mut lean, _client, handback) = session(head, true).await;
        lean.write_response_header(answer(204, &[]), true)
            .await
            .unwrap();
        lean.finish().await.unwrap();
        assert!(handback.take().is_none());
    }

    #[tokio::test]
    async fn the_session_knows_the_client_and_its_request() {
        let (lean, client, _) = session(GET, true).await;
        let peer = lean.client_addr().and_then(|a| a.as_inet()).copied();
        assert_eq!(peer, Some(client.local_addr().unwrap()));
        assert!(lean.digest().is_none(), "plain TCP: no TLS digest");
        assert_eq!(lean.pseudo_raw_h1_request_header(), GET);
        assert_eq!(lean.request_summary(), "GET /x");
    }
}
