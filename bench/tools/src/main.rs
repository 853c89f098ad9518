//! whizard-benchtool: helpers for bench/run.sh.
//!
//! ```text
//! whizard-benchtool micro OUT.json [SECONDS_PER_CASE]   # microbenchmarks, one core, JSON out
//! whizard-benchtool payloads DIR                        # snappy v1/v2 bodies for wrk (write phase)
//! whizard-benchtool conns ADDR N HOLD_SECS [AUTH]       # open N keep-alive conns, 1 request each, hold
//! whizard-benchtool relay LISTEN UPSTREAM USER:PASS TENANT_HEADER TENANT  # the read floor (relay.rs)
//! ```
use base64::Engine;
use std::future::Future;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[path = "../../../benches/support/payloads.rs"]
mod payloads;
#[path = "../../../benches/support/queries.rs"]
mod queries;

mod jwt;
mod relay;

use whizard::enforcement::{enforce_match_selectors, enforce_query, TenantMatcher};
use whizard::remote_write::{
    compress, decompress, inject_v1, inject_v2, rewrite_body, Format, LabelSet,
};

/// Median nanoseconds per call of `f`, from batches run for about `budget`.
fn measure<R>(budget: Duration, mut f: impl FnMut() -> R) -> f64 {
    // Calibrate a batch of ~2 ms.
    let mut n: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        let e = t.elapsed();
        if e >= Duration::from_millis(2) || n >= 1 << 30 {
            break;
        }
        n *= 2;
    }
    let mut per_call = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || per_call.len() < 5 {
        let t = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        per_call.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    per_call.sort_by(|a, b| a.partial_cmp(b).unwrap());
    per_call[per_call.len() / 2]
}

/// Polls `fut` once: the measured paths (cache hits, verification with keys already loaded)
/// never wait, so no runtime is involved in the timing.
fn now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a measured path should not wait"),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn micro(out: &Path, secs: f64) {
    use serde_json::json;
    let budget = Duration::from_secs_f64(secs);
    let mut result = serde_json::Map::new();

    // Cached Basic Auth.
    let hash = whizard::auth::password::hash_argon2id(b"alice-secret").expect("hash");
    let yaml = format!(
        r#"
listen: {{http: "127.0.0.1:0"}}
upstreams: {{query: "http://127.0.0.1:9090", receive: "http://127.0.0.1:9090/api/v1/write"}}
tenants: [{{id: team-a}}, {{id: team-b}}]
users:
  - {{name: alice, password_hash: "{hash}", tenants: [team-a, team-b], access: [read]}}
"#
    );
    let config =
        whizard::config::Config::from_yaml(&yaml, "bench", Path::new(".")).expect("config");
    let auth = whizard::auth::basic::BasicAuth::new(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(auth.check(b"alice", b"alice-secret"))
        .expect("valid");
    let check = measure(budget, || {
        now(auth.check(b"alice", b"alice-secret")).is_ok()
    });
    let mut headers = http::HeaderMap::new();
    let token = base64::engine::general_purpose::STANDARD.encode("alice:alice-secret");
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Basic {token}").parse().unwrap(),
    );
    let header = {
        use whizard::auth::Authenticator;
        measure(budget, || {
            matches!(
                now(auth.authenticate(&headers)),
                whizard::auth::AuthOutcome::Authenticated(_)
            )
        })
    };
    result.insert("auth_basic_check_cached_ns".into(), json!(check));
    result.insert("auth_basic_header_cached_ns".into(), json!(header));
    eprintln!("auth: check {check:.0} ns, header {header:.0} ns");

    // JWT (OIDC bearer). The keys come from a provider on loopback, fetched the way the gateway
    // fetches them, so the verifier holds the same key objects as in production.
    let (jwt_cached, jwt_header, jwt_rs256, jwt_es256) = jwt_checks(&rt, budget);
    result.insert("auth_jwt_check_cached_ns".into(), json!(jwt_cached));
    result.insert("auth_jwt_header_cached_ns".into(), json!(jwt_header));
    result.insert("auth_jwt_check_uncached_ns".into(), json!(jwt_rs256));
    result.insert("auth_jwt_check_uncached_es256_ns".into(), json!(jwt_es256));
    eprintln!(
        "jwt: cached {jwt_cached:.0} ns, header {jwt_header:.0} ns, \
         uncached RS256 {jwt_rs256:.0} ns, ES256 {jwt_es256:.0} ns"
    );

    // PromQL rewrite, each dashboard query.
    let one = TenantMatcher::new("tenant_id", ["team-a"]).expect("matcher");
    let two = TenantMatcher::new("tenant_id", ["team-a", "team-b"]).expect("matcher");
    let mut per_query = Vec::new();
    let mut rows = Vec::new();
    for q in queries::DASHBOARD_QUERIES {
        let ok = enforce_query(q, &one).is_ok();
        let ns = measure(budget / 4, || enforce_query(q, &one).is_ok());
        per_query.push(ns);
        rows.push(json!({"query": q, "ns": ns, "accepted": ok}));
    }
    let mut sorted = per_query.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let two_set = measure(budget, || {
        for q in queries::DASHBOARD_QUERIES {
            black_box(enforce_query(q, &two).is_ok());
        }
    }) / queries::DASHBOARD_QUERIES.len() as f64;
    result.insert(
        "promql_rewrite".into(),
        json!({
            "queries": queries::DASHBOARD_QUERIES.len(),
            "median_ns": percentile(&sorted, 0.5),
            "p90_ns": percentile(&sorted, 0.9),
            "max_ns": sorted[sorted.len() - 1],
            "mean_ns": per_query.iter().sum::<f64>() / per_query.len() as f64,
            "two_tenants_mean_ns": two_set,
            "each": rows,
        }),
    );
    eprintln!(
        "promql: median {:.0} ns, max {:.0} ns",
        percentile(&sorted, 0.5),
        sorted[sorted.len() - 1]
    );

    let sel = measure(budget, || {
        enforce_match_selectors(queries::MATCH_SELECTORS, &one).is_ok()
    }) / queries::MATCH_SELECTORS.len() as f64;
    let absent = measure(budget, || enforce_match_selectors(&[], &one).is_ok());
    result.insert("match_injection_per_selector_ns".into(), json!(sel));
    result.insert("match_injection_absent_ns".into(), json!(absent));
    eprintln!("match[]: {sel:.0} ns per selector, absent {absent:.0} ns");

    // Remote write, per shape.
    let labels =
        LabelSet::new([("tenant_id", "team-a"), ("cluster", "prod-eu-1")]).expect("labels");
    let none = LabelSet::empty();
    const MAX: usize = 64 << 20;
    let mut shapes = serde_json::Map::new();
    for &(shape, series, samples) in payloads::SHAPES {
        let raw1 = payloads::v1_request(series, samples);
        let raw2 = payloads::v2_request(series, samples);
        let body1 = compress(&raw1).unwrap();
        let body2 = compress(&raw2).unwrap();
        let n_samples = (series * samples) as f64;
        let mut out = Vec::new();
        // The baseline does the least any proxy must: decompress, compress. Like the gateway's
        // path it decompresses into a buffer reused across requests and compresses into a
        // fresh one (the compressed body leaves with the request).
        let mut dbuf = Vec::new();
        let cases: Vec<(&str, f64)> = vec![
            (
                "a_snappy_roundtrip",
                measure(budget, || {
                    whizard::remote_write::decompress_into(&body1, MAX, &mut dbuf).unwrap();
                    compress(&dbuf).unwrap()
                }),
            ),
            (
                "a_snappy_roundtrip_fresh_buffers",
                measure(budget, || {
                    compress(&decompress(&body1, MAX).unwrap()).unwrap()
                }),
            ),
            // `rewrite_body` is what the gateway calls per request.
            (
                "b_passthrough",
                measure(budget, || {
                    rewrite_body(Format::V1, &body1, &none, MAX).unwrap()
                }),
            ),
            (
                "c_inject_v1",
                measure(budget, || {
                    rewrite_body(Format::V1, &body1, &labels, MAX).unwrap()
                }),
            ),
            (
                "d_inject_v2",
                measure(budget, || {
                    rewrite_body(Format::V2, &body2, &labels, MAX).unwrap()
                }),
            ),
            (
                "splice_only_v1",
                measure(budget, || inject_v1(&raw1, &labels, &mut out).unwrap()),
            ),
            (
                "splice_only_v2",
                measure(budget, || inject_v2(&raw2, &labels, &mut out).unwrap()),
            ),
        ];
        let a = cases[0].1;
        let mut m = serde_json::Map::new();
        for (name, ns) in &cases {
            m.insert(
                (*name).into(),
                json!({
                    "ns_per_request": ns,
                    "requests_per_s": 1e9 / ns,
                    "samples_per_s": n_samples * 1e9 / ns,
                    "vs_snappy": a / ns,
                }),
            );
            eprintln!(
                "{shape} {name}: {:.0} µs/request, {:.1} M samples/s, x{:.2} of snappy",
                ns / 1e3,
                n_samples * 1e3 / ns,
                a / ns
            );
        }
        m.insert("body_bytes_v1".into(), json!(body1.len()));
        m.insert("raw_bytes_v1".into(), json!(raw1.len()));
        m.insert("body_bytes_v2".into(), json!(body2.len()));
        m.insert("raw_bytes_v2".into(), json!(raw2.len()));
        m.insert("series".into(), json!(series));
        m.insert("samples".into(), json!(series * samples));
        shapes.insert(shape.into(), serde_json::Value::Object(m));
    }
    result.insert("remote_write".into(), serde_json::Value::Object(shapes));
    std::fs::write(
        out,
        serde_json::to_vec_pretty(&serde_json::Value::Object(result)).unwrap(),
    )
    .expect("write");
}

/// Nanoseconds per JWT check: cached `verify_token`, cached from the `Authorization` header, and
/// a full (uncached) verification of an RS256 and an ES256 token.
fn jwt_checks(rt: &tokio::runtime::Runtime, budget: Duration) -> (f64, f64, f64, f64) {
    use jsonwebtoken::Algorithm;
    use whizard::auth::{AuthOutcome, Authenticator};

    let idp = rt.block_on(jwt::Provider::serve());
    let oidc = rt.block_on(idp.verifier());
    let issuer = oidc.issuers()[0].clone();
    assert_eq!(
        issuer.key_count(),
        2,
        "the benchmark JWKS has an RSA and an EC key"
    );
    let rs256 = idp.token(Algorithm::RS256);
    let es256 = idp.token(Algorithm::ES256);

    // Check each token once, so a broken setup fails here instead of timing the error path.
    let identity = rt
        .block_on(oidc.verify_token(&rs256))
        .expect("the RS256 benchmark token verifies");
    assert_eq!(identity.tenants, ["team-a", "team-b"]);
    rt.block_on(issuer.verify(&es256, jwt::AUDIENCE))
        .expect("the ES256 benchmark token verifies");

    // The first `verify_token` above cached the token: these are cache hits.
    let cached = measure(budget, || now(oidc.verify_token(&rs256)).is_ok());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {rs256}").parse().expect("header value"),
    );
    let header = measure(budget, || {
        matches!(
            now(oidc.authenticate(&headers)),
            AuthOutcome::Authenticated(_)
        )
    });
    // `Issuer::verify` is what `verify_token` runs on a cache miss: header checks, key lookup by
    // `kid`, signature and claims. It never touches the cache.
    let rs = measure(budget, || now(issuer.verify(&rs256, jwt::AUDIENCE)).is_ok());
    let es = measure(budget, || now(issuer.verify(&es256, jwt::AUDIENCE)).is_ok());
    (cached, header, rs, es)
}

fn write_payloads(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    for &(shape, series, samples) in payloads::SHAPES {
        let v1 = compress(&payloads::v1_request(series, samples)).unwrap();
        let v2 = compress(&payloads::v2_request(series, samples)).unwrap();
        std::fs::write(dir.join(format!("v1-{shape}.snappy")), v1).expect("write");
        std::fs::write(dir.join(format!("v2-{shape}.snappy")), v2).expect("write");
    }
}

/// Opens `n` connections, sends one keep-alive request on each, reads the answer, then holds
/// them open for `hold` (or until stdin closes, whichever comes first).
fn conns(addr: &str, n: usize, hold: Duration, auth: Option<&str>) {
    let req = format!(
        "GET /api/v1/status/buildinfo HTTP/1.1\r\nHost: bench\r\n{}\r\n",
        auth.map(|a| format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(a)
        ))
        .unwrap_or_default()
    );
    let mut open = Vec::with_capacity(n);
    let mut failed = 0usize;
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    for _ in 0..n {
        if start.elapsed() > Duration::from_secs(120) {
            break;
        }
        let Ok(mut s) = TcpStream::connect(addr) else {
            failed += 1;
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(req.as_bytes()).is_err() {
            failed += 1;
            continue;
        }
        // Read one response: headers, then Content-Length bytes.
        let mut got = Vec::new();
        let ok = loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break false,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break head.starts_with("http/1.1 2");
                }
            }
        };
        if ok {
            open.push(s);
        } else {
            failed += 1;
        }
    }
    println!(
        "open {} failed {} in {:.1}s",
        open.len(),
        failed,
        start.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + hold;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(open);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("micro") => micro(
            Path::new(&args[2]),
            args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1.0),
        ),
        Some("payloads") => write_payloads(Path::new(&args[2])),
        Some("conns") => conns(
            &args[2],
            args[3].parse().expect("N"),
            Duration::from_secs(args[4].parse().expect("HOLD_SECS")),
            args.get(5).map(String::as_str),
        ),
        Some("relay") if args.len() == 7 => {
            relay::run(&args[2], &args[3], &args[4], &args[5], &args[6])
        }
        _ => {
            eprintln!("usage: whizard-benchtool micro OUT.json [SECS] | payloads DIR | conns ADDR N HOLD_SECS [USER:PASS] | relay LISTEN UPSTREAM USER:PASS TENANT_HEADER TENANT");
            std::process::exit(2);
        }
    }
}
