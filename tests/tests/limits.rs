//! Rate limits end to end, in-process store: the gateway of `gateways/auth.toml`
//! (its `/limited/…` routes), real clients, and a recording upstream. Every refused
//! request is checked at the upstream too: a limited request must never arrive there.
//! Limits here are per hour unless a test waits for a refill, so no test depends on
//! timing except the refill test, whose windows are wide enough for a slow machine.

mod support;

use std::time::Duration;

use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::auth::{ALICE_KEY, BOB_KEY, SECRET, Setup};
use support::jwt::{claims, hmac};
use support::{HttpClient, PatternBody, Reply, TestBody};

/// A 429 as the issue asks: JSON body, `Retry-After`, the rate-limit fields.
fn limited(reply: &Reply, policy: &str, case: &str) {
    assert_eq!(reply.status.as_u16(), 429, "{case}: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], 429, "{case}");
    assert_eq!(body["error"], "rate limit exceeded", "{case}");
    let field = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{case}: no {name}"))
            .to_owned()
    };
    let retry: u64 = field("retry-after").parse().expect("seconds");
    assert!(retry >= 1, "{case}");
    assert!(
        field("ratelimit-policy").starts_with(&format!("\"{policy}\";q=")),
        "{case}"
    );
    assert_eq!(
        field("ratelimit"),
        format!("\"{policy}\";r=0;t={retry}"),
        "{case}"
    );
}

fn ok(reply: &Reply, case: &str) {
    assert_eq!(reply.status.as_u16(), 200, "{case}: {}", reply.body);
}

/// Requests admitted and refused at `path`, each on a connection of its own (so
/// that the kernel spreads them over the workers), all at once.
async fn burst(setup: &Setup, path: &str, requests: usize) -> (usize, usize) {
    burst_with(setup, path, &[], requests).await
}

/// `burst`, with `headers` on every request.
async fn burst_with(
    setup: &Setup,
    path: &str,
    headers: &[(&'static str, &'static str)],
    requests: usize,
) -> (usize, usize) {
    let fresh: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(HttpConnector::new());
    let sends = (0..requests).map(|_| {
        let mut request = Request::get(setup.gateway.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(TestBody::empty()).expect("request");
        let client = fresh.clone();
        async move { support::send(&client, request).await }
    });
    let replies = futures_join_all(sends).await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(admitted + refused, requests, "only 200 and 429");
    (admitted, refused)
}

/// Runs the futures concurrently on the test's runtime.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

/// 100 clients at once against a burst of 50: exactly 50 pass, 50 get 429, and the
/// upstream sees exactly 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exact_admissions_under_a_concurrent_burst() {
    let setup = Setup::start("limit-burst").await;
    assert_eq!(burst(&setup, "/limited/burst", 100).await, (50, 50));
    assert_eq!(setup.upstream.seen().len(), 50);
    let reply = setup.get("/limited/burst", &[]).await;
    limited(&reply, "burst_of_50", "after the burst");
}

/// One limit for the process: two workers admit the burst once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_holds_across_two_workers() {
    let setup = Setup::start_with("limit-workers", &[("WORKERS", "2".to_owned())]).await;
    assert_eq!(burst(&setup, "/limited/burst", 100).await, (50, 50));
    assert_eq!(setup.upstream.seen().len(), 50);
}

/// `burst` at once, then one request per emission interval (200 ms at 5/s), and the
/// fields say so on admitted responses (`headers = true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_refill_at_the_rate() {
    let setup = Setup::start("limit-refill").await;
    let first = setup.get("/limited/refill", &[]).await;
    ok(&first, "first");
    let field = |reply: &Reply, name: &str| {
        reply
            .headers
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    assert_eq!(
        field(&first, "ratelimit-policy").as_deref(),
        Some("\"refilling\";q=2;w=1")
    );
    assert_eq!(
        field(&first, "ratelimit").as_deref(),
        Some("\"refilling\";r=1;t=1")
    );
    ok(&setup.get("/limited/refill", &[]).await, "second");
    limited(
        &setup.get("/limited/refill", &[]).await,
        "refilling",
        "burst spent",
    );
    // 250 ms refill one token, not two.
    tokio::time::sleep(Duration::from_millis(250)).await;
    ok(&setup.get("/limited/refill", &[]).await, "refilled one");
    limited(
        &setup.get("/limited/refill", &[]).await,
        "refilling",
        "only one",
    );
    // A second and more: the whole burst, never more.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ok(&setup.get("/limited/refill", &[]).await, "full again");
    ok(&setup.get("/limited/refill", &[]).await, "full again");
    limited(
        &setup.get("/limited/refill", &[]).await,
        "refilling",
        "burst again",
    );
    assert_eq!(setup.upstream.seen().len(), 5);
}

/// Each key has its own bucket: field values, route parameters, and the client
/// address when the field is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_independent() {
    let setup = Setup::start("limit-keys").await;
    for tenant in ["red", "blue"] {
        for _ in 0..2 {
            ok(
                &setup.get("/limited/tenant", &[("x-team", tenant)]).await,
                tenant,
            );
        }
        let reply = setup.get("/limited/tenant", &[("x-team", tenant)]).await;
        limited(&reply, "per_tenant", tenant);
    }
    // Leaving the field out is no way around the limit: the address is the key.
    ok(&setup.get("/limited/tenant", &[]).await, "no field");
    ok(&setup.get("/limited/tenant", &[]).await, "no field");
    limited(
        &setup.get("/limited/tenant", &[]).await,
        "per_tenant",
        "no field",
    );
    for item in ["1", "2"] {
        let path = format!("/limited/items/{item}");
        ok(&setup.get(&path, &[]).await, &path);
        ok(&setup.get(&path, &[]).await, &path);
        limited(&setup.get(&path, &[]).await, "per_item", &path);
    }
    // Per client address: three, with the fields counting down.
    for left in ["2", "1", "0"] {
        let reply = setup.get("/limited/ip", &[]).await;
        ok(&reply, "per address");
        let state = reply.headers.get("ratelimit").expect("field");
        assert!(
            state
                .to_str()
                .expect("ascii")
                .starts_with(&format!("\"per_ip\";r={left};t="))
        );
    }
    limited(
        &setup.get("/limited/ip", &[]).await,
        "per_ip",
        "per address",
    );
    // Behind a trusted proxy (the test's own address), the forwarded client counts.
    for client in ["10.0.0.1", "10.0.0.2"] {
        let forwarded = [("x-forwarded-for", client)];
        ok(&setup.get("/limited/proxied", &forwarded).await, client);
        ok(&setup.get("/limited/proxied", &forwarded).await, client);
        limited(
            &setup.get("/limited/proxied", &forwarded).await,
            "per_ip_behind_proxy",
            client,
        );
    }
    assert_eq!(setup.upstream.seen().len(), 2 * 2 + 2 + 2 * 2 + 3 + 2 * 2);
}

/// Per user (a token's `sub`) and per consumer (an API key's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_consumers_have_their_own_buckets() {
    let setup = Setup::start("limit-identity").await;
    for user in ["alice", "bob"] {
        let token = hmac(SECRET.as_bytes(), "HS256", &claims(user));
        ok(&setup.bearer("/limited/user", &token).await, user);
        ok(&setup.bearer("/limited/user", &token).await, user);
        limited(
            &setup.bearer("/limited/user", &token).await,
            "per_user",
            user,
        );
    }
    for key in [ALICE_KEY, BOB_KEY] {
        let header = [("x-api-key", key)];
        ok(&setup.get("/limited/consumer", &header).await, key);
        ok(&setup.get("/limited/consumer", &header).await, key);
        limited(
            &setup.get("/limited/consumer", &header).await,
            "per_consumer",
            key,
        );
    }
    // Authentication still comes first: no token, no bucket spent.
    assert_eq!(setup.get("/limited/user", &[]).await.status, 401);
    assert_eq!(setup.upstream.seen().len(), 8);
}

/// Scopes: `global` shares one bucket between the policy's routes, the default gives
/// each route its own, and `group:NAME` shares across policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_share_or_separate_buckets() {
    let setup = Setup::start("limit-scopes").await;
    ok(&setup.get("/limited/site-a", &[]).await, "global a");
    ok(&setup.get("/limited/site-b", &[]).await, "global b");
    ok(&setup.get("/limited/site-a", &[]).await, "global a");
    limited(
        &setup.get("/limited/site-b", &[]).await,
        "site_wide",
        "global b",
    );
    limited(
        &setup.get("/limited/site-a", &[]).await,
        "site_wide",
        "global a",
    );
    for route in ["/limited/each-a", "/limited/each-b"] {
        ok(&setup.get(route, &[]).await, route);
        ok(&setup.get(route, &[]).await, route);
        limited(&setup.get(route, &[]).await, "each_route", route);
    }
    ok(&setup.get("/limited/orders-a", &[]).await, "group a");
    ok(&setup.get("/limited/orders-b", &[]).await, "group b");
    // The group's buckets are laid out with its first policy's settings and name.
    limited(
        &setup.get("/limited/orders-a", &[]).await,
        "orders_group",
        "group a",
    );
    limited(
        &setup.get("/limited/orders-b", &[]).await,
        "orders_group",
        "group b",
    );
    assert_eq!(setup.upstream.seen().len(), 3 + 4 + 2);
}

/// A route's `max_body`: 413 over it, before the upstream sees anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_limits_request_bodies() {
    let setup = Setup::start("limit-body").await;
    let post = |len: u64| {
        let request = Request::post(setup.gateway.url("/limited/upload"))
            .body(TestBody::Pattern(PatternBody::new(len)))
            .expect("request");
        support::send(&setup.client, request)
    };
    ok(&post(16).await, "at the limit");
    let reply = post(17).await;
    assert_eq!(reply.status.as_u16(), 413, "{}", reply.body);
    assert_eq!(reply.json()["status"], 413);
    assert_eq!(setup.upstream.seen().len(), 1);
}

/// Two in flight, one waiting: the third waits for a place and gets it, or waits out
/// its 300 ms and gets 503; a fourth finds the queue full and gets 503 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_limits_requests_in_flight() {
    let setup = std::sync::Arc::new(Setup::start("limit-inflight").await);
    let get = |path: &'static str| {
        let setup = setup.clone();
        tokio::spawn(async move { setup.get(path, &[]).await })
    };
    let busy = |reply: &Reply, case: &str| {
        assert_eq!(reply.status.as_u16(), 503, "{case}: {}", reply.body);
        assert_eq!(
            reply.json()["error"],
            "too many requests in flight",
            "{case}"
        );
    };
    // Both places taken for a second.
    let long = [
        get("/limited/inflight/wait?ms=1000"),
        get("/limited/inflight/wait?ms=1000"),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = get("/limited/inflight/wait?ms=0");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    busy(
        &get("/limited/inflight/wait?ms=0").await.expect("task"),
        "queue full",
    );
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "refused at once"
    );
    busy(&queued.await.expect("task"), "waited out the queue");
    for reply in long {
        ok(&reply.await.expect("task"), "in flight");
    }
    // Places come back: a request waiting in the queue gets the first one freed.
    let short = [
        get("/limited/inflight/wait?ms=100"),
        get("/limited/inflight/wait?ms=100"),
    ];
    tokio::time::sleep(Duration::from_millis(30)).await;
    ok(
        &get("/limited/inflight/wait?ms=0").await.expect("task"),
        "queued, then placed",
    );
    for reply in short {
        ok(&reply.await.expect("task"), "short");
    }
    assert_eq!(setup.upstream.seen().len(), 5);
}

/// An upstream's limit counts a request until its response has been sent: a body the
/// client has not read yet keeps the place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_limit_holds_its_place_until_the_body_is_sent() {
    use http_body_util::BodyExt;
    let setup = Setup::start("limit-upstream").await;
    let request = Request::get(
        setup
            .gateway
            .url("/limited/upstream/download?bytes=8388608"),
    )
    .body(TestBody::empty())
    .expect("request");
    let response = setup.client.request(request).await.expect("response head");
    assert_eq!(response.status(), 200);
    // The head is here, 8 MiB are not: the place is still taken.
    let reply = setup.get("/limited/upstream/anything", &[]).await;
    assert_eq!(reply.status.as_u16(), 503, "{}", reply.body);
    assert_eq!(reply.json()["error"], "too many requests in flight");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body.len(), 8 << 20);
    // Sent: the place is back (the gateway frees it as the body's last bytes leave).
    let mut reply = setup.get("/limited/upstream/anything", &[]).await;
    for _ in 0..20 {
        if reply.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        reply = setup.get("/limited/upstream/anything", &[]).await;
    }
    ok(&reply, "after the body");
}

/// A real `redis-server` on a free loopback port, stopped when dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    /// Starts on `port` (a free one when `None`), with nothing saved to disk.
    fn start(port: Option<u16>) -> RedisServer {
        RedisServer::start_with(port, &[])
    }

    fn start_with(port: Option<u16>, more: &[&str]) -> RedisServer {
        let port = port.unwrap_or_else(|| support::refused_addr().port());
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(more)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (the Debian package redis-server; .ci/run installs it)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two gateway processes, one Redis: one combined limit. Redis stopped: the
/// `fail_open` limit admits, the `fail_closed` one answers 503. Redis back: the
/// limit holds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_share_one_limit_in_redis() {
    let redis = RedisServer::start(None);
    let env = [("REDIS_URL", redis.url())];
    let a = Setup::start_with("limit-redis-a", &env).await;
    let b = Setup::start_with("limit-redis-b", &env).await;
    for (gateway, case) in [(&a, "a"), (&b, "b"), (&a, "a"), (&b, "b")] {
        ok(&gateway.get("/limited/fleet", &[]).await, case);
    }
    limited(&a.get("/limited/fleet", &[]).await, "fleet", "a after 4");
    limited(&b.get("/limited/fleet", &[]).await, "fleet", "b after 4");
    ok(
        &a.get("/limited/fleet-closed", &[]).await,
        "closed, Redis up",
    );
    assert_eq!(a.upstream.seen().len() + b.upstream.seen().len(), 5);

    let port = redis.port;
    drop(redis);
    ok(&a.get("/limited/fleet", &[]).await, "Redis down: fail open");
    let reply = a.get("/limited/fleet-closed", &[]).await;
    assert_eq!(
        reply.status.as_u16(),
        503,
        "Redis down: fail closed: {}",
        reply.body
    );
    assert_eq!(reply.json()["error"], "rate limit store unavailable");

    // Back, empty: the limit counts again once the gateway has reconnected.
    let _redis = RedisServer::start(Some(port));
    let started = std::time::Instant::now();
    while a.get("/limited/fleet-closed", &[]).await.status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..4 {
        ok(&a.get("/limited/fleet", &[]).await, "a fresh bucket");
    }
    limited(
        &a.get("/limited/fleet", &[]).await,
        "fleet",
        "limited again",
    );
}

/// Calls of the rate-limit script this Redis has run.
fn script_calls(redis: &RedisServer) -> u64 {
    let text = redis_cli(redis, &["INFO", "commandstats"]);
    text.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            let calls = line.split_once("calls=")?.1;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Batched mode (`batch = 5`, a burst of 40): two gateways lease five tokens at a
/// time. Together they admit no more than the burst, and no fewer than the burst
/// less what each may hold unspent (5 each), with a round trip per three tokens or
/// more, and none for the refused requests. A
/// lease's unspent tokens go back to Redis once it expires: in sequence, the two
/// admit exactly the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_leases_stay_within_their_bound() {
    let redis = RedisServer::start(None);
    let env = [("REDIS_URL", redis.url())];
    let a = Setup::start_with("limit-batch-a", &env).await;
    let b = Setup::start_with("limit-batch-b", &env).await;
    let path = "/limited/fleet-batched";
    let team = [("x-team", "burst")];
    let (at_a, at_b) = tokio::join!(
        burst_with(&a, path, &team, 60),
        burst_with(&b, path, &team, 60)
    );
    let admitted = at_a.0 + at_b.0;
    assert!((30..=40).contains(&admitted), "{at_a:?} {at_b:?}");
    assert_eq!(a.upstream.seen().len() + b.upstream.seen().len(), admitted);
    // A lease carries 5 tokens and a background top-up 3, so a call carries at
    // least 3 but for the last partial grants and refusals near the end (at most
    // three a gateway); a refusal is then kept, so refused requests cost nothing.
    let calls = script_calls(&redis) as usize;
    assert!(
        calls <= admitted / 3 + 6,
        "{calls} round trips for {admitted} admitted of 120"
    );

    // In sequence: a leases 5 and spends 1; its lease expires; b spends the other
    // 35 (topping its lease up in the background); a's next lease gives its 4 back
    // and takes them again.
    let team = [("x-team", "refund")];
    ok(&a.get(path, &team).await, "a's first");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut at_b = 0;
    while b.get(path, &team).await.status == 200 {
        at_b += 1;
        assert!(at_b <= 40, "b admitted more than the burst");
    }
    assert_eq!(at_b, 35, "a holds 4 of 40 while its lease lasts");
    let mut at_a = 1;
    while a.get(path, &team).await.status == 200 {
        at_a += 1;
        assert!(at_a <= 40, "a admitted more than the burst");
    }
    assert_eq!(at_a + at_b, 40, "the refund comes back: exactly the burst");
    limited(&b.get(path, &team).await, "fleet_batched", "b, after");
}

/// A response's `name` field, as text.
fn field(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name}"))
        .to_owned()
}

/// A daily quota per consumer, calendar days in Berlin, counted in Redis by two
/// gateways: three requests a day each, what is left on every response, the reset at
/// Berlin's next midnight; the fourth gets 429 until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_quota_per_consumer_across_gateways() {
    let redis = RedisServer::start(None);
    let env = [("REDIS_URL", redis.url())];
    let a = Setup::start_with("quota-a", &env).await;
    let b = Setup::start_with("quota-b", &env).await;
    let alice = [("x-api-key", ALICE_KEY)];
    let now =
        jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Europe/Berlin").expect("zone"));
    let midnight = now
        .date()
        .tomorrow()
        .expect("tomorrow")
        .to_zoned(now.time_zone().clone())
        .expect("midnight");
    let to_midnight = (midnight.timestamp().as_second() - now.timestamp().as_second()) as u64;
    for (left, gateway) in [(2, &a), (1, &b), (0, &a)] {
        let reply = gateway.get("/quota/daily", &alice).await;
        ok(&reply, "within the quota");
        let policy = field(&reply, "ratelimit-policy");
        let window: u64 = policy
            .strip_prefix("\"daily\";q=3;w=")
            .unwrap_or_else(|| panic!("{policy}"))
            .parse()
            .expect("seconds");
        assert!(
            (82_800..=90_000).contains(&window),
            "a Berlin day: {window}"
        );
        let state = field(&reply, "ratelimit");
        let (r, t) = state
            .strip_prefix("\"daily\";r=")
            .and_then(|rest| rest.split_once(";t="))
            .unwrap_or_else(|| panic!("{state}"));
        assert_eq!(r, left.to_string());
        let t: u64 = t.parse().expect("seconds");
        assert!(
            t.abs_diff(to_midnight) <= 2,
            "{t} s to Berlin's midnight, not {to_midnight}"
        );
    }
    let reply = b.get("/quota/daily", &alice).await;
    assert_eq!(reply.status.as_u16(), 429, "{}", reply.body);
    assert_eq!(reply.json()["error"], "quota exceeded");
    let retry: u64 = field(&reply, "retry-after").parse().expect("seconds");
    assert!(retry.abs_diff(to_midnight) <= 2, "retry after {retry} s");
    assert_eq!(
        field(&reply, "ratelimit"),
        format!("\"daily\";r=0;t={retry}")
    );
    assert_eq!(a.upstream.seen().len() + b.upstream.seen().len(), 3);
    ok(
        &a.get("/quota/daily", &[("x-api-key", BOB_KEY)]).await,
        "bob's own quota",
    );

    // The counter expires a day after its window ends: no key outlives its use.
    let keys = redis_cli(&redis, &["--scan", "--pattern", "gw:q:*"]);
    assert_eq!(keys.lines().count(), 2, "one counter per consumer: {keys}");
    for key in keys.lines() {
        let expires: i64 = redis_cli(&redis, &["PEXPIRETIME", key])
            .trim()
            .parse()
            .expect("ms");
        assert_eq!(
            expires,
            midnight.timestamp().as_millisecond() + 86_400_000,
            "{key}"
        );
    }
}

/// A rolling 30-day quota: the previous window's count weighs in by the share of it
/// the rolling window still covers, so a team that spent its quota late last window
/// gets only what is left. Redis down: the quota fails closed with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_quota_weighs_the_previous_window() {
    use sha2::{Digest, Sha256};
    let redis = RedisServer::start(None);
    let env = [("REDIS_URL", redis.url())];
    let setup = Setup::start_with("quota-rolling", &env).await;
    // The previous 30-day window's counter of team "red": 12 requests.
    const LENGTH: i64 = 30 * 86_400_000;
    let now = jiff::Timestamp::now().as_millisecond();
    let start = now - now.rem_euclid(LENGTH);
    let digest = Sha256::digest(b"\x01red");
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let previous = format!(
        "gw:q:{{{hex}}}:quota_rolling:route:/quota/rolling:{}",
        start - LENGTH
    );
    redis_cli(&redis, &["SET", &previous, "12"]);
    // Admitted while 12 × (share of the previous window still covered) + n ≤ 10.
    let covered = (LENGTH - (now - start)) as f64 / LENGTH as f64;
    let expected = (10.0 - 12.0 * covered).floor().max(0.0) as usize;
    let team = [("x-team", "red")];
    let mut admitted: usize = 0;
    while setup.get("/quota/rolling", &team).await.status == 200 {
        admitted += 1;
        assert!(admitted <= 10, "more than the quota");
    }
    assert!(
        admitted.abs_diff(expected) <= 1,
        "{admitted} admitted, {expected} expected with {covered:.3} of the previous window"
    );
    let reply = setup.get("/quota/rolling", &team).await;
    assert_eq!(reply.status.as_u16(), 429);
    // Another team starts with its whole quota.
    let mut blue = 0;
    while setup
        .get("/quota/rolling", &[("x-team", "blue")])
        .await
        .status
        == 200
    {
        blue += 1;
        assert!(blue <= 10, "more than the quota");
    }
    assert_eq!(blue, 10);

    drop(redis);
    let reply = setup.get("/quota/rolling", &[("x-team", "green")]).await;
    assert_eq!(reply.status.as_u16(), 503, "fail closed: {}", reply.body);
    assert_eq!(reply.json()["error"], "quota store unavailable");
}

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Redis Cluster of three nodes (`redis-cli --cluster create`): keys of several
/// slots, one limit across two gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cluster_holds_the_limit() {
    let dir = support::directory("redis-cluster");
    let nodes: Vec<RedisServer> = (0..3)
        .map(|i| {
            let config = dir.join(format!("nodes-{i}.conf"));
            let config = config.to_str().expect("utf-8 path");
            RedisServer::start_with(
                None,
                &["--cluster-enabled", "yes", "--cluster-config-file", config],
            )
        })
        .collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    // Every node agrees the cluster is up before a gateway asks it anything.
    let started = std::time::Instant::now();
    for node in &nodes {
        loop {
            let info = std::process::Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the cluster never came up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let urls: Vec<String> = addresses.iter().map(|a| format!("redis://{a}")).collect();
    let env = [("REDIS_CLUSTER_URL", urls.join(","))];
    let a = Setup::start_with("limit-cluster-a", &env).await;
    let b = Setup::start_with("limit-cluster-b", &env).await;
    for team in ["red", "blue", "green", "amber"] {
        let header = [("x-team", team)];
        ok(&a.get("/limited/fleet-cluster", &header).await, team);
        ok(&b.get("/limited/fleet-cluster", &header).await, team);
        limited(
            &a.get("/limited/fleet-cluster", &header).await,
            "fleet_cluster",
            team,
        );
        limited(
            &b.get("/limited/fleet-cluster", &header).await,
            "fleet_cluster",
            team,
        );
    }
    drop(nodes);
}

/// A Redis that never answers (its address stalls every connection): the first check
/// waits out its timeout, the next ones fail at once instead of each waiting too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_costs_one_timeout_not_one_per_request() {
    let (stalled, _held, _socket) = support::stalled_listener();
    let env = [("REDIS_URL", format!("redis://{stalled}"))];
    let setup = Setup::start_with("limit-redis-silent", &env).await;
    let started = std::time::Instant::now();
    for i in 0..10 {
        let reply = setup.get("/limited/fleet-closed", &[]).await;
        assert_eq!(reply.status.as_u16(), 503, "request {i}: {}", reply.body);
    }
    // The policy's timeout is 300 ms: ten requests waiting it out would take 3 s.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(setup.upstream.seen().is_empty());
}
