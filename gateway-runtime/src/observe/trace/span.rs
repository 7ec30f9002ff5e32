//! A finished span, as a worker hands it to the exporter, and the worker's end of
//! that hand-over.
//!
//! Only sampled requests build spans, so the record may own strings; a request that
//! is not sampled costs its ids and its `traceparent` line, nothing more.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::SystemTime;

use super::context::{SpanContext, SpanId};
use crate::observe::metrics::cells::Counter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The gateway's span of a client's request.
    Server,
    /// One request of the gateway's own to an upstream.
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Text(String),
    Name(&'static str),
    Int(i64),
}

/// A span that has ended.
#[derive(Debug)]
pub struct SpanRecord {
    pub context: SpanContext,
    pub parent: Option<SpanId>,
    pub kind: SpanKind,
    /// Low-cardinality, as the HTTP conventions ask: `{method} {http.route}` for the
    /// server span, `{method}` for a client span.
    pub name: String,
    pub start: SystemTime,
    pub end: SystemTime,
    /// OpenTelemetry HTTP semantic-convention attributes.
    pub attributes: Vec<(&'static str, Attribute)>,
    /// `Some`: the span's status is Error, with this description.
    pub error: Option<String>,
}

/// A worker's way to the exporter: what it samples at and where finished spans go.
/// Handing over never waits: a span the exporter's queue has no room for is dropped
/// and counted.
#[derive(Debug)]
pub struct SpanSink {
    sender: SyncSender<SpanRecord>,
    threshold: u64,
    /// Spans dropped because the queue was full; written by this worker only.
    dropped: Counter,
}

impl SpanSink {
    pub fn new(sender: SyncSender<SpanRecord>, threshold: u64) -> SpanSink {
        SpanSink {
            sender,
            threshold,
            dropped: Counter::default(),
        }
    }

    /// The sampler's threshold for new traces (see `context::threshold`).
    #[inline]
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    pub fn record(&self, span: SpanRecord) {
        match self.sender.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.add(1),
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::trace::context::SpanContext;

    fn span() -> SpanRecord {
        SpanRecord {
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                sampled: true,
            },
            parent: None,
            kind: SpanKind::Server,
            name: "GET /".into(),
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// A full queue drops the span and counts it; the worker never waits.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sender, queue) = std::sync::mpsc::sync_channel(1);
        let sink = SpanSink::new(sender, u64::MAX);
        sink.record(span());
        sink.record(span());
        assert_eq!(sink.dropped(), 1);
        assert_eq!(queue.try_iter().count(), 1);
    }
}
