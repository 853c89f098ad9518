//! Helpers every request handler shares: reading a body under a limit, the tenant header of
//! forwarded requests, and the answer to a tenant over a limit.

use super::respond::Refusal;
use bytes::Bytes;
use pingora::proxy::Session;
use whizard_core::metrics::metrics;

/// Largest body buffer reserved from a Content-Length alone (a remote-write body is usually
/// tens to hundreds of KiB).
const PRESIZE_MAX: u64 = 1 << 20;

/// Reads a whole request body, refusing it past `cap` bytes.
pub async fn read_body(session: &mut Session, cap: u64) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            413,
            format!("request body is larger than the limit of {cap} bytes"),
        )
    };
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap) {
        return Err(too_large());
    }
    // One allocation of the declared size instead of doubling as chunks arrive. Only up to
    // PRESIZE_MAX: a client that declares a large body and then stalls must not reserve
    // memory it never sends.
    let presize = declared.unwrap_or(0).min(PRESIZE_MAX) as usize;
    let mut buf = bytes::BytesMut::with_capacity(presize);
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if (buf.len() + chunk.len()) as u64 > cap {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(Refusal::new(
                    400,
                    format!("cannot read the request body: {e}"),
                ))
            }
        }
    }
}

/// Sets the tenant header on a forwarded request.
pub fn insert_tenant_header(
    headers: &mut http::HeaderMap,
    name: &http::HeaderName,
    value: &str,
) -> Result<(), Refusal> {
    let value =
        http::HeaderValue::from_str(value).map_err(|_| Refusal::new(400, "invalid tenant id"))?;
    headers.insert(name.clone(), value);
    Ok(())
}

/// A 429 for a tenant over one of its limits.
pub fn over_limit(tenant: &str, over: &whizard_core::limits::OverLimit) -> Refusal {
    metrics()
        .limit_rejections
        .with_label_values(&[tenant, over.limit])
        .inc();
    Refusal::new(429, over.message.clone())
        .with_header("retry-after", over.retry_after_seconds().to_string())
}
