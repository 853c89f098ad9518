//! The HTTP/1.1 field rules both halves of the short way apply (`h1_client`, `h1_server`),
//! and the response filter and the upstream client's relay too: the hop-by-hop fields,
//! `Connection` options and nominated fields, the last transfer coding and a `Content-Length`
//! token.

use http::header::{
    CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName};

/// The hop-by-hop fields: never passed from one connection to the next (RFC 9110 §7.6.1, plus
/// the legacy `Keep-Alive` and `Proxy-Connection`), besides those a `Connection` field names
/// ([`connection_nominated`]). `Transfer-Encoding` is framing: where the gateway relays an
/// answer's body as it arrives, the framing fields are left to the server session instead.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TRANSFER_ENCODING,
    TE,
    TRAILER,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Whether the `Connection` fields name `close` and `keep-alive` (RFC 9110 §7.6.1), in that
/// order. Tokens are compared without case and around spaces.
pub fn connection_options(headers: &HeaderMap) -> (bool, bool) {
    let mut close = false;
    let mut keep_alive = false;
    for value in headers.get_all(CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    (close, keep_alive)
}

/// The field names the `Connection` fields nominate as hop-by-hop (RFC 9110 §7.6.1); tokens
/// that are not field names (`close`, `keep-alive` are) are kept like any other name.
pub fn connection_nominated(headers: &HeaderMap) -> Vec<http::HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| http::HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect()
}

/// Whether the last transfer coding is `chunked` (RFC 9112 §6.3): only then does the body end
/// with a last chunk; any other coding runs until the connection closes.
pub fn chunked_last(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// One `Content-Length` value token: digits only (no sign, no spaces inside), within `u64`.
pub fn length_token(token: &[u8]) -> Option<u64> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn connection_options_are_tokens_in_any_field() {
        for (fields, want) in [
            (&[][..], (false, false)),
            (&[("connection", "Close")][..], (true, false)),
            (
                &[("connection", "keep-alive, x-private")][..],
                (false, true),
            ),
            (
                &[("connection", "x"), ("connection", " CLOSE , keep-alive")][..],
                (true, true),
            ),
            (&[("connection", "closed")][..], (false, false)),
        ] {
            assert_eq!(connection_options(&headers(fields)), want, "{fields:?}");
        }
    }

    #[test]
    fn only_a_last_chunked_coding_is_chunked() {
        for (fields, want) in [
            (&[][..], false),
            (&[("transfer-encoding", "chunked")][..], true),
            (&[("transfer-encoding", "gzip, Chunked ")][..], true),
            (&[("transfer-encoding", "chunked, gzip")][..], false),
            (
                &[
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked"),
                ][..],
                true,
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "gzip"),
                ][..],
                false,
            ),
        ] {
            assert_eq!(chunked_last(&headers(fields)), want, "{fields:?}");
        }
    }

    #[test]
    fn length_tokens_are_plain_digits() {
        assert_eq!(length_token(b"0"), Some(0));
        assert_eq!(length_token(b"1234"), Some(1234));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5 ",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(length_token(bad), None, "{}", bad.escape_ascii());
        }
    }
}
