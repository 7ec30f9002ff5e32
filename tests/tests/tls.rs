//! TLS end to end: the gateway built from `gateways/tls.toml`, certificates made by
//! rcgen for each test, a real rustls client (and curl, where installed), and
//! upstreams behind rustls.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::tls::{self as pki, Ca, Issued};
use support::{Gateway, Upstream};

const TLS_GATEWAY: &str = env!("CARGO_BIN_EXE_tls-gateway");

struct Setup {
    dir: support::TestDir,
    server_ca: Ca,
    client_ca: Ca,
    api: Issued,
    apps: Issued,
    default: Issued,
    plain: Upstream,
    secure: Upstream,
    gateway: Gateway,
}

impl Setup {
    async fn start(test: &str, env: &[(&str, String)]) -> Setup {
        let dir = support::directory(test);
        let server_ca = Ca::new("gateway test server CA");
        let default = server_ca.issue("default.test", &["default.test"], &[]);
        let api = server_ca.issue("api.test", &["api.test"], &[]);
        let apps = server_ca.issue("apps", &["*.apps.test"], &[]);
        pki::write_pair(&dir, "default", &default);
        pki::write_pair(&dir, "api", &api);
        pki::write_pair(&dir, "apps", &apps);
        let client_ca = Ca::new("gateway test client CA");
        pki::write_file(&dir, "client-ca.pem", &client_ca.pem);
        // The upstream's own CA, and the CA it trusts for the gateway's certificate.
        let upstream_ca = Ca::new("upstream CA");
        pki::write_file(&dir, "upstream-ca.pem", &upstream_ca.pem);
        let gateway_ca = Ca::new("gateway identity CA");
        let gateway_client = gateway_ca.issue("gateway", &[], &["spiffe://test/gateway"]);
        pki::write_pair(&dir, "gateway-client", &gateway_client);
        let plain = Upstream::start("plain").await;
        let secure = pki::upstream(
            "secure",
            &upstream_ca.issue("secure", &["127.0.0.1"], &[]),
            Some(&gateway_ca.pem),
        )
        .await;
        let secure_url = format!("https://{}", secure.addr);
        let mut all = vec![
            ("PLAIN", plain.url()),
            ("SECURE", secure_url.clone()),
            ("MISMATCH", secure_url),
        ];
        all.extend(env.iter().cloned());
        let gateway = Gateway::start_in(TLS_GATEWAY, &all, Some(&*dir), 6)
            .unwrap_or_else(|logs| panic!("gateway did not start:\n{logs}"));
        Setup {
            dir,
            server_ca,
            client_ca,
            api,
            apps,
            default,
            plain,
            secure,
            gateway,
        }
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.gateway.addr(listener)
    }

    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        pki::client_config(&self.server_ca.pem, None, alpn, true)
    }

    /// A TLS session with the `secure` listener as `api.test`, HTTP/1.1 by ALPN, for
    /// tests that write requests themselves.
    async fn http1_session(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.addr("secure"))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("api.test").expect("name");
        tokio_rustls::TlsConnector::from(self.client(HTTP1))
            .connect(name, tcp)
            .await
            .expect("handshake")
    }
}

fn der(issued: &Issued) -> Vec<u8> {
    CertificateDer::from_pem_slice(issued.cert.as_bytes())
        .expect("PEM")
        .to_vec()
}

/// Waits up to 10 s for a log line that `matches`.
async fn wait_for_log(gateway: &Gateway, matches: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway.logs().iter().any(|l| matches(l)) {
        assert!(
            Instant::now() < deadline,
            "not logged: {:#?}",
            gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const HTTP1: &[&[u8]] = &[b"http/1.1"];
const H2: &[&[u8]] = &[b"h2", b"http/1.1"];

/// HTTP/1.1 and HTTP/2 (chosen by ALPN) are proxied over TLS; the upstream hears
/// `X-Forwarded-Proto: https`, and the client gets the HSTS header.
#[tokio::test]
async fn proxies_over_http1_and_h2() {
    let s = Setup::start("proxy", &[]).await;
    let addr = s.addr("secure");
    let reply = pki::get(addr, "api.test", s.client(HTTP1), "/hello?x=1", &[])
        .await
        .expect("HTTP/1.1 over TLS");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.version, http::Version::HTTP_11);
    assert_eq!(
        reply.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let seen = s.plain.last();
    assert_eq!(seen.target, "/hello?x=1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    let reply = pki::get(addr, "api.test", s.client(H2), "/two", &[])
        .await
        .expect("HTTP/2 over TLS");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(s.plain.last().target, "/two");
    assert_eq!(s.plain.last().headers["x-forwarded-proto"], "https");
    // The access log names the TLS version of each request's connection.
    wait_for_log(&s.gateway, |l| {
        l.contains("gateway::access") && l.contains("path=\"/two\"") && l.contains(" tls=TLSv1.3")
    })
    .await;
}

/// A connection the gateway closes ends with `close_notify`: the client can tell the
/// end of the response from a truncation.
#[tokio::test]
async fn closes_say_close_notify() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Setup::start("close-notify", &[]).await;
    let mut tls = s.http1_session().await;
    tls.write_all(b"GET /bye HTTP/1.1\r\nhost: api.test\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = Vec::new();
    // rustls reports a close without the alert as an error (UnexpectedEof).
    tls.read_to_end(&mut response)
        .await
        .expect("the connection ended with close_notify");
    assert!(response.starts_with(b"HTTP/1.1 200"));
}

/// A client that reads slowly gets the whole response at its own pace: bytes that
/// rustls holds back while the socket is full are sent before the gateway waits for
/// the next request, not when the connection is closed.
#[tokio::test]
async fn slow_readers_get_the_whole_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Setup::start("slow-reader", &[]).await;
    // A small receive window, so that the gateway's socket fills while it still has
    // body to send.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(16 * 1024)
        .expect("receive buffer");
    let tcp = socket.connect(s.addr("secure")).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("api.test").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(s.client(HTTP1))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let size: usize = 16 << 20;
    let request = format!("GET /download?bytes={size} HTTP/1.1\r\nhost: api.test\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("request");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let whole = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            let n = tls.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed after {} bytes", received.len());
            received.extend_from_slice(&buf[..n]);
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
                && received.len() - (end + 4) == size
            {
                return;
            }
            // A reader slower than the gateway: its socket stays full.
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    })
    .await;
    assert!(
        whole.is_ok(),
        "{} bytes after {:?}",
        received.len(),
        started.elapsed()
    );
}

/// The certificate follows the server name: exact, then wildcard, then the default;
/// without a default, a name no certificate has fails the handshake.
#[tokio::test]
async fn sni_chooses_the_certificate() {
    let s = Setup::start("sni", &[]).await;
    let addr = s.addr("secure");
    for (name, expected) in [
        ("api.test", &s.api),
        ("one.apps.test", &s.apps),
        ("default.test", &s.default),
    ] {
        let reply = pki::get(addr, name, s.client(HTTP1), "/", &[])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(reply.server_cert, der(expected), "{name}");
    }
    // No SNI at all: the default certificate, verified against its own name.
    let no_sni = pki::client_config(&s.server_ca.pem, None, HTTP1, false);
    let reply = pki::get(addr, "default.test", no_sni.clone(), "/", &[])
        .await
        .expect("no SNI");
    assert_eq!(reply.server_cert, der(&s.default));

    let strict = s.addr("strict");
    let reply = pki::get(strict, "api.test", s.client(HTTP1), "/", &[])
        .await
        .expect("a configured name");
    assert_eq!(reply.server_cert, der(&s.api));
    let refused = pki::get(strict, "default.test", no_sni, "/", &[]).await;
    assert!(refused.is_err(), "no SNI and no default: {refused:?}");
    let refused = pki::get(strict, "unknown.test", s.client(HTTP1), "/", &[]).await;
    assert!(
        refused.is_err(),
        "an unknown name and no default: {refused:?}"
    );
}

/// Mutual TLS: no certificate, or one from another CA, gets no request through; a
/// valid one does, and its identity reaches the upstream in place of the copies the
/// client sent.
#[tokio::test]
async fn mutual_tls_passes_a_verified_identity() {
    let s = Setup::start("mtls", &[]).await;
    let addr = s.addr("mtls");
    let before = s.plain.seen().len();
    let anonymous = pki::get(addr, "default.test", s.client(HTTP1), "/x", &[]).await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let stranger = Ca::new("another CA").issue("mallory", &[], &["spiffe://test/mallory"]);
    let wrong_ca = pki::client_config(&s.server_ca.pem, Some(&stranger), HTTP1, true);
    let refused = pki::get(addr, "default.test", wrong_ca, "/x", &[]).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA: {refused:?}"
    );
    assert_eq!(s.plain.seen().len(), before, "the upstream saw nothing");

    let alice = s
        .client_ca
        .issue("alice", &["alice.clients.test"], &["spiffe://test/alice"]);
    for alpn in [HTTP1, H2] {
        let config = pki::client_config(&s.server_ca.pem, Some(&alice), alpn, true);
        let spoofed = [
            ("x-client-subject", "CN=admin"),
            ("X-Client-SAN", "URI:spiffe://test/admin"),
            ("x-client-cert-sha256", "00"),
        ];
        let reply = pki::get(addr, "default.test", config, "/who", &spoofed)
            .await
            .expect("a valid client certificate");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let seen = s.plain.last();
        assert_eq!(seen.headers.get_all("x-client-subject").iter().count(), 1);
        assert_eq!(seen.headers["x-client-subject"], "CN=alice");
        assert_eq!(
            seen.headers["x-client-san"],
            "DNS:alice.clients.test, URI:spiffe://test/alice"
        );
        let fingerprint = seen.headers["x-client-cert-sha256"]
            .to_str()
            .expect("ASCII");
        assert_eq!(fingerprint.len(), 64, "{fingerprint}");
        assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

/// With client certificates optional, a route can still require one, and one with
/// a matching name: 403 with a JSON body otherwise; other routes serve anyone.
#[tokio::test]
async fn routes_can_require_a_client_certificate() {
    let s = Setup::start("optional", &[]).await;
    let addr = s.addr("optional");
    let anyone = pki::get(addr, "default.test", s.client(HTTP1), "/public", &[])
        .await
        .expect("no certificate, a public route");
    assert_eq!(anyone.status, 200);
    let refused = pki::get(addr, "default.test", s.client(HTTP1), "/admin/x", &[])
        .await
        .expect("no certificate, an admin route");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "client certificate required");

    let alice = s.client_ca.issue("alice", &[], &["spiffe://test/alice"]);
    let config = pki::client_config(&s.server_ca.pem, Some(&alice), HTTP1, true);
    let refused = pki::get(addr, "default.test", config, "/admin/x", &[])
        .await
        .expect("a certificate without the name");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "client certificate not allowed");

    let before = s.plain.seen().len();
    let bob = s.client_ca.issue("bob", &[], &["spiffe://test/ops/bob"]);
    let config = pki::client_config(&s.server_ca.pem, Some(&bob), H2, true);
    let reply = pki::get(addr, "default.test", config, "/admin/x", &[])
        .await
        .expect("an operator");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        s.plain.seen().len(),
        before + 1,
        "only the operator got through"
    );
    assert_eq!(
        s.plain.last().headers["x-client-san"],
        "URI:spiffe://test/ops/bob"
    );
}

/// An upstream over TLS with a private CA and mutual TLS; its connections are
/// pooled; a certificate that does not match the name is a 502, logged.
#[tokio::test]
async fn upstreams_over_tls() {
    let s = Setup::start("upstream", &[]).await;
    let addr = s.addr("secure");
    for path in ["/secure/a", "/secure/b"] {
        let reply = pki::get(addr, "api.test", s.client(HTTP1), path, &[])
            .await
            .expect("request");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["upstream"], "secure");
    }
    assert_eq!(s.secure.last().target, "/b");
    assert_eq!(
        s.secure.connections.load(Ordering::SeqCst),
        1,
        "the second request reused the pooled TLS connection"
    );
    let reply = pki::get(addr, "api.test", s.client(HTTP1), "/mismatch/a", &[])
        .await
        .expect("request");
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.json()["error"], "upstream TLS handshake failed");
    assert_eq!(s.secure.last().target, "/b", "nothing went through");
    wait_for_log(&s.gateway, |l| {
        l.contains("upstream TLS handshake failed") && l.contains("not valid for name")
    })
    .await;
}

/// A certificate replaced under load: no request fails, and new connections get the
/// new certificate; a broken replacement is refused and the previous one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_a_restart() {
    let s = Setup::start("reload", &[]).await;
    let addr = s.addr("secure");
    let config = s.client(HTTP1);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, sent, config) = (stop.clone(), sent.clone(), config.clone());
        let ca = s.server_ca.pem.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                // Resumed sessions and full handshakes, in turn.
                let config = if sent.load(Ordering::SeqCst) % 2 == 0 {
                    config.clone()
                } else {
                    pki::client_config(&ca, None, HTTP1, true)
                };
                match pki::get(addr, "api.test", config, "/load", &[]).await {
                    Ok(reply) if reply.status == 200 => {}
                    Ok(reply) => failures.push(format!("status {}", reply.status)),
                    Err(e) => failures.push(e),
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let renewed = s.server_ca.issue("api.test renewed", &["api.test"], &[]);
    pki::write_pair(&s.dir, "api", &renewed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A fresh client each time: a resumed session carries the certificate of the
        // session it resumes.
        let reply = pki::get(addr, "api.test", s.client(HTTP1), "/", &[])
            .await
            .expect("request");
        if reply.server_cert == der(&renewed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served: {:#?}",
            s.gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken file: refused, logged, counted; the renewed certificate stays.
    pki::write_file(&s.dir, "api.pem", "-----BEGIN CERTIFICATE-----\nbroken\n");
    wait_for_log(&s.gateway, |l| l.contains("TLS reload refused")).await;
    stop.store(true, Ordering::SeqCst);
    let failures = load.await.expect("load task");
    assert!(sent.load(Ordering::SeqCst) > 10, "the load kept requesting");
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    let reply = pki::get(addr, "api.test", s.client(HTTP1), "/", &[])
        .await
        .expect("still served");
    assert_eq!(reply.server_cert, der(&renewed));
    let ready = support::raw(
        s.addr("admin"),
        b"GET /readyz HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n",
    );
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(!ready.contains("\"tls_reload_failures\":0"), "{ready}");
    assert!(ready.contains("tls_last_reload_error"), "{ready}");
}

/// SIGHUP reloads every TLS listener, including those whose files did not change
/// (the file watch reloads only those that did).
#[tokio::test]
async fn sighup_reloads_every_listener() {
    let s = Setup::start("sighup", &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.gateway.signal(libc::SIGHUP);
    for listener in ["secure", "mtls", "optional", "strict"] {
        let expected = format!("TLS configuration reloaded listener=\"{listener}\"");
        wait_for_log(&s.gateway, |l| l.contains(&expected)).await;
    }
    let reply = pki::get(s.addr("secure"), "api.test", s.client(HTTP1), "/after", &[])
        .await
        .expect("served after the reload");
    assert_eq!(reply.status, 200);
}

/// Start-up loads and checks every certificate and key, and names every problem at
/// once with the setting (and gateway.toml line) it comes from.
#[tokio::test]
async fn start_up_names_every_bad_certificate() {
    let dir = support::directory("start-up");
    let ca = Ca::new("server CA");
    let expired = ca.issue_valid("default.test", &["default.test"], &[], (-30, -1));
    pki::write_pair(&dir, "default", &expired);
    let api = ca.issue("api.test", &["api.test"], &[]);
    let other = ca.issue("api.test", &["api.test"], &[]);
    pki::write_file(&dir, "api.pem", &api.cert);
    pki::write_file(&dir, "api.key", &other.key);
    // The chain with its issuer first.
    let apps = ca.issue("apps", &["*.apps.test"], &[]);
    pki::write_file(&dir, "apps.pem", &format!("{}{}", ca.pem, apps.cert));
    pki::write_file(&dir, "apps.key", &apps.key);
    pki::write_file(&dir, "upstream-ca.pem", "not a certificate");
    let env = [
        ("PLAIN", "http://127.0.0.1:9".to_owned()),
        ("SECURE", "https://127.0.0.1:9".to_owned()),
        ("MISMATCH", "https://127.0.0.1:9".to_owned()),
    ];
    let Err(logs) = Gateway::start_in(TLS_GATEWAY, &env, Some(&*dir), 6) else {
        panic!("the gateway started with broken certificates");
    };
    for expected in [
        "(listeners.secure.tls.cert): the certificate expired on",
        "(listeners.secure.tls.sni[0].key): the key does not belong to the certificate at gateways/tls.toml:",
        "(listeners.secure.tls.sni[1].cert): the chain is out of order",
        "(listeners.mtls.tls.client_auth.ca): cannot read `client-ca.pem`",
        "(upstreams.secure.tls.ca): not PEM",
        "(upstreams.secure.tls.cert): cannot read `gateway-client.pem`",
    ] {
        assert!(logs.contains(expected), "missing `{expected}` in:\n{logs}");
    }
    assert_eq!(
        logs.matches("(listeners.mtls.tls.client_auth.ca)").count(),
        1,
        "each problem once:\n{logs}"
    );
}

/// A certificate close to its end is warned of at start-up.
#[tokio::test]
async fn expiring_certificates_are_logged() {
    let s = Setup::start("expiry", &[]).await;
    // Replaced by one that expires in 5 days; the reload logs the warning too.
    let soon = s
        .server_ca
        .issue_valid("api.test", &["api.test"], &[], (-1, 5));
    pki::write_pair(&s.dir, "api", &soon);
    wait_for_log(&s.gateway, |l| {
        l.contains("certificate expires soon")
            && l.contains("listeners.secure.tls.sni[0].cert")
            && (l.contains("days_left=4") || l.contains("days_left=5"))
    })
    .await;
    // `/metrics` has the renewed certificate's end of validity, 4 to 5 days away (the
    // reload publishes it just after its log line: looked for up to 5 s).
    let metrics = format!("http://{}/metrics", s.addr("admin"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = support::get(&support::client(), &metrics).await;
        let days = reply
            .body
            .lines()
            .find(|l| {
                l.starts_with(
                    "gateway_tls_certificate_expiry_timestamp_seconds{listener=\"secure\"",
                ) && l.contains("listeners.secure.tls.sni[0].cert")
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<u64>().ok())
            .map(|expires| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs();
                expires.saturating_sub(now) as f64 / 86_400.0
            });
        if days.is_some_and(|days| (3.9..=5.1).contains(&days)) {
            break;
        }
        assert!(Instant::now() < deadline, "{days:?} days: {}", reply.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Plaintext on a TLS port gets a plaintext 400; a truncated ClientHello and a
/// handshake that never finishes are closed, the latter within the header-read
/// timeout; none of them keeps another client from being served.
#[tokio::test]
async fn bad_input_on_a_tls_port() {
    let s = Setup::start("bad-input", &[("HEADER_READ_TIMEOUT", "1s".into())]).await;
    let addr = s.addr("secure");
    let answer = support::raw(addr, b"GET / HTTP/1.1\r\nhost: api.test\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("plain HTTP request sent to an HTTPS port"),
        "{answer}"
    );

    // A record header announcing a ClientHello of 512 bytes, and 5 of them.
    let partial: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
    let mut truncated = std::net::TcpStream::connect(addr).expect("connect");
    truncated.write_all(partial).expect("write");
    truncated
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
    stalled.write_all(partial).expect("write");
    let started = Instant::now();

    let reply = pki::get(addr, "api.test", s.client(H2), "/meanwhile", &[])
        .await
        .expect("another client is served");
    assert_eq!(reply.status, 200);

    truncated
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = truncated.read_to_end(&mut rest);
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        closed.is_ok(),
        "the stalled handshake was closed: {closed:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

/// The redirecting listener answers 308 to the same host and target on https.
#[tokio::test]
async fn plaintext_listener_redirects_to_https() {
    let s = Setup::start("redirect", &[]).await;
    let answer = support::raw(
        s.addr("redirect"),
        b"POST /orders?id=7 HTTP/1.1\r\nhost: api.test:8080\r\ncontent-length: 0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://api.test:8443/orders?id=7\r\n"),
        "{answer}"
    );
    assert!(s.plain.seen().is_empty(), "nothing was forwarded");
}

/// curl (OpenSSL, as most clients) talks to the gateway over HTTP/1.1 and HTTP/2;
/// `.ci/run` installs it.
#[tokio::test]
async fn curl_over_tls() {
    let s = Setup::start("curl", &[]).await;
    let ca = s.dir.join("server-ca.pem");
    std::fs::write(&ca, &s.server_ca.pem).expect("CA file");
    let port = s.addr("secure").port();
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", flag, "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &format!("api.test:{port}:127.0.0.1"),
                "-w",
                "\n%{http_code} %{http_version}",
                &format!("https://api.test:{port}/curl"),
            ])
            .output()
            .await
            .expect("curl is installed (.ci/run installs it)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.ends_with(&format!("200 {version}")),
            "{flag}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A TLS client that leaves while its request waits for the upstream ends the
/// request: it is logged as 499 at once, not answered when the upstream (which takes
/// 3 s) is done. The watch on the client runs on the socket under the TLS session.
#[tokio::test]
async fn a_tls_client_that_leaves_ends_its_request() {
    use tokio::io::AsyncWriteExt;
    let s = Setup::start("leaving", &[]).await;
    let mut tls = s.http1_session().await;
    tls.write_all(b"GET /slow HTTP/1.1\r\nhost: api.test\r\n\r\n")
        .await
        .expect("write");
    tls.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tls);
    let left = Instant::now();
    wait_for_log(&s.gateway, |line| {
        line.contains("status=499") && line.contains("/slow")
    })
    .await;
    assert!(
        left.elapsed() < Duration::from_secs(2),
        "{:?}",
        left.elapsed()
    );
}
