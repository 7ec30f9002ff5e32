//! The observability benchmark's baseline, compiled by `build.rs` from `observe-off.toml`.

include!(concat!(env!("OUT_DIR"), "/observe-off.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
