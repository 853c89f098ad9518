//! Seed inputs from realistic requests: the benchmark's dashboard queries and remote-write
//! payloads, plus the attack shapes of issue 3 and the silence bodies of issue 26.
//! `fuzz-stable seed` writes them to `corpus/`.

#[path = "../../benches/support/payloads.rs"]
mod payloads;
#[path = "../../benches/support/queries.rs"]
mod queries;

use whizard::gateway::short_way_fuzz;

/// Queries an attacker or an unusual client sends.
const ATTACK_QUERIES: &[&str] = &[
    r#"{__name__=~".+"}"#,
    r#"up{tenant_id!="team-a"}"#,
    r#"up{tenant_id=~".*"}"#,
    r#"up{tenant_id="team-b"}"#,
    r#"up or vector(1)"#,
    r#"up unless on() vector(1)"#,
    r#"label_replace(up, "tenant_id", "team-b", "", "")"#,
    r#"label_join(up, "tenant_id", ",", "job", "instance")"#,
    r#"absent(nonexistent{job="x"})"#,
    r#"count by (tenant_id) (up)"#,
    r#"rate(http_requests_total[5m] @ end() offset 10m)"#,
    r#"http_requests_total @ 1609746000"#,
    r#"max_over_time(deriv(rate(x[1m])[10m:])[1h:5m] offset 2h)"#,
    r#"{"my.utf8.metric", "label.with.dots"="v"}"#,
    r#"up{job="a" or job="b"}"#,
    r#"info(up)"#,
    r#"sum by () (up)"#,
    r#"a / ignoring () b"#,
    r#"up{job='x"} or vector(1) or up{a="'}"#,
    r#"((((((((((up))))))))))"#,
    r#"-up offset -5m"#,
    r#"topk by (job) (3, up)"#,
    r#"limitk(2, up)"#,
    r#"quantile_over_time(0.9, up[5m:30s])"#,
    r#"up # comment"#,
    "`up`",
];

/// Silence bodies: valid ones (with and without id, escapes, every matcher form) and the shapes
/// of issue 26 (keys Alertmanager folds to a field, duplicates, trailing data).
const SILENCES: &[&str] = &[
    r#"{"matchers":[{"name":"alertname","value":"x","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-02T00:00:00Z","createdBy":"me","comment":"c"}"#,
    r#"{"id":"5bd5c7ec-93e6-4f2a-a1b8-3b9a2f0c5d11","matchers":[{"name":"tenant_id","value":"team-.*","isRegex":true,"isEqual":true},{"name":"job","value":"x","isRegex":false,"isEqual":false}],"startsAt":"s","endsAt":"e","createdBy":"me","comment":"c"}"#,
    r#"{"id":null,"matchers":[],"startsAt":"s","endsAt":"e","createdBy":"ü","comment":"ſ"}"#,
    r#"{"matchers":[{"name":"a","value":"b","isRegex":false,"isEqual":null}],"startsAt":"s","endsAt":"e","createdBy":"me","comment":"c"}"#,
    r#"{"matchers":[{"name":"tenant_id","value":"team-a","isRegex":false}],"matcherſ":[{"name":"alertname","value":".+","isRegex":true}],"startsAt":"s","endsAt":"e","createdBy":"me","comment":"c"}"#,
    r#"{"Id":"5bd5c7ec-93e6-4f2a-a1b8-3b9a2f0c5d11","matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"s","endsAt":"e","createdBy":"me","comment":"c"}"#,
    r#"{"matchers":[{"name":"a","value":"b","isRegex":false}],"matcherſ":[],"MATCHERS":[],"startsAt":"s","endsAt":"e","createdBy":"me","comment":"c","comment":"d"}"#,
    r#"{"matchers":[{"name":"job","value":"x","isRegex":false,"iſRegex":true,"nAme":"tenant_id"}],"startsAt":"s","endsAt":"e","createdBy":"me","comment":"c"}"#,
    r#"{"matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"s","endsAt":"e","createdBy":"me","comment":"c"}{"matchers":[]}"#,
];

/// (file name, bytes) for each target: `promql_enforce`, `remote_write_splice`,
/// `remote_write_body`, `silence_json`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    match target {
        "promql_enforce" => {
            let all = queries::DASHBOARD_QUERIES
                .iter()
                .chain(queries::MATCH_SELECTORS)
                .chain(ATTACK_QUERIES);
            for (i, q) in all.enumerate() {
                let mut b = vec![(i % 2) as u8];
                b.extend_from_slice(q.as_bytes());
                out.push((format!("seed-{i:03}"), b));
            }
        }
        "remote_write_splice" | "remote_write_body" => {
            let shapes: &[(usize, usize)] = &[(1, 1), (3, 2), (12, 1), (5, 4)];
            let mut i = 0;
            for &(series, samples) in shapes {
                for version in 0..2u8 {
                    let raw = if version == 0 {
                        payloads::v1_request(series, samples)
                    } else {
                        payloads::v2_request(series, samples)
                    };
                    let body = if target == "remote_write_body" {
                        whizard::remote_write::compress(&raw).expect("compress")
                    } else {
                        raw
                    };
                    let first = version | ((i as u8 % 4) << 1);
                    let mut b = vec![first];
                    b.extend_from_slice(&body);
                    out.push((format!("seed-v{}-{series}x{samples}", version + 1), b));
                    i += 1;
                }
            }
        }
        "silence_json" => {
            for (i, body) in SILENCES.iter().enumerate() {
                out.push((format!("seed-{i:03}"), body.as_bytes().to_vec()));
            }
        }
        "request_head" => {
            for (i, head) in short_way_fuzz::REQUEST_SEEDS.iter().enumerate() {
                out.push((format!("seed-{i:03}"), head.to_vec()));
            }
        }
        "answer_head" => {
            for (i, head) in short_way_fuzz::ANSWER_SEEDS.iter().enumerate() {
                out.push((format!("seed-{i:03}"), head.to_vec()));
            }
        }
        "chunked_body" => {
            for (i, body) in short_way_fuzz::CHUNKED_SEEDS.iter().enumerate() {
                out.push((format!("seed-{i:03}"), body.to_vec()));
            }
        }
        _ => {}
    }
    out
}
