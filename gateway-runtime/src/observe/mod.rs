//! What the gateway tells operators, recorded on every exit of the pipeline (the
//! logging phase): the access log, the metrics and the traces.

#[cfg(feature = "server")]
pub mod access_log;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod random;
#[cfg(feature = "server")]
pub mod request_id;
pub mod series;
#[cfg(feature = "server")]
pub mod trace;
