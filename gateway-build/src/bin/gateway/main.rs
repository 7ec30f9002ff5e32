//! `gateway`: the compiler's front end for CI and humans.
//!
//! ```text
//! gateway check [--format human|json|github] [--deny-warnings] [FILE...]
//! gateway routes [FILE]
//! gateway expand [FILE]
//! gateway new NAME [--runtime-path DIR]
//! ```
//!
//! It runs the same analysis as the build (`gateway_build::analyze`), so it prints the
//! same diagnostics for the same file.

mod check;
mod new;
mod routes;

use std::process::ExitCode;

const USAGE: &str = "\
usage:
  gateway check [--format human|json|github] [--deny-warnings] [FILE...]
      parse and validate (default FILE: gateway.toml); exit 0 clean, 1 errors, 2 unreadable
  gateway routes [FILE]      print the resolved route table
  gateway expand [FILE]      print the generated Rust code
  gateway new NAME [--runtime-path DIR]
      create a gateway crate NAME that builds and runs as it is
  gateway --version";

/// Exit statuses: 0 clean, 1 the configuration has errors, 2 the command could not run.
const EXIT_ERRORS: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(EXIT_USAGE);
    };
    let result = match command.as_str() {
        "check" => check::run(rest),
        "routes" => routes::routes(rest),
        "expand" => routes::expand(rest),
        "new" => new::run(rest),
        "--version" | "-V" => {
            println!("gateway {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Reads a configuration file, as `(name shown in messages, source)`.
fn read(path: &str) -> Result<(String, String), String> {
    std::fs::read_to_string(path)
        .map(|source| (path.to_owned(), source))
        .map_err(|e| format!("cannot read {path}: {e}"))
}

/// Reads the files `path` includes, relative to its folder.
fn includes(path: &str) -> impl Fn(&str) -> Result<String, String> + '_ {
    move |name| {
        let dir = std::path::Path::new(path)
            .parent()
            .unwrap_or(std::path::Path::new(""));
        gateway_build::include::read_in(dir, name)
    }
}

/// The one file argument of `routes` and `expand`, `gateway.toml` by default.
fn single_file(args: &[String]) -> Result<&str, String> {
    match args {
        [] => Ok("gateway.toml"),
        [file] if !file.starts_with('-') => Ok(file),
        _ => Err(format!("expected at most one file\n{USAGE}")),
    }
}
