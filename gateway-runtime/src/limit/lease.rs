//! Batched mode of the Redis store (`batch = N`): a gateway leases up to N tokens of
//! a key's bucket in one round trip and spends them locally, so Redis sees one check
//! per N requests of a key instead of one per request.
//!
//! **Leases.** The leased tokens are taken from the bucket in Redis when they are
//! leased, by the same GCRA script that checks one request; the gateway keeps their
//! count, and spends them until they run out or the lease is a second old. When half
//! a lease is spent, the request that spent it starts fetching the rest of the next
//! one in a task of its own, so under steady traffic no request waits for Redis; the
//! tokens in hand are spent meanwhile. A request that finds the lease spent anyway
//! fetches the next itself, and requests of the key that arrive meanwhile wait for it
//! (within the store's timeout) rather than make their own. Tokens an expired lease
//! left unspent go back to the bucket with the key's next lease from this gateway. A
//! refusal is kept too: until the bucket's next token is due, the key's requests are
//! refused here without asking Redis, so a client that keeps knocking costs Redis
//! nothing.
//!
//! **Overshoot: none in total, at most N per gateway in any window.** Every admitted
//! request spends a token that Redis granted, so over the life of a bucket the fleet
//! admits no more than the exact limit. A window can see more, because the tokens a
//! gateway holds when it starts were granted before it, and a gateway never holds
//! more than N (a background fetch asks for what tops the lease up to N): in any
//! window, the fleet admits at most `G × N` requests more than the exact limit, for
//! `G` gateways.
//!
//! **Stranding: at most N tokens per gateway, for a second.** Tokens one gateway
//! holds are not available to another, so a key can be refused by one gateway while
//! another holds up to N of its tokens; they return to the bucket with that gateway's
//! next lease of the key after its lease expires, or, if the key's traffic stops
//! there, as the bucket refills. Choose N well below the burst: the compiler requires
//! N ≤ burst.
//!
//! **Memory.** Leases live in a `Table` like the in-process buckets', `max_keys`
//! entries. A new key takes a free slot, else an expired lease's, else the one with
//! the fewest tokens; an evicted key's tokens are stranded as above.

use std::hash::Hash;
use std::pin::pin;
use std::sync::Arc;
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
    /// A token spent; this many left. `true`: that was half the lease, and this
    /// request starts fetching the next one in the background.
    Spent(u64, bool),
    /// Refused here until the bucket's next token, this many milliseconds away.
    Refused(u64),
    /// This request fetches the next lease.
    Fetch(Ticket<'t>),
    /// Another request is fetching it.
    Wait,
    /// Every slot of the key's set is fetching: check this one request in Redis.
    Direct,
}

/// The right to fill one slot with a fetched lease: the slot's fetching bit is this
/// ticket's. Dropped unfilled (the fetch failed, or the request was cancelled), it
/// clears the bit, so the next request fetches again.
struct Ticket<'t> {
    leases: &'t LeaseTable,
    slot: &'t Slot,
    /// Expired tokens to give back.
    refund: u64,
}

impl Ticket<'_> {
    /// Adds `tokens` to what the slot still holds; new tokens last a lease from
    /// `now`.
    fn fill(self, tokens: u64, now: u64) {
        self.settle(|held| {
            let kept = if now < held.deadline { held.tokens } else { 0 };
            State {
                tokens: kept + tokens,
                fetching: false,
                deadline: match (tokens, kept) {
                    (0, 0) => 0,
                    (0, _) => held.deadline,
                    _ => now + LEASE_MILLIS,
                },
            }
        });
        std::mem::forget(self);
    }

    /// Redis refused: with no tokens held, the key is refused here until `until`.
    fn refuse(self, now: u64, until: u64) {
        self.settle(|held| {
            if now < held.deadline && held.tokens > 0 {
                State {
                    fetching: false,
                    ..held
                }
            } else {
                State {
                    tokens: 0,
                    fetching: false,
                    deadline: until,
                }
            }
        });
        std::mem::forget(self);
    }

    fn settle(&self, next: impl Fn(State) -> State) {
        let mut word = self.slot.state.load(Ordering::Acquire);
        while let Err(current) = self.slot.state.compare_exchange_weak(
            word,
            next(State::unpack(word)).pack(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            word = current;
        }
        self.leases.filled.notify_waiters();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.settle(|held| State {
            fetching: false,
            ..held
        });
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
    /// next lease. When half a lease is spent, the next is fetched in a task of its
    /// own, so that under steady traffic no request waits for Redis.
    pub async fn check(
        self: &Arc<Self>,
        redis: &Arc<RedisStore>,
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
                Take::Spent(left, refill) => {
                    if refill {
                        let (leases, redis, gcra) = (self.clone(), redis.clone(), *gcra);
                        let (want, key) = (self.batch - left, stable_key.to_vec());
                        tokio::spawn(async move {
                            leases.refill(hash, want, &redis, &gcra, &key).await;
                        });
                    }
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
                                ticket.fill(tokens - 1, now);
                                Ok(Admitted {
                                    tat: 0,
                                    remaining: tokens - 1,
                                    reset: ahead,
                                })
                            }
                            Lease::Refused { wait } => {
                                ticket.refuse(now, now + wait.div_ceil(1_000_000));
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

    /// The background fetch of the next lease of the key whose hash is `hash`, into
    /// its slot (the one holding the fetching bit).
    async fn refill(&self, hash: u64, want: u64, redis: &RedisStore, gcra: &Gcra, key: &[u8]) {
        let set = self.table.set(hash);
        let Some(slot) = set.iter().find(|s| {
            s.key.load(Ordering::Acquire) == hash
                && State::unpack(s.state.load(Ordering::Acquire)).fetching
        }) else {
            return;
        };
        let ticket = Ticket {
            leases: self,
            slot,
            refund: 0,
        };
        match redis.lease(gcra, key, want, 0).await {
            Ok(Lease::Granted { tokens, .. }) => ticket.fill(tokens, self.now()),
            // Refused: what is held stays; the request that finds it spent asks again.
            Ok(Lease::Refused { .. }) | Err(_) => drop(ticket),
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
                    // Tokens in hand are spent, whether or not the next lease is
                    // being fetched. The last one ends the lease: no tokens with a
                    // deadline ahead means "refused until then". Spending half the
                    // lease starts fetching the next.
                    State { tokens, .. } if live && tokens > 0 => State {
                        tokens: tokens - 1,
                        deadline: if tokens == 1 { 0 } else { state.deadline },
                        fetching: state.fetching || tokens - 1 == self.batch / 2,
                    },
                    State { fetching: true, .. } => return Take::Wait,
                    State { .. } if live => {
                        return Take::Refused(state.deadline - now);
                    }
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
                    Ok(_) if state.tokens > 0 && live => {
                        return Take::Spent(next.tokens, next.fetching && !state.fetching);
                    }
                    Ok(_) => {
                        return Take::Fetch(Ticket {
                            leases: self,
                            slot,
                            refund: state.tokens,
                        });
                    }
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

    /// Tokens left, and whether this spending starts the next lease's fetch.
    fn spent(take: Take<'_>) -> (u64, bool) {
        match take {
            Take::Spent(left, refill) => (left, refill),
            _ => panic!("expected a spent token"),
        }
    }

    /// The ticket of a background fetch started by `spent`.
    fn refill_ticket(leases: &LeaseTable, hash: u64) -> Ticket<'_> {
        let slot = Table::find(leases.table.set(hash), hash).expect("slot");
        assert!(State::unpack(slot.state.load(Ordering::Acquire)).fetching);
        Ticket {
            leases,
            slot,
            refund: 0,
        }
    }

    #[test]
    fn a_lease_is_spent_then_fetched_again() {
        let leases = LeaseTable::new(8, 4);
        let key = leases.table.hash("alice");
        let ticket = fetch(leases.take(key, 10));
        assert!(matches!(leases.take(key, 10), Take::Wait));
        ticket.fill(3, 10);
        // Half the lease (2 of 4) left: the next is fetched in the background,
        // and the tokens in hand are still spent meanwhile.
        assert_eq!(spent(leases.take(key, 10)), (2, true));
        assert_eq!(spent(leases.take(key, 11)), (1, false));
        assert_eq!(spent(leases.take(key, 12)), (0, false));
        assert!(matches!(leases.take(key, 13), Take::Wait));
        refill_ticket(&leases, key).fill(2, 14);
        assert_eq!(spent(leases.take(key, 15)), (1, false));
        assert_eq!(spent(leases.take(key, 16)), (0, false));
        assert_eq!(fetch(leases.take(key, 17)).refund, 0);
    }

    #[test]
    fn a_background_fetch_adds_to_what_is_held() {
        let leases = LeaseTable::new(8, 8);
        let key = leases.table.hash("dave");
        fetch(leases.take(key, 10)).fill(7, 10);
        for left in [6, 5] {
            assert_eq!(spent(leases.take(key, 10)).0, left);
        }
        assert_eq!(spent(leases.take(key, 10)), (4, true));
        assert_eq!(spent(leases.take(key, 11)), (3, false));
        refill_ticket(&leases, key).fill(4, 12);
        assert_eq!(spent(leases.take(key, 13)), (6, false));
        // A refused background fetch keeps what is held.
        let _ = spent(leases.take(key, 13));
        let (left, refill) = spent(leases.take(key, 13));
        assert_eq!((left, refill), (4, true));
        refill_ticket(&leases, key).refuse(14, 1_000);
        assert_eq!(spent(leases.take(key, 15)).0, 3);
    }

    #[test]
    fn a_grant_of_one_token_is_no_refusal() {
        let leases = LeaseTable::new(8, 4);
        let key = leases.table.hash("erin");
        fetch(leases.take(key, 10)).fill(0, 10);
        assert_eq!(fetch(leases.take(key, 11)).refund, 0);
    }

    #[test]
    fn a_refusal_is_kept_until_the_next_token() {
        let leases = LeaseTable::new(8, 4);
        let key = leases.table.hash("bob");
        fetch(leases.take(key, 10)).refuse(10, 50);
        assert!(matches!(leases.take(key, 20), Take::Refused(30)));
        let _ticket = fetch(leases.take(key, 50));
    }

    #[test]
    fn expired_tokens_are_refunded_and_failed_fetches_free_the_slot() {
        let leases = LeaseTable::new(8, 8);
        let key = leases.table.hash("carol");
        fetch(leases.take(key, 10)).fill(7, 10);
        assert_eq!(spent(leases.take(key, 11)), (6, false));
        let ticket = fetch(leases.take(key, 10 + LEASE_MILLIS));
        assert_eq!(ticket.refund, 6);
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
