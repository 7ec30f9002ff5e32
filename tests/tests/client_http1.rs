//! End-to-end: the gateway's HTTP/1.1 server side, on raw sockets: persistence rules,
//! pipelining, `Expect: 100-continue`, HTTP/1.0 clients, the header-read timeout and
//! the framing errors of RFC 9112, each answered with a JSON error.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

async fn gateway(extra: &[(&str, String)]) -> (Upstream, Gateway) {
    let orders = Upstream::start("orders").await;
    let users = Upstream::start("users").await;
    let gateway = Gateway::e2e(BUILD_RS_GATEWAY, &users, &users, &orders, extra);
    (orders, gateway)
}

/// Reads from `stream` until `done` holds for what was read, or the stream ends.
fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&out)) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).expect("connect")
}

/// Requests sent back to back on one connection are answered in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (orders, gateway) = gateway(&[]).await;
    let reply = raw(
        gateway.addr("main"),
        b"GET /o/one HTTP/1.1\r\nHost: a\r\n\r\nGET /o/two HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /o/three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{reply}");
    let one = reply.find("/o/one").expect("first");
    let two = reply.find("/o/two").expect("second");
    let three = reply.find("/o/three").expect("third");
    assert!(one < two && two < three, "{reply}");
    let targets: Vec<String> = orders.seen().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/o/one", "/o/two", "/o/three"]);
}

/// `Expect: 100-continue` gets its interim response before the client sends the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered() {
    let (orders, gateway) = gateway(&[]).await;
    let mut stream = connect(gateway.addr("main"));
    stream
        .write_all(b"POST /o/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .expect("write head");
    let interim = read_until(&mut stream, |s| s.contains("\r\n\r\n"));
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    // The upstream checks the body against its pattern: byte i is i % 251.
    stream.write_all(&[0, 1, 2, 3, 4]).expect("write body");
    let reply = read_until(&mut stream, |s| s.ends_with('}'));
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with(r#"{"len":5}"#), "{reply}");
    let seen = orders.last();
    assert!(!seen.headers.contains_key("expect"), "{:?}", seen.headers);
}

/// HTTP/1.0 clients: the connection closes after the response unless they ask to keep
/// it, and a body of unknown length is delimited by the close, never chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients() {
    let chunked = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
        true,
    )
    .await;
    let (_orders, gateway) = gateway(&[("SCRIPTED", chunked.url())]).await;
    let addr = gateway.addr("main");
    let reply = raw(addr, b"GET /scripted/a HTTP/1.0\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    let lower = reply.to_ascii_lowercase();
    assert!(lower.contains("connection: close\r\n"), "{reply}");
    assert!(!lower.contains("transfer-encoding"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello"), "{reply}");

    let mut stream = connect(addr);
    for _ in 0..2 {
        stream
            .write_all(b"GET /o/kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .expect("write");
        let reply = read_until(&mut stream, |s| s.ends_with('}'));
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(
            reply
                .to_ascii_lowercase()
                .contains("connection: keep-alive\r\n"),
            "{reply}"
        );
    }
}

/// A head that does not arrive within the header-read timeout gets a 408; an idle
/// keep-alive connection is closed without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_time_out() {
    let (orders, gateway) = gateway(&[("HEADER_READ_TIMEOUT", "300ms".into())]).await;
    let addr = gateway.addr("main");
    let started = Instant::now();
    let mut slow = connect(addr);
    slow.write_all(b"GET /o/slow HTTP/1.1\r\nHost: a\r\nX-Drip: ")
        .expect("write");
    let reply = read_until(&mut slow, |_| false);
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(reply.contains(r#""status":408"#), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut idle = connect(addr);
    let reply = read_until(&mut idle, |_| false);
    assert_eq!(reply, "", "an idle connection is closed silently");
    assert!(orders.seen().is_empty());
}

/// Framing the gateway refuses gets a JSON error and a closed connection: codings it
/// would have to undo (501), chunked in HTTP/1.0 (400), an expectation it cannot meet
/// (417), a version it does not speak (505).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_are_json() {
    let (orders, gateway) = gateway(&[]).await;
    let addr = gateway.addr("main");
    for (request, status) in [
        (
            &b"POST /o/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
            501,
        ),
        (
            b"POST /o/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /o/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            400,
        ),
        (
            b"GET /o/x HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
            417,
        ),
        (b"GET /o/x HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /o/x HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n", 400),
    ] {
        let reply = raw(addr, request);
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
        assert!(reply.contains(&format!(r#""status":{status}"#)), "{reply}");
        assert!(
            reply.to_ascii_lowercase().contains("connection: close\r\n"),
            "{reply}"
        );
    }
    assert!(orders.seen().is_empty());
}

/// Responses the gateway writes itself carry `Date` (RFC 9110 §6.6.1), and a HEAD
/// request is told the length a GET would have received, without the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_responses_carry_date_and_length() {
    let (_orders, gateway) = gateway(&[]).await;
    let addr = gateway.addr("main");
    let get = raw(
        addr,
        b"GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(get.starts_with("HTTP/1.1 404 Not Found\r\n"), "{get}");
    assert!(get.to_ascii_lowercase().contains("\r\ndate: "), "{get}");
    let body = &get[get.find("\r\n\r\n").expect("head") + 4..];
    let head = raw(
        addr,
        b"HEAD /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}\r\n", body.len())),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD response has no body: {head}"
    );
}

/// CONNECT is refused with 405 in either target form, as no route tunnels; the
/// upstream sees nothing (an origin-form CONNECT was forwarded, and its connection
/// pooled as if it were still HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused() {
    let (orders, gateway) = gateway(&[]).await;
    let addr = gateway.addr("main");
    for request in [
        &b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n"
            [..],
        b"CONNECT /o/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ] {
        let reply = raw(addr, request);
        assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
        assert!(reply.contains(r#""status":405"#), "{reply}");
        assert!(
            !reply.contains("CONNECT"),
            "CONNECT is not allowed: {reply}"
        );
    }
    assert!(orders.seen().is_empty());
}

/// Names with underscores, which CGI-style backends read as the dashed name, are
/// dropped by default and refused where a listener says so; the upstream never sees
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_underscores_are_dropped_or_refused() {
    let (orders, gateway) = gateway(&[]).await;
    let request = b"GET /o/x HTTP/1.1\r\nHost: a\r\nX_User_Id: forged\r\nX-User-Id: 1\r\nConnection: close\r\n\r\n";
    let reply = raw(gateway.addr("main"), request);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = orders.last();
    assert!(!seen.headers.contains_key("x_user_id"));
    assert_eq!(seen.headers["x-user-id"], "1");
    let request =
        b"GET /internal HTTP/1.1\r\nHost: a\r\nX_User_Id: forged\r\nConnection: close\r\n\r\n";
    let reply = raw(gateway.addr("internal"), request);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("underscores"), "{reply}");
    assert_eq!(orders.seen().len(), 1);
}

/// The router reads the path the upstream will: unreserved characters written as
/// escapes are decoded first (`/api/%6Frders/1` is the orders route), and `;`
/// parameters, which servlet containers drop, are refused unless the listener keeps
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_routed_in_normal_form() {
    let (orders, gateway) = gateway(&[]).await;
    let main = gateway.addr("main");
    let reply = raw(
        main,
        b"GET /api/%6Frders/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(orders.last().target, "/orders/1");
    let reply = raw(
        main,
        b"GET /o/x;jsessionid=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = raw(
        gateway.addr("internal"),
        b"GET /o/x;v=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(orders.last().target, "/o/x;v=1");
    assert_eq!(orders.seen().len(), 2);
}

/// `OPTIONS *` asks about the server (RFC 9112 §3.2.4): the gateway answers it, with
/// the methods it forwards, and the upstream is not asked; `*` is no target for other
/// methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_is_answered() {
    let (orders, gateway) = gateway(&[]).await;
    let main = gateway.addr("main");
    let reply = raw(
        main,
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n"),
        "{reply}"
    );
    let reply = raw(
        main,
        b"GET * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(orders.seen().is_empty());
}
