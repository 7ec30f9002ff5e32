//! The access log: one line per request, written by a thread of its own.
//!
//! Workers hand over a small record (a timestamp, a few integers and `'static` names, and
//! reference-counted clones of the method and URI) through a channel; this thread
//! formats the lines and writes them to stderr in batches. The request path formats no
//! string and makes no `write` system call for logging.
//!
//! Lines keep the shape of the `tracing` lines around them, so one parser reads both:
//! `2026-11-22T17:10:33.661752Z  INFO gateway::access: listener="public" client=… method=GET
//! path="/api/users/42" route="get-user" upstream="users" status=200 duration_us=412`.
//! A request that stopped before its target answered (a refusal, a wrong method, an
//! upstream failure) adds who stopped it and why: `stop="office: client address not
//! allowed"`.
//! The log is on when `RUST_LOG` enables `gateway::access` at `info` (the default).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;

use crate::pipeline::StopReason;
use crate::route::router::RouteSpec;

/// One finished request.
#[derive(Debug)]
pub struct Record {
    pub at: SystemTime,
    pub listener: &'static str,
    pub client: IpAddr,
    pub method: Method,
    pub path: LoggedPath,
    pub route: Option<&'static RouteSpec<'static>>,
    pub status: u16,
    pub duration: Duration,
    /// Why the request stopped early, if it did.
    pub stop: Option<StopReason>,
}

/// The request path, copied. Holding the request's `Uri` instead would pin the
/// connection's whole read buffer (the URI's bytes are a slice of it) until the line is
/// written: measured +6.5 MiB RSS at 70k requests/s. Short paths are copied inline.
#[derive(Debug)]
pub enum LoggedPath {
    Inline { len: u8, bytes: [u8; 94] },
    Heap(Box<str>),
}

impl LoggedPath {
    pub fn new(path: &str) -> Self {
        match u8::try_from(path.len()) {
            Ok(len) if usize::from(len) <= 94 => {
                let mut bytes = [0; 94];
                bytes[..path.len()].copy_from_slice(path.as_bytes());
                LoggedPath::Inline { len, bytes }
            }
            _ => LoggedPath::Heap(path.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str`, so still valid UTF-8.
            LoggedPath::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("?")
            }
            LoggedPath::Heap(path) => path,
        }
    }
}

/// Where workers send records; `None` when the access log is off.
pub type AccessLog = Option<LogSender>;

/// Records waiting for the log thread, at most: four drain intervals' worth at
/// 100,000 requests per second. The queue's slots are all written as it cycles, so
/// this is memory the log holds: about 2 MB (16,384 measured 3.7 MB more RSS).
const CAPACITY: usize = 8_192;

/// The workers' end of the log: a bounded channel. When the thread falls behind (its
/// stderr blocked), a record is dropped and counted rather than queued without bound,
/// and the thread reports how many went.
#[derive(Debug, Clone)]
pub struct LogSender {
    sender: SyncSender<Record>,
    /// Touched only when a record is dropped.
    dropped: Arc<AtomicU64>,
}

impl LogSender {
    fn channel(capacity: usize) -> (Self, Receiver<Record>) {
        let (sender, receiver) = sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        (Self { sender, dropped }, receiver)
    }

    /// Hands a record to the log thread, or drops and counts it when the queue is
    /// full. A lost line is no reason to fail a request.
    pub fn record(&self, record: Record) {
        if let Err(TrySendError::Full(_)) = self.sender.try_send(record) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the log thread when `gateway::access` is enabled. The thread ends once every
/// sender is dropped and the last record is written; join it to flush at exit.
pub fn start() -> std::io::Result<(AccessLog, Option<std::thread::JoinHandle<()>>)> {
    if !tracing::enabled!(target: "gateway::access", tracing::Level::INFO) {
        return Ok((None, None));
    }
    let (sender, receiver) = LogSender::channel(CAPACITY);
    let dropped = sender.dropped.clone();
    let thread = std::thread::Builder::new()
        .name("gateway-access-log".into())
        .spawn(move || write_lines(&receiver, &dropped))?;
    Ok((Some(sender), Some(thread)))
}

/// How often the log thread drains the channel. It sleeps in between instead of
/// blocking in `recv`, so that a worker's `send` never has to wake it: a wake-up is a
/// system call, and measured 4 more of them per request at full load.
const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

fn write_lines(receiver: &Receiver<Record>, dropped: &AtomicU64) {
    // Not `stderr().lock()`: other log lines must get through between batches.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let mut line = String::with_capacity(256);
    loop {
        let disconnected = loop {
            match receiver.try_recv() {
                Ok(record) => {
                    line.clear();
                    format_record(&mut line, &record);
                    if out.write_all(line.as_bytes()).is_err() {
                        return;
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            line.clear();
            write_timestamp(&mut line, SystemTime::now());
            let _ = writeln!(
                line,
                "  WARN gateway::access: dropped={lost} reason=\"the log writer fell behind\""
            );
            if out.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
        if out.flush().is_err() || disconnected {
            return;
        }
        std::thread::sleep(DRAIN_INTERVAL);
    }
}

fn format_record(line: &mut String, r: &Record) {
    write_timestamp(line, r.at);
    let (route, upstream) = r.route.map_or(("-", "-"), |spec| (spec.name, spec.target));
    // `{:?}` quotes and escapes, so a path cannot forge a line break or a field.
    let _ = writeln!(
        line,
        "  INFO gateway::access: listener={:?} client={} method={} path={:?} route={:?} upstream={:?} status={} duration_us={}",
        r.listener,
        r.client,
        r.method,
        r.path.as_str(),
        route,
        upstream,
        r.status,
        r.duration.as_micros()
    );
    if let Some(stop) = r.stop {
        // Fixed strings from the gateway and its configuration, quoted all the same.
        line.pop();
        let _ = writeln!(line, " stop=\"{}: {}\"", stop.by, stop.what);
    }
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber` writes it.
fn write_timestamp(out: &mut String, at: SystemTime) {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let in_day = seconds % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since_epoch.subsec_micros()
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            at: UNIX_EPOCH,
            listener: "public",
            client: "127.0.0.1".parse().expect("address"),
            method: Method::GET,
            path: LoggedPath::new("/"),
            route: None,
            status: 200,
            duration: Duration::from_micros(1),
            stop: None,
        }
    }

    /// A full queue drops records and counts them instead of growing.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sender, receiver) = LogSender::channel(2);
        for _ in 0..5 {
            sender.record(record());
        }
        assert_eq!(receiver.try_iter().count(), 2);
        assert_eq!(sender.dropped.load(Ordering::Relaxed), 3);
    }

    /// Dates around leap days and epochs come out right.
    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    /// A record becomes one line, with the path escaped.
    #[test]
    fn lines() {
        let record = Record {
            at: UNIX_EPOCH + Duration::from_micros(1_763_803_833_661_752),
            listener: "public",
            client: "127.0.0.1".parse().unwrap(),
            method: Method::GET,
            path: LoggedPath::new("/a%20b/\"x\""),
            route: None,
            status: 404,
            duration: Duration::from_micros(17),
            stop: Some(StopReason {
                by: "router",
                what: "no route",
            }),
        };
        let mut line = String::new();
        format_record(&mut line, &record);
        assert_eq!(
            LoggedPath::new(&"/x".repeat(100)).as_str(),
            "/x".repeat(100)
        );
        assert_eq!(
            line,
            "2025-11-22T09:30:33.661752Z  INFO gateway::access: listener=\"public\" client=127.0.0.1 method=GET path=\"/a%20b/\\\"x\\\"\" route=\"-\" upstream=\"-\" status=404 duration_us=17 stop=\"router: no route\"\n"
        );
    }
}
