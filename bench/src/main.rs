//! The benchmarked gateway: `bench/gateway.toml`, compiled.

include!(concat!(env!("OUT_DIR"), "/gateway.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
