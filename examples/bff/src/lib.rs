//! The demo backend both gateways call: users, their orders, recommendations and
//! teams, as JSON, on `APP_BIND` (default `127.0.0.1:18113`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Starts the backend on a thread of its own; if its address is taken (the other
/// gateway's backend already runs there), says so and leaves the calls to that one.
pub fn start_backend(example: &'static str) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            eprintln!("{example}: the demo backend has no runtime");
            return;
        };
        runtime.block_on(async {
            let addr = std::env::var("APP_BIND").unwrap_or_else(|_| "127.0.0.1:18113".into());
            let listener = match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("{example}: the demo backend cannot listen on {addr}: {e}");
                    return;
                }
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let (status, body) = answer(req.uri().path());
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
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

/// The backend's answer to `path`: everything a full client could want.
fn answer(path: &str) -> (StatusCode, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some("users"), Some(id)) => (
            StatusCode::OK,
            format!(
                r#"{{"id":"{id}","name":"Ada Lovelace","avatar":"/img/{id}.png","email":"ada@example.test","team_id":"analytical","address":{{"city":"London","street":"12 St James's Square"}}}}"#
            ),
        ),
        (Some("orders"), None) => (
            StatusCode::OK,
            r#"{"items":[{"id":"o-1","status":"shipped","total":42.5,"lines":[{"sku":"gear","qty":2}]},{"id":"o-2","status":"open","total":7.0,"lines":[{"sku":"cam","qty":1}]}],"cursor":"next-2"}"#.to_owned(),
        ),
        (Some("recommendations"), Some(_)) => (
            StatusCode::OK,
            r#"[{"sku":"punch-card","score":0.93,"reason":"bought gear"},{"sku":"loom","score":0.71,"reason":"popular"}]"#.to_owned(),
        ),
        (Some("teams"), Some(id)) => (
            StatusCode::OK,
            format!(r#"{{"id":"{id}","name":"The Analytical Engine","members":3}}"#),
        ),
        _ => (StatusCode::NOT_FOUND, r#"{"error":"no such path"}"#.to_owned()),
    }
}
