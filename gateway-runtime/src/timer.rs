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
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
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

    /// Runs `future` for at most `timeout` (plus the slack described above).
    pub async fn limit<F: Future>(
        &self,
        timeout: Duration,
        future: F,
    ) -> Result<F::Output, Elapsed> {
        let mut future = pin!(future);
        let mut own = pin!(None::<Sleep>);
        if self.multiplexed.get() {
            own.set(Some(tokio::time::sleep(timeout)));
        } else {
            self.prepare(timeout);
        }
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            let expired = match own.as_mut().as_pin_mut() {
                Some(sleep) => sleep.poll(cx).is_ready(),
                None => self.poll_shared(cx),
            };
            if expired {
                Poll::Ready(Err(Elapsed))
            } else {
                Poll::Pending
            }
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequential requests share the timer; one that takes too long is cut off, and
    /// the next one gets its full time again.
    #[tokio::test(start_paused = true)]
    async fn sequential_limits() {
        let timer = ConnectionTimer::default();
        let quick = timer.limit(Duration::from_secs(8), async { 1 }).await;
        assert_eq!(quick.ok(), Some(1));
        let slow = timer.limit(
            Duration::from_secs(8),
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
            Duration::from_secs(8),
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
                Duration::from_secs(2),
                tokio::time::sleep(Duration::from_secs(5))
            ),
            timer.limit(
                Duration::from_secs(10),
                tokio::time::sleep(Duration::from_secs(5))
            ),
        );
        assert!(a.is_err());
        assert!(b.is_ok());
    }
}
