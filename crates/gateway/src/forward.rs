//! Forwarding of requests whose body the gateway has read and rewritten (remote write, POST
//! forms). The body is complete and validated before anything is sent upstream; the upstream's
//! status, headers and body go back to the client as they are.

use super::h1_fields::HOP_BY_HOP;
use super::respond::Refusal;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// What went wrong talking to an upstream; the `kind` label of `whizard_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    Connect,
    Timeout,
    Protocol,
}

impl UpstreamFailure {
    pub fn kind(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Protocol => "protocol",
        }
    }

    pub fn refusal(self, upstream: &str) -> Refusal {
        match self {
            UpstreamFailure::Connect => {
                Refusal::new(502, format!("upstream {upstream} is unreachable"))
            }
            UpstreamFailure::Timeout => Refusal::new(504, format!("upstream {upstream} timed out")),
            UpstreamFailure::Protocol => {
                Refusal::new(502, format!("upstream {upstream} sent an invalid response"))
            }
        }
    }
}

fn classify(e: &reqwest::Error) -> UpstreamFailure {
    if e.is_timeout() {
        UpstreamFailure::Timeout
    } else if e.is_connect() {
        UpstreamFailure::Connect
    } else {
        UpstreamFailure::Protocol
    }
}

/// An upstream's complete answer, read into memory (write responses are small).
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Sends one request and reads the whole answer.
pub async fn exchange(
    client: &reqwest::Client,
    method: http::Method,
    url: &str,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Answer, UpstreamFailure> {
    let resp = client
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| classify(&e))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Sends one request and streams the answer to the client, with `set_cookie` (a renewed
/// session cookie) if any. Returns the status sent, or the failure before anything was sent.
pub async fn stream(
    session: &mut Session,
    client: &reqwest::Client,
    method: http::Method,
    url: &str,
    headers: http::HeaderMap,
    body: Bytes,
    set_cookie: Option<&str>,
) -> Result<u16, StreamError> {
    let mut resp = client
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| StreamError::Upstream(classify(&e)))?;
    let status = resp.status().as_u16();
    let mut header = response_header(status, resp.headers()).map_err(StreamError::Downstream)?;
    super::request_id::echo_request_id(session, &mut header).map_err(StreamError::Downstream)?;
    if let Some(cookie) = set_cookie {
        header
            .append_header(http::header::SET_COOKIE, cookie)
            .map_err(StreamError::Downstream)?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await
        .map_err(StreamError::Downstream)?;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => session
                .write_response_body(Some(chunk), false)
                .await
                .map_err(StreamError::Downstream)?,
            Ok(None) => break,
            // Headers are out: all we can do is cut the response short.
            Err(e) => return Err(StreamError::Truncated(classify(&e))),
        }
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(StreamError::Downstream)?;
    Ok(status)
}

#[derive(Debug)]
pub enum StreamError {
    /// Nothing was sent to the client yet.
    Upstream(UpstreamFailure),
    /// The upstream failed mid-body.
    Truncated(UpstreamFailure),
    Downstream(Box<pingora::Error>),
}

/// Writes an upstream answer to the client.
pub async fn relay(session: &mut Session, answer: Answer) -> pingora::Result<()> {
    let mut header = response_header(answer.status, &answer.headers)?;
    header.insert_header("content-length", answer.body.len().to_string())?;
    super::request_id::echo_request_id(session, &mut header)?;
    let empty = answer.body.is_empty();
    session
        .write_response_header(Box::new(header), empty)
        .await?;
    if !empty {
        session.write_response_body(Some(answer.body), true).await?;
    }
    Ok(())
}

fn response_header(status: u16, headers: &http::HeaderMap) -> pingora::Result<ResponseHeader> {
    let mut out = ResponseHeader::build(status, Some(headers.len()))?;
    for (name, value) in headers {
        // The body is whole: its length is written anew.
        if HOP_BY_HOP.contains(name) || name == http::header::CONTENT_LENGTH {
            continue;
        }
        out.append_header(name.clone(), value.clone())?;
    }
    Ok(out)
}
