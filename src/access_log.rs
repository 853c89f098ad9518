//! One access-log line per request, in logfmt or JSON, written by a background thread so a
//! request never waits on the terminal or a pipe. Only fields chosen here are logged: no
//! header values, so passwords, tokens and cookies cannot end up in the log.

use crate::config::LogFormat;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;

/// The fields of one line.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub tenant: &'a str,
    pub user: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub duration_seconds: f64,
    pub upstream: &'a str,
    pub client: &'a str,
}

static SINK: OnceLock<SyncSender<String>> = OnceLock::new();

/// Starts the writer thread (stdout). Lines beyond a backlog of 64k are dropped and counted
/// rather than slowing requests down.
pub fn init() {
    SINK.get_or_init(|| {
        let (tx, rx) = sync_channel::<String>(65_536);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Flush when there is no more backlog, so lines appear promptly.
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .ok();
        tx
    });
}

pub fn log(format: LogFormat, e: &Entry<'_>) {
    let Some(tx) = SINK.get() else { return };
    let line = render(format, e);
    if let Err(TrySendError::Full(_)) = tx.try_send(line) {
        crate::metrics::metrics().access_log_dropped.inc();
    }
}

fn render(format: LogFormat, e: &Entry<'_>) -> String {
    let mut s = String::with_capacity(256);
    let ts = timestamp();
    match format {
        LogFormat::Json => {
            let v = serde_json::json!({
                "ts": ts, "msg": "request", "request_id": e.request_id, "method": e.method,
                "route": e.route, "tenant": e.tenant, "user": e.user, "status": e.status,
                "bytes": e.bytes, "duration_seconds": e.duration_seconds, "upstream": e.upstream,
                "client": e.client,
            });
            s.push_str(&v.to_string());
        }
        LogFormat::Logfmt => {
            let _ = write!(s, "ts={ts} msg=request");
            for (k, v) in [
                ("request_id", e.request_id),
                ("method", e.method),
                ("route", e.route),
                ("tenant", e.tenant),
                ("user", e.user),
            ] {
                let _ = write!(s, " {k}={}", logfmt_value(v));
            }
            let _ = write!(
                s,
                " status={} bytes={} duration_seconds={:.6} upstream={} client={}",
                e.status,
                e.bytes,
                e.duration_seconds,
                logfmt_value(e.upstream),
                logfmt_value(e.client)
            );
        }
    }
    s.push('\n');
    s
}

fn logfmt_value(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\')
    {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

/// RFC 3339 UTC with milliseconds.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// A request id from the client when it is a sane token, else a new random one.
pub fn request_id(from_client: Option<&[u8]>) -> String {
    match from_client {
        Some(v)
            if !v.is_empty()
                && v.len() <= 128
                && v.iter().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                }) =>
        {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => {
            let r: u128 = rand::random();
            format!("{r:032x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            request_id: "abc",
            method: "GET",
            route: "/api/v1/query",
            tenant: "team-a",
            user: "alice smith",
            status: 200,
            bytes: 42,
            duration_seconds: 0.0012,
            upstream: "query",
            client: "127.0.0.1:5555",
        }
    }

    #[test]
    fn logfmt_line() {
        let l = render(LogFormat::Logfmt, &entry());
        assert!(l.starts_with("ts=20"), "{l}");
        assert!(l.contains(" request_id=abc method=GET route=/api/v1/query tenant=team-a user=\"alice smith\" status=200 bytes=42 duration_seconds=0.001200 upstream=query client=127.0.0.1:5555\n"), "{l}");
    }

    #[test]
    fn json_line() {
        let l = render(LogFormat::Json, &entry());
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["tenant"], "team-a");
        assert_eq!(v["status"], 200);
        assert_eq!(v["user"], "alice smith");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(crate::gateway::parse_time_for_tests(&t).is_some(), "{t}");
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(Some(b"my-id.1")), "my-id.1");
        for bad in [&b""[..], b"has space", b"quote\"", &[b'a'; 200]] {
            let id = request_id(Some(bad));
            assert_eq!(id.len(), 32, "{id}");
        }
        assert_ne!(request_id(None), request_id(None));
    }
}
