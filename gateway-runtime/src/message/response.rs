//! A response on its way to the client: status, fields and body. The gateway's own
//! type rather than `http::Response`, so that an upstream's fields travel as the bytes
//! they came in (see `fields`) instead of as a `HeaderMap`.

use bytes::Bytes;
use http::StatusCode;

use crate::message::body::Body;
use crate::message::fields::Fields;
use crate::message::methods::MethodSet;

#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    fields: Fields,
    body: Body,
}

/// Which upstream target answered, and how long its response head took: what the
/// access log says of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The target's id among every upstream's targets (`Catalog::targets`).
    pub target: u32,
    /// From sending the request to the response head, in microseconds.
    pub micros: u32,
}

impl Response {
    pub fn new(status: StatusCode, fields: Fields, body: Body) -> Self {
        Self {
            status,
            fields,
            body,
        }
    }

    /// A response the gateway writes itself, with one `Content-Type`.
    pub fn local(status: StatusCode, content_type: &[u8], body: impl Into<Bytes>) -> Self {
        Self::written(status, content_type, Body::local(body))
    }

    /// A response the gateway wrote, with `body` of any kind.
    pub fn written(status: StatusCode, content_type: &[u8], body: Body) -> Self {
        let mut fields = Fields::with_capacity(2, 64);
        fields.append(b"content-type", content_type);
        Self::new(status, fields, body)
    }

    /// The response with an `Allow` field listing `allowed` (RFC 9110 §10.2.1).
    pub fn with_allow(mut self, allowed: MethodSet) -> Self {
        self.fields
            .append(b"allow", allowed.allow_header().as_bytes());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    pub fn fields_mut(&mut self) -> &mut Fields {
        &mut self.fields
    }

    /// Keeps a concurrency-limit place until the body has been sent.
    #[cfg(feature = "server")]
    pub fn hold(&mut self, place: crate::limit::concurrency::Place) {
        self.body.hold(place);
    }

    pub fn into_parts(self) -> (StatusCode, Fields, Body) {
        (self.status, self.fields, self.body)
    }

    /// The response as hyper's HTTP/2 server takes it.
    pub fn into_http(self) -> http::Response<Body> {
        let mut response = http::Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.fields.to_header_map();
        response
    }
}
