//! Issue 6, end to end: the HTTPS + HTTP/2 listener, client certificates, TLS to upstreams,
//! certificate rotation and bad certificate files — with a real Prometheus backend and agent,
//! curl, and certificates made by the openssl CLI.

mod common;

use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ALICE: (&str, &str) = ("alice", "alice-pw");
const ALICE_HASH: &str = "$2y$04$8duxTVLOPcIN8ozdK5lDNO8yDMp3SwpA9.zU.TTGZea7VVyqxFsdq";
const BOB_HASH: &str = "$2y$04$o802/Clz46nGvVYp1DQsYe1P5eDMcX1.w0TOJuMtiWPb76rlUQWv.";
const AGENT_A: (&str, &str) = ("agent-a", "agent-a-pw");

/// Users: agent-a writes team-a; alice reads team-a (and logs in by a certificate with CN
/// alice); bob reads team-b (password only: no certificate logs in as bob, whatever it names);
/// carol (no password) reads team-b by a certificate with the DNS SAN carol.team-b.internal;
/// dave (no password) reads team-b by a certificate with CN dave.svc.
fn users() -> String {
    let agent_hash = whizard::auth::password::hash_argon2id(AGENT_A.1.as_bytes()).unwrap();
    format!(
        r#"
tenants:
  - id: team-a
  - id: team-b
users:
  - name: agent-a
    password_hash: "{agent_hash}"
    tenants: [team-a]
    access: [write]
  - name: alice
    password_hash: "{ALICE_HASH}"
    certificate: {{field: cn, value: alice}}
    tenants: [team-a]
    access: [read]
  - name: bob
    password_hash: "{BOB_HASH}"
    tenants: [team-b]
    access: [read]
  - name: carol
    certificate: {{field: dns, value: carol.team-b.internal}}
    tenants: [team-b]
    access: [read]
  - name: dave
    certificate: {{field: cn, value: "dave.svc"}}
    tenants: [team-b]
    access: [read]
"#
    )
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A gateway config: `listen_tls` goes under `listen.tls` (indented 4), `upstream_lines`
/// under `upstreams` (indented 2).
fn config(query: &str, receive: &str, listen_tls: &str, upstream_lines: &str) -> String {
    let https = if listen_tls.is_empty() {
        String::new()
    } else {
        format!("  https: \"127.0.0.1:${{HTTPS_PORT}}\"\n  tls:\n{listen_tls}")
    };
    format!(
        r#"
listen:
  http: "127.0.0.1:${{HTTP_PORT}}"
{https}
upstreams:
  query: "{query}"
  receive: "{receive}"
  connect_timeout_seconds: 2
  timeout_seconds: 20
{upstream_lines}
{users}
"#,
        users = users()
    )
}

fn listen_tls(cert: &CertPair, extra: &str) -> String {
    format!(
        "    cert_file: \"{}\"\n    key_file: \"{}\"\n{extra}",
        p(&cert.cert),
        p(&cert.key)
    )
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
}

/// Verifies against `ca` like a normal client and records every server leaf it sees.
#[derive(Debug)]
struct Recording {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.seen.lock().unwrap().push(end_entity.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

struct TlsClient {
    client: reqwest::Client,
    /// Server leaf certificates seen, one per full handshake.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// A reqwest client trusting `cas`, optionally presenting `client_cert`; no TLS session
/// resumption, so every new connection is a full handshake.
fn tls_client(cas: &[&Path], client_cert: Option<&CertPair>) -> TlsClient {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for c in pem_certs(ca) {
            roots.add(c).unwrap();
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let verifier = Recording {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap(),
        seen: seen.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut cfg = match client_cert {
        Some(cp) => builder
            .with_client_auth_cert(
                pem_certs(&cp.cert),
                PrivateKeyDer::from_pem_file(&cp.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    TlsClient { client, seen }
}

/// `curl` over HTTPS; returns (exit code, "HTTP_VERSION STATUS", body, stderr).
fn curl(args: &[&str], url: &str) -> (i32, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o"])
        .arg(&body)
        .args(["-w", "%{http_version} %{http_code}"])
        .args(args)
        .arg(url);
    let (code, out, err) = run_with_deadline(&mut cmd, Duration::from_secs(30));
    let body = std::fs::read_to_string(&body).unwrap_or_default();
    (code, out, body, err)
}

fn tenants_in(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut t: Vec<String> = v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["metric"]["tenant_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    t.sort();
    t.dedup();
    t
}

/// Writes one sample of `up{job=...}` per tenant straight into the backend.
async fn seed(backend: &Backend) {
    // Through a plain-HTTP gateway would need agents; promtool-free: use the remote-write
    // receiver of the backend with the gateway's own codec.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for tenant in ["team-a", "team-b"] {
        let body = remote_write_body(
            &[
                ("__name__", "seeded"),
                ("job", "seed"),
                ("tenant_id", tenant),
            ],
            now,
            1.0,
        );
        let r = http_client()
            .post(backend.write_url())
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seed: {}", r.status());
    }
}

/// A snappy-compressed remote-write v1 request with one series and one sample.
fn remote_write_body(labels: &[(&str, &str)], ts_ms: i64, value: f64) -> Vec<u8> {
    use common::prompb::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample {
                value,
                timestamp: ts_ms,
            }],
        }],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// HTTPS + HTTP/2 to the real backend; an agent remote-writing over HTTPS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn https_and_h2_reach_the_backend_and_an_agent_writes_over_https() {
    let pki = TestPki::new();
    let server = pki.server("gateway", &[]);
    let backend = Backend::start().await;
    let gw = Gateway::start(&config(
        &backend.url(),
        &backend.write_url(),
        &listen_tls(&server, ""),
        "",
    ))
    .await;
    let https = gw.https_url();

    // A Prometheus agent remote-writes through the HTTPS listener, trusting our CA.
    let agent = Agent::builder(&format!("{https}/api/v1/write"))
        .job("tls-agent")
        .basic_auth(AGENT_A.0, AGENT_A.1)
        .tls_ca_file(&pki.ca_cert)
        .start()
        .await;
    backend
        .wait_for_series(
            r#"up{job="tls-agent",tenant_id="team-a"}"#,
            Duration::from_secs(60),
        )
        .await;
    assert!(agent.samples_sent().await > 0.0);

    // reqwest over rustls negotiates h2 by ALPN; reads go to the backend, team-a only.
    let c = tls_client(&[&pki.ca_cert], None);
    let r = c
        .client
        .get(format!("{https}/api/v1/query?query=up"))
        .header("authorization", basic(ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(tenants_in(&body), vec!["team-a"], "{body}");

    // A POST form (read whole and forwarded by the gateway's own client) over h2.
    let r = c
        .client
        .post(format!("{https}/api/v1/query"))
        .header("authorization", basic(ALICE))
        .form(&[("query", "up")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(tenants_in(&r.text().await.unwrap()), vec!["team-a"]);

    // curl: HTTP/2 and HTTP/1.1 by ALPN, by IP and by name (both in the certificate).
    let ca = p(&pki.ca_cert);
    let port = gw.https_port();
    for (flag, url, want) in [
        (
            "--http2",
            format!("https://127.0.0.1:{port}/api/v1/query?query=up"),
            "2 200",
        ),
        (
            "--http1.1",
            format!("https://localhost:{port}/api/v1/query?query=up"),
            "1.1 200",
        ),
    ] {
        let (code, out, body, err) = curl(
            &[
                flag,
                "--cacert",
                &ca,
                "-u",
                &format!("{}:{}", ALICE.0, ALICE.1),
            ],
            &url,
        );
        assert_eq!((code, out.as_str()), (0, want), "{err} {body}");
        assert_eq!(tenants_in(&body), vec!["team-a"], "{body}");
    }
    // No credentials over TLS: still 401 (TLS alone authenticates nobody).
    let (code, out, _, err) = curl(
        &["--http2", "--cacert", &ca],
        &format!("{https}/api/v1/query?query=up"),
    );
    assert_eq!((code, out.as_str()), (0, "2 401"), "{err}");
    // An untrusted server certificate is refused by the client (sanity check of the setup).
    let (code, _, _, _) = curl(&["--http2"], &format!("{https}/-/healthy"));
    assert_ne!(code, 0);
}

// ---------------------------------------------------------------------------------------------
// Client certificates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mtls_require_refuses_missing_and_unknown_certificates_and_maps_a_valid_one_to_its_user() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let server = pki.server("gateway", &[]);
    let backend = Backend::start().await;
    seed(&backend).await;
    let tls = listen_tls(
        &server,
        &format!(
            "    client_ca_file: \"{}\"\n    client_auth: require\n",
            p(&pki.ca_cert)
        ),
    );
    let gw = Gateway::start(&config(&backend.url(), &backend.write_url(), &tls, "")).await;
    let url = format!("{}/api/v1/query?query=seeded", gw.https_url());

    // No certificate: the handshake fails (reqwest and curl).
    let none = tls_client(&[&pki.ca_cert], None);
    let e = none
        .client
        .get(&url)
        .header("authorization", basic(ALICE))
        .send()
        .await;
    assert!(e.is_err(), "no client certificate must be refused: {e:?}");
    let ca = p(&pki.ca_cert);
    let (code, out, _, err) = curl(&["--cacert", &ca, "-u", "alice:alice-pw"], &url);
    assert_ne!(
        code, 0,
        "curl without a certificate got through: {out} {err}"
    );

    // A certificate from another CA: refused, even with a valid password.
    let mallory = other.client("alice", &[]);
    let bad = tls_client(&[&pki.ca_cert], Some(&mallory));
    let e = bad
        .client
        .get(&url)
        .header("authorization", basic(ALICE))
        .send()
        .await;
    assert!(e.is_err(), "an unknown CA must be refused: {e:?}");
    let (code, _, _, _) = curl(
        &[
            "--cacert",
            &ca,
            "--cert",
            &p(&mallory.cert),
            "--key",
            &p(&mallory.key),
        ],
        &url,
    );
    assert_ne!(code, 0);

    // A valid certificate with CN=alice: authenticated as alice, no password, team-a only.
    let alice = tls_client(&[&pki.ca_cert], Some(&pki.client("alice", &[])));
    let r = alice.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tenants_in(&r.text().await.unwrap()), vec!["team-a"]);
    for tenant_path in ["/team-b/api/v1/query?query=seeded"] {
        let r = alice
            .client
            .get(format!("{}{tenant_path}", gw.https_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "alice's certificate reached team-b");
    }
    let r = alice
        .client
        .get(&url)
        .header("THANOS-TENANT", "team-b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A DNS SAN mapped to a user (carol has no password at all): team-b only.
    let carol = tls_client(
        &[&pki.ca_cert],
        Some(&pki.client("svc-1", &["carol.team-b.internal"])),
    );
    let r = carol.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tenants_in(&r.text().await.unwrap()), vec!["team-b"]);

    // curl with alice's certificate over h2.
    let alice_pair = pki.client("alice", &[]);
    let (code, out, body, err) = curl(
        &[
            "--http2",
            "--cacert",
            &ca,
            "--cert",
            &p(&alice_pair.cert),
            "--key",
            &p(&alice_pair.key),
        ],
        &url,
    );
    assert_eq!((code, out.as_str()), (0, "2 200"), "{err}");
    assert_eq!(tenants_in(&body), vec!["team-a"]);

    // A valid certificate naming no user: the TLS handshake passes, but it authenticates
    // nobody; a password still works on top of it.
    let nobody = tls_client(&[&pki.ca_cert], Some(&pki.client("nobody", &[])));
    let r = nobody.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = nobody
        .client
        .get(&url)
        .header("authorization", basic(("bob", "bob-pw")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tenants_in(&r.text().await.unwrap()), vec!["team-b"]);
}

#[tokio::test]
async fn mtls_optional_allows_passwords_without_a_certificate_and_min_version_13_refuses_tls12() {
    let pki = TestPki::new();
    let server = pki.server("gateway", &[]);
    let backend = Backend::start().await;
    seed(&backend).await;
    let tls = listen_tls(
        &server,
        &format!(
            "    client_ca_file: \"{}\"\n    client_auth: optional\n    min_version: \"1.3\"\n",
            p(&pki.ca_cert)
        ),
    );
    let gw = Gateway::start(&config(&backend.url(), &backend.write_url(), &tls, "")).await;
    let url = format!("{}/api/v1/query?query=seeded", gw.https_url());
    let ca = p(&pki.ca_cert);
    let (code, out, body, err) = curl(&["--cacert", &ca, "-u", "alice:alice-pw"], &url);
    assert_eq!((code, out.as_str()), (0, "2 200"), "{err}");
    assert_eq!(tenants_in(&body), vec!["team-a"]);
    let dave = pki.client("dave.svc", &[]);
    let (code, out, body, err) = curl(
        &[
            "--cacert",
            &ca,
            "--cert",
            &p(&dave.cert),
            "--key",
            &p(&dave.key),
        ],
        &url,
    );
    assert_eq!((code, out.as_str()), (0, "2 200"), "{err}");
    assert_eq!(tenants_in(&body), vec!["team-b"]);
    // TLS 1.2 only: refused by min_version 1.3.
    let (code, _, _, err) = curl(
        &["--cacert", &ca, "-u", "alice:alice-pw", "--tls-max", "1.2"],
        &url,
    );
    assert_ne!(code, 0, "TLS 1.2 accepted with min_version 1.3");
    assert!(err.contains("alert"), "{err}");
}

/// openssl extension lines of an end-entity certificate: `eku` as the extendedKeyUsage value
/// (`None`: no extendedKeyUsage extension at all) and `dns` as DNS SANs.
fn leaf_ext(eku: Option<&str>, dns: &[&str]) -> String {
    let mut ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n".to_string();
    if let Some(eku) = eku {
        ext.push_str(&format!("extendedKeyUsage={eku}\n"));
    }
    if !dns.is_empty() {
        let sans: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
        ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
    }
    ext
}

/// GET `url` presenting `cert`, with `password` as Basic Auth when given: the status, or the
/// client's error when the handshake (or request) fails.
async fn get_with(
    pki: &TestPki,
    cert: &CertPair,
    url: &str,
    password: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    let c = tls_client(&[&pki.ca_cert], Some(cert));
    let mut req = c.client.get(url);
    if let Some(pw) = password {
        req = req.header("authorization", basic(pw));
    }
    let r = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default()))
}

#[tokio::test]
async fn certificates_log_in_only_by_an_explicit_mapping_and_with_the_client_auth_eku() {
    let pki = TestPki::new();
    let server = pki.server("gateway", &[]);
    let backend = Backend::start().await;
    seed(&backend).await;
    let tls = listen_tls(
        &server,
        &format!(
            "    client_ca_file: \"{}\"\n    client_auth: optional\n",
            p(&pki.ca_cert)
        ),
    );
    let gw = Gateway::start(&config(&backend.url(), &backend.write_url(), &tls, "")).await;
    let base = gw.https_url();
    let url = format!("{base}/api/v1/query?query=seeded");
    let client_auth = Some("clientAuth");

    // (a) The CN, or a DNS SAN, equals the name of a user without `certificate` (bob):
    // nobody. The connection still takes bob's password.
    for (file, cn, dns) in [("a-cn", "bob", &[][..]), ("a-san", "svc-2", &["bob"][..])] {
        let cert = pki.issue(file, cn, &leaf_ext(client_auth, dns));
        let got = get_with(&pki, &cert, &url, None).await;
        assert_eq!(got.map(|r| r.0), Ok(401), "{file}: named bob, logged in");
        let (status, body) = get_with(&pki, &cert, &url, Some(("bob", "bob-pw")))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(tenants_in(&body), vec!["team-b"]);
    }

    // (b) The mapped CN (dave.svc, which is not dave's name): dave's tenants only.
    let dave = pki.issue("b-dave", "dave.svc", &leaf_ext(client_auth, &[]));
    let (status, body) = get_with(&pki, &dave, &url, None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(tenants_in(&body), vec!["team-b"], "{body}");
    let r = get_with(
        &pki,
        &dave,
        &format!("{base}/team-a/api/v1/query?query=seeded"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.0, 403, "dave's certificate reached team-a: {}", r.1);
    // CNs compare case-sensitively; the user name as CN is nothing.
    for (file, cn) in [("b-upper", "DAVE.svc"), ("b-name", "dave")] {
        let cert = pki.issue(file, cn, &leaf_ext(client_auth, &[]));
        let got = get_with(&pki, &cert, &url, None).await;
        assert_eq!(got.map(|r| r.0), Ok(401), "CN {cn} logged in");
    }

    // (c) The mapped DNS SAN (carol's): team-b, whatever the CN and the DNS name's case...
    for (file, dns) in [
        ("c-dns", "carol.team-b.internal"),
        ("c-dns-case", "Carol.TEAM-B.internal"),
    ] {
        let cert = pki.issue(
            file,
            "svc-3",
            &leaf_ext(client_auth, &["other.example", dns]),
        );
        let (status, body) = get_with(&pki, &cert, &url, None).await.unwrap();
        assert_eq!(status, 200, "{dns}: {body}");
        assert_eq!(tenants_in(&body), vec!["team-b"], "{body}");
    }
    // ...but the same value as CN does not match a dns mapping, nor does the name as SAN.
    for (file, cn, dns) in [
        ("c-cn", "carol.team-b.internal", &[][..]),
        ("c-name", "svc-4", &["carol"][..]),
    ] {
        let cert = pki.issue(file, cn, &leaf_ext(client_auth, dns));
        let got = get_with(&pki, &cert, &url, None).await;
        assert_eq!(got.map(|r| r.0), Ok(401), "{file} logged in as carol");
    }

    // (d) A server certificate of the same CA (extendedKeyUsage serverAuth only) carrying the
    // mapped values: the handshake fails (the verifier requires clientAuth when the extension
    // is present), so not even a password gets through on it. anyExtendedKeyUsage alone: the
    // same. serverAuth plus clientAuth is a client certificate like any other.
    for (file, eku) in [("d-server", "serverAuth"), ("d-any", "anyExtendedKeyUsage")] {
        let cert = pki.issue(
            file,
            "alice",
            &leaf_ext(Some(eku), &["carol.team-b.internal"]),
        );
        let got = get_with(&pki, &cert, &url, Some(ALICE)).await;
        // rustls answers a certificate of the wrong purpose with the UnsupportedCertificate
        // alert; under TLS 1.3 the client has sent its request by then, so it may see the
        // alert or only the closed connection. Either way: no answer at all.
        assert!(
            got.is_err(),
            "{file}: a certificate of the wrong purpose got an answer: {got:?}"
        );
    }
    let both = pki.issue(
        "d-both",
        "dave.svc",
        &leaf_ext(Some("serverAuth,clientAuth"), &[]),
    );
    let (status, body) = get_with(&pki, &both, &url, None).await.unwrap();
    assert_eq!(
        (status, tenants_in(&body)),
        (200, vec!["team-b".into()]),
        "{body}"
    );

    // (e) No extendedKeyUsage extension at all (RFC 5280: "any purpose"; the verifier lets it
    // through): the mapped CN authenticates nobody, the handshake passes, a password works.
    let no_eku = pki.issue("e-none", "alice", &leaf_ext(None, &[]));
    let got = get_with(&pki, &no_eku, &url, None).await;
    assert_eq!(
        got.map(|r| r.0),
        Ok(401),
        "a certificate without EKU logged in"
    );
    let (status, body) = get_with(&pki, &no_eku, &url, Some(ALICE)).await.unwrap();
    assert_eq!(
        (status, tenants_in(&body)),
        (200, vec!["team-a".into()]),
        "{body}"
    );
    gw.wait_for_log("no extendedKeyUsage clientAuth", Duration::from_secs(10))
        .await;

    // A certificate matching two users' mappings (alice by CN, carol by DNS SAN): nobody.
    let two = pki.issue(
        "two",
        "alice",
        &leaf_ext(client_auth, &["carol.team-b.internal"]),
    );
    let got = get_with(&pki, &two, &url, None).await;
    assert_eq!(
        got.map(|r| r.0),
        Ok(401),
        "a certificate naming two users logged in"
    );
    gw.wait_for_log("matches several users", Duration::from_secs(10))
        .await;
}

/// (f) `check-config` refuses two users mapping the same certificate value (DNS names in any
/// case), and a user who could not log in at all.
#[test]
fn check_config_refuses_ambiguous_certificate_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(
        &file,
        r#"
listen: {http: "127.0.0.1:8080"}
upstreams: {query: "http://127.0.0.1:9090", receive: "http://127.0.0.1:9090/api/v1/write"}
tenants: [{id: team-a}, {id: team-b}]
users:
  - {name: one, certificate: {field: cn, value: agent.team-a}, tenants: [team-a], access: [write]}
  - {name: two, certificate: {field: cn, value: agent.team-a}, tenants: [team-b], access: [write]}
  - {name: three, certificate: {field: dns, value: agent.example}, tenants: [team-a], access: [read]}
  - {name: four, certificate: {field: dns, value: AGENT.example}, tenants: [team-b], access: [read]}
  - {name: five, certificate: {field: cn, value: ""}, tenants: [team-b], access: [read]}
  - {name: six, certificate: {field: serial, value: "01"}, tenants: [team-b], access: [read]}
  - {name: seven, tenants: [team-b], access: [read]}
"#,
    )
    .unwrap();
    let out = Command::new(whizard_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "users[1].certificate.value",
        "already identifies user \"one\"",
        "users[3].certificate.value",
        "already identifies user \"three\"",
        "users[4].certificate.value",
        "users[5].certificate.field",
        "users[6]",
        "password_hash, certificate, or both",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// TLS to upstreams
// ---------------------------------------------------------------------------------------------

/// A Prometheus serving TLS (web config) and requiring a client certificate from `pki`.
struct TlsBackend {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsBackend {
    async fn start(pki: &TestPki, probe_client: &CertPair) -> TlsBackend {
        let server = pki.server("backend", &["backend.internal"]);
        let dir = tempfile::Builder::new()
            .prefix("whizard-tls-backend-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("web.yml"),
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: \
                 RequireAndVerifyClientCert\n  client_ca_file: {}\n",
                p(&server.cert),
                p(&server.key),
                p(&pki.ca_cert)
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS_BIN)
            .arg("--web.enable-remote-write-receiver")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--web.config.file={}",
                p(&dir.path().join("web.yml"))
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                p(&dir.path().join("data"))
            ))
            .arg(format!(
                "--config.file={}",
                p(&dir.path().join("prometheus.yml"))
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let b = TlsBackend {
            child,
            port,
            _dir: dir,
        };
        let ca = p(&pki.ca_cert);
        let (cert, key) = (p(&probe_client.cert), p(&probe_client.key));
        let url = format!("https://127.0.0.1:{port}/-/ready");
        poll_until(Duration::from_secs(30), "TLS backend ready", || {
            let (ca, cert, key, url) = (ca.clone(), cert.clone(), key.clone(), url.clone());
            async move {
                let (code, out, _, _) =
                    curl(&["--cacert", &ca, "--cert", &cert, "--key", &key], &url);
                (code == 0 && out.ends_with("200")).then_some(())
            }
        })
        .await;
        b
    }
}

#[tokio::test]
async fn upstream_tls_with_a_client_certificate_reaches_a_tls_only_prometheus() {
    let pki = TestPki::new();
    let gw_client = pki.client("whizard-gateway", &[]);
    let backend = TlsBackend::start(&pki, &gw_client).await;
    let port = backend.port;
    let upstream_tls = format!(
        "  tls:\n    ca_file: \"{}\"\n    cert_file: \"{}\"\n    key_file: \"{}\"\n    server_name: backend.internal\n",
        p(&pki.ca_cert),
        p(&gw_client.cert),
        p(&gw_client.key)
    );
    let gw = Gateway::start(&config(
        &format!("https://127.0.0.1:{port}"),
        &format!("https://127.0.0.1:{port}/api/v1/write"),
        "",
        &upstream_tls,
    ))
    .await;

    // Writes (the gateway's reqwest client) and reads (pingora peers), over mTLS to the backend.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = remote_write_body(&[("__name__", "via_tls"), ("job", "w")], now, 7.0);
    let r = http_client()
        .post(format!("{}/api/v1/write", gw.url()))
        .header("authorization", basic(AGENT_A))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());

    // Several GETs (pooled upstream connections) and a POST form.
    for _ in 0..5 {
        let r = http_client()
            .get(format!("{}/api/v1/query?query=via_tls", gw.url()))
            .header("authorization", basic(ALICE))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert_eq!(tenants_in(&body), vec!["team-a"], "{body}");
    }
    let r = http_client()
        .post(format!("{}/api/v1/query", gw.url()))
        .header("authorization", basic(ALICE))
        .form(&[("query", "via_tls")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tenants_in(&r.text().await.unwrap()), vec!["team-a"]);

    // Without the client certificate the backend refuses the gateway: 502, not a hang.
    let no_cert = format!(
        "  tls:\n    ca_file: \"{}\"\n    server_name: backend.internal\n",
        p(&pki.ca_cert)
    );
    let gw2 = Gateway::start(&config(
        &format!("https://127.0.0.1:{port}"),
        &format!("https://127.0.0.1:{port}/api/v1/write"),
        "",
        &no_cert,
    ))
    .await;
    let r = http_client()
        .get(format!("{}/api/v1/query?query=via_tls", gw2.url()))
        .header("authorization", basic(ALICE))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());

    // insecure_skip_verify: no CA (the backend's CA is not a system root), a warning logged.
    let insecure = format!(
        "  tls:\n    cert_file: \"{}\"\n    key_file: \"{}\"\n    insecure_skip_verify: true\n",
        p(&gw_client.cert),
        p(&gw_client.key)
    );
    let gw3 = Gateway::start(&config(
        &format!("https://127.0.0.1:{port}"),
        &format!("https://127.0.0.1:{port}/api/v1/write"),
        "",
        &insecure,
    ))
    .await;
    assert!(
        gw3.logs().contains("insecure_skip_verify"),
        "{}",
        gw3.logs()
    );
    let r = http_client()
        .post(format!("{}/api/v1/query", gw3.url()))
        .header("authorization", basic(ALICE))
        .form(&[("query", "via_tls")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http_client()
        .get(format!("{}/api/v1/query?query=via_tls", gw3.url()))
        .header("authorization", basic(ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tenants_in(&r.text().await.unwrap()), vec!["team-a"]);
}

// ---------------------------------------------------------------------------------------------
// Rotation
// ---------------------------------------------------------------------------------------------

fn replace_atomically(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test]
async fn rotating_the_server_certificate_needs_no_restart_and_fails_no_request() {
    let pki = TestPki::new();
    let next_pki = TestPki::new();
    let first = pki.server("first", &[]);
    let second = next_pki.server("second", &[]);
    let backend = Backend::start().await;
    seed(&backend).await;
    // The gateway serves copies it reads from its own directory.
    let dir = tempfile::tempdir().unwrap();
    let live = CertPair {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let gw = Gateway::start(&config(
        &backend.url(),
        &backend.write_url(),
        &listen_tls(&live, ""),
        "",
    ))
    .await;
    let url = format!("{}/api/v1/query?query=seeded", gw.https_url());
    let first_der = pem_certs(&first.cert)[0].to_vec();
    let second_der = pem_certs(&second.cert)[0].to_vec();

    // A client trusting both CAs keeps a connection pool busy during the rotation.
    let pooled = Arc::new(tls_client(&[&pki.ca_cert, &next_pki.ca_cert], None));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (c, stop, ok, failed, url) = (
            pooled.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            url.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c
                    .client
                    .get(&url)
                    .header("authorization", basic(ALICE))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("request failed during rotation: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pooled.seen.lock().unwrap().first(), Some(&first_der));

    // Rotate: key first, then the certificate (a moment with a mismatched pair on disk, which
    // the reloader must ride out by keeping the old pair).
    replace_atomically(&second.key, &live.key);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replace_atomically(&second.cert, &live.cert);

    // New handshakes (fresh clients) get the new certificate without a restart.
    let pid = gw.pid();
    poll_until(
        Duration::from_secs(15),
        "the new certificate on new handshakes",
        || {
            let (url, second_der) = (url.clone(), second_der.clone());
            let cas = [pki.ca_cert.clone(), next_pki.ca_cert.clone()];
            async move {
                let fresh = tls_client(&[&cas[0], &cas[1]], None);
                let r = fresh
                    .client
                    .get(&url)
                    .header("authorization", basic(ALICE))
                    .send()
                    .await
                    .ok()?;
                (r.status() == 200 && fresh.seen.lock().unwrap().last() == Some(&second_der))
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(gw.pid(), pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during rotation"
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
    // The pool kept its connections: it did at most a handful of handshakes, all before the
    // rotation or with a valid certificate.
    let seen = pooled.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|c| c == &first_der || c == &second_der));
    assert!(seen.len() <= 6, "the pool reconnected {} times", seen.len());
    let logs = gw.logs();
    assert!(logs.contains("TLS certificate reloaded"), "{logs}");
    assert!(
        logs.contains("does not match"),
        "the mismatched pair was not reported: {logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}

// ---------------------------------------------------------------------------------------------
// Bad files
// ---------------------------------------------------------------------------------------------

fn openssl(args: &[&str], cwd: &Path) {
    let (code, out, err) = run_with_deadline(
        Command::new("openssl").args(args).current_dir(cwd),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "openssl {args:?}: {out} {err}");
}

/// A certificate for localhost signed by `pki`'s CA that expired yesterday.
fn expired_cert(pki: &TestPki) -> CertPair {
    let d = pki.dir();
    std::fs::write(
        d.join("expired.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "expired.key",
            "-out",
            "expired.csr",
            "-subj",
            "/CN=localhost",
        ],
        d,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "expired.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "expired.crt",
            "-days",
            "-1",
            "-extfile",
            "expired.ext",
        ],
        d,
    );
    CertPair {
        cert: d.join("expired.crt"),
        key: d.join("expired.key"),
    }
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_with_a_message_naming_the_file() {
    let pki = TestPki::new();
    let good = pki.server("good", &[]);
    let other = pki.server("other", &[]);
    let expired = expired_cert(&pki);
    let d = pki.dir().to_path_buf();
    let not_pem = d.join("not-pem.crt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let garbage_pem = d.join("garbage.crt");
    std::fs::write(
        &garbage_pem,
        "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let a_dir = d.join("a-directory.crt");
    std::fs::create_dir_all(&a_dir).unwrap();
    let missing = d.join("missing.crt");
    let pair = |c: &Path, k: &Path| CertPair {
        cert: c.to_path_buf(),
        key: k.to_path_buf(),
    };
    let q = "http://127.0.0.1:9";
    let w = "http://127.0.0.1:9/api/v1/write";
    let listen = |cp: &CertPair, extra: &str| config(q, w, &listen_tls(cp, extra), "");
    let upstream = |lines: &str| {
        config(
            "https://127.0.0.1:9",
            "https://127.0.0.1:9/api/v1/write",
            "",
            lines,
        )
    };

    let cases: Vec<(&str, String, PathBuf)> = vec![
        (
            "missing cert",
            listen(&pair(&missing, &good.key), ""),
            missing.clone(),
        ),
        (
            "unreadable cert (a directory)",
            listen(&pair(&a_dir, &good.key), ""),
            a_dir.clone(),
        ),
        (
            "cert not PEM",
            listen(&pair(&not_pem, &good.key), ""),
            not_pem.clone(),
        ),
        (
            "cert PEM but not X.509",
            listen(&pair(&garbage_pem, &good.key), ""),
            garbage_pem.clone(),
        ),
        (
            "key not PEM",
            listen(&pair(&good.cert, &not_pem), ""),
            not_pem.clone(),
        ),
        (
            "key of another cert",
            listen(&pair(&good.cert, &other.key), ""),
            other.key.clone(),
        ),
        ("expired cert", listen(&expired, ""), expired.cert.clone()),
        (
            "client CA not PEM",
            listen(&good, &format!("    client_ca_file: \"{}\"\n", p(&not_pem))),
            not_pem.clone(),
        ),
        (
            "upstream CA not PEM",
            upstream(&format!("  tls:\n    ca_file: \"{}\"\n", p(&not_pem))),
            not_pem.clone(),
        ),
        (
            "upstream client key of another cert",
            upstream(&format!(
                "  tls:\n    cert_file: \"{}\"\n    key_file: \"{}\"\n",
                p(&good.cert),
                p(&other.key)
            )),
            other.key.clone(),
        ),
    ];
    for (what, cfg, file) in &cases {
        let (code, stderr) = Gateway::try_start_expect_failure(cfg).await;
        assert_ne!(code, 0, "{what}: exit code 0; stderr:\n{stderr}");
        assert!(
            code > 0,
            "{what}: killed by a signal ({code}); stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(&p(file)),
            "{what}: the message does not name {}:\n{stderr}",
            p(file)
        );
        assert!(!stderr.contains("panicked"), "{what}: panic:\n{stderr}");
    }
    // The expired case says so, and how to allow it.
    let (_, stderr) = Gateway::try_start_expect_failure(&listen(&expired, "")).await;
    assert!(
        stderr.contains("expired") && stderr.contains("allow_expired"),
        "{stderr}"
    );

    // allow_expired: true serves it (a client that checks dates refuses it, which is its call).
    let gw = Gateway::start(&listen(&expired, "    allow_expired: true\n")).await;
    let ca = p(&pki.ca_cert);
    let (code, _, _, err) = curl(&["--cacert", &ca], &format!("{}/-/healthy", gw.https_url()));
    assert_ne!(code, 0);
    assert!(err.contains("expired"), "{err}");
    let (code, out, _, err) = curl(&["-k"], &format!("{}/-/healthy", gw.https_url()));
    assert_eq!((code, out.as_str()), (0, "2 200"), "{err}");
}
