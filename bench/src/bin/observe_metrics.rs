//! The observability benchmark's gateway with metrics alone, compiled by `build.rs`
//! from `observe-metrics.toml`.

include!(concat!(env!("OUT_DIR"), "/observe-metrics.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
