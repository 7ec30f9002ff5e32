//! HTTP/1.1, the gateway's own on both sides: `server` serves clients and `client`
//! talks to upstreams, both framing bodies with `framing` and reading into
//! `read_buffer`s; `request_body` is a client's body as the upstream takes it.

pub mod client;
pub mod framing;
pub mod read_buffer;
pub mod request_body;
pub(crate) mod server;
