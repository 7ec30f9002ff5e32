//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Every label value comes from the compiled config (route, upstream, target and
//! listener names) or from a fixed list in the code (methods, status classes, fault
//! kinds, the reasons requests stop), never from a request: a path no route matches is
//! counted as `route="unmatched"`. So the number of series is bounded when the gateway
//! is built. Each worker counts in arrays of its own, indexed by those ids (`registry`);
//! the scrape merges them (`exposition`).

pub mod cells;
pub mod exposition;
pub mod registry;

pub use registry::{
    Catalog, OpenConnection, PoolGauges, Protocol, Registry, Shard, TlsFailure, UpstreamMetrics,
    UpstreamNames, method_index,
};
