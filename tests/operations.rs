//! Issue 9, real processes: reload (file watch, SIGHUP, /-/reload), graceful shutdown,
//! access logs without secrets, brute-force protection, and the shipped rules and dashboard.

mod common;
mod fixture;

use common::*;
use fixture::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn config_reloads_on_file_change_sighup_and_endpoint_and_refuses_broken_files() {
    let backend = Backend::start().await;
    let config = two_tenant_config(&backend.url(), &backend.write_url(), "");
    let mut gw = Gateway::start(&config).await;
    let base = gw.url();
    // A steady stream of requests during all reloads: none may fail.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let client = new_http_client();
            let (mut ok, mut bad) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .get(format!("{base}/api/v1/query?query=1"))
                    .basic_auth(BOB.0, Some(BOB.1))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => bad.push(r.status().as_u16().to_string()),
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (ok, bad)
        })
    };

    // 1. File change: a new user appears without any signal.
    let carol_hash = "$2y$04$8duxTVLOPcIN8ozdK5lDNO8yDMp3SwpA9.zU.TTGZea7VVyqxFsdq"; // alice-pw
    let with_carol = config.replace(
        "users:\n",
        &format!("users:\n  - name: carol\n    password_hash: \"{carol_hash}\"\n    tenants: [team-b]\n    access: [read]\n"),
    );
    assert_eq!(
        get_as(&base, ("carol", "alice-pw"), "/api/v1/query?query=1")
            .await
            .0,
        401
    );
    gw.write_config(&with_carol);
    poll_until(
        Duration::from_secs(20),
        "carol admitted after the file changed",
        || async {
            (get_as(&base, ("carol", "alice-pw"), "/api/v1/query?query=1")
                .await
                .0
                == 200)
                .then_some(())
        },
    )
    .await;

    // 2. A broken file is refused; the old config keeps serving; the metric says so.
    std::fs::write(
        gw.config_path(),
        "listen: {http: nope}\nusers: [{name: x}]\n",
    )
    .unwrap();
    poll_until(
        Duration::from_secs(20),
        "failed reload reported",
        || async {
            let t = gw.metrics_text().await;
            (metric_value(&t, "whizard_config_last_reload_successful", &[]) == Some(0.0))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        get_as(&base, ("carol", "alice-pw"), "/api/v1/query?query=1")
            .await
            .0,
        200
    );
    let (status, body) = gw.reload().await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("listen.http"), "{body}");

    // 3. SIGHUP: tenants and users change (carol moves to team-a).
    let moved = with_carol.replace(
        "    tenants: [team-b]\n    access: [read]\n  - name: agent-a",
        "    tenants: [team-a]\n    access: [read]\n  - name: agent-a",
    );
    assert_ne!(moved, with_carol);
    std::fs::write(gw.config_path(), gw.substitute(&moved)).unwrap();
    gw.signal("HUP");
    poll_until(
        Duration::from_secs(20),
        "carol reads team-a after SIGHUP",
        || async {
            let (s, _) = get_as(&base, ("carol", "alice-pw"), "/team-a/api/v1/query?query=1").await;
            (s == 200).then_some(())
        },
    )
    .await;
    let t = gw.metrics_text().await;
    assert_eq!(
        metric_value(&t, "whizard_config_last_reload_successful", &[]),
        Some(1.0)
    );

    // 4. POST /-/reload on the metrics listener; carol removed.
    std::fs::write(gw.config_path(), gw.substitute(&config)).unwrap();
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get_as(&base, ("carol", "alice-pw"), "/api/v1/query?query=1")
            .await
            .0,
        401
    );
    // /-/reload is only on the metrics listener: the tenant listener does not have the route,
    // even for a loopback client (issue 26).
    let r = new_http_client()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, bad) = load.await.unwrap();
    assert!(ok > 20, "only {ok} requests during the reloads");
    assert!(bad.is_empty(), "requests failed during reloads: {bad:?}");
}

/// An upstream that answers every request after 3 s, and a gateway config in front of it.
fn slow_upstream_config(extra: &str) -> (RecordingUpstream, String) {
    let slow = RecordingUpstream::start_with(
        Reply::json(
            200,
            &serde_json::json!({"status":"success","data":{"resultType":"vector","result":[]}}),
        )
        .delay(Duration::from_secs(3)),
    );
    let config = two_tenant_config(&slow.url(), &format!("{}/api/v1/write", slow.url()), extra);
    (slow, config)
}

/// A gateway with an HTTPS listener (certificate from `pki`, grace period 10 s) in front of the
/// slow upstream, and a plain request in flight to it: after SIGTERM the gateway drains until
/// that request is answered.
async fn draining_gateway(
    pki: &TestPki,
) -> (
    RecordingUpstream,
    Gateway,
    tokio::task::JoinHandle<(u16, serde_json::Value)>,
) {
    ensure_crypto_provider();
    let server = pki.server("gateway", &[]);
    let (slow, config) = slow_upstream_config("server: {grace_period_seconds: 10}\n");
    let config = config.replacen("listen:\n", &https_listen_lines(&server), 1);
    let gw = Gateway::start(&config).await;
    let in_flight = {
        let base = gw.url();
        tokio::spawn(async move { get_as(&base, ALICE, "/api/v1/query?query=up").await })
    };
    (slow, gw, in_flight)
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let pki = TestPki::new();
    let (slow, mut gw, in_flight) = draining_gateway(&pki).await;
    let base = gw.url();
    // Also over HTTPS: a request in flight on an HTTP/2 stream finishes too.
    let h2_in_flight = {
        let client = h2_client(&pki.ca_cert);
        let url = format!("{}/api/v1/query?query=up", gw.https_url());
        tokio::spawn(async move {
            let answer = client
                .get(url)
                .header("authorization", basic(ALICE))
                .send()
                .await
                .unwrap();
            (
                answer.version(),
                answer.status().as_u16(),
                answer.text().await.unwrap(),
            )
        })
    };
    slow.wait_for_requests(2, Duration::from_secs(10)).await;
    let t0 = Instant::now();
    gw.signal("TERM");
    // New connections are refused while the in-flight request finishes.
    poll_until(
        Duration::from_secs(5),
        "new connections refused",
        || async {
            let addr = base.trim_start_matches("http://").to_string();
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the in-flight request must complete: {body}");
    let (version, status, body) = h2_in_flight.await.unwrap();
    assert_eq!(
        (version, status),
        (reqwest::Version::HTTP_2, 200),
        "the in-flight HTTP/2 request must complete: {body}"
    );
    let exit = gw.wait_exit(Duration::from_secs(15)).expect("exited");
    let took = t0.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        took < Duration::from_secs(10),
        "exit within the grace period, took {took:?}"
    );
    assert!(
        took >= Duration::from_secs(1),
        "it waited for the in-flight request ({took:?})"
    );
}

/// At SIGTERM an idle HTTP/2 client is told to go away (GOAWAY, no error) while the gateway
/// drains, rather than finding its connection simply closed.
#[tokio::test]
async fn sigterm_sends_goaway_to_idle_http2_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = TestPki::new();
    let (slow, mut gw, in_flight) = draining_gateway(&pki).await;
    // An HTTP/2 connection by hand: preface and empty SETTINGS, then the server's SETTINGS.
    let mut tls_config = (*tls_client_config(&pki.ca_cert)).clone();
    tls_config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.https_port()))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_config))
        .connect(name, tcp)
        .await
        .unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // Frame types until the connection ends, or a GOAWAY's error code.
    async fn next_frame(conn: &mut (impl AsyncReadExt + Unpin)) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).await.ok()?;
        Some((head[3], payload))
    }
    let (kind, _) = next_frame(&mut conn).await.expect("the server's SETTINGS");
    assert_eq!(kind, 0x4, "an HTTP/2 server opens with SETTINGS");
    slow.wait_for_requests(1, Duration::from_secs(10)).await;
    gw.signal("TERM");
    let goaway = tokio::time::timeout(scaled(Duration::from_secs(10)), async {
        while let Some((kind, payload)) = next_frame(&mut conn).await {
            if kind == 0x7 {
                return Some(payload);
            }
        }
        None
    })
    .await
    .expect("the connection neither got a GOAWAY nor ended");
    let goaway = goaway.expect("the connection ended without a GOAWAY");
    assert_eq!(
        goaway.get(4..8),
        Some(&[0u8, 0, 0, 0][..]),
        "GOAWAY with NO_ERROR"
    );
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(gw
        .wait_exit(Duration::from_secs(15))
        .expect("exited")
        .success());
}

#[tokio::test]
async fn access_log_lines_carry_the_fields_and_no_secret() {
    let backend = Backend::start().await;
    let config = two_tenant_config(
        &backend.url(),
        &backend.write_url(),
        "logging: {format: json}\n",
    );
    let gw = Gateway::start(&config).await;
    let base = gw.url();
    // A query as alice with these X-Request-Id headers; the ids of the answer.
    let query_with_ids = |ids: &'static [&'static str]| {
        let base = base.clone();
        async move {
            let mut req = new_http_client()
                .get(format!("{base}/api/v1/query?query=up"))
                .basic_auth(ALICE.0, Some(ALICE.1));
            for id in ids {
                req = req.header("x-request-id", *id);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let ids: Vec<String> = r
                .headers()
                .get_all("x-request-id")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            ids
        }
    };
    assert_eq!(query_with_ids(&["trace-123"]).await, ["trace-123"]);
    let r = new_http_client()
        .get(format!("{base}/api/v1/query?query=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 32);
    // An id that is not a sane token is replaced; of two ids, the first is kept.
    let replaced = query_with_ids(&["not a token"]).await;
    assert!(
        replaced.len() == 1
            && replaced[0].len() == 32
            && replaced[0].bytes().all(|b| b.is_ascii_hexdigit()),
        "{replaced:?}"
    );
    assert_eq!(query_with_ids(&["first-1", "second-2"]).await, ["first-1"]);
    // Secrets in every place a client can put them.
    let _ = get_as(
        &base,
        ("alice", "WrongHorseBatteryStaple"),
        "/api/v1/query?query=up",
    )
    .await;
    let _ = new_http_client()
        .get(format!("{base}/api/v1/query?query=up"))
        .bearer_auth("eyJhbGciOiJub25lIn0.c2VjcmV0LXRva2Vu.")
        .header("cookie", "whizard_session=cookie-secret-value")
        .send()
        .await;
    // The access log is written in batches: wait until the lines of all six requests above
    // are out, so the secret checks below look at every one of them.
    let lines: Vec<serde_json::Value> = poll_until(
        Duration::from_secs(10),
        "the access-log lines of the six requests",
        || {
            let lines: Vec<serde_json::Value> = gw
                .logs()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["msg"] == "request" && v["route"] != "/-/ready")
                .collect();
            async move { (lines.len() >= 6).then_some(lines) }
        },
    )
    .await;
    let logs = gw.logs();
    let line = lines
        .iter()
        .find(|v| v["request_id"] == "trace-123")
        .expect("the access-log line");
    for field in [
        "ts",
        "method",
        "route",
        "tenant",
        "user",
        "status",
        "bytes",
        "duration_seconds",
        "upstream",
        "client",
    ] {
        assert!(!line[field].is_null(), "{field} missing in {line}");
    }
    assert_eq!(line["tenant"], "team-a");
    assert_eq!(line["user"], "alice");
    assert_eq!(line["route"], "/api/v1/query");
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream"], "query");
    // The client's address as the gateway's socket saw it (plain GETs take the short way).
    let client = line["client"].as_str().unwrap_or_default();
    assert!(client.starts_with("127.0.0.1:"), "{line}");
    assert!(lines
        .iter()
        .any(|v| v["request_id"] == generated.as_str() && v["status"] == 401));
    for secret in [
        ALICE.1,
        "WrongHorseBatteryStaple",
        "c2VjcmV0LXRva2Vu",
        "cookie-secret-value",
        "YWxpY2U6YWxpY2UtcHc",
    ] {
        assert!(
            !logs.contains(secret),
            "the log contains a secret: {secret}"
        );
    }
}

/// A client that hangs up while the upstream is still working is logged as 499 (not as an
/// upstream failure, 502), and the gateway keeps serving.
#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_logged_499() {
    use tokio::io::AsyncWriteExt;
    let (slow, config) = slow_upstream_config("logging: {format: json}\n");
    let gw = Gateway::start(&config).await;
    let auth = basic(ALICE);
    let mut conn = tokio::net::TcpStream::connect(gw.url().trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(
        format!(
            "GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\nX-Request-Id: leaves-early\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    slow.wait_for_requests(1, Duration::from_secs(10)).await;
    drop(conn);
    let line = poll_until(
        Duration::from_secs(15),
        "the access-log line of the abandoned request",
        || {
            let line = gw
                .logs()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["request_id"] == "leaves-early");
            async move { line }
        },
    )
    .await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["tenant"], "team-a");
    let (status, _) = get_as(&gw.url(), ALICE, "/api/v1/query?query=up").await;
    assert_eq!(status, 200, "the gateway keeps serving");
}

#[tokio::test]
async fn credentials_verified_before_are_never_throttled_and_a_success_resets_nothing() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&two_tenant_config(&backend.url(), &backend.write_url(), "")).await;
    let url = format!("http://127.0.0.1:{}/api/v1/query?query=1", gw.http_port());
    let client = http_client();
    let status = |user: &str, pass: String| {
        let req = client.get(&url).basic_auth(user, Some(pass));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // alice and bob sign in from one address (think of a NAT) before anything fails.
    assert_eq!(status(ALICE.0, ALICE.1.into()).await, 200);
    // Someone behind the same address guesses alice's password 30 times, and also signs in
    // with an account of its own in between (bob, a first login).
    let mut last = 0;
    for i in 0..30 {
        last = status("alice", format!("guess-{i}")).await;
        if i == 10 {
            assert_eq!(status(BOB.0, BOB.1.into()).await, 200);
        }
    }
    assert_eq!(last, 429, "alice is refused from this address");
    // bob's success reset nothing: alice's count at this address stands.
    assert_eq!(status("alice", "another-guess".into()).await, 429);
    // Failures for one name throttle that name, not the address: another user behind it who
    // has not signed in yet gets in, and an unknown name is answered, not refused.
    assert_eq!(status(OPS.0, OPS.1.into()).await, 200);
    assert_eq!(status("carol", "x".into()).await, 401);
    // An address failing for many names (alice, carol and 8 more) is spraying: refused whole,
    // even for a first login with the right password.
    for i in 0..8 {
        assert_eq!(status(&format!("sprayed-{i}"), "x".into()).await, 401);
    }
    assert_eq!(status(RW.0, RW.1.into()).await, 429);
    let t = gw.metrics_text().await;
    for scope in ["address_user", "address"] {
        let refused = metric_value(
            &t,
            "whizard_auth_throttled_total",
            &[("scope", scope), ("action", "refused")],
        );
        assert!(refused.unwrap_or(0.0) >= 1.0, "{scope}: {t}");
    }
    // The credentials verified before still work at once from the same address.
    assert_eq!(status(ALICE.0, ALICE.1.into()).await, 200);
    assert_eq!(status(BOB.0, BOB.1.into()).await, 200);
    let t = gw.metrics_text().await;
    let delayed_before =
        metric_value(&t, "whizard_auth_throttled_total", &[("action", "delayed")]).unwrap_or(0.0);
    for _ in 0..5 {
        assert_eq!(status(ALICE.0, ALICE.1.into()).await, 200);
    }
    let t = gw.metrics_text().await;
    assert_eq!(
        metric_value(&t, "whizard_auth_throttled_total", &[("action", "delayed")]).unwrap_or(0.0),
        delayed_before,
        "a cached login is never delayed"
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_address() {
    let backend = Backend::start().await;
    let gw = Gateway::start(&two_tenant_config(&backend.url(), &backend.write_url(), "")).await;
    let port = gw.http_port();
    ensure_crypto_provider();
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from(ip))
            // The throttle delays answers by seconds, never by a minute.
            .timeout(scaled(Duration::from_secs(60)))
            .build()
            .unwrap()
    };
    let attacker = from([127, 0, 0, 1]);
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query=1");
    let mut statuses = Vec::new();
    for i in 0..25 {
        let r = attacker
            .get(&url)
            .basic_auth("alice", Some(format!("guess-{i}")))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    let r = attacker
        .get(&url)
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "the attacking address is refused even with the right password"
    );
    assert!(r.headers().contains_key("retry-after"));
    // The real user from another address gets in.
    let user = from([127, 0, 0, 2]);
    let r = user
        .get(&url)
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = gw.metrics_text().await;
    assert!(
        metric_value(&t, "whizard_auth_throttled_total", &[("action", "refused")]).unwrap_or(0.0)
            >= 1.0,
        "{t}"
    );
    assert!(
        metric_value(&t, "whizard_auth_throttled_total", &[("action", "delayed")]).unwrap_or(0.0)
            >= 1.0,
        "{t}"
    );
}

/// Issue 27: a flood of concurrent bad logins from one address is refused before most of it
/// is verified, and holds only its share of the verification slots: another address's first
/// login, an argon2id hash, gets in meanwhile. The work done is checked through the hash
/// verifications counted, not through timings.
#[tokio::test]
async fn a_flood_of_bad_logins_from_one_address_is_bounded_and_does_not_hold_up_others() {
    use whizard::auth::{basic::verification_slots, throttle};
    let backend = Backend::start().await;
    // alice's password as argon2id (a slow hash, as agent-a's): her first login waits for a
    // verification slot like the flood's guesses at agent-a do.
    let alice_hash = whizard::auth::password::hash_argon2id(ALICE.1.as_bytes()).unwrap();
    let config = two_tenant_config(&backend.url(), &backend.write_url(), "").replace(
        "$2y$04$8duxTVLOPcIN8ozdK5lDNO8yDMp3SwpA9.zU.TTGZea7VVyqxFsdq",
        &alice_hash,
    );
    assert!(config.contains(&alice_hash));
    let gw = Gateway::start(&config).await;
    ensure_crypto_provider();
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from(ip))
            .timeout(scaled(Duration::from_secs(60)))
            .build()
            .unwrap()
    };
    let url = format!("http://127.0.0.1:{}/api/v1/query?query=1", gw.http_port());
    const FLOOD: usize = 300;
    let attacker = from([127, 0, 0, 2]);
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let req = attacker
                .get(&url)
                .basic_auth(AGENT_A.0, Some(format!("guess-{i}")));
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let metric = |t: &str, name: &str, labels: &[(&str, &str)]| {
        metric_value(t, name, labels).unwrap_or(0.0) as usize
    };
    poll_until(
        Duration::from_secs(30),
        "the flood reaches the gateway",
        || async {
            let t = gw.metrics_text().await;
            (metric(&t, "whizard_auth_verifications_total", &[]) > 0).then_some(())
        },
    )
    .await;
    let login = Instant::now();
    let r = from([127, 0, 0, 3])
        .get(&url)
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    let (login, flood_running) = (login.elapsed(), flood.iter().any(|f| !f.is_finished()));
    assert_eq!(r.status(), 200, "a first login from another address");
    let mut statuses = std::collections::BTreeMap::new();
    for f in flood {
        *statuses.entry(f.await.unwrap().unwrap()).or_insert(0usize) += 1;
    }
    let t = gw.metrics_text().await;
    let verified = metric(
        &t,
        "whizard_auth_verifications_total",
        &[("result", "failure")],
    );
    let bound = throttle::PAIR_REFUSE_AFTER as usize + throttle::share_of(verification_slots());
    eprintln!(
        "flood of {FLOOD}: {verified} verified (bound {bound}), statuses {statuses:?}; \
         the good login took {login:?}, the flood still running after it: {flood_running}"
    );
    assert!(
        flood_running,
        "the good login was not made during the flood"
    );
    assert!(
        (1..=bound).contains(&verified),
        "{verified} hashes verified for the flood: {statuses:?}"
    );
    assert_eq!(
        metric(
            &t,
            "whizard_auth_verifications_total",
            &[("result", "success")]
        ),
        1,
        "alice's login"
    );
    // Each verified guess is a 401, all the others were refused before verification.
    assert_eq!(
        statuses.get(&401).copied().unwrap_or(0),
        verified,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get(&429).copied().unwrap_or(0),
        FLOOD - verified,
        "{statuses:?}"
    );
    assert!(
        metric(
            &t,
            "whizard_auth_throttled_total",
            &[("scope", "slots"), ("action", "refused")]
        ) >= 1,
        "{t}"
    );
}

#[test]
fn shipped_alerting_rules_and_dashboard_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, out, err) = promtool(&[
        "check",
        "rules",
        &format!("{root}/deploy/monitoring/whizard-rules.yaml"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SUCCESS"), "{out}");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/monitoring/whizard-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    // Every panel query is valid PromQL (with Grafana's variables filled in).
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$tenant", ".*");
            assert!(
                whizard::enforcement::enforce_query(
                    &expr,
                    &whizard::enforcement::TenantMatcher::new("tenant_id", ["x"]).unwrap()
                )
                .is_ok(),
                "invalid panel query: {expr}"
            );
        }
    }
    for metric in [
        "whizard_gateway_requests_total",
        "whizard_remote_write_samples_total",
        "whizard_auth_failures_total",
        "whizard_limit_rejections_total",
        "whizard_gateway_request_duration_seconds_bucket",
    ] {
        assert!(
            dash.to_string().contains(metric),
            "the dashboard does not show {metric}"
        );
    }
}

#[tokio::test]
async fn binary_upgrade_hands_over_the_listener_without_failed_requests() {
    let backend = Backend::start().await;
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("upgrade.sock");
    let extra = format!(
        "server: {{grace_period_seconds: 2, upgrade_socket: \"{}\"}}\n",
        sock.display()
    );
    let mut old = Gateway::start(&two_tenant_config(
        &backend.url(),
        &backend.write_url(),
        &extra,
    ))
    .await;
    let base = old.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let load = {
        let (stop, base, served) = (stop.clone(), base.clone(), served.clone());
        tokio::spawn(async move {
            let (mut ok, mut bad) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A new connection each time, so every request meets whichever process listens.
                let client = new_http_client();
                match client
                    .get(format!("{base}/api/v1/query?query=1"))
                    .basic_auth(BOB.0, Some(BOB.1))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok += 1;
                        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(r) => bad.push(r.status().to_string()),
                    Err(e) => bad.push(format!("{e:?}")),
                }
            }
            (ok, bad)
        })
    };
    // The new process waits for the sockets, then the old one hands them over on SIGQUIT.
    let log = std::fs::File::create(sock_dir.path().join("new.log")).unwrap();
    let mut new = std::process::Command::new(whizard_bin())
        .args(["gateway", "--config"])
        .arg(old.config_path())
        .arg("--upgrade")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    poll_until(
        Duration::from_secs(10),
        "the new process listening on the upgrade socket",
        || async { sock.exists().then_some(()) },
    )
    .await;
    old.signal("QUIT");
    let exit = old
        .wait_exit(Duration::from_secs(20))
        .expect("the old process exits");
    assert!(exit.success(), "{exit:?}");
    // The new process serves on the same port.
    let (status, _) = get_as(&base, BOB, "/api/v1/query?query=1").await;
    assert_eq!(status, 200);
    let after = served.load(std::sync::atomic::Ordering::Relaxed);
    poll_until(
        Duration::from_secs(30),
        "20 more requests served by the new process",
        || async {
            (served.load(std::sync::atomic::Ordering::Relaxed) >= after + 20).then_some(())
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, bad) = load.await.unwrap();
    let _ = new.kill();
    let _ = new.wait();
    assert!(ok > 10, "{ok}");
    // The listening socket never goes away: no connection is ever refused. pingora drops a
    // connection that the old process accepted but whose request it had not read yet when the
    // hand-over happened (`IncompleteMessage`); that window is one request wide at most.
    let refused: Vec<_> = bad
        .iter()
        .filter(|e| !e.contains("IncompleteMessage"))
        .collect();
    assert!(
        refused.is_empty(),
        "requests refused or failed during the upgrade: {bad:?}"
    );
    assert!(
        bad.len() <= 1,
        "more than the hand-over race failed: {bad:?}"
    );
}

/// The allocator options compiled into the binary (`src/lib.rs`: thread caches sized for
/// HTTP/2's bursts of streams) are the ones jemalloc runs with: it ignores an option it does
/// not know, or a value out of range, with only a warning on stderr.
#[test]
fn the_allocator_runs_with_the_options_compiled_into_the_binary() {
    let out = std::process::Command::new(whizard_bin())
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run whizard --version");
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    for (option, value) in [
        ("tcache_max", "131072"),
        ("tcache_nslots_small_min", "256"),
        ("tcache_nslots_small_max", "1024"),
    ] {
        assert!(
            stats.contains(&format!("opt.{option}: {value}\n")),
            "jemalloc does not run with {option}:{value}:\n{stats}"
        );
    }
    assert!(!stats.contains("<jemalloc>"), "jemalloc warned:\n{stats}");
}

/// The access log is written in batches (every 100 ms): the lines of the requests answered just
/// before the gateway stops are written before it exits, also when pingora's own shutdown ends
/// the process (SIGINT: pingora's fast shutdown, which exits at once).
#[tokio::test]
async fn the_access_log_lines_of_the_last_requests_are_written_before_exit() {
    let backend = Backend::start().await;
    let config = two_tenant_config(&backend.url(), &backend.write_url(), "");
    let mut gw = Gateway::start(&config).await;
    let client = new_http_client();
    for n in 0..3 {
        let answer = client
            .get(format!("{}/api/v1/query?query=up", gw.url()))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .header("x-request-id", format!("last-before-exit-{n}"))
            .send()
            .await
            .expect("the query");
        assert_eq!(answer.status(), 200);
    }
    gw.signal("INT");
    gw.wait_exit(Duration::from_secs(15)).expect("exited");
    let logs = gw.logs();
    for n in 0..3 {
        assert!(
            logs.contains(&format!("request_id=last-before-exit-{n} ")),
            "no access-log line of request {n}:\n{logs}"
        );
    }
}
