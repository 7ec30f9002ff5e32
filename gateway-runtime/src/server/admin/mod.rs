//! The admin listener: `/healthz` (the process is alive), `/readyz` (it accepts
//! traffic; 503 while draining, so load balancers stop sending before it exits),
//! `/metrics` (Prometheus), the dashboard at `/` with the JSON it polls (`/status`,
//! `/routes`, `/config`: `views`). A refused certificate reload does not make the
//! gateway unready, as it still serves with the previous certificates, but `/readyz`
//! counts it and shows the last error.

mod views;

pub(crate) use views::Views;

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
use crate::observe::metrics::exposition;
use crate::tls::reload::ReloadStatus;

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    ready: Arc<AtomicBool>,
    reloads: Arc<ReloadStatus>,
    views: Views,
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
            let certificates = reloads.certificates.load_full();
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/healthz" => status_ok("ok"),
                    "/readyz" if ready => json_ok(readiness),
                    "/readyz" => json_response(StatusCode::SERVICE_UNAVAILABLE, "draining"),
                    "/metrics" => {
                        let certificates = certificates.as_deref().map_or(&[][..], Vec::as_slice);
                        let text = exposition::render(views.registry, certificates);
                        text_ok(text, exposition::CONTENT_TYPE)
                    }
                    "/" => dashboard(),
                    "/status" => json_ok(views.status().to_string()),
                    "/routes" => json_ok(views.routes().to_string()),
                    "/config" => json_ok(views.config().to_string()),
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

/// The dashboard: one page compiled into the binary, with its script and styles inline
/// and nothing fetched from elsewhere (the policy forbids it).
fn dashboard() -> http::Response<Full<Bytes>> {
    let mut response = text_ok(
        include_str!("dashboard.html").to_owned(),
        "text/html; charset=utf-8",
    );
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
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
