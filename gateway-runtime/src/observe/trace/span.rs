//! A span, as a worker records it and hands it to the exporter, and the worker's end
//! of that hand-over.
//!
//! Only sampled requests build spans. A span keeps what its attributes are made of
//! (the route's `'static` name, the client's address, the status), not the attribute
//! strings: the exporter writes those straight into the protobuf, so a span costs its
//! box and its path, and formatting happens once, off the request's path.

use std::net::IpAddr;
use std::sync::mpsc::{SyncSender, TrySendError};

use super::context::{SpanContext, SpanId};
use crate::observe::metrics::cells::Counter;

/// A span, begun or ended.
#[derive(Debug)]
pub struct SpanRecord {
    pub context: SpanContext,
    pub parent: Option<SpanId>,
    /// Nanoseconds since the Unix epoch.
    pub start: u64,
    pub end: u64,
    /// The request's method as the conventions name it (`_OTHER` beyond the nine).
    pub method: &'static str,
    /// The response's status; `None` while the span runs, or when no response came.
    pub status: Option<u16>,
    pub detail: SpanDetail,
}

/// What differs between the gateway's two kinds of span.
#[derive(Debug)]
pub enum SpanDetail {
    /// The gateway's span of a client's request.
    Server {
        /// The route's template; `None` when no route matched.
        route: Option<&'static str>,
        path: Box<str>,
        /// The `Host` the client asked for, without its port.
        host: Option<Box<str>>,
        client: Option<IpAddr>,
        secure: bool,
        /// `1.1` or `2`.
        version: &'static str,
    },
    /// One request of the gateway's own to an upstream.
    Client {
        upstream: &'static str,
        /// `http` or `https`.
        scheme: &'static str,
        authority: http::uri::Authority,
        /// Without the query.
        path: Box<str>,
        /// Why no response came (`connect_error`, …).
        fault: Option<&'static str>,
    },
}

/// A worker's way to the exporter: what it samples at and where ended spans go.
/// Handing over never waits: a span the exporter's queue has no room for is dropped
/// and counted.
#[derive(Debug)]
pub struct SpanSink {
    sender: SyncSender<Box<SpanRecord>>,
    threshold: u64,
    /// Spans dropped because the queue was full; written by this worker only.
    dropped: Counter,
}

impl SpanSink {
    pub fn new(sender: SyncSender<Box<SpanRecord>>, threshold: u64) -> SpanSink {
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

    pub fn record(&self, span: Box<SpanRecord>) {
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

    fn span() -> Box<SpanRecord> {
        Box::new(SpanRecord {
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                sampled: true,
            },
            parent: None,
            start: 0,
            end: 0,
            method: "GET",
            status: Some(200),
            detail: SpanDetail::Server {
                route: None,
                path: "/".into(),
                host: None,
                client: None,
                secure: false,
                version: "1.1",
            },
        })
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
