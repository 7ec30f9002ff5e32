//! The example runs as documented: users by token (scopes decide who may write),
//! partners by key, /health for anyone, and the upstream sees identities the gateway
//! verified, never the credentials.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Example {
    child: Child,
    addr: SocketAddr,
    tokens: Vec<String>,
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth-example"))
        .env("GATEWAY_BIND", "127.0.0.1:0")
        .env("APP_BIND", &app)
        .env("APP", format!("http://{app}"))
        .env("PARTNER_KEY", "partner-key-for-the-test")
        .env_remove("JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut stdout = String::new();
    let mut out = child.stdout.take().expect("stdout");
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
    // The printed commands hold the tokens the example made.
    let mut buf = [0u8; 8192];
    while !stdout.contains("X-API-Key") {
        let n = out.read(&mut buf).expect("stdout");
        assert!(n > 0, "the example printed no commands");
        stdout.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let tokens = stdout
        .split("Bearer ")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_owned)
        .collect();
    Example {
        child,
        addr,
        tokens,
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: example\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response[9..12].parse().expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn the_example_authenticates_as_documented() {
    let example = start();
    let [reader, writer] = [&example.tokens[0], &example.tokens[2]].map(|t| format!("Bearer {t}"));
    let addr = example.addr;
    assert_eq!(request(addr, "GET", "/health", &[]).0, 200);
    assert_eq!(request(addr, "GET", "/orders", &[]).0, 401);
    let (status, body) = request(addr, "GET", "/orders", &[("Authorization", &reader)]);
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""user":"alice""#) && body.contains(r#""authorization":null"#),
        "{body}"
    );
    assert_eq!(
        request(addr, "POST", "/orders", &[("Authorization", &reader)]).0,
        403
    );
    let (status, body) = request(addr, "POST", "/orders", &[("Authorization", &writer)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""user":"bob""#), "{body}");
    let (status, body) = request(
        addr,
        "GET",
        "/orders",
        &[("X-API-Key", "partner-key-for-the-test")],
    );
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""consumer":"acme""#) && body.contains(r#""user":null"#),
        "{body}"
    );
    let (status, body) = request(addr, "GET", "/health", &[("X-User-Id", "admin")]);
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""user":null"#),
        "a forged identity reached the backend: {body}"
    );
}
