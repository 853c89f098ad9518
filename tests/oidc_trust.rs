//! Whom the gateway trusts as the OpenID provider (issue 27, finding 1): only what `oidc[].tls`
//! says (default: the system roots), never `upstreams.tls`.
//!
//! The provider here is a forger's: a small HTTPS server written below (rustls on std threads)
//! serving discovery, a JWKS of its own P-256 key and a token endpoint, with a certificate from
//! a throw-away CA ([`TestPki`], `openssl` CLI) that no system store knows. It mints a token for
//! tenant team-b. The gateway is the real binary; the query upstream is a [`RecordingUpstream`],
//! so "nothing reached Thanos" is checked, not assumed.
//!
//! When the provider cannot be trusted the JWKS fetch fails, and a token needing those keys is
//! answered 503 (the gateway cannot verify it right now; `whizard_auth_failures_total{reason=
//! "unavailable"}`), never 200. The positive path over plain http on loopback with the real
//! `oidc-provider` is covered by tests/oidc_e2e.rs.
//!
//! Run: `cargo test --test oidc_trust`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

const AUDIENCE: &str = "whizard";
const CLIENT_ID: &str = "whizard-ui";
const CLIENT_SECRET: &str = "the-client-secret";
const COOKIE_SECRET: &str = "oidc-trust-cookie-secret-0123456789abcdef";

/// reqwest is built without a rustls provider and jsonwebtoken without a crypto backend: install
/// ring for both, as the gateway does, before any client is built or key used.
fn init() {
    ensure_crypto_provider();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A certificate of `pki` naming only `thanos-query`: what a Thanos component holds, and what
/// the provider's address (127.0.0.1) does not match.
fn thanos_only_cert(pki: &TestPki) -> CertPair {
    pki.issue(
        "thanos",
        "thanos-query",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:thanos-query\n",
    )
}

// ---------------------------------------------------------------------------------------------
// The forger's provider
// ---------------------------------------------------------------------------------------------

/// One HTTP request the provider answered (the TLS handshake succeeded).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    issuer: String,
    jwks: String,
    /// TCP connections accepted: the gateway tried.
    connections: AtomicUsize,
    /// Requests read after a completed handshake: the gateway trusted us.
    seen: Mutex<Vec<Seen>>,
    /// What the token endpoint hands out (the browser-login test sets it).
    id_token: Mutex<Option<String>>,
}

/// An OpenID provider over HTTPS on 127.0.0.1 (discovery, JWKS, token endpoint), serving one
/// request per connection. Stopped on drop.
struct FakeProvider {
    shared: Arc<Shared>,
    key: EncodingKey,
    kid: String,
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FakeProvider {
    fn start(cert: &CertPair) -> FakeProvider {
        init();
        let dir = tempfile::Builder::new()
            .prefix("whizard-fake-idp-")
            .tempdir()
            .expect("tempdir");
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "sign.pem",
            ],
            dir.path(),
        );
        // `genpkey -outform DER` writes SEC1 for EC keys; PKCS#8 comes from `pkcs8 -topk8`.
        openssl(
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "sign.pem", "-outform", "DER", "-out",
                "sign.der",
            ],
            dir.path(),
        );
        // PKCS#8 DER: what `from_ec_der` takes (jsonwebtoken is built without its PEM feature).
        let der = std::fs::read(dir.path().join("sign.der")).expect("read signing key");
        let key = EncodingKey::from_ec_der(&der);
        let kid = "forged-key".to_string();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256)
            .expect("JWK of the signing key");
        jwk.common.key_id = Some(kid.clone());
        let jwks = json!({"keys": [jwk]}).to_string();

        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
            .expect("open cert")
            .collect::<Result<_, _>>()
            .expect("parse cert");
        let private = PrivateKeyDer::from_pem_file(&cert.key).expect("parse key");
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .expect("server certificate");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = Arc::new(tls);

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind fake provider");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            issuer: format!("https://127.0.0.1:{port}"),
            jwks,
            ..Shared::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sh) = (stop.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("fake-idp-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    sh.connections.fetch_add(1, Ordering::AcqRel);
                    let (tls, sh) = (tls.clone(), sh.clone());
                    std::thread::spawn(move || serve(conn, tls, &sh));
                }
            })
            .expect("spawn fake provider");
        FakeProvider {
            shared,
            key,
            kid,
            port,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A token signed with the provider's key; `claims` are added to (and override) a valid
    /// access token for tenant team-b with read access.
    fn sign(&self, claims: Value, header: impl FnOnce(&mut Header)) -> String {
        let mut body = json!({
            "iss": self.issuer(),
            "aud": AUDIENCE,
            "sub": "forger",
            "tenant": "team-b",
            "scope": "read",
            "iat": unix_now(),
            "exp": unix_now() + 600,
        });
        if let (Some(b), Some(extra)) = (body.as_object_mut(), claims.as_object()) {
            b.extend(extra.clone());
        }
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        header(&mut h);
        jsonwebtoken::encode(&h, &body, &self.key).expect("sign token")
    }

    fn token_for_team_b(&self) -> String {
        self.sign(json!({}), |_| {})
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request on one connection: handshake, head (+ Content-Length body), answer, close.
fn serve(conn: TcpStream, tls: Arc<rustls::ServerConfig>, shared: &Shared) {
    let limit = Some(scaled(Duration::from_secs(10)));
    let _ = conn.set_read_timeout(limit);
    let _ = conn.set_write_timeout(limit);
    let Ok(server) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut stream = rustls::StreamOwned::new(server, conn);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk) {
            // A refused certificate ends here: the client aborted the handshake.
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_string();
    let path = start.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let seen = Seen {
        method,
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    };
    shared
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(seen);
    let issuer = &shared.issuer;
    let (status, answer) = match path.split('?').next().unwrap_or_default() {
        "/.well-known/openid-configuration" => (
            200,
            json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/jwks"),
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            })
            .to_string(),
        ),
        "/jwks" => (200, shared.jwks.clone()),
        "/token" => match shared
            .id_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(t) => (
                200,
                json!({"access_token": "opaque", "token_type": "Bearer", "id_token": t})
                    .to_string(),
            ),
            None => (400, json!({"error": "invalid_grant"}).to_string()),
        },
        _ => (404, json!({"error": "not_found"}).to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.write_all(response.as_bytes());
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

// ---------------------------------------------------------------------------------------------
// Gateway config and requests
// ---------------------------------------------------------------------------------------------

/// Two tenants, no users, the provider at `issuer`; `upstreams_tls` and `oidc_tls` are flow
/// mappings (or "") for `upstreams.tls` and `oidc[0].tls`; `login` adds the browser client.
fn gateway_config(
    upstream: &RecordingUpstream,
    issuer: &str,
    upstreams_tls: &str,
    oidc_tls: &str,
    login: bool,
) -> String {
    let upstreams_tls = if upstreams_tls.is_empty() {
        String::new()
    } else {
        format!("\n  tls: {upstreams_tls}")
    };
    let oidc_tls = if oidc_tls.is_empty() {
        String::new()
    } else {
        format!("\n    tls: {oidc_tls}")
    };
    let login = if login {
        format!(
            "\n    client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    \
             redirect_url: \"http://127.0.0.1:${{HTTP_PORT}}/oauth2/callback\"\n\
             ui:\n  enabled: true\n  cookie_secret: \"{COOKIE_SECRET}\""
        )
    } else {
        String::new()
    };
    format!(
        r#"
listen:
  http: "127.0.0.1:${{HTTP_PORT}}"
  metrics: "127.0.0.1:${{METRICS_PORT}}"
upstreams:
  query: "{query}"
  receive: "{query}/api/v1/receive"{upstreams_tls}
tenancy:
  header: THANOS-TENANT
  label: tenant_id
tenants:
  - id: team-a
  - id: team-b
oidc:
  - issuer: "{issuer}"
    audience: {AUDIENCE}
    tenant_claim: tenant
    access_claim: scope{oidc_tls}{login}
"#,
        query = upstream.url(),
    )
}

fn path_of(p: &Path) -> String {
    p.display().to_string()
}

/// `GET /api/v1/query?query=up` with the bearer token: (status, WWW-Authenticate values, body).
async fn query_with(gw: &Gateway, token: &str) -> (u16, Vec<String>, String) {
    let resp = new_http_client()
        .get(format!("{}/api/v1/query?query=up", gw.url()))
        .bearer_auth(token)
        .timeout(scaled(Duration::from_secs(30)))
        .send()
        .await
        .expect("query the gateway");
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    (status, www, resp.text().await.unwrap_or_default())
}

/// The forged token is refused because the provider's keys cannot be fetched: 503 (never 200),
/// counted as an unavailable bearer check; the gateway did connect to the forger (so it was
/// asked) but completed no request there (it refused the certificate); Thanos saw nothing.
async fn assert_forger_refused(gw: &Gateway, idp: &FakeProvider, upstream: &RecordingUpstream) {
    let (status, _, body) = query_with(gw, &idp.token_for_team_b()).await;
    assert_eq!(
        status, 503,
        "a token signed by an untrusted provider: {body}"
    );
    assert_eq!(upstream.count(), 0, "nothing may reach the query upstream");
    assert!(
        idp.connections() >= 1,
        "the gateway never tried the provider"
    );
    assert!(
        idp.seen().is_empty(),
        "the gateway completed a TLS handshake with the forger: {:?}",
        idp.seen()
    );
    let failures = gw
        .metric(
            "whizard_auth_failures_total",
            &[("method", "bearer"), ("reason", "unavailable")],
        )
        .await
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "unavailable bearer check not counted");
    assert!(
        gw.logs().contains("could not fetch OIDC keys"),
        "{}",
        gw.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// (a) `upstreams.tls.insecure_skip_verify` is for a lab Thanos; the provider is still verified
/// against the system roots, which do not know the forger's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_insecure_skip_verify_does_not_make_the_provider_forgeable() {
    init();
    let pki = TestPki::new();
    let idp = FakeProvider::start(&pki.server("idp", &["thanos-query"]));
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&gateway_config(
        &upstream,
        &idp.issuer(),
        "{insecure_skip_verify: true}",
        "",
        false,
    ))
    .await;
    assert_forger_refused(&gw, &idp, &upstream).await;
}

/// (b) A server holding a certificate the Thanos CA issued for `upstreams.tls.server_name` is
/// not the provider: not with the upstreams' trust (system roots apply to the provider), and
/// not even when `oidc[0].tls` trusts the same CA — the name checked is the issuer's host
/// (127.0.0.1), never `upstreams.tls.server_name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thanos_ca_and_server_name_do_not_vouch_for_the_provider() {
    init();
    let pki = TestPki::new();
    let ca = path_of(&pki.ca_cert);
    let upstreams_tls = format!("{{ca_file: \"{ca}\", server_name: thanos-query}}");

    let idp = FakeProvider::start(&pki.server("idp", &["thanos-query"]));
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&gateway_config(
        &upstream,
        &idp.issuer(),
        &upstreams_tls,
        "",
        false,
    ))
    .await;
    assert_forger_refused(&gw, &idp, &upstream).await;
    drop(gw);

    let thanos = FakeProvider::start(&thanos_only_cert(&pki));
    let upstream = RecordingUpstream::start();
    let gw = Gateway::start(&gateway_config(
        &upstream,
        &thanos.issuer(),
        &upstreams_tls,
        &format!("{{ca_file: \"{ca}\"}}"),
        false,
    ))
    .await;
    assert_forger_refused(&gw, &thanos, &upstream).await;
}

/// (c) `oidc[0].tls.ca_file` naming the provider's CA is what makes its tokens valid — the
/// same provider and token as in (a) and (b) — and a token with a `crit` header is refused even
/// from a trusted provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tls_ca_file_decides_whom_the_gateway_trusts() {
    init();
    let pki = TestPki::new();
    let idp = FakeProvider::start(&pki.server("idp", &["thanos-query"]));
    let upstream = RecordingUpstream::start();
    // The upstreams trust nothing of the provider's: the decision is `oidc[0].tls` alone.
    let other = TestPki::new();
    let gw = Gateway::start(&gateway_config(
        &upstream,
        &idp.issuer(),
        &format!("{{ca_file: \"{}\"}}", path_of(&other.ca_cert)),
        &format!("{{ca_file: \"{}\"}}", path_of(&pki.ca_cert)),
        false,
    ))
    .await;

    let (status, _, body) = query_with(&gw, &idp.token_for_team_b()).await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream
        .wait_for_requests(1, scaled(Duration::from_secs(10)))
        .await;
    assert_eq!(seen[0].header("thanos-tenant"), Some("team-b"));
    assert!(
        seen[0].query().contains("team-b"),
        "enforced for team-b: {}",
        seen[0].target
    );
    let fetched: Vec<String> = idp.seen().iter().map(|s| s.path.clone()).collect();
    assert!(
        fetched.contains(&"/.well-known/openid-configuration".to_string())
            && fetched.contains(&"/jwks".to_string()),
        "{fetched:?}"
    );

    // RFC 7515 §4.1.11: an extension we do not understand is marked critical → refused.
    let before = gw
        .metric(
            "whizard_auth_failures_total",
            &[("method", "bearer"), ("reason", "invalid_token")],
        )
        .await
        .unwrap_or(0.0);
    let crit = idp.sign(json!({}), |h| h.crit = Some(vec!["exp".to_string()]));
    let (status, www, body) = query_with(&gw, &crit).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        www.iter().any(|w| w.contains("error=\"invalid_token\"")
            && w.contains("critical header parameter not supported")),
        "{www:?}"
    );
    let after = gw
        .metric(
            "whizard_auth_failures_total",
            &[("method", "bearer"), ("reason", "invalid_token")],
        )
        .await
        .unwrap_or(0.0);
    assert_eq!(after, before + 1.0, "counted like other token failures");
    assert_eq!(upstream.count(), 1, "the crit token reached nothing");
}

/// The browser login's token-endpoint call (it carries `client_secret`) goes through the
/// provider's own client: the upstreams trust another CA, so the code exchange only works
/// because it uses `oidc[0].tls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_exchanges_the_code_with_the_providers_own_client() {
    init();
    let pki = TestPki::new();
    let idp = FakeProvider::start(&pki.server("idp", &[]));
    let upstream = RecordingUpstream::start();
    let other = TestPki::new();
    let gw = Gateway::start(&gateway_config(
        &upstream,
        &idp.issuer(),
        &format!("{{ca_file: \"{}\"}}", path_of(&other.ca_cert)),
        &format!("{{ca_file: \"{}\"}}", path_of(&pki.ca_cert)),
        true,
    ))
    .await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(scaled(Duration::from_secs(30)))
        .build()
        .expect("client");

    let login = client
        .get(format!("{}/oauth2/login?rd=/graph", gw.url()))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status().as_u16(), 302);
    let location = login
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    assert!(
        location.starts_with(&format!("{}/authorize?", idp.issuer())),
        "{location}"
    );
    let flow_cookie: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .collect();
    let params = parse_query(location.split_once('?').map(|x| x.1).unwrap_or_default());
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in {location}"))
    };
    let (state, nonce) = (param("state"), param("nonce"));
    *idp.shared
        .id_token
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(idp.sign(
        json!({"aud": CLIENT_ID, "nonce": nonce, "sub": "alice", "preferred_username": "alice"}),
        |_| {},
    ));

    let callback = client
        .get(format!(
            "{}/oauth2/callback?code=the-code&state={}",
            gw.url(),
            url_encode(&state)
        ))
        .header("cookie", flow_cookie.join("; "))
        .send()
        .await
        .expect("callback");
    let status = callback.status().as_u16();
    let cookies: Vec<String> = callback
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let body = callback.text().await.unwrap_or_default();
    assert_eq!(status, 302, "{body}\n{}", gw.logs());
    assert!(
        cookies.iter().any(|c| c.starts_with("whizard_session=")),
        "{cookies:?}"
    );
    let token_calls: Vec<Seen> = idp
        .seen()
        .into_iter()
        .filter(|s| s.path == "/token")
        .collect();
    assert_eq!(token_calls.len(), 1, "{token_calls:?}");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert_eq!(token_calls[0].method, "POST");
    assert_eq!(
        token_calls[0].header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert!(
        token_calls[0].body.contains("code=the-code"),
        "{}",
        token_calls[0].body
    );
}
