//! The JWT benchmark's gateway, compiled by `build.rs` from `auth.toml`.

include!(concat!(env!("OUT_DIR"), "/auth.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
