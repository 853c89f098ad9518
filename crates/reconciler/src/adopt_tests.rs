//! Migration from the Go Whizard ([`super::adopt`]): adoption of its Ingester, Compactor and
//! Store CRs (names and placement kept, nothing re-packed, no tenant twice), replacement of
//! its workloads, its finalizers, the fields of its types (honoured or warned), and the
//! golden render of a cluster as Whizard left it (`tests/fixtures/migration`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kube::api::ObjectMeta;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::adopt::{self, Adoption};
use super::assign::{Slot, TenantReq};
use super::crd::{labels as L, *};
use super::model::Inputs;
use super::planner::{self, Plan};
use super::render;
use super::{naming, tenants};

const NS: &str = "kubesphere-monitoring-system";
const KEY: &str = "kubesphere-monitoring-system.whizard";
const STORAGE: &str = "kubesphere-monitoring-system.minio";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/migration")
}

fn fixture_inputs() -> Inputs {
    let (services, mut inputs) = render::read_dir(&fixture()).unwrap();
    assert_eq!(services.len(), 1);
    inputs.service = services[0].clone();
    inputs
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// A minimal Go-era snapshot: the Service with a storage, and Tenants `ids` (CR name = id).
fn base(ids: &[&str]) -> Inputs {
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("whizard".into()),
            namespace: Some(NS.into()),
            annotations: Some(BTreeMap::from([(
                L::CREDENTIALS_SEED.to_string(),
                "seed".to_string(),
            )])),
            ..Default::default()
        },
        spec: ServiceSpec {
            storage: Some(ObjectReference {
                namespace: NS.into(),
                name: "minio".into(),
            }),
            ..Default::default()
        },
    };
    let storage = Storage {
        metadata: meta("minio", &[]),
        spec: StorageSpec {
            s3: Some(S3 {
                bucket: "b".into(),
                endpoint: "minio:9000".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    Inputs {
        service: svc,
        storages: vec![storage],
        tenants: ids.iter().map(|id| tenant(id, id, false)).collect(),
        seed: "seed".into(),
        ..Default::default()
    }
}

fn tenant(cr: &str, id: &str, exclusive: bool) -> Tenant {
    let mut labels = vec![(L::SERVICE, KEY)];
    if exclusive {
        labels.push((L::EXCLUSIVE, "true"));
    }
    let mut m = meta(cr, &labels);
    m.namespace = None;
    m.finalizers = Some(vec![
        "finalizers.monitoring.whizard.io/ingester".into(),
        "finalizers.monitoring.whizard.io/compactor".into(),
    ]);
    Tenant {
        metadata: m,
        spec: TenantSpec {
            tenant: id.into(),
            ..Default::default()
        },
        status: None,
    }
}

/// An Ingester as Whizard creates it (service and storage labels, no managed-by).
fn go_ingester(name: &str, tenants: &[&str], exclusive: bool) -> Ingester {
    let mut labels = vec![(L::SERVICE, KEY), (L::STORAGE, STORAGE)];
    if exclusive {
        labels.push((L::EXCLUSIVE, "true"));
    }
    Ingester {
        metadata: meta(name, &labels),
        spec: IngesterSpec {
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
        status: None,
    }
}

fn go_compactor(name: &str, tenants: &[&str]) -> Compactor {
    Compactor {
        metadata: meta(name, &[(L::SERVICE, KEY), (L::STORAGE, STORAGE)]),
        spec: CompactorSpec {
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
    }
}

fn layout_i(plan: &Plan) -> Vec<(String, Vec<String>)> {
    plan.ingesters
        .iter()
        .map(|i| (i.name_any(), i.spec.tenants.clone()))
        .collect()
}

fn layout_c(plan: &Plan) -> Vec<(String, Vec<String>)> {
    plan.compactors
        .iter()
        .map(|c| (c.name_any(), c.spec.tenants.clone()))
        .collect()
}

fn l(v: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    v.iter()
        .map(|(n, ts)| (n.to_string(), ts.iter().map(|t| t.to_string()).collect()))
        .collect()
}

fn kinds(adoption: &Adoption) -> Vec<(String, String)> {
    adoption.adopted.clone()
}

/// The snapshot after the plan was applied: the planned (managed) Ingester, Compactor and
/// Store CRs replace the Whizard ones of the same name; Whizard ones not planned are gone.
fn applied(mut inputs: Inputs, plan: &Plan) -> Inputs {
    let gone: BTreeSet<&(String, String)> = plan.adoption.adopted.iter().collect();
    inputs.ingesters.retain(|i| {
        !gone.contains(&("Ingester".to_string(), i.name_any()))
            && !plan.ingesters.iter().any(|p| p.name_any() == i.name_any())
    });
    inputs.ingesters.extend(
        plan.ingesters
            .iter()
            .filter(|i| naming::is_managed(&i.metadata))
            .cloned(),
    );
    inputs.compactors.retain(|c| {
        !gone.contains(&("Compactor".to_string(), c.name_any()))
            && !plan.compactors.iter().any(|p| p.name_any() == c.name_any())
    });
    inputs.compactors.extend(plan.compactors.iter().cloned());
    inputs.stores.retain(|s| {
        !gone.contains(&("Store".to_string(), s.name_any()))
            && !plan.stores.iter().any(|p| p.name_any() == s.name_any())
    });
    inputs.stores.extend(plan.stores.iter().cloned());
    for t in &mut inputs.tenants {
        t.metadata.finalizers =
            adopt::without_go_finalizers(&t.metadata).or(t.metadata.finalizers.clone());
        if let Some(st) = plan.tenant_status.get(&t.name_any()) {
            t.status = Some(st.clone());
        }
    }
    inputs
}

// ---------------------------------------------------------------------------------------------
// Small pure functions

#[test]
fn go_nanoseconds_become_durations() {
    assert_eq!(nanos_to_duration(0), "0s");
    assert_eq!(nanos_to_duration(-5), "0s");
    assert_eq!(nanos_to_duration(500_000), "0s");
    assert_eq!(nanos_to_duration(1_500_000), "1ms");
    assert_eq!(nanos_to_duration(1_500_000_000), "1500ms");
    assert_eq!(nanos_to_duration(90_000_000_000), "90s");
    assert_eq!(nanos_to_duration(120_000_000_000), "2m");
    assert_eq!(nanos_to_duration(21_600_000_000_000), "6h");
    let c: InMemoryResponseCacheConfig = serde_json::from_value(
        json!({"maxSize": "1GB", "maxSizeItems": 0, "validity": 3_600_000_000_000i64}),
    )
    .unwrap();
    assert_eq!(c.validity, "1h");
    let c: InMemoryResponseCacheConfig =
        serde_json::from_value(json!({"maxSize": "1GB", "validity": "10m"})).unwrap();
    assert_eq!(c.validity, "10m");
    assert!(
        serde_json::from_value::<InMemoryResponseCacheConfig>(json!({"validity": true})).is_err()
    );
}

#[test]
fn whizard_finalizers_are_dropped_others_kept() {
    let mut m = ObjectMeta::default();
    assert_eq!(adopt::without_go_finalizers(&m), None);
    m.finalizers = Some(vec!["example.com/keep".into()]);
    assert_eq!(adopt::without_go_finalizers(&m), None);
    m.finalizers = Some(vec![
        "finalizers.monitoring.whizard.io/ingester".into(),
        "example.com/keep".into(),
        "finalizers.monitoring.whizard.io/deletePVC".into(),
    ]);
    assert_eq!(
        adopt::without_go_finalizers(&m),
        Some(vec!["example.com/keep".to_string()])
    );
}

#[test]
fn storage_label_without_namespace_means_the_services() {
    assert_eq!(adopt::normalize_storage(".minio", "ns"), "ns.minio");
    assert_eq!(adopt::normalize_storage("a.minio", "ns"), "a.minio");
    assert_eq!(adopt::normalize_storage("local", "ns"), "local");
}

#[test]
fn claim_name_is_whizards() {
    let none = IngesterSpec::default();
    assert_eq!(adopt::go_claim_name(&none, &none), "tsdb");
    let pvc = |name: Option<&str>| IngesterSpec {
        data_volume: Some(KubernetesVolume {
            persistent_volume_claim: Some(match name {
                Some(n) => json!({"metadata": {"name": n}, "spec": {}}),
                None => json!({"spec": {}}),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(adopt::go_claim_name(&none, &pvc(None)), "tsdb");
    assert_eq!(adopt::go_claim_name(&none, &pvc(Some("data-x"))), "data-x");
    assert_eq!(
        adopt::go_claim_name(&pvc(Some("mine")), &pvc(Some("tmpl"))),
        "mine"
    );
}

#[test]
fn dedup_prefers_status_then_preferred_then_first_by_name() {
    let slots = vec![
        ("b".to_string(), vec!["t".to_string(), "u".to_string()]),
        (
            "a".to_string(),
            vec!["t".to_string(), "u".to_string(), "v".to_string()],
        ),
        ("c".to_string(), vec!["t".to_string()]),
    ];
    let status = ObjectReference {
        namespace: NS.into(),
        name: "c".into(),
    };
    // t: the status names c; u: no status, c is not preferred → b is preferred; v: alone.
    let drop = adopt::dedup(&slots, |t| (t == "t").then_some(&status), |n| n == "b");
    assert_eq!(
        drop,
        BTreeMap::from([
            ("a".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("b".to_string(), vec!["t".to_string()]),
        ])
    );
    // No status, nothing preferred: the first by name keeps it.
    let drop = adopt::dedup(&slots, |_| None, |_| false);
    assert_eq!(
        drop,
        BTreeMap::from([
            ("b".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("c".to_string(), vec!["t".to_string()]),
        ])
    );
    // A status naming a slot that does not hold the tenant is ignored.
    let elsewhere = ObjectReference {
        namespace: NS.into(),
        name: "zzz".into(),
    };
    let drop = adopt::dedup(&slots, |_| Some(&elsewhere), |_| false);
    assert_eq!(drop["c"], vec!["t".to_string()]);
}

fn slot(name: &str, tenants: &[&str], exclusive: bool) -> Slot {
    Slot {
        name: name.into(),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        exclusive,
        deleting_at: None,
    }
}

fn reqs(shared: &[&str], exclusive: &[&str]) -> Vec<TenantReq> {
    shared
        .iter()
        .map(|t| TenantReq {
            id: t.to_string(),
            exclusive: false,
        })
        .chain(exclusive.iter().map(|t| TenantReq {
            id: t.to_string(),
            exclusive: true,
        }))
        .collect()
}

#[test]
fn aliases_map_foreign_names_onto_free_indexes_and_exclusive_names() {
    let auto = super::assign::auto_name;
    let existing = vec![
        slot("p-auto-0", &["a"], false),
        slot("p-auto-2", &["b"], false),
        slot("p-x7k2p", &["c"], false),
        slot("p-abcde", &["d"], false),
        slot("big-cr", &["big"], true),
        slot("p-exclusive-own", &["own"], true),
        slot("gone-cr", &["was-exclusive"], true),
    ];
    let tenants = reqs(&["a", "b", "c", "d", "was-exclusive"], &["big", "own"]);
    let got = adopt::aliases("p", &existing, &tenants, auto);
    assert_eq!(
        got,
        BTreeMap::from([
            // Foreign shared slots in name order take the lowest free indexes.
            ("p-auto-1".to_string(), "p-abcde".to_string()),
            ("p-auto-3".to_string(), "p-x7k2p".to_string()),
            // An exclusive slot of a still exclusive tenant: that tenant's exclusive name.
            ("p-exclusive-big".to_string(), "big-cr".to_string()),
            // gone-cr holds a tenant no longer exclusive: no alias (the tenant moves, as in
            // Whizard); ours (auto-*, exclusive-own) need none.
        ])
    );
    // An alias an existing slot already has is not used.
    let clash = vec![
        slot("p-exclusive-big", &[], true),
        slot("big-cr", &["big"], true),
    ];
    assert!(adopt::aliases("p", &clash, &reqs(&[], &["big"]), auto).is_empty());
}

#[test]
fn go_compactor_keeps_its_name_and_is_filled_before_a_new_one() {
    // Whizard's compactor (generateName) with 2 tenants, cap 3: a third tenant joins it (it
    // stands in for index 0 of the first fit), the fourth opens <prefix>-1; nobody moves.
    let existing = vec![slot("p-7xk2p", &["b", "a"], false)];
    let got = adopt::assign_compactors(
        "p",
        &existing,
        &reqs(&["a", "b", "c", "d"], &[]),
        &BTreeSet::new(),
        3,
    );
    let layout: Vec<(String, Vec<String>)> = got
        .iter()
        .map(|s| (s.name.clone(), s.tenants.clone()))
        .collect();
    assert_eq!(layout, l(&[("p-1", &["d"]), ("p-7xk2p", &["b", "a", "c"])]));
    // The next reconcile: the same layout; a fifth tenant fills p-1.
    let got = adopt::assign_compactors(
        "p",
        &got,
        &reqs(&["a", "b", "c", "d", "e"], &[]),
        &BTreeSet::new(),
        3,
    );
    let layout: Vec<(String, Vec<String>)> = got
        .iter()
        .map(|s| (s.name.clone(), s.tenants.clone()))
        .collect();
    assert_eq!(
        layout,
        l(&[("p-1", &["d", "e"]), ("p-7xk2p", &["b", "a", "c"])])
    );
    // Without any new tenant the result is the input.
    let got =
        adopt::assign_compactors("p", &existing, &reqs(&["a", "b"], &[]), &BTreeSet::new(), 3);
    assert_eq!(got, existing);
    // Emptied: dropped (as compactors are), so the adopted CR is deleted.
    let got = adopt::assign_compactors("p", &existing, &[], &BTreeSet::new(), 3);
    assert!(got.is_empty());
}

#[test]
fn go_exclusive_ingester_named_after_the_tenant_cr_keeps_its_tenant() {
    let existing = vec![
        slot("big-cr", &["big"], true),
        slot("p-auto-0", &["a"], false),
    ];
    let got = adopt::assign_ingesters(
        "p",
        &existing,
        &reqs(&["a", "b"], &["big"]),
        &BTreeSet::new(),
        3,
        3600,
        0,
    );
    let layout: Vec<(String, Vec<String>)> = got
        .iter()
        .map(|s| (s.name.clone(), s.tenants.clone()))
        .collect();
    assert_eq!(
        layout,
        l(&[("big-cr", &["big"]), ("p-auto-0", &["a", "b"])])
    );
    // No longer exclusive: moved to a shared ingester (as Whizard resets it), the emptied
    // exclusive one kept for the retention.
    let got = adopt::assign_ingesters(
        "p",
        &existing,
        &reqs(&["a", "b", "big"], &[]),
        &BTreeSet::new(),
        3,
        3600,
        100,
    );
    let layout: Vec<(String, Vec<String>, Option<u64>)> = got
        .iter()
        .map(|s| (s.name.clone(), s.tenants.clone(), s.deleting_at))
        .collect();
    assert_eq!(
        layout,
        vec![
            ("big-cr".to_string(), vec![], Some(3700)),
            (
                "p-auto-0".to_string(),
                vec!["a".to_string(), "b".to_string(), "big".to_string()],
                None
            ),
        ]
    );
}

#[test]
fn ingesters_whose_names_are_ours_are_placed_as_before() {
    // Whizard's shared ingester names are ours (<svc>-<storage>-auto-<i>): no alias, the
    // result is exactly assign's.
    let existing = vec![
        slot("p-auto-0", &["c", "a", "b"], false),
        slot("p-auto-1", &["d"], false),
    ];
    let t = reqs(&["a", "b", "c", "d", "e"], &[]);
    assert_eq!(
        adopt::assign_ingesters("p", &existing, &t, &BTreeSet::new(), 3, 60, 0),
        super::assign::assign_ingesters_holding("p", &existing, &t, &BTreeSet::new(), 3, 60, 0)
    );
}

#[test]
fn legacy_workloads_are_whizards_for_the_services_crs_only() {
    let mut a = Adoption::default();
    a.legacy_owners
        .insert(("ingester".into(), "whizard-minio-auto-0".into()));
    let labels = |n: &str, by: &str| {
        BTreeMap::from([
            (L::NAME.to_string(), n.to_string()),
            (L::MANAGED_BY.to_string(), by.to_string()),
        ])
    };
    assert!(adopt::is_legacy(
        &a,
        &labels("ingester", "whizard-minio-auto-0")
    ));
    assert!(!adopt::is_legacy(
        &a,
        &labels("compactor", "whizard-minio-auto-0")
    ));
    assert!(!adopt::is_legacy(&a, &labels("ingester", "other")));
    assert!(!adopt::is_legacy(
        &a,
        &labels("ingester", L::MANAGED_BY_VALUE)
    ));
    assert!(!adopt::is_legacy(&a, &BTreeMap::new()));
    let sel = adopt::legacy_selector();
    assert!(sel.starts_with("app.kubernetes.io/managed-by,app.kubernetes.io/managed-by!=whizard-reconciler,app.kubernetes.io/name in ("));
    for (_, c) in adopt::GO_COMPONENTS {
        assert!(sel.contains(c));
    }
}

#[test]
fn containers_patch_like_whizard() {
    let generated = vec![
        json!({"name": "thanos", "image": "thanos:1", "args": ["receive"], "env": [{"name": "POD_NAME", "value": "x"}],
               "volumeMounts": [{"name": "data", "mountPath": "/thanos"}], "resources": {"limits": {"cpu": "1"}}}),
        json!({"name": "config-reloader", "image": "r:1"}),
    ];
    let patch = json!([
        // Whizard's name of the main container.
        {"name": "receive", "env": [{"name": "GOMEMLIMIT", "value": "3GiB"}, {"name": "POD_NAME", "value": "y"}],
         "resources": {"limits": {"memory": "4Gi"}}, "volumeMounts": [{"name": "extra", "mountPath": "/extra"}]},
        {"name": "config-reloader", "image": "r:2", "args": null},
        {"name": "sidecar", "image": "busybox", "args": ["sleep", "infinity"]},
    ]);
    let got = adopt::patch_containers(generated.clone(), Some(&patch), "ingester");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["name"], "thanos");
    assert_eq!(
        got[0]["env"],
        json!([{"name": "POD_NAME", "value": "y"}, {"name": "GOMEMLIMIT", "value": "3GiB"}])
    );
    assert_eq!(
        got[0]["resources"],
        json!({"limits": {"cpu": "1", "memory": "4Gi"}})
    );
    assert_eq!(got[0]["volumeMounts"].as_array().unwrap().len(), 2);
    assert_eq!(got[0]["args"], json!(["receive"]));
    assert_eq!(got[1], json!({"name": "config-reloader", "image": "r:2"}));
    assert_eq!(got[2]["name"], "sidecar");
    // Our own name works too; Whizard's name of another component does not.
    let ours = adopt::patch_containers(
        generated.clone(),
        Some(&json!([{"name": "thanos", "image": "t:2"}])),
        "store",
    );
    assert_eq!(ours[0]["image"], "t:2");
    let other = adopt::patch_containers(
        generated.clone(),
        Some(&json!([{"name": "receive", "image": "t:2"}])),
        "store",
    );
    assert_eq!(other.len(), 3);
    assert_eq!(other[0]["image"], "thanos:1");
    // Not a list, or absent: nothing changes.
    assert_eq!(
        adopt::patch_containers(generated.clone(), Some(&json!({"name": "x"})), "ingester"),
        generated
    );
    assert_eq!(
        adopt::patch_containers(generated.clone(), None, "ingester"),
        generated
    );
}

#[test]
fn store_index_cache_from_whizards_field() {
    let mut s = StoreSpec::default();
    assert_eq!(adopt::index_cache_flag(&s), None);
    s.index_cache_config = Some(json!({"inMemory": {"maxSize": ""}}));
    assert_eq!(adopt::index_cache_flag(&s), None);
    s.index_cache_config = Some(json!({"inMemory": {"maxSize": "2GB"}}));
    assert_eq!(
        adopt::index_cache_flag(&s).unwrap(),
        r#"--index-cache.config={"config":{"max_size":"2GB"},"type":"IN-MEMORY"}"#
    );
}

#[test]
fn s3_fields_become_objstore_keys() {
    let s3: S3 = serde_json::from_value(json!({
        "bucket": "b", "endpoint": "e",
        "disableDualstack": true, "sendContentMd5": true, "disableMultipart": true,
        "putUserMetadata": {"a": "b"}, "listObjectsVersion": "v1", "partSize": 1024,
        "stsEndpoint": "https://sts", "trace": {"enable": true},
        "sseConfig": {"type": "SSE-KMS", "kmsKeyId": "k", "kmsEncryptionContext": {"x": "y"}},
        "httpConfig": {"idleConnTimeout": 90000000000i64, "tlsHandshakeTimeout": "10s",
                       "maxConnsPerHost": 5, "disableCompression": false,
                       "tlsConfig": {"serverName": "s", "insecureSkipVerify": true,
                                     "ca": {"name": "c", "key": "ca.crt"}, "cert": {"name": "c", "key": "tls.crt"}}},
    }))
    .unwrap();
    assert_eq!(
        Value::Object(s3.objstore_extra()),
        json!({
            "disable_dualstack": true, "send_content_md5": true, "disable_multipart": true,
            "put_user_metadata": {"a": "b"}, "list_objects_version": "v1", "part_size": 1024,
            "sts_endpoint": "https://sts", "trace": {"enable": true},
            "sse_config": {"type": "SSE-KMS", "kms_key_id": "k", "kms_encryption_context": {"x": "y"}},
            "http_config": {"idle_conn_timeout": "90s", "tls_handshake_timeout": "10s",
                            "max_conns_per_host": 5, "disable_compression": false,
                            "tls_config": {"server_name": "s", "insecure_skip_verify": true}},
        })
    );
    assert_eq!(
        s3.ignored_fields(),
        vec!["httpConfig.tlsConfig.ca", "httpConfig.tlsConfig.cert"]
    );
    // None of them set: nothing added (the objstore config of existing installs is unchanged).
    let plain: S3 = serde_json::from_value(json!({"bucket": "b", "endpoint": "e"})).unwrap();
    assert!(plain.objstore_extra().is_empty());
    assert!(plain.ignored_fields().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Planning with Whizard's objects

#[test]
fn nothing_of_whizards_nothing_changes() {
    let mut inputs = base(&["a", "b"]);
    inputs
        .tenants
        .iter_mut()
        .for_each(|t| t.metadata.finalizers = None);
    let a = adopt::adopt(&inputs);
    assert!(a.inputs.is_none());
    assert!(a.adoption.adopted.is_empty());
    assert!(a.adoption.finalizers.is_empty());
    assert!(a.adoption.warnings.is_empty());
}

#[test]
fn go_ingesters_are_adopted_with_their_placement() {
    let mut inputs = base(&["a", "b", "c", "d", "e"]);
    // Whizard's order within an ingester is kept; e is new.
    inputs.ingesters = vec![
        go_ingester("whizard-minio-auto-0", &["c", "a", "b"], false),
        go_ingester("whizard-minio-auto-1", &["d"], false),
    ];
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(
        layout_i(&plan),
        l(&[
            ("whizard-minio-auto-0", &["c", "a", "b"]),
            ("whizard-minio-auto-1", &["d", "e"]),
        ])
    );
    for i in &plan.ingesters {
        assert!(naming::is_managed(&i.metadata));
        assert_eq!(adopt::data_claim(i), Some("tsdb"));
    }
    assert_eq!(
        kinds(&plan.adoption),
        vec![
            ("Ingester".to_string(), "whizard-minio-auto-0".to_string()),
            ("Ingester".to_string(), "whizard-minio-auto-1".to_string()),
        ]
    );
    // Compactors: none of Whizard's, so ours as usual.
    assert_eq!(
        layout_c(&plan),
        l(&[("whizard-minio-0", &["a", "b", "c", "d", "e"])])
    );
    // The second reconcile (what was applied is now ours) changes nothing and adopts nothing.
    let again = planner::plan(&applied(inputs, &plan)).unwrap();
    assert_eq!(layout_i(&again), layout_i(&plan));
    assert!(again.adoption.adopted.is_empty());
    assert!(again
        .ingesters
        .iter()
        .all(|i| adopt::data_claim(i) == Some("tsdb")));
}

/// The adopted ingester's StatefulSet uses Whizard's claim name everywhere the data volume is
/// mounted (the TSDB cleanup init container too); ours keep `data`.
#[test]
fn adopted_ingester_keeps_whizards_claim_name() {
    let mut inputs = base(&["a", "b", "c", "d"]);
    inputs
        .service
        .spec
        .ingester_template_spec
        .disable_tsdb_cleanup = Some(false);
    inputs.service.spec.ingester_template_spec.spec.data_volume = Some(KubernetesVolume {
        persistent_volume_claim: Some(json!({"spec": {"accessModes": ["ReadWriteOnce"]}})),
        ..Default::default()
    });
    inputs.ingesters = vec![go_ingester("whizard-minio-auto-0", &["a", "b", "c"], false)];
    let plan = planner::plan(&inputs).unwrap();
    let objs = render::render_plan(&plan, &inputs.service);
    let sts = |n: &str| {
        objs.iter()
            .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == n)
            .unwrap()
    };
    let mounts = |o: &Value, part: &str| -> Vec<String> {
        o["spec"]["template"]["spec"][part]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["volumeMounts"].as_array().unwrap().clone())
            .filter(|m| m["mountPath"] == "/thanos")
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    let adopted = sts("ingester-whizard-minio-auto-0");
    assert_eq!(
        adopted["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "tsdb"
    );
    assert_eq!(mounts(adopted, "containers"), vec!["tsdb"]);
    assert_eq!(mounts(adopted, "initContainers"), vec!["tsdb"]);
    let ours = sts("ingester-whizard-minio-auto-1");
    assert_eq!(
        ours["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );
    assert_eq!(mounts(ours, "containers"), vec!["data"]);
    assert_eq!(mounts(ours, "initContainers"), vec!["data"]);
}

#[test]
fn removing_a_tenant_moves_no_other() {
    let mut inputs = base(&["a", "c"]);
    inputs.ingesters = vec![
        go_ingester("whizard-minio-auto-0", &["c", "a", "b"], false),
        go_ingester("whizard-minio-auto-1", &["d"], false),
    ];
    inputs.now = 1000;
    let plan = planner::plan(&inputs).unwrap();
    // d's ingester is emptied and kept 3h; b leaves auto-0.
    assert_eq!(
        layout_i(&plan),
        l(&[
            ("whizard-minio-auto-0", &["c", "a"]),
            ("whizard-minio-auto-1", &[])
        ])
    );
    let emptied = &plan.ingesters[1];
    assert_eq!(
        emptied
            .annotations()
            .get(L::INGESTER_DELETING_TIME)
            .map(String::as_str),
        Some("11800")
    );
}

#[test]
fn go_ingester_past_its_deletion_time_is_dropped() {
    let mut inputs = base(&["a"]);
    let mut emptied = go_ingester("whizard-minio-auto-1", &[], false);
    emptied.metadata.annotations = Some(BTreeMap::from([
        (L::INGESTER_STATE.to_string(), "deleting".to_string()),
        (L::INGESTER_DELETING_TIME.to_string(), "500".to_string()),
    ]));
    inputs.ingesters = vec![go_ingester("whizard-minio-auto-0", &["a"], false), emptied];
    inputs.now = 1000;
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(layout_i(&plan), l(&[("whizard-minio-auto-0", &["a"])]));
    // Adopted but not planned: deleted after the apply.
    assert!(plan
        .adoption
        .adopted
        .contains(&("Ingester".to_string(), "whizard-minio-auto-1".to_string())));
    // A Whizard emptying time of "" (it writes that when un-deleting) is "not deleting".
    let mut inputs = base(&["a"]);
    let mut reused = go_ingester("whizard-minio-auto-0", &["a"], false);
    reused.metadata.annotations = Some(BTreeMap::from([
        (L::INGESTER_STATE.to_string(), "running".to_string()),
        (L::INGESTER_DELETING_TIME.to_string(), String::new()),
    ]));
    inputs.ingesters = vec![reused];
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(layout_i(&plan), l(&[("whizard-minio-auto-0", &["a"])]));
    assert!(plan.ingesters[0]
        .annotations()
        .get(L::INGESTER_DELETING_TIME)
        .is_none());
}

#[test]
fn empty_unmarked_ingesters_and_compactors_are_users_not_whizards() {
    let mut inputs = base(&["a"]);
    inputs.ingesters = vec![go_ingester("mine", &[], false)];
    inputs.compactors = vec![go_compactor("mine", &[])];
    let plan = planner::plan(&inputs).unwrap();
    assert!(plan.adoption.adopted.is_empty());
    let mine = plan
        .ingesters
        .iter()
        .find(|i| i.name_any() == "mine")
        .unwrap();
    assert!(!naming::is_managed(&mine.metadata));
    assert!(!adopt::is_go_ingester(&inputs.ingesters[0], KEY));
    assert!(!adopt::is_go_compactor(&inputs.compactors[0], KEY));
    // Whizard's own mark makes an empty one Whizard's.
    inputs.ingesters[0].metadata.annotations = Some(BTreeMap::from([(
        L::INGESTER_STATE.to_string(),
        "deleting".to_string(),
    )]));
    assert!(adopt::is_go_ingester(&inputs.ingesters[0], KEY));
    // Another Service's: never.
    assert!(!adopt::is_go_ingester(&inputs.ingesters[0], "x.y"));
}

#[test]
fn soft_tenant_ingesters_stay_as_declared() {
    let mut inputs = base(&["a"]);
    let mut soft = go_ingester("soft", &[], false);
    soft.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(L::SOFT_TENANT.into(), "true".into());
    inputs.ingesters = vec![soft];
    let plan = planner::plan(&inputs).unwrap();
    assert!(plan.adoption.adopted.is_empty());
    let soft = plan
        .ingesters
        .iter()
        .find(|i| i.name_any() == "soft")
        .unwrap();
    assert!(!naming::is_managed(&soft.metadata));
}

#[test]
fn exclusive_tenant_stays_on_the_ingester_and_compactor_named_after_its_cr() {
    let mut inputs = base(&["a"]);
    inputs.tenants.push(tenant("big-cr", "big", true));
    inputs.ingesters = vec![
        go_ingester("whizard-minio-auto-0", &["a"], false),
        go_ingester("big-cr", &["big"], true),
    ];
    let mut c = go_compactor("big-cr", &["big"]);
    c.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(L::EXCLUSIVE.into(), "true".into());
    inputs.compactors = vec![go_compactor("whizard-minio-x7k2p", &["a"]), c];
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(
        layout_i(&plan),
        l(&[("big-cr", &["big"]), ("whizard-minio-auto-0", &["a"])])
    );
    assert_eq!(
        layout_c(&plan),
        l(&[("big-cr", &["big"]), ("whizard-minio-x7k2p", &["a"])])
    );
    assert_eq!(
        plan.tenant_status["big-cr"].ingester.as_ref().unwrap().name,
        "big-cr"
    );
    let again = planner::plan(&applied(inputs, &plan)).unwrap();
    assert_eq!(layout_i(&again), layout_i(&plan));
    assert_eq!(layout_c(&again), layout_c(&plan));
}

#[test]
fn go_compactor_tenant_cr_names_are_read_as_ids_and_strangers_dropped() {
    // Whizard appends the Tenant CR name when it fills a compactor: "cr-b" means tenant "b".
    let mut inputs = base(&["a"]);
    inputs.tenants.push(tenant("cr-b", "b", false));
    inputs.compactors = vec![go_compactor("whizard-minio-7xk2p", &["a", "cr-b", "ghost"])];
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(layout_c(&plan), l(&[("whizard-minio-7xk2p", &["a", "b"])]));
    // "ghost" has no Tenant: dropped with a warning, and no deletion of its blocks is planned.
    assert!(plan.deletions.is_empty());
    assert!(plan
        .adoption
        .warnings
        .iter()
        .any(|w| w.contains("[ghost] name no tenant of the Service")));
}

#[test]
fn a_tenant_listed_twice_stays_where_its_status_says() {
    let mut inputs = base(&["a", "b"]);
    // The state the issue describes: our earlier version placed "a" anew beside Whizard's.
    let mut ours = go_ingester("whizard-minio-auto-9", &["a"], false);
    ours.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(L::MANAGED_BY.into(), L::MANAGED_BY_VALUE.into());
    inputs.ingesters = vec![
        go_ingester("whizard-minio-auto-0", &["a", "b"], false),
        ours,
    ];
    // No status: Whizard's object wins.
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(
        layout_i(&plan),
        l(&[
            ("whizard-minio-auto-0", &["a", "b"]),
            ("whizard-minio-auto-9", &[])
        ])
    );
    // The Tenant's status names auto-9: it stays there.
    inputs.tenants[0].status = Some(TenantStatus {
        ingester: Some(ObjectReference {
            namespace: NS.into(),
            name: "whizard-minio-auto-9".into(),
        }),
        ..Default::default()
    });
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(
        layout_i(&plan),
        l(&[
            ("whizard-minio-auto-0", &["b"]),
            ("whizard-minio-auto-9", &["a"])
        ])
    );
    // Same for compactors; one compactor set results, each tenant once.
    let mut ours_c = go_compactor("whizard-minio-0", &["a", "b"]);
    ours_c
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(L::MANAGED_BY.into(), L::MANAGED_BY_VALUE.into());
    inputs.compactors = vec![go_compactor("whizard-minio-7xk2p", &["a", "b"]), ours_c];
    inputs.tenants[0].status = None;
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(layout_c(&plan), l(&[("whizard-minio-7xk2p", &["a", "b"])]));
}

#[test]
fn go_store_keeps_its_name_unless_ours_or_the_users_exists() {
    let store = |name: &str, managed: bool| {
        let mut labels = vec![(L::SERVICE, KEY), (L::STORAGE, STORAGE)];
        if managed {
            labels.push((L::MANAGED_BY, L::MANAGED_BY_VALUE));
        }
        Store {
            metadata: meta(name, &labels),
            spec: Default::default(),
        }
    };
    let mut inputs = base(&["a"]);
    inputs.stores = vec![store("whizard-minio-qz8vd", false)];
    let plan = planner::plan(&inputs).unwrap();
    let names: Vec<String> = plan.stores.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, vec!["whizard-minio-qz8vd"]);
    let again = planner::plan(&applied(inputs.clone(), &plan)).unwrap();
    assert_eq!(again.stores[0].name_any(), "whizard-minio-qz8vd");
    // With our (or a user's) whizard-minio beside it, that one is the Store and Whizard's is
    // adopted only to be deleted.
    inputs.stores.push(store("whizard-minio", false));
    let plan = planner::plan(&inputs).unwrap();
    let names: Vec<String> = plan.stores.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, vec!["whizard-minio"]);
    assert_eq!(
        plan.adoption.adopted,
        vec![("Store".to_string(), "whizard-minio-qz8vd".to_string())]
    );
}

#[test]
fn go_finalizers_are_listed_for_removal() {
    let mut inputs = base(&["a"]);
    let mut c = go_compactor("whizard-minio-7xk2p", &["a"]);
    c.metadata.finalizers = Some(vec!["finalizers.monitoring.whizard.io/deletePVC".into()]);
    c.metadata.resource_version = Some("7".into());
    let mut stuck = go_compactor("whizard-minio-old", &[]);
    stuck.metadata.finalizers = Some(vec!["finalizers.monitoring.whizard.io/deletePVC".into()]);
    stuck.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2024-01-01T00:00:00Z".parse().unwrap(),
    ));
    inputs.compactors = vec![c, stuck];
    let a = adopt::adopt(&inputs).adoption;
    let strip =
        |kind: &str, ns: Option<&str>, name: &str, rv: Option<&str>| adopt::FinalizerStrip {
            kind: kind.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
            resource_version: rv.map(str::to_string),
            keep: vec![],
        };
    assert_eq!(
        a.finalizers,
        vec![
            strip("Tenant", None, "a", None),
            strip("Compactor", Some(NS), "whizard-minio-old", None),
            strip("Compactor", Some(NS), "whizard-minio-7xk2p", Some("7")),
        ]
    );
    // Being deleted: not adopted.
    assert_eq!(
        a.adopted,
        vec![("Compactor".to_string(), "whizard-minio-7xk2p".to_string())]
    );
}

#[test]
fn adopted_compactor_retention_does_not_move_its_tenants() {
    let mut inputs = base(&["a", "b"]);
    let mut c = go_compactor("whizard-minio-7xk2p", &["a", "b"]);
    c.spec.retention = Some(Retention {
        retention_raw: "365d".into(),
        ..Default::default()
    });
    inputs.compactors = vec![c];
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(layout_c(&plan), l(&[("whizard-minio-7xk2p", &["a", "b"])]));
    assert_eq!(plan.compactors[0].spec.retention, None);
    assert!(plan.adoption.warnings.iter().any(|w| w.starts_with(
        "Compactor kubesphere-monitoring-system/whizard-minio-7xk2p: its spec.retention (raw \"365d\""
    )));
}

#[test]
fn adopted_cr_spec_fields_are_warned_not_kept() {
    let mut inputs = base(&["a"]);
    let mut i = go_ingester("whizard-minio-auto-0", &["a"], false);
    i.spec.common.replicas = Some(5);
    inputs.ingesters = vec![i];
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(plan.ingesters[0].spec.common.replicas, None);
    assert!(plan.adoption.warnings.iter().any(|w| w
        == "Ingester kubesphere-monitoring-system/whizard-minio-auto-0: spec.{replicas} of Whizard's \
            Ingester is not kept (the reconciler plans its Ingesters); set it in \
            spec.ingesterTemplateSpec"));
}

// ---------------------------------------------------------------------------------------------
// Whizard's fields: accepted, honoured or warned

/// Every field of Whizard's types in its shapes (Go's JSON: nanosecond durations, `containers`
/// as a list, the S3 fields, the ruler sidecars): read without unknown-field problems, planned
/// without error, and exactly the unused ones warned.
#[test]
fn whizard_shaped_crs_are_accepted_and_unused_fields_warned() {
    let (_, inputs, problems) = render::read_dir_checked(&fixture()).unwrap();
    assert_eq!(problems, Vec::<String>::new());
    let mut inputs = inputs;
    inputs.service = render::read_dir(&fixture()).unwrap().0[0].clone();
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(plan.problems, vec![]);
    let svc = "Service kubesphere-monitoring-system/whizard";
    let unused: Vec<&String> = plan
        .adoption
        .warnings
        .iter()
        .filter(|w| w.contains("is accepted but not used"))
        .collect();
    let want = [
        format!("{svc}: spec.gatewayTemplateSpec.debug"),
        format!("{svc}: spec.queryTemplateSpec.envoy"),
        format!("{svc}: spec.rulerTemplateSpec.rulerQueryProxy"),
        format!("{svc}: spec.rulerTemplateSpec.rulerWriteProxy"),
        format!("{svc}: spec.rulerTemplateSpec.prometheusConfigReloader"),
        format!("{svc}: spec.remoteQuery.bearerToken"),
        format!("{svc}: spec.rulerTemplateSpec.disableAlertingRulesAutoSelection: false"),
        "Storage kubesphere-monitoring-system/minio: spec.blockManager".to_string(),
        "Storage kubesphere-monitoring-system/minio: spec.S3.httpConfig.tlsConfig.ca".to_string(),
    ];
    assert_eq!(unused.len(), want.len(), "{unused:#?}");
    for (got, want) in unused.iter().zip(&want) {
        assert!(
            got.starts_with(&format!("{want} is accepted but not used: ")),
            "{got}"
        );
    }
}

/// What `kubectl get -o yaml` prints for Whizard's objects: `List` documents, server fields
/// and the empty structs Go serializes (`resources: {}`, `envoy: {resources: {}}`,
/// `basicAuth: {username: {key: ""}}`): read as objects, no unknown field, no warning.
#[test]
fn kubectl_lists_of_go_objects_are_read_without_false_warnings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crs.yaml"),
        r#"
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
  - apiVersion: monitoring.whizard.io/v1alpha1
    kind: Service
    metadata:
      name: whizard
      namespace: kubesphere-monitoring-system
      uid: 6f1c
      resourceVersion: "123"
      generation: 1
      creationTimestamp: "2024-05-01T00:00:00Z"
      managedFields:
        - {manager: kubectl, operation: Update, apiVersion: monitoring.whizard.io/v1alpha1}
    spec:
      remoteQuery:
        url: http://x
        basicAuth: {username: {key: ""}, password: {key: ""}}
      gatewayTemplateSpec: {resources: {}}
      queryTemplateSpec: {resources: {}, envoy: {resources: {}}}
      queryFrontendTemplateSpec: {resources: {}}
      routerTemplateSpec: {resources: {}}
      ingesterTemplateSpec: {resources: {}, ingesterTsdbCleanup: {resources: {}}}
      storeTemplateSpec: {resources: {}}
      compactorTemplateSpec: {resources: {}}
      rulerTemplateSpec:
        resources: {}
        rulerQueryProxy: {resources: {}}
        rulerWriteProxy: {resources: {}}
        prometheusConfigReloader: {resources: {}}
    status: {}
  - apiVersion: monitoring.whizard.io/v1alpha1
    kind: Query
    metadata:
      name: whizard
      namespace: kubesphere-monitoring-system
      labels: {monitoring.whizard.io/service: kubesphere-monitoring-system.whizard}
    spec: {resources: {}, envoy: {resources: {}}, webConfig: {httpServerConfig: {}}}
    status: {}
  - apiVersion: monitoring.whizard.io/v1alpha1
    kind: Ingester
    metadata:
      name: whizard-local-auto-0
      namespace: kubesphere-monitoring-system
      labels:
        monitoring.whizard.io/service: kubesphere-monitoring-system.whizard
        monitoring.whizard.io/storage: local
    spec: {tenants: [a], resources: {}, ingesterTsdbCleanup: {resources: {}}}
    status:
      tenants: [{name: a, obsolete: false}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: monitoring.whizard.io/v1alpha1
    kind: Tenant
    metadata:
      name: a
      labels: {monitoring.whizard.io/service: kubesphere-monitoring-system.whizard, monitoring.whizard.io/storage: local}
    spec: {tenant: a}
"#,
    )
    .unwrap();
    let (services, mut inputs, problems) = render::read_dir_checked(dir.path()).unwrap();
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(services.len(), 1);
    assert_eq!(inputs.tenants.len(), 1);
    assert_eq!(inputs.queries.len(), 1);
    inputs.service = services[0].clone();
    let plan = planner::plan(&inputs).unwrap();
    assert_eq!(
        plan.adoption.warnings,
        vec![
            "adopting Ingester kubesphere-monitoring-system/whizard-local-auto-0 from Whizard: \
              tenants [a] stay on it; its StatefulSet ingester-whizard-local-auto-0 is replaced"
                .to_string()
        ]
    );
    assert_eq!(layout_i(&plan), l(&[("whizard-local-auto-0", &["a"])]));
}

#[test]
fn component_cr_fields_are_warned_per_object() {
    let mut inputs = base(&["a"]);
    let q: Query = serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "Query",
        "metadata": {"name": "q", "namespace": NS, "labels": {L::SERVICE: KEY}},
        "spec": {"webConfig": {"httpServerConfig": {"http2": true}},
                 "stores": [{"addresses": ["dns+x:10901"]}, {"addresses": ["y"], "caSecret": {"name": "ca", "key": "ca.crt"}}]}
    }))
    .unwrap();
    let qf: QueryFrontend = serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "QueryFrontend",
        "metadata": {"name": "qf", "namespace": NS, "labels": {L::SERVICE: KEY}},
        "spec": {"cacheConfig": {"type": "REDIS"}, "containers": {"name": "not-a-list"}}
    }))
    .unwrap();
    let r: Ruler = serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "Ruler",
        "metadata": {"name": "r", "namespace": NS, "labels": {L::SERVICE: KEY}},
        "spec": {"tenant": "a", "queryConfig": {"name": "q", "key": "k"}, "remoteWriteConfig": {"name": "w", "key": "k"},
                 "alertmanagersConfig": {"name": "am", "key": "k"}}
    }))
    .unwrap();
    let rt: Router = serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "Router",
        "metadata": {"name": "rt", "namespace": NS, "labels": {L::SERVICE: KEY}},
        "spec": {"webConfig": {"httpServerTLSConfig": {"certSecret": {"name": "c", "key": "k"}}}}
    }))
    .unwrap();
    inputs.queries = vec![q];
    inputs.query_frontends = vec![qf];
    inputs.rulers = vec![r];
    inputs.routers = vec![rt];
    inputs.service.spec.remote_query = Some(RemoteQuerySpec {
        url: "http://x".into(),
        basic_auth: Some(BasicAuth::default()),
        ..Default::default()
    });
    let w = adopt::ignored_fields(&inputs, &tenants::tenants_of(&inputs));
    let heads: Vec<&str> = w
        .iter()
        .map(|w| w.split(" is accepted").next().unwrap())
        .collect();
    assert_eq!(
        heads,
        vec![
            // BasicAuth with nothing set is empty: not warned.
            "Router kubesphere-monitoring-system/rt: spec.webConfig",
            "Query kubesphere-monitoring-system/q: spec.webConfig",
            "Query kubesphere-monitoring-system/q: spec.stores[1].caSecret",
            "QueryFrontend kubesphere-monitoring-system/qf: spec.cacheConfig",
            "QueryFrontend kubesphere-monitoring-system/qf: spec.containers",
            "Ruler kubesphere-monitoring-system/r: spec.queryConfig",
            "Ruler kubesphere-monitoring-system/r: spec.remoteWriteConfig",
            "Ruler kubesphere-monitoring-system/r: spec.alertmanagersConfig",
        ]
    );
    // Objects of other Services are not looked at.
    for q in &mut inputs.queries {
        q.metadata.labels = Some(BTreeMap::from([(L::SERVICE.into(), "x.y".into())]));
    }
    let w = adopt::ignored_fields(&inputs, &tenants::tenants_of(&inputs));
    assert!(w.iter().all(|w| !w.starts_with("Query ")));
}

#[test]
fn crd_schemas_take_whizards_shapes() {
    let y = super::crds_yaml();
    let crds = docs(&y);
    let spec_of = |kind: &str| {
        crds.iter()
            .find(|c| c["spec"]["names"]["kind"] == kind)
            .unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            .clone()
    };
    // `containers`: any value (Whizard's RawExtension holds a list).
    let ing = spec_of("Ingester");
    let containers = &ing["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-preserve-unknown-fields"], true);
    assert!(
        containers.get("type").is_none(),
        "a list or an object: {containers}"
    );
    let svc = spec_of("Service");
    let rt = &svc["properties"]["rulerTemplateSpec"]["properties"];
    for f in [
        "rulerQueryProxy",
        "rulerWriteProxy",
        "prometheusConfigReloader",
        "containers",
    ] {
        assert!(rt.get(f).is_some(), "rulerTemplateSpec.{f}");
    }
    let qf = spec_of("QueryFrontend");
    let validity =
        &qf["properties"]["cacheConfig"]["properties"]["inMemory"]["properties"]["validity"];
    assert_eq!(validity["x-kubernetes-int-or-string"], true);
    assert!(validity.get("type").is_none(), "{validity}");
    let st = spec_of("Storage");
    let s3 = &st["properties"]["S3"]["properties"];
    for f in [
        "disableDualstack",
        "putUserMetadata",
        "trace",
        "listObjectsVersion",
        "sendContentMd5",
        "disableMultipart",
        "partSize",
        "sseConfig",
        "stsEndpoint",
        "httpConfig",
    ] {
        assert!(s3.get(f).is_some(), "S3.{f}");
    }
}

// ---------------------------------------------------------------------------------------------
// The golden render of a cluster Whizard left

fn rendered() -> (Plan, Vec<Value>) {
    let inputs = fixture_inputs();
    let plan = planner::plan(&inputs).unwrap();
    let objs = render::render_plan(&plan, &inputs.service);
    (plan, objs)
}

#[test]
fn golden_render_of_a_whizard_cluster() {
    let (out, warnings) = render::render_dir_warnings_at(&fixture(), 0).unwrap();
    let mut got = out;
    got.push_str("# warnings (stderr):\n");
    for w in &warnings {
        got.push_str(&format!("#   {w}\n"));
    }
    super::tests::assert_golden("migration.golden.yaml", &got);
}

#[test]
fn whizard_cluster_no_duplicates_no_tenant_moves() {
    let (plan, objs) = rendered();
    // No two objects of one kind share a name.
    let mut seen = BTreeSet::new();
    for o in &objs {
        let k = (
            o["kind"].as_str().unwrap().to_string(),
            o["metadata"]["name"].as_str().unwrap().to_string(),
        );
        assert!(seen.insert(k.clone()), "{k:?} rendered twice");
    }
    // Every tenant on exactly the ingester Whizard put it on, in Whizard's order.
    let ingesters: Vec<(String, Vec<String>)> = objs
        .iter()
        .filter(|o| o["kind"] == "Ingester")
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                serde_json::from_value(o["spec"]["tenants"].clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ingesters,
        l(&[
            ("whizard-minio-auto-0", &["member-2", "host", "member-1"]),
            ("whizard-minio-auto-1", &["member-3", "edge"]),
        ])
    );
    for (cr, st) in &plan.tenant_status {
        let t = fixture_inputs()
            .tenants
            .into_iter()
            .find(|t| &t.name_any() == cr)
            .unwrap();
        let before = t.status.unwrap();
        assert_eq!(st.ingester, before.ingester, "{cr}");
        assert_eq!(st.compactor, before.compactor, "{cr}");
        assert_eq!(st.ruler, before.ruler, "{cr}");
    }
    // Each tenant once in the hashrings.
    let cm = objs
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap" && o["metadata"]["name"] == "router-whizard-hashrings-config"
        })
        .unwrap();
    let rings: Value =
        serde_json::from_str(cm["data"]["hashrings.json"].as_str().unwrap()).unwrap();
    let mut all: Vec<&str> = rings
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["tenants"].as_array().into_iter().flatten())
        .map(|t| t.as_str().unwrap())
        .collect();
    all.sort();
    assert_eq!(
        all,
        vec!["edge", "host", "member-1", "member-2", "member-3"]
    );
    // Exactly one compactor set (Whizard's), covering the same tenants.
    let compactors: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Compactor").collect();
    assert_eq!(compactors.len(), 1);
    assert_eq!(compactors[0]["metadata"]["name"], "whizard-minio-7xk2p");
    assert_eq!(
        compactors[0]["spec"]["tenants"],
        json!(["host", "member-1", "member-2", "member-3", "edge"])
    );
    let compactor_sets: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "StatefulSet" && o["metadata"]["labels"][L::NAME] == "compactor")
        .collect();
    assert_eq!(compactor_sets.len(), 1);
    assert_eq!(
        compactor_sets[0]["metadata"]["name"],
        "compactor-whizard-minio-7xk2p"
    );
    // One store set, under Whizard's name.
    let stores: Vec<&str> = objs
        .iter()
        .filter(|o| o["kind"] == "StatefulSet" && o["metadata"]["labels"][L::NAME] == "store")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(stores, vec!["store-whizard-minio-qz8vd"]);
    // The ingesters keep Whizard's volume claims (tsdb-ingester-<name>-<i>).
    for n in [
        "ingester-whizard-minio-auto-0",
        "ingester-whizard-minio-auto-1",
    ] {
        let sts = objs
            .iter()
            .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == n)
            .unwrap();
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
            "tsdb"
        );
        let mounts = &sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        assert!(mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "tsdb"));
    }
}

/// The fields of Whizard's types the reconciler now honours, as the fixture sets them, in
/// the rendered objects: `containers` (merged into Whizard's `receive`), S3 objstore keys,
/// the store's index cache, the query frontend's nanosecond `validity`.
#[test]
fn whizard_fields_are_rendered() {
    let (_, objs) = rendered();
    let find = |kind: &str, name: &str| {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name}"))
    };
    let args = |o: &Value| -> Vec<String> {
        serde_json::from_value(o["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap()
    };
    let ing = find("StatefulSet", "ingester-whizard-minio-auto-0");
    let main = &ing["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(main["name"], "thanos");
    assert!(main["env"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "GOMEMLIMIT", "value": "3GiB"})));
    let store = find("StatefulSet", "store-whizard-minio-qz8vd");
    assert!(args(store).contains(
        &r#"--index-cache.config={"config":{"max_size":"2GB"},"type":"IN-MEMORY"}"#.to_string()
    ));
    let qf = find("Deployment", "query-frontend-whizard");
    assert!(args(qf)
        .iter()
        .any(|a| a.starts_with("--query-range.response-cache-config=")
            && a.contains(r#""validity":"6h""#)));
    let secret = find("Secret", "whizard-minio-objstore");
    let cfg: Value =
        serde_norway::from_str(secret["stringData"]["objstore.yaml"].as_str().unwrap()).unwrap();
    let c = &cfg["config"];
    assert_eq!(c["disable_dualstack"], true);
    assert_eq!(c["send_content_md5"], true);
    assert_eq!(c["list_objects_version"], "v2");
    assert_eq!(c["part_size"], 67108864);
    assert_eq!(c["sts_endpoint"], "https://sts.example");
    assert_eq!(c["trace"], json!({"enable": true}));
    assert_eq!(c["sse_config"], json!({"type": "SSE-S3"}));
    assert_eq!(c["put_user_metadata"], json!({"owner": "observability"}));
    assert_eq!(c["http_config"]["idle_conn_timeout"], "90s");
    assert_eq!(c["http_config"]["response_header_timeout"], "2m");
    assert_eq!(
        c["http_config"]["tls_config"],
        json!({"server_name": "minio.kubesphere-monitoring-system.svc"})
    );
}

/// Whizard's `minTime`/`maxTime` of a Store: honoured unless some layer sets `timeRanges`
/// (as in Whizard), not hidden by the code default's range.
#[test]
fn store_min_and_max_time_are_honoured() {
    let mut svc = ServiceSpec::default();
    svc.store_template_spec.min_time = "-30d".into();
    let eff = planner::effective::store(&svc, &StoreSpec::default());
    assert_eq!(
        render::store_partitions("s", &eff),
        vec![("store-s".to_string(), "-30d".to_string(), String::new())]
    );
    let cr = StoreSpec {
        max_time: "-2h".into(),
        ..Default::default()
    };
    let eff = planner::effective::store(&svc, &cr);
    assert_eq!(
        render::store_partitions("s", &eff),
        vec![("store-s".to_string(), "-30d".to_string(), "-2h".to_string())]
    );
    // timeRanges in a layer: they win, as in Whizard.
    svc.store_template_spec.time_ranges = vec![TimeRange {
        min_time: "-7d".into(),
        max_time: String::new(),
    }];
    let eff = planner::effective::store(&svc, &cr);
    assert_eq!(
        render::store_partitions("s", &eff),
        vec![("store-s".to_string(), "-7d".to_string(), String::new())]
    );
    // Nothing set: the code default (everything older than 36h).
    let eff = planner::effective::store(&ServiceSpec::default(), &StoreSpec::default());
    assert_eq!(
        render::store_partitions("s", &eff),
        vec![("store-s".to_string(), String::new(), "-36h".to_string())]
    );
}

/// Each of Whizard's workloads is replaced: deleted before the apply (its selector is
/// Whizard's), and recreated under the same name when the plan has one; another tool's
/// workload is never touched.
#[test]
fn whizard_workloads_are_replaced_not_kept_beside() {
    let (plan, objs) = rendered();
    let text = std::fs::read_to_string(fixture().join("04-whizard-workloads.yaml")).unwrap();
    let workloads = docs(&text);
    let mut replaced = Vec::new();
    for w in &workloads {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(w["metadata"]["labels"].clone()).unwrap();
        let name = w["metadata"]["name"].as_str().unwrap();
        if name == "grafana" {
            assert!(!adopt::is_legacy(&plan.adoption, &labels));
            continue;
        }
        assert!(adopt::is_legacy(&plan.adoption, &labels), "{name}");
        let ours = objs
            .iter()
            .find(|o| o["kind"] == w["kind"] && o["metadata"]["name"] == name);
        if let Some(o) = ours {
            // Ours under the same name: our selector, never Whizard's.
            let labels: BTreeMap<String, String> =
                serde_json::from_value(o["metadata"]["labels"].clone()).unwrap();
            assert!(!adopt::is_legacy(&plan.adoption, &labels));
            replaced.push(name);
        }
    }
    assert_eq!(
        replaced,
        vec![
            "ingester-whizard-minio-auto-0",
            "ingester-whizard-minio-auto-0-operated",
            "ingester-whizard-minio-auto-1",
            "compactor-whizard-minio-7xk2p",
            "store-whizard-minio-qz8vd",
            "ruler-host-0",
            "gateway-whizard",
            "router-whizard",
        ]
    );
    // Whizard's global ruler `whizard` is rendered as whizard-global: its ruler-whizard-0 is
    // only deleted (above: legacy, not in the render).
    assert!(!objs
        .iter()
        .any(|o| o["metadata"]["name"] == "ruler-whizard-0"));
    // Finalizers: the five Tenants and the Compactor lose Whizard's.
    let stripped: Vec<(&str, &str)> = plan
        .adoption
        .finalizers
        .iter()
        .map(|f| (f.kind.as_str(), f.name.as_str()))
        .collect();
    assert_eq!(
        stripped,
        vec![
            ("Tenant", "edge"),
            ("Tenant", "host"),
            ("Tenant", "member-1"),
            ("Tenant", "member-2"),
            ("Tenant", "member-3"),
            ("Compactor", "whizard-minio-7xk2p"),
        ]
    );
}

#[test]
fn whizard_cluster_second_reconcile_is_stable() {
    let inputs = fixture_inputs();
    let plan = planner::plan(&inputs).unwrap();
    let first = render::render_plan(&plan, &inputs.service);
    let next_inputs = applied(inputs.clone(), &plan);
    let next = planner::plan(&next_inputs).unwrap();
    assert!(next.adoption.adopted.is_empty());
    assert!(next.adoption.finalizers.is_empty());
    assert!(next
        .adoption
        .warnings
        .iter()
        .all(|w| w.contains("is accepted but not used")));
    let second = render::render_plan(&next, &inputs.service);
    assert_eq!(
        render::to_yaml_stream(&first),
        render::to_yaml_stream(&second)
    );
}

/// The rendered objects of the migration fixture are valid Kubernetes objects (the
/// `containers` patch, the claim renaming, the index cache flag), validated offline.
#[test]
fn whizard_cluster_render_passes_kubernetes_validate() {
    if !super::tests::kubernetes_validate_installed() {
        return;
    }
    let (_, objs) = rendered();
    let core: Vec<Value> = objs
        .into_iter()
        .filter(|o| o["apiVersion"] != API_VERSION)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("objects.yaml");
    std::fs::write(&f, render::to_yaml_stream(&core)).unwrap();
    super::tests::assert_kubernetes_valid(&f);
}

// ---------------------------------------------------------------------------------------------
// The controller's part, against a scripted API server

mod apply {
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use kube::Client;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    async fn serve(
        mut handle: Handle,
        lists: BTreeMap<&'static str, Vec<Value>>,
    ) -> Vec<(String, String, Value)> {
        let mut calls = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            calls.push((method.clone(), path.clone(), body.clone()));
            let plural = path.rsplit('/').next().unwrap();
            let resp = match method.as_str() {
                "GET" => super::super::controller_tests::respond(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": lists.get(plural).cloned().unwrap_or_default()}),
                ),
                "DELETE" => super::super::controller_tests::respond(
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                ),
                "PATCH" if path.ends_with("/tenants/gone") => {
                    super::super::controller_tests::respond(
                        StatusCode::NOT_FOUND,
                        super::super::controller_tests::status_error(404, "NotFound"),
                    )
                }
                "PATCH" => {
                    let segs: Vec<&str> = path.rsplit('/').collect();
                    let kind = match segs[1] {
                        "tenants" => "Tenant",
                        "ingesters" => "Ingester",
                        "compactors" => "Compactor",
                        _ => "Store",
                    };
                    let mut b = body.clone();
                    b["apiVersion"] = json!(API_VERSION);
                    b["kind"] = json!(kind);
                    b["metadata"]["name"] = json!(plural);
                    b["spec"] = json!({});
                    super::super::controller_tests::respond(StatusCode::OK, b)
                }
                _ => super::super::controller_tests::respond(
                    StatusCode::NOT_FOUND,
                    super::super::controller_tests::status_error(404, "NotFound"),
                ),
            };
            send.send_response(resp);
        }
        calls
    }

    #[tokio::test]
    async fn before_and_after_apply_replace_delete_and_strip() {
        let (plan, objs) = rendered();
        let text = std::fs::read_to_string(fixture().join("04-whizard-workloads.yaml")).unwrap();
        let mut lists: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        for w in docs(&text) {
            let plural = match w["kind"].as_str().unwrap() {
                "StatefulSet" => "statefulsets",
                "Deployment" => "deployments",
                _ => "services",
            };
            lists.entry(plural).or_default().push(w);
        }
        // One of ours, which the (ignored by the mock) selector would not list anyway.
        lists.entry("statefulsets").or_default().push(
            objs.iter()
                .find(|o| o["kind"] == "StatefulSet")
                .unwrap()
                .clone(),
        );
        let mut adoption = plan.adoption.clone();
        adoption.finalizers.push(adopt::FinalizerStrip {
            kind: "Tenant".into(),
            namespace: None,
            name: "gone".into(),
            resource_version: None,
            keep: vec![],
        });
        adoption
            .adopted
            .push(("Ingester".into(), "whizard-minio-auto-7".into()));
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(serve(handle, lists));
        let client = Client::new(mock, "default");
        let n = adopt::before_apply(&client, NS, &adoption).await.unwrap();
        let m = adopt::after_apply(&client, NS, &adoption, &objs)
            .await
            .unwrap();
        drop(client);
        let calls = server.await.unwrap();
        assert_eq!(n, 9);
        assert_eq!(m, 1);
        let lists: Vec<&str> = calls
            .iter()
            .filter(|c| c.0 == "GET")
            .map(|c| c.1.as_str())
            .collect();
        assert_eq!(
            lists,
            vec![
                "/apis/apps/v1/namespaces/kubesphere-monitoring-system/statefulsets",
                "/apis/apps/v1/namespaces/kubesphere-monitoring-system/deployments",
                "/api/v1/namespaces/kubesphere-monitoring-system/services",
            ]
        );
        let deleted: Vec<&str> = calls
            .iter()
            .filter(|c| c.0 == "DELETE")
            .map(|c| c.1.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            deleted,
            vec![
                "ingester-whizard-minio-auto-0",
                "ingester-whizard-minio-auto-1",
                "compactor-whizard-minio-7xk2p",
                "store-whizard-minio-qz8vd",
                "ruler-host-0",
                "ruler-whizard-0",
                "gateway-whizard",
                "router-whizard",
                "ingester-whizard-minio-auto-0-operated",
                // after_apply: the adopted Ingester that is not planned.
                "whizard-minio-auto-7",
            ]
        );
        let patches: Vec<(&str, &Value)> = calls
            .iter()
            .filter(|c| c.0 == "PATCH")
            .map(|c| (c.1.as_str(), &c.2))
            .collect();
        assert_eq!(patches.len(), 7);
        assert_eq!(
            patches[0].0,
            "/apis/monitoring.whizard.io/v1alpha1/tenants/edge"
        );
        assert_eq!(patches[0].1, &json!({"metadata": {"finalizers": []}}));
        assert_eq!(
            patches[5].0,
            "/apis/monitoring.whizard.io/v1alpha1/namespaces/kubesphere-monitoring-system/compactors/whizard-minio-7xk2p"
        );
    }
}
