//! The module graph has no import circles: in every crate of the workspace, the modules that
//! import each other (directly or through others) are found from the sources and refused.
//!
//! An edge `a → b` is any path in `a`'s file that names module `b`: `crate::b::…`,
//! `super::…`/`self::…` resolved from `a`, a bare `b::…` in the parent of `b`, and every member
//! of a `use …::{…}` group. Inline `mod x { … }` blocks (tests) count as their file, with
//! `super` resolved from inside them. Comments are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`enforcement::promql`, `""` for the crate root) → its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut mods = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src").with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("lib" | "mod" | "main")
        ) {
            parts.pop();
        }
        mods.insert(parts.join("::"), f);
    }
    mods
}

/// The source without `//` comments (line and doc comments) and without string literals'
/// contents, so neither can produce an edge.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                out.push('"');
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                out.push('"');
                i += 1;
            }
            // A char literal such as '"' or '{' must not open a string or a group.
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') => i += 4,
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path in `code`, as (inline-module depth, segments); `use a::{b, c::d}` gives
/// `a::b` and `a::c::d`.
fn paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    // Brace depths at which an inline `mod x {` was opened.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == b'}' {
            if inline_mods.last() == Some(&depth) {
                inline_mods.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if !is_ident(c) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let word = &code[start..i];
        if word == "mod" {
            let rest = code[i..].trim_start();
            let name_len = rest.bytes().take_while(|c| is_ident(*c)).count();
            if rest[name_len..].trim_start().starts_with('{') {
                inline_mods.push(depth + 1);
            }
            continue;
        }
        if !code[i..].starts_with("::") {
            continue;
        }
        let (segments, end) = path_at(code, start);
        for s in segments {
            out.push((inline_mods.len(), s));
        }
        i = end;
    }
    out
}

/// The path starting at `start` (possibly ending in a `{…}` group), and where it ends.
fn path_at(code: &str, start: usize) -> (Vec<Vec<String>>, usize) {
    let b = code.as_bytes();
    let mut segs = Vec::new();
    let mut i = start;
    loop {
        let s = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if s == i {
            break;
        }
        segs.push(code[s..i].to_string());
        if !code[i..].starts_with("::") {
            return (vec![segs], i);
        }
        i += 2;
        if b.get(i) == Some(&b'{') {
            // A group: each member at depth 1 is a path of its own below `segs`.
            let mut members = Vec::new();
            let mut level = 0;
            let mut member_start = i + 1;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'{' => level += 1,
                    b'}' | b',' if level == 1 => {
                        let member = code[member_start..j].trim();
                        if !member.is_empty() {
                            let (inner, _) = path_at(member, 0);
                            for p in inner {
                                members.push(segs.iter().cloned().chain(p).collect());
                            }
                        }
                        member_start = j + 1;
                        if b[j] == b'}' {
                            return (members, j + 1);
                        }
                    }
                    b'}' => level -= 1,
                    _ => {}
                }
                j += 1;
            }
            return (members, j);
        }
    }
    (vec![segs], i)
}

/// The module a path from `module` (inside `inline` inline modules) names, if any.
fn target(
    module: &str,
    inline: usize,
    path: &[String],
    mods: &BTreeMap<String, PathBuf>,
) -> Option<String> {
    let mut base: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut rest = path;
    let mut inline = inline;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("self" | "super") => {
            while let Some(first) = rest.first().map(String::as_str) {
                match first {
                    "self" => {}
                    "super" if inline > 0 => inline -= 1,
                    "super" => {
                        base.pop()?;
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        // A bare path names a module only as a child of this one.
        Some(_) => {}
        None => return None,
    }
    let mut found = None;
    let mut current = base.join("::");
    if path[0] == "crate" || path[0] == "self" || path[0] == "super" {
        found = Some(current.clone());
    }
    for seg in rest {
        let next = if current.is_empty() {
            seg.clone()
        } else {
            format!("{current}::{seg}")
        };
        if !mods.contains_key(&next) {
            break;
        }
        found = Some(next.clone());
        current = next;
    }
    found
}

/// Strongly connected components with more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.graph[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &mods {
        let text = std::fs::read_to_string(file).expect("readable source");
        let edges = graph.entry(module.clone()).or_default();
        for (inline, path) in paths(&code_of(&text)) {
            if let Some(t) = target(module, inline, &path, &mods) {
                if &t != module {
                    edges.insert(t);
                }
            }
        }
    }
    graph
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut report = Vec::new();
    for src in [
        "crates/core/src",
        "crates/gateway/src",
        "crates/reconciler/src",
        "src",
    ] {
        let graph = graph_of(&root().join(src));
        assert!(graph.len() > 1 || src == "src", "{src}: no modules found");
        for comp in circles(&graph) {
            let detail: Vec<String> = comp
                .iter()
                .map(|m| {
                    let inside: Vec<&String> =
                        graph[m].iter().filter(|t| comp.contains(t)).collect();
                    format!("    {m} → {inside:?}")
                })
                .collect();
            report.push(format!("{src}: {comp:?}\n{}", detail.join("\n")));
        }
    }
    assert!(report.is_empty(), "import circles:\n{}", report.join("\n"));
}

/// The checker finds a circle when there is one: two modules naming each other, through
/// `super::`, a group and `crate::`, and a parent using a child that uses the parent.
#[test]
fn the_checker_sees_circles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("outer")).expect("mkdir");
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\nmod outer;\n"),
        (
            "a.rs",
            "use super::{b::Thing, c};\n// crate::c is only a comment\n",
        ),
        ("b.rs", "pub fn f() { crate::a::g(); }\n"),
        (
            "c.rs",
            "const S: &str = \"super::a\";\n#[cfg(test)]\nmod tests { use super::*; }\n",
        ),
        (
            "outer/mod.rs",
            "mod inner;\npub use inner::X;\npub struct Y;\n",
        ),
        ("outer/inner.rs", "use super::Y;\npub struct X;\n"),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).expect("write");
    }
    let graph = graph_of(src);
    assert_eq!(
        graph["a"],
        BTreeSet::from(["b".to_string(), "c".to_string()])
    );
    // Neither a string nor `super` inside an inline test module points elsewhere.
    assert!(graph["c"].is_empty(), "{:?}", graph["c"]);
    let found = circles(&graph);
    assert_eq!(
        found,
        vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["outer".to_string(), "outer::inner".to_string()],
        ]
    );
}
