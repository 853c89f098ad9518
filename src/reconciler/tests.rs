//! Planner/renderer tests over the example CRs, golden files and offline schema validation.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde_json::Value;

use super::crd::{labels as L, *};
use super::planner::{self, Inputs};
use super::render;

fn root() -> PathBuf {
    // Absolute in the scratch crate (#[path]), relative to the package root in the main crate.
    Path::new(file!()).parent().unwrap().join("../..")
}

fn examples() -> PathBuf {
    root().join("config/reconciler")
}

fn example_inputs(now: u64) -> (Service, Inputs) {
    let (services, mut inputs) = render::read_dir(&examples()).unwrap();
    inputs.service = services[0].clone();
    inputs.now = now;
    (services[0].clone(), inputs)
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
}

fn args(o: &Value) -> Vec<String> {
    o["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn golden_render_of_examples() {
    let got = render::render_dir_at(&examples(), 0).unwrap();
    let golden = root().join("tests/data/reconciler/examples.golden.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .expect("golden file missing: run the test with UPDATE_GOLDEN=1");
    assert!(
        got == want,
        "render differs from {}; rerun with UPDATE_GOLDEN=1 and review the diff",
        golden.display()
    );
}

#[test]
fn render_is_deterministic() {
    let a = render::render_dir_at(&examples(), 0).unwrap();
    let b = render::render_dir_at(&examples(), 0).unwrap();
    assert_eq!(a, b);
}

#[test]
fn example_plan_placement_and_status() {
    let (_, inputs) = example_inputs(0);
    let plan = planner::plan(&inputs).unwrap();
    let layout: Vec<(String, Vec<String>)> = plan
        .ingesters
        .iter()
        .map(|i| (i.name_any(), i.spec.tenants.clone()))
        .collect();
    assert_eq!(
        layout,
        vec![
            ("central-local-auto-0".to_string(), vec!["edge".to_string()]),
            (
                "central-s3-auto-0".to_string(),
                vec!["team-a".into(), "team-b".into(), "team-c".into()]
            ),
            ("central-s3-auto-1".to_string(), vec!["team-d".to_string()]),
            (
                "central-s3-exclusive-big".to_string(),
                vec!["big".to_string()]
            ),
        ]
    );
    let st = &plan.tenant_status["team-c"];
    assert_eq!(st.ingester.as_ref().unwrap().name, "central-s3-auto-0");
    // team-c overrides retention: a compactor of its own retention class.
    assert!(st
        .compactor
        .as_ref()
        .unwrap()
        .name
        .starts_with("central-s3-r"));
    assert_eq!(st.ruler.as_ref().unwrap().name, "team-c");
    // Local tenants have no compactor.
    assert!(plan.tenant_status["edge"].compactor.is_none());
    assert_eq!(plan.requeue_at, None);
}

#[test]
fn removing_a_tenant_moves_nobody_and_schedules_removal() {
    let (_, mut inputs) = example_inputs(1_000);
    let first = planner::plan(&inputs).unwrap();
    // Feed the planned Ingester/Compactor CRs back as the cluster state; drop team-d.
    inputs.ingesters = first.ingesters.clone();
    inputs.compactors = first.compactors.clone();
    inputs.tenants.retain(|t| t.name_any() != "team-d");
    let second = planner::plan(&inputs).unwrap();
    let before: Vec<_> = first
        .ingesters
        .iter()
        .map(|i| (i.name_any(), i.spec.tenants.clone()))
        .collect();
    let after: Vec<_> = second
        .ingesters
        .iter()
        .map(|i| (i.name_any(), i.spec.tenants.clone()))
        .collect();
    assert_eq!(before.len(), after.len());
    for ((bn, bt), (an, at)) in before.iter().zip(&after) {
        assert_eq!(bn, an);
        if bn != "central-s3-auto-1" {
            assert_eq!(bt, at);
        }
    }
    let emptied = second
        .ingesters
        .iter()
        .find(|i| i.name_any() == "central-s3-auto-1")
        .unwrap();
    assert!(emptied.spec.tenants.is_empty());
    let ann = emptied.metadata.annotations.clone().unwrap();
    assert_eq!(ann[L::INGESTER_STATE], "deleting");
    assert_eq!(
        ann[L::INGESTER_DELETING_TIME],
        (1_000 + 3 * 3600).to_string()
    );
    assert_eq!(second.requeue_at, Some(1_000 + 3 * 3600));

    // After the retention period it is gone; re-adding before that cancels the removal.
    inputs.ingesters = second.ingesters.clone();
    inputs.now = 1_000 + 3 * 3600;
    let third = planner::plan(&inputs).unwrap();
    assert!(!third
        .ingesters
        .iter()
        .any(|i| i.name_any() == "central-s3-auto-1"));
    inputs.now = 2_000;
    let (_, fresh) = example_inputs(0);
    inputs.tenants = fresh.tenants;
    let readded = planner::plan(&inputs).unwrap();
    let back = readded
        .ingesters
        .iter()
        .find(|i| i.name_any() == "central-s3-auto-1")
        .unwrap();
    assert_eq!(back.spec.tenants, vec!["team-d".to_string()]);
    assert!(back.metadata.annotations.is_none());
}

#[test]
fn hashring_in_thanos_format() {
    let (svc, inputs) = example_inputs(0);
    let plan = planner::plan(&inputs).unwrap();
    let rings = super::gateway_config::hashrings(&plan, &svc.spec);
    let rings = rings.as_array().unwrap();
    assert_eq!(rings.len(), 4);
    assert_eq!(rings[1]["hashring"], "whizard/central-s3-auto-0");
    assert_eq!(
        rings[1]["tenants"],
        serde_json::json!(["team-a", "team-b", "team-c"])
    );
    // Two replicas → two endpoints.
    let eps = rings[1]["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(
        eps[1]["address"],
        "ingester-central-s3-auto-0-1.ingester-central-s3-auto-0-operated.whizard.svc:10901"
    );
}

#[test]
fn soft_tenant_ingester_is_catch_all() {
    let (svc, mut inputs) = example_inputs(0);
    let soft: Ingester = serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "Ingester",
        "metadata": {"name": "soft", "namespace": "whizard", "labels": {
            L::SERVICE: "whizard.central", L::SOFT_TENANT: "true"}},
        "spec": {"replicas": 1}
    }))
    .unwrap();
    inputs.ingesters.push(soft);
    let plan = planner::plan(&inputs).unwrap();
    let rings = super::gateway_config::hashrings(&plan, &svc.spec);
    let last = rings.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["hashring"], "softs");
    assert!(last.get("tenants").is_none());
    assert_eq!(last["endpoints"].as_array().unwrap().len(), 1);
}

#[test]
fn store_partitions_and_compactor_selection() {
    let out = render::render_dir_at(&examples(), 0).unwrap();
    let objs = docs(&out);
    let p0 = args(find(&objs, "StatefulSet", "store-central-s3"));
    assert!(p0.contains(&"--min-time=-30d".to_string()));
    assert!(p0.contains(&"--max-time=-36h".to_string()));
    let p1 = args(find(&objs, "StatefulSet", "store-central-s3-partition-1"));
    assert!(p1.contains(&"--max-time=-30d".to_string()));
    assert!(!p1.iter().any(|a| a.starts_with("--min-time")));
    let q = args(find(&objs, "Deployment", "query-central"));
    for ep in [
        "--endpoint=dnssrv+_grpc._tcp.store-central-s3-operated.whizard.svc",
        "--endpoint=dnssrv+_grpc._tcp.store-central-s3-partition-1-operated.whizard.svc",
        "--endpoint=dnssrv+_grpc._tcp.ingester-central-s3-auto-0-operated.whizard.svc",
        "--endpoint=dnssrv+_grpc._tcp.ruler-team-a-0-operated.whizard.svc",
    ] {
        assert!(q.contains(&ep.to_string()), "{ep} missing in {q:?}");
    }
    let c = args(find(&objs, "StatefulSet", "compactor-central-s3-0"));
    assert!(c.contains(
        &r#"--selector.relabel-config=[{"action":"keep","regex":"^team\\-a$|^team\\-b$|^team\\-d$","source_labels":["tenant_id"]}]"#
            .replace("\\\\-", "-")
            .replace("\\-", "-")
    ) || c.iter().any(|a| a.contains("^team-a$|^team-b$|^team-d$")), "{c:?}");
    assert!(c.contains(&"--retention.resolution-raw=30d".to_string()));
    let cr = objs
        .iter()
        .find(|o| {
            o["kind"] == "StatefulSet"
                && o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("compactor-central-s3-r")
        })
        .unwrap();
    assert!(args(cr).contains(&"--retention.resolution-raw=7d".to_string()));
    assert!(args(cr).contains(&"--retention.resolution-5m=90d".to_string()));
}

#[test]
fn sharded_global_ruler_places_groups_like_whizard() {
    let (_, mut inputs) = example_inputs(0);
    inputs.service.spec.ruler_template_spec.spec.shards = Some(3);
    for name in ["cpu", "mem", "slo"] {
        let g: GlobalRuleGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "GlobalRuleGroup",
            "metadata": {"name": name, "namespace": "global"},
            "spec": {"rules": [{"record": "x", "expr": "up"}]}
        }))
        .unwrap();
        let mut g = g;
        g.metadata.labels = Some([(L::SERVICE.to_string(), "whizard.central".to_string())].into());
        inputs.global_rule_groups.push(g);
    }
    let plan = planner::plan(&inputs).unwrap();
    let global = plan
        .rulers
        .iter()
        .find(|r| r.ruler.name_any() == "central-global")
        .unwrap();
    assert_eq!(global.shards.len(), 3);
    for (file, group) in [
        ("global-cpu.yaml", "cpu"),
        ("global-mem.yaml", "mem"),
        ("global-slo.yaml", "slo"),
        ("whizard-fleet-slo.yaml", "fleet-slo"),
    ] {
        let s = super::shard::shard_of(file, group, 3) as usize;
        assert!(
            global.shards[s].iter().any(|b| b.contains_key(file)),
            "{file} not on shard {s}"
        );
    }
    // Hand-checked against Python hashlib (see shard.rs): global-slo.yaml/slo % 3 == 1.
    assert!(global.shards[1]
        .iter()
        .any(|b| b.contains_key("global-slo.yaml")));
}

#[test]
fn gateway_config_admits_exactly_declared_tenants() {
    let out = render::render_dir_at(&examples(), 0).unwrap();
    let objs = docs(&out);
    let sec = find(&objs, "Secret", "gateway-central-config");
    let text = sec["stringData"]["gateway.yaml"].as_str().unwrap();
    let cfg: Value = serde_norway::from_str(text).unwrap();
    let ids: Vec<&str> = cfg["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "big",
            "edge",
            "team-a",
            "team-b",
            "team-c",
            "team-d",
            "default-tenant"
        ]
    );
    assert_eq!(cfg["tenancy"]["header"], "THANOS-TENANT");
    for u in cfg["users"].as_array().unwrap() {
        assert!(u["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$v=19$"));
        for t in u["tenants"].as_array().unwrap() {
            assert!(ids.contains(&t.as_str().unwrap()));
        }
    }
    // The ruler's password verifies against the hash in the gateway config.
    use argon2::password_hash::PasswordVerifier;
    let creds = find(&objs, "Secret", "ruler-team-a-gateway-credentials");
    let pw = creds["stringData"]["query-password"].as_str().unwrap();
    let user = cfg["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "whizard-ruler-team-a")
        .unwrap();
    let hash =
        argon2::password_hash::phc::PasswordHash::new(user["password_hash"].as_str().unwrap())
            .unwrap();
    argon2::Argon2::default()
        .verify_password(pw.as_bytes(), &hash)
        .unwrap();
}

#[test]
fn unknown_kind_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.yaml"),
        "apiVersion: monitoring.whizard.io/v1alpha1\nkind: Nope\nmetadata: {name: x}\n",
    )
    .unwrap();
    let e = render::render_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("unknown kind Nope"), "{e}");
}

#[test]
fn missing_storage_is_an_error() {
    let (_, mut inputs) = example_inputs(0);
    inputs.storages.clear();
    let e = planner::plan(&inputs).unwrap_err();
    assert!(matches!(e, planner::PlanError::MissingStorage { .. }));
}

#[test]
fn durations_parse() {
    assert_eq!(planner::parse_duration("3h"), Some(10_800));
    assert_eq!(planner::parse_duration("1h20m15s"), Some(4_815));
    assert_eq!(planner::parse_duration("1y"), Some(365 * 86_400));
    assert_eq!(planner::parse_duration("1500ms"), Some(1));
    assert_eq!(planner::parse_duration("0"), Some(0));
    assert_eq!(planner::parse_duration("3x"), None);
    assert_eq!(planner::parse_duration("h"), None);
    assert_eq!(planner::parse_duration("5"), None);
}

#[test]
fn ruler_names_are_short() {
    assert_eq!(planner::ruler_name("team-a"), "team-a");
    let long = planner::ruler_name("a-very-long-tenant-name-that-goes-on-and-on");
    assert!(long.len() <= 30, "{long}");
    assert_ne!(
        long,
        planner::ruler_name("a-very-long-tenant-name-that-goes-on-and-other")
    );
}

/// Every rendered object and every CRD validated offline with `kubernetes-validate`.
#[test]
fn rendered_objects_and_crds_pass_kubernetes_validate() {
    let ok = std::process::Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: kubernetes-validate not installed (pip install kubernetes-validate)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Custom resources have no built-in schema; validate the core objects and the CRDs.
    let out = render::render_dir_at(&examples(), 0).unwrap();
    let core: Vec<Value> = docs(&out)
        .into_iter()
        .filter(|o| o["apiVersion"] != API_VERSION)
        .collect();
    let objs = dir.path().join("objects.yaml");
    std::fs::write(&objs, render::to_yaml_stream(&core)).unwrap();
    let crds = dir.path().join("crds.yaml");
    std::fs::write(&crds, super::crds_yaml()).unwrap();
    let rbac = root().join("deploy/reconciler/rbac.yaml");
    let deploy = root().join("deploy/reconciler/deployment.yaml");
    for f in [&objs, &crds, &rbac, &deploy] {
        let o = std::process::Command::new("kubernetes-validate")
            .args(["-k", "1.33.0", "--strict", "--quiet"])
            .arg(f)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "kubernetes-validate failed on {}:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// The rendered custom resources conform to our own CRD schemas (required fields, types).
#[test]
fn rendered_crs_deserialize_back() {
    let out = render::render_dir_at(&examples(), 0).unwrap();
    for o in docs(&out)
        .into_iter()
        .filter(|o| o["apiVersion"] == API_VERSION)
    {
        match o["kind"].as_str().unwrap() {
            "Ingester" => drop(serde_json::from_value::<Ingester>(o).unwrap()),
            "Compactor" => drop(serde_json::from_value::<Compactor>(o).unwrap()),
            "Store" => drop(serde_json::from_value::<Store>(o).unwrap()),
            "Ruler" => drop(serde_json::from_value::<Ruler>(o).unwrap()),
            k => panic!("unexpected CR kind {k}"),
        }
    }
}

#[test]
fn crds_cover_every_kind_and_limit_rules() {
    let y = super::crds_yaml();
    let crds = docs(&y);
    let kinds: Vec<&str> = crds
        .iter()
        .map(|c| c["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 14);
    let tenant = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == "Tenant")
        .unwrap();
    assert_eq!(tenant["spec"]["scope"], "Cluster");
    let rg = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == "RuleGroup")
        .unwrap();
    let rules = &rg["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["rules"];
    assert_eq!(rules["maxItems"], 40);
}
