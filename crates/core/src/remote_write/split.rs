//! Splitting one remote-write body into one body per tenant, by the value of a label each
//! series carries (writers with `write_routing: by_label`, such as a global ruler).
//!
//! Like injection, this works on the wire: each series is copied whole into the part of its
//! tenant; every other top-level field (v1 metadata, v2 symbols, unknown fields) is copied into
//! every part, in its original position, so v2 symbol references keep their meaning in each
//! part. The body must have been validated first ([`super::validate`]); each part is then
//! injected with its tenant's labels, which validates it again.

use super::error::RemoteWriteError;
use super::format::Format;
use super::validate::show;
use super::wire::{read_varint, Field, Reader, WT_LEN, WT_VARINT};

const V1_TIMESERIES: u32 = 1;
const V1_TS_LABELS: u32 = 1;
const V1_LABEL_NAME: u32 = 1;
const V1_LABEL_VALUE: u32 = 2;
const V2_SYMBOLS: u32 = 4;
const V2_TIMESERIES: u32 = 5;
const V2_TS_LABELS_REFS: u32 = 1;

/// One tenant's share of a split body: a decompressed body of the same format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedPart {
    pub tenant: String,
    pub decoded: Vec<u8>,
}

/// How series find their tenant.
pub struct Routing<'a> {
    /// The label whose value names the tenant (the gateway's `tenancy.label`).
    pub label: &'a str,
    /// The tenant of series without the label (or with an empty value); `None`: such a series
    /// is refused.
    pub default_tenant: Option<&'a str>,
    /// Whether the writer may write a tenant; a series naming any other is refused.
    pub allowed: &'a (dyn Fn(&str) -> bool + Sync),
}

/// Splits a validated, decompressed body into one part per tenant, in tenant order. A body
/// without series is one part for the default tenant (refused when there is none: there is no
/// tenant to give it to).
pub fn split_by_label(
    format: Format,
    decoded: &[u8],
    routing: &Routing<'_>,
) -> Result<Vec<RoutedPart>, RemoteWriteError> {
    let series_field = match format {
        Format::V1 => V1_TIMESERIES,
        Format::V2 => V2_TIMESERIES,
    };
    let symbols = match format {
        Format::V1 => Vec::new(),
        Format::V2 => v2_symbols(decoded)?,
    };
    // Every top-level field in order, with the index of the part it belongs to (`None`: all).
    let mut fields: Vec<(usize, usize, Option<usize>)> = Vec::new();
    let mut tenants: Vec<String> = Vec::new();
    let mut refs = Vec::new();
    let mut series = 0u64;
    let mut r = Reader::new(decoded);
    while let Some(f) = next(&mut r, "request")? {
        if f.num != series_field || f.wire != WT_LEN {
            fields.push((f.start, f.end, None));
            continue;
        }
        let labels = match format {
            Format::V1 => v1_labels(f.data, series)?,
            Format::V2 => v2_labels(f.data, &symbols, &mut refs, series)?,
        };
        let tenant = tenant_of(&labels, routing, series)?;
        let index = match tenants.iter().position(|t| t == tenant) {
            Some(i) => i,
            None => {
                tenants.push(tenant.to_string());
                tenants.len() - 1
            }
        };
        fields.push((f.start, f.end, Some(index)));
        series += 1;
    }
    if tenants.is_empty() {
        let Some(default) = routing.default_tenant else {
            return Err(RemoteWriteError::Invalid(format!(
                "the request has no series to route by {:?} and this writer has no default tenant",
                routing.label
            )));
        };
        return Ok(vec![RoutedPart {
            tenant: default.to_string(),
            decoded: decoded.to_vec(),
        }]);
    }
    let mut parts: Vec<RoutedPart> = tenants
        .into_iter()
        .enumerate()
        .map(|(index, tenant)| {
            let mut body = Vec::new();
            for &(start, end, owner) in &fields {
                if owner.is_none_or(|o| o == index) {
                    body.extend_from_slice(&decoded[start..end]);
                }
            }
            RoutedPart {
                tenant,
                decoded: body,
            }
        })
        .collect();
    parts.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(parts)
}

/// The labels of one series as (name, value) byte pairs, in wire order.
type Labels<'a> = Vec<(&'a [u8], &'a [u8])>;

fn next<'a>(r: &mut Reader<'a>, context: &str) -> Result<Option<Field<'a>>, RemoteWriteError> {
    r.next_field()
        .map_err(|e| super::validate::malformed(context, e))
}

fn tenant_of<'a>(
    labels: &Labels<'a>,
    routing: &Routing<'a>,
    series: u64,
) -> Result<&'a str, RemoteWriteError> {
    let wanted = routing.label.as_bytes();
    // The last occurrence wins, as in the Go decoder (validation refuses duplicates anyway).
    let value = labels
        .iter()
        .rev()
        .find(|(n, _)| *n == wanted)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty());
    let name = || {
        labels
            .iter()
            .find(|(n, _)| *n == b"__name__")
            .map_or_else(|| "(no __name__)".to_string(), |(_, v)| show(v))
    };
    match value {
        None => routing.default_tenant.ok_or_else(|| {
            RemoteWriteError::Invalid(format!(
                "series {series} ({}) has no {:?} label and this writer has no default tenant",
                name(),
                routing.label
            ))
        }),
        Some(v) => match std::str::from_utf8(v) {
            Ok(tenant) if (routing.allowed)(tenant) => Ok(tenant),
            _ => Err(RemoteWriteError::Invalid(format!(
                "series {series} ({}) has {}={}, a tenant this writer may not write",
                name(),
                routing.label,
                show(v)
            ))),
        },
    }
}

fn v1_labels(series_bytes: &[u8], series: u64) -> Result<Labels<'_>, RemoteWriteError> {
    let context = || format!("series {series}");
    let mut labels = Vec::new();
    let mut r = Reader::new(series_bytes);
    while let Some(f) = next(&mut r, &context())? {
        if f.num != V1_TS_LABELS || f.wire != WT_LEN {
            continue;
        }
        let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
        let mut lr = Reader::new(f.data);
        while let Some(lf) = next(&mut lr, &context())? {
            match (lf.num, lf.wire) {
                (V1_LABEL_NAME, WT_LEN) => name = lf.data,
                (V1_LABEL_VALUE, WT_LEN) => value = lf.data,
                _ => {}
            }
        }
        labels.push((name, value));
    }
    Ok(labels)
}

/// The v2 symbol table, in order (the references index it).
fn v2_symbols(decoded: &[u8]) -> Result<Vec<&[u8]>, RemoteWriteError> {
    let mut symbols = Vec::new();
    let mut r = Reader::new(decoded);
    while let Some(f) = next(&mut r, "request")? {
        if f.num == V2_SYMBOLS && f.wire == WT_LEN {
            symbols.push(f.data);
        }
    }
    Ok(symbols)
}

fn v2_labels<'a>(
    series_bytes: &[u8],
    symbols: &[&'a [u8]],
    refs: &mut Vec<u64>,
    series: u64,
) -> Result<Labels<'a>, RemoteWriteError> {
    let context = || format!("series {series}");
    refs.clear();
    let mut r = Reader::new(series_bytes);
    while let Some(f) = next(&mut r, &context())? {
        match (f.num, f.wire) {
            (V2_TS_LABELS_REFS, WT_VARINT) => refs.push(f.value),
            (V2_TS_LABELS_REFS, WT_LEN) => {
                let mut pos = 0;
                while pos < f.data.len() {
                    let v = read_varint(f.data, &mut pos)
                        .map_err(|e| super::validate::malformed(context(), e))?;
                    refs.push(v);
                }
            }
            _ => {}
        }
    }
    if !refs.len().is_multiple_of(2) {
        return Err(RemoteWriteError::Invalid(format!(
            "series {series}: odd number of label references"
        )));
    }
    let symbol = |r: u64| {
        usize::try_from(r)
            .ok()
            .and_then(|i| symbols.get(i).copied())
            .ok_or_else(|| {
                RemoteWriteError::Invalid(format!(
                    "series {series}: label reference {r} is outside the symbol table"
                ))
            })
    };
    refs.chunks_exact(2)
        .map(|pair| Ok((symbol(pair[0])?, symbol(pair[1])?)))
        .collect()
}
