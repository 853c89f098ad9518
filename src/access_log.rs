//! One access-log line per request, in logfmt or JSON, written by a background thread so a
//! request never waits on the terminal or a pipe. Only fields chosen here are logged: no
//! header values, so passwords, tokens and cookies cannot end up in the log.

use crate::config::LogFormat;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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

/// Lines waiting for the writer thread. Requests append under a short, uncontended lock and
/// never wake the writer except when the backlog is large: a wake-up per request (a futex call
/// and a context switch) costs more than the rest of the line.
struct Sink {
    pending: Mutex<Vec<u8>>,
    writer: std::thread::Thread,
}

impl Entry<'_> {
    /// The string fields that open every line, in order (both formats).
    fn leading_strings(&self) -> [(&'static str, &str); 5] {
        [
            ("request_id", self.request_id),
            ("method", self.method),
            ("route", self.route),
            ("tenant", self.tenant),
            ("user", self.user),
        ]
    }
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// How often the writer flushes, at most: the delay before a line shows up.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A backlog this large wakes the writer at once.
const WAKE_AT: usize = 64 * 1024;
/// Beyond this backlog lines are dropped (and counted) rather than slowing requests down.
const MAX_BACKLOG: usize = 16 * 1024 * 1024;

/// Starts the writer thread (stdout).
pub fn init() {
    if SINK.get().is_some() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(|| {
            let mut spare = Vec::with_capacity(WAKE_AT);
            loop {
                std::thread::park_timeout(FLUSH_INTERVAL);
                write_pending(&mut spare);
            }
        });
    if let Ok(handle) = spawned {
        let _ = SINK.set(Sink {
            pending: Mutex::new(Vec::with_capacity(WAKE_AT)),
            writer: handle.thread().clone(),
        });
    }
}

/// Swaps the backlog out (the lock is held only for the swap) and writes it to stdout.
fn write_pending(spare: &mut Vec<u8>) {
    let Some(sink) = SINK.get() else { return };
    spare.clear();
    std::mem::swap(&mut *lock(&sink.pending), spare);
    if !spare.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(spare);
        let _ = out.flush();
    }
}

/// Writes what is pending now; called before the process exits.
pub fn flush() {
    write_pending(&mut Vec::new());
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    // A panic while appending leaves at worst a partial line; keep logging.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn log(format: LogFormat, e: &Entry<'_>) {
    let Some(sink) = SINK.get() else { return };
    let mut pending = lock(&sink.pending);
    if pending.len() >= MAX_BACKLOG {
        drop(pending);
        crate::metrics::metrics().access_log_dropped.inc();
        return;
    }
    render(&mut pending, format, e);
    let wake = pending.len() >= WAKE_AT;
    drop(pending);
    if wake {
        sink.writer.unpark();
    }
}

fn render(out: &mut Vec<u8>, format: LogFormat, e: &Entry<'_>) {
    // Writing into a Vec cannot fail.
    match format {
        LogFormat::Json => {
            out.extend_from_slice(b"{\"ts\":\"");
            timestamp(out);
            out.extend_from_slice(b"\",\"msg\":\"request\"");
            for (k, v) in e.leading_strings() {
                let _ = write!(out, ",\"{k}\":");
                let _ = serde_json::to_writer(&mut *out, v);
            }
            let _ = write!(
                out,
                ",\"status\":{},\"bytes\":{},\"duration_seconds\":{},\"upstream\":",
                e.status, e.bytes, e.duration_seconds
            );
            let _ = serde_json::to_writer(&mut *out, e.upstream);
            out.extend_from_slice(b",\"client\":");
            let _ = serde_json::to_writer(&mut *out, e.client);
            out.push(b'}');
        }
        LogFormat::Logfmt => {
            out.extend_from_slice(b"ts=");
            timestamp(out);
            out.extend_from_slice(b" msg=request");
            for (k, v) in e.leading_strings() {
                let _ = write!(out, " {k}=");
                logfmt_value(out, v);
            }
            let _ = write!(
                out,
                " status={} bytes={} duration_seconds={:.6} upstream=",
                e.status, e.bytes, e.duration_seconds,
            );
            logfmt_value(out, e.upstream);
            out.extend_from_slice(b" client=");
            logfmt_value(out, e.client);
        }
    }
    out.push(b'\n');
}

fn logfmt_value(out: &mut Vec<u8>, v: &str) {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\')
    {
        out.extend_from_slice(v.as_bytes());
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// RFC 3339 UTC with milliseconds.
fn timestamp(out: &mut Vec<u8>) {
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
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    );
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

    fn line(format: LogFormat) -> String {
        let mut out = Vec::new();
        render(&mut out, format, &entry());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn logfmt_line() {
        let l = line(LogFormat::Logfmt);
        assert!(l.starts_with("ts=20"), "{l}");
        assert!(l.contains(" request_id=abc method=GET route=/api/v1/query tenant=team-a user=\"alice smith\" status=200 bytes=42 duration_seconds=0.001200 upstream=query client=127.0.0.1:5555\n"), "{l}");
    }

    #[test]
    fn json_line() {
        let l = line(LogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["tenant"], "team-a");
        assert_eq!(v["status"], 200);
        assert_eq!(v["user"], "alice smith");
        assert_eq!(v["duration_seconds"], 0.0012);
        assert_eq!(v["client"], "127.0.0.1:5555");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let mut out = Vec::new();
        timestamp(&mut out);
        let t = String::from_utf8(out).unwrap();
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
