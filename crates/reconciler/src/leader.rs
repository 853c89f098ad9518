//! Leader election with a `coordination.k8s.io/v1` Lease, so that several replicas of the
//! reconciler can run and only one works at a time.
//!
//! Every `retry_period` each replica reads the Lease and [`decide`]s: create it when missing,
//! renew it when it holds it, take it over when the record has not changed for
//! `leaseDurationSeconds` by this replica's own monotonic clock (as client-go does, so clock
//! skew between nodes cannot shorten a lease) or the holder released it, else follow. Writes go
//! through `replace` with the read `resourceVersion`, so two replicas racing for an expired
//! Lease cannot both win: the loser gets 409 and follows. A leader that sees another holder,
//! or cannot renew for `renew_deadline`, steps down: its controller task is aborted (the
//! reconciler is level-triggered, so an interrupted reconcile is simply redone by the new
//! leader). On shutdown the leader releases the Lease so a standby takes over at once.
//! Defaults follow client-go: 15 s lease, 10 s renew deadline, 2 s retry period.

use std::future::Future;
use std::time::{Duration, Instant};
use whizard_core::sync::lock;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

use super::error::Error;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaderConfig {
        LeaderConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Create,
    Renew,
    TakeOver,
    Follow { holder: String },
}

/// Pure decision on the Lease as read (`None`: no Lease yet); `unchanged_for` is how long
/// this replica has seen the same record.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    default_secs: i32,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::TakeOver; // released
    }
    if holder == identity {
        return Decision::Renew;
    }
    let secs = spec.lease_duration_seconds.unwrap_or(default_secs).max(1);
    if unchanged_for >= Duration::from_secs(u64::from(secs.unsigned_abs())) {
        Decision::TakeOver
    } else {
        Decision::Follow { holder }
    }
}

/// The Lease seen from one replica.
pub struct LeaseLock {
    api: Api<Lease>,
    cfg: LeaderConfig,
    /// The last record seen (resourceVersion, holder, renewTime) and when it was first seen.
    observed: std::sync::Mutex<Option<(String, Instant)>>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    pub fn new(client: Client, cfg: LeaderConfig) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: std::sync::Mutex::new(None),
        }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One round; `Ok(true)` when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.cfg.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let record = current.as_ref().map(|l| {
            let s = l.spec.clone().unwrap_or_default();
            format!(
                "{:?}/{:?}/{:?}",
                l.metadata.resource_version,
                s.holder_identity,
                s.renew_time.map(|t| t.0)
            )
        });
        let unchanged_for = {
            let mut seen = lock(&self.observed);
            match (seen.as_ref(), record) {
                (Some((r, at)), Some(rec)) if *r == rec => at.elapsed(),
                (_, Some(rec)) => {
                    *seen = Some((rec, Instant::now()));
                    Duration::ZERO
                }
                (_, None) => Duration::ZERO,
            }
        };
        let decision = decide(
            spec,
            &self.cfg.identity,
            unchanged_for,
            self.duration_secs(),
        );
        let ts = Some(MicroTime(now));
        let result = match decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.cfg.identity.clone()),
                        lease_duration_seconds: Some(self.duration_secs()),
                        acquire_time: ts.clone(),
                        renew_time: ts,
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Decision::Renew | Decision::TakeOver => {
                // `current` is Some here: decide() only says Create for a missing Lease.
                let mut lease = current.unwrap_or_default();
                let mut spec = lease.spec.take().unwrap_or_default();
                if decision == Decision::TakeOver {
                    spec.holder_identity = Some(self.cfg.identity.clone());
                    spec.acquire_time = ts.clone();
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(self.duration_secs());
                spec.renew_time = ts;
                lease.spec = Some(spec);
                // replace() sends the read resourceVersion: a concurrent writer makes it 409.
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (only if this replica holds it), so a standby need not wait for it
    /// to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Err(e) if !is_conflict(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

/// Runs `work` while this replica leads, until `shutdown` completes or `work` ends.
/// `leader` is set to 1 while leading.
pub async fn lead<W, F>(
    lock: LeaseLock,
    leader: prometheus::IntGauge,
    work: W,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    W: Fn() -> F,
    F: Future<Output = Result<(), Error>> + Send + 'static,
{
    let retry = lock.cfg.retry_period;
    let deadline = lock.cfg.renew_deadline;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut task: Option<tokio::task::JoinHandle<Result<(), Error>>> = None;
    let mut last_renew = Instant::now();
    leader.set(0);
    let outcome = loop {
        // A hung API call must not keep a stale leader working past its Lease.
        let round = tokio::time::timeout(deadline, lock.try_acquire_or_renew(Timestamp::now()));
        match round
            .await
            .unwrap_or_else(|_| Err(kube::Error::Service("lease request timed out".into())))
        {
            Ok(true) => {
                last_renew = Instant::now();
                if task.is_none() {
                    tracing::info!(identity = %lock.cfg.identity, "became leader");
                    task = Some(tokio::spawn(work()));
                    leader.set(1);
                }
            }
            Ok(false) => {
                if let Some(t) = task.take() {
                    tracing::warn!("lost the leader Lease; stepping down");
                    t.abort();
                    leader.set(0);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election: Lease not readable or writable");
                if task.is_some() && last_renew.elapsed() > deadline {
                    tracing::warn!("could not renew the leader Lease in time; stepping down");
                    if let Some(t) = task.take() {
                        t.abort();
                    }
                    leader.set(0);
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = async { task.as_mut().expect("guarded").await }, if task.is_some() => {
                task = None;
                break r.unwrap_or_else(|e| Err(Error::Other(format!("controller task: {e}"))));
            }
            _ = tokio::time::sleep(retry) => {}
        }
    };
    if let Some(t) = task.take() {
        t.abort();
    }
    leader.set(0);
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "releasing the leader Lease");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, dur: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(dur),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let secs = Duration::from_secs;
        let follow = Decision::Follow {
            holder: "other".into(),
        };
        assert_eq!(decide(None, "me", secs(0), 15), Decision::Create);
        let mine = spec(Some("me"), 15);
        assert_eq!(decide(Some(&mine), "me", secs(99), 15), Decision::Renew);
        let other = spec(Some("other"), 15);
        assert_eq!(decide(Some(&other), "me", secs(14), 15), follow);
        // Expired once the record has stood still for the lease duration (our clock).
        assert_eq!(decide(Some(&other), "me", secs(15), 15), Decision::TakeOver);
        assert_eq!(
            decide(Some(&spec(None, 15)), "me", secs(0), 15),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&spec(Some(""), 15)), "me", secs(0), 15),
            Decision::TakeOver
        );
        // No duration in the record: ours.
        let bare = LeaseSpec {
            holder_identity: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(decide(Some(&bare), "me", secs(10), 15), follow);
        assert_eq!(decide(Some(&bare), "me", secs(15), 15), Decision::TakeOver);
    }
}
