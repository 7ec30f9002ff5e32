//! The example runs as documented: a request through it leaves a JSON access-log line
//! with its request id and trace id, its spans reach the collector the environment
//! names, `/metrics` counts it, and `prometheus.yml` is a configuration Prometheus
//! accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

struct Example {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Example {
    fn start(collector: SocketAddr) -> Example {
        let mut child = Command::new(env!("CARGO_BIN_EXE_observability-example"))
            .env("GATEWAY_BIND", "127.0.0.1:0")
            .env("GATEWAY_ADMIN_BIND", "127.0.0.1:0")
            .env(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{collector}/v1/traces"),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Example { child, lines }
    }

    /// The next stderr line that `pick` accepts, within 20 s.
    fn wait_for<T>(&self, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("the line within 20 s");
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }
}

/// The address a `listening` line names for `listener`.
fn listening(line: &str, listener: &str) -> Option<SocketAddr> {
    if !line.contains(" listening ") || !line.contains(&format!("listener=\"{listener}\"")) {
        return None;
    }
    line.split(" addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sends `request` and reads the answer until the server closes.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

#[test]
fn metrics_traces_and_json_logs() {
    // A collector that takes one export and says so.
    let collector = TcpListener::bind("127.0.0.1:0").expect("collector");
    let collector_addr = collector.local_addr().expect("address");
    let (exported_tx, exported) = channel();
    std::thread::spawn(move || {
        for stream in collector.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The exporter closes its side after each export; the head is all we read.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request).into_owned();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let _ = exported_tx.send(head);
        }
    });

    let example = Example::start(collector_addr);
    let public = example.wait_for(|line| listening(line, "public"));
    let admin = example.wait_for(|line| listening(line, "admin"));

    let answer = exchange(
        public,
        "GET /api/users/42 HTTP/1.1\r\nhost: example\r\nconnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let request_id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("X-Request-Id on the answer")
        .to_owned();

    // One JSON object, with the request's ids.
    let logged = example.wait_for(|line| line.starts_with('{').then(|| line.to_owned()));
    assert!(logged.contains("\"route\":\"get-user\""), "{logged}");
    assert!(
        logged.contains(&format!("\"request_id\":\"{request_id}\"")),
        "{logged}"
    );
    let trace_id = logged
        .split("\"trace_id\":\"")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .expect("a trace id");
    assert!(trace_id.bytes().all(|b| b.is_ascii_hexdigit()), "{logged}");

    let head = exported
        .recv_timeout(Duration::from_secs(10))
        .expect("an export within 10 s");
    assert!(head.starts_with("POST /v1/traces HTTP/1.1"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );

    let metrics = exchange(
        admin,
        "GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains(r#"gateway_requests_total{route="get-user",method="GET",status="2xx"} 1"#),
        "{metrics}"
    );

    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/prometheus.yml");
    let checked = Command::new("promtool")
        .args(["check", "config", config])
        .output()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
