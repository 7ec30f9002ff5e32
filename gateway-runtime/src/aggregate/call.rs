//! One backend call of an aggregate route: the request, the whole answer within the
//! call's timeout and body bound, parsed as JSON and shaped by the call's rules.

use std::fmt;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use serde_json::Value;

use super::CallSpec;
use super::answer::Answer;
use crate::message::fields::Fields;
use crate::pipeline::RequestContext;
use crate::pipeline::gateway::{Params, Request};
use crate::route::path;
use crate::upstream::Upstream;

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
        }
    }
}

/// Calls `upstream` as `spec` says for the client's `req`, and reads its answer.
pub async fn call(
    upstream: &Upstream,
    spec: &'static CallSpec,
    req: &Request,
    params: &Params<'_, '_>,
    cx: &RequestContext,
) -> Result<Answer, CallError> {
    let target = path::fill(&req.uri, spec.path, params).ok_or(CallError::Target)?;
    let method = Method::from_bytes(spec.method.as_bytes()).unwrap_or(Method::GET);
    let mut fields = Fields::with_capacity(spec.forward.len() + 1, 64);
    for name in spec.forward {
        for value in req.fields.get_all(name.as_bytes()) {
            fields.append(name.as_bytes(), value);
        }
    }
    fields.append(b"accept", b"application/json");
    let original_host = match req.uri.authority() {
        Some(authority) => Some(authority.as_str().as_bytes()),
        None => req.fields.get(b"host"),
    };
    let asked = async {
        let response = upstream
            .ask(
                &method,
                target.as_str(),
                &fields,
                Bytes::new(),
                original_host,
                cx,
            )
            .await
            .map_err(|e| CallError::Unavailable(e.kind()))?;
        let (status, _, body) = response.into_parts();
        if !status.is_success() {
            return Err(CallError::Status(status.as_u16()));
        }
        let body = http_body_util::Limited::new(body, spec.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    CallError::TooLarge
                } else {
                    CallError::Unavailable("the answer broke off")
                }
            })?
            .to_bytes();
        Ok(body)
    };
    let body = tokio::time::timeout(spec.timeout, asked)
        .await
        .map_err(|_| CallError::Timeout)??;
    if spec.rules.is_empty() {
        let raw = serde_json::from_slice(&body).map_err(|_| CallError::NotJson)?;
        return Ok(Answer::Raw(raw));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|_| CallError::NotJson)?;
    Ok(Answer::Value(spec.rules.apply(value)))
}
