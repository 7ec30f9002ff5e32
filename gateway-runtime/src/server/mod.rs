//! Process life: start-up (settings, sockets), one worker thread per core each with
//! its own single-threaded runtime and `SO_REUSEPORT` socket, the admin listener, and
//! graceful shutdown on SIGTERM or SIGINT.
//!
//! Thread-per-core keeps every per-request structure (router, pool, round-robin
//! counter) local to one thread: no locks and no atomics on the request path
//! (../shared/PERF.md measured 7–10% less CPU than a work-stealing runtime).

mod admin;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::HeaderValue;
use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::h1::server as http1;
use crate::io::Stream;
use crate::message::request::{PathParameters, Underscores};
use crate::observe::access_log::{self, AccessLog};
use crate::observe::metrics::{Catalog, Protocol, Registry, Shard, TlsFailure};
use crate::observe::trace::Exporter;
use crate::pipeline::gateway::{Gateway, ListenerSpec, check_settings};
use crate::pipeline::{Connection, ConnectionTls, RequestContext};
use crate::route::router::RouteTable;
use crate::settings::SettingError;
use crate::timer::ConnectionTimer;
use crate::tls::listener::ListenerTls;
use crate::tls::reload::{self, ReloadStatus};
use bytes::BytesMut;

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
    /// Shared by every worker; `None` on a plaintext listener.
    tls: Option<Arc<ListenerTls>>,
}

/// A listener's resolved settings, the same for every worker.
#[derive(Debug, Clone, Copy)]
struct ListenerSettings {
    name: &'static str,
    header_read_timeout: Duration,
    body_timeout: Duration,
    send_timeout: Duration,
    max_body: u64,
    max_concurrent_streams: u32,
    max_header_size: usize,
    max_headers: usize,
    underscores: Underscores,
    path_parameters: PathParameters,
    https_redirect: Option<u16>,
}

impl ListenerSettings {
    fn resolve(spec: &ListenerSpec) -> Result<Self, SettingError> {
        Ok(Self {
            name: spec.name,
            header_read_timeout: spec.header_read_timeout.duration()?,
            body_timeout: spec.body_timeout.duration()?,
            send_timeout: spec.send_timeout.duration()?,
            max_concurrent_streams: spec.max_concurrent_streams,
            max_body: spec
                .max_body
                .map(|s| s.size())
                .transpose()?
                .unwrap_or(u64::MAX),
            max_header_size: usize::try_from(spec.max_header_size.header_size()?)
                .unwrap_or(usize::MAX),
            max_headers: spec.max_headers,
            underscores: spec.underscores,
            path_parameters: spec.path_parameters,
            https_redirect: spec.https_redirect,
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
    // Every setting is checked, and the shared state built, before anything listens:
    // start-up names every problem at once.
    let mut errors = check_settings::<G>();
    let shared = match G::shared() {
        Ok(shared) => Some(Arc::new(shared)),
        Err(more) => {
            errors.extend(more);
            None
        }
    };
    // Every certificate and key is loaded and checked with the other settings.
    let mut tls = Vec::new();
    for spec in G::LISTENERS {
        match &spec.tls {
            Some(tls_spec) => match (
                reload::Files::of(tls_spec),
                ListenerTls::new(spec.name, tls_spec),
            ) {
                (files, Ok((listener, loaded))) => {
                    let listener = Arc::new(listener);
                    let watched = reload::Watched::new(listener.clone(), files, &loaded);
                    tls.push(Some((listener, watched)));
                }
                (_, Err(more)) => {
                    errors.extend(more);
                    tls.push(None);
                }
            },
            None => tls.push(None),
        }
    }
    let Some(shared) = shared.filter(|_| errors.is_empty()) else {
        // A missing file or variable is met by the settings check and by the TLS
        // loader alike: name it once.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert(e.to_string()));
        return Err(StartError::Settings(errors));
    };
    // Key sets the JWT policies verify with are fetched before anything listens.
    let fetch = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Io(format!("cannot start runtime: {e}")))?;
    let errors = fetch.block_on(G::key_sets(&shared).fetch_all());
    drop(fetch);
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
                tls: tls[index].as_ref().map(|(tls, _)| tls.clone()),
            });
        }
    }

    let (exporter, tracing) = match &G::TRACING {
        Some(spec) => {
            let (exporter, sinks, stats) = Exporter::start(spec, G::NAME, workers)
                .map_err(|e| StartError::Settings(vec![e]))?;
            (Some(exporter), Some((sinks, stats)))
        }
        None => (None, None),
    };
    let registry = Registry::leak(Catalog::of::<G>(), workers, tracing);
    let started = std::time::Instant::now();
    let (log, log_thread) = access_log::start(&G::ACCESS_LOG, target_names(registry))
        .map_err(|e| StartError::Settings(vec![e]))?;
    let reopen = log_thread.as_ref().map(|log| log.reopen.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(workers);
    // The control thread keeps the key sets fresh.
    let key_sets_of = shared.clone();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let shutdown = shutdown_rx.clone();
        let started = started_tx.clone();
        let log = log.clone();
        let shared = shared.clone();
        let metrics = registry.shard(i);
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{i}"))
            .spawn(move || {
                let state = WorkerState {
                    shared,
                    log,
                    metrics,
                };
                worker::<G>(listeners, state, shutdown, started, drain_timeout)
            })
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
        let reloads = Arc::new(ReloadStatus::default());
        let watched = tls.into_iter().flatten().map(|(_, watched)| watched).collect();
        tokio::spawn(reload::run(watched, reloads.clone()));
        G::key_sets(&key_sets_of).spawn_refreshes();
        tokio::spawn(reopen_on_sigusr1(reopen));
        if let Some(admin) = G::ADMIN {
            let addr = admin.addr()?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Io(format!("{}: cannot listen on {addr}: {e}", admin.bind.origin)))?;
            let addr = listener.local_addr().map_err(|e| StartError::Io(e.to_string()))?;
            tracing::info!(listener = "admin", %addr, "listening");
            let views = admin::Views {
                registry,
                routes: G::ROUTES,
                info: G::ROUTE_INFO,
                listeners: G::LISTENERS,
                started,
            };
            tokio::spawn(admin::serve(listener, ready.clone(), reloads, views));
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
        if let Some(log) = log_thread {
            let _ = tokio::task::spawn_blocking(move || log.thread.join()).await;
        }
        // Bounded by the exporter's own timeouts: one last export.
        if let Some(exporter) = exporter {
            let _ = tokio::task::spawn_blocking(move || exporter.finish()).await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Every upstream target's authority, by its id: the names the access log writes.
fn target_names(registry: &Registry) -> Vec<String> {
    registry
        .catalog()
        .targets()
        .map(|(_, _, target)| target.to_owned())
        .collect()
}

/// SIGUSR1 has the access log open its file again, as nginx's USR1 does for log
/// rotation. Handled even with no file, so that a rotation script's signal never
/// stops the gateway (SIGUSR1's default action).
async fn reopen_on_sigusr1(reopen: Option<Arc<AtomicBool>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::warn!("cannot install the SIGUSR1 handler: the access log cannot be reopened");
        return;
    };
    while usr1.recv().await.is_some() {
        if let Some(reopen) = &reopen {
            reopen.store(true, Ordering::Relaxed);
        }
    }
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

/// What a worker is handed by start-up: everything built once for all workers.
struct WorkerState<G: Gateway> {
    shared: Arc<G::Shared>,
    log: AccessLog,
    /// This worker's shard of the metrics.
    metrics: &'static Shard,
}

fn worker<G: Gateway>(
    listeners: Vec<WorkerListener>,
    state: WorkerState<G>,
    mut shutdown: watch::Receiver<bool>,
    started: std::sync::mpsc::Sender<Result<(), StartError>>,
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
    let WorkerState {
        shared,
        log,
        metrics,
    } = state;
    let gateway = match G::new(shared, metrics) {
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
        };
        let mut accept_loops = Vec::new();
        for WorkerListener { index, socket, settings, tls } in listeners {
            // Per worker, like the pools: a lookup touches nothing another thread writes.
            let table = Rc::new(RouteTable::new(G::ROUTES, index));
            let socket = match tokio::net::TcpListener::from_std(socket) {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::error!(listener = settings.name, error = %e, "cannot register listener");
                    continue;
                }
            };
            let serving = Serving { listener_id: index, settings, tls };
            accept_loops.push(tokio::task::spawn_local(accept_loop(
                gateway.clone(),
                table,
                serving,
                socket,
                connections.clone(),
                (log.clone(), metrics),
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
        drop(connections.alive);
        // Connections close once idle, or after their in-flight responses; HTTP/2
        // ones are told to go away.
        let drained = async move {
            let _ = all_closed.recv().await;
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
    /// Held by every connection: the worker waits until all are dropped.
    alive: tokio::sync::mpsc::Sender<()>,
}

/// What an accept loop serves its connections with.
struct Serving {
    listener_id: usize,
    settings: ListenerSettings,
    tls: Option<Arc<ListenerTls>>,
}

async fn accept_loop<G: Gateway>(
    gateway: Rc<G>,
    table: Rc<RouteTable<'static>>,
    serving: Serving,
    socket: tokio::net::TcpListener,
    shutdown: Shutdown,
    (log, metrics): (AccessLog, &'static Shard),
) {
    let Serving {
        listener_id,
        settings,
        tls,
    } = serving;
    let listener = settings.name;
    let limits = Rc::new(http1::ClientLimits {
        header_read_timeout: settings.header_read_timeout,
        body_timeout: settings.body_timeout,
        send_timeout: settings.send_timeout,
        max_header_size: settings.max_header_size,
        max_headers: settings.max_headers,
        max_concurrent_streams: settings.max_concurrent_streams,
    });
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
        // The connection phase.
        let (admission, refused) = match gateway.connection(listener_id, client.ip()) {
            Ok(admission) => (admission, None),
            Err(refusal) => (Default::default(), Some(refusal)),
        };
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        let gateway = gateway.clone();
        let table = table.clone();
        let log = log.clone();
        let tls = tls.clone();
        tokio::task::spawn_local(async move {
            let (stream, h2, tls) = match tls {
                None => (Stream::Tcp(stream), false, None),
                Some(tls) => match tls.accept(stream, limits.header_read_timeout).await {
                    Ok(accepted) => {
                        metrics.tls_handshake(listener_id);
                        let cx = ConnectionTls {
                            spec: tls.spec,
                            identity: accepted.identity,
                            version: accepted.version,
                        };
                        (accepted.stream, accepted.h2, Some(cx))
                    }
                    Err(e) => {
                        // Scanners and port probes fail here all day: not a warning.
                        tracing::debug!(listener, %client, error = %e, "TLS handshake failed");
                        metrics.tls_failure(listener_id, TlsFailure::from(&e));
                        return;
                    }
                },
            };
            let connection = Rc::new(Connection {
                gateway,
                table,
                cx: RequestContext {
                    listener,
                    listener_id,
                    max_body: settings.max_body,
                    underscores: settings.underscores,
                    path_parameters: settings.path_parameters,
                    client,
                    client_ip,
                    admission,
                    response_timer: ConnectionTimer::default(),
                    tls,
                    https_redirect: settings.https_redirect,
                },
                refused,
                log,
                metrics,
            });
            let signal = shutdown.signal.clone();
            if h2 {
                let _open = metrics.connection(listener_id, Protocol::H2);
                connection.cx.response_timer.set_multiplexed();
                crate::h2::serve(stream, BytesMut::new(), connection, limits, signal).await;
            } else {
                let mut open = metrics.connection(listener_id, Protocol::Http1);
                let service = |req| connection.serve(req);
                let finish = |epilogue, transferred| connection.finish(epilogue, transferred);
                let ended = http1::serve(stream, &limits, signal, service, finish).await;
                if let http1::Ended::Http2(stream, preface) = ended {
                    open.now_h2();
                    connection.cx.response_timer.set_multiplexed();
                    crate::h2::serve(stream, preface, connection, limits, shutdown.signal).await;
                }
            }
            drop(shutdown.alive);
        });
    }
}
