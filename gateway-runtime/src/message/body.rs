//! The response body type: the upstream's body, streamed through untouched; a small
//! body the gateway wrote itself; or one made of pieces, the gateway's text between
//! large buffers it passes on without copying (an aggregate's answers). An enum
//! instead of a boxed body keeps the hot path free of dynamic dispatch.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::h1::client::{BodyError, UpstreamBody};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

/// Why [`Body::whole`] has no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotWhole {
    TooLarge,
    /// The body ended early or could not be read.
    BrokeOff,
}

#[derive(Debug)]
pub enum Body {
    Upstream(UpstreamBody),
    Local(Full<Bytes>),
    Pieces(PiecesLeft),
}

impl Body {
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        Body::Local(Full::new(bytes.into()))
    }

    /// Keeps a concurrency-limit place until the body has been sent; a local body is
    /// sent at once, so its place goes back now.
    pub fn hold(&mut self, place: crate::limit::concurrency::Place) {
        if let Body::Upstream(body) = self {
            body.hold(place);
        }
    }

    /// The whole body, up to `limit` bytes, for a caller that needs all of it (an
    /// aggregate's answer, a body a rule shapes). A body of known length comes in one
    /// piece, not copied together from several, and one declared longer than `limit`
    /// is refused before any of it is read.
    pub async fn whole(mut self, limit: usize) -> Result<Bytes, NotWhole> {
        if !self.read_whole(limit as u64) {
            return Err(NotWhole::TooLarge);
        }
        match Limited::new(self, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(NotWhole::TooLarge),
            Err(_) => Err(NotWhole::BrokeOff),
        }
    }

    /// Has a body of known length up to `limit` come as one piece
    /// (`UpstreamBody::read_whole`); `false` for one known to be longer.
    fn read_whole(&mut self, limit: u64) -> bool {
        match self {
            Body::Upstream(body) => body.read_whole(limit),
            Body::Local(_) | Body::Pieces(_) => http_body::Body::size_hint(self)
                .exact()
                .is_none_or(|n| n <= limit),
        }
    }

    /// Interim (1xx) responses to send to an HTTP/1.1 client before this response.
    pub fn interim(&self) -> &[u8] {
        match self {
            Body::Upstream(body) => body.interim(),
            Body::Local(_) | Body::Pieces(_) => &[],
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Upstream(body) => Pin::new(body).poll_frame(cx),
            Body::Local(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Body::Pieces(left) => Poll::Ready(left.pieces.next().map(|piece| {
                left.len -= piece.len();
                Ok(Frame::data(piece))
            })),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream(body) => body.is_end_stream(),
            Body::Local(body) => body.is_end_stream(),
            Body::Pieces(left) => left.len == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Upstream(body) => body.size_hint(),
            Body::Local(body) => body.size_hint(),
            Body::Pieces(left) => SizeHint::with_exact(left.len as u64),
        }
    }
}

/// Buffers shared with what they came from, of at least this size, become pieces of
/// their own; smaller ones are copied into the text around them, where a frame and a
/// write of their own would cost more than the copy.
const SHARED_FROM: usize = 4 * 1024;

/// A body being written, then sent, as pieces: the text written so far and buffers
/// shared rather than copied. A 100 KB answer copied into one buffer cost its copy
/// and, as large buffers come fresh from the kernel, a page fault per 4 KB.
#[derive(Debug, Default)]
pub struct Pieces {
    done: Vec<Bytes>,
    text: Vec<u8>,
    len: usize,
}

/// A body of pieces being sent: those not sent yet, and their length.
#[derive(Debug)]
pub struct PiecesLeft {
    pieces: std::vec::IntoIter<Bytes>,
    len: usize,
}

impl Pieces {
    pub fn with_text_capacity(capacity: usize) -> Self {
        Pieces {
            text: Vec::with_capacity(capacity),
            ..Pieces::default()
        }
    }

    /// The text being written, after the pieces so far.
    pub fn text(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }

    /// Appends `part`, which lies within `whole`: shared if it is large, else copied.
    pub fn share(&mut self, whole: &Bytes, part: &[u8]) {
        if part.len() < SHARED_FROM {
            self.text.extend_from_slice(part);
            return;
        }
        self.end_text();
        self.len += part.len();
        self.done.push(whole.slice_ref(part));
    }

    /// The body: every piece, in order.
    pub fn finish(mut self) -> Body {
        self.end_text();
        Body::Pieces(PiecesLeft {
            pieces: self.done.into_iter(),
            len: self.len,
        })
    }

    fn end_text(&mut self) {
        if !self.text.is_empty() {
            let text = std::mem::take(&mut self.text);
            self.len += text.len();
            self.done.push(Bytes::from(text));
        }
    }
}
