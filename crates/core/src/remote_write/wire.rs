//! Just enough of the protobuf wire format to walk fields without decoding their contents.
//!
//! The reader is deliberately strict wherever a lenient reading could differ from the Go
//! (gogoproto) decoder behind us: a tag that does not fit 32 bits is an error here, because Go
//! truncates it to an `int32` field number, so `2^32 + 1` would become field 1 there and an
//! unknown field here — a series we would forward without the tenant label.

use std::fmt;

pub(crate) const WT_VARINT: u8 = 0;
pub(crate) const WT_I64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
pub(crate) const WT_SGROUP: u8 = 3;
pub(crate) const WT_EGROUP: u8 = 4;
pub(crate) const WT_I32: u8 = 5;

const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// A wire-level problem. `Copy` and allocation-free; context is added by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    TruncatedVarint,
    VarintOverflow,
    BadFieldNumber,
    BadWireType(u8),
    /// A length-delimited field whose length runs past the end of its enclosing message.
    TruncatedLen {
        field: u32,
        len: u64,
        remaining: usize,
    },
    TruncatedFixed {
        field: u32,
    },
    UnexpectedEndGroup,
    UnterminatedGroup {
        field: u32,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WireError::TruncatedVarint => f.write_str("truncated varint"),
            WireError::VarintOverflow => f.write_str("varint longer than 64 bits"),
            WireError::BadFieldNumber => f.write_str("invalid field number"),
            WireError::BadWireType(w) => write!(f, "invalid wire type {w}"),
            WireError::TruncatedLen {
                field,
                len,
                remaining,
            } => write!(
                f,
                "field {field} declares {len} bytes but only {remaining} remain"
            ),
            WireError::TruncatedFixed { field } => write!(f, "truncated fixed-width field {field}"),
            WireError::UnexpectedEndGroup => f.write_str("unexpected end-group tag"),
            WireError::UnterminatedGroup { field } => write!(f, "unterminated group field {field}"),
        }
    }
}

/// Reads a varint at `*pos`, advancing `*pos` past it. Non-minimal encodings are accepted,
/// as every protobuf decoder does.
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut i = *pos;
    // Fast path: most tags and lengths are a single byte.
    match buf.get(i) {
        None => return Err(WireError::TruncatedVarint),
        Some(&b) if b < 0x80 => {
            *pos = i + 1;
            return Ok(u64::from(b));
        }
        Some(&b) => {
            // Two bytes: symbol refs and label lengths up to 16383.
            if let Some(&b1) = buf.get(i + 1) {
                if b1 < 0x80 {
                    *pos = i + 2;
                    return Ok(u64::from(b & 0x7f) | (u64::from(b1) << 7));
                }
            }
        }
    }
    let mut result: u64 = 0;
    let mut shift: u32 = 0;
    loop {
        let Some(&b) = buf.get(i) else {
            return Err(WireError::TruncatedVarint);
        };
        i += 1;
        if shift == 63 && b > 1 {
            return Err(WireError::VarintOverflow);
        }
        result |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            *pos = i;
            return Ok(result);
        }
        shift += 7;
    }
}

#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 significant bits; 0 still takes one byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) const fn tag(field: u32, wire: u8) -> u64 {
    ((field as u64) << 3) | wire as u64
}

/// Writes the tag and length prefix of a length-delimited field.
#[inline]
pub(crate) fn put_len_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, tag(field, WT_LEN));
    put_varint(out, len as u64);
}

/// Encoded size of a length-delimited field with a payload of `len` bytes.
#[inline]
pub(crate) fn len_field_size(field: u32, len: usize) -> usize {
    varint_len(tag(field, WT_LEN)) + varint_len(len as u64) + len
}

/// One field of a message, as raw bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub num: u32,
    pub wire: u8,
    /// Offset of the tag within the buffer being read.
    pub start: usize,
    /// Offset just past the field.
    pub end: usize,
    /// The payload of a length-delimited field; the value bytes of any other wire type.
    pub data: &'a [u8],
    /// The value of a varint field (0 for other wire types).
    pub value: u64,
}

/// A forward-only iterator over the fields of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A reader of `buf` starting at `pos` (field offsets stay relative to `buf`).
    #[inline]
    pub(crate) fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    /// Consumes consecutive fields that start with the one-byte `tag` of a length-delimited
    /// field and have a one-byte length that fits the buffer; returns how many, and the byte
    /// range they cover. Samples are such a run in nearly every series, and this reads each in
    /// three comparisons. It stops at anything else, which `next_field` then reads (and words
    /// any error of).
    #[inline(always)]
    pub(crate) fn skip_short_run(&mut self, tag: u8) -> (u64, usize, usize) {
        let buf = self.buf;
        let start = self.pos;
        let mut pos = start;
        let mut n = 0;
        while let (Some(&t), Some(&len)) = (buf.get(pos), buf.get(pos + 1)) {
            let end = pos + 2 + len as usize;
            if t != tag || len >= 0x80 || end > buf.len() {
                break;
            }
            pos = end;
            n += 1;
        }
        self.pos = pos;
        (n, start, pos)
    }

    /// The next field, `Ok(None)` at the end of the buffer.
    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> Result<Option<Field<'a>>, WireError> {
        let buf = self.buf;
        let start = self.pos;
        if start >= buf.len() {
            return Ok(None);
        }
        let mut pos = start;
        let (num, wire) = read_tag(buf, &mut pos)?;
        let value_start = pos;
        let mut value = 0;
        match wire {
            WT_VARINT => value = read_varint(buf, &mut pos)?,
            WT_LEN => {
                let len = read_varint(buf, &mut pos)?;
                let remaining = buf.len() - pos;
                if len > remaining as u64 {
                    return Err(WireError::TruncatedLen {
                        field: num,
                        len,
                        remaining,
                    });
                }
                value = len;
                let data_start = pos;
                pos += len as usize;
                self.pos = pos;
                return Ok(Some(Field {
                    num,
                    wire,
                    start,
                    end: pos,
                    data: buf.get(data_start..pos).unwrap_or_default(),
                    value,
                }));
            }
            WT_I64 | WT_I32 => {
                let n = if wire == WT_I64 { 8 } else { 4 };
                if buf.len() - pos < n {
                    return Err(WireError::TruncatedFixed { field: num });
                }
                pos += n;
            }
            WT_SGROUP => skip_group(buf, &mut pos, num)?,
            WT_EGROUP => return Err(WireError::UnexpectedEndGroup),
            w => return Err(WireError::BadWireType(w)),
        }
        self.pos = pos;
        Ok(Some(Field {
            num,
            wire,
            start,
            end: pos,
            data: buf.get(value_start..pos).unwrap_or_default(),
            value,
        }))
    }
}

#[inline]
fn read_tag(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
    let tag = read_varint(buf, pos)?;
    let num = tag >> 3;
    if num == 0 || num > MAX_FIELD_NUMBER {
        return Err(WireError::BadFieldNumber);
    }
    Ok((num as u32, (tag & 7) as u8))
}

/// Skips a (deprecated) group up to its matching end tag. Like gogoproto's `skip`, nesting is
/// tracked with a counter, so no recursion and no stack growth on hostile input.
fn skip_group(buf: &[u8], pos: &mut usize, field: u32) -> Result<(), WireError> {
    let mut depth: u64 = 1;
    loop {
        if *pos >= buf.len() {
            return Err(WireError::UnterminatedGroup { field });
        }
        let (num, wire) = read_tag(buf, pos)?;
        match wire {
            WT_VARINT => {
                read_varint(buf, pos)?;
            }
            WT_LEN => {
                let len = read_varint(buf, pos)?;
                let remaining = buf.len() - *pos;
                if len > remaining as u64 {
                    return Err(WireError::TruncatedLen {
                        field: num,
                        len,
                        remaining,
                    });
                }
                *pos += len as usize;
            }
            WT_I64 | WT_I32 => {
                let n = if wire == WT_I64 { 8 } else { 4 };
                if buf.len() - *pos < n {
                    return Err(WireError::TruncatedFixed { field: num });
                }
                *pos += n;
            }
            WT_SGROUP => depth += 1,
            WT_EGROUP => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            w => return Err(WireError::BadWireType(w)),
        }
    }
}

/// Name of a wire type, for error messages.
pub(crate) fn wire_name(wire: u8) -> &'static str {
    match wire {
        WT_VARINT => "varint",
        WT_I64 => "fixed64",
        WT_LEN => "length-delimited",
        WT_SGROUP => "group",
        WT_EGROUP => "end-group",
        WT_I32 => "fixed32",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip_and_len() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos), Ok(v));
            assert_eq!(pos, b.len());
        }
    }

    #[test]
    fn varint_errors() {
        let mut pos = 0;
        assert_eq!(read_varint(&[], &mut pos), Err(WireError::TruncatedVarint));
        assert_eq!(
            read_varint(&[0x80, 0x80], &mut pos),
            Err(WireError::TruncatedVarint)
        );
        // 10th byte may only carry the top bit.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(read_varint(&over, &mut pos), Err(WireError::VarintOverflow));
        let mut eleven = [0xffu8; 11];
        eleven[10] = 0x00;
        assert_eq!(
            read_varint(&eleven, &mut pos),
            Err(WireError::VarintOverflow)
        );
        // Non-minimal zero is accepted.
        pos = 0;
        assert_eq!(read_varint(&[0x80, 0x00], &mut pos), Ok(0));
        assert_eq!(pos, 2);
    }

    #[test]
    fn tag_beyond_32_bits_is_rejected() {
        // Go would truncate this field number to int32(1).
        let mut b = Vec::new();
        put_varint(&mut b, (1u64 << 35) | tag(1, WT_LEN));
        b.push(0);
        assert_eq!(
            Reader::new(&b).next_field().unwrap_err(),
            WireError::BadFieldNumber
        );
    }

    #[test]
    fn groups_are_skipped_whole() {
        // field 7 group { field 1 varint 5; field 8 group {} } then field 2 varint 1
        let b = [
            0x3b, 0x08, 0x05, 0x43, 0x44, 0x3c, // group 7
            0x10, 0x01,
        ];
        let mut r = Reader::new(&b);
        let f = r.next_field().unwrap().unwrap();
        assert_eq!((f.num, f.wire, f.start, f.end), (7, WT_SGROUP, 0, 6));
        let f = r.next_field().unwrap().unwrap();
        assert_eq!((f.num, f.value), (2, 1));
        assert!(r.next_field().unwrap().is_none());
        assert_eq!(
            Reader::new(&[0x3b, 0x08]).next_field().unwrap_err(),
            WireError::TruncatedVarint
        );
        assert_eq!(
            Reader::new(&[0x3b]).next_field().unwrap_err(),
            WireError::UnterminatedGroup { field: 7 }
        );
        assert_eq!(
            Reader::new(&[0x3c]).next_field().unwrap_err(),
            WireError::UnexpectedEndGroup
        );
    }
}
