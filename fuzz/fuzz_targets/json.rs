//! The gateway's JSON check (`transform::validate::is_json`, which decides whether an
//! aggregate passes a backend's answer on) against serde_json, the reference: a text is
//! JSON if serde_json reads it as one value and it is UTF-8. Any disagreement on accept
//! or refuse is a failure. serde_json's `IgnoredAny` walks containers without recursion,
//! so it has no depth limit either.

#![no_main]

use gateway_runtime::transform::validate::is_json;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

fuzz_target!(|data: &[u8]| {
    let reference =
        serde_json::from_slice::<IgnoredAny>(data).is_ok() && std::str::from_utf8(data).is_ok();
    assert_eq!(
        is_json(data),
        reference,
        "{:?}",
        String::from_utf8_lossy(data)
    );
});
