//! The labels injected into every series, validated and pre-encoded for the v1 splice.

use super::error::RemoteWriteError;
use super::wire;

/// Labels to inject into every series: sorted by name, names unique.
///
/// Names must match `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__` (reserved for
/// Prometheus, e.g. `__name__`); values must be non-empty (an empty value would delete a
/// client label of that name rather than set one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSet {
    pub(super) labels: Vec<(String, String)>,
    /// Each label pre-encoded as a v1 `TimeSeries.labels` field (tag, length, `Label`), so v1
    /// injection is a memcpy; `v1_ends[i]` is where label `i` ends in `v1_encoded`.
    pub(super) v1_encoded: Vec<u8>,
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
    pub(super) fn v1_field(&self, i: usize) -> &[u8] {
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
