//! A reference model of how Alertmanager reads a `POST /api/v2/silences` body (go-swagger's
//! `PostableSilence` decoded by Go's encoding/json), for tests and fuzz targets only: they check
//! that what the gateway accepted and what it forwards mean to Alertmanager exactly what the
//! gateway's model says.
//!
//! Written apart from [`super::PostableSilence::decode`] (its own JSON tree, its own key
//! matching) so that the two do not share a mistake. Modelled:
//! - a key is read as a field when it equals the field name ignoring ASCII case, with `ſ`
//!   (U+017F) matching `s` and the Kelvin sign (U+212A) `k` (Go 1.19, Alertmanager 0.25 as
//!   Debian builds it), and `İ` (U+0130) or `ı` (U+0131) matching `i` (Go ≥ 1.21); unknown keys
//!   are ignored;
//! - of several keys read as one field the last wins; a null leaves `id` (a Go `string`) as it
//!   was and clears the other fields (Go pointers and slices);
//! - `id` and the silence's other fields are decoded in two passes (go-swagger's `allOf`), which
//!   changes nothing here since no key matches fields of both;
//! - a value of the wrong JSON type is an error, as are absent required fields (Alertmanager's
//!   validation), a null matcher, and a non-object body.
//!
//! Not modelled: where Go merges a later duplicate object or array into the earlier value
//! instead of replacing it, date-time validation of `startsAt`/`endsAt`, the `minItems: 1` of
//! `matchers`, and inputs serde_json refuses but Go reads (invalid UTF-8, lone surrogate
//! escapes, data after the first value): all of those are refused by the gateway, so the
//! checks this module serves never meet them.

use super::{Matcher, PostableSilence};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// What Alertmanager reads from `body`, or why it would refuse it.
pub fn decode(body: &[u8]) -> Result<PostableSilence, String> {
    let tree: GoJson = serde_json::from_slice(body).map_err(|e| format!("json: {e}"))?;
    let GoJson::Object(entries) = tree else {
        return Err("json: cannot unmarshal a non-object into PostableSilence".into());
    };
    let mut id = String::new();
    let mut matchers: Option<Vec<GoJson>> = None;
    let mut strings: [Option<String>; 4] = Default::default();
    const STRINGS: [&str; 4] = ["startsAt", "endsAt", "createdBy", "comment"];
    for (key, value) in entries {
        if reads_as(&key, "id") {
            match value {
                GoJson::Null => {}
                GoJson::String(s) => id = s,
                _ => return Err("json: id is not a string".into()),
            }
        } else if reads_as(&key, "matchers") {
            matchers = match value {
                GoJson::Null => None,
                GoJson::Array(items) => Some(items),
                _ => return Err("json: matchers is not an array".into()),
            };
        } else if let Some(i) = STRINGS.iter().position(|f| reads_as(&key, f)) {
            strings[i] = match value {
                GoJson::Null => None,
                GoJson::String(s) => Some(s),
                _ => return Err(format!("json: {} is not a string", STRINGS[i])),
            };
        }
    }
    let matchers = matchers
        .ok_or("matchers in body is required")?
        .into_iter()
        .map(matcher)
        .collect::<Result<Vec<_>, _>>()?;
    let [starts_at, ends_at, created_by, comment] = strings;
    let need = |v: Option<String>, name: &str| v.ok_or(format!("{name} in body is required"));
    Ok(PostableSilence {
        id: Some(id).filter(|s| !s.is_empty()),
        matchers,
        starts_at: need(starts_at, "startsAt")?,
        ends_at: need(ends_at, "endsAt")?,
        created_by: need(created_by, "createdBy")?,
        comment: need(comment, "comment")?,
    })
}

fn matcher(node: GoJson) -> Result<Matcher, String> {
    let GoJson::Object(entries) = node else {
        return Err("json: a matcher is not an object (or null)".into());
    };
    let (mut name, mut value, mut is_regex, mut is_equal) = (None, None, None, None);
    for (key, v) in entries {
        if reads_as(&key, "name") || reads_as(&key, "value") {
            let s = match v {
                GoJson::Null => None,
                GoJson::String(s) => Some(s),
                _ => return Err(format!("json: matcher {key} is not a string")),
            };
            if reads_as(&key, "name") {
                name = s;
            } else {
                value = s;
            }
        } else if reads_as(&key, "isRegex") || reads_as(&key, "isEqual") {
            let b = match v {
                GoJson::Null => None,
                GoJson::Bool(b) => Some(b),
                _ => return Err(format!("json: matcher {key} is not a boolean")),
            };
            if reads_as(&key, "isRegex") {
                is_regex = b;
            } else {
                is_equal = b;
            }
        }
    }
    Ok(Matcher {
        name: name.ok_or("name in body is required")?,
        value: value.ok_or("value in body is required")?,
        is_regex: is_regex.ok_or("isRegex in body is required")?,
        is_equal: is_equal.unwrap_or(true),
    })
}

/// True when Go's encoding/json reads `key` as the (ASCII) field `name`; see the module
/// documentation for the characters that count.
pub fn reads_as(key: &str, name: &str) -> bool {
    let mut key = key.chars();
    for n in name.chars() {
        let Some(k) = key.next() else {
            return false;
        };
        let same = k.eq_ignore_ascii_case(&n)
            || match n.to_ascii_lowercase() {
                's' => k == '\u{17F}',
                'k' => k == '\u{212A}',
                'i' => k == '\u{130}' || k == '\u{131}',
                _ => false,
            };
        if !same {
            return false;
        }
    }
    key.next().is_none()
}

/// A JSON value with object entries in order, duplicates kept (the reference's own tree).
enum GoJson {
    Null,
    Bool(bool),
    Number,
    String(String),
    Array(Vec<GoJson>),
    Object(Vec<(String, GoJson)>),
}

impl<'de> Deserialize<'de> for GoJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GoJson, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GoJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E: de::Error>(self) -> Result<GoJson, E> {
                Ok(GoJson::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<GoJson, E> {
                Ok(GoJson::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<GoJson, E> {
                Ok(GoJson::Number)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<GoJson, E> {
                Ok(GoJson::Number)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<GoJson, E> {
                Ok(GoJson::Number)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoJson, E> {
                Ok(GoJson::String(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GoJson, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(GoJson::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GoJson, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    entries.push((k, v));
                }
                Ok(GoJson::Object(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}
