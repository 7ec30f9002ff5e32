//! What the gateway tells operators, recorded on every exit of the pipeline (the
//! logging phase): the access log and the metrics.

pub mod access_log;
pub mod metrics;
pub mod request_id;
