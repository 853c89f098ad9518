//! One access-log line per request, in logfmt or JSON, written by a background thread so a
//! request never waits on the terminal or a pipe. Only fields chosen here are logged: no
//! header values, so passwords, tokens and cookies cannot end up in the log.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use whizard_core::config::LogFormat;
use whizard_core::per_thread::Slots;
use whizard_core::sync::lock;

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
    /// The client's address ("" in the line when unknown).
    pub client: Option<std::net::SocketAddr>,
}

/// Lines waiting for the writer thread, in a backlog per thread (`whizard_core::per_thread`: one shared
/// backlog is a lock and a buffer end every thread writes, per request). Requests append under
/// a lock that only the writer contends for, and never wake the writer except when their
/// backlog is large: a wake-up per request (a futex call and a context switch) costs more than
/// the rest of the line.
struct Sink {
    pending: Slots<Mutex<Vec<u8>>>,
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
/// A thread's backlog this large wakes the writer at once.
const WAKE_AT: usize = 64 * 1024;
/// Beyond this backlog (a thread's) lines are dropped (and counted) rather than slowing
/// requests down.
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
            pending: Slots::default(),
            writer: handle.thread().clone(),
        });
        // The lines of the last 100 ms would be lost when the process exits between two
        // flushes: pingora's own shutdown (SIGINT, or SIGTERM with no grace period left) ends
        // it with `exit` from its thread, not through the gateway's exit path.
        // SAFETY: `atexit` only records the function; `flush_at_exit` cannot unwind.
        unsafe {
            libc::atexit(flush_at_exit);
        }
    }
}

/// Writes what is pending when the process exits, however it exits through `exit`.
extern "C" fn flush_at_exit() {
    write_pending(&mut Vec::new());
}

/// Writes every thread's backlog to stdout.
fn write_pending(spare: &mut Vec<u8>) {
    let Some(sink) = SINK.get() else { return };
    write_backlogs(&sink.pending, spare, &mut std::io::stdout().lock());
}

/// Swaps each backlog out (its lock is held only for the swap) and writes it to `out`. Only a
/// backlog with lines is swapped: the spare's room then goes to a thread that logs, and does
/// not end up in the slot of a thread that never does, which would leave the next busy thread
/// to grow a new buffer from nothing every time (a reallocation every few dozen lines).
fn write_backlogs(backlogs: &Slots<Mutex<Vec<u8>>>, spare: &mut Vec<u8>, out: &mut impl Write) {
    for pending in backlogs.iter() {
        spare.clear();
        {
            let mut pending = lock(pending);
            if pending.is_empty() {
                continue;
            }
            std::mem::swap(&mut *pending, spare);
        }
        let _ = out.write_all(spare);
        let _ = out.flush();
    }
}

pub fn log(format: LogFormat, e: &Entry<'_>) {
    let Some(sink) = SINK.get() else { return };
    let mut pending = lock(sink.pending.here());
    if pending.len() >= MAX_BACKLOG {
        drop(pending);
        whizard_core::metrics::metrics().access_log_dropped.inc();
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
            out.push(b'"');
            push_client(out, e.client);
            out.push(b'"');
            out.push(b'}');
        }
        LogFormat::Logfmt => {
            out.extend_from_slice(b"ts=");
            timestamp(out);
            out.extend_from_slice(b" msg=request");
            for (k, v) in e.leading_strings() {
                out.push(b' ');
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                logfmt_value(out, v);
            }
            // The line is written per request: integers by hand, not through `fmt`.
            let mut n = itoa::Buffer::new();
            out.extend_from_slice(b" status=");
            out.extend_from_slice(n.format(e.status).as_bytes());
            out.extend_from_slice(b" bytes=");
            out.extend_from_slice(n.format(e.bytes).as_bytes());
            out.extend_from_slice(b" duration_seconds=");
            let micros = (e.duration_seconds * 1e6).round() as u64;
            out.extend_from_slice(n.format(micros / 1_000_000).as_bytes());
            out.push(b'.');
            push_digits(out, micros % 1_000_000, 6);
            out.extend_from_slice(b" upstream=");
            logfmt_value(out, e.upstream);
            out.extend_from_slice(b" client=");
            match e.client {
                Some(_) => push_client(out, e.client),
                None => out.extend_from_slice(b"\"\""),
            }
        }
    }
    out.push(b'\n');
}

/// A logfmt value that needs no quotes: printable ASCII but `"`, `=` and `\\`.
fn is_plain(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&b| PLAIN[usize::from(b)])
}

/// The bytes a logfmt value may hold unquoted, by value: one load per byte on a path taken
/// for five fields of every line.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_graphic() && byte != b'"' && byte != b'=' && byte != b'\\';
        b += 1;
    }
    table
};

/// An IP address and port, which never needs quoting or escaping in either format. IPv4 by
/// hand: `Display` through `fmt` costs more than the rest of the line's numbers.
fn push_client(out: &mut Vec<u8>, client: Option<std::net::SocketAddr>) {
    match client {
        Some(std::net::SocketAddr::V4(a)) => {
            let mut n = itoa::Buffer::new();
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(n.format(octet).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(n.format(a.port()).as_bytes());
        }
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => {}
    }
}

/// `value`'s last `width` decimal digits, zero-padded.
fn push_digits(out: &mut Vec<u8>, value: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(b'0' + (value / 10u64.pow(i) % 10) as u8);
    }
}

fn logfmt_value(out: &mut Vec<u8>, v: &str) {
    if is_plain(v.as_bytes()) {
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
    thread_local! {
        /// The date and time up to the seconds' dot, for the second it was made in: lines of
        /// the same second (most of them, under load) reuse it.
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let secs = now.as_secs();
    match SECOND.get() {
        (made, prefix) if made == secs => out.extend_from_slice(&prefix),
        _ => {
            let start = out.len();
            date_and_time(out, secs as i64);
            // Always 20 bytes before the year 10000.
            if let Ok(prefix) = <[u8; 20]>::try_from(&out[start..]) {
                SECOND.set((secs, prefix));
            }
        }
    }
    push_digits(out, u64::from(now.subsec_millis()), 3);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` (20 bytes until the year 9999) for `secs` since the epoch.
fn date_and_time(out: &mut Vec<u8>, secs: i64) {
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
    let field = |out: &mut Vec<u8>, v: i64, width: u32, sep: u8| {
        push_digits(out, v.unsigned_abs(), width);
        out.push(sep);
    };
    field(out, y, 4, b'-');
    field(out, m, 2, b'-');
    field(out, d, 2, b'T');
    field(out, rem / 3600, 2, b':');
    field(out, rem % 3600 / 60, 2, b':');
    field(out, rem % 60, 2, b'.');
}

/// Whether a client's request id is a sane token to keep, log and pass on.
pub fn is_sane_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random request id: 32 lower-case hex digits.
pub fn new_request_id() -> http::HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let r: u128 = rand::random();
    let mut id = [0u8; 32];
    for (i, d) in id.iter_mut().enumerate() {
        *d = HEX[(r >> (124 - 4 * i) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    http::HeaderValue::from_bytes(&id).unwrap_or_else(|_| http::HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_keeps_its_room_with_the_threads_that_log() {
        let backlogs: Slots<Mutex<Vec<u8>>> = Slots::default();
        let mut spare = Vec::with_capacity(WAKE_AT);
        let mut out = Vec::new();
        for round in 0..3 {
            lock(backlogs.at(5)).extend_from_slice(format!("line {round}\n").as_bytes());
            write_backlogs(&backlogs, &mut spare, &mut out);
        }
        assert_eq!(out, b"line 0\nline 1\nline 2\n");
        // The busy slot and the spare share the writer's room; the idle slots hold none.
        let busy = lock(backlogs.at(5)).capacity();
        assert!(
            busy.min(spare.capacity()) > 0,
            "{busy} / {}",
            spare.capacity()
        );
        assert!(busy.max(spare.capacity()) >= WAKE_AT);
        let idle: usize = (0..whizard_core::per_thread::SLOTS)
            .filter(|&i| i != 5)
            .map(|i| lock(backlogs.at(i)).capacity())
            .sum();
        assert_eq!(idle, 0);
    }

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
            client: Some("127.0.0.1:5555".parse().unwrap()),
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
    fn logfmt_quotes_every_byte_but_printable_ascii_other_than_quote_equals_backslash() {
        for b in 0..=255u8 {
            let plain = b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\');
            assert_eq!(is_plain(&[b]), plain, "byte {b:#04x}");
            assert_eq!(
                is_plain(&[b'a', b, b'z']),
                plain,
                "byte {b:#04x} inside a value"
            );
        }
        assert!(!is_plain(b""), "an empty value is quoted");
    }

    #[test]
    fn logfmt_numbers_and_quoted_clients() {
        let mut e = entry();
        e.duration_seconds = 12.345_678_9;
        e.bytes = 0;
        e.client = Some("[2001:db8::1]:443".parse().unwrap());
        let mut out = Vec::new();
        render(&mut out, LogFormat::Logfmt, &e);
        let l = String::from_utf8(out).unwrap();
        assert!(
            l.ends_with(
                " status=200 bytes=0 duration_seconds=12.345679 upstream=query client=[2001:db8::1]:443\n"
            ),
            "{l}"
        );
        for addr in ["0.0.0.0:0", "255.255.255.255:65535", "10.1.20.3:80"] {
            let mut out = Vec::new();
            push_client(&mut out, Some(addr.parse().unwrap()));
            assert_eq!(out, addr.as_bytes());
        }
        e.client = None;
        let mut out = Vec::new();
        render(&mut out, LogFormat::Logfmt, &e);
        assert!(
            out.ends_with(b" client=\"\"\n"),
            "{:?}",
            String::from_utf8(out)
        );
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
    fn dates_and_times_of_known_instants() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00."),
            (951_782_400, "2000-02-29T00:00:00."),
            (1_798_761_599, "2026-12-31T23:59:59."),
            (4_107_542_400, "2100-03-01T00:00:00."),
        ] {
            let mut out = Vec::new();
            date_and_time(&mut out, secs);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        // The first of a second is made, the next ones reuse it.
        for _ in 0..3 {
            let mut out = b"ts=".to_vec();
            timestamp(&mut out);
            let t = String::from_utf8(out.split_off(3)).unwrap();
            assert_eq!(t.len(), 24, "{t}");
            assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
            let parsed = crate::params::parse_time(&t).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!((now - parsed).abs() < 2.0, "{t}");
        }
    }

    #[test]
    fn request_ids() {
        assert!(is_sane_request_id(b"my-id.1"));
        assert!(is_sane_request_id(&[b'a'; 128]));
        for bad in [&b""[..], b"has space", b"quote\"", &[b'a'; 129]] {
            assert!(!is_sane_request_id(bad), "{bad:?}");
        }
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 32, "{id:?}");
            assert!(id
                .as_bytes()
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }
}
