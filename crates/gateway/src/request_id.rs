//! The request id: one per request (the client's when sane, else made up by the request
//! filter), sent upstream and echoed on every answer.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub const REQUEST_ID: &str = "x-request-id";
/// The same, for lookups: a `&str` key is parsed into a name on every lookup. (pingora's
/// `insert_header` parses any name it is given, and copies a `HeaderName` that is not a
/// standard one, so insertions keep the `&str`.)
pub const REQUEST_ID_FIELD: http::HeaderName = http::HeaderName::from_static(REQUEST_ID);

/// The request id of a request, if any.
pub fn request_id(session: &Session) -> Option<&http::HeaderValue> {
    session.req_header().headers.get(&REQUEST_ID_FIELD)
}

/// Echoes the request id on an answer: every answer carries the id its request had.
pub fn echo_request_id(session: &Session, resp: &mut ResponseHeader) -> pingora::Result<()> {
    if let Some(id) = request_id(session) {
        resp.insert_header(REQUEST_ID, never_indexed(id.clone()))?;
    }
    Ok(())
}

/// A request id marked for HTTP/2 header compression as never to be indexed: every answer's id
/// is new, so indexing it only churns the connection's HPACK table — each insertion evicts an
/// entry, and every later id is compared with all the ids the table holds (a fifth of the
/// gateway's instructions per HTTP/2 answer went there). HTTP/1.1 ignores the mark.
fn never_indexed(mut id: http::HeaderValue) -> http::HeaderValue {
    id.set_sensitive(true);
    id
}
