//! An upstream: its targets, round-robin over them, a keep-alive connection pool per
//! target (`pool`), and the target phase of a route: forwarding one request, which
//! ends in the response or a typed `UpstreamError` (`error`).

mod error;
pub mod pool;

pub use error::UpstreamError;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use http::Method;
use http::header::HeaderValue;
use http::uri::{Authority, PathAndQuery};
use http_body::Body as _;
use http_body_util::Limited;

use crate::h1::client::{self, ExchangeError, RequestBody, ResponseHead, UpstreamBody};
use crate::message::body::Body;
use crate::message::fields::Fields;
use crate::message::forwarding::{Forwarding, RequestFraming, write_request_head};
use crate::pipeline::RequestContext;
use crate::pipeline::gateway::{Request, Response, UpstreamSpec};
use crate::settings::SettingError;
use pool::{Connection, Pool};

/// One target, with what every request to it needs precomputed.
#[derive(Debug)]
struct Endpoint {
    authority: Authority,
    /// `Host` sent upstream: the target's authority, as nginx and Kong send by default;
    /// the client's host travels in `X-Forwarded-Host`.
    host: HeaderValue,
    pool: Rc<Pool>,
}

/// A set of targets served round-robin; one instance per worker thread, so the
/// rotation and the connection pools need no locks.
#[derive(Debug)]
pub struct Upstream {
    name: &'static str,
    endpoints: Box<[Endpoint]>,
    next: Cell<usize>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(spec: &'static UpstreamSpec) -> Result<Self, SettingError> {
        let idle_timeout = spec.idle_timeout.duration()?;
        let endpoints = spec
            .targets
            .iter()
            .map(|setting| {
                let target = setting.target()?;
                let host = HeaderValue::from_str(target.authority.as_str())
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
                Ok(Endpoint {
                    authority: target.authority,
                    host,
                    pool: Rc::new(Pool::new(idle_timeout)),
                })
            })
            .collect::<Result<Box<[_]>, SettingError>>()?;
        Ok(Self {
            name: spec.name,
            endpoints,
            next: Cell::new(0),
            connect_timeout: spec.connect_timeout.duration()?,
            response_timeout: spec.response_timeout.duration()?,
        })
    }

    fn pick(&self) -> &Endpoint {
        let i = self.next.get();
        self.next.set((i + 1) % self.endpoints.len());
        &self.endpoints[i]
    }

    /// The target phase: sends `req` to the next target, with `path` (or the
    /// request's own path and query) as the target, and streams the response back.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice"
    )]
    pub fn forward<'a>(
        &'a self,
        req: Request,
        path: Option<PathAndQuery>,
        cx: &'a RequestContext,
    ) -> impl Future<Output = Result<Response, UpstreamError>> + 'a {
        async move {
            // Used where it was captured (see `Connection::serve` on why); only the body
            // moves out.
            let body = req.body;
            // A declared length over the limit is refused before the upstream is bothered;
            // a body without one is cut off when it crosses the limit (see `failure`).
            let exact = body.size_hint().exact();
            if exact.is_some_and(|len| len > cx.max_body) {
                return Err(UpstreamError::RequestBodyTooLarge);
            }
            let (framing, body) = if body.is_end_stream() {
                // RFC 9110 §8.6: a request whose method gives content a meaning says how
                // long it is, even when empty; some upstreams refuse a POST without (411).
                let framing = if expects_content(&req.method) {
                    RequestFraming::Length(0)
                } else {
                    RequestFraming::None
                };
                (framing, None)
            } else {
                let limit = usize::try_from(cx.max_body).unwrap_or(usize::MAX);
                let framing = match exact {
                    Some(len) => RequestFraming::Length(len),
                    None => RequestFraming::Chunked,
                };
                (framing, Some(Limited::new(body, limit)))
            };
            let target = match &path {
                Some(path) => path.as_str(),
                None => req.uri.path_and_query().map_or("/", PathAndQuery::as_str),
            };
            let endpoint = self.pick();
            let forwarding = Forwarding {
                host: &endpoint.host,
                client_ip: &cx.client_ip,
                original_host: match req.uri.authority() {
                    Some(authority) => Some(authority.as_str().as_bytes()),
                    None => req.fields.get(b"host"),
                },
                received: req.version,
            };
            let request = UpstreamRequest {
                method: &req.method,
                fields: &req.fields,
                target,
                forwarding: &forwarding,
                framing,
                // Only a request without a body can be sent twice; RFC 9110 §9.2.2 allows
                // a proxy to retry idempotent methods only.
                replayable: body.is_none() && is_idempotent(&req.method),
            };
            // Built in place: a separate binding would keep a second copy of the future.
            let exchanged = cx.response_timer.limit(
                self.response_timeout,
                self.exchange(endpoint, &request, body),
            );
            let exchanged = exchanged.await;
            match exchanged {
                Ok(Ok((mut head, conn))) => {
                    let body = UpstreamBody::new(conn, endpoint.pool.clone(), &mut head);
                    Ok(Response::new(
                        head.status,
                        head.fields,
                        Body::Upstream(body),
                    ))
                }
                Ok(Err(e)) => {
                    tracing::warn!(upstream = self.name, target = %endpoint.authority, error = %e, "upstream request failed");
                    Err(e)
                }
                Err(_) => {
                    tracing::warn!(upstream = self.name, target = %endpoint.authority, timeout = ?self.response_timeout, "upstream response timed out");
                    Err(UpstreamError::ResponseTimeout)
                }
            }
        }
    }

    /// Sends the request on a pooled connection, or a new one. A pooled connection may
    /// have been closed by the upstream just as it was taken; when it ends before any
    /// byte of a response, a replayable request is sent once more, on the next
    /// connection, and never a third time: an upstream that closes every connection
    /// unanswered must not receive one request over and over.
    async fn exchange(
        &self,
        endpoint: &Endpoint,
        request: &UpstreamRequest<'_>,
        mut body: Option<RequestBody>,
    ) -> Result<(ResponseHead, Box<Connection>), UpstreamError> {
        let mut retried = false;
        loop {
            let mut conn = match endpoint.pool.checkout() {
                Some(conn) => conn,
                // Boxed because it is rare: inline, the connect future would make
                // every request's future larger, and futures are moved by copying.
                None => Box::pin(Pool::connect(&endpoint.authority, self.connect_timeout)).await?,
            };
            write_request_head(
                &mut conn.write_buf,
                request.method,
                request.target,
                request.fields,
                request.forwarding,
                request.framing,
            );
            let head_request = *request.method == Method::HEAD;
            match client::exchange(&mut conn, body.take(), request.framing, head_request).await {
                Ok(head) => return Ok((head, conn)),
                Err(ExchangeError::NoResponse(_))
                    if conn.reused && request.replayable && !retried =>
                {
                    retried = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What every attempt at sending one request needs.
struct UpstreamRequest<'a> {
    method: &'a Method,
    fields: &'a Fields,
    target: &'a str,
    forwarding: &'a Forwarding<'a>,
    framing: RequestFraming,
    replayable: bool,
}

/// Methods whose requests normally carry content.
fn expects_content(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
