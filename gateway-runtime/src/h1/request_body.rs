//! The body of a client's request: read from the client's HTTP/1.1 connection as the
//! upstream takes it, or hyper's body of an HTTP/2 stream.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::h1::framing::{BodyDecoder, BodyLength, Decoded, FramingError};
use crate::h1::read_buffer::ReadBuffer;
use crate::io::stream::ReadHalf;

/// The reading side of a client's HTTP/1.1 connection, shared by the connection (which
/// reads heads) and the body of its current request.
#[derive(Debug)]
pub struct Inbound {
    pub reader: ReadHalf,
    pub read: ReadBuffer,
    /// Whether the current request's body has been read to its end, so the next
    /// request's head is next on the connection.
    pub body_done: bool,
}

/// A request body.
#[derive(Debug)]
pub enum RequestBody {
    Http1(Http1Body),
    Http2(Incoming),
}

/// Why a client's body could not be read.
#[derive(Debug)]
pub enum ClientBodyError {
    Io(std::io::Error),
    Framing(FramingError),
    /// The client closed the connection before the end of the body.
    Truncated,
    Http2(hyper::Error),
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Io(e) => write!(f, "request body: {e}"),
            ClientBodyError::Framing(e) => write!(f, "request body: {e}"),
            ClientBodyError::Truncated => f.write_str("request body: connection closed early"),
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
}

impl Http1Body {
    /// A body framed as its head said.
    pub fn new(inbound: Rc<RefCell<Inbound>>, length: BodyLength) -> Self {
        Self {
            inbound,
            decoder: BodyDecoder::from(length),
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, ClientBodyError>> {
        // Only the connection borrows it otherwise, and never while a request runs.
        let Ok(mut inbound) = self.inbound.try_borrow_mut() else {
            return Poll::Ready(Err(ClientBodyError::Truncated));
        };
        let inbound = &mut *inbound;
        loop {
            let decoded = self
                .decoder
                .decode(&mut inbound.read.bytes)
                .map_err(ClientBodyError::Framing)?;
            inbound.body_done = self.decoder.is_done();
            match decoded {
                Decoded::Data(data) => return Poll::Ready(Ok(Some(data))),
                Decoded::Done => return Poll::Ready(Ok(None)),
                Decoded::NeedMore => {}
            }
            let n = ready!(inbound.read.poll_fill(Pin::new(&mut inbound.reader), cx))
                .map_err(ClientBodyError::Io)?;
            if n == 0 {
                return Poll::Ready(Err(ClientBodyError::Truncated));
            }
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
            RequestBody::Http2(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(ClientBodyError::Http2),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Http1(body) => body.decoder.is_done(),
            RequestBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Http1(body) => match body.decoder.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            RequestBody::Http2(body) => body.size_hint(),
        }
    }
}
