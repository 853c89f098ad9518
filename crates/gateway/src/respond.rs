//! Answers the gateway writes itself, in the Prometheus API error format.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// A refusal: status, Prometheus `errorType`, and a message for the user.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Prometheus's `errorType` for this status.
    pub fn error_type(&self) -> &'static str {
        match self.status {
            400 | 413 | 415 => "bad_data",
            401 | 403 => "unauthorized",
            404 => "not_found",
            405 => "method_not_allowed",
            429 => "too_many_requests",
            502 | 503 => "unavailable",
            504 => "timeout",
            _ => "internal",
        }
    }

    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({
            "status": "error",
            "errorType": self.error_type(),
            "error": self.message,
        });
        Bytes::from(v.to_string())
    }
}

/// Writes a complete response.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + headers.len()))?;
    resp.insert_header("content-type", content_type)?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    for (name, value) in headers {
        resp.append_header(*name, value.as_str())?;
    }
    super::request_id::echo_request_id(session, &mut resp)?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes a refusal as a Prometheus API error.
pub async fn refuse(session: &mut Session, r: &Refusal) -> pingora::Result<()> {
    if !session.is_body_done() {
        // The request body was not read: do not try to parse the rest as a next request.
        session.set_keepalive(None);
    }
    send(session, r.status, "application/json", &r.headers, r.body()).await
}
