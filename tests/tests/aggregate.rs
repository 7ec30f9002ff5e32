//! Aggregate routes end to end: the gateway of `gateways/aggregate.toml`, three real
//! JSON backends on loopback, and a real client.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::json::{AggregateGateway as Setup, Answer, Gzip, MOBILE_KEY};

/// The backends' usual answers: a user, their orders, recommendations.
fn usual(setup: &Setup, delay: Duration) {
    setup.users.on(
        "/users/7",
        Answer::json(json!({
            "id": 7, "name": "Ada", "email": "ada@example.test",
            "address": {"city": "London", "street": "1 Lane"}
        }))
        .after(delay),
    );
    setup.orders.on(
        "/orders",
        Answer::json(json!({
            "items": [{"id": 1, "price": 3}, {"id": 2, "price": 4}],
            "total": 7, "cursor": "abc"
        }))
        .after(delay),
    );
    setup.recs.on(
        "/recs/7",
        Answer::json(json!([{"sku": "a", "debug": 1}, {"sku": "b", "debug": 2}])).after(delay),
    );
}

const KEY: (&str, &str) = ("x-api-key", MOBILE_KEY);

/// Three backends that each take 200 ms answer in well under 400 ms together, and
/// each answer is shaped by its call's rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_calls_run_at_once_and_are_shaped() {
    let setup = Setup::start(&[], 1).await;
    usual(&setup, Duration::from_millis(200));
    let started = Instant::now();
    let reply = setup
        .get("/dashboard/7?page=2", &[KEY, ("accept-language", "de")])
        .await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        took < Duration::from_millis(380),
        "took {took:?}: not concurrent"
    );
    assert_eq!(
        reply.json(),
        json!({
            "user": {"id": 7, "name": "Ada", "address": {"city": "London"}},
            "orders": {"items": [{"id": 1}, {"id": 2}], "total": 7},
            "recs": [{"sku": "a"}, {"sku": "b"}]
        })
    );
    // In the order the configuration lists the calls.
    assert!(reply.body.starts_with("{\"user\":"), "{}", reply.body);
    assert!(reply.headers.get("x-gateway-partial").is_none());
    assert_eq!(reply.headers["content-type"], "application/json");
    // Each backend got its own target, the route's values filled in, and only the
    // fields it is given: the named one, and the identity the gateway established.
    let asked = setup.orders.asked();
    assert_eq!(asked[0].target, "/orders?user=7&page=2");
    let user = &setup.users.asked()[0];
    assert_eq!(user.target, "/users/7");
    assert_eq!(user.headers["accept-language"], "de");
    assert_eq!(user.headers["x-consumer"], "mobile");
    assert!(
        user.headers.get("x-api-key").is_none(),
        "the credential is the gateway's"
    );
    assert!(
        setup.orders.asked()[0]
            .headers
            .get("accept-language")
            .is_none()
    );
}

/// Field rules cut an answer's text as the backend wrote it: a repeated name stays
/// repeated and shaped alike (a reader takes the last), an escaped name is matched by
/// what it reads as, and a number past `f64` that a rule keeps passes as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cut_as_written() {
    let setup = Setup::start(&[], 1).await;
    usual(&setup, Duration::ZERO);
    let raw = |body: &str| Answer {
        status: 200,
        content_type: "application/json",
        body: body.to_owned(),
        delay: Duration::ZERO,
        fields: Vec::new(),
    };
    setup.users.on(
        "/users/7",
        raw(
            r#"{"id": 7, "name": "Old", "address": {"city": "Paris", "street": "x"},
               "n\u0061me": "Ada", "address": {"city": "London", "zip": 1}, "score": 1e400}"#,
        ),
    );
    setup.recs.on(
        "/recs/7",
        raw(r#"[ {"sku": "a", "debug": "\udfff", "rank": 1e400} ]"#),
    );
    let reply = setup.get("/dashboard/7?page=1", &[KEY]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains(r#""recs":[{"sku":"a","rank":1e400}]"#),
        "{}",
        reply.body
    );
    let (user, _) = reply
        .body
        .strip_prefix(r#"{"user":"#)
        .and_then(|rest| rest.split_once(r#","orders""#))
        .expect("the user, then the orders");
    let user: serde_json::Value = serde_json::from_str(user).expect("the user's JSON");
    assert_eq!(
        user,
        json!({"id": 7, "name": "Ada", "address": {"city": "London"}})
    );
    assert!(
        reply.body.contains(r#""name":"Old""#) && reply.body.contains(r#"{"city":"Paris"}"#),
        "{}",
        reply.body
    );
}

/// An optional call that fails takes its fallback, and the response says so in a
/// field and in `_errors`; a slow one is cut off at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_calls_degrade_in_the_open() {
    let setup = Setup::start(&[], 1).await;
    usual(&setup, Duration::ZERO);
    setup.recs.on(
        "/recs/7",
        Answer::json(json!([{"sku": "late"}])).after(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let reply = setup.get("/dashboard/7", &[KEY]).await;
    assert!(started.elapsed() < Duration::from_millis(1_500));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["x-gateway-partial"], "recs");
    let body = reply.json();
    assert_eq!(body["recs"], json!([]), "the fallback");
    assert_eq!(body["_errors"], json!({"recs": "timed out"}));
    assert_eq!(body["user"]["name"], "Ada");

    setup.recs.on(
        "/recs/7",
        Answer {
            status: 503,
            content_type: "application/json",
            body: "{}".to_owned(),
            delay: Duration::ZERO,
            fields: Vec::new(),
        },
    );
    let body = setup.get("/dashboard/7", &[KEY]).await.json();
    assert_eq!(body["_errors"], json!({"recs": "answered 503"}));
}

/// A required call that fails, in any way, fails the response with 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_call_that_fails_fails_the_response() {
    let setup = Setup::start(&[], 1).await;
    usual(&setup, Duration::ZERO);
    let cases = [
        (
            "not JSON",
            Answer {
                status: 200,
                content_type: "text/html",
                body: "<html>".to_owned(),
                delay: Duration::ZERO,
                fields: Vec::new(),
            },
            "answer is not JSON",
        ),
        (
            "too large",
            Answer::json(json!({"pad": "x".repeat(2_000)})),
            "answer too large",
        ),
        (
            "too slow",
            Answer::json(json!({})).after(Duration::from_secs(2)),
            "timed out",
        ),
        (
            "an error",
            Answer {
                status: 500,
                content_type: "application/json",
                body: "{}".to_owned(),
                delay: Duration::ZERO,
                fields: Vec::new(),
            },
            "answered 500",
        ),
    ];
    for (case, answer, why) in cases {
        setup.orders.on("/broken/7", answer);
        let reply = setup.get("/strict/7", &[]).await;
        assert_eq!(reply.status, 502, "{case}: {}", reply.body);
        assert_eq!(
            reply.json()["error"],
            format!("backend `orders` {why}"),
            "{case}"
        );
    }
}

/// `merge = "flat"`: each answer's members at the top level, the first call listed
/// keeping a name both have, whichever answered first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_merge_is_deterministic() {
    let setup = Setup::start(&[], 1).await;
    setup.users.on(
        "/users/7",
        Answer::json(json!({"id": 7, "name": "Ada", "theme": "users'"}))
            .after(Duration::from_millis(100)),
    );
    setup.recs.on(
        "/prefs/7",
        Answer::json(json!({"theme": "dark", "lang": "en", "_errors": "forged"})),
    );
    let reply = setup.get("/profile/7", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"id": 7, "name": "Ada", "theme": "users'", "lang": "en"})
    );
    // The optional call's fallback is merged the same way.
    setup.recs.on(
        "/prefs/7",
        Answer::json(json!(null)).after(Duration::from_secs(5)),
    );
    let reply = setup.get("/profile/7", &[]).await;
    assert_eq!(reply.headers["x-gateway-partial"], "prefs");
    let body = reply.json();
    assert_eq!(body["theme"], "users'");
    assert_eq!(body["_errors"]["prefs"], "timed out");
}

/// Large answers reach the client whole, passed on as the backends wrote them (shared
/// with the read buffer, not copied) between the gateway's own text: a whole answer
/// under its key, and the members of one merged flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_pass_through_whole() {
    let setup = Setup::start(&[], 1).await;
    let user = json!({"id": 7, "bio": "é".repeat(60_000), "seen": (0..9_000).collect::<Vec<_>>()});
    let prefs = json!({"theme": "dark", "history": vec!["x".repeat(100); 500]});
    setup.users.on("/users/7", Answer::json(user.clone()));
    setup.recs.on("/prefs/7", Answer::json(prefs.clone()));
    let reply = setup.get("/profile/7", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut merged = user.as_object().expect("an object").clone();
    merged.extend(prefs.as_object().expect("an object").clone());
    assert_eq!(reply.json(), serde_json::Value::Object(merged));
    assert_eq!(
        reply.headers["content-length"],
        reply.body.len().to_string()
    );

    setup.orders.on("/broken/7", Answer::json(json!({"n": 1})));
    let reply = setup.get("/strict/7", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"user": user, "orders": {"n": 1}}));
    assert_eq!(
        reply.headers["content-length"],
        reply.body.len().to_string()
    );
}

/// A request the route's policies refuse never reaches a backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_calls_no_backend() {
    let setup = Setup::start(&[], 1).await;
    usual(&setup, Duration::ZERO);
    let reply = setup.get("/dashboard/7", &[]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(setup.users.asked().is_empty() && setup.orders.asked().is_empty());
}

/// `target`, `flatten`, `rename` and `group`: a mobile client's slim answer out of
/// a nested one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_picked_flattened_renamed_and_grouped() {
    let setup = Setup::start(&[], 1).await;
    setup.orders.on(
        "/orders",
        Answer::json(json!({"orders": [
            {"id": 11, "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]},
            {"id": 12, "lines": [{"sku": "c", "qty": 3}]}
        ]})),
    );
    let reply = setup.get("/lines/7", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({
            "lines": [
                {"product": "a", "qty": 1},
                {"product": "b", "qty": 2},
                {"product": "c", "qty": 3}
            ],
            "first_order": 11
        })
    );
}

/// Calls that use values of an earlier answer run after it, in one stage together;
/// the others run beside that earlier call. Values go into targets encoded and into
/// a JSON body as strings, or as the JSON they are where a string is one value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependent_calls_run_in_stages() {
    let setup = Setup::start(&[], 1).await;
    let delay = Duration::from_millis(200);
    setup.users.on(
        "/users/7",
        Answer::json(json!({"name": "Ada L", "team": {"id": "t 9", "size": 4}, "email": "a@x"}))
            .after(delay),
    );
    setup
        .recs
        .on("/recs/7", Answer::json(json!(["r"])).after(delay));
    setup.orders.on(
        "/teams/t%209",
        Answer::json(json!({"name": "Core"})).after(delay),
    );
    setup
        .orders
        .on("/mates", Answer::json(json!(["Bo"])).after(delay));
    let started = Instant::now();
    let reply = setup.get("/team/7?sort=a%26b", &[]).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({
            "user": {"name": "Ada L", "team": {"id": "t 9"}},
            "recs": ["r"],
            "team": {"name": "Core"},
            "mates": ["Bo"]
        })
    );
    // Two stages of 200 ms, each stage's calls at once.
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(580),
        "took {took:?}: two stages, each concurrent"
    );
    let user = &setup.users.asked()[0];
    let recs = &setup.recs.asked()[0];
    let asked = setup.orders.asked();
    let team = asked
        .iter()
        .find(|a| a.target.starts_with("/teams"))
        .expect("team");
    let mates = asked
        .iter()
        .find(|a| a.target.starts_with("/mates"))
        .expect("mates");
    assert!(recs.at.duration_since(user.at) < Duration::from_millis(100));
    assert!(team.at.duration_since(user.at) >= delay);
    assert!(mates.at.duration_since(team.at) < Duration::from_millis(100));
    assert_eq!(team.target, "/teams/t%209");
    assert_eq!(mates.target, "/mates?team=t%209&sort=a%26b");
    assert_eq!(team.method, http::Method::POST);
    assert_eq!(team.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&team.body).expect("JSON body");
    assert_eq!(
        body,
        json!({
            "member": "Ada L", "user": "7", "team": {"id": "t 9"},
            "note": "asked by Ada L", "tags": ["x", 1, true]
        })
    );
    assert_eq!(mates.method, http::Method::GET);
    assert!(mates.body.is_empty());
}

/// A call whose value is missing from the answer it depends on is not made: it
/// fails, as its `required` says (here the response, with 502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_call_without_its_value_is_not_made() {
    let setup = Setup::start(&[], 1).await;
    setup
        .users
        .on("/users/7", Answer::json(json!({"name": "Ada"})));
    setup.recs.on("/recs/7", Answer::json(json!([])));
    let reply = setup.get("/team/7", &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(
        reply.json()["error"],
        "backend `team` `{user.team.id}` has no value to use"
    );
    assert!(
        setup.orders.asked().is_empty(),
        "no dependent call was made"
    );
}

/// The response is the gateway's own, so it tells caches what they may do: never more
/// than the strictest answer allows, `private` for an authenticated client (a CDN
/// must not hand one user's dashboard to the next), `no-store` when degraded (no
/// cache serves a fallback once the backend is back), and `Vary` with the client
/// fields the calls pass on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_are_told_what_the_answers_allow() {
    let setup = Setup::start(&[], 1).await;
    let user = json!({"id": 7, "name": "Ada"});
    setup.users.on(
        "/users/7",
        Answer::json(user.clone()).with("cache-control", "public, max-age=600, s-maxage=30"),
    );
    setup.recs.on(
        "/prefs/7",
        Answer::json(json!({"theme": "dark"})).with("Cache-Control", "max-age=60"),
    );
    let header = |reply: &support::Reply, name: &str| {
        reply
            .headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII").to_owned())
    };
    // A public route: the shortest lifetimes, each for its caches.
    let reply = setup.get("/profile/7", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        header(&reply, "cache-control").as_deref(),
        Some("max-age=60, s-maxage=30")
    );
    assert_eq!(
        header(&reply, "vary"),
        None,
        "the calls pass on no client field"
    );
    // One answer that may not be stored makes the whole so.
    setup.recs.on(
        "/prefs/7",
        Answer::json(json!({})).with("cache-control", "no-store"),
    );
    let reply = setup.get("/profile/7", &[]).await;
    assert_eq!(header(&reply, "cache-control").as_deref(), Some("no-store"));
    // Degraded: the fallback must not outlive the failure.
    setup.recs.on(
        "/prefs/7",
        Answer {
            status: 500,
            ..Answer::json(json!({}))
        },
    );
    let reply = setup.get("/profile/7", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers.contains_key("x-gateway-partial"));
    assert_eq!(header(&reply, "cache-control").as_deref(), Some("no-store"));
    // Answers that say nothing: neither does the response.
    setup.users.on("/users/7", Answer::json(user));
    setup.recs.on("/prefs/7", Answer::json(json!({})));
    let reply = setup.get("/profile/7", &[]).await;
    assert_eq!(header(&reply, "cache-control"), None);
    // An authenticated route whose calls pass on `Accept-Language`.
    usual(&setup, Duration::ZERO);
    let reply = setup.get("/dashboard/7", &[KEY]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(header(&reply, "cache-control").as_deref(), Some("private"));
    assert_eq!(header(&reply, "vary").as_deref(), Some("accept-language"));
}

/// The calls never send the client's body, but it is read as a proxied route's is:
/// a body that looks like a request is a body, not a second request, and the
/// connection goes on; badly framed body bytes get 400 before any backend is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_body_is_read_as_framed() {
    let setup = Setup::start(&[], 1).await;
    setup.users.on("/users/7", Answer::json(json!({"id": 7})));
    setup.users.on("/users/8", Answer::json(json!({"id": 8})));
    setup.recs.on("/prefs/7", Answer::json(json!({})));
    setup.recs.on("/prefs/8", Answer::json(json!({})));
    let addr = setup.gateway.addr("main");
    let inner = "GET /strict/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = format!(
        "POST /profile/7 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}\
         GET /profile/8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        inner.len()
    );
    let out = tokio::task::spawn_blocking(move || support::raw(addr, request.as_bytes()))
        .await
        .expect("thread");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(
        out.contains(r#""id":7"#) && out.contains(r#""id":8"#),
        "{out}"
    );
    let asked: Vec<String> = setup.users.asked().into_iter().map(|a| a.target).collect();
    assert_eq!(asked, ["/users/7", "/users/8"]);

    let bad = b"POST /profile/7 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n";
    let out = tokio::task::spawn_blocking(move || support::raw(addr, bad))
        .await
        .expect("thread");
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(out.contains("request body could not be read"), "{out}");
    assert_eq!(setup.users.asked().len(), 2, "no backend asked");
}

/// A query value in a backend's path must be one whole segment: `..`, an encoded
/// slash or backslash, a control character or nothing at all would name another
/// resource on the backend, so the request is refused before any call is made.
/// The same value in the target's query is only data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_value_in_a_path_is_one_segment() {
    let setup = Setup::start(&[], 1).await;
    setup
        .users
        .on("/files/a%20b.pdf/meta", Answer::json(json!({"size": 1})));
    let reply = setup.get("/files?name=a%20b.pdf&v=..%2F", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"file": {"size": 1}}));
    assert_eq!(
        setup.users.asked()[0].target,
        "/files/a%20b.pdf/meta?v=..%2F"
    );
    for query in [
        "name=..",
        "name=%2e%2E",
        "name=.",
        "name=",
        "v=1",
        "name=a%2Fb",
        "name=a%5Cb",
        "name=a%00",
        "name=a%0Ab",
    ] {
        let reply = setup.get(&format!("/files?{query}"), &[]).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(
            reply.json()["error"],
            "a query value a backend path uses is missing or not one path segment",
            "{query}"
        );
    }
    assert_eq!(
        setup.users.asked().len(),
        1,
        "no backend saw a refused request"
    );
}

/// An answer's value a dependent call puts in its path must be one segment too: a
/// backend's data (which users may have written) cannot steer the call elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_value_in_a_path_is_one_segment() {
    let setup = Setup::start(&[], 1).await;
    setup.recs.on("/recs/7", Answer::json(json!([])));
    for team in ["..", ".", "", "a/../../admin", "a\\b"] {
        setup.users.on(
            "/users/7",
            Answer::json(json!({"name": "Ada", "team": {"id": team}})),
        );
        let reply = setup.get("/team/7", &[]).await;
        assert_eq!(reply.status, 502, "{team:?}: {}", reply.body);
        assert_eq!(
            reply.json()["error"],
            "backend `team` `{user.team.id}` is not one path segment",
            "{team:?}"
        );
    }
    // `mates` has the value in its query, where it is data, and is asked.
    let asked = setup.orders.asked();
    assert!(
        asked.iter().all(|a| a.target.starts_with("/mates?team=")),
        "{:?}",
        asked.iter().map(|a| &a.target).collect::<Vec<_>>()
    );
    assert!(
        asked
            .iter()
            .any(|a| a.target == "/mates?team=a%2F..%2F..%2Fadmin&sort="),
        "in a query the value is encoded, not refused"
    );
}

/// Body rules on a proxied route: JSON both ways is shaped, anything else passes
/// untouched, and what cannot be read within the bound is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_rules_shape_json_both_ways() {
    let setup = Setup::start(&[], 1).await;
    let user = json!({
        "id": 7, "name": "Ada", "email": "ada@example.test",
        "cards": [{"last4": "4242", "number": "4242424242424242"}]
    });
    setup.users.on("/users/7", Answer::json(user));
    let reply = setup.get("/accounts/7", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"id": 7, "full_name": "Ada", "cards": [{"last4": "4242"}]})
    );

    // The client's JSON loses what `deny` names; the upstream gets the new length.
    let post = |body: &str, content_type: &str| {
        http::Request::post(setup.gateway.url("/accounts/7"))
            .header("content-type", content_type)
            .body(support::TestBody::Full(http_body_util::Full::new(
                bytes::Bytes::from(body.to_owned()),
            )))
            .expect("request")
    };
    let sent =
        r#"{"name": "Ada", "password": "hunter2", "cards": [{"number": "4242", "nick": "main"}]}"#;
    let reply = support::send(&setup.client, post(sent, "application/json; charset=utf-8")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let asked = setup.users.asked().pop().expect("the upstream was asked");
    let got: serde_json::Value = serde_json::from_slice(&asked.body).expect("JSON");
    assert_eq!(got, json!({"name": "Ada", "cards": [{"nick": "main"}]}));
    assert_eq!(
        asked.headers["content-length"],
        asked.body.len().to_string()
    );

    // Not JSON: passes as it came.
    let reply = support::send(
        &setup.client,
        post("password=x", "application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        &setup.users.asked().pop().expect("asked").body[..],
        b"password=x"
    );

    // A JSON body that is not JSON, or over the bound: refused, the upstream not asked.
    let before = setup.users.asked().len();
    let reply = support::send(&setup.client, post("{\"name\":", "application/json")).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["error"], "request body is not JSON");
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(2_000));
    let reply = support::send(&setup.client, post(&big, "application/json")).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(
        setup.users.asked().len(),
        before,
        "refused before the upstream"
    );

    // An answer that is not JSON passes; a JSON one that is broken or too large is 502.
    for (answer, status) in [
        (
            Answer {
                status: 200,
                content_type: "text/plain",
                body: "plain".to_owned(),
                delay: Duration::ZERO,
                fields: Vec::new(),
            },
            200,
        ),
        (
            Answer {
                status: 200,
                content_type: "application/json",
                body: "{\"id\":".to_owned(),
                delay: Duration::ZERO,
                fields: Vec::new(),
            },
            502,
        ),
        (Answer::json(json!({"pad": "x".repeat(2_000)})), 502),
        (
            Answer {
                status: 404,
                content_type: "application/json",
                body: "{\"error\":\"no such user\",\"trace\":1}".to_owned(),
                delay: Duration::ZERO,
                fields: Vec::new(),
            },
            404,
        ),
    ] {
        let body = answer.body.clone();
        setup.users.on("/users/7", answer);
        let reply = setup.get("/accounts/7", &[]).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        if status != 502 {
            assert_eq!(reply.body, body, "passed untouched");
        }
    }
}

/// Rules read JSON as it is, and compressed JSON would pass them unshaped: the
/// upstream of a route with a response rule is asked for answers without a coding
/// (though the client, as every HTTP library does, accepts gzip), an upstream that
/// compresses anyway is a 502, and a compressed JSON request body is a 415 the
/// upstream never sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_rules_are_not_stepped_around_by_compression() {
    let setup = Setup::start(&[], 1).await;
    let user = json!({"id": 7, "name": "Ada", "email": "ada@example.test", "cards": []});
    setup.users.on("/users/7", Answer::json(user));
    setup.users.gzip(Gzip::WhenAsked);
    let gzip_accepted = [("accept-encoding", "gzip, deflate, br")];

    // The backend compresses when asked, as seen without the gateway.
    let direct = http::Request::get(format!("{}/users/7", setup.users.url()))
        .header("accept-encoding", "gzip")
        .body(support::TestBody::empty())
        .expect("request");
    let direct = support::send(&setup.client, direct).await;
    assert_eq!(direct.headers["content-encoding"], "gzip");

    let reply = setup.get("/accounts/7", &gzip_accepted).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"id": 7, "full_name": "Ada", "cards": []})
    );
    assert!(!reply.headers.contains_key("content-encoding"));
    let asked = setup.users.asked().pop().expect("the upstream was asked");
    let accepted: Vec<_> = asked.headers.get_all("accept-encoding").iter().collect();
    assert_eq!(accepted, ["identity"]);

    // An upstream that compresses whatever it is asked: its answer cannot be shaped.
    setup.users.gzip(Gzip::Always);
    let reply = setup.get("/accounts/7", &gzip_accepted).await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(
        reply.json()["error"],
        "upstream response has a content coding"
    );

    // The client's compressed JSON would carry `password` past `deny`.
    let before = setup.users.asked().len();
    let compressed = support::json::gzip(br#"{"name": "Ada", "password": "hunter2"}"#);
    let post = http::Request::post(setup.gateway.url("/accounts/7"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(support::TestBody::Full(http_body_util::Full::new(
            compressed,
        )))
        .expect("request");
    let reply = support::send(&setup.client, post).await;
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert_eq!(reply.json()["error"], "request body has a content coding");
    assert_eq!(
        setup.users.asked().len(),
        before,
        "refused before the upstream"
    );
}

/// `response_body` on an aggregate route shapes the merged response. Its calls ask
/// for answers without a content coding, so backends that compress when asked
/// answer JSON the gateway can read, whatever the client accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_response_is_shaped_as_a_whole() {
    let setup = Setup::start(&[], 1).await;
    usual(&setup, Duration::ZERO);
    setup.users.gzip(Gzip::WhenAsked);
    setup.orders.gzip(Gzip::WhenAsked);
    let reply = setup
        .get("/summary/7", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["user"]["name"], "Ada");
    assert!(body["user"].get("email").is_none(), "{body}");
    assert_eq!(body["orders"]["total"], 7);
    assert!(body["orders"].get("cursor").is_none(), "{body}");
    for backend in [&setup.users, &setup.orders] {
        let asked = backend.asked().pop().expect("called");
        assert_eq!(asked.headers["accept-encoding"], "identity");
    }
}
