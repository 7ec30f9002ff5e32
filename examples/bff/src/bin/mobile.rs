//! The mobile gateway (`mobile.toml`): the same backends, slim answers.

include!(concat!(env!("OUT_DIR"), "/mobile.rs"));

fn main() -> std::process::ExitCode {
    bff_example::start_backend("mobile");
    println!("mobile: try\n  curl -s http://127.0.0.1:8084/dashboard/7");
    gateway::main()
}
