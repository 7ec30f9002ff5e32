//! Ids and addresses as text, for the access log, spans and upstream requests, without
//! the formatting machinery: `write!` of an IPv4 address alone cost about 1,500
//! instructions (callgrind), a tenth of a sampled request's spans.

use std::net::IpAddr;

/// `bytes` in lower-case hex, two digits per byte.
///
/// Sixteen bytes at a time in one SSE2 register on x86-64 (every x86-64 CPU has SSE2):
/// about 15 instructions for a trace id's 32 digits, where a loop over the bytes,
/// even vectorized by the compiler, took 56 (callgrind, bench/observe.py).
#[inline]
pub fn hex<const N: usize>(bytes: &[u8; N]) -> [[u8; 2]; N] {
    let mut out = [[0u8; 2]; N];
    for (block, pairs) in bytes.chunks(16).zip(out.chunks_mut(16)) {
        let mut padded = [0u8; 16];
        padded[..block.len()].copy_from_slice(block);
        let digits = hex_block(padded);
        pairs
            .as_flattened_mut()
            .copy_from_slice(&digits[..2 * block.len()]);
    }
    out
}

/// The 32 digits of 16 bytes: each byte's high and low nibble side by side, then
/// `'0'` added to each, and `'a' - '0' - 10` more to those above 9.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn hex_block(bytes: [u8; 16]) -> [u8; 32] {
    // SAFETY: the only requirement is SSE2, which this build's target has (the `cfg`
    // above); it is part of the x86-64 baseline.
    unsafe { hex_block_sse2(bytes) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn hex_block_sse2(bytes: [u8; 16]) -> [u8; 32] {
    use std::arch::x86_64::{
        _mm_add_epi8, _mm_and_si128, _mm_cmpgt_epi8, _mm_cvtsi128_si64, _mm_set_epi64x,
        _mm_set1_epi8, _mm_srli_epi16, _mm_unpackhi_epi8, _mm_unpackhi_epi64, _mm_unpacklo_epi8,
    };
    let (first, second) = bytes.split_at(8);
    let word = |half: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(half);
        i64::from_le_bytes(word)
    };
    let bytes = _mm_set_epi64x(word(second), word(first));
    let nibble = _mm_set1_epi8(0x0f);
    let high = _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble);
    let low = _mm_and_si128(bytes, nibble);
    let digits = |nibbles| {
        let letters = _mm_and_si128(
            _mm_cmpgt_epi8(nibbles, _mm_set1_epi8(9)),
            _mm_set1_epi8((b'a' - b'0' - 10) as i8),
        );
        _mm_add_epi8(_mm_add_epi8(nibbles, _mm_set1_epi8(b'0' as i8)), letters)
    };
    let mut out = [0u8; 32];
    for (i, half) in [
        digits(_mm_unpacklo_epi8(high, low)),
        digits(_mm_unpackhi_epi8(high, low)),
    ]
    .into_iter()
    .enumerate()
    {
        let low_word = _mm_cvtsi128_si64(half);
        let high_word = _mm_cvtsi128_si64(_mm_unpackhi_epi64(half, half));
        out[16 * i..16 * i + 8].copy_from_slice(&low_word.to_le_bytes());
        out[16 * i + 8..16 * i + 16].copy_from_slice(&high_word.to_le_bytes());
    }
    out
}

/// The same, a byte at a time, where SSE2 is not to be had.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
fn hex_block(bytes: [u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = hex_digit(byte >> 4);
        pair[1] = hex_digit(byte & 15);
    }
    out
}

/// Appends `ip` as `Display` writes it.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        // Rare behind a listener on IPv4; the compression rules are std's to keep.
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// The digit of a nibble, without a branch.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
fn hex_digit(nibble: u8) -> u8 {
    nibble + b'0' + if nibble > 9 { b'a' - b'0' - 10 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_hex() {
        for first in (0..=255u8).step_by(16) {
            let bytes: [u8; 16] = std::array::from_fn(|i| first + i as u8);
            let fast = hex(&bytes);
            let plain: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(std::str::from_utf8(fast.as_flattened()), Ok(plain.as_str()));
            let span: [u8; 8] = std::array::from_fn(|i| bytes[i + 8]);
            assert_eq!(hex(&span).as_flattened(), &plain.as_bytes()[16..]);
            let odd: [u8; 21] = std::array::from_fn(|i| first.wrapping_add(7 * i as u8));
            let plain: String = odd.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex(&odd).as_flattened(), plain.as_bytes());
        }
    }

    #[test]
    fn addresses_as_std_writes_them() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.0.3",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            let mut out = String::from("x");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x{ip}"));
        }
    }
}
