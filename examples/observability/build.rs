fn main() {
    gateway_build::compile("gateway.toml");
}
