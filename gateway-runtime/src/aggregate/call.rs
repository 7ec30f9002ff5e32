//! One backend call of an aggregate route: the request, the whole answer within the
//! call's timeout and body bound, parsed as JSON and shaped by the call's rules.

use std::fmt;

use bytes::Bytes;
use http::Method;

use super::CallSpec;
use super::answer::Answer;
use super::caching::Caching;
use super::template::Values;
use crate::message::body::NotWhole;
use crate::message::fields::Fields;
use crate::observe::trace::SpanContext;
use crate::observe::trace::context::copy_state;
use crate::pipeline::RequestContext;
use crate::pipeline::gateway::{Params, Request};
use crate::upstream::{Ask, Upstream};

/// A call's answer, and what its response allowed caches.
#[derive(Debug)]
pub struct Answered {
    pub answer: Answer,
    pub caching: Caching,
}

/// Why a call gave no answer; its `Display` is what `_errors` and the 502 say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The template filled with the request's values is not a request target.
    Target,
    /// No connection, or it failed before a whole answer.
    Unavailable(&'static str),
    Timeout,
    /// The backend answered with a status that is not 2xx.
    Status(u16),
    TooLarge,
    NotJson,
    /// The call depends on this call, which failed.
    Needs(&'static str),
    /// The answer this call depends on has no scalar at this reference.
    NoValue(&'static str),
    /// The answer's value at this reference, which the call's path uses, is not one
    /// path segment (`..`, or with a `/`).
    NotSegment(&'static str),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Target => f.write_str("the request's values make no valid target"),
            CallError::Unavailable(why) => f.write_str(why),
            CallError::Timeout => f.write_str("timed out"),
            CallError::Status(status) => write!(f, "answered {status}"),
            CallError::TooLarge => f.write_str("answer too large"),
            CallError::NotJson => f.write_str("answer is not JSON"),
            CallError::Needs(key) => write!(f, "needs `{key}`, which failed"),
            CallError::NoValue(reference) => write!(f, "`{{{reference}}}` has no value to use"),
            CallError::NotSegment(reference) => {
                write!(f, "`{{{reference}}}` is not one path segment")
            }
        }
    }
}

/// Calls `upstream` as `spec` says for the client's `req`, and reads its answer.
/// `needs` are the answers of the calls `spec` depends on, in its slots' order.
pub async fn call(
    upstream: &Upstream,
    spec: &'static CallSpec,
    req: &Request,
    params: &Params<'_, '_>,
    needs: &[&Result<Answered, CallError>],
    cx: &RequestContext,
    trace: Option<SpanContext>,
) -> Result<Answered, CallError> {
    let values = Values {
        uri: &req.uri,
        params,
        needs,
    };
    let target = values.target(spec.path)?;
    let body = match spec.body {
        Some(pieces) => Bytes::from(values.body(pieces)?),
        None => Bytes::new(),
    };
    let method = Method::from_bytes(spec.method.as_bytes()).unwrap_or(Method::GET);
    let mut fields = Fields::with_capacity(spec.forward.len() + 2, 64);
    for name in spec.forward {
        for value in req.fields.get_all(name.as_bytes()) {
            fields.append(name.as_bytes(), value);
        }
    }
    // The answer is read here, as it is: a content coding (RFC 9110 §12.5.3) would
    // make it unreadable.
    fields.append(b"accept", b"application/json");
    fields.append(b"accept-encoding", b"identity");
    if trace.is_some() {
        copy_state(&req.fields, &mut fields);
    }
    if spec.body.is_some() {
        fields.append(b"content-type", b"application/json");
    }
    let original_host = match req.uri.authority() {
        Some(authority) => Some(authority.as_str().as_bytes()),
        None => req.fields.get(b"host"),
    };
    let asked = async {
        let response = upstream
            .ask(
                Ask {
                    method: &method,
                    target: target.as_str(),
                    fields: &fields,
                    body,
                    original_host,
                    trace,
                },
                cx,
            )
            .await
            .map_err(|e| CallError::Unavailable(e.kind()))?;
        let (status, fields, body) = response.into_parts();
        if !status.is_success() {
            return Err(CallError::Status(status.as_u16()));
        }
        let body = body.whole(spec.max_body).await.map_err(|e| match e {
            NotWhole::TooLarge => CallError::TooLarge,
            NotWhole::BrokeOff => CallError::Unavailable("the answer broke off"),
        })?;
        Ok((body, Caching::of(&fields)))
    };
    let (body, caching) = tokio::time::timeout(spec.timeout, asked)
        .await
        .map_err(|_| CallError::Timeout)??;
    let answer = if spec.rules.is_empty() {
        Answer::checked(body)
    } else {
        Answer::shaped(&spec.rules, &body)
    };
    let answer = answer.ok_or(CallError::NotJson)?;
    Ok(Answered { answer, caching })
}
