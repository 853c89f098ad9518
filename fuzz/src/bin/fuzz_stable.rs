//! Stable-toolchain fallback for the fuzz targets: runs the same target functions as the
//! libFuzzer binaries on the seed corpus, then on random mutations of it (bit flips, byte edits,
//! range copies, splices between inputs, dictionary tokens), for a bounded time. No coverage
//! feedback, so it finds less than `cargo fuzz`, but it runs anywhere `cargo` does.
//!
//! ```text
//! fuzz-stable [all|promql_enforce|remote_write_splice|remote_write_body|silence_json|
//!              request_head|answer_head|chunked_body]
//!             [--seconds N] [--iterations N] [--seed N]  # mutate and check (default: all, 20 s each)
//! fuzz-stable seed                            # (re)write corpus/<target>/seed-* files
//! fuzz-stable run TARGET FILE...              # replay inputs (e.g. a crash file)
//! ```
//! Inputs in `corpus/<target>/` (seeds, and anything `cargo fuzz` saved there) are used too.
//! A failing input is written to `artifacts/<target>/crash-<hash>` and the exit code is 1; an
//! input whose panic the code under test caught is kept as `artifacts/<target>/caught-<hash>`.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use whizard_fuzz::{
    answer_head, chunked_body, promql_enforce, remote_write_body, remote_write_splice,
    request_head, seeds::seeds, silence_json, CAUGHT_PANICS,
};

const TARGETS: &[&str] = &[
    "promql_enforce",
    "remote_write_splice",
    "remote_write_body",
    "silence_json",
    "request_head",
    "answer_head",
    "chunked_body",
];

fn target_fn(name: &str) -> fn(&[u8]) {
    match name {
        "promql_enforce" => promql_enforce,
        "remote_write_splice" => remote_write_splice,
        "remote_write_body" => remote_write_body,
        "silence_json" => silence_json,
        "request_head" => request_head,
        "answer_head" => answer_head,
        "chunked_body" => chunked_body,
        _ => {
            eprintln!("unknown target {name}; one of {TARGETS:?}");
            std::process::exit(2)
        }
    }
}

const PROMQL_TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[5m]",
    "[1h:5m]",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "`",
    "\\",
    "=",
    "!=",
    "=~",
    "!~",
    " or ",
    " and ",
    " unless ",
    " by (job) ",
    " without (a) ",
    " on () ",
    " ignoring (x) ",
    " group_left ",
    " bool ",
    " offset 5m",
    " offset -1h",
    " @ 100",
    " @ start()",
    " @ end()",
    "sum",
    "rate(",
    "info(",
    "label_replace(",
    "absent(",
    "vector(1)",
    "tenant_id",
    "__name__",
    "team-a",
    "team-b",
    ".*",
    ".+",
    "|",
    "up",
    "1e308",
    "NaN",
    "Inf",
    "-",
    "+",
    "*",
    "/",
    "^",
    "%",
    "#",
    "\n",
    "topk(",
    "count_values(",
    "histogram_quantile(",
    ":",
    "{\"a.b\"}",
    "atan2",
    "==",
];

/// Pieces of silence bodies: field names and the spellings Alertmanager folds to them (`ſ` is
/// an `s`, the Kelvin sign a `k`, `İ`/`ı` an `i`), escapes, and JSON punctuation.
const SILENCE_TOKENS: &[&str] = &[
    "\"id\":",
    "\"Id\":",
    "\"\\u0130d\":",
    "\"matchers\":",
    "\"matcherſ\":",
    "\"matcher\\u017f\":",
    "\"MATCHERS\":",
    "\"startsAt\":",
    "\"endsAt\":",
    "\"createdBy\":",
    "\"comment\":",
    "\"name\":",
    "\"value\":",
    "\"isRegex\":",
    "\"iſRegex\":",
    "\"isEqual\":",
    "\"\\u212Aey\":",
    "\"tenant_id\"",
    "\".+\"",
    "\"\"",
    "\\u0073",
    "\\u017F",
    "\\ud800",
    "ſ",
    "\u{212A}",
    "\u{130}",
    "\u{131}",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "0",
    "[{\"name\":\"a\",\"value\":\"b\",\"isRegex\":false}]",
];

/// The dictionary the mutator inserts from, per target.
fn tokens(name: &str) -> &'static [&'static str] {
    match name {
        "promql_enforce" => PROMQL_TOKENS,
        "silence_json" => SILENCE_TOKENS,
        _ => &[],
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], tokens: &[&str]) {
    let rounds = 1 + rng.below(6);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(if tokens.is_empty() { 8 } else { 9 }) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            3 if len > 1 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                input.drain(a..b);
            }
            4 if len > 1 => {
                // Copy a range somewhere else (duplicates protobuf fields, nests PromQL).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = input[a..b].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            5 if !corpus.is_empty() => {
                // Splice: our head, another input's tail.
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            6 if len > 1 => {
                // Interesting varints / lengths.
                let i = 1 + rng.below(len - 1);
                let v: &[u8] = match rng.below(6) {
                    0 => &[0x00],
                    1 => &[0x7f],
                    2 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                    3 => &[0x80, 0x01],
                    4 => &[0x0a],
                    _ => &[0xff; 10],
                };
                let end = (i + v.len()).min(len);
                input.splice(i..end, v.iter().copied());
            }
            7 if len > 1 => {
                let a = 1 + rng.below(len - 1);
                input.truncate(a);
            }
            8 => {
                let tok = tokens[rng.below(tokens.len())].as_bytes();
                let at = 1 + rng.below(len.max(1));
                let at = at.min(input.len());
                input.splice(at..at, tok.iter().copied());
            }
            _ => {}
        }
        if input.len() > 256 * 1024 {
            input.truncate(256 * 1024);
        }
    }
}

fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(b) = std::fs::read(&p) {
                v.push(b);
            }
        }
    }
    v
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

thread_local! {
    /// The input being run and its target, for the panic hook.
    static CURRENT: std::cell::RefCell<(String, Vec<u8>)> = const { std::cell::RefCell::new((String::new(), Vec::new())) };
}

/// Also saves every input that panicked, even when the code under test caught the panic
/// (`artifacts/<target>/caught-<hash>`): those are bugs of a dependency worth reporting.
fn save_panicking_inputs() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let _ = CURRENT.try_with(|c| {
            let (name, input) = &*c.borrow();
            if !name.is_empty() {
                let dir = fuzz_dir().join("artifacts").join(name);
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(format!("caught-{:016x}", fnv(input))), input);
            }
        });
    }));
}

/// Runs one input; on failure saves it and returns false.
fn check(name: &str, f: fn(&[u8]), input: &[u8]) -> bool {
    CURRENT.with(|c| *c.borrow_mut() = (name.to_string(), input.to_vec()));
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_ok() {
        return true;
    }
    let dir = fuzz_dir().join("artifacts").join(name);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{:016x}", fnv(input)));
    let _ = std::fs::write(&path, input);
    eprintln!(
        "FAIL {name}: input saved to {} (replay: fuzz-stable run {name} {})",
        path.display(),
        path.display()
    );
    false
}

fn fuzz(name: &str, budget: Duration, max_iter: u64, seed: u64) -> bool {
    let f = target_fn(name);
    let mut corpus: Vec<Vec<u8>> = seeds(name).into_iter().map(|(_, b)| b).collect();
    corpus.extend(load_corpus(&fuzz_dir().join("corpus").join(name)));
    corpus.sort();
    corpus.dedup();
    let mut ok = true;
    for c in &corpus {
        ok &= check(name, f, c);
    }
    if !ok {
        return false;
    }
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let caught_before = CAUGHT_PANICS.load(std::sync::atomic::Ordering::Relaxed);
    let mut n = 0u64;
    let tokens = tokens(name);
    while start.elapsed() < budget && n < max_iter {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus, tokens);
        n += 1;
        if !check(name, f, &input) {
            ok = false;
            break;
        }
    }
    let caught = CAUGHT_PANICS.load(std::sync::atomic::Ordering::Relaxed) - caught_before;
    println!(
        "{name}: {} — {n} mutated inputs + {} corpus inputs in {:.1}s ({caught} panics caught inside the code under test)",
        if ok { "ok" } else { "FAILED" },
        corpus.len(),
        start.elapsed().as_secs_f64()
    );
    ok
}

fn main() {
    whizard_fuzz::init();
    save_panicking_inputs();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut which = "all".to_string();
    let mut seconds = 20.0f64;
    let mut iterations = u64::MAX;
    let mut seed = 0x5eed_u64 ^ std::process::id() as u64;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "seed" => {
                for t in TARGETS {
                    let dir = fuzz_dir().join("corpus").join(t);
                    std::fs::create_dir_all(&dir).expect("corpus dir");
                    for (file, bytes) in seeds(t) {
                        std::fs::write(dir.join(file), bytes).expect("write seed");
                    }
                    println!("wrote seeds to {}", dir.display());
                }
                return;
            }
            "run" => {
                let name = args.get(i + 1).expect("run TARGET FILE...");
                let f = target_fn(name);
                let mut ok = true;
                for file in &args[i + 2..] {
                    let b = std::fs::read(file).expect("read input");
                    let good = check(name, f, &b);
                    println!("{file}: {}", if good { "ok" } else { "FAILED" });
                    ok &= good;
                }
                std::process::exit(if ok { 0 } else { 1 });
            }
            "--seconds" => {
                seconds = args[i + 1].parse().expect("--seconds N");
                i += 1;
            }
            "--iterations" => {
                iterations = args[i + 1].parse().expect("--iterations N");
                i += 1;
            }
            "--seed" => {
                seed = args[i + 1].parse().expect("--seed N");
                i += 1;
            }
            t => which = t.to_string(),
        }
        i += 1;
    }
    let targets: Vec<&str> = if which == "all" {
        TARGETS.to_vec()
    } else {
        vec![which.as_str()]
    };
    let mut ok = true;
    for t in targets {
        ok &= fuzz(t, Duration::from_secs_f64(seconds), iterations, seed);
    }
    println!("seed {seed}");
    std::process::exit(if ok { 0 } else { 1 });
}
