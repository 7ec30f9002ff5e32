//! The per-worker cache of verified credentials: a token seen again is not verified
//! again until it expires. One cache per policy and worker, in a `RefCell`, as the
//! worker's other state: no lock, no atomic.
//!
//! **Bounded.** At most `capacity` entries. Inserting into a full cache first drops the
//! expired entries, then, if none were, a quarter of the entries in the map's
//! (randomly seeded) order. Only credentials that passed verification are inserted, so
//! a client sending new garbage tokens cannot evict anything.
//!
//! **Keyed by the signature's tail.** The key is the token's last 8 bytes, part of its
//! signature, mixed by one multiplication: a signature is unpredictable without the
//! key, so valid tokens spread evenly, and since only verified tokens are inserted, a
//! client cannot crowd one bucket (a keyed hash such as SipHash guards against that,
//! at ten times the cost). The entry keeps the whole token and a hit compares it, so
//! two tokens sharing a key never answer for each other. A hit's cost does not grow
//! with the token's size (figures in bench/RESULTS.md).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// What a cached credential must say about its lifetime.
pub trait Expiring {
    /// Whether it may still be used at `now` (seconds since the Unix epoch).
    fn usable_at(&self, now: u64) -> bool;
}

/// A cached credential: the whole token, and what verifying it established.
type Entry<V> = (Box<[u8]>, Rc<V>);

/// Verified credentials by their token.
pub struct CredentialCache<V> {
    entries: RefCell<HashMap<u64, Entry<V>, BuildHasherDefault<Mix>>>,
    capacity: usize,
}

/// Spreads a key that is already random over all 64 bits (Fibonacci hashing, with
/// the high half folded into the low one, where the map takes its bucket index).
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let product = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = product ^ (product >> 32);
    }
}

impl<V: Expiring> CredentialCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RefCell::new(HashMap::default()),
            capacity,
        }
    }

    /// The token's last 8 bytes (fewer for a shorter token) as a number.
    fn key(token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(8)..];
        let mut key = [0; 8];
        key[..tail.len()].copy_from_slice(tail);
        u64::from_le_bytes(key)
    }

    /// The verified credential for `token`, if it is cached and still usable.
    pub fn get(&self, token: &[u8], now: u64) -> Option<Rc<V>> {
        let entries = self.entries.borrow();
        let (cached, value) = entries.get(&Self::key(token))?;
        (**cached == *token && value.usable_at(now)).then(|| value.clone())
    }

    pub fn insert(&self, token: &[u8], value: Rc<V>, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let key = Self::key(token);
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, value)| value.usable_at(now));
            if entries.len() >= self.capacity {
                let evicted: Vec<u64> = entries
                    .keys()
                    .take(self.capacity / 4 + 1)
                    .copied()
                    .collect();
                for key in evicted {
                    entries.remove(&key);
                }
            }
        }
        entries.insert(key, (token.into(), value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.borrow().len()
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
    }
}
