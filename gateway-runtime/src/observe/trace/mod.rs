//! OpenTelemetry tracing: a server span per request, a client span per upstream
//! request, W3C `traceparent` in and out, exported over OTLP/HTTP.
//!
//! - `context`: reading the client's `traceparent`, the sampling decision, and the
//!   `traceparent` each upstream request carries.
//! - `semconv`: the spans' names and attributes, after the HTTP semantic conventions.
//! - `span`: a finished span, and a worker's non-blocking way to the exporter.
//! - `export`: the exporter thread, batching spans to the collector.
//! - `collector`: the exporter's HTTP/1.1 connection to the collector, kept between
//!   batches.
//! - `otlp`: the protobuf encoding of a batch.
//!
//! The decision is parent-based: a valid parent's `sampled` flag is followed, and a new
//! trace is sampled at `sample_ratio`. Every request that is not sampled still carries
//! a `traceparent` upstream (flag `00`), so that the services behind the gateway see one
//! trace per request whatever the gateway recorded. Attributes follow the stable HTTP
//! semantic conventions; span names are built from the route's template, never from
//! the request's path.

mod collector;
pub mod context;
pub mod export;
pub mod otlp;
pub mod semconv;
pub mod span;

pub use context::{Begun, SpanContext};
pub use export::{ExportStats, Exporter};
pub use span::{SpanDetail, SpanRecord, SpanSink};

use crate::settings::Setting;

/// `[tracing]`.
#[derive(Debug, Clone, Copy)]
pub struct TracingSpec {
    /// The OTLP/HTTP traces URL, posted to as it is (`http://collector:4318/v1/traces`).
    pub endpoint: Setting,
    /// The share of new traces recorded, 0 to 1.
    pub sample_ratio: Setting,
    /// `service.name`; `None`: the gateway's name.
    pub service_name: Option<&'static str>,
}
