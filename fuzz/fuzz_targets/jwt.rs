//! The JWT reader (header and claim set, what is read of a token once its form and
//! signature are known) against serde_json's `Value`: whatever it accepts is JSON
//! with one value per name it reads, and what it reports agrees with that JSON. It
//! never panics, on any bytes. The input is the header's JSON, a 0xFF byte (never
//! in JSON text), then the claim set's.

#![no_main]

use gateway_runtime::fuzzing::jwt;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;

const NOW: u64 = 1_000_000;

/// The JSON as serde_json's `Value` reads it; `None` for JSON text that `Value` cannot
/// hold but the grammar allows (RFC 8259 §6 leaves number range to implementations,
/// `3e41210529`; §8.2 allows an unpaired surrogate, `"\udfff"`), which the reader may
/// accept in a member it skips. What serde_json reads as `IgnoredAny` is that grammar.
fn json(bytes: &[u8]) -> Option<Value> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(_) if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() => None,
        Err(e) => panic!("accepted, but not JSON: {e}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let (header, claims) = match input.iter().position(|&b| b == 0xff) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &b""[..]),
    };
    let read = jwt(header, claims, NOW);
    if let Ok((alg, kid)) = &read.header
        && let Some(value) = json(header)
    {
        assert_eq!(value["alg"].as_str(), Some(alg.as_str()));
        assert_eq!(value.get("kid").and_then(Value::as_str), kid.as_deref());
    }
    let Ok((expires, not_before, kept)) = &read.claims else {
        return;
    };
    let Some(value) = json(claims) else {
        return;
    };
    let seconds = |name: &str| value.get(name).and_then(Value::as_f64);
    let exp = seconds("exp").expect("exp is required");
    assert_eq!(*expires, exp.floor() as u64);
    assert_eq!(
        *not_before,
        seconds("nbf").map_or(0, |nbf| nbf.ceil() as u64)
    );
    assert!(*expires + 60 >= NOW && *not_before <= NOW + 60);
    assert_eq!(value["iss"], "https://i/");
    let aud = &value["aud"];
    assert!(
        aud == "a"
            || aud == "b"
            || aud
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "a" || x == "b"))
    );
    // Kept claims are the JSON's own values (one of each: duplicates are refused).
    for (name, kept) in kept.as_object().expect("claims") {
        assert_eq!(value.get(name), Some(kept));
    }
    for name in ["sub", "roles", "exp", "aud"] {
        assert_eq!(kept.get(name), value.get(name));
    }
});
