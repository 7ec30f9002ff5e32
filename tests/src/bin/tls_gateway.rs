//! The TLS gateway, compiled by `build.rs` from `gateways/tls.toml`.

include!(concat!(env!("OUT_DIR"), "/tls.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
