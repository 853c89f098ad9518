//! PromQL rewrite and `match[]` injection over real dashboard queries.
//!
//! `cargo bench --bench enforce`
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use whizard::enforcement::{enforce_match_selectors, enforce_query, TenantMatcher};

#[path = "support/queries.rs"]
mod queries;
use queries::{DASHBOARD_QUERIES, MATCH_SELECTORS};

fn bench_promql(c: &mut Criterion) {
    let one = TenantMatcher::new("tenant_id", ["team-a"]).expect("matcher");
    let two = TenantMatcher::new("tenant_id", ["team-a", "team-b"]).expect("matcher");
    for q in DASHBOARD_QUERIES {
        enforce_query(q, &one).unwrap_or_else(|e| panic!("{q}: {e}"));
    }

    let mut g = c.benchmark_group("promql_rewrite");
    g.throughput(Throughput::Elements(DASHBOARD_QUERIES.len() as u64));
    g.bench_function("dashboard_set/one_tenant", |b| {
        b.iter(|| {
            for q in DASHBOARD_QUERIES {
                black_box(enforce_query(black_box(q), &one).is_ok());
            }
        })
    });
    g.bench_function("dashboard_set/two_tenants", |b| {
        b.iter(|| {
            for q in DASHBOARD_QUERIES {
                black_box(enforce_query(black_box(q), &two).is_ok());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("promql_rewrite_each");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (i, q) in DASHBOARD_QUERIES.iter().enumerate() {
        g.bench_function(format!("q{i:02}"), |b| {
            b.iter(|| enforce_query(black_box(q), &one).is_ok())
        });
    }
    g.finish();
}

fn bench_match(c: &mut Criterion) {
    let one = TenantMatcher::new("tenant_id", ["team-a"]).expect("matcher");
    let mut g = c.benchmark_group("match_injection");
    g.throughput(Throughput::Elements(MATCH_SELECTORS.len() as u64));
    g.bench_function("selectors", |b| {
        b.iter(|| enforce_match_selectors(black_box(MATCH_SELECTORS), &one).is_ok())
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("absent", |b| {
        b.iter(|| enforce_match_selectors(black_box(&[]), &one).is_ok())
    });
    g.bench_function("tenant_matcher_new", |b| {
        b.iter(|| TenantMatcher::new("tenant_id", [black_box("team-a")]).is_ok())
    });
    g.finish();
}

criterion_group!(benches, bench_promql, bench_match);
criterion_main!(benches);
