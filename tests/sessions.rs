//! Browser sessions end to end (README, "OpenID Connect and the web UI", Sessions): the real
//! gateway binary, the real OpenID provider (npm `oidc-provider` under Node, tests/node/idp.mjs)
//! and logins over HTTP (authorization code + PKCE through the provider's login form). Proves:
//! - tenants and access of a live session follow the current config: a reload that changes
//!   `group_tenants` or removes a tenant applies to the same cookie at once;
//! - a session is renewed at the provider every `ui.session_renew_seconds`; the renewed cookie
//!   comes back as `Set-Cookie` on a proxied answer — and on any other answer: a POST read, a
//!   filtered answer (rules), a refusal — and works;
//! - logout revokes the refresh token: a copied cookie stops working on another replica (same
//!   `ui.cookie_secret`) and after a restart, within the renew interval;
//! - without a refresh token a session ends at its first renewal;
//! - removing the provider from the config ends its sessions.
//!
//! Needs `node` with tests/node/node_modules (scripts/install-test-deps.sh) and `prometheus`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The identity provider
// ---------------------------------------------------------------------------------------------

fn callback(gw: &Gateway) -> String {
    format!("{}/oauth2/callback", gw.url())
}

// ---------------------------------------------------------------------------------------------
// Gateway config
// ---------------------------------------------------------------------------------------------

const COOKIE_SECRET: &str = "sessions-e2e-cookie-secret-0123456789abcdef";
/// A Basic Auth reader of team-a (bcrypt of "alice-pw"): shows that a gateway refusing a cookie
/// is serving, on the config the test expects.
const READER: (&str, &str) = ("reader", "alice-pw");
const READER_HASH: &str = "$2y$04$8duxTVLOPcIN8ozdK5lDNO8yDMp3SwpA9.zU.TTGZea7VVyqxFsdq";
const BOTH: &[&str] = &["team-a", "team-b"];

/// A gateway reading from `query`, with `tenants`, the Basic reader, and — when `issuer` is
/// given — that provider for tokens and browser login, its group `ops` mapped to
/// `ops_tenants`. The web UI is on with [`COOKIE_SECRET`] either way; `renew` is
/// `ui.session_renew_seconds` (absent: the default).
fn config(
    query: &str,
    issuer: Option<&str>,
    tenants: &[&str],
    ops_tenants: &[&str],
    renew: Option<u64>,
) -> String {
    let oidc = match issuer {
        Some(issuer) => format!(
            "oidc:\n{provider}    groups_claim: groups\n    group_tenants: {{ops: [{ops}]}}\n",
            provider = oidc_provider_lines(issuer, "scope", true),
            ops = ops_tenants.join(", ")
        ),
        None => String::new(),
    };
    let renew = renew
        .map(|s| format!("  session_renew_seconds: {s}\n"))
        .unwrap_or_default();
    format!(
        r#"{head}users:
  - name: {reader}
    password_hash: "{READER_HASH}"
    tenants: [team-a]
    access: [read]
{oidc}ui:
  enabled: true
  cookie_secret: "{COOKIE_SECRET}"
{renew}"#,
        head = config_head(query, &format!("{query}/api/v1/write"), "", tenants),
        reader = READER.0,
    )
}

/// The value of the attribute `name` of a `Set-Cookie` field.
fn cookie_attribute<'a>(set_cookie: &'a str, name: &str) -> Option<&'a str> {
    set_cookie
        .split(';')
        .find_map(|a| a.trim().strip_prefix(name)?.strip_prefix('='))
}

/// A gateway reading from `upstream` (both tenants, the provider's group `ops` mapped to
/// team-a, `ui.session_renew_seconds` `renew`), with the provider started for it with `env`.
async fn gateway_with_provider(
    upstream: &RecordingUpstream,
    renew: Option<u64>,
    env: &[(&str, &str)],
) -> (Idp, Gateway) {
    let mut idp = Idp::new(&[]);
    let gw = Gateway::start(&config(
        &upstream.url(),
        Some(&idp.issuer()),
        BOTH,
        &["team-a"],
        renew,
    ))
    .await;
    idp.start_for(&[&gw], env).await;
    (idp, gw)
}

/// Rewrites the config file and reloads it through `POST /-/reload` on the metrics listener.
async fn reload(gw: &Gateway, yaml: &str) {
    gw.write_config(yaml);
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "reload refused: {body}");
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// One answer of the gateway.
#[derive(Debug)]
struct Answer {
    status: u16,
    set_cookies: Vec<String>,
    location: Option<String>,
    www_authenticate: Vec<String>,
    body: Value,
}

impl Answer {
    /// The value of a `whizard_session` the answer sets (not one it clears).
    fn session_cookie(&self) -> Option<&str> {
        self.set_cookies.iter().find_map(|c| {
            c.split(';')
                .next()?
                .strip_prefix("whizard_session=")
                .filter(|v| !v.is_empty())
        })
    }

    /// The Prometheus API error message of a refusal.
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request to the gateway");
    let all = |name: &str| -> Vec<String> {
        resp.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect()
    };
    let (set_cookies, www_authenticate) = (all("set-cookie"), all("www-authenticate"));
    let location = all("location").into_iter().next();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Answer {
        status,
        set_cookies,
        location,
        www_authenticate,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

const PROBE: &str = "session_probe";

/// `GET PATH` (e.g. `/api/v1/query?query=...`) with nothing but the session cookie, as the web
/// UI's API calls are made; `tenant` goes into the tenant header.
async fn get_with_cookie(gw: &Gateway, path: &str, cookie: &str, tenant: Option<&str>) -> Answer {
    let mut req = no_redirect_client()
        .get(format!("{}{path}", gw.url()))
        .header("accept", "application/json")
        .header("cookie", format!("whizard_session={cookie}"));
    if let Some(t) = tenant {
        req = req.header("THANOS-TENANT", t);
    }
    send(req).await
}

/// The UI's query of [`PROBE`] with the session cookie.
async fn query(gw: &Gateway, cookie: &str) -> Answer {
    query_as(gw, cookie, None).await
}

/// [`query`] naming `tenant` in the tenant header.
async fn query_as(gw: &Gateway, cookie: &str, tenant: Option<&str>) -> Answer {
    get_with_cookie(gw, &format!("/api/v1/query?query={PROBE}"), cookie, tenant).await
}

/// A browser navigating to the UI's `/graph` with the session cookie.
async fn navigate(gw: &Gateway, cookie: &str) -> Answer {
    send(
        no_redirect_client()
            .get(format!("{}/graph", gw.url()))
            .header("accept", "text/html,application/xhtml+xml")
            .header("cookie", format!("whizard_session={cookie}")),
    )
    .await
}

/// Signs in at the gateway as `user` the way a browser does — `/oauth2/login`, the provider's
/// login form, back to `/oauth2/callback` — and returns the session cookie's value.
async fn login(gw: &Gateway, user: &str) -> String {
    let start = format!("{}/oauth2/login?rd=%2Fgraph", gw.url());
    // The provider may have been down when the gateway started (it needs the gateway's callback
    // URL): its discovery is retried after a short cooldown.
    poll_until(
        Duration::from_secs(20),
        "/oauth2/login to redirect to the provider",
        || async {
            let a = send(no_redirect_client().get(&start)).await;
            assert!(a.status == 302 || a.status == 503, "{a:?}");
            (a.status == 302).then_some(())
        },
    )
    .await;
    let mut browser = Browser::new();
    let resp = browser.send(browser.client.get(&start)).await;
    assert_eq!(resp.status(), 302);
    let authorize = resp.headers()["location"].to_str().unwrap().to_string();
    let back = browser.login(&authorize, user, &callback(gw)).await;
    let resp = browser.send(browser.client.get(back.clone())).await;
    let status = resp.status();
    let to = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    assert_eq!(
        status,
        302,
        "callback {back}: {}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(to.as_deref(), Some("/graph"));
    browser
        .cookies
        .get("whizard_session")
        .cloned()
        .unwrap_or_else(|| panic!("no session cookie after the login of {user}"))
}

/// The tenants (`tenant_id`) of the series in a query answer, sorted.
fn tenants_in(answer: &Value) -> Vec<String> {
    let mut out: Vec<String> = answer["data"]["result"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|r| {
            r["metric"]["tenant_id"]
                .as_str()
                .unwrap_or("<none>")
                .to_string()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What a session reads of [`PROBE`]: the tenants of the series that come back, and the tenant
/// header and PromQL the query upstream received. Panics unless the gateway answers 200.
struct Read {
    tenants: Vec<String>,
    header: String,
    promql: String,
}

async fn read(gw: &Gateway, upstream: &RecordingUpstream, cookie: &str) -> Read {
    upstream.clear();
    let a = query(gw, cookie).await;
    assert_eq!(a.status, 200, "{a:?}");
    let sent = upstream.last().expect("the query reached the upstream");
    assert!(
        sent.header("cookie").is_none(),
        "cookie forwarded: {sent:?}"
    );
    Read {
        tenants: tenants_in(&a.body),
        header: sent.header("THANOS-TENANT").unwrap_or_default().to_string(),
        promql: sent.param("query").join(" "),
    }
}

/// One sample of [`PROBE`] per tenant, written straight into the backend.
async fn seed(backend: &Backend, tenants: &[&str]) {
    use common::prompb::{Label, Sample, TimeSeries, WriteRequest};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let request = WriteRequest {
        timeseries: tenants
            .iter()
            .map(|t| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: PROBE.into(),
                    },
                    Label {
                        name: "tenant_id".into(),
                        value: t.to_string(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: now,
                }],
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&request))
        .unwrap();
    let resp = post_write(&backend.url(), ("seed", "seed"), "/api/v1/write", body).await;
    assert!(resp.status().is_success(), "seed: {}", resp.status());
    poll_until(Duration::from_secs(10), "seeded series", || async {
        (backend.query_vector(PROBE).await.len() == tenants.len()).then_some(())
    })
    .await;
}

/// Polls `request` until the gateway refuses the session (`401`), accepting `200` meanwhile
/// (the session is still within its renew interval); returns the refusal and how long it took.
async fn until_refused<F, Fut>(deadline: Duration, what: &str, mut request: F) -> (Answer, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let start = Instant::now();
    let refused = poll_until(deadline, what, || {
        let answer = request();
        async move {
            let a = answer.await;
            assert!(a.status == 200 || a.status == 401, "{what}: {a:?}");
            (a.status == 401).then_some(a)
        }
    })
    .await;
    (refused, start.elapsed())
}

/// A 401 of a refused session for an API client: a challenge, no redirect, no new cookie.
fn assert_refused_session(a: &Answer, reason: &str) {
    assert_eq!(a.status, 401, "{a:?}");
    assert!(
        a.error().contains("invalid session") && a.error().contains(reason),
        "expected a refused session ({reason}): {a:?}"
    );
    assert!(a.location.is_none(), "{a:?}");
    assert!(
        a.www_authenticate.iter().any(|c| c.starts_with("Basic")),
        "{a:?}"
    );
    assert!(a.session_cookie().is_none(), "{a:?}");
}

// ---------------------------------------------------------------------------------------------
// 1. Tenants of a live session follow the config
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_to_live_sessions_group_mapping_and_removed_tenant() {
    let backend = Backend::start().await;
    seed(&backend, BOTH).await;
    let upstream = RecordingUpstream::forwarding_to(&backend.url());
    let mut idp = Idp::new(&[]);
    let issuer = idp.issuer();
    let cfg =
        |tenants: &[&str], ops: &[&str]| config(&upstream.url(), Some(&issuer), tenants, ops, None);
    let gw = Gateway::start(&cfg(BOTH, &["team-a"])).await;
    idp.start_for(&[&gw], &[]).await;

    // dave: no tenant claim, group ops; carol: tenant claim [team-a, team-b]; bob: team-b.
    let dave = login(&gw, "dave").await;
    let carol = login(&gw, "carol").await;
    let bob = login(&gw, "bob").await;

    let r = read(&gw, &upstream, &dave).await;
    assert_eq!(r.tenants, ["team-a"]);
    assert_eq!(r.header, "team-a");
    assert!(r.promql.contains(r#"tenant_id="team-a""#), "{}", r.promql);
    assert_eq!(read(&gw, &upstream, &carol).await.tenants, BOTH);
    assert_eq!(read(&gw, &upstream, &bob).await.tenants, ["team-b"]);

    // The group moves to team-b: the same cookie reads team-b, and no longer team-a.
    reload(&gw, &cfg(BOTH, &["team-b"])).await;
    let r = poll_until(
        Duration::from_secs(10),
        "dave's cookie to read team-b after the reload",
        || async {
            let r = read(&gw, &upstream, &dave).await;
            assert!(
                r.tenants == ["team-a"] || r.tenants == ["team-b"],
                "{:?}",
                r.tenants
            );
            (r.tenants == ["team-b"]).then_some(r)
        },
    )
    .await;
    assert_eq!(r.header, "team-b");
    assert!(
        r.promql.contains(r#"tenant_id="team-b""#) && !r.promql.contains("team-a"),
        "{}",
        r.promql
    );
    upstream.clear();
    let a = query_as(&gw, &dave, Some("team-a")).await;
    assert_eq!(a.status, 403, "dave names his old tenant: {a:?}");
    assert_eq!(upstream.count(), 0, "a refused read reached the upstream");

    // team-b leaves the config: bob's cookie is refused, carol's reads team-a only.
    reload(&gw, &cfg(&["team-a"], &["team-a"])).await;
    let a = poll_until(
        Duration::from_secs(10),
        "bob's cookie to be refused after team-b left the config",
        || async {
            upstream.clear();
            let a = query(&gw, &bob).await;
            assert!(a.status == 200 || a.status == 403, "{a:?}");
            (a.status == 403).then_some(a)
        },
    )
    .await;
    assert_eq!(upstream.count(), 0, "a refused read reached the upstream");
    assert!(
        a.error().contains("team-b") && a.error().contains("configured"),
        "{a:?}"
    );
    let r = read(&gw, &upstream, &carol).await;
    assert_eq!(r.tenants, ["team-a"]);
    assert_eq!(r.header, "team-a");
    assert!(!r.promql.contains("team-b"), "{}", r.promql);
    let a = query_as(&gw, &carol, Some("team-b")).await;
    assert_eq!(a.status, 403, "carol names the removed tenant: {a:?}");
    assert_eq!(read(&gw, &upstream, &dave).await.tenants, ["team-a"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Renewal at the provider
// ---------------------------------------------------------------------------------------------

fn empty_vector() -> Reply {
    Reply::json(
        200,
        &json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
    )
}

/// Polls `request` until its answer sets a new session cookie; every answer meanwhile must have
/// `status`. Returns the new cookie and the answer carrying it.
async fn until_renewed<F, Fut>(
    deadline: Duration,
    what: &str,
    status: u16,
    mut request: F,
) -> (String, Answer)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    poll_until(
        deadline,
        &format!("a renewed session cookie on {what}"),
        || {
            let answer = request();
            async move {
                let a = answer.await;
                assert_eq!(a.status, status, "{what}: {a:?}");
                let renewed = a.session_cookie().map(str::to_string);
                renewed.map(|c| (c, a))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_renewed_and_the_renewed_cookie_comes_back_on_a_proxied_answer() {
    let upstream = RecordingUpstream::start_with(empty_vector());
    let (_idp, gw) = gateway_with_provider(&upstream, Some(1), &[]).await;
    let c0 = login(&gw, "alice").await;

    // Within a few renew intervals a proxied answer carries the renewed cookie.
    upstream.clear();
    let (c1, a) = until_renewed(Duration::from_secs(10), "the UI's query", 200, || {
        query(&gw, &c0)
    })
    .await;
    assert_ne!(c1, c0);
    assert_eq!(
        a.body["data"]["resultType"], "vector",
        "not the upstream's answer: {a:?}"
    );
    let set = a
        .set_cookies
        .iter()
        .find(|c| c.starts_with("whizard_session="))
        .unwrap();
    for attr in ["; Path=/;", "; HttpOnly", "; SameSite=Lax"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    // Max-Age is what is left of the session (8 h from login): a renewal does not extend it.
    let max_age: u64 = cookie_attribute(set, "Max-Age")
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((8 * 3600 - 60..=8 * 3600).contains(&max_age), "{set}");
    let sent = upstream.last().unwrap();
    assert_eq!(sent.header("THANOS-TENANT"), Some("team-a"));

    // The renewed cookie works on its own, and is renewed in turn (its refresh token works).
    upstream.clear();
    let a = query(&gw, &c1).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        upstream.last().unwrap().header("THANOS-TENANT"),
        Some("team-a")
    );
    let (c2, _) = until_renewed(Duration::from_secs(10), "the UI's query", 200, || {
        query(&gw, &c1)
    })
    .await;
    assert!(c2 != c1 && c2 != c0);
    let a = navigate(&gw, &c2).await;
    assert_eq!(a.status, 200, "the UI with the twice renewed cookie: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renewed_cookie_comes_back_with_any_answer() {
    let upstream = RecordingUpstream::start_with(empty_vector());
    let (_idp, gw) = gateway_with_provider(&upstream, Some(1), &[]).await;
    let c0 = login(&gw, "alice").await;

    // A POST read (forwarded by the gateway itself, not by the proxy), from the gateway's pages.
    let post = |cookie: String| {
        let req = no_redirect_client()
            .post(format!("{}/api/v1/query", gw.url()))
            .header("cookie", format!("whizard_session={cookie}"))
            .header("origin", gw.url())
            .form(&[("query", PROBE)]);
        send(req)
    };
    let (c1, _) = until_renewed(Duration::from_secs(10), "a POST query", 200, || {
        post(c0.clone())
    })
    .await;
    assert_eq!(query(&gw, &c1).await.status, 200);

    // A filtered answer (the gateway reads the upstream's rules and filters them).
    let (c2, _) = until_renewed(Duration::from_secs(10), "/api/v1/rules", 200, || {
        get_with_cookie(&gw, "/api/v1/rules", &c1, None)
    })
    .await;
    assert_eq!(query(&gw, &c2).await.status, 200);

    // A refusal after the session was renewed (a tenant alice may not read).
    let path = format!("/api/v1/query?query={PROBE}");
    let (c3, a) = until_renewed(Duration::from_secs(10), "a refused read", 403, || {
        get_with_cookie(&gw, &path, &c2, Some("team-b"))
    })
    .await;
    assert!(a.error().contains("team-b"), "{a:?}");
    assert_eq!(query(&gw, &c3).await.status, 200);
    assert!(c1 != c0 && c2 != c1 && c3 != c2);
}

// ---------------------------------------------------------------------------------------------
// 3. Logout: a copied cookie stops working on another replica and after a restart
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_logout_a_copied_cookie_is_refused_by_other_replicas_and_after_a_restart() {
    const RENEW: u64 = 1;
    let upstream = RecordingUpstream::start_with(empty_vector());
    let mut idp = Idp::new(&[]);
    let cfg = config(
        &upstream.url(),
        Some(&idp.issuer()),
        BOTH,
        &["team-a"],
        Some(RENEW),
    );
    let mut a = Gateway::start(&cfg).await;
    idp.start_for(&[&a], &[]).await;
    // A second replica with the same cookie secret and provider.
    let b = Gateway::start(&cfg).await;

    let cookie = login(&a, "alice").await;
    for gw in [&a, &b] {
        let r = query(gw, &cookie).await;
        assert_eq!(r.status, 200, "before the logout: {r:?}");
    }

    // Logout at A: the cookie is cleared there, and A refuses a copy at once.
    let out = send(
        no_redirect_client()
            .get(format!("{}/oauth2/logout", a.url()))
            .header("cookie", format!("whizard_session={cookie}")),
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert!(
        out.set_cookies
            .iter()
            .any(|c| c.starts_with("whizard_session=;") && c.contains("Max-Age=0")),
        "{out:?}"
    );
    assert_refused_session(&query(&a, &cookie).await, "session ended");

    // B never saw the logout: it refuses the copy at its next renewal, which the provider
    // refuses (the refresh token was revoked).
    let deadline = Duration::from_secs(4 * RENEW + 3);
    let (refused, took) = until_refused(deadline, "replica B to refuse the copied cookie", || {
        query(&b, &cookie)
    })
    .await;
    assert_refused_session(&refused, "the identity provider ended the session");
    eprintln!("replica B refused the copied cookie {took:?} after the logout");
    // A browser is sent to the login.
    let nav = navigate(&b, &cookie).await;
    assert_eq!(nav.status, 302, "{nav:?}");
    assert_eq!(nav.location.as_deref(), Some("/oauth2/login?rd=%2Fgraph"));

    // A restarted A has forgotten the logout; the provider has not.
    a.restart().await;
    let (refused, _) = until_refused(deadline, "restarted A to refuse the copied cookie", || {
        query(&a, &cookie)
    })
    .await;
    assert_refused_session(&refused, "the identity provider ended the session");

    // Not the replicas' fault: a new login works on both.
    let fresh = login(&a, "alice").await;
    for gw in [&a, &b] {
        let r = query(gw, &fresh).await;
        assert_eq!(r.status, 200, "a new session: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. No refresh token: the session ends at its first renewal
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_refresh_token_the_session_ends_at_the_renewal_time() {
    // Renewal times are whole seconds from login: with 2 s the session lasts 1 to 2 s, enough
    // for a first request to be sure to come before it ends.
    const RENEW: u64 = 2;
    let upstream = RecordingUpstream::start_with(empty_vector());
    let (_idp, gw) =
        gateway_with_provider(&upstream, Some(RENEW), &[("IDP_NO_REFRESH", "1")]).await;
    let logging_in = Instant::now();
    let cookie = login(&gw, "alice").await;

    upstream.clear();
    let a = query(&gw, &cookie).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.session_cookie().is_none(), "{a:?}");
    assert_eq!(
        upstream.last().unwrap().header("THANOS-TENANT"),
        Some("team-a")
    );

    let (refused, _) = until_refused(
        Duration::from_secs(RENEW + 5),
        "the session without a refresh token to end",
        || query(&gw, &cookie),
    )
    .await;
    assert_refused_session(&refused, "no refresh token");
    // Not before its renewal time (`renew_at` is whole seconds after the login).
    let lasted = logging_in.elapsed();
    assert!(
        lasted >= Duration::from_secs(RENEW - 1),
        "ended {lasted:?} after the login began, before its renewal time"
    );
    // What the user sees: the UI sends the browser to the login.
    let nav = navigate(&gw, &cookie).await;
    assert_eq!(nav.status, 302, "{nav:?}");
    assert_eq!(nav.location.as_deref(), Some("/oauth2/login?rd=%2Fgraph"));
}

// ---------------------------------------------------------------------------------------------
// 5. Removing the provider ends its sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_provider_from_the_config_ends_its_sessions() {
    let upstream = RecordingUpstream::start_with(empty_vector());
    let (_idp, gw) = gateway_with_provider(&upstream, None, &[]).await;
    let cookie = login(&gw, "alice").await;
    assert_eq!(query(&gw, &cookie).await.status, 200);
    assert_eq!(navigate(&gw, &cookie).await.status, 200);

    // The provider (and so the browser login) leaves the config; the UI and its cookie secret
    // stay, so the cookie still opens: it must be refused all the same.
    reload(&gw, &config(&upstream.url(), None, BOTH, &[], None)).await;
    let a = poll_until(
        Duration::from_secs(10),
        "the session to be refused once its provider left the config",
        || async {
            let a = query(&gw, &cookie).await;
            assert!(a.status == 200 || a.status == 401, "{a:?}");
            (a.status == 401).then_some(a)
        },
    )
    .await;
    assert!(
        a.www_authenticate.iter().any(|c| c.starts_with("Basic")),
        "{a:?}"
    );
    assert!(
        !a.www_authenticate.iter().any(|c| c.starts_with("Bearer")),
        "no provider left, yet a Bearer challenge: {a:?}"
    );
    let nav = navigate(&gw, &cookie).await;
    assert_eq!(nav.status, 401, "no login to send the browser to: {nav:?}");
    // The gateway serves on the new config: the Basic reader reads.
    let r = send(
        no_redirect_client()
            .get(format!("{}/api/v1/query?query={PROBE}", gw.url()))
            .basic_auth(READER.0, Some(READER.1)),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // And /oauth2/login is gone.
    let r = send(no_redirect_client().get(format!("{}/oauth2/login", gw.url()))).await;
    assert_eq!(r.status, 404, "{r:?}");
}
