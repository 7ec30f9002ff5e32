//! The authentication gateway, compiled by `build.rs` from `gateways/auth.toml`.

include!(concat!(env!("OUT_DIR"), "/auth.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
