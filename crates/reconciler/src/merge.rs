//! Three-layer configuration: code defaults → `Service.spec.<x>TemplateSpec` → component CR.
//!
//! # Merge rules
//! Layers are merged pairwise on their JSON form (`upper.fill_from(lower)`), like Whizard's
//! `mergo.Merge(dst, src)` without override:
//! 1. A field the upper layer leaves *empty* — absent, `null`, `""`, `[]` or `{}` — takes the
//!    lower layer's value.
//! 2. Objects are merged key by key, recursively (so `podMetadata.labels` and `nodeSelector`
//!    are unions, the upper layer winning per key).
//! 3. Everything else set in the upper layer wins, including an explicit `0` or `false` in an
//!    optional field (`replicas: 0` scales to zero; it is not "unset").
//! 4. Lists are atoms: a non-empty `flags` (or `tenants`, `tolerations`, ...) list replaces the
//!    lower layer's list entirely.
//!
//! After the spec merge, `flags` are merged into the generated command line by
//! [`merge_flags`]: repeatable flags (`--label`, `--endpoint`, ...) are appended, any other flag
//! replaces the generated flag of the same name, and the result is sorted (the command — e.g.
//! `receive` — stays first).

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Merges `lower` into `upper` following the rules in the module docs.
pub fn merge_values(upper: &mut Value, lower: &Value) {
    if is_empty(upper) {
        if !is_empty(lower) {
            *upper = lower.clone();
        }
        return;
    }
    if let (Value::Object(u), Value::Object(l)) = (upper, lower) {
        for (k, lv) in l {
            match u.get_mut(k) {
                Some(uv) => merge_values(uv, lv),
                None => {
                    if !is_empty(lv) {
                        u.insert(k.clone(), lv.clone());
                    }
                }
            }
        }
    }
}

/// Merges typed specs through their JSON form: the result is `upper` with its empty fields
/// filled from `lower`.
pub fn merge<T: Serialize + DeserializeOwned>(upper: &T, lower: &T) -> T {
    let mut u = serde_json::to_value(upper).expect("spec serializes");
    let l = serde_json::to_value(lower).expect("spec serializes");
    merge_values(&mut u, &l);
    serde_json::from_value(u).expect("merged spec deserializes")
}

/// Merges three layers: `cr` over `template` over `defaults`.
pub fn layered<T: Serialize + DeserializeOwned>(defaults: &T, template: &T, cr: &T) -> T {
    let mid = merge(template, defaults);
    merge(cr, &mid)
}

/// Flags that may appear more than once on a Thanos command line.
pub const REPEATABLE_FLAGS: &[&str] = &[
    "--label",
    "--endpoint",
    "--endpoint-strict",
    "--store",
    "--query",
    "--rule-file",
    "--alertmanagers.url",
    "--query.replica-label",
    "--selector-label",
    "--deduplication.replica-label",
    "--alert.label-drop",
    "--receive.otlp-promote-resource-attributes",
];

fn flag_name(arg: &str) -> &str {
    arg.split('=').next().unwrap_or(arg)
}

/// Merges user `extra` flags into `generated` args (module docs) and sorts them. The first
/// generated arg (the subcommand, e.g. `receive`) stays first.
pub fn merge_flags(generated: &[String], extra: &[String]) -> Vec<String> {
    let (cmd, rest): (Vec<String>, Vec<String>) = match generated.first() {
        Some(first) if !first.starts_with('-') => (vec![first.clone()], generated[1..].to_vec()),
        _ => (Vec::new(), generated.to_vec()),
    };
    let mut args = rest;
    for flag in extra {
        let flag = flag.trim();
        if flag.is_empty() {
            continue;
        }
        let flag = if flag.starts_with('-') {
            flag.to_string()
        } else {
            format!("--{flag}")
        };
        let name = flag_name(&flag).to_string();
        if REPEATABLE_FLAGS.contains(&name.as_str()) {
            if !args.contains(&flag) {
                args.push(flag);
            }
        } else {
            args.retain(|a| flag_name(a) != name);
            args.push(flag);
        }
    }
    args.sort();
    args.dedup();
    cmd.into_iter().chain(args).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CommonSpec, IngesterSpec};
    use serde_json::json;

    #[test]
    fn empty_upper_takes_lower() {
        let mut u = json!({"a": "", "b": [], "c": {}, "d": null});
        merge_values(
            &mut u,
            &json!({"a": "x", "b": [1], "c": {"k": 1}, "d": 2, "e": 3}),
        );
        assert_eq!(
            u,
            json!({"a": "x", "b": [1], "c": {"k": 1}, "d": 2, "e": 3})
        );
    }

    #[test]
    fn set_upper_wins_including_zero_and_false() {
        let mut u = json!({"replicas": 0, "debug": false, "image": "mine"});
        merge_values(
            &mut u,
            &json!({"replicas": 3, "debug": true, "image": "theirs"}),
        );
        assert_eq!(u, json!({"replicas": 0, "debug": false, "image": "mine"}));
    }

    #[test]
    fn objects_merge_per_key_and_lists_are_atoms() {
        let mut u = json!({"nodeSelector": {"a": "1"}, "flags": ["--x"]});
        merge_values(
            &mut u,
            &json!({"nodeSelector": {"a": "2", "b": "2"}, "flags": ["--y", "--z"]}),
        );
        assert_eq!(
            u,
            json!({"nodeSelector": {"a": "1", "b": "2"}, "flags": ["--x"]})
        );
    }

    #[test]
    fn three_layers_typed() {
        let defaults = IngesterSpec {
            local_tsdb_retention: "7d".into(),
            common: CommonSpec {
                replicas: Some(2),
                image: "thanos:default".into(),
                log_level: "info".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let template = IngesterSpec {
            common: CommonSpec {
                image: "thanos:template".into(),
                flags: vec!["--a=1".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let cr = IngesterSpec {
            tenants: vec!["t1".into()],
            common: CommonSpec {
                replicas: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = layered(&defaults, &template, &cr);
        assert_eq!(m.tenants, vec!["t1".to_string()]);
        assert_eq!(m.common.replicas, Some(1));
        assert_eq!(m.common.image, "thanos:template");
        assert_eq!(m.common.log_level, "info");
        assert_eq!(m.common.flags, vec!["--a=1".to_string()]);
        assert_eq!(m.local_tsdb_retention, "7d");
    }

    #[test]
    fn flags_replace_append_and_sort() {
        let gen: Vec<String> = [
            "receive",
            "--tsdb.path=/x",
            "--label=a=\"1\"",
            "--log.level=info",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let extra: Vec<String> = ["--log.level=debug", "--label=b=\"2\"", "tsdb.path=/y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            merge_flags(&gen, &extra),
            vec![
                "receive",
                "--label=a=\"1\"",
                "--label=b=\"2\"",
                "--log.level=debug",
                "--tsdb.path=/y"
            ]
        );
    }

    proptest::proptest! {
        /// Merging is idempotent and a merged value never loses a non-empty upper field.
        #[test]
        fn merge_idempotent(a in proptest::collection::btree_map("[a-c]", "[x-z]{0,2}", 0..4),
                            b in proptest::collection::btree_map("[a-c]", "[x-z]{0,2}", 0..4)) {
            let mut u = serde_json::to_value(&a).unwrap();
            let l = serde_json::to_value(&b).unwrap();
            merge_values(&mut u, &l);
            let once = u.clone();
            merge_values(&mut u, &l);
            proptest::prop_assert_eq!(&once, &u);
            for (k, v) in &a {
                if !v.is_empty() {
                    proptest::prop_assert_eq!(once[k].as_str().unwrap(), v.as_str());
                }
            }
        }
    }
}
