//! Authentication and authorization: request-phase policies that establish who sent a
//! request (a verified JWT, an API key's consumer) and whether that identity may use
//! the route.
//!
//! An authentication step returns an `Identity`, which the route's code keeps in a
//! local for the authorization steps after it: per-request state costs nothing on
//! routes without authentication.
//!
//! What an identity step forwards (claims as headers, `X-Consumer`) is removed from
//! every client request before routing, on every route (`Gateway::IDENTITY_HEADERS`),
//! so a client can never send a value the upstream would take for the gateway's.
//!
//! Answers follow RFC 6750 §3: 401 with `WWW-Authenticate` for missing or bad
//! credentials (`error="invalid_token"` when one was given), 400 for a request that
//! carries two, and 403 for valid credentials without the rights the route needs.

#[cfg(feature = "server")]
pub mod api_key;
#[cfg(feature = "server")]
pub mod authorize;
#[cfg(feature = "server")]
pub mod cache;
#[cfg(feature = "server")]
pub mod claims;
#[cfg(feature = "server")]
pub mod credential;
#[cfg(feature = "server")]
mod crypto;
#[cfg(feature = "server")]
pub mod ext_authz;
#[cfg(feature = "server")]
pub mod introspection;
#[cfg(feature = "server")]
pub mod jwks;
#[cfg(feature = "server")]
pub mod jwt;

#[cfg(feature = "server")]
pub use identity::{Identity, no_credentials};

/// The field that names an API key's consumer to the upstream.
pub const CONSUMER_HEADER: &str = "x-consumer";

/// The kinds of key JWS algorithms verify with (RFC 7518 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// HS256/384/512: a shared secret.
    Hmac,
    /// RS* and PS*: an RSA public key.
    Rsa,
    /// ES256/384: an EC public key on P-256 or P-384.
    Ec,
    /// EdDSA: an Ed25519 public key.
    Ed,
}

/// The family of a JWS algorithm the gateway verifies; `None` for any other name
/// (`none` included, in any case).
pub fn algorithm_family(name: &str) -> Option<KeyFamily> {
    Some(match name {
        "HS256" | "HS384" | "HS512" => KeyFamily::Hmac,
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => KeyFamily::Rsa,
        "ES256" | "ES384" => KeyFamily::Ec,
        "EdDSA" => KeyFamily::Ed,
        _ => return None,
    })
}

/// A key digest written as 64 hex digits (`sha256:<hex>` in gateway.toml).
pub fn parse_digest(hex: &str) -> Result<[u8; 32], String> {
    let bad = || format!("`sha256:{hex}` is not a SHA-256 digest: write 64 hex digits");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut digest = [0; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(digest)
}

/// The longest clock skew allowed on `exp` and `nbf`: more hides clocks that are
/// wrong, not skewed, and accepts tokens long expired.
pub const MAX_LEEWAY_SECONDS: u64 = 600;

/// A JWT leeway in whole seconds: a duration, where zero (`0s`) is allowed, as no
/// wait hangs on it.
pub fn parse_leeway(text: &str) -> Result<u64, String> {
    let seconds = match text {
        "0" | "0s" | "0ms" | "0m" => 0,
        _ => crate::settings::parse_duration(text)?.as_secs(),
    };
    if seconds > MAX_LEEWAY_SECONDS {
        return Err(format!(
            "a leeway over {MAX_LEEWAY_SECONDS} s accepts tokens long expired"
        ));
    }
    Ok(seconds)
}

/// The shortest HMAC secret for an algorithm: its hash's output size (RFC 7518 §3.2).
pub fn min_secret_len(algorithm: &str) -> usize {
    match algorithm {
        "HS384" => 48,
        "HS512" => 64,
        _ => 32,
    }
}

#[cfg(feature = "server")]
mod identity {
    use std::rc::Rc;

    use http::StatusCode;

    use super::api_key::ConsumerSpec;
    use super::credential::CredentialError;
    use super::introspection::Introspected;
    use super::jwt::Verified;
    use crate::observe::access_log::Principal;
    use crate::pipeline::{Refusal, Stop};

    /// Who a request comes from, as an authentication step established it.
    #[derive(Debug, Clone)]
    pub enum Identity {
        /// A verified token, with its claims.
        Token(Rc<Verified>),
        /// An opaque token the authorization server says is active, with its claims.
        Introspected(Rc<Introspected>),
        /// The consumer whose API key the request carried.
        Consumer(&'static ConsumerSpec),
    }

    impl Identity {
        /// Whom the access log names: the consumer, or the token's subject (`sub`;
        /// an introspected token without one, by its `username`). `None` for a token
        /// that names nobody.
        pub fn principal(&self) -> Option<Principal> {
            let claims = match self {
                Identity::Consumer(consumer) => return Some(Principal::Consumer(consumer.name)),
                Identity::Token(verified) => &verified.claims,
                Identity::Introspected(introspected) => introspected.claims.as_ref()?,
            };
            let subject = match claims.get("sub") {
                Some(serde_json::Value::String(sub)) => sub,
                _ => match (self, claims.get("username")) {
                    (Identity::Introspected(_), Some(serde_json::Value::String(name))) => name,
                    _ => return None,
                },
            };
            Some(Principal::Subject(subject.as_str().into()))
        }
    }

    /// The challenge of a bearer-token policy without a token, and with a bad one.
    pub(crate) const BEARER: &str = "Bearer";
    pub(crate) const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

    /// The refusal of a token whose forwarded claims hold control characters.
    pub(crate) const UNFORWARDABLE: &str = "a forwarded claim holds control characters";

    /// 401 for an `any` step whose policies found no credential of theirs:
    /// `challenge` names each scheme (`Bearer, ApiKey`).
    pub fn no_credentials(by: &'static str, challenge: &'static str) -> Stop {
        missing(by, challenge)
    }

    /// 401 without an error code: the request carried no credential (RFC 6750 §3.1).
    pub(crate) fn missing(by: &'static str, challenge: &'static str) -> Stop {
        Stop::Refused(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "missing credentials",
            by,
            challenge: Some(challenge),
        })
    }

    /// 401 `invalid_token`: the credential given is not accepted.
    pub(crate) fn invalid(
        by: &'static str,
        message: &'static str,
        challenge: &'static str,
    ) -> Stop {
        Stop::Refused(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message,
            by,
            challenge: Some(challenge),
        })
    }

    /// A credential that could not be read: 400 for two of them, 401 otherwise.
    pub(crate) fn unreadable(
        by: &'static str,
        error: CredentialError,
        invalid_challenge: &'static str,
    ) -> Stop {
        match error {
            CredentialError::Ambiguous => Stop::Refused(Refusal {
                status: StatusCode::BAD_REQUEST,
                message: "more than one credential given",
                by,
                challenge: Some("Bearer error=\"invalid_request\""),
            }),
            CredentialError::TooLarge => invalid(by, "credential too large", invalid_challenge),
            CredentialError::Malformed => invalid(by, "malformed credential", invalid_challenge),
        }
    }

    /// 403: the identity lacks what the route requires.
    pub(crate) fn forbidden(by: &'static str, message: &'static str, scope: bool) -> Stop {
        Stop::Refused(Refusal {
            status: StatusCode::FORBIDDEN,
            message,
            by,
            challenge: scope.then_some("Bearer error=\"insufficient_scope\""),
        })
    }

    /// A policy's service (an authorization service, an introspection endpoint) gave
    /// no usable answer: 503, in the target's place.
    pub(crate) fn unavailable(by: &'static str, what: &'static str) -> Stop {
        tracing::warn!(policy = by, "{what}; refusing the request");
        Stop::Answer {
            by,
            what,
            response: Box::new(crate::message::error::json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                what,
            )),
        }
    }

    /// Asks `service` and reads its whole answer, up to `MAX_ANSWER` bytes of body,
    /// within `timeout`: `None` for no answer, a failed one or a longer one.
    pub(crate) async fn ask_whole(
        service: &crate::upstream::Upstream,
        ask: crate::upstream::Ask<'_>,
        timeout: std::time::Duration,
        cx: &crate::pipeline::RequestContext,
    ) -> Option<(StatusCode, crate::message::fields::Fields, bytes::Bytes)> {
        use http_body_util::BodyExt;
        let asked = async {
            let response = service.ask(ask, cx).await.ok()?;
            let (status, fields, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .ok()?
                .to_bytes();
            Some((status, fields, body))
        };
        tokio::time::timeout(timeout, asked).await.ok().flatten()
    }

    /// The longest answer read from a policy's service.
    const MAX_ANSWER: usize = 64 << 10;

    /// Seconds since the Unix epoch.
    pub(crate) fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
