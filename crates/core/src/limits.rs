//! Per-tenant limits: request rate, write samples rate (token buckets) and concurrent requests.
//!
//! Without `cluster` the limits hold per gateway replica. With it they are fleet-wide: each
//! replica enforces its share, limit × 1/live, where live is the number of live replicas that
//! [`crate::cluster`] publishes in an atomic (read once per admission, no lock): rates divided,
//! concurrency divided and rounded up (at least 1). A change of live changes the rates at once
//! and keeps the tokens (capped at the new burst), so a bucket is neither refilled nor emptied
//! by it. A tenant without limits costs nothing here: its entry is absent and no lock is taken.
//! Bucket state survives config reloads (the rates are updated).

use crate::config::{Config, Limits};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// This replica's share of a fleet-wide rate: `limit / live`.
pub fn share_rate(limit: f64, live: u32) -> f64 {
    limit / f64::from(live.max(1))
}

/// This replica's share of a fleet-wide concurrency limit: `limit / live` rounded up, at least
/// 1 (0 stays 0: unlimited).
pub fn share_concurrency(limit: u64, live: u32) -> u64 {
    if limit == 0 {
        return 0;
    }
    limit.div_ceil(u64::from(live.max(1))).max(1)
}

/// A token bucket holding at most one second of its rate (at least one token). `rate` is the
/// configured (fleet-wide) rate; each `take` is told how many replicas share it.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, live: u32, now: Instant) -> Self {
        Bucket {
            rate,
            tokens: burst(share_rate(rate, live)),
            last: now,
        }
    }

    /// Takes `n` tokens at this replica's share of the rate (`live` replicas share it). A batch
    /// larger than the burst passes when the bucket is full and leaves a debt, so big
    /// remote-write batches are throttled rather than refused forever.
    fn take(&mut self, n: f64, live: u32, now: Instant) -> Result<(), Duration> {
        let rate = share_rate(self.rate, live);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst(rate));
        let needed = n.min(burst(rate));
        if self.tokens >= needed {
            self.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - self.tokens) / rate))
        }
    }
}

fn burst(rate: f64) -> f64 {
    rate.max(1.0)
}

/// Why a request is over a limit; `retry_after` goes to the `Retry-After` header.
#[derive(Debug, Clone, PartialEq)]
pub struct OverLimit {
    pub limit: &'static str,
    pub message: String,
    pub retry_after: Duration,
}

impl OverLimit {
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Debug)]
pub struct TenantLimiter {
    requests: Option<Mutex<Bucket>>,
    samples: Option<Mutex<Bucket>>,
    max_inflight: u64,
    inflight: AtomicU64,
}

impl TenantLimiter {
    fn new(limits: &Limits, previous: Option<&TenantLimiter>, live: u32, now: Instant) -> Self {
        let bucket = |rate: f64, prev: Option<&Mutex<Bucket>>| {
            (rate > 0.0).then(|| {
                let mut b = prev
                    .and_then(|m| {
                        m.lock().ok().map(|b| Bucket {
                            rate,
                            tokens: b.tokens.min(burst(share_rate(rate, live))),
                            last: b.last,
                        })
                    })
                    .unwrap_or_else(|| Bucket::new(rate, live, now));
                b.rate = rate;
                Mutex::new(b)
            })
        };
        TenantLimiter {
            requests: bucket(
                limits.requests_per_second,
                previous.and_then(|p| p.requests.as_ref()),
            ),
            samples: bucket(
                limits.write_samples_per_second,
                previous.and_then(|p| p.samples.as_ref()),
            ),
            max_inflight: limits.max_concurrent_requests,
            inflight: AtomicU64::new(
                previous
                    .map(|p| p.inflight.load(Ordering::Relaxed))
                    .unwrap_or(0),
            ),
        }
    }
}

/// Holds one concurrent-request slot of a tenant until dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<TenantLimiter>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The limiters of every tenant that has a limit.
#[derive(Debug, Default)]
pub struct Limiters {
    by_tenant: HashMap<String, Arc<TenantLimiter>>,
    /// Live replicas sharing every limit ([`crate::cluster::Cluster::live_handle`]); `None`
    /// without `cluster`: the limits hold per replica.
    live: Option<Arc<AtomicU32>>,
}

impl Limiters {
    /// Builds limiters for `config`, carrying bucket state over from `previous`. With `live`
    /// (the fleet's live count, `cluster`), each limit is shared by that many replicas.
    pub fn new(config: &Config, previous: Option<&Limiters>, live: Option<Arc<AtomicU32>>) -> Self {
        let now = Instant::now();
        let shared_by = live
            .as_ref()
            .map_or(1, |l| l.load(Ordering::Relaxed).max(1));
        let by_tenant = config
            .tenants
            .values()
            .filter(|t| {
                t.limits.requests_per_second > 0.0
                    || t.limits.write_samples_per_second > 0.0
                    || t.limits.max_concurrent_requests > 0
            })
            .map(|t| {
                let prev = previous
                    .and_then(|p| p.by_tenant.get(&t.id))
                    .map(|a| a.as_ref());
                (
                    t.id.clone(),
                    Arc::new(TenantLimiter::new(&t.limits, prev, shared_by, now)),
                )
            })
            .collect();
        Limiters { by_tenant, live }
    }

    /// How many replicas share every limit now (1 without `cluster`).
    pub fn live(&self) -> u32 {
        self.live
            .as_ref()
            .map_or(1, |l| l.load(Ordering::Relaxed).max(1))
    }

    /// " (this replica's share of ... across N live replicas)" for refusals, when shared.
    fn share_note(&self, limit: f64, live: u32) -> String {
        if self.live.is_none() {
            String::new()
        } else {
            format!(" (this replica's share of {limit} across {live} live replica(s))")
        }
    }

    /// Admits one request of `tenant`: request rate, then a concurrency slot.
    pub fn admit_request(&self, tenant: &str) -> Result<Option<InflightGuard>, OverLimit> {
        let Some(l) = self.by_tenant.get(tenant) else {
            return Ok(None);
        };
        let live = self.live();
        if let Some(b) = &l.requests {
            let mut b = crate::sync::lock(b);
            b.take(1.0, live, Instant::now())
                .map_err(|wait| OverLimit {
                    limit: "requests_per_second",
                    message: format!(
                        "tenant {tenant:?} is over its limit of {} requests per second{}",
                        share_rate(b.rate, live),
                        self.share_note(b.rate, live)
                    ),
                    retry_after: wait,
                })?;
        }
        let max_inflight = share_concurrency(l.max_inflight, live);
        if max_inflight == 0 {
            return Ok(None);
        }
        let before = l.inflight.fetch_add(1, Ordering::AcqRel);
        let guard = InflightGuard(l.clone());
        if before >= max_inflight {
            return Err(OverLimit {
                limit: "max_concurrent_requests",
                message: format!(
                    "tenant {tenant:?} has {max_inflight} requests in flight, its limit{}",
                    self.share_note(l.max_inflight as f64, live)
                ),
                retry_after: Duration::from_secs(1),
            });
        }
        Ok(Some(guard))
    }

    /// Admits `samples` written samples of `tenant`.
    pub fn admit_samples(&self, tenant: &str, samples: u64) -> Result<(), OverLimit> {
        let Some(b) = self.by_tenant.get(tenant).and_then(|l| l.samples.as_ref()) else {
            return Ok(());
        };
        let live = self.live();
        let mut b = crate::sync::lock(b);
        b.take(samples as f64, live, Instant::now())
            .map_err(|wait| OverLimit {
                limit: "write_samples_per_second",
                message: format!(
                    "tenant {tenant:?} is over its limit of {} samples per second{}",
                    share_rate(b.rate, live),
                    self.share_note(b.rate, live)
                ),
                retry_after: wait,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 1, t0);
        for _ in 0..10 {
            assert!(b.take(1.0, 1, t0).is_ok());
        }
        let wait = b.take(1.0, 1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(b.take(1.0, 1, t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(1.0, 1, t0 + Duration::from_millis(100)).is_err());
        // Never more than one second of tokens.
        assert!(b.take(10.0, 1, t0 + Duration::from_secs(100)).is_ok());
        assert!(b.take(1.0, 1, t0 + Duration::from_secs(100)).is_err());
    }

    #[test]
    fn big_batches_pass_on_a_full_bucket_and_leave_a_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100.0, 1, t0);
        assert!(
            b.take(500.0, 1, t0).is_ok(),
            "a full bucket admits a batch above the burst"
        );
        let wait = b.take(1.0, 1, t0 + Duration::from_secs(1)).unwrap_err();
        assert!(wait > Duration::from_secs(2), "{wait:?}");
        assert!(b.take(100.0, 1, t0 + Duration::from_secs(5)).is_ok());
    }

    fn config(limits: &str) -> Config {
        let yaml = format!(
            "listen: {{http: \"127.0.0.1:0\"}}\nupstreams: {{query: \"http://127.0.0.1:1\", receive: \"http://127.0.0.1:1/w\"}}\ntenants: [{{id: a, limits: {limits}}}, {{id: b}}]\n"
        );
        Config::from_yaml(&yaml, "t", std::path::Path::new(".")).unwrap()
    }

    #[test]
    fn limits_apply_per_tenant_and_survive_reload() {
        let c = config("{requests_per_second: 2, max_concurrent_requests: 1}");
        let l = Limiters::new(&c, None, None);
        let g = l.admit_request("a").unwrap();
        assert!(g.is_some());
        let e = l.admit_request("a").unwrap_err();
        assert_eq!(e.limit, "max_concurrent_requests");
        drop(g);
        let e = l.admit_request("a").unwrap_err();
        assert_eq!(
            e.limit, "requests_per_second",
            "two requests used the bucket"
        );
        assert!(e.retry_after_seconds() >= 1);
        for _ in 0..100 {
            assert!(l.admit_request("b").unwrap().is_none(), "b has no limits");
        }
        let reloaded = Limiters::new(&c, Some(&l), None);
        assert!(
            reloaded.admit_request("a").is_err(),
            "the empty bucket carried over"
        );
    }

    #[test]
    fn sample_rate() {
        let c = config("{write_samples_per_second: 1000}");
        let l = Limiters::new(&c, None, None);
        assert!(l.admit_samples("a", 800).is_ok());
        let e = l.admit_samples("a", 800).unwrap_err();
        assert_eq!(e.limit, "write_samples_per_second");
        assert!(l.admit_samples("b", 1_000_000).is_ok());
        assert!(l.admit_request("a").unwrap().is_none());
    }

    #[test]
    fn share_math() {
        assert_eq!(share_rate(60.0, 3), 20.0);
        assert_eq!(share_rate(60.0, 2), 30.0);
        assert_eq!(share_rate(60.0, 1), 60.0);
        assert_eq!(share_rate(60.0, 0), 60.0, "never below one replica");
        assert_eq!(share_concurrency(10, 3), 4, "rounded up");
        assert_eq!(share_concurrency(9, 3), 3);
        assert_eq!(share_concurrency(2, 5), 1, "at least one");
        assert_eq!(share_concurrency(7, 0), 7);
        assert_eq!(share_concurrency(0, 3), 0, "unlimited stays unlimited");
    }

    #[test]
    fn a_bucket_follows_the_live_count_without_a_reset() {
        let t0 = Instant::now();
        let mut b = Bucket::new(60.0, 3, t0);
        for _ in 0..20 {
            assert!(b.take(1.0, 3, t0).is_ok());
        }
        let wait = b.take(1.0, 3, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "20/s: {wait:?}");
        // One replica leaves: the empty bucket stays empty and refills at 30/s.
        let wait = b.take(1.0, 2, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0 / 30.0).abs() < 1e-9, "{wait:?}");
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..30 {
            assert!(b.take(1.0, 2, t1).is_ok());
        }
        assert!(b.take(1.0, 2, t1).is_err(), "burst: one second of 30/s");
        // It comes back: a full bucket is capped at the smaller burst.
        let t2 = t1 + Duration::from_secs(10);
        for _ in 0..20 {
            assert!(b.take(1.0, 3, t2).is_ok());
        }
        assert!(b.take(1.0, 3, t2).is_err());
    }

    #[test]
    fn limits_are_shared_by_the_live_replicas() {
        let c = config(
            "{requests_per_second: 60, max_concurrent_requests: 5, write_samples_per_second: 3000}",
        );
        let live = Arc::new(AtomicU32::new(3));
        let l = Limiters::new(&c, None, Some(live.clone()));
        assert_eq!(l.live(), 3);
        // Concurrency: ceil(5 / 3) = 2.
        let g1 = l.admit_request("a").unwrap();
        let g2 = l.admit_request("a").unwrap();
        let e = l.admit_request("a").unwrap_err();
        assert_eq!(e.limit, "max_concurrent_requests");
        assert!(e.message.contains("across 3 live"), "{}", e.message);
        live.store(1, Ordering::Relaxed);
        let g3 = l.admit_request("a").unwrap();
        assert!(g3.is_some(), "alone: the full 5");
        drop((g1, g2, g3));
        // Samples: 3000 / 2 = 1500 per second.
        live.store(2, Ordering::Relaxed);
        let l = Limiters::new(&c, None, Some(live.clone()));
        assert!(l.admit_samples("a", 1500).is_ok());
        let e = l.admit_samples("a", 10).unwrap_err();
        assert!(
            e.message.contains("1500 samples per second"),
            "{}",
            e.message
        );
        // A live count of 0 (never published that way) counts as 1.
        live.store(0, Ordering::Relaxed);
        assert_eq!(l.live(), 1);
        // Without cluster the limits hold per replica, whatever the others do.
        let alone = Limiters::new(&c, None, None);
        assert_eq!(alone.live(), 1);
        let held: Vec<_> = (0..5).map(|_| alone.admit_request("a").unwrap()).collect();
        let e = alone.admit_request("a").unwrap_err();
        assert_eq!(e.limit, "max_concurrent_requests");
        assert!(!e.message.contains("replica"), "{}", e.message);
        drop(held);
    }
}
