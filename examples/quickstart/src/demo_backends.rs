//! Three tiny JSON services standing in for real backends: two instances of `users`
//! and one `orders`. Each echoes which instance answered, the path it saw, and the
//! user the gateway named in `X-User-Id`, if any.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const BACKENDS: [(&str, u16); 3] = [("users-a", 18001), ("users-b", 18002), ("orders", 18003)];

/// Starts the backends on a background thread.
pub fn start() {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("demo backends need a runtime");
        runtime.block_on(async {
            for (name, port) in BACKENDS {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(listener) => {
                        tokio::spawn(serve(listener, name));
                    }
                    Err(e) => eprintln!("demo backend {name} cannot listen on {addr}: {e}"),
                }
            }
            std::future::pending::<()>().await;
        });
    });
}

async fn serve(listener: tokio::net::TcpListener, name: &'static str) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let user = req
                    .headers()
                    .get("x-user-id")
                    .and_then(|v| v.to_str().ok())
                    .map_or("null".to_owned(), |v| format!("{v:?}"));
                let body = format!(
                    r#"{{"backend":"{name}","method":"{}","path":"{}","user":{user}}}"#,
                    req.method(),
                    req.uri().path()
                );
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap_or_default(),
                )
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
