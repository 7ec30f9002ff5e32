//! Snapshots of what the compiler writes: the generated code for the quickstart
//! configuration (which the quickstart example also compiles), and the rustc-style
//! rendering of diagnostics. Review a changed snapshot like a code change.

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The generated code for examples/quickstart/gateway.toml.
#[test]
fn quickstart_codegen() {
    let output =
        gateway_build::generate("gateway.toml", &read("../examples/quickstart/gateway.toml"))
            .unwrap_or_else(|d| panic!("{}", d.render(false)));
    insta::assert_snapshot!("quickstart_gateway_rs", output.source);
}

/// The rustc-style rendering: source line, caret under the span, related places, help.
#[test]
fn human_diagnostics() {
    let source = read("../tests/compile-fail/every-error-at-once.toml")
        + &read("../tests/compile-fail/duplicate-route.toml")
            .replace("[listeners.public]\nbind = \"127.0.0.1:8080\"\n", "");
    let diagnostics =
        gateway_build::generate("gateway.toml", &source).expect_err("the file is broken");
    insta::assert_snapshot!("every_error_at_once_rendered", diagnostics.render(false));
}
