//! The gateway.toml front end: parsing, checking and code generation end in Rust code
//! or diagnostics, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &str| {
    let _ = gateway_build::generate("gateway.toml", source);
});
