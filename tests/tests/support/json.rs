//! A JSON backend for the aggregation tests: a real HTTP/1.1 server whose answer to
//! each path (status, content type, body, delay) the test sets, recording the
//! requests it was sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// What the backend answers on one path.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Duration,
    /// More fields of the response.
    pub fields: Vec<(&'static str, &'static str)>,
}

impl Answer {
    pub fn json(body: serde_json::Value) -> Answer {
        Answer {
            status: 200,
            content_type: "application/json",
            body: body.to_string(),
            delay: Duration::ZERO,
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: &'static str) -> Answer {
        self.fields.push((name, value));
        self
    }

    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

/// A request the backend was sent: its method, target, fields and body, and when it
/// arrived.
#[derive(Debug, Clone)]
pub struct Asked {
    pub method: http::Method,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

/// When a backend compresses its answers with gzip, as nginx's `gzip on` or a
/// framework's compression middleware does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gzip {
    Never,
    /// When the request's `Accept-Encoding` names gzip.
    WhenAsked,
    /// Whatever the request accepts.
    Always,
}

#[derive(Clone)]
pub struct JsonBackend {
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    asked: Arc<Mutex<Vec<Asked>>>,
    gzip: Arc<Mutex<Gzip>>,
}

impl JsonBackend {
    pub async fn start() -> JsonBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let backend = JsonBackend {
            addr: listener.local_addr().expect("address"),
            answers: Arc::default(),
            asked: Arc::default(),
            gzip: Arc::new(Mutex::new(Gzip::Never)),
        };
        let shared = backend.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        backend
    }

    /// Answers `path` (without the query) with `answer` from now on.
    pub fn on(&self, path: &str, answer: Answer) -> &Self {
        self.answers
            .lock()
            .expect("answers")
            .insert(path.to_owned(), answer);
        self
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Compresses answers from now on as `mode` says.
    pub fn gzip(&self, mode: Gzip) {
        *self.gzip.lock().expect("gzip") = mode;
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().expect("asked").clone()
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/".to_owned(), |pq| pq.to_string());
        let at = std::time::Instant::now();
        let (head, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.asked.lock().expect("asked").push(Asked {
            method: head.method.clone(),
            target,
            headers: head.headers.clone(),
            body,
            at,
        });
        let answer = self
            .answers
            .lock()
            .expect("answers")
            .get(head.uri.path())
            .cloned();
        let Some(answer) = answer else {
            return Response::builder()
                .status(404)
                .body(Full::new(Bytes::from_static(
                    b"{\"error\":\"no such path\"}",
                )))
                .unwrap_or_default();
        };
        tokio::time::sleep(answer.delay).await;
        let mut response = Response::builder()
            .status(answer.status)
            .header("content-type", answer.content_type);
        for (name, value) in answer.fields {
            response = response.header(name, value);
        }
        let accepts_gzip = head
            .headers
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .any(|value| value.as_bytes().windows(4).any(|w| w == b"gzip"));
        let compress = match *self.gzip.lock().expect("gzip") {
            Gzip::Always => true,
            Gzip::WhenAsked => accepts_gzip,
            Gzip::Never => false,
        };
        let body = if compress {
            response = response
                .header("content-encoding", "gzip")
                .header("vary", "accept-encoding");
            gzip(answer.body.as_bytes())
        } else {
            Bytes::from(answer.body)
        };
        response.body(Full::new(body)).unwrap_or_default()
    }
}

/// The key the aggregate gateway's `mobile` consumer presents.
pub const MOBILE_KEY: &str = "mobile-key-0123456789abcdef";

/// The gateway of `gateways/aggregate.toml` in front of three backends of its own,
/// and a client.
pub struct AggregateGateway {
    pub users: JsonBackend,
    pub orders: JsonBackend,
    pub recs: JsonBackend,
    pub gateway: super::Gateway,
    pub client: super::HttpClient,
}

impl AggregateGateway {
    /// Starts it with `extra` in its environment, once `listeners` listeners listen.
    pub async fn start(extra: &[(&str, String)], listeners: usize) -> AggregateGateway {
        let (users, orders, recs) = (
            JsonBackend::start().await,
            JsonBackend::start().await,
            JsonBackend::start().await,
        );
        let mut env = vec![
            ("USERS", users.url()),
            ("ORDERS", orders.url()),
            ("RECS", recs.url()),
            ("MOBILE_KEY", MOBILE_KEY.to_owned()),
        ];
        env.extend(extra.iter().cloned());
        let binary = env!("CARGO_BIN_EXE_aggregate-gateway");
        let gateway = super::Gateway::start_in(binary, &env, None, listeners)
            .unwrap_or_else(|logs| panic!("gateway did not start:\n{logs}"));
        AggregateGateway {
            users,
            orders,
            recs,
            gateway,
            client: super::client(),
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> super::Reply {
        let mut request = http::Request::get(self.gateway.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(super::TestBody::empty()).expect("request");
        super::send(&self.client, request).await
    }
}

/// `bytes` compressed with gzip.
pub fn gzip(bytes: &[u8]) -> Bytes {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip in memory");
    Bytes::from(encoder.finish().expect("gzip in memory"))
}
