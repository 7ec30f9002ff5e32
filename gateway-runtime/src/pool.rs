//! Keep-alive connections to one upstream target, owned by one worker thread.
//!
//! A LIFO stack of HTTP/1.1 senders (`hyper::client::conn::http1`): the most recently
//! used connection is the warmest and the least likely to have been closed by the
//! upstream. A connection returns to the stack when its response body has been read to
//! the end, so every pooled sender is free; checkout drops the closed, the idle-expired
//! and the too old. Being per thread, the stack needs no lock and no hashing
//! (../shared/PERF.md measured -23% instructions per request against hyper-util's
//! shared pool).

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// What the gateway sends upstream: the client's body, cut off at the listener's limit.
pub type RequestBody = Limited<Incoming>;

/// Connections older than this are not reused, so that DNS changes and upstream
/// rebalancing reach long-running gateways.
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// One open connection.
#[derive(Debug)]
pub struct Connection {
    pub sender: SendRequest<RequestBody>,
    created: Instant,
    idle_since: Instant,
    /// True once it has carried a request: a failure to send on it may be staleness.
    pub reused: bool,
}

/// The pool of one target.
#[derive(Debug)]
pub struct Pool {
    idle: RefCell<Vec<Connection>>,
    idle_timeout: Duration,
}

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    TimedOut,
    Io(std::io::Error),
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
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
    pub fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.borrow_mut();
        let now = Instant::now();
        // The oldest sit at the bottom: expire one per checkout, so a pool that
        // shrank after a burst gives its connections back over time.
        if idle
            .first()
            .is_some_and(|c| now.duration_since(c.idle_since) > self.idle_timeout)
        {
            idle.remove(0);
        }
        while let Some(conn) = idle.pop() {
            let usable = !conn.sender.is_closed()
                && now.duration_since(conn.idle_since) <= self.idle_timeout
                && now.duration_since(conn.created) <= MAX_LIFETIME;
            if usable {
                return Some(conn);
            }
        }
        None
    }

    /// Opens a new connection to `authority` and spawns its I/O task on this thread.
    pub async fn connect(
        authority: &Authority,
        timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host().trim_matches(['[', ']']);
        let stream =
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(ConnectError::Io(e)),
                Err(_) => return Err(ConnectError::TimedOut),
            };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::task::spawn_local(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        let now = Instant::now();
        Ok(Connection {
            sender,
            created: now,
            idle_since: now,
            reused: false,
        })
    }

    fn give_back(&self, mut conn: Connection) {
        conn.idle_since = Instant::now();
        conn.reused = true;
        self.idle.borrow_mut().push(conn);
    }
}

/// An upstream response body that returns its connection to the pool when it has been
/// read to the end (or, for bodies that are empty from the start, when it is dropped).
#[derive(Debug)]
pub struct PooledBody {
    body: Incoming,
    /// `None` once given back.
    conn: Option<(Rc<Pool>, Connection)>,
}

impl PooledBody {
    pub fn new(body: Incoming, pool: Rc<Pool>, conn: Connection) -> Self {
        Self {
            body,
            conn: Some((pool, conn)),
        }
    }

    fn release(&mut self) {
        if let Some((pool, conn)) = self.conn.take() {
            pool.give_back(conn);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            // A broken body means a broken connection: let it go.
            Poll::Ready(Some(Err(_))) => self.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // HEAD, 204 and 304 responses are never polled; their connection is still good.
        // A body dropped half-read is not: its connection closes with the sender.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
