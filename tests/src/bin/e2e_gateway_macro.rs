//! The same gateway as `e2e-gateway`, compiled by the `gateway!` macro instead.

gateway_macros::gateway!("gateways/e2e.toml");

fn main() -> std::process::ExitCode {
    gateway::main()
}
