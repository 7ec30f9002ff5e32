//! The response body type: either the upstream's body, streamed through untouched, or
//! a small body the gateway wrote itself. An enum instead of a boxed body keeps the
//! hot path free of dynamic dispatch.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::h1::client::{BodyError, UpstreamBody};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;

#[derive(Debug)]
pub enum Body {
    Upstream(UpstreamBody),
    Local(Full<Bytes>),
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

    /// Interim (1xx) responses to send to an HTTP/1.1 client before this response.
    pub fn interim(&self) -> &[u8] {
        match self {
            Body::Upstream(body) => body.interim(),
            Body::Local(_) => &[],
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream(body) => body.is_end_stream(),
            Body::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Upstream(body) => body.size_hint(),
            Body::Local(body) => body.size_hint(),
        }
    }
}
