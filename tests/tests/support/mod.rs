//! Test support: real upstream servers, the real gateway binary as a child process,
//! and a real HTTP client. Nothing here is mocked.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support"
)]
#![allow(
    clippy::disallowed_types,
    reason = "test upstreams record requests from several tasks; not the gateway's request path"
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub mod auth;
pub mod json;
pub mod jwt;
pub mod tls;

// === directories ===

/// A fresh directory for one test's files (certificates, keys, logs, a Prometheus
/// configuration), removed with it even when the test fails, so that runs leave
/// nothing behind in the temporary directory.
pub fn directory(test: &str) -> TestDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gateway-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("test directory");
    TestDir(dir)
}

/// A test's directory; removed when dropped.
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === bodies ===

/// A deterministic body of `len` bytes, produced in 64 KiB frames without ever being
/// held in memory whole: byte `i` is `i % 251`.
#[derive(Debug, Clone)]
pub struct PatternBody {
    len: u64,
    sent: u64,
}

impl PatternBody {
    pub fn new(len: u64) -> Self {
        Self { len, sent: 0 }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent == self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.sent).min(64 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + n)
            .map(|i| (i % 251) as u8)
            .collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent)
    }
}

/// Checks a streamed body against the pattern as it arrives; returns its length, or
/// the offset of the first wrong byte.
pub async fn check_pattern<B>(mut body: B) -> Result<u64, String>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body error at {offset}: {e:?}"))?;
        if let Ok(data) = frame.into_data() {
            for &b in data.iter() {
                if b != (offset % 251) as u8 {
                    return Err(format!("wrong byte at offset {offset}"));
                }
                offset += 1;
            }
        }
    }
    Ok(offset)
}

/// The request body type of the test client.
#[derive(Debug)]
pub enum TestBody {
    Full(Full<Bytes>),
    Pattern(PatternBody),
    /// Sends its bytes, then never anything more: a client that stalls mid-body.
    Stalling(Option<Bytes>),
}

impl TestBody {
    pub fn empty() -> Self {
        TestBody::Full(Full::new(Bytes::new()))
    }
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            TestBody::Full(b) => Pin::new(b).poll_frame(cx),
            TestBody::Pattern(b) => Pin::new(b).poll_frame(cx),
            TestBody::Stalling(bytes) => match bytes.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Poll::Pending,
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Full(b) => b.size_hint(),
            TestBody::Pattern(b) => b.size_hint(),
            TestBody::Stalling(_) => SizeHint::default(),
        }
    }
}

// === upstreams ===

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub headers: HeaderMap,
}

/// A real HTTP/1.1 server on an ephemeral loopback port that records every request.
///
/// Paths it understands: `/slow` (answers after 3 s), `…/upload` (answers with the
/// length of a pattern body, or 422), `…/download?bytes=N` (streams a pattern body),
/// `…/wait?ms=N` (answers after N ms), `…/hop` (answers with hop-by-hop headers),
/// `…/nocontent` (204);
/// anything else gets `{"upstream": NAME, "target": PATH?QUERY}`.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        Upstream::serve(name, None).await
    }

    /// An upstream on a new port; with `tls`, each connection's handshake comes first
    /// and a connection is counted once it has finished.
    async fn serve(name: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let upstream = Upstream {
            addr: listener.local_addr().expect("upstream address"),
            seen: Arc::default(),
            connections: Arc::default(),
        };
        let shared = upstream.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (shared, tls) = (shared.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => shared.answer_http1(name, stream).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                shared.answer_http1(name, stream).await;
                            }
                        }
                    }
                });
            }
        });
        upstream
    }

    async fn answer_http1<IO>(&self, name: &'static str, stream: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.connections.fetch_add(1, Ordering::SeqCst);
        let seen = self.seen.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let seen = seen.clone();
            async move { Ok::<_, Infallible>(answer(name, req, seen).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

fn query_value(target: &str, key: &str) -> Option<u64> {
    let query = target.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Response<TestBody> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |pq| pq.to_string());
    seen.lock().expect("seen lock").push(Seen {
        method: req.method().to_string(),
        target: target.clone(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_owned();
    let json = |body: String| {
        Response::builder()
            .header("content-type", "application/json")
            .body(TestBody::Full(Full::new(Bytes::from(body))))
            .expect("response")
    };
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return json("{}".into());
    }
    if path.ends_with("/upload") {
        return match check_pattern(req.into_body()).await {
            Ok(len) => json(format!(r#"{{"len":{len}}}"#)),
            Err(e) => {
                let mut r = json(format!(r#"{{"error":"{e}"}}"#));
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                r
            }
        };
    }
    if path.ends_with("/download") {
        let len = query_value(&target, "bytes").unwrap_or(0);
        return Response::new(TestBody::Pattern(PatternBody::new(len)));
    }
    if path.ends_with("/wait") {
        let ms = query_value(&target, "ms").unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return json(format!(r#"{{"waited":{ms}}}"#));
    }
    if path.ends_with("/nocontent") {
        let mut r = Response::new(TestBody::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        return r;
    }
    if path.ends_with("/tagged") {
        let mut r = json(format!(r#"{{"upstream":"{name}","target":"{target}"}}"#));
        r.headers_mut()
            .insert("x-internal", "secret".parse().expect("value"));
        r.headers_mut()
            .insert("x-upstream-public", "1".parse().expect("value"));
        return r;
    }
    if path.ends_with("/hop") {
        let mut r = json("{}".into());
        r.headers_mut()
            .insert("connection", "x-upstream-private".parse().expect("value"));
        r.headers_mut()
            .insert("x-upstream-private", "1".parse().expect("value"));
        r.headers_mut()
            .insert("keep-alive", "timeout=5".parse().expect("value"));
        r.headers_mut()
            .insert("x-upstream-public", "1".parse().expect("value"));
        return r;
    }
    json(format!(r#"{{"upstream":"{name}","target":"{target}"}}"#))
}

/// A listener that never accepts, with its accept queue already full: the kernel drops
/// further SYNs, so a connection attempt hangs until the connecting side gives up.
/// Keep the returned value alive for as long as the address must stall.
pub fn stalled_listener() -> (SocketAddr, Vec<std::net::TcpStream>, socket2::Socket) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("inet address");
    let mut fillers = Vec::new();
    while fillers.len() < 8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
    }
    (addr, fillers, socket)
}

/// An HTTP/1.1 upstream written byte by byte, for responses no well-behaved server
/// sends. It reads each request head, and the body when `read_body` (by
/// Content-Length or up to the last chunk), records the request, and writes `reply`
/// verbatim; with `close` it then closes the connection without announcing it.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// Every request received, head and body, as text.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl ScriptedUpstream {
    pub async fn start(reply: &'static [u8], close: bool, read_body: bool) -> ScriptedUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let complete = |data: &[u8]| {
                            let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
                            if !read_body {
                                return Some(end);
                            }
                            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                            if head.contains("transfer-encoding: chunked") {
                                let last =
                                    data[end..].windows(5).position(|w| w == b"0\r\n\r\n")?;
                                return Some(end + last + 5);
                            }
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            (data.len() >= end + length).then_some(end + length)
                        };
                        let end = loop {
                            if let Some(end) = complete(&pending) {
                                break end;
                            }
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                        };
                        let request: Vec<u8> = pending.drain(..end).collect();
                        log.lock()
                            .expect("log")
                            .push(String::from_utf8_lossy(&request).into_owned());
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                        if close {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        ScriptedUpstream {
            addr,
            accepted,
            requests,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An address on which nothing listens: bound, then released.
pub fn refused_addr() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address")
}

// === the gateway process ===

/// A gateway binary running as a child process, killed on drop.
pub struct Gateway {
    pub child: Child,
    /// Listener name → bound address, from the gateway's own `listening` log lines.
    pub listeners: HashMap<String, SocketAddr>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// The binary built from `gateways/e2e.toml` by build.rs.
pub const BUILD_RS_GATEWAY: &str = env!("CARGO_BIN_EXE_e2e-gateway");
/// The same configuration compiled by the `gateway!` macro.
pub const MACRO_GATEWAY: &str = env!("CARGO_BIN_EXE_e2e-gateway-macro");

impl Gateway {
    /// Starts `binary` with `env` and waits for its listeners (at most 10 s).
    pub fn start(binary: &str, env: &[(&str, String)]) -> Result<Gateway, String> {
        // main, internal, fenced, guarded and admin.
        Gateway::start_in(binary, env, None, 5)
    }

    /// Starts `binary` in `dir` (where its `${file:…}` settings are found) and waits
    /// for `expected` listeners.
    pub fn start_in(
        binary: &str,
        env: &[(&str, String)],
        dir: Option<&std::path::Path>,
        expected: usize,
    ) -> Result<Gateway, String> {
        let mut command = Command::new(binary);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {binary}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(listener) = listening(&line) {
                    let _ = tx.send(listener);
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let mut listeners = HashMap::new();
        while listeners.len() < expected {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok((name, addr)) => {
                    listeners.insert(name, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(logs.lock().expect("log lock").join("\n"));
                }
            }
        }
        Ok(Gateway {
            child,
            listeners,
            logs,
        })
    }

    /// The e2e gateway with `url` as the upstream reached under `/scripted/`, every
    /// other upstream unreachable, and `extra` variables.
    pub fn scripted(url: String, extra: &[(&str, String)]) -> Gateway {
        let unused = || format!("http://{}", refused_addr());
        let mut env = vec![
            ("USERS_A", unused()),
            ("USERS_B", unused()),
            ("ORDERS", unused()),
            ("DEAD", unused()),
            ("STALLED", unused()),
            ("SCRIPTED", url),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        Gateway::start(BUILD_RS_GATEWAY, &env)
            .unwrap_or_else(|logs| panic!("gateway did not start:\n{logs}"))
    }

    /// The e2e gateway wired to the given upstreams.
    pub fn e2e(
        binary: &str,
        users_a: &Upstream,
        users_b: &Upstream,
        orders: &Upstream,
        extra: &[(&str, String)],
    ) -> Gateway {
        let mut env = vec![
            ("USERS_A", users_a.url()),
            ("USERS_B", users_b.url()),
            ("ORDERS", orders.url()),
            ("DEAD", format!("http://{}", refused_addr())),
            ("STALLED", format!("http://{}", refused_addr())),
            ("SCRIPTED", format!("http://{}", refused_addr())),
        ];
        // Later entries win: a test may point an upstream elsewhere.
        env.extend(extra.iter().cloned());
        Gateway::start(binary, &env).unwrap_or_else(|logs| panic!("gateway did not start:\n{logs}"))
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr("main"))
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Sends SIGTERM, as an orchestrator stopping the gateway would.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` to the gateway process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we own and a valid signal number; no memory involved.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill failed");
    }

    /// Peak resident memory of the gateway process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(listener, addr)` from a line like `... listening listener="main" addr=127.0.0.1:4321 ...`.
fn listening(line: &str) -> Option<(String, SocketAddr)> {
    if !line.contains(" listening ") {
        return None;
    }
    let name = line
        .split("listener=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_owned();
    let addr = line
        .split(" addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((name, addr))
}

// === clients ===

pub type HttpClient = Client<HttpConnector, TestBody>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn send(client: &HttpClient, req: Request<TestBody>) -> Reply {
    let response = client
        .request(req)
        .await
        .expect("request through the gateway");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &HttpClient, url: &str) -> Reply {
    send(
        client,
        Request::get(url).body(TestBody::empty()).expect("request"),
    )
    .await
}

/// The e2e gateway `binary` in front of three upstreams of its own.
pub struct E2e {
    pub users_a: Upstream,
    pub users_b: Upstream,
    pub orders: Upstream,
    pub gateway: Gateway,
}

impl E2e {
    pub async fn start(binary: &str, extra: &[(&str, String)]) -> E2e {
        let users_a = Upstream::start("users-a").await;
        let users_b = Upstream::start("users-b").await;
        let orders = Upstream::start("orders").await;
        let gateway = Gateway::e2e(binary, &users_a, &users_b, &orders, extra);
        E2e {
            users_a,
            users_b,
            orders,
            gateway,
        }
    }
}

/// Writes raw bytes on a new connection and reads until the server closes it or
/// stays silent for a second: for requests no well-behaved client would send.
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    raw_from([127, 0, 0, 1], addr, request)
}

/// `raw`, from a loopback address of the caller's choice (all of 127.0.0.0/8 is
/// local), so that IP rules can be tested with real peers.
pub fn raw_from(source: [u8; 4], addr: SocketAddr, request: &[u8]) -> String {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
