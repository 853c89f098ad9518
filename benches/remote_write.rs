//! The write path per body: (a) raw snappy decompress+compress, (b) pass-through (decompress +
//! validate, body forwarded as is), (c) v1 injection and (d) v2 injection (decompress + splice
//! + compress), plus the splice alone. Throughput is in samples.
//!
//! `cargo bench --bench remote_write`
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use whizard::remote_write::{
    compress, decompress_into, inject_v1, inject_v2, rewrite_body, Format, LabelSet,
};

#[path = "support/payloads.rs"]
mod payloads;

const MAX: usize = 64 << 20;

fn bench_write(c: &mut Criterion) {
    let labels =
        LabelSet::new([("tenant_id", "team-a"), ("cluster", "prod-eu-1")]).expect("labels");
    let none = LabelSet::empty();
    for &(shape, series, samples) in payloads::SHAPES {
        let raw1 = payloads::v1_request(series, samples);
        let raw2 = payloads::v2_request(series, samples);
        let body1 = compress(&raw1).expect("compress");
        let body2 = compress(&raw2).expect("compress");
        let mut g = c.benchmark_group(format!("remote_write/{shape}"));
        g.throughput(Throughput::Elements((series * samples) as u64));
        // Decompress into a reused buffer, compress into a fresh one: the same buffer
        // discipline as `rewrite_body`, which is what the gateway calls.
        let mut dbuf = Vec::new();
        g.bench_function("a_snappy_roundtrip", |b| {
            b.iter(|| {
                decompress_into(black_box(&body1), MAX, &mut dbuf).expect("decompress");
                compress(&dbuf).expect("compress")
            })
        });
        g.bench_function("b_passthrough_v1", |b| {
            b.iter(|| rewrite_body(Format::V1, black_box(&body1), &none, MAX).expect("ok"))
        });
        g.bench_function("c_inject_v1", |b| {
            b.iter(|| rewrite_body(Format::V1, black_box(&body1), &labels, MAX).expect("ok"))
        });
        g.bench_function("d_inject_v2", |b| {
            b.iter(|| rewrite_body(Format::V2, black_box(&body2), &labels, MAX).expect("ok"))
        });
        let mut out = Vec::new();
        g.bench_function("splice_only_v1", |b| {
            b.iter(|| inject_v1(black_box(&raw1), &labels, &mut out).expect("ok"))
        });
        g.bench_function("splice_only_v2", |b| {
            b.iter(|| inject_v2(black_box(&raw2), &labels, &mut out).expect("ok"))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_write);
criterion_main!(benches);
