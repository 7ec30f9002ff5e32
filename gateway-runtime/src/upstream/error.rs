//! Why an upstream call failed, typed by the phase it failed in, so that the rescue
//! (and later retries, circuit breaking and fallbacks) can tell a refused connect from
//! a timeout from a broken response without looking at a status.

use std::io;

use crate::h1::client::ExchangeError;
use crate::upstream::pool::ConnectError;

#[derive(Debug)]
pub enum UpstreamError {
    /// No connection within `timeouts.connect`.
    ConnectTimeout,
    /// The connection was refused or could not be made.
    Connect(io::Error),
    /// The TLS handshake failed: most often, the upstream's certificate was not
    /// accepted.
    Tls(io::Error),
    /// No response head within `timeouts.response` of the end of the request.
    ResponseTimeout,
    /// The upstream took none of the request body for `timeouts.body`.
    SendTimeout,
    /// The connection ended before any byte of a response (with the error, if any).
    Closed(Option<io::Error>),
    /// The connection failed once the response had begun.
    Io(io::Error),
    /// The response cannot be forwarded faithfully: malformed, ambiguous framing.
    InvalidResponse(&'static str),
    /// The client's body crossed the listener's limit while it was being sent.
    RequestBodyTooLarge,
    /// The client's body could not be read: the client left, or framed it badly.
    RequestBody,
    /// The client sent none of its body for the listener's `timeouts.body`.
    RequestBodyTimeout,
}

impl UpstreamError {
    /// A fixed name for the kind of failure, for logs.
    /// The fault's name in metrics and traces (`UPSTREAM_FAULTS`); `None` for faults
    /// of the client's own body, which are not the upstream's.
    pub fn fault(&self) -> Option<&'static str> {
        Some(match self {
            UpstreamError::Connect(_) => "connect_error",
            UpstreamError::ConnectTimeout => "connect_timeout",
            UpstreamError::Tls(_) => "tls_error",
            UpstreamError::ResponseTimeout => "response_timeout",
            UpstreamError::SendTimeout => "send_timeout",
            UpstreamError::Closed(_) | UpstreamError::Io(_) => "reset",
            UpstreamError::InvalidResponse(_) => "invalid_response",
            UpstreamError::RequestBodyTooLarge
            | UpstreamError::RequestBody
            | UpstreamError::RequestBodyTimeout => return None,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::ConnectTimeout => "connect timed out",
            UpstreamError::Connect(_) => "connect failed",
            UpstreamError::Tls(_) => "upstream TLS handshake failed",
            UpstreamError::ResponseTimeout => "response timed out",
            UpstreamError::SendTimeout => "upstream stopped reading the request",
            UpstreamError::Closed(_) => "closed before a response",
            UpstreamError::Io(_) => "connection failed",
            UpstreamError::InvalidResponse(why) => why,
            UpstreamError::RequestBodyTooLarge => "request body too large",
            UpstreamError::RequestBody => "request body broke off",
            UpstreamError::RequestBodyTimeout => "request body timed out",
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connect: {e}"),
            UpstreamError::Tls(e) => write!(f, "TLS handshake: {e}"),
            UpstreamError::Closed(Some(e)) => write!(f, "connection failed before a response: {e}"),
            UpstreamError::Io(e) => write!(f, "connection failed: {e}"),
            UpstreamError::InvalidResponse(why) => write!(f, "invalid response: {why}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl From<ConnectError> for UpstreamError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::TimedOut => UpstreamError::ConnectTimeout,
            ConnectError::Io(e) => UpstreamError::Connect(e),
            ConnectError::Tls(e) => UpstreamError::Tls(e),
        }
    }
}

impl From<ExchangeError> for UpstreamError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::BodyTooLarge => UpstreamError::RequestBodyTooLarge,
            ExchangeError::ClientBody => UpstreamError::RequestBody,
            ExchangeError::ClientBodyTimeout => UpstreamError::RequestBodyTimeout,
            ExchangeError::SendTimeout => UpstreamError::SendTimeout,
            ExchangeError::ResponseTimeout => UpstreamError::ResponseTimeout,
            ExchangeError::NoResponse(e) => UpstreamError::Closed(e),
            ExchangeError::Io(e) => UpstreamError::Io(e),
            ExchangeError::Invalid(why) => UpstreamError::InvalidResponse(why),
        }
    }
}
