//! The gateway presents `oidc[].tls.cert_file`/`key_file` to the identity provider (README
//! "Trusting the provider"): mutual TLS to a provider that requires client certificates.
//!
//! The provider is the real `oidc-provider` (tests/node/idp.mjs) behind Node's HTTPS server with
//! `requestCert` + `rejectUnauthorized` against a client CA of its own ([`TestPki`]); its server
//! certificate comes from another throw-away CA, given to the gateway as `oidc[].tls.ca_file`.
//! Three gateways (the real binary) share that provider and differ only in their client
//! certificate:
//! - the one the provider's client CA issued → discovery and JWKS succeed: a bearer token of
//!   the provider authenticates (200 with the token's tenant) and `/oauth2/login` redirects to
//!   the provider;
//! - none → the provider ends every handshake; the token's keys cannot be fetched: 503 (fail
//!   closed: never 200, nothing forwarded), and `/oauth2/login` is 503;
//! - one from another CA, same subject → the same.
//!
//! The provider's own log says why: `tls-client CN=...` for the accepted handshake, and
//! `tls-refused` with "no certificate" or a verification error for the other two.
//!
//! Needs `node`, `openssl`, `prometheus` and `scripts/install-test-deps.sh` (node_modules in
//! tests/node). Run: `cargo test --test oidc_mtls`.

mod common;

use common::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

const CLIENT_CN: &str = "whizard-gateway";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn path_of(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// A reqwest client trusting only `ca`, presenting `client`.
fn mtls_client(ca: &Path, client: &CertPair) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&client.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(&client.key).unwrap())
        .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .no_proxy()
        .timeout(scaled(Duration::from_secs(20)))
        .build()
        .unwrap()
}

/// A gateway in front of `backend` with one provider, `issuer`, trusted through `ca` and
/// called with `client` (none: no `cert_file`/`key_file`).
fn gateway_config(backend: &Backend, issuer: &str, ca: &Path, client: Option<&CertPair>) -> String {
    let client_lines = client
        .map(|c| {
            format!(
                "\n      cert_file: \"{}\"\n      key_file: \"{}\"",
                path_of(&c.cert),
                path_of(&c.key)
            )
        })
        .unwrap_or_default();
    format!(
        r#"{head}oidc:
{provider}    tls:
      ca_file: "{ca}"{client_lines}
ui:
  enabled: true
  cookie_secret: "oidc-mtls-cookie-secret-0123456789abcdef"
"#,
        head = config_head(
            &backend.url(),
            &backend.write_url(),
            "",
            &["team-a", "team-b"]
        ),
        provider = oidc_provider_lines(issuer, "scope", true),
        ca = path_of(ca),
    )
}

/// `GET /api/v1/query?query=up` with the bearer token: (status, tenants, body).
async fn query(gw: &Gateway, token: &str) -> (u16, Vec<String>, String) {
    let resp = no_redirect_client()
        .get(format!("{}/api/v1/query?query=up", gw.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("gateway");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut tenants: Vec<String> = v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["metric"]["tenant_id"].as_str().unwrap_or("<none>").into())
                .collect()
        })
        .unwrap_or_default();
    tenants.sort();
    tenants.dedup();
    (status, tenants, body)
}

/// `GET /oauth2/login`: (status, Location).
async fn login(gw: &Gateway) -> (u16, String) {
    let resp = no_redirect_client()
        .get(format!("{}/oauth2/login?rd=%2Fgraph", gw.url()))
        .send()
        .await
        .expect("gateway");
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (resp.status().as_u16(), loc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_presents_its_client_certificate_to_the_provider_and_fails_closed_without() {
    init();
    // The provider's server certificate (given to the gateways as ca_file) and the CA whose
    // client certificates it accepts are different CAs; a third CA issues the impostor.
    let server_pki = TestPki::new();
    let client_pki = TestPki::new();
    let other_pki = TestPki::new();
    let idp_cert = server_pki.server("idp", &[]);
    let good = client_pki.client(CLIENT_CN, &[]);
    // The test's own client: accepted by the provider, told apart from the gateway in its log.
    let tester = client_pki.client("test-client", &[]);
    let foreign = other_pki.client(CLIENT_CN, &[]);

    let backend = Backend::start().await;
    // Series of team-a and team-b in the backend, so a 200 shows whose data came back.
    for (tenant, v) in [("team-a", 1.0), ("team-b", 2.0)] {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let body = whizard::remote_write::compress(&prost::Message::encode_to_vec(
            &prompb::WriteRequest {
                timeseries: vec![prompb::TimeSeries {
                    labels: vec![
                        prompb::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        prompb::Label {
                            name: "tenant_id".into(),
                            value: tenant.into(),
                        },
                    ],
                    samples: vec![prompb::Sample {
                        value: v,
                        timestamp: ts,
                    }],
                }],
            },
        ))
        .unwrap();
        let r = new_http_client()
            .post(backend.write_url())
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seed {tenant}: {}", r.status());
    }

    // The provider's port must be in the gateways' configs: pick it, start the gateways, then
    // the provider with their callback URLs.
    let mut idp = Idp::new(&[
        ("IDP_TLS_CERT", &path_of(&idp_cert.cert)),
        ("IDP_TLS_KEY", &path_of(&idp_cert.key)),
        ("IDP_TLS_CLIENT_CA", &path_of(&client_pki.ca_cert)),
    ])
    .https();
    let issuer = idp.issuer();
    let configs = [Some(&good), None, Some(&foreign)]
        .map(|client| gateway_config(&backend, &issuer, &server_pki.ca_cert, client));
    let (with_cert, without, with_foreign) = tokio::join!(
        Gateway::start(&configs[0]),
        Gateway::start(&configs[1]),
        Gateway::start(&configs[2]),
    );
    idp.start_for(&[&with_cert, &without, &with_foreign], &[])
        .await;
    assert_eq!(idp.issuer(), issuer);

    // A token of the provider (the test is a client with a certificate of the client CA).
    let idp_client = mtls_client(&server_pki.ca_cert, &tester);
    let resp = idp_client
        .post(format!("{issuer}/token"))
        .basic_auth("reader-a", Some("reader-a-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token endpoint over mTLS");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "token: {status} {body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    // Without a client certificate the test itself is refused by the provider too.
    let plain = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates({
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(&server_pki.ca_cert).unwrap() {
                    roots.add(c.unwrap()).unwrap();
                }
                roots
            })
            .with_no_client_auth(),
        )
        .no_proxy()
        // A refused handshake must end in an error, not a wait: one CI run never got past
        // this request while it had no bound (no socket or timer left to wake it).
        .timeout(scaled(Duration::from_secs(20)))
        .build()
        .unwrap();
    let refused = plain
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .expect_err("the provider answered a client without a certificate");
    assert!(
        !refused.is_timeout(),
        "the provider neither answered nor refused a client without a certificate: {refused}"
    );
    let no_cert_refusals = |log: &str| {
        log.lines()
            .filter(|l| {
                l.starts_with("tls-refused") && l.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE")
            })
            .count()
    };
    let refused_before = poll_until(
        Duration::from_secs(10),
        "the provider to log the refused test client",
        || async { Some(no_cert_refusals(&idp.log())).filter(|n| *n > 0) },
    )
    .await;

    // With the certificate: the gateway fetches discovery and keys, the token authenticates.
    let (status, tenants, body) = poll_until(
        Duration::from_secs(60),
        "the gateway with the client certificate to accept the token",
        || async {
            let r = query(&with_cert, &token).await;
            assert!(r.0 == 200 || r.0 == 503, "with the certificate: {r:?}");
            (r.0 == 200).then_some(r)
        },
    )
    .await;
    assert_eq!(
        (status, tenants.as_slice()),
        (200, ["team-a".to_string()].as_slice()),
        "{body}"
    );
    let (status, loc) = login(&with_cert).await;
    assert_eq!(status, 302, "{loc}");
    assert!(loc.starts_with(&format!("{issuer}/auth?")), "{loc}");

    // Without a certificate, or with a foreign one: fail closed, every time.
    for (name, gw) in [("no certificate", &without), ("foreign CA", &with_foreign)] {
        for attempt in 0..3 {
            let (status, _, body) = query(gw, &token).await;
            assert_eq!(status, 503, "{name}, attempt {attempt}: {body}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (status, loc) = login(gw).await;
        assert_eq!(status, 503, "{name}: /oauth2/login {loc}");
        let unavailable = gw
            .metric(
                "whizard_auth_failures_total",
                &[("method", "bearer"), ("reason", "unavailable")],
            )
            .await
            .unwrap_or(0.0);
        assert!(unavailable >= 3.0, "{name}: unavailable = {unavailable}");
    }

    // The provider's side: the good gateway's certificate accepted; the gateway without one
    // refused for that (more such refusals than the test client's own); the foreign one
    // refused because it does not verify. No connection without a certificate accepted.
    let log = idp.log();
    assert!(
        log.contains(&format!("tls-client CN={CLIENT_CN}")),
        "the gateway's certificate was not accepted:\n{log}"
    );
    assert!(
        !log.contains("tls-client CN=<none>"),
        "a connection without a certificate was accepted:\n{log}"
    );
    assert!(
        no_cert_refusals(&log) > refused_before,
        "no handshake of the gateway without a certificate refused:\n{log}"
    );
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("tls-refused"))
        .collect();
    assert!(
        refused.iter().any(|l| l.contains("authorizationError=")),
        "no handshake refused for the foreign certificate: {refused:#?}"
    );
    eprintln!("provider handshake refusals:\n{}", refused.join("\n"));
}
