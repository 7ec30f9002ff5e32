//! External authorization, as nginx's `auth_request`, Envoy's HTTP `ext_authz` and
//! Traefik's `forwardAuth` do it: before the request goes on, a `GET` of a path on an
//! authorization service, with the client request's configured fields and where it
//! was going (`X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`, and the
//! client's address in `X-Forwarded-For`).
//!
//! - A 2xx answer lets the request through, with the answer's configured fields set
//!   on it (and never a client's copy of them: see `Gateway::IDENTITY_HEADERS`).
//! - Any other answer goes back to the client as it is (status, body, and the fields
//!   a login flow needs: `Content-Type`, `WWW-Authenticate`, `Location`,
//!   `Set-Cookie`, `Cache-Control`, `Retry-After`); the upstream never sees the request.
//! - No answer within the timeout, or none at all: 503 (`fail_open = false`, the
//!   default) or through without the service's fields (`fail_open = true`), logged.
//!
//! Answers are read whole, up to 64 KiB; a longer one counts as no answer.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::identity::{ask_whole, unavailable};
use crate::message::body::Body;
use crate::message::fields::Fields;
use crate::message::response::Response;
use crate::observe::trace::SpanContext;
use crate::observe::trace::context::copy_state;
use crate::pipeline::gateway::Request;
use crate::pipeline::{RequestContext, Stop};
use crate::upstream::{Ask, Upstream};

/// Fields of a refusal that reach the client.
const PASSED_ON: [&str; 6] = [
    "content-type",
    "www-authenticate",
    "location",
    "set-cookie",
    "cache-control",
    "retry-after",
];

/// `ext_authz = { … }` of a policy.
#[derive(Debug)]
pub struct ExtAuthzSpec {
    pub name: &'static str,
    /// Path and query asked on the service.
    pub path: &'static str,
    /// Client fields the service gets (lower case).
    pub request_headers: &'static [&'static str],
    /// Fields of a 2xx answer set on the request (lower case).
    pub response_headers: &'static [&'static str],
    pub timeout: Duration,
    pub fail_open: bool,
}

impl ExtAuthzSpec {
    /// The request phase: asks `service` about `req`, within the request's `trace`.
    pub async fn check(
        &'static self,
        service: &Upstream,
        req: &mut Request,
        cx: &RequestContext,
        trace: Option<SpanContext>,
    ) -> Result<(), Stop> {
        let answer = {
            let mut fields = Fields::with_capacity(self.request_headers.len() + 2, 512);
            for name in self.request_headers {
                for value in req.fields.get_all(name.as_bytes()) {
                    fields.append(name.as_bytes(), value);
                }
            }
            fields.append(b"x-forwarded-method", req.method.as_str().as_bytes());
            if trace.is_some() {
                copy_state(&req.fields, &mut fields);
            }
            let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
            fields.append(b"x-forwarded-uri", target.as_bytes());
            let host = match req.uri.authority() {
                Some(authority) => Some(authority.as_str().as_bytes()),
                None => req.fields.get(b"host"),
            };
            let ask = Ask {
                method: &http::Method::GET,
                target: self.path,
                fields: &fields,
                body: Bytes::new(),
                original_host: host,
                trace,
            };
            ask_whole(service, ask, self.timeout, cx).await
        };
        match answer {
            Some((status, fields, _)) if status.is_success() => {
                for name in self.response_headers {
                    req.fields.remove(name.as_bytes());
                    for value in fields.get_all(name.as_bytes()) {
                        req.fields.append(name.as_bytes(), value);
                    }
                }
                Ok(())
            }
            Some((status, fields, body)) => Err(self.refusal(status, &fields, body)),
            None if self.fail_open => {
                tracing::warn!(
                    policy = self.name,
                    "authorization service did not answer; letting the request through (fail_open)"
                );
                Ok(())
            }
            None => Err(unavailable(self.name, "authorization service unavailable")),
        }
    }

    fn refusal(&self, status: StatusCode, answer: &Fields, body: Bytes) -> Stop {
        let mut fields = Fields::with_capacity(4, 256);
        for name in PASSED_ON {
            for value in answer.get_all(name.as_bytes()) {
                fields.append(name.as_bytes(), value);
            }
        }
        Stop::Answer {
            by: self.name,
            what: "refused by the authorization service",
            response: Box::new(Response::new(status, fields, Body::local(body))),
        }
    }
}
