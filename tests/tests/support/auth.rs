//! The gateway of `gateways/auth.toml` with everything it needs around it: keys
//! generated for the run, a JWKS server, an authorization service and a recording
//! upstream. The authentication and the rate-limit tests start it.

use std::time::Duration;

use http::{HeaderMap, Request, StatusCode};
use serde_json::json;

use super::jwt::{KeyServer, Keys, now};
use super::tls as files;
use super::{Gateway, HttpClient, Reply, TestBody, Upstream};

pub const AUTH_GATEWAY: &str = env!("CARGO_BIN_EXE_auth-gateway");
pub const SECRET: &str = "a-test-secret-of-exactly-64-bytes-for-every-hmac-algorithm-00000";
pub const ALICE_KEY: &str = "alice-api-key-0123456789";
pub const BOB_KEY: &str = "bob-api-key-0123456789";
/// With characters that RFC 6749 §2.3.1 has form-encoded before Basic.
pub const INTROSPECTION_SECRET: &str = "intro:spection secret/+";

pub struct Setup {
    pub keys: Keys,
    pub idp: KeyServer,
    pub authz: AuthzService,
    pub upstream: Upstream,
    pub gateway: Gateway,
    pub client: HttpClient,
    _dir: super::TestDir,
}

impl Setup {
    pub async fn start(test: &str) -> Setup {
        Setup::start_with(test, &[]).await
    }

    /// The gateway with more environment (`WORKERS`, say).
    pub async fn start_with(test: &str, more: &[(&str, String)]) -> Setup {
        let dir = super::directory(test);
        let keys = Keys::generate(&dir);
        let ca = files::Ca::new("identity provider CA");
        files::write_file(&dir, "idp-ca.pem", &ca.pem);
        let idp = KeyServer::start(
            &ca.issue("idp", &["127.0.0.1"], &[]),
            json!({"keys": [keys.jwk("RS256", "k1")]}),
        )
        .await;
        let upstream = Upstream::start("backend").await;
        let authz = AuthzService::start().await;
        let mut env = vec![
            ("AUTHZ", authz.url()),
            ("INTROSPECTION_SECRET", INTROSPECTION_SECRET.to_owned()),
            ("BACKEND", upstream.url()),
            ("JWT_SECRET", SECRET.to_owned()),
            ("ALICE_KEY", ALICE_KEY.to_owned()),
            ("JWKS_URL", idp.url.clone()),
            // No Redis unless a test starts one: the Redis-backed limits fail open
            // or closed, as configured.
            ("REDIS_URL", format!("redis://{}", super::refused_addr())),
            (
                "REDIS_CLUSTER_URL",
                format!("redis://{}", super::refused_addr()),
            ),
            (
                "JWKS_DOWN_URL",
                format!("https://{}/jwks.json", super::refused_addr()),
            ),
        ];
        env.extend(more.iter().cloned());
        let gateway = Gateway::start_in(AUTH_GATEWAY, &env, Some(&*dir), 2)
            .unwrap_or_else(|logs| panic!("gateway did not start:\n{logs}"));
        Setup {
            keys,
            idp,
            authz,
            upstream,
            gateway,
            client: super::client(),
            _dir: dir,
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::get(self.gateway.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        super::send(
            &self.client,
            request.body(TestBody::empty()).expect("request"),
        )
        .await
    }

    pub async fn bearer(&self, path: &str, token: &str) -> Reply {
        self.get(path, &[("authorization", &format!("Bearer {token}"))])
            .await
    }

    /// The request reached the upstream, which answered.
    pub fn passed(&self, reply: &Reply) -> HeaderMap {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        self.upstream.last().headers
    }
}

/// A refusal as RFC 6750 and the brief ask: the status, a JSON body, the challenge,
/// and nothing at the upstream.
pub fn refused(setup: &Setup, reply: &Reply, status: u16, challenge: &str, case: &str) {
    assert_eq!(reply.status.as_u16(), status, "{case}: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], status, "{case}");
    assert!(body["error"].is_string(), "{case}");
    let header = reply
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii"));
    assert_eq!(header, Some(challenge), "{case}");
    assert!(
        setup.upstream.seen().is_empty(),
        "{case}: the upstream saw the request"
    );
}

pub const INVALID: &str = "Bearer error=\"invalid_token\"";

/// An authorization service that decides by `X-Session`: `good` passes (as `alice`),
/// `redirect` is sent to a login page, `slow` answers after 2 s, anything else is
/// refused with a body of its own. It records what it was asked.
#[derive(Clone)]
#[allow(
    clippy::disallowed_types,
    reason = "a test service records requests from its connection tasks; not the gateway's request path"
)]
pub struct AuthzService {
    addr: std::net::SocketAddr,
    asked: std::sync::Arc<std::sync::Mutex<Vec<HeaderMap>>>,
}

impl AuthzService {
    pub async fn start() -> AuthzService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let service = AuthzService {
            addr: listener.local_addr().expect("addr"),
            asked: Default::default(),
        };
        let shared = service.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let handler =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let shared = shared.clone();
                            async move {
                                if req.uri().path() == "/introspect" {
                                    return Ok(shared.introspect(req).await);
                                }
                                let mut headers = req.headers().clone();
                                headers.insert(
                                    "x-asked-target",
                                    req.uri().to_string().parse().expect("target"),
                                );
                                shared.asked.lock().expect("asked").push(headers.clone());
                                let session = headers
                                    .get("x-session")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("");
                                let response = http::Response::builder();
                                let response = match session {
                                    "good" => response
                                        .status(200)
                                        .header("x-auth-user", "alice")
                                        .header("x-other", "not copied"),
                                    "redirect" => response.status(302).header("location", "/login"),
                                    "slow" => {
                                        tokio::time::sleep(Duration::from_secs(2)).await;
                                        response.status(200).header("x-auth-user", "late")
                                    }
                                    _ => response
                                        .status(401)
                                        .header("www-authenticate", "Basic realm=\"orders\"")
                                        .header("content-type", "application/json")
                                        .header("x-internal", "secret"),
                                };
                                let body = if session == "good" {
                                    ""
                                } else {
                                    r#"{"login":"required"}"#
                                };
                                Ok::<_, std::convert::Infallible>(
                                    response
                                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                        .expect("response"),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        service
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// RFC 7662: the gateway's credentials in Basic (each form-encoded first, RFC
    /// 6749 §2.3.1), the token in a form.
    async fn introspect(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        use base64::Engine;
        use http_body_util::BodyExt;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode("gateway:intro%3Aspection+secret%2F%2B")
        );
        let authorized = req
            .headers()
            .get("authorization")
            .is_some_and(|v| v == expected.as_str());
        let form = req.into_body().collect().await.expect("form").to_bytes();
        let form = String::from_utf8_lossy(&form).into_owned();
        self.asked.lock().expect("asked").push({
            let mut h = HeaderMap::new();
            h.insert("x-introspected", form.parse().expect("form"));
            h
        });
        let answer = match (authorized, form.as_str()) {
            (false, _) => {
                return http::Response::builder()
                    .status(401)
                    .body(Default::default())
                    .expect("response");
            }
            (true, "token=opaque-active&token_type_hint=access_token") => {
                json!({"active": true, "sub": "svc-1", "scope": "orders:read", "exp": now() + 300})
            }
            (true, "token=opaque-no-scope&token_type_hint=access_token") => {
                json!({"active": true, "sub": "svc-2", "scope": "profile"})
            }
            _ => json!({"active": false}),
        };
        http::Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                answer.to_string(),
            )))
            .expect("response")
    }

    pub fn introspections(&self) -> usize {
        self.asked()
            .iter()
            .filter(|h| h.contains_key("x-introspected"))
            .count()
    }

    pub fn asked(&self) -> Vec<HeaderMap> {
        self.asked.lock().expect("asked").clone()
    }
}
