//! The quickstart: starts three demo backends on loopback, then the gateway compiled
//! from `gateway.toml` in front of them.

mod demo_backends;

include!(concat!(env!("OUT_DIR"), "/gateway.rs"));

fn main() -> std::process::ExitCode {
    demo_backends::start();
    gateway::main()
}
