//! Responses the gateway writes itself: `{"error": "...", "status": N}` with the status.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use bytes::Bytes;
use http_body_util::Full;

use crate::body::Body;

/// A JSON error response. `message` is one of the gateway's own fixed texts, never
/// client input; `json::quote` escapes it all the same.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, message).map(Body::Local)
}

/// The same with a plain body, for the admin listener, whose responses never come from
/// an upstream.
pub fn json_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        r#"{{"error":{},"status":{}}}"#,
        crate::json::quote(message),
        status.as_u16()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body is valid JSON carrying the status.
    #[test]
    fn shape() {
        let r = json_error(StatusCode::NOT_FOUND, "no route");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }
}
