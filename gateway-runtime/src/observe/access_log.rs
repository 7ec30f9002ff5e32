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
//!
//! `[access_log] format = "json"` writes one JSON object per line instead, with the
//! field names README.md lists; `path` writes to a file, opened again on SIGUSR1 so
//! that logrotate can move it away.
//! The log is on when `RUST_LOG` enables `gateway::access` at `info` (the default).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;

use crate::message::json::quote_into;
use crate::message::response::Served;
use crate::observe::Transferred;
use crate::observe::request_id::RequestId;
use crate::observe::text::{hex, push_ip};
use crate::observe::trace::context::TraceId;
use crate::pipeline::StopReason;
use crate::route::router::RouteSpec;
use crate::settings::{Setting, SettingError};

/// `[access_log]`.
#[derive(Debug, Clone, Copy)]
pub struct AccessLogSpec {
    pub format: LogFormat,
    /// `None`: stderr.
    pub path: Option<Setting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs in the shape of the `tracing` lines around them.
    Text,
    /// One JSON object per line.
    Json,
}

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
    /// `None` unless `[gateway] request_id` is set.
    pub request_id: Option<RequestId>,
    /// The TLS version of the connection; `None` for plaintext.
    pub tls: Option<&'static str>,
    /// The request's trace; `None` unless `[tracing]` is set.
    pub trace_id: Option<TraceId>,
    /// The upstream target that answered, and how long it took.
    pub served: Option<Served>,
    /// Who an authentication step found the request came from.
    pub principal: Option<Principal>,
    /// Body bytes read from the client and written to it.
    pub transferred: Transferred,
}

/// Whom an authentication step found a request came from, as the log names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An API key's consumer, by its name in gateway.toml.
    Consumer(&'static str),
    /// A token's subject.
    Subject(Box<str>),
}

impl Principal {
    /// `(consumer, subject)`: the log's two fields.
    fn fields(principal: Option<&Principal>) -> (Option<&str>, Option<&str>) {
        match principal {
            Some(Principal::Consumer(name)) => (Some(name), None),
            Some(Principal::Subject(subject)) => (None, Some(subject)),
            None => (None, None),
        }
    }
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
/// 100,000 requests per second. Records are boxed (they wait for the response's last
/// byte in the driver's epilogue), so a slot is a pointer and a full queue holds the
/// records themselves, about 2.5 MB.
const CAPACITY: usize = 8_192;

/// The workers' end of the log: a bounded channel. When the thread falls behind (its
/// stderr blocked), a record is dropped and counted rather than queued without bound,
/// and the thread reports how many went.
#[derive(Debug, Clone)]
pub struct LogSender {
    sender: SyncSender<Box<Record>>,
    /// Touched only when a record is dropped.
    dropped: Arc<AtomicU64>,
}

impl LogSender {
    fn channel(capacity: usize) -> (Self, Receiver<Box<Record>>) {
        let (sender, receiver) = sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        (Self { sender, dropped }, receiver)
    }

    /// Hands a record to the log thread, or drops and counts it when the queue is
    /// full. A lost line is no reason to fail a request.
    pub fn record(&self, record: Box<Record>) {
        if let Err(TrySendError::Full(_)) = self.sender.try_send(record) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The log thread, once started: join it to flush at exit; set `reopen` (on SIGUSR1)
/// to have it open its file again.
#[derive(Debug)]
pub struct LogThread {
    pub thread: std::thread::JoinHandle<()>,
    pub reopen: Arc<AtomicBool>,
}

/// Starts the log thread when `gateway::access` is enabled. The thread ends once every
/// sender is dropped and the last record is written. A file that cannot be opened is
/// a start-up error.
/// `targets` names every upstream target by its id (`Catalog::targets`).
pub fn start(
    spec: &AccessLogSpec,
    targets: Vec<String>,
) -> Result<(AccessLog, Option<LogThread>), SettingError> {
    if !tracing::enabled!(target: "gateway::access", tracing::Level::INFO) {
        return Ok((None, None));
    }
    let sink = match &spec.path {
        None => Sink::Stderr,
        Some(setting) => {
            let path = setting.resolve()?;
            let file = append_to(&path).map_err(|e| {
                SettingError::new(setting.origin, format!("cannot open {path}: {e}"))
            })?;
            Sink::File { path, file }
        }
    };
    let (sender, receiver) = LogSender::channel(CAPACITY);
    let dropped = sender.dropped.clone();
    let reopen = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        format: spec.format,
        sink,
        reopen: reopen.clone(),
        targets,
    };
    let thread = std::thread::Builder::new()
        .name("gateway-access-log".into())
        .spawn(move || writer.run(&receiver, &dropped))
        .map_err(|e| {
            SettingError::new("access_log", format!("cannot start the log thread: {e}"))
        })?;
    Ok((Some(sender), Some(LogThread { thread, reopen })))
}

fn append_to(path: &str) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// Where lines go.
enum Sink {
    Stderr,
    File { path: String, file: File },
}

/// The log thread's state.
struct Writer {
    format: LogFormat,
    sink: Sink,
    reopen: Arc<AtomicBool>,
    targets: Vec<String>,
}

/// How often the log thread drains the channel. It sleeps in between instead of
/// blocking in `recv`, so that a worker's `send` never has to wake it: a wake-up is a
/// system call, and measured 4 more of them per request at full load.
const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

impl Writer {
    fn run(mut self, receiver: &Receiver<Box<Record>>, dropped: &AtomicU64) {
        // Batches of lines, written once per drain: not `stderr().lock()`, as other log
        // lines must get through between batches.
        let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut line = String::with_capacity(256);
        loop {
            if self.reopen.swap(false, Ordering::Relaxed) {
                self.reopen_file();
            }
            let disconnected = loop {
                match receiver.try_recv() {
                    Ok(record) => {
                        line.clear();
                        match self.format {
                            LogFormat::Text => format_record(&mut line, &record, &self.targets),
                            LogFormat::Json => format_json(&mut line, &record, &self.targets),
                        }
                        batch.extend_from_slice(line.as_bytes());
                        if batch.len() >= 64 * 1024 && !self.write(&mut batch) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            let lost = dropped.swap(0, Ordering::Relaxed);
            if lost > 0 {
                // Beside the access lines, on stderr: a warning about the log itself.
                let mut warning = String::new();
                write_timestamp(&mut warning, SystemTime::now());
                let _ = writeln!(
                    warning,
                    "  WARN gateway::access: dropped={lost} reason=\"the log writer fell behind\""
                );
                let _ = std::io::stderr().write_all(warning.as_bytes());
            }
            if !self.write(&mut batch) || disconnected {
                return;
            }
            std::thread::sleep(DRAIN_INTERVAL);
        }
    }

    /// Writes and empties `batch`; `false` when the sink is gone (stderr closed).
    fn write(&mut self, batch: &mut Vec<u8>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let written = match &mut self.sink {
            Sink::Stderr => std::io::stderr().write_all(batch),
            Sink::File { file, .. } => file.write_all(batch),
        };
        batch.clear();
        match (written, &self.sink) {
            (Ok(()), _) => true,
            // A full disk loses lines, not the log: later writes may succeed.
            (Err(e), Sink::File { path, .. }) => {
                tracing::warn!(path, error = %e, "cannot write the access log");
                true
            }
            (Err(_), Sink::Stderr) => false,
        }
    }

    /// Opens the file again at its path (after logrotate moved the old one away); if
    /// that fails, keeps writing to the file it has.
    fn reopen_file(&mut self) {
        if let Sink::File { path, file } = &mut self.sink {
            match append_to(path) {
                Ok(reopened) => *file = reopened,
                Err(e) => tracing::warn!(path = %path, error = %e, "cannot reopen the access log"),
            }
        }
    }
}

/// The authority of the target `served` names, and its time.
fn upstream_of(targets: &[String], served: Option<Served>) -> Option<(&str, u32)> {
    let served = served?;
    let target = targets.get(usize::try_from(served.target).ok()?)?;
    Some((target, served.micros))
}

fn format_record(line: &mut String, r: &Record, targets: &[String]) {
    write_timestamp(line, r.at);
    let (route, upstream) = r.route.map_or(("-", "-"), |spec| (spec.name, spec.target));
    // `{:?}` quotes and escapes, so a path cannot forge a line break or a field.
    let _ = writeln!(
        line,
        "  INFO gateway::access: listener={:?} client={} method={} path={:?} route={:?} upstream={:?} status={} duration_us={} bytes_received={} bytes_sent={}",
        r.listener,
        r.client,
        r.method,
        r.path.as_str(),
        route,
        upstream,
        r.status,
        r.duration.as_micros(),
        r.transferred.received,
        r.transferred.sent,
    );
    if let Some(id) = &r.request_id {
        line.pop();
        let _ = writeln!(line, " request_id={:?}", id.as_str());
    }
    if let Some(tls) = r.tls {
        line.pop();
        let _ = writeln!(line, " tls={tls}");
    }
    match Principal::fields(r.principal.as_ref()) {
        (Some(consumer), _) => {
            line.pop();
            let _ = writeln!(line, " consumer={consumer:?}");
        }
        (_, Some(subject)) => {
            line.pop();
            let _ = writeln!(line, " subject={subject:?}");
        }
        _ => {}
    }
    if let Some(trace_id) = &r.trace_id {
        line.pop();
        line.push_str(" trace_id=");
        push_hex(line, trace_id);
        line.push('\n');
    }
    if let Some((target, micros)) = upstream_of(targets, r.served) {
        line.pop();
        let _ = writeln!(
            line,
            " upstream_target={target:?} upstream_duration_us={micros}"
        );
    }
    if let Some(stop) = r.stop {
        // Fixed strings from the gateway and its configuration, quoted all the same.
        line.pop();
        let _ = writeln!(line, " stop=\"{}: {}\"", stop.by, stop.what);
    }
}

/// One JSON object: the same fields as the text line, `null` where there is none.
fn format_json(line: &mut String, r: &Record, targets: &[String]) {
    // `push_str` and `itoa` rather than `write!`: the formatting machinery was most of
    // a line's cost (callgrind).
    let mut digits = itoa::Buffer::new();
    line.push_str("{\"time\":\"");
    write_timestamp(line, r.at);
    line.push_str("\",\"listener\":");
    quote_into(line, r.listener);
    line.push_str(",\"client\":\"");
    push_ip(line, r.client);
    line.push_str("\",\"method\":");
    quote_into(line, r.method.as_str());
    line.push_str(",\"path\":");
    quote_into(line, r.path.as_str());
    let optional = |line: &mut String, key: &str, value: Option<&str>| {
        line.push_str(",\"");
        line.push_str(key);
        line.push_str("\":");
        match value {
            Some(value) => quote_into(line, value),
            None => line.push_str("null"),
        }
    };
    optional(line, "route", r.route.map(|spec| spec.name));
    optional(line, "upstream", r.route.map(|spec| spec.target));
    let upstream = upstream_of(targets, r.served);
    optional(line, "upstream_target", upstream.map(|(target, _)| target));
    line.push_str(",\"upstream_duration_us\":");
    match upstream {
        Some((_, micros)) => line.push_str(digits.format(micros)),
        None => line.push_str("null"),
    }
    line.push_str(",\"status\":");
    line.push_str(digits.format(r.status));
    line.push_str(",\"duration_us\":");
    line.push_str(digits.format(r.duration.as_micros()));
    line.push_str(",\"bytes_received\":");
    line.push_str(digits.format(r.transferred.received));
    line.push_str(",\"bytes_sent\":");
    line.push_str(digits.format(r.transferred.sent));
    optional(
        line,
        "request_id",
        r.request_id.as_ref().map(RequestId::as_str),
    );
    optional(line, "tls", r.tls);
    let (consumer, subject) = Principal::fields(r.principal.as_ref());
    optional(line, "consumer", consumer);
    optional(line, "subject", subject);
    match &r.trace_id {
        Some(trace_id) => {
            line.push_str(",\"trace_id\":\"");
            push_hex(line, trace_id);
            line.push('"');
        }
        None => line.push_str(",\"trace_id\":null"),
    }
    optional(line, "stopped_by", r.stop.map(|stop| stop.by));
    optional(line, "stop_reason", r.stop.map(|stop| stop.what));
    line.push_str("}\n");
}

/// `bytes` in lower-case hex, as W3C Trace Context writes ids.
fn push_hex(line: &mut String, id: &TraceId) {
    // Hex digits only.
    line.push_str(std::str::from_utf8(hex(id).as_flattened()).unwrap_or_default());
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
            request_id: None,
            tls: None,
            trace_id: None,
            served: None,
            principal: None,
            transferred: Transferred::default(),
        }
    }

    /// A full queue drops records and counts them instead of growing.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sender, receiver) = LogSender::channel(2);
        for _ in 0..5 {
            sender.record(Box::new(record()));
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
            request_id: None,
            tls: None,
            trace_id: None,
            served: None,
            principal: Some(Principal::Consumer("mobile")),
            transferred: Transferred {
                received: 0,
                sent: 58,
            },
        };
        let mut line = String::new();
        format_record(&mut line, &record, &[]);
        assert_eq!(
            LoggedPath::new(&"/x".repeat(100)).as_str(),
            "/x".repeat(100)
        );
        assert_eq!(
            line,
            "2025-11-22T09:30:33.661752Z  INFO gateway::access: listener=\"public\" client=127.0.0.1 method=GET path=\"/a%20b/\\\"x\\\"\" route=\"-\" upstream=\"-\" status=404 duration_us=17 bytes_received=0 bytes_sent=58 consumer=\"mobile\" stop=\"router: no route\"\n"
        );
    }

    /// A JSON line parses, with every documented field, and a path cannot break out.
    #[test]
    fn json_lines() {
        let mut record = record();
        record.path = LoggedPath::new("/a\"b\\c\u{1}");
        record.request_id = Some(RequestId::Given("req-1".into()));
        record.tls = Some("TLSv1.3");
        record.trace_id = Some([0xab; 16]);
        record.served = Some(Served {
            target: 1,
            micros: 812,
        });
        record.principal = Some(Principal::Subject("user-42".into()));
        record.transferred = Transferred {
            received: 12,
            sent: 345,
        };
        record.stop = Some(StopReason {
            by: "office",
            what: "client address not allowed",
        });
        let mut line = String::new();
        let targets = ["10.0.0.1:8001".to_owned(), "10.0.0.2:8001".to_owned()];
        format_json(&mut line, &record, &targets);
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(value["time"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(value["listener"], "public");
        assert_eq!(value["client"], "127.0.0.1");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["path"], "/a\"b\\c\u{1}");
        assert_eq!(value["route"], serde_json::Value::Null);
        assert_eq!(value["upstream"], serde_json::Value::Null);
        assert_eq!(value["status"], 200);
        assert_eq!(value["duration_us"], 1);
        assert_eq!(value["request_id"], "req-1");
        assert_eq!(value["stopped_by"], "office");
        assert_eq!(value["stop_reason"], "client address not allowed");
        assert_eq!(value["tls"], "TLSv1.3");
        assert_eq!(value["trace_id"], "ab".repeat(16));
        assert_eq!(value["upstream_target"], "10.0.0.2:8001");
        assert_eq!(value["upstream_duration_us"], 812);
        assert_eq!(value["bytes_received"], 12);
        assert_eq!(value["bytes_sent"], 345);
        assert_eq!(value["consumer"], serde_json::Value::Null);
        assert_eq!(value["subject"], "user-42");
    }
}
