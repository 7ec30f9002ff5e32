//! The request head parser: any bytes give a head, "more please" or a refusal with a
//! 4xx or 5xx status, never a panic; an accepted head is sound.

#![no_main]

use gateway_runtime::fuzzing::request_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match request_head(bytes) {
        Ok(Some(head)) => {
            assert!(head.len <= bytes.len());
            assert!(bytes[..head.len].ends_with(b"\r\n\r\n"));
            for (name, value) in &head.fields {
                assert!(!name.is_empty());
                assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
            }
            // A head is accepted whole or not at all: any strict prefix is incomplete
            // or refused, never a different head.
            if let Ok(Some(shorter)) = request_head(&bytes[..head.len - 1]) {
                panic!("a prefix parsed as {shorter:?}");
            }
        }
        Ok(None) => {}
        Err((status, why)) => {
            assert!((400..600).contains(&status), "{status} {why}");
            assert!(!why.is_empty());
        }
    }
});
