//! Fuzz targets of the short way's parsers (`h1_server::parse_get`, `h1_client::parse_head`,
//! `h1_client::decode_chunked`): each a function that panics when an invariant breaks, run by
//! `fuzz/` (libFuzzer and the stable runner) and by the property tests below in `cargo test`.
//!
//! The references are independent of the code under test: httparse read directly for the
//! request head, a prefix/suffix argument for the answer head (any cut of a complete head is
//! incomplete, bytes after it are left alone), and a chunk encoder written here for the
//! decoder (decoding in any pieces gives what was encoded, and the same as decoding whole).

use super::h1_client::{dechunk, parse_head, Chunk, Framing};
use super::h1_server::parse_get;
use bytes::{Bytes, BytesMut};

/// A request head the short way takes is a complete HTTP/1.1 GET in origin form without any
/// body or upgrade field, as long as httparse reads the head (what follows is the next
/// request), and its fields are exactly httparse's reading of the bytes.
pub fn request_head(data: &[u8]) {
    let head = Bytes::copy_from_slice(data);
    let Some((req, len)) = parse_get(&head) else {
        return;
    };
    assert_eq!(req.method, http::Method::GET);
    assert_eq!(req.version, http::Version::HTTP_11);
    let mut fields = vec![httparse::EMPTY_HEADER; 256];
    let mut reference = httparse::Request::new(&mut fields);
    let parsed = reference.parse(data);
    assert_eq!(
        parsed.ok(),
        Some(httparse::Status::Complete(len)),
        "taken, but not one complete head of that length"
    );
    assert_eq!(reference.method, Some("GET"));
    assert_eq!(reference.version, Some(1));
    let target = reference.path.unwrap_or_default();
    assert!(target.starts_with('/'), "not origin form: {target:?}");
    assert_eq!(
        req.raw_path(),
        target.as_bytes(),
        "the target is not the client's"
    );
    let taken: Vec<(String, &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes()))
        .collect();
    let mut expected: Vec<(String, &[u8])> = reference
        .headers
        .iter()
        .map(|f| (f.name.to_ascii_lowercase(), f.value))
        .collect();
    // The header map groups a name's values together, in their order.
    let order: Vec<String> = taken.iter().map(|(n, _)| n.clone()).collect();
    expected.sort_by_key(|(n, _)| order.iter().position(|o| o == n));
    assert_eq!(taken, expected, "fields differ from the bytes");
    for refused in ["content-length", "transfer-encoding", "upgrade", "expect"] {
        assert!(!req.headers.contains_key(refused), "{refused} taken");
    }
}

/// An answer head: a complete head is read the same with any bytes after it, which stay in
/// the buffer; every strict prefix of it is incomplete or refused, never another answer.
pub fn answer_head(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = parse_head(&mut buf, 2) else {
        // Incomplete or refused: so is every prefix (an earlier complete head would have been
        // found in these same bytes).
        return;
    };
    let used = data.len() - buf.len();
    assert!(used > 0 && used <= data.len());
    assert_eq!(&data[used..], &buf[..], "bytes after the head were touched");
    let status = head.header.status;
    match head.framing {
        Framing::Done => {}
        Framing::Length(n) => assert!(n > 0, "an empty body is Done"),
        Framing::Chunked(at) => assert_eq!(at, Chunk::Size),
        Framing::Close => assert!(!head.keep_alive, "a body until the close, kept alive"),
    }
    if status == http::StatusCode::NO_CONTENT || status == http::StatusCode::NOT_MODIFIED {
        assert!(
            matches!(head.framing, Framing::Done),
            "{status} with a body"
        );
    }
    // The same head with other bytes after it: read the same.
    let mut again = BytesMut::from(&data[..used]);
    again.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    let other = parse_head(&mut again, 2)
        .expect("complete once, refused with other bytes after it")
        .expect("complete once, incomplete with more bytes");
    assert_eq!(other.header.status, status);
    assert_eq!(other.header.headers, head.header.headers);
    assert_eq!(other.keep_alive, head.keep_alive);
    assert_eq!(&again[..], b"HTTP/1.1 200 OK\r\n");
    // Cut short anywhere: never a complete answer.
    for cut in [used - 1, used / 2, 1] {
        if cut == 0 || cut >= used {
            continue;
        }
        let mut short = BytesMut::from(&data[..cut]);
        if let Ok(Some(h)) = parse_head(&mut short, 2) {
            panic!(
                "a prefix of {cut} of {used} bytes is a complete answer ({})",
                h.header.status
            );
        }
    }
}

/// The chunked decoder: byte 0 picks a piece size and a mode. Mode 0 decodes the rest as
/// wire bytes, whole and in pieces, which must agree (data, end, bytes left; or both refuse).
/// Mode 1 encodes the rest as data in chunks of sizes taken from the data itself (with
/// extensions and a trailer), and decoding must give the data back, in any pieces.
pub fn chunked_body(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(control >> 1) + 1;
    if control & 1 == 0 {
        let whole = dechunk(rest, rest.len().max(1));
        let pieces = dechunk(rest, step);
        match (&whole, &pieces) {
            (Ok(w), Ok(p)) if w.1 && p.1 => assert_eq!(w, p, "step {step}"),
            // Unfinished: pieces may stop earlier (a partial line is refused only when too
            // long), but what was decoded is a prefix of the same data.
            (Ok(w), Ok(p)) => {
                let n = w.0.len().min(p.0.len());
                assert_eq!(w.0[..n], p.0[..n], "step {step}");
                assert_eq!(w.1, p.1, "step {step}: end reached one way only");
            }
            (Err(()), Err(())) => {}
            _ => panic!("step {step}: whole {whole:?}, in pieces {pieces:?}"),
        }
        return;
    }
    let mut wire = Vec::new();
    let mut left = rest;
    let mut i = 0;
    while !left.is_empty() {
        let size = (usize::from(left[0]) % 40 + 1).min(left.len());
        if i % 3 == 1 {
            wire.extend_from_slice(format!("{size:X};ext=\"v\"\r\n").as_bytes());
        } else {
            wire.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        }
        wire.extend_from_slice(&left[..size]);
        wire.extend_from_slice(b"\r\n");
        left = &left[size..];
        i += 1;
    }
    wire.extend_from_slice(b"0\r\nX-Sum: 1\r\n\r\n");
    for piece in [1, step, wire.len()] {
        let (decoded, end, after) = dechunk(&wire, piece).expect("a valid encoding refused");
        assert_eq!(decoded, rest, "piece {piece}");
        assert!(end, "piece {piece}: the end not reached");
        assert_eq!(after, 0);
    }
}

/// Request heads as clients send them, and odd ones (the short way takes some of them): the
/// seeds of `request_head` here and in `fuzz/`.
pub const REQUEST_SEEDS: &[&[u8]] = &[
    b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic YTpi\r\n\r\n",
    b"GET /api/v1/query_range?query=rate(x%5B5m%5D)&start=1&end=2&step=15 HTTP/1.1\r\nHost: gw\r\nUser-Agent: Grafana/10\r\nAccept-Encoding: gzip\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-a: 1\r\nX-A: 2\r\nx-b: 3\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /a HTTP/1.1\nHost: x\n\n",
    b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\nX-N: caf\xe9\r\n\r\n",
    b"GET /api/v1/query?query=#p HTTP/1.1\r\nHost: gw\r\n\r\n",
];

/// Answer heads (with the start of a body) as upstreams send them, and odd ones.
pub const ANSWER_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
];

/// Byte 0: piece size and mode (even: wire bytes, odd: data to encode); see [`chunked_body`].
pub const CHUNKED_SEEDS: &[&[u8]] = &[
    b"\x004\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nExpires: never\r\n\r\n",
    b"\x061\r\na\r\n0\r\n\r\nHTTP/1.1",
    b"\x02fffffffffffffffff\r\n",
    b"\x02x\r\n",
    b"\x03",
    b"\x01Wikipedia in chunks",
    b"\x0f{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seeds_hold() {
        for r in REQUEST_SEEDS {
            request_head(r);
        }
        for a in ANSWER_SEEDS {
            answer_head(a);
        }
        for c in CHUNKED_SEEDS {
            chunked_body(c);
        }
    }

    /// A seed with some of its bytes replaced.
    fn mutated(seeds: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
        (
            0..seeds.len(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(move |(i, edits, tail)| {
                let mut v = seeds[i].to_vec();
                for (at, byte) in edits {
                    let at = at % v.len();
                    v[at] = byte;
                }
                v.extend(tail);
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn request_heads(data in mutated(REQUEST_SEEDS)) {
            request_head(&data);
        }

        #[test]
        fn answer_heads(data in mutated(ANSWER_SEEDS)) {
            answer_head(&data);
        }

        #[test]
        fn answer_heads_from_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut v = b"HTTP/1.1 ".to_vec();
            v.extend(data);
            answer_head(&v);
        }

        #[test]
        fn chunked_bodies(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            chunked_body(&data);
        }
    }
}
