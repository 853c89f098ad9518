//! The fuzz targets of whizard as plain functions, so that libFuzzer (`fuzz_targets/*.rs`, via
//! `cargo fuzz`) and the stable-toolchain runner (`src/bin/fuzz_stable.rs`) run the same code.
//! Each function panics when an invariant breaks; returning normally means the input was fine.
//!
//! Invariants re-checked here independently of the code under test (promql-parser for PromQL,
//! a small hand-written protobuf reader for remote write):
//! - `promql_enforce`: no panic; an accepted query's output re-parses, every vector/matrix
//!   selector in it carries the tenant matcher and has no `or` groups, `info()` never appears,
//!   and enforcing the output again is accepted and gives the same text. The same input as a
//!   `match[]` selector: accepted output is one selector carrying the matcher.
//! - `remote_write_splice`: no panic; input that validates is accepted by injection with the
//!   same counts; accepted output validates again with the same counts, every series carries
//!   each injected label exactly once with its value, labels sorted; injecting again changes
//!   nothing.
//! - `remote_write_body`: the whole body path (snappy + splice + snappy): no panic; accepted
//!   output decompresses and passes the same checks.
//! - `silence_json`: no panic; a silence body the gateway accepts is read by the Go-semantics
//!   reference (`whizard::enforcement::silence::go_reference`, case-insensitive keys with
//!   Unicode folding, last one wins) as the same model, and so is the body the gateway
//!   forwards; enforced, the forwarded silence has exactly one matcher on the tenant label,
//!   `tenant_id="team-a"`, and the client's other matchers unchanged.
//! - `request_head`, `answer_head`, `chunked_body`: the short way's HTTP/1.1 parsers
//!   (`whizard::gateway::short_way_fuzz`, where the invariants are written): a taken GET is
//!   httparse's reading of the bytes; an answer head reads the same with any bytes after it and
//!   no prefix of it is complete; chunked bodies decode the same in any pieces and give back
//!   what a reference encoder encoded.

use promql_parser::label::Matcher;
use promql_parser::parser::{self, Expr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use whizard::enforcement::response::enforce_silence;
use whizard::enforcement::silence::{go_reference, Matcher as SilenceMatcher, PostableSilence};
use whizard::enforcement::{
    enforce_match_selector, enforce_match_selector_general, enforce_match_selectors, enforce_query,
    enforce_query_general, TenantMatcher,
};
use whizard::remote_write::{
    decompress, inject_v1, inject_v2, rewrite_body, validate_v1, validate_v2, Format, LabelSet,
    WriteStats,
};

pub mod seeds;

/// Panics that the code under test caught itself (promql-parser panics turned into errors).
pub static CAUGHT_PANICS: AtomicU64 = AtomicU64::new(0);

/// Panic policy. libFuzzer aborts on any panic, even one whizard catches on purpose (it turns
/// promql-parser panics into parse errors). By default a panic is only counted and reported
/// here: one that escapes the target still fails the run (libfuzzer-sys aborts on it, the
/// stable runner catches it). `WHIZARD_FUZZ_STRICT=1` keeps the abort, to hunt parser bugs.
pub fn init() {
    if std::env::var_os("WHIZARD_FUZZ_STRICT").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let n = CAUGHT_PANICS.fetch_add(1, Ordering::Relaxed);
        if n < 5 {
            eprintln!("(panic, caught by the code under test or the harness: {info})");
        }
    }));
}

struct Tenants {
    one: TenantMatcher,
    one_expected: Matcher,
    two: TenantMatcher,
    two_expected: Matcher,
}

fn tenants() -> &'static Tenants {
    static T: OnceLock<Tenants> = OnceLock::new();
    T.get_or_init(|| {
        let one = TenantMatcher::new("tenant_id", ["team-a"]).expect("matcher");
        // A value with regex metacharacters: the alternation must quote it.
        let two = TenantMatcher::new("tenant_id", ["team-a", "team.b+"]).expect("matcher");
        let expected = |m: &TenantMatcher| match parser::parse(&m.selector()) {
            Ok(Expr::VectorSelector(vs)) => vs.matchers.matchers[0].clone(),
            other => panic!("selector {} does not parse: {other:?}", m.selector()),
        };
        Tenants {
            one_expected: expected(&one),
            two_expected: expected(&two),
            one,
            two,
        }
    })
}

// ------------------------------------------------------------------------------------ PromQL

/// Input: byte 0 bit 0 chooses one tenant (`tenant_id="team-a"`) or two (`=~"team-a|team\.b\+"`);
/// the rest is the query (lossy UTF-8).
pub fn promql_enforce(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let query = String::from_utf8_lossy(rest);
    let t = tenants();
    let (tenant, expected) = if first & 1 == 0 {
        (&t.one, &t.one_expected)
    } else {
        (&t.two, &t.two_expected)
    };

    // The deferred-regex path decides every query exactly as the general path does.
    let result = enforce_query(&query, tenant);
    assert_eq!(
        result,
        enforce_query_general(&query, tenant),
        "the deferred-regex path differs from the general path\nin: {query}"
    );
    assert_eq!(
        enforce_match_selector(&query, tenant),
        enforce_match_selector_general(&query, tenant),
        "the deferred-regex path differs from the general path (match[])\nin: {query}"
    );
    if let Ok(out) = result {
        let expr = parser::parse(&out).unwrap_or_else(|e| {
            panic!("accepted output does not re-parse: {e}\nin:  {query}\nout: {out}")
        });
        let mut selectors = 0;
        check_expr(&expr, expected, &mut selectors, &query, &out, 0);
        let again = enforce_query(&out, tenant).unwrap_or_else(|e| {
            panic!("enforcing the output again was refused: {e}\nin:  {query}\nout: {out}")
        });
        assert_eq!(again, out, "enforcement is not idempotent\nin: {query}");
    }

    if let Ok(outs) = enforce_match_selectors(&[query.as_ref()], tenant) {
        assert_eq!(outs.len(), 1);
        let out = &outs[0];
        match parser::parse(out) {
            Ok(Expr::VectorSelector(vs)) => {
                assert!(vs.matchers.or_matchers.is_empty(), "or groups in {out}");
                assert!(
                    vs.matchers.matchers.contains(expected),
                    "match[] output lacks the tenant matcher\nin:  {query}\nout: {out}"
                );
                assert!(
                    vs.offset.is_none() && vs.at.is_none(),
                    "offset/@ in match[] {out}"
                );
            }
            other => panic!("match[] output is not a selector: {other:?}\nin: {query}\nout: {out}"),
        }
    }
}

fn check_expr(e: &Expr, expected: &Matcher, n: &mut usize, input: &str, out: &str, depth: usize) {
    assert!(depth < 10_000, "absurd depth");
    let d = depth + 1;
    let check_sel = |vs: &parser::VectorSelector| {
        assert!(
            vs.matchers.or_matchers.is_empty(),
            "a selector has or-groups\nin:  {input}\nout: {out}"
        );
        assert!(
            vs.matchers.matchers.contains(expected),
            "a selector lacks the tenant matcher {expected}\nin:  {input}\nout: {out}"
        );
    };
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                check_expr(p, expected, n, input, out, d);
            }
            check_expr(&a.expr, expected, n, input, out, d);
        }
        Expr::Unary(u) => check_expr(&u.expr, expected, n, input, out, d),
        Expr::Binary(b) => {
            check_expr(&b.lhs, expected, n, input, out, d);
            check_expr(&b.rhs, expected, n, input, out, d);
        }
        Expr::Paren(p) => check_expr(&p.expr, expected, n, input, out, d),
        Expr::Subquery(s) => check_expr(&s.expr, expected, n, input, out, d),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::VectorSelector(vs) => {
            check_sel(vs);
            *n += 1;
        }
        Expr::MatrixSelector(ms) => {
            check_sel(&ms.vs);
            *n += 1;
        }
        Expr::Call(c) => {
            assert_ne!(c.func.name, "info", "info() accepted\nin: {input}");
            for a in &c.args.args {
                check_expr(a, expected, n, input, out, d);
            }
        }
        Expr::Extension(_) => panic!("extension expression accepted\nin: {input}"),
    }
}

// ------------------------------------------------------------------------------ remote write

/// The label sets injected, chosen by the input: tenant only; tenant + an external label;
/// labels sorting before and after every client label; one overriding a common client label.
fn label_set(selector: u8) -> &'static LabelSet {
    static SETS: OnceLock<Vec<LabelSet>> = OnceLock::new();
    let sets = SETS.get_or_init(|| {
        vec![
            LabelSet::new([("tenant_id", "team-a")]).unwrap(),
            LabelSet::new([("tenant_id", "team-a"), ("cluster", "prod-eu-1")]).unwrap(),
            LabelSet::new([("A", "first"), ("tenant_id", "team-a"), ("zzz", "last")]).unwrap(),
            LabelSet::new([("job", "override"), ("tenant_id", "team-a")]).unwrap(),
        ]
    });
    &sets[(selector as usize) % sets.len()]
}

fn inject(
    format: Format,
    decoded: &[u8],
    labels: &LabelSet,
    out: &mut Vec<u8>,
) -> Result<WriteStats, String> {
    match format {
        Format::V1 => inject_v1(decoded, labels, out),
        Format::V2 => inject_v2(decoded, labels, out),
    }
    .map_err(|e| e.to_string())
}

fn validate(format: Format, decoded: &[u8]) -> Result<WriteStats, String> {
    match format {
        Format::V1 => validate_v1(decoded),
        Format::V2 => validate_v2(decoded),
    }
    .map_err(|e| e.to_string())
}

/// Input: byte 0 bit 0 chooses v1 or v2, bits 1-2 the label set; the rest is a decompressed
/// `WriteRequest` / `io.prometheus.write.v2.Request`.
pub fn remote_write_splice(data: &[u8]) {
    let Some((&first, decoded)) = data.split_first() else {
        return;
    };
    let format = if first & 1 == 0 {
        Format::V1
    } else {
        Format::V2
    };
    let labels = label_set(first >> 1);
    let valid = validate(format, decoded);
    let mut out = Vec::new();
    let injected = inject(format, decoded, labels, &mut out);
    match (&valid, &injected) {
        (Ok(v), Ok(i)) => assert_eq!(v, i, "validate and inject count differently"),
        (Ok(v), Err(e)) => panic!("valid input ({v:?}) refused by injection: {e}"),
        (Err(_), Ok(_)) | (Err(_), Err(_)) => {}
    }
    if let Ok(stats) = injected {
        check_output(format, &out, labels, stats);
        let mut again = Vec::new();
        let stats2 = inject(format, &out, labels, &mut again)
            .unwrap_or_else(|e| panic!("injecting into the output again failed: {e}"));
        assert_eq!(stats2, stats);
        assert!(again == out, "injection is not idempotent ({format:?})");
    }
}

/// Input: byte 0 bit 0 chooses v1 or v2, bits 1-2 the label set; the rest is the snappy body.
pub fn remote_write_body(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let format = if first & 1 == 0 {
        Format::V1
    } else {
        Format::V2
    };
    let labels = label_set(first >> 1);
    const MAX: usize = 1 << 20;
    if let Ok(r) = rewrite_body(format, body, labels, MAX) {
        let new_body = r
            .body
            .expect("labels are never empty here: a body is produced");
        let decoded = decompress(&new_body, usize::MAX)
            .unwrap_or_else(|e| panic!("the produced body does not decompress: {e}"));
        check_output(format, &decoded, labels, r.stats);
    }
}

// ---------------------------------------------------------------------------------- silences

/// Input: the body of a `POST /api/v2/silences`, as the client sends it.
pub fn silence_json(data: &[u8]) {
    let Ok(model) = PostableSilence::decode(data) else {
        return;
    };
    // What the gateway accepted means to Alertmanager what the gateway's model says.
    let show = || String::from_utf8_lossy(data).into_owned();
    assert_eq!(
        go_reference::decode(data).as_ref(),
        Ok(&model),
        "Alertmanager reads the accepted body differently\nin: {}",
        show()
    );
    // ... and so does what the gateway forwards.
    let forwarded = serde_json::to_vec(&model).expect("the model serialises");
    assert_eq!(
        PostableSilence::decode(&forwarded).as_ref(),
        Ok(&model),
        "the forwarded body decodes to another model\nin: {}",
        show()
    );
    assert_eq!(
        go_reference::decode(&forwarded).as_ref(),
        Ok(&model),
        "Alertmanager reads the forwarded body differently\nin: {}",
        show()
    );
    // Enforced, Alertmanager reads exactly one matcher on the tenant label, the tenant's
    // equality matcher, and the client's other matchers as they were.
    let mut enforced = model.clone();
    if enforce_silence(&mut enforced, "tenant_id", "team-a").is_err() {
        return;
    }
    let body = serde_json::to_vec(&enforced).expect("the model serialises");
    let read = go_reference::decode(&body)
        .unwrap_or_else(|e| panic!("the enforced silence is refused: {e}\nin: {}", show()));
    let (tenant, others): (Vec<SilenceMatcher>, Vec<SilenceMatcher>) = read
        .matchers
        .into_iter()
        .partition(|m| m.name == "tenant_id");
    assert_eq!(
        tenant,
        [SilenceMatcher {
            name: "tenant_id".into(),
            value: "team-a".into(),
            is_regex: false,
            is_equal: true,
        }],
        "the enforced silence is not team-a's alone\nin: {}",
        show()
    );
    let expected: Vec<&SilenceMatcher> = model
        .matchers
        .iter()
        .filter(|m| m.name != "tenant_id")
        .collect();
    assert_eq!(
        others.iter().collect::<Vec<_>>(),
        expected,
        "enforcement changed other matchers\nin: {}",
        show()
    );
}

fn check_output(format: Format, out: &[u8], labels: &LabelSet, stats: WriteStats) {
    let again = validate(format, out)
        .unwrap_or_else(|e| panic!("accepted output does not validate ({format:?}): {e}"));
    assert_eq!(again, stats, "the output counts differently than the input");
    let series = match format {
        Format::V1 => pb::v1_series_labels(out),
        Format::V2 => pb::v2_series_labels(out),
    }
    .unwrap_or_else(|e| panic!("the output does not decode ({format:?}): {e}"));
    assert_eq!(series.len() as u64, stats.series, "series count");
    for (i, ls) in series.iter().enumerate() {
        assert!(
            ls.windows(2).all(|w| w[0].0 < w[1].0),
            "series {i}: labels not sorted and unique: {ls:?}"
        );
        for (name, value) in labels.iter() {
            let found: Vec<_> = ls.iter().filter(|(n, _)| n == name.as_bytes()).collect();
            assert_eq!(
                found.len(),
                1,
                "series {i}: label {name} present {} times",
                found.len()
            );
            assert_eq!(
                found[0].1,
                value.as_bytes(),
                "series {i}: label {name} has the wrong value"
            );
        }
    }
}

/// A minimal protobuf reader for the checks: the label pairs of every series.
mod pb {
    type Labels = Vec<(Vec<u8>, Vec<u8>)>;

    fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*pos).ok_or("truncated varint")?;
            *pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    /// (field, wire type, payload for length-delimited fields) of each field of `b`.
    fn fields(b: &[u8]) -> Result<Vec<(u64, u8, &[u8])>, String> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < b.len() {
            let key = varint(b, &mut pos)?;
            let (field, wt) = (key >> 3, (key & 7) as u8);
            match wt {
                0 => {
                    varint(b, &mut pos)?;
                    out.push((field, wt, &b[0..0]));
                }
                1 => {
                    pos = pos
                        .checked_add(8)
                        .filter(|p| *p <= b.len())
                        .ok_or("truncated fixed64")?;
                    out.push((field, wt, &b[0..0]));
                }
                5 => {
                    pos = pos
                        .checked_add(4)
                        .filter(|p| *p <= b.len())
                        .ok_or("truncated fixed32")?;
                    out.push((field, wt, &b[0..0]));
                }
                2 => {
                    let len = varint(b, &mut pos)? as usize;
                    let end = pos
                        .checked_add(len)
                        .filter(|e| *e <= b.len())
                        .ok_or("truncated bytes")?;
                    out.push((field, wt, &b[pos..end]));
                    pos = end;
                }
                3 => {
                    // A (deprecated) group, kept as an unknown field: skip to its end tag.
                    skip_group(b, &mut pos, field)?;
                    out.push((field, wt, &b[0..0]));
                }
                _ => return Err(format!("wire type {wt}")),
            }
        }
        Ok(out)
    }

    /// Skips a group like gogoproto (the decoder of Prometheus and Thanos): nesting counted,
    /// end-group field numbers not compared.
    fn skip_group(b: &[u8], pos: &mut usize, field: u64) -> Result<(), String> {
        let mut depth = 1u64;
        while *pos < b.len() {
            let key = varint(b, pos)?;
            let wt = (key & 7) as u8;
            match wt {
                0 => {
                    varint(b, pos)?;
                }
                1 | 5 => {
                    let n = if wt == 1 { 8 } else { 4 };
                    *pos = pos
                        .checked_add(n)
                        .filter(|p| *p <= b.len())
                        .ok_or("truncated fixed")?;
                }
                2 => {
                    let len = varint(b, pos)? as usize;
                    *pos = pos
                        .checked_add(len)
                        .filter(|e| *e <= b.len())
                        .ok_or("truncated bytes")?;
                }
                3 => depth += 1,
                4 => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => return Err(format!("wire type {wt} in group {field}")),
            }
        }
        Err(format!("unterminated group {field}"))
    }

    pub fn v1_series_labels(b: &[u8]) -> Result<Vec<Labels>, String> {
        let mut all = Vec::new();
        for (f, wt, ts) in fields(b)? {
            if f != 1 || wt != 2 {
                continue;
            }
            let mut labels = Vec::new();
            for (lf, lwt, label) in fields(ts)? {
                if lf != 1 || lwt != 2 {
                    continue;
                }
                let (mut name, mut value) = (Vec::new(), Vec::new());
                for (nf, nwt, v) in fields(label)? {
                    match (nf, nwt) {
                        (1, 2) => name = v.to_vec(),
                        (2, 2) => value = v.to_vec(),
                        _ => {}
                    }
                }
                labels.push((name, value));
            }
            all.push(labels);
        }
        Ok(all)
    }

    pub fn v2_series_labels(b: &[u8]) -> Result<Vec<Labels>, String> {
        let top = fields(b)?;
        let symbols: Vec<&[u8]> = top
            .iter()
            .filter(|(f, wt, _)| *f == 4 && *wt == 2)
            .map(|x| x.2)
            .collect();
        let mut all = Vec::new();
        for (f, wt, ts) in top {
            if f != 5 || wt != 2 {
                continue;
            }
            let mut refs = Vec::new();
            for (tf, twt, payload) in fields(ts)? {
                if tf != 1 {
                    continue;
                }
                if twt == 2 {
                    let mut pos = 0;
                    while pos < payload.len() {
                        refs.push(varint(payload, &mut pos)?);
                    }
                } else {
                    return Err("unpacked labels_refs in the output".into());
                }
            }
            if refs.len() % 2 != 0 {
                return Err("odd labels_refs".into());
            }
            let sym = |r: u64| {
                symbols
                    .get(r as usize)
                    .map(|s| s.to_vec())
                    .ok_or(format!("ref {r} out of range"))
            };
            let mut labels = Vec::new();
            for pair in refs.chunks(2) {
                labels.push((sym(pair[0])?, sym(pair[1])?));
            }
            all.push(labels);
        }
        Ok(all)
    }
}

/// The short way's request head parser; see `whizard::gateway::short_way_fuzz::request_head`.
pub fn request_head(data: &[u8]) {
    whizard::gateway::short_way_fuzz::request_head(data);
}

/// The short way's answer head parser; see `whizard::gateway::short_way_fuzz::answer_head`.
pub fn answer_head(data: &[u8]) {
    whizard::gateway::short_way_fuzz::answer_head(data);
}

/// The short way's chunked decoder; see `whizard::gateway::short_way_fuzz::chunked_body`.
pub fn chunked_body(data: &[u8]) {
    whizard::gateway::short_way_fuzz::chunked_body(data);
}
