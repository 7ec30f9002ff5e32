//! The `gateway` command line, run as a user runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn gateway(args: &[&str]) -> Output {
    Command::new(GATEWAY)
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run gateway")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A clean file exits 0, a broken one 1, an unreadable one 2.
#[test]
fn check_exit_codes() {
    assert_eq!(
        gateway(&["check", "examples/quickstart/gateway.toml"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        gateway(&["check", "tests/compile-fail/unknown-upstream.toml"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        gateway(&["check", "no/such/gateway.toml"]).status.code(),
        Some(2)
    );
    assert_eq!(
        gateway(&["check", "--format", "yaml"]).status.code(),
        Some(2)
    );
}

/// The human format is the same rendering the build's snapshot tests review.
#[test]
fn check_human_output_is_the_compilers() {
    let file = "tests/compile-fail/every-error-at-once.toml";
    let out = gateway(&["check", file]);
    let source = std::fs::read_to_string(workspace().join(file)).unwrap();
    let expected = gateway_build::analyze(file, &source)
        .unwrap_err()
        .render(false);
    assert_eq!(text(&out.stderr), expected);
}

/// JSON: one object per diagnostic with code, location and help.
#[test]
fn check_json() {
    let out = gateway(&[
        "check",
        "--format",
        "json",
        "tests/compile-fail/unknown-upstream.toml",
    ]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(
        lines[0],
        r#"{"severity":"error","code":"G0101","message":"unknown upstream `user` (did you mean `users`?)","file":"tests/compile-fail/unknown-upstream.toml","line":14,"column":12,"end_line":14,"end_column":18,"help":"declare it with `[upstreams.user]`","related":[]}"#
    );
}

/// GitHub: workflow commands with the location as properties.
#[test]
fn check_github() {
    let out = gateway(&[
        "check",
        "--format",
        "github",
        "tests/compile-fail/unknown-upstream.toml",
    ]);
    assert_eq!(
        text(&out.stdout).trim_end(),
        "::error file=tests/compile-fail/unknown-upstream.toml,line=14,col=12,endLine=14,endColumn=18,title=G0101::unknown upstream `user` (did you mean `users`?)%0Ahelp: declare it with `[upstreams.user]`"
    );
}

/// Warnings pass unless `--deny-warnings`.
#[test]
fn deny_warnings() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-warnings");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "[listeners.a]\nbind = \"127.0.0.1:1\"\n[upstreams.spare]\ntargets = [\"http://127.0.0.1:2\"]\n[upstreams.used]\ntargets = [\"http://127.0.0.1:3\"]\n[[routes]]\npath = \"/\"\nupstream = \"used\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = gateway(&["check", file]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("warning[G0103]: upstream `spare` is not used by any route")
    );
    assert_eq!(
        gateway(&["check", "--deny-warnings", file]).status.code(),
        Some(1)
    );
}

/// `routes` prints the resolved table, with each route's policies in phase order;
/// `expand` the generated code.
#[test]
fn routes_and_expand() {
    let out = gateway(&["routes", "examples/quickstart/gateway.toml"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("ROUTE"), "{table}");
    assert!(
        table.lines().any(
            |l| l.starts_with("v2-user (examples/quickstart/gateway.toml:51)")
                && l.contains("GET,HEAD  /v2/users/{id}")
                && l.contains("upstream users (rewrite /api/users/{id})")
                && l.ends_with("request: user-id; response: served-by")
        ),
        "{table}"
    );
    let out = gateway(&["expand", "examples/quickstart/gateway.toml"]);
    let source =
        std::fs::read_to_string(workspace().join("examples/quickstart/gateway.toml")).unwrap();
    let expected = gateway_build::generate("examples/quickstart/gateway.toml", &source)
        .unwrap()
        .source;
    assert_eq!(text(&out.stdout), expected);
}

/// A tiny HTTP/1.1 upstream that answers every request with the path it saw.
fn echo_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 2 {
                        line.clear();
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("?").to_owned();
                    let body = format!("app saw {path}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// `gateway new` makes a crate that builds, passes its own route tests, runs, and proxies.
#[test]
fn new_scaffold_builds_and_runs() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-new");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let crate_dir = root.join("edge");
    let out = gateway(&["new", crate_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        gateway(&["new", crate_dir.to_str().unwrap()]).status.code(),
        Some(2),
        "refuses to overwrite"
    );
    std::fs::copy(workspace().join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(&crate_dir)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("scratch-crates-target"),
        )
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build.stderr));

    let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scratch-crates-target/debug/edge");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert!(
        text(&version.stdout).starts_with("edge\nconfig: gateway.toml sha256:"),
        "{}",
        text(&version.stdout)
    );

    let mut child = Command::new(&binary)
        .env("GATEWAY_BIND", "127.0.0.1:0")
        .env("GATEWAY_ADMIN_BIND", "127.0.0.1:0")
        .env("APP_URL", echo_upstream())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("the gateway exited").unwrap();
        if line.contains("listening") && line.contains("listener=\"public\"") {
            break line
                .split("addr=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /api/items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("app saw /items/1"), "{response}");
}

/// A file that includes another is checked and listed with it: `common.toml` is read
/// beside the including file, an aggregate's stages are shown in order, and the
/// generated code names the file each item is written in.
#[test]
fn included_files_are_read_beside_the_including_one() {
    let out = gateway(&["check", "examples/bff/web.toml", "examples/bff/mobile.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = gateway(&["routes", "examples/bff/web.toml"]);
    let table = text(&out.stdout);
    assert!(
        table.contains(
            "aggregate (nested): user <- users GET /users/{user_id}, \
             orders <- orders GET /orders?user={user_id}, \
             recommendations <- catalog GET /recommendations/{user_id}; \
             then team <- users GET /teams/{user.team_id}"
        ),
        "{table}"
    );
    // The generated code says where each item is written, in its own file.
    let out = gateway(&["expand", "examples/bff/web.toml"]);
    let source = text(&out.stdout);
    for place in [
        "`[upstreams.users]`, common.toml:5",
        "`[policies.per-client]`, common.toml:15",
        "`GET,HEAD /dashboard/{user_id}`, examples/bff/web.toml:15",
    ] {
        assert!(source.contains(place), "{place}");
    }
}
