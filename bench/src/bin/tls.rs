//! The benchmarked HTTPS gateway: `bench/tls.toml`, compiled.

include!(concat!(env!("OUT_DIR"), "/tls.rs"));

fn main() -> std::process::ExitCode {
    gateway::main()
}
