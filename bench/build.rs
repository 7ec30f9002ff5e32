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
        .out_file("observe.rs")
        .compile("observe.toml");
}
