//! Compile-fail tests: each `compile-fail/*.toml` is the gateway.toml of a real crate
//! that `cargo build` must refuse, once through build.rs and once through the
//! `gateway!` macro. Each file's `# expect:` lines are the diagnostics, with line and
//! column, that the build must print.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

struct Case {
    name: String,
    source: String,
    expected: Vec<String>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("compile-fail");
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .expect("compile-fail directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| {
            let source = std::fs::read_to_string(&path).expect("case source");
            let expected = source
                .lines()
                .filter_map(|l| l.strip_prefix("# expect: "))
                .map(str::to_owned)
                .collect();
            Case {
                name: path
                    .file_stem()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                source,
                expected,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 8, "only {} compile-fail cases", cases.len());
    for case in &cases {
        assert!(
            !case.expected.is_empty(),
            "{}: no `# expect:` line",
            case.name
        );
    }
    cases
}

/// Writes a crate into `dir` whose `main.rs` and `build.rs` are given.
fn write_crate(dir: &Path, dependencies: &str, build_rs: Option<&str>, main_rs: &str) {
    std::fs::create_dir_all(dir.join("src")).expect("crate dir");
    let manifest = format!(
        "[package]\nname = \"broken-gateway\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[workspace]\n\n{dependencies}\n"
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("manifest");
    // The workspace's lock file pins the same versions and lets cargo work offline.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    if let Some(build_rs) = build_rs {
        std::fs::write(dir.join("build.rs"), build_rs).expect("build.rs");
    }
    std::fs::write(dir.join("src/main.rs"), main_rs).expect("main.rs");
}

/// Builds the crate in `dir` with each case's gateway.toml; returns the failures.
fn run_cases(dir: &Path) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scratch-crates-target");
    let mut failures = Vec::new();
    for case in cases() {
        std::fs::write(dir.join("gateway.toml"), &case.source).expect("gateway.toml");
        let output = Command::new(&cargo)
            .args(["build", "--offline", "--quiet"])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            failures.push(format!("{}: the build succeeded", case.name));
            continue;
        }
        if stderr.contains("panicked") {
            failures.push(format!("{}: the compiler panicked:\n{stderr}", case.name));
        }
        for expected in &case.expected {
            // build.rs errors come as `error: PACKAGE@VERSION: MESSAGE`, macro errors as
            // `error: MESSAGE`.
            let found = stderr
                .lines()
                .any(|line| line.starts_with("error: ") && line.ends_with(expected.as_str()));
            if !found {
                failures.push(format!("{}: missing `{expected}` in:\n{stderr}", case.name));
            }
        }
    }
    failures
}

/// A broken gateway.toml fails `cargo build` through build.rs with one
/// `cargo::error=` per diagnostic and no panic.
#[test]
fn build_rs_reports_every_diagnostic_with_its_location() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-fail-build-rs");
    let dependencies = format!(
        "[build-dependencies]\ngateway-build = {{ path = \"{}\" }}",
        workspace().join("gateway-build").display()
    );
    write_crate(
        &dir,
        &dependencies,
        Some("fn main() {\n    gateway_build::compile(\"gateway.toml\");\n}\n"),
        "fn main() {}\n",
    );
    let failures = run_cases(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The same configurations fail through the `gateway!` macro with the same text.
#[test]
fn macro_reports_every_diagnostic_with_its_location() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-fail-macro");
    let dependencies = format!(
        "[dependencies]\ngateway-macros = {{ path = \"{}\" }}",
        workspace().join("gateway-macros").display()
    );
    write_crate(
        &dir,
        &dependencies,
        None,
        "gateway_macros::gateway!(\"gateway.toml\");\n\nfn main() {}\n",
    );
    let failures = run_cases(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
