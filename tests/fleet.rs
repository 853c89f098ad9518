//! A fleet of gateways (issue 31, DESIGN.md "A fleet of gateways"): three real gateways with a
//! static peer list (`cluster.peers`, their metrics listeners, `refresh_seconds: 1`) behind
//! Debian's haproxy doing round-robin; one tenant limited to 60 requests/s fleet-wide.
//!
//! Driven at ~300 requests/s through haproxy, the fleet accepts 60/s ±20% in total (429 with
//! `Retry-After` for the rest) with three replicas (20/s each), with two after one is killed
//! (30/s each; the survivors see it gone within 2 × refresh_seconds), and with three again when
//! it comes back, and 60/s from the last replica once the two others are gone (the full limit
//! alone, never unlimited). Each phase first drives load for a moment to empty the buckets (their
//! one-second burst), then measures over a fixed window. The Basic Auth credential, verified
//! once per replica, is served from each replica's cache for the whole run.

mod common;
mod fixture;

use common::*;
use fixture::*;
use std::time::{Duration, Instant};

const LIMIT: f64 = 60.0;
const OFFERED_PER_SECOND: f64 = 300.0;
const REFRESH: Duration = Duration::from_secs(1);
const WARM_UP: Duration = Duration::from_millis(1500);
const MEASURE: Duration = Duration::from_secs(4);
const TOLERANCE: f64 = 0.2;
const QUERY: &str = "/api/v1/query?query=up";

fn config(backend: &Backend, peers: &str) -> String {
    let extra = format!(
        "server: {{threads: 1}}\nlogging: {{access_log: false}}\ncluster:\n  peers: [{peers}]\n  refresh_seconds: {}\n",
        REFRESH.as_secs()
    );
    let c = two_tenant_config(&backend.url(), &backend.write_url(), &extra);
    let limited = c.replacen(
        "  - id: team-a\n    external_labels: {cluster: eu-1}\n",
        &format!(
            "  - id: team-a\n    external_labels: {{cluster: eu-1}}\n    limits: {{requests_per_second: {LIMIT}}}\n"
        ),
        1,
    );
    assert_ne!(limited, c, "the fixture's team-a entry changed");
    limited
}

/// What the load generator saw in one window.
#[derive(Debug, Default)]
struct Counts {
    accepted: u64,
    limited: u64,
    limited_without_retry_after: u64,
    other: Vec<u16>,
    failed: u64,
}

/// Sends `GET /api/v1/query` as alice (team-a) to `url` at ~[`OFFERED_PER_SECOND`] for `d`.
async fn drive(client: &reqwest::Client, url: &str, d: Duration) -> Counts {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / OFFERED_PER_SECOND));
    let end = Instant::now() + d;
    let mut set = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let req = client
            .get(format!("{url}{QUERY}"))
            .basic_auth(ALICE.0, Some(ALICE.1));
        set.spawn(async move {
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r.headers().contains_key("retry-after");
                    let _ = r.bytes().await;
                    Some((status, retry_after))
                }
                Err(_) => None,
            }
        });
    }
    let mut c = Counts::default();
    while let Some(r) = set.join_next().await {
        match r.expect("request task") {
            Some((200, _)) => c.accepted += 1,
            Some((429, true)) => c.limited += 1,
            Some((429, false)) => {
                c.limited += 1;
                c.limited_without_retry_after += 1
            }
            Some((s, _)) => c.other.push(s),
            None => c.failed += 1,
        }
    }
    c
}

/// Requests of team-a a replica answered 200 (every route).
async fn accepted_by(g: &Gateway) -> f64 {
    g.metric(
        "whizard_gateway_requests_total",
        &[("tenant", "team-a"), ("code", "200")],
    )
    .await
    .unwrap_or(0.0)
}

/// One phase: warm up (empties the buckets), then measure the fleet's and each running
/// replica's accepted rate; asserts them against the limit and the replicas' shares.
async fn phase(
    name: &str,
    client: &reqwest::Client,
    lb: &Haproxy,
    gws: &[Gateway],
    running: &[usize],
) -> (f64, Vec<f64>) {
    let warm = drive(client, &lb.url(), WARM_UP).await;
    assert!(warm.accepted > 0, "{name}: warm-up {warm:?}");
    let mut before = Vec::new();
    for &i in running {
        before.push(accepted_by(&gws[i]).await);
    }
    let c = drive(client, &lb.url(), MEASURE).await;
    let secs = MEASURE.as_secs_f64();
    let mut per_replica = Vec::new();
    for (k, &i) in running.iter().enumerate() {
        per_replica.push((accepted_by(&gws[i]).await - before[k]) / secs);
    }
    let total = c.accepted as f64 / secs;
    let offered = (c.accepted + c.limited + c.other.len() as u64 + c.failed) as f64 / secs;
    println!(
        "[fleet] {name}: offered {offered:.0}/s, accepted {total:.1}/s in total, per replica \
         {per_replica:.1?}/s, limited {:.0}/s ({c:?})",
        c.limited as f64 / secs
    );
    assert!(
        offered >= 4.0 * LIMIT,
        "{name}: the load generator fell behind ({offered:.0}/s)"
    );
    assert!(
        (total - LIMIT).abs() <= LIMIT * TOLERANCE,
        "{name}: accepted {total:.1}/s in total, want {LIMIT}/s ±{}%",
        TOLERANCE * 100.0
    );
    assert!(c.limited > 0, "{name}: nothing was refused: {c:?}");
    assert_eq!(
        c.limited_without_retry_after, 0,
        "{name}: a 429 without Retry-After: {c:?}"
    );
    assert!(
        c.other.is_empty() && c.failed == 0,
        "{name}: answers other than 200/429: {c:?}"
    );
    let share = LIMIT / running.len() as f64;
    for (k, &i) in running.iter().enumerate() {
        assert!(
            (per_replica[k] - share).abs() <= share * TOLERANCE,
            "{name}: gateway {i} accepted {:.1}/s, its share is {share}/s ±{}%",
            per_replica[k],
            TOLERANCE * 100.0
        );
    }
    (total, per_replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_each_limit_among_its_live_replicas() {
    let backend = Backend::start().await;
    // The ports are the harness's: each replica starts listing itself only, then all three
    // get the full list of metrics listeners by a reload (which `cluster` follows): the new
    // file is noticed by the config watcher (one reload, so the credentials cache that a
    // reload starts afresh is not emptied again behind the checks below).
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(Gateway::start(&config(&backend, "\"127.0.0.1:${METRICS_PORT}\"")).await);
    }
    for g in &gws {
        assert_eq!(
            g.metric("whizard_cluster_peers", &[("state", "live")])
                .await,
            Some(1.0),
            "alone at first"
        );
    }
    join_fleet(&gws, |peers| config(&backend, peers)).await;

    // The credential works on every replica (each verifies it once and caches it).
    let client = http_client();
    for g in &gws {
        let r = client
            .get(format!("{}{QUERY}", g.url()))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    let lb = haproxy_over(&gws).await;

    // Three replicas: 20/s each.
    let (t1, _) = phase("three replicas", &client, &lb, &gws, &[0, 1, 2]).await;

    // One dies: the other two see it within 2 × refresh_seconds and take 30/s each.
    let killed = Instant::now();
    gws[2].kill();
    wait_membership(&gws, &[0, 1], 2.0, 1.0).await;
    let noticed = killed.elapsed();
    println!("[fleet] the survivors saw the replica gone after {noticed:?}");
    assert!(
        noticed <= scaled(2 * REFRESH),
        "noticed after {noticed:?}, want within {:?}",
        2 * REFRESH
    );
    lb.wait_servers_up(&[0, 1], Duration::from_secs(10)).await;
    let (t2, _) = phase("two replicas (one killed)", &client, &lb, &gws, &[0, 1]).await;

    // It comes back: 20/s each again.
    let restarted = Instant::now();
    gws[2].restart().await;
    wait_membership(&gws, &[0, 1, 2], 3.0, 0.0).await;
    println!(
        "[fleet] three live again {:?} after the restart began",
        restarted.elapsed()
    );
    lb.wait_servers_up(&[0, 1, 2], Duration::from_secs(10))
        .await;
    let (t3, _) = phase("three replicas again", &client, &lb, &gws, &[0, 1, 2]).await;

    // Every replica verified alice's password once and answered the rest from its cache
    // (the restarted one once more, after its restart).
    for (i, g) in gws.iter().enumerate() {
        let verified = g
            .metric("whizard_auth_verifications_total", &[("result", "success")])
            .await;
        assert_eq!(verified, Some(1.0), "gateway {i}: password verifications");
        assert_eq!(
            g.metric("whizard_auth_verifications_total", &[("result", "failure")])
                .await
                .unwrap_or(0.0),
            0.0,
            "gateway {i}"
        );
    }

    // Every other replica dies: the last one enforces the full limit alone (never unlimited)
    // and says so.
    gws[1].kill();
    gws[2].kill();
    wait_membership(&gws, &[0], 1.0, 2.0).await;
    gws[0]
        .wait_for_log("no other replica answered", Duration::from_secs(5))
        .await;
    lb.wait_servers_up(&[0], Duration::from_secs(10)).await;
    let (t4, _) = phase("one replica left", &client, &lb, &gws, &[0]).await;
    println!(
        "[fleet] accepted in total: {t1:.1}/s, {t2:.1}/s, {t3:.1}/s, {t4:.1}/s (limit {LIMIT}/s)"
    );
}
