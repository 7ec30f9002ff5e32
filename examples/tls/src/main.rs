//! The TLS example: makes its certificates (once), starts a demo backend on loopback,
//! then the gateway compiled from `gateway.toml`, in examples/tls/ so that its
//! `${file:certs/…}` settings are found wherever it is started from.

mod certs;

use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

include!(concat!(env!("OUT_DIR"), "/gateway.rs"));

fn main() -> std::process::ExitCode {
    let dir = std::env::var_os("TLS_EXAMPLE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        Into::into,
    );
    if let Err(e) = std::env::set_current_dir(&dir)
        .map_err(Into::into)
        .and_then(|()| certs::ensure(Path::new("certs")))
    {
        eprintln!(
            "tls-example: cannot make certificates in {}: {e}",
            dir.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    start_backend();
    println!(
        "tls-example: certificates in {}/certs; try\n  \
         curl --cacert certs/ca.pem --resolve api.example.test:8443:127.0.0.1 https://api.example.test:8443/hello\n  \
         curl --cacert certs/ca.pem --resolve www.example.test:8443:127.0.0.1 https://www.example.test:8443/index.html\n  \
         curl --cacert certs/ca.pem --resolve api.example.test:8443:127.0.0.1 https://api.example.test:8443/admin/stats   # 403\n  \
         curl --cacert certs/ca.pem --cert certs/alice.pem --key certs/alice.key --resolve api.example.test:8443:127.0.0.1 https://api.example.test:8443/admin/stats\n  \
         curl -i http://127.0.0.1:8080/hello   # 308 to https",
        dir.display()
    );
    gateway::main()
}

/// A JSON service that says what it was asked and which client identity the gateway
/// passed on.
fn start_backend() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        else {
            eprintln!("tls-example: the demo backend has no runtime");
            return;
        };
        runtime.block_on(async {
            let addr = std::env::var("APP_BIND").unwrap_or_else(|_| "127.0.0.1:18101".into());
            let listener = match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("tls-example: the demo backend cannot listen on {addr}: {e}");
                    return;
                }
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let client = req
                            .headers()
                            .get("x-client-san")
                            .and_then(|v| v.to_str().ok())
                            .map_or("null".to_owned(), |v| format!("{v:?}"));
                        let proto = req
                            .headers()
                            .get("x-forwarded-proto")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = format!(
                            r#"{{"path":"{}","proto":"{proto}","client":{client}}}"#,
                            req.uri().path()
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
