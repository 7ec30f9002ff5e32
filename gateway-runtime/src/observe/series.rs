//! What the metrics count under which labels: the fixed label values and the default
//! histogram bounds. Pure, so that the compiler can say at build time how many series
//! a gateway can have at most (`gateway check` prints it).

/// The route label of the requests no route matched (the compiler keeps route names
/// from taking it, G0106).
pub const UNMATCHED: &str = "unmatched";

/// The methods counted by name; every other one is `other`.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "other",
];
/// Status classes, from 1xx to 5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Why a call to an upstream failed, as counted (the upstream's fault, not the
/// client's).
pub const UPSTREAM_FAULTS: [&str; 7] = [
    "connect_error",
    "connect_timeout",
    "tls_error",
    "response_timeout",
    "send_timeout",
    "reset",
    "invalid_response",
];
/// How a client connection speaks.
pub const PROTOCOLS: [&str; 2] = ["http1", "h2"];
/// Why a client's TLS handshake failed.
pub const TLS_FAILURES: [&str; 3] = ["timeout", "plaintext", "handshake"];
/// The histograms' default bounds, in nanoseconds (0.5 ms to 10 s): from half a
/// millisecond, as a gateway's own time is well under Prometheus's default first bound
/// of 5 ms.
pub const DEFAULT_BUCKETS: &[u64] = &[
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The compiled configuration's counts that the series depend on.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub routes: usize,
    pub upstreams: usize,
    pub targets: usize,
    pub listeners: usize,
    pub tls_listeners: usize,
    /// Certificates the TLS listeners serve.
    pub certificates: usize,
    pub bounds: usize,
    /// `[tracing]` is set: the exporter's counts.
    pub tracing: bool,
}

impl Shape {
    /// The most series `/metrics` can show, early stops aside (one more for each
    /// route, stopping policy and reason that occurs). A request is counted under its
    /// own method, which a 405 makes any method, so every route may show all ten.
    pub fn most_series(&self) -> usize {
        let route_slots = self.routes + 1;
        let histogram = self.bounds + 3;
        1 + route_slots * (METHODS.len() * CLASSES.len() + 2)
            + (route_slots + self.upstreams) * histogram
            + self.targets * (UPSTREAM_FAULTS.len() + 2)
            + self.listeners * PROTOCOLS.len()
            + self.tls_listeners * (1 + TLS_FAILURES.len())
            + self.certificates
            + if self.tracing { 3 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_every_family() {
        let shape = Shape {
            routes: 2,
            upstreams: 1,
            targets: 2,
            listeners: 1,
            tls_listeners: 1,
            certificates: 2,
            bounds: 14,
            tracing: true,
        };
        // Build info, requests, body bytes both ways, 3 route and 1 upstream
        // histograms, errors and pool gauges per target, connections, TLS handshakes,
        // certificates and spans.
        assert_eq!(
            shape.most_series(),
            1 + 150 + 3 * 2 + 4 * 17 + 2 * 9 + 2 + 4 + 2 + 3
        );
    }
}
