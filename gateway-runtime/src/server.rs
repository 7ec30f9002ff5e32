//! Process life: start-up (settings, sockets), one worker thread per core each with
//! its own single-threaded runtime and `SO_REUSEPORT` socket, the admin listener, and
//! graceful shutdown on SIGTERM or SIGINT.
//!
//! Thread-per-core keeps every per-request structure (router, pool, round-robin
//! counter) local to one thread: no locks and no atomics on the request path
//! (../shared/PERF.md measured 7–10% less CPU than a work-stealing runtime).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use http::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::access_log::{self, AccessLog, LoggedPath, Record};
use crate::error::json_error;
use crate::fields::Fields;
use crate::gateway::{Gateway, ListenerSpec, Request, RequestContext, Response, check_settings};
use crate::http1;
use crate::prefixed::Prefixed;
use crate::request::{MaxForwards, Rejection, host, max_forwards, normalize_path, with_path};
use crate::request_body::RequestBody;
use crate::router::{Lookup, RouteTable};
use crate::settings::SettingError;
use crate::timer::ConnectionTimer;

/// Why the gateway could not start: every bad setting, or the one I/O failure.
#[derive(Debug)]
enum StartError {
    Settings(Vec<SettingError>),
    Io(String),
}

impl From<SettingError> for StartError {
    fn from(e: SettingError) -> Self {
        StartError::Settings(vec![e])
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Settings(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    let separator = if i == 0 { "" } else { "\n  " };
                    write!(f, "{separator}{e}")?;
                }
                Ok(())
            }
            StartError::Io(e) => f.write_str(e),
        }
    }
}

/// Entry point of a generated gateway: logs to stderr (`RUST_LOG` filters, default
/// `info`), runs until a signal, and exits non-zero when start-up fails.
pub fn main<G: Gateway>() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("{}\n{}", G::NAME, G::PROVENANCE);
        return ExitCode::SUCCESS;
    }
    init_logging();
    tracing::info!(
        gateway = G::NAME,
        config = G::PROVENANCE.config_file,
        sha256 = G::PROVENANCE.config_sha256,
        compiler = G::PROVENANCE.compiler,
        "starting"
    );
    match run::<G>() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cannot start gateway `{}`: {e}", G::NAME);
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A listener as one worker serves it.
struct WorkerListener {
    index: usize,
    socket: std::net::TcpListener,
    settings: ListenerSettings,
}

/// A listener's resolved settings, the same for every worker.
#[derive(Debug, Clone, Copy)]
struct ListenerSettings {
    name: &'static str,
    header_read_timeout: Duration,
    max_body: u64,
    max_header_size: usize,
    max_headers: usize,
}

impl ListenerSettings {
    fn resolve(spec: &ListenerSpec) -> Result<Self, SettingError> {
        Ok(Self {
            name: spec.name,
            header_read_timeout: spec.header_read_timeout.duration()?,
            max_body: spec
                .max_body
                .map(|s| s.size())
                .transpose()?
                .unwrap_or(u64::MAX),
            max_header_size: usize::try_from(spec.max_header_size.header_size()?)
                .unwrap_or(usize::MAX),
            max_headers: spec.max_headers,
        })
    }
}

/// A gateway holds a descriptor per connection, and the usual soft limit of 1,024 would
/// cap connections long before memory does: raise it to the hard limit, as nginx's
/// `worker_rlimit_nofile` and Go's runtime do.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open files limit");
        }
    }
}

fn run<G: Gateway>() -> Result<(), StartError> {
    raise_open_files_limit();
    let errors = check_settings::<G>();
    if !errors.is_empty() {
        return Err(StartError::Settings(errors));
    }
    let drain_timeout = G::SHUTDOWN_TIMEOUT.duration()?;
    let workers = match G::WORKERS {
        Some(workers) => workers.workers()?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut per_worker: Vec<Vec<WorkerListener>> = (0..workers).map(|_| Vec::new()).collect();
    for (index, spec) in G::LISTENERS.iter().enumerate() {
        let requested = spec.bind.bind()?;
        let settings = ListenerSettings::resolve(spec)?;
        // Port 0 picks a port once; the other workers join that same port.
        let mut addr = requested;
        for (worker, listeners) in per_worker.iter_mut().enumerate() {
            let socket = reuseport_listener(addr).map_err(|e| {
                StartError::Io(format!(
                    "{}: cannot listen on {addr}: {e}",
                    spec.bind.origin
                ))
            })?;
            if worker == 0 {
                addr = socket
                    .local_addr()
                    .map_err(|e| StartError::Io(e.to_string()))?;
                tracing::info!(listener = spec.name, %addr, workers, "listening");
            }
            listeners.push(WorkerListener {
                index,
                socket,
                settings,
            });
        }
    }

    let (log, log_thread) = access_log::start()
        .map_err(|e| StartError::Io(format!("cannot start the access log: {e}")))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(workers);
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let shutdown = shutdown_rx.clone();
        let started = started_tx.clone();
        let log = log.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{i}"))
            .spawn(move || worker::<G>(listeners, shutdown, started, log, drain_timeout))
            .map_err(|e| StartError::Io(format!("cannot start worker thread: {e}")))?;
        threads.push(thread);
    }
    drop(started_tx);
    // Each worker builds its own gateway (pools, counters) on its own thread and says
    // whether it could; start-up fails as a whole if one could not.
    for _ in 0..workers {
        let outcome = started_rx
            .recv()
            .unwrap_or_else(|_| Err(StartError::Io("a worker thread died while starting".into())));
        if let Err(e) = outcome {
            let _ = shutdown_tx.send(true);
            for thread in threads {
                let _ = thread.join();
            }
            return Err(e);
        }
    }

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Io(format!("cannot start runtime: {e}")))?;
    control.block_on(async move {
        let ready = Arc::new(AtomicBool::new(true));
        if let Some(admin) = G::ADMIN {
            let addr = admin.bind()?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Io(format!("{}: cannot listen on {addr}: {e}", admin.origin)))?;
            let addr = listener.local_addr().map_err(|e| StartError::Io(e.to_string()))?;
            tracing::info!(listener = "admin", %addr, "listening");
            tokio::spawn(crate::admin::serve(listener, ready.clone()));
        }
        wait_for_signal().await;
        tracing::info!(drain_timeout = ?drain_timeout, "shutting down: finishing in-flight requests");
        ready.store(false, Ordering::Relaxed);
        let _ = shutdown_tx.send(true);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        // Every worker has dropped its senders; the last one lets the log thread finish.
        drop(log);
        if let Some(thread) = log_thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Spawns `!Send` futures (HTTP/2 streams) on the worker's local task set.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

fn worker<G: Gateway>(
    listeners: Vec<WorkerListener>,
    mut shutdown: watch::Receiver<bool>,
    started: std::sync::mpsc::Sender<Result<(), StartError>>,
    log: AccessLog,
    drain_timeout: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err(StartError::Io(format!(
                "cannot start worker runtime: {e}"
            ))));
            return;
        }
    };
    let gateway = match G::new() {
        Ok(gateway) => Rc::new(gateway),
        Err(e) => {
            let _ = started.send(Err(e.into()));
            return;
        }
    };
    let _ = started.send(Ok(()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
        let connections = Shutdown {
            signal: shutdown.clone(),
            alive,
            http2: Rc::new(GracefulShutdown::new()),
        };
        let mut accept_loops = Vec::new();
        for listener in listeners {
            let table = Rc::new(RouteTable::new(G::ROUTES, listener.index));
            let socket = match tokio::net::TcpListener::from_std(listener.socket) {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::error!(listener = listener.settings.name, error = %e, "cannot register listener");
                    continue;
                }
            };
            accept_loops.push(tokio::task::spawn_local(accept_loop(
                gateway.clone(),
                table,
                socket,
                listener.settings,
                connections.clone(),
                log.clone(),
            )));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        // Closing the sockets first sends new connections to no one rather than to a
        // worker that is about to go away.
        for accept in &accept_loops {
            accept.abort();
        }
        for accept in accept_loops {
            let _ = accept.await;
        }
        let Shutdown { alive, http2, .. } = connections;
        drop(alive);
        let drained = async move {
            // HTTP/1.1 connections close once idle, or after their in-flight response.
            let _ = all_closed.recv().await;
            // HTTP/2 connections are being told to go away meanwhile.
            match Rc::try_unwrap(http2) {
                Ok(graceful) => graceful.shutdown().await,
                Err(_) => tracing::error!("HTTP/2 shutdown still shared; closing connections"),
            }
        };
        if tokio::time::timeout(drain_timeout, drained).await.is_err() {
            tracing::warn!("drain timeout reached; closing the remaining connections");
        }
    });
}

/// What every connection of one worker shares for shutting down.
#[derive(Clone)]
struct Shutdown {
    /// Turns true when the worker stops taking requests.
    signal: watch::Receiver<bool>,
    /// Held by every HTTP/1.1 connection: the worker waits until all are dropped.
    alive: tokio::sync::mpsc::Sender<()>,
    /// Tracks HTTP/2 connections, which hyper serves.
    http2: Rc<GracefulShutdown>,
}

async fn accept_loop<G: Gateway>(
    gateway: Rc<G>,
    table: Rc<RouteTable<'static>>,
    socket: tokio::net::TcpListener,
    settings: ListenerSettings,
    shutdown: Shutdown,
    log: AccessLog,
) {
    let listener = settings.name;
    let limits = http1::HeadLimits {
        header_read_timeout: settings.header_read_timeout,
        max_header_size: settings.max_header_size,
        max_headers: settings.max_headers,
    };
    loop {
        let (stream, client) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client_ip = HeaderValue::from_str(&client.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let connection = Rc::new(Connection {
            gateway: gateway.clone(),
            table: table.clone(),
            cx: RequestContext {
                listener,
                max_body: settings.max_body,
                client,
                client_ip,
                response_timer: ConnectionTimer::default(),
            },
            log: log.clone(),
        });
        let shutdown = shutdown.clone();
        tokio::task::spawn_local(async move {
            let ended =
                http1::serve(stream, limits, shutdown.signal, |req| connection.serve(req)).await;
            drop(shutdown.alive);
            if let http1::Ended::Http2(stream, preface) = ended {
                connection.cx.response_timer.set_multiplexed();
                serve_http2(stream, preface, connection, &settings, &shutdown.http2).await;
            }
        });
    }
}

/// Serves a connection that opened with the HTTP/2 preface (h2c with prior
/// knowledge) with hyper's HTTP/2 server.
async fn serve_http2<G: Gateway>(
    stream: tokio::net::TcpStream,
    preface: bytes::BytesMut,
    connection: Rc<Connection<G>>,
    settings: &ListenerSettings,
    graceful: &GracefulShutdown,
) {
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let connection = connection.clone();
        async move {
            let (parts, body) = req.into_parts();
            let req = Request {
                fields: Fields::from_header_map(&parts.headers),
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                body: RequestBody::Http2(body),
            };
            Ok::<_, Infallible>(connection.serve(req).await.into_http())
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
    let io = TokioIo::new(Prefixed::new(preface, stream));
    let watched = graceful.watch(builder.serve_connection(io, service));
    if let Err(e) = watched.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// One client connection's view of the gateway.
struct Connection<G> {
    gateway: Rc<G>,
    table: Rc<RouteTable<'static>>,
    cx: RequestContext,
    log: AccessLog,
}

impl<G: Gateway> Connection<G> {
    /// Runs one request through the phases and writes its access-log line.
    ///
    /// This and `dispatch` return `async` blocks rather than being `async fn`s: an
    /// `async fn` moves its arguments into locals and its future keeps room for both
    /// copies (rust-lang/rust#62958), so each level of the request's future carried the
    /// request twice, and copied it.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice"
    )]
    fn serve(&self, req: Request) -> impl Future<Output = Response> + '_ {
        async move {
            // One `await` for both cases: two would give the future two dispatch slots.
            let logged = self.log.as_ref().map(|_| {
                let path = LoggedPath::new(req.uri.path());
                (SystemTime::now(), Instant::now(), req.method.clone(), path)
            });
            let (response, route) = self.dispatch(req).await;
            if let (Some(log), Some((at, start, method, path))) = (&self.log, logged) {
                // The log thread may be gone only at exit; a lost line then is no reason
                // to fail.
                let _ = log.send(Record {
                    at,
                    listener: self.cx.listener,
                    client: self.cx.client.ip(),
                    method,
                    path,
                    route: route.map(|id| &G::ROUTES[id]),
                    status: response.status().as_u16(),
                    duration: start.elapsed(),
                });
            }
            response
        }
    }

    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice"
    )]
    fn dispatch(&self, mut req: Request) -> impl Future<Output = (Response, Option<usize>)> + '_ {
        async move {
            // The router and the upstream must see the same path, so the normal form
            // replaces the request's own.
            match normalize_path(req.uri.path()) {
                Ok(None) => {}
                Ok(Some(normal)) => match with_path(&req.uri, &normal) {
                    Some(uri) => req.uri = uri,
                    None => return (json_error(StatusCode::BAD_REQUEST, "invalid path"), None),
                },
                Err(rejection) => return (reject(rejection), None),
            }
            // A cheap clone (reference-counted parts) that the route's parameters borrow,
            // so that the request itself can move on to the upstream.
            let uri = req.uri.clone();
            let lookup = match host(&req.uri, req.version, &req.fields) {
                Ok(host) => self.table.lookup(host, &req.method, uri.path()),
                Err(rejection) => return (reject(rejection), None),
            };
            match lookup {
                Lookup::Found { route, params } => {
                    match max_forwards(&req.method, &mut req.fields) {
                        Ok(MaxForwards::Forward) => {
                            let response = self.gateway.handle(route, &params, req, &self.cx).await;
                            (response, Some(route))
                        }
                        Ok(MaxForwards::Answer) => (self.answer_locally(&req), Some(route)),
                        Err(rejection) => (reject(rejection), None),
                    }
                }
                Lookup::MethodNotAllowed(methods) => {
                    let response = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                    (with_allow(response, methods), None)
                }
                Lookup::NotFound => (json_error(StatusCode::NOT_FOUND, "no route"), None),
            }
        }
    }
}

impl<G: Gateway> Connection<G> {
    /// The answer to an OPTIONS or TRACE request whose `Max-Forwards` reached zero: the
    /// gateway is then the final recipient (RFC 9110 §7.6.2). OPTIONS gets the methods
    /// routed for the path; TRACE is refused rather than echoed, as echoing a request
    /// back exposes its credentials to scripts (cross-site tracing).
    fn answer_locally(&self, req: &Request) -> Response {
        let host = host(&req.uri, req.version, &req.fields).ok().flatten();
        let allowed = self.table.allowed(host, req.uri.path());
        if req.method == http::Method::OPTIONS {
            let response = Response::new(
                StatusCode::OK,
                Fields::with_capacity(1, 64),
                crate::body::Body::local(""),
            );
            with_allow(response, allowed)
        } else {
            let refused = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "TRACE is not answered by the gateway",
            );
            with_allow(refused, allowed.without(&http::Method::TRACE))
        }
    }
}

fn with_allow(mut response: Response, methods: crate::methods::MethodSet) -> Response {
    response
        .fields_mut()
        .append(b"allow", methods.allow_header().as_bytes());
    response
}

fn reject(rejection: Rejection) -> Response {
    json_error(rejection.status, rejection.message)
}
