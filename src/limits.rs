//! Per-tenant limits: request rate, write samples rate (token buckets) and concurrent requests.
//!
//! Limits hold per gateway replica. A tenant without limits costs nothing here: its entry is
//! absent and no lock is taken. Bucket state survives config reloads (the rates are updated).

use crate::config::{Config, Limits};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket holding at most one second of its rate (at least one token).
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Self {
        Bucket {
            rate,
            tokens: burst(rate),
            last: now,
        }
    }

    /// Takes `n` tokens. A batch larger than the burst passes when the bucket is full and
    /// leaves a debt, so big remote-write batches are throttled rather than refused forever.
    fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(burst(self.rate));
        let needed = n.min(burst(self.rate));
        if self.tokens >= needed {
            self.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - self.tokens) / self.rate))
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
    fn new(limits: &Limits, previous: Option<&TenantLimiter>, now: Instant) -> Self {
        let bucket = |rate: f64, prev: Option<&Mutex<Bucket>>| {
            (rate > 0.0).then(|| {
                let mut b = prev
                    .and_then(|m| {
                        m.lock().ok().map(|b| Bucket {
                            rate,
                            tokens: b.tokens.min(burst(rate)),
                            last: b.last,
                        })
                    })
                    .unwrap_or_else(|| Bucket::new(rate, now));
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
}

impl Limiters {
    /// Builds limiters for `config`, carrying bucket state over from `previous`.
    pub fn new(config: &Config, previous: Option<&Limiters>) -> Self {
        let now = Instant::now();
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
                    Arc::new(TenantLimiter::new(&t.limits, prev, now)),
                )
            })
            .collect();
        Limiters { by_tenant }
    }

    /// Admits one request of `tenant`: request rate, then a concurrency slot.
    pub fn admit_request(&self, tenant: &str) -> Result<Option<InflightGuard>, OverLimit> {
        let Some(l) = self.by_tenant.get(tenant) else {
            return Ok(None);
        };
        if let Some(b) = &l.requests {
            let mut b = b.lock().unwrap_or_else(|p| p.into_inner());
            b.take(1.0, Instant::now()).map_err(|wait| OverLimit {
                limit: "requests_per_second",
                message: format!(
                    "tenant {tenant:?} is over its limit of {} requests per second",
                    b.rate
                ),
                retry_after: wait,
            })?;
        }
        if l.max_inflight == 0 {
            return Ok(None);
        }
        let before = l.inflight.fetch_add(1, Ordering::AcqRel);
        let guard = InflightGuard(l.clone());
        if before >= l.max_inflight {
            return Err(OverLimit {
                limit: "max_concurrent_requests",
                message: format!(
                    "tenant {tenant:?} has {} requests in flight, its limit",
                    l.max_inflight
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
        let mut b = b.lock().unwrap_or_else(|p| p.into_inner());
        b.take(samples as f64, Instant::now())
            .map_err(|wait| OverLimit {
                limit: "write_samples_per_second",
                message: format!(
                    "tenant {tenant:?} is over its limit of {} samples per second",
                    b.rate
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
        let mut b = Bucket::new(10.0, t0);
        for _ in 0..10 {
            assert!(b.take(1.0, t0).is_ok());
        }
        let wait = b.take(1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(b.take(1.0, t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(1.0, t0 + Duration::from_millis(100)).is_err());
        // Never more than one second of tokens.
        assert!(b.take(10.0, t0 + Duration::from_secs(100)).is_ok());
        assert!(b.take(1.0, t0 + Duration::from_secs(100)).is_err());
    }

    #[test]
    fn big_batches_pass_on_a_full_bucket_and_leave_a_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100.0, t0);
        assert!(
            b.take(500.0, t0).is_ok(),
            "a full bucket admits a batch above the burst"
        );
        let wait = b.take(1.0, t0 + Duration::from_secs(1)).unwrap_err();
        assert!(wait > Duration::from_secs(2), "{wait:?}");
        assert!(b.take(100.0, t0 + Duration::from_secs(5)).is_ok());
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
        let l = Limiters::new(&c, None);
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
        let reloaded = Limiters::new(&c, Some(&l));
        assert!(
            reloaded.admit_request("a").is_err(),
            "the empty bucket carried over"
        );
    }

    #[test]
    fn sample_rate() {
        let c = config("{write_samples_per_second: 1000}");
        let l = Limiters::new(&c, None);
        assert!(l.admit_samples("a", 800).is_ok());
        let e = l.admit_samples("a", 800).unwrap_err();
        assert_eq!(e.limit, "write_samples_per_second");
        assert!(l.admit_samples("b", 1_000_000).is_ok());
        assert!(l.admit_request("a").unwrap().is_none());
    }
}
