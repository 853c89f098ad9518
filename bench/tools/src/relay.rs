//! `relay`: the floor of the read benchmark, not a proxy anyone should run.
//!
//! It does the gateway's read job in the least work tokio allows: one current-thread runtime,
//! one upstream connection per client connection (no pool), the request head parsed with
//! httparse, the credential compared as bytes (no hash), the tenant header set and the
//! credentials dropped, and a Content-Length response copied back. No routing, no limits, no
//! metrics, no logs, no request bodies, no chunked answers. Whatever whizard, nginx or vmauth
//! spend per request above this row is the price of their HTTP machinery, not of the sockets.
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the relay needs to know, shared by every connection.
struct Job {
    upstream: String,
    /// The whole `Authorization` value a client must send.
    authorization: Vec<u8>,
    tenant_header: String,
    tenant: String,
}

const MAX_HEAD: usize = 16 * 1024;
const MAX_RESPONSE: usize = 1 << 20;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads from `from` into `buf` until `complete` finds a whole message; `None`: closed first.
async fn read_until<T>(
    from: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
    mut complete: impl FnMut(&[u8]) -> io::Result<Option<T>>,
) -> io::Result<Option<T>> {
    buf.clear();
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= limit {
                return Err(invalid("message too large"));
            }
            buf.reserve(buf.len().max(4096));
        }
        if from.read_buf(buf).await? == 0 {
            return Ok(None);
        }
        if let Some(done) = complete(buf)? {
            return Ok(Some(done));
        }
    }
}

/// The upstream request for a complete client head, or an error when the head is refused.
fn upstream_request(job: &Job, head: &[u8], out: &mut Vec<u8>) -> io::Result<Option<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(head).map_err(|_| invalid("bad request"))?
    else {
        return Ok(None);
    };
    if len != head.len() || req.method != Some("GET") {
        return Err(invalid("only GET without a body or pipelining"));
    }
    let authorized = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("authorization") && h.value == job.authorization.as_slice()
    });
    if !authorized {
        return Err(invalid("not authorized"));
    }
    out.clear();
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let dropped = ["authorization", "connection", &job.tenant_header];
        if dropped.iter().any(|d| h.name.eq_ignore_ascii_case(d)) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(job.tenant_header.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(job.tenant.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    Ok(Some(()))
}

/// The length of a complete Content-Length response at the start of `buf`.
fn response_length(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = resp.parse(buf).map_err(|_| invalid("bad response"))?
    else {
        return Ok(None);
    };
    let body = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
        .ok_or_else(|| invalid("only Content-Length responses"))?;
    Ok((buf.len() >= head + body).then_some(head + body))
}

async fn serve(job: &Job, mut client: TcpStream) -> io::Result<()> {
    let mut upstream = TcpStream::connect(&job.upstream).await?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (mut head, mut request, mut response) = (
        Vec::with_capacity(4096),
        Vec::with_capacity(4096),
        Vec::with_capacity(4096),
    );
    loop {
        let next = read_until(&mut client, &mut head, MAX_HEAD, |h| {
            upstream_request(job, h, &mut request)
        });
        if next.await?.is_none() {
            return Ok(());
        }
        upstream.write_all(&request).await?;
        let Some(len) =
            read_until(&mut upstream, &mut response, MAX_RESPONSE, response_length).await?
        else {
            return Err(invalid("upstream closed"));
        };
        client.write_all(&response[..len]).await?;
    }
}

/// `relay LISTEN UPSTREAM USER:PASS TENANT_HEADER TENANT`: serves until killed.
pub fn run(listen: &str, upstream: &str, credentials: &str, tenant_header: &str, tenant: &str) {
    use base64::Engine;
    let job: &'static Job = Box::leak(Box::new(Job {
        upstream: upstream.to_string(),
        authorization: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
        .into_bytes(),
        tenant_header: tenant_header.to_string(),
        tenant: tenant.to_string(),
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(listen).await.expect("relay listen address");
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    tokio::spawn(async move {
                        if let Err(e) = serve(job, client).await {
                            if e.kind() == io::ErrorKind::InvalidData {
                                eprintln!("relay: {e}");
                            }
                        }
                    });
                }
                Err(e) => eprintln!("relay: accept: {e}"),
            }
        }
    });
}
