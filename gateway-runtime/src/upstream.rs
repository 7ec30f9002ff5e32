//! An upstream: its targets, round-robin over them, a keep-alive connection pool, and
//! the forwarding of one request with its failure modes mapped to 502 and 504.

use std::cell::Cell;
use std::error::Error as _;
use std::rc::Rc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{StatusCode, Version};
use http_body_util::{LengthLimitError, Limited};

use crate::body::Body;
use crate::error::json_error;
use crate::gateway::{Request, RequestContext, Response, UpstreamSpec};
use crate::headers::{
    X_FORWARDED_HOST, X_FORWARDED_PROTO, append_forwarded_for, append_via, strip_hop_by_hop,
};
use crate::pool::{ConnectError, Connection, Pool, PooledBody, RequestBody};
use crate::settings::SettingError;

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

/// Why forwarding failed, mapped to a status by `failure`.
enum Failure {
    Connect(ConnectError),
    Exchange(hyper::Error),
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

    /// Sends `req` to the next target, with `path` (or the request's own path and
    /// query) as the target, and streams the response back.
    pub async fn forward(
        &self,
        req: Request,
        path: Option<PathAndQuery>,
        cx: &RequestContext,
    ) -> Response {
        // A declared length over the limit is refused before the upstream is bothered;
        // a body without one is cut off when it crosses the limit (see `failure`).
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > cx.max_body) {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        let limit = usize::try_from(cx.max_body).unwrap_or(usize::MAX);
        let endpoint = self.pick();
        // Changed in place: moving a request costs a copy of its head each time.
        let mut req = req;
        let path = match path {
            Some(path) => path,
            None => req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        };
        let original_host = match req.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => req.headers().get(HOST).cloned(),
        };
        // Origin-form: the upstream is an origin server, not a proxy.
        *req.uri_mut() = Uri::from(path);
        let received = req.version();
        // The upstream leg is HTTP/1.1 whatever the client spoke.
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        append_via(headers, received);
        append_forwarded_for(headers, &cx.client_ip);
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        match original_host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
        headers.insert(HOST, endpoint.host.clone());
        let req = req.map(|body| Limited::new(body, limit));

        match tokio::time::timeout(self.response_timeout, self.exchange(endpoint, req)).await {
            Ok(Ok((mut response, conn))) => {
                strip_hop_by_hop(response.headers_mut());
                append_via(response.headers_mut(), Version::HTTP_11);
                let pool = endpoint.pool.clone();
                response.map(|body| Body::Upstream(PooledBody::new(body, pool, conn)))
            }
            Ok(Err(e)) => {
                let (status, message) = failure(&e);
                match &e {
                    Failure::Connect(e) => {
                        tracing::warn!(upstream = self.name, target = %endpoint.authority, error = %e, "upstream connect failed")
                    }
                    Failure::Exchange(e) => {
                        tracing::warn!(upstream = self.name, target = %endpoint.authority, error = %error_chain(e), "upstream request failed")
                    }
                }
                json_error(status, message)
            }
            Err(_) => {
                tracing::warn!(upstream = self.name, target = %endpoint.authority, timeout = ?self.response_timeout, "upstream response timed out");
                json_error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            }
        }
    }

    /// Sends the request on a pooled connection, or a new one. A pooled connection may
    /// have been closed by the upstream in the meantime; when hyper reports that the
    /// request was not sent at all, it is sent again on the next connection, which is
    /// safe for any method because the upstream never saw it.
    async fn exchange(
        &self,
        endpoint: &Endpoint,
        mut req: http::Request<RequestBody>,
    ) -> Result<(http::Response<hyper::body::Incoming>, Connection), Failure> {
        loop {
            let mut conn = match endpoint.pool.checkout() {
                Some(conn) => conn,
                // Boxed because it is rare: inline, the connect future would make
                // every request's future larger, and futures are moved by copying.
                None => Box::pin(Pool::connect(&endpoint.authority, self.connect_timeout))
                    .await
                    .map_err(Failure::Connect)?,
            };
            if let Err(e) = conn.sender.ready().await {
                if conn.reused {
                    continue;
                }
                return Err(Failure::Exchange(e));
            }
            match conn.sender.try_send_request(req).await {
                Ok(response) => return Ok((response, conn)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if conn.reused => req = unsent,
                    _ => return Err(Failure::Exchange(e.into_error())),
                },
            }
        }
    }
}

/// The status for a failed upstream exchange: the client's body crossing the limit is
/// the client's fault (413); a connect timeout is a 504; anything else a 502.
fn failure(e: &Failure) -> (StatusCode, &'static str) {
    match e {
        Failure::Connect(ConnectError::TimedOut) => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream connect timed out")
        }
        Failure::Connect(_) => (StatusCode::BAD_GATEWAY, "upstream unreachable"),
        Failure::Exchange(e) => {
            let mut source = e.source();
            while let Some(err) = source {
                if err.is::<LengthLimitError>() {
                    return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
                }
                source = err.source();
            }
            (StatusCode::BAD_GATEWAY, "upstream connection failed")
        }
    }
}

fn error_chain(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}
