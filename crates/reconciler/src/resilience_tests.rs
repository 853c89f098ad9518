//! Issue #30, "one bad Tenant stops everyone": per-tenant problems are isolated, tenant ids
//! map to valid unique object names, hashrings never lose their endpoints silently, unknown
//! fields are reported, and generated names never collide.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kube::api::ObjectMeta;
use kube::ResourceExt;
use serde_json::Value;

use super::crd::{labels as L, *};
use super::model::Inputs;
use super::naming;
use super::planner;
use super::render;

fn examples() -> PathBuf {
    super::tests::examples()
}

fn example_inputs(now: u64) -> (Service, Inputs) {
    let (services, mut inputs) = render::read_dir(&examples()).unwrap();
    inputs.service = services[0].clone();
    inputs.now = now;
    (services[0].clone(), inputs)
}

fn tenant(name: &str, id: &str, labels: &[(&str, &str)]) -> Tenant {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert(L::SERVICE.into(), "whizard.central".into());
    Tenant {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(l),
            ..Default::default()
        },
        spec: TenantSpec {
            tenant: id.into(),
            ..Default::default()
        },
        status: None,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most `max` characters.
fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn ids_in(plan: &planner::Plan) -> Vec<String> {
    plan.tenants.iter().map(|t| t.id.clone()).collect()
}

/// (kind, namespace, name) of every rendered object must be unique, and every name valid.
fn assert_rendered_names_valid_and_unique(objs: &[Value]) {
    let mut seen = BTreeSet::new();
    for o in objs {
        let kind = o["kind"].as_str().unwrap().to_string();
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        let max = match kind.as_str() {
            // The pod label controller-revision-hash is `<name>-<10 chars>` (≤ 63).
            "StatefulSet" => 52,
            "Service" => 63,
            _ => 253,
        };
        assert!(
            is_dns_label(&name, max),
            "{kind} {name:?} is not a valid name"
        );
        assert!(
            seen.insert((kind.clone(), name.clone())),
            "{kind} {name} rendered twice"
        );
    }
}

#[test]
fn missing_storage_skips_only_that_tenant() {
    let (svc, mut inputs) = example_inputs(0);
    inputs.tenants.push(tenant(
        "lost",
        "lost",
        &[(L::STORAGE, "whizard.does-not-exist")],
    ));
    let plan = planner::plan(&inputs).expect("one bad tenant must not fail the plan");
    let ids = ids_in(&plan);
    assert!(!ids.contains(&"lost".to_string()), "{ids:?}");
    for t in ["team-a", "team-b", "team-c", "team-d", "big", "edge"] {
        assert!(ids.contains(&t.to_string()), "{t} missing from {ids:?}");
    }
    let objs = render::render_plan(&plan, &svc);
    assert_rendered_names_valid_and_unique(&objs);
    // Reported on its own status, by name and reason; everyone else is Ready.
    let p = plan_problems(&plan);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("lost") && p[0].contains("whizard.does-not-exist"),
        "{p:?}"
    );
    let c = &plan.tenant_status["lost"].conditions[0];
    assert_eq!((c.type_.as_str(), c.status.as_str()), ("Ready", "False"));
    assert_eq!(c.reason, "StorageNotFound");
    assert!(
        c.message.contains("whizard.does-not-exist"),
        "{}",
        c.message
    );
    for t in ["team-a", "big", "edge"] {
        assert_eq!(plan.tenant_status[t].conditions[0].status, "True", "{t}");
    }
}

/// A Tenant that becomes invalid (its Storage label now names a missing Storage) is skipped
/// but moves nothing: it stays on its ingester and compactor, and its blocks are not
/// scheduled for deletion.
#[test]
fn a_tenant_turning_bad_keeps_its_placement_and_blocks() {
    let (_, mut inputs) = example_inputs(1_000);
    let first = planner::plan(&inputs).unwrap();
    inputs.ingesters = first.ingesters.clone();
    inputs.compactors = first.compactors.clone();
    for t in &mut inputs.tenants {
        if t.name_any() == "team-d" {
            t.labels_mut()
                .insert(L::STORAGE.into(), "whizard.typo".into());
        }
    }
    let second = planner::plan(&inputs).unwrap();
    assert!(!ids_in(&second).contains(&"team-d".to_string()));
    let layout = |p: &planner::Plan| -> Vec<(String, Vec<String>)> {
        p.ingesters
            .iter()
            .map(|i| (i.name_any(), i.spec.tenants.clone()))
            .chain(
                p.compactors
                    .iter()
                    .map(|c| (c.name_any(), c.spec.tenants.clone())),
            )
            .collect()
    };
    assert_eq!(layout(&first), layout(&second));
    assert!(second.deletions.is_empty(), "{:?}", second.deletions);
    assert_eq!(second.requeue_at, None);
    // Deleting the Tenant is a removal again: its blocks are scheduled.
    inputs.tenants.retain(|t| t.name_any() != "team-d");
    let third = planner::plan(&inputs).unwrap();
    assert!(third.deletions.iter().any(|d| d.tenant == "team-d"));
}

#[test]
fn duplicate_and_invalid_tenant_ids_are_skipped_alone() {
    let (_, mut inputs) = example_inputs(0);
    inputs.tenants.push(tenant("zz-copy", "team-a", &[]));
    let too_long = "x".repeat(64);
    inputs.tenants.push(tenant("too-long", &too_long, &[]));
    inputs.tenants.push(tenant("spaces", "has spaces", &[]));
    let plan = planner::plan(&inputs).unwrap();
    let reasons: BTreeMap<String, String> = plan
        .problems
        .iter()
        .map(|p| (p.tenant_cr.clone().unwrap(), p.reason.clone()))
        .collect();
    assert_eq!(reasons["zz-copy"], "DuplicateTenant");
    assert_eq!(reasons["too-long"], "InvalidTenantId");
    assert_eq!(reasons["spaces"], "InvalidTenantId");
    assert_eq!(reasons.len(), 3);
    // The first Tenant CR of the id keeps it.
    assert_eq!(
        plan.tenants
            .iter()
            .find(|t| t.id == "team-a")
            .unwrap()
            .cr_name,
        "team-a"
    );
    assert_eq!(plan.tenants.len(), 6);
}

proptest::proptest! {
    /// Any tenant id: exclusive ingester/compactor and ruler names are valid DNS labels within
    /// their limits, stable, and different for different ids.
    #[test]
    fn names_of_any_tenant_id_are_valid_stable_and_unique(
        a in "[A-Za-z0-9][-A-Za-z0-9_.]{0,61}[A-Za-z0-9]|[a-z]",
        b in "[A-Za-z0-9][-A-Za-z0-9_.]{0,61}[A-Za-z0-9]|[a-z]",
    ) {
        for prefix in ["central-s3", "a-thirty-character-prefix-xyz"] {
            let na = super::assign::exclusive_name(prefix, &a);
            proptest::prop_assert!(is_dns_label(&na, naming::MAX_SLOT_NAME), "{na}");
            proptest::prop_assert_eq!(&na, &super::assign::exclusive_name(prefix, &a));
            if a != b {
                proptest::prop_assert_ne!(na, super::assign::exclusive_name(prefix, &b));
            }
        }
        let ra = naming::ruler_name(&a);
        proptest::prop_assert!(is_dns_label(&ra, 30), "{ra}");
        if a != b {
            proptest::prop_assert_ne!(ra, naming::ruler_name(&b));
        }
    }
}

#[test]
fn well_formed_names_do_not_change() {
    // Existing installations keep their objects.
    assert_eq!(
        super::assign::exclusive_name("central-s3", "big"),
        "central-s3-exclusive-big"
    );
    assert_eq!(naming::ruler_name("team-a"), "team-a");
    let odd = super::assign::exclusive_name("central-s3", "Prod_Cluster.East");
    // Sanitised, cut to 42 characters with the hash suffix.
    assert!(
        odd.starts_with("central-s3-exclusive-prod-cluster-"),
        "{odd}"
    );
    assert_eq!(odd.len(), naming::MAX_SLOT_NAME, "{odd}");
}

#[test]
fn unknown_fields_ignore_empty_values_and_aliases() {
    let input = serde_json::json!({"spec": {"a": 1, "insecure": false, "flags": [],
        "httpServerTlsConfig": {"x": 1}, "typo": 2, "nested": {"b": 1, "typo2": "y"}}});
    let typed = serde_json::json!({"spec": {"a": 1, "httpServerTLSConfig": {"x": 1},
        "nested": {"b": 1}}});
    assert_eq!(
        render::unknown_fields(&input, &typed),
        vec!["spec.nested.typo2".to_string(), "spec.typo".to_string()]
    );
}

#[test]
fn exclusive_tenants_with_odd_ids_get_valid_unique_names() {
    let (svc, mut inputs) = example_inputs(0);
    let long = "a-sixty-character-tenant-id-that-is-still-a-valid-label-valu";
    assert_eq!(long.len(), 60);
    for (name, id) in [
        ("odd-1", "Prod_Cluster.East"),
        ("odd-2", "prod-cluster-east"),
        ("odd-3", long),
    ] {
        inputs
            .tenants
            .push(tenant(name, id, &[(L::EXCLUSIVE, "true")]));
    }
    let plan = planner::plan(&inputs).unwrap();
    let objs = render::render_plan(&plan, &svc);
    assert_rendered_names_valid_and_unique(&objs);
    // The tenant id itself is kept exact: hashring tenants and the ruler's tenant label.
    let ring = super::gateway_config::hashrings(&plan, &svc.spec);
    let ring_tenants: Vec<String> = ring
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["tenants"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    for id in ["Prod_Cluster.East", "prod-cluster-east", long] {
        assert!(ring_tenants.contains(&id.to_string()), "{id}");
        assert!(
            plan.rulers
                .iter()
                .any(|r| r.ruler.labels().get(L::TENANT).map(String::as_str) == Some(id)),
            "ruler of {id}"
        );
    }
    // Deterministic.
    let again = planner::plan(&inputs).unwrap();
    let names =
        |p: &planner::Plan| -> Vec<String> { p.ingesters.iter().map(|i| i.name_any()).collect() };
    assert_eq!(names(&plan), names(&again));
}

#[test]
fn zero_replica_ingesters_leave_no_empty_hashring() {
    let (_, mut inputs) = example_inputs(0);
    inputs
        .service
        .spec
        .ingester_template_spec
        .spec
        .common
        .replicas = Some(0);
    let result = planner::plan(&inputs);
    if let Ok(plan) = result {
        let ring = super::gateway_config::hashrings(&plan, &inputs.service.spec);
        for r in ring.as_array().unwrap() {
            assert!(
                !r["endpoints"].as_array().unwrap().is_empty(),
                "hashring without endpoints: {r}"
            );
        }
        // ... and it is not silent: every tenant is told why.
        assert!(!plan_problems(&plan).is_empty());
        let c = &plan.tenant_status["team-a"].conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "IngesterHasNoReplicas")
        );
    } else {
        panic!("zero replicas must be reported, not fail the plan");
    }
}

#[test]
fn replication_factor_above_replicas_is_not_silent() {
    let (_, mut inputs) = example_inputs(0);
    inputs.service.spec.router_template_spec.replication_factor = Some(3);
    match planner::plan(&inputs) {
        Err(e) => assert!(e.to_string().contains("replicationFactor"), "{e}"),
        Ok(plan) => {
            let p = plan_problems(&plan);
            assert!(
                p.iter()
                    .any(|m| m.contains("replicationFactor 3") && m.contains("only 2 replicas")),
                "{p:?}"
            );
            // Those ingesters are not in the hashring (Thanos could not write to them).
            let ring = super::gateway_config::hashrings(&plan, &inputs.service.spec);
            assert_eq!(ring.as_array().unwrap().len(), 0, "{ring}");
            assert_eq!(
                plan.tenant_status["edge"].conditions[0].reason,
                "ReplicationFactorTooHigh"
            );
        }
    }
}

fn write_examples_with(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(examples()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("99-extra.yaml"), extra).unwrap();
    dir
}

#[test]
fn unknown_field_in_render_input_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(examples()).unwrap() {
        let p = e.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        if p.file_name().unwrap() == "01-service.yaml" {
            text = text.replace(
                "defaultTenantsPerIngester: 3",
                "defaultTenantsPerIngestor: 5",
            );
            assert!(text.contains("defaultTenantsPerIngestor"));
        }
        std::fs::write(dir.path().join(p.file_name().unwrap()), text).unwrap();
    }
    let e = render::render_dir_at(dir.path(), 0)
        .expect_err("an unknown field must not be silently ignored")
        .to_string();
    assert!(e.contains("defaultTenantsPerIngestor"), "{e}");
    assert!(e.contains("Service whizard/central"), "{e}");
}

#[test]
fn render_with_a_bad_tenant_renders_the_rest_and_reports_it() {
    let dir = write_examples_with(
        "apiVersion: monitoring.whizard.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: lost\n  labels: {monitoring.whizard.io/service: whizard.central, monitoring.whizard.io/storage: whizard.nope}\n",
    );
    let e = render::render_dir_at(dir.path(), 0).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("lost") && msg.contains("whizard.nope"),
        "{msg}"
    );
    let out = rendered_output(&e);
    assert!(
        out.contains("ingester-central-s3-auto-0"),
        "rest not rendered"
    );
}

/// Two retention classes: team-c and team-e share a custom retention; then team-c goes back
/// to the Service's retention. No two Compactors (or StatefulSets) may share a name, and each
/// compactor's tenants have the retention it applies.
#[test]
fn compactor_retention_classes_never_share_a_name() {
    let (svc, mut inputs) = example_inputs(0);
    let mut e = tenant("team-e", "team-e", &[]);
    e.spec.retention = Some(Retention {
        retention_raw: "7d".into(),
        ..Default::default()
    });
    inputs.tenants.push(e);
    let first = planner::plan(&inputs).unwrap();
    inputs.compactors = first.compactors.clone();
    inputs.ingesters = first.ingesters.clone();
    for t in &mut inputs.tenants {
        if t.name_any() == "team-c" {
            t.spec.retention = None;
        }
    }
    let second = planner::plan(&inputs).unwrap();
    let names: Vec<String> = second.compactors.iter().map(|c| c.name_any()).collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate compactors: {names:?}");
    let objs = render::render_plan(&second, &svc);
    assert_rendered_names_valid_and_unique(&objs);
    // team-c is now compacted with the Service's retention (a compactor without override).
    let c = second
        .compactors
        .iter()
        .find(|c| c.spec.tenants.contains(&"team-c".to_string()))
        .unwrap();
    assert!(c.spec.retention.is_none(), "{}", c.name_any());
    // team-e stays where it was.
    let e_before = first
        .compactors
        .iter()
        .find(|c| c.spec.tenants.contains(&"team-e".to_string()))
        .unwrap()
        .name_any();
    assert!(second
        .compactors
        .iter()
        .any(|c| c.name_any() == e_before && c.spec.tenants == vec!["team-e".to_string()]));
}

fn plan_problems(plan: &planner::Plan) -> Vec<String> {
    plan.problems.iter().map(|p| p.to_string()).collect()
}

fn rendered_output(e: &render::RenderError) -> String {
    match e {
        render::RenderError::Problems { output, .. } => output.clone(),
        other => panic!("expected problems, got {other}"),
    }
}
