//! The reconciler's metrics and health endpoint (`--metrics-addr`): `GET /metrics` (Prometheus
//! text format of the reconciler's registry) and `GET /healthz` (`ok` while the process runs).
//!
//! A deliberately tiny HTTP/1.1 responder on tokio (one request per connection, bounded
//! header size and read time): two fixed routes do not justify another server stack, and the
//! gateway's pingora server is built for proxying, not for this.

use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until the listener fails; each connection gets its own task.
pub async fn serve(listener: TcpListener, registry: Registry) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Per-connection accept errors (e.g. too many open files) are transient.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &registry).await {
                tracing::debug!(error = %e, "metrics listener: connection");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok::<_, std::io::Error>(Some(i));
            }
            if buf.len() > MAX_REQUEST_HEAD {
                return Ok(None);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or(Ok(None))?;
    let (status, ctype, body) = match head_end {
        None => ("400 Bad Request", "text/plain", b"bad request\n".to_vec()),
        Some(end) => route(&String::from_utf8_lossy(&buf[..end]), registry),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

fn route(head: &str, registry: &Registry) -> (&'static str, &'static str, Vec<u8>) {
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let mut out = Vec::new();
            // Encoding well-formed families into a Vec cannot fail.
            let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", out)
        }
        ("GET" | "HEAD", "/healthz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"method not allowed\n".to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn metrics_and_healthz_over_http() {
        let registry = Registry::new();
        let m = Metrics::new(&registry);
        m.reconciles
            .with_label_values(&["Service", "success"])
            .inc();
        m.leader.set(1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, registry));
        // reqwest is built without a default provider: the process installs ring (main).
        let _ = rustls::crypto::CryptoProvider::install_default(
            rustls::crypto::ring::default_provider(),
        );
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("http://{addr}{path}")).send();
        let r = get("/metrics").await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let body = r.text().await.unwrap();
        assert!(
            body.contains(
                r#"whizard_reconciler_reconciliations_total{kind="Service",result="success"} 1"#
            ),
            "{body}"
        );
        assert!(body.contains("whizard_reconciler_leader 1"), "{body}");
        let r = get("/healthz").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok\n");
        let r = get("/other").await.unwrap();
        assert_eq!(r.status(), 404);
        let r = client
            .post(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        server.abort();
    }

    #[tokio::test]
    async fn oversized_or_truncated_requests_get_400() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Registry::new()));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&vec![b'a'; MAX_REQUEST_HEAD + 2048])
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        server.abort();
    }
}
