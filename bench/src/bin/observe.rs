//! The observability benchmark's gateway, compiled by `build.rs` from `observe.toml`.

include!(concat!(env!("OUT_DIR"), "/observe.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
