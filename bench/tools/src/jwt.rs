//! The OpenID provider of the JWT microbenchmarks: fixed test keys, a discovery document and a
//! JWKS served over plain HTTP on loopback, and tokens signed with those keys. The gateway's
//! verifier gets its keys exactly as in production (discovery → `jwks_uri` → JWKS over reqwest),
//! so the benchmark measures the real code path with the real key types.
//!
//! The private keys are fixed: runs stay comparable, and nothing has to generate an RSA key (slow,
//! and another crate). Their public JWKs are derived from them at start, so the two cannot
//! disagree. They were made with `openssl genrsa -traditional 2048` (PKCS#1, what
//! `EncodingKey::from_rsa_der` takes) and `openssl genpkey -algorithm EC -pkeyopt
//! ec_paramgen_curve:P-256` (PKCS#8, what `EncodingKey::from_ec_der` takes). They are published
//! test keys: never trust them for anything.
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use whizard::config::OidcProvider;

/// RSA 2048, PKCS#1.
const RSA_PRIVATE_KEY_PEM: &str = r"-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAm3VWeVmd3OH2khRP8WtHVr7+nmlAfVLxFLC47uXrAfNl+5G+
RmJSryz/3wEM5SPMcywlmoeUKNH/zqgVX93ILApP5GCm/E4xcwqmLmOV2gXq4xb/
Sgp7PbkW9oz5i3fR/DnrOZ8MGpSLSXuxgziH3ahE0HSTC4zuuheov+Xtxs9dxHJo
ocAc0R3G87pyin9aRJzV7QySKfQLfbcYI+ZHT6qFpzLB3kjcyV/cdYh2I1SxRaup
MjmXp6obrnkJrMxv2oEaAavlitO4ZIKWpHHnJoAmj+2qvd7l2jH5isBbj1IYvoA4
x4ID5imQVUDKr+KS9FXG7Wv8Ios3k9uvu+mPFQIDAQABAoIBAASWOeUOgBtMbDaR
QjeV7rNikMeb1ueHJoCfdYX+Hr+sKjaeZCLNSoRUlwjUTf9Y8AT3yPT3PHnpbbtU
accJl6Q3A4io9vfHKUb+gMPOj1U6Kxz/1lDUaWmNjub/wjOW8IAQEP6nkKmcQJ8g
5JL41+v7Po+utNqz/7bHtUj3WPbJ8BsWFWXvm3Xtgry2Uc14L/Q1MicSpNxLxNN1
pcCWHxf9+U+77PDMyJiYoApITcd68kUIUgeI4inaT2UlmRpGqknNWwQ2kjVwnpet
prLgIYnn7rbbVQ+FwTP3kN6ArsNkBJGHO05qR/TcJoX9dU5FPH2lQSpHf/SGKtov
k+cWChECgYEA0pmngqYjkSHoPIewaQV/uHVF/rsANB8Yb8gfsfhyQdeQn5pKzw36
frQ+iU2/vm01yCOUe9r2CE+unAVxWqLMBhNeaKHnRR++c8S9R6mWHs+/Nxnye5sm
vjzOe7kRdEqAGIHI09h66skU9J+ouySW8mnY1csaiJGKvy1IDtDYKJECgYEAvPiV
CVtX0gpYOo542IVCi+iT2TA2WnKMqyxpDHaeyH5AymVZX8/WMwsU8BBsdQjF9DbU
rQuuP+bmrQYWRmzKacNmbMveAjN+FDXTjBpRqemhUh6S6gc9YCYtopYKEOthxcfj
vkSmIT3cfEudBiWx0Q8GgF75O/9JF916HhmMoEUCgYEAkZhg0lYBqMiEQbSdJT4D
+oY5Cc5GacJFpqH4J5XXh+V7upt0tIi5cPczdMEnmoLt95uBf8704PIViQ/KOhrq
ahjh3/xuYr97b5XINc7sVgjR7Uom9YVh14s6RRbBFmCbBlZTfQHgmIjD0ArBIAA/
yv+aRNPRWDEmdtzbQELp7cECgYBCZYlgL0MNHutfL74QPcpjBEYmksUWRJdecY07
ftZNlebH9pJPkuQtLSCfNPYWrQ14wGc7ohYIh+XXN4NOHV2Fic2MPplz5onPKhZ5
bKny7I7tHqb6Ka8MAH4aWWOSDFJfPturd81zcpvs5Fh413fB/+iF5FjoFsuk4gHN
X6bEjQKBgQCnlfVEaNQIQWzvzaViq9gCsbTgBT4yv0eA+KHlumCl6t2b414rilWX
jcUAXPr9yPgqFxLEF3xU6aKbO2U9IVztUcQvIbSABpQYRSWU3UrmA4pa0hnin43x
zA9YFjcW9CzyytOHNtdn2ezXinPKp8SMMh5pOBWgJaf8IqGpyFUtDg==
-----END RSA PRIVATE KEY-----
";

/// EC P-256, PKCS#8.
const EC_PRIVATE_KEY_PEM: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAK+N1f5kqENORtBn
cgGRzwP+IMRBYD9w3S4R0Me+qlKhRANCAATxA1pwhOZ8x+zUrDijmuYbSGcfG6bj
+7YfVzwsyUwZZAbPeWPoKZ4dE0359imGkmS6WkuoKm61+c1BBJKzTdB8
-----END PRIVATE KEY-----
";

const RSA_KID: &str = "bench-rs256";
const EC_KID: &str = "bench-es256";
pub const AUDIENCE: &str = "whizard";

/// The DER inside a PEM: the base64 between the armor lines.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("the embedded test key is valid base64")
}

/// A running provider: its issuer URL and signing keys.
pub struct Provider {
    issuer: String,
    rsa: EncodingKey,
    ec: EncodingKey,
}

impl Provider {
    /// Binds 127.0.0.1:0 and serves the discovery document and the JWKS until the runtime ends.
    /// Must run inside a tokio runtime.
    pub async fn serve() -> Provider {
        // ring for everything, as in the gateway: rustls (reqwest has no provider of its own)
        // and jsonwebtoken (no backend of its own), before the first key is used.
        whizard::gateway::tls::install_crypto_provider();
        let rsa = EncodingKey::from_rsa_der(&pem_der(RSA_PRIVATE_KEY_PEM));
        let ec = EncodingKey::from_ec_der(&pem_der(EC_PRIVATE_KEY_PEM));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the benchmark OpenID provider on 127.0.0.1:0");
        let addr = listener.local_addr().expect("provider address");
        let issuer = format!("http://{addr}");
        let discovery = serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
        });
        let jwks = JwkSet {
            keys: vec![
                public_jwk(&rsa, Algorithm::RS256, RSA_KID),
                public_jwk(&ec, Algorithm::ES256, EC_KID),
            ],
        };
        let documents = Arc::new(Documents {
            discovery: serde_json::to_vec(&discovery).expect("discovery JSON"),
            jwks: serde_json::to_vec(&jwks).expect("JWKS JSON"),
        });
        tokio::spawn(async move {
            loop {
                // An accept error ends the provider (retrying at once would spin on the
                // single-threaded runtime); the key fetch then fails with a clear message.
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(answer(stream, documents.clone()));
            }
        });
        Provider { issuer, rsa, ec }
    }

    /// whizard's bearer-token verifier for this provider, its keys already fetched.
    pub async fn verifier(&self) -> whizard::auth::oidc::OidcAuth {
        // reqwest is built with rustls but no crypto provider of its own; the gateway installs ring.
        whizard::gateway::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("build the reqwest client");
        let oidc = whizard::auth::oidc::OidcAuth::new(&[self.config()], client);
        oidc.issuers()[0]
            .refresh()
            .await
            .expect("fetch the keys of the benchmark provider");
        oidc
    }

    /// The provider as whizard's config would describe it.
    pub fn config(&self) -> OidcProvider {
        OidcProvider {
            issuer: self.issuer.clone(),
            audience: AUDIENCE.into(),
            tenant_claim: "tenant".into(),
            access_claim: "scope".into(),
            groups_claim: None,
            group_tenants: BTreeMap::new(),
            client_id: None,
            client_secret: None,
            redirect_url: None,
        }
    }

    /// A valid access token signed with `alg` (RS256 or ES256), valid for an hour, with the
    /// claims of a typical machine client: two tenants, read and write.
    pub fn token(&self, alg: Algorithm) -> String {
        let (key, kid) = match alg {
            Algorithm::RS256 => (&self.rsa, RSA_KID),
            Algorithm::ES256 => (&self.ec, EC_KID),
            other => panic!("no benchmark key for {other:?}"),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let claims = serde_json::json!({
            "iss": self.issuer,
            "aud": [AUDIENCE, "account"],
            "sub": "2f6c1e0a-8d3b-4c55-9a57-1b0e6a7d3c42",
            "azp": "grafana-agent",
            "preferred_username": "grafana-agent",
            "tenant": ["team-a", "team-b"],
            "scope": "openid read write",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": "0b7e6f0c-3f3e-4d8e-9a43-5d3c2b1a0f9e",
        });
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).expect("sign a benchmark token")
    }
}

/// The public JWK of a private key, as a provider publishes it (`kid`, `use: sig`, `alg`).
fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).expect("public JWK of a benchmark key");
    jwk.common.key_id = Some(kid.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

struct Documents {
    discovery: Vec<u8>,
    jwks: Vec<u8>,
}

/// Answers one HTTP/1.1 request and closes the connection: reqwest then opens a new one for the
/// next document, which keeps this server free of keep-alive and pipelining logic.
async fn answer(mut stream: TcpStream, documents: Arc<Documents>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    // Only the request line matters; GET requests have no body.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > 64 * 1024 {
            return;
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let path = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let (status, body): (&str, &[u8]) = match path {
        b"/.well-known/openid-configuration" => ("200 OK", &documents.discovery),
        b"/jwks" => ("200 OK", &documents.jwks),
        _ => ("404 Not Found", b"{}"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}
