//! The adapter against a scripted API server (tower-test mock): the exact conversation of a
//! reconcile (lists, server-side applies, a 409 conflict and its retry, pruning deletes,
//! Tenant status with a conflict and retry) and of a deletion (finalizer cleanup).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};

use super::controller::{self, Context};
use super::crd::{labels as L, *};
use super::metrics::Metrics;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

/// What the fake API server knows.
#[derive(Default)]
struct World {
    tenants: Vec<Value>,
    /// (kind plural path segment) → items returned by LISTs in the service namespace.
    lists: BTreeMap<String, Vec<Value>>,
    /// Path suffixes whose first server-side apply is answered 409.
    conflict_once: Vec<String>,
    /// Tenants whose first status patch is answered 409.
    status_conflict_once: Vec<String>,
    /// Single objects by path (a GET of an object not here is 404).
    objects: BTreeMap<String, Value>,
    /// Plurals whose LIST is 404 (CRD not installed).
    missing_lists: Vec<&'static str>,
}

/// A GET of one namespaced object (`.../namespaces/<ns>/<plural>/<name>`), not a list.
fn is_object_get(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    segs.iter()
        .position(|s| *s == "namespaces")
        .is_some_and(|i| segs.len() > i + 3)
}

pub(super) fn status_error(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

pub(super) fn respond(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// Paths of the DELETE calls, in order.
fn deleted_paths(calls: &[Call]) -> Vec<&str> {
    calls
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path.as_str())
        .collect()
}

/// Serves requests until the client side is dropped; returns every call seen.
async fn serve(mut handle: Handle, mut world: World) -> Vec<Call> {
    let mut calls = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        });
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let resp = match method.as_str() {
            "GET" if is_object_get(&path) => match world.objects.get(&path) {
                Some(o) => respond(StatusCode::OK, o.clone()),
                None => respond(StatusCode::NOT_FOUND, status_error(404, "NotFound")),
            },
            "GET" if world.missing_lists.contains(segs.last().unwrap()) => {
                respond(StatusCode::NOT_FOUND, status_error(404, "NotFound"))
            }
            "GET" => {
                let plural = *segs.last().unwrap();
                let items = if plural == "tenants" {
                    world.tenants.clone()
                } else {
                    world.lists.get(plural).cloned().unwrap_or_default()
                };
                respond(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            "PATCH" if segs.last() == Some(&"status") => {
                let name = segs[segs.len() - 2].to_string();
                if let Some(i) = world.status_conflict_once.iter().position(|n| *n == name) {
                    world.status_conflict_once.remove(i);
                    respond(StatusCode::CONFLICT, status_error(409, "Conflict"))
                } else {
                    let mut t = world
                        .tenants
                        .iter()
                        .find(|t| t["metadata"]["name"] == name.as_str())
                        .cloned()
                        .unwrap_or(json!({"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name}, "spec": {}}));
                    t["status"] = body["status"].clone();
                    respond(StatusCode::OK, t)
                }
            }
            "PATCH" => {
                let name = segs.last().unwrap().to_string();
                if let Some(i) = world
                    .conflict_once
                    .iter()
                    .position(|p| path.ends_with(p.as_str()))
                {
                    world.conflict_once.remove(i);
                    respond(StatusCode::CONFLICT, status_error(409, "Conflict"))
                } else if query.contains("fieldManager") && body.is_object() {
                    let mut b = body.clone();
                    b["metadata"]["resourceVersion"] = json!("2");
                    b["metadata"]["uid"] = json!(format!("uid-{name}"));
                    respond(StatusCode::OK, b)
                } else {
                    // JSON patch (finalizer add/remove): answer with a Service.
                    respond(
                        StatusCode::OK,
                        json!({"apiVersion": API_VERSION, "kind": "Service",
                               "metadata": {"name": name, "namespace": "whizard", "uid": "svc-uid"}, "spec": {}}),
                    )
                }
            }
            "DELETE" => respond(
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ),
            _ => respond(StatusCode::NOT_FOUND, status_error(404, "NotFound")),
        };
        send.send_response(resp);
    }
    calls
}

fn service(deleting: bool) -> Service {
    let mut v = json!({
        "apiVersion": API_VERSION, "kind": "Service",
        "metadata": {"name": "central", "namespace": "whizard", "uid": "svc-uid",
                     "finalizers": [controller::FINALIZER],
                     "annotations": {L::CREDENTIALS_SEED: "test-seed"}},
        "spec": {"tenantHeader": "THANOS-TENANT"}
    });
    if deleting {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    serde_json::from_value(v).unwrap()
}

fn tenant(name: &str) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "Tenant",
           "metadata": {"name": name, "labels": {L::SERVICE: "whizard.central", L::STORAGE: "local"}},
           "spec": {}})
}

fn stale_statefulset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "ingester-gone", "namespace": "whizard",
                        "labels": {L::MANAGED_BY: L::MANAGED_BY_VALUE, L::SERVICE: "whizard.central"}},
           "spec": {}})
}

fn context(client: Client) -> Arc<Context> {
    Arc::new(Context {
        client,
        recorder: None,
        metrics: Metrics::new(&prometheus::Registry::new()),
        failures: Mutex::new(BTreeMap::new()),
        now: || 1_000,
        watched: Default::default(),
    })
}

async fn run(world: World, svc: Service) -> (Result<Action, crate::Error>, Vec<Call>) {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, world));
    let client = Client::new(mock, "default");
    let ctx = context(client);
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        controller::reconcile(Arc::new(svc), ctx.clone()),
    )
    .await
    .expect("reconcile hung");
    drop(ctx);
    let calls = server.await.unwrap();
    (res, calls)
}

#[tokio::test]
async fn reconcile_conversation_with_conflicts_and_prune() {
    let mut lists = BTreeMap::new();
    lists.insert("statefulsets".to_string(), vec![stale_statefulset()]);
    let world = World {
        tenants: vec![tenant("team-a")],
        lists,
        conflict_once: vec!["/deployments/gateway-central".into()],
        status_conflict_once: vec!["team-a".into()],
        ..Default::default()
    };
    let (res, calls) = run(world, service(false)).await;
    let action = res.expect("reconcile ok");
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));

    // Server-side apply with our field manager, force, and an owner reference to the Service.
    let applies: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.query.contains("fieldManager=whizard-reconciler"))
        .collect();
    assert!(applies.iter().all(|c| c.query.contains("force=true")));
    for c in &applies {
        assert_eq!(
            c.body["metadata"]["ownerReferences"][0]["uid"], "svc-uid",
            "{}",
            c.path
        );
        assert_eq!(c.body["metadata"]["ownerReferences"][0]["controller"], true);
    }
    // The Ingester CR for team-a was created (applied) ...
    assert!(applies.iter().any(|c| c.path
        == "/apis/monitoring.whizard.io/v1alpha1/namespaces/whizard/ingesters/central-local-auto-0"
        && c.body["spec"]["tenants"] == json!(["team-a"])));
    // ... and the gateway Deployment was applied twice: a 409, then the retry.
    let gw: Vec<_> = applies
        .iter()
        .filter(|c| c.path == "/apis/apps/v1/namespaces/whizard/deployments/gateway-central")
        .collect();
    assert_eq!(gw.len(), 2);
    // Pruning deleted the stale StatefulSet and nothing else.
    assert_eq!(
        deleted_paths(&calls),
        vec!["/apis/apps/v1/namespaces/whizard/statefulsets/ingester-gone"]
    );
    // Pruning lists by the managed-by + service labels.
    assert!(calls.iter().any(|c| c.method == "GET"
        && c.path == "/apis/apps/v1/namespaces/whizard/statefulsets"
        && c.query
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dwhizard-reconciler")));
    // Tenant status: 409 then a successful retry carrying the ingester and ruler.
    let status: Vec<&Call> = calls
        .iter()
        .filter(|c| c.path == "/apis/monitoring.whizard.io/v1alpha1/tenants/team-a/status")
        .collect();
    assert_eq!(status.len(), 2);
    assert_eq!(
        status[1].body["status"]["ingester"],
        json!({"namespace": "whizard", "name": "central-local-auto-0"})
    );
    assert_eq!(status[1].body["status"]["ruler"]["name"], "team-a");
}

#[tokio::test]
async fn update_keeps_existing_placement() {
    // The cluster already holds team-a in auto-1 (e.g. after earlier churn): adding team-b must
    // not move team-a, and team-b fills the hole at auto-0.
    let mut lists = BTreeMap::new();
    lists.insert(
        "ingesters".to_string(),
        vec![json!({"apiVersion": API_VERSION, "kind": "Ingester",
            "metadata": {"name": "central-local-auto-1", "namespace": "whizard",
                "labels": {L::MANAGED_BY: L::MANAGED_BY_VALUE, L::SERVICE: "whizard.central", L::STORAGE: "local"}},
            "spec": {"tenants": ["team-a"]}})],
    );
    let world = World {
        tenants: vec![tenant("team-a"), tenant("team-b")],
        lists,
        ..Default::default()
    };
    let (res, calls) = run(world, service(false)).await;
    res.unwrap();
    let ing = |name: &str| {
        calls
            .iter()
            .find(|c| c.method == "PATCH" && c.path.ends_with(&format!("/ingesters/{name}")))
            .map(|c| c.body["spec"]["tenants"].clone())
    };
    assert_eq!(ing("central-local-auto-1"), Some(json!(["team-a"])));
    assert_eq!(ing("central-local-auto-0"), Some(json!(["team-b"])));
    // Nothing deleted: the listed Ingester is still desired.
    assert!(!calls.iter().any(|c| c.method == "DELETE"));
}

#[tokio::test]
async fn delete_runs_finalizer_cleanup() {
    let world = World {
        tenants: vec![tenant("team-a")],
        ..Default::default()
    };
    let (res, calls) = run(world, service(true)).await;
    assert_eq!(res.unwrap(), Action::await_change());
    // No applies while deleting; the tenant's status is cleared; the finalizer is removed.
    assert!(!calls
        .iter()
        .any(|c| c.method == "PATCH" && c.query.contains("fieldManager=whizard-reconciler")));
    let status = calls
        .iter()
        .find(|c| c.path == "/apis/monitoring.whizard.io/v1alpha1/tenants/team-a/status")
        .expect("status cleared");
    assert_eq!(status.body, json!({"status": null}));
    let last = calls.last().unwrap();
    assert_eq!(last.method, "PATCH");
    assert_eq!(
        last.path,
        "/apis/monitoring.whizard.io/v1alpha1/namespaces/whizard/services/central"
    );
    assert!(last.body.to_string().contains("remove"), "{}", last.body);
}

#[tokio::test]
async fn api_errors_surface_and_back_off() {
    // A 403 on apply fails the reconcile; the error policy backs off exponentially.
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            if req.method() == "GET" && is_object_get(req.uri().path()) {
                send.send_response(respond(
                    StatusCode::NOT_FOUND,
                    status_error(404, "NotFound"),
                ));
            } else if req.method() == "GET" {
                send.send_response(respond(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}),
                ));
            } else {
                send.send_response(respond(
                    StatusCode::FORBIDDEN,
                    status_error(403, "Forbidden"),
                ));
            }
        }
    });
    let ctx = context(Client::new(mock, "default"));
    let svc = Arc::new(service(false));
    let err = controller::reconcile(svc.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Forbidden"), "{err}");
    let a1 = controller::error_policy(svc.clone(), &err, ctx.clone());
    let a2 = controller::error_policy(svc.clone(), &err, ctx.clone());
    assert_eq!(a1, Action::requeue(std::time::Duration::from_secs(5)));
    assert_eq!(a2, Action::requeue(std::time::Duration::from_secs(10)));
    assert_eq!(controller::backoff(20), std::time::Duration::from_secs(300));
    drop(ctx);
    server.await.unwrap();
}

fn service_with_storage() -> Service {
    let mut svc = service(false);
    svc.spec.storage = Some(ObjectReference {
        namespace: "whizard".into(),
        name: "s3".into(),
    });
    svc.spec.compactor_template_spec.spec.retention = Some(Retention {
        retention_raw: "1d".into(),
        retention_5m: String::new(),
        retention_1h: String::new(),
    });
    svc
}

fn storage_world(compactor_tenants: &[&str]) -> World {
    let mut lists = BTreeMap::new();
    lists.insert(
        "storages".to_string(),
        vec![json!({"apiVersion": API_VERSION, "kind": "Storage",
            "metadata": {"name": "s3", "namespace": "whizard"},
            "spec": {"S3": {"bucket": "b", "endpoint": "minio:9000"}}})],
    );
    lists.insert(
        "compactors".to_string(),
        vec![json!({"apiVersion": API_VERSION, "kind": "Compactor",
            "metadata": {"name": "central-s3-0", "namespace": "whizard",
                "labels": {L::MANAGED_BY: L::MANAGED_BY_VALUE, L::SERVICE: "whizard.central",
                           L::STORAGE: "whizard.s3"}},
            "spec": {"tenants": compactor_tenants}})],
    );
    let tenant = json!({"apiVersion": API_VERSION, "kind": "Tenant",
        "metadata": {"name": "team-a", "labels": {L::SERVICE: "whizard.central"}}, "spec": {}});
    World {
        tenants: vec![tenant],
        lists,
        ..Default::default()
    }
}

const DELETIONS_CM: &str = "/api/v1/namespaces/whizard/configmaps/central-tenant-deletions";

#[tokio::test]
async fn removed_tenant_is_recorded_before_the_compactor_forgets_it() {
    let world = storage_world(&["team-a", "team-gone"]);
    let (res, calls) = run(world, service_with_storage()).await;
    res.unwrap();
    // The state ConfigMap was read (404: none yet) ...
    assert!(calls
        .iter()
        .any(|c| c.method == "GET" && c.path == DELETIONS_CM));
    let applies: Vec<&Call> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.query.contains("fieldManager"))
        .collect();
    let cm = applies
        .iter()
        .position(|c| c.path == DELETIONS_CM)
        .expect("state ConfigMap applied");
    let compactor = applies
        .iter()
        .position(|c| c.path.ends_with("/compactors/central-s3-0"))
        .expect("compactor applied");
    // ... and applied first, before the Compactor drops team-gone.
    assert_eq!(cm, 0);
    assert!(cm < compactor);
    assert_eq!(
        applies[compactor].body["spec"]["tenants"],
        json!(["team-a"])
    );
    let recs: Value =
        serde_json::from_str(applies[cm].body["data"]["deletions.json"].as_str().unwrap()).unwrap();
    // Removed at 1000 (the test clock); 1d compactor retention beats the 3h ingester one.
    assert_eq!(
        recs,
        json!([{"tenant": "team-gone", "storage": "whizard.s3", "removedAt": 1000,
                "deleteAt": 1000 + 86_400}])
    );
    // No Job yet; the Job list was read with the managed selector.
    assert!(!applies.iter().any(|c| c.path.contains("/jobs/")));
    assert!(calls.iter().any(|c| c.method == "GET"
        && c.path == "/apis/batch/v1/namespaces/whizard/jobs"
        && c.query.contains("labelSelector")));
}

/// A storage world holding the deletion records `recs` and one deletion Job `job` (name,
/// tenant, status).
fn deletion_world(recs: Value, job: (&str, &str, Value)) -> World {
    let mut world = storage_world(&["team-a"]);
    world.objects.insert(
        DELETIONS_CM.to_string(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "central-tenant-deletions", "namespace": "whizard"},
               "data": {"deletions.json": recs.to_string()}}),
    );
    let (name, tenant, status) = job;
    world.lists.insert(
        "jobs".to_string(),
        vec![json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "whizard",
                "labels": {L::MANAGED_BY: L::MANAGED_BY_VALUE, L::SERVICE: "whizard.central"},
                "annotations": {L::DELETION_TENANT: tenant, L::DELETION_STORAGE: "whizard.s3"}},
            "spec": {"template": {"spec": {"containers": []}}},
            "status": status})],
    );
    world
}

#[tokio::test]
async fn due_deletion_runs_a_job_and_a_finished_one_is_pruned() {
    let world = deletion_world(
        json!([
            {"tenant": "due", "storage": "whizard.s3", "removedAt": 0, "deleteAt": 1000},
            {"tenant": "done", "storage": "whizard.s3", "removedAt": 0, "deleteAt": 500},
        ]),
        (
            "central-delete-done-1234",
            "done",
            json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
        ),
    );
    let (res, calls) = run(world, service_with_storage()).await;
    res.unwrap();
    let job = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.contains("/apis/batch/v1/namespaces/whizard/jobs/"))
        .expect("deletion Job applied");
    assert!(
        job.path.contains("/jobs/central-delete-due-"),
        "{}",
        job.path
    );
    assert_eq!(
        job.body["metadata"]["annotations"][L::DELETION_TENANT],
        "due"
    );
    // The state now holds only "due"; the finished Job is pruned.
    let cm = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path == DELETIONS_CM)
        .unwrap();
    let recs: Value =
        serde_json::from_str(cm.body["data"]["deletions.json"].as_str().unwrap()).unwrap();
    assert_eq!(recs.as_array().unwrap().len(), 1);
    assert_eq!(recs[0]["tenant"], "due");
    assert_eq!(
        deleted_paths(&calls),
        vec!["/apis/batch/v1/namespaces/whizard/jobs/central-delete-done-1234"]
    );
}

#[tokio::test]
async fn tenant_deletion_states_are_exported() {
    let world = deletion_world(
        json!([
            {"tenant": "later", "storage": "whizard.s3", "removedAt": 0, "deleteAt": 99_999},
            {"tenant": "broken", "storage": "whizard.s3", "removedAt": 0, "deleteAt": 10},
        ]),
        (
            "central-delete-broken-1",
            "broken",
            json!({"failed": 4, "conditions": [{"type": "Failed", "status": "True"}]}),
        ),
    );
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, world));
    let ctx = context(Client::new(mock, "default"));
    controller::reconcile(Arc::new(service_with_storage()), ctx.clone())
        .await
        .unwrap();
    let g = |state: &str| {
        ctx.metrics
            .tenant_deletions
            .with_label_values(&["whizard.central", state])
            .get()
    };
    assert_eq!((g("waiting"), g("running"), g("failed")), (1, 0, 1));
    let ok = ctx
        .metrics
        .reconciles
        .with_label_values(&["Service", "success"])
        .get();
    assert_eq!(ok, 1);
    drop(ctx);
    server.await.unwrap();
}

#[tokio::test]
async fn prometheus_rules_are_read_and_a_missing_crd_is_skipped() {
    let rule = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "slo", "namespace": "apps", "labels": {L::TENANT: "team-a"}},
        "spec": {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "up"}]}]}});
    let mut lists = BTreeMap::new();
    lists.insert("prometheusrules".to_string(), vec![rule]);
    let world = World {
        tenants: vec![tenant("team-a")],
        lists,
        ..Default::default()
    };
    let (res, calls) = run(world, service(false)).await;
    res.unwrap();
    assert!(calls
        .iter()
        .any(|c| c.method == "GET" && c.path == "/apis/monitoring.coreos.com/v1/prometheusrules"));
    let cm = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/configmaps/ruler-team-a-rulefiles-0-0"))
        .expect("rule files applied");
    assert!(cm.body["data"]["apps-slo.yaml"]
        .as_str()
        .unwrap()
        .contains("record: r"));

    // Without prometheus-operator's CRD (404 on the list) the reconcile still succeeds.
    let world = World {
        tenants: vec![tenant("team-a")],
        missing_lists: vec!["prometheusrules"],
        ..Default::default()
    };
    let (res, _) = run(world, service(false)).await;
    res.unwrap();
}

#[tokio::test]
async fn remote_write_basic_auth_is_read_from_its_secret() {
    let mut svc = service(false);
    svc.spec.remote_writes = vec![RemoteWriteSpec {
        name: "copy".into(),
        url: "https://copy.example/api/v1/write".into(),
        basic_auth: Some(BasicAuth {
            username: Some(SecretKeySelector {
                name: "rw".into(),
                key: "u".into(),
                optional: None,
            }),
            password: Some(SecretKeySelector {
                name: "rw".into(),
                key: "p".into(),
                optional: None,
            }),
        }),
        ..Default::default()
    }];
    let mut objects = BTreeMap::new();
    // data: u=bob, p=pw
    objects.insert(
        "/api/v1/namespaces/whizard/secrets/rw".to_string(),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "rw", "namespace": "whizard"},
               "data": {"u": "Ym9i", "p": "cHc="}}),
    );
    let world = World {
        tenants: vec![tenant("team-a")],
        lists: BTreeMap::new(),
        objects,
        ..Default::default()
    };
    let (res, calls) = run(world, svc).await;
    res.unwrap();
    let sec = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/secrets/gateway-central-config"))
        .expect("gateway config applied");
    let text = sec.body["stringData"]["gateway.yaml"].as_str().unwrap();
    // base64("bob:pw")
    assert!(text.contains("Authorization: Basic Ym9iOnB3"), "{text}");
}

/// The gateway config Secret keeps the ruler users' password hashes; the next reconcile reads
/// them back (a LIST of the Service's gateway Secrets) and computes none.
#[tokio::test]
async fn kept_password_hashes_are_reused() {
    use base64::Engine;
    let world = || World {
        tenants: vec![tenant("team-a"), tenant("team-b")],
        ..Default::default()
    };
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, world()));
    let ctx = context(Client::new(mock, "default"));
    controller::reconcile(Arc::new(service(false)), ctx.clone())
        .await
        .unwrap();
    assert_eq!(ctx.metrics.password_hashes.get(), 2);
    // The reconcile recorded its tenants for the rule group watches.
    assert_eq!(
        ctx.watched.tenant_services("team-b"),
        vec![kube::runtime::reflector::ObjectRef::<Service>::new("central").within("whizard")]
    );
    drop(ctx);
    let calls = server.await.unwrap();
    let list = calls
        .iter()
        .find(|c| c.method == "GET" && c.path == "/api/v1/namespaces/whizard/secrets")
        .expect("gateway Secrets listed");
    assert!(
        list.query
            .contains("app.kubernetes.io%2Fcomponent%3Dgateway"),
        "{}",
        list.query
    );
    let mut sec = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/secrets/gateway-central-config"))
        .expect("gateway config applied")
        .body
        .clone();
    let kept = sec["stringData"][super::credentials::HASHES_KEY]
        .as_str()
        .unwrap()
        .to_string();
    assert!(kept.contains("whizard-ruler-team-a"), "{kept}");

    // As the API server returns it: `data`, base64.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    sec["data"] = json!({super::credentials::HASHES_KEY: b64(&kept)});
    sec["stringData"] = Value::Null;
    let mut w = world();
    w.lists.insert("secrets".into(), vec![sec]);
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, w));
    let ctx = context(Client::new(mock, "default"));
    controller::reconcile(Arc::new(service(false)), ctx.clone())
        .await
        .unwrap();
    assert_eq!(ctx.metrics.password_hashes.get(), 0);
    drop(ctx);
    let calls = server.await.unwrap();
    let again = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/secrets/gateway-central-config"))
        .unwrap();
    assert_eq!(
        again.body["stringData"][super::credentials::HASHES_KEY],
        kept
    );
}
