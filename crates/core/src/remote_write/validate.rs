//! Checks shared by v1 and v2: what a series' label list must look like.
//!
//! Injection merges the tenant labels into the client's list at their sorted position, which is
//! only correct if the client's list is sorted and free of duplicates; Thanos Receive rejects
//! such series anyway, so we refuse them up front with a precise message.

use super::error::RemoteWriteError;
use super::wire::WireError;

/// What a request carried, counted from the wire without decoding the items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub series: u64,
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
}

pub(crate) const METRIC_NAME: &[u8] = b"__name__";

/// `name == "__name__"`, as one 8-byte comparison instead of a `memcmp` call.
#[inline]
pub(crate) fn is_metric_name(name: &[u8]) -> bool {
    name.len() == METRIC_NAME.len() && name.first_chunk::<8>() == Some(b"__name__")
}

/// UTF-8 check with an ASCII fast path: label names and values are short and almost always
/// ASCII, where `str::from_utf8`'s setup dominates.
#[inline]
pub(crate) fn is_utf8(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    let mut high = 0u64;
    for c in &mut chunks {
        high |= u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    }
    for &c in chunks.remainder() {
        high |= u64::from(c);
    }
    high & 0x8080_8080_8080_8080 == 0 || std::str::from_utf8(b).is_ok()
}

/// Byte-wise comparison (Go's string order), 8 bytes at a time: cheaper than a `memcmp` call
/// for the short strings labels are.
#[inline]
pub(crate) fn cmp_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    // Label names of one series mostly differ in their first byte.
    if let (Some(x), Some(y)) = (a.first(), b.first()) {
        if x != y {
            return x.cmp(y);
        }
    }
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let word = |s: &[u8]| {
            s.get(i..)
                .and_then(<[u8]>::first_chunk::<8>)
                .map_or(0, |w| u64::from_be_bytes(*w))
        };
        let (x, y) = (word(a), word(b));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            return x.cmp(&y);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

/// Quotes client bytes for an error message: lossy UTF-8, at most 64 bytes.
pub(crate) fn show(b: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = b.get(..MAX).unwrap_or(b);
    let s = String::from_utf8_lossy(cut);
    if cut.len() < b.len() {
        format!("{s:?}…")
    } else {
        format!("{s:?}")
    }
}

pub(crate) fn invalid_series(series: u64, reason: impl std::fmt::Display) -> RemoteWriteError {
    RemoteWriteError::Invalid(format!("series {series}: {reason}"))
}

pub(crate) fn malformed(context: impl std::fmt::Display, e: WireError) -> RemoteWriteError {
    RemoteWriteError::Malformed(format!("{context}: {e}"))
}

pub(crate) fn wrong_wire(
    context: impl std::fmt::Display,
    field: u32,
    wire: u8,
) -> RemoteWriteError {
    RemoteWriteError::Malformed(format!(
        "{context}: field {field} has wire type {} ({wire})",
        super::wire::wire_name(wire)
    ))
}

/// Walks one series' labels in wire order.
pub(crate) struct LabelChecker<'a> {
    prev: Option<&'a [u8]>,
    has_metric_name: bool,
}

impl<'a> LabelChecker<'a> {
    #[inline]
    pub(crate) fn new() -> Self {
        LabelChecker {
            prev: None,
            has_metric_name: false,
        }
    }

    /// Checks the next label name (its UTF-8 validity is checked by the caller).
    #[inline]
    pub(crate) fn push(&mut self, series: u64, name: &'a [u8]) -> Result<(), RemoteWriteError> {
        if name.is_empty() {
            return Err(invalid_series(series, "empty label name"));
        }
        if let Some(prev) = self.prev {
            match cmp_bytes(prev, name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(invalid_series(
                        series,
                        format_args!("duplicate label name {}", show(name)),
                    ))
                }
                std::cmp::Ordering::Greater => {
                    return Err(invalid_series(
                        series,
                        format_args!("labels not sorted ({} after {})", show(name), show(prev)),
                    ))
                }
            }
        }
        if is_metric_name(name) {
            self.has_metric_name = true;
        }
        self.prev = Some(name);
        Ok(())
    }

    #[inline]
    pub(crate) fn finish(&self, series: u64) -> Result<(), RemoteWriteError> {
        if self.has_metric_name {
            Ok(())
        } else {
            Err(invalid_series(series, "missing __name__ label"))
        }
    }
}

/// Appends `(start, end)` to a list of byte ranges, merging it with the previous range when
/// they touch (the common case: all non-label fields of a series are contiguous).
#[inline]
pub(crate) fn push_range(ranges: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    if let Some(last) = ranges.last_mut() {
        if last.1 == start {
            last.1 = end;
            return;
        }
    }
    ranges.push((start, end));
}

#[inline]
pub(crate) fn ranges_len(ranges: &[(usize, usize)]) -> usize {
    ranges.iter().map(|&(s, e)| e - s).sum()
}

#[inline]
pub(crate) fn copy_ranges(out: &mut Vec<u8>, src: &[u8], ranges: &[(usize, usize)]) {
    for &(s, e) in ranges {
        out.extend_from_slice(src.get(s..e).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_quotes_and_truncates() {
        assert_eq!(show(b"job"), "\"job\"");
        assert_eq!(show(&[b'a'; 70]), format!("\"{}\"…", "a".repeat(64)));
        assert_eq!(show(&[0xff]), "\"\u{fffd}\"");
    }

    #[test]
    fn helpers_agree_with_std() {
        let words: [&[u8]; 12] = [
            b"",
            b"a",
            b"ab",
            b"label_1",
            b"label_10",
            b"label_100000",
            b"label_100001",
            b"label_1000010",
            b"__name__",
            "é_utf8".as_bytes(),
            b"\xff\xfe",
            b"zzzzzzzzzzzzzzzzz",
        ];
        for a in words {
            for b in words {
                assert_eq!(cmp_bytes(a, b), a.cmp(b), "{a:?} {b:?}");
            }
            assert_eq!(is_utf8(a), std::str::from_utf8(a).is_ok(), "{a:?}");
        }
    }

    #[test]
    fn checker() {
        let mut c = LabelChecker::new();
        c.push(3, b"__name__").unwrap();
        c.push(3, b"job").unwrap();
        assert_eq!(
            c.push(3, b"instance").unwrap_err().to_string(),
            "invalid remote write request: series 3: labels not sorted (\"instance\" after \"job\")"
        );
        let mut c = LabelChecker::new();
        c.push(0, b"a").unwrap();
        assert!(c
            .push(0, b"a")
            .unwrap_err()
            .to_string()
            .contains("duplicate label name \"a\""));
        assert!(c
            .finish(0)
            .unwrap_err()
            .to_string()
            .contains("missing __name__"));
        assert!(LabelChecker::new().push(1, b"").is_err());
    }
}
