//! Metrics: `/metrics` on the admin listener counts a known sequence of requests
//! exactly across two workers, passes `promtool check metrics`, and a real Prometheus
//! server scraping the gateway reports its series through its query API.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Sends `request` on a connection of its own, which the gateway closes after it.
async fn once(addr: SocketAddr, request: &'static str) -> String {
    tokio::task::spawn_blocking(move || raw(addr, request.as_bytes()))
        .await
        .expect("request thread")
}

/// The scrape as `series → value`, the series written as in the text.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {metrics:#?}"))
}

/// A known sequence of requests on separate connections, which the kernel spreads
/// over the two workers, is counted exactly once each in the merged scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_a_known_sequence_across_two_workers() {
    let setup = E2e::start(BUILD_RS_GATEWAY, &[("WORKERS", "2".into())]).await;
    let gateway = &setup.gateway;
    let main = gateway.addr("main");
    for _ in 0..30 {
        let reply = once(
            main,
            "GET /users/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    // Body bytes of the answers, as the client read them.
    let body_len = |reply: &str| {
        reply
            .split_once("\r\n\r\n")
            .map_or(0, |(_, body)| body.len())
    };
    let mut update_sent = 0;
    for _ in 0..5 {
        let reply = once(
            main,
            "PUT /users/7 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        update_sent += body_len(&reply);
    }
    let mut unmatched_sent = 0;
    for _ in 0..4 {
        let reply = once(
            main,
            "GET /nowhere/at/all HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        unmatched_sent += body_len(&reply);
    }
    for _ in 0..3 {
        let reply = once(
            main,
            "GET /dead HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    }
    // One connection left open: the gauge counts it.
    let mut open = TcpStream::connect(main).expect("connect");
    open.write_all(b"GET /users/8 HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let mut head = [0u8; 12];
    open.read_exact(&mut head).expect("response");
    assert_eq!(&head, b"HTTP/1.1 200");

    // A closed connection leaves the gauge when its task ends, just after the close
    // the client sees: scrape until the closed ones are gone (at most 5 s).
    let admin = format!("http://{}/metrics", gateway.addr("admin"));
    let open_series = r#"gateway_open_connections{listener="main",protocol="http1"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    let (reply, metrics) = loop {
        let reply = get(&client(), &admin).await;
        assert_eq!(reply.status, 200);
        let metrics = parse(&reply.body);
        if value(&metrics, open_series) == 1.0 || Instant::now() > deadline {
            break (reply, metrics);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        value(&metrics, open_series),
        1.0,
        "the one connection left open"
    );
    let requests = |route: &str, method: &str, status: &str| {
        let series = format!(
            r#"gateway_requests_total{{route="{route}",method="{method}",status="{status}"}}"#
        );
        value(&metrics, &series)
    };
    assert_eq!(requests("get-user", "GET", "2xx"), 31.0);
    assert_eq!(requests("update-user", "PUT", "2xx"), 5.0);
    assert_eq!(requests("unmatched", "GET", "4xx"), 4.0);
    assert_eq!(requests("dead", "GET", "5xx"), 3.0);
    assert!(
        !reply.body.contains("/nowhere"),
        "a raw path became a label value"
    );
    let body_bytes =
        |family: &str, route: &str| value(&metrics, &format!(r#"{family}{{route="{route}"}}"#));
    let received = "gateway_request_body_bytes_total";
    let sent = "gateway_response_body_bytes_total";
    assert_eq!(body_bytes(received, "update-user"), 20.0, "5 bodies of 4");
    assert_eq!(body_bytes(sent, "update-user"), update_sent as f64);
    assert_eq!(body_bytes(received, "unmatched"), 0.0);
    assert_eq!(body_bytes(sent, "unmatched"), unmatched_sent as f64);
    assert!(unmatched_sent > 0, "404s carry a JSON body");

    // The histogram's buckets, the ones e2e.toml configures, grow to `+Inf`, which is
    // the count.
    let bucket = |le: &str| {
        value(
            &metrics,
            &format!(r#"gateway_request_duration_seconds_bucket{{route="get-user",le="{le}"}}"#),
        )
    };
    let count = value(
        &metrics,
        r#"gateway_request_duration_seconds_count{route="get-user"}"#,
    );
    assert_eq!(count, 31.0);
    assert_eq!(bucket("+Inf"), 31.0);
    assert!(
        !reply.body.contains("le=\"0.0025\""),
        "only the configured bounds"
    );
    let mut last = 0.0;
    for le in ["0.0005", "0.001", "0.005", "0.1", "1", "10"] {
        assert!(bucket(le) >= last, "buckets are cumulative");
        last = bucket(le);
    }
    assert!(
        value(
            &metrics,
            r#"gateway_request_duration_seconds_sum{route="get-user"}"#
        ) > 0.0
    );
    // 31 to `users` and 5 to `orders`, answered; the dead upstream's three failed.
    let upstream_count = |name: &str| {
        value(
            &metrics,
            &format!(r#"gateway_upstream_request_duration_seconds_count{{upstream="{name}"}}"#),
        )
    };
    assert_eq!(upstream_count("users"), 31.0);
    assert_eq!(upstream_count("orders"), 5.0);
    assert_eq!(upstream_count("dead"), 0.0);
    let dead_target = refused_target(&reply.body);
    assert_eq!(
        value(
            &metrics,
            &format!(
                r#"gateway_upstream_errors_total{{upstream="dead",target="{dead_target}",kind="connect_error"}}"#
            )
        ),
        3.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"gateway_stopped_requests_total{route="unmatched",stopped_by="router",reason="no route"}"#
        ),
        4.0
    );
    // Nothing is in flight: every connection to a users target is idle in a pool.
    let pooled: Vec<(&String, &f64)> = metrics
        .iter()
        .filter(|(series, _)| {
            series.starts_with(r#"gateway_upstream_connections{upstream="users""#)
        })
        .collect();
    assert_eq!(pooled.len(), 2, "both targets: {pooled:?}");
    assert!(pooled.iter().map(|(_, open)| **open).sum::<f64>() >= 1.0);
    for (series, open) in pooled {
        let idle = series.replace(
            "gateway_upstream_connections",
            "gateway_upstream_idle_connections",
        );
        assert_eq!(value(&metrics, &idle), *open, "{series}");
    }
    let build = metrics
        .keys()
        .find(|series| series.starts_with("gateway_build_info{"))
        .expect("build info");
    assert!(build.contains(r#"gateway="e2e""#), "{build}");
    assert!(build.contains("compiler=\"gateway-build "), "{build}");
    drop(open);

    // Prometheus's own linter passes the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(reply.body.as_bytes())
        .expect("write to promtool");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// The `target` label of the `dead` upstream's errors.
/// HTTP/2 streams count their body bytes too: the request's DATA as the upstream took
/// it, and the response's once hyper has sent it (the count comes when the stream's
/// body is done with, just after the client has it: polled for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_count_their_body_bytes() {
    let setup = E2e::start(BUILD_RS_GATEWAY, &[]).await;
    let gateway = &setup.gateway;
    let h2 = h2c_client();
    let mut sent = 0;
    for _ in 0..3 {
        // An upload, which the upstream reads whole before it answers.
        let request = http::Request::post(gateway.url("/api/orders/upload"))
            .body(TestBody::Pattern(PatternBody::new(6000)))
            .expect("request");
        let reply = send(&h2, request).await;
        assert_eq!(reply.body, r#"{"len":6000}"#);
        sent += reply.body.len();
    }
    let admin = format!("http://{}/metrics", gateway.addr("admin"));
    let received_series = r#"gateway_request_body_bytes_total{route="orders"}"#;
    let sent_series = r#"gateway_response_body_bytes_total{route="orders"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = parse(&get(&client(), &admin).await.body);
        let done = metrics.get(sent_series) == Some(&(sent as f64));
        if done || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        value(&metrics, received_series),
        18_000.0,
        "3 bodies of 6,000"
    );
    assert_eq!(value(&metrics, sent_series), sent as f64);
}

fn refused_target(scrape: &str) -> String {
    scrape
        .lines()
        .find(|line| line.starts_with(r#"gateway_upstream_errors_total{upstream="dead""#))
        .and_then(|line| line.split("target=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("an error counted for the dead upstream")
        .to_owned()
}

/// A Prometheus server, started on a free port with a config that scrapes the gateway
/// every second, reports the gateway's series through its HTTP query API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_gateway() {
    let setup = E2e::start(BUILD_RS_GATEWAY, &[]).await;
    let gateway = &setup.gateway;
    let client = client();
    for _ in 0..7 {
        assert_eq!(get(&client, &gateway.url("/users/1")).await.status, 200);
    }

    let dir = directory("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: [\"{}\"]\n",
            gateway.addr("admin")
        ),
    )
    .expect("config");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus; .ci/run installs it)");
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=gateway_requests_total%7Broute%3D%22get-user%22%7D"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        if Instant::now() > deadline {
            break None;
        }
        // Refused until Prometheus listens; empty until its first scrape.
        let request = http::Request::get(&query)
            .body(TestBody::empty())
            .expect("request");
        let reply = tokio::time::timeout(Duration::from_secs(2), client.request(request)).await;
        if let Ok(Ok(response)) = reply {
            use http_body_util::BodyExt;
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            if let Ok(body) = body {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if let Some(sample) = json["data"]["result"].get(0) {
                    break Some(sample.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let sample = found.expect("Prometheus reported no gateway series within 30 s");
    assert_eq!(sample["metric"]["job"], "gateway");
    assert_eq!(sample["metric"]["method"], "GET");
    assert_eq!(sample["metric"]["status"], "2xx");
    assert_eq!(sample["value"][1], "7");
}
