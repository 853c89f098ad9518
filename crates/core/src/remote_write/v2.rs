//! Remote write 2.0, `io.prometheus.write.v2.Request` (prompb/io/prometheus/write/v2/types.proto):
//!
//! ```text
//! Request    { reserved 1 to 3; repeated string symbols = 4; repeated TimeSeries timeseries = 5; }
//! TimeSeries { repeated uint32 labels_refs = 1; repeated Sample samples = 2;
//!              repeated Histogram histograms = 3; repeated Exemplar exemplars = 4;
//!              Metadata metadata = 5; int64 created_timestamp = 6; }
//! ```
//!
//! Injection appends the injected strings to the symbol table (reusing an existing equal
//! symbol when there is one) and never reorders it, so every existing reference — in labels,
//! exemplars and metadata — keeps its meaning.

use super::error::RemoteWriteError;
use super::labels::LabelSet;
use super::validate::WriteStats;
use super::validate::{
    cmp_bytes, copy_ranges, invalid_series, is_utf8, malformed, push_range, ranges_len, show,
    wrong_wire, LabelChecker,
};
use super::wire::{
    len_field_size, put_len_header, put_varint, read_varint, varint_len, Field, Reader, WT_LEN,
    WT_VARINT,
};
use std::cmp::Ordering;

const REQ_SYMBOLS: u32 = 4;
const REQ_TIMESERIES: u32 = 5;
const TS_LABELS_REFS: u32 = 1;
const TS_SAMPLES: u32 = 2;
const TS_HISTOGRAMS: u32 = 3;
const TS_EXEMPLARS: u32 = 4;
const TS_METADATA: u32 = 5;
const TS_CREATED_TIMESTAMP: u32 = 6;
/// The tag byte of `samples` (field 2, length-delimited).
const SAMPLE_TAG: u8 = (TS_SAMPLES as u8) << 3 | WT_LEN;

/// Validates a decompressed `io.prometheus.write.v2.Request` and counts what it carries.
pub fn validate_v2(decoded: &[u8]) -> Result<WriteStats, RemoteWriteError> {
    run(decoded, &LabelSet::empty(), None)
}

/// Writes `decoded` with `labels` merged into every series to `out` (cleared first; also left
/// empty on error).
///
/// New symbols are written right after the last existing `symbols` field; each series is
/// written as one packed `labels_refs` field (client pairs and injected pairs in name order,
/// an injected label replacing a client label of the same name), then its other fields in
/// their original order. Other top-level fields keep their order and bytes. With an empty
/// `labels`, or a request without series, this validates and copies `decoded` unchanged.
pub fn inject_v2(
    decoded: &[u8],
    labels: &LabelSet,
    out: &mut Vec<u8>,
) -> Result<WriteStats, RemoteWriteError> {
    out.clear();
    if labels.is_empty() {
        let stats = validate_v2(decoded)?;
        out.extend_from_slice(decoded);
        return Ok(stats);
    }
    let result = run(decoded, labels, Some(out));
    if result.is_err() {
        out.clear();
    }
    result
}

fn next_field<'a>(
    r: &mut Reader<'a>,
    context: impl Fn() -> String,
) -> Result<Option<Field<'a>>, RemoteWriteError> {
    r.next_field().map_err(|e| malformed(context(), e))
}

/// The symbol table: each symbol as `(offset, length)` into the decoded body. u32 keeps the
/// table at most 4x the body (a symbol takes at least 2 bytes on the wire).
struct Symbols<'a> {
    body: &'a [u8],
    table: Vec<(u32, u32)>,
}

impl<'a> Symbols<'a> {
    #[inline]
    fn get(&self, i: u32) -> Option<&'a [u8]> {
        let &(start, len) = self.table.get(i as usize)?;
        let start = start as usize;
        self.body.get(start..start + len as usize)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    /// Index of an existing symbol equal to `s`. A linear scan, made cheap by rejecting on
    /// length and first byte before comparing (tens of microseconds for 100k symbols).
    fn find(&self, s: &[u8]) -> Option<u32> {
        let len = u32::try_from(s.len()).ok()?;
        let first = *s.first()?;
        self.table
            .iter()
            .position(|&(start, l)| {
                l == len
                    && self.body.get(start as usize) == Some(&first)
                    && self.body.get(start as usize..(start + l) as usize) == Some(s)
            })
            .map(|i| i as u32)
    }
}

/// What the first pass learns about the request.
struct Layout<'a> {
    symbols: Symbols<'a>,
    series: usize,
    /// Offset just past the last `symbols` field: where new symbols go.
    symbols_end: usize,
}

fn scan_top(decoded: &[u8]) -> Result<Layout<'_>, RemoteWriteError> {
    if u32::try_from(decoded.len()).is_err() {
        return Err(RemoteWriteError::TooLarge {
            size: decoded.len() as u64,
            limit: u32::MAX as u64,
        });
    }
    let mut symbols = Symbols {
        body: decoded,
        table: Vec::new(),
    };
    let mut series = 0;
    let mut symbols_end = 0;
    let mut r = Reader::new(decoded);
    while let Some(f) = next_field(&mut r, || "Request".into())? {
        match f.num {
            REQ_SYMBOLS => {
                if f.wire != WT_LEN {
                    return Err(wrong_wire("Request", f.num, f.wire));
                }
                if !is_utf8(f.data) {
                    return Err(RemoteWriteError::Invalid(format!(
                        "symbols[{}] {} is not valid UTF-8",
                        symbols.len(),
                        show(f.data)
                    )));
                }
                // Offsets fit: the whole body is under 4 GiB (checked above).
                let start = (f.end - f.data.len()) as u32;
                symbols.table.push((start, f.data.len() as u32));
                symbols_end = f.end;
            }
            REQ_TIMESERIES => {
                if f.wire != WT_LEN {
                    return Err(wrong_wire("Request", f.num, f.wire));
                }
                series += 1;
            }
            1..=3 => {
                return Err(RemoteWriteError::Invalid(format!(
                    "field {} is reserved in io.prometheus.write.v2.Request (a remote write 1.0 \
                     body sent with the 2.0 Content-Type?)",
                    f.num
                )))
            }
            _ => {}
        }
    }
    match symbols.get(0) {
        Some([]) => {}
        Some(first) => {
            return Err(RemoteWriteError::Invalid(format!(
                "symbols[0] must be the empty string, got {}",
                show(first)
            )))
        }
        None if series > 0 => {
            return Err(RemoteWriteError::Invalid(
                "symbols is empty; symbols[0] must be the empty string".into(),
            ))
        }
        None => {}
    }
    Ok(Layout {
        symbols,
        series,
        symbols_end,
    })
}

/// An injected label as symbol references.
struct Injected<'l> {
    name: &'l [u8],
    name_ref: u32,
    value_ref: u32,
}

/// Per-request scratch reused by every series.
#[derive(Default)]
struct Scratch<'a> {
    refs: Vec<u32>,
    /// Label names of the current series (resolved once, for the check and the merge).
    names: Vec<&'a [u8]>,
    /// The name refs of the last series whose names were checked, and how its pairs merge
    /// with the injected ones. Series of one request mostly share their label names (one
    /// scrape target, one metric family), and both the check and the merge depend on the
    /// names alone, so a series with the same name refs reuses them.
    checked_names: Vec<u32>,
    plan: Vec<Step>,
    merged: Vec<u32>,
    others: Vec<(usize, usize)>,
}

/// One pair of a merged `labels_refs`.
#[derive(Clone, Copy)]
enum Step {
    /// The client's pair `i`.
    Client(usize),
    /// Injected label `j`.
    Injected(usize),
}

fn run<'l>(
    decoded: &[u8],
    labels: &'l LabelSet,
    mut out: Option<&mut Vec<u8>>,
) -> Result<WriteStats, RemoteWriteError> {
    let layout = scan_top(decoded)?;
    if layout.series == 0 {
        // Nothing references the injected labels: leave the request as it is.
        let stats = WriteStats::default();
        if let Some(out) = out {
            out.extend_from_slice(decoded);
        }
        return Ok(stats);
    }

    // Resolve the injected strings to symbol refs: existing symbols first, then new ones.
    let mut injected = Vec::with_capacity(labels.len());
    let mut new_symbols: Vec<&'l str> = Vec::new();
    if out.is_some() {
        let base = layout.symbols.len();
        let mut resolve = |s: &'l str| -> u32 {
            if let Some(i) = layout.symbols.find(s.as_bytes()) {
                return i;
            }
            if let Some(i) = new_symbols.iter().position(|n| *n == s) {
                return (base + i) as u32;
            }
            new_symbols.push(s);
            (base + new_symbols.len() - 1) as u32
        };
        for (name, value) in labels.iter() {
            let name_ref = resolve(name);
            let value_ref = resolve(value);
            injected.push(Injected {
                name: name.as_bytes(),
                name_ref,
                value_ref,
            });
        }
    }

    if let Some(out) = out.as_deref_mut() {
        let new_symbols_len: usize = new_symbols
            .iter()
            .map(|s| len_field_size(REQ_SYMBOLS, s.len()))
            .sum();
        let per_series: usize = injected
            .iter()
            .map(|i| varint_len(i.name_ref.into()) + varint_len(i.value_ref.into()))
            .sum::<usize>()
            + 10;
        let growth = layout.series.saturating_mul(per_series).min(decoded.len());
        out.reserve(decoded.len() + new_symbols_len + growth + 64);
    }

    let mut stats = WriteStats::default();
    let mut scratch = Scratch::default();
    // Start of the run of top-level fields not yet copied: runs (the symbol table, above all)
    // are copied whole, with the new symbols spliced in after the last existing one.
    let mut pending = 0;
    let copy_run = |out: &mut Vec<u8>, start: usize, end: usize| {
        let at = layout.symbols_end;
        if start < at && at <= end {
            out.extend_from_slice(decoded.get(start..at).unwrap_or_default());
            for s in &new_symbols {
                put_len_header(out, REQ_SYMBOLS, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            out.extend_from_slice(decoded.get(at..end).unwrap_or_default());
        } else {
            out.extend_from_slice(decoded.get(start..end).unwrap_or_default());
        }
    };
    let mut r = Reader::new(decoded);
    while let Some(f) = next_field(&mut r, || "Request".into())? {
        if f.num == REQ_TIMESERIES {
            if let Some(out) = out.as_deref_mut() {
                copy_run(out, pending, f.start);
            }
            pending = f.end;
            series(
                stats.series,
                f.data,
                &layout.symbols,
                &injected,
                &mut scratch,
                out.as_deref_mut(),
                &mut stats,
            )?;
            stats.series += 1;
        }
    }
    if let Some(out) = out {
        copy_run(out, pending, decoded.len());
    }
    Ok(stats)
}

fn series<'a>(
    idx: u64,
    data: &[u8],
    symbols: &Symbols<'a>,
    injected: &[Injected<'_>],
    s: &mut Scratch<'a>,
    out: Option<&mut Vec<u8>>,
    stats: &mut WriteStats,
) -> Result<(), RemoteWriteError> {
    s.refs.clear();
    s.others.clear();
    let ctx = || format!("series {idx}");
    let mut r = Reader::new(data);
    loop {
        let (samples, start, end) = r.skip_short_run(SAMPLE_TAG);
        if samples > 0 {
            stats.samples += samples;
            push_range(&mut s.others, start, end);
        }
        let Some(f) = next_field(&mut r, ctx)? else {
            break;
        };
        let want = match f.num {
            TS_LABELS_REFS => {
                match f.wire {
                    // Packed (what every sender does) ...
                    WT_LEN => {
                        let mut pos = 0;
                        while pos < f.data.len() {
                            let v = read_varint(f.data, &mut pos).map_err(|e| {
                                malformed(format_args!("series {idx}: labels_refs"), e)
                            })?;
                            s.refs.push(ref_u32(idx, v, symbols)?);
                        }
                    }
                    // ... or unpacked, which decoders must accept too.
                    WT_VARINT => s.refs.push(ref_u32(idx, f.value, symbols)?),
                    w => return Err(wrong_wire(ctx(), f.num, w)),
                }
                continue;
            }
            TS_SAMPLES => {
                stats.samples += 1;
                WT_LEN
            }
            TS_HISTOGRAMS => {
                stats.histograms += 1;
                WT_LEN
            }
            TS_EXEMPLARS => {
                stats.exemplars += 1;
                WT_LEN
            }
            TS_METADATA => WT_LEN,
            TS_CREATED_TIMESTAMP => WT_VARINT,
            _ => f.wire,
        };
        if f.wire != want {
            return Err(wrong_wire(ctx(), f.num, f.wire));
        }
        push_range(&mut s.others, f.start, f.end);
    }

    if !s.refs.len().is_multiple_of(2) {
        return Err(invalid_series(
            idx,
            format_args!("odd number of labels_refs ({})", s.refs.len()),
        ));
    }
    let same_names = s.refs.len() == 2 * s.checked_names.len()
        && s.refs.iter().step_by(2).eq(s.checked_names.iter());
    if !same_names {
        let mut checker = LabelChecker::new();
        s.names.clear();
        for pair in s.refs.chunks_exact(2) {
            // In range: checked by ref_u32.
            let name = symbols.get(pair[0]).unwrap_or_default();
            checker.push(idx, name)?;
            s.names.push(name);
        }
        checker.finish(idx)?;
        s.checked_names.clear();
        s.checked_names.extend(s.refs.iter().step_by(2));
        s.plan.clear();
        plan(&s.names, injected, &mut s.plan);
    }

    let Some(out) = out else { return Ok(()) };
    s.merged.clear();
    for step in &s.plan {
        match *step {
            Step::Client(i) => {
                s.merged
                    .extend_from_slice(s.refs.get(2 * i..2 * i + 2).unwrap_or_default());
            }
            Step::Injected(j) => {
                if let Some(inj) = injected.get(j) {
                    s.merged.extend_from_slice(&[inj.name_ref, inj.value_ref]);
                }
            }
        }
    }
    let packed_len: usize = s.merged.iter().map(|&r| varint_len(r.into())).sum();
    let labels_len = len_field_size(TS_LABELS_REFS, packed_len);
    put_len_header(out, REQ_TIMESERIES, labels_len + ranges_len(&s.others));
    put_len_header(out, TS_LABELS_REFS, packed_len);
    for &r in &s.merged {
        put_varint(out, r.into());
    }
    copy_ranges(out, data, &s.others);
    Ok(())
}

#[inline]
fn ref_u32(idx: u64, v: u64, symbols: &Symbols<'_>) -> Result<u32, RemoteWriteError> {
    match u32::try_from(v) {
        Ok(r) if (r as usize) < symbols.len() => Ok(r),
        _ => Err(invalid_series(
            idx,
            format_args!(
                "label ref {v} out of range (symbols has {} entries)",
                symbols.len()
            ),
        )),
    }
}

/// How the client's sorted label names merge with the injected ones, as steps into `plan`;
/// on equal names the injected label wins and the client's pair is dropped.
#[inline]
fn plan(names: &[&[u8]], injected: &[Injected<'_>], plan: &mut Vec<Step>) {
    let (mut i, mut j) = (0, 0);
    while let (Some(name), Some(inj)) = (names.get(i), injected.get(j)) {
        match cmp_bytes(name, inj.name) {
            Ordering::Less => {
                plan.push(Step::Client(i));
                i += 1;
            }
            Ordering::Greater => {
                plan.push(Step::Injected(j));
                j += 1;
            }
            Ordering::Equal => {
                plan.push(Step::Injected(j));
                i += 1;
                j += 1;
            }
        }
    }
    plan.extend((i..names.len()).map(Step::Client));
    plan.extend((j..injected.len()).map(Step::Injected));
}
