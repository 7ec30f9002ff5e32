//! Keep-alive connections to one upstream target, owned by one worker thread.
//!
//! A LIFO stack of idle connections: the most recently used is the warmest and the
//! least likely to have been closed by the upstream. A connection returns to the stack
//! when its response body has been read to the end, so every pooled connection is
//! free; checkout drops the closed, the idle-expired and the too old. Being per
//! thread, the stack needs no lock and no hashing (../shared/PERF.md measured -23%
//! instructions per request against hyper-util's shared pool).
//!
//! While a pool holds idle connections, a task sweeps it every `SWEEP_INTERVAL`:
//! connections the upstream closed are let go within that time rather than sitting
//! in CLOSE_WAIT until the next checkout, and idle-expired ones close on time. The
//! sweep costs no system call per connection unless its socket turned readable, and
//! the request path nothing but a flag check.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::net::TcpStream;

use crate::io::Stream;
use crate::observe::metrics::PoolGauges;
use crate::observe::metrics::cells::Gauge;
use crate::tls::upstream::TlsTarget;

use crate::h1::read_buffer::ReadBuffer;

/// Connections older than this are not reused, so that DNS changes and upstream
/// rebalancing reach long-running gateways.
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// Most idle connections kept per target and worker, as nginx's `keepalive`: a burst
/// of concurrent requests opens as many connections as it needs, and all but these
/// close once it has passed.
const MAX_IDLE: usize = 128;
/// How often a pool with idle connections looks for closed and expired ones.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One open connection, with its buffers.
#[derive(Debug)]
pub struct Connection {
    pub stream: Stream,
    pub read: ReadBuffer,
    /// The request head being written; kept for its capacity.
    pub write_buf: Vec<u8>,
    /// Not reused after this: created + `MAX_LIFETIME`.
    retire_at: Instant,
    /// Not reused after this: returned + the idle timeout. Deadlines rather than
    /// timestamps, so that checkout compares instants instead of subtracting them.
    idle_until: Instant,
    /// True once it has carried a request: a failure on it may be staleness.
    pub reused: bool,
    /// Counts it as open until it is dropped.
    _open: Open,
}

/// A connection counted in its target's `open` gauge.
#[derive(Debug)]
struct Open(&'static Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// Largest request buffer a pooled connection keeps between requests; one that held a
/// large body is let go.
const KEPT_WRITE_BUF: usize = 16 * 1024;

impl Connection {
    /// Whether it may carry another request: not idle too long, not too old, and
    /// not closed by the upstream (nor sent bytes nobody asked for) while it sat in
    /// the pool. Costs no system call unless the socket was reported readable.
    #[inline]
    fn is_usable(&mut self, now: Instant) -> bool {
        now <= self.idle_until
            && now <= self.retire_at
            && !self.stream.poll_peer_activity(&mut self.read.bytes)
    }
}

/// The pool of one target.
#[derive(Debug)]
pub struct Pool {
    /// Boxed, so that a connection moves as a pointer: a response body holds its
    /// connection, and a response is moved several times on its way out (measured
    /// 12,375 -> 11,873 instructions per request against the connection inline).
    #[allow(
        clippy::vec_box,
        reason = "connections leave the pool as the boxes the bodies hold; unboxed, each checkout would allocate"
    )]
    idle: RefCell<Vec<Box<Connection>>>,
    idle_timeout: Duration,
    /// A sweeping task is running.
    sweeping: Cell<bool>,
    gauges: PoolGauges,
}

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    TimedOut,
    Io(std::io::Error),
    /// The TCP connection was made, the TLS handshake failed.
    Tls(std::io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake: {e}"),
        }
    }
}

impl Pool {
    pub fn new(idle_timeout: Duration, gauges: PoolGauges) -> Self {
        Self {
            idle: RefCell::new(Vec::new()),
            idle_timeout,
            sweeping: Cell::new(false),
            gauges,
        }
    }

    fn count_idle(&self, idle: &[Box<Connection>]) {
        self.gauges.idle.set(idle.len() as i64);
    }

    /// The most recently returned connection that is still usable.
    pub fn checkout(&self) -> Option<Box<Connection>> {
        let mut idle = self.idle.borrow_mut();
        let now = Instant::now();
        while let Some(mut conn) = idle.pop() {
            if conn.is_usable(now) {
                self.count_idle(&idle);
                return Some(conn);
            }
        }
        self.count_idle(&idle);
        None
    }

    /// Lets go of the connections that are closed or expired; returns whether any
    /// are left.
    fn sweep(&self) -> bool {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        idle.retain_mut(|conn| conn.is_usable(now));
        self.count_idle(&idle);
        !idle.is_empty()
    }

    /// Sweeps `pool` every `SWEEP_INTERVAL` until it has no idle connection left.
    async fn sweep_while_idle(pool: Weak<Pool>) {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            let Some(pool) = pool.upgrade() else { return };
            if !pool.sweep() {
                pool.sweeping.set(false);
                return;
            }
        }
    }

    /// Opens a new connection to `authority`, with TLS when `tls` says how; the
    /// handshake is within the same `timeout` as the TCP connect.
    pub async fn connect(
        &self,
        authority: &Authority,
        tls: Option<&TlsTarget>,
        timeout: Duration,
    ) -> Result<Box<Connection>, ConnectError> {
        let default_port = if tls.is_some() { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority.host().trim_matches(['[', ']']);
        let connect = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(ConnectError::Io)?;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => Ok(Stream::Tcp(tcp)),
                Some(tls) => {
                    let session = tls
                        .connector
                        .connect(tls.server_name.clone(), tcp)
                        .await
                        .map_err(ConnectError::Tls)?;
                    Ok(Stream::tls(tokio_rustls::TlsStream::Client(session)))
                }
            }
        };
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(stream) => stream?,
            Err(_) => return Err(ConnectError::TimedOut),
        };
        let now = Instant::now();
        self.gauges.open.add(1);
        Ok(Box::new(Connection {
            stream,
            read: ReadBuffer::default(),
            write_buf: Vec::new(),
            retire_at: now + MAX_LIFETIME,
            idle_until: now,
            reused: false,
            _open: Open(self.gauges.open),
        }))
    }

    /// Takes back a connection whose last response was read to its end. Must run on
    /// a worker's `LocalSet`, where the sweeping task is spawned.
    pub fn give_back(pool: &Rc<Pool>, mut conn: Box<Connection>) {
        // An idle connection keeps a buffer for a mid-sized body (one read for 16 KiB
        // responses); one grown for a large body goes, and so does a request buffer
        // that held a body.
        conn.read.shrink();
        if conn.write_buf.capacity() > KEPT_WRITE_BUF {
            conn.write_buf = Vec::new();
        }
        conn.idle_until = Instant::now() + pool.idle_timeout;
        conn.reused = true;
        let mut idle = pool.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        pool.count_idle(&idle);
        if !pool.sweeping.get() {
            pool.sweeping.set(true);
            tokio::task::spawn_local(Pool::sweep_while_idle(Rc::downgrade(pool)));
        }
    }
}

/// A listener on a loopback ephemeral port and its authority, for tests of upstream
/// connections.
#[cfg(test)]
pub(crate) async fn loopback_listener() -> (tokio::net::TcpListener, Authority) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let authority = listener
        .local_addr()
        .expect("address")
        .to_string()
        .parse()
        .expect("authority");
    (listener, authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pooled connection the upstream closes is let go by the sweep, not kept in
    /// CLOSE_WAIT until the next checkout.
    #[tokio::test]
    async fn closed_idle_connections_are_swept() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (listener, authority) = loopback_listener().await;
                let gauges = PoolGauges {
                    open: Box::leak(Box::default()),
                    idle: Box::leak(Box::default()),
                };
                let pool = Rc::new(Pool::new(Duration::from_secs(60), gauges));
                let conn = pool
                    .connect(&authority, None, Duration::from_secs(1))
                    .await
                    .expect("connect");
                let (accepted, _) = listener.accept().await.expect("accept");
                assert_eq!(
                    (gauges.open.get(), gauges.idle.get()),
                    (1, 0),
                    "open, in use"
                );
                Pool::give_back(&pool, conn);
                assert_eq!(pool.idle.borrow().len(), 1);
                assert_eq!((gauges.open.get(), gauges.idle.get()), (1, 1), "open, idle");
                tokio::time::sleep(SWEEP_INTERVAL + Duration::from_millis(200)).await;
                assert_eq!(pool.idle.borrow().len(), 1, "an open connection stays");
                drop(accepted);
                tokio::time::sleep(SWEEP_INTERVAL + Duration::from_millis(200)).await;
                assert!(pool.idle.borrow().is_empty(), "the closed connection went");
                assert_eq!(
                    (gauges.open.get(), gauges.idle.get()),
                    (0, 0),
                    "counted out"
                );
                tokio::time::sleep(SWEEP_INTERVAL + Duration::from_millis(200)).await;
                assert!(!pool.sweeping.get(), "the sweep stops with the pool empty");
            })
            .await;
    }
}
