//! Random numbers for ids (trace and span ids, request ids): drawn from the system once
//! per thread, then stretched with wyrand, so an id costs a few instructions and no
//! system call. Unpredictable enough for ids; never used for secrets.

use std::cell::Cell;

thread_local! {
    /// This thread's generator state; seeded on first use.
    static STATE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// 64 random bits from the system's source.
pub fn system_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The system's random source does not fail on Linux once booted; were it to, the
    // time and the process id still tell workers and restarts apart.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(bytes)
}

/// The next 64 bits of this thread's generator.
#[inline]
pub fn next_u64() -> u64 {
    STATE.with(|state| {
        let mut seed = state.get().unwrap_or_else(system_u64);
        let drawn = wyrand(&mut seed);
        state.set(Some(seed));
        drawn
    })
}

/// 128 random bits, two draws in one visit to the thread's state.
#[inline]
pub fn next_u128() -> u128 {
    STATE.with(|state| {
        let mut seed = state.get().unwrap_or_else(system_u64);
        let (high, low) = (wyrand(&mut seed), wyrand(&mut seed));
        state.set(Some(seed));
        (u128::from(high) << 64) | u128::from(low)
    })
}

/// One step of wyrand: advances `seed`, returns 64 bits.
#[inline]
fn wyrand(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0xa076_1d64_78bd_642f);
    let product = u128::from(*seed) * u128::from(*seed ^ 0xe703_7ed1_a0b4_28db);
    ((product >> 64) as u64) ^ (product as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ() {
        let drawn: std::collections::HashSet<u64> = (0..10_000).map(|_| next_u64()).collect();
        assert_eq!(drawn.len(), 10_000);
    }
}
