//! Global recording rules land under the tenant each recorded series names: the reconciler's
//! rendered rule files, evaluated by a real Prometheus server (as the global ruler), written
//! through the gateway configured by the reconciler's rendered config, stored in a real
//! Prometheus backend. Also what an attacker holding the global ruler's credentials can and
//! cannot do with `write_routing: by_label`.

mod common;

use common::*;
use prost::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const SERVICE_HOST: &str = "http://gateway-central.whizard.svc:9090";
const HEADER: &str = "THANOS-TENANT";

/// A global rule without the tenant label: its series go to the default tenant.
const EXTRA_RULES: &str = "\
apiVersion: monitoring.whizard.io/v1alpha1
kind: GlobalRuleGroup
metadata:
  name: fleet-totals
  namespace: whizard
  labels: {monitoring.whizard.io/service: whizard.central}
spec:
  rules:
    - record: global:up:count
      expr: count(up)
";

/// What `whizard reconciler render` produced for the example Service plus [`EXTRA_RULES`].
struct Rendered {
    objects: Vec<Value>,
}

impl Rendered {
    fn new() -> Rendered {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/reconciler");
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        std::fs::write(dir.path().join("09-global-totals.yaml"), EXTRA_RULES).unwrap();
        let out = whizard::reconciler::render_dir_at(dir.path(), 0).expect("render");
        let objects = serde_norway::Deserializer::from_str(&out)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect();
        Rendered { objects }
    }

    fn object(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
    }

    /// The gateway config, pointed at loopback: the listeners on this test's ports and every
    /// upstream at the backend (a Prometheus stands in for Receive and Query). Users,
    /// tenants and tenancy are the rendered ones, untouched.
    fn gateway_config(&self, query: &str, receive: &str) -> String {
        let text = self.object("Secret", "gateway-central-config")["stringData"]["gateway.yaml"]
            .as_str()
            .unwrap()
            .to_string();
        let mut cfg: Value = serde_norway::from_str(&text).unwrap();
        cfg["listen"] = json!({"http": "127.0.0.1:${HTTP_PORT}"});
        cfg["upstreams"] = json!({"query": query, "rules": query, "receive": receive});
        serde_norway::to_string(&cfg).unwrap()
    }

    /// (user, password) of a ruler's gateway credentials: `which` is `query` or `write`.
    fn ruler_user(&self, ruler: &str, which: &str) -> (String, String) {
        let creds =
            &self.object("Secret", &format!("ruler-{ruler}-gateway-credentials"))["stringData"];
        let password = creds[format!("{which}-password")]
            .as_str()
            .unwrap()
            .to_string();
        let yaml = if which == "write" {
            "remote-write.yaml"
        } else {
            "query.yaml"
        };
        let config: Value = serde_norway::from_str(creds[yaml].as_str().unwrap()).unwrap();
        let auth = if which == "write" {
            &config["remote_write"][0]["basic_auth"]
        } else {
            &config[0]["http_config"]["basic_auth"]
        };
        (auth["username"].as_str().unwrap().to_string(), password)
    }

    /// The global ruler's rule files: (file name, content) from every rule ConfigMap.
    fn global_rule_files(&self) -> Vec<(String, String)> {
        let mut files = Vec::new();
        for o in &self.objects {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            if o["kind"] == "ConfigMap" && name.starts_with("ruler-central-global-rulefiles-") {
                for (file, content) in o["data"].as_object().unwrap() {
                    files.push((file.clone(), content.as_str().unwrap().to_string()));
                }
            }
        }
        files
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A snappy remote-write 1.0 body: one sample now per series.
fn body(series: &[&[(&str, &str)]]) -> Vec<u8> {
    let ts = now_ms();
    let req = prompb::WriteRequest {
        timeseries: series
            .iter()
            .map(|labels| {
                let mut labels: Vec<prompb::Label> = labels
                    .iter()
                    .map(|(n, v)| prompb::Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect();
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                prompb::TimeSeries {
                    labels,
                    samples: vec![prompb::Sample {
                        value: 1.0,
                        timestamp: ts,
                    }],
                }
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

async fn post_as(
    gw: &Gateway,
    user: &(String, String),
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = new_http_client()
        .post(format!("{}/api/v1/receive", gw.url()))
        .basic_auth(&user.0, Some(&user.1))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let answer = req.body(body).send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

fn label<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels.get(name).map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_recording_rules_land_under_the_tenant_each_series_names() {
    let rendered = Rendered::new();
    let backend = Backend::start().await;
    let gw = Gateway::start(&rendered.gateway_config(&backend.url(), &backend.write_url())).await;

    // What the tenants' agents wrote (straight into the stand-in Thanos).
    let seed: Vec<Vec<(&str, &str)>> = [
        ("team-a", "a1"),
        ("team-a", "a2"),
        ("team-b", "b1"),
        ("team-c", "c1"),
        ("team-c", "c2"),
        ("team-c", "c3"),
    ]
    .iter()
    .map(|&(t, i)| {
        vec![
            ("__name__", "up"),
            ("job", "node"),
            ("instance", i),
            ("tenant_id", t),
        ]
    })
    .collect();
    let seed_refs: Vec<&[(&str, &str)]> = seed.iter().map(Vec::as_slice).collect();
    let seeded = post_write(
        &backend.url(),
        ("-", "-"),
        "/api/v1/write",
        body(&seed_refs),
    )
    .await;
    assert!(seeded.status().is_success(), "seeding the backend failed");

    // The global ruler: a real Prometheus evaluating the rendered rule files (reading the
    // backend) and remote-writing with the rendered remote-write config and credentials.
    let files = rendered.global_rule_files();
    assert!(
        files.iter().any(|(f, _)| f.contains("fleet-slo"))
            && files.iter().any(|(f, _)| f.contains("fleet-totals")),
        "rendered global rule files: {files:?}"
    );
    let creds =
        &rendered.object("Secret", "ruler-central-global-gateway-credentials")["stringData"];
    let mut remote_write: Value =
        serde_norway::from_str(creds["remote-write.yaml"].as_str().unwrap()).unwrap();
    let rw = &mut remote_write["remote_write"][0];
    rw["url"] = json!(rw["url"].as_str().unwrap().replace(SERVICE_HOST, &gw.url()));
    rw["basic_auth"]["password_file"] = json!("credentials/write-password");
    rw["queue_config"] = json!({"batch_send_deadline": "1s", "min_backoff": "100ms"});
    let config = json!({
        "global": {"evaluation_interval": "1s", "scrape_interval": "15s"},
        "rule_files": ["rules/*.yaml"],
        "remote_read": [{"url": format!("{}/api/v1/read", backend.url()), "read_recent": true}],
        "remote_write": remote_write["remote_write"],
    });
    let mut ruler_files: Vec<(String, String)> = files
        .iter()
        .map(|(f, c)| (format!("rules/{f}"), c.clone()))
        .collect();
    ruler_files.push((
        "credentials/write-password".into(),
        creds["write-password"].as_str().unwrap().into(),
    ));
    let ruler_file_refs: Vec<(&str, &str)> = ruler_files
        .iter()
        .map(|(f, c)| (f.as_str(), c.as_str()))
        .collect();
    let _ruler = Backend::start_with_config(
        &serde_norway::to_string(&config).unwrap(),
        &ruler_file_refs,
        &[],
    )
    .await;

    // Each tenant's recorded count is stored under that tenant, with that tenant's labels
    // (team-a's external label proves the series went through team-a's part).
    let deadline = scaled(Duration::from_secs(30));
    let counts = poll_until(deadline, "a recorded series per tenant", || async {
        let v = backend.query_vector("tenant:up:count").await;
        (v.len() == 3).then_some(v)
    })
    .await;
    let mut got: Vec<(String, Option<String>, f64)> = counts
        .iter()
        .map(|s| {
            (
                label(&s.metric, "tenant_id")
                    .unwrap_or_default()
                    .to_string(),
                label(&s.metric, "cluster").map(str::to_string),
                s.value,
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("team-a".into(), Some("prod-eu-1".into()), 2.0),
            ("team-b".into(), None, 1.0),
            ("team-c".into(), None, 3.0),
        ]
    );
    // The rule without the tenant label: the Service's default tenant.
    let totals = poll_until(deadline, "the fleet total", || async {
        let v = backend.query_vector("global:up:count").await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(
        label(&totals[0].metric, "tenant_id"),
        Some("default-tenant")
    );
    assert_eq!(totals[0].value, 6.0);

    // Through the gateway, team-a's own ruler credentials read only team-a's count.
    let team_a = rendered.ruler_user("team-a", "query");
    let answer = api_get(
        &with_credentials(&gw.url(), &team_a.0, &team_a.1),
        "/api/v1/query",
        &[("query", "tenant:up:count")],
    )
    .await;
    let seen = vector_of(&answer, "team-a's recorded series");
    assert_eq!(seen.len(), 1, "{answer}");
    assert_eq!(label(&seen[0].metric, "tenant_id"), Some("team-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_writes_refuse_foreign_tenants_and_lose_nothing_on_partial_failure() {
    let rendered = Rendered::new();
    let backend = Backend::start().await;
    // The receive upstream answers 503 once, then forwards to the backend.
    let receive = RecordingUpstream::forwarding_to(&backend.url());
    let receive_url = format!("{}/api/v1/write", receive.url());
    let gw = Gateway::start(&rendered.gateway_config(&backend.url(), &receive_url)).await;
    let ruler = rendered.ruler_user("central-global", "write");
    let probe = |tenant: &'static str, instance: &'static str| {
        vec![
            ("__name__", "probe"),
            ("instance", instance),
            ("tenant_id", tenant),
        ]
    };

    // A series naming a tenant the Service does not have: the whole write is refused, the
    // answer names the series, nothing is stored.
    let (status, text) = post_as(
        &gw,
        &ruler,
        &[],
        body(&[&probe("team-a", "p1"), &probe("stranger", "p2")]),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("series 1") && text.contains("stranger"),
        "the refusal names the series: {text}"
    );
    assert_eq!(receive.count(), 0, "nothing was forwarded");

    // A tenant header the identity may not use: refused before anything is read.
    let (status, text) = post_as(
        &gw,
        &ruler,
        &[(HEADER, "stranger")],
        body(&[&probe("team-a", "p3")]),
    )
    .await;
    assert_eq!(status, 403, "{text}");

    // Naming a tenant the identity may write sends everything there, its labels replacing
    // the series' own.
    let (status, text) = post_as(
        &gw,
        &ruler,
        &[(HEADER, "team-b")],
        body(&[&probe("team-a", "named")]),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {text}");
    let named = backend.query_vector("probe{instance=\"named\"}").await;
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(label(&named[0].metric, "tenant_id"), Some("team-b"));
    let sent = receive.requests();
    assert_eq!(sent.last().unwrap().header(HEADER), Some("team-b"));

    // One part refused by the receiver (503): the client gets the 503 (and retries), and the
    // retry stores every series: nothing is lost.
    receive.clear();
    receive.push_reply(Reply::new(503, "receive overloaded"));
    let both = body(&[&probe("team-a", "r1"), &probe("team-c", "r2")]);
    let (status, text) = post_as(&gw, &ruler, &[], both.clone()).await;
    assert_eq!(status, 503, "{text}");
    let tenants: Vec<String> = receive
        .requests()
        .iter()
        .map(|r| r.header(HEADER).unwrap_or_default().to_string())
        .collect();
    let mut sorted = tenants.clone();
    sorted.sort();
    assert_eq!(sorted, ["team-a", "team-c"], "one request per tenant");
    let (status, text) = post_as(&gw, &ruler, &[], both).await;
    assert!((200..300).contains(&status), "retry: {status} {text}");
    let stored = backend.query_vector("probe{instance=~\"r.\"}").await;
    let mut stored: Vec<(String, String)> = stored
        .iter()
        .map(|s| {
            (
                label(&s.metric, "instance").unwrap().to_string(),
                label(&s.metric, "tenant_id").unwrap().to_string(),
            )
        })
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("r1".into(), "team-a".into()),
            ("r2".into(), "team-c".into())
        ]
    );
    // Every request that went upstream carried exactly its tenant's series.
    for r in receive.requests() {
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
        let w = prompb::WriteRequest::decode(raw.as_slice()).unwrap();
        let tenant = r.header(HEADER).unwrap();
        for s in &w.timeseries {
            let t = s.labels.iter().find(|l| l.name == "tenant_id").unwrap();
            assert_eq!(t.value, tenant, "series under the wrong tenant header");
        }
    }
}
