//! The example runs as documented: a client gets its burst of ten, then 429 with the
//! rate-limit fields; a report body past 64 KiB gets 413; and with no Redis at all the
//! tenant quota fails open instead of failing the API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start() -> Example {
    let app = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ratelimit-example"))
        .env("GATEWAY_BIND", "127.0.0.1:0")
        .env("APP_BIND", &app)
        .env("APP", format!("http://{app}"))
        // Nothing listens there: the quota's Redis is down from the start.
        .env("REDIS_URL", format!("redis://127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the example logs its listener");
        if let Some(addr) = line
            .split(" addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
        {
            break addr.parse().expect("address");
        }
    };
    Example { child, addr }
}

/// The status and the whole response, head and body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: example\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    // The gateway may answer 413 before reading the whole body.
    let _ = stream.write_all(body);
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response[9..12].parse().expect("status");
    (status, response.to_ascii_lowercase())
}

#[test]
fn the_example_limits_as_documented() {
    let example = start();
    let addr = example.addr;
    let statuses: Vec<u16> = (0..12)
        .map(|_| request(addr, "GET", "/items/1", b"").0)
        .collect();
    // Ten at once, then 429; a refill of 5/s may let one more through on a slow run.
    let admitted = statuses.iter().take_while(|&&s| s == 200).count();
    assert!((10..=11).contains(&admitted), "{statuses:?}");
    let (status, response) = request(addr, "GET", "/items/1", b"");
    assert_eq!(status, 429, "{response}");
    for part in [
        "retry-after: 1",
        "ratelimit-policy: \"per-client\";q=10;w=2",
        "ratelimit: \"per-client\";r=0;t=1",
        "\"error\":\"rate limit exceeded\"",
    ] {
        assert!(response.contains(part), "{part} in {response}");
    }
    let (status, response) = request(addr, "POST", "/reports", &vec![b'x'; 70 * 1024]);
    assert_eq!(status, 413, "{response}");
    let (status, response) = request(addr, "POST", "/reports", b"{}");
    assert_eq!(status, 200, "{response}");
}
