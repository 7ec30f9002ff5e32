//! What the gateway tells operators, recorded on every exit of the pipeline (the
//! logging phase): the access log, the metrics and the traces.

#[cfg(feature = "server")]
pub mod access_log;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod random;
#[cfg(feature = "server")]
pub mod request_id;
pub mod series;
#[cfg(feature = "server")]
pub mod text;
#[cfg(feature = "server")]
pub mod trace;

/// A request's body bytes: read from the client, and written to it. Bodies only, on
/// either protocol, as Envoy's `%BYTES_RECEIVED%` and `%BYTES_SENT%`: an HTTP/2 head's
/// size on the wire depends on the connection's HPACK state, not on the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    pub received: u64,
    pub sent: u64,
}
