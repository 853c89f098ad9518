//! Prometheus remote-write bodies: format detection, snappy, and tenant-label injection.
//!
//! Injection splices the protobuf wire format instead of decoding the request: only the label
//! lists are read (and validated); samples, histograms, exemplars, metadata and unknown fields
//! are copied as raw bytes, so nothing the client sent is lost or re-encoded, and the cost is
//! close to a memcpy of the body.
//!
//! Typical use by the gateway:
//! ```text
//! let format = detect_format(content_type, content_encoding, version)?;   // 415
//! let decoded = decompress(&body, max_body)?;                            // 413 / 400
//! let mut out = Vec::new();
//! let stats = inject(format, &decoded, &labels, &mut out)?;              // 400
//! let forwarded = compress(&out)?;
//! ```
//! or [`rewrite_body`], which does the three steps and skips re-encoding when there is
//! nothing to inject.
//!
//! Output layout (both versions): top-level fields keep their order; inside each series the
//! label field(s) come first, then every other field in its original order. v1 client labels
//! keep their exact bytes; v2 `labels_refs` is re-emitted as one packed field.

mod split;
mod v1;
mod v2;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

pub use split::{split_by_label, RoutedPart, Routing};
pub use v1::{inject_v1, validate_v1};
pub use v2::{inject_v2, validate_v2};

/// Header carrying the remote-write protocol version.
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";

const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
const PROTO_V1: &str = "prometheus.WriteRequest";
const PROTO_V2: &str = "io.prometheus.write.v2.Request";

const SUPPORTED: &str = "supported: Content-Type \"application/x-protobuf\" or \
\"application/x-protobuf;proto=prometheus.WriteRequest\" (remote write 1.0, \
X-Prometheus-Remote-Write-Version 0.1.0) and \
\"application/x-protobuf;proto=io.prometheus.write.v2.Request\" (remote write 2.0, version 2.0.0), \
each with Content-Encoding \"snappy\"";

/// Why a remote-write body was refused. [`RemoteWriteError::status`] gives the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteWriteError {
    /// Content-Type, Content-Encoding or version header not supported (415).
    #[error("unsupported remote write format: {0}; {SUPPORTED}")]
    UnsupportedFormat(String),
    /// The body decompresses to more than the allowed size (413).
    #[error("remote write body too large: {size} bytes decompressed, the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// Not a valid snappy block (400).
    #[error("invalid snappy body: {0}")]
    Snappy(String),
    /// Not valid protobuf for the detected message (400).
    #[error("malformed remote write protobuf: {0}")]
    Malformed(String),
    /// Valid protobuf, but a series or the symbol table breaks a remote-write rule (400).
    #[error("invalid remote write request: {0}")]
    Invalid(String),
    /// The labels to inject are unusable; a configuration problem, reported as 400 if it ever
    /// reaches a request.
    #[error("invalid labels to inject: {0}")]
    InvalidLabelSet(String),
}

impl RemoteWriteError {
    /// HTTP status for this error: 415, 413 or 400.
    pub fn status(&self) -> u16 {
        match self {
            RemoteWriteError::UnsupportedFormat(_) => 415,
            RemoteWriteError::TooLarge { .. } => 413,
            RemoteWriteError::Snappy(_)
            | RemoteWriteError::Malformed(_)
            | RemoteWriteError::Invalid(_)
            | RemoteWriteError::InvalidLabelSet(_) => 400,
        }
    }
}

/// The remote-write protocol of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Remote write 1.0: `prometheus.WriteRequest`.
    V1,
    /// Remote write 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

impl Format {
    /// Canonical Content-Type for forwarding a body of this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::V1 => "application/x-protobuf",
            Format::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// Value of [`VERSION_HEADER`] for this format.
    pub const fn version(self) -> &'static str {
        match self {
            Format::V1 => "0.1.0",
            Format::V2 => "2.0.0",
        }
    }

    /// Fully qualified protobuf message name.
    pub const fn proto_message(self) -> &'static str {
        match self {
            Format::V1 => PROTO_V1,
            Format::V2 => PROTO_V2,
        }
    }
}

/// Decides the format from the request headers.
///
/// Like Prometheus' own receiver, an absent or empty Content-Type means 1.0 and an absent
/// Content-Encoding means snappy. The version header is optional but, when present, must agree
/// with the Content-Type (0.x / 1.x for 1.0, 2.x for 2.0), so a 2.0 body cannot be labelled 1.0
/// and pass through uninjected.
pub fn detect_format(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    version: Option<&str>,
) -> Result<Format, RemoteWriteError> {
    if let Some(enc) = content_encoding {
        let e = enc.trim();
        if !e.is_empty() && !e.eq_ignore_ascii_case("snappy") {
            return Err(RemoteWriteError::UnsupportedFormat(format!(
                "Content-Encoding {enc:?}"
            )));
        }
    }
    let format = match content_type.map(str::trim) {
        None | Some("") => Format::V1,
        Some(ct) => parse_content_type(ct)?,
    };
    if let Some(v) = version.map(str::trim).filter(|v| !v.is_empty()) {
        let major = v.split('.').next().unwrap_or("");
        let ok = match format {
            Format::V1 => major == "0" || major == "1",
            Format::V2 => major == "2",
        };
        if !ok {
            return Err(RemoteWriteError::UnsupportedFormat(format!(
                "{VERSION_HEADER} {v:?} does not match {}",
                format.proto_message()
            )));
        }
    }
    Ok(format)
}

fn parse_content_type(ct: &str) -> Result<Format, RemoteWriteError> {
    let unsupported = || RemoteWriteError::UnsupportedFormat(format!("Content-Type {ct:?}"));
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE_PROTOBUF) {
        return Err(unsupported());
    }
    let mut proto = None;
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let Some((key, value)) = param.split_once('=') else {
            return Err(unsupported());
        };
        // Other parameters (e.g. charset) do not change the payload; proto does.
        if key.trim().eq_ignore_ascii_case("proto") {
            if proto.is_some() {
                return Err(unsupported());
            }
            proto = Some(value.trim().trim_matches('"'));
        }
    }
    match proto {
        None | Some(PROTO_V1) => Ok(Format::V1),
        Some(PROTO_V2) => Ok(Format::V2),
        Some(_) => Err(unsupported()),
    }
}

/// A snappy block can expand at most ~21x (a 3-byte copy tag yields 64 bytes), so a preamble
/// declaring more than this is corrupt, whatever the size cap.
const MAX_SNAPPY_RATIO: u64 = 22;

/// Decompresses a snappy block, refusing before any allocation when the declared size is over
/// `max_decompressed` (413) or impossible for the body's size (400).
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, RemoteWriteError> {
    let mut out = Vec::new();
    decompress_into(body, max_decompressed, &mut out)?;
    Ok(out)
}

/// [`decompress`] into a reusable buffer (cleared first).
pub fn decompress_into(
    body: &[u8],
    max_decompressed: usize,
    out: &mut Vec<u8>,
) -> Result<(), RemoteWriteError> {
    out.clear();
    if body.is_empty() {
        return Err(RemoteWriteError::Snappy("empty body".into()));
    }
    // Read the preamble ourselves: snap caps it at 2^32-1, we want the raw claim for the 413.
    let mut pos = 0;
    let declared = wire::read_varint(body, &mut pos)
        .map_err(|e| RemoteWriteError::Snappy(format!("bad length preamble: {e}")))?;
    if declared > max_decompressed as u64 {
        return Err(RemoteWriteError::TooLarge {
            size: declared,
            limit: max_decompressed as u64,
        });
    }
    if declared > (body.len() as u64).saturating_mul(MAX_SNAPPY_RATIO) {
        return Err(RemoteWriteError::Snappy(format!(
            "declares {declared} bytes, impossible for a {}-byte body",
            body.len()
        )));
    }
    let len =
        snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    out.resize(len, 0);
    match snap::raw::Decoder::new().decompress(body, out) {
        Ok(n) => {
            out.truncate(n);
            Ok(())
        }
        Err(e) => {
            out.clear();
            Err(RemoteWriteError::Snappy(e.to_string()))
        }
    }
}

/// Compresses into a new snappy block.
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, RemoteWriteError> {
    let mut out = Vec::new();
    compress_into(raw, &mut out)?;
    Ok(out)
}

/// [`compress`] into a reusable buffer (cleared first).
pub fn compress_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), RemoteWriteError> {
    out.clear();
    let max = snap::raw::max_compress_len(raw.len());
    if max == 0 {
        return Err(RemoteWriteError::TooLarge {
            size: raw.len() as u64,
            limit: u32::MAX as u64,
        });
    }
    out.resize(max, 0);
    match snap::raw::Encoder::new().compress(raw, out) {
        Ok(n) => {
            out.truncate(n);
            Ok(())
        }
        Err(e) => {
            out.clear();
            Err(RemoteWriteError::TooLarge {
                size: raw.len() as u64,
                limit: max_input_len(&e),
            })
        }
    }
}

fn max_input_len(e: &snap::Error) -> u64 {
    match e {
        snap::Error::TooBig { max, .. } => *max,
        _ => u32::MAX as u64,
    }
}

/// What a request carried, counted from the wire without decoding the items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub series: u64,
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
}

/// Labels to inject into every series: sorted by name, names unique.
///
/// Names must match `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__` (reserved for
/// Prometheus, e.g. `__name__`); values must be non-empty (an empty value would delete a
/// client label of that name rather than set one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSet {
    labels: Vec<(String, String)>,
    /// Each label pre-encoded as a v1 `TimeSeries.labels` field (tag, length, `Label`), so v1
    /// injection is a memcpy; `v1_ends[i]` is where label `i` ends in `v1_encoded`.
    v1_encoded: Vec<u8>,
    v1_ends: Vec<usize>,
}

impl LabelSet {
    /// Validates, sorts and deduplicates. An exact duplicate pair is dropped; the same name with
    /// two values is an error.
    pub fn new<I, N, V>(labels: I) -> Result<Self, RemoteWriteError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        let mut labels: Vec<(String, String)> = labels
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        for (name, value) in &labels {
            validate_injected_name(name)?;
            if value.is_empty() {
                return Err(RemoteWriteError::InvalidLabelSet(format!(
                    "label {name:?} has an empty value"
                )));
            }
        }
        labels.sort();
        labels.dedup();
        if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(RemoteWriteError::InvalidLabelSet(format!(
                "label {:?} given twice ({:?} and {:?})",
                w[0].0, w[0].1, w[1].1
            )));
        }
        let mut v1_encoded = Vec::new();
        let mut v1_ends = Vec::with_capacity(labels.len());
        for (name, value) in &labels {
            let inner = wire::len_field_size(1, name.len()) + wire::len_field_size(2, value.len());
            wire::put_len_header(&mut v1_encoded, 1, inner);
            wire::put_len_header(&mut v1_encoded, 1, name.len());
            v1_encoded.extend_from_slice(name.as_bytes());
            wire::put_len_header(&mut v1_encoded, 2, value.len());
            v1_encoded.extend_from_slice(value.as_bytes());
            v1_ends.push(v1_encoded.len());
        }
        Ok(LabelSet {
            labels,
            v1_encoded,
            v1_ends,
        })
    }

    /// No labels: injection becomes validation only.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.labels[i].1.as_str())
    }

    /// Label `i` encoded as a v1 `TimeSeries.labels` field.
    fn v1_field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.v1_ends[i - 1] };
        &self.v1_encoded[start..self.v1_ends[i]]
    }
}

fn validate_injected_name(name: &str) -> Result<(), RemoteWriteError> {
    let bad = |why: &str| {
        Err(RemoteWriteError::InvalidLabelSet(format!(
            "label name {name:?} {why}"
        )))
    };
    let b = name.as_bytes();
    let Some(&first) = b.first() else {
        return bad("is empty");
    };
    if !(first.is_ascii_alphabetic() || first == b'_')
        || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return bad("must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if name.starts_with("__") {
        return bad("is reserved (starts with \"__\")");
    }
    Ok(())
}

/// [`inject_v1`] or [`inject_v2`].
pub fn inject(
    format: Format,
    decoded: &[u8],
    labels: &LabelSet,
    out: &mut Vec<u8>,
) -> Result<WriteStats, RemoteWriteError> {
    match format {
        Format::V1 => inject_v1(decoded, labels, out),
        Format::V2 => inject_v2(decoded, labels, out),
    }
}

/// [`validate_v1`] or [`validate_v2`].
pub fn validate(format: Format, decoded: &[u8]) -> Result<WriteStats, RemoteWriteError> {
    match format {
        Format::V1 => validate_v1(decoded),
        Format::V2 => validate_v2(decoded),
    }
}

/// Result of [`rewrite_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub stats: WriteStats,
    /// The new snappy body, or `None` when there was nothing to inject and the original body
    /// should be forwarded as is.
    pub body: Option<Vec<u8>>,
}

/// Scratch buffers larger than this are freed after use rather than kept for the next body
/// on the thread: one huge write must not pin its size in memory on every worker thread.
const KEEP_SCRATCH_BYTES: usize = 4 << 20;

std::thread_local! {
    /// The decompressed body and the spliced body of the request being rewritten on this
    /// thread. Reusing them saves an allocation and fresh pages per buffer per request; only
    /// the compressed output, which leaves with the request, is allocated fresh.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Decompress, validate and inject, recompress: the whole write path for one body, as the
/// gateway runs it (the intermediate buffers are per-thread scratch, see [`SCRATCH`]).
pub fn rewrite_body(
    format: Format,
    body: &[u8],
    labels: &LabelSet,
    max_decompressed: usize,
) -> Result<Rewritten, RemoteWriteError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let (decoded, spliced) = &mut *scratch;
            let result = rewrite_with(format, body, labels, max_decompressed, decoded, spliced);
            for buf in [decoded, spliced] {
                if buf.capacity() > KEEP_SCRATCH_BYTES {
                    *buf = Vec::new();
                }
            }
            result
        }
        // Not reentrant today; if it ever were, fresh buffers are still correct.
        Err(_) => rewrite_with(
            format,
            body,
            labels,
            max_decompressed,
            &mut Vec::new(),
            &mut Vec::new(),
        ),
    })
}

/// Capacity of this thread's scratch buffers (for tests of the keep limit).
#[cfg(test)]
pub(crate) fn scratch_capacity() -> usize {
    SCRATCH.with(|cell| {
        let s = cell.borrow();
        s.0.capacity() + s.1.capacity()
    })
}

fn rewrite_with(
    format: Format,
    body: &[u8],
    labels: &LabelSet,
    max_decompressed: usize,
    decoded: &mut Vec<u8>,
    spliced: &mut Vec<u8>,
) -> Result<Rewritten, RemoteWriteError> {
    decompress_into(body, max_decompressed, decoded)?;
    if labels.is_empty() {
        let stats = validate(format, decoded)?;
        return Ok(Rewritten { stats, body: None });
    }
    let stats = inject(format, decoded, labels, spliced)?;
    Ok(Rewritten {
        stats,
        body: Some(compress(spliced)?),
    })
}
