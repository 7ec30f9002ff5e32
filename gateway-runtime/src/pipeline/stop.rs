//! Why a request stopped before its target produced a response, and `rescue`: the one
//! place where a stop becomes the response the client gets (in the spirit of
//! linkerd2-proxy's `errors::respond`). Every status the gateway answers on its own
//! behalf is decided here, so retries, fallbacks and metrics can later match on the
//! typed reason instead of on a status.

use http::StatusCode;
use http::uri::PathAndQuery;

use crate::limit::Limited;
use crate::message::error::json_error;
use crate::message::methods::MethodSet;
use crate::message::request::Rejection;
use crate::message::response::Response;
use crate::upstream::UpstreamError;

/// A request that will not reach, or did not get an answer from, its target.
#[derive(Debug)]
pub enum Stop {
    /// A check or a policy refused the request.
    Refused(Refusal),
    /// The path is routed, but not for this method: the methods it is routed for.
    MethodNotAllowed(MethodSet),
    /// The upstream call failed.
    Upstream {
        upstream: &'static str,
        error: UpstreamError,
    },
    /// A rate limit refused the request: 429.
    RateLimited(Limited),
    /// A policy answers in the target's place: an authorization service's refusal,
    /// passed on to the client.
    Answer {
        by: &'static str,
        what: &'static str,
        response: Box<Response>,
    },
}

/// A refusal: the status, the fixed message the client reads, and who refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
    /// `request` for the checks every request passes, `router`, or a policy's name.
    pub by: &'static str,
    /// The `WWW-Authenticate` value of a 401 (RFC 9110 §11.6.1 requires one) or of a
    /// 403 for a token without the scope a route needs (RFC 6750 §3).
    pub challenge: Option<&'static str>,
}

impl Refusal {
    /// A policy refused the client's address: 403.
    pub const fn forbidden(policy: &'static str) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            message: "client address not allowed",
            by: policy,
            challenge: None,
        }
    }
}

/// Why a request stopped, as the access log records it: who stopped it and what
/// happened, both fixed strings, so recording it costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReason {
    pub by: &'static str,
    pub what: &'static str,
}

impl Stop {
    /// A policy refused the client's address.
    pub fn forbidden(policy: &'static str) -> Self {
        Stop::Refused(Refusal::forbidden(policy))
    }

    /// `by` refused the request with `status` and a fixed `message`.
    pub fn refused(status: StatusCode, message: &'static str, by: &'static str) -> Self {
        Stop::Refused(Refusal {
            status,
            message,
            by,
            challenge: None,
        })
    }

    /// A request that is malformed in a way the gateway found.
    pub fn bad_request(message: &'static str) -> Self {
        Stop::Refused(Refusal {
            status: StatusCode::BAD_REQUEST,
            message,
            by: "request",
            challenge: None,
        })
    }

    /// The upstream call of `upstream` failed.
    pub fn upstream(upstream: &'static str, error: UpstreamError) -> Self {
        Stop::Upstream { upstream, error }
    }

    /// No route takes the request.
    pub fn no_route() -> Self {
        Stop::Refused(Refusal {
            status: StatusCode::NOT_FOUND,
            message: "no route",
            by: "router",
            challenge: None,
        })
    }
}

/// The path to send upstream after a rewrite or a stripped prefix: one that is not a
/// valid request target (a `"` placed into the query, or output over 64 KiB) stops
/// the request with 400 rather than letting the client's own path through.
pub fn changed_path(path: Option<PathAndQuery>) -> Result<Option<PathAndQuery>, Stop> {
    match path {
        Some(path) => Ok(Some(path)),
        None => Err(Stop::bad_request(
            "the rewritten path is not a valid request target",
        )),
    }
}

impl From<Rejection> for Stop {
    fn from(rejection: Rejection) -> Self {
        Stop::Refused(Refusal {
            status: rejection.status,
            message: rejection.message,
            by: "request",
            challenge: None,
        })
    }
}

/// The response for a stopped request, and the reason the log records.
pub fn rescue(stop: Stop) -> (Response, StopReason) {
    match stop {
        Stop::Refused(refusal) => {
            let mut response = json_error(refusal.status, refusal.message);
            if let Some(challenge) = refusal.challenge {
                response
                    .fields_mut()
                    .append(b"www-authenticate", challenge.as_bytes());
            }
            let reason = StopReason {
                by: refusal.by,
                what: refusal.message,
            };
            (response, reason)
        }
        Stop::MethodNotAllowed(methods) => {
            let response = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                .with_allow(methods);
            let reason = StopReason {
                by: "router",
                what: "method not allowed",
            };
            (response, reason)
        }
        Stop::Answer { by, what, response } => (*response, StopReason { by, what }),
        Stop::RateLimited(limited) => {
            let what = limited.what;
            let mut response = json_error(StatusCode::TOO_MANY_REQUESTS, what);
            limited.apply(&mut response);
            let reason = StopReason {
                by: limited.by,
                what,
            };
            (response, reason)
        }
        Stop::Upstream { upstream, error } => {
            let (status, message) = upstream_status(&error);
            let reason = StopReason {
                by: upstream,
                what: error.kind(),
            };
            (json_error(status, message), reason)
        }
    }
}

/// The status for a failed upstream call: timeouts are 504s; the client's own body
/// crossing the limit, breaking off or stalling is the client's fault (413, 400, 408);
/// anything else the upstream did is a 502.
fn upstream_status(error: &UpstreamError) -> (StatusCode, &'static str) {
    match error {
        UpstreamError::ConnectTimeout => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream connect timed out")
        }
        UpstreamError::Connect(_) => (StatusCode::BAD_GATEWAY, "upstream unreachable"),
        UpstreamError::Tls(_) => (StatusCode::BAD_GATEWAY, "upstream TLS handshake failed"),
        UpstreamError::ResponseTimeout | UpstreamError::SendTimeout => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
        }
        UpstreamError::RequestBodyTooLarge => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        UpstreamError::RequestBody => (StatusCode::BAD_REQUEST, "request body could not be read"),
        // RFC 9110 §15.5.9; nginx answers `client_body_timeout` so too.
        UpstreamError::RequestBodyTimeout => (
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        ),
        UpstreamError::Closed(_) | UpstreamError::Io(_) | UpstreamError::InvalidResponse(_) => {
            (StatusCode::BAD_GATEWAY, "upstream connection failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each upstream failure maps to its status, and the log names the upstream.
    #[test]
    fn upstream_failures() {
        for (error, status) in [
            (UpstreamError::ConnectTimeout, 504),
            (UpstreamError::ResponseTimeout, 504),
            (
                UpstreamError::Connect(std::io::ErrorKind::ConnectionRefused.into()),
                502,
            ),
            (UpstreamError::Closed(None), 502),
            (
                UpstreamError::Tls(std::io::ErrorKind::InvalidData.into()),
                502,
            ),
            (UpstreamError::InvalidResponse("malformed head"), 502),
            (UpstreamError::RequestBodyTooLarge, 413),
            (UpstreamError::RequestBody, 400),
            (UpstreamError::RequestBodyTimeout, 408),
            (UpstreamError::SendTimeout, 504),
        ] {
            let (response, reason) = rescue(Stop::Upstream {
                upstream: "users",
                error,
            });
            assert_eq!(response.status(), status);
            assert_eq!(reason.by, "users");
        }
    }

    /// A wrong method is a 405 that lists the route's methods in `Allow`.
    #[test]
    fn method_not_allowed() {
        let methods = MethodSet::from_name("GET").expect("GET");
        let (response, reason) = rescue(Stop::MethodNotAllowed(methods));
        assert_eq!(response.status(), 405);
        assert_eq!(response.fields().get(b"allow"), Some(&b"GET, HEAD"[..]));
        assert_eq!(reason.by, "router");
    }

    /// A policy's refusal names the policy for the log.
    #[test]
    fn refusals() {
        let (response, reason) = rescue(Stop::forbidden("office"));
        assert_eq!(response.status(), 403);
        assert_eq!(
            reason,
            StopReason {
                by: "office",
                what: "client address not allowed"
            }
        );
    }
}
