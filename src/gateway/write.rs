//! The write routes: remote_write (labels spliced into every series) and OTLP (passed).
//!
//! The body is read whole, validated and rewritten before anything goes upstream. The answer is
//! the receive upstream's own: 2xx only when it accepted the data; 5xx and 429 are passed back
//! so the agent retries.

use super::contract;
use super::forward::{self, UpstreamFailure};
use super::proxy::{insert_tenant_header, read_body};
use super::respond::Refusal;
use super::Runtime;
use crate::config::Upstream;
use crate::metrics::metrics;
use crate::remote_write;
use bytes::Bytes;
use pingora::proxy::Session;
use std::sync::Arc;

fn url_of(up: &Upstream) -> String {
    format!(
        "{}://{}{}",
        if up.tls { "https" } else { "http" },
        up.address,
        up.path
    )
}

/// The one value of a field that decides how a body is read: absent, or given once in
/// visible ASCII. A field given twice, or with bytes a Go server may read differently (or as
/// absent), is refused: the gateway and the upstream must decide the same format.
fn format_field<'a>(
    session: &'a Session,
    name: &http::header::HeaderName,
) -> Result<Option<&'a str>, Refusal> {
    let mut values = session.req_header().headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::new(415, format!("{name} is given more than once")));
    }
    match value.to_str() {
        Ok(v)
            if v.bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) =>
        {
            Ok(Some(v))
        }
        _ => Err(Refusal::new(
            415,
            format!(
                "{name} {:?} is not plain ASCII text",
                String::from_utf8_lossy(value.as_bytes())
            ),
        )),
    }
}

const RW_VERSION: http::header::HeaderName =
    http::header::HeaderName::from_static("x-prometheus-remote-write-version");

pub async fn remote_write(
    session: &mut Session,
    rt: &Arc<Runtime>,
    tenant: &str,
) -> Result<(), Refusal> {
    let Some(t) = rt.config.tenants.get(tenant) else {
        return Err(Refusal::new(
            403,
            format!("tenant {tenant:?} is not configured"),
        ));
    };
    let cap = t.limits.max_body_bytes;
    let format = remote_write::detect_format(
        format_field(session, &http::header::CONTENT_TYPE)?,
        format_field(session, &http::header::CONTENT_ENCODING)?,
        format_field(session, &RW_VERSION)?,
    )
    .map_err(|e| Refusal::new(e.status(), e.to_string()))?;
    let labels = rt
        .write_labels
        .get(tenant)
        .ok_or_else(|| Refusal::new(403, format!("tenant {tenant:?} is not configured")))?;
    let body = read_body(session, cap).await?;
    let rewritten = remote_write::rewrite_body(format, &body, labels, cap as usize)
        .map_err(|e| Refusal::new(e.status(), e.to_string()))?;
    let stats = rewritten.stats;
    rt.limiters
        .admit_samples(tenant, stats.samples + stats.histograms)
        .map_err(|over| super::proxy::over_limit(tenant, &over))?;
    // Nothing to inject: the validated body goes upstream as the client sent it.
    let outgoing = rewritten.body.map_or(body, Bytes::from);

    // The body goes in the format the gateway decided and rewrote, said in that format's own
    // words: never the client's Content-Type or version bytes.
    let mut headers = contract::copy(&session.req_header().headers, &contract::WRITE, 4);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    headers.insert(RW_VERSION, http::HeaderValue::from_static(format.version()));
    headers.insert(
        http::header::CONTENT_ENCODING,
        http::HeaderValue::from_static("snappy"),
    );
    insert_tenant_header(&mut headers, rt, tenant)?;
    let up = &rt.config.upstreams.receive;
    let answer = forward::exchange(
        &rt.client,
        http::Method::POST,
        &url_of(up),
        headers.clone(),
        outgoing.clone(),
    )
    .await
    .map_err(|f| upstream_failed("receive", f))?;
    if (200..300).contains(&answer.status) {
        copy_to_targets(rt, tenant, &headers, &outgoing);
        let m = metrics();
        m.remote_write_samples
            .with_label_values(&[tenant])
            .inc_by(stats.samples + stats.histograms);
        m.remote_write_series
            .with_label_values(&[tenant])
            .inc_by(stats.series);
    } else if answer.status >= 500 || answer.status == 429 {
        metrics()
            .upstream_errors
            .with_label_values(&[
                "receive",
                if answer.status == 429 {
                    "throttled"
                } else {
                    "5xx"
                },
            ])
            .inc();
    }
    forward::relay(session, answer)
        .await
        .map_err(|e| Refusal::new(400, e.to_string()))
}

pub async fn otlp(session: &mut Session, rt: &Arc<Runtime>, tenant: &str) -> Result<(), Refusal> {
    let Some(up) = rt.config.upstreams.otlp.as_ref() else {
        return Err(Refusal::new(
            404,
            "OTLP is not configured on this gateway (upstreams.otlp)",
        ));
    };
    let cap = rt
        .config
        .tenants
        .get(tenant)
        .map(|t| t.limits.max_body_bytes)
        .unwrap_or(10 << 20);
    let (content_type, encoding) = otlp_format(
        format_field(session, &http::header::CONTENT_TYPE)?,
        format_field(session, &http::header::CONTENT_ENCODING)?,
    )?;
    let body = read_body(session, cap).await?;
    let mut headers = contract::copy(&session.req_header().headers, &contract::WRITE, 3);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    if let Some(encoding) = encoding {
        headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static(encoding),
        );
    }
    insert_tenant_header(&mut headers, rt, tenant)?;
    let answer = forward::exchange(&rt.client, http::Method::POST, &url_of(up), headers, body)
        .await
        .map_err(|f| upstream_failed("otlp", f))?;
    forward::relay(session, answer)
        .await
        .map_err(|e| Refusal::new(400, e.to_string()))
}

/// The canonical Content-Type and Content-Encoding of an OTLP/HTTP body: protobuf or JSON,
/// plain or gzip (the OTLP specification's choices). The body itself is passed as sent: the
/// tenant travels in the header the gateway sets, never in the body.
fn otlp_format(
    content_type: Option<&str>,
    encoding: Option<&str>,
) -> Result<(&'static str, Option<&'static str>), Refusal> {
    const PROTOBUF: &str = "application/x-protobuf";
    const JSON: &str = "application/json";
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    let content_type = if media.eq_ignore_ascii_case(PROTOBUF) {
        PROTOBUF
    } else if media.eq_ignore_ascii_case(JSON) {
        JSON
    } else {
        return Err(Refusal::new(
            415,
            format!("OTLP takes Content-Type {PROTOBUF} or {JSON}, not {content_type:?}"),
        ));
    };
    let encoding = match encoding.map(str::trim) {
        None | Some("") => None,
        Some(e) if e.eq_ignore_ascii_case("identity") => None,
        Some(e) if e.eq_ignore_ascii_case("gzip") => Some("gzip"),
        Some(e) => {
            return Err(Refusal::new(
                415,
                format!("OTLP takes Content-Encoding gzip or none, not {e:?}"),
            ))
        }
    };
    Ok((content_type, encoding))
}

/// Sends a copy of an accepted write to every `upstreams.remote_writes` target of the tenant,
/// in the background: a target's failure is logged and counted, and never changes the answer
/// to the client (the primary receive decides it).
fn copy_to_targets(rt: &Arc<Runtime>, tenant: &str, headers: &http::HeaderMap, body: &Bytes) {
    for target in &rt.config.upstreams.remote_writes {
        if target.tenants.as_ref().is_some_and(|t| !t.contains(tenant)) {
            continue;
        }
        let mut headers = headers.clone();
        for (k, v) in &target.headers {
            headers.insert(k.clone(), v.clone());
        }
        let client = rt.client.clone();
        let url = url_of(&target.upstream);
        let name = target.name.clone();
        let timeout = target.timeout;
        let body = body.clone();
        tokio::spawn(async move {
            let m = metrics();
            let sent = tokio::time::timeout(
                timeout,
                forward::exchange(&client, http::Method::POST, &url, headers, body),
            )
            .await;
            let result = match sent {
                Ok(Ok(a)) if (200..300).contains(&a.status) => "success",
                Ok(Ok(a)) => {
                    tracing::warn!(target_name = %name, status = a.status, "remote write copy refused");
                    m.upstream_errors
                        .with_label_values(&[&name, "status"])
                        .inc();
                    "refused"
                }
                Ok(Err(f)) => {
                    tracing::warn!(target_name = %name, kind = f.kind(), "remote write copy failed");
                    m.upstream_errors
                        .with_label_values(&[&name, f.kind()])
                        .inc();
                    "failed"
                }
                Err(_) => {
                    tracing::warn!(target_name = %name, "remote write copy timed out");
                    m.upstream_errors
                        .with_label_values(&[&name, "timeout"])
                        .inc();
                    "failed"
                }
            };
            m.remote_write_copies
                .with_label_values(&[&name, result])
                .inc();
        });
    }
}

fn upstream_failed(upstream: &str, f: UpstreamFailure) -> Refusal {
    metrics()
        .upstream_errors
        .with_label_values(&[upstream, f.kind()])
        .inc();
    f.refusal(upstream)
}
