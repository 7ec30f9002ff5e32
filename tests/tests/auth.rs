//! Authentication and authorization end to end: the gateway built from
//! `gateways/auth.toml`, keys generated for each run, tokens signed by the test, and a
//! real upstream that records what reached it. Every refusal is checked at the
//! upstream too: a refused request must never arrive there.

mod support;

use std::time::Duration;

use http::Request;
use serde_json::{Value, json};
use support::auth::{
    ALICE_KEY, AUTH_GATEWAY, BOB_KEY, INTROSPECTION_SECRET, INVALID, SECRET, Setup, refused,
};
use support::jwt::{self, Keys, b64, claims, hmac, hmac_text, hmac_with_header, now};
use support::tls as files;
use support::{Gateway, Reply, TestBody, send};

/// A valid HS256 token passes; its claims reach the upstream as headers (nested
/// paths, arrays joined) and the token does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_passes_with_its_identity() {
    let setup = Setup::start("valid").await;
    let mut claims = claims("user-42");
    claims["realm_access"] = json!({"roles": ["admin", "ops"]});
    claims["tenant"] = json!({"id": 7});
    for alg in ["HS256", "HS384", "HS512"] {
        let token = hmac(SECRET.as_bytes(), alg, &claims);
        let headers = setup.passed(&setup.bearer("/hs/orders", &token).await);
        assert_eq!(headers["x-user-id"], "user-42", "{alg}");
        assert_eq!(headers["x-roles"], "admin,ops");
        assert_eq!(headers["x-tenant"], r#"{"id":7}"#);
        assert!(
            headers.get("authorization").is_none(),
            "the token was forwarded"
        );
    }
    // The scheme in any case; the same token again comes from the cache.
    let token = hmac(SECRET.as_bytes(), "HS256", &claims);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let reply = setup
            .get("/hs/x", &[("authorization", &format!("{scheme} {token}"))])
            .await;
        assert_eq!(setup.passed(&reply)["x-user-id"], "user-42");
    }
}

/// Header rules substitute claims: a rule after the token's step reads the fields
/// its `forward_claims` set, and a client's own copies of them never get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_substitute_verified_claims() {
    let setup = Setup::start("audit").await;
    let mut claims = claims("user-42");
    claims["tenant"] = json!("acme");
    let token = hmac(SECRET.as_bytes(), "HS256", &claims);
    let reply = setup
        .get(
            "/audited/orders/7",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-user-id", "forged"),
                ("x-audit", "forged"),
            ],
        )
        .await;
    let headers = setup.passed(&reply);
    assert_eq!(headers["x-audit"], "user-42@acme on orders/7");
    assert_eq!(headers["x-user-id"], "user-42");
}

/// Every asymmetric algorithm, each with its own key; a token signed by one key is
/// refused by a route that verifies with another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_asymmetric_algorithm_verifies() {
    let setup = Setup::start("asymmetric").await;
    let claims = json!({"sub": "svc", "exp": now() + 300});
    for (route, algs) in [
        (
            "/rsa/a",
            &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"][..],
        ),
        ("/p256/a", &["ES256"]),
        ("/p384/a", &["ES384"]),
        ("/ed25519/a", &["EdDSA"]),
    ] {
        for alg in algs {
            let reply = setup.bearer(route, &setup.keys.sign(alg, &claims)).await;
            assert_eq!(setup.passed(&reply)["x-user-id"], "svc", "{alg}");
        }
    }
    let before = setup.upstream.seen().len();
    for (route, alg) in [
        ("/p256/a", "ES384"),
        ("/rsa/a", "ES256"),
        ("/ed25519/a", "RS256"),
    ] {
        let reply = setup.bearer(route, &setup.keys.sign(alg, &claims)).await;
        assert_eq!(reply.status, 401, "{alg} on {route}");
    }
    assert_eq!(setup.upstream.seen().len(), before);
}

/// The attacks of the brief, each refused before the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_broken_tokens_never_reach_the_upstream() {
    let setup = Setup::start("attacks").await;
    let good = claims("mallory");
    let secret = SECRET.as_bytes();
    let valid = hmac(secret, "HS256", &good);
    let (head, rest) = valid.split_once('.').expect("token");
    let (_, signature) = rest.split_once('.').expect("token");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        hmac(secret, "HS256", &claims)
    };
    let mut cases: Vec<(&str, String)> = vec![
        ("not a JWT", "abc".to_owned()),
        ("two parts", format!("{head}.{}", b64("{}"))),
        (
            "header not JSON",
            format!("{}.{}.{signature}", b64("nope"), b64(good.to_string())),
        ),
        (
            "signature stripped",
            format!("{head}.{}.", b64(good.to_string())),
        ),
        (
            "signature of another secret",
            hmac(
                b"another-secret-another-secret-another-secret-0000",
                "HS256",
                &good,
            ),
        ),
        ("payload tampered", {
            let mut admin = good.clone();
            admin["sub"] = json!("admin");
            format!("{head}.{}.{signature}", b64(admin.to_string()))
        }),
        ("expired", with(&|c| c["exp"] = json!(now() - 60))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 60))),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.test/")),
        ),
        ("wrong audience", with(&|c| c["aud"] = json!(["other"]))),
        (
            "no issuer",
            with(&|c| drop(c.as_object_mut().map(|o| o.remove("iss")))),
        ),
        (
            "no audience",
            with(&|c| drop(c.as_object_mut().map(|o| o.remove("aud")))),
        ),
        (
            "duplicate exp",
            hmac_text(
                secret,
                &good
                    .to_string()
                    .replacen('{', &format!("{{\"exp\":{},", now() + 600), 1),
            ),
        ),
        (
            "no exp",
            with(&|c| drop(c.as_object_mut().map(|o| o.remove("exp")))),
        ),
        (
            "exp as text",
            with(&|c| c["exp"] = json!((now() + 300).to_string())),
        ),
        (
            "required claim missing",
            with(&|c| drop(c.as_object_mut().map(|o| o.remove("sub")))),
        ),
        (
            "CR LF in a forwarded claim",
            with(&|c| c["sub"] = json!("x\r\nX-Admin: 1")),
        ),
        (
            "NUL in a forwarded claim",
            with(&|c| c["sub"] = json!("x\u{0}y")),
        ),
        (
            "LF in a forwarded array",
            with(&|c| c["realm_access"] = json!({"roles": ["a\nb"]})),
        ),
        (
            "oversized",
            format!("{head}.{}.{signature}", "A".repeat(9000)),
        ),
        (
            "algorithm outside the list",
            setup.keys.sign("RS256", &good),
        ),
        (
            "HS256 signed with the RSA public key as the secret",
            hmac(setup.keys.rsa_public_pem.as_bytes(), "HS256", &good),
        ),
    ];
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": none, "typ": "JWT"});
        cases.push((
            "alg none",
            format!("{}.", jwt::signing_input(&header, &good)),
        ));
        cases.push(("alg none, signed", hmac_with_header(secret, &header, &good)));
    }
    for (case, token) in &cases {
        let reply = setup.bearer("/hs/orders", token).await;
        refused(&setup, &reply, 401, INVALID, case);
        let why = match *case {
            "signature stripped" | "signature of another secret" | "payload tampered" => {
                "invalid token signature"
            }
            "HS256 signed with the RSA public key as the secret" => "invalid token signature",
            "expired" => "token expired",
            "not yet valid" => "token not yet valid",
            "wrong issuer" | "no issuer" => "wrong token issuer",
            "wrong audience" | "no audience" => "wrong token audience",
            "no exp" | "required claim missing" => "token lacks a required claim",
            "oversized" => "credential too large",
            "algorithm outside the list" | "alg none" | "alg none, signed" => {
                "token algorithm not allowed"
            }
            c if c.contains("forwarded") => "a forwarded claim holds control characters",
            _ => "malformed token",
        };
        assert_eq!(reply.json()["error"], why, "{case}");
    }
    // The RSA route: a token the attacker MACs with the published public key.
    let confused = hmac(setup.keys.rsa_public_pem.as_bytes(), "HS256", &good);
    refused(
        &setup,
        &setup.bearer("/rsa/x", &confused).await,
        401,
        INVALID,
        "HS/RS confusion",
    );
    // No credential, or one the route does not read.
    refused(
        &setup,
        &setup.get("/hs/x", &[]).await,
        401,
        "Bearer",
        "missing",
    );
    let basic = setup
        .get("/hs/x", &[("authorization", "Basic dXNlcjpwYXNz")])
        .await;
    refused(&setup, &basic, 401, "Bearer", "basic");
    let in_query = setup.get(&format!("/hs/x?access_token={valid}"), &[]).await;
    refused(&setup, &in_query, 401, "Bearer", "token in the query only");
    let spaced = setup.get("/hs/x", &[("authorization", "Bearer a b")]).await;
    refused(&setup, &spaced, 401, INVALID, "two tokens in one field");
    // Two credentials are one too many, even when both are valid.
    let auth = format!("Bearer {valid}");
    let twice = setup
        .get(
            "/hs/x",
            &[("authorization", &auth), ("Authorization", &auth)],
        )
        .await;
    refused(
        &setup,
        &twice,
        400,
        "Bearer error=\"invalid_request\"",
        "two Authorization fields",
    );
    // The gateway stays up and still serves a good token.
    setup.passed(&setup.bearer("/hs/x", &valid).await);
}

/// A cached token stops working the second it expires (the policy allows no skew).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_expires() {
    let setup = Setup::start("expiry").await;
    let token = setup
        .keys
        .sign("ES256", &json!({"sub": "brief", "exp": now() + 2}));
    setup.passed(&setup.bearer("/p256/x", &token).await);
    setup.passed(&setup.bearer("/p256/x", &token).await);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let seen = setup.upstream.seen().len();
    let reply = setup.bearer("/p256/x", &token).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.json()["error"], "token expired");
    assert_eq!(setup.upstream.seen().len(), seen);
}

/// Scopes, roles and claim values: 403 for a valid token without them, with
/// `insufficient_scope` when the scope is what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_reads_scopes_roles_and_claims() {
    let setup = Setup::start("authorize").await;
    let grant = |scope: Value, roles: Value, tenant: &str| {
        let mut c = claims("user-1");
        c["scp"] = scope;
        c["realm_access"] = json!({"roles": roles});
        c["tenant"] = json!(tenant);
        hmac(SECRET.as_bytes(), "HS256", &c)
    };
    let ok = grant(json!(["orders:read", "x"]), json!(["admin"]), "acme");
    setup.passed(&setup.bearer("/admin/x", &ok).await);
    let as_text = {
        let mut c = claims("user-1");
        c["scope"] = json!("profile orders:read");
        c["realm_access"] = json!({"roles": "admin"});
        c["tenant"] = json!(["x", "globex"]);
        hmac(SECRET.as_bytes(), "HS256", &c)
    };
    setup.passed(&setup.bearer("/admin/x", &as_text).await);
    let seen = setup.upstream.seen().len();
    for (case, token, challenge) in [
        (
            "no scope",
            grant(json!([]), json!(["admin"]), "acme"),
            Some("Bearer error=\"insufficient_scope\""),
        ),
        (
            "no role",
            grant(json!(["orders:read"]), json!(["user"]), "acme"),
            None,
        ),
        (
            "wrong tenant",
            grant(json!(["orders:read"]), json!(["admin"]), "umbrella"),
            None,
        ),
    ] {
        let reply = setup.bearer("/admin/x", &token).await;
        assert_eq!(reply.status, 403, "{case}");
        assert_eq!(reply.json()["status"], 403);
        let header = reply
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii"));
        assert_eq!(header, challenge, "{case}");
    }
    assert_eq!(setup.upstream.seen().len(), seen);
}

/// API keys: by reference or by digest, from a header or the query, never forwarded;
/// the consumer's name and groups are what the upstream and the rules see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_identify_consumers() {
    let setup = Setup::start("api-keys").await;
    let headers = setup.passed(&setup.get("/keys/x", &[("x-api-key", ALICE_KEY)]).await);
    assert_eq!(headers["x-consumer"], "alice");
    assert!(headers.get("x-api-key").is_none(), "the key was forwarded");
    let headers = setup.passed(&setup.get("/keys/x", &[("X-API-Key", BOB_KEY)]).await);
    assert_eq!(headers["x-consumer"], "bob");
    let reply = setup
        .get(&format!("/query-keys/x?a=1&api_key={BOB_KEY}&b=2"), &[])
        .await;
    setup.passed(&reply);
    assert_eq!(setup.upstream.last().target, "/query-keys/x?a=1&b=2");
    // Percent-encoded, in the name or the key, it is the same parameter, as the
    // upstream would read it: still Bob's key, and still taken out.
    let encoded: String = BOB_KEY.bytes().map(|b| format!("%{b:02X}")).collect();
    let reply = setup
        .get(&format!("/query-keys/x?api%5Fkey={encoded}&b=2"), &[])
        .await;
    assert_eq!(setup.passed(&reply)["x-consumer"], "bob");
    assert_eq!(setup.upstream.last().target, "/query-keys/x?b=2");
    // Groups: Alice is a partner, Bob is not.
    setup.passed(&setup.get("/partners/x", &[("x-api-key", ALICE_KEY)]).await);
    let seen = setup.upstream.seen().len();
    let bob = setup.get("/partners/x", &[("x-api-key", BOB_KEY)]).await;
    assert_eq!(bob.status, 403);
    let mut off_by_one = ALICE_KEY.to_owned();
    off_by_one.pop();
    off_by_one.push('8');
    let wrong = setup.get("/keys/x", &[("x-api-key", &off_by_one)]).await;
    assert_eq!(
        (wrong.status.as_u16(), wrong.json()["error"].as_str()),
        (401, Some("unknown API key"))
    );
    assert_eq!(setup.get("/keys/x", &[]).await.status, 401);
    let two = setup
        .get(
            "/keys/x",
            &[("x-api-key", ALICE_KEY), ("x-api-key", BOB_KEY)],
        )
        .await;
    assert_eq!(two.status, 400);
    let two = setup
        .get(
            &format!("/query-keys/x?api_key={BOB_KEY}&api%5fkey={BOB_KEY}"),
            &[],
        )
        .await;
    assert_eq!(two.status, 400);
    assert_eq!(setup.upstream.seen().len(), seen);
}

/// `any`: the first policy whose credential is present decides, and a bad one is
/// refused, never skipped for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_takes_the_credential_presented() {
    let setup = Setup::start("any").await;
    let token = hmac(SECRET.as_bytes(), "HS256", &claims("tok-user"));
    let headers = setup.passed(&setup.bearer("/either/x", &token).await);
    assert_eq!(headers["x-user-id"], "tok-user");
    assert!(headers.get("x-consumer").is_none());
    let headers = setup.passed(&setup.get("/either/x", &[("x-api-key", BOB_KEY)]).await);
    assert_eq!(headers["x-consumer"], "bob");
    let seen = setup.upstream.seen().len();
    let none = setup.get("/either/x", &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.headers["www-authenticate"], "Bearer, ApiKey");
    let forged = hmac(
        b"not-the-secret-not-the-secret-not-the-secret-00",
        "HS256",
        &claims("x"),
    );
    let auth = format!("Bearer {forged}");
    let both = setup
        .get(
            "/either/x",
            &[("authorization", &auth), ("x-api-key", BOB_KEY)],
        )
        .await;
    assert_eq!(both.status, 401, "a bad token was skipped for a good key");
    assert_eq!(setup.upstream.seen().len(), seen);
}

/// External authorization: allowed with the service's fields, refused with the
/// service's answer, and a service that does not answer in time refuses (or, when
/// the policy fails open, lets through without the service's fields).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_authorization_decides() {
    let setup = Setup::start("ext-authz").await;
    let headers = setup.passed(
        &setup
            .get(
                "/authz/orders/7?x=1",
                &[
                    ("x-session", "good"),
                    ("authorization", "Bearer opaque"),
                    ("x-auth-user", "mallory"),
                    ("cookie", "c=1"),
                ],
            )
            .await,
    );
    let users: Vec<_> = headers.get_all("x-auth-user").iter().collect();
    assert_eq!(users, ["alice"]);
    assert!(
        headers.get("x-other").is_none(),
        "a field not configured was copied"
    );
    let asked = setup.authz.asked().pop().expect("the service was asked");
    assert_eq!(asked["x-asked-target"], "/check?service=orders");
    assert_eq!(asked["x-forwarded-method"], "GET");
    assert_eq!(asked["x-forwarded-uri"], "/authz/orders/7?x=1");
    assert_eq!(asked["authorization"], "Bearer opaque");
    assert_eq!(asked["x-forwarded-for"], "127.0.0.1");
    assert!(
        asked.get("cookie").is_none(),
        "a field not configured was sent to the service"
    );
    let seen = setup.upstream.seen().len();
    let refused = setup.get("/authz/x", &[("x-session", "expired")]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body, r#"{"login":"required"}"#);
    assert_eq!(
        refused.headers["www-authenticate"],
        "Basic realm=\"orders\""
    );
    assert!(refused.headers.get("x-internal").is_none());
    let redirected = setup.get("/authz/x", &[("x-session", "redirect")]).await;
    assert_eq!(
        (redirected.status.as_u16(), &redirected.headers["location"]),
        (302, &"/login".parse::<http::HeaderValue>().expect("value"))
    );
    let started = std::time::Instant::now();
    let slow = setup.get("/authz/x", &[("x-session", "slow")]).await;
    assert_eq!(slow.status, 503, "{}", slow.body);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the timeout did not hold"
    );
    assert_eq!(
        setup.upstream.seen().len(),
        seen,
        "a refused request reached the upstream"
    );
    // Failing open: through, without the service's fields.
    let headers = setup.passed(
        &setup
            .get(
                "/authz-open/x",
                &[("x-session", "slow"), ("x-auth-user", "mallory")],
            )
            .await,
    );
    assert!(headers.get("x-auth-user").is_none());
}

/// Opaque tokens: introspected with the gateway's credentials, the answer cached (an
/// inactive one too), its claims forwarded and authorized as a JWT's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_and_cached() {
    let setup = Setup::start("introspection").await;
    let headers = setup.passed(&setup.bearer("/opaque/x", "opaque-active").await);
    assert_eq!(headers["x-user-id"], "svc-1");
    assert!(headers.get("authorization").is_none());
    setup.passed(&setup.bearer("/opaque/x", "opaque-active").await);
    assert_eq!(
        setup.authz.introspections(),
        1,
        "the active answer was not cached"
    );
    let seen = setup.upstream.seen().len();
    for _ in 0..3 {
        let reply = setup.bearer("/opaque/x", "opaque-revoked").await;
        assert_eq!(
            (reply.status.as_u16(), reply.json()["error"].as_str()),
            (401, Some("token not active"))
        );
    }
    assert_eq!(
        setup.authz.introspections(),
        2,
        "the inactive answer was not cached"
    );
    let reply = setup.bearer("/opaque/x", "opaque-no-scope").await;
    assert_eq!(reply.status, 403);
    assert_eq!(setup.upstream.seen().len(), seen);
}

/// Identity fields sent by a client, in any case, never reach the upstream: not on a
/// public route, and not beside the gateway's own on a protected one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_are_removed_everywhere() {
    let setup = Setup::start("forged").await;
    let forged = [
        ("x-user-id", "admin"),
        ("X-USER-ID", "admin"),
        ("X-User-Id", "admin"),
        ("x-roles", "admin"),
        ("X-Tenant", "acme"),
        ("X-CONSUMER", "alice"),
        ("x-consumer", "alice"),
    ];
    let headers = setup.passed(&setup.get("/public/x", &forged).await);
    for name in ["x-user-id", "x-roles", "x-tenant", "x-consumer"] {
        assert!(
            headers.get(name).is_none(),
            "{name} reached a public route's upstream"
        );
    }
    let token = hmac(SECRET.as_bytes(), "HS256", &claims("user-7"));
    let auth = format!("Bearer {token}");
    let mut with_token = forged.to_vec();
    with_token.push(("authorization", &auth));
    let headers = setup.passed(&setup.get("/hs/x", &with_token).await);
    let users: Vec<_> = headers.get_all("x-user-id").iter().collect();
    assert_eq!(users, ["user-7"]);
    assert!(headers.get("x-roles").is_none() && headers.get("x-consumer").is_none());
    let headers = setup.passed(
        &setup
            .get(
                "/keys/x",
                &[("x-api-key", BOB_KEY), ("X-Consumer", "alice")],
            )
            .await,
    );
    let consumers: Vec<_> = headers.get_all("x-consumer").iter().collect();
    assert_eq!(consumers, ["bob"]);
}

/// Where names with underscores are passed on, an identity or forwarding field spelled
/// with them (which a CGI or WSGI backend reads as the gateway's own) is not; and the
/// dashed spelling of an identity field is removed however the gateway spells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_fields_cannot_be_spelled_with_underscores() {
    let setup = Setup::start("underscored").await;
    let lenient = |path: &str| format!("http://{}{path}", setup.gateway.addr("lenient"));
    let forged = [
        ("x_user_id", "admin"),
        ("X_Consumer", "alice"),
        ("x-roles", "admin"),
        ("x_forwarded_for", "10.0.0.1"),
        ("X_Real_IP", "10.0.0.1"),
        ("x_forwarded_host", "evil.example"),
        ("x_trace", "kept"),
    ];
    let token = hmac(SECRET.as_bytes(), "HS256", &claims("user-7"));
    let auth = format!("Bearer {token}");
    for (path, bearer) in [("/public/x", None), ("/hs/x", Some(&auth))] {
        let mut request = Request::get(lenient(path));
        for (name, value) in forged
            .iter()
            .chain(bearer.map(|b| ("authorization", b.as_str())).iter())
        {
            request = request.header(*name, *value);
        }
        let reply = send(
            &setup.client,
            request.body(TestBody::empty()).expect("request"),
        )
        .await;
        let headers = setup.passed(&reply);
        for name in [
            "x_user_id",
            "x_consumer",
            "x-roles",
            "x_forwarded_for",
            "x_real_ip",
            "x_forwarded_host",
        ] {
            assert!(
                headers.get(name).is_none(),
                "{path}: {name} reached the upstream"
            );
        }
        assert_eq!(
            headers["x_trace"], "kept",
            "{path}: underscores are allowed here"
        );
        let users: Vec<_> = headers.get_all("x-user-id").iter().collect();
        let expected: &[&str] = if bearer.is_some() { &["user-7"] } else { &[] };
        assert_eq!(users, expected, "{path}");
    }
}

/// A token in a cookie, kept for the upstream when the policy says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_a_cookie() {
    let setup = Setup::start("cookie").await;
    let reply = setup.get("/session/x", &[("cookie", "theme=dark")]).await;
    refused(&setup, &reply, 401, "Bearer", "no session cookie");
    let token = hmac(SECRET.as_bytes(), "HS256", &claims("cookie-user"));
    let cookie = format!("theme=dark; session={token}");
    let headers = setup.passed(&setup.get("/session/x", &[("cookie", &cookie)]).await);
    assert_eq!(headers["x-user-id"], "cookie-user");
    assert_eq!(headers["cookie"], cookie.as_str());
}

/// Keys published by a provider over HTTPS, in a set that lives an hour: a token naming
/// a new `kid` gets it fetched (no restart, no waiting for the refresh), a flood of
/// unknown `kid`s costs the provider one fetch a second, a removed key stops working
/// at the next fetch (cached tokens included), and an outage keeps the last good set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_keys_rotate_without_a_restart() {
    let setup = Setup::start("jwks").await;
    let fetches = || setup.idp.fetches.load(std::sync::atomic::Ordering::SeqCst);
    let claims = json!({"sub": "idp-user", "iss": "https://id.test/", "exp": now() + 300});
    let old = setup.keys.sign_with_kid("RS256", "k1", &claims);
    assert_eq!(
        setup.passed(&setup.bearer("/idp/x", &old).await)["x-user-id"],
        "idp-user"
    );
    assert_eq!(fetches(), 1, "only the fetch before listening");
    // A token the provider signs with a key it has just published.
    let new = setup.keys.sign_with_kid("ES256", "k2", &claims);
    setup
        .idp
        .set(json!({"keys": [setup.keys.jwk("RS256", "k1"), setup.keys.jwk("ES256", "k2")]}));
    let accepted = poll(|| setup.bearer("/idp/x", &new), 200).await;
    assert!(accepted, "the new key was not fetched");
    assert_eq!(fetches(), 2);
    // Unknown kids are refused, and wake at most one fetch a second.
    let forged = setup.keys.sign_with_kid("ES256", "nope", &claims);
    for _ in 0..20 {
        let reply = setup.bearer("/idp/x", &forged).await;
        assert_eq!(reply.json()["error"], "unknown token key");
    }
    let woken = fetches() - 2;
    assert!(
        woken <= 1,
        "{woken} fetches for 20 unknown kids within a second"
    );
    // The provider drops the old key: at the next fetch, the cached token is refused.
    setup
        .idp
        .set(json!({"keys": [setup.keys.jwk("ES256", "k2")]}));
    setup.passed(&setup.bearer("/idp/x", &old).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    setup.bearer("/idp/x", &forged).await;
    assert!(
        poll(|| setup.bearer("/idp/x", &old), 401).await,
        "the removed key still verifies"
    );
    // A provider down since start-up (`start_degraded`): started, every token refused.
    let reply = setup.bearer("/idp-down/x", &old).await;
    assert_eq!(reply.json()["error"], "unknown token key");
    // The provider goes down, and a fetch fails: the last good set stays in use.
    setup
        .idp
        .up
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let before = fetches();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    setup.bearer("/idp/x", &forged).await;
    for _ in 0..50 {
        if fetches() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fetches() > before, "no fetch while the provider was down");
    let fresh = setup.keys.sign_with_kid(
        "ES256",
        "k2",
        &json!({"sub": "later", "iss": "https://id.test/", "exp": now() + 300}),
    );
    assert_eq!(
        setup.passed(&setup.bearer("/idp/x", &fresh).await)["x-user-id"],
        "later"
    );
}

/// Asks until the answer has `status`, for at most 5 s.
async fn poll<F, Fut>(ask: F, status: u16) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    for _ in 0..50 {
        if ask().await.status.as_u16() == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Start-up needs every key set: an unreachable provider stops it, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_needs_the_key_set() {
    let dir = support::directory("jwks-down");
    Keys::generate(&dir);
    files::write_file(&dir, "idp-ca.pem", &files::Ca::new("unused").pem);
    let env = [
        ("BACKEND", "http://127.0.0.1:9".to_owned()),
        ("AUTHZ", "http://127.0.0.1:9".to_owned()),
        ("INTROSPECTION_SECRET", INTROSPECTION_SECRET.to_owned()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("ALICE_KEY", ALICE_KEY.to_owned()),
        ("REDIS_URL", "redis://127.0.0.1:9".to_owned()),
        ("REDIS_CLUSTER_URL", "redis://127.0.0.1:9".to_owned()),
        (
            "JWKS_URL",
            format!("https://{}/jwks.json", support::refused_addr()),
        ),
        (
            "JWKS_DOWN_URL",
            format!("https://{}/jwks.json", support::refused_addr()),
        ),
    ];
    let logs = match Gateway::start_in(AUTH_GATEWAY, &env, Some(&*dir), 1) {
        Ok(_) => panic!("the gateway started without its key set"),
        Err(logs) => logs,
    };
    assert!(
        logs.contains("policies.idp.jwt.jwks.url") && logs.contains("cannot fetch the key set"),
        "{logs}"
    );
    // The set that may start degraded is not what stopped it.
    assert!(!logs.contains("policies.idp_down.jwt.jwks.url"), "{logs}");
}

/// Start-up refuses an HMAC secret shorter than the hash, and a key that is not of the
/// algorithms' kind, naming each setting.
#[test]
fn start_up_refuses_weak_secrets_and_wrong_keys() {
    let dir = support::directory("weak");
    Keys::generate(&dir);
    files::write_file(&dir, "idp-ca.pem", &files::Ca::new("unused").pem);
    // An EC key where the RSA one belongs.
    std::fs::copy(dir.join("p256.pub.pem"), dir.join("rsa.pub.pem")).expect("copy key");
    let env = [
        ("BACKEND", "http://127.0.0.1:9".to_owned()),
        ("AUTHZ", "http://127.0.0.1:9".to_owned()),
        ("INTROSPECTION_SECRET", INTROSPECTION_SECRET.to_owned()),
        ("JWT_SECRET", "short".to_owned()),
        ("ALICE_KEY", ALICE_KEY.to_owned()),
        ("JWKS_URL", "https://127.0.0.1:9/jwks.json".to_owned()),
        ("JWKS_DOWN_URL", "https://127.0.0.1:9/jwks.json".to_owned()),
    ];
    let logs = match Gateway::start_in(AUTH_GATEWAY, &env, Some(&*dir), 1) {
        Ok(_) => panic!("the gateway started with a 5-byte secret"),
        Err(logs) => logs,
    };
    assert!(
        logs.contains("policies.hs.jwt.secret") && logs.contains("RFC 7518"),
        "{logs}"
    );
    assert!(
        logs.contains("policies.rsa.jwt.key") && logs.contains("RSA"),
        "{logs}"
    );
}
