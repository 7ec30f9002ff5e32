//! The body of a client's request: read from the client's HTTP/1.1 connection as the
//! upstream takes it, or hyper's body of an HTTP/2 stream.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::h1::framing::{BodyDecoder, BodyLength, Decoded, FramingError};
use crate::h1::read_buffer::ReadBuffer;
use crate::io::stream::ReadHalf;
use crate::timer::IdleTimer;

/// The reading side of a client's HTTP/1.1 connection, shared by the connection (which
/// reads heads) and the body of its current request.
#[derive(Debug)]
pub struct Inbound {
    pub reader: ReadHalf,
    pub read: ReadBuffer,
    /// Whether the current request's body has been read to its end, so the next
    /// request's head is next on the connection.
    pub body_done: bool,
    /// Data of the current body decoded before the upstream was contacted
    /// (`RequestBody::take_in_hand`), sent first.
    pub in_hand: Option<Bytes>,
    /// Bounds each read of a body: here rather than in the body, which every
    /// request's future holds, as one connection reads one body at a time.
    pub body_idle: IdleTimer,
    /// Body bytes of the current request decoded so far, for the access log.
    pub received: u64,
}

impl Inbound {
    /// The reading side of a new connection; a body read that waits `body_timeout`
    /// fails.
    pub fn new(reader: ReadHalf, body_timeout: Duration) -> Self {
        Self {
            reader,
            read: ReadBuffer::default(),
            body_done: true,
            in_hand: None,
            body_idle: IdleTimer::new(body_timeout),
            received: 0,
        }
    }
}

/// A request body.
#[derive(Debug)]
pub enum RequestBody {
    Http1(Http1Body),
    Http2(Http2Body),
    /// A body read whole and replaced (a route's body rules); `None` once taken.
    Whole(Option<Bytes>),
}

/// Why a client's body could not be read.
#[derive(Debug)]
pub enum ClientBodyError {
    Io(std::io::Error),
    Framing(FramingError),
    /// The client closed the connection before the end of the body.
    Truncated,
    /// The client sent nothing for the listener's `timeouts.body`.
    TimedOut,
    Http2(hyper::Error),
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Io(e) => write!(f, "request body: {e}"),
            ClientBodyError::Framing(e) => write!(f, "request body: {e}"),
            ClientBodyError::Truncated => f.write_str("request body: connection closed early"),
            ClientBodyError::TimedOut => f.write_str("request body: client stopped sending"),
            ClientBodyError::Http2(e) => write!(f, "request body: {e}"),
        }
    }
}

impl std::error::Error for ClientBodyError {}

/// The body of an HTTP/1.1 request, framed as RFC 9112 §6.3 decided.
#[derive(Debug)]
pub struct Http1Body {
    inbound: Rc<RefCell<Inbound>>,
    decoder: BodyDecoder,
    /// Data in `Inbound::in_hand`, to be sent first.
    in_hand: bool,
}

impl Http1Body {
    /// A body framed as its head said.
    pub fn new(inbound: Rc<RefCell<Inbound>>, length: BodyLength) -> Self {
        Self {
            inbound,
            decoder: BodyDecoder::from(length),
            in_hand: false,
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, ClientBodyError>> {
        // Only the connection borrows it otherwise, and never while a request runs.
        let Ok(mut inbound) = self.inbound.try_borrow_mut() else {
            return Poll::Ready(Err(ClientBodyError::Truncated));
        };
        let inbound = &mut *inbound;
        if self.in_hand {
            self.in_hand = false;
            if let Some(data) = inbound.in_hand.take() {
                return Poll::Ready(Ok(Some(data)));
            }
        }
        loop {
            match decode(&mut self.decoder, inbound)? {
                Decoded::Data(data) => return Poll::Ready(Ok(Some(data))),
                Decoded::Done => return Poll::Ready(Ok(None)),
                Decoded::NeedMore => {}
            }
            match inbound.read.poll_fill(Pin::new(&mut inbound.reader), cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(ClientBodyError::Truncated)),
                Poll::Ready(Ok(_)) => inbound.body_idle.progress(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ClientBodyError::Io(e))),
                Poll::Pending if inbound.body_idle.poll_expired(cx) => {
                    return Poll::Ready(Err(ClientBodyError::TimedOut));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Decodes the body bytes already read, without waiting for more: see
    /// `RequestBody::take_in_hand`.
    fn take_in_hand(&mut self) -> Result<Option<Bytes>, ClientBodyError> {
        let Ok(mut inbound) = self.inbound.try_borrow_mut() else {
            return Ok(None);
        };
        let inbound = &mut *inbound;
        let mut data = InHand::default();
        loop {
            match decode(&mut self.decoder, inbound)? {
                Decoded::Data(chunk) => data.push(chunk),
                Decoded::Done => return Ok(Some(data.into_bytes())),
                Decoded::NeedMore => {
                    inbound.in_hand = Some(data.into_bytes()).filter(|d| !d.is_empty());
                    self.in_hand = inbound.in_hand.is_some();
                    return Ok(None);
                }
            }
        }
    }
}

/// The next step of a body from the bytes read so far, noting on the connection
/// whether the body has ended.
fn decode(decoder: &mut BodyDecoder, inbound: &mut Inbound) -> Result<Decoded, ClientBodyError> {
    let decoded = decoder
        .decode(&mut inbound.read.bytes)
        .map_err(ClientBodyError::Framing)?;
    inbound.body_done = decoder.is_done();
    if let Decoded::Data(data) = &decoded {
        inbound.received += data.len() as u64;
    }
    Ok(decoded)
}

/// Decoded pieces of a body, joined: the first without a copy, as one piece is the
/// common case (a body with `Content-Length`, or one chunk).
#[derive(Default)]
struct InHand {
    first: Bytes,
    joined: Option<BytesMut>,
}

impl InHand {
    fn push(&mut self, chunk: Bytes) {
        if self.first.is_empty() {
            self.first = chunk;
            return;
        }
        let joined = self.joined.get_or_insert_with(|| {
            let mut joined = BytesMut::with_capacity(self.first.len() + chunk.len());
            joined.extend_from_slice(&self.first);
            joined
        });
        joined.extend_from_slice(&chunk);
    }

    fn into_bytes(self) -> Bytes {
        match self.joined {
            Some(joined) => joined.freeze(),
            None => self.first,
        }
    }
}

/// The body of an HTTP/2 request stream.
#[derive(Debug)]
pub struct Http2Body {
    incoming: Incoming,
    idle: IdleTimer,
    /// Data bytes read so far, shared with the stream's response, which reports them
    /// when it ends.
    received: Rc<Cell<u64>>,
}

impl Http2Body {
    /// A stream's body, counting its bytes in `received`; a read that waits `timeout`
    /// fails.
    pub fn new(incoming: Incoming, timeout: Duration, received: Rc<Cell<u64>>) -> Self {
        Self {
            incoming,
            idle: IdleTimer::new(timeout),
            received,
        }
    }
}

impl RequestBody {
    /// Decodes the body bytes that arrived with the head, without waiting for more, so
    /// that bad framing in them is found before the upstream is contacted. Returns the
    /// whole body when all of it is in hand (the common case for small bodies); the
    /// body is then finished. Otherwise what was decoded is sent first when the body
    /// is polled.
    pub fn take_in_hand(&mut self) -> Result<Option<Bytes>, ClientBodyError> {
        match self {
            RequestBody::Http1(body) => body.take_in_hand(),
            RequestBody::Http2(_) => Ok(None),
            RequestBody::Whole(whole) => Ok(Some(whole.take().unwrap_or_default())),
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            RequestBody::Http1(body) => body
                .poll_data(cx)
                .map(|polled| polled.transpose().map(|data| data.map(Frame::data))),
            RequestBody::Http2(body) => match Pin::new(&mut body.incoming).poll_frame(cx) {
                Poll::Ready(frame) => {
                    body.idle.progress();
                    if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
                        body.received.set(body.received.get() + data.len() as u64);
                    }
                    Poll::Ready(frame.map(|frame| frame.map_err(ClientBodyError::Http2)))
                }
                Poll::Pending if body.idle.poll_expired(cx) => {
                    Poll::Ready(Some(Err(ClientBodyError::TimedOut)))
                }
                Poll::Pending => Poll::Pending,
            },
            RequestBody::Whole(whole) => {
                Poll::Ready(whole.take().map(|data| Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Http1(body) => !body.in_hand && body.decoder.is_done(),
            RequestBody::Http2(body) => body.incoming.is_end_stream(),
            RequestBody::Whole(whole) => whole.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Http1(body) => {
                let in_hand = match body.in_hand {
                    true => body.inbound.borrow().in_hand.as_ref().map_or(0, Bytes::len),
                    false => 0,
                };
                match body.decoder.remaining() {
                    Some(n) => SizeHint::with_exact(n + in_hand as u64),
                    None => SizeHint::default(),
                }
            }
            RequestBody::Http2(body) => body.incoming.size_hint(),
            RequestBody::Whole(whole) => {
                SizeHint::with_exact(whole.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
