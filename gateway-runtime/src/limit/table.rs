//! The fixed table both in-process structures keep their keys in: the buckets of
//! `local` and the leases of `lease`. It is made at start-up with room for
//! `max_keys` entries and never grows.
//!
//! Entries are two atomics (a key's hash and one 64-bit word of state) in sets of
//! four, one cache line a set. A key's keyed hash (SipHash with a per-process random
//! key, so a client cannot aim keys at one set) picks its set; the owner of the table
//! decides which entry of a full set a new key takes. A slot keeps the key's 64-bit
//! hash, not the key: two keys are confused only if their hashes collide, about one
//! chance in 2^64 per pair.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries per set: four 16-byte slots, one cache line.
pub(super) const WAYS: usize = 4;

#[derive(Default)]
pub(super) struct Slot {
    /// The key's hash; `0` for a free slot.
    pub key: AtomicU64,
    pub state: AtomicU64,
}

#[repr(align(64))]
#[derive(Default)]
struct Set([Slot; WAYS]);

pub(super) struct Table {
    sets: Box<[Set]>,
    hasher: RandomState,
}

impl Table {
    /// Room for `max_keys` entries (at least one set).
    pub fn new(max_keys: usize) -> Self {
        let sets = (max_keys / WAYS).max(1);
        Table {
            sets: (0..sets).map(|_| Set::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// `key`'s hash: never 0, which marks a free slot.
    pub fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key).max(1)
    }

    /// The set of the key whose hash is `hash`.
    pub fn set(&self, hash: u64) -> &[Slot; WAYS] {
        // The high bits pick the set (a multiply and a shift, not a division).
        let index = ((u128::from(hash) * self.sets.len() as u128) >> 64) as usize;
        &self.sets[index].0
    }

    /// The slot that holds `hash` in its set.
    pub fn find(set: &[Slot; WAYS], hash: u64) -> Option<&Slot> {
        set.iter().find(|s| s.key.load(Ordering::Acquire) == hash)
    }

    /// Entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Bytes the table takes; what it is made with, whatever the traffic.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.sets)
    }
}
