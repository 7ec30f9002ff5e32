//! Slow, stalled and silent peers on either side of the gateway: every wait has a
//! bound, and a body whose framing is already known to be bad never reaches the
//! upstream. Real sockets on loopback, the gateway as a process.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use support::*;

/// What a raw client saw: every byte until the gateway closed the connection or
/// `limit` passed, and when it closed.
struct RawExchange {
    text: String,
    closed_after: Option<Duration>,
}

/// Writes `parts` on a new connection with `pause` between them, then reads until the
/// gateway closes the connection or `limit` passes.
fn exchange_in_parts(
    addr: SocketAddr,
    parts: &[&[u8]],
    pause: Duration,
    limit: Duration,
) -> RawExchange {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        stream.write_all(part).expect("write");
    }
    read_until_closed(&mut stream, started, limit)
}

/// `exchange_in_parts` from a blocking thread, with a 10 s limit.
async fn exchange_in_parts_async(
    addr: SocketAddr,
    parts: &'static [&'static [u8]],
    pause: Duration,
) -> RawExchange {
    tokio::task::spawn_blocking(move || {
        exchange_in_parts(addr, parts, pause, Duration::from_secs(10))
    })
    .await
    .expect("client")
}

fn read_until_closed(stream: &mut TcpStream, started: Instant, limit: Duration) -> RawExchange {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed_after = loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            break None;
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => break Some(started.elapsed()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break Some(started.elapsed());
            }
            Err(_) => break None,
        }
    };
    RawExchange {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed_after,
    }
}

/// An upstream that stops in the middle of a response body is given up on after its
/// `timeouts.body`, and the client's connection is closed rather than held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_mid_body_is_cut_off() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial",
        false,
        false,
    )
    .await;
    let gateway = Gateway::scripted(upstream.url(), &[("SCRIPTED_BODY_TIMEOUT", "500ms".into())]);
    let addr = gateway.addr("main");
    let seen = exchange_in_parts_async(
        addr,
        &[b"GET /scripted/a HTTP/1.1\r\nhost: x\r\n\r\n"],
        Duration::ZERO,
    )
    .await;
    assert!(
        seen.text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        seen.text
    );
    assert!(seen.text.ends_with("partial"), "{}", seen.text);
    let closed = seen
        .closed_after
        .expect("the gateway closes the connection");
    assert!(
        closed >= Duration::from_millis(500) && closed < Duration::from_secs(3),
        "{closed:?}"
    );
}

/// The response timeout runs from the end of the request: a slow but steady upload
/// longer than it is answered, not a 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_steady_upload_is_not_a_response_timeout() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
        true,
    )
    .await;
    let gateway = Gateway::scripted(
        upstream.url(),
        &[("SCRIPTED_RESPONSE_TIMEOUT", "400ms".into())],
    );
    let addr = gateway.addr("main");
    // 4 pauses of 300 ms: 1.2 s of upload against a 400 ms response timeout.
    let seen = exchange_in_parts_async(
        addr,
        &[
            b"POST /scripted/a HTTP/1.1\r\nhost: x\r\ncontent-length: 8\r\nconnection: close\r\n\r\n",
            b"ab",
            b"cd",
            b"ef",
            b"gh",
        ],
        Duration::from_millis(300),
    )
    .await;
    assert!(
        seen.text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        seen.text
    );
    let requests = upstream.requests.lock().expect("requests").clone();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].ends_with("\r\n\r\nabcdefgh"), "{}", requests[0]);
}

/// A client that stops sending its body gets 408 after the listener's `timeouts.body`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_its_body_gets_408() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
        true,
    )
    .await;
    let gateway = Gateway::scripted(upstream.url(), &[("BODY_TIMEOUT", "500ms".into())]);
    let addr = gateway.addr("main");
    let seen = exchange_in_parts_async(
        addr,
        &[
            b"POST /scripted/a HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n",
            b"abc",
        ],
        Duration::from_millis(100),
    )
    .await;
    assert!(
        seen.text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{}",
        seen.text
    );
    assert!(
        seen.text.contains("request body not received in time"),
        "{}",
        seen.text
    );
    let closed = seen
        .closed_after
        .expect("the gateway closes the connection");
    assert!(closed < Duration::from_secs(4), "{closed:?}");
}

/// The same over HTTP/2: a stream whose body stops gets 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_stream_that_stops_sending_its_body_gets_408() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
        true,
    )
    .await;
    let gateway = Gateway::scripted(upstream.url(), &[("BODY_TIMEOUT", "500ms".into())]);
    let url = format!("http://{}/scripted/a", gateway.addr("main"));
    let request = Request::post(url)
        .body(TestBody::Stalling(Some("abc".into())))
        .expect("request");
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(10), send(&h2c_client(), request))
        .await
        .expect("an answer, not a hang");
    assert_eq!(reply.status, 408, "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Bad chunked framing in the bytes that came with the head is refused before the
/// upstream is contacted: it sees no connection at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_framing_in_hand_never_reaches_the_upstream() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
        false,
    )
    .await;
    let gateway = Gateway::scripted(upstream.url(), &[]);
    let addr = gateway.addr("main");
    for body in [
        &b"3\r\nabc\r\nzz\r\n"[..],
        b"3\r\nabc\n0\r\n\r\n",
        b"3;x=yyyyyyyy\r\nabc\r\n5 \r\nhello\r\n0\r\n\r\n",
    ] {
        let request = [
            &b"POST /scripted/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            body,
        ]
        .concat();
        let answer = raw(addr, &request);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
    }
    assert_eq!(upstream.connections(), 0, "{:?}", upstream.requests);
}

/// A body still arriving after its head is streamed in the chunked coding (one that
/// came whole goes with its length: `request_bodies_are_framed_by_the_gateway`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_still_arriving_are_streamed_chunked() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
        true,
    )
    .await;
    let gateway = Gateway::scripted(upstream.url(), &[]);
    let addr = gateway.addr("main");
    let seen = exchange_in_parts_async(
        addr,
        &[
            b"POST /scripted/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
                  connection: close\r\n\r\n3\r\nabc\r\n",
            b"2\r\nde\r\n0\r\n\r\n",
        ],
        Duration::from_millis(200),
    )
    .await;
    assert!(
        seen.text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        seen.text
    );
    let requests = upstream.requests.lock().expect("requests").clone();
    let streamed = requests[0].to_ascii_lowercase();
    assert!(
        streamed.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{streamed}"
    );
    assert!(
        streamed.ends_with("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
        "{streamed}"
    );
}

/// The HTTP/2 preface alone does not hold a connection: with no stream for the
/// listener's `timeouts.header_read`, the gateway says GOAWAY and closes. Its SETTINGS
/// announce the cap on concurrent streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connections_without_streams_are_closed() {
    let upstream = Upstream::start("users-a").await;
    let gateway = Gateway::scripted(upstream.url(), &[("HEADER_READ_TIMEOUT", "1s".into())]);
    let addr = gateway.addr("main");
    let seen = exchange_in_parts_async(
        addr,
        &[
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            &[0, 0, 0, 4, 0, 0, 0, 0, 0],
        ],
        Duration::ZERO,
    )
    .await;
    let closed = seen
        .closed_after
        .expect("the gateway closes the connection");
    assert!(
        closed >= Duration::from_secs(1) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
    let bytes = seen.text.as_bytes();
    // The server's first frame is its SETTINGS (type 4) on stream 0.
    assert!(bytes.len() >= 9 && bytes[3] == 4, "{bytes:?}");
    let length = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
    let settings = &bytes[9..9 + length];
    let max_streams = settings
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(max_streams, Some(100));
    // GOAWAY (type 7) before the close.
    assert!(
        bytes.windows(4).any(|w| w[3] == 7 && w[..3] == [0, 0, 8]),
        "{bytes:?}"
    );
}

/// An HTTP/2 client that never opens its flow-control window does not hold its
/// stream, and the upstream connection behind it: after the listener's
/// `timeouts.send` the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_that_never_read_are_cut_off() {
    let upstream = Upstream::start("users-a").await;
    let gateway = Gateway::scripted(upstream.url(), &[("SEND_TIMEOUT", "1s".into())]);
    let client = h2c_client();
    let url = format!(
        "http://{}/scripted/download?bytes=4000000",
        gateway.addr("main")
    );
    let response = client
        .request(Request::get(url).body(TestBody::empty()).expect("request"))
        .await
        .expect("response head");
    assert_eq!(response.status(), 200);
    // The client reads nothing, so its window (64 KiB) stays closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let body = response.into_body().collect().await;
    assert!(
        body.is_err(),
        "the whole body still came: the stream was held"
    );
}

/// How long the upstream of `a_client_that_leaves_ends_its_upstream_request` kept its
/// next connection open after the request, within 3 s.
async fn closed_after(held: &mut tokio::sync::mpsc::UnboundedReceiver<Duration>) -> Duration {
    tokio::time::timeout(Duration::from_secs(3), held.recv())
        .await
        .expect("the upstream connection was closed before the response timeout")
        .expect("a connection")
}

/// A client that leaves while its request waits for the upstream takes the request
/// with it: the upstream connection is closed at once rather than held until the
/// upstream answers, over HTTP/1.1 (the client closes its connection) and HTTP/2 (it
/// resets its stream), and the request is counted as 499, stopped by the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_ends_its_upstream_request() {
    // An upstream that reads each request and never answers; it reports how long the
    // gateway kept each connection open after asking.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut connection, _)) = listener.accept().await {
            let held_tx = held_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let _ = connection.read(&mut buf).await;
                let asked = Instant::now();
                while let Ok(1..) = connection.read(&mut buf).await {}
                let _ = held_tx.send(asked.elapsed());
            });
        }
    });
    let gateway = Gateway::scripted(url, &[]);
    let addr = gateway.addr("main");
    let pause = Duration::from_millis(300);

    let mut leaving = TcpStream::connect(addr).expect("connect");
    leaving
        .write_all(b"GET /scripted/a HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("write");
    std::thread::sleep(pause);
    drop(leaving);
    let after = closed_after(&mut held).await;
    assert!(after < Duration::from_secs(2), "HTTP/1.1: {after:?}");

    let h2 = h2c_client();
    let request = Request::get(gateway.url("/scripted/b"))
        .body(TestBody::empty())
        .expect("request");
    let gave_up = tokio::time::timeout(pause, send(&h2, request)).await;
    assert!(gave_up.is_err(), "the upstream never answers");
    drop(h2);
    let after = closed_after(&mut held).await;
    assert!(after < Duration::from_secs(2), "HTTP/2: {after:?}");

    let metrics = get(
        &client(),
        &format!("http://{}/metrics", gateway.addr("admin")),
    )
    .await
    .body;
    let left = metrics
        .lines()
        .find(|line| {
            line.starts_with("gateway_stopped_requests_total")
                && line.contains(r#"stopped_by="client""#)
                && line.contains(r#"reason="closed before the response""#)
        })
        .unwrap_or_else(|| panic!("no stop by the client in:\n{metrics}"));
    assert!(left.ends_with(" 2"), "{left}");
}
