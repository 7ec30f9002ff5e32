//! Responses the gateway writes itself: `{"error": "...", "status": N}` with the status.

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};

use bytes::Bytes;
use http_body_util::Full;

use crate::message::response::Response;

/// A JSON error response. `message` is one of the gateway's own fixed texts, never
/// client input; `json::quote` escapes it all the same.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    Response::local(status, b"application/json", error_body(status, message))
}

/// The same for the admin listener, which hyper serves.
pub fn json_response(status: StatusCode, message: &str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(error_body(status, message)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_body(status: StatusCode, message: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"error":{},"status":{}}}"#,
        crate::message::json::quote(message),
        status.as_u16()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body is valid JSON carrying the status.
    #[test]
    fn shape() {
        let r = json_error(StatusCode::NOT_FOUND, "no route");
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.fields().get(b"content-type"),
            Some(&b"application/json"[..])
        );
    }
}
