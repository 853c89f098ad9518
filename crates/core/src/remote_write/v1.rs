//! Remote write 1.0, `prometheus.WriteRequest` (prompb/remote.proto, prompb/types.proto):
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; reserved 2; repeated MetricMetadata metadata = 3; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
//!                repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
//! Label        { string name = 1; string value = 2; }
//! ```

use super::error::RemoteWriteError;
use super::labels::LabelSet;
use super::validate::WriteStats;
use super::validate::{
    cmp_bytes, copy_ranges, invalid_series, is_metric_name, is_utf8, malformed, push_range,
    ranges_len, show, wrong_wire, LabelChecker,
};
use super::wire::{put_len_header, Field, Reader, WT_LEN};
use std::cmp::Ordering;

const WR_TIMESERIES: u32 = 1;
const WR_METADATA: u32 = 3;
/// `io.prometheus.write.v2.Request`'s `symbols` and `timeseries`: never in a 1.0 body.
const V2_SYMBOLS: u32 = 4;
const V2_TIMESERIES: u32 = 5;
const TS_LABELS: u32 = 1;
const TS_SAMPLES: u32 = 2;
/// The tag byte of `samples` (field 2, length-delimited).
const SAMPLE_TAG: u8 = (TS_SAMPLES as u8) << 3 | WT_LEN;
const TS_EXEMPLARS: u32 = 3;
const TS_HISTOGRAMS: u32 = 4;
const LABEL_NAME: u32 = 1;
const LABEL_VALUE: u32 = 2;

/// Validates a decompressed `prometheus.WriteRequest` and counts what it carries.
pub fn validate_v1(decoded: &[u8]) -> Result<WriteStats, RemoteWriteError> {
    run(decoded, &LabelSet::empty(), None, Path::Fast)
}

/// [`validate_v1`] without the one-pass fast path: the reference it is tested against.
#[cfg(test)]
pub(super) fn validate_v1_general(decoded: &[u8]) -> Result<WriteStats, RemoteWriteError> {
    run(decoded, &LabelSet::empty(), None, Path::General)
}

/// Writes `decoded` with `labels` merged into every series to `out` (cleared first; also left
/// empty on error).
///
/// Each series is written as: its labels in name order (client labels byte for byte, an
/// injected label replacing a client label of the same name), then its other fields (samples,
/// exemplars, histograms, unknown) in their original order. Top-level fields keep their order.
/// With an empty `labels`, this validates and copies `decoded` unchanged.
pub fn inject_v1(
    decoded: &[u8],
    labels: &LabelSet,
    out: &mut Vec<u8>,
) -> Result<WriteStats, RemoteWriteError> {
    inject_v1_on(decoded, labels, out, Path::Fast)
}

/// [`inject_v1`] without the one-pass fast path: the reference its output is tested against.
#[cfg(test)]
pub(super) fn inject_v1_general(
    decoded: &[u8],
    labels: &LabelSet,
    out: &mut Vec<u8>,
) -> Result<WriteStats, RemoteWriteError> {
    inject_v1_on(decoded, labels, out, Path::General)
}

fn inject_v1_on(
    decoded: &[u8],
    labels: &LabelSet,
    out: &mut Vec<u8>,
    path: Path,
) -> Result<WriteStats, RemoteWriteError> {
    out.clear();
    if labels.is_empty() {
        let stats = run(decoded, labels, None, path)?;
        out.extend_from_slice(decoded);
        return Ok(stats);
    }
    let result = run(decoded, labels, Some(out), path);
    if result.is_err() {
        out.clear();
    }
    result
}

/// Whether series of the usual shape take [`splice_plain_series`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Fast,
    #[cfg(test)]
    General,
}

/// A client label: its name (for ordering) and where its whole field (tag, length, `Label`)
/// lies in the series, to be copied as is.
struct ClientLabel<'a> {
    name: &'a [u8],
    start: usize,
    end: usize,
}

/// Per-request scratch reused by every series, so series cost no allocation.
#[derive(Default)]
struct Scratch<'a> {
    labels: Vec<ClientLabel<'a>>,
    pieces: Vec<Piece>,
    others: Vec<(usize, usize)>,
}

fn next_field<'a>(
    r: &mut Reader<'a>,
    context: impl Fn() -> String,
) -> Result<Option<Field<'a>>, RemoteWriteError> {
    r.next_field().map_err(|e| malformed(context(), e))
}

fn run<'a>(
    decoded: &'a [u8],
    labels: &'a LabelSet,
    mut out: Option<&mut Vec<u8>>,
    path: Path,
) -> Result<WriteStats, RemoteWriteError> {
    if let Some(out) = out.as_deref_mut() {
        let series = count_series(decoded)?;
        let growth = series.saturating_mul(labels.v1_encoded.len() + 5);
        // Growth is capped so a body of tiny series cannot make us reserve far beyond its size;
        // a legitimately larger output just grows the Vec.
        out.reserve(decoded.len().saturating_add(growth.min(decoded.len()) + 64));
    }
    let mut stats = WriteStats::default();
    let mut scratch = Scratch::default();
    // Start of the run of top-level fields not yet copied: runs are copied whole.
    let mut pending = 0;
    let mut r = Reader::new(decoded);
    while let Some(f) = next_field(&mut r, || "WriteRequest".into())? {
        match f.num {
            WR_TIMESERIES => {
                if f.wire != WT_LEN {
                    return Err(wrong_wire("WriteRequest", f.num, f.wire));
                }
                if let Some(out) = out.as_deref_mut() {
                    out.extend_from_slice(decoded.get(pending..f.start).unwrap_or_default());
                }
                pending = f.end;
                // Validation alone takes the same one-pass path, writing nothing.
                let spliced = path == Path::Fast
                    && match out.as_deref_mut() {
                        Some(out) => splice_plain_series(f.data, labels, out, &mut stats),
                        None => splice_plain_series(f.data, labels, &mut Discard, &mut stats),
                    };
                if !spliced {
                    series(
                        stats.series,
                        f.data,
                        labels,
                        &mut scratch,
                        out.as_deref_mut(),
                        &mut stats,
                    )?;
                }
                stats.series += 1;
            }
            // Remote write 2.0's symbols and timeseries: a 2.0 body sent as 1.0 would pass
            // with no series found to label, and a receiver that reads the format differently
            // would store it as sent.
            V2_SYMBOLS | V2_TIMESERIES => {
                return Err(RemoteWriteError::Invalid(format!(
                    "field {} is not defined in prometheus.WriteRequest (a remote write 2.0 body \
                     sent as 1.0? 2.0 takes Content-Type \"{}\")",
                    f.num,
                    super::format::Format::V2.content_type()
                )))
            }
            _ => {
                if f.num == WR_METADATA && f.wire != WT_LEN {
                    return Err(wrong_wire("WriteRequest", f.num, f.wire));
                }
            }
        }
    }
    if let Some(out) = out {
        out.extend_from_slice(decoded.get(pending..).unwrap_or_default());
    }
    Ok(stats)
}

/// Number of top-level series fields (cheap: series payloads are skipped, not read).
fn count_series(decoded: &[u8]) -> Result<usize, RemoteWriteError> {
    let mut r = Reader::new(decoded);
    let mut n = 0;
    while let Some(f) = next_field(&mut r, || "WriteRequest".into())? {
        n += usize::from(f.num == WR_TIMESERIES);
    }
    Ok(n)
}

fn series<'a>(
    idx: u64,
    data: &'a [u8],
    labels: &'a LabelSet,
    s: &mut Scratch<'a>,
    out: Option<&mut Vec<u8>>,
    stats: &mut WriteStats,
) -> Result<(), RemoteWriteError> {
    s.labels.clear();
    s.others.clear();
    let mut checker = LabelChecker::new();
    let fast_end = leading_ascii_labels(idx, data, &mut checker, &mut s.labels)?;
    let mut r = Reader::at(data, fast_end);
    loop {
        let (samples, start, end) = r.skip_short_run(SAMPLE_TAG);
        if samples > 0 {
            stats.samples += samples;
            push_range(&mut s.others, start, end);
        }
        let Some(f) = next_field(&mut r, || format!("series {idx}"))? else {
            break;
        };
        match f.num {
            TS_LABELS => {
                if f.wire != WT_LEN {
                    return Err(wrong_wire(format_args!("series {idx}"), f.num, f.wire));
                }
                let (name, value) = parse_label(idx, f.data)?;
                if !is_utf8(name) {
                    return Err(invalid_series(
                        idx,
                        format_args!("label name {} is not valid UTF-8", show(name)),
                    ));
                }
                checker.push(idx, name)?;
                if !is_utf8(value) {
                    return Err(invalid_series(
                        idx,
                        format_args!("value of label {} is not valid UTF-8", show(name)),
                    ));
                }
                s.labels.push(ClientLabel {
                    name,
                    start: f.start,
                    end: f.end,
                });
            }
            TS_SAMPLES | TS_EXEMPLARS | TS_HISTOGRAMS => {
                if f.wire != WT_LEN {
                    return Err(wrong_wire(format_args!("series {idx}"), f.num, f.wire));
                }
                match f.num {
                    TS_SAMPLES => stats.samples += 1,
                    TS_EXEMPLARS => stats.exemplars += 1,
                    _ => stats.histograms += 1,
                }
                push_range(&mut s.others, f.start, f.end);
            }
            _ => push_range(&mut s.others, f.start, f.end),
        }
    }
    checker.finish(idx)?;

    let Some(out) = out else { return Ok(()) };
    s.pieces.clear();
    let labels_len = merge(&s.labels, labels, &mut s.pieces);
    put_len_header(out, WR_TIMESERIES, labels_len + ranges_len(&s.others));
    for p in &s.pieces {
        out.extend_from_slice(match *p {
            Piece::Client(start, end) => data.get(start..end).unwrap_or_default(),
            Piece::Injected(j) => labels.v1_field(j),
        });
    }
    copy_ranges(out, data, &s.others);
    Ok(())
}

/// Where the one-pass path writes: the spliced request, or nowhere when only validating (the
/// writes then compile away).
trait Output {
    fn put(&mut self, bytes: &[u8]);
    fn put_len_header(&mut self, field: u32, len: usize);
    /// Where the current series starts, to drop what was written for it.
    fn mark(&self) -> usize;
    fn rewind(&mut self, mark: usize);
}

impl Output for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline(always)]
    fn put_len_header(&mut self, field: u32, len: usize) {
        put_len_header(self, field, len);
    }
    #[inline(always)]
    fn mark(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn rewind(&mut self, mark: usize) {
        self.truncate(mark);
    }
}

/// Validation only.
struct Discard;

impl Output for Discard {
    #[inline(always)]
    fn put(&mut self, _: &[u8]) {}
    #[inline(always)]
    fn put_len_header(&mut self, _: u32, _: usize) {}
    #[inline(always)]
    fn mark(&self) -> usize {
        0
    }
    #[inline(always)]
    fn rewind(&mut self, _: usize) {}
}

/// Injection in one pass for a series of the shape every sender writes: label fields first,
/// each `0x0a len 0x0a len name 0x12 len value` with one-byte lengths and ASCII text, sorted
/// and unique names including `__name__`, none of them an injected name; then samples,
/// exemplars, histograms and unknown fields. The client's bytes are copied in runs between
/// the injected labels as the labels are checked, with no per-label bookkeeping. Writes
/// exactly what [`series`] would and returns `true`; for any other shape (or anything
/// [`series`] would refuse) it leaves `out` as it was and returns `false`, and [`series`]
/// handles the series (and words the error). Validation runs it with [`Discard`].
#[inline]
fn splice_plain_series(
    data: &[u8],
    labels: &LabelSet,
    out: &mut impl Output,
    stats: &mut WriteStats,
) -> bool {
    let mark = out.mark();
    let spliced = try_splice_plain_series(data, labels, out);
    match spliced {
        Some((samples, exemplars, histograms)) => {
            stats.samples += samples;
            stats.exemplars += exemplars;
            stats.histograms += histograms;
            true
        }
        None => {
            out.rewind(mark);
            false
        }
    }
}

/// [`splice_plain_series`]; `None` when the series has another shape. Returns the counts of
/// samples, exemplars and histograms fields.
#[inline(always)]
fn try_splice_plain_series(
    data: &[u8],
    labels: &LabelSet,
    out: &mut impl Output,
) -> Option<(u64, u64, u64)> {
    // No client label is replaced (checked below), so the series grows by the injected fields.
    out.put_len_header(WR_TIMESERIES, data.len() + labels.v1_encoded.len());
    let mut next_injected = 0;
    let mut copied = 0;
    let mut prev: Option<&[u8]> = None;
    let mut has_metric_name = false;
    let mut pos = 0;
    // The labels' bytes are checked for ASCII once, after the loop (see [`plain_label`]).
    while let Some((name, end)) = plain_label(data, pos) {
        if name.is_empty() {
            return None;
        }
        if let Some(prev) = prev {
            if cmp_bytes(prev, name) != Ordering::Less {
                return None;
            }
        }
        has_metric_name |= is_metric_name(name);
        prev = Some(name);
        // Injected labels that sort before this one go in here.
        while let Some((injected, _)) = labels.labels.get(next_injected) {
            match cmp_bytes(name, injected.as_bytes()) {
                Ordering::Less => break,
                Ordering::Equal => return None,
                Ordering::Greater => {
                    out.put(data.get(copied..pos)?);
                    out.put(labels.v1_field(next_injected));
                    copied = pos;
                    next_injected += 1;
                }
            }
        }
        pos = end;
    }
    // One ASCII check for all label fields: tags, one-byte lengths, UTF-8 names and values.
    if !has_metric_name || !data.get(..pos)?.is_ascii() {
        return None;
    }
    out.put(data.get(copied..pos)?);
    for j in next_injected..labels.len() {
        out.put(labels.v1_field(j));
    }
    // The other fields, copied as one run; a label field among them takes the general path.
    let (mut samples, mut exemplars, mut histograms) = (0, 0, 0);
    let mut r = Reader::at(data, pos);
    loop {
        samples += r.skip_short_run(SAMPLE_TAG).0;
        let Some(f) = r.next_field().ok()? else {
            break;
        };
        match f.num {
            TS_LABELS => return None,
            TS_SAMPLES | TS_EXEMPLARS | TS_HISTOGRAMS if f.wire != WT_LEN => return None,
            TS_SAMPLES => samples += 1,
            TS_EXEMPLARS => exemplars += 1,
            TS_HISTOGRAMS => histograms += 1,
            _ => {}
        }
    }
    out.put(data.get(pos..)?);
    Some((samples, exemplars, histograms))
}

/// The label field at `pos` if it has the shape every sender writes, `0x0a len 0x0a len name
/// 0x12 len value`: its name and where the field ends. The lengths are read as single bytes;
/// that reading is right only if the field's bytes are ASCII, which the caller checks (a
/// length byte of 0x80 or more is not ASCII) before trusting the result.
#[inline(always)]
fn plain_label(data: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let &[0x0a, len, 0x0a, name_len] = data.get(pos..)?.first_chunk()? else {
        return None;
    };
    let end = pos + 2 + usize::from(len);
    let name_end = pos + 4 + usize::from(name_len);
    let name = data.get(pos + 4..name_end)?;
    let &[0x12, value_len] = data.get(name_end..)?.first_chunk()? else {
        return None;
    };
    (name_end + 2 + usize::from(value_len) == end && end <= data.len()).then_some((name, end))
}

/// The fast path for the label fields every sender writes first: `0x0a len 0x0a len name 0x12
/// len value` with one-byte lengths and ASCII text. One ASCII check covers the whole field
/// (tags and short lengths are ASCII too), which is most of the per-label cost on series with
/// one sample. Stops at the first field of any other shape and returns its offset; the generic
/// reader takes over from there with the same checker, so both paths accept the same input.
#[inline]
fn leading_ascii_labels<'a>(
    idx: u64,
    data: &'a [u8],
    checker: &mut LabelChecker<'a>,
    labels: &mut Vec<ClientLabel<'a>>,
) -> Result<usize, RemoteWriteError> {
    let mut pos = 0;
    while let Some((name, end)) = plain_label(data, pos) {
        if !data.get(pos..end).is_some_and(<[u8]>::is_ascii) {
            break;
        }
        checker.push(idx, name)?;
        labels.push(ClientLabel {
            name,
            start: pos,
            end,
        });
        pos = end;
    }
    Ok(pos)
}

/// Name and value of a `Label`; for a repeated scalar field the last one wins, as in every
/// protobuf decoder (so we check the same name the backend will see).
#[inline]
fn parse_label(idx: u64, data: &[u8]) -> Result<(&[u8], &[u8]), RemoteWriteError> {
    // Fast path for what every sender writes: `0x0a len name 0x12 len value`, short strings.
    if let [0x0a, name_len, rest @ ..] = data {
        let name_len = usize::from(*name_len);
        if name_len < 0x80 {
            if let (Some(name), Some([0x12, value_len, value @ ..])) =
                (rest.get(..name_len), rest.get(name_len..))
            {
                if *value_len < 0x80 && usize::from(*value_len) == value.len() {
                    return Ok((name, value));
                }
            }
        }
    }
    let mut name: &[u8] = &[];
    let mut value: &[u8] = &[];
    let mut r = Reader::new(data);
    while let Some(f) = next_field(&mut r, || format!("series {idx}: label"))? {
        match f.num {
            LABEL_NAME | LABEL_VALUE => {
                if f.wire != WT_LEN {
                    return Err(wrong_wire(
                        format_args!("series {idx}: label"),
                        f.num,
                        f.wire,
                    ));
                }
                if f.num == LABEL_NAME {
                    name = f.data;
                } else {
                    value = f.data;
                }
            }
            _ => {}
        }
    }
    Ok((name, value))
}

#[derive(Clone, Copy)]
enum Piece {
    /// A run of consecutive client label fields, as a byte range of the series.
    Client(usize, usize),
    /// Injected label `i` (already framed in the `LabelSet`).
    Injected(usize),
}

/// Merges the client's sorted labels with the injected ones into `pieces`; on equal names the
/// injected label wins and the client's is dropped. Adjacent client labels become one range,
/// so the usual case copies a few runs instead of one label at a time. Returns the encoded
/// size of the pieces.
#[inline]
fn merge(client: &[ClientLabel<'_>], inj: &LabelSet, pieces: &mut Vec<Piece>) -> usize {
    let client_piece = |c: &ClientLabel<'_>, pieces: &mut Vec<Piece>| {
        if let Some(Piece::Client(_, end)) = pieces.last_mut() {
            if *end == c.start {
                *end = c.end;
                return;
            }
        }
        pieces.push(Piece::Client(c.start, c.end));
    };
    let (mut i, mut j) = (0, 0);
    while let (Some(c), Some((name, _))) = (client.get(i), inj.labels.get(j)) {
        match cmp_bytes(c.name, name.as_bytes()) {
            Ordering::Less => {
                client_piece(c, pieces);
                i += 1;
            }
            Ordering::Greater => {
                pieces.push(Piece::Injected(j));
                j += 1;
            }
            Ordering::Equal => {
                pieces.push(Piece::Injected(j));
                i += 1;
                j += 1;
            }
        }
    }
    for c in client.get(i..).unwrap_or_default() {
        client_piece(c, pieces);
    }
    for j in j..inj.len() {
        pieces.push(Piece::Injected(j));
    }
    pieces
        .iter()
        .map(|p| match *p {
            Piece::Client(start, end) => end - start,
            Piece::Injected(j) => inj.v1_field(j).len(),
        })
        .sum()
}
