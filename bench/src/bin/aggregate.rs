//! The aggregation benchmark's gateway, compiled by `build.rs` from `aggregate.toml`.

include!(concat!(env!("OUT_DIR"), "/aggregate.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
