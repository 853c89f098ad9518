//! Unit and property tests of the silence model: a table of accepted and refused bodies, the Go
//! fold, and properties checked against the Go-semantics reference decoder.

use super::go_reference;
use super::spellings::variants;
use super::*;
use proptest::prelude::*;

const MATCHER: &str = r#"{"name":"alertname","value":"x","isRegex":false}"#;

/// A body as members (raw key text between the quotes, raw value), so tests can misspell,
/// escape, repeat and reorder keys.
#[derive(Clone)]
struct Body(Vec<(String, String)>);

impl Body {
    fn valid() -> Body {
        Body(vec![
            ("matchers".into(), format!("[{MATCHER}]")),
            ("startsAt".into(), r#""2026-01-01T00:00:00Z""#.into()),
            ("endsAt".into(), r#""2026-01-02T00:00:00Z""#.into()),
            ("createdBy".into(), r#""me""#.into()),
            ("comment".into(), r#""c""#.into()),
        ])
    }

    /// The member `key` renamed to `raw_key`; added at the end when absent.
    fn rename(mut self, key: &str, raw_key: &str, value: &str) -> Body {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(member) => member.0 = raw_key.into(),
            None => self.0.push((raw_key.into(), value.into())),
        }
        self
    }

    fn set(mut self, key: &str, value: &str) -> Body {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(member) => member.1 = value.into(),
            None => self.0.push((key.into(), value.into())),
        }
        self
    }

    fn push(mut self, raw_key: &str, value: &str) -> Body {
        self.0.push((raw_key.into(), value.into()));
        self
    }

    fn front(mut self, raw_key: &str, value: &str) -> Body {
        self.0.insert(0, (raw_key.into(), value.into()));
        self
    }

    fn without(mut self, key: &str) -> Body {
        self.0.retain(|(k, _)| k != key);
        self
    }

    fn text(&self) -> String {
        let members: Vec<String> = self.0.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", members.join(","))
    }
}

fn expected_valid() -> PostableSilence {
    PostableSilence {
        id: None,
        matchers: vec![Matcher {
            name: "alertname".into(),
            value: "x".into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at: "2026-01-01T00:00:00Z".into(),
        ends_at: "2026-01-02T00:00:00Z".into(),
        created_by: "me".into(),
        comment: "c".into(),
    }
}

fn refused(body: &str) -> SilenceError {
    match PostableSilence::decode(body.as_bytes()) {
        Ok(s) => panic!("accepted {body}\nas {s:?}"),
        Err(e) => e,
    }
}

fn assert_refused(body: &str, message: &str) -> SilenceError {
    let e = refused(body);
    assert!(
        e.to_string().contains(message),
        "{body}\n  refused with: {e}\n  expected a message containing: {message}"
    );
    e
}

#[test]
fn accepted_bodies() {
    let cases: Vec<(String, PostableSilence)> = vec![
        (Body::valid().text(), expected_valid()),
        (Body::valid().front("id", r#""""#).text(), expected_valid()),
        (Body::valid().push("id", "null").text(), expected_valid()),
        (
            Body::valid().push("id", r#""8d2c-41_aF""#).text(),
            PostableSilence {
                id: Some("8d2c-41_aF".into()),
                ..expected_valid()
            },
        ),
        // Escapes are undone before the comparison: these are the real keys.
        (
            Body::valid()
                .rename("matchers", r"\u006datchers", "")
                .rename("startsAt", r"start\u0073At", "")
                .rename("comment", r"\u0063\u006F\u006d\u006dent", "")
                .text(),
            expected_valid(),
        ),
        (
            Body::valid()
                .set(
                    "matchers",
                    r#"[{"n\u0061me":"alertname","value":"x","isRegex":false,"isEqual":null}]"#,
                )
                .text(),
            expected_valid(),
        ),
        // Any order; the folding characters are fine in values.
        (
            r#" { "comment" : "ſ K İ ı \u017f" , "createdBy":"me","endsAt":"e","startsAt":"s",
                   "matchers":[{"isEqual":false,"isRegex":true,"value":".+","name":"Matcherſ"}]} "#
                .to_string(),
            PostableSilence {
                id: None,
                matchers: vec![Matcher {
                    name: "Matcherſ".into(),
                    value: ".+".into(),
                    is_regex: true,
                    is_equal: false,
                }],
                starts_at: "s".into(),
                ends_at: "e".into(),
                created_by: "me".into(),
                comment: "ſ K İ ı ſ".into(),
            },
        ),
        // No matchers: the enforcement adds the tenant's.
        (
            Body::valid().set("matchers", "[]").text(),
            PostableSilence {
                matchers: vec![],
                ..expected_valid()
            },
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            PostableSilence::decode(body.as_bytes()).as_ref(),
            Ok(&want),
            "{body}"
        );
        assert_eq!(
            go_reference::decode(body.as_bytes()).as_ref(),
            Ok(&want),
            "the reference reads {body} differently"
        );
    }
}

#[test]
fn every_misspelled_silence_key_is_refused_and_named() {
    let mut n = 0;
    for field in SILENCE_FIELDS {
        let value = if field == "matchers" {
            r#"[{"name":"alertname","value":".+","isRegex":true}]"#
        } else {
            r#""smuggled""#
        };
        for v in variants(field) {
            let message = format!(
                "key {v:?} is not a silence field (Alertmanager would read it as {field:?})"
            );
            let bodies = [
                Body::valid().rename(field, &v, value),
                Body::valid().push(&v, value),
                Body::valid().front(&v, value),
            ];
            for body in bodies {
                let text = body.text();
                let e = assert_refused(&text, &message);
                assert_eq!(e.reason(), "silence_unknown_key");
                assert!(
                    go_reference::reads_as(&v, field),
                    "the reference does not read {v:?} as {field:?}"
                );
                n += 1;
            }
        }
    }
    // 24 spellings of the six names, each in place of the name, after it and before it.
    assert_eq!(n, 72);
}

#[test]
fn every_misspelled_matcher_key_is_refused_and_named() {
    for field in MATCHER_FIELDS {
        for v in variants(field) {
            let message = format!(
                "key {v:?} in matchers[1] is not a matcher field (Alertmanager would read it as {field:?})"
            );
            let smuggled = format!(
                r#"[{MATCHER},{{"name":"job","value":"x","isRegex":false,"isEqual":true,"{v}":true}}]"#
            );
            assert_refused(&Body::valid().set("matchers", &smuggled).text(), &message);
            let renamed = format!(r#"[{MATCHER},{}]"#, MATCHER.replacen(field, &v, 1));
            if field != "isEqual" {
                assert_refused(&Body::valid().set("matchers", &renamed).text(), &message);
            }
        }
    }
}

#[test]
fn refused_bodies() {
    let unknown = "(the fields are id, matchers, startsAt, endsAt, createdBy, comment)";
    let kelvin = format!("key \"\u{212A}omment\" is not a silence field {unknown}");
    let extra = format!(r#"key "extra" is not a silence field {unknown}"#);
    let long = format!("key \"{}…\" is not", "x".repeat(64));
    let cases: Vec<(String, &str, &str)> = vec![
        // Escaped folding characters are unescaped first, then named in the message.
        (
            Body::valid().push(r"matcher\u017f", "[]").text(),
            r#"key "matcherſ" is not a silence field (Alertmanager would read it as "matchers")"#,
            "silence_unknown_key",
        ),
        (
            Body::valid().front(r"\u0130D", r#""x""#).text(),
            r#"key "İD" is not a silence field (Alertmanager would read it as "id")"#,
            "silence_unknown_key",
        ),
        (
            Body::valid().push(r"\u212Aomment", r#""x""#).text(),
            &kelvin,
            "silence_unknown_key",
        ),
        (
            Body::valid().push("extra", "1").text(),
            &extra,
            "silence_unknown_key",
        ),
        (
            Body::valid().push("", "1").text(),
            r#"key "" is not a silence field"#,
            "silence_unknown_key",
        ),
        (
            Body::valid().push(r"comment\u0000", "1").text(),
            r#"key "comment\0" is not a silence field"#,
            "silence_unknown_key",
        ),
        (
            Body::valid().push(&"x".repeat(500), "1").text(),
            &long,
            "silence_unknown_key",
        ),
        // Duplicates, before and after, exact or escaped.
        (
            Body::valid()
                .push(
                    "matchers",
                    r#"[{"name":"alertname","value":".+","isRegex":true}]"#,
                )
                .text(),
            r#"duplicate key "matchers" in the silence (Alertmanager would read only the last one)"#,
            "silence_duplicate_key",
        ),
        (
            Body::valid().front("comment", r#""first""#).text(),
            r#"duplicate key "comment" in the silence"#,
            "silence_duplicate_key",
        ),
        (
            Body::valid().push(r"\u0063omment", "null").text(),
            r#"duplicate key "comment" in the silence"#,
            "silence_duplicate_key",
        ),
        (
            Body::valid()
                .front("id", r#""""#)
                .push("id", r#""x""#)
                .text(),
            r#"duplicate key "id" in the silence"#,
            "silence_duplicate_key",
        ),
        (
            Body::valid()
                .set(
                    "matchers",
                    r#"[{"name":"alertname","value":"x","isRegex":false,"name":"tenant_id"}]"#,
                )
                .text(),
            r#"duplicate key "name" in matchers[0]"#,
            "silence_duplicate_key",
        ),
        (
            Body::valid()
                .set(
                    "matchers",
                    r#"[{"isEqual":true,"name":"a","value":"x","isRegex":false,"isEqual":false}]"#,
                )
                .text(),
            r#"duplicate key "isEqual" in matchers[0]"#,
            "silence_duplicate_key",
        ),
        // Not an object.
        (
            "[]".into(),
            "the silence must be a JSON object, not an array",
            "silence_not_object",
        ),
        (
            r#""{}""#.into(),
            "the silence must be a JSON object, not a string",
            "silence_not_object",
        ),
        (
            "null".into(),
            "the silence must be a JSON object, not null",
            "silence_not_object",
        ),
        (
            "1".into(),
            "the silence must be a JSON object, not a number",
            "silence_not_object",
        ),
        (
            "true".into(),
            "the silence must be a JSON object, not a boolean",
            "silence_not_object",
        ),
        (
            Body::valid()
                .set(
                    "matchers",
                    r#"[{"name":"a","value":"x","isRegex":false}, 1]"#,
                )
                .text(),
            "matchers[1] must be a JSON object, not a number",
            "silence_not_object",
        ),
        (
            Body::valid().set("matchers", "[null]").text(),
            "matchers[0] must be a JSON object, not null",
            "silence_not_object",
        ),
        // Not one JSON value.
        ("".into(), "the silence is not valid JSON", "silence_syntax"),
        (
            "   ".into(),
            "the silence is not valid JSON",
            "silence_syntax",
        ),
        (
            format!("{} x", Body::valid().text()),
            "trailing characters",
            "silence_syntax",
        ),
        (
            format!("{}{}", Body::valid().text(), Body::valid().text()),
            "trailing characters",
            "silence_syntax",
        ),
        (
            Body::valid().text().replace('}', ""),
            "the silence is not valid JSON",
            "silence_syntax",
        ),
        (
            Body::valid().push(r"\ud800", "1").text(),
            "the silence is not valid JSON",
            "silence_syntax",
        ),
        (
            Body::valid().set("comment", "01").text(),
            "the silence is not valid JSON",
            "silence_syntax",
        ),
        // Missing fields, all named.
        (
            Body::valid().without("startsAt").without("endsAt").text(),
            r#"the silence lacks the required fields "startsAt", "endsAt""#,
            "silence_missing",
        ),
        (
            "{}".into(),
            r#"lacks the required fields "matchers", "startsAt", "endsAt", "createdBy", "comment""#,
            "silence_missing",
        ),
        (
            Body::valid()
                .set("matchers", r#"[{"name":"a","value":"x"}]"#)
                .text(),
            r#"matchers[0] lacks the required field "isRegex""#,
            "silence_missing",
        ),
        // Wrong types.
        (
            Body::valid().set("comment", "1").text(),
            r#""comment" in the silence must be a string, not a number"#,
            "silence_type",
        ),
        (
            Body::valid().set("createdBy", "null").text(),
            r#""createdBy" in the silence must be a string, not null"#,
            "silence_type",
        ),
        (
            Body::valid().set("matchers", "{}").text(),
            r#""matchers" in the silence must be an array, not an object"#,
            "silence_type",
        ),
        (
            Body::valid().set("matchers", "null").text(),
            r#""matchers" in the silence must be an array, not null"#,
            "silence_type",
        ),
        (
            Body::valid().push("id", "5").text(),
            r#""id" in the silence must be a string, not a number"#,
            "silence_type",
        ),
        (
            Body::valid()
                .set("matchers", r#"[{"name":"a","value":"x","isRegex":"true"}]"#)
                .text(),
            r#""isRegex" in matchers[0] must be a boolean, not a string"#,
            "silence_type",
        ),
        (
            Body::valid()
                .set(
                    "matchers",
                    r#"[{"name":"a","value":["x"],"isRegex":false}]"#,
                )
                .text(),
            r#""value" in matchers[0] must be a string, not an array"#,
            "silence_type",
        ),
        (
            Body::valid()
                .set(
                    "matchers",
                    r#"[{"name":"a","value":"x","isRegex":false,"isEqual":0}]"#,
                )
                .text(),
            r#""isEqual" in matchers[0] must be a boolean, not a number"#,
            "silence_type",
        ),
    ];
    for (body, message, reason) in cases {
        let e = assert_refused(&body, message);
        assert_eq!(e.reason(), reason, "{body}: {e}");
    }
    // Invalid UTF-8 (Go would read it as U+FFFD).
    let mut bytes = Body::valid().text().into_bytes();
    bytes.splice(2..2, [0xff]);
    assert!(matches!(
        PostableSilence::decode(&bytes),
        Err(SilenceError::Syntax { .. })
    ));
    // Deep nesting is a syntax error (serde_json's recursion limit), not a stack overflow.
    let deep = Body::valid()
        .set(
            "comment",
            &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        )
        .text();
    assert!(matches!(
        PostableSilence::decode(deep.as_bytes()),
        Err(SilenceError::Syntax { .. })
    ));
}

#[test]
fn serialised_with_exactly_alertmanagers_keys() {
    let mut s = expected_valid();
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#"{"matchers":[{"name":"alertname","value":"x","isRegex":false,"isEqual":true}],"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-02T00:00:00Z","createdBy":"me","comment":"c"}"#
    );
    s.id = Some(String::new());
    assert!(!serde_json::to_string(&s).unwrap().contains("\"id\""));
    s.id = Some("abc".into());
    assert!(serde_json::to_string(&s)
        .unwrap()
        .starts_with(r#"{"id":"abc","matchers""#));
    assert_eq!(
        s.matchers[0].to_string(),
        r#"alertname="x""#,
        "Display of a matcher"
    );
    let m = |is_regex, is_equal| Matcher {
        name: "n".into(),
        value: "a\"b".into(),
        is_regex,
        is_equal,
    };
    assert_eq!(m(false, false).to_string(), r#"n!="a\"b""#);
    assert_eq!(m(true, true).to_string(), r#"n=~"a\"b""#);
    assert_eq!(m(true, false).to_string(), r#"n!~"a\"b""#);
}

#[test]
fn go_fold_special_characters() {
    // Kelvin sign and long s: Go's simple-folding orbits k/K/K and s/S/ſ.
    assert!(go_equal_fold("\u{212A}ey", "key"));
    assert!(go_equal_fold("KEY", "\u{212A}ey"));
    assert!(go_equal_fold("matcher\u{17F}", "matchers"));
    assert!(go_equal_fold("\u{17F}tart\u{17F}At", "STARTSAT"));
    // Angstrom sign: å (U+E5) and Å (U+C5).
    assert!(go_equal_fold("\u{212B}", "\u{E5}"));
    assert!(go_equal_fold("\u{212B}", "\u{C5}"));
    // Go 1.21+: ToUpper(ToLower(r)) makes İ and ı an I.
    assert!(go_equal_fold("\u{130}d", "id"));
    assert!(go_equal_fold("\u{131}D", "id"));
    // Greek sigma forms, and ß/ẞ (which Go does not fold to "ss").
    assert!(go_equal_fold("\u{3C2}", "\u{3A3}"));
    assert!(go_equal_fold("\u{3C3}", "\u{3C2}"));
    assert!(go_equal_fold("\u{1E9E}", "\u{DF}"));
    assert!(!go_equal_fold("\u{DF}", "ss"));
    assert!(!go_equal_fold("matcher", "matchers"));
    assert!(!go_equal_fold("matchers ", "matchers"));
    assert!(!go_equal_fold("i\u{307}d", "id"));
    assert!(!go_equal_fold("", "id"));
    assert!(go_equal_fold("", ""));
}

/// Over the whole of Unicode: the characters outside ASCII that fold to ASCII are exactly the
/// four Go knows, with the folds Go gives them; so no other spelling of an ASCII field name
/// exists, and the reference decoder's list of them is complete.
#[test]
fn go_fold_to_ascii_is_exactly_four_characters() {
    let to_ascii: Vec<(char, char)> = (0x80..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .map(|c| (c, go_fold(c)))
        .filter(|(_, f)| f.is_ascii())
        .collect();
    assert_eq!(
        to_ascii,
        vec![
            ('\u{130}', 'I'),
            ('\u{131}', 'I'),
            ('\u{17F}', 'S'),
            ('\u{212A}', 'K')
        ]
    );
    for (c, f) in to_ascii {
        let name = f.to_ascii_lowercase().to_string();
        assert!(go_reference::reads_as(&c.to_string(), &name), "{c}");
    }
    for c in (0u8..0x80).map(char::from) {
        assert_eq!(go_fold(c), c.to_ascii_uppercase());
    }
}

// ------------------------------------------------------------------------------ properties

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_ .*+|-]{0,12}",
        any::<String>(),
        Just("tenant_id".to_string()),
        Just("matchers".to_string()),
    ]
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    (arb_text(), arb_text(), any::<bool>(), any::<bool>()).prop_map(
        |(name, value, is_regex, is_equal)| Matcher {
            name,
            value,
            is_regex,
            is_equal,
        },
    )
}

fn arb_silence() -> impl Strategy<Value = PostableSilence> {
    (
        proptest::option::of("(?s).{1,40}"),
        proptest::collection::vec(arb_matcher(), 0..4),
        (arb_text(), arb_text(), arb_text(), arb_text()),
    )
        .prop_map(
            |(id, matchers, (starts_at, ends_at, created_by, comment))| PostableSilence {
                id,
                matchers,
                starts_at,
                ends_at,
                created_by,
                comment,
            },
        )
}

/// A key as written: each character literal or as a `\u` escape (upper- or lower-case hex).
#[derive(Clone, Debug)]
struct Key(Vec<(char, Option<bool>)>);

impl Key {
    fn plain(s: &str) -> Key {
        Key(s.chars().map(|c| (c, None)).collect())
    }

    fn logical(&self) -> String {
        self.0.iter().map(|(c, _)| c).collect()
    }

    fn write(&self, out: &mut String) {
        out.push('"');
        for &(c, escaped) in &self.0 {
            match escaped {
                Some(upper) => {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        if upper {
                            out.push_str(&format!("\\u{unit:04X}"));
                        } else {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                }
                None => {
                    let quoted = serde_json::to_string(&c.to_string()).unwrap_or_default();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
            }
        }
        out.push('"');
    }
}

#[derive(Clone, Debug)]
enum Val {
    Raw(String),
    Objects(Vec<Obj>),
}

#[derive(Clone, Debug)]
struct Obj(Vec<(Key, Val)>);

impl Obj {
    fn of(s: &PostableSilence) -> Obj {
        let text = |v: &str| Val::Raw(serde_json::to_string(v).unwrap_or_default());
        let mut members = Vec::new();
        if let Some(id) = &s.id {
            members.push((Key::plain("id"), text(id)));
        }
        let matchers = s
            .matchers
            .iter()
            .map(|m| {
                Obj(vec![
                    (Key::plain("name"), text(&m.name)),
                    (Key::plain("value"), text(&m.value)),
                    (Key::plain("isRegex"), Val::Raw(m.is_regex.to_string())),
                    (Key::plain("isEqual"), Val::Raw(m.is_equal.to_string())),
                ])
            })
            .collect();
        members.push((Key::plain("matchers"), Val::Objects(matchers)));
        members.push((Key::plain("startsAt"), text(&s.starts_at)));
        members.push((Key::plain("endsAt"), text(&s.ends_at)));
        members.push((Key::plain("createdBy"), text(&s.created_by)));
        members.push((Key::plain("comment"), text(&s.comment)));
        Obj(members)
    }

    fn write(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            k.write(out);
            out.push(':');
            match v {
                Val::Raw(raw) => out.push_str(raw),
                Val::Objects(objs) => {
                    out.push('[');
                    for (j, o) in objs.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        o.write(out);
                    }
                    out.push(']');
                }
            }
        }
        out.push('}');
    }

    /// The top object (0) or the `n`-th matcher object, counting from 1, wrapping around.
    fn nth(&mut self, n: usize) -> &mut Obj {
        let counts: Vec<usize> = self
            .0
            .iter()
            .map(|(_, v)| match v {
                Val::Objects(o) => o.len(),
                Val::Raw(_) => 0,
            })
            .collect();
        let mut n = n % (counts.iter().sum::<usize>() + 1);
        if n == 0 {
            return self;
        }
        n -= 1;
        let mut member = 0;
        while n >= counts[member] {
            n -= counts[member];
            member += 1;
        }
        match &mut self.0[member].1 {
            Val::Objects(objs) => &mut objs[n],
            Val::Raw(_) => unreachable!("a member with matcher objects"),
        }
    }

    /// True when every key of this object and its matcher objects is exactly a field name
    /// and none repeats: what the decoder must accept (the values here have the right types).
    fn keys_exact(&self, fields: &[&str]) -> bool {
        let mut seen = Vec::new();
        for (k, v) in &self.0 {
            let k = k.logical();
            if !fields.contains(&k.as_str()) || seen.contains(&k) {
                return false;
            }
            if let Val::Objects(objs) = v {
                if !objs.iter().all(|o| o.keys_exact(&MATCHER_FIELDS)) {
                    return false;
                }
            }
            seen.push(k);
        }
        true
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Swaps the ASCII case of the key's characters picked by `mask`.
    Flip {
        obj: usize,
        member: usize,
        mask: u16,
    },
    /// Replaces one `s`, `k` or `i` by a non-ASCII character Go folds to it.
    Fold {
        obj: usize,
        member: usize,
        nth: usize,
        dotless: bool,
    },
    /// Writes the characters picked by `mask` as `\u` escapes.
    Escape {
        obj: usize,
        member: usize,
        mask: u16,
        upper: bool,
    },
    /// Repeats a member before or after itself.
    Duplicate {
        obj: usize,
        member: usize,
        before: bool,
    },
    /// Inserts a member: a field name (with a value of its type) or any key.
    Insert { obj: usize, at: usize, key: String },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let key = prop_oneof![
        proptest::sample::select(SILENCE_FIELDS.to_vec()).prop_map(String::from),
        proptest::sample::select(MATCHER_FIELDS.to_vec()).prop_map(String::from),
        "[iIdDsScCmMaAtTeEhHrRnNgGxXbBqQlLuUyY\u{17f}\u{212a}\u{130}\u{131}]{1,9}",
        any::<String>(),
    ];
    prop_oneof![
        (any::<usize>(), any::<usize>(), any::<u16>())
            .prop_map(|(obj, member, mask)| Mutation::Flip { obj, member, mask }),
        (
            any::<usize>(),
            any::<usize>(),
            any::<usize>(),
            any::<bool>()
        )
            .prop_map(|(obj, member, nth, dotless)| Mutation::Fold {
                obj,
                member,
                nth,
                dotless
            }),
        (any::<usize>(), any::<usize>(), any::<u16>(), any::<bool>()).prop_map(
            |(obj, member, mask, upper)| Mutation::Escape {
                obj,
                member,
                mask,
                upper
            }
        ),
        (any::<usize>(), any::<usize>(), any::<bool>()).prop_map(|(obj, member, before)| {
            Mutation::Duplicate {
                obj,
                member,
                before,
            }
        }),
        (any::<usize>(), any::<usize>(), key).prop_map(|(obj, at, key)| Mutation::Insert {
            obj,
            at,
            key
        }),
    ]
}

/// A value of the field's type, so that only keys decide whether a body is accepted.
fn value_for(key: &str) -> Val {
    match key {
        "matchers" => Val::Objects(vec![]),
        "isRegex" | "isEqual" => Val::Raw("true".into()),
        _ => Val::Raw(r#""v""#.into()),
    }
}

fn apply(root: &mut Obj, m: &Mutation) {
    let member_of =
        |o: &mut Obj, i: usize| -> Option<usize> { (!o.0.is_empty()).then(|| i % o.0.len()) };
    match m {
        Mutation::Flip { obj, member, mask } => {
            let o = root.nth(*obj);
            if let Some(i) = member_of(o, *member) {
                for (j, (c, _)) in o.0[i].0 .0.iter_mut().enumerate() {
                    if mask >> (j % 16) & 1 == 1 {
                        *c = if c.is_ascii_lowercase() {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        };
                    }
                }
            }
        }
        Mutation::Fold {
            obj,
            member,
            nth,
            dotless,
        } => {
            let o = root.nth(*obj);
            if let Some(i) = member_of(o, *member) {
                let chars = &mut o.0[i].0 .0;
                let foldable: Vec<usize> = (0..chars.len())
                    .filter(|&j| matches!(chars[j].0.to_ascii_lowercase(), 's' | 'k' | 'i'))
                    .collect();
                if !foldable.is_empty() {
                    let j = foldable[nth % foldable.len()];
                    chars[j].0 = match chars[j].0.to_ascii_lowercase() {
                        's' => '\u{17F}',
                        'k' => '\u{212A}',
                        _ if *dotless => '\u{131}',
                        _ => '\u{130}',
                    };
                }
            }
        }
        Mutation::Escape {
            obj,
            member,
            mask,
            upper,
        } => {
            let o = root.nth(*obj);
            if let Some(i) = member_of(o, *member) {
                for (j, (_, escaped)) in o.0[i].0 .0.iter_mut().enumerate() {
                    if mask >> (j % 16) & 1 == 1 {
                        *escaped = Some(*upper);
                    }
                }
            }
        }
        Mutation::Duplicate {
            obj,
            member,
            before,
        } => {
            let o = root.nth(*obj);
            if let Some(i) = member_of(o, *member) {
                let copy = o.0[i].clone();
                o.0.insert(if *before { i } else { i + 1 }, copy);
            }
        }
        Mutation::Insert { obj, at, key } => {
            let o = root.nth(*obj);
            let at = at % (o.0.len() + 1);
            o.0.insert(at, (Key::plain(key), value_for(key)));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Any silence of the model survives serialisation, read by the gateway and by Go alike.
    #[test]
    fn prop_model_round_trips(s in arb_silence()) {
        let body = serde_json::to_vec(&s).expect("serialises");
        prop_assert_eq!(PostableSilence::decode(&body), Ok(s.clone()));
        prop_assert_eq!(go_reference::decode(&body), Ok(s));
    }

    /// Bodies with misspelled, escaped, repeated and inserted keys: no panic; accepted exactly
    /// when every key is a field name once; what is accepted means the same to Alertmanager as
    /// the gateway's model, both as the client sent it and as the gateway forwards it.
    #[test]
    fn prop_key_mutations(
        s in arb_silence(),
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let mut obj = Obj::of(&s);
        for m in &mutations {
            apply(&mut obj, m);
        }
        let mut body = String::new();
        obj.write(&mut body);
        let decoded = PostableSilence::decode(body.as_bytes());
        prop_assert_eq!(
            decoded.is_ok(),
            obj.keys_exact(&SILENCE_FIELDS),
            "{} -> {:?}", body, decoded
        );
        if let Ok(model) = decoded {
            prop_assert_eq!(go_reference::decode(body.as_bytes()), Ok(model.clone()), "{}", body);
            let forwarded = serde_json::to_vec(&model).expect("serialises");
            prop_assert_eq!(PostableSilence::decode(&forwarded), Ok(model.clone()));
            prop_assert_eq!(go_reference::decode(&forwarded), Ok(model));
        }
    }
}
