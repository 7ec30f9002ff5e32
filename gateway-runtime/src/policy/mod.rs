//! Policies: one module per kind, each a step of the request phase, the response
//! phase, or both (see `pipeline`). A policy instance is named once in gateway.toml
//! and attached to routes, listeners or groups of routes; the compiler lays out each
//! route's chain, so a policy here only says what one step does.
//!
//! The values a compiler must judge (CIDR blocks, header names and values) are parsed
//! here too, outside the `server` feature, so a value that passes the build is read
//! the same way by the binary.

pub mod client_cert;
pub mod headers;
pub mod ip;
