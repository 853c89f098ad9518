//! Issue 4, end to end: limits, fan-out, OTLP, remote write 2.0, and no data loss when the
//! backend or the gateway goes away under a real Prometheus agent.

mod common;
mod fixture;

use common::*;
use fixture::*;
use serde_json::Value;
use std::time::Duration;

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field(num: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![(num << 3) | 2];
    varint(payload.len(), &mut v);
    v.extend_from_slice(payload);
    v
}

/// A remote-write 1.0 body (snappy) with `series` series of one sample each.
fn v1_body(series: usize, job: &str) -> Vec<u8> {
    let mut req = Vec::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..series {
        let label = |n: &str, v: &str| {
            let mut l = field(1, n.as_bytes());
            l.extend(field(2, v.as_bytes()));
            field(1, &l)
        };
        let mut ts = label("__name__", "rw_test_metric");
        ts.extend(label("job", job));
        ts.extend(label("series", &i.to_string()));
        let mut sample = vec![0x09];
        sample.extend_from_slice(&(i as f64).to_le_bytes());
        sample.push(0x10);
        let mut t = Vec::new();
        let mut n = now_ms;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                t.push(b);
                break;
            }
            t.push(b | 0x80);
        }
        sample.extend(t);
        ts.extend(field(2, &sample));
        req.extend(field(1, &ts));
    }
    whizard::remote_write::compress(&req).unwrap()
}

#[tokio::test]
async fn accepted_writes_are_copied_to_the_tenants_targets() {
    let backend = Backend::start().await;
    let copy_a = RecordingUpstream::start();
    let dead = free_port();
    let upstream_lines = format!(
        "  remote_writes:\n    - {{name: copy-a, url: \"{}/api/v1/write\", tenants: [team-a], headers: {{x-api-key: k1}}}}\n    - {{name: dead, url: \"http://127.0.0.1:{dead}/api/v1/write\", timeout_seconds: 2}}",
        copy_a.url()
    );
    let gw = Gateway::start(&two_tenant_config_full(
        &backend.url(),
        &backend.write_url(),
        &upstream_lines,
        "",
    ))
    .await;

    let r = post_write(&gw.url(), AGENT_A, "/api/v1/write", v1_body(3, "copied")).await;
    assert_eq!(
        r.status(),
        204,
        "the dead target must not change the answer"
    );
    let r = post_write(
        &gw.url(),
        AGENT_B,
        "/api/v1/write",
        v1_body(2, "not-copied"),
    )
    .await;
    assert_eq!(r.status(), 204);

    let copies = copy_a.wait_for_requests(1, Duration::from_secs(20)).await;
    assert_eq!(
        copies.len(),
        1,
        "team-b's write must not be copied to a team-a target"
    );
    let c = &copies[0];
    assert_eq!(c.header_all("thanos-tenant"), vec!["team-a"]);
    assert_eq!(c.header("x-api-key"), Some("k1"));
    assert!(c.header("authorization").is_none());
    let raw = whizard::remote_write::decompress(&c.body, 1 << 20).unwrap();
    let stats = whizard::remote_write::validate_v1(&raw).unwrap();
    assert_eq!(stats.series, 3);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("tenant_id") && text.contains("team-a") && text.contains("eu-1"),
        "the copy carries the injected labels"
    );
    // The primary has the data too.
    let s = backend
        .wait_for_series(r#"rw_test_metric{job="copied"}"#, Duration::from_secs(10))
        .await;
    assert_eq!(s.len(), 3);
    poll_until(Duration::from_secs(20), "copy metrics", || async {
        let t = gw.metrics_text().await;
        let ok = metric_value(
            &t,
            "whizard_remote_write_copies_total",
            &[("target", "copy-a"), ("result", "success")],
        );
        let failed = metric_value(
            &t,
            "whizard_remote_write_copies_total",
            &[("target", "dead"), ("result", "failed")],
        );
        (ok == Some(1.0) && failed == Some(2.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tenants_over_their_limits_get_429_and_others_do_not() {
    let backend = Backend::start().await;
    let mut config = two_tenant_config(&backend.url(), &backend.write_url(), "");
    config = config.replace(
        "  - id: team-a\n    external_labels: {cluster: eu-1}",
        "  - id: team-a\n    external_labels: {cluster: eu-1}\n    limits: {write_samples_per_second: 10, requests_per_second: 3, max_query_length: 100, max_query_range: 3600}",
    );
    assert!(config.contains("write_samples_per_second: 10"));
    let gw = Gateway::start(&config).await;

    // Samples: 8 fit in the bucket of 10, another 8 right after do not.
    let r = post_write(&gw.url(), AGENT_A, "/api/v1/write", v1_body(8, "lim")).await;
    assert_eq!(r.status(), 204);
    let r = post_write(&gw.url(), AGENT_A, "/api/v1/write", v1_body(8, "lim")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("samples per second"),
        "{body}"
    );
    // team-b is not limited.
    for _ in 0..5 {
        let r = post_write(&gw.url(), AGENT_B, "/api/v1/write", v1_body(100, "free")).await;
        assert_eq!(r.status(), 204);
    }

    // Request rate: alice (team-a) gets 429 after the burst, bob (team-b) never.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get_as(&gw.url(), ALICE, "/api/v1/query?query=up").await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    for _ in 0..20 {
        assert_eq!(
            get_as(&gw.url(), BOB, "/api/v1/query?query=up").await.0,
            200
        );
    }
    // The bucket refills.
    poll_until(Duration::from_secs(10), "team-a admitted again", || async {
        (get_as(&gw.url(), ALICE, "/api/v1/query?query=1").await.0 == 200).then_some(())
    })
    .await;
    let text = gw.metrics_text().await;
    assert!(
        metric_value(
            &text,
            "whizard_limit_rejections_total",
            &[("tenant", "team-a"), ("limit", "requests_per_second")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "whizard_limit_rejections_total",
            &[("tenant", "team-a"), ("limit", "write_samples_per_second")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn read_limits_query_length_and_range() {
    let backend = Backend::start().await;
    let config = two_tenant_config(&backend.url(), &backend.write_url(), "").replace(
        "  - id: team-a\n    external_labels: {cluster: eu-1}",
        "  - id: team-a\n    external_labels: {cluster: eu-1}\n    limits: {max_query_length: 40, max_query_range: 3600}",
    );
    let gw = Gateway::start(&config).await;
    let long = format!("up{{job=\"{}\"}}", "x".repeat(50));
    let (status, body) = get_as(
        &gw.url(),
        ALICE,
        &format!("/api/v1/query?query={}", url_encode(&long)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("max_query_length"),
        "{body}"
    );
    let (status, body) = get_as(
        &gw.url(),
        ALICE,
        "/api/v1/query_range?query=up&start=0&end=7200&step=60",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("max_query_range"),
        "{body}"
    );
    let (status, body) = get_as(
        &gw.url(),
        ALICE,
        "/api/v1/query_range?query=up&start=2023-11-14T22:13:20Z&end=2023-11-14T23:13:20Z&step=60",
    )
    .await;
    assert_eq!(status, 200, "one hour is allowed: {body}");
    let (status, _) = get_as(
        &gw.url(),
        BOB,
        &format!("/api/v1/query?query={}", url_encode(&long)),
    )
    .await;
    assert_eq!(status, 200, "team-b has no such limit");
}

#[tokio::test]
async fn otlp_is_authenticated_and_passed_with_the_tenant_header() {
    let otlp = RecordingUpstream::start_with(
        Reply::new(200, "{}").header("content-type", "application/json"),
    );
    let backend = Backend::start().await;
    let gw = Gateway::start(&two_tenant_config_full(
        &backend.url(),
        &backend.write_url(),
        &format!("  otlp: \"{}/api/v1/otlp\"", otlp.url()),
        "",
    ))
    .await;
    let body = b"\x0a\x03abc-not-really-otlp".to_vec();
    let r = new_http_client()
        .post(format!("{}/api/v1/otlp/v1/metrics", gw.url()))
        .basic_auth(AGENT_A.0, Some(AGENT_A.1))
        .header("content-type", "application/x-protobuf")
        .header("THANOS-TENANT", "team-a")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = new_http_client()
        .post(format!("{}/api/v1/otlp", gw.url()))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let reqs = otlp.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path(), "/api/v1/otlp");
    assert_eq!(reqs[0].body, body);
    assert_eq!(reqs[0].header_all("thanos-tenant"), vec!["team-a"]);
    assert_eq!(
        reqs[0].header("content-type"),
        Some("application/x-protobuf")
    );
}

#[tokio::test]
async fn remote_write_2_is_spliced_and_bad_bodies_are_refused_before_the_upstream() {
    let recorder = RecordingUpstream::start();
    let gw = Gateway::start(&two_tenant_config(
        &recorder.url(),
        &format!("{}/api/v1/receive", recorder.url()),
        "",
    ))
    .await;
    // io.prometheus.write.v2.Request{symbols: ["", "__name__", "up", "job", "x"], timeseries: [{labels_refs: [1,2,3,4], samples: [{value: 1, timestamp: 1000}]}]}
    let mut req = Vec::new();
    for s in ["", "__name__", "up", "job", "x"] {
        let mut f = vec![(4 << 3) | 2];
        varint(s.len(), &mut f);
        f.extend_from_slice(s.as_bytes());
        req.extend(f);
    }
    let mut ts = field(1, &[1, 2, 3, 4]);
    let mut sample = vec![0x09];
    sample.extend_from_slice(&1.0f64.to_le_bytes());
    sample.extend_from_slice(&[0x10, 0xe8, 0x07]);
    ts.extend(field(2, &sample));
    let mut t = vec![(5 << 3) | 2];
    varint(ts.len(), &mut t);
    t.extend(ts);
    req.extend(t);
    let body = whizard::remote_write::compress(&req).unwrap();
    let send = |body: Vec<u8>, ct: &'static str, version: &'static str| {
        let url = format!("{}/api/v1/write", gw.url());
        async move {
            new_http_client()
                .post(url)
                .basic_auth(AGENT_A.0, Some(AGENT_A.1))
                .header("content-type", ct)
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", version)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    recorder
        .set_reply(Reply::new(204, "").header("x-prometheus-remote-write-samples-written", "1"));
    let r = send(
        body.clone(),
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        "2.0.0",
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["x-prometheus-remote-write-samples-written"],
        "1"
    );
    let got = recorder.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-protobuf;proto=io.prometheus.write.v2.Request")
    );
    assert_eq!(
        got[0].header("x-prometheus-remote-write-version"),
        Some("2.0.0")
    );
    let raw = whizard::remote_write::decompress(&got[0].body, 1 << 20).unwrap();
    let stats = whizard::remote_write::validate_v2(&raw).unwrap();
    assert_eq!((stats.series, stats.samples), (1, 1));
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("tenant_id") && text.contains("team-a") && text.contains("cluster"),
        "{text:?}"
    );

    // Refused before anything reaches the upstream.
    recorder.clear();
    let r = send(
        b"not snappy at all".to_vec(),
        "application/x-protobuf",
        "0.1.0",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = send(body.clone(), "application/json", "0.1.0").await;
    assert_eq!(r.status(), 415);
    let msg: Value = r.json().await.unwrap();
    assert!(
        msg["error"]
            .as_str()
            .unwrap()
            .contains("io.prometheus.write.v2.Request"),
        "{msg}"
    );
    let unsorted = {
        let label = |n: &str, v: &str| {
            let mut l = field(1, n.as_bytes());
            l.extend(field(2, v.as_bytes()));
            field(1, &l)
        };
        let mut ts = label("zone", "z");
        ts.extend(label("__name__", "up"));
        whizard::remote_write::compress(&field(1, &ts)).unwrap()
    };
    let r = send(unsorted, "application/x-protobuf", "0.1.0").await;
    assert_eq!(r.status(), 400);
    let msg: Value = r.json().await.unwrap();
    assert!(msg["error"].as_str().unwrap().contains("series 0"), "{msg}");
    // A decompression bomb: a tiny body declaring 1 GiB.
    let mut bomb = Vec::new();
    varint(1 << 30, &mut bomb);
    bomb.extend_from_slice(&[0u8; 16]);
    let r = send(bomb, "application/x-protobuf", "0.1.0").await;
    assert!(r.status() == 413 || r.status() == 400, "{}", r.status());
    assert_eq!(recorder.count(), 0, "no bad body may reach the upstream");
}

/// Raw samples of `up{job}` in the backend over the last `window`; asserts there is no gap
/// longer than `max_gap` between consecutive samples.
async fn assert_no_gaps(backend: &Backend, job: &str, window: &str, max_gap: f64) -> usize {
    let v = backend
        .query(&format!(r#"up{{job="{job}"}}[{window}]"#))
        .await;
    let result = v["data"]["result"].as_array().expect("matrix");
    assert_eq!(result.len(), 1, "{v}");
    let ts: Vec<f64> = result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_f64().unwrap())
        .collect();
    for w in ts.windows(2) {
        assert!(
            w[1] - w[0] <= max_gap,
            "gap of {:.1}s at {} in {ts:?}",
            w[1] - w[0],
            w[0]
        );
    }
    ts.len()
}

#[tokio::test]
async fn nothing_is_lost_when_the_backend_or_the_gateway_goes_away() {
    let mut backend = Backend::start().await;
    let config = two_tenant_config(
        &backend.url(),
        &backend.write_url(),
        "server: {grace_period_seconds: 1}\n",
    );
    let mut gw = Gateway::start(&config).await;
    let agent = Agent::builder(&format!("{}/api/v1/write", gw.url()))
        .job("steady")
        .scrape_interval("1s")
        .basic_auth(AGENT_A.0, AGENT_A.1)
        .start()
        .await;
    backend
        .wait_for_series(r#"up{job="steady"}"#, Duration::from_secs(60))
        .await;
    let started = std::time::Instant::now();

    // Backend down for 15 s: the gateway answers 5xx, the agent keeps the samples and retries.
    backend.kill();
    let down_from = std::time::Instant::now();
    poll_until(
        Duration::from_secs(30),
        "a 502 while the backend is down",
        || async {
            let t = gw.metrics_text().await;
            metric_value(
                &t,
                "whizard_gateway_requests_total",
                &[("route", "/api/v1/write"), ("code", "502")],
            )
            .map(|_| ())
        },
    )
    .await;
    let ok_before = {
        let t = gw.metrics_text().await;
        metric_value(
            &t,
            "whizard_gateway_requests_total",
            &[("route", "/api/v1/write"), ("code", "204")],
        )
        .unwrap_or(0.0)
    };
    while down_from.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await; // the outage itself, not a synchronisation
    }
    let ok_during = {
        let t = gw.metrics_text().await;
        metric_value(
            &t,
            "whizard_gateway_requests_total",
            &[("route", "/api/v1/write"), ("code", "204")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        ok_before, ok_during,
        "no write may be acknowledged while the backend is down"
    );
    backend.start_again().await;

    // Gateway crash and restart on the same port.
    poll_until(Duration::from_secs(60), "the agent catching up", || async {
        let v = backend
            .query(r#"time() - timestamp(up{job="steady"})"#)
            .await;
        let lag = v["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()?;
        (lag < 3.0).then_some(())
    })
    .await;
    gw.kill();
    tokio::time::sleep(Duration::from_secs(3)).await; // the gateway's outage, not a synchronisation
    gw.restart().await;
    poll_until(
        Duration::from_secs(60),
        "the agent catching up after the gateway restart",
        || async {
            let v = backend
                .query(r#"time() - timestamp(up{job="steady"})"#)
                .await;
            let lag = v["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()?;
            (lag < 3.0).then_some(())
        },
    )
    .await;

    let window = format!("{}s", started.elapsed().as_secs() + 5);
    let n = assert_no_gaps(&backend, "steady", &window, 2.5).await;
    assert!(
        n as u64 >= started.elapsed().as_secs() - 5,
        "{n} samples in {window}"
    );
    drop(agent);
}
