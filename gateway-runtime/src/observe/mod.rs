//! What the gateway tells operators, recorded on every exit of the pipeline (the
//! logging phase): the access log and the metrics.

#[cfg(feature = "server")]
pub mod access_log;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod request_id;
pub mod series;
