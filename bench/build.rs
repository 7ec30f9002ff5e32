fn main() {
    gateway_build::compile("gateway.toml");
    gateway_build::Builder::new()
        .out_file("tls.rs")
        .compile("tls.toml");
    gateway_build::Builder::new()
        .out_file("auth.rs")
        .compile("auth.toml");
    gateway_build::Builder::new()
        .out_file("aggregate.rs")
        .compile("aggregate.toml");
    gateway_build::Builder::new()
        .out_file("passthrough.rs")
        .compile("passthrough.toml");
    for name in ["observe", "observe-off", "observe-metrics"] {
        gateway_build::Builder::new()
            .out_file(format!("{name}.rs"))
            .compile(format!("{name}.toml"));
    }
}
