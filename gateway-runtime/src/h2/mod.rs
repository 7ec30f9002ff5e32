//! HTTP/2 clients (h2c with prior knowledge, or `h2` chosen by ALPN over TLS), served
//! by hyper's HTTP/2 server: each stream becomes a `Request` with its fields as bytes
//! and runs through the same pipeline driver as an HTTP/1.1 request.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::h1::client::BodyError;
use crate::h1::request_body::{Http2Body, RequestBody};
use crate::h1::server::ClientLimits;
use crate::io::Stream;
use crate::io::prefixed::Prefixed;
use crate::message::body::Body;
use crate::message::fields::Fields;
use crate::observe::Transferred;
use crate::pipeline::gateway::{Gateway, Request};
use crate::pipeline::{Connection, Epilogue};

/// Spawns `!Send` futures (HTTP/2 streams) on the worker's local task set.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// An HTTP/2 request's fields as HTTP/1.1 forwards them: HTTP/2 may split `Cookie`
/// into one field per cookie, and those are joined with `; ` into one, where the
/// first was, before they go to an HTTP/1.1 upstream (RFC 9113 §8.2.3).
fn request_fields(headers: &http::HeaderMap) -> Fields {
    if headers
        .get_all(http::header::COOKIE)
        .iter()
        .nth(1)
        .is_none()
    {
        return Fields::from_header_map(headers);
    }
    let joined: Vec<u8> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    let mut fields = Fields::with_capacity(headers.len(), joined.len() + 64 * headers.len());
    let mut cookie_written = false;
    for (name, value) in headers {
        if name != http::header::COOKIE {
            fields.append(name.as_str().as_bytes(), value.as_bytes());
        } else if !cookie_written {
            fields.append(b"cookie", &joined);
            cookie_written = true;
        }
    }
    fields
}

/// How long a connection told to go away may take to finish before it is closed.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);
/// Keep-alive pings find clients that vanished while streams were open; one not
/// answered in this time closes the connection (hyper's default).
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves an HTTP/2 connection (h2c, or TLS with ALPN `h2`); `preface` is what was
/// read of it already. The connection ends when the client closes it, when it has had
/// no open stream for the header-read timeout (the time to the first request and the
/// idle timeout, as on HTTP/1.1), when a response has waited the send timeout for the
/// client's window, or at shutdown (after a GOAWAY and the open streams).
pub(crate) async fn serve<G: Gateway>(
    stream: Stream,
    preface: bytes::BytesMut,
    connection: Rc<Connection<G>>,
    limits: Rc<ClientLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Rc::new(Activity::new(&limits));
    let body_timeout = limits.body_timeout;
    let service = {
        let activity = activity.clone();
        service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let connection = connection.clone();
            let stream = StreamGuard::open(activity.clone());
            // Boxed, so that hyper moves a pointer where it would move the request's
            // whole future (about 2 KB) into its stream task and through the spawn:
            // one allocation instead of three copies, 1,000 instructions less per
            // request (bench/RESULTS.md, "HTTP/2 streams").
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let received = Rc::new(Cell::new(0));
                let req = Request {
                    fields: request_fields(&parts.headers),
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    body: RequestBody::Http2(Http2Body::new(body, body_timeout, received.clone())),
                };
                let (response, epilogue) = connection.serve(req).await;
                Ok::<_, Infallible>(response.into_http().map(|body| WatchedBody {
                    body,
                    stream,
                    waiting_since: None,
                    ending: Some(Ending {
                        connection,
                        epilogue,
                        received,
                        sent: 0,
                    }),
                }))
            })
        })
    };
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(PING_TIMEOUT);
    let io = TokioIo::new(Prefixed::new(preface, stream));
    let mut served = pin!(builder.serve_connection(io, service));
    let mut stop = pin!(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    let mut tick = pin!(tokio::time::sleep(activity.tick));
    // Set once a GOAWAY went out because the connection was idle.
    let mut idle_deadline: Option<Instant> = None;
    let mut shutting_down = false;
    let ended = poll_fn(|cx| {
        if let Poll::Ready(result) = served.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(|e| e.to_string()));
        }
        if !shutting_down && stop.as_mut().poll(cx).is_ready() {
            // Streams in flight finish; the worker's drain timeout bounds them.
            shutting_down = true;
            served.as_mut().graceful_shutdown();
            return served.as_mut().poll(cx).map_err(|e| e.to_string());
        }
        while tick.as_mut().poll(cx).is_ready() {
            if idle_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Poll::Ready(Err("did not close after GOAWAY".to_owned()));
            }
            match activity.on_tick() {
                Verdict::Busy => {}
                Verdict::Idle if idle_deadline.is_none() && !shutting_down => {
                    served.as_mut().graceful_shutdown();
                    let deadline = Instant::now() + GOAWAY_GRACE;
                    idle_deadline = Some(deadline);
                    // The next tick comes when the grace is over.
                    tick.as_mut().reset(deadline);
                    continue;
                }
                Verdict::Idle => {}
                Verdict::Stalled => {
                    return Poll::Ready(Err(
                        "a response waited too long for the client's window".to_owned()
                    ));
                }
            }
            let next = tick.deadline() + activity.tick;
            tick.as_mut().reset(next);
        }
        Poll::Pending
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

/// What a connection's streams are doing, counted in ticks of a quarter of the shorter
/// timeout so that no stream needs a timer of its own: a response that waits for the
/// client's window costs one increment when it starts waiting, whatever the number of
/// streams.
struct Activity {
    tick: Duration,
    /// Ticks since the connection began.
    now: Cell<u64>,
    /// Streams with a response not yet sent (or a request still being served).
    open: Cell<usize>,
    /// Streams ever opened, so that a tick can tell a stream came and went.
    opened: Cell<u64>,
    opened_at_last_tick: Cell<u64>,
    idle_ticks: Cell<u64>,
    idle_limit: u64,
    /// Responses that handed data to hyper during slot `s` (`ticks_per_slot` ticks) and
    /// have not been asked for more since, at `s % len`. One not asked for more for
    /// the send timeout is stuck behind a closed flow-control window.
    waiting: RefCell<Box<[u32]>>,
    ticks_per_slot: u64,
    /// The send timeout in slots, rounded up, plus one: a count made during slot `s`
    /// is checked when slot `s + send_slots` begins, by which time it has waited at
    /// least the send timeout.
    send_slots: u64,
}

/// Most slots in the ring of waiting responses: 4 KiB per connection at most.
const MAX_SLOTS: u64 = 1024;

/// What a tick found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Busy,
    /// No stream for the idle timeout.
    Idle,
    /// A response has waited the send timeout for the client.
    Stalled,
}

impl Activity {
    fn new(limits: &ClientLimits) -> Self {
        let shorter = limits.header_read_timeout.min(limits.send_timeout);
        let tick = (shorter / 4).max(Duration::from_millis(10));
        let ticks = |timeout: Duration| {
            u64::try_from(timeout.as_nanos().div_ceil(tick.as_nanos())).unwrap_or(u64::MAX / 2)
        };
        let send_ticks = ticks(limits.send_timeout);
        // A send timeout much longer than the idle timeout is counted in coarser slots,
        // so that the ring stays small.
        let ticks_per_slot = send_ticks.div_ceil(MAX_SLOTS - 2).max(1);
        let send_slots = send_ticks.div_ceil(ticks_per_slot) + 1;
        Self {
            tick,
            now: Cell::new(0),
            open: Cell::new(0),
            opened: Cell::new(0),
            opened_at_last_tick: Cell::new(0),
            idle_ticks: Cell::new(0),
            // Likewise one more, as a tick may begin just after the last stream ended.
            idle_limit: ticks(limits.header_read_timeout) + 1,
            waiting: RefCell::new(vec![0; send_slots as usize + 1].into_boxed_slice()),
            ticks_per_slot,
            send_slots,
        }
    }

    fn slot(&self) -> u64 {
        self.now.get() / self.ticks_per_slot
    }

    fn on_tick(&self) -> Verdict {
        let now = self.now.get() + 1;
        self.now.set(now);
        if now.is_multiple_of(self.ticks_per_slot) {
            let slot = self.slot();
            let mut waiting = self.waiting.borrow_mut();
            let len = waiting.len() as u64;
            // The oldest slot the ring holds: anything counted then has waited long
            // enough.
            if let Some(oldest) = slot.checked_sub(self.send_slots)
                && waiting[(oldest % len) as usize] > 0
            {
                return Verdict::Stalled;
            }
            // The new slot held the one before the oldest, checked a slot ago.
            waiting[(slot % len) as usize] = 0;
        }
        let opened = self.opened.get();
        if self.open.get() > 0 || opened != self.opened_at_last_tick.get() {
            self.opened_at_last_tick.set(opened);
            self.idle_ticks.set(0);
            return Verdict::Busy;
        }
        let idle = self.idle_ticks.get() + 1;
        self.idle_ticks.set(idle);
        if idle >= self.idle_limit {
            Verdict::Idle
        } else {
            Verdict::Busy
        }
    }

    /// Counts a response that now waits to be asked for more; returns its slot.
    fn start_waiting(&self) -> u64 {
        let slot = self.slot();
        let mut waiting = self.waiting.borrow_mut();
        let len = waiting.len() as u64;
        waiting[(slot % len) as usize] += 1;
        slot
    }

    fn stop_waiting(&self, since: u64) {
        let mut waiting = self.waiting.borrow_mut();
        let len = waiting.len() as u64;
        // Cleared already if the slot was reused, which a stall check precedes.
        if self.slot() - since < len {
            let count = &mut waiting[(since % len) as usize];
            *count = count.saturating_sub(1);
        }
    }
}

/// One open stream, counted while it lives.
struct StreamGuard {
    activity: Rc<Activity>,
}

impl StreamGuard {
    fn open(activity: Rc<Activity>) -> Self {
        activity.open.set(activity.open.get() + 1);
        activity.opened.set(activity.opened.get() + 1);
        Self { activity }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.activity.open.set(self.activity.open.get() - 1);
    }
}

/// What a stream's response finishes when hyper is done with its body (sent, or the
/// stream reset): the request's count and log line, with its bytes.
struct Ending<G: Gateway> {
    connection: Rc<Connection<G>>,
    epilogue: Epilogue,
    received: Rc<Cell<u64>>,
    sent: u64,
}

pin_project_lite::pin_project! {
    /// A response body that reports when hyper stops asking it for data (hyper asks
    /// again as soon as the client's flow-control window has room), and ends its
    /// request when dropped.
    struct WatchedBody<G: Gateway> {
        #[pin]
        body: Body,
        stream: StreamGuard,
        waiting_since: Option<u64>,
        ending: Option<Ending<G>>,
    }

    impl<G: Gateway> PinnedDrop for WatchedBody<G> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(since) = this.waiting_since.take() {
                this.stream.activity.stop_waiting(since);
            }
            if let Some(ending) = this.ending.take() {
                let transferred = Transferred {
                    received: ending.received.get(),
                    sent: ending.sent,
                };
                ending.connection.finish(ending.epilogue, transferred);
            }
        }
    }
}

impl<G: Gateway> http_body::Body for WatchedBody<G> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let activity = &this.stream.activity;
        if let Some(since) = this.waiting_since.take() {
            activity.stop_waiting(since);
        }
        let mut body = this.body;
        let polled = body.as_mut().poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(ending)) = (&polled, this.ending.as_mut())
            && let Some(data) = frame.data_ref()
        {
            ending.sent += data.len() as u64;
        }
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && !body.is_end_stream() {
            *this.waiting_since = Some(activity.start_waiting());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(idle: u64, send: u64) -> Activity {
        Activity::new(&ClientLimits {
            header_read_timeout: Duration::from_secs(idle),
            send_timeout: Duration::from_secs(send),
            body_timeout: Duration::from_secs(60),
            max_header_size: 65536,
            max_headers: 100,
            max_concurrent_streams: 100,
        })
    }

    /// Ticks until the verdict is not `Busy`, at most `limit`.
    fn ticks_until_verdict(activity: &Activity, limit: u64) -> Option<(u64, Verdict)> {
        (1..=limit).find_map(|n| match activity.on_tick() {
            Verdict::Busy => None,
            verdict => Some((n, verdict)),
        })
    }

    /// No stream for the idle timeout (and less than two ticks more) is `Idle`; a
    /// stream that comes and goes between ticks starts the count again.
    #[test]
    fn idle_connections_are_found() {
        let activity = Rc::new(activity(30, 60));
        assert_eq!(activity.tick, Duration::from_millis(7500));
        activity.on_tick();
        activity.on_tick();
        drop(StreamGuard::open(activity.clone()));
        let (n, verdict) = ticks_until_verdict(&activity, 100).expect("a verdict");
        assert_eq!(verdict, Verdict::Idle);
        assert_eq!(
            n, 6,
            "the tick that saw the stream, then 30 s in ticks of 7.5 s, plus one"
        );
    }

    /// A response not asked for more for the send timeout is `Stalled`, however long
    /// the send timeout is against the idle timeout; one asked again is not.
    #[test]
    fn stalled_responses_are_found() {
        for (idle, send) in [(30, 60), (1, 60), (1, 7 * 24 * 3600)] {
            let activity = Rc::new(activity(idle, send));
            let _stream = StreamGuard::open(activity.clone());
            let since = activity.start_waiting();
            activity.stop_waiting(since);
            let since = activity.start_waiting();
            let limit = 2 * send * 1000 / activity.tick.as_millis() as u64 + 10;
            let (n, verdict) = ticks_until_verdict(&activity, limit).expect("a verdict");
            assert_eq!(verdict, Verdict::Stalled, "idle {idle} s, send {send} s");
            let waited = activity.tick * n as u32;
            assert!(
                waited >= Duration::from_secs(send)
                    && waited <= Duration::from_secs(send) * 5 / 4 + activity.tick * 2,
                "idle {idle} s, send {send} s: stalled after {waited:?}"
            );
            activity.stop_waiting(since);
        }
    }
}
