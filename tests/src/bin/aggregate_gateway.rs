//! The aggregation gateway, compiled by `build.rs` from `gateways/aggregate.toml`.

include!(concat!(env!("OUT_DIR"), "/aggregate.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
