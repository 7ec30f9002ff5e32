//! One response-timeout timer per client connection, moved on from request to request.
//!
//! A timer of its own for every request (`tokio::time::timeout`) cost 610 instructions
//! per request, 3.6% of the gateway's (callgrind, bench/gateway.toml): it is inserted
//! into tokio's timer wheel when first polled and taken out again when dropped. HTTP/1.1
//! runs one request after another on a connection, inside the connection's task, so
//! one timer serves them all. It is moved only when its deadline falls outside
//! `[now + timeout, now + timeout + slack]`, which under load is once per `slack`:
//! a timeout fires between `timeout` and `timeout + slack` after the request started,
//! with `slack` an eighth of the timeout and at most a second.
//!
//! HTTP/2 streams run concurrently in tasks of their own and each gets its own timer.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The response timer of one client connection.
#[derive(Debug, Default)]
pub struct ConnectionTimer {
    /// Created on first use.
    sleep: RefCell<Option<Pin<Box<Sleep>>>>,
    /// Polled since it was last moved: the connection's task is registered to be woken.
    armed: Cell<bool>,
    /// The connection carries concurrent requests (HTTP/2): no sharing.
    multiplexed: Cell<bool>,
}

/// The future given to `ConnectionTimer::limit` did not finish in time.
#[derive(Debug)]
pub struct Elapsed;

impl ConnectionTimer {
    /// From now on each request gets a timer of its own.
    pub fn set_multiplexed(&self) {
        self.multiplexed.set(true);
    }

    /// Runs `future` for at most `timeout` (plus the slack described above); `None`
    /// runs it without a limit, for a caller that bounds it in its own way.
    ///
    /// A future type rather than an `async fn`: an `async fn` keeps its argument and
    /// the pinned copy of it side by side, which doubled the size of the upstream
    /// exchange this wraps, and every request moves it.
    pub fn limit<F: Future>(&self, timeout: Option<Duration>, future: F) -> Limit<'_, F> {
        Limit {
            future,
            own: None,
            timer: self,
            timeout,
            started: false,
        }
    }

    /// Moves the shared timer if its deadline is not within the allowed window.
    fn prepare(&self, timeout: Duration) {
        let now = Instant::now();
        let slack = (timeout / 8).min(Duration::from_secs(1));
        let earliest = now + timeout;
        let mut slot = self.sleep.borrow_mut();
        match slot.as_mut() {
            Some(sleep)
                if !sleep.is_elapsed()
                    && sleep.deadline() >= earliest
                    && sleep.deadline() <= earliest + slack => {}
            Some(sleep) => {
                sleep.as_mut().reset(earliest + slack);
                self.armed.set(false);
            }
            None => {
                *slot = Some(Box::pin(tokio::time::sleep_until(earliest + slack)));
                self.armed.set(false);
            }
        }
    }

    /// Whether the shared timer has fired. It is polled once after each move, which
    /// registers the connection's task; after that its state is enough.
    fn poll_shared(&self, cx: &mut Context<'_>) -> bool {
        let mut slot = self.sleep.borrow_mut();
        let Some(sleep) = slot.as_mut() else {
            return false;
        };
        if self.armed.get() {
            sleep.is_elapsed()
        } else {
            self.armed.set(true);
            sleep.as_mut().poll(cx).is_ready()
        }
    }
}

pin_project_lite::pin_project! {
    /// The future returned by `ConnectionTimer::limit`.
    pub struct Limit<'t, F> {
        #[pin]
        future: F,
        // The request's own timer, on a multiplexed connection.
        #[pin]
        own: Option<Sleep>,
        timer: &'t ConnectionTimer,
        timeout: Option<Duration>,
        started: bool,
    }
}

impl<F: Future> Future for Limit<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(timeout) = *this.timeout else {
            return this.future.poll(cx).map(Ok);
        };
        // The time runs from the first poll, as it would in an `async fn`.
        if !*this.started {
            *this.started = true;
            if this.timer.multiplexed.get() {
                this.own.set(Some(tokio::time::sleep(timeout)));
            } else {
                this.timer.prepare(timeout);
            }
        }
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let expired = match this.own.as_pin_mut() {
            Some(sleep) => sleep.poll(cx).is_ready(),
            None => this.timer.poll_shared(cx),
        };
        if expired {
            Poll::Ready(Err(Elapsed))
        } else {
            Poll::Pending
        }
    }
}

/// A bound on how long one read (or write) of a body may wait, as nginx's
/// `client_body_timeout` and `proxy_read_timeout`: a body that keeps moving may take
/// as long as it needs, one that stops is cut off.
///
/// No timer exists until an operation first has to wait, so a body that arrived whole
/// costs nothing; progress only clears a flag, and the timer is moved when it fires
/// early rather than on every wait.
#[derive(Debug)]
pub struct IdleTimer {
    timeout: Duration,
    /// Boxed, and only once a wait happens: most bodies never wait, and this lives
    /// in every request's future.
    armed: Option<Pin<Box<Armed>>>,
}

pin_project_lite::pin_project! {
    #[derive(Debug)]
    struct Armed {
        #[pin]
        sleep: Sleep,
        // When the current wait began; `None` while nothing waits.
        waiting_since: Option<Instant>,
    }
}

impl IdleTimer {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            armed: None,
        }
    }

    /// Records that an operation completed: the next wait is timed afresh.
    pub fn progress(&mut self) {
        if let Some(armed) = &mut self.armed {
            *armed.as_mut().project().waiting_since = None;
        }
    }

    /// Called when an operation is pending: whether it has waited `timeout`.
    /// Registers the task to be woken when it will have.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let armed = self.armed.get_or_insert_with(|| {
            Box::pin(Armed {
                sleep: tokio::time::sleep(self.timeout),
                waiting_since: None,
            })
        });
        let armed = armed.as_mut().project();
        let since = *armed.waiting_since.get_or_insert_with(Instant::now);
        let deadline = since + self.timeout;
        let mut sleep = armed.sleep;
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if deadline <= Instant::now() {
                return true;
            }
            // Set for an earlier wait.
            sleep.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequential requests share the timer; one that takes too long is cut off, and
    /// the next one gets its full time again.
    #[tokio::test(start_paused = true)]
    async fn sequential_limits() {
        let timer = ConnectionTimer::default();
        let quick = timer.limit(Some(Duration::from_secs(8)), async { 1 }).await;
        assert_eq!(quick.ok(), Some(1));
        let slow = timer.limit(
            Some(Duration::from_secs(8)),
            tokio::time::sleep(Duration::from_secs(20)),
        );
        let started = Instant::now();
        assert!(slow.await.is_err());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(8) && waited <= Duration::from_secs(9),
            "{waited:?}"
        );
        let started = Instant::now();
        let within = timer.limit(
            Some(Duration::from_secs(8)),
            tokio::time::sleep(Duration::from_secs(7)),
        );
        assert!(
            within.await.is_ok(),
            "a fresh request gets its whole timeout"
        );
        assert!(started.elapsed() >= Duration::from_secs(7));
    }

    /// Multiplexed connections give each request a timer of its own.
    #[tokio::test(start_paused = true)]
    async fn multiplexed_limits() {
        let timer = ConnectionTimer::default();
        timer.set_multiplexed();
        let (a, b) = tokio::join!(
            timer.limit(
                Some(Duration::from_secs(2)),
                tokio::time::sleep(Duration::from_secs(5))
            ),
            timer.limit(
                Some(Duration::from_secs(10)),
                tokio::time::sleep(Duration::from_secs(5))
            ),
        );
        assert!(a.is_err());
        assert!(b.is_ok());
    }

    /// A body that keeps moving is never cut off; one that pauses for the timeout is.
    #[tokio::test(start_paused = true)]
    async fn idle_timer_bounds_pauses_only() {
        let mut timer = IdleTimer::new(Duration::from_secs(10));
        for _ in 0..5 {
            let expired = std::future::poll_fn(|cx| Poll::Ready(timer.poll_expired(cx))).await;
            assert!(!expired);
            tokio::time::sleep(Duration::from_secs(8)).await;
            timer.progress();
            // Time between waits (another side's turn) does not count.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let started = Instant::now();
        std::future::poll_fn(|cx| {
            if timer.poll_expired(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
