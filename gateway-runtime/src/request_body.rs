//! The body of a client's request: read from the client's HTTP/1.1 connection as the
//! upstream takes it, or hyper's body of an HTTP/2 stream.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::net::tcp::OwnedReadHalf;

use crate::framing::{ChunkedDecoder, Decoded, FramingError};
use crate::pool::ReadBuffer;

/// The reading side of a client's HTTP/1.1 connection, shared by the connection (which
/// reads heads) and the body of its current request.
#[derive(Debug)]
pub struct Inbound {
    pub reader: OwnedReadHalf,
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
    remaining: Remaining,
}

#[derive(Debug)]
enum Remaining {
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl Http1Body {
    /// A body of `length` bytes, or chunked when `None`.
    pub fn new(inbound: Rc<RefCell<Inbound>>, length: Option<u64>) -> Self {
        let remaining = match length {
            Some(n) => Remaining::Length(n),
            None => Remaining::Chunked(ChunkedDecoder::default()),
        };
        Self { inbound, remaining }
    }

    fn is_done(&self) -> bool {
        match &self.remaining {
            Remaining::Length(n) => *n == 0,
            Remaining::Chunked(decoder) => decoder.is_done(),
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, ClientBodyError>> {
        // Only the connection borrows it otherwise, and never while a request runs.
        let Ok(mut inbound) = self.inbound.try_borrow_mut() else {
            return Poll::Ready(Err(ClientBodyError::Truncated));
        };
        let inbound = &mut *inbound;
        loop {
            let buffered = &mut inbound.read.bytes;
            match &mut self.remaining {
                Remaining::Length(0) => {
                    inbound.body_done = true;
                    return Poll::Ready(Ok(None));
                }
                Remaining::Length(n) if !buffered.is_empty() => {
                    let take = usize::try_from(*n)
                        .unwrap_or(usize::MAX)
                        .min(buffered.len());
                    *n -= take as u64;
                    inbound.body_done = *n == 0;
                    return Poll::Ready(Ok(Some(buffered.split_to(take).freeze())));
                }
                Remaining::Length(_) => {}
                Remaining::Chunked(decoder) => match decoder.decode(buffered) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Ok(Some(data))),
                    Ok(Decoded::Done) => {
                        inbound.body_done = true;
                        return Poll::Ready(Ok(None));
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return Poll::Ready(Err(ClientBodyError::Framing(e))),
                },
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
            RequestBody::Http1(body) => body.is_done(),
            RequestBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Http1(Http1Body {
                remaining: Remaining::Length(n),
                ..
            }) => SizeHint::with_exact(*n),
            RequestBody::Http1(_) => SizeHint::default(),
            RequestBody::Http2(body) => body.size_hint(),
        }
    }
}
