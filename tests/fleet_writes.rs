//! A fleet of gateways loses no sample when a replica dies (issue 31, DESIGN.md "A fleet of
//! gateways"): three real gateways with a static peer list behind Debian's haproxy (the
//! [`Haproxy`] helper: round-robin, `/-/ready` checked every 200 ms, `retries 3`,
//! `option redispatch 1`), two real Prometheus agents remote-writing through it into a real
//! Prometheus backend: agent A with an OAuth2 client-credentials token of the real
//! `oidc-provider` (team-a), agent B with Basic Auth (team-b, the credential cached by each
//! replica). Each agent runs one queue shard (so what it delivers is in scrape order) and cuts
//! its batches small (several writes per scrape, spread over every replica).
//!
//! Gateway 2 is frozen (SIGSTOP) until haproxy holds a write stuck in it, then killed (SIGKILL):
//! the kill always lands on a write in flight, which haproxy answers 502 and the agent retries
//! through the replicas left. Later the gateway comes back on the same ports and takes writes
//! again. Over the whole window, for each agent: every scrape is in the backend (the agent's own
//! scrape counter, `prometheus_target_interval_length_seconds_count`, goes up by exactly one
//! from sample to sample), no two consecutive scrapes are more than 1.5 scrape intervals apart,
//! and every series of the first scrape has a sample at every scrape (samples counted per
//! series against scrapes made). Nothing was given up by an agent (`samples_failed` is 0).
//!
//! Across replicas: the bearer token and the Basic credential were accepted by all three (each
//! replica counted writes of both tenants, before the kill and after the restart), a
//! client-credentials read token and a cached Basic login read on every replica, and each
//! replica verified a password only once per user (the rest from its cache). A browser
//! session cookie across replicas is `tests/sessions.rs`' third test (logout on one replica,
//! the copied cookie on another and after a restart).

mod common;
mod fixture;

use common::*;
use fixture::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The two agents' jobs: A writes with a bearer token (team-a), B with Basic Auth (team-b).
const JOB_A: &str = "fleet-a";
const JOB_B: &str = "fleet-b";
const SCRAPE_SECONDS: f64 = 1.0;
/// The agent's own scrape counter: one more at every scrape of its (only) target.
const SCRAPES: &str = "prometheus_target_interval_length_seconds_count";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Gateways, agents, backend
// ---------------------------------------------------------------------------------------------

/// The two-tenant users (Basic Auth) plus the provider's bearer tokens, and the fleet.
fn config(backend: &Backend, issuer: &str, peers: &str) -> String {
    let extra = format!(
        "server: {{threads: 1}}\nlogging: {{access_log: false}}\n\
         cluster:\n  peers: [{peers}]\n  refresh_seconds: 1\n\
         oidc:\n  - issuer: \"{issuer}\"\n    audience: whizard\n    tenant_claim: tenant\n    \
         access_claim: scope\n"
    );
    two_tenant_config(&backend.url(), &backend.write_url(), &extra)
}

/// Remote writes of `tenant` a replica answered 204 (since it started).
async fn writes(g: &Gateway, tenant: &str) -> f64 {
    g.metric(
        "whizard_gateway_requests_total",
        &[
            ("tenant", tenant),
            ("route", "/api/v1/write"),
            ("code", "204"),
        ],
    )
    .await
    .unwrap_or(0.0)
}

/// Polls until every gateway in `which` has answered 204 to writes of both tenants.
async fn wait_writes_on(gws: &[Gateway], which: &[usize], what: &str) {
    poll_until(
        Duration::from_secs(20),
        &format!("writes of both tenants on gateways {which:?} ({what})"),
        || async {
            for &i in which {
                if writes(&gws[i], "team-a").await == 0.0 || writes(&gws[i], "team-b").await == 0.0
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

/// The timestamp of the newest `up` sample of `job` in the backend.
async fn newest(backend: &Backend, job: &str) -> Option<f64> {
    let v = backend
        .query(&format!(r#"timestamp(up{{job="{job}"}})"#))
        .await;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Polls until both agents' newest scrape in the backend is at least `since`; returns the
/// largest delivery lag (now − newest scrape in the backend) seen while waiting.
async fn wait_delivered(backend: &Backend, since: f64, what: &str) -> f64 {
    let worst = std::cell::Cell::new(0.0f64);
    poll_until(Duration::from_secs(30), what, || async {
        let mut done = true;
        for job in [JOB_A, JOB_B] {
            let n = newest(backend, job).await.unwrap_or(0.0);
            worst.set(worst.get().max(unix_now() - n));
            done &= n >= since;
        }
        done.then_some(())
    })
    .await;
    worst.get()
}

/// One series of a range query: its labels and its (timestamp, value) samples.
type Series = (BTreeMap<String, String>, Vec<(f64, String)>);

/// What the backend holds of one agent over a window, against the scrapes the agent made.
#[derive(Debug)]
struct Delivery {
    /// Scrapes the agent made in the window (from its own scrape counter).
    scrapes_made: u64,
    /// Scrapes found (samples of `up`).
    scrapes_found: usize,
    /// Largest distance between two consecutive scrapes found, in seconds.
    max_gap: f64,
    /// Series present at the window's first scrape (each expected at every scrape).
    series: usize,
    samples_expected: usize,
    samples_found: usize,
    /// Series that appeared after the window's first scrape (not counted above).
    later_series: usize,
}

/// Reads every sample of `job` with a timestamp in (`from`, `to`] from the backend and checks
/// that nothing is missing; panics with the details otherwise.
async fn delivered(backend: &Backend, job: &str, from: f64, to: f64) -> Delivery {
    let range_ms = ((to - from) * 1000.0) as u64;
    let v = api_get(
        &backend.url(),
        "/api/v1/query",
        &[
            ("query", &format!(r#"{{job="{job}"}}[{range_ms}ms]"#)),
            ("time", &format!("{to:.3}")),
        ],
    )
    .await;
    let result = v["data"]["result"].as_array().expect("a matrix");
    // (labels, [(timestamp, value)]) per series.
    let series: Vec<Series> = result
        .iter()
        .map(|s| {
            let labels = serde_json::from_value(s["metric"].clone()).expect("labels");
            let points = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().expect("timestamp"),
                        p[1].as_str().expect("value").to_string(),
                    )
                })
                .collect();
            (labels, points)
        })
        .collect();
    let named = |name: &str| -> Vec<&Series> {
        series
            .iter()
            .filter(|(l, _)| l.get("__name__").map(String::as_str) == Some(name))
            .collect()
    };

    // The scrapes found: the timestamps of `up` (one sample per scrape).
    let up = named("up");
    assert_eq!(up.len(), 1, "{job}: `up` series: {up:?}");
    let scrapes: Vec<f64> = up[0].1.iter().map(|(t, _)| *t).collect();
    assert!(scrapes.len() >= 2, "{job}: scrapes {scrapes:?}");
    let mut max_gap: f64 = 0.0;
    for w in scrapes.windows(2) {
        max_gap = max_gap.max(w[1] - w[0]);
    }
    let edge = (scrapes[0] - from).max(to - scrapes[scrapes.len() - 1]);
    assert!(
        max_gap <= 1.5 * SCRAPE_SECONDS && edge <= 1.5 * SCRAPE_SECONDS,
        "{job}: a gap of {max_gap:.3}s between scrapes (window edges {edge:.3}s) in {scrapes:?}"
    );

    // The scrapes made: the agent's own counter, one more at each scrape (the value a scrape
    // carries is the number of scrapes before it), so every scrape made in the window is found
    // when the values found go up by exactly one.
    let counter = named(SCRAPES);
    assert_eq!(counter.len(), 1, "{job}: {SCRAPES} series: {counter:?}");
    assert_eq!(
        counter[0].0.get("interval").map(String::as_str),
        Some("1s"),
        "{job}: {counter:?}"
    );
    let seq: Vec<(f64, f64)> = counter[0]
        .1
        .iter()
        .map(|(t, v)| (*t, v.parse::<f64>().expect("a count")))
        .collect();
    for w in seq.windows(2) {
        assert!(
            w[1].1 - w[0].1 == 1.0,
            "{job}: scrapes {} to {} missing between {} and {}",
            w[0].1 + 1.0,
            w[1].1 - 1.0,
            w[0].0,
            w[1].0
        );
    }
    let scrapes_made = (seq[seq.len() - 1].1 - seq[0].1) as u64 + 1;
    assert_eq!(
        seq.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        scrapes,
        "{job}: the scrape counter's samples are not the scrapes of `up`"
    );

    // Every series of the first scrape has a sample at every scrape.
    let first = scrapes[0];
    let mut incomplete = Vec::new();
    let (mut n, mut found, mut later) = (0, 0, 0);
    for (labels, points) in &series {
        if points[0].0 != first {
            later += 1;
            continue;
        }
        n += 1;
        found += points.len();
        let ts: Vec<f64> = points.iter().map(|(t, _)| *t).collect();
        if ts != scrapes {
            incomplete.push(format!(
                "{labels:?}: {} of {} samples",
                ts.len(),
                scrapes.len()
            ));
        }
    }
    assert!(
        incomplete.is_empty(),
        "{job}: {} of {n} series miss samples: {incomplete:#?}",
        incomplete.len()
    );
    Delivery {
        scrapes_made,
        scrapes_found: scrapes.len(),
        max_gap,
        series: n,
        samples_expected: n * scrapes_made as usize,
        samples_found: found,
        later_series: later,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_loses_no_sample_when_a_replica_dies() {
    let started = Instant::now();
    let backend = Backend::start().await;
    let idp = Idp::start(&[]).await;
    // Each replica starts listing itself only; all three then get the full list by a reload
    // (before any credential is used, so no cache is emptied behind the checks below).
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(
            Gateway::start(&config(
                &backend,
                &idp.issuer(),
                "\"127.0.0.1:${METRICS_PORT}\"",
            ))
            .await,
        );
    }
    join_fleet(&gws, |peers| config(&backend, &idp.issuer(), peers)).await;
    let lb = haproxy_over(&gws).await;

    // Two agents through haproxy: one queue shard each, 100 samples per write (several writes
    // per scrape, round-robin over the replicas).
    let write_url = format!("{}/api/v1/write", lb.url());
    let agent = |job: &str| {
        Agent::builder(&write_url)
            .job(job)
            .queue_config("max_samples_per_send", serde_json::json!(100))
            .queue_config("min_shards", serde_json::json!(1))
            .queue_config("max_shards", serde_json::json!(1))
    };
    let agent_a = agent(JOB_A)
        .oauth2("agent-a", "agent-a-secret", &idp.token_url())
        .start()
        .await;
    let agent_b = agent(JOB_B).basic_auth(AGENT_B.0, AGENT_B.1).start().await;
    for (job, tenant) in [(JOB_A, "team-a"), (JOB_B, "team-b")] {
        backend
            .wait_for_series(
                &format!(r#"up{{job="{job}",tenant_id="{tenant}"}}"#),
                Duration::from_secs(30),
            )
            .await;
    }
    // The bearer token and the Basic credential are accepted by every replica.
    wait_writes_on(&gws, &[0, 1, 2], "before the kill").await;
    let from = unix_now();
    wait_delivered(&backend, from + 3.0, "three scrapes of each agent").await;

    // Freeze gateway 2 until haproxy holds a write stuck in it, then kill it. If haproxy's
    // health check takes it out first (no write came in time), thaw it and try again.
    let mut attempts = 0;
    let stuck = loop {
        attempts += 1;
        assert!(
            attempts <= 20,
            "no write reached the frozen gateway in 20 tries"
        );
        gws[2].signal("STOP");
        let frozen = Instant::now();
        let stuck = poll_until(
            Duration::from_secs(5),
            "a write stuck in the frozen gateway, or haproxy taking it out",
            || async {
                let st = lb.stats().await;
                let g2 = &st["gateways/g2"];
                let scur: u64 = g2["scur"].parse().unwrap_or(0);
                if scur > 0 {
                    return Some(scur);
                }
                (!g2["status"].starts_with("UP")).then_some(0)
            },
        )
        .await;
        println!(
            "[fleet-writes] try {attempts}: {} after {:?}",
            if stuck > 0 {
                "a write stuck"
            } else {
                "taken out, no write"
            },
            frozen.elapsed()
        );
        if stuck > 0 {
            gws[2].kill();
            break stuck;
        }
        gws[2].signal("CONT");
        lb.wait_servers_up(&[0, 1, 2], Duration::from_secs(10))
            .await;
    };
    let killed_at = unix_now();
    println!("[fleet-writes] gateway 2 killed with {stuck} write(s) in flight (try {attempts})");
    lb.wait_servers_up(&[0, 1], Duration::from_secs(10)).await;
    wait_membership(&gws, &[0, 1], 2.0, 1.0).await;
    let lag_down = wait_delivered(
        &backend,
        killed_at + 3.0,
        "three scrapes of each agent after the kill",
    )
    .await;

    // It comes back on the same ports and takes writes of both tenants again.
    gws[2].restart().await;
    wait_membership(&gws, &[0, 1, 2], 3.0, 0.0).await;
    lb.wait_servers_up(&[0, 1, 2], Duration::from_secs(10))
        .await;
    wait_writes_on(&gws, &[2], "after the restart").await;
    let to = unix_now();
    let lag_up = wait_delivered(&backend, to + 1.0, "every scrape up to now").await;

    // Nothing missing, for each agent.
    let a = delivered(&backend, JOB_A, from, to).await;
    let b = delivered(&backend, JOB_B, from, to).await;
    for (name, agent, d) in [("A (bearer)", &agent_a, &a), ("B (Basic)", &agent_b, &b)] {
        println!(
            "[fleet-writes] agent {name}: {} scrapes made, {} found, largest gap {:.3}s; \
             {} samples of {} series expected, {} found ({} series appeared later); \
             retried {} samples, failed {}",
            d.scrapes_made,
            d.scrapes_found,
            d.max_gap,
            d.samples_expected,
            d.series,
            d.samples_found,
            d.later_series,
            agent.samples_retried().await,
            agent.samples_failed().await,
        );
        assert_eq!(
            d.scrapes_made, d.scrapes_found as u64,
            "agent {name}: {d:?}"
        );
        assert_eq!(d.samples_expected, d.samples_found, "agent {name}: {d:?}");
        assert!(d.series > 100, "agent {name}: {d:?}");
        assert_eq!(
            agent.samples_failed().await,
            0.0,
            "agent {name} gave samples up:\n{}",
            agent.logs()
        );
    }
    // The write in flight was cut by the kill (haproxy counted the server's abort) and retried
    // by its agent: haproxy retries only connections that fail to open.
    let aborted = lb.stat("gateways/g2", "srv_abrt").await;
    let retried = agent_a.samples_retried().await + agent_b.samples_retried().await;
    println!(
        "[fleet-writes] window {:.1}s; newest scrape at most {lag_down:.1}s old in the backend \
         while gateway 2 was down, {lag_up:.1}s after it came back; haproxy: {aborted} write(s) \
         aborted by the killed gateway, {} connection retries, {} redispatches; the agents \
         retried {retried} samples",
        to - from,
        lb.stat("gateways/BACKEND", "wretr").await,
        lb.stat("gateways/BACKEND", "wredis").await,
    );
    assert!(aborted >= 1, "haproxy saw no write cut by the kill");
    assert!(retried > 0.0, "no agent retried the write cut by the kill");

    // Reads on every replica: a client-credentials token and a Basic login (each replica
    // verifies the password once and answers the rest from its cache).
    let reader = idp.token("reader-a", &[]).await;
    let client = http_client();
    let query = format!(
        "/api/v1/query?{}",
        query_string(&[("query", &format!(r#"up{{job="{JOB_A}"}}"#))])
    );
    for (i, g) in gws.iter().enumerate() {
        for (how, req) in [
            (
                "bearer",
                client
                    .get(format!("{}{query}", g.url()))
                    .bearer_auth(&reader),
            ),
            (
                "basic",
                client
                    .get(format!("{}{query}", g.url()))
                    .basic_auth(ALICE.0, Some(ALICE.1)),
            ),
        ] {
            let r = req.send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or_default();
            assert_eq!(status, 200, "gateway {i}, {how}: {body}");
            let result = body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(result.len(), 1, "gateway {i}, {how}: {body}");
            assert_eq!(
                result[0]["metric"]["tenant_id"], "team-a",
                "gateway {i}, {how}: {body}"
            );
        }
        // agent-b and alice, once each.
        assert_eq!(
            g.metric("whizard_auth_verifications_total", &[("result", "success")])
                .await,
            Some(2.0),
            "gateway {i}: password verifications"
        );
        assert_eq!(
            g.metric("whizard_auth_failures_total", &[])
                .await
                .unwrap_or(0.0),
            0.0,
            "gateway {i}: refused credentials"
        );
    }
    println!("[fleet-writes] done in {:?}", started.elapsed());
}
