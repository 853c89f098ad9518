//! End to end: OAuth2/OIDC through the real gateway binary, with real components on loopback
//! (issue 5):
//! - the OpenID provider is the npm package `oidc-provider` under Node (tests/node/idp.mjs);
//! - a real Prometheus agent remote-writes with `oauth2` (client_credentials) through the
//!   gateway into a real Prometheus backend;
//! - bearer tokens (the provider's own, and hand-made bad ones) against the query API;
//! - headless Chromium (Debian `chromium`, driven by npm `playwright-core`, tests/node/ui_login.mjs)
//!   signs in at the provider, runs a query in the web UI behind the gateway and logs out.
//!
//! Needs `node`, `chromium` and `scripts/install-test-deps.sh` (node_modules in tests/node).
//! Run: `cargo test --test oidc_e2e` (screenshot: tests/out/ui_query.png).

mod common;
mod fixture;

use common::*;
use fixture::raw_request;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// reqwest is built with `rustls-no-provider`: every test installs the process-wide provider
/// (ring, as the gateway does) before any HTTP client is built.
fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------------
// Gateway config and helpers
// ---------------------------------------------------------------------------------------------

const COOKIE_SECRET: &str = "e2e-cookie-secret-0123456789abcdef-0123456789";

/// Two tenants, no users, one OIDC provider; with `ui`, the browser client and the web UI.
fn gateway_config(backend: &Backend, issuer: &str, ui: bool) -> String {
    let ui = if ui {
        format!("ui:\n  enabled: true\n  cookie_secret: \"{COOKIE_SECRET}\"\n")
    } else {
        String::new()
    };
    format!(
        "{head}oidc:\n{provider}{ui}",
        head = config_head(
            &backend.url(),
            &backend.write_url(),
            "",
            &["team-a", "team-b"]
        ),
        provider = oidc_provider_lines(issuer, "scope", !ui.is_empty()),
    )
}

/// One answer of the gateway.
#[derive(Debug)]
struct Answer {
    status: u16,
    www_authenticate: Vec<String>,
    location: Option<String>,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request to the gateway");
    let status = resp.status().as_u16();
    let www_authenticate = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let text = resp.text().await.unwrap_or_default();
    Answer {
        status,
        www_authenticate,
        location,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// `GET /api/v1/query?query=EXPR` with `Authorization: Bearer TOKEN`.
async fn query_with_token(gw: &Gateway, token: &str, expr: &str) -> Answer {
    send(
        no_redirect_client()
            .get(format!(
                "{}/api/v1/query?{}",
                gw.url(),
                query_string(&[("query", expr)])
            ))
            .bearer_auth(token),
    )
    .await
}

/// Values of `tenant_id` in a vector answer (sorted, deduplicated).
fn tenants_in(answer: &Value) -> Vec<String> {
    let mut out: Vec<String> = answer["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    r["metric"]["tenant_id"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64u(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64u_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// The (header, payload) JSON of a JWT.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&b64u_decode(it.next().unwrap())).unwrap();
    let p = serde_json::from_slice(&b64u_decode(it.next().unwrap())).unwrap();
    (h, p)
}

/// HMAC-SHA256 (RFC 2104) over sha2.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Waits until the backend has `up` series of both tenants, written through the gateway.
async fn wait_for_both_tenants(backend: &Backend) {
    let a = backend
        .wait_for_series(
            r#"up{job="job-a",tenant_id="team-a"}"#,
            Duration::from_secs(60),
        )
        .await;
    assert!(!a.is_empty());
    backend
        .wait_for_series(
            r#"up{job="job-b",tenant_id="team-b"}"#,
            Duration::from_secs(60),
        )
        .await;
}

/// Two agents remote-writing through the gateway with client_credentials tokens of agent-a
/// (tenant team-a) and agent-b (team-b).
async fn start_oauth2_agents(gw: &Gateway, idp: &Idp) -> (Agent, Agent) {
    let write_url = format!("{}/api/v1/write", gw.url());
    let a = Agent::builder(&write_url)
        .job("job-a")
        .oauth2("agent-a", "agent-a-secret", &idp.token_url())
        .start()
        .await;
    let b = Agent::builder(&write_url)
        .job("job-b")
        .oauth2("agent-b", "agent-b-secret", &idp.token_url())
        .start()
        .await;
    (a, b)
}

// ---------------------------------------------------------------------------------------------
// 1 + 2. Agents with client_credentials, then the token matrix on the same stack
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_agents_write_and_bearer_tokens_are_checked() {
    init();
    let backend = Backend::start().await;
    let mut idp = Idp::new(&[]);
    idp.spawn().await;
    let gw = Gateway::start(&gateway_config(&backend, &idp.issuer(), false)).await;

    // --- 1. Real Prometheus agents, oauth2 client_credentials, through the gateway. ---
    let (agent_a, agent_b) = start_oauth2_agents(&gw, &idp).await;
    wait_for_both_tenants(&backend).await;
    // Every series of each agent landed under its token's tenant, nothing else.
    for (job, tenant) in [("job-a", "team-a"), ("job-b", "team-b")] {
        let series = backend.series(&format!(r#"{{job="{job}"}}"#)).await;
        assert!(!series.is_empty(), "{job}: no series");
        for s in &series {
            assert_eq!(
                s.get("tenant_id").map(String::as_str),
                Some(tenant),
                "{job}: series without its tenant: {s:?}"
            );
        }
    }
    assert!(
        agent_a.samples_sent().await > 0.0,
        "agent-a sent nothing:\n{}",
        agent_a.logs()
    );
    assert_eq!(agent_a.samples_failed().await, 0.0, "{}", agent_a.logs());
    assert_eq!(agent_b.samples_failed().await, 0.0, "{}", agent_b.logs());
    // The agents' tokens are write-only: the gateway saw bearer writes, no auth failures for
    // them (a failing agent would retry forever and show up in samples_retried).
    assert!(
        gw.metric(
            "whizard_remote_write_samples_total",
            &[("tenant", "team-a")]
        )
        .await
        .unwrap_or(0.0)
            > 0.0,
        "{}",
        gw.metrics_text().await
    );

    // --- 2. Token matrix on /api/v1/query. ---
    let mut statuses: Vec<(String, u16)> = Vec::new();
    let expect_401 = |name: &str, a: &Answer, statuses: &mut Vec<(String, u16)>| {
        statuses.push((name.to_string(), a.status));
        assert_eq!(a.status, 401, "{name}: {a:?}");
        assert!(
            a.www_authenticate
                .iter()
                .any(|v| v.starts_with("Bearer ") && v.contains(r#"error="invalid_token""#)),
            "{name}: no Bearer invalid_token challenge: {a:?}"
        );
        assert_eq!(a.body["status"], "error", "{name}: {a:?}");
    };

    // Valid: a real read token of team-a sees only team-a.
    let reader = idp.token("reader-a", &[]).await;
    let a = query_with_token(&gw, &reader, "up").await;
    statuses.push(("valid reader-a".into(), a.status));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(tenants_in(&a.body), vec!["team-a"], "{a:?}");
    // Even when the query names the other tenant.
    let a = query_with_token(&gw, &reader, r#"up{tenant_id="team-b"}"#).await;
    assert!(
        (a.status == 200 && tenants_in(&a.body).is_empty()) || a.status == 400 || a.status == 403,
        "reader-a asking for team-b: {a:?}"
    );
    // A token with both tenants reads both; one with the tenant header reads one.
    let both = idp.token("agent-ab", &[]).await;
    let a = query_with_token(&gw, &both, "up").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(tenants_in(&a.body), vec!["team-a", "team-b"], "{a:?}");
    let a = send(
        no_redirect_client()
            .get(format!("{}/team-b/api/v1/query?query=up", gw.url()))
            .bearer_auth(&both),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(tenants_in(&a.body), vec!["team-b"], "{a:?}");
    // reader-a naming team-b in the path: 403.
    let a = send(
        no_redirect_client()
            .get(format!("{}/team-b/api/v1/query?query=up", gw.url()))
            .bearer_auth(&reader),
    )
    .await;
    statuses.push(("reader-a naming team-b".into(), a.status));
    assert_eq!(a.status, 403, "{a:?}");
    // Every signature algorithm of the provider.
    for resource in [
        "urn:whizard:ps256",
        "urn:whizard:es256",
        "urn:whizard:eddsa",
    ] {
        let t = idp
            .token("reader-a", &[("resource", resource), ("scope", "read")])
            .await;
        let a = query_with_token(&gw, &t, "up").await;
        statuses.push((format!("valid {resource}"), a.status));
        assert_eq!(a.status, 200, "{resource}: {a:?}");
        assert_eq!(tenants_in(&a.body), vec!["team-a"], "{resource}: {a:?}");
    }

    // Unknown kid after a key rotation at the provider: refreshed, then valid. (Before any
    // other unknown-kid case: those start the gateway's refetch cooldown.)
    let published = json_of(http_client().get(format!("{}/__keys", idp.issuer()))).await;
    let kids_before = idp.rotate(true).await;
    let rotated = idp.token("reader-a", &[]).await;
    let (h, _) = jwt_parts(&rotated);
    let new_kid = h["kid"].as_str().unwrap().to_string();
    assert!(
        kids_before.contains(&new_kid),
        "{new_kid} not in {kids_before:?}"
    );
    assert!(
        !published.to_string().contains(&new_kid),
        "the rotated kid {new_kid} was already published before the rotation: {published}"
    );
    let a = query_with_token(&gw, &rotated, "up").await;
    statuses.push(("unknown kid after rotation".into(), a.status));
    assert_eq!(a.status, 200, "token signed with the rotated key: {a:?}");
    assert_eq!(tenants_in(&a.body), vec!["team-a"]);
    // The token from before the rotation (old key kept in the JWKS) is still good.
    assert_eq!(query_with_token(&gw, &reader, "up").await.status, 200);

    // No tenant claim: authenticated but not allowed.
    let none = idp.token("agent-none", &[]).await;
    let a = query_with_token(&gw, &none, "up").await;
    statuses.push(("no tenant claim".into(), a.status));
    assert_eq!(a.status, 403, "{a:?}");
    // A write-only token reading.
    let writer = idp.token("agent-a", &[]).await;
    let a = query_with_token(&gw, &writer, "up").await;
    statuses.push(("write-only token reading".into(), a.status));
    assert_eq!(a.status, 403, "{a:?}");
    // A read-only token writing.
    let a = send(
        no_redirect_client()
            .post(format!("{}/api/v1/write", gw.url()))
            .bearer_auth(&reader)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .body(Vec::<u8>::new()),
    )
    .await;
    statuses.push(("read-only token writing".into(), a.status));
    assert_eq!(a.status, 403, "{a:?}");

    // --- refused tokens: 401 with a Bearer invalid_token challenge ---
    let t = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read",
            "iat": now() - 7200, "exp": now() - 3600}}))
        .await;
    expect_401(
        "expired",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    let t = idp.token("reader-a", &[("resource", "urn:other")]).await;
    assert_eq!(jwt_parts(&t).1["aud"], "other");
    expect_401(
        "wrong audience (real token for another API)",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    let t = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read", "aud": "other"}}))
        .await;
    expect_401(
        "wrong audience (signed)",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    let t = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read",
            "iss": "http://127.0.0.1:9/not-the-issuer"}}))
        .await;
    expect_401(
        "wrong issuer",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    // The issuer with a different path (prefix attack) is another issuer.
    let t = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read",
            "iss": format!("{}/evil", idp.issuer())}}))
        .await;
    expect_401(
        "issuer with extra path",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    let t = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read", "nbf": now() + 3600}}))
        .await;
    expect_401(
        "not yet valid",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    let t = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read", "exp": null}}))
        .await;
    expect_401(
        "no exp",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );

    // Tampered: a flipped signature byte, and a payload changed to the other tenant.
    let fresh = idp.token("reader-a", &[]).await;
    let parts: Vec<&str> = fresh.split('.').collect();
    let mut sig = b64u_decode(parts[2]);
    sig[10] ^= 0x01;
    let t = format!("{}.{}.{}", parts[0], parts[1], b64u(&sig));
    expect_401(
        "tampered signature",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    let (_, mut payload) = jwt_parts(&fresh);
    payload["tenant"] = json!("team-b");
    let t = format!(
        "{}.{}.{}",
        parts[0],
        b64u(payload.to_string().as_bytes()),
        parts[2]
    );
    expect_401(
        "tampered payload (tenant team-b)",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );

    // alg=none, with and without a signature part.
    let (mut header, payload) = jwt_parts(&fresh);
    header["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(payload.to_string().as_bytes())
    );
    expect_401(
        "alg=none",
        &query_with_token(&gw, &format!("{unsigned}."), "up").await,
        &mut statuses,
    );
    expect_401(
        "alg=none with the original signature",
        &query_with_token(&gw, &format!("{unsigned}.{}", parts[2]), "up").await,
        &mut statuses,
    );
    // HS256 keyed with the provider's public key (the key-confusion attack), under its kid.
    let jwks: Value = http_client()
        .get(format!("{}/__keys", idp.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (h, _) = jwt_parts(&fresh);
    let kid = h["kid"].as_str().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(payload.to_string().as_bytes())
    );
    for secret in [jwk.to_string(), jwk["n"].as_str().unwrap().to_string()] {
        let mac = hmac_sha256(secret.as_bytes(), input.as_bytes());
        expect_401(
            "HS256 with the public key as secret",
            &query_with_token(&gw, &format!("{input}.{}", b64u(&mac)), "up").await,
            &mut statuses,
        );
    }
    // A real key's signature under a kid the provider never had: 401 (the gateway refetches
    // at most once per cooldown; the key stays unknown).
    let t = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read"},
            "header": {"kid": "no-such-kid"}}))
        .await;
    expect_401(
        "unknown kid (never published)",
        &query_with_token(&gw, &t, "up").await,
        &mut statuses,
    );
    // Garbage.
    for (name, t) in [
        ("not a JWT", "not-a-jwt".to_string()),
        ("three dots of garbage", "a.b.c".to_string()),
        ("over 16 KiB", "x".repeat(17_000)),
    ] {
        let a = query_with_token(&gw, &t, "up").await;
        statuses.push((name.to_string(), a.status));
        assert!(
            a.status == 401 || a.status == 400 || a.status == 431,
            "{name}: {a:?}"
        );
    }

    // No credentials at all: 401 with both challenges, not a redirect.
    let a = send(no_redirect_client().get(format!("{}/api/v1/query?query=up", gw.url()))).await;
    statuses.push(("no credentials".into(), a.status));
    assert_eq!(a.status, 401, "{a:?}");
    assert!(
        a.www_authenticate.iter().any(|v| v.starts_with("Bearer")),
        "{a:?}"
    );

    // Nothing answered 5xx, and the valid token still works after all of that.
    let fives: Vec<_> = statuses.iter().filter(|(_, s)| *s >= 500).collect();
    assert!(fives.is_empty(), "5xx answers: {fives:?}");
    let a = query_with_token(&gw, &reader, "up").await;
    assert_eq!(a.status, 200, "{a:?}");
    // Failures were counted by reason.
    let m = gw.metrics_text().await;
    assert!(
        metric_value(&m, "whizard_auth_failures_total", &[("method", "bearer")]).unwrap_or(0.0)
            >= 10.0,
        "{m}"
    );
    eprintln!("token matrix: {statuses:?}");
    drop((agent_a, agent_b));
}

// ---------------------------------------------------------------------------------------------
// 2b. The provider goes away
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_unknown_kid_is_503_known_keys_keep_working() {
    init();
    let backend = Backend::start().await;
    let mut idp = Idp::new(&[]);
    idp.spawn().await;
    let gw = Gateway::start(&gateway_config(&backend, &idp.issuer(), false)).await;

    let used = idp.token("reader-a", &[]).await;
    poll_until(
        Duration::from_secs(20),
        "a valid token to be accepted",
        || async {
            let a = query_with_token(&gw, &used, "up").await;
            (a.status == 200).then_some(())
        },
    )
    .await;
    // Signed with the current key but never shown to the gateway.
    let unseen_known = idp
        .sign(json!({"payload": {"tenant": "team-a", "scope": "read"}}))
        .await;
    // New keys the gateway has not fetched, and a token signed with one of them.
    idp.rotate(true).await;
    let unseen_new_key = idp.token("reader-a", &[]).await;
    idp.kill();
    // The provider's port is closed.
    assert!(http_client()
        .get(format!("{}/.well-known/openid-configuration", idp.issuer()))
        .send()
        .await
        .is_err());

    let a = query_with_token(&gw, &unseen_new_key, "up").await;
    assert_eq!(a.status, 503, "unknown kid, provider down: {a:?}");
    // Again (during the failure cooldown): still 503, never 401 or 500.
    let a = query_with_token(&gw, &unseen_new_key, "up").await;
    assert_eq!(a.status, 503, "{a:?}");
    // A cached token and an unseen token signed with a cached key keep working.
    let a = query_with_token(&gw, &used, "up").await;
    assert_eq!(a.status, 200, "cached token: {a:?}");
    assert_eq!(a.body["status"], "success", "{a:?}");
    let a = query_with_token(&gw, &unseen_known, "up").await;
    assert_eq!(a.status, 200, "token with a cached key: {a:?}");
    // Bad tokens are still 401 (not 503) when the key is known.
    let (h, p) = jwt_parts(&unseen_known);
    let mut p2 = p.clone();
    p2["tenant"] = json!("team-b");
    let sig = unseen_known.rsplit('.').next().unwrap();
    let forged = format!(
        "{}.{}.{sig}",
        b64u(h.to_string().as_bytes()),
        b64u(p2.to_string().as_bytes())
    );
    let a = query_with_token(&gw, &forged, "up").await;
    assert_eq!(a.status, 401, "{a:?}");

    // The provider comes back (same keys file): the new key is found once the gateway's
    // unknown-kid cooldown (30s, counted from the failed fetch) has passed.
    idp.spawn().await;
    poll_until(
        Duration::from_secs(60),
        "the token with the new key to be accepted once the provider is back",
        || async {
            let a = query_with_token(&gw, &unseen_new_key, "up").await;
            assert!(a.status == 503 || a.status == 200, "{a:?}");
            (a.status == 200).then_some(())
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2c. Tenants from tokens are admitted against the current config (issue 27)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_reaches_only_the_tenants_the_current_config_has() {
    init();
    // A recording upstream in front of the real backend shows the tenant header each read
    // was sent with.
    let backend = Backend::start().await;
    let recorder = RecordingUpstream::forwarding_to(&backend.url());
    let mut idp = Idp::new(&[]);
    idp.spawn().await;
    let config = |tenants: &str| {
        gateway_config(&backend, &idp.issuer(), false)
            .replace(&backend.url(), &recorder.url())
            .replace("tenants:\n  - id: team-a\n  - id: team-b\n", tenants)
    };
    let both = "tenants:\n  - id: team-a\n  - id: team-b\n";
    let gw = Gateway::start(&config(both)).await;

    // A token naming only a tenant the gateway does not have: refused, nothing forwarded.
    let unknown = idp
        .sign(json!({"payload": {"tenant": "team-c", "scope": "read"}}))
        .await;
    let a = query_with_token(&gw, &unknown, "up").await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        a.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("team-c"),
        "{a:?}"
    );
    assert_eq!(recorder.count(), 0);
    // A token naming a known and an unknown tenant reads the known one only.
    let mixed = idp
        .sign(json!({"payload": {"tenant": ["team-a", "team-c"], "scope": "read"}}))
        .await;
    let a = query_with_token(&gw, &mixed, "up").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        recorder.last().unwrap().header_all("thanos-tenant"),
        vec!["team-a"]
    );

    // A live token of both tenants; then a reload removes team-b.
    let ab = idp.token("agent-ab", &[]).await;
    let a = query_with_token(&gw, &ab, "up").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        recorder.last().unwrap().header_all("thanos-tenant"),
        vec!["team-a|team-b"]
    );
    gw.write_config(&config("tenants:\n  - id: team-a\n"));
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    let a = query_with_token(&gw, &ab, "up").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        recorder.last().unwrap().header_all("thanos-tenant"),
        vec!["team-a"]
    );
    let named = send(
        no_redirect_client()
            .get(format!("{}/team-b/api/v1/query?query=up", gw.url()))
            .bearer_auth(&ab),
    )
    .await;
    assert_eq!(named.status, 403, "the removed tenant: {named:?}");
}

// ---------------------------------------------------------------------------------------------
// 2d. A session cookie alone does not authorise a cross-origin change (issue 27)
// ---------------------------------------------------------------------------------------------

/// (name, method, path, headers, body (content type, bytes), expected status)
type CsrfCase<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, &'a [u8])>,
    u16,
);

#[tokio::test]
async fn a_session_cookie_changes_nothing_from_another_origin() {
    init();
    let recorder = RecordingUpstream::start();
    let backend = Backend::start().await;
    // The provider need not run: the session is made with the cookie secret, as the callback
    // would make it, with write access (a provider can grant it in the ID token's scope).
    let idp = Idp::new(&[]);
    let config = gateway_config(&backend, &idp.issuer(), true)
        .replace(&backend.url(), &recorder.url())
        .replace(
            "upstreams:\n",
            &format!("upstreams:\n  alertmanager: \"{}\"\n", recorder.url()),
        );
    let gw = Gateway::start(&config).await;
    let sessions =
        whizard::auth::session::Sessions::from_secret(COOKIE_SECRET.as_bytes(), Default::default());
    let claims = json!({"sub": "alice", "tenant": "team-a", "scope": "read write"});
    let cookie = sessions
        .seal(&sessions.start(&idp.issuer(), claims.as_object().cloned().unwrap(), None))
        .unwrap();
    let cookie = format!("whizard_session={cookie}");
    let addr = format!("127.0.0.1:{}", gw.http_port());
    // The gateway's own origin as a browser states it (raw_request sends `Host: ADDR`).
    let own = format!("http://{addr}");
    let other = format!("http://127.0.0.1:{}", gw.http_port() ^ 1);
    let form = Some(("application/x-www-form-urlencoded", b"query=up".as_slice()));
    let write_body = whizard::remote_write::compress(b"").unwrap();
    let cases: Vec<CsrfCase> = vec![
        (
            "write, same origin",
            "POST",
            "/api/v1/write",
            vec![("Origin", &own)],
            Some(("application/x-protobuf", &write_body)),
            403,
        ),
        (
            "write, no content type",
            "POST",
            "/api/v1/write",
            vec![("Origin", &other)],
            Some(("", &write_body)),
            403,
        ),
        (
            "otlp",
            "POST",
            "/api/v1/otlp/v1/metrics",
            vec![("Sec-Fetch-Site", "same-origin")],
            Some(("application/x-protobuf", b"x")),
            403,
        ),
        (
            "form from another port",
            "POST",
            "/api/v1/query",
            vec![("Origin", &other)],
            form,
            403,
        ),
        (
            "form, same-site fetch",
            "POST",
            "/api/v1/query",
            vec![("Origin", &own), ("Sec-Fetch-Site", "same-site")],
            form,
            403,
        ),
        (
            "form, no origin",
            "POST",
            "/api/v1/query",
            vec![],
            form,
            403,
        ),
        (
            "form, null origin",
            "POST",
            "/api/v1/query",
            vec![("Origin", "null")],
            form,
            403,
        ),
        (
            "silence as text/plain, another port",
            "POST",
            "/api/v2/silences",
            vec![("Origin", &other)],
            Some(("text/plain", b"{}")),
            403,
        ),
        (
            "silence as text/plain, same origin",
            "POST",
            "/api/v2/silences",
            vec![("Origin", &own)],
            Some(("text/plain", b"{}")),
            415,
        ),
        (
            "form, same origin",
            "POST",
            "/api/v1/query",
            vec![("Origin", &own)],
            form,
            200,
        ),
        (
            "form, same-origin fetch",
            "POST",
            "/api/v1/query",
            vec![("Sec-Fetch-Site", "same-origin")],
            form,
            200,
        ),
        (
            "read from another port",
            "GET",
            "/api/v1/query?query=up",
            vec![("Origin", &other)],
            None,
            200,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, method, path, mut headers, body, want) in cases {
        headers.push(("Cookie", &cookie));
        let before = recorder.count();
        let (status, text) = raw_request(&addr, method, path, &headers, body).await;
        if status != want {
            wrong.push(format!("{name}: {status} (want {want}) {text}"));
        }
        if want >= 400 && recorder.count() != before {
            wrong.push(format!("{name}: refused yet forwarded"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Browser login and the web UI
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_logs_in_queries_in_the_ui_and_logs_out() {
    init();
    let chromium = chromium();

    let backend = Backend::start().await;
    // The issuer goes into the gateway config before the provider runs; the provider needs the
    // gateway's callback URL, known once the gateway has its port. So: gateway first.
    let mut idp = Idp::new(&[]);
    let gw = Gateway::start(&gateway_config(&backend, &idp.issuer(), true)).await;
    idp.set_env(
        "IDP_REDIRECT_URIS",
        &format!("{}/oauth2/callback", gw.url()),
    );
    idp.spawn().await;
    let (_agent_a, _agent_b) = start_oauth2_agents(&gw, &idp).await;

    let client = no_redirect_client();
    // The gateway reaches the provider (it was down when the gateway started): /oauth2/login
    // redirects to its authorization endpoint.
    let login = poll_until(
        Duration::from_secs(30),
        "/oauth2/login to redirect to the provider",
        || async {
            let a = send(client.get(format!("{}/oauth2/login?rd=%2Fgraph", gw.url()))).await;
            assert!(a.status == 302 || a.status == 503, "{a:?}");
            (a.status == 302).then_some(a)
        },
    )
    .await;
    let loc = login.location.unwrap();
    assert!(loc.starts_with(&format!("{}/auth?", idp.issuer())), "{loc}");
    for p in [
        "response_type=code",
        "client_id=whizard-ui",
        "code_challenge_method=S256",
        "state=",
        "nonce=",
    ] {
        assert!(loc.contains(p), "{p} missing in {loc}");
    }

    // Browser vs API client without credentials.
    let a = send(
        client
            .get(format!("{}/graph", gw.url()))
            .header("accept", "text/html,application/xhtml+xml"),
    )
    .await;
    assert_eq!(a.status, 302, "browser without a session: {a:?}");
    assert_eq!(a.location.as_deref(), Some("/oauth2/login?rd=%2Fgraph"));
    for (path, accept) in [
        ("/api/v1/query?query=up", "application/json"),
        ("/api/v1/query?query=up", "*/*"),
        ("/graph", "application/json"),
    ] {
        let a = send(
            client
                .get(format!("{}{path}", gw.url()))
                .header("accept", accept),
        )
        .await;
        assert_eq!(a.status, 401, "API client {path} {accept}: {a:?}");
        assert!(a.location.is_none(), "{a:?}");
        assert!(!a.www_authenticate.is_empty(), "{a:?}");
    }
    // A forged or garbage session cookie is no session.
    let a = send(
        client
            .get(format!("{}/api/v1/query?query=up", gw.url()))
            .header("cookie", "whizard_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    assert_eq!(a.status, 401, "{a:?}");

    wait_for_both_tenants(&backend).await;

    // The browser.
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("ui_query.png");
    let _ = std::fs::remove_file(&shot);
    let (result, _) = run_browser_script(
        "ui_login.mjs",
        &chromium,
        &gw,
        &idp,
        vec![("SCREENSHOT", shot.display().to_string())],
    )
    .await;
    let series: Vec<String> = result["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(
        series.iter().any(|s| s.contains(r#"tenant_id="team-a""#)),
        "{series:?}"
    );
    assert!(!series.iter().any(|s| s.contains("team-b")), "{series:?}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "bad screenshot"
    );
}
