//! The UI suite: each `tests/ui/<area>/<case>.toml` is checked, and what `gateway check`
//! would print for it (errors and warnings, rendered without colour) must equal the
//! `.stderr` file beside it. `GATEWAY_BLESS=1 cargo test -p gateway-build --test ui`
//! rewrites the `.stderr` files; review their diff like code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn cases(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("ui directory") {
        let path = entry.expect("entry").path();
        // Files the cases include are not cases of their own.
        if path.ends_with("included") {
            continue;
        }
        if path.is_dir() {
            cases(&path, found);
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
}

/// What `gateway check` prints for `source`, the text of `path`.
fn render(path: &Path, name: &str, source: &str) -> String {
    let dir = path.parent().expect("a folder");
    let read = |included: &str| gateway_build::include::read_in(dir, included);
    match gateway_build::analyze_with(name, source, &read) {
        Ok(analysis) => analysis.warnings.render(false),
        Err(diagnostics) => diagnostics.render(false),
    }
}

/// Every case's output matches its `.stderr`, and every diagnostic code has a case.
#[test]
fn ui() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    let mut paths = Vec::new();
    cases(&root, &mut paths);
    paths.sort();
    let bless = std::env::var_os("GATEWAY_BLESS").is_some();
    let mut failures = Vec::new();
    let mut seen_codes = BTreeSet::new();
    for path in &paths {
        let source = std::fs::read_to_string(path).expect("case");
        let name = path
            .strip_prefix(&root)
            .expect("under ui")
            .display()
            .to_string();
        let actual = render(path, &name, &source);
        for code in gateway_build::codes::ALL {
            if actual.contains(&format!("[{}]", code.id)) {
                seen_codes.insert(code.id);
            }
        }
        let expected_path = path.with_extension("stderr");
        if bless {
            std::fs::write(&expected_path, &actual).expect("write .stderr");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{name}: output differs from {}:\n{actual}",
                expected_path.display()
            ));
        }
    }
    let missing: Vec<&str> = gateway_build::codes::ALL
        .iter()
        .map(|c| c.id)
        .filter(|id| !seen_codes.contains(id))
        .collect();
    assert!(missing.is_empty(), "codes without a UI case: {missing:?}");
    assert!(
        failures.is_empty(),
        "{}\n(run with GATEWAY_BLESS=1 to accept)",
        failures.join("\n")
    );
}
