//! The short way (`server.short_way`, `crates/gateway/src/short_way/mod.rs`) against pingora's general engine:
//! one corpus of raw requests and raw upstream answers goes through two gateways that differ
//! only in that switch, and what the upstream receives and what the client receives must be
//! the same bytes (the `Date` and request-id values masked), including whether the client's
//! connection is kept open afterwards. The same again over HTTPS with HTTP/2, where the short
//! way serves each stream's GET: what the upstream receives must be the same bytes, and what
//! the client receives the same answer (status, fields, body).

mod common;
mod fixture;

use base64::Engine;
use common::*;
use fixture::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the raw upstream answers the next requests.
#[derive(Clone)]
struct Answer {
    bytes: Vec<u8>,
    /// Close the connection after writing `bytes`.
    close: bool,
}

#[derive(Default)]
struct UpstreamLog {
    /// Every request's raw bytes, in arrival order.
    received: Vec<Vec<u8>>,
    answer: Option<Answer>,
}

/// A raw HTTP/1.1 upstream: records request bytes exactly as they arrive and answers with
/// the bytes it is given, so that both ways meet the same answer byte for byte.
struct RawUpstream {
    port: u16,
    log: Arc<Mutex<UpstreamLog>>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(UpstreamLog::default()));
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, shared.clone()));
            }
        });
        RawUpstream { port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, answer: Answer) {
        let mut log = self.log.lock().unwrap();
        log.answer = Some(answer);
        log.received.clear();
    }

    /// What it received since the last [`RawUpstream::set`], each request [`normalized`].
    fn normalized(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let port = Some(self.port);
        log.received.iter().map(|r| normalized(r, port)).collect()
    }
}

async fn serve(mut conn: TcpStream, log: Arc<Mutex<UpstreamLog>>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        // One request: the head, then a sized or chunked body.
        let end = loop {
            if let Some(end) = request_end(&pending) {
                break end;
            }
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let request: Vec<u8> = pending.drain(..end).collect();
        let answer = {
            let mut log = log.lock().unwrap();
            log.received.push(request);
            log.answer.clone()
        };
        let Some(answer) = answer else { return };
        if conn.write_all(&answer.bytes).await.is_err() || answer.close {
            return;
        }
    }
}

/// Where the head of the first message in `buf` ends, and that head lower-cased.
fn head_of(buf: &[u8]) -> Option<(usize, String)> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((
        head,
        String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase(),
    ))
}

/// Where the message whose head (`text`) ends at `head` in `buf` ends, by its body's framing:
/// chunked, else `content-length` (absent: `no_length`; None: read on, to the close).
fn body_end(buf: &[u8], head: usize, text: &str, no_length: Option<usize>) -> Option<usize> {
    if text.contains("\r\ntransfer-encoding: chunked") {
        let rest = &buf[head..];
        // The last chunk, then an empty trailer section or trailer fields.
        let last = rest.windows(5).position(|w| w == b"0\r\n\r\n")? + 5;
        return Some(head + last);
    }
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .or(no_length)?;
    (buf.len() >= head + length).then_some(head + length)
}

/// Where the first complete request in `buf` ends.
fn request_end(buf: &[u8]) -> Option<usize> {
    let (head, text) = head_of(buf)?;
    body_end(buf, head, &text, Some(0))
}

/// What a client saw on one connection: the answer's bytes, then whether the connection
/// stayed open for (and answered) a second, plain request.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    answer: String,
    then: String,
}

const DEADLINE: Duration = Duration::from_secs(10);

/// Reads one answer: its bytes up to the end its framing gives, or up to the close.
async fn read_answer(
    conn: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
    head: bool,
) -> (Vec<u8>, bool) {
    let mut buf = [0u8; 16384];
    loop {
        if let Some(end) = answer_end(pending, head) {
            return (pending.drain(..end).collect(), false);
        }
        let n = match tokio::time::timeout(DEADLINE, conn.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!(
                "no complete answer within {DEADLINE:?}: {:?}",
                String::from_utf8_lossy(pending)
            ),
        };
        if n == 0 {
            return (std::mem::take(pending), true);
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Where the first complete answer in `buf` ends, by its framing (None: read on, to the
/// close); `to_head`: it answers a HEAD request.
fn answer_end(buf: &[u8], to_head: bool) -> Option<usize> {
    let (head, text) = head_of(buf)?;
    let status: u16 = text.get(9..12)?.parse().ok()?;
    if to_head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Some(head);
    }
    body_end(buf, head, &text, None)
}

/// A message in a form where equal HTTP semantics give equal text: field names lower-cased,
/// fields sorted by name (the order among one name's fields kept), a chunked body decoded
/// (chunk boundaries and the case of the size's hex digits are not meaning), and the values
/// that differ per request or per upstream port masked. Bytes that do not parse as a message
/// are kept as they are.
fn normalized(bytes: &[u8], upstream_port: Option<u16>) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = match upstream_port {
        Some(port) => text.replace(&format!("127.0.0.1:{port}"), "<upstream>"),
        None => text.into_owned(),
    };
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return text;
    };
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    let mut fields: Vec<(String, String)> = lines
        .map(|line| match line.split_once(':') {
            Some((name, value)) => {
                let name = name.to_ascii_lowercase();
                let value = match name.as_str() {
                    "date" | "x-request-id" => "<masked>".to_string(),
                    _ => value.trim().to_string(),
                };
                (name, value)
            }
            None => (line.to_string(), String::new()),
        })
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let chunked = fields
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunked(body).unwrap_or_else(|| format!("<bad chunks> {body}"))
    } else {
        body.to_string()
    };
    let fields: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    format!("{start}\n{}\n\n{body}", fields.join("\n"))
}

/// The data and trailer fields of a chunked body.
fn dechunked(mut rest: &str) -> Option<String> {
    let mut data = String::new();
    loop {
        let (line, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(format!("{data}\n<trailers> {}", after.trim_end()));
        }
        data.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

fn authorization() -> String {
    let creds =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ALICE.0, ALICE.1));
    format!("Basic {creds}")
}

/// A plain read as the second request on a connection.
fn follow_up() -> Vec<u8> {
    format!(
        "GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        authorization()
    )
    .into_bytes()
}

/// A client's connection to a gateway: plain TCP or TLS.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// How the test's client connects: to the plain listener, or over TLS (trusting `ca`).
#[derive(Clone)]
enum Dial {
    Plain,
    Tls(Arc<rustls::ClientConfig>),
}

impl Dial {
    fn tls(ca: &std::path::Path) -> Dial {
        Dial::Tls(tls_client_config(ca))
    }

    async fn connect(&self, gw: &Gateway) -> Box<dyn Connection> {
        match self {
            Dial::Plain => Box::new(
                TcpStream::connect(("127.0.0.1", gw.http_port()))
                    .await
                    .unwrap(),
            ),
            Dial::Tls(config) => {
                let tcp = TcpStream::connect(("127.0.0.1", gw.https_port()))
                    .await
                    .unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(connector.connect(name, tcp).await.unwrap())
            }
        }
    }
}

async fn exchange(dial: &Dial, gw: &Gateway, request: &[u8]) -> Seen {
    let mut conn = dial.connect(gw).await;
    conn.write_all(request).await.unwrap();
    let mut pending = Vec::new();
    let (answer, closed) = read_answer(&mut conn, &mut pending, request.starts_with(b"HEAD")).await;
    let then = if closed || conn.write_all(&follow_up()).await.is_err() {
        "closed".to_string()
    } else {
        match read_answer(&mut conn, &mut pending, false).await {
            (bytes, _) if bytes.is_empty() => "closed".to_string(),
            (bytes, _) => normalized(&bytes, None),
        }
    };
    Seen {
        answer: normalized(&answer, None),
        then,
    }
}

fn sized(status: &str, headers: &str, body: &str) -> Answer {
    Answer {
        bytes: format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        close: false,
    }
}

fn raw(bytes: &str, close: bool) -> Answer {
    Answer {
        bytes: bytes.as_bytes().to_vec(),
        close,
    }
}

const JSON: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

fn answers() -> Vec<(&'static str, Answer)> {
    vec![
        (
            "sized json",
            sized("200 OK", "Content-Type: application/json\r\n", JSON),
        ),
        (
            "chunked",
            raw(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n",
                false,
            ),
        ),
        (
            "chunked with extension and trailer",
            raw(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n",
                false,
            ),
        ),
        (
            "no length, then close",
            raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", true),
        ),
        ("204", raw("HTTP/1.1 204 No Content\r\n\r\n", false)),
        (
            "connection close from the upstream",
            sized("200 OK", "Connection: close\r\n", JSON),
        ),
        (
            "hop-by-hop fields",
            sized(
                "200 OK",
                "Connection: x-private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-Kept: yes\r\n",
                JSON,
            ),
        ),
        (
            "500",
            sized("500 Internal Server Error", "Content-Type: text/plain\r\n", "boom"),
        ),
        (
            "odd case and duplicate fields",
            sized(
                "200 OK",
                "cOnTeNt-TyPe: application/json\r\nX-Dup: 1\r\nX-Dup: 2\r\nx-dup: 3\r\n",
                JSON,
            ),
        ),
        (
            "length and chunked together",
            raw(
                "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                false,
            ),
        ),
        ("closes without answering", raw("", true)),
        (
            "304",
            raw("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false),
        ),
        (
            "bad status line",
            raw("HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", true),
        ),
    ]
}

fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let auth = authorization();
    let get = |target: &str, fields: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n{fields}\r\n")
            .into_bytes()
    };
    vec![
        ("plain", get("/api/v1/query?query=up", "")),
        (
            "odd field case and spaces",
            format!("GET /api/v1/query?query=up HTTP/1.1\r\nhOsT:   gw  \r\naUtHoRiZaTiOn:  {auth}  \r\n\r\n")
                .into_bytes(),
        ),
        (
            "tenant headers sent by the client",
            get(
                "/api/v1/query?query=up",
                "THANOS-TENANT: team-b\r\nX-Scope-OrgID: team-b\r\n",
            ),
        ),
        (
            "client hop-by-hop fields",
            get(
                "/api/v1/query?query=up",
                "Connection: keep-alive, x-drop\r\nX-Drop: 1\r\nTE: trailers\r\nKeep-Alive: 5\r\n",
            ),
        ),
        (
            "other client fields",
            get(
                "/api/v1/query?query=up",
                "X-Forwarded-For: 10.0.0.1\r\nCookie: a=b\r\nAccept-Encoding: gzip\r\nUser-Agent: grafana\r\nAccept: application/json\r\n",
            ),
        ),
        (
            "percent-encoded selector",
            get("/api/v1/query?query=up%7Bjob%3D%22a%22%7D&time=1", ""),
        ),
        (
            "duplicate query parameter",
            get("/api/v1/query?query=up&query=sum(up)", ""),
        ),
        ("dot segments", get("/api/v1/../v1/query?query=up", "")),
        ("fragment", get("/api/v1/query?query=up#frag", "")),
        ("double slash", get("//api/v1/query?query=up", "")),
        (
            "absolute form",
            get("http://gw/api/v1/query?query=up", ""),
        ),
        (
            "HTTP/1.0",
            format!("GET /api/v1/query?query=up HTTP/1.0\r\nHost: gw\r\nAuthorization: {auth}\r\n\r\n")
                .into_bytes(),
        ),
        (
            "no Host",
            format!("GET /api/v1/query?query=up HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n")
                .into_bytes(),
        ),
        ("two Hosts", get("/api/v1/query?query=up", "Host: other\r\n")),
        (
            "empty sized body",
            get("/api/v1/query?query=up", "Content-Length: 0\r\n"),
        ),
        (
            "chunked GET",
            format!("GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                .into_bytes(),
        ),
        (
            "lower-case method",
            format!("get /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n\r\n")
                .into_bytes(),
        ),
        (
            "bare LF",
            format!("GET /api/v1/query?query=up HTTP/1.1\nHost: gw\nAuthorization: {auth}\n\n")
                .into_bytes(),
        ),
        (
            "obs-fold",
            get("/api/v1/query?query=up", "X-Folded: a\r\n b\r\n"),
        ),
        (
            "field without colon",
            get("/api/v1/query?query=up", "NoColon\r\n"),
        ),
        (
            "no credentials",
            b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
        ),
        (
            "wrong password",
            format!(
                "GET /api/v1/query?query=up HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic {}\r\n\r\n",
                base64::engine::general_purpose::STANDARD.encode("alice:wrong")
            )
            .into_bytes(),
        ),
        ("not an API route", get("/graph", "")),
        (
            "match[] selector",
            get("/api/v1/labels?match[]=up&match[]=%7Bjob%3D%22x%22%7D", ""),
        ),
        (
            "high bytes in a field value",
            {
                let mut r = get("/api/v1/query?query=up", "");
                let at = r.len() - 2;
                r.splice(at..at, b"X-Note: caf\xe9\r\n".iter().copied());
                r
            },
        ),
        (
            "Expect on a GET",
            get("/api/v1/query?query=up", "Expect: 100-continue\r\n"),
        ),
        (
            "client asks to close",
            get("/api/v1/query?query=up", "Connection: close\r\n"),
        ),
        (
            "a long query",
            get(&format!("/api/v1/query?query={}", "a".repeat(6000)), ""),
        ),
        ("HEAD", {
            let mut r = get("/api/v1/query?query=up", "");
            r.splice(0..3, b"HEAD".iter().copied());
            r
        }),
    ]
}

/// What differed between the two ways, case by case.
#[derive(Default)]
struct Differences(Vec<String>);

impl Differences {
    /// Notes where the client's view or the upstream's (short way, engine) differ.
    fn compare<C: PartialEq + std::fmt::Debug>(
        &mut self,
        name: &str,
        [client_short, client_engine]: [&C; 2],
        [upstream_short, upstream_engine]: [Vec<String>; 2],
    ) {
        if client_short != client_engine {
            self.0.push(format!(
                "{name}: the client saw\n  short way: {client_short:?}\n  engine:    {client_engine:?}"
            ));
        }
        if upstream_short != upstream_engine {
            self.0.push(format!(
                "{name}: the upstream received\n  short way: {upstream_short:?}\n  engine:    {upstream_engine:?}"
            ));
        }
    }

    /// No case differed, and the switch is real.
    async fn conclude(self, short: &Gateway, engine: &Gateway, cases: usize) {
        assert!(
            self.0.is_empty(),
            "{} of {cases} cases differ:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
        only_the_first_took_the_short_way(short, engine, cases).await;
    }
}

/// The switch is real: the first gateway served (at least half of) the cases the short way,
/// the second none.
async fn only_the_first_took_the_short_way(short: &Gateway, engine: &Gateway, cases: usize) {
    let served = |gw: &Gateway| {
        let url = gw.metrics_url();
        async move {
            let text = http_client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metric_value(&text, "whizard_gateway_short_way_requests_total", &[]).unwrap_or(0.0)
        }
    };
    let by_short = served(short).await;
    assert!(by_short >= cases as f64 / 2.0, "{by_short}");
    assert_eq!(served(engine).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_way_and_the_engine_send_and_answer_the_same_bytes() {
    the_ways_send_and_answer_the_same_bytes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_short_way_and_the_engine_send_and_answer_the_same_bytes() {
    ensure_crypto_provider();
    let pki = TestPki::new();
    the_ways_send_and_answer_the_same_bytes(Some(&pki)).await;
}

/// The corpus through both ways, over plain TCP, or over TLS with a certificate of `pki`.
async fn the_ways_send_and_answer_the_same_bytes(pki: Option<&TestPki>) {
    let server = pki.map(|pki| pki.server("gateway", &[]));
    let dial = match pki {
        Some(pki) => Dial::tls(&pki.ca_cert),
        None => Dial::Plain,
    };
    let short_upstream = RawUpstream::start().await;
    let engine_upstream = RawUpstream::start().await;
    let gateway = |upstream: &RawUpstream, short_way: bool| {
        let config = two_tenant_config(
            &upstream.url(),
            &format!("{}/api/v1/write", upstream.url()),
            &format!("server:\n  threads: 1\n  short_way: {short_way}\n"),
        );
        match &server {
            Some(server) => config.replacen("listen:\n", &https_listen_lines(server), 1),
            None => config,
        }
    };
    let short = Gateway::start(&gateway(&short_upstream, true)).await;
    let engine = Gateway::start(&gateway(&engine_upstream, false)).await;

    // Every request shape meets a sized answer; the plain request meets every answer shape.
    let mut cases: Vec<(String, Vec<u8>, Answer)> = Vec::new();
    let (_, sized_json) = answers().remove(0);
    for (name, request) in requests() {
        cases.push((format!("request: {name}"), request, sized_json.clone()));
    }
    let (_, plain) = requests().remove(0);
    for (name, answer) in answers() {
        cases.push((format!("answer: {name}"), plain.clone(), answer));
    }

    let mut differences = Differences::default();
    for (name, request, answer) in &cases {
        short_upstream.set(answer.clone());
        engine_upstream.set(answer.clone());
        let by_short = exchange(&dial, &short, request).await;
        let by_engine = exchange(&dial, &engine, request).await;
        let (upstream_short, upstream_engine) =
            (short_upstream.normalized(), engine_upstream.normalized());
        // Whatever else differs, no way sends a read the tenant matcher is missing from (a
        // retry on a new connection once went out with the client's own query).
        for line in upstream_short.iter().chain(&upstream_engine) {
            let target = line.split(' ').nth(1).unwrap_or_default();
            assert!(
                target.contains("tenant_id%3D%22team-a%22"),
                "{name}: unenforced read upstream: {line}"
            );
        }
        if name == "answer: hop-by-hop fields" {
            for seen in [&by_short.answer, &by_engine.answer] {
                for field in ["x-private", "keep-alive", "proxy-authenticate", "upgrade"] {
                    assert!(
                        !seen.contains(&format!("\n{field}:")),
                        "{name}: {field} reached the client: {seen}"
                    );
                }
                assert!(seen.contains("\nx-kept: yes"), "{seen}");
            }
        }
        differences.compare(
            name,
            [&by_short, &by_engine],
            [upstream_short, upstream_engine],
        );
    }
    differences.conclude(&short, &engine, cases.len()).await;
}

/// An HTTP/2 request of the corpus: method, path and query, fields, body.
struct H2Request {
    method: reqwest::Method,
    target: String,
    fields: Vec<(&'static str, String)>,
    body: Option<&'static str>,
}

fn h2_requests() -> Vec<(&'static str, H2Request)> {
    let auth = authorization();
    let get = |target: &str, fields: &[(&'static str, &str)]| {
        let mut all = vec![("authorization", auth.clone())];
        all.extend(fields.iter().map(|(n, v)| (*n, v.to_string())));
        H2Request {
            method: reqwest::Method::GET,
            target: target.to_string(),
            fields: all,
            body: None,
        }
    };
    let with = |mut r: H2Request, method: reqwest::Method, body: Option<&'static str>| {
        r.method = method;
        r.body = body;
        r
    };
    vec![
        ("plain", get("/api/v1/query?query=up", &[])),
        (
            "tenant headers sent by the client",
            get(
                "/api/v1/query?query=up",
                &[("thanos-tenant", "team-b"), ("x-scope-orgid", "team-b")],
            ),
        ),
        (
            "other client fields",
            get(
                "/api/v1/query?query=up",
                &[
                    ("x-forwarded-for", "10.0.0.1"),
                    ("cookie", "a=b"),
                    ("accept-encoding", "gzip"),
                    ("user-agent", "grafana"),
                    ("accept", "application/json"),
                    ("te", "trailers"),
                ],
            ),
        ),
        (
            "percent-encoded selector",
            get("/api/v1/query?query=up%7Bjob%3D%22a%22%7D&time=1", &[]),
        ),
        (
            "duplicate query parameter",
            get("/api/v1/query?query=up&query=sum(up)", &[]),
        ),
        (
            "a Host field besides :authority",
            get("/api/v1/query?query=up", &[("host", "other")]),
        ),
        (
            "a long query",
            get(&format!("/api/v1/query?query={}", "a".repeat(6000)), &[]),
        ),
        (
            "no credentials",
            H2Request {
                method: reqwest::Method::GET,
                target: "/api/v1/query?query=up".into(),
                fields: vec![],
                body: None,
            },
        ),
        (
            "wrong password",
            H2Request {
                method: reqwest::Method::GET,
                target: "/api/v1/query?query=up".into(),
                fields: vec![(
                    "authorization",
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("alice:wrong")
                    ),
                )],
                body: None,
            },
        ),
        ("not an API route", get("/graph", &[])),
        (
            "match[] selector",
            get("/api/v1/labels?match[]=up&match[]=%7Bjob%3D%22x%22%7D", &[]),
        ),
        (
            "a GET with a body",
            with(
                get("/api/v1/query?query=up", &[]),
                reqwest::Method::GET,
                Some("x"),
            ),
        ),
        (
            "HEAD",
            with(
                get("/api/v1/query?query=up", &[]),
                reqwest::Method::HEAD,
                None,
            ),
        ),
        (
            "POST form",
            with(
                get(
                    "/api/v1/query",
                    &[("content-type", "application/x-www-form-urlencoded")],
                ),
                reqwest::Method::POST,
                Some("query=up"),
            ),
        ),
    ]
}

/// What an HTTP/2 client saw: the protocol, status, fields (sorted; the values that differ per
/// request masked) and body, or that the request failed.
async fn h2_exchange(client: &reqwest::Client, base: &str, request: &H2Request) -> String {
    let mut builder = client.request(request.method.clone(), format!("{base}{}", request.target));
    for (name, value) in &request.fields {
        builder = builder.header(*name, value);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let answer = match tokio::time::timeout(DEADLINE, builder.send()).await {
        Err(_) => panic!("no answer within {DEADLINE:?}"),
        Ok(Err(e)) => return format!("failed: {}", e.is_request()),
        Ok(Ok(answer)) => answer,
    };
    let mut fields: Vec<String> = answer
        .headers()
        .iter()
        .map(|(name, value)| match name.as_str() {
            "date" | "x-request-id" => format!("{name}: <masked>"),
            _ => format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())),
        })
        .collect();
    fields.sort();
    let head = format!(
        "{:?} {}\n{}",
        answer.version(),
        answer.status(),
        fields.join("\n")
    );
    match answer.text().await {
        Ok(body) => format!("{head}\n\n{body}"),
        Err(_) => format!("{head}\n\n<body cut short>"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_the_short_way_and_the_engine_send_and_answer_the_same() {
    ensure_crypto_provider();
    let pki = TestPki::new();
    let server = pki.server("gateway", &[]);
    let short_upstream = RawUpstream::start().await;
    let engine_upstream = RawUpstream::start().await;
    let gateway = |upstream: &RawUpstream, short_way: bool| {
        two_tenant_config(
            &upstream.url(),
            &format!("{}/api/v1/write", upstream.url()),
            &format!("server:\n  threads: 2\n  short_way: {short_way}\n"),
        )
        .replacen("listen:\n", &https_listen_lines(&server), 1)
    };
    let short = Gateway::start(&gateway(&short_upstream, true)).await;
    let engine = Gateway::start(&gateway(&engine_upstream, false)).await;
    let client = h2_client(&pki.ca_cert);

    let mut cases: Vec<(String, H2Request, Answer)> = Vec::new();
    let (_, sized_json) = answers().remove(0);
    for (name, request) in h2_requests() {
        cases.push((format!("request: {name}"), request, sized_json.clone()));
    }
    for (name, answer) in answers() {
        let (_, plain) = h2_requests().remove(0);
        cases.push((format!("answer: {name}"), plain, answer));
    }

    let mut differences = Differences::default();
    for (name, request, answer) in &cases {
        short_upstream.set(answer.clone());
        engine_upstream.set(answer.clone());
        let by_short = h2_exchange(&client, &short.https_url(), request).await;
        let by_engine = h2_exchange(&client, &engine.https_url(), request).await;
        let (upstream_short, upstream_engine) =
            (short_upstream.normalized(), engine_upstream.normalized());
        for line in upstream_short.iter().chain(&upstream_engine) {
            let target = line.split(' ').nth(1).unwrap_or_default();
            if line.starts_with("GET ") || line.starts_with("HEAD ") {
                assert!(
                    target.contains("tenant_id%3D%22team-a%22"),
                    "{name}: unenforced read upstream: {line}"
                );
            }
            assert!(line.contains("\nthanos-tenant: team-a\n"), "{name}: {line}");
            assert!(
                !line.contains("team-b"),
                "{name}: the client's tenant went upstream: {line}"
            );
            assert!(
                line.starts_with("GET ") || line.starts_with("HEAD ") || line.starts_with("POST ")
            );
            assert!(line.contains(" HTTP/1.1\n"), "{name}: {line}");
        }
        if name == "answer: sized json" || name == "request: plain" {
            assert!(
                by_short.starts_with("HTTP/2.0 200 OK"),
                "{name}: {by_short}"
            );
        }
        differences.compare(
            name,
            [&by_short, &by_engine],
            [upstream_short, upstream_engine],
        );
    }
    differences.conclude(&short, &engine, cases.len()).await;
}
