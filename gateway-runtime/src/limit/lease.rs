//! Batched mode of the Redis store (`batch = N`): a gateway leases up to N tokens of
//! a key's bucket in one round trip and spends them locally, so Redis sees one check
//! per N requests of a key instead of one per request.
//!
//! **Leases.** The leased tokens are taken from the bucket in Redis when they are
//! leased, by the same GCRA script that checks one request; the gateway keeps their
//! count, and spends them until they run out or the lease is a second old. The
//! request that finds the lease spent makes the next one; requests of the key that
//! arrive meanwhile wait for it (within the store's timeout) rather than make their
//! own. Tokens an expired lease left unspent go back to the bucket with the key's
//! next lease from this gateway. A refusal is kept too: until the bucket's next token
//! is due, the key's requests are refused here without asking Redis, so a client that
//! keeps knocking costs Redis nothing.
//!
//! **Overshoot: none in total, at most N − 1 per gateway in any window.** Every
//! admitted request spends a token that Redis granted, so over the life of a bucket
//! the fleet admits no more than the exact limit. A window can see more, because the
//! tokens a gateway holds when it starts were granted before it: in any window, the
//! fleet admits at most `G × (N − 1)` requests more than the exact limit, for `G`
//! gateways.
//!
//! **Stranding: at most N − 1 tokens per gateway, for a second.** Tokens one gateway
//! holds are not available to another, so a key can be refused by one gateway while
//! another holds up to N − 1 of its tokens; they return to the bucket with that
//! gateway's next lease of the key after its lease expires, or, if the key's traffic
//! stops there, as the bucket refills. Choose N well below the burst: the compiler
//! requires N ≤ burst.
//!
//! **Memory.** Leases live in a `Table` like the in-process buckets', `max_keys`
//! entries. A new key takes a free slot, else an expired lease's, else the one with
//! the fewest tokens; an evicted key's tokens are stranded as above.

use std::hash::Hash;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::Notify;

use super::MAX_BATCH;
use super::gcra::{Admitted, Gcra, Refused};
use super::redis::{Lease, RedisStore, Unanswered};
use super::table::{Slot, Table, WAYS};

/// How long a gateway may spend the tokens of one lease.
pub const LEASE_MILLIS: u64 = 1_000;

/// A slot's state: bits 0–23 the tokens left, bit 24 "a lease is being fetched",
/// bits 25–63 the lease's deadline in milliseconds since the table's epoch. With no
/// tokens and a deadline ahead, the key is refused until then.
const TOKEN_BITS: u32 = 24;
const TOKENS: u64 = MAX_BATCH;
const _: () = assert!(TOKENS == (1 << TOKEN_BITS) - 1);
const FETCHING: u64 = 1 << TOKEN_BITS;
const DEADLINE_SHIFT: u32 = TOKEN_BITS + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    tokens: u64,
    fetching: bool,
    deadline: u64,
}

impl State {
    fn unpack(word: u64) -> Self {
        State {
            tokens: word & TOKENS,
            fetching: word & FETCHING != 0,
            deadline: word >> DEADLINE_SHIFT,
        }
    }

    fn pack(self) -> u64 {
        (self.deadline << DEADLINE_SHIFT)
            | if self.fetching { FETCHING } else { 0 }
            | self.tokens.min(TOKENS)
    }
}

/// The leases of one limit scope.
pub struct LeaseTable {
    table: Table,
    batch: u64,
    epoch: Instant,
    /// Wakes the requests that wait for a lease being fetched.
    filled: Notify,
}

/// What a request of a key does, by the key's lease.
enum Take<'t> {
    /// A token spent; this many left.
    Spent(u64),
    /// Refused here until the bucket's next token, this many milliseconds away.
    Refused(u64),
    /// This request fetches the next lease.
    Fetch(Ticket<'t>),
    /// Another request is fetching it.
    Wait,
    /// Every slot of the key's set is fetching: check this one request in Redis.
    Direct,
}

/// The right to fill one slot with a fetched lease. Dropped unfilled (the fetch
/// failed, or the request was cancelled), it frees the slot for the next request.
struct Ticket<'t> {
    leases: &'t LeaseTable,
    slot: &'t Slot,
    /// Expired tokens to give back.
    refund: u64,
}

impl Ticket<'_> {
    fn fill(self, tokens: u64, deadline: u64) {
        self.slot.state.store(
            State {
                tokens,
                fetching: false,
                deadline,
            }
            .pack(),
            Ordering::Release,
        );
        self.leases.filled.notify_waiters();
        std::mem::forget(self);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.slot.state.store(0, Ordering::Release);
        self.leases.filled.notify_waiters();
    }
}

impl LeaseTable {
    /// Room for `max_keys` leases of `batch` tokens.
    pub fn new(max_keys: usize, batch: u64) -> Self {
        LeaseTable {
            table: Table::new(max_keys),
            batch: batch.clamp(1, MAX_BATCH),
            epoch: Instant::now(),
            filled: Notify::new(),
        }
    }

    /// The verdict on one request of `key`: from its lease, or from Redis with the
    /// next lease.
    pub async fn check(
        &self,
        redis: &RedisStore,
        gcra: &Gcra,
        key: impl Hash,
        stable_key: &[u8],
    ) -> Result<Result<Admitted, Refused>, Unanswered> {
        let hash = self.table.hash(key);
        let until = tokio::time::Instant::now() + redis.timeout();
        loop {
            let mut filled = pin!(self.filled.notified());
            filled.as_mut().enable();
            let now = self.now();
            match self.take(hash, now) {
                Take::Spent(left) => {
                    return Ok(Ok(Admitted {
                        tat: 0,
                        remaining: left,
                        reset: 0,
                    }));
                }
                Take::Refused(millis) => {
                    return Ok(Err(Refused {
                        retry_after: millis * 1_000_000,
                    }));
                }
                Take::Fetch(ticket) => {
                    let refund = ticket.refund;
                    return Ok(
                        match redis.lease(gcra, stable_key, self.batch, refund).await? {
                            Lease::Granted { tokens, ahead } => {
                                ticket.fill(tokens - 1, now + LEASE_MILLIS);
                                Ok(Admitted {
                                    tat: 0,
                                    remaining: tokens - 1,
                                    reset: ahead,
                                })
                            }
                            Lease::Refused { wait } => {
                                ticket.fill(0, now + wait.div_ceil(1_000_000));
                                Err(Refused { retry_after: wait })
                            }
                        },
                    );
                }
                Take::Wait => {
                    if tokio::time::timeout_at(until, filled).await.is_err() {
                        return Err(redis.failed("a lease from Redis did not come in time"));
                    }
                }
                Take::Direct => return redis.check(gcra, stable_key).await,
            }
        }
    }

    /// Milliseconds since the table's epoch; never 0, which is "no lease".
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX >> DEADLINE_SHIFT) + 1
    }

    fn take(&self, hash: u64, now: u64) -> Take<'_> {
        let set = self.table.set(hash);
        'find: loop {
            let Some(slot) = Table::find(set, hash) else {
                return self.claim(set, hash);
            };
            let mut word = slot.state.load(Ordering::Acquire);
            loop {
                let state = State::unpack(word);
                let live = now < state.deadline;
                let next = match state {
                    State { fetching: true, .. } => return Take::Wait,
                    State { tokens: 0, .. } if live => {
                        return Take::Refused(state.deadline - now);
                    }
                    // The last token ends the lease: no tokens with a deadline
                    // ahead means "refused until then".
                    State { tokens, .. } if live => State {
                        tokens: tokens - 1,
                        deadline: if tokens == 1 { 0 } else { state.deadline },
                        ..state
                    },
                    // Spent or expired: this request fetches the next lease.
                    _ => State {
                        tokens: 0,
                        fetching: true,
                        deadline: 0,
                    },
                };
                match slot.state.compare_exchange_weak(
                    word,
                    next.pack(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) if next.fetching => {
                        return Take::Fetch(Ticket {
                            leases: self,
                            slot,
                            refund: state.tokens,
                        });
                    }
                    Ok(_) => return Take::Spent(next.tokens),
                    Err(current) => {
                        if slot.key.load(Ordering::Acquire) != hash {
                            continue 'find;
                        }
                        word = current;
                    }
                }
            }
        }
    }

    /// A slot for a key that has none: free, else an expired lease's, else the one
    /// with the fewest tokens; never one being fetched.
    fn claim<'t>(&'t self, set: &'t [Slot; WAYS], hash: u64) -> Take<'t> {
        let now = self.now();
        let victim = set
            .iter()
            .map(|slot| (slot, slot.state.load(Ordering::Acquire)))
            .filter(|(_, word)| !State::unpack(*word).fetching)
            .min_by_key(|(slot, word)| {
                let state = State::unpack(*word);
                let taken = slot.key.load(Ordering::Acquire) != 0;
                (taken, now < state.deadline, state.tokens)
            });
        let Some((slot, word)) = victim else {
            return Take::Direct;
        };
        let fetching = State {
            tokens: 0,
            fetching: true,
            deadline: 0,
        };
        if slot
            .state
            .compare_exchange(word, fetching.pack(), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another request took it meanwhile: this one asks Redis directly.
            return Take::Direct;
        }
        slot.key.store(hash, Ordering::Release);
        Take::Fetch(Ticket {
            leases: self,
            slot,
            refund: 0,
        })
    }

    /// Leases the table can hold: its size in memory is this times 16 bytes, fixed.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(take: Take<'_>) -> Ticket<'_> {
        match take {
            Take::Fetch(ticket) => ticket,
            _ => panic!("expected a fetch"),
        }
    }

    fn spent(take: Take<'_>) -> u64 {
        match take {
            Take::Spent(left) => left,
            _ => panic!("expected a spent token"),
        }
    }

    #[test]
    fn a_lease_is_spent_then_fetched_again() {
        let leases = LeaseTable::new(8, 4);
        let key = leases.table.hash("alice");
        let ticket = fetch(leases.take(key, 10));
        assert!(matches!(leases.take(key, 10), Take::Wait));
        ticket.fill(3, 10 + LEASE_MILLIS);
        assert_eq!(
            [10, 11, 12].map(|now| spent(leases.take(key, now))),
            [2, 1, 0]
        );
        assert_eq!(fetch(leases.take(key, 13)).refund, 0);
    }

    #[test]
    fn a_refusal_is_kept_until_the_next_token() {
        let leases = LeaseTable::new(8, 4);
        let key = leases.table.hash("bob");
        fetch(leases.take(key, 10)).fill(0, 50);
        assert!(matches!(leases.take(key, 20), Take::Refused(30)));
        let _ticket = fetch(leases.take(key, 50));
    }

    #[test]
    fn expired_tokens_are_refunded_and_failed_fetches_free_the_slot() {
        let leases = LeaseTable::new(8, 4);
        let key = leases.table.hash("carol");
        fetch(leases.take(key, 10)).fill(3, 10 + LEASE_MILLIS);
        assert_eq!(spent(leases.take(key, 11)), 2);
        let ticket = fetch(leases.take(key, 11 + LEASE_MILLIS));
        assert_eq!(ticket.refund, 2);
        drop(ticket);
        assert_eq!(fetch(leases.take(key, 12 + LEASE_MILLIS)).refund, 0);
    }

    #[test]
    fn a_set_of_fetching_slots_sends_new_keys_to_redis() {
        // One set of four slots, every one fetching.
        let leases = LeaseTable::new(4, 4);
        let mut held = Vec::new();
        let mut i = 0u32;
        while held.len() < WAYS {
            i += 1;
            if let Take::Fetch(ticket) = leases.take(leases.table.hash(i), 10) {
                held.push(ticket);
            }
        }
        assert!(matches!(
            leases.take(leases.table.hash("new"), 10),
            Take::Direct
        ));
    }
}
