//! The body of `POST /api/v2/silences`, modelled exactly: Alertmanager v2 `PostableSilence`.
//!
//! Alertmanager decodes that body with Go's encoding/json, which reads an object key as a
//! struct field when the two are equal under Unicode case folding (`Matchers`, `matcherſ` and
//! `MATCHERS` are all `matchers` to it) and lets the last of several such keys win. A gateway
//! that checked one key and forwarded the client's bytes would enforce a silence Alertmanager
//! never reads. So [`PostableSilence::decode`] accepts only bodies in which every key, after
//! JSON unescaping, is exactly one of the model's field names and appears once; anything else
//! is a [`SilenceError`] that names the key. The gateway forwards the model serialised by
//! serde (exactly Alertmanager's keys), never the client's bytes (DESIGN.md, "The forwarding
//! contract").
//!
//! [`go_equal_fold`] says which field Alertmanager would have read an unknown key as; it only
//! makes the error message precise, the refusal does not depend on it.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use std::fmt;

#[cfg(any(test, feature = "fuzzing"))]
pub mod go_reference;
#[cfg(test)]
mod spellings;

/// The fields of a silence, in Alertmanager's spelling.
pub const SILENCE_FIELDS: [&str; 6] = [
    "id",
    "matchers",
    "startsAt",
    "endsAt",
    "createdBy",
    "comment",
];

/// The fields of one matcher, in Alertmanager's spelling.
pub const MATCHER_FIELDS: [&str; 4] = ["name", "value", "isRegex", "isEqual"];

/// A silence as a client posts it: Alertmanager v2 `PostableSilence`.
///
/// Serialises to exactly Alertmanager's keys; `id` is left out when it is `None` or empty
/// (both mean "a new silence" to Alertmanager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableSilence {
    /// The silence replaced by this one; `None` for a new silence.
    #[serde(skip_serializing_if = "id_absent")]
    pub id: Option<String>,
    pub matchers: Vec<Matcher>,
    /// RFC 3339 date-times, passed on as written: Alertmanager validates them, and their value
    /// cannot change whose alerts a silence selects.
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// One label matcher of a silence: `name="value"`, `!=`, `=~` or `!~`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// Optional in the body, `true` when absent or null (as Alertmanager defaults it); always
    /// written out, so the forwarded body does not depend on a default.
    pub is_equal: bool,
}

fn id_absent(id: &Option<String>) -> bool {
    id.as_deref().is_none_or(str::is_empty)
}

impl fmt::Display for Matcher {
    /// PromQL-like: `tenant_id=~"team-.*"`, the value JSON-quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (true, false) => "!~",
        };
        let value = serde_json::Value::String(self.value.clone());
        write!(f, "{}{op}{value}", self.name)
    }
}

/// Where in the body an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The top-level object.
    Silence,
    /// The matcher at this index of `matchers`.
    Matcher(usize),
}

impl Place {
    fn noun(self) -> &'static str {
        match self {
            Place::Silence => "silence",
            Place::Matcher(_) => "matcher",
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Place::Silence => &SILENCE_FIELDS,
            Place::Matcher(_) => &MATCHER_FIELDS,
        }
    }

    /// `""` or `" in matchers[2]"`, for messages about a key.
    fn within(self) -> String {
        match self {
            Place::Silence => String::new(),
            Place::Matcher(i) => format!(" in matchers[{i}]"),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Silence => f.write_str("the silence"),
            Place::Matcher(i) => write!(f, "matchers[{i}]"),
        }
    }
}

/// Why a silence body was refused. Every message is meant for the API user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// Not one JSON value (or trailing data after it); `message` is serde_json's.
    #[error("the silence is not valid JSON: {message}")]
    Syntax { message: String },

    /// The silence, or one of its matchers, is not a JSON object.
    #[error("{place} must be a JSON object, not {found}")]
    NotAnObject { place: Place, found: &'static str },

    /// A key that is not exactly a field name. `reads_as`: the field Alertmanager (Go's
    /// case-insensitive key matching) would take it for.
    #[error("key {}{} is not a {} field{}", shown(.key), .place.within(), .place.noun(), unknown_hint(*.place, *.reads_as))]
    UnknownKey {
        key: String,
        place: Place,
        reads_as: Option<&'static str>,
    },

    /// A field given twice: Alertmanager would read only the last one.
    #[error("duplicate key {} in {place} (Alertmanager would read only the last one)", shown(.key))]
    DuplicateKey { key: String, place: Place },

    /// Required fields that are absent.
    #[error("{place} lacks the required {}", names(.fields))]
    Missing {
        place: Place,
        fields: Vec<&'static str>,
    },

    /// A field whose value has the wrong JSON type.
    #[error("\"{field}\" in {place} must be {expected}, not {found}")]
    WrongType {
        field: &'static str,
        place: Place,
        expected: &'static str,
        found: &'static str,
    },
}

impl SilenceError {
    /// A short, fixed value for the `reason` label of `whizard_enforcement_rejections_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            SilenceError::Syntax { .. } => "silence_syntax",
            SilenceError::NotAnObject { .. } => "silence_not_object",
            SilenceError::UnknownKey { .. } => "silence_unknown_key",
            SilenceError::DuplicateKey { .. } => "silence_duplicate_key",
            SilenceError::Missing { .. } => "silence_missing",
            SilenceError::WrongType { .. } => "silence_type",
        }
    }
}

/// Longest part of a client's key repeated in a message: a key can be as long as the body.
const SHOWN_KEY_CHARS: usize = 64;

/// The key quoted (Rust escapes for control characters), cut at [`SHOWN_KEY_CHARS`].
fn shown(key: &str) -> String {
    match key.char_indices().nth(SHOWN_KEY_CHARS) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &key[..cut])),
        None => format!("{key:?}"),
    }
}

fn unknown_hint(place: Place, reads_as: Option<&'static str>) -> String {
    match reads_as {
        Some(field) => format!(" (Alertmanager would read it as \"{field}\")"),
        None => format!(" (the fields are {})", place.fields().join(", ")),
    }
}

fn names(fields: &[&'static str]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    match quoted.as_slice() {
        [one] => format!("field {one}"),
        _ => format!("fields {}", quoted.join(", ")),
    }
}

impl PostableSilence {
    /// Decodes a client's body; see the module documentation for what is refused.
    pub fn decode(body: &[u8]) -> Result<PostableSilence, SilenceError> {
        let node: Node = serde_json::from_slice(body).map_err(|e| SilenceError::Syntax {
            message: e.to_string(),
        })?;
        let place = Place::Silence;
        let [id, matchers, starts_at, ends_at, created_by, comment] =
            object_fields(node, place, &SILENCE_FIELDS)?;
        let absent: Vec<&'static str> = [
            ("matchers", &matchers),
            ("startsAt", &starts_at),
            ("endsAt", &ends_at),
            ("createdBy", &created_by),
            ("comment", &comment),
        ]
        .into_iter()
        .filter_map(|(name, slot)| slot.is_none().then_some(name))
        .collect();
        if !absent.is_empty() {
            return Err(SilenceError::Missing {
                place,
                fields: absent,
            });
        }
        let id = match id {
            // Alertmanager reads a null or empty id as "no id": a new silence.
            None | Some(Node::Null) => None,
            Some(Node::String(s)) => Some(s).filter(|s| !s.is_empty()),
            Some(other) => return Err(wrong_type("id", place, "a string", &other)),
        };
        let matchers = match required(matchers, "matchers", place)? {
            Node::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Matcher::decode(item, Place::Matcher(i)))
                .collect::<Result<Vec<_>, _>>()?,
            other => return Err(wrong_type("matchers", place, "an array", &other)),
        };
        Ok(PostableSilence {
            id,
            matchers,
            starts_at: string(required(starts_at, "startsAt", place)?, "startsAt", place)?,
            ends_at: string(required(ends_at, "endsAt", place)?, "endsAt", place)?,
            created_by: string(
                required(created_by, "createdBy", place)?,
                "createdBy",
                place,
            )?,
            comment: string(required(comment, "comment", place)?, "comment", place)?,
        })
    }
}

impl Matcher {
    fn decode(node: Node, place: Place) -> Result<Matcher, SilenceError> {
        let [name, value, is_regex, is_equal] = object_fields(node, place, &MATCHER_FIELDS)?;
        let absent: Vec<&'static str> =
            [("name", &name), ("value", &value), ("isRegex", &is_regex)]
                .into_iter()
                .filter_map(|(field, slot)| slot.is_none().then_some(field))
                .collect();
        if !absent.is_empty() {
            return Err(SilenceError::Missing {
                place,
                fields: absent,
            });
        }
        let is_equal = match is_equal {
            None | Some(Node::Null) => true,
            Some(node) => boolean(node, "isEqual", place)?,
        };
        Ok(Matcher {
            name: string(required(name, "name", place)?, "name", place)?,
            value: string(required(value, "value", place)?, "value", place)?,
            is_regex: boolean(required(is_regex, "isRegex", place)?, "isRegex", place)?,
            is_equal,
        })
    }
}

/// The values of an object's `fields`, by position. Refuses a non-object, a key that is not
/// exactly one of `fields` and a repeated key, each at the first offending key.
fn object_fields<const N: usize>(
    node: Node,
    place: Place,
    fields: &[&'static str; N],
) -> Result<[Option<Node>; N], SilenceError> {
    let entries = match node {
        Node::Object(entries) => entries,
        other => {
            return Err(SilenceError::NotAnObject {
                place,
                found: other.kind(),
            })
        }
    };
    let mut slots: [Option<Node>; N] = std::array::from_fn(|_| None);
    for (key, value) in entries {
        match fields.iter().position(|f| *f == key) {
            Some(i) if slots[i].is_some() => return Err(SilenceError::DuplicateKey { key, place }),
            Some(i) => slots[i] = Some(value),
            None => {
                let reads_as = fields.iter().copied().find(|f| go_equal_fold(&key, f));
                return Err(SilenceError::UnknownKey {
                    key,
                    place,
                    reads_as,
                });
            }
        }
    }
    Ok(slots)
}

/// A field the caller has already checked to be present; the error is a safety net.
fn required(slot: Option<Node>, field: &'static str, place: Place) -> Result<Node, SilenceError> {
    slot.ok_or_else(|| SilenceError::Missing {
        place,
        fields: vec![field],
    })
}

fn string(node: Node, field: &'static str, place: Place) -> Result<String, SilenceError> {
    match node {
        Node::String(s) => Ok(s),
        other => Err(wrong_type(field, place, "a string", &other)),
    }
}

fn boolean(node: Node, field: &'static str, place: Place) -> Result<bool, SilenceError> {
    match node {
        Node::Bool(b) => Ok(b),
        other => Err(wrong_type(field, place, "a boolean", &other)),
    }
}

fn wrong_type(
    field: &'static str,
    place: Place,
    expected: &'static str,
    found: &Node,
) -> SilenceError {
    SilenceError::WrongType {
        field,
        place,
        expected,
        found: found.kind(),
    }
}

/// A JSON value with every object key kept, in document order and duplicates included:
/// `serde_json::Value` keeps only the last of equal keys, which would hide a duplicate.
enum Node {
    Null,
    Bool(bool),
    /// The model has no numbers; only the type matters, for the error message.
    Number,
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Number)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Number)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Number)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Object(entries))
    }
}

/// True when Go's encoding/json would read the object key `key` as the struct field `name`.
///
/// Go 1.19 (Alertmanager 0.25 as Debian builds it) compares like `bytes.EqualFold`: equal
/// under Unicode simple case folding, where `ſ` (U+017F) is an `s` and the Kelvin sign `K`
/// (U+212A) a `k`. Go 1.21 and later compare `ToUpper(ToLower(r))` of every rune, which also
/// makes `İ` (U+0130) and `ı` (U+0131) an `i`. This is true when either would match (see
/// [`go_fold`]).
pub fn go_equal_fold(key: &str, name: &str) -> bool {
    key.chars().map(go_fold).eq(name.chars().map(go_fold))
}

/// Go ≥ 1.21 encoding/json's fold of one rune: ASCII upper-cased, anything else
/// `unicode.ToUpper(unicode.ToLower(r))` (simple, one-rune case mappings).
///
/// Rust only has the full mappings, which differ from the simple ones where a full mapping is
/// several characters: there the character is kept as it is, except for `İ`, whose simple
/// lowercase is `i` (its full one is `i` + U+0307). The result is exact for every character
/// whose fold is ASCII (ASCII itself, `ſ`, `K`, `İ`, `ı`: the unit tests check the whole of
/// Unicode), which is all a comparison with an ASCII field name needs; elsewhere it may differ
/// from Go for a few Greek letters with iota subscript.
pub fn go_fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    if c == '\u{130}' {
        return 'I';
    }
    let lower = single(c.to_lowercase()).unwrap_or(c);
    single(lower.to_uppercase()).unwrap_or(lower)
}

/// The only item of `chars`, if there is exactly one.
fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests;
