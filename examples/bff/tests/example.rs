//! The example runs as documented: the web and the mobile gateway, built from two
//! files that include `common.toml`, give different shapes of the same backends'
//! answers; and a mistake in `common.toml` is reported there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Gateway {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Gateway {
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

/// Starts `binary` with its demo backend on `app_bind`, calling the backend at `app`.
fn start(binary: &str, app_bind: &str, app: &str) -> Gateway {
    let mut child = Command::new(binary)
        .env("GATEWAY_BIND", "127.0.0.1:0")
        .env("APP_BIND", app_bind)
        .env("APP", format!("http://{app}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
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
            .expect("the gateway logs its listener");
        if let Some(addr) = line
            .split(" addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
        {
            break addr.parse().expect("address");
        }
    };
    Gateway { child, addr }
}

/// The status, the response head (lower case) and the JSON body of a GET.
fn get(addr: SocketAddr, path: &str) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let head = format!("GET {path} HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().expect("status");
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).expect("a JSON body"),
    )
}

#[test]
fn web_and_mobile_shape_the_same_backends_differently() {
    let app = format!("127.0.0.1:{}", free_port());
    let web = start(env!("CARGO_BIN_EXE_web"), &app, &app);
    // The mobile gateway's own demo backend is not called: both call the web one's.
    let unused = format!("127.0.0.1:{}", free_port());
    let mobile = start(env!("CARGO_BIN_EXE_mobile"), &unused, &app);

    let (status, head, full) = get(web.addr, "/dashboard/7");
    assert_eq!(status, 200, "{full}");
    assert!(head.contains("x-served-by: web"), "{head}");
    assert_eq!(full["user"]["email"], "ada@example.test");
    assert_eq!(full["orders"]["items"][0]["lines"][0]["sku"], "gear");
    assert_eq!(full["recommendations"][0]["reason"], "bought gear");
    // The dependent call: the team of the user's `team_id`.
    assert_eq!(full["team"]["name"], "The Analytical Engine");

    let (status, head, slim) = get(mobile.addr, "/dashboard/7");
    assert_eq!(status, 200, "{slim}");
    assert!(head.contains("x-served-by: mobile"), "{head}");
    assert_eq!(
        slim,
        json!({
            "name": "Ada Lovelace",
            "avatar": "/img/7.png",
            "orders": [{"id": "o-1", "status": "shipped"}, {"id": "o-2", "status": "open"}],
            "picks": [{"sku": "punch-card"}, {"sku": "loom"}]
        })
    );
    assert!(slim.to_string().len() * 3 < full.to_string().len());
}

/// A mistake in the shared file is reported in the shared file, for either gateway.
#[test]
fn a_mistake_in_common_toml_is_located_there() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let common = std::fs::read_to_string(dir.join("common.toml")).expect("common.toml");
    let broken = common.replace("rate = \"20/s\"", "rate = \"20/fortnight\"");
    assert_ne!(broken, common);
    let (line, _) = broken
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("20/fortnight"))
        .expect("the broken line");
    let read = |name: &str| match name {
        "common.toml" => Ok(broken.clone()),
        other => Err(format!("`{other}` is not part of this example")),
    };
    for gateway in ["web.toml", "mobile.toml"] {
        let source = std::fs::read_to_string(dir.join(gateway)).expect("gateway file");
        let diagnostics =
            gateway_build::analyze_with(gateway, &source, &read).expect_err("the rate is broken");
        let lines = diagnostics.short_lines(gateway_build::Severity::Error);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("common.toml:{}:", line + 1)),
            "{gateway}: {}",
            lines[0]
        );
    }
}
