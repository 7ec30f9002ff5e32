//! Concurrency limits: at most `max` requests of a scope in flight at once, process
//! wide, from the limit's step until their response has been sent (the permit rides
//! on the upstream's response body, so a long download keeps its place). Beyond
//! `max`, up to `queue` requests wait at most `queue_timeout` for a place; the rest,
//! and those that waited too long, get 503 with a JSON body.
//!
//! A place is a permit of a tokio semaphore shared by the workers: taking a free one
//! is one compare-and-swap; only a request that has to wait goes through the
//! semaphore's waiter list (a lock, held for the enqueue and the hand-over).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pipeline::Stop;

/// `concurrency = { … }` of a policy, as the compiler lays it out.
#[derive(Debug)]
pub struct ConcurrencySpec {
    pub name: &'static str,
    pub max: usize,
    /// Requests that may wait for a place; 0: none wait.
    pub queue: usize,
    pub queue_timeout: Duration,
}

/// The places of one concurrency limit in one scope.
pub struct ConcurrencyLimiter {
    spec: &'static ConcurrencySpec,
    places: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// A place in flight; given back when dropped.
pub type Place = OwnedSemaphorePermit;

/// Counts a waiting request for as long as it waits, even if the wait is dropped
/// (the client went away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConcurrencyLimiter {
    pub fn new(spec: &'static ConcurrencySpec) -> Self {
        ConcurrencyLimiter {
            spec,
            places: Arc::new(Semaphore::new(spec.max)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The request phase: a place, at once or after waiting in the queue, or 503.
    pub async fn acquire(&self) -> Result<Place, Stop> {
        if let Ok(place) = self.places.clone().try_acquire_owned() {
            return Ok(place);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.spec.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.busy());
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.spec.queue_timeout, self.places.clone().acquire_owned())
            .await
        {
            Ok(Ok(place)) => Ok(place),
            _ => Err(self.busy()),
        }
    }

    fn busy(&self) -> Stop {
        Stop::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight",
            self.spec.name,
        )
    }

    /// Places free now (for tests and the admin side).
    pub fn available(&self) -> usize {
        self.places.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPEC: ConcurrencySpec = ConcurrencySpec {
        name: "two",
        max: 2,
        queue: 1,
        queue_timeout: Duration::from_millis(100),
    };

    #[tokio::test(start_paused = true)]
    async fn places_then_a_bounded_queue() {
        let limit = ConcurrencyLimiter::new(&SPEC);
        let a = limit.acquire().await.expect("first place");
        let _b = limit.acquire().await.expect("second place");
        // The queue holds one; a second waiter is refused at once.
        let limit = &limit;
        let waiter = async move { limit.acquire().await };
        let refused = async {
            tokio::task::yield_now().await;
            limit.acquire().await
        };
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(a);
        };
        let (waited, refused, ()) = tokio::join!(waiter, refused, release);
        assert!(waited.is_ok(), "the waiter got the freed place");
        assert!(matches!(refused, Err(Stop::Refused(r)) if r.status == 503));
        drop(waited);
        assert_eq!(limit.available(), 1);
        assert_eq!(limit.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_times_out() {
        let limit = ConcurrencyLimiter::new(&SPEC);
        let _a = limit.acquire().await.expect("place");
        let _b = limit.acquire().await.expect("place");
        let refused = limit.acquire().await;
        assert!(
            matches!(refused, Err(Stop::Refused(r)) if r.message == "too many requests in flight")
        );
        assert_eq!(limit.waiting.load(Ordering::Acquire), 0);
    }
}
