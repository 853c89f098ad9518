//! Golden, error-case and property tests. Requests are built with hand-written prost messages
//! that mirror the real .proto files (prost drops unknown fields, so those are checked on the
//! raw bytes).

use super::*;
use proptest::prelude::*;
use prost::Message;
use std::collections::{BTreeMap, HashMap};

/// prometheus.* (remote write 1.0), field numbers from prompb/types.proto and remote.proto.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// Same field numbers in prompb and io.prometheus.write.v2.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(oneof = "HistCount", tags = "1, 2")]
        pub count: Option<HistCount>,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(oneof = "HistZeroCount", tags = "6, 7")]
        pub zero_count: Option<HistZeroCount>,
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "10")]
        pub negative_counts: Vec<f64>,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "13")]
        pub positive_counts: Vec<f64>,
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
        #[prost(double, repeated, tag = "16")]
        pub custom_values: Vec<f64>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum HistCount {
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum HistZeroCount {
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }
}

/// io.prometheus.write.v2.*, field numbers from prompb/io/prometheus/write/v2/types.proto.
mod pb2 {
    pub use super::pb::{Histogram, Sample};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        #[prost(int64, tag = "6")]
        pub created_timestamp: i64,
    }

    /// Same message with `labels_refs` unpacked, to produce the non-default encoding.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeriesUnpacked {
        #[prost(uint32, repeated, packed = "false", tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

fn len_field(num: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    wire::put_len_header(&mut v, num, payload.len());
    v.extend_from_slice(payload);
    v
}

fn varint_field(num: u32, val: u64) -> Vec<u8> {
    let mut v = Vec::new();
    wire::put_varint(&mut v, wire::tag(num, wire::WT_VARINT));
    wire::put_varint(&mut v, val);
    v
}

fn lbl(name: &str, value: &str) -> pb::Label {
    pb::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn lbls(pairs: &[(&str, &str)]) -> Vec<pb::Label> {
    pairs.iter().map(|(n, v)| lbl(n, v)).collect()
}

fn set(pairs: &[(&str, &str)]) -> LabelSet {
    LabelSet::new(pairs.iter().copied()).unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn histogram(ts: i64) -> pb::Histogram {
    pb::Histogram {
        count: Some(pb::HistCount::CountInt(5)),
        sum: 12.5,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: Some(pb::HistZeroCount::ZeroCountInt(1)),
        negative_spans: vec![pb::BucketSpan {
            offset: 1,
            length: 1,
        }],
        negative_deltas: vec![1],
        positive_spans: vec![pb::BucketSpan {
            offset: -2,
            length: 2,
        }],
        positive_deltas: vec![2, -1],
        reset_hint: 2,
        timestamp: ts,
        ..Default::default()
    }
}

fn float_histogram(ts: i64) -> pb::Histogram {
    pb::Histogram {
        count: Some(pb::HistCount::CountFloat(3.5)),
        schema: -53,
        zero_count: Some(pb::HistZeroCount::ZeroCountFloat(0.5)),
        positive_spans: vec![pb::BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_counts: vec![1.5, 2.0],
        negative_counts: vec![0.25],
        custom_values: vec![0.1, 1.0],
        timestamp: ts,
        ..Default::default()
    }
}

fn sample(v: f64, ts: i64) -> pb::Sample {
    pb::Sample {
        value: v,
        timestamp: ts,
    }
}

fn inject_ok(format: Format, raw: &[u8], labels: &LabelSet) -> (Vec<u8>, WriteStats) {
    let mut out = Vec::new();
    let stats = inject(format, raw, labels, &mut out).unwrap();
    (out, stats)
}

fn err_v1(raw: &[u8]) -> RemoteWriteError {
    let e = inject_v1(raw, &set(&[("tenant_id", "t1")]), &mut Vec::new()).unwrap_err();
    // Validation must agree with injection.
    assert_eq!(validate_v1(raw).unwrap_err(), e);
    e
}

fn err_v2(raw: &[u8]) -> RemoteWriteError {
    let e = inject_v2(raw, &set(&[("tenant_id", "t1")]), &mut Vec::new()).unwrap_err();
    assert_eq!(validate_v2(raw).unwrap_err(), e);
    e
}

fn assert_err(e: RemoteWriteError, status: u16, needle: &str) {
    assert_eq!(e.status(), status, "{e}");
    assert!(
        e.to_string().contains(needle),
        "{e:?} does not mention {needle:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// v1 golden

/// Series A of the v1 golden request: labels, samples, exemplars, histograms, then an unknown
/// field and one more label (with an unknown field inside) after the other fields.
fn golden_v1_series_a_parts() -> (pb::TimeSeries, Vec<u8>, Vec<u8>) {
    let ts = pb::TimeSeries {
        labels: lbls(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("tenant_id", "evil"),
            ("zone", "eu"),
        ]),
        samples: vec![sample(1.0, 1000), sample(2.0, 2000)],
        exemplars: vec![pb::Exemplar {
            labels: lbls(&[("trace_id", "abc")]),
            value: 1.0,
            timestamp: 1000,
        }],
        histograms: vec![histogram(1000), float_histogram(2000)],
    };
    let unknown = varint_field(9, 42);
    let mut extra_label = lbl("zzz_extra", "v").encode_to_vec();
    extra_label.extend(len_field(3, b"label-unknown"));
    (ts, unknown, extra_label)
}

fn golden_v1() -> (Vec<u8>, Vec<u8>) {
    let (ts_a, unknown_a, extra_label) = golden_v1_series_a_parts();
    let mut series_a = ts_a.encode_to_vec();
    series_a.extend(&unknown_a);
    series_a.extend(len_field(1, &extra_label));

    let ts_b = pb::TimeSeries {
        labels: lbls(&[("__name__", "up"), ("instance", "x:9090")]),
        histograms: vec![histogram(3000)],
        ..Default::default()
    };
    let metadata = pb::MetricMetadata {
        r#type: 1,
        metric_family_name: "http_requests_total".into(),
        help: "Total requests".into(),
        unit: "requests".into(),
    }
    .encode_to_vec();
    let top_unknown = len_field(15, b"opaque-top-level");
    // Deprecated group (field 7) holding a varint: copied whole.
    let top_group = vec![0x3b, 0x08, 0x01, 0x3c];

    let mut raw = len_field(1, &series_a);
    raw.extend(len_field(3, &metadata));
    raw.extend(len_field(1, &ts_b.encode_to_vec()));
    raw.extend(&top_unknown);
    raw.extend(&top_group);

    // Expected, built independently: labels first (client labels byte for byte), then the
    // other fields as prost encodes them (same order), then the series' unknown field.
    let mut exp_a = Vec::new();
    for l in [
        lbl("__name__", "http_requests_total").encode_to_vec(),
        lbl("cluster", "c1").encode_to_vec(),
        lbl("job", "api").encode_to_vec(),
        lbl("tenant_id", "t1").encode_to_vec(),
        lbl("zone", "eu").encode_to_vec(),
        extra_label.clone(),
    ] {
        exp_a.extend(len_field(1, &l));
    }
    exp_a.extend(
        pb::TimeSeries {
            labels: vec![],
            ..ts_a
        }
        .encode_to_vec(),
    );
    exp_a.extend(&unknown_a);
    let exp_b = pb::TimeSeries {
        labels: lbls(&[
            ("__name__", "up"),
            ("cluster", "c1"),
            ("instance", "x:9090"),
            ("tenant_id", "t1"),
        ]),
        ..ts_b
    };
    let mut expected = len_field(1, &exp_a);
    expected.extend(len_field(3, &metadata));
    expected.extend(len_field(1, &exp_b.encode_to_vec()));
    expected.extend(&top_unknown);
    expected.extend(&top_group);
    (raw, expected)
}

#[test]
fn v1_golden_bytes() {
    let (raw, expected) = golden_v1();
    let labels = set(&[("tenant_id", "t1"), ("cluster", "c1")]);
    let (out, stats) = inject_ok(Format::V1, &raw, &labels);
    assert_eq!(out, expected);
    assert_eq!(
        stats,
        WriteStats {
            series: 2,
            samples: 2,
            histograms: 3,
            exemplars: 1
        }
    );
    assert_eq!(validate_v1(&raw).unwrap(), stats);
    assert_eq!(validate_v1(&out).unwrap(), stats);
}

#[test]
fn v1_golden_decodes_to_original_plus_labels() {
    let (raw, _) = golden_v1();
    let labels = set(&[("tenant_id", "t1"), ("cluster", "c1")]);
    let (out, _) = inject_ok(Format::V1, &raw, &labels);

    let mut want = pb::WriteRequest::decode(&raw[..]).unwrap();
    for ts in &mut want.timeseries {
        ts.labels
            .retain(|l| l.name != "tenant_id" && l.name != "cluster");
        ts.labels.push(lbl("tenant_id", "t1"));
        ts.labels.push(lbl("cluster", "c1"));
        ts.labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let got = pb::WriteRequest::decode(&out[..]).unwrap();
    assert_eq!(got, want);
    assert!(got.timeseries[0].labels.contains(&lbl("tenant_id", "t1")));
    assert!(!got.timeseries[0].labels.contains(&lbl("tenant_id", "evil")));
    // Unknown fields survive byte for byte, at every level.
    let (_, unknown_a, extra_label) = golden_v1_series_a_parts();
    assert!(contains(&out, &unknown_a));
    assert!(contains(&out, &len_field(1, &extra_label)));
    assert!(contains(&out, &len_field(15, b"opaque-top-level")));
    assert!(out.ends_with(&[0x3b, 0x08, 0x01, 0x3c]));
}

#[test]
fn v1_injection_is_idempotent() {
    let (raw, expected) = golden_v1();
    let labels = set(&[("tenant_id", "t1"), ("cluster", "c1")]);
    let (again, _) = inject_ok(Format::V1, &expected, &labels);
    assert_eq!(again, expected);
    let _ = raw;
}

#[test]
fn empty_label_set_copies_body_unchanged() {
    let (raw, _) = golden_v1();
    let (out, stats) = inject_ok(Format::V1, &raw, &LabelSet::empty());
    assert_eq!(out, raw);
    assert_eq!(stats.series, 2);
    let (raw2, _) = golden_v2();
    let (out2, stats2) = inject_ok(Format::V2, &raw2, &LabelSet::empty());
    assert_eq!(out2, raw2);
    assert_eq!(stats2.series, 2);
}

#[test]
fn empty_request_is_valid() {
    for f in [Format::V1, Format::V2] {
        let (out, stats) = inject_ok(f, &[], &set(&[("tenant_id", "t")]));
        assert!(out.is_empty());
        assert_eq!(stats, WriteStats::default());
    }
}

#[test]
fn v1_metadata_only_request_passes_through() {
    let md = pb::MetricMetadata {
        r#type: 2,
        metric_family_name: "g".into(),
        help: "h".into(),
        unit: String::new(),
    };
    let raw = pb::WriteRequest {
        timeseries: vec![],
        metadata: vec![md],
    }
    .encode_to_vec();
    let (out, stats) = inject_ok(Format::V1, &raw, &set(&[("tenant_id", "t")]));
    assert_eq!(out, raw);
    assert_eq!(stats.series, 0);
}

#[test]
fn v1_non_canonical_labels_are_read_like_protobuf_and_kept_verbatim() {
    // value before name; an omitted (empty) value; a name given twice (the last wins); a
    // non-minimal length varint.
    let mut reversed = len_field(2, b"api");
    reversed.extend(len_field(1, b"job"));
    let empty_value = len_field(1, b"instance");
    let mut twice = len_field(1, b"ignored");
    twice.extend(len_field(1, b"zone"));
    twice.extend(len_field(2, b"eu"));
    let mut long_len = vec![0x0a, 0x88, 0x00];
    long_len.extend(b"__name__");
    long_len.extend(len_field(2, b"up"));
    let fields: Vec<Vec<u8>> = [long_len, empty_value, reversed, twice]
        .iter()
        .map(|l| len_field(1, l))
        .collect();
    let ts: Vec<u8> = fields.concat();
    let raw = len_field(1, &ts);
    let (out, _) = inject_ok(Format::V1, &raw, &set(&[("tenant_id", "t")]));
    let got = pb::WriteRequest::decode(&out[..]).unwrap();
    assert_eq!(
        got.timeseries[0].labels,
        lbls(&[
            ("__name__", "up"),
            ("instance", ""),
            ("job", "api"),
            ("tenant_id", "t"),
            ("zone", "eu")
        ])
    );
    for f in &fields {
        assert!(contains(&out, f));
    }
    // Sorted if the first name counted, unsorted under protobuf's last-wins rule (which the
    // backend applies): we must judge the name the backend sees.
    let mut late = len_field(1, b"zz");
    late.extend(len_field(1, b"A"));
    let ts = [
        len_field(1, &lbl("__name__", "x").encode_to_vec()),
        len_field(1, &late),
    ]
    .concat();
    assert_err(
        err_v1(&len_field(1, &ts)),
        400,
        "labels not sorted (\"A\" after \"__name__\")",
    );
}

// ---------------------------------------------------------------------------------------------
// v2 golden

const V2_SYMBOLS: &[&str] = &[
    "",
    "__name__",
    "http_requests_total",
    "job",
    "api",
    "tenant_id",
    "evil",
    "trace_id",
    "abc",
    "Total requests",
    "requests",
    "zone",
    "eu",
    "t1",
    "up",
];

fn golden_v2_series_a() -> pb2::TimeSeries {
    pb2::TimeSeries {
        labels_refs: vec![1, 2, 3, 4, 5, 6, 11, 12],
        samples: vec![sample(1.0, 1000), sample(2.0, 2000)],
        histograms: vec![histogram(1000)],
        exemplars: vec![pb2::Exemplar {
            labels_refs: vec![7, 8],
            value: 1.0,
            timestamp: 1000,
        }],
        metadata: Some(pb2::Metadata {
            r#type: 1,
            help_ref: 9,
            unit_ref: 10,
        }),
        created_timestamp: 500,
    }
}

fn golden_v2() -> (Vec<u8>, Vec<u8>) {
    let mut symbols = Vec::new();
    for s in V2_SYMBOLS {
        symbols.extend(len_field(4, s.as_bytes()));
    }
    let ts_a = golden_v2_series_a();
    let unknown_a = varint_field(20, 7);
    let mut series_a = ts_a.encode_to_vec();
    series_a.extend(&unknown_a);
    let ts_b = pb2::TimeSeries {
        labels_refs: vec![1, 14],
        histograms: vec![float_histogram(5)],
        ..Default::default()
    };
    let top_unknown = len_field(15, b"opaque");

    let mut raw = symbols.clone();
    raw.extend(len_field(5, &series_a));
    raw.extend(&top_unknown);
    raw.extend(len_field(5, &ts_b.encode_to_vec()));

    // Injected: tenant_id (5) = t1 (13) reuse symbols; cluster = c1 are appended as 15, 16.
    let mut expected = symbols;
    expected.extend(len_field(4, b"cluster"));
    expected.extend(len_field(4, b"c1"));
    let refs_a = [1u32, 2, 15, 16, 3, 4, 5, 13, 11, 12];
    let mut exp_a = pb2::TimeSeries {
        labels_refs: refs_a.to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    exp_a.extend(
        pb2::TimeSeries {
            labels_refs: vec![],
            ..ts_a
        }
        .encode_to_vec(),
    );
    exp_a.extend(&unknown_a);
    expected.extend(len_field(5, &exp_a));
    expected.extend(&top_unknown);
    let exp_b = pb2::TimeSeries {
        labels_refs: vec![1, 14, 15, 16, 5, 13],
        ..ts_b
    };
    expected.extend(len_field(5, &exp_b.encode_to_vec()));
    (raw, expected)
}

fn resolve(symbols: &[String], refs: &[u32]) -> Vec<(String, String)> {
    refs.chunks(2)
        .map(|p| {
            (
                symbols[p[0] as usize].clone(),
                symbols[p[1] as usize].clone(),
            )
        })
        .collect()
}

#[test]
fn v2_golden_bytes() {
    let (raw, expected) = golden_v2();
    let labels = set(&[("tenant_id", "t1"), ("cluster", "c1")]);
    let (out, stats) = inject_ok(Format::V2, &raw, &labels);
    assert_eq!(out, expected);
    assert_eq!(
        stats,
        WriteStats {
            series: 2,
            samples: 2,
            histograms: 2,
            exemplars: 1
        }
    );
    assert_eq!(validate_v2(&out).unwrap(), stats);
    // Idempotent: the second pass finds every symbol and the labels already in place.
    assert_eq!(inject_ok(Format::V2, &out, &labels).0, out);
}

#[test]
fn v2_golden_decodes_to_original_plus_labels() {
    let (raw, _) = golden_v2();
    let labels = set(&[("tenant_id", "t1"), ("cluster", "c1")]);
    let (out, _) = inject_ok(Format::V2, &raw, &labels);
    let before = pb2::Request::decode(&raw[..]).unwrap();
    let after = pb2::Request::decode(&out[..]).unwrap();
    assert_eq!(after.symbols[..before.symbols.len()], before.symbols[..]);
    assert_eq!(after.timeseries.len(), before.timeseries.len());
    for (b, a) in before.timeseries.iter().zip(&after.timeseries) {
        let mut want: BTreeMap<String, String> = resolve(&before.symbols, &b.labels_refs)
            .into_iter()
            .collect();
        want.insert("tenant_id".into(), "t1".into());
        want.insert("cluster".into(), "c1".into());
        let got = resolve(&after.symbols, &a.labels_refs);
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        let strip = |t: &pb2::TimeSeries| pb2::TimeSeries {
            labels_refs: vec![],
            ..t.clone()
        };
        assert_eq!(strip(a), strip(b));
    }
    // Exemplar and metadata refs still point at the same strings.
    let a = &after.timeseries[0];
    assert_eq!(
        resolve(&after.symbols, &a.exemplars[0].labels_refs),
        vec![("trace_id".to_string(), "abc".to_string())]
    );
    let md = a.metadata.as_ref().unwrap();
    assert_eq!(after.symbols[md.help_ref as usize], "Total requests");
    assert!(contains(&out, &varint_field(20, 7)));
    assert!(contains(&out, &len_field(15, b"opaque")));
}

#[test]
fn v2_unpacked_and_split_refs_are_accepted() {
    let symbols = ["", "__name__", "up", "job", "a"];
    let mut raw = Vec::new();
    for s in symbols {
        raw.extend(len_field(4, s.as_bytes()));
    }
    let unpacked = pb2::TimeSeriesUnpacked {
        labels_refs: vec![1, 2, 3, 4],
        samples: vec![sample(1.0, 1)],
    }
    .encode_to_vec();
    raw.extend(len_field(5, &unpacked));
    // Two packed chunks, a sample in between.
    let mut split = len_field(1, &[1, 2]);
    split.extend(len_field(2, &sample(2.0, 2).encode_to_vec()));
    split.extend(len_field(1, &[3, 4]));
    raw.extend(len_field(5, &split));

    let (out, stats) = inject_ok(Format::V2, &raw, &set(&[("tenant_id", "t")]));
    assert_eq!(stats.series, 2);
    assert_eq!(stats.samples, 2);
    let req = pb2::Request::decode(&out[..]).unwrap();
    for ts in &req.timeseries {
        assert_eq!(
            resolve(&req.symbols, &ts.labels_refs),
            vec![
                ("__name__".to_string(), "up".to_string()),
                ("job".into(), "a".into()),
                ("tenant_id".into(), "t".into())
            ]
        );
        assert_eq!(ts.samples.len(), 1);
    }
}

#[test]
fn v2_new_symbols_follow_the_last_symbols_field() {
    // Symbols split around a series: new symbols must index after all of them.
    let mut raw = Vec::new();
    raw.extend(len_field(4, b""));
    raw.extend(len_field(4, b"__name__"));
    raw.extend(len_field(
        5,
        &pb2::TimeSeries {
            labels_refs: vec![1, 2],
            ..Default::default()
        }
        .encode_to_vec(),
    ));
    raw.extend(len_field(4, b"up"));
    raw.extend(len_field(15, b"tail"));
    let (out, _) = inject_ok(Format::V2, &raw, &set(&[("tenant_id", "t")]));
    let req = pb2::Request::decode(&out[..]).unwrap();
    assert_eq!(req.symbols, ["", "__name__", "up", "tenant_id", "t"]);
    assert_eq!(
        resolve(&req.symbols, &req.timeseries[0].labels_refs),
        vec![
            ("__name__".to_string(), "up".to_string()),
            ("tenant_id".into(), "t".into())
        ]
    );
    assert!(out.ends_with(&len_field(15, b"tail")));
}

#[test]
fn v2_injected_value_equal_to_name_is_one_symbol() {
    let mut raw = Vec::new();
    for s in ["", "__name__", "up"] {
        raw.extend(len_field(4, s.as_bytes()));
    }
    raw.extend(len_field(
        5,
        &pb2::TimeSeries {
            labels_refs: vec![1, 2],
            ..Default::default()
        }
        .encode_to_vec(),
    ));
    let (out, _) = inject_ok(
        Format::V2,
        &raw,
        &set(&[("env", "prod"), ("prod", "env"), ("tenant_id", "up")]),
    );
    let req = pb2::Request::decode(&out[..]).unwrap();
    assert_eq!(
        req.symbols,
        ["", "__name__", "up", "env", "prod", "tenant_id"]
    );
}

// ---------------------------------------------------------------------------------------------
// validation errors

fn v1_series(labels: &[(&str, &str)]) -> Vec<u8> {
    pb::WriteRequest {
        timeseries: vec![
            pb::TimeSeries {
                labels: lbls(&[("__name__", "ok")]),
                samples: vec![sample(1.0, 1)],
                ..Default::default()
            },
            pb::TimeSeries {
                labels: lbls(labels),
                samples: vec![sample(1.0, 1)],
                ..Default::default()
            },
        ],
        metadata: vec![],
    }
    .encode_to_vec()
}

#[test]
fn v1_label_errors() {
    assert_err(
        err_v1(&v1_series(&[
            ("__name__", "a"),
            ("zone", "z"),
            ("job", "j"),
        ])),
        400,
        "series 1: labels not sorted (\"job\" after \"zone\")",
    );
    assert_err(
        err_v1(&v1_series(&[("__name__", "a"), ("job", "x"), ("job", "y")])),
        400,
        "series 1: duplicate label name \"job\"",
    );
    assert_err(
        err_v1(&v1_series(&[("", "x"), ("__name__", "a")])),
        400,
        "series 1: empty label name",
    );
    // An explicitly empty name field: proto3 encoders leave it out, a hand-made body may not.
    let mut ts = len_field(1, &[0x0a, 0x00, 0x12, 0x01, b'x']);
    ts.extend(len_field(
        1,
        &[&[0x0a, 8][..], b"__name__", &[0x12, 1, b'a']].concat(),
    ));
    let raw = len_field(1, &ts);
    assert_err(err_v1(&raw), 400, "series 0: empty label name");
    same_as_general_v1(&raw, &set(&[("tenant_id", "t1")]));
    assert_err(
        err_v1(&v1_series(&[("job", "x")])),
        400,
        "series 1: missing __name__ label",
    );
    assert_err(
        err_v1(&v1_series(&[])),
        400,
        "series 1: missing __name__ label",
    );
}

#[test]
fn v1_invalid_utf8() {
    let series = |name: &[u8], value: &[u8]| {
        let mut label = len_field(1, name);
        label.extend(len_field(2, value));
        let mut ts = len_field(1, &lbl("__name__", "a").encode_to_vec());
        ts.extend(len_field(1, &label));
        len_field(1, &ts)
    };
    assert_err(
        err_v1(&series(b"jo\xffb", b"v")),
        400,
        "series 0: label name \"jo\u{fffd}b\" is not valid UTF-8",
    );
    assert_err(
        err_v1(&series(b"job", b"\xc3")),
        400,
        "series 0: value of label \"job\" is not valid UTF-8",
    );
}

#[test]
fn v1_malformed() {
    let good = v1_series(&[("__name__", "a")]);
    // Truncated anywhere: an error unless the cut falls between series, never a panic.
    for cut in 1..good.len() {
        match validate_v1(&good[..cut]) {
            Ok(stats) => assert_eq!(stats.series, 1, "cut {cut}"),
            Err(e) => assert_eq!(err_v1(&good[..cut]), e),
        }
    }
    assert_err(err_v1(&[0x0a]), 400, "WriteRequest: truncated varint");
    assert_err(
        err_v1(&[0x0a, 0x05, 0x00]),
        400,
        "WriteRequest: field 1 declares 5 bytes but only 1 remain",
    );
    // timeseries as a varint
    assert_err(
        err_v1(&[0x08, 0x01]),
        400,
        "WriteRequest: field 1 has wire type varint",
    );
    // metadata as a fixed32
    assert_err(
        err_v1(&[0x1d, 0, 0, 0, 0]),
        400,
        "WriteRequest: field 3 has wire type fixed32",
    );
    // samples as a varint inside a series
    let mut ts = len_field(1, &lbl("__name__", "a").encode_to_vec());
    ts.extend(varint_field(2, 1));
    assert_err(
        err_v1(&len_field(1, &ts)),
        400,
        "series 0: field 2 has wire type varint",
    );
    // label name as a varint
    let ts = len_field(1, &varint_field(1, 3));
    assert_err(
        err_v1(&len_field(1, &ts)),
        400,
        "series 0: label: field 1 has wire type varint",
    );
    // field number 0, invalid wire type, stray end-group
    assert_err(err_v1(&[0x02, 0x00]), 400, "invalid field number");
    assert_err(err_v1(&[0x0e]), 400, "invalid wire type 6");
    assert_err(err_v1(&[0x0c]), 400, "unexpected end-group");
    // A tag over 32 bits, which Go would truncate to field 1.
    let mut raw = Vec::new();
    wire::put_varint(&mut raw, (1u64 << 35) | wire::tag(1, wire::WT_LEN));
    raw.push(0);
    assert_err(err_v1(&raw), 400, "invalid field number");
}

#[test]
fn v1_huge_length_is_not_allocated() {
    // A length of 2^62 for a series in a 12-byte body.
    let mut raw = vec![0x0a];
    wire::put_varint(&mut raw, 1 << 62);
    assert_err(err_v1(&raw), 400, "declares 4611686018427387904 bytes");
}

fn v2_req(symbols: &[&str], series: &[Vec<u32>]) -> Vec<u8> {
    pb2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: series
            .iter()
            .map(|r| pb2::TimeSeries {
                labels_refs: r.clone(),
                samples: vec![sample(1.0, 1)],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

#[test]
fn v2_errors() {
    let syms = ["", "__name__", "up", "job", "a", "zone"];
    assert_err(
        err_v2(&v2_req(&["x", "__name__", "up"], &[vec![1, 2]])),
        400,
        "symbols[0] must be the empty string, got \"x\"",
    );
    assert_err(
        err_v2(&v2_req(&[], &[vec![]])),
        400,
        "symbols is empty; symbols[0] must be the empty string",
    );
    assert_err(
        err_v2(&v2_req(&syms, &[vec![1, 2], vec![1, 6]])),
        400,
        "series 1: label ref 6 out of range (symbols has 6 entries)",
    );
    assert_err(
        err_v2(&v2_req(&syms, &[vec![1, 2, 3]])),
        400,
        "series 0: odd number of labels_refs (3)",
    );
    assert_err(
        err_v2(&v2_req(&syms, &[vec![1, 2, 5, 4, 3, 4]])),
        400,
        "series 0: labels not sorted (\"job\" after \"zone\")",
    );
    assert_err(
        err_v2(&v2_req(&syms, &[vec![1, 2, 3, 4, 3, 2]])),
        400,
        "series 0: duplicate label name \"job\"",
    );
    assert_err(
        err_v2(&v2_req(&syms, &[vec![0, 4, 1, 2]])),
        400,
        "series 0: empty label name",
    );
    assert_err(
        err_v2(&v2_req(&syms, &[vec![3, 4]])),
        400,
        "series 0: missing __name__ label",
    );
    // A series with the label names of the one before reuses its check; any other is checked
    // afresh, and refs are always checked.
    assert_err(
        err_v2(&v2_req(
            &syms,
            &[vec![1, 2, 3, 4], vec![1, 2, 3, 2], vec![3, 4, 1, 2]],
        )),
        400,
        "series 2: labels not sorted (\"__name__\" after \"job\")",
    );
    assert_err(
        err_v2(&v2_req(&syms, &[vec![1, 2, 3, 4], vec![1, 2, 3, 7]])),
        400,
        "series 1: label ref 7 out of range",
    );
    // Ref beyond u32: Go would truncate it to 1; we refuse it.
    let mut ts = Vec::new();
    let mut packed = Vec::new();
    wire::put_varint(&mut packed, (1u64 << 32) | 1);
    packed.push(2);
    ts.extend(len_field(1, &packed));
    let mut raw = Vec::new();
    for s in syms {
        raw.extend(len_field(4, s.as_bytes()));
    }
    raw.extend(len_field(5, &ts));
    assert_err(
        err_v2(&raw),
        400,
        "series 0: label ref 4294967297 out of range",
    );
}

#[test]
fn v2_malformed() {
    let mut base = Vec::new();
    for s in ["", "__name__", "up"] {
        base.extend(len_field(4, s.as_bytes()));
    }
    let with_series = |ts: &[u8]| {
        let mut r = base.clone();
        r.extend(len_field(5, ts));
        r
    };
    let mut bad_utf8 = base.clone();
    bad_utf8.extend(len_field(4, b"\xff"));
    assert_err(
        err_v2(&bad_utf8),
        400,
        "symbols[3] \"\u{fffd}\" is not valid UTF-8",
    );
    assert_err(
        err_v2(&v1_series(&[("__name__", "a")])),
        400,
        "field 1 is reserved in io.prometheus.write.v2.Request",
    );
    assert_err(
        err_v2(&with_series(&[0x0d, 1, 0, 0, 0])),
        400,
        "series 0: field 1 has wire type fixed32",
    );
    assert_err(
        err_v2(&with_series(&[0x0a, 0x02, 0x01, 0x80])),
        400,
        "series 0: labels_refs: truncated varint",
    );
    let mut ts = len_field(1, &[1, 2]);
    ts.extend(len_field(6, b"x"));
    assert_err(
        err_v2(&with_series(&ts)),
        400,
        "series 0: field 6 has wire type length-delimited",
    );
    let mut ts = len_field(1, &[1, 2]);
    ts.extend(varint_field(5, 1));
    assert_err(
        err_v2(&with_series(&ts)),
        400,
        "series 0: field 5 has wire type varint",
    );
    assert_err(
        err_v2(&[0x28, 0x01]),
        400,
        "Request: field 5 has wire type varint",
    );
    assert_err(
        err_v2(&[0x20, 0x01]),
        400,
        "Request: field 4 has wire type varint",
    );
    let good = v2_req(&["", "__name__", "up"], &[vec![1, 2]]);
    for cut in 1..good.len() {
        match validate_v2(&good[..cut]) {
            Ok(stats) => assert_eq!(stats.series, 0, "cut {cut}"),
            Err(e) => assert_eq!(err_v2(&good[..cut]), e),
        }
    }
}

#[test]
fn error_leaves_output_empty() {
    let mut out = vec![1, 2, 3];
    inject_v1(&v1_series(&[("job", "x")]), &set(&[("t", "t")]), &mut out).unwrap_err();
    assert!(out.is_empty());
    let mut out = vec![1, 2, 3];
    inject_v2(&[0x28, 0x01], &set(&[("t", "t")]), &mut out).unwrap_err();
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------------
// label sets, formats, snappy

#[test]
fn label_set_rules() {
    let s = LabelSet::new([("zone", "z"), ("cluster", "c"), ("cluster", "c")]).unwrap();
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        [("cluster", "c"), ("zone", "z")]
    );
    assert_eq!(s.get("zone"), Some("z"));
    assert_eq!(s.get("nope"), None);
    assert_eq!(s.len(), 2);
    for (bad, why) in [
        (vec![("", "v")], "is empty"),
        (vec![("1abc", "v")], "must match"),
        (vec![("a-b", "v")], "must match"),
        (vec![("__name__", "v")], "reserved"),
        (vec![("__tenant", "v")], "reserved"),
        (vec![("a", "")], "empty value"),
        (vec![("a", "1"), ("a", "2")], "given twice"),
    ] {
        let e = LabelSet::new(bad).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
        assert_eq!(e.status(), 400);
    }
    assert!(LabelSet::empty().is_empty());
    assert!(LabelSet::new(Vec::<(String, String)>::new())
        .unwrap()
        .is_empty());
}

#[test]
fn format_detection() {
    let ok = |ct, ce, v| detect_format(ct, ce, v).unwrap();
    assert_eq!(
        ok(
            Some("application/x-protobuf"),
            Some("snappy"),
            Some("0.1.0")
        ),
        Format::V1
    );
    assert_eq!(ok(None, None, None), Format::V1);
    assert_eq!(ok(Some(""), Some(""), Some("")), Format::V1);
    assert_eq!(
        ok(
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some("snappy"),
            None
        ),
        Format::V1
    );
    assert_eq!(
        ok(
            Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            Some("snappy"),
            Some("2.0.0")
        ),
        Format::V2
    );
    assert_eq!(
        ok(
            Some(
                "Application/X-Protobuf ; proto=\"io.prometheus.write.v2.Request\"; charset=utf-8"
            ),
            Some("SNAPPY"),
            None
        ),
        Format::V2
    );
    for (ct, ce, v, needle) in [
        (Some("application/json"), None, None, "Content-Type \"application/json\""),
        (Some("application/x-protobuf;proto=foo.Bar"), None, None, "foo.Bar"),
        (Some("application/x-protobuf;proto"), None, None, "Content-Type"),
        (
            Some("application/x-protobuf;proto=prometheus.WriteRequest;proto=prometheus.WriteRequest"),
            None,
            None,
            "Content-Type",
        ),
        (Some("application/x-protobuf"), Some("gzip"), None, "Content-Encoding \"gzip\""),
        (Some("application/x-protobuf"), Some("zstd"), None, "Content-Encoding"),
        (Some("application/x-protobuf"), None, Some("2.0.0"), "does not match prometheus.WriteRequest"),
        (
            Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            None,
            Some("0.1.0"),
            "does not match io.prometheus.write.v2.Request",
        ),
    ] {
        let e = detect_format(ct, ce, v).unwrap_err();
        assert_eq!(e.status(), 415);
        let msg = e.to_string();
        assert!(msg.contains(needle), "{msg}");
        assert!(msg.contains("supported: "), "{msg}");
    }
    assert_eq!(
        Format::V2.content_type(),
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    );
    assert_eq!(Format::V1.version(), "0.1.0");
}

#[test]
fn snappy_roundtrip_and_limits() {
    let (raw, _) = golden_v1();
    let body = compress(&raw).unwrap();
    assert_eq!(decompress(&body, raw.len()).unwrap(), raw);
    assert_eq!(
        decompress(&body, raw.len() - 1).unwrap_err(),
        RemoteWriteError::TooLarge {
            size: raw.len() as u64,
            limit: raw.len() as u64 - 1
        }
    );
    let mut buf = vec![9; 3];
    decompress_into(&body, 1 << 20, &mut buf).unwrap();
    assert_eq!(buf, raw);
    let mut cbuf = Vec::new();
    compress_into(&raw, &mut cbuf).unwrap();
    assert_eq!(cbuf, body);
    assert_eq!(
        decompress(&compress(&[]).unwrap(), 0).unwrap(),
        Vec::<u8>::new()
    );

    // Garbage and truncation are 400s.
    assert_eq!(decompress(&[], 100).unwrap_err().status(), 400);
    assert_eq!(decompress(&[0xff], 100).unwrap_err().status(), 400);
    assert_eq!(
        decompress(&body[..body.len() / 2], 1 << 20)
            .unwrap_err()
            .status(),
        400
    );
    let mut wrong_len = body.clone();
    wrong_len[0] = wrong_len[0].wrapping_sub(1);
    assert!(decompress(&wrong_len, 1 << 20).is_err());
}

#[test]
fn decompression_bomb_is_refused_before_allocating() {
    // Declares 1 GiB in 6 bytes.
    let mut body = Vec::new();
    wire::put_varint(&mut body, 1 << 30);
    body.extend([0x00, 0x00]);
    let e = decompress(&body, 64 << 20).unwrap_err();
    assert_eq!(
        e,
        RemoteWriteError::TooLarge {
            size: 1 << 30,
            limit: 64 << 20
        }
    );
    assert_eq!(e.status(), 413);
    // Under a generous cap the claim is still impossible for 6 bytes: 400, no 1 GiB buffer.
    let e = decompress(&body, usize::MAX).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("impossible"), "{e}");
    // A preamble claiming more than 2^64 is malformed.
    assert_eq!(
        decompress(&[0xff; 11], usize::MAX).unwrap_err().status(),
        400
    );
}

#[test]
fn snappy_ratio_bound_admits_real_worst_case() {
    // Highly repetitive input compresses close to the format's maximum ratio.
    let raw = vec![0u8; 1 << 20];
    let body = compress(&raw).unwrap();
    assert_eq!(decompress(&body, 1 << 20).unwrap(), raw);
}

#[test]
fn rewrite_body_end_to_end() {
    let (raw, expected) = golden_v1();
    let body = compress(&raw).unwrap();
    let r = rewrite_body(
        Format::V1,
        &body,
        &set(&[("tenant_id", "t1"), ("cluster", "c1")]),
        1 << 20,
    )
    .unwrap();
    assert_eq!(decompress(&r.body.unwrap(), 1 << 20).unwrap(), expected);
    assert_eq!(r.stats.series, 2);
    let r = rewrite_body(Format::V1, &body, &LabelSet::empty(), 1 << 20).unwrap();
    assert!(r.body.is_none());
    assert_eq!(r.stats.samples, 2);
    assert_eq!(
        rewrite_body(Format::V1, &body, &LabelSet::empty(), 10)
            .unwrap_err()
            .status(),
        413
    );
}

#[test]
fn short_runs_stop_where_the_general_reader_takes_over() {
    use wire::Reader;
    // Three fields with one-byte lengths (0, 5, 127), then one with a two-byte length.
    let mut buf = Vec::new();
    for len in [0u8, 5, 0x7f] {
        buf.extend([0x12, len]);
        buf.extend(vec![7u8; len as usize]);
    }
    let run_end = buf.len();
    buf.extend([0x12, 0x80, 0x01]);
    buf.extend(vec![7u8; 128]);
    let mut r = Reader::new(&buf);
    assert_eq!(r.skip_short_run(0x12), (3, 0, run_end));
    assert_eq!(r.skip_short_run(0x12), (0, run_end, run_end));
    let f = r.next_field().unwrap().unwrap();
    assert_eq!((f.num, f.start, f.data.len()), (2, run_end, 128));
    assert_eq!(r.skip_short_run(0x12), (0, buf.len(), buf.len()));
    // A length past the end is left to the general reader, which refuses it.
    let buf = [0x12, 0x01, 0x00, 0x12, 0x05, 0x00];
    let mut r = Reader::new(&buf);
    assert_eq!(r.skip_short_run(0x12), (1, 0, 3));
    assert!(r.next_field().is_err());
    // Another tag, or a tag with no length byte after it, is not part of a run.
    assert_eq!(Reader::new(&[0x1a, 0x00]).skip_short_run(0x12), (0, 0, 0));
    assert_eq!(Reader::new(&[0x12]).skip_short_run(0x12), (0, 0, 0));
}

#[test]
fn samples_with_long_encodings_are_counted_and_kept() {
    // Samples with one-byte lengths around one whose length takes two bytes (an unknown field
    // pads it), in v1 and in v2: all are counted and copied.
    let short = pb::Sample {
        value: 1.0,
        timestamp: 5,
    }
    .encode_to_vec();
    let mut long = short.clone();
    long.extend(len_field(15, &[9u8; 200]));
    let samples: Vec<u8> = [&short, &long, &short, &short]
        .iter()
        .flat_map(|s| len_field(2, s))
        .collect();
    let labels = set(&[("tenant_id", "t1")]);

    let mut series = Vec::new();
    for l in lbls(&[("__name__", "m"), ("job", "a")]) {
        series.extend(len_field(1, &l.encode_to_vec()));
    }
    series.extend(&samples);
    let raw = len_field(1, &series);
    let (out, stats) = inject_ok(Format::V1, &raw, &labels);
    assert_eq!(stats.samples, 4);
    let decoded = pb::WriteRequest::decode(out.as_slice()).unwrap();
    assert_eq!(decoded.timeseries[0].samples.len(), 4);
    assert!(
        contains(&out, &samples),
        "the samples are copied byte for byte"
    );
    assert_eq!(validate_v1(&raw).unwrap().samples, 4);

    let symbols: Vec<u8> = ["", "__name__", "m"]
        .iter()
        .flat_map(|s| len_field(4, s.as_bytes()))
        .collect();
    let mut series = len_field(1, &[1, 2]);
    series.extend(&samples);
    let mut raw = symbols;
    raw.extend(len_field(5, &series));
    let (out, stats) = inject_ok(Format::V2, &raw, &labels);
    assert_eq!(stats.samples, 4);
    assert!(contains(&out, &samples));
    assert_eq!(validate_v2(&raw).unwrap().samples, 4);
}

#[test]
fn rewrite_body_scratch_is_reused_and_large_buffers_are_released() {
    // A long body, then a short one, then a v2 body, all on this thread: each result must be
    // what a fresh decode produces, with nothing left over from the body before.
    let labels = set(&[("tenant_id", "t1")]);
    let mut long = Vec::new();
    for i in 0..400 {
        long.extend(v1_series(&[("__name__", "m"), ("i", &i.to_string())]));
    }
    let (short, expected_short) = golden_v1();
    let (v2, _) = golden_v2();
    for raw in [&long, &short, &long, &v2, &short] {
        let format = if raw == &v2 { Format::V2 } else { Format::V1 };
        let body = compress(raw).unwrap();
        let r = rewrite_body(format, &body, &labels, 1 << 24).unwrap();
        let (expected, stats) = inject_ok(format, raw, &labels);
        assert_eq!(decompress(&r.body.unwrap(), 1 << 24).unwrap(), expected);
        assert_eq!(r.stats, stats);
    }
    // The golden request with its golden labels comes out as the golden bytes.
    let golden_is_rewritten = || {
        let r = rewrite_body(
            Format::V1,
            &compress(&short).unwrap(),
            &set(&[("tenant_id", "t1"), ("cluster", "c1")]),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            decompress(&r.body.unwrap(), 1 << 20).unwrap(),
            expected_short
        );
    };
    golden_is_rewritten();
    assert!(scratch_capacity() > 0, "a small body's buffers are kept");

    // A body over the keep limit is rewritten, and its buffers do not stay with the thread.
    // Each `v1_series` request holds two series.
    let padded = v1_series(&[("__name__", "m"), ("pad", &"x".repeat(200))]);
    let copies = KEEP_SCRATCH_BYTES / padded.len() + 1;
    let huge = padded.repeat(copies);
    let r = rewrite_body(Format::V1, &compress(&huge).unwrap(), &labels, 1 << 24).unwrap();
    assert_eq!(r.stats.series as usize, 2 * copies);
    assert_eq!(scratch_capacity(), 0);
    // An error leaves the thread's scratch usable.
    assert_eq!(
        rewrite_body(Format::V1, b"\xff", &labels, 1 << 20)
            .unwrap_err()
            .status(),
        400
    );
    golden_is_rewritten();
}

// ---------------------------------------------------------------------------------------------
// property tests

#[derive(Debug, Clone)]
struct ModelSeries {
    labels: BTreeMap<String, String>,
    samples: usize,
    histograms: usize,
    exemplars: usize,
    unknown: bool,
}

const CLIENT_NAMES: &[&str] = &[
    "a",
    "cluster",
    "instance",
    "job",
    "tenant_id",
    "zone",
    "é_utf8",
];
const INJECT_NAMES: &[&str] = &["a", "cluster", "job", "tenant_id", "zz"];

fn series_strategy() -> impl Strategy<Value = ModelSeries> {
    (
        "[a-z_:]{1,12}",
        prop::collection::btree_map(prop::sample::select(CLIENT_NAMES), "\\PC{0,6}", 0..5),
        0usize..3,
        0usize..2,
        0usize..2,
        any::<bool>(),
    )
        .prop_map(|(name, labels, samples, histograms, exemplars, unknown)| {
            let mut labels: BTreeMap<String, String> = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            labels.insert("__name__".into(), name);
            ModelSeries {
                labels,
                samples,
                histograms,
                exemplars,
                unknown,
            }
        })
}

/// Like [`series_strategy`], with ASCII names and values only (longer names too), so the
/// series have the shape of the one-pass v1 path.
fn ascii_series_strategy() -> impl Strategy<Value = ModelSeries> {
    (
        "[a-z_:]{1,12}",
        prop::collection::btree_map("[a-z_]{1,14}", "[ -~]{0,20}", 0..8),
        0usize..3,
        0usize..2,
    )
        .prop_map(|(name, labels, samples, exemplars)| {
            let mut labels: BTreeMap<String, String> = labels;
            labels.insert("__name__".into(), name);
            ModelSeries {
                labels,
                samples,
                histograms: 0,
                exemplars,
                unknown: false,
            }
        })
}

fn inject_strategy() -> impl Strategy<Value = BTreeMap<&'static str, String>> {
    prop::collection::btree_map(
        prop::sample::select(INJECT_NAMES),
        "[a-z0-9]{1,5}|\\PC{1,4}",
        0..4,
    )
}

fn to_label_set(m: &BTreeMap<&'static str, String>) -> LabelSet {
    LabelSet::new(m.iter().map(|(k, v)| (k.to_string(), v.clone()))).unwrap()
}

fn expected_labels(s: &ModelSeries, inj: &BTreeMap<&'static str, String>) -> Vec<(String, String)> {
    let mut m = s.labels.clone();
    for (k, v) in inj {
        m.insert(k.to_string(), v.clone());
    }
    m.into_iter().collect()
}

fn build_v1(series: &[ModelSeries]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let ts = pb::TimeSeries {
            labels: s.labels.iter().map(|(k, v)| lbl(k, v)).collect(),
            samples: (0..s.samples).map(|j| sample(j as f64, j as i64)).collect(),
            exemplars: (0..s.exemplars)
                .map(|j| pb::Exemplar {
                    labels: lbls(&[("trace_id", "t")]),
                    value: j as f64,
                    timestamp: i as i64,
                })
                .collect(),
            histograms: (0..s.histograms).map(|j| histogram(j as i64)).collect(),
        };
        let mut b = ts.encode_to_vec();
        if s.unknown {
            b.extend(varint_field(100, i as u64));
        }
        raw.extend(len_field(1, &b));
    }
    raw
}

fn build_v2(series: &[ModelSeries]) -> Vec<u8> {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut index: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
    let mut intern = |s: &str| -> u32 {
        if let Some(&i) = index.get(s) {
            return i;
        }
        symbols.push(s.to_string());
        index.insert(s.to_string(), symbols.len() as u32 - 1);
        symbols.len() as u32 - 1
    };
    let mut tss = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let labels_refs = s
            .labels
            .iter()
            .flat_map(|(k, v)| [intern(k), intern(v)])
            .collect();
        let trace = [intern("trace_id"), intern("t")];
        let help = intern("help text");
        tss.push(pb2::TimeSeries {
            labels_refs,
            samples: (0..s.samples).map(|j| sample(j as f64, j as i64)).collect(),
            histograms: (0..s.histograms).map(|j| histogram(j as i64)).collect(),
            exemplars: (0..s.exemplars)
                .map(|j| pb2::Exemplar {
                    labels_refs: trace.to_vec(),
                    value: j as f64,
                    timestamp: i as i64,
                })
                .collect(),
            metadata: s.unknown.then_some(pb2::Metadata {
                r#type: 2,
                help_ref: help,
                unit_ref: 0,
            }),
            created_timestamp: i as i64,
        });
    }
    pb2::Request {
        symbols,
        timeseries: tss,
    }
    .encode_to_vec()
}

fn check_v1(series: &[ModelSeries], inj: &BTreeMap<&'static str, String>) {
    let raw = build_v1(series);
    let labels = to_label_set(inj);
    same_as_general_v1(&raw, &labels);
    let (out, stats) = inject_ok(Format::V1, &raw, &labels);
    assert_eq!(stats.series, series.len() as u64);
    assert_eq!(
        stats.samples,
        series.iter().map(|s| s.samples as u64).sum::<u64>()
    );
    assert_eq!(
        stats.histograms,
        series.iter().map(|s| s.histograms as u64).sum::<u64>()
    );
    assert_eq!(
        stats.exemplars,
        series.iter().map(|s| s.exemplars as u64).sum::<u64>()
    );
    let before = pb::WriteRequest::decode(&raw[..]).unwrap();
    let after = pb::WriteRequest::decode(&out[..]).unwrap();
    assert_eq!(after.timeseries.len(), series.len());
    for ((s, b), a) in series.iter().zip(&before.timeseries).zip(&after.timeseries) {
        let got: Vec<(String, String)> = a
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        assert_eq!(got, expected_labels(s, inj));
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.exemplars, b.exemplars);
        assert_eq!(a.histograms, b.histograms);
    }
    for (i, s) in series.iter().enumerate() {
        if s.unknown {
            assert!(contains(&out, &varint_field(100, i as u64)));
        }
    }
    assert_eq!(inject_ok(Format::V1, &out, &labels).0, out, "idempotent");
}

fn check_v2(series: &[ModelSeries], inj: &BTreeMap<&'static str, String>) {
    let raw = build_v2(series);
    let labels = to_label_set(inj);
    let (out, stats) = inject_ok(Format::V2, &raw, &labels);
    assert_eq!(stats.series, series.len() as u64);
    assert_eq!(
        stats.samples,
        series.iter().map(|s| s.samples as u64).sum::<u64>()
    );
    assert_eq!(
        stats.histograms,
        series.iter().map(|s| s.histograms as u64).sum::<u64>()
    );
    assert_eq!(
        stats.exemplars,
        series.iter().map(|s| s.exemplars as u64).sum::<u64>()
    );
    let before = pb2::Request::decode(&raw[..]).unwrap();
    let after = pb2::Request::decode(&out[..]).unwrap();
    assert_eq!(after.symbols[..before.symbols.len()], before.symbols[..]);
    assert_eq!(after.timeseries.len(), series.len());
    for ((s, b), a) in series.iter().zip(&before.timeseries).zip(&after.timeseries) {
        assert_eq!(
            resolve(&after.symbols, &a.labels_refs),
            expected_labels(s, inj)
        );
        let strip = |t: &pb2::TimeSeries| pb2::TimeSeries {
            labels_refs: vec![],
            ..t.clone()
        };
        assert_eq!(strip(a), strip(b));
    }
    assert_eq!(inject_ok(Format::V2, &out, &labels).0, out, "idempotent");
}

fn one_sample_series(labels: BTreeMap<String, String>) -> ModelSeries {
    ModelSeries {
        labels,
        samples: 1,
        histograms: 0,
        exemplars: 0,
        unknown: false,
    }
}

#[test]
fn series_sharing_label_names_are_each_injected() {
    let series: Vec<ModelSeries> = (0..4)
        .map(|i| {
            one_sample_series(
                [
                    ("__name__", format!("metric_{}", i % 2)),
                    ("job", "node".into()),
                    ("tenant_id", format!("spoofed-{i}")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            )
        })
        .collect();
    let inj = BTreeMap::from([("cluster", "c".to_string()), ("tenant_id", "t".to_string())]);
    check_v1(&series, &inj);
    check_v2(&series, &inj);
}

/// The one-pass v1 path must write exactly what the general path writes, or leave the series
/// to it: same bytes, same counts, same error; and validation alone must agree with both.
fn same_as_general_v1(data: &[u8], labels: &LabelSet) {
    let (mut fast, mut general) = (Vec::new(), Vec::new());
    let a = inject_v1(data, labels, &mut fast);
    let b = v1::inject_v1_general(data, labels, &mut general);
    assert_eq!(a, b);
    assert_eq!(fast, general);
    let v = validate_v1(data);
    assert_eq!(v, v1::validate_v1_general(data));
    // Injection accepts what validation accepts and counts the same items. (An error may be
    // worded after another fault: injection first counts the series of the whole request.)
    assert_eq!(v.is_ok(), a.is_ok(), "validation and injection disagree");
    if let (Ok(v), Ok(a)) = (&v, &a) {
        assert_eq!(v, a);
    }
}

fn no_panic(data: &[u8]) {
    let labels = set(&[("cluster", "c"), ("tenant_id", "t")]);
    same_as_general_v1(data, &labels);
    let mut out = Vec::new();
    for f in [Format::V1, Format::V2] {
        let v = validate(f, data);
        let r = inject(f, data, &labels, &mut out);
        assert_eq!(v.is_ok(), r.is_ok(), "validate and inject disagree");
        if let Ok(stats) = r {
            // Whatever we accept, our output is itself valid and carries the same items.
            assert_eq!(validate(f, &out).unwrap(), stats);
        }
    }
    let _ = decompress(data, 1 << 16);
}

proptest! {
    #[test]
    fn prop_v1_matches_model(
        series in prop::collection::vec(series_strategy(), 0..6),
        inj in inject_strategy(),
    ) {
        check_v1(&series, &inj);
    }

    #[test]
    fn prop_v2_matches_model(
        series in prop::collection::vec(series_strategy(), 0..6),
        inj in inject_strategy(),
    ) {
        check_v2(&series, &inj);
    }

    /// ASCII series take the one-pass v1 path; edited ones probe where it must give up.
    #[test]
    fn prop_v1_one_pass_matches_general_path(
        series in prop::collection::vec(ascii_series_strategy(), 1..5),
        inj in inject_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..3),
    ) {
        let mut raw = build_v1(&series);
        for (at, byte, op) in edits {
            let i = at.index(raw.len());
            match op {
                0 => raw[i] = byte,
                1 => raw.insert(i, byte),
                2 => { raw.remove(i); }
                _ => raw[i] ^= 0x80,
            }
        }
        same_as_general_v1(&raw, &to_label_set(&inj));
    }

    #[test]
    fn prop_random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        no_panic(&data);
    }

    #[test]
    fn prop_mutated_bodies_never_panic(
        series in prop::collection::vec(series_strategy(), 1..4),
        v2 in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut raw = if v2 { build_v2(&series) } else { build_v1(&series) };
        for (at, byte, op) in edits {
            if raw.is_empty() { break; }
            let i = at.index(raw.len());
            match op {
                0 => raw[i] = byte,
                1 => raw.insert(i, byte),
                _ => { raw.remove(i); }
            }
        }
        no_panic(&raw);
        no_panic(&compress(&raw).unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// throughput (run with: cargo test --release -- --ignored --nocapture throughput)

#[test]
#[ignore]
fn throughput() {
    use std::time::Instant;
    let series: Vec<ModelSeries> = (0..2000)
        .map(|i| {
            one_sample_series(
                (0..9)
                    .map(|j| (format!("label_{j}"), format!("value_{i}_{j}")))
                    .chain([("__name__".to_string(), format!("metric_{}", i % 50))])
                    .collect(),
            )
        })
        .collect();
    let labels = set(&[("tenant_id", "team-a"), ("cluster", "prod-eu-1")]);
    for (name, raw) in [("v1", build_v1(&series)), ("v2", build_v2(&series))] {
        let format = if name == "v1" { Format::V1 } else { Format::V2 };
        let body = compress(&raw).unwrap();
        // Best of several short rounds: the machine is shared, the minimum is the signal.
        let best = |f: &mut dyn FnMut()| {
            (0..15)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..20 {
                        f();
                    }
                    t.elapsed() / 20
                })
                .min()
                .unwrap()
        };
        let (mut dec, mut enc, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let snappy = best(&mut || {
            decompress_into(&body, 64 << 20, &mut dec).unwrap();
            compress_into(&dec, &mut enc).unwrap();
        });
        let inj = best(&mut || {
            inject(format, &raw, &labels, &mut out).unwrap();
        });
        let val = best(&mut || {
            validate(format, &raw).unwrap();
        });
        let iters = 1;
        let mb = (raw.len() * iters) as f64 / 1e6;
        println!(
            "{name}: body {} B decoded / {} B snappy; decompress+compress {:.0} MB/s, inject {:.0} MB/s ({:.0}% of snappy time), validate {:.0} MB/s",
            raw.len(),
            body.len(),
            mb / snappy.as_secs_f64(),
            mb / inj.as_secs_f64(),
            100.0 * inj.as_secs_f64() / snappy.as_secs_f64(),
            mb / val.as_secs_f64(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// splitting by the tenant label (writers with `write_routing: by_label`)

fn route<'a>(
    default_tenant: Option<&'a str>,
    allowed: &'a (dyn Fn(&str) -> bool + Sync),
) -> Routing<'a> {
    Routing {
        label: "tenant_id",
        default_tenant,
        allowed,
    }
}

fn v1_ts(labels: &[(&str, &str)], v: f64) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: lbls(labels),
        samples: vec![sample(v, 1)],
        ..Default::default()
    }
}

#[test]
fn v1_split_sends_each_series_to_the_tenant_its_label_names() {
    let meta = pb::MetricMetadata {
        r#type: 1,
        metric_family_name: "up".into(),
        help: "h".into(),
        unit: String::new(),
    };
    let req = pb::WriteRequest {
        timeseries: vec![
            v1_ts(&[("__name__", "up"), ("tenant_id", "b")], 1.0),
            v1_ts(&[("__name__", "up"), ("job", "x")], 2.0),
            v1_ts(&[("__name__", "up"), ("tenant_id", "a")], 3.0),
            v1_ts(&[("__name__", "up"), ("tenant_id", "b"), ("z", "1")], 4.0),
            v1_ts(&[("__name__", "up"), ("tenant_id", "")], 5.0),
        ],
        metadata: vec![meta.clone()],
    };
    let raw = req.encode_to_vec();
    let allowed = |t: &str| ["a", "b", "dflt"].contains(&t);
    let parts = split_by_label(Format::V1, &raw, &route(Some("dflt"), &allowed)).unwrap();
    let got: Vec<(String, Vec<f64>, usize)> = parts
        .iter()
        .map(|p| {
            let w = pb::WriteRequest::decode(p.decoded.as_slice()).unwrap();
            let values = w.timeseries.iter().map(|s| s.samples[0].value).collect();
            (p.tenant.clone(), values, w.metadata.len())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".to_string(), vec![3.0], 1),
            ("b".to_string(), vec![1.0, 4.0], 1),
            // No label, or an empty one (Prometheus: the same thing): the default tenant.
            ("dflt".to_string(), vec![2.0, 5.0], 1),
        ]
    );
    // Every sample is in exactly one part; series keep their bytes.
    for p in &parts {
        validate(Format::V1, &p.decoded).unwrap();
    }
    let b = pb::WriteRequest::decode(parts[1].decoded.as_slice()).unwrap();
    assert_eq!(b.timeseries[1], req.timeseries[3]);
}

#[test]
fn v1_split_refuses_a_series_of_a_tenant_the_writer_may_not_write() {
    let raw = pb::WriteRequest {
        timeseries: vec![
            v1_ts(&[("__name__", "ok"), ("tenant_id", "a")], 1.0),
            v1_ts(&[("__name__", "cpu"), ("tenant_id", "mallory")], 1.0),
        ],
        metadata: vec![],
    }
    .encode_to_vec();
    let allowed = |t: &str| t == "a";
    let e = split_by_label(Format::V1, &raw, &route(Some("a"), &allowed)).unwrap_err();
    assert_err(e, 400, "series 1 (\"cpu\") has tenant_id=\"mallory\"");
}

#[test]
fn v1_split_without_default_refuses_unlabelled_series_and_empty_bodies() {
    let allowed = |_: &str| true;
    let raw = pb::WriteRequest {
        timeseries: vec![v1_ts(&[("__name__", "lost")], 1.0)],
        metadata: vec![],
    }
    .encode_to_vec();
    let e = split_by_label(Format::V1, &raw, &route(None, &allowed)).unwrap_err();
    assert_err(e, 400, "series 0 (\"lost\") has no \"tenant_id\" label");
    let e = split_by_label(Format::V1, &[], &route(None, &allowed)).unwrap_err();
    assert_err(e, 400, "no series to route");
    // With a default tenant, a body without series (metadata only) goes there whole.
    let parts = split_by_label(Format::V1, &[], &route(Some("d"), &allowed)).unwrap();
    assert_eq!(
        parts,
        vec![RoutedPart {
            tenant: "d".into(),
            decoded: vec![]
        }]
    );
}

#[test]
fn v2_split_keeps_the_symbol_table_in_every_part() {
    // symbols: "", __name__, up, tenant_id, a, b, job, x
    let symbols = ["", "__name__", "up", "tenant_id", "a", "b", "job", "x"];
    let raw = v2_req(
        &symbols,
        &[vec![1, 2, 3, 5], vec![1, 2, 6, 7], vec![1, 2, 3, 4]],
    );
    let allowed = |t: &str| t == "a" || t == "b" || t == "d";
    let parts = split_by_label(Format::V2, &raw, &route(Some("d"), &allowed)).unwrap();
    let tenants: Vec<&str> = parts.iter().map(|p| p.tenant.as_str()).collect();
    assert_eq!(tenants, ["a", "b", "d"]);
    for (p, want) in parts.iter().zip([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 6, 7]]) {
        validate(Format::V2, &p.decoded).unwrap();
        let r = pb2::Request::decode(p.decoded.as_slice()).unwrap();
        assert_eq!(r.symbols, symbols);
        assert_eq!(r.timeseries.len(), 1);
        assert_eq!(r.timeseries[0].labels_refs, want);
    }
    // Each part injected with its tenant's labels: the series carries its own tenant.
    let (out, _) = inject_ok(Format::V2, &parts[1].decoded, &set(&[("tenant_id", "b")]));
    let r = pb2::Request::decode(out.as_slice()).unwrap();
    assert_eq!(
        resolve(&r.symbols, &r.timeseries[0].labels_refs),
        [("__name__", "up"), ("tenant_id", "b")].map(|(n, v)| (n.to_string(), v.to_string()))
    );
}

#[test]
fn v2_split_refuses_references_outside_the_table() {
    let raw = v2_req(&["", "__name__", "up"], &[vec![1, 2, 9, 2]]);
    let allowed = |_: &str| true;
    let e = split_by_label(Format::V2, &raw, &route(Some("d"), &allowed)).unwrap_err();
    assert_err(e, 400, "outside the symbol table");
}

proptest! {
    /// Any split of a valid v1 body: every series lands in exactly one part, in the part its
    /// label names, and the parts are valid bodies.
    #[test]
    fn v1_split_partitions_the_series(
        tenants in proptest::collection::vec(proptest::option::of(0u8..4), 0..24)
    ) {
        let series: Vec<pb::TimeSeries> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.map(|t| format!("t{t}"));
                let mut labels = vec![("__name__", "m")];
                if let Some(t) = &t {
                    labels.push(("tenant_id", t.as_str()));
                }
                v1_ts(&labels, i as f64)
            })
            .collect();
        let raw = pb::WriteRequest { timeseries: series, metadata: vec![] }.encode_to_vec();
        let allowed = |_: &str| true;
        let parts = split_by_label(Format::V1, &raw, &route(Some("t0"), &allowed)).unwrap();
        let mut seen = Vec::new();
        for p in &parts {
            validate(Format::V1, &p.decoded).unwrap();
            let w = pb::WriteRequest::decode(p.decoded.as_slice()).unwrap();
            for s in &w.timeseries {
                let i = s.samples[0].value as usize;
                let want = tenants[i].map_or("t0".to_string(), |t| format!("t{t}"));
                prop_assert_eq!(&p.tenant, &want);
                seen.push(i);
            }
        }
        seen.sort();
        prop_assert_eq!(seen, (0..tenants.len()).collect::<Vec<_>>());
    }
}
