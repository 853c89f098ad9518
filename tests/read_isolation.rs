//! Issue 3: the attack corpus. One real Prometheus holds two tenants' series, rules and alerts,
//! one real Alertmanager holds their alerts and silences; every request below is sent through
//! the gateway as a team-a identity, and nothing of team-b may come back.

mod common;
mod fixture;

use common::*;
use fixture::*;
use serde_json::{json, Value};
use std::time::Duration;

const RULES: &str = r#"
groups:
  - name: team-a-rules
    rules:
      - alert: TeamAAlert
        expr: up{tenant_id="team-a"} > 0
        labels: {tenant_id: team-a, severity: info}
      - record: team_a:up:sum
        expr: sum(up{tenant_id="team-a"})
  - name: team-b-rules
    rules:
      - alert: TeamBAlert
        expr: up{tenant_id="team-b"} > 0
        labels: {tenant_id: team-b, severity: info}
      - record: team_b:up:sum
        expr: sum(up{tenant_id="team-b"})
  - name: unscoped-rules
    rules:
      - alert: UnscopedAlert
        expr: up > 0
"#;

/// Strings that only team-b's data contains.
fn markers(agent_b: &str) -> Vec<String> {
    vec![
        "team-b".into(),
        "job-b".into(),
        agent_b.into(),
        "TeamBAlert".into(),
        "team_b:up".into(),
        "team-b-silence".into(),
        "BAmAlert".into(),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Status(u16),
    /// Any 4xx: refused without data.
    Refused,
    /// 200 whose result carries no series of any tenant.
    Empty,
}

struct Case {
    name: &'static str,
    user: (&'static str, &'static str),
    method: &'static str,
    path: String,
    body: Option<(&'static str, String)>,
    headers: Vec<(&'static str, &'static str)>,
    expect: Expect,
}

fn q(path: &str, query: &str) -> String {
    format!("{path}?query={}", url_encode(query))
}

fn get(name: &'static str, path: impl Into<String>, expect: Expect) -> Case {
    Case {
        name,
        user: ALICE,
        method: "GET",
        path: path.into(),
        body: None,
        headers: vec![],
        expect,
    }
}

fn post(name: &'static str, path: impl Into<String>, form: &str, expect: Expect) -> Case {
    Case {
        name,
        user: ALICE,
        method: "POST",
        path: path.into(),
        body: Some(("application/x-www-form-urlencoded", form.to_string())),
        headers: vec![],
        expect,
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn corpus(b_silence: &str) -> Vec<Case> {
    use Expect::*;
    let ok = Status(200);
    let deep = format!("{}up{}", "(".repeat(300), ")".repeat(300));
    let huge = format!("up{{job=\"{}\"}}", "a".repeat(70_000));
    let mut c = vec![
        // PromQL, GET
        get("plain selector", q("/api/v1/query", "up"), ok),
        get("any name", q("/api/v1/query", r#"{__name__=~".+"}"#), ok),
        get("empty-matching name", q("/api/v1/query", r#"{__name__=~".*"}"#), Refused),
        get("tenant negation", q("/api/v1/query", r#"up{tenant_id!="team-a"}"#), Status(403)),
        get("tenant wildcard", q("/api/v1/query", r#"up{tenant_id=~".*"}"#), ok),
        get("tenant regex other", q("/api/v1/query", r#"up{tenant_id=~"team-b"}"#), Status(403)),
        get("tenant equal other", q("/api/v1/query", r#"up{tenant_id="team-b"}"#), Status(403)),
        get("tenant empty", q("/api/v1/query", r#"up{tenant_id=""}"#), Status(403)),
        get("tenant regex negation", q("/api/v1/query", r#"up{tenant_id!~"team-a"}"#), Status(403)),
        get("tenant two matchers", q("/api/v1/query", r#"up{tenant_id=~"team-.+",tenant_id!="team-a"}"#), Status(403)),
        get("other job", q("/api/v1/query", r#"up{job="job-b"}"#), Empty),
        get("or vector", q("/api/v1/query", "up or vector(1)"), ok),
        get("unless", q("/api/v1/query", r#"up unless up{job="job-a"}"#), Empty),
        get("and on", q("/api/v1/query", "up and on() vector(1)"), ok),
        get("label_replace tenant", q("/api/v1/query", r#"label_replace(up, "tenant_id", "team-b", "tenant_id", ".*")"#), ok),
        get("label_replace from vector", q("/api/v1/query", r#"label_replace(vector(1), "tenant_id", "team-b", "", "")"#), ok),
        get("label_join", q("/api/v1/query", r#"label_join(up, "x", ",", "tenant_id", "job")"#), ok),
        get("absent other", q("/api/v1/query", r#"absent(up{job="job-b"})"#), ok),
        get("absent_over_time", q("/api/v1/query", "absent_over_time(up[5m])"), ok),
        get("count by tenant", q("/api/v1/query", "count by (tenant_id) (up)"), ok),
        get("count without", q("/api/v1/query", "count without (instance) (up)"), ok),
        get("topk", q("/api/v1/query", "topk(100, up)"), ok),
        get("count_values", q("/api/v1/query", r#"count_values("v", up)"#), ok),
        get("rate", q("/api/v1/query", "sum by (job) (rate(up[5m]))"), ok),
        get("subquery", q("/api/v1/query", "max_over_time(up[10m:30s])"), ok),
        get("nested subquery", q("/api/v1/query", "max_over_time(deriv(rate(up[1m])[5m:])[10m:1m])"), ok),
        get("offset", q("/api/v1/query", "up offset 1m"), ok),
        get("at end", q("/api/v1/query", "up @ end()"), ok),
        get("at timestamp", q("/api/v1/query", "up @ 1700000000"), ok),
        get("binary group_left", q("/api/v1/query", "up * on(job) group_left(instance) up"), ok),
        get("scalar", q("/api/v1/query", "scalar(sum(up))"), ok),
        get("utf8 quoted name", q("/api/v1/query", r#"{"up"}"#), ok),
        get("number", q("/api/v1/query", "1+1"), ok),
        get("string", q("/api/v1/query", r#""team-b""#), ok),
        get("or matcher group", q("/api/v1/query", r#"up{job="job-a" or job="job-b"}"#), Refused),
        get("info", q("/api/v1/query", "info(up)"), Refused),
        get("parse error", q("/api/v1/query", "up{"), Status(400)),
        get("deep nesting", q("/api/v1/query", &deep), Status(400)),
        post("huge query", "/api/v1/query", &form(&[("query", &huge)]), Refused),
        get("missing query", "/api/v1/query", Status(400)),
        get("repeated query", format!("{}&query=up", q("/api/v1/query", r#"up{tenant_id="team-b"}"#)), Status(400)),
        get("repeated query reversed", format!("{}&query={}", q("/api/v1/query", "up"), url_encode(r#"{job="job-b"}"#)), Status(400)),
        get("encoded param name", format!("/api/v1/query?%71uery={}", url_encode("up")), ok),
        get("query_range", format!("{}&start=0&end=9999999999&step=1000000", q("/api/v1/query_range", "up")), ok),
        get("exemplars", format!("{}&start=0&end=9999999999", q("/api/v1/query_exemplars", "up")), ok),
        get("exemplars other", q("/api/v1/query_exemplars", r#"up{tenant_id="team-b"}"#), Status(403)),
        get("explain", q("/api/v1/query_explain", "up"), Refused),
        // PromQL, POST
        post("post query", "/api/v1/query", &form(&[("query", "up")]), ok),
        post("post other job", "/api/v1/query", &form(&[("query", r#"{job="job-b"}"#)]), Empty),
        post("post tenant other", "/api/v1/query", &form(&[("query", r#"up{tenant_id="team-b"}"#)]), Status(403)),
        post("post url+body", q("/api/v1/query", r#"{job="job-b"}"#), &form(&[("query", "up")]), Status(400)),
        post("post body twice", "/api/v1/query", &form(&[("query", "up"), ("query", r#"{job="job-b"}"#)]), Status(400)),
        post("post range", "/api/v1/query_range", &form(&[("query", "up"), ("start", "0"), ("end", "9999999999"), ("step", "1000000")]), ok),
        post("post empty body", "/api/v1/query", "", Status(400)),
        Case {
            name: "post json",
            user: ALICE,
            method: "POST",
            path: "/api/v1/query".into(),
            body: Some(("application/json", r#"{"query":"up"}"#.into())),
            headers: vec![],
            expect: Status(415),
        },
        Case {
            name: "get with body",
            user: ALICE,
            method: "GET",
            path: q("/api/v1/query", "up"),
            body: Some(("application/x-www-form-urlencoded", form(&[("query", r#"{job="job-b"}"#)]))),
            headers: vec![],
            expect: Status(400),
        },
        // Paths
        get("upper case", q("/API/V1/QUERY", "up"), Status(404)),
        get("trailing slash", q("/api/v1/query/", "up"), Status(404)),
        get("double slash", q("//api/v1/query", "up"), Status(404)),
        get("dot segment", q("/api/v1/./query", "up"), Status(404)),
        get("dot-dot", q("/api/v2/../v1/query", "up"), Status(404)),
        get("encoded slash", q("/api/v1%2Fquery", "up"), Status(404)),
        get("encoded slash tail", q("/api/v1/query%2F", "up"), Status(404)),
        get("leading dot", q("/./api/v1/query", "up"), Status(404)),
        get("other tenant prefix", q("/team-b/api/v1/query", "up"), Status(403)),
        get("prefix traversal", q("/team-a/../team-b/api/v1/query", "up"), Status(404)),
        get("encoded prefix", q("/%74eam-b/api/v1/query", "up"), Status(404)),
        get("unknown api", "/api/v1/unknown", Status(404)),
        get("root", "/", Status(404)),
        // Header spoofing
        Case { name: "tenant header other", headers: vec![("THANOS-TENANT", "team-b")], ..get("", q("/api/v1/query", "up"), Status(403)) },
        Case { name: "tenant header lower", headers: vec![("thanos-tenant", "team-b")], ..get("", q("/api/v1/query", "up"), Status(403)) },
        Case { name: "tenant header twice", headers: vec![("THANOS-TENANT", "team-a"), ("THANOS-TENANT", "team-b")], ..get("", q("/api/v1/query", "up"), Status(400)) },
        Case { name: "tenant header list", headers: vec![("THANOS-TENANT", "team-a|team-b")], ..get("", q("/api/v1/query", "up"), Status(403)) },
        Case { name: "other tenancy header", headers: vec![("X-Scope-OrgID", "team-b")], ..get("", q("/api/v1/query", "up"), ok) },
        // match[] routes
        get("series no match", "/api/v1/series", ok),
        get("series any", format!("/api/v1/series?match[]={}", url_encode(r#"{__name__=~".+"}"#)), ok),
        get("series other tenant", format!("/api/v1/series?match[]={}", url_encode(r#"{tenant_id="team-b"}"#)), Status(403)),
        get("series other job", format!("/api/v1/series?match[]={}", url_encode(r#"{job="job-b"}"#)), Empty),
        get("series two", format!("/api/v1/series?match[]=up&match[]={}", url_encode(r#"{job=~".+"}"#)), ok),
        get("series empty match", "/api/v1/series?match[]=", Status(400)),
        get("series expression", format!("/api/v1/series?match[]={}", url_encode("rate(up[5m])")), Status(400)),
        // Rewrites are cached per scope: a query's cached rewrite must not make the same text
        // pass as a match[] selector, a cached selector must stay enforced, and refusals are
        // not cached into successes.
        get("series offset (cached as a query)", format!("/api/v1/series?match[]={}", url_encode("up offset 1m")), Status(400)),
        get("series any again", format!("/api/v1/series?match[]={}", url_encode(r#"{__name__=~".+"}"#)), ok),
        get("series other tenant again", format!("/api/v1/series?match[]={}", url_encode(r#"{tenant_id="team-b"}"#)), Status(403)),
        get("series other job again", format!("/api/v1/series?match[]={}", url_encode(r#"{job="job-b"}"#)), Empty),
        post("series post", "/api/v1/series", &form(&[("match[]", r#"{__name__=~".+"}"#)]), ok),
        post("series url+body", "/api/v1/series?match[]=up", &form(&[("match[]", r#"{job="job-b"}"#)]), Status(400)),
        get("labels", "/api/v1/labels", ok),
        get("labels match", format!("/api/v1/labels?match[]={}", url_encode(r#"{job="job-b"}"#)), ok),
        get("label values job", "/api/v1/label/job/values", ok),
        get("label values instance", "/api/v1/label/instance/values", ok),
        get("label values tenant", "/api/v1/label/tenant_id/values", ok),
        get("label values name", "/api/v1/label/__name__/values", ok),
        get("label values encoded", "/api/v1/label/%6aob/values", ok),
        get("federate", "/federate?match[]=up", ok),
        get("federate no match", "/federate", ok),
        get("federate other", format!("/federate?match[]={}", url_encode(r#"{tenant_id="team-b"}"#)), Status(403)),
        get("tsdb status", "/api/v1/status/tsdb", Status(403)),
        // Denied
        get("metadata", "/api/v1/metadata", Status(403)),
        get("targets", "/api/v1/targets", Status(403)),
        get("targets metadata", "/api/v1/targets/metadata", Status(403)),
        get("scrape pools", "/api/v1/scrape_pools", Status(403)),
        get("alertmanagers", "/api/v1/alertmanagers", Status(403)),
        get("status config", "/api/v1/status/config", Status(403)),
        get("status flags", "/api/v1/status/flags", Status(403)),
        get("runtimeinfo", "/api/v1/status/runtimeinfo", Status(403)),
        get("walreplay", "/api/v1/status/walreplay", Status(403)),
        post("admin snapshot", "/api/v1/admin/tsdb/snapshot", "", Status(403)),
        post("admin delete", "/api/v1/admin/tsdb/delete_series?match[]=up", "", Status(403)),
        post("remote read", "/api/v1/read", "", Status(403)),
        get("stores", "/api/v1/stores", Status(403)),
        get("lifecycle reload", "/-/quit", Status(404)),
        // Passthrough
        get("buildinfo", "/api/v1/status/buildinfo", ok),
        get("format_query", q("/api/v1/format_query", r#"up{job="job-b"}"#), ok),
        // Rules and alerts
        get("rules", "/api/v1/rules", ok),
        get("rules alert type", "/api/v1/rules?type=alert", ok),
        get("rules match", format!("/api/v1/rules?match[]={}", url_encode(r#"{tenant_id="team-b"}"#)), ok),
        get("alerts", "/api/v1/alerts", ok),
        // Alertmanager
        get("am alerts", "/api/v2/alerts", ok),
        get("am alerts filter", format!("/api/v2/alerts?filter={}", url_encode(r#"tenant_id="team-b""#)), ok),
        get("am groups", "/api/v2/alerts/groups", ok),
        get("am silences", "/api/v2/silences", ok),
        get("am other silence", format!("/api/v2/silence/{b_silence}"), Status(404)),
        Case { name: "am delete other silence", user: RW, method: "DELETE", ..get("", format!("/team-a/api/v2/silence/{b_silence}"), Status(404)) },
        Case {
            name: "am post other tenant silence",
            user: RW,
            method: "POST",
            path: "/team-a/api/v2/silences".into(),
            body: Some(("application/json", json!({"matchers":[{"name":"tenant_id","value":"team-b","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"x","comment":"x"}).to_string())),
            headers: vec![],
            expect: Status(403),
        },
        Case {
            name: "am update other silence",
            user: RW,
            method: "POST",
            path: "/team-a/api/v2/silences".into(),
            body: Some(("application/json", json!({"id": b_silence, "matchers":[{"name":"job","value":"x","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"x","comment":"x"}).to_string())),
            headers: vec![],
            expect: Status(404),
        },
        Case {
            name: "am reader cannot silence",
            user: ALICE,
            method: "POST",
            path: "/api/v2/silences".into(),
            body: Some(("application/json", json!({"matchers":[{"name":"job","value":"x","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"x","comment":"x"}).to_string())),
            headers: vec![],
            expect: Status(403),
        },
        get("am status", "/api/v2/status", Status(404)),
        // Tenant-prefixed forms of enforced routes
        get("prefixed query", q("/team-a/api/v1/query", r#"{__name__=~".+"}"#), ok),
        get("prefixed series", "/team-a/api/v1/series", ok),
        get("prefixed label", "/team-a/api/v1/label/job/values", ok),
        get("prefixed rules", "/team-a/api/v1/rules", ok),
    ];
    // A reader of both tenants naming team-a gets team-a only.
    c.push(Case {
        name: "multi-tenant reader names team-a",
        user: OPS,
        ..get("", q("/team-a/api/v1/query", "up"), ok)
    });
    c.push(Case {
        name: "multi-tenant reader via header",
        user: OPS,
        headers: vec![("THANOS-TENANT", "team-a")],
        ..get("", "/api/v1/series", ok)
    });
    c
}

fn collect_tenants(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if k == "tenant_id" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_string());
                    }
                }
                collect_tenants(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_tenants(v, out)),
        _ => {}
    }
}

fn result_is_empty(v: &Value) -> bool {
    match &v["data"] {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o
            .get("result")
            .and_then(Value::as_array)
            .is_some_and(|r| r.is_empty()),
        _ => false,
    }
}

#[tokio::test]
async fn no_request_of_the_corpus_returns_another_tenants_data() {
    let am = Alertmanager::start().await;
    let t = TwoTenants::start_custom(
        &[
            "--web.enable-lifecycle",
            "--enable-feature=exemplar-storage",
        ],
        &format!("  alertmanager: \"{}\"\n  query_kind: prometheus", am.url()),
        "",
    )
    .await;

    // Rules in the backend, evaluated every second.
    let dir = t.backend.dir();
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global: {scrape_interval: 15s, evaluation_interval: 1s}\nrule_files: [rules.yml]\nscrape_configs: []\n",
    )
    .unwrap();
    let r = new_http_client()
        .post(format!("{}/-/reload", t.backend.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    poll_until(
        Duration::from_secs(60),
        "both tenants' alerts firing in the backend",
        || async {
            let v = t.backend.query(r#"ALERTS{alertstate="firing"}"#).await;
            let n = v["data"]["result"].as_array().map(|a| a.len()).unwrap_or(0);
            (n >= 3).then_some(())
        },
    )
    .await;

    // Alerts and silences of both tenants in Alertmanager.
    am.post_alerts(json!([
        {"labels": {"alertname": "AAmAlert", "tenant_id": "team-a"}},
        {"labels": {"alertname": "BAmAlert", "tenant_id": "team-b"}}
    ]))
    .await;
    let silence = |tenant: &str, comment: &str| {
        json!({"matchers": [{"name": "tenant_id", "value": tenant, "isRegex": false}],
               "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
               "createdBy": "test", "comment": comment})
    };
    let _a_silence = am.post_silence(silence("team-a", "team-a-silence")).await;
    let b_silence = am.post_silence(silence("team-b", "team-b-silence")).await;

    let agent_b_instance = t.agent_b.address();
    let markers = markers(&agent_b_instance);
    let cases = corpus(&b_silence);
    assert!(cases.len() >= 80, "the corpus has {} requests", cases.len());
    let client = new_http_client();
    let base = t.gateway.url();
    let addr = base.trim_start_matches("http://").to_string();
    let mut failures = Vec::new();
    for case in &cases {
        let auth = basic(case.user);
        let mut headers: Vec<(&str, &str)> = vec![("Authorization", auth.as_str())];
        headers.extend(case.headers.iter().copied());
        let body = case.body.as_ref().map(|(ct, b)| (*ct, b.as_bytes()));
        let (status, text) = raw_request(&addr, case.method, &case.path, &headers, body).await;
        let request_text = format!("{} {:?}", case.path, case.body);
        let ok = match case.expect {
            Expect::Status(s) => status == s,
            Expect::Refused => (400..500).contains(&status),
            Expect::Empty => status == 200,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {status}: {}",
                case.name,
                case.expect,
                &text[..text.len().min(300)]
            ));
            continue;
        }
        if !(200..300).contains(&status) {
            continue;
        }
        // Nothing of team-b, unless the request itself spelled it out (then check tenant labels).
        let decoded_request = url_decode(&request_text);
        for m in &markers {
            if !decoded_request.contains(m.as_str()) && text.contains(m.as_str()) {
                failures.push(format!(
                    "{}: LEAK of {m:?}: {}",
                    case.name,
                    &text[..text.len().min(500)]
                ));
            }
        }
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            if !decoded_request.contains("team-b") {
                let mut tenants = Vec::new();
                collect_tenants(&v, &mut tenants);
                if tenants.iter().any(|t| t != "team-a") {
                    failures.push(format!("{}: LEAK of tenants {tenants:?}", case.name));
                }
            }
            if case.expect == Expect::Empty && !result_is_empty(&v) {
                failures.push(format!("{}: expected an empty result: {text}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Positive checks: the tenant does see its own rules, alerts and silences.
    let (_, rules) = get_as(&base, ALICE, "/api/v1/rules").await;
    let names: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| {
            g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(names, vec!["TeamAAlert", "team_a:up:sum"], "{rules}");
    let (_, alerts) = get_as(&base, ALICE, "/api/v1/alerts").await;
    assert!(
        !alerts["data"]["alerts"].as_array().unwrap().is_empty(),
        "{alerts}"
    );
    let (_, am_alerts) = get_as(&base, ALICE, "/api/v2/alerts").await;
    assert_eq!(am_alerts.as_array().unwrap().len(), 1, "{am_alerts}");
    let (_, silences) = get_as(&base, ALICE, "/api/v2/silences").await;
    assert_eq!(silences.as_array().unwrap().len(), 1, "{silences}");
    let (_, job) = get_as(&base, ALICE, "/api/v1/label/job/values").await;
    assert_eq!(job["data"], json!(["job-a"]));

    // A team-a writer creates a silence: it gets the tenant matcher and is listed for team-a only.
    let r = client
        .post(format!("{base}/team-a/api/v2/silences"))
        .basic_auth(RW.0, Some(RW.1))
        .json(&json!({"matchers":[{"name":"job","value":"job-a","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"rw","comment":"new"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    let direct: Value = client
        .get(format!("{}/api/v2/silence/{id}", am.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        direct["matchers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "tenant_id" && m["value"] == "team-a"),
        "{direct}"
    );
    let (status, _) = get_as(&base, ALICE, &format!("/api/v2/silence/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = get_as(&base, BOB, &format!("/api/v2/silence/{id}")).await;
    assert_eq!(status, 404);
    let r = client
        .delete(format!("{base}/team-a/api/v2/silence/{id}"))
        .basic_auth(RW.0, Some(RW.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
