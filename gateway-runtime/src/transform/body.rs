//! A route's body rules: the client's JSON request body or the upstream's JSON
//! response body, read whole up to a bound, shaped by field rules, and sent on.
//!
//! Only a route with a rule reads a body whole; every other route streams it. A
//! body a rule does not apply to passes through untouched: a content type other than
//! JSON (`application/json`, `*/*+json`), a response that is not a 2xx with content
//! (or answers a HEAD), one marked `Cache-Control: no-transform` (RFC 9110 §7.7). A
//! JSON request body over the bound is 413, one that is not JSON 400, one under a
//! content coding 415, before the upstream sees the request; a JSON response over the
//! bound, not JSON, or under a content coding is 502, as the upstream's fault.
//!
//! A JSON body under a coding (gzip) cannot be read here, and passing it on unshaped
//! would let a `deny` or `fields` rule be stepped around. So a route with a response
//! rule asks its upstream for answers without a coding, whatever the client accepts:
//! HTTP libraries (OkHttp, NSURLSession, browsers) send `Accept-Encoding: gzip` on
//! every request, and most upstreams then compress JSON.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::shape::Rules;
use crate::h1::request_body::{ClientBodyError, RequestBody};
use crate::message::body::{Body, NotWhole};
use crate::message::fields::Fields;
use crate::message::response::Response;
use crate::pipeline::Stop;
use crate::pipeline::gateway::Request;

/// The body rules of one direction of a route, as the compiler lays them out.
#[derive(Debug)]
pub struct BodyRules {
    /// The route, for the refusals.
    pub route: &'static str,
    pub rules: Rules,
    /// The longest body read.
    pub max_body: usize,
}

/// Shapes the request's body if it is JSON, before the upstream is contacted.
pub async fn shape_request(req: &mut Request, spec: &'static BodyRules) -> Result<(), Stop> {
    let refused = |status, message| Stop::refused(status, message, spec.route);
    match content(&req.fields) {
        Content::Other => return Ok(()),
        // RFC 9110 §15.5.16: a content coding the server does not accept is a 415.
        Content::CodedJson => {
            return Err(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request body has a content coding",
            ));
        }
        Content::Json => {}
    }
    let body = std::mem::replace(&mut req.body, RequestBody::Whole(None));
    let read = Limited::new(body, spec.max_body).collect().await;
    let bytes = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
        Err(e) if matches!(e.downcast_ref(), Some(ClientBodyError::TimedOut)) => {
            return Err(refused(
                StatusCode::REQUEST_TIMEOUT,
                "request body timed out",
            ));
        }
        Err(_) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "request body could not be read",
            ));
        }
    };
    let shaped = spec
        .rules
        .shape(&bytes)
        .map(Bytes::from)
        .ok_or_else(|| refused(StatusCode::BAD_REQUEST, "request body is not JSON"))?;
    replace_length(&mut req.fields, shaped.len());
    req.body = RequestBody::Whole(Some(shaped));
    Ok(())
}

/// Shapes the upstream's response body if it is JSON content of a success.
pub async fn shape_response(
    response: Response,
    spec: &'static BodyRules,
    head: bool,
) -> Result<Response, Stop> {
    let status = response.status();
    let has_content = status.is_success()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::PARTIAL_CONTENT
        && !head;
    if !has_content || no_transform(response.fields()) {
        return Ok(response);
    }
    let failed = |message: &'static str| {
        tracing::warn!(route = spec.route, message, "a response body rule failed");
        Stop::refused(StatusCode::BAD_GATEWAY, message, spec.route)
    };
    match content(response.fields()) {
        Content::Other => return Ok(response),
        // Asked for without a coding (`ask_uncoded`), sent with one.
        Content::CodedJson => return Err(failed("upstream response has a content coding")),
        Content::Json => {}
    }
    let (status, mut fields, body) = response.into_parts();
    let bytes = body.whole(spec.max_body).await.map_err(|e| match e {
        NotWhole::TooLarge => failed("upstream response too large"),
        NotWhole::BrokeOff => failed("upstream response broke off"),
    })?;
    let shaped = spec
        .rules
        .shape(&bytes)
        .map(Bytes::from)
        .ok_or_else(|| failed("upstream response is not JSON"))?;
    replace_length(&mut fields, shaped.len());
    // A changed representation: validators and digests of the old one no longer hold.
    for name in [
        &b"etag"[..],
        b"content-md5",
        b"content-digest",
        b"repr-digest",
    ] {
        fields.remove(name);
    }
    Ok(Response::new(status, fields, Body::local(shaped)))
}

/// Asks the upstream for an answer without a content coding (RFC 9110 §12.5.3), on
/// a route whose response rule must read it: the client's `Accept-Encoding` is
/// replaced, not passed on.
pub fn ask_uncoded(req: &mut Request) {
    req.fields.set(b"accept-encoding", b"identity");
}

/// What a message says its body is, for a rule that reads JSON.
#[derive(Debug, PartialEq, Eq)]
enum Content {
    /// JSON, as it is: the rule applies.
    Json,
    /// JSON under a content coding the gateway does not undo.
    CodedJson,
    /// Anything else, which rules leave alone.
    Other,
}

fn content(fields: &Fields) -> Content {
    if !fields.get(b"content-type").is_some_and(is_json) {
        return Content::Other;
    }
    let coded = fields
        .list_members(b"content-encoding")
        .any(|coding| !coding.eq_ignore_ascii_case(b"identity"));
    if coded {
        Content::CodedJson
    } else {
        Content::Json
    }
}

/// `application/json` or a `+json` suffix (RFC 6839 §3.1), parameters aside.
fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
        || (essence.len() > 5
            && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
            && essence.contains(&b'/'))
}

/// RFC 9110 §7.7: a `no-transform` directive forbids changing the content.
fn no_transform(fields: &Fields) -> bool {
    fields
        .list_members(b"cache-control")
        .any(|directive| directive.eq_ignore_ascii_case(b"no-transform"))
}

/// The new body's length in place of the old framing.
fn replace_length(fields: &mut Fields, len: usize) {
    fields.remove(b"transfer-encoding");
    let mut digits = itoa::Buffer::new();
    fields.set(b"content-length", digits.format(len).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for yes in [
            &b"application/json"[..],
            b"Application/JSON; charset=utf-8",
            b"application/problem+json",
            b" application/vnd.api+json ;x=1",
        ] {
            assert!(is_json(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"text/html"[..],
            b"application/jsonx",
            b"+json",
            b"text/plain; a=application/json",
        ] {
            assert!(!is_json(no), "{}", String::from_utf8_lossy(no));
        }
    }

    /// A coding other than `identity`, in any of the field's lines or list members,
    /// makes JSON unreadable here; a coding on anything else does not matter.
    #[test]
    fn codings_on_json() {
        let of = |list: &[(&str, &str)]| content(&Fields::of(list));
        assert_eq!(of(&[("Content-Type", "application/json")]), Content::Json);
        assert_eq!(
            of(&[
                ("Content-Type", "application/json"),
                ("Content-Encoding", " Identity ")
            ]),
            Content::Json
        );
        for coded in [
            &[("content-encoding", "gzip")][..],
            &[("content-encoding", "identity, br")],
            &[
                ("content-encoding", "identity"),
                ("content-encoding", "zstd"),
            ],
        ] {
            let mut list = vec![("content-type", "application/problem+json")];
            list.extend_from_slice(coded);
            assert_eq!(of(&list), Content::CodedJson, "{coded:?}");
        }
        assert_eq!(
            of(&[("Content-Type", "image/png"), ("Content-Encoding", "gzip")]),
            Content::Other
        );
        assert_eq!(of(&[("Content-Encoding", "gzip")]), Content::Other);
    }

    #[test]
    fn no_transform_is_found_among_directives() {
        let mut fields = Fields::with_capacity(2, 64);
        fields.append(b"cache-control", b"max-age=60, No-Transform");
        assert!(no_transform(&fields));
        let mut fields = Fields::with_capacity(2, 64);
        fields.append(b"cache-control", b"no-store");
        assert!(!no_transform(&fields));
    }
}
