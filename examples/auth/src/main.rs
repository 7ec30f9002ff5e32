//! The authentication example: makes a JWT secret and a partner key when none is set,
//! starts a demo backend that echoes the identity the gateway passes on, prints tokens
//! to try, then runs the gateway compiled from `gateway.toml`.

use std::convert::Infallible;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};

include!(concat!(env!("OUT_DIR"), "/gateway.rs"));

fn main() -> std::process::ExitCode {
    let secret = variable_or_random("JWT_SECRET");
    let key = variable_or_random("PARTNER_KEY");
    start_backend();
    let reader = token(&secret, "alice", "orders:read");
    let writer = token(&secret, "bob", "orders:read orders:write");
    println!(
        "auth-example: try\n  \
         curl -i http://127.0.0.1:8081/health\n  \
         curl -i http://127.0.0.1:8081/orders                                   # 401\n  \
         curl -i -H 'Authorization: Bearer {reader}' http://127.0.0.1:8081/orders\n  \
         curl -i -X POST -H 'Authorization: Bearer {reader}' http://127.0.0.1:8081/orders   # 403\n  \
         curl -i -X POST -H 'Authorization: Bearer {writer}' http://127.0.0.1:8081/orders\n  \
         curl -i -H 'X-API-Key: {key}' http://127.0.0.1:8081/orders"
    );
    gateway::main()
}

/// The variable's value; a random one (set for the gateway too) when it is unset.
fn variable_or_random(name: &str) -> String {
    if let Ok(value) = std::env::var(name) {
        return value;
    }
    let mut bytes = [0u8; 32];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        eprintln!("auth-example: no randomness for {name}");
        std::process::exit(1);
    }
    let value = URL_SAFE_NO_PAD.encode(bytes);
    // SAFETY: called from `main` before any other thread is started.
    unsafe { std::env::set_var(name, &value) };
    value
}

/// An HS256 token as the identity service would sign it, valid for an hour.
fn token(secret: &str, sub: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"{sub}","scope":"{scope}","iss":"https://id.example.test/","aud":"orders-api","exp":{}}}"#,
        now + 3600
    ));
    let input = format!("{header}.{claims}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, input.as_bytes()));
    format!("{input}.{signature}")
}

/// A JSON service that says what it was asked and who the gateway said was asking.
fn start_backend() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        else {
            eprintln!("auth-example: the demo backend has no runtime");
            return;
        };
        runtime.block_on(async {
            let addr = std::env::var("APP_BIND").unwrap_or_else(|_| "127.0.0.1:18111".into());
            let listener = match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("auth-example: the demo backend cannot listen on {addr}: {e}");
                    return;
                }
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let field = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map_or("null".to_owned(), |v| format!("{v:?}"))
                        };
                        let body = format!(
                            r#"{{"method":"{}","path":"{}","user":{},"scopes":{},"consumer":{},"authorization":{}}}"#,
                            req.method(),
                            req.uri().path(),
                            field("x-user-id"),
                            field("x-scopes"),
                            field("x-consumer"),
                            field("authorization"),
                        );
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap_or_default(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
}
