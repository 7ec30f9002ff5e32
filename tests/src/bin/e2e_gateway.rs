//! The end-to-end gateway, compiled by `build.rs` from `gateways/e2e.toml`.

include!(concat!(env!("OUT_DIR"), "/e2e.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
