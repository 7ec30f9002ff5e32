//! End-to-end: the policies of `gateways/e2e.toml` (IP rules in the connection and
//! request phases, header rules on both sides) against real peers. Clients connect from
//! chosen loopback addresses (127.0.0.2, .3, .4), so each IP rule meets real sockets.

mod support;

use support::*;

struct Setup {
    users_a: Upstream,
    users_b: Upstream,
    orders: Upstream,
    gateway: Gateway,
}

async fn setup() -> Setup {
    let users_a = Upstream::start("users-a").await;
    let users_b = Upstream::start("users-b").await;
    let orders = Upstream::start("orders").await;
    let extra = [("STAMP_SECRET", "from-the-environment".to_owned())];
    let gateway = Gateway::e2e(BUILD_RS_GATEWAY, &users_a, &users_b, &orders, &extra);
    Setup {
        users_a,
        users_b,
        orders,
        gateway,
    }
}

impl Setup {
    fn requests_seen(&self) -> usize {
        self.users_a.seen().len() + self.users_b.seen().len() + self.orders.seen().len()
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").into_bytes()
}

fn with_fields(method: &str, path: &str, fields: &[&str]) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for field in fields {
        request.push_str(field);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

fn status(reply: &str) -> u16 {
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"))
}

/// The value of the first field called `name` in a raw response, any case.
fn field<'r>(reply: &'r str, name: &str) -> Option<&'r str> {
    let head = reply.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const FORBIDDEN: &str = r#"{"error":"client address not allowed","status":403}"#;

/// A listener rule that every route runs refuses the whole connection: 403 with a
/// JSON body for any request, routed or not, and the upstream sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_phase_refuses_a_whole_listener() {
    let s = setup().await;
    let fenced = s.gateway.addr("fenced");
    for path in ["/users/1", "/no/such/route"] {
        let reply = raw_from([127, 0, 0, 3], fenced, &get(path));
        assert_eq!(status(&reply), 403, "{reply}");
        assert!(reply.ends_with(FORBIDDEN), "{reply}");
    }
    assert_eq!(s.requests_seen(), 0);
    // Other peers pass, on the same listener and on the others.
    let reply = raw_from([127, 0, 0, 2], fenced, &get("/users/1"));
    assert_eq!(status(&reply), 200, "{reply}");
    let reply = raw_from([127, 0, 0, 3], s.gateway.addr("main"), &get("/users/1"));
    assert_eq!(status(&reply), 200, "{reply}");
}

/// A route that skips a listener's rule is reachable by the peers that rule refuses;
/// the listener's other routes still refuse them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_skip_listener_policies_only_when_they_say_so() {
    let s = setup().await;
    let guarded = s.gateway.addr("guarded");
    let reply = raw_from([127, 0, 0, 4], guarded, &get("/open/1"));
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(s.requests_seen(), 1);
    for path in ["/users/1", "/proxied/1"] {
        let reply = raw_from([127, 0, 0, 4], guarded, &get(path));
        assert_eq!(status(&reply), 403, "{path}: {reply}");
        assert!(reply.ends_with(FORBIDDEN), "{reply}");
    }
    assert_eq!(s.requests_seen(), 1);
}

/// A route's own allow list: only 127.0.0.2 reaches `/office`, and a refused client
/// gets 403 rather than learning the route's methods from a 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_ip_rules_run_before_the_method_check() {
    let s = setup().await;
    let guarded = s.gateway.addr("guarded");
    let reply = raw_from([127, 0, 0, 2], guarded, &get("/office/7"));
    assert_eq!(status(&reply), 200, "{reply}");
    let reply = raw_from([127, 0, 0, 1], guarded, &get("/office/7"));
    assert_eq!(status(&reply), 403, "{reply}");
    let post = with_fields("POST", "/office/7", &["Content-Length: 0"]);
    let reply = raw_from([127, 0, 0, 1], guarded, &post);
    assert_eq!(status(&reply), 403, "{reply}");
    let reply = raw_from([127, 0, 0, 2], guarded, &post);
    assert_eq!(status(&reply), 405, "{reply}");
    assert_eq!(field(&reply, "allow"), Some("GET, HEAD"));
    assert_eq!(s.requests_seen(), 1);
}

/// Behind trusted proxies the right-most untrusted `X-Forwarded-For` address is the
/// client; what a client writes further left, or a peer that is no trusted proxy,
/// changes nothing, and an unreadable entry fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_decide_the_client_address() {
    let s = setup().await;
    let guarded = s.gateway.addr("guarded");
    for (forwarded, expected) in [
        (Some("192.0.2.10"), 200),
        (Some("8.8.8.8, 192.0.2.10"), 200),
        (Some("192.0.2.10, 8.8.8.8"), 403),
        (Some("192.0.2.66"), 403),
        (Some("192.0.2.10, 127.0.0.9"), 200),
        (Some("garbage"), 403),
        (None, 403),
    ] {
        let fields: Vec<String> = forwarded
            .map(|f| format!("X-Forwarded-For: {f}"))
            .into_iter()
            .collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let reply = raw_from(
            [127, 0, 0, 1],
            guarded,
            &with_fields("GET", "/proxied/1", &fields),
        );
        assert_eq!(status(&reply), expected, "{forwarded:?}: {reply}");
    }
    assert_eq!(s.requests_seen(), 3);
}

/// Header rules: removed, renamed, set (replacing what the client sent) and added
/// fields reach the upstream, with values from route parameters, the client address,
/// request fields and the environment; the response loses and gains fields too. Rules
/// with constant values (compiled into the route) and with request values (resolved at
/// start-up) do the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_change_requests_and_responses() {
    let s = setup().await;
    let guarded = s.gateway.addr("guarded");
    let request = with_fields(
        "GET",
        "/open/tagged",
        &[
            "X-Debug: 1",
            "X-Old: renamed",
            "X-User: forged",
            "x-user: forged-again",
            "X-Trace-Debug: 1",
            "X-Legacy: kept",
            "X-Static: forged",
        ],
    );
    let reply = raw_from([127, 0, 0, 2], guarded, &request);
    assert_eq!(status(&reply), 200, "{reply}");
    let seen = s.orders.last();
    let h = &seen.headers;
    assert!(!h.contains_key("x-debug"));
    assert!(!h.contains_key("x-old"));
    assert_eq!(h["x-new"], "renamed");
    assert_eq!(
        h.get_all("x-user").iter().collect::<Vec<_>>(),
        ["user-tagged"]
    );
    assert_eq!(h["x-client"], "127.0.0.2");
    assert_eq!(h["x-secret"], "from-the-environment");
    assert_eq!(h["x-seen-host"], "gw");
    assert!(!h.contains_key("x-trace-debug"));
    assert!(!h.contains_key("x-legacy"));
    assert_eq!(h["x-modern"], "kept");
    assert_eq!(h.get_all("x-static").iter().collect::<Vec<_>>(), ["yes"]);
    assert_eq!(field(&reply, "x-internal"), None, "{reply}");
    assert_eq!(field(&reply, "x-upstream-public"), None, "{reply}");
    assert_eq!(field(&reply, "x-tidy"), Some("1"));
    assert_eq!(field(&reply, "x-served-by"), Some("e2e"));
    assert_eq!(field(&reply, "x-for-user"), Some("tagged"));
    // Routes without the policy forward what the client sent.
    let reply = raw_from(
        [127, 0, 0, 2],
        s.gateway.addr("main"),
        &with_fields("GET", "/users/1", &["X-Debug: 1"]),
    );
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(field(&reply, "x-served-by"), None);
}

/// The access log says who stopped a refused request and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_with_their_reason() {
    let s = setup().await;
    let reply = raw_from([127, 0, 0, 1], s.gateway.addr("guarded"), &get("/office/7"));
    assert_eq!(status(&reply), 403, "{reply}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let logs = s.gateway.logs();
        if let Some(line) = logs.iter().find(|l| l.contains("path=\"/office/7\"")) {
            assert!(line.contains("route=\"office\""), "{line}");
            assert!(line.contains("status=403"), "{line}");
            assert!(
                line.contains("stop=\"only-2: client address not allowed\""),
                "{line}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log line: {logs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A rewrite whose output is not a valid request target is refused with 400, never
/// forwarded with the client's own path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rewrites_fail_closed() {
    let s = setup().await;
    let reply = raw(s.gateway.addr("main"), &get("/v2/users/1/a\"b"));
    assert_eq!(status(&reply), 400, "{reply}");
    assert!(reply.contains("rewritten path"), "{reply}");
    assert_eq!(s.requests_seen(), 0);
}
