//! Enforcement on answers and bodies that carry no query: the rules and alerts APIs, and
//! Alertmanager alerts, groups and silences. Pure functions over the upstreams' JSON answers,
//! and over the typed model of a posted silence ([`super::silence::PostableSilence`]).
//!
//! Rules and alerts are evaluated by the backend for everyone, so the gateway filters what
//! comes back: a rule is a tenant's when its labels carry the tenant label with one of the
//! tenant's values, or when every selector of its expression is pinned to one of them
//! (`tenant_id="a"`); anything else is dropped. Alerts are the tenant's when their labels say so.

use super::error::EnforceError;
use super::matchers::TenantMatcher;
use super::promql::parse_bounded;
use super::silence::{Matcher, PostableSilence};
use super::walk::visit_selectors;
use promql_parser::label::MatchOp;
use serde_json::Value;

/// True when every selector of `expr` carries `label="v"` with `v` one of the tenant's values
/// (and there is at least one selector). Unparseable expressions are not scoped.
pub fn expr_scoped(expr: &str, tenant: &TenantMatcher) -> bool {
    let Ok(mut parsed) = parse_bounded(expr) else {
        return false;
    };
    let mut scoped = true;
    let selectors = visit_selectors(&mut parsed, 0, &mut |vs| {
        scoped &= vs.matchers.or_matchers.is_empty()
            && vs.matchers.matchers.iter().any(|m| {
                m.name == tenant.label() && m.op == MatchOp::Equal && tenant.allows(&m.value)
            });
        Ok(())
    });
    // `info()` and extensions are refused by the walk: not scoped.
    selectors.is_ok_and(|n| n > 0) && scoped
}

fn labels_allowed(labels: &Value, tenant: &TenantMatcher) -> bool {
    labels
        .get(tenant.label())
        .and_then(Value::as_str)
        .is_some_and(|v| tenant.allows(v))
}

/// Keeps the alerts (objects with `labels`) of the tenant.
fn retain_alerts(alerts: &mut Vec<Value>, tenant: &TenantMatcher) {
    alerts.retain(|a| a.get("labels").is_some_and(|l| labels_allowed(l, tenant)));
}

/// Filters a Prometheus `/api/v1/rules` answer in place.
pub fn filter_rules(answer: &mut Value, tenant: &TenantMatcher) {
    let Some(groups) = answer
        .pointer_mut("/data/groups")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for group in groups.iter_mut() {
        let Some(rules) = group.get_mut("rules").and_then(Value::as_array_mut) else {
            continue;
        };
        rules.retain(|r| {
            r.get("labels").is_some_and(|l| labels_allowed(l, tenant))
                || r.get("query")
                    .and_then(Value::as_str)
                    .is_some_and(|q| expr_scoped(q, tenant))
        });
        for rule in rules.iter_mut() {
            if let Some(alerts) = rule.get_mut("alerts").and_then(Value::as_array_mut) {
                retain_alerts(alerts, tenant);
            }
        }
    }
    groups.retain(|g| {
        g.get("rules")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty())
    });
}

/// Filters a Prometheus `/api/v1/alerts` answer in place.
pub fn filter_alerts(answer: &mut Value, tenant: &TenantMatcher) {
    if let Some(alerts) = answer
        .pointer_mut("/data/alerts")
        .and_then(Value::as_array_mut)
    {
        retain_alerts(alerts, tenant);
    }
}

/// Filters an Alertmanager `GET /api/v2/alerts` answer (an array of alerts) in place.
pub fn filter_am_alerts(answer: &mut Value, tenant: &TenantMatcher) {
    if let Some(alerts) = answer.as_array_mut() {
        retain_alerts(alerts, tenant);
    } else {
        *answer = Value::Array(Vec::new());
    }
}

/// Filters an Alertmanager `GET /api/v2/alerts/groups` answer in place; empty groups go.
pub fn filter_am_groups(answer: &mut Value, tenant: &TenantMatcher) {
    let Some(groups) = answer.as_array_mut() else {
        *answer = Value::Array(Vec::new());
        return;
    };
    for g in groups.iter_mut() {
        match g.get_mut("alerts").and_then(Value::as_array_mut) {
            Some(alerts) => retain_alerts(alerts, tenant),
            None => *g = Value::Null,
        }
    }
    groups.retain(|g| {
        g.get("alerts")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    });
}

/// True when a silence is the tenant's: one of its matchers is `label="v"` (not regex, equal)
/// with `v` one of the tenant's values.
pub fn silence_owned(silence: &Value, tenant: &TenantMatcher) -> bool {
    silence
        .get("matchers")
        .and_then(Value::as_array)
        .is_some_and(|ms| {
            ms.iter().any(|m| {
                is_tenant_matcher(m, tenant.label())
                    && m.get("value")
                        .and_then(Value::as_str)
                        .is_some_and(|v| tenant.allows(v))
            })
        })
}

fn is_tenant_matcher(m: &Value, label: &str) -> bool {
    m.get("name").and_then(Value::as_str) == Some(label)
        && !m.get("isRegex").and_then(Value::as_bool).unwrap_or(false)
        && m.get("isEqual").and_then(Value::as_bool).unwrap_or(true)
}

/// Filters an Alertmanager `GET /api/v2/silences` answer (an array) in place.
pub fn filter_silences(answer: &mut Value, tenant: &TenantMatcher) {
    if let Some(silences) = answer.as_array_mut() {
        silences.retain(|s| silence_owned(s, tenant));
    } else {
        *answer = Value::Array(Vec::new());
    }
}

/// Makes a silence posted by a tenant its own: any matcher on the tenant label must select
/// `tenant_value` (else [`EnforceError::Disjoint`]); those matchers are replaced by exactly one
/// `label="tenant_value"`.
pub fn enforce_silence(
    silence: &mut PostableSilence,
    label: &str,
    tenant_value: &str,
) -> Result<(), EnforceError> {
    for m in silence.matchers.iter().filter(|m| m.name == label) {
        let selects = match (m.is_regex, m.is_equal) {
            (false, true) => m.value == tenant_value,
            (false, false) => m.value != tenant_value,
            // Alertmanager anchors matcher regexes the same way.
            (true, eq) => match regex::Regex::new(&format!("^(?:{})$", m.value)) {
                Ok(re) => re.is_match(tenant_value) == eq,
                Err(_) => false,
            },
        };
        if !selects {
            return Err(EnforceError::Disjoint {
                label: label.to_string(),
                matcher: m.to_string(),
            });
        }
    }
    silence.matchers.retain(|m| m.name != label);
    silence.matchers.push(Matcher {
        name: label.to_string(),
        value: tenant_value.to_string(),
        is_regex: false,
        is_equal: true,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(v: &[&str]) -> TenantMatcher {
        TenantMatcher::new("tenant_id", v.iter().copied()).unwrap()
    }

    #[test]
    fn scoped_expressions() {
        let a = t(&["a"]);
        assert!(expr_scoped(r#"up{tenant_id="a"} == 0"#, &a));
        assert!(expr_scoped(
            r#"sum(rate(x{tenant_id="a"}[5m])) / sum(rate(y{tenant_id="a",job="j"}[5m])) > 0.1"#,
            &a
        ));
        assert!(
            !expr_scoped(r#"up{tenant_id="a"} or up"#, &a),
            "one unpinned selector"
        );
        assert!(!expr_scoped(r#"up{tenant_id="b"}"#, &a));
        assert!(
            !expr_scoped(r#"up{tenant_id=~"a"}"#, &a),
            "only equality pins"
        );
        assert!(!expr_scoped(r#"up{tenant_id!="b"}"#, &a));
        assert!(!expr_scoped("vector(1)", &a), "no selector, no tenant");
        assert!(!expr_scoped("up{", &a));
        assert!(expr_scoped(r#"up{tenant_id="b"}"#, &t(&["a", "b"])));
    }

    #[test]
    fn rules_are_filtered_by_labels_or_expression() {
        let mut answer = json!({"status":"success","data":{"groups":[
            {"name":"g1","rules":[
                {"name":"A","type":"alerting","query":"up == 0","labels":{"tenant_id":"a"},
                 "alerts":[{"labels":{"tenant_id":"a"}},{"labels":{"tenant_id":"b"}}]},
                {"name":"B","type":"alerting","query":"up == 0","labels":{"tenant_id":"b"},"alerts":[]},
                {"name":"C","type":"recording","query":"sum(up{tenant_id=\"a\"})","labels":{}},
                {"name":"D","type":"recording","query":"sum(up)"}
            ]},
            {"name":"g2","rules":[{"name":"E","query":"up","labels":{"severity":"x"}}]}
        ]}});
        filter_rules(&mut answer, &t(&["a"]));
        let groups = answer["data"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{answer}");
        let names: Vec<&str> = groups[0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["A", "C"]);
        assert_eq!(groups[0]["rules"][0]["alerts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn alerts_and_groups_are_filtered() {
        let mut answer = json!({"status":"success","data":{"alerts":[
            {"labels":{"tenant_id":"a","alertname":"x"}},{"labels":{"tenant_id":"b"}},{"labels":{}}]}});
        filter_alerts(&mut answer, &t(&["a"]));
        assert_eq!(answer["data"]["alerts"].as_array().unwrap().len(), 1);
        let mut am = json!([{"labels":{"tenant_id":"b"}},{"labels":{"tenant_id":"a"}}]);
        filter_am_alerts(&mut am, &t(&["a"]));
        assert_eq!(am, json!([{"labels":{"tenant_id":"a"}}]));
        let mut groups = json!([
            {"labels":{},"alerts":[{"labels":{"tenant_id":"b"}}]},
            {"labels":{},"alerts":[{"labels":{"tenant_id":"a"}},{"labels":{"tenant_id":"b"}}]}
        ]);
        filter_am_groups(&mut groups, &t(&["a"]));
        assert_eq!(groups.as_array().unwrap().len(), 1);
        assert_eq!(groups[0]["alerts"].as_array().unwrap().len(), 1);
        let mut not_array = json!({"x":1});
        filter_am_alerts(&mut not_array, &t(&["a"]));
        assert_eq!(not_array, json!([]));
    }

    #[test]
    fn silences_are_owned_by_an_equality_matcher() {
        let mine = json!({"id":"1","matchers":[{"name":"tenant_id","value":"a","isRegex":false,"isEqual":true}]});
        let regex =
            json!({"id":"2","matchers":[{"name":"tenant_id","value":"a|b","isRegex":true}]});
        let other = json!({"id":"3","matchers":[{"name":"tenant_id","value":"b","isRegex":false}]});
        let none = json!({"id":"4","matchers":[{"name":"job","value":"x","isRegex":false}]});
        let negated = json!({"id":"5","matchers":[{"name":"tenant_id","value":"a","isRegex":false,"isEqual":false}]});
        let a = t(&["a"]);
        assert!(silence_owned(&mine, &a));
        for s in [&regex, &other, &none, &negated] {
            assert!(!silence_owned(s, &a), "{s}");
        }
        let mut list = json!([mine, regex, other, none, negated]);
        filter_silences(&mut list, &a);
        assert_eq!(list.as_array().unwrap().len(), 1);
    }

    fn posted(matchers: &[(&str, &str, bool, bool)]) -> PostableSilence {
        PostableSilence {
            id: None,
            matchers: matchers
                .iter()
                .map(|&(name, value, is_regex, is_equal)| Matcher {
                    name: name.into(),
                    value: value.into(),
                    is_regex,
                    is_equal,
                })
                .collect(),
            starts_at: "2026-01-01T00:00:00Z".into(),
            ends_at: "2026-01-02T00:00:00Z".into(),
            created_by: "me".into(),
            comment: "c".into(),
        }
    }

    /// The silence as Alertmanager would list it, for `silence_owned`.
    fn listed(s: &PostableSilence) -> Value {
        serde_json::to_value(s).expect("a silence serialises")
    }

    #[test]
    fn new_silences_get_the_tenant_matcher() {
        let mut s = posted(&[("job", "x", false, true)]);
        enforce_silence(&mut s, "tenant_id", "a").unwrap();
        assert!(silence_owned(&listed(&s), &t(&["a"])));
        assert_eq!(s.matchers.len(), 2);
        assert_eq!(s.comment, "c", "only the matchers change");

        let mut s = posted(&[
            ("tenant_id", "a|b", true, true),
            ("tenant_id", "c", false, false),
        ]);
        enforce_silence(&mut s, "tenant_id", "a").unwrap();
        assert_eq!(
            s.matchers,
            posted(&[("tenant_id", "a", false, true)]).matchers
        );
        assert_eq!(
            listed(&s)["matchers"],
            json!([{"name":"tenant_id","value":"a","isRegex":false,"isEqual":true}])
        );

        // No matchers at all: the silence becomes one of all the tenant's alerts.
        let mut s = posted(&[]);
        enforce_silence(&mut s, "tenant_id", "a").unwrap();
        assert_eq!(
            s.matchers,
            posted(&[("tenant_id", "a", false, true)]).matchers
        );

        for bad in [
            posted(&[("tenant_id", "b", false, true)]),
            posted(&[("tenant_id", "a", false, false)]),
            posted(&[("tenant_id", "b.*", true, true)]),
            posted(&[("tenant_id", "a.*", true, false)]),
            posted(&[("tenant_id", "(", true, true)]),
            posted(&[("job", "x", false, true), ("tenant_id", "b", false, true)]),
        ] {
            let mut s = bad.clone();
            match enforce_silence(&mut s, "tenant_id", "a") {
                Err(EnforceError::Disjoint { matcher, .. }) => {
                    assert!(matcher.starts_with("tenant_id"), "{matcher}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
            assert_eq!(s, bad, "a refused silence is left as it was");
        }
        let mut s = posted(&[("tenant_id", "b", false, true)]);
        assert_eq!(
            enforce_silence(&mut s, "tenant_id", "a")
                .unwrap_err()
                .to_string(),
            "label matcher tenant_id=\"b\" selects no series of the tenants this request may read (label \"tenant_id\")"
        );
    }
}
