//! The access log in JSON, with request ids: one object per line with the documented
//! fields, written to a file that SIGUSR1 reopens for log rotation.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Request;
use serde_json::Value;
use support::auth::{ALICE_KEY, SECRET, Setup};
use support::jwt::{claims, hmac};
use support::{PatternBody, TestBody, TestDir};

/// The lines of `path` once there are `count` (at most 5 s: the log thread writes
/// every 20 ms), each parsed as JSON.
async fn lines(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= count || Instant::now() > deadline {
            return text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A log file's path, in a directory removed with the test.
fn log_file(test: &str) -> (TestDir, PathBuf) {
    let dir = support::directory(test);
    let path = dir.join("access.log");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_documented_fields_and_the_request_id() {
    let (_dir, path) = log_file("json-log");
    let s = Setup::start_with(
        "json-log",
        &[("ACCESS_LOG_PATH", path.display().to_string())],
    )
    .await;

    // A client's id is kept (`request_id = "trust"`), on both sides.
    let kept = s
        .get("/public/a?q=1", &[("x-request-id", "client-7")])
        .await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.headers["x-request-id"], "client-7");
    assert_eq!(s.upstream.last().headers["x-request-id"], "client-7");
    // None given: one is made, the same upstream and back.
    let made = s.get("/public/b", &[]).await;
    let id = made.headers["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(s.upstream.last().headers["x-request-id"], id.as_str());
    // One with a space is not a sane id: replaced.
    let replaced = s.get("/public/c", &[("x-request-id", "a b")]).await;
    assert_eq!(replaced.headers["x-request-id"].len(), 32);
    // A refusal is logged with who stopped it; a path cannot break the line.
    let refused = s.get("/nowhere/%22%0a", &[]).await;
    assert_eq!(refused.status, 404);
    // Who the request came from: an API key's consumer; a token's subject, also when
    // a later step refuses it (`admins` wants roles this token lacks).
    let keyed = s.get("/keys/k", &[("x-api-key", ALICE_KEY)]).await;
    assert_eq!(keyed.status, 200);
    let token = hmac(SECRET.as_bytes(), "HS256", &claims("user-42"));
    let forbidden = s.bearer("/admin/x", &token).await;
    assert_eq!(forbidden.status, 403);
    // Body bytes both ways: the upstream answers an upload with its length.
    let request = Request::post(s.gateway.url("/keys/upload"))
        .header("x-api-key", ALICE_KEY)
        .body(TestBody::Pattern(PatternBody::new(5000)))
        .expect("request");
    let posted = support::send(&s.client, request).await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.body, r#"{"len":5000}"#);

    let logged = lines(&path, 7).await;
    assert_eq!(logged.len(), 7, "{logged:#?}");
    // Lines are written once the response is, so two requests in quick succession
    // may be logged by different workers in either order: found by path.
    let line = |path: &str| {
        logged
            .iter()
            .find(|line| line["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {logged:#?}"))
    };
    let first = line("/public/a");
    for field in [
        "time",
        "listener",
        "client",
        "method",
        "path",
        "route",
        "upstream",
        "status",
        "duration_us",
        "request_id",
        "tls",
        "trace_id",
        "upstream_target",
        "upstream_duration_us",
        "stopped_by",
        "stop_reason",
        "bytes_received",
        "bytes_sent",
        "consumer",
        "subject",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(first["listener"], "main");
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/public/a");
    assert_eq!(first["upstream"], "backend");
    let target = s.upstream.url();
    assert_eq!(
        first["upstream_target"],
        target.trim_start_matches("http://"),
        "the target that answered"
    );
    assert!(first["upstream_duration_us"].as_u64().is_some());
    assert_eq!(first["trace_id"], Value::Null, "no [tracing] here");
    assert_eq!(first["status"], 200);
    assert!(first["duration_us"].as_u64().is_some());
    assert_eq!(first["request_id"], "client-7");
    assert_eq!(first["stopped_by"], Value::Null);
    assert_eq!(first["tls"], Value::Null, "plaintext");
    assert!(first["time"].as_str().expect("time").ends_with('Z'));
    assert_eq!(line("/public/b")["request_id"], id.as_str());
    let last = line("/nowhere/%22%0a");
    assert_eq!(last["status"], 404);
    assert_eq!(last["path"], "/nowhere/%22%0a");
    assert_eq!(last["route"], Value::Null);
    assert_eq!(last["stopped_by"], "router");
    assert_eq!(last["upstream_target"], Value::Null, "no upstream answered");
    assert_eq!(last["stop_reason"], "no route");
    assert_eq!(
        last["request_id"],
        refused.headers["x-request-id"].to_str().expect("id")
    );
    assert_eq!(first["consumer"], Value::Null, "a public route");
    assert_eq!(first["subject"], Value::Null);
    assert_eq!(first["bytes_received"], 0);
    assert_eq!(first["bytes_sent"], kept.body.len());
    assert_eq!(last["bytes_sent"], refused.body.len(), "the JSON error");
    assert_eq!(line("/keys/k")["consumer"], "alice");
    assert_eq!(line("/keys/k")["subject"], Value::Null);
    let admin = line("/admin/x");
    assert_eq!(admin["status"], 403);
    assert_eq!(admin["subject"], "user-42", "kept past the refusal");
    assert_eq!(admin["stopped_by"], "admins");
    let upload = line("/keys/upload");
    assert_eq!(upload["bytes_received"], 5000);
    assert_eq!(upload["bytes_sent"], posted.body.len());
    assert_eq!(upload["consumer"], "alice");
}

/// logrotate moves the file away and sends SIGUSR1: later lines go to a new file at
/// the path, none is lost, and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_file() {
    let (_dir, path) = log_file("log-rotation");
    let s = Setup::start_with(
        "log-rotation",
        &[("ACCESS_LOG_PATH", path.display().to_string())],
    )
    .await;
    assert_eq!(s.get("/public/before", &[]).await.status, 200);
    assert_eq!(lines(&path, 1).await.len(), 1);

    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    s.gateway.signal(libc::SIGUSR1);
    // The log thread reopens on its next round (every 20 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(path.exists(), "the file was not opened again");
    assert_eq!(s.get("/public/after", &[]).await.status, 200);

    let old = lines(&rotated, 1).await;
    let new = lines(&path, 1).await;
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["path"], "/public/before");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["path"], "/public/after");
}
