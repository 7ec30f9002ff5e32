//! JWT test support: real keys of every kind the gateway verifies (RSA from the
//! `openssl` command, EC and Ed25519 from rcgen), their public halves written where
//! the gateway reads them, and tokens signed here with ring, byte by byte, so that
//! tests can also write the malformed and forged ones an attacker would.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// The signing halves of the test keys.
pub struct Keys {
    rsa: RsaKeyPair,
    p256: EcdsaKeyPair,
    p384: EcdsaKeyPair,
    ed25519: Ed25519KeyPair,
    /// The RSA public key in PEM, as an attacker would find it published.
    pub rsa_public_pem: String,
}

impl Keys {
    /// New keys; `rsa.pub.pem`, `p256.pub.pem`, `p384.pub.pem` and `ed25519.pub.pem`
    /// are written into `dir`.
    pub fn generate(dir: &Path) -> Keys {
        let rsa_key = dir.join("rsa.key");
        run(Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&rsa_key));
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&rsa_key)
            .arg("-out")
            .arg(dir.join("rsa.pub.pem")));
        let rsa_pem = std::fs::read(&rsa_key).expect("RSA key");
        let rsa_der = match PrivateKeyDer::from_pem_slice(&rsa_pem).expect("RSA PEM") {
            PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
            other => panic!("openssl wrote a {other:?} key"),
        };
        let rsa = RsaKeyPair::from_pkcs8(&rsa_der).expect("RSA key pair");
        let rng = SystemRandom::new();
        let ec = |alg: &'static rcgen::SignatureAlgorithm,
                  signing: &'static signature::EcdsaSigningAlgorithm,
                  name: &str| {
            let key = rcgen::KeyPair::generate_for(alg).expect("EC key");
            std::fs::write(dir.join(name), key.public_key_pem()).expect("write EC key");
            EcdsaKeyPair::from_pkcs8(signing, &key.serialize_der(), &rng).expect("EC key pair")
        };
        let p256 = ec(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            "p256.pub.pem",
        );
        let p384 = ec(
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            "p384.pub.pem",
        );
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        std::fs::write(dir.join("ed25519.pub.pem"), ed.public_key_pem()).expect("write key");
        let ed25519 =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&ed.serialize_der()).expect("Ed25519");
        Keys {
            rsa,
            p256,
            p384,
            ed25519,
            rsa_public_pem: String::from_utf8(std::fs::read(dir.join("rsa.pub.pem")).expect("pem"))
                .expect("PEM is text"),
        }
    }

    /// A token signed with the key of `alg`, its header `{"alg", "typ"}`.
    pub fn sign(&self, alg: &str, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": alg, "typ": "JWT"}), claims)
    }

    /// The same with the key named `kid`, as a provider's tokens are.
    pub fn sign_with_kid(&self, alg: &str, kid: &str, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": alg, "typ": "JWT", "kid": kid}), claims)
    }

    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let alg = header["alg"].as_str().expect("alg");
        let signing_input = signing_input(header, claims);
        let signature = self.signature(alg, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The public key of `alg` as a JWK (RFC 7517) named `kid`.
    pub fn jwk(&self, alg: &str, kid: &str) -> Value {
        match alg {
            "RS256" => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
                json!({
                    "kty": "RSA", "kid": kid, "use": "sig", "alg": alg,
                    "n": b64(&public.n), "e": b64(&public.e),
                })
            }
            "ES256" => {
                use ring::signature::KeyPair;
                let point = self.p256.public_key().as_ref();
                json!({
                    "kty": "EC", "kid": kid, "crv": "P-256", "alg": alg,
                    "x": b64(&point[1..33]), "y": b64(&point[33..]),
                })
            }
            other => panic!("no JWK for {other}"),
        }
    }

    fn signature(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        let rsa = |padding: &'static dyn signature::RsaEncoding| {
            let mut out = vec![0; self.rsa.public().modulus_len()];
            self.rsa
                .sign(padding, &rng, message, &mut out)
                .expect("RSA sign");
            out
        };
        match alg {
            "RS256" => rsa(&signature::RSA_PKCS1_SHA256),
            "RS384" => rsa(&signature::RSA_PKCS1_SHA384),
            "RS512" => rsa(&signature::RSA_PKCS1_SHA512),
            "PS256" => rsa(&signature::RSA_PSS_SHA256),
            "PS384" => rsa(&signature::RSA_PSS_SHA384),
            "PS512" => rsa(&signature::RSA_PSS_SHA512),
            "ES256" => self
                .p256
                .sign(&rng, message)
                .expect("sign")
                .as_ref()
                .to_vec(),
            "ES384" => self
                .p384
                .sign(&rng, message)
                .expect("sign")
                .as_ref()
                .to_vec(),
            "EdDSA" => self.ed25519.sign(message).as_ref().to_vec(),
            other => panic!("no key for {other}"),
        }
    }
}

fn run(command: &mut Command) {
    let status = command.status().expect("run openssl");
    assert!(status.success(), "{command:?} failed");
}

/// An identity provider's key-set endpoint over HTTPS: serves `document` with
/// `Cache-Control: max-age=3600`, or 503 while `up` is false, and counts its fetches.
/// A set that lives an hour makes every fetch within a test one that a token naming an
/// unknown key woke.
#[derive(Clone)]
pub struct KeyServer {
    pub url: String,
    pub document: Arc<Mutex<Value>>,
    pub up: Arc<AtomicBool>,
    pub fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    pub async fn start(identity: &super::tls::Issued, document: Value) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = KeyServer {
            url: format!(
                "https://127.0.0.1:{}/.well-known/jwks.json",
                listener.local_addr().expect("addr").port()
            ),
            document: Arc::new(Mutex::new(document)),
            up: Arc::new(AtomicBool::new(true)),
            fetches: Arc::default(),
        };
        let acceptor = super::tls::acceptor(identity, None);
        let shared = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_req| {
                        let shared = shared.clone();
                        async move {
                            shared.fetches.fetch_add(1, Ordering::SeqCst);
                            let (status, body) = if shared.up.load(Ordering::SeqCst) {
                                (200, shared.document.lock().expect("document").to_string())
                            } else {
                                (503, String::new())
                            };
                            let response = http::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .header("cache-control", "public, max-age=3600")
                                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                .expect("response");
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    pub fn set(&self, document: Value) {
        *self.document.lock().expect("document") = document;
    }
}

/// `base64url(header).base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A token with `header`, signed with HMAC under `secret`.
pub fn hmac_with_header(secret: &[u8], header: &Value, claims: &Value) -> String {
    let algorithm = match header["alg"].as_str() {
        Some("HS384") => ring::hmac::HMAC_SHA384,
        Some("HS512") => ring::hmac::HMAC_SHA512,
        _ => ring::hmac::HMAC_SHA256,
    };
    let input = signing_input(header, claims);
    let tag = ring::hmac::sign(&ring::hmac::Key::new(algorithm, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// An HS256 token whose claim set is the JSON text `claims` as written (a
/// `Value` cannot hold a duplicate member).
pub fn hmac_text(secret: &[u8], claims: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// A token signed with HMAC under `secret` with `alg` (HS256, HS384, HS512).
pub fn hmac(secret: &[u8], alg: &str, claims: &Value) -> String {
    hmac_with_header(secret, &json!({"alg": alg, "typ": "JWT"}), claims)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Claims that the `hs` policy of `gateways/auth.toml` accepts, valid for 5 minutes.
pub fn claims(sub: &str) -> Value {
    json!({
        "sub": sub,
        "iss": "https://id.test/",
        "aud": "shop",
        "exp": now() + 300,
        "iat": now(),
    })
}

/// The base64url text of `bytes`, for hand-made token parts.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
