//! An upstream: its targets, round-robin over them, a keep-alive connection pool, and
//! the forwarding of one request with its failure modes mapped to 502 and 504.

use std::cell::Cell;
use std::error::Error as _;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{StatusCode, Version};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::error::json_error;
use crate::gateway::{Request, RequestContext, Response, UpstreamSpec};
use crate::headers::{X_FORWARDED_HOST, X_FORWARDED_PROTO, append_forwarded_for, strip_hop_by_hop};
use crate::settings::SettingError;

/// One target, with what every request to it needs precomputed.
#[derive(Debug)]
struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    /// `Host` sent upstream: the target's authority, as nginx and Kong send by default;
    /// the client's host travels in `X-Forwarded-Host`.
    host: HeaderValue,
}

/// A pool of targets served round-robin; one instance per worker thread, so the
/// rotation and the connection pool need no locks.
#[derive(Debug)]
pub struct Upstream {
    name: &'static str,
    endpoints: Box<[Endpoint]>,
    next: Cell<usize>,
    client: Client<HttpConnector, Limited<Incoming>>,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(spec: &'static UpstreamSpec) -> Result<Self, SettingError> {
        let endpoints = spec
            .targets
            .iter()
            .map(|setting| {
                let target = setting.target()?;
                let host = HeaderValue::from_str(target.authority.as_str())
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
                Ok(Endpoint {
                    scheme: target.scheme,
                    authority: target.authority,
                    host,
                })
            })
            .collect::<Result<Box<[_]>, SettingError>>()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(spec.connect_timeout.duration()?));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(spec.idle_timeout.duration()?)
            .build(connector);
        Ok(Self {
            name: spec.name,
            endpoints,
            next: Cell::new(0),
            client,
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
        let mut req = req.map(|body| Limited::new(body, limit));
        let endpoint = self.pick();
        let path = match path {
            Some(path) => path,
            None => req
                .uri_mut()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(endpoint.scheme.clone());
        parts.authority = Some(endpoint.authority.clone());
        parts.path_and_query = Some(path);
        let Ok(uri) = Uri::from_parts(parts) else {
            return json_error(StatusCode::BAD_REQUEST, "invalid request target");
        };
        let original_host = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| req.headers().get(HOST).cloned());
        *req.uri_mut() = uri;
        // The upstream leg is HTTP/1.1 whatever the client spoke.
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        append_forwarded_for(headers, &cx.client_ip);
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        match original_host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
        headers.insert(HOST, endpoint.host.clone());

        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::Upstream(body))
            }
            Ok(Err(e)) => {
                let (status, message) = failure(&e);
                tracing::warn!(upstream = self.name, target = %endpoint.authority, error = %error_chain(&e), "upstream request failed");
                json_error(status, message)
            }
            Err(_) => {
                tracing::warn!(upstream = self.name, target = %endpoint.authority, timeout = ?self.response_timeout, "upstream response timed out");
                json_error(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            }
        }
    }
}

/// The status for a failed upstream exchange: the client's body crossing the limit is
/// the client's fault (413); a connect timeout is a 504; anything else a 502.
fn failure(e: &hyper_util::client::legacy::Error) -> (StatusCode, &'static str) {
    let mut source = e.source();
    while let Some(err) = source {
        if err.is::<LengthLimitError>() {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return (StatusCode::GATEWAY_TIMEOUT, "upstream connect timed out");
        }
        source = err.source();
    }
    if e.is_connect() {
        (StatusCode::BAD_GATEWAY, "upstream unreachable")
    } else {
        (StatusCode::BAD_GATEWAY, "upstream connection failed")
    }
}

fn error_chain(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}
