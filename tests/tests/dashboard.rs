//! The admin listener's dashboard and the JSON it polls: `/routes`, `/config` and
//! `/status` describe the compiled gateway and its live counts, and the page, loaded
//! in headless Chromium, renders them without a console error.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_endpoints_describe_the_gateway() {
    let setup = E2e::start(BUILD_RS_GATEWAY, &[]).await;
    let gateway = &setup.gateway;
    let client = client();
    for _ in 0..3 {
        assert_eq!(get(&client, &gateway.url("/users/1")).await.status, 200);
    }
    assert_eq!(get(&client, &gateway.url("/nowhere")).await.status, 404);
    let admin = |path: &str| format!("http://{}{path}", gateway.addr("admin"));

    let routes = get(&client, &admin("/routes")).await;
    assert_eq!(routes.headers["content-type"], "application/json");
    let routes = routes.json();
    let office = routes
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["name"] == "office")
        .expect("the office route");
    assert_eq!(office["path"], "/office/{id}");
    assert_eq!(office["methods"], serde_json::json!(["GET", "HEAD"]));
    assert_eq!(office["listeners"], serde_json::json!(["guarded"]));
    assert_eq!(office["target"], "orders");
    let policies = office["policies"].as_array().expect("policies");
    assert!(policies.contains(&"only-2".into()), "{office}");
    assert!(policies.contains(&"stamp".into()), "the group's: {office}");

    let config = get(&client, &admin("/config")).await.json();
    assert_eq!(config["gateway"], "e2e");
    assert_eq!(config["config_sha256"].as_str().map(str::len), Some(64));

    let status = get(&client, &admin("/status")).await.json();
    let route = |name: &str| {
        status["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .expect("a route")
    };
    assert_eq!(route("get-user")["requests"], 3);
    assert_eq!(route("unmatched")["requests"], 1);
    let buckets = route("get-user")["buckets"]
        .as_array()
        .expect("buckets")
        .len();
    assert_eq!(
        buckets,
        status["buckets"].as_array().expect("bounds").len() + 1
    );
    assert!(status["uptime_seconds"].as_f64().expect("uptime") > 0.0);
    let users = status["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .find(|u| u["name"] == "users")
        .cloned()
        .expect("users");
    assert_eq!(users["answered"], 3);
    assert_eq!(users["targets"].as_array().map(Vec::len), Some(2));
}

/// Headless Chromium on `page`, with one more argument (what to do with it).
fn chromium(dir: &std::path::Path, page: &str, what: &str) -> Command {
    let mut command = Command::new("chromium");
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        // Containers often have a small /dev/shm, where Chromium would crash.
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,900",
        // Virtual time runs the page's polls without waiting them out.
        "--virtual-time-budget=3000",
    ]);
    command.arg(format!("--user-data-dir={}", dir.join("profile").display()));
    command.arg(what);
    command.arg(page);
    command
}

/// Headless Chromium loads `/`, runs its script against the live endpoints and
/// leaves a page with the route table and the counts filled in; a screenshot of it is
/// taken as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_in_a_browser() {
    let setup = E2e::start(BUILD_RS_GATEWAY, &[]).await;
    let gateway = &setup.gateway;
    let client = client();
    for _ in 0..5 {
        assert_eq!(get(&client, &gateway.url("/users/1")).await.status, 200);
    }
    let page = format!("http://{}/", gateway.addr("admin"));
    let reply = get(&client, &page).await;
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    let policy = reply.headers["content-security-policy"]
        .to_str()
        .expect("ASCII");
    assert!(policy.starts_with("default-src 'none'"), "{policy}");

    let dir = directory("dashboard");
    let screenshot = dir.join("dashboard.png");
    let dumped = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking({
            let (dir, page) = (dir.to_path_buf(), page.clone());
            move || chromium(&dir, &page, "--dump-dom").output()
        }),
    )
    .await
    .expect("Chromium within 60 s")
    .expect("thread")
    .expect("chromium (Debian package chromium; .ci/run installs it)");
    let dom = String::from_utf8_lossy(&dumped.stdout);
    let log = String::from_utf8_lossy(&dumped.stderr);
    assert!(dumped.status.success(), "{log}");
    // Chromium logs every console message, errors included, as `CONSOLE`.
    let console: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("CONSOLE") || line.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console output: {console:#?}");

    assert!(dom.contains("<h1 id=\"gateway\">e2e</h1>"), "{dom}");
    assert!(dom.contains("sha256:"), "the provenance is shown");
    // The route table, from /routes, with the live total from /status.
    assert!(
        dom.contains("<td>get-user</td><td>GET HEAD</td><td>*</td><td>/users/{id}</td>"),
        "{dom}"
    );
    let row = dom
        .split("<tr>")
        .find(|row| row.starts_with("<td>get-user</td>"))
        .expect("the get-user row");
    assert!(row.ends_with("<td class=\"num\">5</td></tr>"), "{row}");
    assert!(dom.contains("<td>office</td>"), "every route is listed");
    assert!(
        dom.contains("<td>users</td><td>127.0.0.1:"),
        "upstream targets"
    );
    assert!(dom.contains("id=\"uptime\">"), "{dom}");
    assert!(
        dom.contains("<span id=\"error\"></span>"),
        "no error shown: {dom}"
    );

    let shot = tokio::task::spawn_blocking({
        let arg = format!("--screenshot={}", screenshot.display());
        let (dir, page) = (dir.to_path_buf(), page.clone());
        move || chromium(&dir, &page, &arg).output()
    })
    .await
    .expect("thread")
    .expect("chromium");
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a rendered page, not a blank one: {} bytes",
        png.len()
    );
}

/// An admin address from the environment that leaves this host is refused at start-up
/// without `expose = true` (the build refuses a literal one, G1101).
#[test]
fn start_up_refuses_an_exposed_admin_address_it_was_not_allowed() {
    let unused = || format!("http://{}", refused_addr());
    let env = [
        ("USERS_A", unused()),
        ("USERS_B", unused()),
        ("ORDERS", unused()),
        ("DEAD", unused()),
        ("STALLED", unused()),
        ("SCRIPTED", unused()),
        ("ADMIN_BIND", "0.0.0.0:0".to_owned()),
    ];
    let logs = match Gateway::start(BUILD_RS_GATEWAY, &env) {
        Ok(_) => panic!("the gateway started with its admin listener on 0.0.0.0"),
        Err(logs) => logs,
    };
    assert!(
        logs.contains("which is not loopback, only with `expose = true`"),
        "{logs}"
    );
}
