//! The exporter: a thread of its own that batches finished spans and sends them to the
//! collector over OTLP/HTTP (protobuf, `POST` to the configured URL).
//!
//! Workers hand spans over through a bounded queue and never wait on it (`SpanSink`).
//! The thread polls the queue rather than sleeping on it, so that handing a span over
//! wakes no one: a wake-up per span was a system call and a context switch per
//! request at 100% sampling. A batch goes out when it holds `MAX_BATCH` spans or its
//! first span is `DELAY` old, as OpenTelemetry's batch span processor does. Each export
//! has bounded connect, write and read times (`collector`); a batch the collector
//! refuses or never answers is dropped and counted, not retried, so a collector that is
//! down costs the gateway one thread's waiting and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::TracingSpec;
use super::collector::Collector;
use super::otlp::Encoder;
use super::span::{SpanRecord, SpanSink};
use crate::settings::SettingError;

/// Spans waiting for the exporter, over all workers; past this, new ones are dropped.
const QUEUE: usize = 4096;
/// The most spans in one export.
const MAX_BATCH: usize = 512;
/// The longest a span waits for its batch to fill.
const DELAY: Duration = Duration::from_secs(1);
/// The shortest pause between polls of the queue, for the busiest gateway: its 4,096
/// places then hold 400,000 spans a second.
const BUSY_POLL: Duration = Duration::from_millis(10);
/// The longest, for a quiet one.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// What the exporter did, for `/metrics`. Written by the exporter thread only.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exported: AtomicU64,
    /// Spans in batches the collector refused or could not be reached for.
    pub failed: AtomicU64,
}

/// The running exporter.
#[derive(Debug)]
pub struct Exporter {
    thread: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    /// Starts the exporter of `spec`'s spans for the gateway named `gateway`: returns
    /// it, a sink per worker, and what it counts.
    pub fn start(
        spec: &TracingSpec,
        gateway: &'static str,
        workers: usize,
    ) -> Result<(Exporter, Vec<SpanSink>, &'static ExportStats), SettingError> {
        let (target, path) = spec.endpoint.url()?;
        let tls = if target.scheme == http::uri::Scheme::HTTPS {
            let connector = crate::tls::upstream::connector("tracing", None)?;
            let name = crate::tls::upstream::server_name(
                spec.endpoint.origin,
                None,
                target.authority.host(),
            )?;
            Some((connector.config().clone(), name))
        } else {
            None
        };
        let mut collector = Collector::new(target, path, tls);
        let service = spec.service_name.unwrap_or(gateway);
        let stats: &'static ExportStats = Box::leak(Box::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, queue) = sync_channel(QUEUE);
        let threshold = super::context::threshold(spec.sample_ratio.ratio()?);
        let sinks = (0..workers)
            .map(|_| SpanSink::new(sender.clone(), threshold))
            .collect();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("gateway-traces".into())
            .spawn(move || run(queue, &mut collector, service, stats, &stopping))
            .map_err(|e| {
                SettingError::new("[tracing]", format!("cannot start the exporter: {e}"))
            })?;
        Ok((Exporter { thread, stop }, sinks, stats))
    }

    /// Sends what is queued and ends the thread; called once the workers are done.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn run(
    queue: Receiver<Box<SpanRecord>>,
    collector: &mut Collector,
    service: &'static str,
    stats: &ExportStats,
    stop: &AtomicBool,
) {
    let mut batch: Vec<Box<SpanRecord>> = Vec::with_capacity(MAX_BATCH);
    let mut encoder = Encoder::new(service);
    // Failures are logged when they begin and when they end, not once a batch.
    let mut failing = false;
    let mut send = |spans: &[Box<SpanRecord>]| {
        let body = encoder.encode(spans.iter().map(|span| &**span));
        let count = spans.len() as u64;
        match collector.post(body) {
            Ok(()) => {
                stats.exported.fetch_add(count, Ordering::Relaxed);
                if failing {
                    tracing::info!(collector = %collector.target, "trace export works again");
                    failing = false;
                }
            }
            Err(e) => {
                stats.failed.fetch_add(count, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(collector = %collector.target, error = %e, "trace export failed; spans are dropped until it works");
                    failing = true;
                }
            }
        }
    };
    let mut oldest = None;
    // The spans drained since the last pause began, and when it began. The rate is
    // taken over the whole cycle: the polls between two pauses can find the queue
    // empty only because the workers, on the same cores, had no turn while batches
    // were sent.
    let mut arrived = 0;
    let mut since = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let before = batch.len();
        batch.extend(queue.try_iter());
        let drained = batch.len() - before;
        arrived += drained;
        if drained > 0 {
            oldest.get_or_insert_with(Instant::now);
        }
        let due = oldest.is_some_and(|at: Instant| at.elapsed() >= DELAY);
        if batch.len() >= MAX_BATCH || (due || stopping) && !batch.is_empty() {
            for chunk in batch.chunks(MAX_BATCH) {
                send(chunk);
            }
            batch.clear();
            oldest = None;
        }
        if stopping {
            return;
        }
        // A full batch drained means more is on its way: drain again at once.
        if drained < MAX_BATCH {
            let pause = next_pause(since.elapsed(), arrived);
            (arrived, since) = (0, Instant::now());
            std::thread::sleep(pause);
        }
    }
}

/// The pause before the next poll, given that `drained` spans arrived in the `interval`
/// since the last pause began: as long as fills a quarter of the queue at that rate, within
/// `BUSY_POLL..=IDLE_POLL`. Every wake-up is a system call or two on a core the
/// workers may share, so a gateway sampling 1% of its requests should not pay for
/// 100 of them a second.
fn next_pause(interval: Duration, drained: usize) -> Duration {
    let quarter = (QUEUE / 4) as u32;
    match u32::try_from(drained) {
        Ok(0) => IDLE_POLL,
        Ok(drained) => (interval * quarter / drained).clamp(BUSY_POLL, IDLE_POLL),
        Err(_) => BUSY_POLL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_follows_the_rate_of_spans() {
        let ms = Duration::from_millis;
        assert_eq!(next_pause(ms(10), 0), IDLE_POLL);
        // 100 spans in 10 ms: a quarter of the queue fills in about 100 ms.
        assert_eq!(next_pause(ms(10), 100), IDLE_POLL);
        assert_eq!(next_pause(ms(100), 2048), ms(50));
        assert_eq!(next_pause(ms(10), 4096), BUSY_POLL);
        // A busy gateway: 400 spans came while the last batches were sent (2 ms).
        assert_eq!(next_pause(ms(2), 400), BUSY_POLL);
        assert_eq!(next_pause(IDLE_POLL, usize::MAX), BUSY_POLL);
    }
}
