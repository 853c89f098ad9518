//! Planner/renderer tests over the example CRs, golden files and offline schema validation.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde_json::{json, Value};

use super::crd::{labels as L, *};
use super::model::{self, Inputs};
use super::naming;
use super::planner;
use super::render;

fn root() -> PathBuf {
    // The repository root: this crate lives in crates/reconciler.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(super) fn examples() -> PathBuf {
    root().join("config/reconciler")
}

pub(super) fn example_inputs(now: u64) -> (Service, Inputs) {
    let (services, mut inputs) = render::read_dir(&examples()).unwrap();
    inputs.service = services[0].clone();
    inputs.now = now;
    (services[0].clone(), inputs)
}

pub(super) fn docs(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

pub(super) fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
}

pub(super) fn args(o: &Value) -> Vec<String> {
    o["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Compares `got` with the golden file `tests/data/reconciler/{name}` (rewritten instead when
/// `UPDATE_GOLDEN` is set).
pub(super) fn assert_golden(name: &str, got: &str) {
    let golden = root().join("tests/data/reconciler").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, got).unwrap();
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
fn golden_render_of_examples() {
    let got = render::render_dir_at(&examples(), 0).unwrap();
    assert_golden("examples.golden.yaml", &got);
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
fn missing_storage_skips_its_tenants_only() {
    // Without the Storage every object-storage tenant is skipped (and reported); the local
    // tenant is still planned.
    let (_, mut inputs) = example_inputs(0);
    inputs.storages.clear();
    let plan = planner::plan(&inputs).unwrap();
    let ids: Vec<&str> = plan.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["edge"]);
    let skipped: Vec<&str> = plan
        .problems
        .iter()
        .filter(|p| p.reason == "StorageNotFound")
        .filter_map(|p| p.tenant_cr.as_deref())
        .collect();
    assert_eq!(skipped, vec!["big", "team-a", "team-b", "team-c", "team-d"]);
}

#[test]
fn durations_parse() {
    assert_eq!(naming::parse_duration("3h"), Some(10_800));
    assert_eq!(naming::parse_duration("1h20m15s"), Some(4_815));
    assert_eq!(naming::parse_duration("1y"), Some(365 * 86_400));
    assert_eq!(naming::parse_duration("1500ms"), Some(1));
    assert_eq!(naming::parse_duration("0"), Some(0));
    assert_eq!(naming::parse_duration("3x"), None);
    assert_eq!(naming::parse_duration("h"), None);
    assert_eq!(naming::parse_duration("5"), None);
}

#[test]
fn ruler_names_are_short() {
    assert_eq!(naming::ruler_name("team-a"), "team-a");
    let long = naming::ruler_name("a-very-long-tenant-name-that-goes-on-and-on");
    assert!(long.len() <= 30, "{long}");
    assert_ne!(
        long,
        naming::ruler_name("a-very-long-tenant-name-that-goes-on-and-other")
    );
}

/// Whether `kubernetes-validate` (PyPI, installed by scripts/install-test-deps.sh) runs.
pub(super) fn kubernetes_validate_installed() -> bool {
    let ok = std::process::Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: kubernetes-validate not installed (pip install kubernetes-validate)");
    }
    ok
}

/// `kubernetes-validate --strict` (Kubernetes 1.33 schemas) accepts the objects in file `f`.
pub(super) fn assert_kubernetes_valid(f: &Path) {
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

/// The StatefulSets of `objs` whose names start with `prefix`.
pub(super) fn statefulsets<'a>(objs: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    objs.iter()
        .filter(|o| {
            o["kind"] == "StatefulSet"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

/// Every rendered object and every CRD validated offline with `kubernetes-validate`.
#[test]
fn rendered_objects_and_crds_pass_kubernetes_validate() {
    if !kubernetes_validate_installed() {
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
    let deletion = dir.path().join("deletion.yaml");
    std::fs::write(&deletion, render::to_yaml_stream(&due_deletion_objects())).unwrap();
    let web = dir.path().join("web.yaml");
    std::fs::write(&web, render::to_yaml_stream(&web_gateway_objects())).unwrap();
    let cleanup = dir.path().join("cleanup.yaml");
    std::fs::write(&cleanup, render::to_yaml_stream(&cleanup_objects(false))).unwrap();
    let rbac = root().join("deploy/base/reconciler/rbac.yaml");
    let deploy = root().join("deploy/base/reconciler/deployment.yaml");
    for f in [&objs, &crds, &deletion, &cleanup, &web, &rbac, &deploy] {
        assert_kubernetes_valid(f);
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
    // Tenant.spec.access (issue #30, per-tenant access).
    let access = &tenant["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["access"]["items"]["properties"];
    for f in [
        "name",
        "oidcGroup",
        "access",
        "passwordSecret",
        "passwordHashSecret",
        "certificate",
    ] {
        assert!(access.get(f).is_some(), "Tenant.spec.access[].{f}");
    }
    let rg = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == "RuleGroup")
        .unwrap();
    let rules = &rg["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["rules"];
    assert_eq!(rules["maxItems"], 40);
}

/// team-d (object storage, retention 30d/90d/1y) is removed at t=1000: its blocks are due a
/// year later; the record survives in the state ConfigMap; a Job deletes them at the deadline;
/// success drops the record; re-adding the tenant cancels it.
fn removed_team_d_plans() -> (Service, Inputs, planner::Plan) {
    let (svc, mut inputs) = example_inputs(1_000);
    let first = planner::plan(&inputs).unwrap();
    inputs.ingesters = first.ingesters.clone();
    inputs.compactors = first.compactors.clone();
    inputs.tenants.retain(|t| t.name_any() != "team-d");
    let second = planner::plan(&inputs).unwrap();
    (svc, inputs, second)
}

const YEAR: u64 = 365 * 86_400;

#[test]
fn removed_tenant_blocks_are_scheduled_for_deletion() {
    let (svc, mut inputs, second) = removed_team_d_plans();
    let rec = super::deletion::PendingDeletion {
        tenant: "team-d".into(),
        storage: "whizard.s3".into(),
        removed_at: 1_000,
        delete_at: 1_000 + YEAR,
    };
    assert_eq!(second.deletions, vec![rec.clone()]);
    assert!(second.due_deletions.is_empty());
    // The ingester removal (3h) comes first.
    assert_eq!(second.requeue_at, Some(1_000 + 3 * 3600));
    let objs = render::render_plan(&second, &svc);
    // The state ConfigMap is the very first object applied.
    assert_eq!(objs[0]["kind"], "ConfigMap");
    assert_eq!(objs[0]["metadata"]["name"], "central-tenant-deletions");
    let stored: Vec<super::deletion::PendingDeletion> =
        serde_json::from_str(objs[0]["data"]["deletions.json"].as_str().unwrap()).unwrap();
    assert_eq!(stored, vec![rec.clone()]);
    assert!(!objs.iter().any(|o| o["kind"] == "Job"));

    // A restarted reconciler: the Compactors no longer list team-d, the record is read back.
    inputs.compactors = second.compactors.clone();
    inputs.ingesters = second.ingesters.clone();
    inputs.pending_deletions = stored;
    inputs.now = 5_000_000;
    let later = planner::plan(&inputs).unwrap();
    assert_eq!(later.deletions, vec![rec.clone()]);
    assert_eq!(later.requeue_at, Some(1_000 + YEAR));

    // At the deadline: a Job for team-d.
    inputs.now = 1_000 + YEAR;
    let due = planner::plan(&inputs).unwrap();
    assert_eq!(due.due_deletions, vec![rec.clone()]);
    let objs = render::render_plan(&due, &svc);
    let jobs: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Job").collect();
    assert_eq!(jobs.len(), 1);
    let job = jobs[0];
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("central-delete-team-d-"), "{name}");
    assert!(name.len() <= 52);
    assert_eq!(job["metadata"]["annotations"][L::DELETION_TENANT], "team-d");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let c = &pod["containers"][0];
    let script = c["command"][2].as_str().unwrap();
    for part in [
        "thanos tools bucket ls",
        "--exclude-delete",
        "thanos tools bucket mark",
        "--marker=deletion-mark.json",
        "thanos tools bucket cleanup",
        "--delete-delay=0s",
        "--selector.relabel-config=\"$SELECTOR\"",
    ] {
        assert!(script.contains(part), "{part} missing in {script}");
    }
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect();
    assert!(env.contains(&("TENANT".into(), "team-d".into())));
    assert!(env.contains(&("TENANT_LABEL".into(), "tenant_id".into())));
    assert!(env.contains(&(
        "SELECTOR".into(),
        r#"[{"action":"keep","regex":"^team-d$","source_labels":["tenant_id"]}]"#.into()
    )));
    // Objstore config mounted from the Storage's secret, credentials from env.
    assert!(pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["secret"]["secretName"] == "central-s3-objstore"));
    assert!(c["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "OBJSTORE_ACCESS_KEY"));
    // Deterministic.
    assert_eq!(objs, render::render_plan(&due, &svc));

    // Running or failed: still wanted. Succeeded: record dropped, Job no longer rendered.
    let key = ("team-d".to_string(), "whizard.s3".to_string());
    inputs
        .deletion_jobs
        .insert(key.clone(), super::deletion::JobState::Failed);
    assert_eq!(planner::plan(&inputs).unwrap().due_deletions.len(), 1);
    inputs
        .deletion_jobs
        .insert(key, super::deletion::JobState::Succeeded);
    let done = planner::plan(&inputs).unwrap();
    assert!(done.deletions.is_empty() && done.due_deletions.is_empty());
    let objs = render::render_plan(&done, &svc);
    assert!(!objs
        .iter()
        .any(|o| o["kind"] == "Job" || o["metadata"]["name"] == "central-tenant-deletions"));
}

#[test]
fn re_adding_a_removed_tenant_cancels_the_deletion() {
    let (_, mut inputs, second) = removed_team_d_plans();
    inputs.compactors = second.compactors.clone();
    inputs.ingesters = second.ingesters.clone();
    inputs.pending_deletions = second.deletions.clone();
    let (_, fresh) = example_inputs(0);
    inputs.tenants = fresh.tenants;
    // Before and after the deadline (a running Job would be pruned).
    for now in [2_000, 1_000 + YEAR + 1] {
        inputs.now = now;
        let p = planner::plan(&inputs).unwrap();
        assert!(p.deletions.is_empty(), "at {now}");
        assert!(p.due_deletions.is_empty(), "at {now}");
    }
}

#[test]
fn local_and_unlimited_retention_tenants_are_not_scheduled() {
    // edge is on local storage: no compactor, nothing in object storage.
    let (_, mut inputs) = example_inputs(1_000);
    let first = planner::plan(&inputs).unwrap();
    inputs.compactors = first.compactors.clone();
    inputs.tenants.retain(|t| t.name_any() != "edge");
    assert!(planner::plan(&inputs).unwrap().deletions.is_empty());
    // Unlimited retention (0 everywhere): "keep forever" means no deletion.
    let (_, mut inputs) = example_inputs(1_000);
    inputs.service.spec.compactor_template_spec.spec.retention = Some(Retention {
        retention_raw: "0".into(),
        retention_5m: "0".into(),
        retention_1h: "0".into(),
    });
    let first = planner::plan(&inputs).unwrap();
    inputs.compactors = first.compactors.clone();
    inputs.tenants.retain(|t| t.name_any() != "team-d");
    assert!(planner::plan(&inputs).unwrap().deletions.is_empty());
}

/// The rendered objects of `inputs` that are not our custom resources.
pub(super) fn core_objects(inputs: &Inputs, svc: &Service) -> Vec<Value> {
    let plan = planner::plan(inputs).unwrap();
    render::render_plan(&plan, svc)
        .into_iter()
        .filter(|o| o["apiVersion"] != API_VERSION)
        .collect()
}

/// A bcrypt hash (cost 4) for webConfig users.
const TEST_BCRYPT: &str = "$2y$04$8duxTVLOPcIN8ozdK5lDNO8yDMp3SwpA9.zU.TTGZea7VVyqxFsdq";

/// A Secret `name` with a user name and a bcrypt hash.
fn user_secret(inputs: &mut Inputs, name: &str, user: &str) {
    inputs.secrets.insert(
        name.into(),
        [
            ("name".to_string(), user.to_string()),
            ("hash".to_string(), TEST_BCRYPT.to_string()),
        ]
        .into(),
    );
}

/// A plan with a due deletion Job, for schema validation.
fn due_deletion_objects() -> Vec<Value> {
    let (svc, mut inputs, second) = removed_team_d_plans();
    inputs.compactors = second.compactors.clone();
    inputs.ingesters = second.ingesters.clone();
    inputs.pending_deletions = second.deletions.clone();
    inputs.now = 1_000 + YEAR;
    core_objects(&inputs, &svc)
}

/// The deletion Job's script under a POSIX shell with a fake `thanos`: it marks exactly the
/// removed tenant's blocks (in batches) and then cleans up with the tenant selector.
#[test]
fn deletion_script_marks_only_the_tenants_blocks() {
    let objs = due_deletion_objects();
    let job = objs.iter().find(|o| o["kind"] == "Job").unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = c["command"][2]
        .as_str()
        .unwrap()
        .replace("/tmp/", &format!("{d}/"));
    // Fake thanos: `ls` prints 150 blocks of team-d, one of "team-d x", one unlabelled,
    // one of team-a; every call is logged.
    let fake = format!(
        r#"#!/bin/sh
echo "$@" >> {d}/calls
case "$3" in
  ls) i=0; while [ $i -lt 150 ]; do echo "D$i team-d"; i=$((i+1)); done
      echo "X1 team-d x"; echo "U1 "; echo "A1 team-a";;
esac
"#
    );
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    let thanos = dir.path().join("bin/thanos");
    std::fs::write(&thanos, fake).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&thanos, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = |n: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", format!("{d}/bin:/usr/bin:/bin"))
        .env("TENANT", env("TENANT"))
        .env("TENANT_LABEL", env("TENANT_LABEL"))
        .env("SELECTOR", env("SELECTOR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 4, "{calls}");
    assert!(lines[0].starts_with("tools bucket ls --objstore.config-file="));
    assert!(lines[0].ends_with(r#"--output={{.ULID}} {{index .Thanos.Labels "tenant_id"}}"#));
    // 150 ids in batches of 100, only team-d's.
    assert_eq!(lines[1].matches("--id=").count(), 100);
    assert_eq!(lines[2].matches("--id=").count(), 50);
    assert!(lines[1].contains("--marker=deletion-mark.json"));
    assert!(!calls.contains("--id=X1") && !calls.contains("--id=U1") && !calls.contains("--id=A1"));
    assert!(lines[3].starts_with("tools bucket cleanup"));
    assert!(lines[3].contains("--delete-delay=0s"));
    assert!(lines[3].ends_with(r#"--selector.relabel-config=[{"action":"keep","regex":"^team-d$","source_labels":["tenant_id"]}]"#));
}

fn prom_rule(ns: &str, name: &str, labels: Value, groups: &[&str]) -> PrometheusRule {
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| serde_json::json!({"name": g, "rules": [{"record": format!("{g}:x"), "expr": "up"}]}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"groups": groups}
    }))
    .unwrap()
}

fn ruler_files(
    plan: &planner::Plan,
    ruler: &str,
) -> Vec<std::collections::BTreeMap<String, String>> {
    plan.rulers
        .iter()
        .find(|r| r.ruler.name_any() == ruler)
        .unwrap_or_else(|| panic!("no ruler {ruler}"))
        .shards
        .iter()
        .map(|bins| {
            bins.iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn tenant_ruler_takes_its_prometheus_rules_as_written() {
    let (_, inputs) = example_inputs(0);
    let plan = planner::plan(&inputs).unwrap();
    // From config/reconciler/04-prometheusrules.yaml (namespace team-a, tenant label team-a).
    let files = &ruler_files(&plan, "team-a")[0];
    let text = &files["team-a-api-slo.yaml"];
    let doc: Value = serde_norway::from_str(text).unwrap();
    assert_eq!(doc["groups"][0]["name"], "api-latency");
    assert_eq!(doc["groups"][0]["interval"], "1m");
    assert_eq!(doc["groups"][0]["partial_response_strategy"], "warn");
    assert_eq!(doc["groups"][0]["rules"][0]["alert"], "ApiSlow");
    // The RuleGroup of team-a is still there; other tenants do not get the PrometheusRule.
    assert!(files.contains_key("team-a-team-a-availability.yaml"));
    assert!(!ruler_files(&plan, "team-b")[0].contains_key("team-a-api-slo.yaml"));
}

#[test]
fn global_ruler_selects_prometheus_rules_and_shards_their_groups() {
    let (_, mut inputs) = example_inputs(0);
    inputs.global_rule_groups.clear();
    let global: Ruler = serde_json::from_value(serde_json::json!({
        "apiVersion": API_VERSION, "kind": "Ruler",
        "metadata": {"name": "global", "namespace": "whizard",
                     "labels": {L::SERVICE: "whizard.central"}},
        "spec": {"shards": 3,
                 "ruleSelectors": [{"matchLabels": {"role": "global"}},
                                   {"matchExpressions": [{"key": "fleet", "operator": "Exists"}]}],
                 "ruleNamespaceSelector": {"matchLabels": {"rules": "on"}}}
    }))
    .unwrap();
    inputs.rulers.push(global);
    inputs
        .namespaces
        .insert("mon".into(), [("rules".into(), "on".into())].into());
    inputs.namespaces.insert("off".into(), Default::default());
    let groups = ["g0", "g1", "g2", "g3", "g4", "g5"];
    inputs.prometheus_rules = vec![
        prom_rule(
            "mon",
            "fleet",
            serde_json::json!({"role": "global"}),
            &groups,
        ),
        prom_rule("mon", "other", serde_json::json!({"fleet": "x"}), &["o"]),
        prom_rule("mon", "unlabelled", serde_json::json!({}), &["u"]),
        prom_rule(
            "off",
            "wrong-ns",
            serde_json::json!({"role": "global"}),
            &["w"],
        ),
    ];
    let plan = planner::plan(&inputs).unwrap();
    let shards = ruler_files(&plan, "central-global");
    assert_eq!(shards.len(), 3);
    let all: Vec<String> = shards.iter().flat_map(|f| f.keys().cloned()).collect();
    assert!(all.contains(&"mon-other.yaml".to_string()));
    assert!(!all
        .iter()
        .any(|f| f == "mon-unlabelled.yaml" || f == "off-wrong-ns.yaml"));
    // Each group of mon-fleet.yaml sits on Whizard's shard for "<file>/<group>".
    let mut seen = 0;
    for g in groups {
        let s = super::shard::shard_of("mon-fleet.yaml", g, 3) as usize;
        let doc: Value = serde_norway::from_str(&shards[s]["mon-fleet.yaml"]).unwrap();
        assert!(
            doc["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == g),
            "{g} not on shard {s}"
        );
        seen += 1;
    }
    assert_eq!(seen, 6);
    // The groups really are spread (not all on one shard) with these names.
    assert!(
        shards
            .iter()
            .filter(|f| f.contains_key("mon-fleet.yaml"))
            .count()
            > 1
    );
}

#[test]
fn rule_namespace_selector_defaults_to_the_rulers_namespace() {
    let (_, mut inputs) = example_inputs(0);
    inputs.service.spec.ruler_template_spec.spec.rule_selectors =
        vec![serde_json::json!({"matchLabels": {"role": "x"}})];
    inputs.prometheus_rules = vec![
        prom_rule("whizard", "here", serde_json::json!({"role": "x"}), &["h"]),
        prom_rule(
            "elsewhere",
            "there",
            serde_json::json!({"role": "x"}),
            &["t"],
        ),
    ];
    let plan = planner::plan(&inputs).unwrap();
    let files = &ruler_files(&plan, "central-global")[0];
    assert!(files.contains_key("whizard-here.yaml"));
    assert!(!files.contains_key("elsewhere-there.yaml"));
    // `{}` selects every namespace.
    inputs
        .service
        .spec
        .ruler_template_spec
        .spec
        .rule_namespace_selector = Some(serde_json::json!({}));
    let plan = planner::plan(&inputs).unwrap();
    assert!(ruler_files(&plan, "central-global")[0].contains_key("elsewhere-there.yaml"));
}

#[test]
fn malformed_rule_selector_is_a_plan_error() {
    let (_, mut inputs) = example_inputs(0);
    inputs.service.spec.ruler_template_spec.spec.rule_selectors =
        vec![serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})];
    inputs.prometheus_rules = vec![prom_rule("whizard", "r", serde_json::json!({}), &["g"])];
    let e = planner::plan(&inputs).unwrap_err();
    assert!(matches!(e, model::PlanError::Selector { .. }), "{e}");
}

/// Objects of the examples with the ingester TSDB cleanup enabled.
fn cleanup_objects(extra_tenant: bool) -> Vec<Value> {
    let (svc, mut inputs) = example_inputs(0);
    inputs
        .service
        .spec
        .ingester_template_spec
        .disable_tsdb_cleanup = Some(false);
    if extra_tenant {
        // team-e fills the hole in central-s3-auto-1 (team-d is alone there).
        let mut t = inputs
            .tenants
            .iter()
            .find(|t| t.name_any() == "team-d")
            .unwrap()
            .clone();
        t.metadata.name = Some("team-e".into());
        inputs.tenants.push(t);
    }
    let mut svc = svc;
    svc.spec = inputs.service.spec.clone();
    core_objects(&inputs, &svc)
}

#[test]
fn tsdb_cleanup_is_opt_in_and_never_rolls_the_ingesters() {
    // Off by default (Whizard's disableTsdbCleanup defaults to true).
    let out = render::render_dir_at(&examples(), 0).unwrap();
    let plain = docs(&out);
    assert!(!plain.iter().any(|o| o["spec"]["template"]["spec"]
        .get("initContainers")
        .is_some()));

    let before = cleanup_objects(false);
    let after = cleanup_objects(true);
    let sts = "ingester-central-s3-auto-1";
    let init = &find(&before, "StatefulSet", sts)["spec"]["template"]["spec"]["initContainers"];
    assert_eq!(init[0]["name"], "tsdb-cleanup");
    assert_eq!(init[0]["image"], planner::THANOS_IMAGE);
    let cm = |objs: &[Value]| {
        find(objs, "ConfigMap", "ingester-central-s3-auto-1-tenants")["data"]["tenants"].clone()
    };
    assert_eq!(cm(&before), "team-d\n");
    assert_eq!(cm(&after), "team-d\nteam-e\n");
    // The tenant change reaches the ConfigMap only: the StatefulSet (pod template) is
    // byte-identical, so nothing restarts (Whizard issue #284).
    assert_eq!(
        find(&before, "StatefulSet", sts),
        find(&after, "StatefulSet", sts)
    );
    // Reconciling twice renders the same thing.
    assert_eq!(before, cleanup_objects(false));
}

#[test]
fn tsdb_cleanup_script_removes_only_foreign_tenant_tsdbs() {
    let objs = cleanup_objects(false);
    let init = &find(&objs, "StatefulSet", "ingester-central-s3-auto-0")["spec"]["template"]
        ["spec"]["initContainers"][0];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = init["command"][2]
        .as_str()
        .unwrap()
        .replace("/etc/whizard/ingester-tenants", &format!("{d}/etc"))
        .replace("/thanos", &format!("{d}/data"));
    let data = dir.path().join("data");
    for t in ["team-a", "team-b", "gone", "gone-too"] {
        std::fs::create_dir_all(data.join(t).join("wal")).unwrap();
    }
    std::fs::create_dir_all(data.join("not-a-tsdb")).unwrap();
    std::fs::write(data.join("file"), "x").unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    let run = || {
        let o = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // No tenant list: nothing is removed.
    run();
    assert!(data.join("gone").exists());
    let cm = find(&objs, "ConfigMap", "ingester-central-s3-auto-0-tenants");
    std::fs::write(
        dir.path().join("etc/tenants"),
        cm["data"]["tenants"].as_str().unwrap(),
    )
    .unwrap();
    run();
    let mut left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["file", "not-a-tsdb", "team-a", "team-b"]);
}

/// Core objects of the examples with a TLS + basic-auth `webConfig` on the gateway.
fn web_gateway_objects() -> Vec<Value> {
    let (svc, mut inputs) = example_inputs(0);
    inputs.gateways.push(
        serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Gateway",
            "metadata": {"name": "central", "namespace": "whizard",
                         "labels": {L::SERVICE: "whizard.central"}},
            "spec": {"nodePort": 30090, "webConfig": {
                "httpServerTLSConfig": {"certSecret": {"name": "gw-tls", "key": "tls.crt"},
                                        "keySecret": {"name": "gw-tls", "key": "tls.key"}},
                "basicAuthUsers": [{"username": {"name": "u", "key": "name"},
                                    "password": {"name": "u", "key": "hash"}}]}}
        }))
        .unwrap(),
    );
    user_secret(&mut inputs, "u", "ops");
    core_objects(&inputs, &svc)
}

#[test]
fn web_gateway_service_exposes_https_node_port() {
    let objs = web_gateway_objects();
    let svc = find(&objs, "Service", "gateway-central");
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["name"], "https");
    assert_eq!(port["nodePort"], 30090);
    // A user named like a ruler user is refused.
    let (_, mut inputs) = example_inputs(0);
    inputs.service.spec.gateway_template_spec.web_config = Some(WebConfig {
        basic_auth_users: vec![serde_json::json!({"username": {"name": "u", "key": "name"},
                                                  "password": {"name": "u", "key": "hash"}})],
        ..Default::default()
    });
    user_secret(&mut inputs, "u", "whizard-ruler-team-a");
    assert!(matches!(
        planner::plan(&inputs),
        Err(model::PlanError::WebConfig { .. })
    ));
}

/// Fields Whizard users set that the reconciler used to accept and ignore (issue 30).
#[test]
fn claim_retention_and_target_info_are_honoured() {
    let (_, mut inputs) = example_inputs(0);
    let pvc = json!({"spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}}}});
    // The compactors' StatefulSet policy with this `dataVolume` policy in the template.
    let mut policy_of = |policy: Option<Value>| {
        inputs.service.spec.compactor_template_spec.spec.data_volume = Some(KubernetesVolume {
            persistent_volume_claim: Some(pvc.clone()),
            persistent_volume_claim_retention_policy: policy,
            ..Default::default()
        });
        let objs = core_objects(&inputs, &inputs.service);
        find(&objs, "StatefulSet", "compactor-central-s3-0")["spec"]
            ["persistentVolumeClaimRetentionPolicy"]
            .clone()
    };
    // A compactor's claims hold a block cache: they go with it (Whizard's deletePVC).
    let by_default = json!({"whenDeleted": "Delete", "whenScaled": "Retain"});
    assert_eq!(policy_of(None), by_default);
    // Set explicitly, the policy is the user's; one Kubernetes does not take is left out.
    let retain = json!({"whenDeleted": "Retain"});
    assert_eq!(policy_of(Some(retain.clone())), retain);
    assert_eq!(
        policy_of(Some(json!({"whenDeleted": "Sometimes"}))),
        by_default
    );

    // otlpEnableTargetInfo: false turns Thanos' default (true) off; true says nothing new.
    let ingester_args = |inputs: &Inputs| {
        let objs = core_objects(inputs, &inputs.service);
        statefulsets(&objs, "ingester-")
            .into_iter()
            .flat_map(args)
            .collect::<Vec<String>>()
    };
    inputs
        .service
        .spec
        .ingester_template_spec
        .spec
        .otlp_enable_target_info = Some(false);
    let a = ingester_args(&inputs);
    assert!(a
        .iter()
        .any(|x| x == "--no-receive.otlp-enable-target-info"));
    inputs
        .service
        .spec
        .ingester_template_spec
        .spec
        .otlp_enable_target_info = Some(true);
    let a = ingester_args(&inputs);
    assert!(!a.iter().any(|x| x.contains("otlp-enable-target-info")));
}
