//! Per-request metrics tallied by each thread on its own and added to the shared metrics when
//! they are scraped.
//!
//! Every request counts itself in `whizard_gateway_requests_total` and
//! `whizard_gateway_request_duration_seconds`. Through the shared vectors that is a read lock,
//! a reference count taken and dropped and a handful of atomic additions per metric, all on
//! memory every worker thread writes: each such write has to take the cache line from the core
//! that wrote it last (measured on the bench machine: ~270 ns per write when two cores
//! alternate, against a few ns on a line the core already owns). Each thread keeps its own
//! tallies instead, behind a lock only the scrape ever contends for, and [`add_to_shared`] moves
//! them into the shared metrics before every scrape: what a scrape shows is exact.

use crate::per_thread::Slots;
use crate::sync::lock;
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

/// One thread's tallies.
#[derive(Default)]
struct Tallies {
    /// By tenant, then route (few per tenant: looked up by a scan).
    tenants: HashMap<Box<str>, Vec<RouteTally>>,
    short_way: Option<LocalIntCounter>,
}

struct RouteTally {
    route: &'static str,
    duration: LocalHistogram,
    /// By status code (few per route: looked up by a scan).
    codes: Vec<(u16, LocalIntCounter)>,
}

impl Tallies {
    fn add_to_shared(&mut self) {
        for routes in self.tenants.values() {
            for r in routes {
                r.duration.flush();
                for (_, c) in &r.codes {
                    c.flush();
                }
            }
        }
        if let Some(c) = &self.short_way {
            c.flush();
        }
    }
}

/// Every thread's tallies: each thread writes its own slot, the scrape reads them all.
static TALLIES: LazyLock<Slots<Mutex<Tallies>>> = LazyLock::new(Slots::default);

fn mine() -> MutexGuard<'static, Tallies> {
    lock(TALLIES.here())
}

/// Counts a finished request on this thread: `tenant`, `route` and `code` are the labels of
/// `requests` (tenant, route, code) and `duration` (tenant, route).
pub(super) fn request(
    requests: &IntCounterVec,
    duration: &HistogramVec,
    (tenant, route, code): (&str, &'static str, http::StatusCode),
    seconds: f64,
) {
    let labels = (tenant, route, code);
    let mut tallies = mine();
    if let Some(routes) = tallies.tenants.get_mut(tenant) {
        return count(routes, requests, duration, labels, seconds);
    }
    let routes = tallies.tenants.entry(tenant.into()).or_default();
    count(routes, requests, duration, labels, seconds)
}

fn count(
    routes: &mut Vec<RouteTally>,
    requests: &IntCounterVec,
    duration: &HistogramVec,
    (tenant, route, code): (&str, &'static str, http::StatusCode),
    seconds: f64,
) {
    let at = match routes.iter().position(|r| r.route == route) {
        Some(at) => at,
        None => {
            routes.push(RouteTally {
                route,
                duration: duration.with_label_values(&[tenant, route]).local(),
                codes: Vec::new(),
            });
            routes.len() - 1
        }
    };
    let tally = &mut routes[at];
    tally.duration.observe(seconds);
    let code_number = code.as_u16();
    match tally.codes.iter().find(|(c, _)| *c == code_number) {
        Some((_, counter)) => counter.inc(),
        None => {
            let counter = requests
                .with_label_values(&[tenant, route, code.as_str()])
                .local();
            counter.inc();
            tally.codes.push((code_number, counter));
        }
    }
}

/// Counts one more of `counter` on this thread (one counter per process: the short way's).
pub(super) fn short_way(counter: &IntCounter) {
    mine()
        .short_way
        .get_or_insert_with(|| counter.local())
        .inc()
}

/// Adds every thread's tallies to the shared metrics (and starts them again from zero).
pub(super) fn add_to_shared() {
    for tallies in TALLIES.iter() {
        lock(tallies).add_to_shared();
    }
}
