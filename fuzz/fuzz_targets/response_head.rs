//! The upstream response head parser: any bytes give a final head, "more please" or
//! an error (a 502 for the client), never a panic; a final head is sound.

#![no_main]

use gateway_runtime::fuzzing::response_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &[u8])| {
    let (head_request, bytes) = input;
    if let Ok(Some(head)) = response_head(bytes, head_request) {
        assert!((200..600).contains(&head.status), "{}", head.status);
        for (name, value) in &head.fields {
            assert!(!name.is_empty());
            assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n'));
            // Hop-by-hop framing never passes through.
            assert!(!name.eq_ignore_ascii_case(b"transfer-encoding"));
            assert!(!name.eq_ignore_ascii_case(b"connection"));
        }
        assert!(head.interim.len() <= 64 * 1024 + 1024);
    }
});
