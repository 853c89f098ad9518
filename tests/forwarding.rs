//! Issue 26, end to end: the gateway forwards only what it understood. Remote-write bodies are
//! checked the way Prometheus 3 decides their format; only the contract's header fields reach
//! an upstream; `/metrics` and `/-/reload` are never on the tenant listener; credentials reach
//! no log; an empty POST body is no body (vmalert as a real tenant ruler); pipelined GETs are
//! answered in order, each with its own credentials, and where pingora's engine does not serve
//! pipelining the failure is the client's doing.

mod common;
mod fixture;

use common::*;
use fixture::*;
use prost::Message;
use serde_json::Value;
use std::time::Duration;

// ---- remote-write bodies, and Prometheus 3's reading of them -------------------------------

use common::prompb::{Label, Sample, TimeSeries as SeriesV1, WriteRequest as WriteRequestV1};

#[derive(Clone, PartialEq, Message)]
struct SeriesV2 {
    #[prost(uint32, repeated, tag = "1")]
    labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
struct RequestV2 {
    #[prost(string, repeated, tag = "4")]
    symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    timeseries: Vec<SeriesV2>,
}

/// The labels every test series claims: another tenant's id among them.
const CLAIMED: [(&str, &str); 3] = [("__name__", "up"), ("job", "x"), ("tenant_id", "team-b")];

fn v1_body() -> Vec<u8> {
    let series = SeriesV1 {
        labels: CLAIMED
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: vec![Sample {
            value: 1.0,
            timestamp: 1000,
        }],
    };
    let req = WriteRequestV1 {
        timeseries: vec![series.clone(), series],
    };
    whizard::remote_write::compress(&req.encode_to_vec()).unwrap()
}

fn v2_body() -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut refs = Vec::new();
    for (n, v) in CLAIMED {
        for s in [n, v] {
            refs.push(symbols.len() as u32);
            symbols.push(s.to_string());
        }
    }
    let series = SeriesV2 {
        labels_refs: refs,
        samples: vec![Sample {
            value: 1.0,
            timestamp: 1000,
        }],
    };
    let req = RequestV2 {
        symbols,
        timeseries: vec![series.clone(), series],
    };
    whizard::remote_write::compress(&req.encode_to_vec()).unwrap()
}

/// How Prometheus 3's remote-write handler picks the message type from Content-Type
/// (storage/remote/write_handler.go, parseProtoMsg): empty means 1.0; the media type must be
/// exactly `application/x-protobuf`; parameters split on `;` and `=`, a key compared exactly;
/// the first `proto` decides.
fn prometheus3_format(content_type: Option<&str>) -> Result<&'static str, String> {
    let ct = content_type.unwrap_or("").trim();
    let ct = if ct.is_empty() {
        "application/x-protobuf"
    } else {
        ct
    };
    let mut parts = ct.split(';');
    if parts.next() != Some("application/x-protobuf") {
        return Err(format!("media type of {ct:?}"));
    }
    for p in parts {
        let pair: Vec<&str> = p.split('=').collect();
        if pair.len() != 2 {
            return Err(format!("parameter {p:?}"));
        }
        if pair[0] == "proto" {
            return match pair[1] {
                "prometheus.WriteRequest" => Ok("v1"),
                "io.prometheus.write.v2.Request" => Ok("v2"),
                other => Err(format!("proto {other:?}")),
            };
        }
    }
    Ok("v1")
}

/// Every series of a forwarded body, as (name, value) pairs, read the way Prometheus 3 would.
fn stored_series(content_type: Option<&str>, body: &[u8]) -> Vec<Vec<(String, String)>> {
    let format = prometheus3_format(content_type)
        .unwrap_or_else(|e| panic!("Prometheus 3 would refuse the forwarded request: {e}"));
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .expect("forwarded body is snappy");
    match format {
        "v1" => WriteRequestV1::decode(raw.as_slice())
            .expect("forwarded 1.0 body decodes")
            .timeseries
            .into_iter()
            .map(|s| s.labels.into_iter().map(|l| (l.name, l.value)).collect())
            .collect(),
        _ => {
            let req = RequestV2::decode(raw.as_slice()).expect("forwarded 2.0 body decodes");
            req.timeseries
                .iter()
                .map(|s| {
                    s.labels_refs
                        .chunks(2)
                        .map(|p| {
                            (
                                req.symbols[p[0] as usize].clone(),
                                req.symbols[p[1] as usize].clone(),
                            )
                        })
                        .collect()
                })
                .collect()
        }
    }
}

/// The two-tenant gateway in front of a recording upstream that answers every request 204.
async fn gateway_before_a_recorder() -> (RecordingUpstream, Gateway) {
    let recorder = RecordingUpstream::start_with(Reply::new(204, ""));
    let gw = Gateway::start(&two_tenant_config(
        &recorder.url(),
        &format!("{}/api/v1/receive", recorder.url()),
        "",
    ))
    .await;
    (recorder, gw)
}

#[tokio::test]
async fn every_remote_write_the_upstream_gets_carries_the_tenant_label_whatever_the_headers() {
    let (recorder, gw) = gateway_before_a_recorder().await;
    let content_types: Vec<Option<&[u8]>> = vec![
        None,
        Some(b""),
        Some(b"application/x-protobuf"),
        Some(b"application/x-protobuf;proto=prometheus.WriteRequest"),
        Some(b"application/x-protobuf;proto=io.prometheus.write.v2.Request"),
        Some(b"application/x-protobuf; proto=io.prometheus.write.v2.Request"),
        Some(b"application/x-protobuf;proto=\"io.prometheus.write.v2.Request\""),
        Some(b"APPLICATION/X-PROTOBUF;PROTO=io.prometheus.write.v2.Request"),
        Some(b"application/x-protobuf;charset=utf-8;proto=io.prometheus.write.v2.Request"),
        Some(b"application/x-protobuf;proto=io.prometheus.write.v2.Request\xff"),
        Some(b"application/x-protobuf\xc3\xa9;proto=io.prometheus.write.v2.Request"),
        Some(b"application/x-protobuf;proto=io.prometheus.write.v2.Request\x80x"),
        Some(b"application/x-protobuf;proto=prometheus.WriteRequest;proto=io.prometheus.write.v2.Request"),
        Some(b"application/x-protobuf;proto"),
        Some(b"application/x-protobuf;proto=io.prometheus.write.v2.Request;x=1=2"),
    ];
    let versions: [Option<&[u8]>; 4] =
        [None, Some(b"0.1.0"), Some(b"2.0.0"), Some(b"2.0.0\xc2\xa0")];
    let bodies = [("1.0", v1_body()), ("2.0", v2_body())];
    let url = format!("{}/api/v1/write", gw.url());
    let (mut accepted, mut refused) = (0, 0);
    for (kind, body) in &bodies {
        for ct in &content_types {
            for version in &versions {
                recorder.clear();
                let mut req = new_http_client()
                    .post(&url)
                    .basic_auth(AGENT_A.0, Some(AGENT_A.1))
                    .header("content-encoding", "snappy")
                    .body(body.clone());
                if let Some(ct) = ct {
                    req = req.header(
                        "content-type",
                        reqwest::header::HeaderValue::from_bytes(ct).unwrap(),
                    );
                }
                if let Some(v) = version {
                    req = req.header(
                        "x-prometheus-remote-write-version",
                        reqwest::header::HeaderValue::from_bytes(v).unwrap(),
                    );
                }
                let status = req.send().await.unwrap().status().as_u16();
                let case = format!(
                    "{kind} body, Content-Type {:?}, version {:?}",
                    ct.map(String::from_utf8_lossy),
                    version.map(String::from_utf8_lossy)
                );
                if status != 204 {
                    assert!(
                        [400, 415].contains(&status),
                        "{case}: refused with {status}"
                    );
                    assert_eq!(recorder.count(), 0, "{case}: refused yet forwarded");
                    refused += 1;
                    continue;
                }
                accepted += 1;
                let got = recorder.wait_for_requests(1, Duration::from_secs(10)).await;
                let forwarded = &got[0];
                let series = stored_series(forwarded.header("content-type"), &forwarded.body);
                assert_eq!(series.len(), 2, "{case}: series the upstream reads");
                for s in series {
                    let tenant: Vec<&str> = s
                        .iter()
                        .filter(|(n, _)| n == "tenant_id")
                        .map(|(_, v)| v.as_str())
                        .collect();
                    assert_eq!(tenant, ["team-a"], "{case}: a stored series {s:?}");
                }
            }
        }
    }
    // The canonical forms of both versions (and Prometheus 2's plain 1.0) go through; the
    // corpus is not all refusals.
    assert!(accepted >= 10, "{accepted} accepted, {refused} refused");
    assert!(refused >= 40, "{accepted} accepted, {refused} refused");

    // A 2.0 body under a non-ASCII Content-Type: 415, not read as 1.0 and passed.
    let r = new_http_client()
        .post(&url)
        .basic_auth(AGENT_A.0, Some(AGENT_A.1))
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(
                b"application/x-protobuf;proto=io.prometheus.write.v2.Request\xff",
            )
            .unwrap(),
        )
        .body(v2_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // A 2.0 body without a Content-Type: read as 1.0, it carries 2.0's fields: 400.
    let r = new_http_client()
        .post(&url)
        .basic_auth(AGENT_A.0, Some(AGENT_A.1))
        .body(v2_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let msg: Value = r.json().await.unwrap();
    assert!(
        msg["error"].as_str().unwrap().contains("2.0"),
        "the error says why: {msg}"
    );
    // Content-Type twice: the gateway cannot know which one the upstream reads.
    let addr = format!("127.0.0.1:{}", gw.http_port());
    let auth = basic(AGENT_A);
    let (status, _) = raw_request(
        &addr,
        "POST",
        "/api/v1/write",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-protobuf"),
        ],
        Some((
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            &v2_body(),
        )),
    )
    .await;
    assert_eq!(status, 415);
}

// ---- header fields -------------------------------------------------------------------------

/// Field names of a recorded request, lowercased and sorted, without those every request has.
fn field_names(r: &Recorded) -> Vec<String> {
    let mut n: Vec<String> = r
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| !["host", "content-length", "connection"].contains(&k.as_str()))
        .collect();
    n.sort();
    n.dedup();
    n
}

#[tokio::test]
async fn only_the_contracts_header_fields_reach_an_upstream() {
    let (recorder, gw) = gateway_before_a_recorder().await;
    let addr = format!("127.0.0.1:{}", gw.http_port());
    let extra = [
        ("X-Forwarded-For", "10.9.9.9"),
        ("X-Scope-OrgID", "team-b"),
        // The tenant header names the caller's own tenant (another one would be a 403); the
        // client's copy is dropped and the gateway's set.
        ("Thanos-Tenant", "team-a"),
        ("Cache-Control", "no-store"),
        ("X-Http-Method-Override", "DELETE"),
        ("Cookie", "whizard_session=stolen"),
        ("Accept", "application/json"),
        ("User-Agent", "attacker/1"),
        ("Forwarded", "for=10.9.9.9"),
    ];
    let alice = basic(ALICE);
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    headers.push(("Authorization", alice.as_str()));

    // A plain GET (the short way), the same GET as HTTP/1.0-style close (pingora's engine
    // serves a request the short way leaves, e.g. with a body-less Content-Length), and a
    // POST form.
    let (status, _) = raw_request(&addr, "GET", "/api/v1/query?query=up", &headers, None).await;
    assert_eq!(status, 204);
    let mut with_length = headers.clone();
    with_length.push(("Content-Length", "0"));
    let (status, _) = raw_request(&addr, "GET", "/api/v1/labels", &with_length, None).await;
    assert_eq!(status, 204);
    let (status, _) = raw_request(
        &addr,
        "POST",
        "/api/v1/query",
        &headers,
        Some(("application/x-www-form-urlencoded", b"query=up")),
    )
    .await;
    assert_eq!(status, 204);
    let got = recorder.wait_for_requests(3, Duration::from_secs(10)).await;
    for r in &got {
        let mut want = vec!["accept", "thanos-tenant", "user-agent", "x-request-id"];
        if r.method == "POST" {
            want.push("content-type");
            want.sort();
        }
        assert_eq!(field_names(r), want, "{} {}", r.method, r.target);
        assert_eq!(r.header_all("thanos-tenant"), vec!["team-a"]);
        assert_eq!(r.header("user-agent"), Some("attacker/1"));
    }

    // A remote write: the gateway's own Content-Type and version, whatever the client said.
    recorder.clear();
    let agent = basic(AGENT_A);
    let mut write_headers: Vec<(&str, &str)> = extra.to_vec();
    write_headers.push(("Authorization", agent.as_str()));
    write_headers.push(("X-Prometheus-Remote-Write-Version", "0.1.0"));
    write_headers.push(("Content-Encoding", "SNAPPY"));
    let (status, _) = raw_request(
        &addr,
        "POST",
        "/api/v1/write",
        &write_headers,
        Some(("Application/X-Protobuf; charset=x", &v1_body())),
    )
    .await;
    assert_eq!(status, 204);
    let got = recorder.wait_for_requests(1, Duration::from_secs(10)).await;
    // `accept: */*` is the gateway's HTTP client's own default, not the client's field.
    assert_eq!(got[0].header("accept"), Some("*/*"));
    assert_eq!(
        field_names(&got[0]),
        [
            "accept",
            "content-encoding",
            "content-type",
            "thanos-tenant",
            "user-agent",
            "x-prometheus-remote-write-version",
            "x-request-id"
        ]
    );
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(got[0].header("content-encoding"), Some("snappy"));
    assert_eq!(
        got[0].header("x-prometheus-remote-write-version"),
        Some("0.1.0")
    );
}

// ---- the tenant listener -----------------------------------------------------------------

#[tokio::test]
async fn metrics_and_reload_are_only_on_the_metrics_listener() {
    let backend = RecordingUpstream::start();
    // No metrics listener at all: neither route exists for anyone.
    let config = two_tenant_config(&backend.url(), &backend.url(), "")
        .replace("  metrics: \"127.0.0.1:${METRICS_PORT}\"\n", "");
    let gw = Gateway::start(&config).await;
    let addr = format!("127.0.0.1:{}", gw.http_port());
    let ops = basic(OPS);
    for auth in [None, Some(ops.as_str())] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let (status, body) = raw_request(&addr, "GET", "/metrics", &headers, None).await;
        assert_eq!(status, 404, "{body}");
        assert!(!body.contains("whizard_"), "{body}");
        let (status, body) = raw_request(&addr, "POST", "/-/reload", &headers, None).await;
        assert_eq!(status, 404, "loopback clients get no reload either: {body}");
    }
    drop(gw);

    // With one: served there, and still not on the tenant listener.
    let gw = Gateway::start(&two_tenant_config(&backend.url(), &backend.url(), "")).await;
    let addr = format!("127.0.0.1:{}", gw.http_port());
    let (status, _) = raw_request(&addr, "GET", "/metrics", &[], None).await;
    assert_eq!(status, 404);
    let (status, _) = raw_request(&addr, "POST", "/-/reload", &[], None).await;
    assert_eq!(status, 404);
    assert!(gw.metrics_text().await.contains("whizard_build_info"));
    assert_eq!(gw.reload().await.0, 200);
}

// ---- logs ----------------------------------------------------------------------------------

#[tokio::test]
async fn no_credential_reaches_the_log_even_at_trace_level() {
    let backend = Backend::start().await;
    let gw = Gateway::start_with_env(
        &two_tenant_config(&backend.url(), &backend.write_url(), ""),
        &[("WHIZARD_LOG", "trace")],
    )
    .await;
    let addr = format!("127.0.0.1:{}", gw.http_port());
    let good = basic(ALICE);
    let wrong = basic(("alice", "not-alices-password-4711"));
    let cookie = "whizard_session=cookie-secret-0815";
    let bearer = "Bearer token-secret-2342";
    // The short way, pingora's engine (a POST form), a write, and refusals.
    for (method, path, auth, body) in [
        ("GET", "/api/v1/query?query=up", good.as_str(), None),
        (
            "POST",
            "/api/v1/query",
            good.as_str(),
            Some(("application/x-www-form-urlencoded", b"query=up".as_slice())),
        ),
        ("GET", "/api/v1/query?query=up", wrong.as_str(), None),
        ("GET", "/api/v1/query?query=up", bearer, None),
    ] {
        raw_request(
            &addr,
            method,
            path,
            &[("Authorization", auth), ("Cookie", cookie)],
            body,
        )
        .await;
    }
    let agent = basic(AGENT_A);
    raw_request(
        &addr,
        "POST",
        "/api/v1/write",
        &[("Authorization", agent.as_str())],
        Some(("application/x-protobuf", &v1_body())),
    )
    .await;
    // The access log line of the last request shows the log is written; trace lines of the
    // gateway's own dependencies show the level took effect.
    poll_until(
        Duration::from_secs(10),
        "the write's access log line",
        || async { gw.logs().contains("/api/v1/write").then_some(()) },
    )
    .await;
    let logs = gw.logs();
    assert!(logs.contains("TRACE"), "trace level is on");
    for secret in [
        good.trim_start_matches("Basic "),
        wrong.trim_start_matches("Basic "),
        agent.trim_start_matches("Basic "),
        "alice-pw",
        "not-alices-password-4711",
        "agent-a-pw",
        "cookie-secret-0815",
        "token-secret-2342",
    ] {
        assert!(!logs.contains(secret), "{secret:?} is in the log");
    }
}

// ---- bodies --------------------------------------------------------------------------------

#[tokio::test]
async fn a_post_with_an_empty_body_is_a_request_without_one() {
    let recorder = RecordingUpstream::start();
    let gw = Gateway::start(&two_tenant_config(&recorder.url(), &recorder.url(), "")).await;
    let addr = format!("127.0.0.1:{}", gw.http_port());
    let alice = basic(ALICE);
    // vmalert's shape: the query in the URL, `Content-Type: application/json`, no body.
    let (status, body) = raw_request(
        &addr,
        "POST",
        "/api/v1/query?query=up",
        &[("Authorization", alice.as_str())],
        Some(("application/json", b"")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = recorder.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(
        got[0].form_params(),
        [("query".to_string(), "up{tenant_id=\"team-a\"}".to_string())]
    );
    // A body that is there must still be a form.
    let (status, _) = raw_request(
        &addr,
        "POST",
        "/api/v1/query",
        &[("Authorization", alice.as_str())],
        Some(("application/json", b"{\"query\":\"up\"}")),
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(recorder.count(), 1);
}

// ---- vmalert as a tenant's ruler -----------------------------------------------------------

/// Kills the child when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn vmalert_evaluates_a_tenants_rules_through_the_gateway() {
    let t = TwoTenants::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: tenant-a\n    interval: 1s\n    rules:\n      - record: job:up:count\n        expr: count by (job) (up)\n",
    )
    .unwrap();
    let log = dir.path().join("vmalert.log");
    let base = format!("{}/team-a", t.gateway.url());
    let port = free_port();
    let child = spawn_until_logged(
        "vmalert",
        || {
            let mut c = std::process::Command::new("vmalert");
            c.arg(format!("-rule={}", rules.display()))
                .arg(format!("-datasource.url={base}"))
                .arg(format!("-datasource.basicAuth.username={}", RW.0))
                .arg(format!("-datasource.basicAuth.password={}", RW.1))
                .arg(format!("-remoteWrite.url={base}"))
                .arg(format!("-remoteWrite.basicAuth.username={}", RW.0))
                .arg(format!("-remoteWrite.basicAuth.password={}", RW.1))
                .arg("-remoteWrite.flushInterval=200ms")
                .arg("-evaluationInterval=1s")
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"));
            c
        },
        &log,
        "starting http server at",
    )
    .await;
    let _vmalert = Killed(child);
    // The recorded series comes back through the gateway, under team-a, counting only team-a.
    let answer = poll_until(
        scaled(Duration::from_secs(60)),
        "vmalert's recorded series through the gateway",
        || async {
            let (status, v) =
                get_as(&t.gateway.url(), ALICE, "/api/v1/query?query=job:up:count").await;
            (status == 200 && !v["data"]["result"].as_array()?.is_empty()).then_some(v)
        },
    )
    .await;
    let result = answer["data"]["result"].as_array().unwrap();
    for s in result {
        assert_eq!(s["metric"]["tenant_id"], "team-a", "{s}");
        assert_eq!(s["metric"]["job"], "job-a", "{s}");
    }
    // The other tenant does not see it; vmalert's queries were not refused.
    let (status, v) = get_as(&t.gateway.url(), BOB, "/api/v1/query?query=job:up:count").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("415"), "vmalert got a 415:\n{text}");
}

// ---- the client's doing ---------------------------------------------------------------------

#[tokio::test]
async fn a_client_that_pipelines_is_a_client_error_not_an_upstream_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let recorder = RecordingUpstream::start_with(
        Reply::json(200, &serde_json::json!({"status": "success", "data": []}))
            .delay(Duration::from_millis(1500)),
    );
    let gw = Gateway::start(&two_tenant_config(&recorder.url(), &recorder.url(), "")).await;
    let auth = basic(ALICE);
    // A GET with `Content-Length: 0` is served by pingora's engine (the short way takes GETs
    // without framing fields), which does not serve pipelined requests: the second request
    // arrives while the first is answered. (The short way's pipelining: the test below.)
    let request = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.http_port()))
        .await
        .unwrap();
    stream
        .write_all(request("/api/v1/labels").as_bytes())
        .await
        .unwrap();
    recorder.wait_for_requests(1, Duration::from_secs(10)).await;
    stream
        .write_all(request("/api/v1/series").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains(" 502 "), "{answer}");
    let text = gw.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            "whizard_upstream_errors_total",
            &[("kind", "connect")]
        ),
        None,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "whizard_gateway_requests_total", &[("code", "499")]),
        Some(1.0),
        "{text}"
    );
}

/// Reads `n` HTTP/1.1 answers with a `Content-Length` from `stream`: (status, body) each.
async fn answers_in_order(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    n: usize,
) -> Vec<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head[9..12].parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no length: {head}"));
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
                buf.drain(..end + 4 + length);
                got.push((status, body));
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{} of {n} answers: {got:?}", got.len()))
            .unwrap();
        assert!(
            read > 0,
            "closed after {} of {n} answers: {got:?}",
            got.len()
        );
        buf.extend_from_slice(&chunk[..read]);
    }
    got
}

/// A client connection to `port`, over TLS when `ca` is given (trusted for `localhost`).
async fn client_connection(port: u16, ca: Option<&std::path::Path>) -> Box<dyn ClientConnection> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let Some(ca) = ca else {
        return Box::new(tcp);
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(ca));
    Box::new(connector.connect(name, tcp).await.unwrap())
}

trait ClientConnection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientConnection for T {}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_each_with_its_own_credentials() {
    use tokio::io::AsyncWriteExt;
    let recorder = RecordingUpstream::start_with(
        Reply::json(200, &serde_json::json!({"status": "success", "data": []}))
            .delay(Duration::from_millis(300)),
    );
    let pki = TestPki::new();
    let server = pki.server("gateway", &[]);
    let config = two_tenant_config(&recorder.url(), &recorder.url(), "").replacen(
        "listen:\n",
        &https_listen_lines(&server),
        1,
    );
    let gw = Gateway::start(&config).await;
    let get = |user: (&str, &str), target: &str, fields: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n{fields}\r\n",
            basic(user)
        )
    };
    // alice (team-a), bob (team-b), a wrong password, alice asking for bob's tenant by header,
    // and a GET with a body length (pingora's engine takes it).
    let pipeline = [
        get(ALICE, "/api/v1/query?query=up", ""),
        get(BOB, "/api/v1/query?query=up", ""),
        get((ALICE.0, "wrong"), "/api/v1/query?query=up", ""),
        get(ALICE, "/api/v1/query?query=up", "THANOS-TENANT: team-b\r\n"),
        get(ALICE, "/api/v1/labels", "Content-Length: 0\r\n"),
    ];
    // All in one write (read with the first request), then the first alone and the rest while
    // it is answered; over plain TCP and over TLS.
    let bytes = pipeline.concat();
    let first = pipeline[0].len();
    for ca in [None, Some(&pki.ca_cert)] {
        // In one write; the first request alone and the rest while it is answered; the first
        // and the start of the second head, the rest of it while the first is answered.
        for cut in [None, Some(first), Some(first + 20)] {
            recorder.clear();
            let short_way = |text: String| {
                metric_value(&text, "whizard_gateway_short_way_requests_total", &[]).unwrap_or(0.0)
            };
            let short_before = short_way(gw.metrics_text().await);
            let tls = ca.is_some();
            let port = if tls { gw.https_port() } else { gw.http_port() };
            let mut stream = client_connection(port, ca.map(|p| p.as_path())).await;
            let (now, later) = bytes.as_bytes().split_at(cut.unwrap_or(bytes.len()));
            stream.write_all(now).await.unwrap();
            if !later.is_empty() {
                recorder.wait_for_requests(1, Duration::from_secs(10)).await;
                stream.write_all(later).await.unwrap();
            }
            let got = answers_in_order(&mut stream, pipeline.len()).await;
            let statuses: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
            assert_eq!(
                statuses,
                [200, 200, 401, 403, 200],
                "cut at {cut:?}, TLS {tls}: {got:?}"
            );
            // What the upstream was asked, in order, each under its own request's tenant.
            let seen = recorder.wait_for_requests(3, Duration::from_secs(10)).await;
            let asked: Vec<(&str, Option<&str>)> = seen
                .iter()
                .map(|r| (r.path(), r.header("THANOS-TENANT")))
                .collect();
            assert_eq!(
                asked,
                [
                    ("/api/v1/query", Some("team-a")),
                    ("/api/v1/query", Some("team-b")),
                    ("/api/v1/labels", Some("team-a")),
                ],
                "cut at {cut:?}, TLS {tls}"
            );
            for (r, tenant) in seen[..2].iter().zip(["team-a", "team-b"]) {
                let query = r.param("query").concat();
                assert!(
                    query.contains(&format!("tenant_id=\"{tenant}\"")),
                    "{query}"
                );
            }
            // Every GET without framing fields took the short way, a cut head included.
            assert_eq!(
                short_way(gw.metrics_text().await) - short_before,
                4.0,
                "cut at {cut:?}, TLS {tls}"
            );
        }
    }
}
