fn main() {
    gateway_build::Builder::new()
        .out_file("e2e.rs")
        .compile("gateways/e2e.toml");
    gateway_build::Builder::new()
        .out_file("tls.rs")
        .compile("gateways/tls.toml");
    gateway_build::Builder::new()
        .out_file("auth.rs")
        .compile("gateways/auth.toml");
    gateway_build::Builder::new()
        .out_file("sizes.rs")
        .compile("gateways/sizes.toml");
    gateway_build::Builder::new()
        .out_file("aggregate.rs")
        .compile("gateways/aggregate.toml");
}
