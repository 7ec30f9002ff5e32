//! The web gateway (`web.toml`): whole answers, and the user's team.

include!(concat!(env!("OUT_DIR"), "/web.rs"));

fn main() -> std::process::ExitCode {
    bff_example::start_backend("web");
    println!("web: try\n  curl -s http://127.0.0.1:8083/dashboard/7");
    gateway::main()
}
