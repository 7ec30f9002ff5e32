//! HTTP/2 clients (h2c with prior knowledge), served by hyper's HTTP/2 server: each
//! stream becomes a `Request` with its fields as bytes and runs through the same
//! pipeline driver as an HTTP/1.1 request.

use std::convert::Infallible;
use std::rc::Rc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;

use crate::h1::request_body::RequestBody;
use crate::io::Stream;
use crate::io::prefixed::Prefixed;
use crate::message::fields::Fields;
use crate::pipeline::Connection;
use crate::pipeline::gateway::{Gateway, Request};

/// Spawns `!Send` futures (HTTP/2 streams) on the worker's local task set.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// An HTTP/2 request's fields as HTTP/1.1 forwards them: HTTP/2 may split `Cookie`
/// into one field per cookie, and those are joined with `; ` into one, where the
/// first was, before they go to an HTTP/1.1 upstream (RFC 9113 §8.2.3).
fn request_fields(headers: &http::HeaderMap) -> Fields {
    if headers
        .get_all(http::header::COOKIE)
        .iter()
        .nth(1)
        .is_none()
    {
        return Fields::from_header_map(headers);
    }
    let joined: Vec<u8> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    let mut fields = Fields::with_capacity(headers.len(), joined.len() + 64 * headers.len());
    let mut cookie_written = false;
    for (name, value) in headers {
        if name != http::header::COOKIE {
            fields.append(name.as_str().as_bytes(), value.as_bytes());
        } else if !cookie_written {
            fields.append(b"cookie", &joined);
            cookie_written = true;
        }
    }
    fields
}

/// Serves a connection that opened with the HTTP/2 preface; `preface` is what was
/// read of it already.
pub(crate) async fn serve<G: Gateway>(
    stream: Stream,
    preface: bytes::BytesMut,
    connection: Rc<Connection<G>>,
    max_header_size: usize,
    graceful: &GracefulShutdown,
) {
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let connection = connection.clone();
        async move {
            let (parts, body) = req.into_parts();
            let req = Request {
                fields: request_fields(&parts.headers),
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                body: RequestBody::Http2(body),
            };
            Ok::<_, Infallible>(connection.serve(req).await.into_http())
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_size).unwrap_or(u32::MAX));
    let io = TokioIo::new(Prefixed::new(preface, stream));
    let watched = graceful.watch(builder.serve_connection(io, service));
    if let Err(e) = watched.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
