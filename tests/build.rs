fn main() {
    gateway_build::Builder::new()
        .out_file("e2e.rs")
        .compile("gateways/e2e.toml");
}
