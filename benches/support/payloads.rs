//! Realistic remote-write bodies for the benchmarks and fuzz seeds, encoded by hand (std only).
//!
//! Shared by `benches/*.rs`, `bench/tools` and `fuzz/` through `#[path]`; keep it free of
//! dependencies. Series look like a kubernetes scrape: `__name__` plus 9 labels (10 in all),
//! label names sorted, one sample per series or several.
#![allow(dead_code)]

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, ((field as u64) << 3) | wire_type as u64);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// `Sample { double value = 1; int64 timestamp = 2; }` (same shape in v1 and v2).
fn sample(value: f64, ts_ms: i64) -> Vec<u8> {
    let mut s = Vec::with_capacity(16);
    put_key(&mut s, 1, 1);
    s.extend_from_slice(&value.to_le_bytes());
    put_key(&mut s, 2, 0);
    put_varint(&mut s, ts_ms as u64);
    s
}

const METRICS: &[&str] = &[
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_periods_total",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_resource_requests",
];

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "checkout",
];

/// The labels of series `i`, sorted by name: `__name__` + 9 others.
pub fn series_labels(i: usize) -> Vec<(String, String)> {
    let metric = METRICS[i % METRICS.len()];
    let pod_n = i / METRICS.len();
    let ns = NAMESPACES[pod_n % NAMESPACES.len()];
    let labels = vec![
        ("__name__".to_string(), metric.to_string()),
        ("container".into(), format!("app-{}", pod_n % 7)),
        ("endpoint".into(), "https-metrics".into()),
        (
            "image".into(),
            format!(
                "registry.example.com/{ns}/app:v1.{}.{}",
                pod_n % 5,
                pod_n % 11
            ),
        ),
        (
            "instance".into(),
            format!("10.0.{}.{}:10250", pod_n / 250, pod_n % 250),
        ),
        ("job".into(), "kubelet".into()),
        ("metrics_path".into(), "/metrics/cadvisor".into()),
        ("namespace".into(), ns.into()),
        ("node".into(), format!("worker-{:03}", pod_n % 40)),
        (
            "pod".into(),
            format!("app-{}-7d9f8c6b5-{:05x}", pod_n % 7, pod_n * 7919 % 0xfffff),
        ),
    ];
    debug_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0));
    labels
}

/// A decompressed `prometheus.WriteRequest` (remote write 1.0).
pub fn v1_request(series: usize, samples_per_series: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ts = Vec::new();
    let mut label = Vec::new();
    for i in 0..series {
        ts.clear();
        for (name, value) in series_labels(i) {
            label.clear();
            put_bytes(&mut label, 1, name.as_bytes());
            put_bytes(&mut label, 2, value.as_bytes());
            put_bytes(&mut ts, 1, &label);
        }
        for s in 0..samples_per_series {
            let v = (i * 31 + s) as f64 * 1.5;
            put_bytes(
                &mut ts,
                2,
                &sample(v, 1_700_000_000_000 + (s as i64) * 15_000),
            );
        }
        put_bytes(&mut out, 1, &ts);
    }
    out
}

/// A decompressed `io.prometheus.write.v2.Request` (remote write 2.0) with the same series.
pub fn v2_request(series: usize, samples_per_series: usize) -> Vec<u8> {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut index = std::collections::HashMap::new();
    let mut intern = |s: &str, symbols: &mut Vec<String>| -> u32 {
        *index.entry(s.to_string()).or_insert_with(|| {
            symbols.push(s.to_string());
            (symbols.len() - 1) as u32
        })
    };
    let mut series_bodies = Vec::with_capacity(series);
    for i in 0..series {
        let mut ts = Vec::new();
        let mut refs = Vec::new();
        for (name, value) in series_labels(i) {
            put_varint(&mut refs, intern(&name, &mut symbols) as u64);
            put_varint(&mut refs, intern(&value, &mut symbols) as u64);
        }
        put_bytes(&mut ts, 1, &refs);
        for s in 0..samples_per_series {
            let v = (i * 31 + s) as f64 * 1.5;
            put_bytes(
                &mut ts,
                2,
                &sample(v, 1_700_000_000_000 + (s as i64) * 15_000),
            );
        }
        // Metadata { type = 1 (COUNTER) }
        put_bytes(&mut ts, 5, &[0x08, 0x01]);
        series_bodies.push(ts);
    }
    let mut out = Vec::new();
    for s in &symbols {
        put_bytes(&mut out, 4, s.as_bytes());
    }
    for ts in &series_bodies {
        put_bytes(&mut out, 5, ts);
    }
    out
}

/// The two write-path payload shapes of the benchmark: (name, series, samples per series).
pub const SHAPES: &[(&str, usize, usize)] = &[("2000x1", 2000, 1), ("500x10", 500, 10)];
