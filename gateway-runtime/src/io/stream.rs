//! The one byte stream both sides of the gateway speak HTTP over: plain TCP, or TLS
//! over TCP (terminated from a client, or opened to an upstream). An enum rather than
//! a trait object, so that every read and write is a direct call (../shared/DESIGN.md:
//! no dynamic dispatch on the request path).
//!
//! A TLS session reads and writes through one state machine, so its halves share it:
//! an `Rc<RefCell<…>>`, borrowed for the length of one poll. A connection lives on one
//! worker thread and is polled by one task at a time, so the borrow never meets another
//! (tokio's own `split` would pay a lock for the same thing).
//!
//! The HTTP/1 server reads request heads and bodies on one half while it writes on the
//! other, so the stream splits into owned halves; the client sends a request body
//! while it watches for an early response, so it also splits by borrow. In unit tests a
//! `Scripted` stream plays a conversation written beforehand (tokio-test's `Mock`, one
//! for what the peer sends and one for what it expects to receive), so HTTP/1 sessions
//! are tested without sockets.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::cell::RefCell;
use std::rc::Rc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp;

/// A TLS session over TCP, either side.
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// A TLS session, shared by the halves of its connection.
pub type SharedTls = Rc<RefCell<ClosingTls>>;

/// A TLS session that says `close_notify` when it is dropped, whichever path closes
/// it (a response with `Connection: close`, an idle timeout, a pooled connection let
/// go). Without it a peer cannot tell a close from a truncation (RFC 8446 §6.1), and
/// OpenSSL clients do not resume a session that ended so. The alert is written
/// without waiting: it is a few dozen bytes into a socket that has room for them,
/// and a socket that has not is one the peer has stopped reading.
#[derive(Debug)]
pub struct ClosingTls(pub TlsStream);

impl Drop for ClosingTls {
    fn drop(&mut self) {
        match &mut self.0 {
            tokio_rustls::TlsStream::Server(s) => {
                let (tcp, session) = s.get_mut();
                say_close_notify(tcp, session);
            }
            tokio_rustls::TlsStream::Client(s) => {
                let (tcp, session) = s.get_mut();
                say_close_notify(tcp, session);
            }
        }
    }
}

fn say_close_notify<D>(tcp: &TcpStream, session: &mut rustls::ConnectionCommon<D>) {
    session.send_close_notify();
    let mut socket = NonBlocking(tcp);
    while session.wants_write() {
        if session.write_tls(&mut socket).is_err() {
            break;
        }
    }
}

/// A socket written with `try_write`: never waits.
struct NonBlocking<'a>(&'a TcpStream);

impl io::Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection to a client or an upstream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Tls(SharedTls),
    /// Boxed, so that tests measure the same layouts as the server runs with.
    #[cfg(test)]
    Scripted(Box<Scripted>),
}

/// A scripted peer: what it sends, and what it expects to be sent, in order.
#[cfg(test)]
#[derive(Debug)]
pub struct Scripted {
    pub sends: tokio_test::io::Mock,
    pub expects: tokio_test::io::Mock,
}

/// The reading half of a `Stream`, owned.
#[derive(Debug)]
pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Tls(SharedTls),
    #[cfg(test)]
    Scripted(Box<tokio_test::io::Mock>),
}

/// The writing half of a `Stream`, owned.
#[derive(Debug)]
pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Tls(SharedTls),
    #[cfg(test)]
    Scripted(Box<tokio_test::io::Mock>),
}

/// The reading half of a borrowed `Stream`.
#[derive(Debug)]
pub enum ReadRef<'a> {
    Tcp(tcp::ReadHalf<'a>),
    Tls(&'a RefCell<ClosingTls>),
    #[cfg(test)]
    Scripted(&'a mut tokio_test::io::Mock),
}

/// The writing half of a borrowed `Stream`.
#[derive(Debug)]
pub enum WriteRef<'a> {
    Tcp(tcp::WriteHalf<'a>),
    Tls(&'a RefCell<ClosingTls>),
    #[cfg(test)]
    Scripted(&'a mut tokio_test::io::Mock),
}

impl Stream {
    /// A TLS session, ready to be split.
    pub fn tls(stream: TlsStream) -> Self {
        Stream::Tls(Rc::new(RefCell::new(ClosingTls(stream))))
    }

    /// Splits into halves that can be read and written from different places.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Tcp(read), WriteHalf::Tcp(write))
            }
            Stream::Tls(tls) => (ReadHalf::Tls(tls.clone()), WriteHalf::Tls(tls)),
            #[cfg(test)]
            Stream::Scripted(s) => {
                let Scripted { sends, expects } = *s;
                (
                    ReadHalf::Scripted(Box::new(sends)),
                    WriteHalf::Scripted(Box::new(expects)),
                )
            }
        }
    }

    /// Splits by borrow, to read and write at once within one task.
    pub fn split(&mut self) -> (ReadRef<'_>, WriteRef<'_>) {
        match self {
            Stream::Tcp(stream) => {
                let (read, write) = stream.split();
                (ReadRef::Tcp(read), WriteRef::Tcp(write))
            }
            Stream::Tls(tls) => (ReadRef::Tls(tls), WriteRef::Tls(tls)),
            #[cfg(test)]
            Stream::Scripted(s) => (
                ReadRef::Scripted(&mut s.sends),
                WriteRef::Scripted(&mut s.expects),
            ),
        }
    }

    /// Whether a completed write may leave bytes inside the stream until it is flushed:
    /// a TLS session keeps the records the socket had no room for.
    #[inline]
    pub fn holds_back_writes(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Whether the peer has closed the connection or sent bytes, without blocking;
    /// bytes it sent are appended to `buf`. Costs no system call unless the socket was
    /// reported readable.
    #[inline]
    pub fn poll_peer_activity(&mut self, buf: &mut bytes::BytesMut) -> bool {
        match self {
            Stream::Tcp(stream) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match stream.poll_read_ready(&mut cx) {
                    Poll::Pending => false,
                    Poll::Ready(Err(_)) => true,
                    // Readable may be left over from the last response's final read: look.
                    Poll::Ready(Ok(())) => !matches!(
                        stream.try_read_buf(buf),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock
                    ),
                }
            }
            // Records that are not data (a TLS 1.3 session ticket after the handshake)
            // are consumed and are no activity; data or a close is.
            Stream::Tls(tls) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut tls = tls.borrow_mut();
                !matches!(
                    tokio_util::io::poll_read_buf(Pin::new(&mut tls.0), &mut cx, buf),
                    Poll::Pending
                )
            }
            #[cfg(test)]
            Stream::Scripted(_) => false,
        }
    }
}

impl WriteHalf {
    /// As `Stream::holds_back_writes`.
    #[inline]
    pub fn holds_back_writes(&self) -> bool {
        matches!(self, WriteHalf::Tls(_))
    }
}

impl ReadHalf {
    /// Whether the socket has something to read (data, or the peer's close), without
    /// reading it: polling this registers for the next, at the cost of a readiness
    /// check. For TLS, the socket under the session.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ReadHalf::Tcp(read) => read.as_ref().poll_read_ready(cx),
            ReadHalf::Tls(tls) => tls.borrow().0.get_ref().0.poll_read_ready(cx),
            #[cfg(test)]
            ReadHalf::Scripted(_) => Poll::Ready(Ok(())),
        }
    }

    /// Puts the halves back together, for a connection handed to another protocol.
    pub fn reunite(self, write: WriteHalf) -> Option<Stream> {
        match (self, write) {
            (ReadHalf::Tcp(read), WriteHalf::Tcp(write)) => {
                read.reunite(write).ok().map(Stream::Tcp)
            }
            (ReadHalf::Tls(read), WriteHalf::Tls(write)) if Rc::ptr_eq(&read, &write) => {
                Some(Stream::Tls(read))
            }
            #[cfg(test)]
            (ReadHalf::Scripted(sends), WriteHalf::Scripted(expects)) => {
                Some(Stream::Scripted(Box::new(Scripted {
                    sends: *sends,
                    expects: *expects,
                })))
            }
            _ => None,
        }
    }
}

/// Forwards the `AsyncRead` and `AsyncWrite` methods of an enum to its variants;
/// `|s| …` says where a scripted variant reads or writes.
/// Polls the TLS session in `cell` for one call.
fn with_tls<R>(cell: &RefCell<ClosingTls>, poll: impl FnOnce(Pin<&mut TlsStream>) -> R) -> R {
    poll(Pin::new(&mut cell.borrow_mut().0))
}

macro_rules! forward_io {
    ($ty:ty, read, |$s:ident| $scripted:expr) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
                    Self::Tls(s) => with_tls(s, |s| s.poll_read(cx, buf)),
                    #[cfg(test)]
                    Self::Scripted($s) => Pin::new($scripted).poll_read(cx, buf),
                }
            }
        }
    };
    ($ty:ty, write, |$s:ident| $scripted:expr) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
                    Self::Tls(s) => with_tls(s, |s| s.poll_write(cx, buf)),
                    #[cfg(test)]
                    Self::Scripted($s) => Pin::new($scripted).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    Self::Tls(s) => with_tls(s, |s| s.poll_write_vectored(cx, bufs)),
                    #[cfg(test)]
                    Self::Scripted($s) => Pin::new($scripted).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Tcp(s) => s.is_write_vectored(),
                    Self::Tls(s) => s.borrow().0.is_write_vectored(),
                    // Scripted peers take one write at a time.
                    #[cfg(test)]
                    Self::Scripted(_) => false,
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_flush(cx),
                    Self::Tls(s) => with_tls(s, |s| s.poll_flush(cx)),
                    #[cfg(test)]
                    Self::Scripted($s) => Pin::new($scripted).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                    Self::Tls(s) => with_tls(s, |s| s.poll_shutdown(cx)),
                    #[cfg(test)]
                    Self::Scripted($s) => Pin::new($scripted).poll_shutdown(cx),
                }
            }
        }
    };
}

forward_io!(Stream, read, |s| &mut s.sends);
forward_io!(Stream, write, |s| &mut s.expects);
forward_io!(ReadHalf, read, |s| s);
forward_io!(WriteHalf, write, |s| s);
forward_io!(ReadRef<'_>, read, |s| s);
forward_io!(WriteRef<'_>, write, |s| s);
