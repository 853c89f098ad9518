//! The OIDC bearer-token verifier and the browser login flow against a real OpenID provider:
//! `tests/node/idp.mjs` (npm `oidc-provider`) under Node, on loopback.
//!
//! Needs `node` and `npm ci` in tests/node.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use whizard::auth::login::{LoginError, LoginFlow, SessionUse};
use whizard::auth::oidc::{www_authenticate, OidcAuth, OidcOptions};
use whizard::auth::session::{SessionOptions, Sessions, FLOW_COOKIE};
use whizard::auth::{AuthError, AuthMethod, AuthOutcome, Authenticator, Identity};
use whizard::config::{Access, OidcProvider};

// ---------------------------------------------------------------------------------------------
// The provider as the gateway is configured for it
// ---------------------------------------------------------------------------------------------

/// How the gateway is configured for `idp`.
fn provider(idp: &Idp) -> OidcProvider {
    OidcProvider {
        issuer: idp.issuer(),
        audience: "whizard".into(),
        tenant_claim: "tenant".into(),
        access_claim: "scope".into(),
        groups_claim: Some("groups".into()),
        group_tenants: BTreeMap::from([("ops".to_string(), vec!["team-ops".to_string()])]),
        client_id: Some("whizard-ui".into()),
        client_secret: Some("whizard-ui-secret".into()),
        redirect_url: Some(CALLBACK.into()),
    }
}

const CALLBACK: &str = "http://127.0.0.1:9/oauth2/callback";

fn fast_options() -> OidcOptions {
    OidcOptions {
        unknown_kid_cooldown: Duration::from_millis(300),
        failure_cooldown: Duration::from_millis(300),
        http_timeout: Duration::from_secs(3),
        ..OidcOptions::default()
    }
}

fn auth_for(idp: &Idp, options: OidcOptions) -> OidcAuth {
    OidcAuth::with_options(&[provider(idp)], new_http_client(), options, None)
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

async fn verify(auth: &OidcAuth, token: &str) -> Result<Arc<Identity>, AuthError> {
    match auth.authenticate(&bearer(token)).await {
        AuthOutcome::Authenticated(id) => Ok(id),
        AuthOutcome::Failed(e) => Err(e),
        AuthOutcome::NotApplicable => panic!("bearer token not applicable"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn access(read: bool, write: bool) -> Access {
    Access { read, write }
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_map_to_tenants_and_access() {
    let idp = Idp::start(&[]).await;
    let auth = auth_for(&idp, fast_options());

    let id = verify(&auth, &idp.token("agent-a", &[]).await)
        .await
        .unwrap();
    assert_eq!(id.name, "agent-a");
    assert_eq!(id.tenants, vec!["team-a"]);
    assert_eq!(id.access, access(false, true));
    assert_eq!(id.method, AuthMethod::Bearer);

    let id = verify(&auth, &idp.token("agent-ab", &[("scope", "read")]).await)
        .await
        .unwrap();
    assert_eq!(id.tenants, vec!["team-a", "team-b"]);
    assert_eq!(id.access, access(true, false));

    let id = verify(&auth, &idp.token("agent-ab", &[]).await)
        .await
        .unwrap();
    assert_eq!(id.access, access(true, true));

    // Every signature algorithm the provider offers, each pinned by its key.
    for resource in [
        "urn:whizard:ps256",
        "urn:whizard:es256",
        "urn:whizard:eddsa",
    ] {
        let token = idp.token("agent-b", &[("resource", resource)]).await;
        let id = verify(&auth, &token)
            .await
            .unwrap_or_else(|e| panic!("{resource}: {e}"));
        assert_eq!(id.tenants, vec!["team-b"], "{resource}");
    }

    // A valid token without a tenant claim authenticates with no tenants (→ 403 later).
    let id = verify(&auth, &idp.token("agent-none", &[]).await)
        .await
        .unwrap();
    assert!(id.tenants.is_empty());
    assert_eq!(id.access, access(true, true));

    // Cached: many more verifications are map lookups.
    let token = idp.token("agent-a", &[]).await;
    verify(&auth, &token).await.unwrap();
    let t = std::time::Instant::now();
    for _ in 0..2000 {
        verify(&auth, &token).await.unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Not a bearer request: not applicable.
    assert!(matches!(
        auth.authenticate(&http::HeaderMap::new()).await,
        AuthOutcome::NotApplicable
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_a_reason() {
    let idp = Idp::start(&[]).await;
    let other = Idp::start(&[]).await; // another provider, not configured
    let auth = auth_for(&idp, fast_options());
    let issuer = idp.issuer();

    let good = idp.token("agent-a", &[]).await;
    verify(&auth, &good).await.unwrap();

    let mut cases: Vec<(&str, String, &str)> = vec![
        (
            "expired beyond the leeway",
            idp.sign(
                json!({"payload": {"tenant": "team-a", "exp": now() - 120, "iat": now() - 400}}),
            )
            .await,
            "token expired",
        ),
        (
            "not yet valid",
            idp.sign(json!({"payload": {"tenant": "team-a", "nbf": now() + 300}}))
                .await,
            "token not yet valid",
        ),
        (
            "no exp",
            idp.sign(json!({"payload": {"tenant": "team-a", "exp": null}}))
                .await,
            "required claim missing",
        ),
        (
            "wrong audience (a real token for another API)",
            idp.token("agent-a", &[("resource", "urn:other")]).await,
            "audience not accepted",
        ),
        (
            "wrong issuer, signed by our provider",
            idp.sign(json!({"payload": {"tenant": "team-a", "iss": "http://127.0.0.1:1"}}))
                .await,
            "issuer not accepted",
        ),
        (
            "a real token of an unconfigured provider",
            other.token("agent-a", &[]).await,
            "issuer not accepted",
        ),
        (
            "our issuer, signed by another provider's key",
            other
                .sign(json!({"payload": {"tenant": "team-a", "iss": issuer}}))
                .await,
            "unknown signing key",
        ),
        (
            "ES256 header on an RSA key id",
            {
                // Signed with the EC key, but naming the RSA key's kid.
                let rsa = idp.sign(json!({"payload": {}, "alg": "RS256"})).await;
                let rsa_kid = jsonwebtoken::decode_header(&rsa).unwrap().kid.unwrap();
                idp.sign(json!({"payload": {"tenant": "team-a"}, "alg": "ES256", "header": {"kid": rsa_kid}}))
                    .await
            },
            "algorithm not allowed for this key",
        ),
    ];

    // Tampered: payload changed (tenant), signature kept.
    {
        let parts: Vec<&str> = good.split('.').collect();
        let mut claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
                .unwrap(),
        )
        .unwrap();
        claims["tenant"] = json!("team-b");
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims).unwrap(),
        );
        cases.push((
            "tampered payload",
            format!("{}.{}.{}", parts[0], payload, parts[2]),
            "signature invalid",
        ));
        // Tampered signature: one bit flipped in the middle.
        let mut sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[2])
                .unwrap();
        let mid = sig.len() / 2;
        sig[mid] ^= 0x01;
        let sig = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig);
        cases.push((
            "tampered signature",
            format!("{}.{}.{}", parts[0], parts[1], sig),
            "signature invalid",
        ));
        // alg=none, no signature, our claims.
        let none = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"none","typ":"JWT"}"#,
        );
        cases.push((
            "alg=none",
            format!("{none}.{}.", parts[1]),
            "algorithm not allowed",
        ));
        // HMAC with the provider's public key (its JWKS) as the secret, under the RSA kid.
        let jwks = new_http_client()
            .get(format!("{issuer}/jwks"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let jwks_value: Value = serde_json::from_slice(&jwks).unwrap();
        let rsa = jwks_value["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kty"] == "RSA")
            .unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = rsa["kid"].as_str().map(str::to_string);
        for secret in [
            jwks.to_vec(),
            rsa["n"].as_str().unwrap().as_bytes().to_vec(),
        ] {
            let hs = jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            cases.push((
                "HS256 with the public key as secret",
                hs,
                "algorithm not allowed",
            ));
        }
    }

    for (what, token, want) in &cases {
        let err = verify(&auth, token).await.err();
        assert_eq!(
            err,
            Some(AuthError::InvalidToken(want)),
            "{what}: expected {want:?}"
        );
        let header = www_authenticate(err.as_ref());
        let header = header.to_str().unwrap();
        assert!(header.starts_with("Bearer "), "{header}");
        assert!(header.contains("error=\"invalid_token\""), "{header}");
        assert!(
            header.contains(&format!("error_description=\"{want}\"")),
            "{header}"
        );
    }

    // Within the leeway: accepted.
    let recent = idp
        .sign(json!({"payload": {"tenant": "team-a", "exp": now() - 5, "scope": "read"}}))
        .await;
    let id = verify(&auth, &recent).await.unwrap();
    assert_eq!(id.tenants, vec!["team-a"]);
    // A token naming our issuer with a trailing slash is ours too.
    let slash = idp
        .sign(json!({"payload": {"tenant": "team-a", "iss": format!("{issuer}/")}}))
        .await;
    verify(&auth, &slash).await.unwrap();
    // Garbage.
    for junk in ["", "abc", "a.b", "a.b.c", "....", "eyJ9.eyJ9.eyJ9"] {
        assert!(
            verify(&auth, junk).await.is_err() || junk.is_empty(), // an empty Bearer is Malformed
            "{junk:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_after_key_rotation_refreshes_the_keys() {
    let idp = Idp::start(&[]).await;
    // Production cooldowns: a rotation right after the first fetch is still picked up at once.
    let auth = auth_for(&idp, OidcOptions::default());
    let before = idp.token("agent-a", &[]).await;
    verify(&auth, &before).await.unwrap();
    let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();

    let kids = idp.rotate(false).await;
    assert!(!kids.contains(&old_kid));
    let after = idp.token("agent-a", &[]).await;
    let new_kid = jsonwebtoken::decode_header(&after).unwrap().kid.unwrap();
    assert_ne!(old_kid, new_kid);
    assert!(kids.contains(&new_kid));

    let fetches = auth.issuers()[0].fetch_count();
    let id = verify(&auth, &after).await.unwrap();
    assert_eq!(id.tenants, vec!["team-a"]);
    assert_eq!(auth.issuers()[0].fetch_count(), fetches + 1);

    // The old key is gone from the JWKS: a token of it that was never cached is refused.
    // (A cached verification of `before` may live on until its exp; a fresh verifier shows it.)
    let fresh = auth_for(&idp, fast_options());
    assert_eq!(
        verify(&fresh, &before).await.err(),
        Some(AuthError::InvalidToken("unknown signing key"))
    );

    // A made-up kid does not cause a fetch per request: many tries in the cooldown fetch once.
    let forged = idp
        .sign(json!({"payload": {"tenant": "team-a"}, "header": {"kid": "no-such-key"}}))
        .await;
    let issuer = &auth.issuers()[0];
    let fetches = issuer.fetch_count();
    let t = std::time::Instant::now();
    for _ in 0..200 {
        assert_eq!(
            verify(&auth, &forged).await.err(),
            Some(AuthError::InvalidToken("unknown signing key"))
        );
    }
    // None at all: the rotation's fetch above started the 30 s cooldown.
    assert!(
        issuer.fetch_count() == fetches,
        "{} fetches in {:?}",
        issuer.fetch_count() - fetches,
        t.elapsed()
    );

    // Single-flight: many concurrent requests with unknown kids share one fetch.
    let auth = Arc::new(auth_for(&idp, OidcOptions::default()));
    auth.refresh_all().await;
    let fetches = auth.issuers()[0].fetch_count();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let auth = auth.clone();
            let forged = forged.clone();
            tokio::spawn(async move { verify(&auth, &forged).await.err() })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            Some(AuthError::InvalidToken("unknown signing key"))
        );
    }
    assert_eq!(auth.issuers()[0].fetch_count(), fetches + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_is_unavailable_but_cached_keys_keep_working() {
    let mut idp = Idp::start(&[]).await;
    let auth = auth_for(&idp, fast_options());

    let first = idp.token("agent-a", &[]).await;
    verify(&auth, &first).await.unwrap(); // keys fetched
    let second = idp.token("agent-b", &[]).await; // same key, never verified yet
    idp.rotate(true).await;
    let rotated = idp.token("agent-a", &[]).await; // a key we have not fetched
    idp.kill();

    // Known key: verified offline.
    assert_eq!(verify(&auth, &first).await.unwrap().tenants, vec!["team-a"]);
    assert_eq!(
        verify(&auth, &second).await.unwrap().tenants,
        vec!["team-b"]
    );
    // Unknown key and the provider is down: 503, not 401.
    assert_eq!(
        verify(&auth, &rotated).await.err(),
        Some(AuthError::Unavailable)
    );
    // Still fine for the known key.
    verify(&auth, &second).await.unwrap();

    // The provider comes back: the new key is fetched (after the failure cooldown).
    idp.spawn().await;
    let id = poll_until(
        Duration::from_secs(10),
        "the rotated key to be fetched",
        || {
            let auth = &auth;
            let rotated = rotated.clone();
            async move { verify(auth, &rotated).await.ok() }
        },
    )
    .await;
    assert_eq!(id.tenants, vec!["team-a"]);

    // A verifier that never reached the provider: everything is unavailable, nothing is 500.
    let nowhere = OidcProvider {
        issuer: format!("http://127.0.0.1:{}", free_port()),
        ..provider(&idp)
    };
    let lonely = OidcAuth::with_options(
        std::slice::from_ref(&nowhere),
        new_http_client(),
        fast_options(),
        None,
    );
    let token = {
        let t = idp
            .sign(json!({"payload": {"iss": nowhere.issuer, "tenant": "x"}}))
            .await;
        t
    };
    assert_eq!(
        verify(&lonely, &token).await.err(),
        Some(AuthError::Unavailable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_loop_fetches_keys_in_the_background() {
    let idp = Idp::start(&[]).await;
    let auth = Arc::new(auth_for(&idp, fast_options()));
    assert_eq!(auth.issuers()[0].key_count(), 0);
    let task = auth.spawn_refresh();
    poll_until(Duration::from_secs(10), "keys to be fetched", || {
        let n = auth.issuers()[0].key_count();
        async move { (n > 0).then_some(()) }
    })
    .await;
    // The loop holds only a weak reference: dropping the authenticator ends it.
    drop(auth);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("refresh loop ends when OidcAuth is dropped")
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Browser login
// ---------------------------------------------------------------------------------------------

fn cookie_request(set_cookies: &[String]) -> http::HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect();
    let mut h = http::HeaderMap::new();
    h.insert(http::header::COOKIE, pairs.join("; ").parse().unwrap());
    h
}

struct Login {
    flow: LoginFlow,
    sessions: Arc<Sessions>,
}

fn login_for(idp: &Idp) -> Login {
    let auth = auth_for(idp, fast_options());
    let sessions = Arc::new(Sessions::from_secret(
        b"a cookie secret of at least thirty-two bytes",
        SessionOptions::default(),
    ));
    let flow = LoginFlow::new(
        auth.login_issuer().unwrap(),
        sessions.clone(),
        new_http_client(),
    )
    .unwrap();
    Login { flow, sessions }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_sets_a_session_for_the_user_and_its_tenant() {
    let idp = Idp::start(&[("IDP_REDIRECT_URIS", CALLBACK)]).await;
    let Login { flow, sessions } = login_for(&idp);

    let start = flow
        .start(Some("rd=%2Fgraph%3Fg0.expr%3Dup"), false)
        .await
        .unwrap();
    assert!(start
        .location
        .starts_with(&format!("{}/auth?", idp.issuer())));
    for p in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "client_id=whizard-ui",
    ] {
        assert!(start.location.contains(p), "{p} in {}", start.location);
    }
    assert_eq!(start.set_cookies.len(), 1);
    let flow_cookie = &start.set_cookies[0];
    assert!(flow_cookie.starts_with(&format!("{FLOW_COOKIE}=")));
    assert!(flow_cookie.contains("Path=/oauth2;"), "{flow_cookie}");
    assert!(flow_cookie.contains("HttpOnly") && flow_cookie.contains("SameSite=Lax"));

    let mut browser = Browser::new();
    let callback = browser.login(&start.location, "alice", CALLBACK).await;
    let query = callback.query().map(str::to_string);

    // A forged state is refused before the code is spent.
    let forged = query.as_deref().unwrap().replace("state=", "state=x");
    let err = flow
        .callback(Some(&forged), &cookie_request(&start.set_cookies), false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    // No flow cookie (another browser): refused.
    let err = flow
        .callback(query.as_deref(), &http::HeaderMap::new(), false)
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");

    let done = flow
        .callback(query.as_deref(), &cookie_request(&start.set_cookies), false)
        .await
        .unwrap();
    assert_eq!(done.location, "/graph?g0.expr=up");
    assert_eq!(done.set_cookies.len(), 2);
    assert!(done.set_cookies[1].starts_with(&format!("{FLOW_COOKIE}=;")));
    assert!(done.set_cookies[1].contains("Max-Age=0"));
    let session_cookie = &done.set_cookies[0];
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"));
    assert!(!session_cookie.contains("Secure"));

    let used = session_of(&flow, &done.set_cookies[..1])
        .await
        .expect("session cookie authenticates");
    let id = used.identity;
    assert_eq!(id.name, "alice");
    assert_eq!(id.tenants, vec!["team-a"]);
    assert_eq!(id.access, access(true, false));
    assert_eq!(id.method, AuthMethod::Session);
    assert!(used.set_cookie.is_none(), "not due for renewal");

    // The code cannot be used twice.
    let err = flow
        .callback(query.as_deref(), &cookie_request(&start.set_cookies), false)
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::Denied(_)), "{err}");

    // Logout ends it.
    let clear = flow
        .logout(&cookie_request(&done.set_cookies[..1]), false)
        .await;
    assert!(clear.contains("Max-Age=0"));
    assert!(matches!(
        session_of(&flow, &done.set_cookies[..1]).await,
        Err(AuthError::InvalidSession(_))
    ));
    drop(sessions);
}

/// The session of a request carrying these cookies.
async fn session_of(flow: &LoginFlow, set_cookies: &[String]) -> Result<SessionUse, AuthError> {
    flow.session(&cookie_request(set_cookies), false)
        .await
        .expect("a session cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_tenants_from_groups_and_accounts_without_tenant() {
    let idp = Idp::start(&[("IDP_REDIRECT_URIS", CALLBACK)]).await;
    let Login { flow, .. } = login_for(&idp);

    let run = |user: &'static str| {
        let flow = &flow;
        async move {
            let start = flow.start(Some("rd=//evil.example"), true).await.unwrap();
            assert!(start.set_cookies[0].contains("; Secure"));
            let mut browser = Browser::new();
            let callback = browser.login(&start.location, user, CALLBACK).await;
            flow.callback(callback.query(), &cookie_request(&start.set_cookies), true)
                .await
        }
    };
    // carol: two tenants; open redirect refused → back to /.
    let done = run("carol").await.unwrap();
    assert_eq!(done.location, "/");
    assert!(done.set_cookies[0].contains("; Secure"));
    let id = session_of(&flow, &done.set_cookies[..1])
        .await
        .unwrap()
        .identity;
    assert_eq!(id.tenants, vec!["team-a", "team-b"]);
    // dave: no tenant claim, group ops → team-ops (group_tenants).
    let done = run("dave").await.unwrap();
    let id = session_of(&flow, &done.set_cookies[..1])
        .await
        .unwrap()
        .identity;
    assert_eq!(id.tenants, vec!["team-ops"]);
    // nobody: no tenant at all → 403 at the callback, no session.
    let err = run("nobody").await.unwrap_err();
    assert_eq!(err, LoginError::NoTenants);
    assert_eq!(err.status(), 403);
}
