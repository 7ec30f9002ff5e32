//! The admin listener: `/healthz` (the process is alive), `/readyz` (it accepts
//! traffic; 503 while draining, so load balancers stop sending before it exits) and
//! `/metrics` (Prometheus). A refused certificate reload does not make the gateway
//! unready, as it still serves with the previous certificates, but `/readyz` counts it
//! and shows the last error.

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
use crate::observe::metrics::Registry;
use crate::observe::metrics::exposition;
use crate::tls::reload::ReloadStatus;

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    ready: Arc<AtomicBool>,
    reloads: Arc<ReloadStatus>,
    metrics: &'static Registry,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let ready = ready.clone();
        let reloads = reloads.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let ready = ready.load(Ordering::Relaxed);
            let readiness = readiness(&reloads);
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/healthz" => status_ok("ok"),
                    "/readyz" if ready => json_ok(readiness),
                    "/readyz" => json_response(StatusCode::SERVICE_UNAVAILABLE, "draining"),
                    "/metrics" => text_ok(exposition::render(metrics), exposition::CONTENT_TYPE),
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

/// `/readyz`'s body: ready, with the certificate reloads refused so far.
fn readiness(reloads: &ReloadStatus) -> String {
    let failures = reloads.failures.load(Ordering::Relaxed);
    let last = reloads
        .last_error
        .load()
        .as_deref()
        .map(|last| crate::message::json::quote(last));
    match last {
        Some(last) => format!(
            r#"{{"status":"ready","tls_reload_failures":{failures},"tls_last_reload_error":{last}}}"#
        ),
        None => r#"{"status":"ready","tls_reload_failures":0}"#.to_owned(),
    }
}

fn status_ok(status: &'static str) -> http::Response<Full<Bytes>> {
    json_ok(format!(r#"{{"status":"{status}"}}"#))
}

fn json_ok(body: String) -> http::Response<Full<Bytes>> {
    text_ok(body, "application/json")
}

fn text_ok(body: String, content_type: &'static str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
