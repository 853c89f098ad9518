//! The write routes: remote_write (labels spliced into every series) and OTLP (passed).
//!
//! The body is read whole, validated and rewritten before anything goes upstream. The answer is
//! the receive upstream's own: 2xx only when it accepted the data; 5xx and 429 are passed back
//! so the agent retries.

use super::forward::{self, UpstreamFailure};
use super::request::{insert_tenant_header, over_limit, read_body};
use super::respond::Refusal;
use super::runtime::Runtime;
use super::{contract, upstream};
use bytes::Bytes;
use pingora::proxy::Session;
use std::sync::Arc;
use whizard_core::auth::Identity;
use whizard_core::metrics::metrics;
use whizard_core::remote_write;

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
        .map_err(|over| over_limit(tenant, &over))?;
    // Nothing to inject: the validated body goes upstream as the client sent it.
    let outgoing = rewritten.body.map_or(body, Bytes::from);
    let headers = part_headers(session, rt, format, tenant)?;
    let answer = send_part(rt, tenant, headers, outgoing, stats).await?;
    forward::relay(session, answer)
        .await
        .map_err(|e| Refusal::new(400, e.to_string()))
}

/// A remote write of a `write_routing: by_label` identity that names no tenant: each series
/// goes to the tenant its `tenancy.label` value names (see [`remote_write::split_by_label`]),
/// every part injected with its tenant's labels and sent with its tenant's header, at once.
/// The answer is 2xx only when every part was accepted; otherwise the worst answer (5xx, then
/// 429, then any other) goes back, so the agent retries the whole body. Parts already
/// accepted are sent again then: the same samples at the same timestamps, which the TSDB
/// takes as duplicates, not errors.
pub async fn remote_write_by_label(
    session: &mut Session,
    rt: &Arc<Runtime>,
    identity: &Identity,
    default_tenant: Option<&str>,
) -> Result<(), Refusal> {
    // The strictest body limit of the writer's tenants: the body is read before it is split.
    let cap = identity
        .tenants
        .iter()
        .filter_map(|t| rt.config.tenants.get(t))
        .map(|t| t.limits.max_body_bytes)
        .min()
        .ok_or_else(|| Refusal::new(403, "none of this identity's tenants is configured"))?;
    let format = remote_write::detect_format(
        format_field(session, &http::header::CONTENT_TYPE)?,
        format_field(session, &http::header::CONTENT_ENCODING)?,
        format_field(session, &RW_VERSION)?,
    )
    .map_err(|e| Refusal::new(e.status(), e.to_string()))?;
    let body = read_body(session, cap).await?;
    let refuse = |e: remote_write::RemoteWriteError| Refusal::new(e.status(), e.to_string());
    let decoded = remote_write::decompress(&body, cap as usize).map_err(refuse)?;
    remote_write::validate(format, &decoded).map_err(refuse)?;
    let may_write = |t: &str| {
        identity
            .tenants
            .binary_search_by(|x| x.as_str().cmp(t))
            .is_ok()
    };
    let routing = remote_write::Routing {
        label: &rt.config.tenancy.label,
        default_tenant,
        allowed: &may_write,
    };
    let parts = remote_write::split_by_label(format, &decoded, &routing).map_err(refuse)?;
    let mut sends = Vec::with_capacity(parts.len());
    let mut _inflight = Vec::new();
    for part in parts {
        let tenant = part.tenant;
        let labels = rt
            .write_labels
            .get(&tenant)
            .ok_or_else(|| Refusal::new(403, format!("tenant {tenant:?} is not configured")))?;
        let mut spliced = Vec::new();
        let stats =
            remote_write::inject(format, &part.decoded, labels, &mut spliced).map_err(refuse)?;
        let over = |over| over_limit(&tenant, &over);
        if let Some(guard) = rt.limiters.admit_request(&tenant).map_err(over)? {
            _inflight.push(guard);
        }
        rt.limiters
            .admit_samples(&tenant, stats.samples + stats.histograms)
            .map_err(over)?;
        let outgoing = Bytes::from(remote_write::compress(&spliced).map_err(refuse)?);
        let headers = part_headers(session, rt, format, &tenant)?;
        sends.push(async move { send_part(rt, &tenant, headers, outgoing, stats).await });
    }
    let answers = futures_util::future::join_all(sends).await;
    let mut worst: Option<forward::Answer> = None;
    let mut accepted = Vec::new();
    for answer in answers {
        let answer = answer?;
        let rank = |a: &forward::Answer| match a.status {
            200..=299 => 0,
            500.. => 3,
            429 => 2,
            _ => 1,
        };
        if rank(&answer) == 0 {
            accepted.push(answer);
        } else if worst.as_ref().is_none_or(|w| rank(&answer) > rank(w)) {
            worst = Some(answer);
        }
    }
    let answer = match worst {
        Some(w) => w,
        None => merge_accepted(accepted),
    };
    forward::relay(session, answer)
        .await
        .map_err(|e| Refusal::new(400, e.to_string()))
}

/// One answer for parts that were all accepted: the first part's, with the remote write 2.0
/// counts of written samples, histograms and exemplars summed over the parts (kept only when
/// every part reported them).
fn merge_accepted(mut accepted: Vec<forward::Answer>) -> forward::Answer {
    const WRITTEN: [&str; 3] = [
        "x-prometheus-remote-write-samples-written",
        "x-prometheus-remote-write-histograms-written",
        "x-prometheus-remote-write-exemplars-written",
    ];
    let mut first = if accepted.is_empty() {
        forward::Answer {
            status: 204,
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
        }
    } else {
        accepted.remove(0)
    };
    for name in WRITTEN {
        let count = |a: &forward::Answer| {
            a.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let total = accepted.iter().fold(count(&first), |sum, a| {
            sum.zip(count(a)).map(|(x, y)| x + y)
        });
        match total {
            Some(n) => {
                first.headers.insert(name, http::HeaderValue::from(n));
            }
            None => {
                first.headers.remove(name);
            }
        }
    }
    first
}

/// The headers of one remote-write body for the receive upstream: the body's format in its
/// own words (never the client's Content-Type or version bytes) and the tenant's header.
fn part_headers(
    session: &Session,
    rt: &Runtime,
    format: remote_write::Format,
    tenant: &str,
) -> Result<http::HeaderMap, Refusal> {
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
    insert_tenant_header(&mut headers, &rt.tenant_header_name, tenant)?;
    Ok(headers)
}

/// Sends one tenant's body to the receive upstream and returns its answer; counts what it
/// accepted and copies it to the tenant's `remote_writes` targets.
async fn send_part(
    rt: &Arc<Runtime>,
    tenant: &str,
    headers: http::HeaderMap,
    body: Bytes,
    stats: remote_write::WriteStats,
) -> Result<forward::Answer, Refusal> {
    let up = &rt.config.upstreams.receive;
    let answer = forward::exchange(
        &rt.client,
        http::Method::POST,
        &upstream::url(up),
        headers.clone(),
        body.clone(),
    )
    .await
    .map_err(|f| upstream_failed("receive", f))?;
    if (200..300).contains(&answer.status) {
        copy_to_targets(rt, tenant, &headers, &body);
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
    Ok(answer)
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
    insert_tenant_header(&mut headers, &rt.tenant_header_name, tenant)?;
    let answer = forward::exchange(
        &rt.client,
        http::Method::POST,
        &upstream::url(up),
        headers,
        body,
    )
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
        let url = upstream::url(&target.upstream);
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
