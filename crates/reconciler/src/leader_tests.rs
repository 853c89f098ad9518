//! Leader election against a scripted API server (tower-test mock) holding one Lease with
//! optimistic concurrency (`resourceVersion`): acquire, follow, take over, renew, lose a race,
//! release, and the lead loop stepping down on loss and releasing on shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use super::controller_tests::{respond, status_error};
use super::leader::{self, LeaderConfig, LeaseLock};

const PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/whizard-system/leases/whizard-reconciler";

#[derive(Default)]
struct State {
    lease: Option<Value>,
    rv: u64,
    /// Answer the next PUT with 409 (another replica wrote first).
    conflict_next_put: bool,
    writes: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<State>>;

fn status(code: u16) -> Value {
    status_error(code, if code == 404 { "NotFound" } else { "Conflict" })
}

fn client(state: Shared) -> Client {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let mut st = state.lock().unwrap();
            let resp = match (method.as_str(), path == PATH) {
                ("GET", true) => match &st.lease {
                    Some(l) => respond(StatusCode::OK, l.clone()),
                    None => respond(StatusCode::NOT_FOUND, status(404)),
                },
                ("POST", false) if st.lease.is_none() => {
                    st.rv += 1;
                    let mut l = body.clone();
                    l["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                    st.lease = Some(l.clone());
                    st.writes.push(("POST".into(), body));
                    respond(StatusCode::CREATED, l)
                }
                ("POST", false) => respond(StatusCode::CONFLICT, status(409)),
                ("PUT", true) => {
                    let sent = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
                    if std::mem::take(&mut st.conflict_next_put) || sent != st.rv.to_string() {
                        respond(StatusCode::CONFLICT, status(409))
                    } else {
                        st.rv += 1;
                        let mut l = body.clone();
                        l["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                        st.lease = Some(l.clone());
                        st.writes.push(("PUT".into(), body));
                        respond(StatusCode::OK, l)
                    }
                }
                _ => respond(StatusCode::NOT_FOUND, status(404)),
            };
            send.send_response(resp);
        }
    });
    Client::new(mock, "default")
}

fn lease(holder: Option<&str>, renewed_secs_ago: i64, transitions: i32, rv: u64) -> Value {
    let renew = Timestamp::from_second(Timestamp::now().as_second() - renewed_secs_ago).unwrap();
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "whizard-reconciler", "namespace": "whizard-system",
                        "resourceVersion": rv.to_string()},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 1,
                    "renewTime": renew.to_string(), "acquireTime": renew.to_string(),
                    "leaseTransitions": transitions}})
}

fn lock(state: &Shared, identity: &str) -> LeaseLock {
    LeaseLock::new(
        client(state.clone()),
        LeaderConfig::new("whizard-system", "whizard-reconciler", identity),
    )
}

fn with_lease(l: Option<Value>, rv: u64) -> Shared {
    Arc::new(Mutex::new(State {
        lease: l,
        rv,
        ..Default::default()
    }))
}

fn holder(state: &Shared) -> Value {
    state.lock().unwrap().lease.as_ref().unwrap()["spec"]["holderIdentity"].clone()
}

#[tokio::test]
async fn acquires_a_missing_lease() {
    let st = with_lease(None, 0);
    assert!(lock(&st, "me")
        .try_acquire_or_renew(Timestamp::now())
        .await
        .unwrap());
    let s = st.lock().unwrap();
    assert_eq!(s.writes.len(), 1);
    assert_eq!(s.writes[0].0, "POST");
    let spec = &s.writes[0].1["spec"];
    assert_eq!(spec["holderIdentity"], "me");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    assert_eq!(spec["leaseTransitions"], 0);
}

#[tokio::test]
async fn follows_a_fresh_lease_of_another_replica() {
    let st = with_lease(Some(lease(Some("other"), 1, 3, 7)), 7);
    assert!(!lock(&st, "me")
        .try_acquire_or_renew(Timestamp::now())
        .await
        .unwrap());
    assert!(st.lock().unwrap().writes.is_empty());
    assert_eq!(holder(&st), "other");
}

#[tokio::test]
async fn takes_over_an_expired_lease_and_renews_it() {
    // renewTime an hour ago (another node's clock): not trusted; the record must stand still
    // for its 1 s duration on our clock first.
    let st = with_lease(Some(lease(Some("other"), 3600, 3, 7)), 7);
    let me = lock(&st, "me");
    assert!(!me.try_acquire_or_renew(Timestamp::now()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(me.try_acquire_or_renew(Timestamp::now()).await.unwrap());
    {
        let s = st.lock().unwrap();
        let spec = &s.writes[0].1["spec"];
        assert_eq!(s.writes[0].0, "PUT");
        assert_eq!(spec["holderIdentity"], "me");
        assert_eq!(spec["leaseTransitions"], 4);
        // Optimistic concurrency: the read resourceVersion was sent.
        assert_eq!(s.writes[0].1["metadata"]["resourceVersion"], "7");
    }
    let first_renew = st.lock().unwrap().lease.as_ref().unwrap()["spec"]["renewTime"].clone();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(me.try_acquire_or_renew(Timestamp::now()).await.unwrap());
    let s = st.lock().unwrap();
    assert_eq!(s.writes.len(), 2);
    let spec = &s.writes[1].1["spec"];
    assert_eq!(spec["leaseTransitions"], 4, "a renewal is not a transition");
    assert_ne!(spec["renewTime"], first_renew);
}

#[tokio::test]
async fn losing_the_race_for_an_expired_lease_means_following() {
    let st = with_lease(Some(lease(Some("other"), 60, 0, 7)), 7);
    let me = lock(&st, "me");
    assert!(!me.try_acquire_or_renew(Timestamp::now()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    st.lock().unwrap().conflict_next_put = true;
    assert!(!me.try_acquire_or_renew(Timestamp::now()).await.unwrap());
    assert_eq!(holder(&st), "other");
    assert!(st.lock().unwrap().writes.is_empty());
}

#[tokio::test]
async fn release_clears_only_our_own_lease() {
    let st = with_lease(Some(lease(Some("other"), 1, 0, 7)), 7);
    lock(&st, "me").release().await.unwrap();
    assert_eq!(holder(&st), "other");
    let st = with_lease(Some(lease(Some("me"), 1, 0, 7)), 7);
    lock(&st, "me").release().await.unwrap();
    assert_eq!(holder(&st), Value::Null);
    assert_eq!(
        st.lock().unwrap().lease.as_ref().unwrap()["spec"]["leaseDurationSeconds"],
        1
    );
}

/// Sets a flag when dropped (i.e. when the leader's work task is aborted).
struct Stopped(Arc<AtomicUsize>);
impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn lead_loop_steps_down_on_loss_takes_over_again_and_releases() {
    let st = with_lease(None, 0);
    let mut cfg = LeaderConfig::new("whizard-system", "whizard-reconciler", "me");
    cfg.retry_period = Duration::from_millis(20);
    let lock = LeaseLock::new(client(st.clone()), cfg);
    let gauge = prometheus::IntGauge::new("leader", "x").unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let work = {
        let (started, stopped) = (started.clone(), stopped.clone());
        move || {
            let (started, stopped) = (started.clone(), stopped.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                let _guard = Stopped(stopped);
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    };
    let runner = tokio::spawn(leader::lead(lock, gauge.clone(), work, async {
        let _ = rx.await;
    }));
    wait_for("leading", || started.load(Ordering::SeqCst) == 1).await;
    assert_eq!(gauge.get(), 1);

    // Another replica takes the Lease (e.g. after a network partition): step down.
    {
        let mut s = st.lock().unwrap();
        s.rv += 1;
        s.lease = Some(lease(Some("other"), 0, 1, s.rv));
    }
    wait_for("stepping down", || stopped.load(Ordering::SeqCst) == 1).await;
    assert_eq!(gauge.get(), 0);
    // Following while the other replica keeps renewing (a new record every 200 ms).
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut s = st.lock().unwrap();
        s.rv += 1;
        s.lease = Some(lease(Some("other"), 0, 1, s.rv));
    }
    assert_eq!(started.load(Ordering::SeqCst), 1);

    // The other replica stops renewing: after 1 s without a change we take over.
    wait_for("taking over", || started.load(Ordering::SeqCst) == 2).await;
    assert_eq!(gauge.get(), 1);
    assert_eq!(holder(&st), "me");

    // Shutdown: the work stops and the Lease is released for a standby.
    tx.send(()).unwrap();
    runner.await.unwrap().unwrap();
    assert_eq!(stopped.load(Ordering::SeqCst), 2);
    assert_eq!(gauge.get(), 0);
    assert_eq!(holder(&st), Value::Null);
}
