//! The forwarding contract: the only client header fields that reach an upstream, per route
//! class. Everything else the client sent stays behind; the gateway adds its own fields (the
//! tenant header, `Host`, and for bodies it re-serialised their canonical `Content-Type`).
//!
//! The upstreams are Go programs whose header parsing differs from ours, so the lists are short
//! and name only fields whose value cannot change what the upstream stores or whom it answers
//! for. docs/routes.md ("The forwarding contract") has the whole table.

use http::header::{self, HeaderName};
use http::HeaderMap;
use pingora::http::RequestHeader;

use super::request_id::REQUEST_ID_FIELD;

/// Reads of the query upstream (PromQL, `match[]`, pass-through routes), GET or POST form.
pub static READ: [HeaderName; 4] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::USER_AGENT,
    REQUEST_ID_FIELD,
];

/// The web UI's pages and static assets: a browser's content negotiation and revalidation.
pub static UI: [HeaderName; 7] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::USER_AGENT,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    REQUEST_ID_FIELD,
];

/// Writes (remote write, OTLP): the body's `Content-Type`, `Content-Encoding` and version
/// header are the gateway's own, written for the format it decided.
pub static WRITE: [HeaderName; 2] = [header::USER_AGENT, REQUEST_ID_FIELD];

/// `Ok` when the request's media type (its Content-Type before any parameter) is `media`,
/// compared ASCII case-insensitively; else a 415 saying what `route` takes.
pub fn require_media_type(
    headers: &HeaderMap,
    media: &str,
    route: &str,
) -> Result<(), super::respond::Refusal> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let given = ct.split(|b| *b == b';').next().unwrap_or_default();
    if given.trim_ascii().eq_ignore_ascii_case(media.as_bytes()) {
        return Ok(());
    }
    Err(super::respond::Refusal::new(
        415,
        format!(
            "{route} take {media} bodies, not {:?}",
            String::from_utf8_lossy(ct)
        ),
    ))
}

/// A new map holding the `allowed` fields of `from` (every value of each), with room for
/// `room` more.
pub fn copy(from: &HeaderMap, allowed: &[HeaderName], room: usize) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(allowed.len() + room);
    for name in allowed {
        for v in from.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// Removes every field of `req` that is not `allowed` (all its values). No allocation when
/// there is nothing to remove; a request has a handful of fields, so the repeated scan is
/// cheaper than collecting the names first.
pub fn retain(req: &mut RequestHeader, allowed: &[HeaderName]) {
    while let Some(name) = req.headers.keys().find(|k| !allowed.contains(k)).cloned() {
        req.remove_header(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fields: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/api/v1/query?query=up", None).unwrap();
        for (k, v) in fields {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn names(req: &RequestHeader) -> Vec<String> {
        let mut n: Vec<String> = req
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        n.sort();
        n
    }

    #[test]
    fn only_the_allowed_fields_stay() {
        let mut req = request(&[
            ("Host", "gw"),
            ("Authorization", "Basic YTpi"),
            ("Cookie", "whizard_session=x"),
            ("THANOS-TENANT", "team-b"),
            ("X-Scope-OrgID", "team-b"),
            ("Accept", "application/json"),
            ("accept", "text/plain"),
            ("User-Agent", "promtool"),
            ("X-Request-Id", "abc"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Cache-Control", "no-store"),
            ("If-None-Match", "\"e\""),
        ]);
        retain(&mut req, &READ);
        assert_eq!(
            names(&req),
            [
                "accept: application/json",
                "accept: text/plain",
                "user-agent: promtool",
                "x-request-id: abc"
            ]
        );
        // The request still serialises: pingora keeps a map of the client's spellings beside
        // the fields, and removal keeps both in step.
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let text = String::from_utf8(wire).unwrap();
        assert!(
            !text.to_ascii_lowercase().contains("authorization"),
            "{text}"
        );
        assert_eq!(text.matches("\r\n").count(), 4, "{text}");
    }

    #[test]
    fn the_ui_keeps_revalidation_and_nothing_tenant_related() {
        let mut req = request(&[
            ("If-None-Match", "\"e\""),
            ("If-Modified-Since", "Sat, 05 Dec 2026 00:00:00 GMT"),
            ("Accept-Language", "de"),
            ("Authorization", "Bearer x"),
            ("thanos-tenant", "team-b"),
        ]);
        retain(&mut req, &UI);
        assert_eq!(req.headers.len(), 3);
        assert!(req.headers.get("authorization").is_none());
    }

    #[test]
    fn copy_takes_every_value_of_the_allowed_names_only() {
        let mut from = HeaderMap::new();
        from.append("accept", "a".parse().unwrap());
        from.append("accept", "b".parse().unwrap());
        from.append("authorization", "Basic x".parse().unwrap());
        from.append("content-type", "text/plain".parse().unwrap());
        let out = copy(&from, &WRITE, 3);
        assert!(out.is_empty());
        let out = copy(&from, &READ, 1);
        assert_eq!(out.get_all("accept").iter().count(), 2);
        assert_eq!(out.len(), 2);
    }
}
