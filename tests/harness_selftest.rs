//! Self-test of the end-to-end harness in tests/common: real Prometheus backend and agent,
//! the recording upstream, and the Gateway process plumbing (against a stand-in binary, so
//! this test does not depend on the gateway's own behaviour).

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn agent_remote_writes_directly_to_backend() {
    let mut backend = Backend::start().await;
    let agent = Agent::builder(&backend.write_url())
        .job("selftest")
        .external_label("cluster", "harness")
        .keep_metrics("up|prometheus_build_info|prometheus_agent_.*")
        .start()
        .await;

    let series = backend
        .wait_for_series(r#"up{job="selftest"}"#, Duration::from_secs(30))
        .await;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["cluster"], "harness");
    assert_eq!(series[0]["instance"], agent.address());

    let up = backend.query_vector(r#"up{job="selftest"}"#).await;
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].value, 1.0);
    assert!(backend
        .label_values("job")
        .await
        .contains(&"selftest".to_string()));
    assert!(agent.samples_sent().await >= 1.0);

    // promtool against the backend (no credentials needed here).
    let (code, out, err) = promtool_query(&backend.url(), r#"up{job="selftest"}"#);
    assert_eq!(code, 0, "promtool: {out} {err}");
    assert!(out.contains("cluster=\"harness\""), "{out}");

    // Outage and recovery on the same port and data dir: data survives, writes resume.
    let port = backend.port();
    backend.kill();
    assert!(!backend.is_running());
    assert!(
        reqwest_status(&format!("{}/-/ready", backend.url()))
            .await
            .is_none(),
        "backend still answering after kill"
    );
    backend.restart().await;
    assert_eq!(backend.port(), port);
    assert!(!backend.series(r#"up{job="selftest"}"#).await.is_empty());
    let sent = agent.samples_sent().await;
    agent
        .wait_samples_sent(sent + 1.0, Duration::from_secs(30))
        .await;
}

async fn reqwest_status(url: &str) -> Option<u16> {
    http_client()
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

fn raw_exchange(port: u16, request: &[u8], responses: usize) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    // Each canned answer is a JSON object, so a complete exchange ends with '}'.
    while got.matches("HTTP/1.1 ").count() < responses || !got.ends_with('}') {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

#[tokio::test]
async fn recording_upstream_round_trip() {
    let up = RecordingUpstream::start();

    // reqwest: form POST, content-length body.
    let r = http_client()
        .post(format!("{}/api/v1/query?x=1", up.url()))
        .header("THANOS-TENANT", "team-a")
        .form(&[("query", "up{job=\"a\"}")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "success"
    );
    let rec = up.last().unwrap();
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path(), "/api/v1/query");
    assert_eq!(rec.header("thanos-tenant"), Some("team-a"));
    assert_eq!(rec.param("query"), vec!["up{job=\"a\"}".to_string()]);
    assert_eq!(rec.param("x"), vec!["1".to_string()]);

    // Raw: a chunked body, then a second request on the same keep-alive connection.
    up.clear();
    let req = b"POST /api/v1/receive HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n\
GET /a?b=c%20d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    let port = up.port();
    let got = tokio::task::spawn_blocking(move || raw_exchange(port, req, 2))
        .await
        .unwrap();
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].chunked);
    assert_eq!(reqs[0].body_str(), "hello world");
    assert_eq!(reqs[1].query_params(), vec![("b".into(), "c d".into())]);
    assert_eq!(reqs[1].body, b"abc");

    // Runtime-changeable answers: one-shot 503, then the standing reply.
    up.push_reply(Reply::new(503, "busy").header("retry-after", "1"));
    up.set_reply(Reply::json(200, &json!({"ok": true})));
    let a = http_client().get(up.url()).send().await.unwrap();
    assert_eq!(a.status().as_u16(), 503);
    assert_eq!(a.headers()["retry-after"], "1");
    assert_eq!(a.text().await.unwrap(), "busy");
    let b = http_client().get(up.url()).send().await.unwrap();
    assert_eq!(b.status().as_u16(), 200);
    up.set_response(429, "slow down");
    let c = http_client().get(up.url()).send().await.unwrap();
    assert_eq!(c.status().as_u16(), 429);
    assert_eq!(
        up.wait_for_requests(5, Duration::from_secs(5)).await.len(),
        5
    );
}

#[tokio::test]
async fn recording_upstream_forwards_to_backend() {
    let backend = Backend::start().await;
    let up = RecordingUpstream::forwarding_to(&backend.url());
    let v = api_get(&up.url(), "/api/v1/query", &[("query", "vector(42)")]).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "42");
    let rec = up.last().unwrap();
    assert_eq!(rec.param("query"), vec!["vector(42)".to_string()]);
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let set: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(set.len(), ports.len());
    for p in ports {
        std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port bindable");
    }
}

#[test]
fn text_format_parser() {
    let text =
        "# HELP x y\nwhizard_gateway_requests_total{tenant=\"a\",route=\"query\",code=\"200\"} 3\n\
                whizard_gateway_requests_total{tenant=\"b\",route=\"query\",code=\"200\"} 4\n\
                whizard_build_info{version=\"0.1.0\"} 1\nplain 2.5e1\n";
    assert_eq!(
        metric_value(text, "whizard_gateway_requests_total", &[("tenant", "a")]),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            text,
            "whizard_gateway_requests_total",
            &[("route", "query")]
        ),
        Some(7.0)
    );
    assert_eq!(metric_value(text, "plain", &[]), Some(25.0));
    assert_eq!(metric_value(text, "absent", &[]), None);
}

/// A stand-in for `whizard gateway --config FILE`: serves /-/ready and /metrics on the
/// `listen.http` port, prints "reloaded" on SIGHUP, refuses configs containing `refuse: true`.
const FAKE_GATEWAY: &str = r#"
import http.server, re, signal, sys
cfg = open(sys.argv[sys.argv.index("--config") + 1]).read()
if "refuse: true" in cfg:
    sys.stderr.write("error: tenants[0].refuse: unknown key\n"); sys.exit(2)
port = int(re.search(r'http: "127\.0\.0\.1:(\d+)"', cfg).group(1))
def hup(*_):
    print("reloaded", flush=True)
signal.signal(signal.SIGHUP, hup)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/-/ready" else b"whizard_build_info 1\n"
        self.send_response(200); self.send_header("content-length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
print("listening", port, flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn fake_gateway_bin(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("fake_gateway.py");
    std::fs::write(&script, FAKE_GATEWAY).unwrap();
    let bin = dir.join("whizard");
    std::fs::write(
        &bin,
        format!("#!/bin/sh\nexec python3 {} \"$@\"\n", script.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[tokio::test]
async fn gateway_process_plumbing() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_gateway_bin(tmp.path());
    let yaml =
        "listen:\n  http: \"127.0.0.1:${HTTP_PORT}\"\n  metrics: \"127.0.0.1:${METRICS_PORT}\"\n\
                upstreams:\n  query: \"http://127.0.0.1:1\"\n# dir: ${DIR}\n";
    let mut gw = Gateway::start_with_binary(&bin, yaml).await;
    let cfg = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(
        cfg.contains(&format!("127.0.0.1:{}", gw.http_port())),
        "{cfg}"
    );
    assert!(cfg.contains(&gw.dir().display().to_string()));
    assert!(!cfg.contains("${"));
    assert!(gw
        .metrics_url()
        .ends_with(&format!(":{}/metrics", gw.metrics_port())));
    assert_eq!(
        reqwest_status(&format!("{}/-/ready", gw.url())).await,
        Some(200)
    );
    gw.wait_for_log("listening", Duration::from_secs(10)).await;
    gw.signal("HUP");
    gw.wait_for_log("reloaded", Duration::from_secs(10)).await;
    assert!(gw.pid() > 0);
    gw.stop();
    assert!(!gw.is_running());
    gw.restart().await;
    assert_eq!(
        reqwest_status(&format!("{}/-/ready", gw.url())).await,
        Some(200)
    );

    let (code, _out, err) = Gateway::try_start_expect_failure_full(&bin, "refuse: true\n").await;
    assert_eq!(code, 2);
    assert!(err.contains("tenants[0].refuse"), "{err}");
}

#[tokio::test]
async fn agent_auth_headers_and_retries_reach_upstream() {
    // Basic auth + extra header, first answer 503 (retried), then 200.
    let sink = RecordingUpstream::start();
    sink.push_reply(Reply::new(503, "try later"));
    let agent = Agent::builder(&format!("{}/api/v1/receive", sink.url()))
        .job("auth-basic")
        .basic_auth("agent-a", "s3cret")
        .header("X-Test", "yes")
        .keep_metrics("up")
        .send_metadata(false)
        .start()
        .await;
    let reqs = sink.wait_for_requests(2, Duration::from_secs(30)).await;
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/api/v1/receive");
        // base64("agent-a:s3cret")
        assert_eq!(
            r.header("authorization"),
            Some("Basic YWdlbnQtYTpzM2NyZXQ=")
        );
        // Canary: Debian's Prometheus 2.42 drops remote_write `headers` (checked by hand
        // with a plain HTTP listener too). If this starts failing, it sends them now: update
        // the doc of AgentBuilder::header.
        assert_eq!(r.header("x-test"), None, "{:?}", r.headers);
        assert_eq!(r.header("content-encoding"), Some("snappy"));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert!(!r.body.is_empty());
    }
    assert_eq!(
        reqs[0].body, reqs[1].body,
        "the retry resends the same batch"
    );
    poll_until(
        Duration::from_secs(10),
        "agent to count the retry",
        || async { (agent.samples_retried().await > 0.0).then_some(()) },
    )
    .await;
    agent.wait_samples_sent(1.0, Duration::from_secs(30)).await;

    // OAuth2 client_credentials: token from one upstream, bearer on the writes to another.
    let idp = RecordingUpstream::start_with(Reply::json(
        200,
        &json!({"access_token": "tok-123", "token_type": "Bearer", "expires_in": 3600}),
    ));
    let sink2 = RecordingUpstream::start();
    let _agent2 = Agent::builder(&format!("{}/api/v1/receive", sink2.url()))
        .oauth2("agent-b", "b-secret", &format!("{}/token", idp.url()))
        .oauth2_scopes(&["write"])
        .keep_metrics("up")
        .start()
        .await;
    let w = sink2.wait_for_requests(1, Duration::from_secs(30)).await;
    assert_eq!(w[0].header("authorization"), Some("Bearer tok-123"));
    let t = idp.requests();
    assert_eq!(t[0].path(), "/token");
    assert_eq!(
        t[0].param("grant_type"),
        vec!["client_credentials".to_string()]
    );
    assert_eq!(t[0].param("scope"), vec!["write".to_string()]);
}

#[test]
fn test_pki_issues_verifiable_certificates() {
    let pki = TestPki::new();
    let server = pki.server("gateway", &["whizard.test"]);
    let client = pki.client("agent-a", &[]);
    for pair in [&server, &client] {
        let (code, out, err) = run_with_deadline(
            std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(&pki.ca_cert)
                .arg(&pair.cert),
            Duration::from_secs(30),
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(pair.key.exists());
    }
    let (_, text, _) = run_with_deadline(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&server.cert),
        Duration::from_secs(30),
    );
    assert!(text.contains("DNS:whizard.test") && text.contains("IP Address:127.0.0.1"));
}
