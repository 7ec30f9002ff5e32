//! The driver: runs one request through the phases and logs it on every exit.
//!
//! In order: the connection phase's verdict (decided at accept), the checks every
//! request passes (path normal form, `Host`), routing, `Max-Forwards`, then the
//! route's own chain (`Gateway::handle`: request phase, target, response phase).
//! Whatever stops on the way comes back as a `Stop`, and `rescue` answers it. The
//! metrics and the access log record the response and, for an early exit, why; once
//! the server has written the body, `finish` adds the bytes.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::auth::Identity;
use crate::message::body::Body;
use crate::message::error::json_error;
use crate::message::fields::Fields;
use crate::message::methods::MethodSet;
use crate::message::request::{
    MaxForwards, host, http2_fields, max_forwards, normalize_path, read_alike, underscores,
    with_path,
};
use crate::observe::Transferred;
use crate::observe::access_log::{AccessLog, LoggedPath, Record};
use crate::observe::clock::Stamp;
use crate::observe::metrics::{Shard, method_index};
use crate::observe::request_id::RequestId;
use crate::observe::trace::{Begun, SpanContext, SpanRecord};
use crate::pipeline::gateway::{Gateway, Request, Response};
use crate::pipeline::{Refusal, RequestContext, Stop, StopReason, Trail, rescue};
use crate::route::router::{Lookup, RouteTable};

/// One client connection's view of the gateway.
pub(crate) struct Connection<G: Gateway> {
    pub gateway: Rc<G>,
    pub table: Rc<RouteTable<'static>>,
    pub cx: RequestContext,
    /// The connection phase refused this connection: every request gets this answer.
    pub refused: Option<Refusal>,
    pub log: AccessLog,
    /// The worker's metrics.
    pub metrics: &'static Shard,
}

impl<G: Gateway> Connection<G> {
    /// Runs one request through the phases and writes its access-log line.
    ///
    /// This and `dispatch` return `async` blocks rather than being `async fn`s: an
    /// `async fn` moves its arguments into locals and its future keeps room for both
    /// copies (rust-lang/rust#62958), so each level of the request's future carried the
    /// request twice, and copied it.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice"
    )]
    pub fn serve(&self, mut req: Request) -> impl Future<Output = (Response, Epilogue)> + '_ {
        async move {
            // Timed only for what reads the time: the metrics and the log.
            let start = (self.metrics.counting() || self.log.is_some()).then(Stamp::now);
            let request_id = G::REQUEST_ID.map(|mode| RequestId::assign(mode, &mut req.fields));
            let spans = self.metrics.spans();
            let begun = spans.map(|sink| SpanContext::begin(&mut req.fields, sink.threshold()));
            let mut flight = InFlight {
                connection: self,
                start,
                method: method_index(&req.method),
                request_id,
                trail: Trail {
                    trace: begun.map(|begun| begun.span),
                    ..Trail::default()
                },
                recording: begun
                    .filter(|begun| begun.span.sampled)
                    .map(|begun| self.record_span(begun, &req)),
                logged: self.log.as_ref().map(|_| {
                    let path = LoggedPath::new(req.uri.path());
                    (SystemTime::now(), req.method.clone(), path)
                }),
                answered: false,
            };
            // One `await` for both cases: two would give the future two dispatch slots.
            let outcome = self.dispatch(req, &mut flight.trail).await;
            let (mut response, stop) = match outcome {
                Ok(response) => (response, None),
                Err(stop) => {
                    let (response, reason) = rescue(stop);
                    (response, Some(reason))
                }
            };
            if let Some(hsts) = self.cx.tls.as_ref().and_then(|tls| tls.spec.hsts) {
                let fields = response.fields_mut();
                if fields.get(b"strict-transport-security").is_none() {
                    fields.append(b"strict-transport-security", hsts.as_bytes());
                }
            }
            if let Some(id) = &flight.request_id {
                id.answer(response.fields_mut());
            }
            let record = flight.answer(response.status().as_u16(), stop);
            let route = flight.trail.route;
            (response, Epilogue { route, record })
        }
    }

    /// Counts and logs a request once its response has been written (or given up
    /// on): the bytes are known only then.
    pub fn finish(&self, epilogue: Epilogue, transferred: Transferred) {
        self.metrics.transferred(epilogue.route, transferred);
        if let (Some(log), Some(mut record)) = (&self.log, epilogue.record) {
            record.transferred = transferred;
            log.record(record);
        }
    }

    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice"
    )]
    fn dispatch<'a>(
        &'a self,
        mut req: Request,
        trail: &'a mut Trail,
    ) -> impl Future<Output = Result<Response, Stop>> + 'a {
        async move {
            if let Some(refusal) = self.refused {
                return Err(Stop::Refused(refusal));
            }
            if req.version == http::Version::HTTP_2
                && let Err(rejection) = http2_fields(&req.uri, &req.fields)
            {
                return Err(rejection.into());
            }
            if let Some(port) = self.cx.https_redirect {
                return redirect_to_https(&req, port);
            }
            // No client can send what an identity step sets, on any route: a public
            // route must not carry a forged identity to a service behind it. Nor under
            // a name a CGI backend reads as the same (`X_User_Id` for `X-User-Id`),
            // whatever the listener does with underscores.
            if !G::IDENTITY_HEADERS.is_empty() {
                req.fields.remove_where(|name| {
                    G::IDENTITY_HEADERS
                        .iter()
                        .any(|identity| read_alike(name, identity.as_bytes()))
                });
            }
            if let Some(tls) = &self.cx.tls {
                crate::tls::identity::forward(&mut req.fields, tls);
            }
            // No route tunnels: a CONNECT forwarded as a request would turn a pooled
            // upstream connection into a tunnel (RFC 9110 §9.3.6), so it is refused
            // whatever its target's form.
            if req.method == http::Method::CONNECT {
                let allowed = match req.uri.path() {
                    path if path.starts_with('/') => {
                        let host = host(&req.uri, req.version, &req.fields).ok().flatten();
                        self.table.allowed(host, path)
                    }
                    _ => MethodSet::ANY,
                };
                let allowed = allowed.without(&http::Method::CONNECT);
                return Err(Stop::MethodNotAllowed(allowed));
            }
            // RFC 9112 §3.2.4: `OPTIONS *` asks about the server itself, which the
            // gateway answers for every upstream behind it.
            if req.method == http::Method::OPTIONS && req.uri.path() == "*" {
                let allowed = MethodSet::ANY.without(&http::Method::CONNECT);
                return Ok(empty_ok().with_allow(allowed));
            }
            // The router and the upstream must see the same path, so the normal form
            // replaces the request's own.
            match normalize_path(req.uri.path(), self.cx.path_parameters) {
                Ok(None) => {}
                Ok(Some(normal)) => match with_path(&req.uri, &normal) {
                    Some(uri) => req.uri = uri,
                    None => return Err(Stop::bad_request("invalid path")),
                },
                Err(rejection) => return Err(rejection.into()),
            }
            if let Err(rejection) = underscores(&mut req.fields, self.cx.underscores) {
                return Err(rejection.into());
            }
            // A cheap clone (reference-counted parts) that the route's parameters borrow,
            // so that the request itself can move on to the upstream.
            let uri = req.uri.clone();
            let lookup = match host(&req.uri, req.version, &req.fields) {
                Ok(host) => self.table.lookup(host, &req.method, uri.path()),
                Err(rejection) => return Err(rejection.into()),
            };
            match lookup {
                Lookup::Found { route, params } => {
                    trail.route = Some(route);
                    match max_forwards(&req.method, &mut req.fields) {
                        Ok(MaxForwards::Forward) => {
                            self.gateway
                                .handle(route, &params, req, &self.cx, trail)
                                .await
                        }
                        Ok(MaxForwards::Answer) => Ok(self.answer_locally(&req)),
                        Err(rejection) => Err(rejection.into()),
                    }
                }
                Lookup::MethodNotAllowed { route, methods } => {
                    trail.route = Some(route);
                    Err(self.gateway.refuse_method(route, &req, &self.cx, methods))
                }
                Lookup::NotFound => Err(Stop::no_route()),
            }
        }
    }

    /// Starts the server span of a sampled request.
    fn record_span(&self, begun: Begun, req: &Request) -> Box<SpanRecord> {
        let host = host(&req.uri, req.version, &req.fields).ok().flatten();
        SpanRecord::server(
            begun,
            &req.method,
            &req.uri,
            host,
            self.cx.tls.is_some(),
            req.version,
        )
    }

    /// The answer to an OPTIONS or TRACE request whose `Max-Forwards` reached zero: the
    /// gateway is then the final recipient (RFC 9110 §7.6.2). OPTIONS gets the methods
    /// routed for the path; TRACE is refused rather than echoed, as echoing a request
    /// back exposes its credentials to scripts (cross-site tracing).
    fn answer_locally(&self, req: &Request) -> Response {
        let host = host(&req.uri, req.version, &req.fields).ok().flatten();
        let allowed = self.table.allowed(host, req.uri.path());
        if req.method == http::Method::OPTIONS {
            empty_ok().with_allow(allowed)
        } else {
            let refused = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "TRACE is not answered by the gateway",
            );
            refused.with_allow(allowed.without(&http::Method::TRACE))
        }
    }
}

/// What is left of a request once its response head is ready: counting its bytes and
/// logging it, when the response has been written.
#[derive(Debug)]
pub(crate) struct Epilogue {
    route: Option<usize>,
    /// The access-log line, but for the bytes; `None` with the log off.
    record: Option<Box<Record>>,
}

/// A request from its arrival until its response head is ready: what its metrics,
/// span and log line need.
///
/// Dropped unanswered, it counts and logs the request as 499 (`client` / `closed
/// before the response`), as nginx does. That happens when the client closed its
/// connection or reset its HTTP/2 stream, and the server dropped the request's
/// future, and the upstream exchange in it, rather than finish work nobody will read.
struct InFlight<'c, G: Gateway> {
    connection: &'c Connection<G>,
    start: Option<Stamp>,
    method: usize,
    request_id: Option<RequestId>,
    trail: Trail,
    recording: Option<Box<SpanRecord>>,
    logged: Option<(SystemTime, http::Method, LoggedPath)>,
    answered: bool,
}

impl<G: Gateway> InFlight<'_, G> {
    /// Counts the request and records its span; its log line, with the log on.
    fn answer(&mut self, status: u16, stop: Option<StopReason>) -> Option<Box<Record>> {
        self.answered = true;
        let connection = self.connection;
        let route = self.trail.route;
        let took = self.start.map_or(0, Stamp::elapsed_nanos);
        connection.metrics.request(route, self.method, status, took);
        if let Some(reason) = stop {
            connection.metrics.stopped(route, reason);
        }
        if let (Some(mut span), Some(sink)) = (self.recording.take(), connection.metrics.spans()) {
            let template = route.map(|id| G::ROUTE_INFO[id].template);
            span.answered(template, status, connection.cx.client.ip());
            sink.record(span);
        }
        let (at, method, path) = self.logged.take()?;
        Some(Box::new(Record {
            at,
            listener: connection.cx.listener,
            client: connection.cx.client.ip(),
            method,
            path,
            route: route.map(|id| &G::ROUTES[id]),
            status,
            duration: Duration::from_nanos(took),
            stop,
            request_id: self.request_id.take(),
            tls: connection.cx.tls.as_ref().map(|tls| tls.version),
            trace_id: self.trail.trace.map(|span| span.trace_id),
            served: self.trail.served.take(),
            principal: self.trail.identity.as_ref().and_then(Identity::principal),
            transferred: Transferred::default(),
        }))
    }
}

impl<G: Gateway> Drop for InFlight<'_, G> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        if let Some(record) = self.answer(CLIENT_CLOSED_STATUS, Some(CLIENT_CLOSED))
            && let Some(log) = &self.connection.log
        {
            log.record(record);
        }
    }
}

/// The status nginx logs for a request whose client left before the response: no
/// client ever reads it.
const CLIENT_CLOSED_STATUS: u16 = 499;
const CLIENT_CLOSED: StopReason = StopReason {
    by: "client",
    what: "closed before the response",
};

/// A 200 with no body, for the OPTIONS requests the gateway answers itself.
fn empty_ok() -> Response {
    Response::new(
        StatusCode::OK,
        Fields::with_capacity(1, 64),
        Body::local(""),
    )
}

/// The 308 a redirecting listener answers with: the same host and target on
/// `https://`, the port left out when it is 443. 308 rather than 301 keeps the method
/// and body of a POST (RFC 9110 §15.4.9).
fn redirect_to_https(req: &Request, port: u16) -> Result<Response, Stop> {
    let host = match host(&req.uri, req.version, &req.fields) {
        Ok(Some(host)) => host,
        Ok(None) => return Err(Stop::bad_request("missing Host header")),
        Err(rejection) => return Err(rejection.into()),
    };
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut location = format!("https://{host}");
    if port != 443 {
        location.push(':');
        location.push_str(itoa::Buffer::new().format(port));
    }
    location.push_str(target);
    let mut fields = Fields::with_capacity(1, location.len() + 16);
    fields.append(b"location", location.as_bytes());
    Ok(Response::new(
        StatusCode::PERMANENT_REDIRECT,
        fields,
        Body::local(""),
    ))
}
