//! Keep-alive connections to one upstream target, owned by one worker thread.
//!
//! A LIFO stack of idle connections: the most recently used is the warmest and the
//! least likely to have been closed by the upstream. A connection returns to the stack
//! when its response body has been read to the end, so every pooled connection is
//! free; checkout drops the closed, the idle-expired and the too old. Being per
//! thread, the stack needs no lock and no hashing (../shared/PERF.md measured -23%
//! instructions per request against hyper-util's shared pool).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::net::TcpStream;

use crate::io::Stream;

use crate::h1::read_buffer::ReadBuffer;

/// Connections older than this are not reused, so that DNS changes and upstream
/// rebalancing reach long-running gateways.
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// Most idle connections kept per target and worker, as nginx's `keepalive`: a burst
/// of concurrent requests opens as many connections as it needs, and all but these
/// close once it has passed.
const MAX_IDLE: usize = 128;
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
}

/// Largest request buffer a pooled connection keeps between requests; one that held a
/// large body is let go.
const KEPT_WRITE_BUF: usize = 16 * 1024;

impl Connection {
    /// Lets go of a request buffer a large body grew.
    pub fn trim_write_buf(&mut self) {
        if self.write_buf.capacity() > KEPT_WRITE_BUF {
            self.write_buf = Vec::new();
        }
    }

    /// Whether the upstream has closed it, or sent bytes nobody asked for, while it sat
    /// in the pool. Costs no system call unless the socket was reported readable.
    fn is_stale(&mut self) -> bool {
        self.stream.poll_peer_activity(&mut self.read.bytes)
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
}

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    TimedOut,
    Io(std::io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect: {e}"),
        }
    }
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle: RefCell::new(Vec::new()),
            idle_timeout,
        }
    }

    /// The most recently returned connection that is still usable.
    pub fn checkout(&self) -> Option<Box<Connection>> {
        let mut idle = self.idle.borrow_mut();
        let now = Instant::now();
        // The oldest sit at the bottom: expire one per checkout, so a pool that
        // shrank after a burst gives its connections back over time.
        if idle.first().is_some_and(|c| now > c.idle_until) {
            idle.remove(0);
        }
        while let Some(mut conn) = idle.pop() {
            let usable = now <= conn.idle_until && now <= conn.retire_at && !conn.is_stale();
            if usable {
                return Some(conn);
            }
        }
        None
    }

    /// Opens a new connection to `authority`.
    pub async fn connect(
        authority: &Authority,
        timeout: Duration,
    ) -> Result<Box<Connection>, ConnectError> {
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host().trim_matches(['[', ']']);
        let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            Err(_) => return Err(ConnectError::TimedOut),
        };
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        Ok(Box::new(Connection {
            stream: Stream::Tcp(stream),
            read: ReadBuffer::default(),
            write_buf: Vec::new(),
            retire_at: now + MAX_LIFETIME,
            idle_until: now,
            reused: false,
        }))
    }

    /// Takes back a connection whose last response was read to its end.
    pub fn give_back(&self, mut conn: Box<Connection>) {
        // An idle connection keeps a buffer for a mid-sized body (one read for 16 KiB
        // responses); one grown for a large body goes.
        conn.read.shrink();
        conn.idle_until = Instant::now() + self.idle_timeout;
        conn.reused = true;
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
