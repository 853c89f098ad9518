//! Cached credential checks: the per-request cost of authentication once a password has been
//! verified (argon2id/bcrypt run once, then the keyed-hash cache answers).
//!
//! `cargo bench --bench auth` (Basic Auth, and bearer tokens against a loopback provider)
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use whizard::auth::basic::BasicAuth;
use whizard::auth::{AuthOutcome, Authenticator};
use whizard::config::Config;

// The loopback provider and keys the benchmark tool uses.
#[path = "../bench/tools/src/jwt.rs"]
mod jwt;

/// Polls a future that completes without waiting (the cached path) once.
fn now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the cached path should not wait"),
    }
}

fn basic_auth() -> BasicAuth {
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
    let config = Config::from_yaml(&yaml, "bench", Path::new(".")).expect("config");
    BasicAuth::new(&config)
}

fn bench_basic(c: &mut Criterion) {
    let auth = basic_auth();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The one slow verification (argon2id), which fills the cache.
    rt.block_on(auth.check(b"alice", b"alice-secret"))
        .expect("valid credentials");

    let mut headers = http::HeaderMap::new();
    let token = base64::engine::general_purpose::STANDARD.encode("alice:alice-secret");
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Basic {token}").parse().expect("header"),
    );

    let mut g = c.benchmark_group("auth");
    g.bench_function("basic_check_cached", |b| {
        b.iter(|| now(auth.check(black_box(b"alice"), black_box(b"alice-secret"))).is_ok())
    });
    g.bench_function("basic_header_cached", |b| {
        b.iter(|| {
            matches!(
                now(auth.authenticate(black_box(&headers))),
                AuthOutcome::Authenticated(_)
            )
        })
    });
    g.finish();
}

/// A bearer token (RS256) from a loopback OpenID provider (the benchmark tool's), verified once,
/// then checked from the cache; and the uncached signature check itself.
fn bench_jwt(c: &mut Criterion) {
    use jsonwebtoken::Algorithm;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let idp = rt.block_on(jwt::Provider::serve());
    let oidc = rt.block_on(idp.verifier());
    let issuer = oidc.issuers()[0].clone();
    let token = idp.token(Algorithm::RS256);
    rt.block_on(oidc.verify_token(&token))
        .expect("the benchmark token verifies");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );

    let mut g = c.benchmark_group("auth");
    g.bench_function("jwt_check_cached", |b| {
        b.iter(|| now(oidc.verify_token(black_box(&token))).is_ok())
    });
    g.bench_function("jwt_header_cached", |b| {
        b.iter(|| {
            matches!(
                now(oidc.authenticate(black_box(&headers))),
                AuthOutcome::Authenticated(_)
            )
        })
    });
    g.bench_function("jwt_verify_rs256_uncached", |b| {
        b.iter(|| now(issuer.verify(black_box(&token), jwt::AUDIENCE)).is_ok())
    });
    g.finish();
}

criterion_group!(benches, bench_basic, bench_jwt);
criterion_main!(benches);
