//! The traffic-control example: starts a demo backend (`/reports` takes half a
//! second), prints requests to try, then runs the gateway compiled from
//! `gateway.toml`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

include!(concat!(env!("OUT_DIR"), "/gateway.rs"));

fn main() -> std::process::ExitCode {
    start_backend();
    println!(
        "ratelimit-example: try\n  \
         for i in $(seq 12); do curl -s -o /dev/null -w '%{{http_code}} ' http://127.0.0.1:8082/items/1; done   # 10 × 200, then 429\n  \
         curl -i http://127.0.0.1:8082/items/1                          # RateLimit-Policy, RateLimit\n  \
         curl -i -X POST --data-binary @/dev/zero --max-filesize 1 http://127.0.0.1:8082/reports   # 413 past 64 KiB"
    );
    gateway::main()
}

/// A JSON service: echoes the path; `/reports` works for half a second first.
fn start_backend() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        else {
            eprintln!("ratelimit-example: the demo backend has no runtime");
            return;
        };
        runtime.block_on(async {
            let addr = std::env::var("APP_BIND").unwrap_or_else(|_| "127.0.0.1:18112".into());
            let listener = match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("ratelimit-example: the demo backend cannot listen on {addr}: {e}");
                    return;
                }
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/reports" {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        let body = format!(r#"{{"path":"{}"}}"#, req.uri().path());
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
