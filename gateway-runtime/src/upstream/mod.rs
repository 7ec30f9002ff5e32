//! An upstream: its targets, round-robin over them, a keep-alive connection pool per
//! target (`pool`), and the target phase of a route: forwarding one request, which
//! ends in the response or a typed `UpstreamError` (`error`).

mod error;
pub mod pool;

pub use error::UpstreamError;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body::Body as _;
use http_body_util::Limited;

use crate::h1::client::{
    self, ExchangeError, ExchangeTimeouts, RequestBody, ResponseHead, UpstreamBody,
};
use crate::message::body::Body;
use crate::message::fields::Fields;
use crate::message::forwarding::{Forwarding, RequestFraming, write_request_head};
use crate::message::response::Served;
use crate::observe::clock::Stamp;
use crate::observe::metrics::UpstreamMetrics;
use crate::observe::trace::{SpanContext, SpanRecord};
use crate::pipeline::gateway::{Request, Response, UpstreamSpec};
use crate::pipeline::{RequestContext, Trail};
use crate::settings::SettingError;
use crate::tls;
use crate::tls::upstream::TlsTarget;
use pool::{ConnectError, Connection, Pool};

/// One target, with what every request to it needs precomputed.
#[derive(Debug)]
struct Endpoint {
    /// Its place in the upstream's `targets`.
    id: usize,
    authority: Authority,
    /// `Host` sent upstream: the target's authority, as nginx and Kong send by default;
    /// the client's host travels in `X-Forwarded-Host`.
    host: HeaderValue,
    pool: Rc<Pool>,
    /// `Some` for an `https://` target.
    tls: Option<TlsTarget>,
}

/// A set of targets served round-robin; one instance per worker thread, so the
/// rotation and the connection pools need no locks.
#[derive(Debug)]
pub struct Upstream {
    name: &'static str,
    endpoints: Box<[Endpoint]>,
    next: Cell<usize>,
    connect_timeout: Duration,
    timeouts: ExchangeTimeouts,
    body_timeout: Duration,
    metrics: UpstreamMetrics,
}

impl Upstream {
    pub fn new(
        spec: &'static UpstreamSpec,
        metrics: UpstreamMetrics,
    ) -> Result<Self, SettingError> {
        let idle_timeout = spec.idle_timeout.duration()?;
        let body_timeout = spec.body_timeout.duration()?;
        // Made when a target needs it: an upstream of `http://` targets reads no roots.
        let mut connector = None;
        let endpoints = spec
            .targets
            .iter()
            .enumerate()
            .map(|(id, setting)| {
                let target = setting.target()?;
                let host = HeaderValue::from_str(target.authority.as_str())
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
                let tls = if target.scheme == Scheme::HTTPS {
                    let connector = match &connector {
                        Some(connector) => connector,
                        None => connector
                            .insert(tls::upstream::connector(spec.name, spec.tls.as_ref())?),
                    };
                    let server_name = spec.tls.as_ref().and_then(|t| t.server_name);
                    Some(TlsTarget {
                        connector: connector.clone(),
                        server_name: tls::upstream::server_name(
                            setting.origin,
                            server_name,
                            target.authority.host(),
                        )?,
                    })
                } else {
                    None
                };
                Ok(Endpoint {
                    id,
                    authority: target.authority,
                    host,
                    pool: Rc::new(Pool::new(idle_timeout, metrics.pool(id))),
                    tls,
                })
            })
            .collect::<Result<Box<[_]>, SettingError>>()?;
        Ok(Self {
            name: spec.name,
            endpoints,
            next: Cell::new(0),
            connect_timeout: spec.connect_timeout.duration()?,
            timeouts: ExchangeTimeouts {
                response: spec.response_timeout.duration()?,
                send: body_timeout,
            },
            body_timeout,
            metrics,
        })
    }

    fn pick(&self) -> &Endpoint {
        let i = self.next.get();
        self.next.set((i + 1) % self.endpoints.len());
        &self.endpoints[i]
    }

    /// The target phase: sends `req` to the next target, with `path` (or the
    /// request's own path and query) as the target, and streams the response back.
    /// A body over `max_body` (the listener's limit, or the route's below it) is 413.
    /// The request's span comes from `trail`, which learns which target answered.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice"
    )]
    pub fn forward<'a>(
        &'a self,
        req: Request,
        path: Option<PathAndQuery>,
        cx: &'a RequestContext,
        max_body: u64,
        trail: &'a mut Trail,
    ) -> impl Future<Output = Result<Response, UpstreamError>> + 'a {
        async move {
            // Used where it was captured (see `Connection::serve` on why); only the body
            // moves out.
            let mut body = req.body;
            // The body bytes that came with the head are decoded first: bad framing in
            // them is refused before the upstream sees any of the request, and a body
            // that is all here goes out with the head, with its length, and can be
            // sent again on a stale connection.
            let in_hand = if body.is_end_stream() {
                Some(Bytes::new())
            } else {
                body.take_in_hand()
                    .map_err(|_| UpstreamError::RequestBody)?
            };
            let (framing, body, in_hand) = match in_hand {
                Some(data) if data.len() as u64 > max_body => {
                    return Err(UpstreamError::RequestBodyTooLarge);
                }
                // RFC 9110 §8.6: a request whose method gives content a meaning says how
                // long it is, even when empty; some upstreams refuse a POST without (411).
                Some(data) if data.is_empty() && !expects_content(&req.method) => {
                    (RequestFraming::None, None, data)
                }
                Some(data) => (RequestFraming::Length(data.len() as u64), None, data),
                None => {
                    // A declared length over the limit is refused before the upstream
                    // is bothered; a body without one is cut off when it crosses it.
                    let exact = body.size_hint().exact();
                    if exact.is_some_and(|len| len > max_body) {
                        return Err(UpstreamError::RequestBodyTooLarge);
                    }
                    let framing = match exact {
                        Some(len) => RequestFraming::Length(len),
                        None => RequestFraming::Chunked,
                    };
                    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
                    (framing, Some(Limited::new(body, limit)), Bytes::new())
                }
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
                secure: cx.tls.is_some(),
                trace: trail.trace.map(|parent| parent.child()),
            };
            let request = UpstreamRequest {
                method: &req.method,
                fields: &req.fields,
                target,
                forwarding: &forwarding,
                framing,
                in_hand: &in_hand,
                // Only a request whose body is in hand can be sent twice; RFC 9110
                // §9.2.2 allows a proxy to retry idempotent methods only.
                replayable: body.is_none() && is_idempotent(&req.method),
            };
            // A request sent whole is limited here; one whose body streams times its
            // response from the end of the upload, inside the exchange.
            let limit = body.is_none().then_some(self.timeouts.response);
            let sent = Stamp::now();
            let recorded = self.recording(trail.trace, &forwarding, endpoint, &req.method, target);
            // Built in place: a separate binding would keep a second copy of the future.
            let exchanged = cx
                .response_timer
                .limit(limit, self.exchange(endpoint, &request, body));
            let (response, served) = self.respond(endpoint, sent, recorded, exchanged.await)?;
            trail.served = Some(served);
            Ok(response)
        }
    }

    /// A request of the gateway's own to this upstream, for a policy that asks it
    /// something (an authorization service, a token introspection endpoint) or an
    /// aggregate's call: pooled, timed, traced and forwarded as a client's request is.
    pub async fn ask(&self, ask: Ask<'_>, cx: &RequestContext) -> Result<Response, UpstreamError> {
        let Ask {
            method,
            target,
            fields,
            body,
            original_host,
            trace,
        } = ask;
        let endpoint = self.pick();
        let forwarding = Forwarding {
            host: &endpoint.host,
            client_ip: &cx.client_ip,
            original_host,
            received: http::Version::HTTP_11,
            secure: cx.tls.is_some(),
            trace: trace.map(|parent| parent.child()),
        };
        let framing = if body.is_empty() && !expects_content(method) {
            RequestFraming::None
        } else {
            RequestFraming::Length(body.len() as u64)
        };
        let request = UpstreamRequest {
            method,
            fields,
            target,
            forwarding: &forwarding,
            framing,
            in_hand: &body,
            replayable: is_idempotent(method),
        };
        let limit = Some(self.timeouts.response);
        let sent = Stamp::now();
        let recorded = self.recording(trace, &forwarding, endpoint, method, target);
        let exchanged = cx
            .response_timer
            .limit(limit, self.exchange(endpoint, &request, None));
        let (response, _) = self.respond(endpoint, sent, recorded, exchanged.await)?;
        Ok(response)
    }

    /// The client span of a request to `endpoint`, when its parent is sampled: boxed,
    /// so that a request that is not recorded carries one pointer for it.
    fn recording(
        &self,
        parent: Option<SpanContext>,
        forwarding: &Forwarding<'_>,
        endpoint: &Endpoint,
        method: &Method,
        target: &str,
    ) -> Option<Box<SpanRecord>> {
        let (parent, span) = parent
            .zip(forwarding.trace)
            .filter(|(parent, _)| parent.sampled)?;
        Some(SpanRecord::client(
            span,
            parent,
            self.name,
            method,
            endpoint.tls.is_some(),
            &endpoint.authority,
            target,
        ))
    }

    /// Ends and hands over the client span `recorded`, with the exchange's outcome.
    fn record(
        &self,
        recorded: Option<Box<SpanRecord>>,
        outcome: &Result<(Response, Served), UpstreamError>,
    ) {
        let (Some(mut span), Some(sink)) = (recorded, self.metrics.spans()) else {
            return;
        };
        span.returned(match outcome {
            Ok((response, _)) => Ok(response.status().as_u16()),
            Err(e) => Err(e.fault().unwrap_or("request_body")),
        });
        sink.record(span);
    }

    /// The response of an exchange begun at `sent`, with who answered it and when, or
    /// why there is none; either is counted, and ends the client span `recorded`.
    fn respond<T>(
        &self,
        endpoint: &Endpoint,
        sent: Stamp,
        recorded: Option<Box<SpanRecord>>,
        exchanged: Result<Result<(ResponseHead, Box<Connection>), UpstreamError>, T>,
    ) -> Result<(Response, Served), UpstreamError> {
        let outcome = self.outcome(endpoint, sent, exchanged);
        self.record(recorded, &outcome);
        outcome
    }

    fn outcome<T>(
        &self,
        endpoint: &Endpoint,
        sent: Stamp,
        exchanged: Result<Result<(ResponseHead, Box<Connection>), UpstreamError>, T>,
    ) -> Result<(Response, Served), UpstreamError> {
        match exchanged {
            Ok(Ok((mut head, conn))) => {
                let nanos = sent.elapsed_nanos();
                self.metrics.answered(nanos);
                let pool = endpoint.pool.clone();
                let body = UpstreamBody::new(conn, pool, &mut head, self.body_timeout);
                let response = Response::new(head.status, head.fields, Body::Upstream(body));
                let served = Served {
                    target: u32::try_from(self.metrics.target_id(endpoint.id)).unwrap_or(u32::MAX),
                    micros: u32::try_from(nanos / 1000).unwrap_or(u32::MAX),
                };
                Ok((response, served))
            }
            Ok(Err(e)) => {
                tracing::warn!(upstream = self.name, target = %endpoint.authority, error = %e, "upstream request failed");
                self.metrics.failed(endpoint.id, &e);
                Err(e)
            }
            Err(_) => {
                tracing::warn!(upstream = self.name, target = %endpoint.authority, timeout = ?self.timeouts.response, "upstream response timed out");
                let e = UpstreamError::ResponseTimeout;
                self.metrics.failed(endpoint.id, &e);
                Err(e)
            }
        }
    }

    /// Sends the request on a pooled connection, or a new one. A pooled connection may
    /// have been closed by the upstream just as it was taken; when it ends before any
    /// byte of a response, a replayable request is sent once more, on the next
    /// connection, and never a third time: an upstream that closes every connection
    /// unanswered must not receive one request over and over. A request whose body
    /// streams is sent once.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the body twice"
    )]
    fn exchange<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        request: &'a UpstreamRequest<'a>,
        body: Option<RequestBody>,
    ) -> impl Future<Output = Result<(ResponseHead, Box<Connection>), UpstreamError>> + 'a {
        async move {
            let head_request = *request.method == Method::HEAD;
            if let Some(body) = body {
                let mut conn = match endpoint.pool.checkout() {
                    Some(conn) => conn,
                    None => self.connect(endpoint).await?,
                };
                prepare(&mut conn, request);
                let chunked = request.framing == RequestFraming::Chunked;
                let streaming = client::exchange_streaming(
                    &mut conn,
                    body,
                    chunked,
                    head_request,
                    &self.timeouts,
                );
                return match streaming.await {
                    Ok(head) => Ok((head, conn)),
                    Err(e) => Err(e.into()),
                };
            }
            let mut retried = false;
            loop {
                let mut conn = match endpoint.pool.checkout() {
                    Some(conn) => conn,
                    None => self.connect(endpoint).await?,
                };
                prepare(&mut conn, request);
                // Handled where it arrives: a response head passed on through a binding
                // is copied once more.
                match client::exchange(&mut conn, head_request).await {
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

    /// A new connection to `endpoint`, for when the pool has none. Checkout stays
    /// with the callers, so that the common path is one function with no call.
    async fn connect(&self, endpoint: &Endpoint) -> Result<Box<Connection>, UpstreamError> {
        // Boxed because it is rare: inline, the connect future would make every
        // request's future larger, and futures are moved by copying.
        let connect = endpoint.pool.connect(
            &endpoint.authority,
            endpoint.tls.as_ref(),
            self.connect_timeout,
        );
        match Box::pin(connect).await {
            Ok(conn) => Ok(conn),
            Err(ConnectError::Tls(e)) => {
                tracing::error!(upstream = self.name, target = %endpoint.authority, error = %e, "upstream TLS handshake failed; its certificate is not accepted");
                Err(UpstreamError::Tls(e))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Writes `request` (its head, and its body when that is in hand) to `conn`'s buffer.
fn prepare(conn: &mut Connection, request: &UpstreamRequest<'_>) {
    write_request_head(
        &mut conn.write_buf,
        request.method,
        request.target,
        request.fields,
        request.forwarding,
        request.framing,
    );
    conn.write_buf.extend_from_slice(request.in_hand);
}

/// A request of the gateway's own (see `Upstream::ask`).
#[derive(Debug)]
pub struct Ask<'a> {
    pub method: &'a Method,
    /// Path and query.
    pub target: &'a str,
    pub fields: &'a Fields,
    /// The whole body.
    pub body: Bytes,
    /// The client's host, for `X-Forwarded-Host`.
    pub original_host: Option<&'a [u8]>,
    /// The gateway's span of the client's request this one is made for.
    pub trace: Option<SpanContext>,
}

/// What every attempt at sending one request needs.
struct UpstreamRequest<'a> {
    method: &'a Method,
    fields: &'a Fields,
    target: &'a str,
    forwarding: &'a Forwarding<'a>,
    framing: RequestFraming,
    /// The whole body, when it came with the head.
    in_hand: &'a [u8],
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
