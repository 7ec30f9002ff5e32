//! The generic cell rate algorithm (GCRA, ITU-T I.371): a token bucket kept as one
//! number per key, the theoretical arrival time (TAT) of the next request at the
//! sustained rate. A request at `now` is admitted when moving the TAT one emission
//! interval later leaves it no more than the burst tolerance ahead of `now`.
//!
//! One number per key is what lets the in-process store update a bucket with one
//! compare-and-swap, and the Redis store in one short script. A TAT at or before
//! `now` is a full bucket: such an entry holds nothing a fresh one would not, which is
//! what makes evicting it free.

/// A limit as GCRA needs it, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time between two tokens at the sustained rate (`period / count`).
    pub emission: u64,
    /// How far ahead of `now` the TAT may run: `emission × burst`.
    pub tolerance: u64,
}

/// An admitted request: the bucket's new TAT and what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub tat: u64,
    /// Requests that would still be admitted right now.
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset: u64,
}

/// A refused request: nanoseconds until one would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: u64,
}

impl Gcra {
    /// `count` requests per `period` nanoseconds, `burst` of them at once.
    pub fn new(count: u64, period: u64, burst: u64) -> Self {
        let emission = (period / count.max(1)).max(1);
        Gcra {
            emission,
            tolerance: emission.saturating_mul(burst.max(1)),
        }
    }

    /// The verdict on one request at `now` for a bucket whose TAT is `tat` (`0`, or
    /// any time not after `now`, for a full bucket).
    pub fn decide(&self, tat: u64, now: u64) -> Result<Admitted, Refused> {
        let new_tat = tat.max(now).saturating_add(self.emission);
        let ahead = new_tat - now;
        if ahead > self.tolerance {
            return Err(Refused {
                retry_after: ahead - self.tolerance,
            });
        }
        Ok(Admitted {
            tat: new_tat,
            remaining: (self.tolerance - ahead) / self.emission,
            reset: ahead,
        })
    }

    /// What an untouched bucket reports: the burst, full.
    pub fn full(&self) -> Admitted {
        Admitted {
            tat: 0,
            remaining: self.tolerance / self.emission,
            reset: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn burst_then_the_sustained_rate() {
        // 10 per second, 3 at once.
        let gcra = Gcra::new(10, S, 3);
        let mut tat = 0;
        let now = 100 * S;
        for left in [2, 1, 0] {
            let admitted = gcra.decide(tat, now).expect("within the burst");
            assert_eq!(admitted.remaining, left);
            tat = admitted.tat;
        }
        let refused = gcra.decide(tat, now).expect_err("burst spent");
        assert_eq!(refused.retry_after, S / 10);
        // One emission interval later, exactly one more.
        let later = now + S / 10;
        let admitted = gcra.decide(tat, later).expect("refilled one");
        assert_eq!(admitted.remaining, 0);
        assert!(gcra.decide(admitted.tat, later).is_err());
        // Idle for long: full again, never more than the burst.
        let admitted = gcra.decide(admitted.tat, later + 3600 * S).expect("full");
        assert_eq!(admitted.remaining, 2);
        assert_eq!(admitted.reset, S / 10);
    }

    #[test]
    fn over_any_window_at_most_burst_plus_rate() {
        let gcra = Gcra::new(5, S, 2);
        let (mut tat, mut admitted) = (0, 0);
        // A request every millisecond for 10 s.
        for ms in 0..10_000u64 {
            if let Ok(a) = gcra.decide(tat, 50 * S + ms * 1_000_000) {
                tat = a.tat;
                admitted += 1;
            }
        }
        assert!((50..=52).contains(&admitted), "{admitted}");
    }

    #[test]
    fn odd_rates() {
        let slow = Gcra::new(1, 86_400 * S, 1);
        assert_eq!(slow.emission, 86_400 * S);
        let fast = Gcra::new(u64::MAX, S, u64::MAX);
        assert_eq!(fast.emission, 1);
        assert!(fast.decide(0, S).is_ok());
        assert_eq!(slow.full().remaining, 1);
    }
}
