//! The per-worker cache of verified credentials: a token seen again is not verified
//! again until it expires. One cache per policy and worker, in a `RefCell`, as the
//! worker's other state: no lock, no atomic.
//!
//! **Bounded, in one allocation.** At most `capacity` entries, in an array of sets of
//! four ways (a CPU cache's layout), made on the first insert. A token's key picks its
//! set; inserting into a full set replaces an expired entry, or else the set's oldest.
//! Every operation touches four slots: there is no scan of the whole cache, and no
//! eviction storm that frees thousands of entries at once (a `HashMap` that dropped a
//! quarter of its entries when full measured 6 µs of `malloc` per cache miss under
//! churn, bench/RESULTS.md). Only credentials that passed verification are inserted,
//! so a client sending new garbage tokens cannot evict anything.
//!
//! **Keyed by the signature's tail.** The key is the token's last 8 bytes, part of its
//! signature, mixed by one multiplication: a signature is unpredictable without the
//! key, so valid tokens spread evenly over the sets, and since only verified tokens
//! are inserted, a client cannot crowd one set (a keyed hash such as SipHash guards
//! against that, at ten times the cost). The entry keeps the whole token and a hit
//! compares it, so two tokens sharing a key never answer for each other. A hit's cost
//! does not grow with the token's size (figures in bench/RESULTS.md).

use std::cell::RefCell;
use std::rc::Rc;

/// What a cached credential must say about its lifetime.
pub trait Expiring {
    /// Whether it may still be used at `now` (seconds since the Unix epoch).
    fn usable_at(&self, now: u64) -> bool;
}

/// Entries per set.
const WAYS: usize = 4;

/// A cached credential: the whole token, and what verifying it established.
struct Entry<V> {
    key: u64,
    /// When it was inserted, in inserts: the oldest of a full set goes first.
    stamp: u64,
    token: Box<[u8]>,
    value: Rc<V>,
}

/// Verified credentials by their token.
pub struct CredentialCache<V> {
    slots: RefCell<Slots<V>>,
    capacity: usize,
}

struct Slots<V> {
    /// `sets * ways` slots, set by set; empty until the first insert.
    slots: Vec<Option<Entry<V>>>,
    inserts: u64,
}

impl<V: Expiring> CredentialCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: RefCell::new(Slots {
                slots: Vec::new(),
                inserts: 0,
            }),
            capacity,
        }
    }

    fn ways(&self) -> usize {
        self.capacity.min(WAYS)
    }

    /// The token's last 8 bytes (fewer for a shorter token) as a number.
    fn key(token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(8)..];
        let mut key = [0; 8];
        key[..tail.len()].copy_from_slice(tail);
        u64::from_le_bytes(key)
    }

    /// The slots of `key`'s set: the key mixed (Fibonacci hashing), then mapped onto
    /// the sets by its high bits (a multiply and a shift, not a division).
    fn set(&self, key: u64) -> std::ops::Range<usize> {
        let ways = self.ways();
        let sets = (self.capacity / ways) as u128;
        let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let set = ((u128::from(mixed) * sets) >> 64) as usize;
        set * ways..(set + 1) * ways
    }

    /// The verified credential for `token`, if it is cached and still usable.
    pub fn get(&self, token: &[u8], now: u64) -> Option<Rc<V>> {
        let slots = self.slots.borrow();
        if slots.slots.is_empty() {
            return None;
        }
        let key = Self::key(token);
        slots.slots[self.set(key)]
            .iter()
            .flatten()
            .find(|e| e.key == key && *e.token == *token)
            .filter(|e| e.value.usable_at(now))
            .map(|e| e.value.clone())
    }

    pub fn insert(&self, token: &[u8], value: Rc<V>, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let key = Self::key(token);
        let mut slots = self.slots.borrow_mut();
        if slots.slots.is_empty() {
            let len = self.capacity / self.ways() * self.ways();
            slots.slots.resize_with(len, || None);
        }
        slots.inserts += 1;
        let stamp = slots.inserts;
        let set = &mut slots.slots[self.set(key)];
        // The same token again, else a free slot, else an expired entry, else the
        // oldest.
        let victim = set
            .iter()
            .position(|slot| {
                slot.as_ref()
                    .is_some_and(|e| e.key == key && *e.token == *token)
            })
            .or_else(|| set.iter().position(Option::is_none))
            .or_else(|| {
                set.iter()
                    .position(|slot| slot.as_ref().is_some_and(|e| !e.value.usable_at(now)))
            })
            .or_else(|| (0..set.len()).min_by_key(|&i| set[i].as_ref().map_or(0, |e| e.stamp)))
            .unwrap_or(0);
        set[victim] = Some(Entry {
            key,
            stamp,
            token: token.into(),
            value,
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.borrow().slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Until(u64);

    impl Expiring for Until {
        fn usable_at(&self, now: u64) -> bool {
            now < self.0
        }
    }

    #[test]
    fn hits_compare_the_whole_token_and_expire() {
        let cache = CredentialCache::new(8);
        cache.insert(b"header.claims.signature", Rc::new(Until(100)), 0);
        assert!(cache.get(b"header.claims.signature", 99).is_some());
        assert!(cache.get(b"header.claims.signature", 100).is_none());
        // Same last 8 bytes, different token: a miss.
        let long = [b"A".repeat(40), b"S".repeat(8)].concat();
        let other = [b"B".repeat(40), b"S".repeat(8)].concat();
        cache.insert(&long, Rc::new(Until(100)), 0);
        assert!(cache.get(&other, 1).is_none());
        assert!(cache.get(&long, 1).is_some());
    }

    #[test]
    fn stays_within_capacity() {
        let cache = CredentialCache::new(16);
        for i in 0..1000u32 {
            cache.insert(format!("token-{i}").as_bytes(), Rc::new(Until(10)), 0);
            assert!(cache.len() <= 16);
        }
        // Expired entries go first.
        let cache = CredentialCache::new(2);
        cache.insert(b"old", Rc::new(Until(5)), 0);
        cache.insert(b"live", Rc::new(Until(50)), 0);
        cache.insert(b"new", Rc::new(Until(50)), 10);
        assert!(cache.get(b"live", 10).is_some());
        assert!(cache.get(b"new", 10).is_some());
        // Then the oldest of the set: one set of four here.
        let cache = CredentialCache::new(4);
        for token in ["a", "b", "c", "d", "e"] {
            cache.insert(token.as_bytes(), Rc::new(Until(50)), 0);
        }
        assert!(cache.get(b"a", 1).is_none());
        assert!(
            ["b", "c", "d", "e"]
                .iter()
                .all(|t| cache.get(t.as_bytes(), 1).is_some())
        );
        // The same token again takes its own slot.
        cache.insert(b"e", Rc::new(Until(60)), 0);
        assert_eq!(cache.len(), 4);
        assert!(cache.get(b"b", 1).is_some());
    }

    #[test]
    fn any_capacity() {
        for capacity in [1, 3, 5, 1000] {
            let cache = CredentialCache::new(capacity);
            for i in 0..5000u32 {
                cache.insert(format!("token-{i}").as_bytes(), Rc::new(Until(10)), 0);
            }
            assert!(cache.len() <= capacity);
            assert!(cache.get(b"token-4999", 1).is_some(), "the latest is kept");
        }
        let disabled = CredentialCache::new(0);
        disabled.insert(b"t", Rc::new(Until(10)), 0);
        assert!(disabled.get(b"t", 1).is_none());
    }
}
