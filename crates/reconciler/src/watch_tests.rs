//! Issue #30, "watches on every kind and Secret that changes the plan": the controller built
//! by [`controller::controller`] against a scripted API server that answers LISTs and holds
//! WATCHes open until the test sends an event. Each event must reconcile the Service at once
//! (not at the 5-minute resync); unrelated events must not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::controller::{self, Context};
use super::controller_tests::{respond, status_error};
use super::crd::{labels as L, *};
use super::metrics::Metrics;
use super::model::Inputs;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Pending = tower_test::mock::SendResponse<Response<Body>>;

const MW: &str = "/apis/monitoring.whizard.io/v1alpha1";

/// Answers LISTs from `lists` (by path) and keeps WATCHes pending; an event sent on `events`
/// (path, watch event) answers a pending WATCH of that path (or waits for the next one).
/// Records `METHOD path?query` of every request.
async fn serve(
    mut handle: Handle,
    lists: BTreeMap<String, Vec<Value>>,
    mut events: mpsc::UnboundedReceiver<(String, Value)>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut pending: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    let mut queued: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let answer = |send: Pending, evs: Vec<Value>| {
        let mut body = Vec::new();
        for e in evs {
            body.extend(serde_json::to_vec(&e).unwrap());
            body.push(b'\n');
        }
        send.send_response(
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        );
    };
    loop {
        tokio::select! {
            req = handle.next_request() => {
                let Some((req, send)) = req else { break };
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                log.lock().unwrap().push(format!("{} {path}?{query}", req.method()));
                if query.contains("watch=true") {
                    match queued.remove(&path) {
                        Some(evs) => answer(send, evs),
                        None => pending.entry(path).or_default().push(send),
                    }
                } else if req.method() == "GET" {
                    let items = lists.get(&path).cloned().unwrap_or_default();
                    send.send_response(respond(
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "List",
                               "metadata": {"resourceVersion": "1"}, "items": items}),
                    ));
                } else {
                    send.send_response(respond(StatusCode::NOT_FOUND, status_error(404, "NotFound")));
                }
            }
            ev = events.recv() => {
                let Some((path, ev)) = ev else { break };
                match pending.get_mut(&path).and_then(|v| v.pop()) {
                    Some(send) => answer(send, vec![ev]),
                    None => queued.entry(path).or_default().push(ev),
                }
            }
        }
    }
}

fn service() -> Value {
    json!({"apiVersion": API_VERSION, "kind": "Service",
           "metadata": {"name": "central", "namespace": "whizard", "uid": "svc-uid",
                        "resourceVersion": "1"},
           "spec": {"remoteWrites": [{"name": "copy", "url": "https://copy.example/api/v1/write",
                     "basicAuth": {"username": {"name": "rw", "key": "u"},
                                   "password": {"name": "rw", "key": "p"}}}]}})
}

fn modified(api_version: &str, kind: &str, ns: Option<&str>, name: &str, labels: Value) -> Value {
    let mut meta = json!({"name": name, "resourceVersion": "2", "labels": labels});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    // Rule groups require `rules`.
    let spec = if kind.ends_with("RuleGroup") {
        json!({"rules": []})
    } else {
        json!({})
    };
    json!({"type": "MODIFIED", "object": {"apiVersion": api_version, "kind": kind,
                                          "metadata": meta, "spec": spec}})
}

struct Harness {
    events: mpsc::UnboundedSender<(String, Value)>,
    reconciled: mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn start() -> Harness {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (events, ev_rx) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lists = BTreeMap::new();
        lists.insert(format!("{MW}/services"), vec![service()]);
        let server = tokio::spawn(serve(handle, lists, ev_rx, log.clone()));
        let client = Client::new(mock, "default");
        let ctx = Arc::new(Context {
            client: client.clone(),
            recorder: None,
            metrics: Metrics::new(&prometheus::Registry::new()),
            failures: Mutex::new(BTreeMap::new()),
            now: || 1_000,
            watched: Default::default(),
        });
        // What a real reconcile of the Service records: its Secret `rw` and tenant `team-a`.
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "Tenant",
            "metadata": {"name": "team-a", "labels": {L::SERVICE: "whizard.central"}},
            "spec": {}}))
        .unwrap();
        ctx.watched.record(&Inputs {
            service: serde_json::from_value(service()).unwrap(),
            tenants: vec![tenant],
            ..Default::default()
        });
        let (tx, reconciled) = mpsc::unbounded_channel::<String>();
        let run = tokio::spawn(
            controller::controller(client, ctx)
                .run(
                    |svc: Arc<Service>, tx: Arc<mpsc::UnboundedSender<String>>| async move {
                        let _ = tx.send(format!(
                            "{}/{}",
                            svc.metadata.namespace.clone().unwrap_or_default(),
                            svc.metadata.name.clone().unwrap_or_default()
                        ));
                        Ok::<_, crate::Error>(Action::await_change())
                    },
                    |_, _, _| Action::await_change(),
                    Arc::new(tx),
                )
                .for_each(|_| async {}),
        );
        let mut h = Harness {
            events,
            reconciled,
            log,
            tasks: vec![server, run],
        };
        // The initial LIST of Services reconciles the Service once.
        assert_eq!(h.next().await.as_deref(), Some("whizard/central"));
        h
    }

    async fn next(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(10), self.reconciled.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits until the watcher of `path` has a WATCH open, then sends `event` on it.
    async fn send(&mut self, path: &str, event: Value) {
        let want = format!("GET {path}?");
        for _ in 0..500 {
            let open = self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with(&want) && l.contains("watch=true"));
            if open {
                self.events.send((path.to_string(), event)).unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no WATCH of {path}: {:#?}", self.log.lock().unwrap());
    }

    /// No reconcile within a moment.
    async fn quiet(&mut self) {
        let r = tokio::time::timeout(Duration::from_millis(500), self.reconciled.recv()).await;
        assert!(r.is_err(), "unexpected reconcile: {r:?}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[tokio::test]
async fn storage_and_referenced_secret_changes_reconcile_at_once() {
    let mut h = Harness::start().await;
    let ns = Some("whizard");

    // A Storage of the Service's namespace (Storages carry no Service label).
    h.send(
        &format!("{MW}/storages"),
        modified(API_VERSION, "Storage", ns, "s3", json!({})),
    )
    .await;
    assert_eq!(h.next().await.as_deref(), Some("whizard/central"));

    // A Secret the Service reads (remoteWrites basicAuth) ...
    h.send(
        "/api/v1/secrets",
        modified("v1", "Secret", ns, "rw", json!({})),
    )
    .await;
    assert_eq!(h.next().await.as_deref(), Some("whizard/central"));
    // ... but not another Secret, nor one the reconciler generates.
    h.send(
        "/api/v1/secrets",
        modified("v1", "Secret", ns, "unrelated", json!({})),
    )
    .await;
    h.quiet().await;
    h.send(
        "/api/v1/secrets",
        modified(
            "v1",
            "Secret",
            ns,
            "rw",
            json!({L::MANAGED_BY: L::MANAGED_BY_VALUE}),
        ),
    )
    .await;
    h.quiet().await;
    // Helm release Secrets are not even watched.
    let log = h.log.lock().unwrap().clone();
    let secret_watch = log
        .iter()
        .find(|l| l.starts_with("GET /api/v1/secrets?"))
        .unwrap();
    assert!(
        secret_watch.contains("fieldSelector=type%21%3Dhelm.sh%2Frelease.v1"),
        "{secret_watch}"
    );
}

#[tokio::test]
async fn every_plan_input_kind_reconciles_at_once() {
    let mut h = Harness::start().await;
    let ns = Some("whizard");
    let svc_label = json!({L::SERVICE: "whizard.central"});
    let cases = [
        ("stores", "Store", ns, json!({})),
        ("rulers", "Ruler", ns, svc_label.clone()),
        ("queryfrontends", "QueryFrontend", ns, svc_label.clone()),
        ("globalrulegroups", "GlobalRuleGroup", ns, json!({})),
        // Rule groups name their tenant, wherever they live.
        (
            "rulegroups",
            "RuleGroup",
            Some("team-a-ns"),
            json!({L::TENANT: "team-a"}),
        ),
        (
            "clusterrulegroups",
            "ClusterRuleGroup",
            None,
            json!({L::TENANT: "team-a"}),
        ),
        ("tenants", "Tenant", None, svc_label.clone()),
        ("gateways", "Gateway", ns, svc_label.clone()),
    ];
    for (plural, kind, ns, labels) in cases {
        h.send(
            &format!("{MW}/{plural}"),
            modified(API_VERSION, kind, ns, "x", labels),
        )
        .await;
        assert_eq!(h.next().await.as_deref(), Some("whizard/central"), "{kind}");
    }
    // A Storage of another namespace, a rule group of another tenant: nothing.
    h.send(
        &format!("{MW}/storages"),
        modified(API_VERSION, "Storage", Some("elsewhere"), "s3", json!({})),
    )
    .await;
    h.send(
        &format!("{MW}/rulegroups"),
        modified(
            API_VERSION,
            "RuleGroup",
            Some("x"),
            "y",
            json!({L::TENANT: "team-z"}),
        ),
    )
    .await;
    h.quiet().await;
}
