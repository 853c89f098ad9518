//! bench-upstream: a minimal keep-alive HTTP/1.1 responder for load tests.
//!
//! `bench-upstream LISTEN_ADDR [THREADS]`
//!
//! - `POST /api/v1/write|receive|push` → 204 (body read and discarded; Content-Length or chunked)
//! - `/api/v1/query*` → a one-series instant-vector JSON answer (~200 bytes)
//! - anything else → a Prometheus buildinfo JSON answer (~200 bytes)
//!
//! Pipelined requests are answered in order with one write per read batch. No allocation per
//! request beyond the connection's buffers. Runs until killed.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const QUERY_BODY: &[u8] = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"10.0.0.1:9100","job":"node","tenant_id":"team-a"},"value":[1700000000,"1"]}]}}"#;
const BUILDINFO_BODY: &[u8] = br#"{"status":"success","data":{"version":"2.45.0","revision":"bench","branch":"HEAD","buildUser":"bench@localhost","buildDate":"20230101-00:00:00","goVersion":"go1.20.5"}}"#;

fn response(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

const WRITE_RESPONSE: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

#[derive(Clone, Copy)]
enum Answer {
    Query,
    BuildInfo,
    Write,
}

enum Parsed {
    Incomplete,
    Bad,
    Request {
        consumed: usize,
        answer: Answer,
        close: bool,
    },
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    if line[..colon].eq_ignore_ascii_case(name) {
        Some(line[colon + 1..].trim_ascii())
    } else {
        None
    }
}

/// Length of a complete chunked body at the start of `b`, or None when incomplete.
fn chunked_len(b: &[u8]) -> Result<Option<usize>, ()> {
    let mut pos = 0;
    loop {
        let Some(eol) = find(&b[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = &b[pos..pos + eol];
        let hex = line
            .split(|c| *c == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        let size =
            usize::from_str_radix(std::str::from_utf8(hex).map_err(|_| ())?, 16).map_err(|_| ())?;
        pos += eol + 2;
        if size == 0 {
            // Trailers (usually none), then an empty line.
            loop {
                let Some(eol) = find(&b[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if b.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > 64 * 1024 {
            Parsed::Bad
        } else {
            Parsed::Incomplete
        };
    };
    let head = &buf[..end];
    let mut lines = head.split(|b| *b == b'\n');
    let request_line = lines.next().unwrap_or(b"");
    let mut parts = request_line.split(|b| *b == b' ');
    let _method = parts.next();
    let path = parts.next().unwrap_or(b"/");
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = header_value(line, b"content-length") {
            content_length = match std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
                Some(n) => n,
                None => return Parsed::Bad,
            };
        } else if let Some(v) = header_value(line, b"transfer-encoding") {
            chunked = v.eq_ignore_ascii_case(b"chunked");
        } else if let Some(v) = header_value(line, b"connection") {
            close = v.eq_ignore_ascii_case(b"close");
        }
    }
    let body_start = end + 4;
    let consumed = if chunked {
        match chunked_len(&buf[body_start..]) {
            Ok(Some(n)) => body_start + n,
            Ok(None) => return Parsed::Incomplete,
            Err(()) => return Parsed::Bad,
        }
    } else {
        if buf.len() < body_start + content_length {
            return Parsed::Incomplete;
        }
        body_start + content_length
    };
    let answer = if path.starts_with(b"/api/v1/write")
        || path.starts_with(b"/api/v1/receive")
        || path.starts_with(b"/api/v1/push")
    {
        Answer::Write
    } else if path.starts_with(b"/api/v1/query") {
        Answer::Query
    } else {
        Answer::BuildInfo
    };
    Parsed::Request {
        consumed,
        answer,
        close,
    }
}

async fn serve(mut stream: TcpStream, query: &'static [u8], buildinfo: &'static [u8]) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(4 * 1024);
    let mut start = 0usize;
    loop {
        if start > 0 && start == buf.len() {
            buf.clear();
            start = 0;
        }
        if buf.capacity() - buf.len() < 8 * 1024 {
            if start > 0 {
                buf.drain(..start);
                start = 0;
            }
            buf.reserve(buf.capacity().max(16 * 1024));
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut close = false;
        loop {
            match parse(&buf[start..]) {
                Parsed::Incomplete => break,
                Parsed::Bad => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                Parsed::Request {
                    consumed,
                    answer,
                    close: c,
                } => {
                    start += consumed;
                    out.extend_from_slice(match answer {
                        Answer::Query => query,
                        Answer::BuildInfo => buildinfo,
                        Answer::Write => WRITE_RESPONSE,
                    });
                    if c {
                        close = true;
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()
        .expect("listen address");
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let query: &'static [u8] = Box::leak(response(QUERY_BODY).into_boxed_slice());
    let buildinfo: &'static [u8] = Box::leak(response(BUILDINFO_BODY).into_boxed_slice());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.expect("bind");
        eprintln!("bench-upstream listening on {addr} ({threads} threads)");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(stream, query, buildinfo));
        }
    });
}
