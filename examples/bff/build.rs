//! Two gateways from one crate: `web.toml` and `mobile.toml`, each including
//! `common.toml`.
fn main() {
    gateway_build::Builder::new()
        .out_file("web.rs")
        .compile("web.toml");
    gateway_build::Builder::new()
        .out_file("mobile.rs")
        .compile("mobile.toml");
}
