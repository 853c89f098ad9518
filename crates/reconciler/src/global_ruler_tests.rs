//! Rulers (issue 30): the global ruler exists only when asked for and writes routed by label,
//! every ruler drops the replica label from alerts, and rule changes reach the rulers through
//! the config reloader without touching the pod template.

use std::collections::BTreeSet;

use kube::ResourceExt;
use serde_json::{json, Value};

use super::crd::{labels as L, *};
use super::model::{self, Inputs};
use super::planner;
use super::render;
use super::tests::{args, core_objects, docs, example_inputs, examples, find};

/// The `whizard gateway` config rendered for `inputs`, parsed.
fn gateway_config(inputs: &Inputs, svc: &Service) -> Value {
    let objs = core_objects(inputs, svc);
    let text = find(&objs, "Secret", "gateway-central-config")["stringData"]["gateway.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    serde_norway::from_str(&text).unwrap()
}

fn user<'a>(cfg: &'a Value, name: &str) -> &'a Value {
    cfg["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no user {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn has_global_ruler(plan: &planner::Plan) -> bool {
    plan.rulers
        .iter()
        .any(|r| r.ruler.name_any() == "central-global")
}

fn global_rule_group(name: &str, rules: Value) -> GlobalRuleGroup {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "GlobalRuleGroup",
        "metadata": {"name": name, "namespace": "whizard",
                     "labels": {L::SERVICE: "whizard.central"}},
        "spec": {"rules": rules}
    }))
    .unwrap()
}

fn prom_rule(ns: &str, name: &str, labels: Value) -> PrometheusRule {
    serde_json::from_value(json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"groups": [{"name": name, "rules": [{"record": "x:y", "expr": "up"}]}]}
    }))
    .unwrap()
}

fn ruler_statefulsets(objs: &[Value]) -> Vec<&Value> {
    super::tests::statefulsets(objs, "ruler-")
}

#[test]
fn global_write_user_routes_by_label_to_every_tenant() {
    let (svc, inputs) = example_inputs(0);
    let cfg = gateway_config(&inputs, &svc);
    let all = [
        "big",
        "edge",
        "team-a",
        "team-b",
        "team-c",
        "team-d",
        "default-tenant",
    ];
    let write = user(&cfg, "whizard-global-ruler-write");
    assert_eq!(strings(&write["tenants"]), all);
    assert_eq!(strings(&write["access"]), ["write"]);
    assert_eq!(write["write_routing"], "by_label");
    assert_eq!(write["default_tenant"], "default-tenant");
    // The read user reads the same union and routes nothing.
    let read = user(&cfg, "whizard-global-ruler-read");
    assert_eq!(strings(&read["tenants"]), all);
    assert_eq!(strings(&read["access"]), ["read"]);
    // Every other user renders as before: no routing keys.
    for u in cfg["users"].as_array().unwrap() {
        if u["name"] != "whizard-global-ruler-write" {
            assert!(u.get("write_routing").is_none(), "{}", u["name"]);
            assert!(u.get("default_tenant").is_none(), "{}", u["name"]);
        }
    }
    // The global ruler writes as that user, naming no tenant (no path prefix): the gateway
    // splits its series by their tenant label.
    let objs = core_objects(&inputs, &svc);
    let creds = find(&objs, "Secret", "ruler-central-global-gateway-credentials");
    let rw: Value =
        serde_norway::from_str(creds["stringData"]["remote-write.yaml"].as_str().unwrap()).unwrap();
    let rw = &rw["remote_write"][0];
    assert_eq!(rw["basic_auth"]["username"], "whizard-global-ruler-write");
    assert_eq!(
        rw["url"],
        "http://gateway-central.whizard.svc:9090/api/v1/receive"
    );

    // The default tenant follows the Service's defaultTenantId, and is declared once.
    let (mut svc, mut inputs) = example_inputs(0);
    inputs.service.spec.default_tenant_id = "team-a".into();
    svc.spec = inputs.service.spec.clone();
    let cfg = gateway_config(&inputs, &svc);
    let write = user(&cfg, "whizard-global-ruler-write");
    assert_eq!(write["default_tenant"], "team-a");
    assert_eq!(strings(&write["tenants"]), &all[..6]);
}

#[test]
fn template_rule_selectors_alone_make_no_global_ruler() {
    let (svc, mut inputs) = example_inputs(0);
    inputs.global_rule_groups.clear();
    inputs.service.spec.ruler_template_spec.spec.rule_selectors =
        vec![json!({"matchLabels": {"role": "fleet"}})];
    inputs
        .prometheus_rules
        .push(prom_rule("whizard", "fleet", json!({"role": "fleet"})));
    let plan = planner::plan(&inputs).unwrap();
    assert!(!has_global_ruler(&plan));
    assert!(!plan
        .users
        .iter()
        .any(|u| u.name.starts_with("whizard-global-")));
    assert!(plan.write_routing.is_empty());
    // The selectors still work for the rulers that exist (the tenants' take the template).
    assert!(plan
        .rulers
        .iter()
        .find(|r| r.ruler.name_any() == "team-a")
        .unwrap()
        .shards[0]
        .iter()
        .any(|b| b.contains_key("whizard-fleet.yaml")));
    // Without the global ruler nobody writes the default tenant: it is not declared.
    let mut svc = svc;
    svc.spec = inputs.service.spec.clone();
    let cfg = gateway_config(&inputs, &svc);
    assert!(!cfg["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == "default-tenant"));

    // The reconciler's own `central-global` Ruler CR, read back from the cluster after an
    // earlier reconcile, does not ask for a global ruler either: it is pruned.
    let (_, mut before) = example_inputs(0);
    let first = planner::plan(&before).unwrap();
    let generated = first
        .rulers
        .iter()
        .find(|r| r.ruler.name_any() == "central-global")
        .unwrap()
        .ruler
        .clone();
    before.rulers.push(generated);
    before.global_rule_groups.clear();
    assert!(!has_global_ruler(&planner::plan(&before).unwrap()));
}

#[test]
fn global_rule_group_or_global_ruler_cr_makes_the_global_ruler() {
    // A GlobalRuleGroup alone (no Ruler CR, no selectors, no PrometheusRules).
    let (_, mut inputs) = example_inputs(0);
    inputs.prometheus_rules.clear();
    inputs.global_rule_groups = vec![global_rule_group(
        "fleet",
        json!([{"record": "tenant:up:count", "expr": "count by (tenant_id) (up)"}]),
    )];
    let plan = planner::plan(&inputs).unwrap();
    let global = plan
        .rulers
        .iter()
        .find(|r| r.ruler.name_any() == "central-global")
        .expect("global ruler");
    assert_eq!(global.write_user, "whizard-global-ruler-write");
    assert!(global.shards[0]
        .iter()
        .any(|b| b.contains_key("whizard-fleet.yaml")));
    assert_eq!(
        plan.write_routing["whizard-global-ruler-write"],
        model::WriteRouting::ByLabel {
            default_tenant: "default-tenant".into()
        }
    );

    // A global Ruler CR alone (nothing to evaluate yet) asks for it too, with its spec.
    let (_, mut inputs) = example_inputs(0);
    inputs.global_rule_groups.clear();
    inputs.prometheus_rules.clear();
    inputs.rulers.push(
        serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "Ruler",
            "metadata": {"name": "global", "namespace": "whizard",
                         "labels": {L::SERVICE: "whizard.central"}},
            "spec": {"shards": 2}
        }))
        .unwrap(),
    );
    let plan = planner::plan(&inputs).unwrap();
    let global = plan
        .rulers
        .iter()
        .find(|r| r.ruler.name_any() == "central-global")
        .expect("global ruler");
    assert_eq!(global.shards.len(), 2);
    assert!(global.shards.iter().all(|s| s.is_empty()));
    // A Ruler CR being deleted asks for nothing.
    inputs
        .rulers
        .last_mut()
        .unwrap()
        .metadata
        .deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Default::default(),
    ));
    assert!(!has_global_ruler(&planner::plan(&inputs).unwrap()));
}

#[test]
fn every_ruler_drops_the_replica_label_from_alerts_once() {
    let count = |a: &[String], flag: &str| a.iter().filter(|x| *x == flag).count();
    // Defaults: no alertDropLabels.
    let (svc, inputs) = example_inputs(0);
    let objs = core_objects(&inputs, &svc);
    let rulers = ruler_statefulsets(&objs);
    assert!(rulers.len() >= 2, "tenant and global rulers");
    assert!(rulers
        .iter()
        .any(|s| s["metadata"]["name"] == "ruler-central-global-0"));
    for sts in &rulers {
        let a = args(sts);
        assert_eq!(count(&a, "--alert.label-drop=ruler_replica"), 1, "{a:?}");
        assert!(a.contains(&"--label=ruler_replica=\"$(POD_NAME)\"".to_string()));
    }
    // The spec naming it again (and another label, twice) still drops each label once.
    let (mut svc, mut inputs) = example_inputs(0);
    inputs
        .service
        .spec
        .ruler_template_spec
        .spec
        .alert_drop_labels = vec!["cluster".into(), "ruler_replica".into(), "cluster".into()];
    svc.spec = inputs.service.spec.clone();
    let objs = core_objects(&inputs, &svc);
    for sts in ruler_statefulsets(&objs) {
        let a = args(sts);
        assert_eq!(count(&a, "--alert.label-drop=ruler_replica"), 1, "{a:?}");
        assert_eq!(count(&a, "--alert.label-drop=cluster"), 1, "{a:?}");
    }
}

/// The example objects with `edit` applied to the inputs.
fn objects_with(edit: impl FnOnce(&mut Inputs)) -> Vec<Value> {
    let (mut svc, mut inputs) = example_inputs(0);
    edit(&mut inputs);
    svc.spec = inputs.service.spec.clone();
    core_objects(&inputs, &svc)
}

#[test]
fn rule_change_keeps_the_ruler_pod_template_byte_identical() {
    let before = objects_with(|_| {});
    // Edit team-a's rule, and give team-c (no rules so far) its first rule group.
    let after = objects_with(|inputs| {
        let g = inputs
            .rule_groups
            .iter_mut()
            .find(|g| g.name_any() == "team-a-availability")
            .unwrap();
        g.spec.group.rules[0].expr = "up{job!=\"batch\"} == 0".into();
        let mut c = g.clone();
        c.metadata.name = Some("team-c-first".into());
        c.metadata.labels = Some([(L::TENANT.to_string(), "team-c".to_string())].into());
        inputs.rule_groups.push(c);
    });
    for (sts, cm) in [
        ("ruler-team-a-0", "ruler-team-a-rulefiles-0-0"),
        ("ruler-team-c-0", "ruler-team-c-rulefiles-0-0"),
    ] {
        assert_ne!(
            find(&before, "ConfigMap", cm),
            find(&after, "ConfigMap", cm),
            "{cm} carries the change"
        );
        let yaml =
            |objs: &[Value]| serde_norway::to_string(find(objs, "StatefulSet", sts)).unwrap();
        assert_eq!(yaml(&before), yaml(&after), "{sts} must not roll");
    }
    // team-c's ConfigMap existed (empty) before its first rule.
    assert_eq!(
        find(&before, "ConfigMap", "ruler-team-c-rulefiles-0-0")["data"],
        json!({})
    );
    assert!(
        find(&after, "ConfigMap", "ruler-team-c-rulefiles-0-0")["data"]["team-a-team-c-first.yaml"]
            .as_str()
            .is_some()
    );
    // No rules hash anywhere.
    let out = render::render_dir_at(&examples(), 0).unwrap();
    assert!(!out.contains("rules-hash"));
}

/// `(volume, mount path)` of the rule ConfigMaps of a container.
fn rule_mounts(c: &Value) -> Vec<(String, String)> {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["mountPath"]
                .as_str()
                .unwrap()
                .starts_with("/etc/thanos/rules/")
        })
        .map(|m| {
            assert!(m.get("subPath").is_none(), "no subPath: {m}");
            (
                m["name"].as_str().unwrap().to_string(),
                m["mountPath"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Checks the config reloader of a ruler StatefulSet; returns its watched directories.
fn check_reloader(sts: &Value, reload_url: &str) -> Vec<String> {
    let pod = &sts["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    let (thanos, reloader) = (&containers[0], &containers[1]);
    assert_eq!(reloader["name"], "config-reloader");
    assert_eq!(reloader["image"], planner::CONFIG_RELOADER_IMAGE);
    assert!(reloader["resources"]["requests"]["cpu"].is_string());
    assert!(reloader["resources"]["requests"]["memory"].is_string());
    let a = strings(&reloader["args"]);
    assert!(a.contains(&format!("--reload-url={reload_url}")), "{a:?}");
    let watched: Vec<String> = a
        .iter()
        .filter_map(|x| x.strip_prefix("--watched-dir="))
        .map(str::to_string)
        .collect();
    // Watched = the ruler's rule mounts = the reloader's mounts, each a ConfigMap volume.
    let mounts = rule_mounts(thanos);
    assert!(!mounts.is_empty());
    assert_eq!(rule_mounts(reloader), mounts);
    assert_eq!(
        watched,
        mounts.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()
    );
    for (vol, dir) in &mounts {
        let v = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == vol.as_str())
            .unwrap();
        let cm = v["configMap"]["name"].as_str().expect("a ConfigMap volume");
        assert_eq!(dir, &format!("/etc/thanos/rules/{cm}"));
    }
    // The ruler globs every mounted directory.
    assert!(args(sts).contains(&"--rule-file=/etc/thanos/rules/*/*.yaml".to_string()));
    watched
}

#[test]
fn config_reloader_watches_every_rule_configmap() {
    let objs = objects_with(|_| {});
    for sts in ruler_statefulsets(&objs) {
        check_reloader(sts, "http://127.0.0.1:10902/-/reload");
    }

    // Rules outgrowing one ConfigMap: two ConfigMaps, both mounted and watched. (Their number
    // changing changes the volumes: that restarts the ruler, as documented.)
    let big_rules = |n: usize| {
        move |inputs: &mut Inputs| {
            for i in 0..n {
                let rules: Vec<Value> = (0..40)
                    .map(|r| json!({"record": format!("big:{i}:{r}"), "expr": format!("sum(up{{job=\"{}\"}})", "x".repeat(400))}))
                    .collect();
                inputs
                    .global_rule_groups
                    .push(global_rule_group(&format!("big-{i}"), json!(rules)));
            }
        }
    };
    let small = objects_with(big_rules(1));
    let large = objects_with(big_rules(40));
    let sts = |objs: &[Value]| find(objs, "StatefulSet", "ruler-central-global-0").clone();
    let watched = check_reloader(&sts(&large), "http://127.0.0.1:10902/-/reload");
    assert_eq!(
        watched,
        [
            "/etc/thanos/rules/ruler-central-global-rulefiles-0-0",
            "/etc/thanos/rules/ruler-central-global-rulefiles-0-1"
        ]
    );
    assert_eq!(
        check_reloader(&sts(&small), "http://127.0.0.1:10902/-/reload").len(),
        1
    );
    assert_ne!(sts(&small), sts(&large));
    let cms: BTreeSet<&str> = large
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("ruler-central-global-rulefiles-"))
        .collect();
    assert_eq!(cms.len(), 2);

    // A route prefix moves the reload endpoint.
    let prefixed = objects_with(|inputs| {
        inputs.service.spec.ruler_template_spec.spec.common.flags =
            vec!["--web.route-prefix=/ruler/".into()];
    });
    check_reloader(
        find(&prefixed, "StatefulSet", "ruler-team-a-0"),
        "http://127.0.0.1:10902/ruler/-/reload",
    );
    // Rendered YAML parses back (the sidecar is a plain container).
    assert!(!docs(&render::render_dir_at(&examples(), 0).unwrap()).is_empty());
}

#[test]
fn local_storage_ingesters_compact_their_own_blocks_like_whizard() {
    use super::render::local_max_block_duration as max_block;
    // A tenth of the retention, between 2 hours and 31 days (Whizard's rule, clamped to the
    // head block below).
    assert_eq!(max_block("15d"), "1d12h");
    assert_eq!(max_block("7d"), "16h48m");
    assert_eq!(max_block("1y"), "31d");
    assert_eq!(max_block("3h"), "2h");
    assert_eq!(max_block("0"), "31d");
    assert_eq!(max_block("bogus"), "1d12h");
}
