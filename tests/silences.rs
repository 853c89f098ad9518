//! Issue 26: silences posted through the gateway against a real Alertmanager (Debian
//! `prometheus-alertmanager`, Go encoding/json). A corpus of bodies whose keys Alertmanager
//! reads case-insensitively with Unicode folding (`Matchers`, `matcherſ`, `\u017f` escapes,
//! `Id`, duplicates before and after the real key, smuggled matcher fields) is posted as team-a;
//! then Alertmanager itself, asked directly, must hold only silences that are team-a's alone,
//! and team-b's silence must be untouched.

mod common;
mod fixture;
#[path = "../crates/core/src/enforcement/silence/spellings.rs"]
mod spellings;

use common::*;
use fixture::*;
use serde_json::{json, Value};
use spellings::variants;
use std::collections::BTreeSet;
use std::time::Duration;
use whizard::enforcement::silence::{MATCHER_FIELDS, SILENCE_FIELDS};

/// A matcher that, read by Alertmanager, would silence every tenant's alerts.
const EVERYTHING: &str = r#"[{"name":"alertname","value":".+","isRegex":true}]"#;

/// A body as members (raw key text between the quotes, raw JSON value).
#[derive(Clone)]
struct Body(Vec<(String, String)>);

impl Body {
    /// A valid team-a silence whose comment tags it.
    fn valid(comment: &str) -> Body {
        Body(vec![
            (
                "matchers".into(),
                r#"[{"name":"alertname","value":"CorpusAlert","isRegex":false}]"#.into(),
            ),
            ("startsAt".into(), r#""2026-01-01T00:00:00Z""#.into()),
            ("endsAt".into(), r#""2099-01-01T00:00:00Z""#.into()),
            ("createdBy".into(), r#""corpus""#.into()),
            ("comment".into(), Value::String(comment.into()).to_string()),
        ])
    }

    /// The member `key` renamed to `raw_key` with `value`; added at the end when absent.
    fn rename(mut self, key: &str, raw_key: &str, value: &str) -> Body {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(m) => *m = (raw_key.into(), value.into()),
            None => self.0.push((raw_key.into(), value.into())),
        }
        self
    }

    fn set(self, key: &str, value: &str) -> Body {
        self.rename(key, key, value)
    }

    fn push(mut self, raw_key: &str, value: &str) -> Body {
        self.0.push((raw_key.into(), value.into()));
        self
    }

    fn front(mut self, raw_key: &str, value: &str) -> Body {
        self.0.insert(0, (raw_key.into(), value.into()));
        self
    }

    fn text(&self) -> String {
        let members: Vec<String> = self.0.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", members.join(","))
    }
}

#[derive(Debug)]
enum Expect {
    /// 200: Alertmanager stores it (as team-a's).
    Stored,
    /// Refused with this status; the message contains `names` when given.
    Refused(u16, Option<String>),
}

struct Case {
    name: String,
    comment: String,
    body: String,
    expect: Expect,
}

/// The corpus; `b_id` is team-b's silence, which the `id` tricks aim at.
fn corpus(b_id: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: String, make: &dyn Fn(&str) -> String, expect: Expect| {
        let kind = if matches!(expect, Expect::Stored) {
            "ok"
        } else {
            "refused"
        };
        let comment = format!("corpus-{kind}-{}", cases.len());
        cases.push(Case {
            name,
            body: make(&comment),
            comment,
            expect,
        });
    };
    let b_id_json = Value::String(b_id.into()).to_string();
    let names = |key: &str| Some(format!("{key:?}"));

    // Every field under every spelling Alertmanager folds to it: instead of the field, after
    // it, before it. The values are the attacks: team-b's id, a match-everything matcher.
    for field in SILENCE_FIELDS {
        let value = match field {
            "id" => b_id_json.clone(),
            "matchers" => EVERYTHING.to_string(),
            "startsAt" | "endsAt" => r#""2030-01-01T00:00:00Z""#.to_string(),
            _ => r#""smuggled""#.to_string(),
        };
        for v in variants(field) {
            let (f, val, key) = (field, value.clone(), v.clone());
            add(
                format!("{v} instead of {field}"),
                &move |c| Body::valid(c).rename(f, &key, &val).text(),
                Expect::Refused(400, names(&v)),
            );
            let (val, key) = (value.clone(), v.clone());
            add(
                format!("{v} after {field}"),
                &move |c| Body::valid(c).push(&key, &val).text(),
                Expect::Refused(400, names(&v)),
            );
            let (val, key) = (value.clone(), v.clone());
            add(
                format!("{v} before {field}"),
                &move |c| Body::valid(c).front(&key, &val).text(),
                Expect::Refused(400, names(&v)),
            );
        }
    }

    // The same keys written with \u escapes: named unescaped.
    for (raw, key, value) in [
        (r"matcher\u017f", "matcher\u{17F}", EVERYTHING.to_string()),
        (r"matcher\u017F", "matcher\u{17F}", EVERYTHING.to_string()),
        (r"\u004datchers", "Matchers", EVERYTHING.to_string()),
        (r"\u0049d", "Id", b_id_json.clone()),
        (r"\u0130d", "\u{130}d", b_id_json.clone()),
        (r"i\u0044", "iD", b_id_json.clone()),
        (r"\u0069\u0044", "iD", b_id_json.clone()),
    ] {
        add(
            format!("escaped {raw}"),
            &move |c| Body::valid(c).push(raw, &value).text(),
            Expect::Refused(400, names(key)),
        );
    }

    // Exact duplicates, the attack after and before the real key.
    let dup = Some("duplicate key".to_string());
    add(
        "matchers twice, everything last".into(),
        &|c| Body::valid(c).push("matchers", EVERYTHING).text(),
        Expect::Refused(400, dup.clone()),
    );
    add(
        "matchers twice, everything first".into(),
        &|c| Body::valid(c).front("matchers", EVERYTHING).text(),
        Expect::Refused(400, dup.clone()),
    );
    add(
        "escaped matchers twice".into(),
        &|c| Body::valid(c).push(r"\u006datchers", EVERYTHING).text(),
        Expect::Refused(400, dup.clone()),
    );
    {
        let b = b_id_json.clone();
        add(
            "id twice, team-b's last".into(),
            &move |c| Body::valid(c).front("id", r#""""#).push("id", &b).text(),
            Expect::Refused(400, dup.clone()),
        );
    }
    add(
        "comment twice".into(),
        &|c| Body::valid(c).push("comment", r#""second""#).text(),
        Expect::Refused(400, dup.clone()),
    );

    // Matcher fields smuggled inside a matcher: the tenant label, team-b, a regex, a negation.
    for field in MATCHER_FIELDS {
        let value = match field {
            "name" => r#""tenant_id""#,
            "value" => r#""team-b""#,
            "isRegex" => "true",
            _ => "false",
        };
        for v in variants(field) {
            let key = v.clone();
            add(
                format!("matcher key {v}"),
                &move |c| {
                    let m = format!(
                        r#"[{{"name":"job","value":"x","isRegex":false,"{key}":{value}}}]"#
                    );
                    Body::valid(c).set("matchers", &m).text()
                },
                Expect::Refused(400, names(&v)),
            );
        }
    }
    add(
        "matcher name twice".into(),
        &|c| {
            let m = r#"[{"name":"job","value":"team-b","isRegex":false,"name":"tenant_id"}]"#;
            Body::valid(c).set("matchers", m).text()
        },
        Expect::Refused(400, Some(r#"duplicate key "name" in matchers[0]"#.into())),
    );

    // Not one JSON object.
    add(
        "two objects".into(),
        &|c| {
            format!(
                "{}{}",
                Body::valid(c).text(),
                Body::valid("x").set("matchers", EVERYTHING).text()
            )
        },
        Expect::Refused(400, Some("not valid JSON".into())),
    );
    add(
        "an array".into(),
        &|c| format!("[{}]", Body::valid(c).text()),
        Expect::Refused(400, Some("must be a JSON object".into())),
    );
    add(
        "trailing garbage".into(),
        &|c| format!("{} ,", Body::valid(c).text()),
        Expect::Refused(400, Some("not valid JSON".into())),
    );

    // Enforcement and ownership on well-formed bodies.
    {
        let b = b_id_json.clone();
        add(
            "team-b's id".into(),
            &move |c| Body::valid(c).push("id", &b).text(),
            Expect::Refused(404, None),
        );
    }
    add(
        "team-b matcher".into(),
        &|c| {
            let m = r#"[{"name":"tenant_id","value":"team-b","isRegex":false}]"#;
            Body::valid(c).set("matchers", m).text()
        },
        Expect::Refused(403, Some("tenant_id".into())),
    );
    add(
        "id with a path".into(),
        &|c| Body::valid(c).push("id", r#""x/../y""#).text(),
        Expect::Refused(400, Some("not an Alertmanager silence id".into())),
    );

    // Accepted: the real keys, escaped or not, and matchers on the tenant label that select it.
    add("plain".into(), &|c| Body::valid(c).text(), Expect::Stored);
    add(
        "escaped real keys".into(),
        &|c| {
            Body::valid(c)
                .rename("matchers", r"\u006datchers", EVERYTHING)
                .rename("startsAt", r"start\u0073At", r#""2026-01-01T00:00:00Z""#)
                .text()
        },
        Expect::Stored,
    );
    add(
        "empty id".into(),
        &|c| Body::valid(c).front("id", r#""""#).text(),
        Expect::Stored,
    );
    add(
        "null id".into(),
        &|c| Body::valid(c).push("id", "null").text(),
        Expect::Stored,
    );
    add(
        "tenant regex".into(),
        &|c| {
            let m = r#"[{"name":"tenant_id","value":"team-.*","isRegex":true},{"name":"job","value":"x","isRegex":false,"isEqual":false}]"#;
            Body::valid(c).set("matchers", m).text()
        },
        Expect::Stored,
    );
    add(
        "folding characters in values".into(),
        &|c| {
            let m = r#"[{"name":"alertname","value":"matcherſ İd \u212A","isRegex":false,"isEqual":true}]"#;
            Body::valid(c).set("matchers", m).text()
        },
        Expect::Stored,
    );
    cases
}

fn tenant_matchers(silence: &Value) -> Vec<Value> {
    silence["matchers"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["name"] == "tenant_id")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn posted_silences_are_the_tenants_alone_in_alertmanager() {
    let am = Alertmanager::start().await;
    // Query and receive are never called here; any address will do.
    let config = two_tenant_config_full(
        &am.url(),
        &am.url(),
        &format!("  alertmanager: \"{}\"", am.url()),
        "",
    );
    let gateway = Gateway::start(&config).await;

    let b_silence = json!({
        "matchers": [{"name": "tenant_id", "value": "team-b", "isRegex": false, "isEqual": true},
                     {"name": "severity", "value": "page", "isRegex": false, "isEqual": true}],
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "team-b", "comment": "team-b-silence"
    });
    let b_id = am.post_silence(b_silence.clone()).await;
    let client = new_http_client();
    let direct = |path: String| {
        let client = client.clone();
        async move {
            let r = client.get(path).send().await.expect("alertmanager");
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.expect("JSON")
        }
    };
    let b_before = direct(format!("{}/api/v2/silence/{b_id}", am.url())).await;
    assert_eq!(b_before["status"]["state"], "active", "{b_before}");

    let cases = corpus(&b_id);
    assert!(cases.len() >= 100, "the corpus has {} bodies", cases.len());
    let url = format!("{}/team-a/api/v2/silences", gateway.url());
    let mut failures = Vec::new();
    let mut refused_400 = 0.0;
    for case in &cases {
        let r = client
            .post(&url)
            .basic_auth(RW.0, Some(RW.1))
            .header("content-type", "application/json")
            .body(case.body.clone())
            .send()
            .await
            .expect("gateway");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match &case.expect {
            Expect::Stored if status == 200 && answer["silenceID"].is_string() => {}
            Expect::Refused(want, names) if status == *want => {
                let message = answer["error"].as_str().unwrap_or_default();
                if let Some(n) = names {
                    if !message.contains(n.as_str()) {
                        failures.push(format!(
                            "{}: message does not name {n}: {message}\n  body: {}",
                            case.name, case.body
                        ));
                    }
                }
                if *want == 400 {
                    refused_400 += 1.0;
                }
            }
            expect => failures.push(format!(
                "{}: expected {expect:?}, got {status} {answer}\n  body: {}",
                case.name, case.body
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Alertmanager's own view: team-b's silence as it was, every other silence one the corpus
    // meant to store, each with exactly one tenant_id matcher: tenant_id="team-a".
    let all = direct(format!("{}/api/v2/silences", am.url())).await;
    let all = all.as_array().expect("a list of silences");
    let b_after = all
        .iter()
        .find(|s| s["id"] == b_id.as_str())
        .expect("team-b's silence is still there");
    assert_eq!(b_after["status"]["state"], "active", "{b_after}");
    for field in ["matchers", "comment", "createdBy", "endsAt", "startsAt"] {
        assert_eq!(b_after[field], b_before[field], "team-b's {field} changed");
    }
    let team_a =
        json!([{"name": "tenant_id", "value": "team-a", "isRegex": false, "isEqual": true}]);
    let mut stored = BTreeSet::new();
    for s in all.iter().filter(|s| s["id"] != b_id.as_str()) {
        assert_eq!(
            Value::Array(tenant_matchers(s)),
            team_a,
            "a silence posted as team-a is not team-a's alone: {s}"
        );
        assert_eq!(s["status"]["state"], "active", "{s}");
        stored.insert(s["comment"].as_str().unwrap_or_default().to_string());
    }
    let expected: BTreeSet<String> = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Stored))
        .map(|c| c.comment.clone())
        .collect();
    assert_eq!(stored, expected, "what Alertmanager stored");

    // The refusals are counted per tenant and reason.
    let metrics_url = gateway.metrics_url();
    let counted = poll_until(
        Duration::from_secs(10),
        "silence refusals in the metrics",
        || {
            let client = client.clone();
            let metrics_url = metrics_url.clone();
            async move {
                let text = client
                    .get(&metrics_url)
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                let sum: f64 = [
                    "silence_unknown_key",
                    "silence_duplicate_key",
                    "silence_syntax",
                    "silence_not_object",
                    "silence_id",
                ]
                .iter()
                .filter_map(|reason| {
                    metric_value(
                        &text,
                        "whizard_enforcement_rejections_total",
                        &[("tenant", "team-a"), ("reason", reason)],
                    )
                })
                .sum();
                (sum > 0.0).then_some(sum)
            }
        },
    )
    .await;
    assert_eq!(counted, refused_400, "400 refusals counted");
}
