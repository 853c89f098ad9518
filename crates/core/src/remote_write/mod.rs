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

mod error;
mod format;
mod labels;
mod split;
mod v1;
mod v2;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

pub use error::RemoteWriteError;
pub use format::{detect_format, Format, VERSION_HEADER};
pub use labels::LabelSet;
pub use split::{split_by_label, RoutedPart, Routing};
pub use v1::{inject_v1, validate_v1};
pub use v2::{inject_v2, validate_v2};
pub use validate::WriteStats;

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
