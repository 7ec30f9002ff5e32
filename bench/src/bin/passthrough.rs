//! The caching tests' gateway, compiled by `build.rs` from `passthrough.toml`.

include!(concat!(env!("OUT_DIR"), "/passthrough.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
