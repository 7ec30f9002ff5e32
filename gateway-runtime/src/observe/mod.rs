//! What the gateway tells operators: the access log, written on every exit of the
//! pipeline (the logging phase).

pub mod access_log;
