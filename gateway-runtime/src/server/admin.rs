//! The admin listener: `/healthz` (the process is alive) and `/readyz` (it accepts
//! traffic; 503 while draining, so load balancers stop sending before it exits).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use bytes::Bytes;
use http_body_util::Full;

use crate::message::error::json_response;

pub(crate) async fn serve(listener: tokio::net::TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let ready = ready.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let ready = ready.load(Ordering::Relaxed);
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/healthz" => status_ok("ok"),
                    "/readyz" if ready => status_ok("ready"),
                    "/readyz" => json_response(StatusCode::SERVICE_UNAVAILABLE, "draining"),
                    _ => json_response(StatusCode::NOT_FOUND, "no such admin endpoint"),
                })
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn status_ok(status: &'static str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(format!(
        r#"{{"status":"{status}"}}"#
    ))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
