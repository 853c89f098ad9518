//! Kubernetes label selectors (`matchLabels` + `matchExpressions`) over plain label maps, for
//! the Ruler's `ruleSelectors[]` and `ruleNamespaceSelector` (kept as free-form JSON in the
//! CRD, so they are checked here).

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid label selector {selector}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

/// Whether `labels` match `selector`. An empty selector (`{}`) matches everything, as in
/// Kubernetes; a malformed one is an error, never "matches nothing" in silence.
pub fn matches(selector: &Value, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
    let err = |reason: &str| SelectorError {
        selector: selector.to_string(),
        reason: reason.to_string(),
    };
    let Some(obj) = selector.as_object() else {
        return Err(err("not an object"));
    };
    let mut ok = true;
    if let Some(ml) = obj.get("matchLabels").filter(|v| !v.is_null()) {
        let ml = ml
            .as_object()
            .ok_or_else(|| err("matchLabels is not a map"))?;
        for (k, v) in ml {
            let v = v
                .as_str()
                .ok_or_else(|| err("matchLabels value is not a string"))?;
            ok &= labels.get(k).map(String::as_str) == Some(v);
        }
    }
    if let Some(exprs) = obj.get("matchExpressions").filter(|v| !v.is_null()) {
        let exprs = exprs
            .as_array()
            .ok_or_else(|| err("matchExpressions is not a list"))?;
        for e in exprs {
            let key = e["key"]
                .as_str()
                .ok_or_else(|| err("matchExpressions key missing"))?;
            let values: Vec<&str> = match &e["values"] {
                Value::Null => Vec::new(),
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => return Err(err("matchExpressions values is not a list")),
            };
            let have = labels.get(key).map(String::as_str);
            ok &= match e["operator"].as_str() {
                Some("In") if !values.is_empty() => have.is_some_and(|h| values.contains(&h)),
                Some("NotIn") if !values.is_empty() => !have.is_some_and(|h| values.contains(&h)),
                Some("Exists") if values.is_empty() => have.is_some(),
                Some("DoesNotExist") if values.is_empty() => have.is_none(),
                Some(op) => return Err(err(&format!("operator {op} with values {values:?}"))),
                None => return Err(err("matchExpressions operator missing")),
            };
        }
    }
    Ok(ok)
}

/// Whether `labels` match any of `selectors` (ORed); no selectors match nothing.
pub fn matches_any(
    selectors: &[Value],
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    for s in selectors {
        if matches(s, labels)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions() {
        let labels = l(&[("role", "alert"), ("team", "a")]);
        assert!(matches(&json!({}), &labels).unwrap());
        assert!(matches(&json!({"matchLabels": {"role": "alert"}}), &labels).unwrap());
        assert!(!matches(&json!({"matchLabels": {"role": "x"}}), &labels).unwrap());
        let sel = json!({"matchLabels": {"role": "alert"}, "matchExpressions": [
            {"key": "team", "operator": "In", "values": ["a", "b"]},
            {"key": "skip", "operator": "DoesNotExist"}]});
        assert!(matches(&sel, &labels).unwrap());
        let sel =
            json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]});
        assert!(!matches(&sel, &labels).unwrap());
        let sel = json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]});
        assert!(matches(&sel, &labels).unwrap());
        assert!(matches(&sel, &l(&[])).map(|m| !m).unwrap());
    }

    #[test]
    fn ored_and_empty_list() {
        let labels = l(&[("a", "1")]);
        let sels = [
            json!({"matchLabels": {"a": "2"}}),
            json!({"matchLabels": {"a": "1"}}),
        ];
        assert!(matches_any(&sels, &labels).unwrap());
        assert!(!matches_any(&sels[..1], &labels).unwrap());
        assert!(!matches_any(&[], &labels).unwrap());
    }

    #[test]
    fn malformed_selectors_are_errors() {
        let labels = l(&[]);
        for bad in [
            json!("x"),
            json!({"matchLabels": ["a"]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        ] {
            assert!(matches(&bad, &labels).is_err(), "{bad}");
        }
    }
}
