//! The in-process store: one limit for the whole process, shared by every worker
//! without a lock. A limit's buckets live in a fixed table made at start-up; a
//! bucket is a GCRA TAT updated by compare-and-swap, so two workers admitting
//! requests of one key race on one atomic and each admission is counted once.
//!
//! **Bounded memory.** The buckets live in a `Table` of `max_keys` slots that never
//! grows. A new key takes a free slot in its set, else a slot whose bucket is full
//! again (TAT not after now: it holds nothing, so idle keys cost nothing to evict and
//! need no sweeper), else the slot whose bucket is closest to full. **At the bound**,
//! when a flood of distinct keys keeps every slot of a set busy, an evicted key comes
//! back with a full bucket: it gains at most its burst, once per eviction, while every
//! key that stays is limited exactly. Memory never grows; fairness degrades only for
//! the keys of a set that a flood crowds.
//!
//! **Races.** Claiming a slot for a new key swaps the slot's hash and then stores the
//! new TAT, so a request of the new key that lands between the two stores is judged
//! once against the evicted key's bucket. Only eviction races this way, and only at
//! the bound.

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::gcra::{Admitted, Gcra, Refused};
use super::table::{Slot, Table, WAYS};

/// The buckets of one limit scope.
pub struct LocalStore {
    /// Each slot's state is its bucket's TAT.
    table: Table,
    /// Where the store's clock starts: TATs are nanoseconds since.
    epoch: Instant,
}

impl LocalStore {
    /// A store of at most `max_keys` buckets (at least one set).
    pub fn new(max_keys: usize) -> Self {
        LocalStore {
            table: Table::new(max_keys),
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the store's epoch; never 0, which means "full bucket".
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// The verdict on one request of `key` at `now`.
    pub fn check(&self, gcra: &Gcra, key: impl Hash, now: u64) -> Result<Admitted, Refused> {
        let hash = self.table.hash(key);
        let set = self.table.set(hash);
        loop {
            if let Some(slot) = Table::find(set, hash) {
                match update(slot, gcra, now) {
                    Some(verdict) => return verdict,
                    // The slot went to another key meanwhile: look again.
                    None => continue,
                }
            }
            let victim = victim(set, now);
            let seen = victim.key.load(Ordering::Acquire);
            if victim
                .key
                .compare_exchange(seen, hash, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let verdict = gcra.decide(0, now);
            let tat = verdict.map_or(0, |a| a.tat);
            victim.state.store(tat, Ordering::Release);
            return verdict;
        }
    }

    /// Buckets the store can hold: its size in memory is this times 16 bytes, fixed.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Bytes the store's table takes; what it is made with, whatever the traffic.
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }
}

/// One request against the bucket in `slot`; `None` if the slot changed hands.
fn update(slot: &Slot, gcra: &Gcra, now: u64) -> Option<Result<Admitted, Refused>> {
    let key = slot.key.load(Ordering::Acquire);
    let mut tat = slot.state.load(Ordering::Acquire);
    loop {
        let verdict = gcra.decide(tat, now);
        let Ok(admitted) = verdict else {
            return Some(verdict);
        };
        match slot.state.compare_exchange_weak(
            tat,
            admitted.tat,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Some(verdict),
            Err(current) => {
                if slot.key.load(Ordering::Acquire) != key {
                    return None;
                }
                tat = current;
            }
        }
    }
}

/// The slot a new key takes: a free one, else one whose bucket is full again, else
/// the one closest to full (the least TAT).
fn victim(set: &[Slot; WAYS], now: u64) -> &Slot {
    set.iter()
        .find(|s| s.key.load(Ordering::Acquire) == 0)
        .or_else(|| set.iter().find(|s| s.state.load(Ordering::Acquire) <= now))
        .unwrap_or_else(|| {
            set.iter()
                .min_by_key(|s| s.state.load(Ordering::Acquire))
                .unwrap_or(&set[0])
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    const S: u64 = 1_000_000_000;

    #[test]
    fn keys_are_independent() {
        let store = LocalStore::new(64);
        let gcra = Gcra::new(1, S, 2);
        let now = S;
        for key in [&b"alice"[..], b"bob"] {
            assert!(store.check(&gcra, key, now).is_ok());
            assert!(store.check(&gcra, key, now).is_ok());
            assert!(store.check(&gcra, key, now).is_err());
        }
        assert!(store.check(&gcra, b"carol", now).is_ok());
    }

    /// Threads admitting one key together admit exactly the burst.
    #[test]
    fn exact_across_threads() {
        let store = Arc::new(LocalStore::new(1024));
        let gcra = Gcra::new(1, 3600 * S, 1000);
        let admitted = Arc::new(AtomicUsize::new(0));
        let now = S;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (store, admitted) = (store.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if store.check(&gcra, b"shared", now).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 1000);
    }

    /// A million distinct keys: the table stays the size it was made with, and a key
    /// that keeps sending is still limited.
    #[test]
    fn a_million_keys_stay_within_the_bound() {
        let store = LocalStore::new(4096);
        let bytes = store.table_bytes();
        assert_eq!(bytes, 4096 * 16);
        let gcra = Gcra::new(10, S, 5);
        let mut now = S;
        let mut steady_admitted = 0;
        for i in 0..1_000_000u32 {
            now += 1_000; // a microsecond apart: one second in all
            let _ = store.check(&gcra, i.to_le_bytes(), now);
            if i % 1000 == 0 && store.check(&gcra, b"steady", now).is_ok() {
                steady_admitted += 1;
            }
        }
        assert_eq!(store.table_bytes(), bytes);
        assert_eq!(store.capacity(), 4096);
        // 1,000 tries in one second at 10/s with a burst of 5: about 15, plus what
        // evictions gave back (each at most the burst).
        assert!(steady_admitted < 200, "{steady_admitted}");
    }

    #[test]
    fn idle_keys_are_evicted_first() {
        // One set: four slots.
        let store = LocalStore::new(4);
        let gcra = Gcra::new(1, S, 1);
        for key in [&b"a"[..], b"b", b"c"] {
            assert!(store.check(&gcra, key, S).is_ok());
        }
        // By then "a".."c" are full again (their TAT was 2 s) and "d" is spent: a
        // new key takes a full bucket's slot, and "d" stays limited.
        let later = 2 * S + S / 2;
        assert!(store.check(&gcra, b"d", later).is_ok());
        assert!(store.check(&gcra, b"e", later).is_ok());
        assert!(store.check(&gcra, b"d", later).is_err());
    }
}
