//! Issue 2, end to end: real Prometheus backend, real Prometheus agents, promtool, the gateway.

mod common;
mod fixture;

use common::*;
use fixture::*;
use std::time::Duration;

#[tokio::test]
async fn each_tenant_writes_as_itself_and_reads_only_its_own_series() {
    let t = TwoTenants::start().await;
    let gw = t.gateway.url();

    // In the backend, every series of each agent carries its tenant (and team-a's external label).
    for s in t.backend.series(r#"{job="job-a"}"#).await {
        assert_eq!(s["tenant_id"], "team-a", "{s:?}");
        assert_eq!(s["cluster"], "eu-1", "{s:?}");
    }
    for s in t.backend.series(r#"{job="job-b"}"#).await {
        assert_eq!(s["tenant_id"], "team-b", "{s:?}");
        assert!(!s.contains_key("cluster"), "{s:?}");
    }

    // Reads through the gateway: each reader sees exactly its tenant.
    for (user, tenant, job) in [(ALICE, "team-a", "job-a"), (BOB, "team-b", "job-b")] {
        for q in [
            "up",
            r#"{__name__=~".+"}"#,
            "count by (tenant_id, job) (up)",
        ] {
            let (status, body) =
                get_as(&gw, user, &format!("/api/v1/query?query={}", url_encode(q))).await;
            assert_eq!(status, 200, "{user:?} {q}: {body}");
            assert_eq!(
                label_values_in(&body, "tenant_id"),
                vec![tenant.to_string()],
                "{user:?} {q}: {body}"
            );
            assert_eq!(
                label_values_in(&body, "job"),
                vec![job.to_string()],
                "{user:?} {q}: {body}"
            );
        }
        // POST form, query_range, series, labels, label values.
        let (status, body) = post_form_as(&gw, user, "/api/v1/query", &[("query", "up")]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            label_values_in(&body, "tenant_id"),
            vec![tenant.to_string()]
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (status, body) = post_form_as(
            &gw,
            user,
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", &(now - 120).to_string()),
                ("end", &(now + 10).to_string()),
                ("step", "5"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            label_values_in(&body, "tenant_id"),
            vec![tenant.to_string()],
            "{body}"
        );
        let (status, body) = get_as(&gw, user, "/api/v1/series?match[]=up").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            label_values_in(&body, "tenant_id"),
            vec![tenant.to_string()]
        );
        let (status, body) = get_as(&gw, user, "/api/v1/label/tenant_id/values").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"], serde_json::json!([tenant]), "{body}");
        let (status, body) = get_as(&gw, user, "/api/v1/label/job/values").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"], serde_json::json!([job]), "{body}");
        let (status, body) = get_as(&gw, user, "/api/v1/labels").await;
        assert_eq!(status, 200, "{body}");
        if tenant == "team-b" {
            assert!(
                !body["data"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!("cluster")),
                "{body}"
            );
        }
    }

    // Naming the other tenant's label value never returns its data.
    let (status, body) = get_as(
        &gw,
        ALICE,
        &format!(
            "/api/v1/query?query={}",
            url_encode(r#"up{tenant_id="team-b"}"#)
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get_as(
        &gw,
        ALICE,
        &format!(
            "/api/v1/query?query={}",
            url_encode(r#"up{tenant_id!="team-a"}"#)
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get_as(
        &gw,
        ALICE,
        &format!(
            "/api/v1/query?query={}",
            url_encode(r#"up{tenant_id=~"team-.*"}"#)
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        label_values_in(&body, "tenant_id"),
        vec!["team-a".to_string()]
    );
    let (status, body) = get_as(
        &gw,
        BOB,
        &format!("/api/v1/series?match[]={}", url_encode(r#"{job="job-a"}"#)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        serde_json::json!([]),
        "bob must not see job-a: {body}"
    );

    // A reader of both tenants sees both, or one when it names it.
    let (_, body) = get_as(&gw, OPS, "/api/v1/query?query=up").await;
    assert_eq!(
        label_values_in(&body, "tenant_id"),
        vec!["team-a".to_string(), "team-b".to_string()]
    );
    let (_, body) = get_as(&gw, OPS, "/team-b/api/v1/query?query=up").await;
    assert_eq!(
        label_values_in(&body, "tenant_id"),
        vec!["team-b".to_string()]
    );
    let resp = new_http_client()
        .get(format!("{gw}/api/v1/query?query=up"))
        .basic_auth(OPS.0, Some(OPS.1))
        .header("THANOS-TENANT", "team-a")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        label_values_in(&body, "tenant_id"),
        vec!["team-a".to_string()]
    );

    // promtool, as users run it.
    let url = with_credentials(&gw, ALICE.0, ALICE.1);
    let (code, stdout, stderr) = promtool_query_async(&url, "count by (tenant_id, job) (up)").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(r#"tenant_id="team-a""#), "{stdout}");
    assert!(!stdout.contains("team-b"), "{stdout}");
    let (code, stdout, stderr) = promtool_query_async(&url, r#"up{job="job-b"}"#).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains("job-b"),
        "alice must not see job-b: {stdout}"
    );
    let (_, stdout, _) = promtool_query_async(&with_credentials(&gw, BOB.0, BOB.1), "up").await;
    assert!(
        stdout.contains(r#"tenant_id="team-b""#) && !stdout.contains("team-a"),
        "{stdout}"
    );

    // The gateway counted it all.
    let text = t.gateway.metrics_text().await;
    assert!(
        metric_value(
            &text,
            "whizard_remote_write_samples_total",
            &[("tenant", "team-a")]
        )
        .unwrap_or(0.0)
            > 0.0,
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "whizard_gateway_requests_total",
            &[
                ("tenant", "team-b"),
                ("route", "/api/v1/query"),
                ("code", "200")
            ]
        )
        .is_some(),
        "{text}"
    );
    assert!(text.contains("whizard_build_info"), "{text}");
}

#[tokio::test]
async fn authentication_and_authorization_refusals() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&two_tenant_config(&backend.url(), &backend.write_url(), "")).await;
    let base = gw.url();
    let client = new_http_client();

    // No credentials: 401 with a challenge, in Prometheus's error format.
    let resp = client
        .get(format!("{base}/api/v1/query?query=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Basic realm="whizard""#
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "unauthorized");

    // Wrong password, unknown user, malformed header: 401.
    for (u, p) in [
        ("alice", "nope"),
        ("mallory", "alice-pw"),
        ("agent-a", "agent-b-pw"),
    ] {
        let (status, body) = get_as(&base, (u, p), "/api/v1/query?query=up").await;
        assert_eq!(status, 401, "{u}: {body}");
    }
    let resp = client
        .get(format!("{base}/api/v1/query?query=up"))
        .header("authorization", "Basic %%%")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Write-only identity reading: 403. Read-only identity writing: 403.
    let (status, body) = get_as(&base, AGENT_A, "/api/v1/query?query=up").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("may not read"),
        "{body}"
    );
    let resp = client
        .post(format!("{base}/api/v1/write"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(Vec::<u8>::new())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Naming a tenant the identity does not have: path prefix or header → 403.
    let (status, body) = get_as(&base, ALICE, "/team-b/api/v1/query?query=up").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("team-b"), "{body}");
    let resp = client
        .get(format!("{base}/api/v1/query?query=up"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .header("THANOS-TENANT", "team-b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let (status, _) = get_as(&base, ALICE, "/no-such-tenant/api/v1/query?query=up").await;
    assert_eq!(status, 403);

    // A writer of two tenants must name one.
    let resp = client
        .post(format!("{base}/api/v1/write"))
        .basic_auth(RW.0, Some(RW.1))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(vec![0u8])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("name one"),
        "{body}"
    );

    // Unknown paths: 404 before authentication; health endpoints need none.
    let resp = client
        .get(format!("{base}/api/v1/unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    for p in ["/-/healthy", "/-/ready"] {
        let resp = client.get(format!("{base}{p}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{p}");
    }
    // Grafana's health check.
    let (status, body) = get_as(&base, ALICE, "/api/v1/status/buildinfo").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["version"].is_string(), "{body}");
    let (status, body) = get_as(&base, ALICE, "/api/v1/query?query=1%2B1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], "2", "{body}");

    let text = gw.metrics_text().await;
    assert!(
        metric_value(
            &text,
            "whizard_auth_failures_total",
            &[("method", "basic"), ("reason", "invalid_credentials")]
        )
        .unwrap_or(0.0)
            >= 3.0,
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "whizard_auth_failures_total",
            &[("reason", "missing")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn client_tenant_header_and_label_are_overwritten_on_writes() {
    let backend = Backend::start().await;
    // A recording upstream in front of the real backend shows what reached it.
    let recorder = RecordingUpstream::forwarding_to(&backend.url());
    let gw = Gateway::start(&two_tenant_config(
        &backend.url(),
        &format!("{}/api/v1/write", recorder.url()),
        "",
    ))
    .await;
    // agent-a pretends to be team-b: header, and a tenant_id label on every series.
    let _agent = Agent::builder(&format!("{}/api/v1/write", gw.url()))
        .job("spoofer")
        .basic_auth(AGENT_A.0, AGENT_A.1)
        .header("THANOS-TENANT", "team-b")
        .target_label("tenant_id", "team-b")
        .start()
        .await;
    let series = backend
        .wait_for_series(r#"up{job="spoofer"}"#, Duration::from_secs(60))
        .await;
    for s in &series {
        assert_eq!(s["tenant_id"], "team-a", "{s:?}");
    }
    assert!(backend.series(r#"{tenant_id="team-b"}"#).await.is_empty());
    // Prometheus 2.42 agents cannot send custom headers: spoof the tenant headers by hand too.
    let r = new_http_client()
        .post(format!("{}/api/v1/write", gw.url()))
        .basic_auth(AGENT_A.0, Some(AGENT_A.1))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("THANOS-TENANT", "team-a")
        .header("X-Scope-OrgID", "team-b")
        .body(valid_write_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = new_http_client()
        .post(format!("{}/api/v1/write", gw.url()))
        .basic_auth(AGENT_A.0, Some(AGENT_A.1))
        .header("content-type", "application/x-protobuf")
        .header("THANOS-TENANT", "team-b")
        .body(valid_write_body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "naming another tenant in the header is refused"
    );
    let reqs = recorder.wait_for_requests(2, Duration::from_secs(30)).await;
    for r in &reqs {
        assert_eq!(
            r.header_all("thanos-tenant"),
            vec!["team-a"],
            "{:?}",
            r.headers
        );
        assert!(
            r.header("authorization").is_none(),
            "credentials must not be forwarded"
        );
        assert_eq!(r.header("content-encoding"), Some("snappy"));
    }
}

#[tokio::test]
async fn reads_carry_the_tenant_header_and_the_enforced_query_only() {
    let (recorder, gw) = recorder_behind_gateway().await;
    let resp = new_http_client()
        .get(format!("{}/api/v1/query?query=up&time=1", gw.url()))
        .basic_auth(OPS.0, Some(OPS.1))
        .header("THANOS-TENANT", "team-a")
        .header("thanos-tenant", "team-a")
        .send()
        .await
        .unwrap();
    // Two copies of the tenant header are ambiguous: refused.
    assert_eq!(resp.status(), 400);
    let (status, _) = get_as(&gw.url(), OPS, "/api/v1/query?query=up&time=1").await;
    assert_eq!(status, 200);
    let (status, _) = post_form_as(
        &gw.url(),
        ALICE,
        "/api/v1/query",
        &[("query", "rate(x[5m])"), ("time", "1")],
    )
    .await;
    assert_eq!(status, 200);
    let reqs = recorder.wait_for_requests(2, Duration::from_secs(10)).await;
    assert_eq!(reqs.len(), 2, "the refused request must not be forwarded");
    let get = &reqs[0];
    assert_eq!(get.method, "GET");
    assert_eq!(get.header_all("thanos-tenant"), vec!["team-a|team-b"]);
    assert!(get.header("authorization").is_none());
    assert_eq!(
        get.param("query"),
        vec![r#"up{tenant_id=~"team-a|team-b"}"#.to_string()]
    );
    assert_eq!(get.param("time"), vec!["1".to_string()]);
    // The match[] class at the upstream: Thanos's status/tsdb and /federate get an enforced match[].
    for path in ["/api/v1/status/tsdb", "/federate?match[]=up"] {
        let (status, _) = get_as(&gw.url(), ALICE, path).await;
        assert_eq!(status, 200, "{path}");
    }
    let reqs_all = recorder.wait_for_requests(4, Duration::from_secs(10)).await;
    assert_eq!(reqs_all[2].path(), "/api/v1/status/tsdb");
    assert_eq!(
        reqs_all[2].param("match[]"),
        vec![r#"{tenant_id="team-a"}"#.to_string()]
    );
    assert_eq!(reqs_all[3].path(), "/federate");
    assert_eq!(
        reqs_all[3].param("match[]"),
        vec![r#"up{tenant_id="team-a"}"#.to_string()]
    );
    let post = &reqs[1];
    assert_eq!(post.method, "POST");
    assert_eq!(post.header_all("thanos-tenant"), vec!["team-a"]);
    assert_eq!(post.path(), "/api/v1/query");
    assert_eq!(
        post.query(),
        "",
        "POST forwards parameters in the body only"
    );
    assert_eq!(
        post.param("query"),
        vec![r#"rate(x{tenant_id="team-a"}[5m])"#.to_string()]
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_a_write_is_never_acknowledged() {
    let port = free_port(); // nothing listens here
    let dead = format!("http://127.0.0.1:{port}");
    let gw = Gateway::start(&two_tenant_config(
        &dead,
        &format!("{dead}/api/v1/write"),
        "",
    ))
    .await;
    let (status, body) = get_as(&gw.url(), ALICE, "/api/v1/query?query=up").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    let (status, body) = post_form_as(&gw.url(), ALICE, "/api/v1/query", &[("query", "up")]).await;
    assert_eq!(status, 502, "{body}");

    // A real agent writing through the dead gateway path: every answer is 5xx, nothing 2xx.
    let _agent = Agent::builder(&format!("{}/api/v1/write", gw.url()))
        .job("lonely")
        .basic_auth(AGENT_A.0, AGENT_A.1)
        .start()
        .await;
    poll_until(Duration::from_secs(60), "a refused write", || async {
        let text = gw.metrics_text().await;
        metric_value(
            &text,
            "whizard_gateway_requests_total",
            &[("route", "/api/v1/write"), ("code", "502")],
        )
    })
    .await;
    let text = gw.metrics_text().await;
    for line in text
        .lines()
        .filter(|l| l.starts_with("whizard_gateway_requests_total") && l.contains("/api/v1/write"))
    {
        assert!(
            !line.contains("code=\"2"),
            "a write was acknowledged while the upstream was down: {line}"
        );
    }
    assert!(
        metric_value(
            &text,
            "whizard_upstream_errors_total",
            &[("upstream", "receive"), ("kind", "connect")]
        )
        .is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn upstream_status_is_passed_back_on_writes() {
    let recorder = RecordingUpstream::start();
    let gw = Gateway::start(&two_tenant_config(
        &recorder.url(),
        &format!("{}/api/v1/receive", recorder.url()),
        "",
    ))
    .await;
    let body = valid_write_body();
    for (status, retry_after) in [
        (503u16, None),
        (429, Some("7")),
        (500, None),
        (400, None),
        (204, None),
        (200, None),
    ] {
        let mut reply = Reply::new(status, "upstream says so");
        if let Some(r) = retry_after {
            reply = reply.header("retry-after", r);
        }
        recorder.set_reply(reply.header("x-prometheus-remote-write-samples-written", "1"));
        let resp = post_write(&gw.url(), AGENT_A, "/api/v1/push", body.clone()).await;
        assert_eq!(resp.status().as_u16(), status);
        if let Some(r) = retry_after {
            assert_eq!(resp.headers()["retry-after"], r);
        }
        assert_eq!(
            resp.headers()["x-prometheus-remote-write-samples-written"],
            "1"
        );
    }
    let last = recorder.last().unwrap();
    assert_eq!(last.path(), "/api/v1/receive");
}

/// Both runtime flavours (`server.work_stealing`) on two threads: concurrent reads over separate
/// connections each arrive once, enforced, and an argon2id-authenticated write (verified on the
/// blocking pool) is acknowledged only after the upstream accepted it.
#[tokio::test]
async fn both_runtime_flavours_serve_concurrent_reads_and_writes() {
    for work_stealing in [false, true] {
        let (recorder, gw) = recorder_behind_gateway_with(&format!(
            "server:\n  threads: 2\n  work_stealing: {work_stealing}\n"
        ))
        .await;
        let mut reads = tokio::task::JoinSet::new();
        for i in 0..24 {
            let url = gw.url();
            let path = format!("/api/v1/query?query=up%7Bn%3D%22{i}%22%7D");
            reads.spawn(async move { get_as(&url, ALICE, &path).await });
        }
        while let Some(read) = reads.join_next().await {
            let (status, body) = read.unwrap();
            assert_eq!(status, 200, "work_stealing {work_stealing}: {body}");
        }
        let resp = post_write(&gw.url(), AGENT_A, "/api/v1/write", valid_write_body()).await;
        assert_eq!(resp.status(), 200, "work_stealing {work_stealing}");
        let reqs = recorder
            .wait_for_requests(25, Duration::from_secs(10))
            .await;
        let mut queries: Vec<String> = reqs
            .iter()
            .filter(|r| r.path() == "/api/v1/query")
            .flat_map(|r| r.param("query"))
            .collect();
        queries.sort();
        let mut expected: Vec<String> = (0..24)
            .map(|i| format!(r#"up{{n="{i}",tenant_id="team-a"}}"#))
            .collect();
        expected.sort();
        assert_eq!(queries, expected, "work_stealing {work_stealing}");
        let write = reqs
            .iter()
            .find(|r| r.path() == "/api/v1/write")
            .expect("the write reached the upstream");
        assert_eq!(
            write.header_all("thanos-tenant"),
            vec!["team-a"],
            "work_stealing {work_stealing}"
        );
    }
}

/// `server.pin_workers`: once connections have reached both workers, each worker thread may
/// run on one CPU only, a different one per worker when the process may use two or more, and
/// reads are still served; without it the workers keep every allowed CPU.
#[tokio::test]
async fn pinned_workers_each_run_on_a_cpu_of_their_own() {
    /// The `Cpus_allowed_list` of a `/proc/.../status` file.
    fn allowed_list(status: &std::path::Path) -> Option<String> {
        let status = std::fs::read_to_string(status).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_string())
    }
    /// The allowed CPUs of the gateway's worker threads (pingora names them after the service).
    fn worker_cpus(pid: u32) -> Vec<String> {
        let mut cpus = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != "whizard gateway" {
                continue;
            }
            cpus.extend(allowed_list(&task.path().join("status")));
        }
        cpus.sort();
        cpus
    }
    let allowed = allowed_list(std::path::Path::new("/proc/self/status")).unwrap();
    let several = allowed.contains(['-', ',']);
    for pin in [true, false] {
        let (_recorder, gw) =
            recorder_behind_gateway_with(&format!("server:\n  threads: 2\n  pin_workers: {pin}\n"))
                .await;
        let pid = gw.pid();
        let base = gw.url();
        let what = format!("pin_workers {pin}: two workers, each as configured");
        let cpus = poll_until(Duration::from_secs(20), &what, || {
            let base = base.clone();
            async move {
                // Each round opens connections of its own, so pingora soon hands one to each worker.
                let mut reads = tokio::task::JoinSet::new();
                for _ in 0..8 {
                    let url = base.clone();
                    reads.spawn(async move {
                        let client = new_http_client();
                        let resp = client
                            .get(format!("{url}/api/v1/query?query=up"))
                            .header("authorization", basic(ALICE))
                            .send()
                            .await
                            .unwrap();
                        resp.status().as_u16()
                    });
                }
                while let Some(status) = reads.join_next().await {
                    assert_eq!(status.unwrap(), 200, "pin_workers {pin}");
                }
                let cpus = worker_cpus(pid);
                let settled = cpus.len() == 2
                    && (!pin || cpus.iter().all(|c| !c.contains(['-', ','])))
                    && (!pin || !several || cpus[0] != cpus[1]);
                settled.then_some(cpus)
            }
        })
        .await;
        if !pin {
            assert_eq!(
                cpus,
                [allowed.clone(), allowed.clone()],
                "unpinned by default"
            );
        }
    }
}

/// A one-series remote-write v1 body (snappy), built with the crate's own codec.
fn valid_write_body() -> Vec<u8> {
    // WriteRequest{timeseries: [TimeSeries{labels: [__name__=up, job=x], samples: [1@1000]}]}
    fn len_delim(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2];
        let mut n = payload.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
        v.extend_from_slice(payload);
        v
    }
    let label = |n: &str, v: &str| {
        let mut l = len_delim(1, n.as_bytes());
        l.extend(len_delim(2, v.as_bytes()));
        len_delim(1, &l)
    };
    let mut sample = vec![0x09];
    sample.extend_from_slice(&1.0f64.to_le_bytes());
    // timestamp: now, in milliseconds (a real backend refuses samples from 1970)
    sample.push(0x10);
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    loop {
        let b = (ms & 0x7f) as u8;
        ms >>= 7;
        if ms == 0 {
            sample.push(b);
            break;
        }
        sample.push(b | 0x80);
    }
    let mut ts = label("__name__", "up");
    ts.extend(label("job", "x"));
    ts.extend(len_delim(2, &sample));
    let req = len_delim(1, &ts);
    whizard::remote_write::compress(&req).unwrap()
}

#[tokio::test]
async fn check_config_and_hash_password_commands() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listen: {htp: x}\nupstreams: {query: \"ftp://x\"}\ntenants: [{id: a}]\nusers: [{name: u, password_hash: nope, tenants: [zz], access: [read]}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(whizard_bin())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "listen.htp",
        "upstreams.query",
        "upstreams.receive",
        "users[0].password_hash",
        "users[0].tenants[0]",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
    let good = dir.path().join("good.yaml");
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::copy(format!("{root}/config/example.yaml"), &good).unwrap();
    let out = std::process::Command::new(whizard_bin())
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(whizard_bin())
        .arg("check-config")
        .arg(format!("{root}/config/demo.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = std::process::Command::new(whizard_bin())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let hash = whizard::config::PasswordHash::parse(&phc).unwrap();
    assert!(whizard::auth::password::verify(&hash, b"correct horse"));
    assert!(!whizard::auth::password::verify(&hash, b"correct horse\n"));

    // The gateway refuses to start on a bad config, naming the key.
    let (code, stderr) = Gateway::try_start_expect_failure(
        "listen: {http: \"127.0.0.1:${HTTP_PORT}\"}\nupstreams: {query: \"http://127.0.0.1:1\", receive: \"http://127.0.0.1:1/w\"}\nusers: [{name: u, password_hash: x, tenants: [a], access: [read]}]\n",
    )
    .await;
    assert_ne!(code, 0);
    assert!(stderr.contains("users[0].password_hash"), "{stderr}");
}

#[tokio::test]
async fn reads_carry_one_request_id_and_the_upstream_host() {
    let (recorder, gw) = recorder_behind_gateway().await;
    let sent: [&[&str]; 3] = [&["first-1", "second-2"], &["not a token"], &["trace-7"]];
    for ids in sent {
        let mut req = new_http_client()
            .get(format!("{}/api/v1/query?query=up&time=1", gw.url()))
            .basic_auth(ALICE.0, Some(ALICE.1));
        for id in ids {
            req = req.header("x-request-id", *id);
        }
        assert_eq!(req.send().await.unwrap().status(), 200, "{ids:?}");
    }
    let reqs = recorder.wait_for_requests(3, Duration::from_secs(10)).await;
    assert_eq!(reqs[0].header_all("x-request-id"), ["first-1"]);
    let generated = reqs[1].header_all("x-request-id");
    assert!(
        generated.len() == 1
            && generated[0].len() == 32
            && generated[0].bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated:?}"
    );
    assert_eq!(reqs[2].header_all("x-request-id"), ["trace-7"]);
    // Host names the upstream (with its port, not the default one), not the gateway.
    let upstream = recorder.url();
    let host = upstream.trim_start_matches("http://").trim_end_matches('/');
    for r in &reqs {
        assert_eq!(r.header_all("host"), [host], "{:?}", r.headers);
    }
}

/// A recording upstream answering every query with an empty vector, and the gateway in front.
/// What the proxied read path (pingora's) removes before a request reaches the upstream: the
/// caller's credentials, and every client-sent tenant header, including Thanos's default one
/// when the gateway is configured with another.
#[tokio::test]
async fn proxied_reads_drop_client_credentials_and_tenant_headers() {
    let recorder = RecordingUpstream::start_with(Reply::json(
        200,
        &serde_json::json!({"status":"success","data":{}}),
    ));
    let config = two_tenant_config(
        &recorder.url(),
        &format!("{}/api/v1/write", recorder.url()),
        "",
    )
    .replace("header: THANOS-TENANT", "header: X-Scope-OrgID");
    let gw = Gateway::start(&config).await;
    for path in ["/api/v1/status/buildinfo", "/api/v1/query?query=up"] {
        let resp = new_http_client()
            .get(format!("{}{path}", gw.url()))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .header("cookie", "session=secret")
            .header("proxy-authorization", "Basic c2VjcmV0OnNlY3JldA==")
            .header("X-Scope-OrgID", "team-a")
            .header("THANOS-TENANT", "team-b")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let reqs = recorder.wait_for_requests(2, Duration::from_secs(10)).await;
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "thanos-tenant",
        ] {
            assert!(
                r.header(name).is_none(),
                "{name} reached the upstream: {:?}",
                r.headers
            );
        }
        assert_eq!(
            r.header_all("x-scope-orgid"),
            vec!["team-a"],
            "{:?}",
            r.headers
        );
    }
}

async fn recorder_behind_gateway() -> (RecordingUpstream, Gateway) {
    recorder_behind_gateway_with("").await
}

/// A recording upstream (answering an empty query result) behind the two-tenant gateway, with
/// `extra` appended to its config.
async fn recorder_behind_gateway_with(extra: &str) -> (RecordingUpstream, Gateway) {
    let recorder = RecordingUpstream::start_with(Reply::json(
        200,
        &serde_json::json!({"status":"success","data":{"resultType":"vector","result":[]}}),
    ));
    let gw = Gateway::start(&two_tenant_config(
        &recorder.url(),
        &format!("{}/api/v1/write", recorder.url()),
        extra,
    ))
    .await;
    (recorder, gw)
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body) from a raw connection: its
/// status, its headers (lowercase names) and body, or `None` when the server closed first.
async fn read_raw_response(
    conn: &mut tokio::net::TcpStream,
    pending: &mut Vec<u8>,
) -> Option<(u16, String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let deadline = Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(deadline, conn.read(&mut buf))
            .await
            .expect("response head within 10 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().expect("status code");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().expect("content-length"));
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &pending[head_end..];
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => true,
        };
        if complete {
            break;
        }
        let n = tokio::time::timeout(deadline, conn.read(&mut buf))
            .await
            .expect("response body within 10 s")
            .expect("read the body");
        assert!(n > 0, "connection closed inside a response body");
        pending.extend_from_slice(&buf[..n]);
    }
    let end = match length {
        Some(n) => head_end + n,
        None => pending.len(),
    };
    let body = pending[head_end..end].to_vec();
    pending.drain(..end);
    Some((status, head, body))
}

/// GETs the short way leaves to pingora's engine are still served or refused as before: an
/// ambiguous authority is a 400 and never reaches the upstream; an absolute-form target and a
/// head with more fields than the short way takes are answered normally, with the tenant's
/// enforced query.
#[tokio::test]
async fn gets_the_short_way_leaves_to_pingora_are_served_or_refused_as_before() {
    use tokio::io::AsyncWriteExt;
    let (recorder, gw) = recorder_behind_gateway().await;
    let addr = gw.url().trim_start_matches("http://").to_string();
    let auth = basic(ALICE);
    let many: String = (0..70).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    let cases = [
        (
            "/api/v1/query?query=a",
            "Host: gw\r\nHost: other\r\n".to_string(),
            400,
        ),
        (
            "/api/v1/query?query=b",
            "Host: user@gw\r\n".to_string(),
            400,
        ),
        (
            "http://gw/api/v1/query?query=c",
            "Host: gw\r\n".to_string(),
            200,
        ),
        ("/api/v1/query?query=d", format!("Host: gw\r\n{many}"), 200),
    ];
    for (target, fields, want) in &cases {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!("GET {target} HTTP/1.1\r\n{fields}Authorization: {auth}\r\n\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
        let (status, _, body) = read_raw_response(&mut conn, &mut Vec::new())
            .await
            .unwrap_or_else(|| panic!("an answer to {target}"));
        assert_eq!(
            status,
            *want,
            "{target}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // Only the two served requests reached the upstream, each with its enforced query.
    let reqs = recorder.wait_for_requests(2, Duration::from_secs(10)).await;
    let queries: Vec<String> = reqs.iter().map(|r| r.param("query")[0].clone()).collect();
    assert_eq!(
        queries,
        [r#"c{tenant_id="team-a"}"#, r#"d{tenant_id="team-a"}"#]
    );
    assert_eq!(
        recorder.requests().len(),
        2,
        "nothing refused was forwarded"
    );
}

/// Keep-alive connections are served by whizard's own HTTP/1 loop (it waits for each request
/// outside pingora's state): idle waits, requests arriving byte by byte, heads longer than the
/// 1 KiB read buffer, several requests on one connection, and `Connection: close`.
#[tokio::test]
async fn keep_alive_connections_serve_requests_however_they_arrive() {
    use tokio::io::AsyncWriteExt;
    let (recorder, gw) = recorder_behind_gateway().await;
    let addr = gw.url().trim_start_matches("http://").to_string();
    let auth = basic(ALICE);
    let request = |query: &str, extra: &str| {
        format!(
            "GET /api/v1/query?query={query} HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n{extra}\r\n"
        )
    };

    // A connection that never sends anything, and one that sends half a request and leaves,
    // cost nothing and break nothing.
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(&addr).await.unwrap();
    partial.write_all(b"GET /api/v1/qu").await.unwrap();
    drop(partial);

    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut pending = Vec::new();
    // Idle first (the gateway waits for the first byte), then the request in pieces: the first
    // byte alone, then the rest of the head in two writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = request("up", "");
    let bytes = first.as_bytes();
    for piece in [&bytes[..1], &bytes[1..20], &bytes[20..]] {
        conn.write_all(piece).await.unwrap();
        conn.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, body) = read_raw_response(&mut conn, &mut pending)
        .await
        .expect("an answer to the first request");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // A head of ~5 KiB (longer than the read buffer) on the same connection.
    let long_query = format!("sum(up{{job=~\"{}\"}})", "a|".repeat(1200) + "b");
    let long = request(&url_encode(&long_query), "");
    assert!(long.len() > 4096);
    conn.write_all(long.as_bytes()).await.unwrap();
    let (status, _, body) = read_raw_response(&mut conn, &mut pending)
        .await
        .expect("an answer to the long request");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Twenty more on the same connection, then one that asks to close it.
    for i in 0..20 {
        conn.write_all(request(&format!("up{i}"), "").as_bytes())
            .await
            .unwrap();
        let (status, _, _) = read_raw_response(&mut conn, &mut pending)
            .await
            .unwrap_or_else(|| panic!("request {i} on the kept-alive connection was answered"));
        assert_eq!(status, 200);
    }
    conn.write_all(request("last", "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let (status, head, _) = read_raw_response(&mut conn, &mut pending)
        .await
        .expect("an answer to the closing request");
    assert_eq!(status, 200);
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        read_raw_response(&mut conn, &mut pending).await.is_none(),
        "the gateway closes the connection after `Connection: close`"
    );

    // Every answered request reached the upstream with the enforced query, in order.
    let reqs = recorder
        .wait_for_requests(23, Duration::from_secs(10))
        .await;
    assert_eq!(reqs.len(), 23);
    assert_eq!(
        reqs[0].param("query"),
        vec![r#"up{tenant_id="team-a"}"#.to_string()]
    );
    assert!(reqs[1].param("query")[0].contains(r#"tenant_id="team-a""#));
    assert_eq!(
        reqs[22].param("query"),
        vec![r#"last{tenant_id="team-a"}"#.to_string()]
    );
    drop(silent);
}

/// Plain GETs go upstream the gateway's short way (gateway/short_way/mod.rs); it must cope with what
/// real upstreams do to a keep-alive pool: close an idle connection without a word, send an
/// unasked answer (a 408) on an idle connection, and answer without a length (HTTP/1.0 style,
/// the end marked by closing). Every GET still gets its own whole answer on the client's one
/// keep-alive connection, each reaches the upstream exactly once with the tenant header and
/// without the client's credentials.
#[tokio::test]
async fn plain_gets_survive_upstreams_that_close_idle_connections_or_send_no_length() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    // Every request head the upstream read, in order.
    let heads = Arc::new(Mutex::new(Vec::<String>::new()));
    let (strays_sent, mut strays) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let seen = heads.clone();
    tokio::spawn(async move {
        // One request per connection. Answers cycle through: a keep-alive answer with a
        // length, then the connection closed (the gateway pools a dead connection); the same
        // followed a moment later by an unasked 408 on the open connection; an answer without
        // a length, ended by the close.
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (seen, strays_sent) = (seen.clone(), strays_sent.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let n = {
                    let mut heads = seen.lock().unwrap();
                    heads.push(String::from_utf8_lossy(&head).to_ascii_lowercase());
                    heads.len()
                };
                let body = format!("{{\"status\":\"success\",\"data\":{{\"answer\":{n}}}}}");
                let with_length = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                match n % 3 {
                    1 => {
                        let _ = conn.write_all(with_length.as_bytes()).await;
                    }
                    2 => {
                        let _ = conn.write_all(with_length.as_bytes()).await;
                        // Once the gateway has read the answer and pooled the connection (it
                        // reads whatever arrived with the answer, and keeps no connection that
                        // had more): the connection stays open, so only a look at it can tell.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let stray = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n";
                        let _ = conn.write_all(stray.as_bytes()).await;
                        let _ = strays_sent.send(n);
                        // Open until the gateway lets go of it.
                        let _ = conn.read(&mut buf).await;
                    }
                    _ => {
                        let answer = format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}"
                        );
                        let _ = conn.write_all(answer.as_bytes()).await;
                    }
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    let gw = Gateway::start(&two_tenant_config(
        &upstream,
        &format!("{upstream}/api/v1/write"),
        "",
    ))
    .await;
    let auth = basic(ALICE);
    let mut client = tokio::net::TcpStream::connect(gw.url().trim_start_matches("http://"))
        .await
        .unwrap();
    let mut pending = Vec::new();
    for n in 1..=6 {
        let request = format!(
            "GET /api/v1/status/buildinfo HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n\r\n"
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let (status, head, body) = read_raw_response(&mut client, &mut pending)
            .await
            .unwrap_or_else(|| panic!("request {n}: the gateway closed the client's connection"));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "request {n}: {head}{body}");
        assert!(
            body.contains(&format!("\"answer\":{n}}}")),
            "request {n} got another answer: {body}"
        );
        assert!(!head.contains("connection: close"), "request {n}: {head}");
        if n % 3 == 0 {
            assert!(
                head.contains("transfer-encoding: chunked"),
                "request {n}: {head}"
            );
        }
        if n % 3 == 2 {
            // The next request goes out once the pooled connection is spoilt.
            let spoilt = tokio::time::timeout(Duration::from_secs(10), strays.recv()).await;
            assert_eq!(
                spoilt.ok().flatten(),
                Some(n),
                "the upstream's stray answer"
            );
        }
    }
    let heads = heads.lock().unwrap().clone();
    assert_eq!(
        heads.len(),
        6,
        "each GET reaches the upstream once: {heads:?}"
    );
    for head in &heads {
        assert!(head.contains("\r\nthanos-tenant: team-a\r\n"), "{head}");
        assert!(!head.contains("authorization"), "{head}");
    }
}

/// The short way's upstream client passes large bodies whole, however the upstream frames and
/// splits them: a chunked answer in uneven chunks (with a chunk extension and a trailer) and a
/// sized one written in pieces, all on one pooled upstream connection; an empty chunked body;
/// and an answer that ends before its length reaches the client as a failure, never as a
/// complete 200.
#[tokio::test]
async fn plain_gets_pass_large_bodies_whole_however_the_upstream_frames_them() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A body no two places of which look alike, so a lost or doubled piece shows.
    fn body(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b'a' + (x % 26) as u8
            })
            .collect()
    }
    const CHUNKED_LEN: usize = 1_000_003;
    const SIZED_LEN: usize = 2 * 1024 * 1024 + 11;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (conns, reqs) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    // One request head per turn (GETs: no body).
                    let end = loop {
                        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    };
                    pending.drain(..end);
                    let n = reqs.fetch_add(1, Ordering::SeqCst) + 1;
                    match n {
                        1 => {
                            let data = body(CHUNKED_LEN, 1);
                            let mut wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                            let (mut at, mut size) = (0, 1);
                            while at < data.len() {
                                let take = size.min(data.len() - at);
                                wire.extend_from_slice(
                                    format!("{take:x};piece={at}\r\n").as_bytes(),
                                );
                                wire.extend_from_slice(&data[at..at + take]);
                                wire.extend_from_slice(b"\r\n");
                                at += take;
                                size = size * 7 % 65_521 + 1;
                            }
                            wire.extend_from_slice(b"0\r\nX-Checksum: none\r\n\r\n");
                            for piece in wire.chunks(40_000) {
                                if conn.write_all(piece).await.is_err() {
                                    return;
                                }
                                tokio::task::yield_now().await;
                            }
                        }
                        2 => {
                            let data = body(SIZED_LEN, 2);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {SIZED_LEN}\r\n\r\n"
                            );
                            let _ = conn.write_all(head.as_bytes()).await;
                            for piece in data.chunks(300_007) {
                                if conn.write_all(piece).await.is_err() {
                                    return;
                                }
                                tokio::task::yield_now().await;
                            }
                        }
                        3 => {
                            let answer =
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
                            let _ = conn.write_all(answer.as_bytes()).await;
                        }
                        _ => {
                            let answer =
                                "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly this";
                            let _ = conn.write_all(answer.as_bytes()).await;
                            return; // closed long before the length
                        }
                    }
                }
            });
        }
    });
    let gw = Gateway::start(&two_tenant_config(
        &upstream,
        &format!("{upstream}/api/v1/write"),
        "",
    ))
    .await;
    let client = reqwest::Client::new();
    let get = || {
        client
            .get(format!("{}/api/v1/status/buildinfo", gw.url()))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .send()
    };

    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        &body(CHUNKED_LEN, 1)[..]
    );
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"],
        SIZED_LEN.to_string().as_str()
    );
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        &body(SIZED_LEN, 2)[..]
    );
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the three answers came over one pooled upstream connection"
    );

    // Cut short: the client gets the head and what came, then a broken body, never a whole 200.
    // (A refusal before any head would also not be a complete answer.)
    if let Ok(resp) = get().await {
        let body = resp.bytes().await;
        assert!(
            body.is_err(),
            "a truncated answer was passed on as complete: {body:?}"
        );
    }
    assert_eq!(requests.load(Ordering::SeqCst), 4);
}

/// An upstream that takes a GET and never answers: the short way gives up after
/// `upstreams.timeout_seconds` with a 504 naming the upstream, and does not send the GET again
/// (the upstream may still be working on it).
#[tokio::test]
async fn a_silent_upstream_is_a_504_after_the_timeout_and_is_not_asked_twice() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(AtomicUsize::new(0));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return, // the gateway let go
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        seen.fetch_add(1, Ordering::SeqCst);
                        head.clear();
                    }
                }
            });
        }
    });
    let config = two_tenant_config(&upstream, &format!("{upstream}/api/v1/write"), "")
        .replace("timeout_seconds: 20", "timeout_seconds: 1");
    assert!(config.contains("timeout_seconds: 1\n"), "{config}");
    let gw = Gateway::start(&config).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/status/buildinfo", gw.url()))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the gateway answers before the client gives up");
    assert_eq!(resp.status(), 504);
    let body = resp.text().await.unwrap();
    assert!(body.contains("timed out"), "{body}");
    assert_eq!(
        heads.load(Ordering::SeqCst),
        1,
        "the GET went upstream once"
    );
}

/// The gateway's resident memory in KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// An idle keep-alive connection costs a few KiB (docs/internals.md, "Connections"): the
/// connection waits for its next request in a small task with no buffer, whatever the
/// listener. 600 clients each send one GET and stay: the gateway's memory grows by far less
/// than pingora's per-request state (~30 KB) or a TLS/HTTP/2 task (kilobytes) per connection
/// would cost. (Below the usual limit of 1,024 open files of the test process.)
#[tokio::test]
async fn idle_keep_alive_connections_cost_a_few_kilobytes_each() {
    use tokio::io::AsyncWriteExt;
    const CLIENTS: usize = 600;
    let (_recorder, gw) = recorder_behind_gateway_with("server:\n  threads: 2\n").await;
    let addr = gw.url().trim_start_matches("http://").to_string();
    let request = format!(
        "GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        basic(ALICE)
    );
    let one_round = |n: usize| {
        let (addr, request) = (addr.clone(), request.clone());
        async move {
            let mut held = Vec::new();
            for _ in 0..n {
                let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
                conn.write_all(request.as_bytes()).await.unwrap();
                let mut pending = Vec::new();
                let answer = read_raw_response(&mut conn, &mut pending).await;
                assert_eq!(answer.map(|(status, _, _)| status), Some(200));
                held.push(conn);
            }
            held
        }
    };
    // Warm up (pools, allocator arenas, the credential cache), then measure.
    drop(one_round(50).await);
    let before = rss_kib(gw.pid());
    let held = one_round(CLIENTS).await;
    let after = rss_kib(gw.pid());
    let per_connection = (after.saturating_sub(before)) * 1024 / CLIENTS as u64;
    eprintln!("{per_connection} bytes per idle connection ({before} → {after} KiB)");
    assert!(
        per_connection < 10 * 1024,
        "{per_connection} bytes per idle connection ({before} → {after} KiB for {CLIENTS})"
    );
    drop(held);
}
