//! The registry: what is counted, laid out in arrays indexed by the compiled config's
//! ids (route, upstream, target, listener), one shard per worker. Built once before the
//! workers start and never freed, so workers and the scrape hold plain `&'static`s.

use std::sync::OnceLock;

use http::Method;

use super::cells::{Counter, Gauge, Histogram};
use crate::observe::Transferred;
use crate::observe::series::{
    CLASSES, DEFAULT_BUCKETS, METHODS, PROTOCOLS, TLS_FAILURES, UPSTREAM_FAULTS,
};
use crate::observe::trace::{ExportStats, SpanSink};
use crate::pipeline::StopReason;
use crate::pipeline::gateway::{Gateway, Provenance};
use crate::tls::listener::HandshakeError;
use crate::upstream::UpstreamError;

/// How many (route, who, why) pairs of early stops a worker tells apart; more are
/// counted together as `other`. Each pair is a route and two fixed strings, so there
/// are few.
pub(super) const STOP_KINDS: usize = 512;

/// An early stop as counted: the route slot, who stopped the request and why.
pub(super) type StopKey = (usize, StopReason);

/// The names the labels take, from the compiled config only: what bounds the number of
/// series.
#[derive(Debug)]
pub struct Catalog {
    pub gateway: &'static str,
    pub provenance: Provenance,
    /// By route id; requests no route matched are counted as `unmatched`.
    pub routes: Vec<&'static str>,
    pub upstreams: Vec<UpstreamNames>,
    pub listeners: Vec<&'static str>,
    /// The histograms' bounds, in nanoseconds, ascending.
    pub buckets: &'static [u64],
    /// Whether anything reads the per-request counts (`[admin]` serves them): without
    /// it, requests are not counted and not timed for it.
    pub served: bool,
}

impl Catalog {
    /// The names gateway `G` was compiled with.
    pub fn of<G: Gateway>() -> Catalog {
        Catalog {
            gateway: G::NAME,
            provenance: G::PROVENANCE,
            routes: G::ROUTES.iter().map(|route| route.name).collect(),
            upstreams: G::UPSTREAMS
                .iter()
                .map(|upstream| UpstreamNames {
                    name: upstream.name,
                    // Start-up checks every target before this: none fails here.
                    targets: upstream
                        .targets
                        .iter()
                        .map(|t| {
                            t.target()
                                .map(|t| t.authority.to_string())
                                .unwrap_or_default()
                        })
                        .collect(),
                })
                .collect(),
            listeners: G::LISTENERS.iter().map(|listener| listener.name).collect(),
            buckets: G::ADMIN
                .and_then(|admin| admin.buckets)
                .unwrap_or(DEFAULT_BUCKETS),
            served: G::ADMIN.is_some(),
        }
    }
}

impl Catalog {
    /// Every target with its upstream's name, numbered over all upstreams in order:
    /// the ids the shards count targets by.
    pub fn targets(&self) -> impl Iterator<Item = (usize, &'static str, &str)> {
        self.upstreams
            .iter()
            .flat_map(|u| u.targets.iter().map(move |t| (u.name, t.as_str())))
            .enumerate()
            .map(|(id, (upstream, target))| (id, upstream, target))
    }
}

#[derive(Debug)]
pub struct UpstreamNames {
    pub name: &'static str,
    /// Each target's authority.
    pub targets: Vec<String>,
}

/// The catalog and one shard per worker.
#[derive(Debug)]
pub struct Registry {
    pub(super) catalog: Catalog,
    pub(super) shards: Box<[Shard]>,
    /// The trace exporter's counts, when tracing is on.
    pub(super) trace_export: Option<&'static ExportStats>,
}

impl Registry {
    /// A registry for `workers` workers, which lives as long as the process; with
    /// tracing on, `tracing` holds each worker's span sink and the exporter's counts.
    pub fn leak(
        catalog: Catalog,
        workers: usize,
        tracing: Option<(Vec<SpanSink>, &'static ExportStats)>,
    ) -> &'static Registry {
        let bounds = catalog.buckets;
        let mut first_target = Vec::with_capacity(catalog.upstreams.len());
        let mut targets = 0;
        for upstream in &catalog.upstreams {
            first_target.push(targets);
            targets += upstream.targets.len();
        }
        let first_target: &'static [usize] = Box::leak(first_target.into_boxed_slice());
        let routes = catalog.routes.len() + 1;
        let (sinks, trace_export) = match tracing {
            Some((sinks, stats)) => (sinks, Some(stats)),
            None => (Vec::new(), None),
        };
        let mut sinks = sinks.into_iter();
        let shards = (0..workers)
            .map(|_| Shard {
                counting: catalog.served,
                spans: sinks.next(),
                bounds,
                first_target,
                unmatched: catalog.routes.len(),
                requests: counters(routes * METHODS.len() * CLASSES.len()),
                duration: (0..routes).map(|_| Histogram::new(bounds.len())).collect(),
                body_bytes: counters(routes * 2),
                upstream_duration: (0..catalog.upstreams.len())
                    .map(|_| Histogram::new(bounds.len()))
                    .collect(),
                upstream_faults: counters(targets * UPSTREAM_FAULTS.len()),
                pool_open: (0..targets).map(|_| Gauge::default()).collect(),
                pool_idle: (0..targets).map(|_| Gauge::default()).collect(),
                connections: (0..catalog.listeners.len() * PROTOCOLS.len())
                    .map(|_| Gauge::default())
                    .collect(),
                tls_handshakes: counters(catalog.listeners.len()),
                tls_failures: counters(catalog.listeners.len() * TLS_FAILURES.len()),
                stops: (0..STOP_KINDS)
                    .map(|_| (OnceLock::new(), Counter::default()))
                    .collect(),
                other_stops: Counter::default(),
            })
            .collect();
        Box::leak(Box::new(Registry {
            catalog,
            shards,
            trace_export,
        }))
    }

    /// Worker `i`'s shard.
    pub fn shard(&'static self, i: usize) -> &'static Shard {
        &self.shards[i]
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    // The scrape's side: each count summed over the shards.

    /// Requests to route slot `slot` (`routes.len()`: unmatched) by method and class.
    pub fn requests(&self, slot: usize, method: usize, class: usize) -> u64 {
        let i = (slot * METHODS.len() + method) * CLASSES.len() + class;
        self.shards.iter().map(|s| s.requests[i].get()).sum()
    }

    /// Requests to route slot `slot` of a status class, any method.
    pub fn requests_of_class(&self, slot: usize, class: usize) -> u64 {
        (0..METHODS.len())
            .map(|m| self.requests(slot, m, class))
            .sum()
    }

    /// Body bytes of route slot `slot`'s requests: (received, sent).
    pub fn body_bytes(&self, slot: usize) -> (u64, u64) {
        let sum = |i: usize| self.shards.iter().map(|s| s.body_bytes[i].get()).sum();
        (sum(2 * slot), sum(2 * slot + 1))
    }

    pub fn route_duration(&self, slot: usize) -> Merged {
        Merged::of(self.shards.iter().map(|s| &s.duration[slot]), self.bounds())
    }

    pub fn upstream_duration(&self, id: usize) -> Merged {
        Merged::of(
            self.shards.iter().map(|s| &s.upstream_duration[id]),
            self.bounds(),
        )
    }

    /// Failures of target `target` (numbered over all upstreams) of one kind.
    pub fn upstream_faults(&self, target: usize, fault: usize) -> u64 {
        let i = target * UPSTREAM_FAULTS.len() + fault;
        self.shards.iter().map(|s| s.upstream_faults[i].get()).sum()
    }

    /// Connections to target `target` (numbered over all upstreams): (open, idle).
    pub fn pool(&self, target: usize) -> (i64, i64) {
        let open: i64 = self.shards.iter().map(|s| s.pool_open[target].get()).sum();
        let idle: i64 = self.shards.iter().map(|s| s.pool_idle[target].get()).sum();
        (open.max(0), idle.max(0))
    }

    pub fn open_connections(&self, listener: usize, protocol: usize) -> i64 {
        let i = listener * PROTOCOLS.len() + protocol;
        let open: i64 = self.shards.iter().map(|s| s.connections[i].get()).sum();
        // A worker's count dips below zero only while a connection moves: never the sum.
        open.max(0)
    }

    /// With tracing on: spans exported, dropped for a full queue, and lost with a
    /// batch the collector did not take.
    pub fn spans(&self) -> Option<(u64, u64, u64)> {
        let stats = self.trace_export?;
        let dropped = self
            .shards
            .iter()
            .filter_map(|s| s.spans.as_ref())
            .map(SpanSink::dropped)
            .sum();
        Some((
            stats.exported.load(std::sync::atomic::Ordering::Relaxed),
            dropped,
            stats.failed.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    fn bounds(&self) -> usize {
        self.catalog.buckets.len()
    }
}

/// A histogram summed over the shards.
#[derive(Debug)]
pub struct Merged {
    /// Per bucket, not cumulative; the last is above the last bound.
    pub buckets: Vec<u64>,
    pub sum_nanos: u128,
}

impl Merged {
    fn of<'a>(histograms: impl Iterator<Item = &'a Histogram>, bounds: usize) -> Merged {
        let mut buckets = vec![0; bounds + 1];
        let mut sum_nanos = 0;
        for histogram in histograms {
            sum_nanos += u128::from(histogram.merge_into(&mut buckets));
        }
        Merged { buckets, sum_nanos }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

fn counters(n: usize) -> Box<[Counter]> {
    (0..n).map(|_| Counter::default()).collect()
}

/// One worker's counts. Only that worker writes them.
#[derive(Debug)]
pub struct Shard {
    /// Whether requests are counted: only when the admin listener serves the counts.
    /// Connections, pools and handshakes are counted either way (they are not per
    /// request).
    counting: bool,
    /// The histograms' bounds, in nanoseconds.
    bounds: &'static [u64],
    /// By upstream id: the id of its first target among all targets.
    first_target: &'static [usize],
    /// The route slot of requests no route matched.
    unmatched: usize,
    /// By route slot, method and status class.
    pub(super) requests: Box<[Counter]>,
    /// By route slot: from the request head to the response head.
    pub(super) duration: Box<[Histogram]>,
    /// By route slot: body bytes received, then sent.
    pub(super) body_bytes: Box<[Counter]>,
    /// By upstream id: from sending the request to its response head.
    pub(super) upstream_duration: Box<[Histogram]>,
    /// By target and fault.
    pub(super) upstream_faults: Box<[Counter]>,
    /// By target: connections open to it, and how many of them are idle in the pool.
    pub(super) pool_open: Box<[Gauge]>,
    pub(super) pool_idle: Box<[Gauge]>,
    /// By listener and protocol.
    pub(super) connections: Box<[Gauge]>,
    /// By listener: handshakes that succeeded.
    pub(super) tls_handshakes: Box<[Counter]>,
    /// By listener and reason.
    pub(super) tls_failures: Box<[Counter]>,
    /// Requests a policy or the gateway stopped early, by route slot, who and why:
    /// the pairs are not known up front, so the worker claims a slot for each pair it
    /// meets, in order; the scrape reads the slots up to the first unclaimed one.
    pub(super) stops: Box<[(OnceLock<StopKey>, Counter)]>,
    /// Early stops past the last slot.
    pub(super) other_stops: Counter,
    /// Where sampled spans go; `None`: tracing is off.
    spans: Option<SpanSink>,
}

impl Shard {
    /// Whether requests are counted (and so timed): see `Catalog::served`.
    #[inline]
    pub fn counting(&self) -> bool {
        self.counting
    }

    /// A finished request: `route` is `None` when none matched.
    #[inline]
    pub fn request(&self, route: Option<usize>, method: usize, status: u16, nanos: u64) {
        if !self.counting {
            return;
        }
        let slot = route.unwrap_or(self.unmatched);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[(slot * METHODS.len() + method) * CLASSES.len() + class].add(1);
        self.duration[slot].observe(self.bounds, nanos);
    }

    /// The body bytes of a request whose response has been sent.
    #[inline]
    pub fn transferred(&self, route: Option<usize>, transferred: Transferred) {
        if !self.counting {
            return;
        }
        let slot = route.unwrap_or(self.unmatched);
        self.body_bytes[2 * slot].add(transferred.received);
        self.body_bytes[2 * slot + 1].add(transferred.sent);
    }

    /// A request that stopped before its target answered, and why.
    pub fn stopped(&self, route: Option<usize>, reason: StopReason) {
        if !self.counting {
            return;
        }
        let key = (route.unwrap_or(self.unmatched), reason);
        for (claimed, count) in self.stops.iter() {
            // Only this worker claims its slots, so an unclaimed one stays its own.
            if *claimed.get_or_init(|| key) == key {
                count.add(1);
                return;
            }
        }
        self.other_stops.add(1);
    }

    /// Counts a connection open on `listener` until the guard is dropped.
    pub fn connection(&'static self, listener: usize, protocol: Protocol) -> OpenConnection {
        let slot = listener * PROTOCOLS.len() + protocol as usize;
        self.connections[slot].add(1);
        OpenConnection { shard: self, slot }
    }

    pub fn tls_handshake(&self, listener: usize) {
        self.tls_handshakes[listener].add(1);
    }

    pub fn tls_failure(&self, listener: usize, reason: TlsFailure) {
        self.tls_failures[listener * TLS_FAILURES.len() + reason as usize].add(1);
    }

    /// Where this worker's sampled spans go, when tracing is on.
    #[inline]
    pub fn spans(&self) -> Option<&SpanSink> {
        self.spans.as_ref()
    }

    /// What upstream `id` counts in.
    pub fn upstream(&'static self, id: usize) -> UpstreamMetrics {
        UpstreamMetrics {
            shard: self,
            upstream: id,
            first_target: self.first_target[id],
        }
    }
}

/// A method's index among [`METHODS`].
#[inline]
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::TRACE => 7,
        Method::CONNECT => 8,
        _ => 9,
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    Http1 = 0,
    H2 = 1,
}

#[derive(Debug, Clone, Copy)]
pub enum TlsFailure {
    Timeout = 0,
    Plaintext = 1,
    Handshake = 2,
}

impl From<&HandshakeError> for TlsFailure {
    fn from(e: &HandshakeError) -> Self {
        match e {
            HandshakeError::TimedOut => TlsFailure::Timeout,
            HandshakeError::Plaintext => TlsFailure::Plaintext,
            HandshakeError::Failed(_) => TlsFailure::Handshake,
        }
    }
}

/// A client connection being counted as open.
#[derive(Debug)]
pub struct OpenConnection {
    shard: &'static Shard,
    slot: usize,
}

impl OpenConnection {
    /// The connection turned out to speak HTTP/2 (prior knowledge after an HTTP/1
    /// start).
    pub fn now_h2(&mut self) {
        let h2 = self.slot - self.slot % PROTOCOLS.len() + Protocol::H2 as usize;
        self.shard.connections[self.slot].add(-1);
        self.shard.connections[h2].add(1);
        self.slot = h2;
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shard.connections[self.slot].add(-1);
    }
}

/// One target's connection counts in one worker.
#[derive(Debug, Clone, Copy)]
pub struct PoolGauges {
    pub open: &'static Gauge,
    pub idle: &'static Gauge,
}

/// What one upstream of one worker counts in.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamMetrics {
    shard: &'static Shard,
    upstream: usize,
    first_target: usize,
}

impl UpstreamMetrics {
    /// Where the worker's sampled spans go, when tracing is on.
    #[inline]
    pub fn spans(&self) -> Option<&'static SpanSink> {
        self.shard.spans.as_ref()
    }

    /// Target `target`'s id among every upstream's targets.
    pub fn target_id(&self, target: usize) -> usize {
        self.first_target + target
    }

    /// The gauges target `target`'s pool keeps up to date.
    pub fn pool(&self, target: usize) -> PoolGauges {
        let i = self.target_id(target);
        PoolGauges {
            open: &self.shard.pool_open[i],
            idle: &self.shard.pool_idle[i],
        }
    }

    /// A response head arrived `nanos` after the request was sent.
    #[inline]
    pub fn answered(&self, nanos: u64) {
        if !self.shard.counting {
            return;
        }
        self.shard.upstream_duration[self.upstream].observe(self.shard.bounds, nanos);
    }

    /// The call to the upstream's target `target` failed with `error`; faults of the
    /// client's own body are not the upstream's and are not counted.
    pub fn failed(&self, target: usize, error: &UpstreamError) {
        let Some(kind) = error.fault() else {
            return;
        };
        // Looked up by name (a failure is rare), so the list's order cannot skew it.
        let Some(fault) = UPSTREAM_FAULTS.iter().position(|f| *f == kind) else {
            return;
        };
        let slot = self.target_id(target) * UPSTREAM_FAULTS.len() + fault;
        self.shard.upstream_faults[slot].add(1);
    }
}
