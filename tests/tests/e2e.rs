//! End-to-end: the gateway compiled from `gateways/e2e.toml`, run as a process, in
//! front of real HTTP upstreams on ephemeral loopback ports.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use support::*;

struct Setup {
    users_a: Upstream,
    users_b: Upstream,
    orders: Upstream,
    gateway: Gateway,
    client: HttpClient,
}

async fn setup(binary: &str, extra: &[(&str, String)]) -> Setup {
    let E2e {
        users_a,
        users_b,
        orders,
        gateway,
    } = E2e::start(binary, extra).await;
    Setup {
        users_a,
        users_b,
        orders,
        gateway,
        client: client(),
    }
}

fn upstream_of(reply: &Reply) -> String {
    reply.json()["upstream"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Path, method and host each decide the route, in both the build.rs and the macro build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_path_method_and_host() {
    for binary in [BUILD_RS_GATEWAY, MACRO_GATEWAY] {
        let s = setup(binary, &[]).await;
        let reply = get(&s.client, &s.gateway.url("/users/42")).await;
        assert_eq!(reply.status, 200, "{binary}: {}", reply.body);
        assert!(upstream_of(&reply).starts_with("users-"), "{}", reply.body);
        assert_eq!(reply.json()["target"], "/users/42");

        let put = Request::put(s.gateway.url("/users/42"))
            .body(TestBody::empty())
            .unwrap();
        assert_eq!(upstream_of(&send(&s.client, put).await), "orders");

        // In any case, with a port, and in the absolute form DNS allows (a final dot),
        // which a route for the name must not miss.
        for host in [
            "Admin.Example.com:8080",
            "admin.example.com.",
            "admin.example.com.:80",
        ] {
            let by_host = Request::get(s.gateway.url("/users/42"))
                .header("host", host)
                .body(TestBody::empty())
                .unwrap();
            assert_eq!(
                upstream_of(&send(&s.client, by_host).await),
                "orders",
                "{host}"
            );
        }

        // HEAD comes with GET.
        let head = Request::head(s.gateway.url("/users/1"))
            .body(TestBody::empty())
            .unwrap();
        assert_eq!(send(&s.client, head).await.status, 200);
    }
}

/// `strip_prefix` and `rewrite` change the path the upstream sees; the query survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_and_rewrite() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let reply = get(&s.client, &s.gateway.url("/api/orders/7/items?sort=asc")).await;
    assert_eq!(reply.json()["target"], "/orders/7/items?sort=asc");

    let reply = get(&s.client, &s.gateway.url("/v2/users/9/a/b?x=1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["target"], "/users/9?v=2&rest=a/b&x=1");

    // A path value cannot smuggle query parameters into the rewritten query.
    let reply = get(&s.client, &s.gateway.url("/v2/users/9/a&admin=1")).await;
    assert_eq!(reply.json()["target"], "/users/9?v=2&rest=a%26admin%3D1");
}

/// Requests alternate between the two targets of an upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_across_targets() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let mut answered = Vec::new();
    for i in 0..10 {
        answered.push(upstream_of(
            &get(&s.client, &s.gateway.url(&format!("/users/{i}"))).await,
        ));
    }
    for pair in answered.chunks(2) {
        assert_ne!(pair[0], pair[1], "{answered:?}");
    }
    assert_eq!(s.users_a.seen().len(), 5);
    assert_eq!(s.users_b.seen().len(), 5);
}

/// The upstream sees X-Forwarded-*, its own Host, and no hop-by-hop headers; the client
/// sees none of the upstream's hop-by-hop headers either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_hop_by_hop_headers() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let req = Request::get(s.gateway.url("/o/hop"))
        .header("host", "shop.example.com")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("connection", "x-client-private")
        .header("x-client-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-kept", "yes")
        .body(TestBody::empty())
        .unwrap();
    let reply = send(&s.client, req).await;
    assert_eq!(reply.status, 200);
    let seen = s.orders.last();
    let h = &seen.headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.com");
    assert_eq!(h["host"], s.orders.addr.to_string());
    assert_eq!(h["x-kept"], "yes");
    // RFC 9110 §7.6.3: the proxy adds itself to Via, in both directions.
    assert_eq!(h["via"], "1.1 gateway");
    assert_eq!(reply.headers["via"], "1.1 gateway");
    for gone in [
        "x-client-private",
        "keep-alive",
        "te",
        "proxy-authorization",
        "transfer-encoding",
    ] {
        assert!(!h.contains_key(gone), "upstream saw {gone}");
    }
    assert!(
        h.get("connection").is_none_or(|v| v == "keep-alive"),
        "{:?}",
        h.get("connection")
    );
    assert_eq!(reply.headers["x-upstream-public"], "1");
    assert!(!reply.headers.contains_key("x-upstream-private"));
    assert!(!reply.headers.contains_key("keep-alive"));
}

/// Every error the gateway writes is JSON with the right status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_the_right_status() {
    let s = setup(BUILD_RS_GATEWAY, &[("ORDERS_TIMEOUT", "500ms".into())]).await;

    let reply = get(&s.client, &s.gateway.url("/nowhere")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["status"], 404);
    assert_eq!(reply.headers["content-type"], "application/json");

    let delete = Request::delete(s.gateway.url("/users/1"))
        .body(TestBody::empty())
        .unwrap();
    let reply = send(&s.client, delete).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET, HEAD, PUT, PATCH");
    assert_eq!(reply.json()["status"], 405);

    let reply = get(&s.client, &s.gateway.url("/dead")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"], "upstream unreachable");

    let started = Instant::now();
    let reply = get(&s.client, &s.gateway.url("/o/wait?ms=3000")).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["status"], 504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout did not cut the wait short"
    );
}

/// 64 MiB go up and 64 MiB come down through the gateway byte for byte, and the
/// gateway's peak memory shows it never held a body whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let s = setup(BUILD_RS_GATEWAY, &[]).await;

    let upload = Request::post(s.gateway.url("/o/upload"))
        .body(TestBody::Pattern(PatternBody::new(SIZE)))
        .unwrap();
    let reply = send(&s.client, upload).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["len"], SIZE);

    let download = Request::get(s.gateway.url(&format!("/o/download?bytes={SIZE}")))
        .body(TestBody::empty())
        .unwrap();
    let response = s.client.request(download).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(check_pattern(response.into_body()).await, Ok(SIZE));

    let peak = s.gateway.peak_rss_kib();
    assert!(
        peak < 40 * 1024,
        "gateway peaked at {peak} KiB: a body was buffered"
    );
}

/// Sequential requests reuse one pooled upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    for i in 0..20 {
        let reply = get(&s.client, &s.gateway.url(&format!("/o/{i}"))).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(s.orders.seen().len(), 20);
    assert_eq!(s.orders.connections.load(Ordering::SeqCst), 1);
}

/// A burst opens as many upstream connections as it needs; afterwards the pool keeps
/// 128 of them (per worker, as nginx's `keepalive 128`), so the next burst of the same
/// size opens the rest again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_keep_a_bounded_number_of_idle_connections() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let url = s.gateway.url("/o/wait?ms=1000");
    let burst = || {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..150 {
            let (client, url) = (s.client.clone(), url.clone());
            requests.spawn(async move { get(&client, &url).await });
        }
        requests.join_all()
    };
    for reply in burst().await {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(s.orders.connections.load(Ordering::SeqCst), 150);
    for reply in burst().await {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(s.orders.connections.load(Ordering::SeqCst), 150 + 150 - 128);
}

/// HTTP/2 cleartext clients are served on the same port; their fields reach the
/// upstream, repeated ones in order, and the upstream's reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let h2 = h2c_client();
    let request = Request::get(s.gateway.url("/api/orders/1"))
        .header("x-dup", "1")
        .header("x-dup", "2")
        .header("te", "trailers")
        .body(TestBody::empty())
        .expect("request");
    let reply = send(&h2, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["target"], "/orders/1");
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers["via"], "1.1 gateway");
    let seen = s.orders.last();
    assert_eq!(
        seen.headers["x-forwarded-host"],
        s.gateway.addr("main").to_string()
    );
    assert_eq!(seen.headers["via"], "2 gateway");
    let dups: Vec<_> = seen.headers.get_all("x-dup").iter().collect();
    assert_eq!(dups, ["1", "2"]);
    assert!(!seen.headers.contains_key("te"), "TE is hop-by-hop");
}

/// Cookies an HTTP/2 client sends as separate fields reach an HTTP/1.1 upstream as
/// one `Cookie` joined with `; ` (RFC 9113 §8.2.3), not as several lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_cookies_are_joined() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let request = Request::get(s.gateway.url("/api/orders/1"))
        .header("cookie", "a=1")
        .header("x-between", "1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(TestBody::empty())
        .expect("request");
    let reply = send(&h2c_client(), request).await;
    assert_eq!(reply.status, 200);
    let seen = s.orders.last();
    let cookies: Vec<_> = seen.headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
    assert_eq!(seen.headers["x-between"], "1");
}

/// HTTP/2 requests that HTTP/1.1 could not express are refused before any upstream
/// sees them: a value with whitespace at its edge (RFC 9113 §8.2.1), and a `Host`
/// naming another authority than `:authority` (§8.3.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_h2c_requests_are_refused() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let h2 = h2c_client();
    let refused = [
        (
            ("x-role", " admin"),
            "a header value begins or ends with whitespace",
        ),
        (
            ("x-role", "admin\t"),
            "a header value begins or ends with whitespace",
        ),
        (("host", "admin.example.com"), "Host and :authority differ"),
    ];
    for ((name, value), message) in refused {
        let request = Request::get(s.gateway.url("/api/orders/1"))
            .header(name, value)
            .body(TestBody::empty())
            .expect("request");
        let reply = send(&h2, request).await;
        assert_eq!(reply.status, 400, "{name}: {value:?}");
        assert_eq!(reply.json()["error"], message);
    }
    assert!(s.orders.seen().is_empty(), "the upstream never saw them");
    // The same authority in another case is the same request.
    let authority = s.gateway.addr("main").to_string().to_uppercase();
    let request = Request::get(s.gateway.url("/api/orders/1"))
        .header("host", authority)
        .body(TestBody::empty())
        .expect("request");
    assert_eq!(send(&h2, request).await.status, 200);
}

/// A route limited to one listener is not served on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_can_be_limited_to_listeners() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    assert_eq!(
        get(&s.client, &s.gateway.url("/internal")).await.status,
        404
    );
    let internal = format!("http://{}/internal", s.gateway.addr("internal"));
    assert_eq!(get(&s.client, &internal).await.status, 200);
    assert_eq!(
        get(
            &s.client,
            &format!("http://{}/users/1", s.gateway.addr("internal"))
        )
        .await
        .status,
        200
    );
}

/// SIGTERM lets a slow in-flight request finish, refuses new connections, and exits 0;
/// /readyz reports draining meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut s = setup(BUILD_RS_GATEWAY, &[]).await;
    let admin = format!("http://{}/readyz", s.gateway.addr("admin"));
    assert_eq!(get(&s.client, &admin).await.status, 200);

    let url = s.gateway.url("/o/wait?ms=1500");
    let in_flight_client = s.client.clone();
    let in_flight = tokio::spawn(async move { get(&in_flight_client, &url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.gateway.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let readyz = get(&s.client, &admin).await;
    assert_eq!(readyz.status, 503);
    assert!(
        std::net::TcpStream::connect(s.gateway.addr("main")).is_err(),
        "new connections are still accepted while draining"
    );

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["waited"], 1500);
    let status = s.gateway.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Framing and Host rules of RFC 9112, checked on raw bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_before_any_upstream() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let addr = s.gateway.addr("main");

    // Both Content-Length and Transfer-Encoding: RFC 9112 §6.3 lets a server refuse
    // the message, and the gateway does (as Envoy does by default), so neither reading
    // of it reaches an upstream and the smuggled request is never read.
    let smuggle = b"POST /o/x HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /o/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let reply = raw(addr, smuggle);
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert_eq!(reply.matches("HTTP/1.1").count(), 1, "{reply}");
    assert!(s.orders.seen().is_empty());
    // Transfer-Encoding alone is read as chunked; what follows the last chunk is the
    // next request on the connection, routed on its own.
    let pipelined = b"POST /o/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /o/second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let reply = raw(addr, pipelined);
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 2, "{reply}");
    let seen = s.orders.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].target, "/o/x");
    assert_eq!(seen[1].target, "/o/second");

    let reply = raw(addr, b"GET /o/x HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("missing Host header"), "{reply}");

    let reply = raw(addr, b"GET /o/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");

    for path in [
        "/o/a%2f..%2f..%2fetc",
        "/o/..%5c..%5cx",
        "/o/%2e%2e/%2e%2e/x",
        "/o/%c0%ae%c0%ae/%c0%ae%c0%ae/x",
    ] {
        let reply = raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
    }
    assert_eq!(
        s.orders.seen().len(),
        2,
        "an upstream saw a refused request"
    );

    // Dot segments are resolved before routing, and the upstream sees the result.
    let reply = raw(
        addr,
        b"GET /internal/../o/./y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(s.orders.last().target, "/o/y");
}

/// Each request leaves one access-log line naming its route, upstream and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    get(&s.client, &s.gateway.url("/api/orders/5")).await;
    get(&s.client, &s.gateway.url("/missing")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = s.gateway.logs();
    let access: Vec<_> = logs
        .iter()
        .filter(|l| l.contains("gateway::access"))
        .collect();
    assert_eq!(access.len(), 2, "{logs:#?}");
    assert!(
        access[0].contains(
            r#"method=GET path="/api/orders/5" route="orders" upstream="orders" status=200"#
        ),
        "{}",
        access[0]
    );
    assert!(
        access[1].contains(r#"route="-" upstream="-" status=404"#),
        "{}",
        access[1]
    );
}

/// Missing environment variables stop start-up with one message naming each of them
/// and where the configuration uses it.
#[test]
fn missing_environment_variables_are_named() {
    let err = Gateway::start(
        BUILD_RS_GATEWAY,
        &[("USERS_A", "http://127.0.0.1:1".into())],
    )
    .err()
    .expect("the gateway started without USERS_B");
    for variable in ["USERS_B", "ORDERS", "DEAD"] {
        assert!(
            err.contains(&format!("environment variable `{variable}` is not set")),
            "{err}"
        );
    }
    let config = include_str!("../gateways/e2e.toml");
    let (line, text) = config
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("${env:USERS_B}"))
        .expect("USERS_B in e2e.toml");
    let column = text.find("\"${env:USERS_B}").expect("column") + 1;
    let place = format!(
        "gateways/e2e.toml:{}:{column} (upstreams.users.targets)",
        line + 1
    );
    assert!(err.contains(&place), "{place} not in {err}");

    let err = Gateway::start(
        BUILD_RS_GATEWAY,
        &[
            ("USERS_A", "http://127.0.0.1:1".into()),
            ("USERS_B", "http://127.0.0.1:1".into()),
            ("ORDERS", "http://127.0.0.1:1".into()),
            ("DEAD", "http://127.0.0.1:1".into()),
            ("ORDERS_TIMEOUT", "soon".into()),
        ],
    )
    .err()
    .expect("the gateway started with a bad timeout");
    assert!(err.contains("`soon` is not a duration"), "{err}");
    assert!(err.contains("upstreams.orders.timeouts.response"), "{err}");
}

/// The body of an upstream response arrives in pieces, not after the upstream is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_arrive_before_the_body_ends() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let req = Request::get(s.gateway.url("/o/download?bytes=1048576"))
        .body(TestBody::empty())
        .unwrap();
    let response = s.client.request(req).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.expect("a first frame").expect("frame");
    assert!(first.data_ref().is_some_and(|d| d.len() < 1_048_576));
}

/// An upstream that never completes the TCP handshake: 504 after the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_a_504() {
    let (stalled, _fillers, _socket) = stalled_listener();
    let s = setup(
        BUILD_RS_GATEWAY,
        &[("STALLED", format!("http://{stalled}"))],
    )
    .await;
    let started = Instant::now();
    let reply = get(&s.client, &s.gateway.url("/stalled")).await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["error"], "upstream connect timed out");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

/// `--version` names the gateway, the SHA-256 of the configuration it was compiled from,
/// the compiler, and the policies compiled in.
#[test]
fn version_tells_which_configuration_is_compiled_in() {
    use sha2::Digest;
    let source = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/gateways/e2e.toml")).unwrap();
    let hash: String = sha2::Sha256::digest(&source)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for binary in [BUILD_RS_GATEWAY, MACRO_GATEWAY] {
        let out = std::process::Command::new(binary)
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success());
        let expected = format!(
            "e2e\nconfig: gateways/e2e.toml sha256:{hash}\ncompiler: gateway-build {}\npolicies: headers, ip\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
}

/// Listener limits: a body over `max_body` gets 413 whether its length is declared or
/// not, and too many or too large headers get 431; the upstream sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_limits() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let internal = s.gateway.addr("internal");

    let body = "x".repeat(2048);
    let reply = raw(
        internal,
        format!("POST /o/declared HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n{body}").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        reply.contains(r#"{"error":"request body too large","status":413}"#),
        "{reply}"
    );

    let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
    let chunked = format!(
        "POST /o/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}{chunk}{chunk}0\r\n\r\n"
    );
    let reply = raw(internal, chunked.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");

    let many: String = (0..30).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let reply = raw(
        internal,
        format!("GET /o/many HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert!(reply.contains(r#""status":431"#), "a JSON error: {reply}");

    let long_target = "t".repeat(10 * 1024);
    let reply = raw(
        internal,
        format!("GET /o/{long_target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 414"), "{reply}");
    assert!(reply.contains(r#""status":414"#), "a JSON error: {reply}");

    let big = "z".repeat(10 * 1024);
    let reply = raw(
        internal,
        format!("GET /o/big HTTP/1.1\r\nHost: a\r\nx-big: {big}\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    // Within the limits, the same listener serves as usual.
    let reply = raw(
        internal,
        b"POST /o/small HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let targets: Vec<String> = s.orders.seen().into_iter().map(|r| r.target).collect();
    assert!(
        targets.iter().all(|t| t == "/o/small" || t == "/o/chunked"),
        "{targets:?}"
    );
}

/// Pooled connections that the upstream closed are not used: sequential requests to an
/// upstream that closes every connection after one response all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_upstream_are_not_reused() {
    let closing = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        true,
        true,
    )
    .await;
    let s = setup(BUILD_RS_GATEWAY, &[("SCRIPTED", closing.url())]).await;
    for i in 0..20 {
        let reply = get(&s.client, &s.gateway.url("/scripted/x")).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
        assert_eq!(reply.body, "ok");
    }
    assert_eq!(closing.connections(), 20);
}

/// Responses without a body (HEAD, 204) give their upstream connection back to the pool
/// just like the others: a mix of them still runs on one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_responses_keep_their_connection() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    for i in 0..5 {
        let head = Request::head(s.gateway.url(&format!("/o/head{i}")))
            .body(TestBody::empty())
            .unwrap();
        let reply = send(&s.client, head).await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty());
        let reply = get(&s.client, &s.gateway.url("/o/nocontent")).await;
        assert_eq!(reply.status, 204);
        let reply = get(&s.client, &s.gateway.url(&format!("/o/get{i}"))).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(s.orders.seen().len(), 15);
    assert_eq!(s.orders.connections.load(Ordering::SeqCst), 1);
}

/// RFC 9110 §7.6.2: OPTIONS and TRACE lose one Max-Forwards per hop, and at zero the
/// gateway answers itself: OPTIONS with `Allow`, TRACE refused rather than echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_forwards_on_options_and_trace() {
    let s = setup(BUILD_RS_GATEWAY, &[]).await;
    let addr = s.gateway.addr("main");

    // A route for every method: the gateway answers for it, listing them all.
    let reply = raw(
        addr,
        b"OPTIONS /o/1 HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("allow: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH"),
        "{reply}"
    );
    // A path not routed for OPTIONS says which methods it is routed for.
    let reply = raw(
        addr,
        b"OPTIONS /users/1 HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert!(reply.contains("allow: GET, HEAD, PUT, PATCH"), "{reply}");

    let reply = raw(
        addr,
        b"TRACE /o/t HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert!(
        reply.contains("allow: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, PATCH\r\n"),
        "{reply}"
    );

    let reply = raw(
        addr,
        b"OPTIONS /o/x HTTP/1.1\r\nHost: a\r\nMax-Forwards: abc\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        s.orders.seen().is_empty() && s.users_a.seen().is_empty(),
        "a request at zero hops was forwarded"
    );

    let reply = raw(
        addr,
        b"OPTIONS /o/x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 5\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(s.orders.last().headers["max-forwards"], "4");
}
