//! The short way's upstream side: one bodiless request and its answer over an HTTP/1.1
//! connection.
//!
//! pingora's client session is general (bodies both ways, upgrades, caching hooks) and, per
//! request, copies the answer's head, keeps a second map of each field's spelling, re-parses
//! every field name on insertion and allocates its own buffers: about a quarter of a short-way
//! read's instructions. A GET needs less: write one head, read one answer. Its framing rules
//! are the ones pingora applies (RFC 9112 §6): `Transfer-Encoding` wins over `Content-Length`
//! (which is then dropped), identical repeated lengths collapse, conflicting ones are refused,
//! 204/304 have no body, anything else without a length ends at close. The head parser is the
//! same httparse configuration as pingora's. Errors carry pingora's error types, so the
//! gateway's failure answers (502, 504) and the retry of a reused connection stay as they
//! were.

use crate::h1_fields::{chunked_last, connection_options, length_token};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora::{Error, ErrorType, OkOrErr, OrErr, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fields an answer head may have, and its largest size: pingora's limits.
const MAX_FIELDS: usize = 256;
const MAX_HEAD: usize = 1 << 20;
/// A chunk-size line or a trailer field longer than this is refused rather than buffered.
const MAX_LINE: usize = 64 * 1024;
/// The first read's size (heads and small answers fit), and a body read's at most.
const HEAD_READ: usize = 4096;
const BODY_READ: usize = 64 * 1024;

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (204, 304) or all of it read.
    Done,
    /// This many bytes still to come (never 0: an empty body is `Done`).
    Length(u64),
    /// Chunked, at this point of the coding.
    Chunked(Chunk),
    /// Until the upstream closes (no length; the connection cannot be reused).
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// A parsed answer head: the header (with room for `extra` fields), its body's framing and
/// whether the connection may carry another request afterwards.
#[derive(Debug)]
pub(super) struct Head {
    pub header: ResponseHeader,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// One request's exchange with an upstream.
pub(super) struct Exchange {
    stream: Stream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    framing: Framing,
    keep_alive: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl Exchange {
    pub fn new(
        stream: Stream,
        read_timeout: Option<Duration>,
        write_timeout: Option<Duration>,
    ) -> Self {
        Exchange {
            stream,
            buf: BytesMut::new(),
            framing: Framing::Done,
            keep_alive: false,
            read_timeout,
            write_timeout,
        }
    }

    /// Writes the request head (a request without a body).
    pub async fn send(&mut self, req: &RequestHeader) -> Result<()> {
        let head = request_head(req)?;
        let write = async {
            self.stream.write_all(&head).await?;
            self.stream.flush().await
        };
        let written = match self.write_timeout {
            Some(t) => tokio::time::timeout(t, write)
                .await
                .map_err(|_| Error::explain(ErrorType::WriteTimedout, "writing request head"))?,
            None => write.await,
        };
        written.or_err(ErrorType::WriteError, "writing request head")
    }

    /// Reads the answer's head, past informational (1xx) answers; a 101 is refused, since a
    /// GET asked for no upgrade. The header has room for `extra` fields.
    pub async fn receive(&mut self, extra: usize) -> Result<ResponseHeader> {
        self.buf.reserve(HEAD_READ);
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_head(&mut self.buf, extra)? {
                    let status = head.header.status;
                    if status == StatusCode::SWITCHING_PROTOCOLS {
                        return Error::e_explain(ErrorType::InvalidHTTPHeader, "unasked 101");
                    }
                    if status.is_informational() {
                        continue;
                    }
                    self.framing = head.framing;
                    self.keep_alive = head.keep_alive;
                    return Ok(head.header);
                }
                if self.buf.len() > MAX_HEAD {
                    return Error::e_explain(
                        ErrorType::InvalidHTTPHeader,
                        format!("answer head larger than {MAX_HEAD} bytes"),
                    );
                }
            }
            if self.fill(HEAD_READ).await? == 0 {
                let mut e = Error::explain(
                    ErrorType::ConnectionClosed,
                    format!(
                        "closed while reading the answer head ({} bytes read)",
                        self.buf.len()
                    ),
                );
                // A reused connection the upstream closed: the caller may send again.
                e.retry = pingora::RetryType::ReusedOnly;
                return Err(e);
            }
        }
    }

    /// Whether the whole body has been read.
    pub fn is_body_done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// The body's next bytes, `None` at its end.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(left) => {
                    if !self.buf.is_empty() {
                        let n = self
                            .buf
                            .len()
                            .min(usize::try_from(left).unwrap_or(usize::MAX));
                        let left = left - n as u64;
                        self.framing = if left == 0 {
                            Framing::Done
                        } else {
                            Framing::Length(left)
                        };
                        return Ok(Some(self.buf.split_to(n).freeze()));
                    }
                    let want = usize::try_from(left).unwrap_or(BODY_READ).min(BODY_READ);
                    if self.fill(want).await? == 0 {
                        return Error::e_explain(
                            ErrorType::ConnectionClosed,
                            format!("closed with {left} bytes of the body still to come"),
                        );
                    }
                }
                Framing::Close => {
                    if !self.buf.is_empty() {
                        return Ok(Some(self.buf.split().freeze()));
                    }
                    if self.fill(BODY_READ).await? == 0 {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                }
                Framing::Chunked(at) => {
                    let (next, data) = decode_chunked(at, &mut self.buf)?;
                    match next {
                        Some(at) => self.framing = Framing::Chunked(at),
                        None => self.framing = Framing::Done,
                    }
                    if data.is_some() || next.is_none() {
                        return Ok(data);
                    }
                    if self.fill(BODY_READ).await? == 0 {
                        return Error::e_explain(
                            ErrorType::ConnectionClosed,
                            "closed before the last chunk",
                        );
                    }
                }
            }
        }
    }

    /// The connection, if it can carry another request: the answer allowed it, its body was
    /// read to the end and nothing came after it.
    pub fn into_reusable(self) -> Option<Stream> {
        (self.keep_alive && self.framing == Framing::Done && self.buf.is_empty())
            .then_some(self.stream)
    }

    /// Reads more bytes (up to about `want`); 0 at the upstream's close.
    async fn fill(&mut self, want: usize) -> Result<usize> {
        if self.buf.capacity() - self.buf.len() < want.min(HEAD_READ) {
            self.buf.reserve(want);
        }
        let read = self.stream.read_buf(&mut self.buf);
        let read = match self.read_timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| Error::explain(ErrorType::ReadTimedout, "reading the answer"))?,
            None => read.await,
        };
        read.map_err(|e| {
            let os_error = e.raw_os_error().is_some();
            let mut e = Error::because(ErrorType::ReadError, "reading the answer", e);
            if os_error {
                e.retry = pingora::RetryType::ReusedOnly;
            }
            e
        })
    }
}

/// The request head on the wire, by pingora's own serialiser (request line, fields in their
/// canonical spelling, blank line), which refuses a target with bytes that would end or split
/// the request line (RFC 9112 §3.2).
fn request_head(req: &RequestHeader) -> Result<BytesMut> {
    pingora::protocols::http::v1::client::http_req_header_to_wire(req)
        .or_err(ErrorType::InvalidHTTPHeader, "request head not sendable")
}

/// Parses an answer head at the start of `buf`. On success the head's bytes are taken out of
/// `buf` (what follows is the body's start); `None` while the head is incomplete. Field values
/// share the head's bytes (no copy per field).
pub(super) fn parse_head(buf: &mut BytesMut, extra: usize) -> Result<Option<Head>> {
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    config.allow_obsolete_multiline_headers_in_responses(true);
    let mut storage = [httparse::EMPTY_HEADER; 32];
    let mut large;
    let mut resp = httparse::Response::new(&mut storage);
    let mut parsed = config.parse_response(&mut resp, &buf[..]);
    if parsed == Err(httparse::Error::TooManyHeaders) {
        // Rare: parse again with pingora's limit, on the heap.
        large = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
        resp = httparse::Response::new(&mut large);
        parsed = config.parse_response(&mut resp, &buf[..]);
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Error::e_because(ErrorType::InvalidHTTPHeader, "parsing the answer head", e)
        }
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .or_err(ErrorType::InvalidHTTPHeader, "answer status")?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let reason = resp
        .reason
        .filter(|r| Some(*r) != status.canonical_reason())
        .map(str::to_owned);
    // Names now, values once the head's bytes are split off and shared.
    let base = buf.as_ptr() as usize;
    let mut fields = Vec::with_capacity(resp.headers.len());
    for f in resp.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .or_err(ErrorType::InvalidHTTPHeader, "answer field name")?;
        let start = f.value.as_ptr() as usize - base;
        fields.push((name, start, start + f.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len() + extra);
    for (name, start, end) in fields {
        headers.append(name, field_value(head.slice(start..end))?);
    }

    let framing = framing(status, &mut headers)?;
    let keep_alive = framing != Framing::Close && keeps_alive(version, &headers);
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    let mut header = ResponseHeader::from(parts);
    if reason.is_some() {
        header.set_reason_phrase(reason.as_deref())?;
    }
    Ok(Some(Head {
        header,
        framing,
        keep_alive,
    }))
}

/// A field value; an obsolete line folding (CRLF and whitespace inside a value, which httparse
/// lets through) becomes spaces, as RFC 9112 §5.2 asks of a proxy.
fn field_value(raw: Bytes) -> Result<HeaderValue> {
    if raw.iter().any(|b| matches!(b, b'\r' | b'\n')) {
        let unfolded: Vec<u8> = raw
            .iter()
            .map(|&b| if matches!(b, b'\r' | b'\n') { b' ' } else { b })
            .collect();
        return HeaderValue::from_bytes(&unfolded)
            .or_err(ErrorType::InvalidHTTPHeader, "answer field value");
    }
    HeaderValue::from_maybe_shared(raw).or_err(ErrorType::InvalidHTTPHeader, "answer field value")
}

/// The body's framing (RFC 9112 §6.3). A `Content-Length` beside `Transfer-Encoding` is
/// removed; identical repeated lengths collapse into one field.
fn framing(status: StatusCode, headers: &mut HeaderMap) -> Result<Framing> {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Done);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
        return Ok(if chunked_last(headers) {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    let mut tokens = 0;
    for value in headers.get_all(CONTENT_LENGTH) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            tokens += 1;
            let n = length_token(token)
                .or_err(ErrorType::InvalidHTTPHeader, "answer Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Error::e_explain(
                    ErrorType::InvalidHTTPHeader,
                    "conflicting Content-Length",
                );
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) => {
            if tokens > 1 {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
            Ok(if n == 0 {
                Framing::Done
            } else {
                Framing::Length(n)
            })
        }
        None => Ok(Framing::Close),
    }
}

/// Whether the upstream keeps the connection open after this answer.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let (close, keep_alive) = connection_options(headers);
    !close && (version == Version::HTTP_11 || keep_alive)
}

/// Decodes chunked bytes from `buf` from state `at`: the next state (`None` after the last
/// chunk and its trailer section, whose fields are dropped as pingora drops them) and the data
/// decoded, if any. A next state without data means more bytes are needed.
pub(super) fn decode_chunked(
    mut at: Chunk,
    buf: &mut BytesMut,
) -> Result<(Option<Chunk>, Option<Bytes>)> {
    loop {
        match at {
            Chunk::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    at = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Ok(httparse::Status::Partial) if buf.len() <= MAX_LINE => {
                    return Ok((Some(at), None))
                }
                _ => return Error::e_explain(ErrorType::InvalidHTTPHeader, "bad chunk size line"),
            },
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok((Some(at), None));
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let left = left - n as u64;
                let next = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                return Ok((Some(next), Some(buf.split_to(n).freeze())));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok((Some(at), None));
                }
                if &buf[..2] != b"\r\n" {
                    return Error::e_explain(ErrorType::InvalidHTTPHeader, "chunk without CRLF");
                }
                buf.advance(2);
                at = Chunk::Size;
            }
            Chunk::Trailers => match buf.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    buf.advance(2);
                    return Ok((None, None));
                }
                Some(end) => buf.advance(end + 2),
                None if buf.len() <= MAX_LINE => return Ok((Some(at), None)),
                None => return Error::e_explain(ErrorType::InvalidHTTPHeader, "trailer too long"),
            },
        }
    }
}

/// Feeds `wire` to the decoder in pieces of `step` bytes: the data, whether the end was
/// reached, and the bytes left after it.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn dechunk(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool, usize), ()> {
    let mut buf = BytesMut::new();
    let mut at = Some(Chunk::Size);
    let mut out = Vec::new();
    for piece in wire.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(state) = at {
            let (next, data) = decode_chunked(state, &mut buf).map_err(|_| ())?;
            let progressed = data.is_some() || next != Some(state);
            if let Some(d) = data {
                out.extend_from_slice(&d);
            }
            at = next;
            if !progressed {
                break;
            }
        }
    }
    Ok((out, at.is_none(), buf.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>> {
        parse_head(&mut BytesMut::from(raw), 4)
    }

    fn complete(raw: &str) -> Head {
        head(raw).unwrap().expect("a complete head")
    }

    #[test]
    fn a_head_with_a_length_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nVary: a\r\nVary: b\r\n\r\n{}",
        );
        let h = parse_head(&mut buf, 4).unwrap().unwrap();
        assert_eq!(&buf[..], b"{}");
        assert_eq!(h.framing, Framing::Length(2));
        assert!(h.keep_alive);
        assert_eq!(h.header.status, 200);
        assert_eq!(h.header.version, Version::HTTP_11);
        assert_eq!(h.header.headers["content-type"], "application/json");
        let vary: Vec<_> = h.header.headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["a", "b"]);
        assert!(h.header.headers.capacity() >= h.header.headers.len() + 4);
        assert_eq!(h.header.get_reason_phrase(), Some("OK"));
    }

    #[test]
    fn an_incomplete_head_asks_for_more_and_keeps_the_bytes() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
        assert!(parse_head(&mut buf, 0).unwrap().is_none());
        assert_eq!(buf.len(), 27);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases = [
            ("HTTP/1.1 204 No Content\r\n\r\n", Framing::Done, true),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Framing::Done,
                true,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::Close, false),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                Framing::Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                Framing::Close,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                Framing::Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: Keep-Alive\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                Framing::Done,
                true,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            let h = complete(raw);
            assert_eq!((h.framing, h.keep_alive), (framing, keep_alive), "{raw}");
        }
    }

    #[test]
    fn lengths_collapse_conflict_or_yield_to_transfer_encoding() {
        let h = complete("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(3));
        let all: Vec<_> = h.header.headers.get_all("content-length").iter().collect();
        assert_eq!(all, ["3"]);

        let h =
            complete("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked(Chunk::Size));
        assert!(h.header.headers.get("content-length").is_none());

        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            let e = head(bad).unwrap_err();
            assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader, "{bad}");
        }
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTPS/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn odd_but_valid_heads_are_read() {
        // A custom reason phrase is kept; a folded value is unfolded; many fields are fine.
        let h = complete("HTTP/1.1 299 Fine Indeed\r\nX-Long: a\r\n b\r\n\r\n");
        assert_eq!(h.header.get_reason_phrase(), Some("Fine Indeed"));
        assert_eq!(h.header.headers["x-long"].as_bytes().trim_ascii(), b"a   b");
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-F{i}: {i}\r\n"));
        }
        many.push_str("Content-Length: 0\r\n\r\n");
        let h = complete(&many);
        assert_eq!(h.header.headers.len(), 101);
        assert_eq!(h.header.headers["x-f99"], "99");
        let mut too_many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..300 {
            too_many.push_str(&format!("X-F{i}: {i}\r\n"));
        }
        too_many.push_str("\r\n");
        assert!(head(&too_many).is_err());
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let wire = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (data, end, left) = dechunk(wire, step).unwrap();
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
            assert!(end, "step {step}");
            assert_eq!(left, 0);
        }
        // Bytes after the body stay in the buffer (the connection is then not reused).
        let (_, end, left) = dechunk(b"1\r\na\r\n0\r\n\r\nHTTP/1.1", 100).unwrap();
        assert!(end);
        assert_eq!(left, 8);
    }

    #[test]
    fn bad_chunked_bodies_are_refused() {
        for bad in [&b"x\r\n"[..], b"4\r\nWikiXX", b"fffffffffffffffff\r\n"] {
            assert!(dechunk(bad, 100).is_err(), "{bad:?}");
        }
        let (_, end, _) = dechunk(b"4\r\nWi", 100).unwrap();
        assert!(!end);
    }

    #[test]
    fn request_heads_go_in_http11_with_canonical_names() {
        let mut req = RequestHeader::build_no_case("GET", b"/api/v1/query?query=up", None).unwrap();
        req.insert_header("host", "up").unwrap();
        req.insert_header("thanos-tenant", "team-a").unwrap();
        let wire = String::from_utf8(request_head(&req).unwrap().to_vec()).unwrap();
        assert!(
            wire.starts_with("GET /api/v1/query?query=up HTTP/1.1\r\n"),
            "{wire}"
        );
        assert!(wire.contains("Host: up\r\n"), "{wire}");
        assert!(wire.contains("thanos-tenant: team-a\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\n"));
    }

    fn stream(tcp: tokio::net::TcpStream) -> Stream {
        Box::new(pingora::protocols::l4::stream::Stream::from(tcp))
    }

    /// One exchange over a real loopback connection with a scripted upstream: the answer is
    /// read in pieces, the body ends where its framing says, and the connection is offered for
    /// reuse only when it can be.
    #[tokio::test]
    async fn exchanges_over_a_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cases: [(Vec<&str>, &str, bool); 4] = [
            (
                vec![
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Len",
                    "gth: 5\r\n\r\nhel",
                    "lo",
                ],
                "hello",
                true,
            ),
            (
                vec![
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                    "0\r\n\r\n",
                ],
                "abc",
                true,
            ),
            (
                vec!["HTTP/1.1 200 OK\r\n\r\nuntil ", "close"],
                "until close",
                false,
            ),
            (
                vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA"],
                "x",
                false,
            ),
        ];
        for (pieces, body, reusable) in cases {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.as_bytes().to_vec()).collect();
            let close = !reusable;
            let upstream = tokio::spawn(async move {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut req = vec![0u8; 1024];
                let n = sock.read(&mut req).await.unwrap();
                for p in pieces {
                    sock.write_all(&p).await.unwrap();
                    sock.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
                if close {
                    drop(sock);
                } else {
                    // Held open until the test reads its answer.
                    let _ = sock.read(&mut [0u8; 1]).await;
                }
                String::from_utf8(req[..n].to_vec()).unwrap()
            });
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut x = Exchange::new(stream(tcp), Some(Duration::from_secs(5)), None);
            let req = RequestHeader::build_no_case("GET", b"/x", None).unwrap();
            x.send(&req).await.unwrap();
            let header = x.receive(2).await.unwrap();
            assert_eq!(header.status, 200);
            let mut got = Vec::new();
            while let Some(b) = x.read_body().await.unwrap() {
                got.extend_from_slice(&b);
            }
            assert_eq!(got, body.as_bytes());
            assert!(x.is_body_done());
            assert_eq!(x.into_reusable().is_some(), reusable);
            assert!(upstream.await.unwrap().starts_with("GET /x HTTP/1.1\r\n"));
        }
    }

    #[tokio::test]
    async fn an_early_close_is_an_error_not_a_short_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = sock.read(&mut [0u8; 1024]).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
                .await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut x = Exchange::new(stream(tcp), None, None);
        x.send(&RequestHeader::build_no_case("GET", b"/", None).unwrap())
            .await
            .unwrap();
        x.receive(0).await.unwrap();
        assert_eq!(x.read_body().await.unwrap().unwrap(), "short");
        let e = x.read_body().await.unwrap_err();
        assert_eq!(e.etype(), &ErrorType::ConnectionClosed);
    }
}
