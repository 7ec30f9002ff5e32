//! End-to-end: the gateway's HTTP/1.1 client against upstreams that answer with
//! hand-written bytes, for every way RFC 9112 lets a response be framed, and for the
//! ways it must not be trusted.

mod support;

use support::*;

/// The gateway in front of one scripted upstream, reached under `/scripted/`.
fn gateway_for(upstream: &ScriptedUpstream) -> Gateway {
    gateway_in_front_of(upstream.url())
}

/// The gateway with `url` as the upstream reached under `/scripted/`.
fn gateway_in_front_of(url: String) -> Gateway {
    Gateway::scripted(url, &[])
}

/// Sends `times` GETs through `gateway` one after another, each expected to come back
/// 200 with `body`, and returns the replies.
async fn get_repeatedly(gateway: &Gateway, times: usize, body: &str) -> Vec<Reply> {
    let client = client();
    let mut replies = Vec::with_capacity(times);
    for _ in 0..times {
        let reply = get(&client, &gateway.url("/scripted/a")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, body);
        replies.push(reply);
    }
    replies
}

/// The gateway's JSON error for an upstream whose response cannot be forwarded.
fn assert_bad_gateway(reply: &Reply) {
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.json()["status"], 502, "{}", reply.body);
}

/// A chunked response (with an extension and a trailer) reaches the client decoded and
/// complete, and its connection carries the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_responses_are_decoded_and_keep_their_connection() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
        false,
        true,
    )
    .await;
    let gateway = gateway_for(&upstream);
    get_repeatedly(&gateway, 3, "hello, world").await;
    assert_eq!(upstream.connections(), 1);
}

/// A response with neither Content-Length nor Transfer-Encoding ends when the upstream
/// closes (RFC 9112 §6.3 item 8); that connection is never reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_responses_end_at_close() {
    let upstream =
        ScriptedUpstream::start(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true, true).await;
    let gateway = gateway_for(&upstream);
    get_repeatedly(&gateway, 2, "until the end").await;
    assert_eq!(upstream.connections(), 2);
}

/// With both Transfer-Encoding and Content-Length the chunked coding wins, the length
/// is not forwarded, and the connection is not trusted again (RFC 9112 §6.3 item 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_overrides_content_length() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
        false,
        true,
    )
    .await;
    let gateway = gateway_for(&upstream);
    for reply in get_repeatedly(&gateway, 2, "hello").await {
        assert_ne!(
            reply.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
    }
    assert_eq!(upstream.connections(), 2);
}

/// Responses a proxy could read two ways, or not at all, become a JSON 502: obsolete
/// line folding, conflicting lengths, codings other than chunked, a bad chunk size, a
/// bad status line, a status code outside 100–599.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_responses_are_a_502() {
    let cases: [&'static [u8]; 9] = [
        b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-bad header: 1\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 600 Library Error\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 999 Weird\r\ncontent-length: 2\r\n\r\nok",
    ];
    for case in cases {
        let upstream = ScriptedUpstream::start(case, true, true).await;
        let gateway = gateway_for(&upstream);
        let reply = get(&client(), &gateway.url("/scripted/a")).await;
        assert_bad_gateway(&reply);
    }
}

/// A body that turns invalid after the head was forwarded cannot become a 502: the
/// client's connection is cut instead, so what the client got never looks complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bodies_cut_the_client_connection() {
    for case in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\nZZ\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello",
    ] {
        let upstream = ScriptedUpstream::start(case, true, true).await;
        let gateway = gateway_for(&upstream);
        let answer = raw(
            gateway.addr("main"),
            b"GET /scripted/a HTTP/1.1\r\nhost: x\r\n\r\n",
        );
        // hyper may not have flushed the head before the body broke.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{answer}"
        );
        let body_start = answer.find("\r\n\r\n").map_or(answer.len(), |i| i + 4);
        let body = &answer[body_start..];
        assert!(!body.ends_with("0\r\n\r\n"), "looks complete: {body:?}");
        if answer.contains("content-length: 10\r\n") {
            assert!(body.len() < 10, "{body:?}");
        }
    }
}

/// Interim responses go on to HTTP/1.1 clients, before the final one and without
/// hop-by-hop fields (RFC 9110 §15.2), except 100 (Continue), which the gateway answers
/// itself; HTTP/1.0 clients get none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_forwarded() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\
          keep-alive: timeout=5\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone",
        false,
        true,
    )
    .await;
    let gateway = gateway_for(&upstream);
    let reply = raw(
        gateway.addr("main"),
        b"GET /scripted/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(
        reply.starts_with(
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\n"
        ),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\ndone"), "{reply}");
    assert!(
        !reply.contains("100 Continue") && !reply.contains("keep-alive: timeout"),
        "{reply}"
    );
    let old_client = raw(gateway.addr("main"), b"GET /scripted/a HTTP/1.0\r\n\r\n");
    assert!(
        old_client.starts_with("HTTP/1.1 201 Created\r\n"),
        "{old_client}"
    );
    // The final response's own fields are the final response's only.
    let reply = get(&client(), &gateway.url("/scripted/a")).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body, "done");
    assert!(!reply.headers.contains_key("link"));
}

/// Fields the upstream's `Connection` lists stop at the gateway, as do hop-by-hop
/// fields; `Connection: close` means the next request opens a new connection; `Via`
/// names the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hop_by_hop_fields_stop_at_the_gateway() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\nconnection: close, X-Upstream-Secret\r\nx-upstream-secret: s\r\n\
          keep-alive: timeout=5\r\nproxy-authenticate: Basic\r\nx-kept: k\r\ncontent-length: 2\r\n\r\nok",
        false,
        true,
    )
    .await;
    let gateway = gateway_for(&upstream);
    for reply in get_repeatedly(&gateway, 2, "ok").await {
        for gone in ["x-upstream-secret", "keep-alive", "proxy-authenticate"] {
            assert!(!reply.headers.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(reply.headers["x-kept"], "k");
        assert_eq!(reply.headers["via"], "1.1 gateway");
    }
    assert_eq!(upstream.connections(), 2);
}

/// Fields go on as they came, both ways: in their case and order, repeated ones as
/// separate lines, empty values and UTF-8 (obs-text) values unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_are_forwarded_as_they_came() {
    let upstream = ScriptedUpstream::start(
        "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Upstream-Case: V\r\nset-cookie: b=2\r\n\
         X-Empty:\r\nX-Text: café\r\nCONNECTION: X-Gone\r\nx-gone: 1\r\nContent-Length: 2\r\n\r\nok"
            .as_bytes(),
        false,
        true,
    )
    .await;
    let gateway = gateway_for(&upstream);
    let reply = raw(
        gateway.addr("main"),
        "GET /scripted/a HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: v\r\nX-Dup: 1\r\n\
         Accept: */*\r\nx-dup: 2\r\nX-Blank:   \r\nX-Name: Zoë\r\nConnection: close\r\n\r\n"
            .as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains(
            "\r\nSet-Cookie: a=1\r\nX-Upstream-Case: V\r\nset-cookie: b=2\r\n\
             X-Empty:\r\nX-Text: café\r\n"
        ),
        "{reply}"
    );
    assert!(!reply.to_ascii_lowercase().contains("x-gone"), "{reply}");
    let requests = upstream.requests.lock().expect("requests").clone();
    let request = &requests[0];
    assert!(
        request.contains(
            "\r\nX-Mixed-Case: v\r\nX-Dup: 1\r\nAccept: */*\r\nx-dup: 2\r\nX-Blank:\r\n\
             X-Name: Zoë\r\n"
        ),
        "{request}"
    );
}

/// Request bodies are framed by the gateway: a known length (declared, or a chunked
/// body all in hand) as Content-Length, none for a GET without one; the client's own
/// framing fields never pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_framed_by_the_gateway() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
        true,
    )
    .await;
    let gateway = gateway_for(&upstream);
    let addr = gateway.addr("main");
    let answer = raw(
        addr,
        b"POST /scripted/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
          connection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let answer = raw(
        addr,
        b"POST /scripted/a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\
          connection: close\r\n\r\nhello",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    // An empty POST still says so (RFC 9110 §8.6); an empty GET says nothing.
    let answer = raw(
        addr,
        b"POST /scripted/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let answer = raw(
        addr,
        b"GET /scripted/a HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let mut requests = upstream.requests.lock().expect("requests").clone();
    assert_eq!(requests.len(), 4, "{requests:?}");
    let get = requests.pop().expect("GET").to_ascii_lowercase();
    assert!(
        !get.contains("content-length") && !get.contains("transfer-encoding"),
        "{get}"
    );
    let empty_post = requests[2].to_ascii_lowercase();
    assert!(
        empty_post.contains("\r\ncontent-length: 0\r\n"),
        "{empty_post}"
    );
    // Chunked, but all in hand: sent with its length (a chunked body still arriving
    // is streamed chunked, see slow_peers.rs).
    let chunked = requests[0].to_ascii_lowercase();
    assert!(
        !chunked.contains("transfer-encoding") && chunked.contains("\r\ncontent-length: 5\r\n"),
        "{chunked}"
    );
    assert!(chunked.ends_with("\r\n\r\nabcde"), "{chunked}");
    let sized = requests[1].to_ascii_lowercase();
    assert!(sized.contains("\r\ncontent-length: 5\r\n"), "{sized}");
    assert!(sized.ends_with("\r\n\r\nhello"), "{sized}");
    for request in &requests {
        let lower = request.to_ascii_lowercase();
        assert!(!lower.contains("connection:"), "{request}");
        assert_eq!(
            lower.matches("content-length").count() + lower.matches("transfer-encoding").count(),
            1,
            "{request}"
        );
    }
}

/// An upstream may answer before it has read the body (here a 413 on the head alone):
/// the client gets that answer, not a 502, and the connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_responses_during_an_upload_are_forwarded() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo much",
        true,
        false,
    )
    .await;
    let gateway = gateway_for(&upstream);
    // A real client would still be sending; raw() sends part of the body and listens.
    let mut request =
        b"POST /scripted/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'x'; 64 * 1024]);
    let answer = raw(gateway.addr("main"), &request);
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\ntoo much"), "{answer}");
}

/// A 204 goes out without `Content-Length`, which RFC 9110 §8.6 forbids on it, even
/// when the upstream sent one; its other fields go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_responses_carry_no_length() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Kept: 1\r\n\r\n",
        false,
        false,
    )
    .await;
    let gateway = gateway_for(&upstream);
    let reply = raw(
        gateway.addr("main"),
        b"GET /scripted/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 204 No Content\r\n"), "{reply}");
    assert!(reply.contains("X-Kept: 1\r\n"), "{reply}");
    assert!(
        !reply.to_ascii_lowercase().contains("content-length"),
        "{reply}"
    );
}

/// An upstream that answers the first request of each connection, after `delay`, and
/// closes every later one unanswered; returns its address and the number of requests
/// it has read.
async fn answers_once_per_connection(
    delay: std::time::Duration,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = Vec::new();
                for answered in [true, false] {
                    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    }
                    read.clear();
                    counter.fetch_add(1, Ordering::SeqCst);
                    if !answered {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, requests)
}

/// A request that meets a pooled connection the upstream closed is sent once more,
/// and only once: an upstream that closes every pooled connection unanswered gets
/// the request twice, and the client a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_connections_are_retried_once() {
    use std::sync::atomic::Ordering;
    let (addr, requests) = answers_once_per_connection(std::time::Duration::from_millis(300)).await;
    let gateway = gateway_in_front_of(format!("http://{addr}"));
    // Three requests at once open three upstream connections, which go to the pool.
    let main = gateway.addr("main");
    let warm: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                raw(
                    main,
                    b"GET /scripted/warm HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                )
            })
        })
        .collect();
    for reply in warm {
        let reply = reply.join().expect("client thread");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    let reply = raw(
        main,
        b"GET /scripted/again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        5,
        "sent once and retried once"
    );
}

/// Fields an interim response's own `Connection` lists stay at the gateway, as the
/// final response's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_connection_options_stop_at_the_gateway() {
    let upstream = ScriptedUpstream::start(
        b"HTTP/1.1 103 Early Hints\r\nconnection: x-hop\r\nx-hop: 1\r\nlink: </a.css>\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
        true,
    )
    .await;
    let gateway = gateway_for(&upstream);
    let reply = raw(
        gateway.addr("main"),
        b"GET /scripted/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(
        reply.starts_with("HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{reply}"
    );
    assert!(!reply.contains("x-hop"), "{reply}");
}

/// An upstream that sends `count` interim responses, then a 200.
async fn interim_then_ok(count: usize) -> ScriptedUpstream {
    let reply = [
        b"HTTP/1.1 102 Processing\r\n\r\n".repeat(count),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
    ]
    .concat();
    ScriptedUpstream::start(Box::leak(reply.into_boxed_slice()), false, true).await
}

/// An upstream that sends interim responses without end gets a 502 after 16 of them,
/// rather than keeping the exchange until the response timeout; 16 are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_interim_responses_are_a_502() {
    let upstream = interim_then_ok(17).await;
    let gateway = gateway_for(&upstream);
    let started = std::time::Instant::now();
    let reply = get(&client(), &gateway.url("/scripted/a")).await;
    assert_bad_gateway(&reply);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let upstream = interim_then_ok(16).await;
    let gateway = gateway_for(&upstream);
    let reply = get(&client(), &gateway.url("/scripted/a")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}
