//! OAuth 2.0 token introspection (RFC 7662) for opaque tokens: the authorization
//! server says whether a token is active, and its claims, which then feed the same
//! forwarded fields and `authorize` rules as a JWT's.
//!
//! - The call: `POST` of `token=…&token_type_hint=access_token` (form-encoded) to the
//!   endpoint on an upstream, with the gateway's client credentials in HTTP Basic
//!   (RFC 7662 §2.1; RFC 6749 §2.3.1), bounded by `timeout`.
//! - The cache, per worker: keyed by the token's SHA-256 (the token itself is never
//!   kept), an active answer until its `exp` or `cache_ttl`, whichever is sooner, an
//!   inactive one for `negative_ttl`. A token the server does not answer for is not
//!   cached.
//! - No answer, or one that is not RFC 7662 JSON: 503, and the upstream never sees
//!   the request.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cache::{CredentialCache, Expiring};
use super::claims::{ClaimHeader, Claims, Forwarded};
use super::credential::CredentialSource;
use super::identity::{
    BEARER, INVALID_TOKEN, UNFORWARDABLE, ask_whole, invalid, missing, now, unavailable, unreadable,
};
use crate::message::fields::Fields;
use crate::observe::trace::SpanContext;
use crate::observe::trace::context::copy_state;
use crate::pipeline::gateway::Request;
use crate::pipeline::{RequestContext, Stop};
use crate::settings::{Setting, SettingError};
use crate::upstream::{Ask, Upstream};

/// Opaque tokens are short; anything longer is refused before it is sent anywhere.
const MAX_TOKEN: usize = 8 << 10;

/// `introspection = { … }` of a policy.
#[derive(Debug)]
pub struct IntrospectionSpec {
    pub name: &'static str,
    /// Path of the endpoint on its upstream.
    pub path: &'static str,
    pub client_id: Setting,
    pub client_secret: Setting,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub cache_size: usize,
    pub forward_token: bool,
    pub forward_claims: &'static [ClaimHeader],
}

/// An introspection policy resolved at start-up.
pub struct Introspection {
    spec: &'static IntrospectionSpec,
    /// `Basic base64(client_id:client_secret)`.
    credentials: Vec<u8>,
}

/// What the server said of one token.
#[derive(Debug)]
pub struct Introspected {
    /// `None` for an inactive token.
    pub claims: Option<Claims>,
    until: u64,
    forwarded: Forwarded,
}

impl Expiring for Introspected {
    fn usable_at(&self, now: u64) -> bool {
        now < self.until
    }
}

/// Each worker's introspection answers for one policy.
pub type IntrospectionCache = CredentialCache<Introspected>;

impl Introspection {
    pub fn new(spec: &'static IntrospectionSpec) -> Result<Self, Vec<SettingError>> {
        let (id, secret) = match (spec.client_id.resolve(), spec.client_secret.resolve()) {
            (Ok(id), Ok(secret)) => (id, secret),
            (id, secret) => return Err([id.err(), secret.err()].into_iter().flatten().collect()),
        };
        // RFC 6749 §2.3.1: each form-encoded, then joined by `:` and base64-encoded,
        // so an id or secret holding `:` or non-ASCII reaches the server intact.
        let mut pair = Vec::new();
        form_encode(id.as_bytes(), &mut pair);
        pair.push(b':');
        form_encode(secret.as_bytes(), &mut pair);
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        Ok(Introspection {
            spec,
            credentials: format!("Basic {basic}").into_bytes(),
        })
    }

    /// Whether the request presents a bearer token (see `Jwt::presents`).
    pub fn presents(&self, req: &Request) -> bool {
        !matches!(
            CredentialSource::Bearer.read(&req.fields, None, MAX_TOKEN),
            Ok(None)
        )
    }

    /// The request phase: the token's claims, from the cache or the server (asked
    /// within the request's `trace`).
    pub async fn authenticate(
        &self,
        req: &mut Request,
        cache: &IntrospectionCache,
        server: &Upstream,
        cx: &RequestContext,
        trace: Option<SpanContext>,
    ) -> Result<Rc<Introspected>, Stop> {
        let name = self.spec.name;
        let now = now();
        let (digest, token) = {
            let token = CredentialSource::Bearer
                .read(&req.fields, None, MAX_TOKEN)
                .map_err(|e| unreadable(name, e, INVALID_TOKEN))?
                .ok_or_else(|| missing(name, BEARER))?;
            let digest: [u8; 32] = Sha256::digest(&token).into();
            (digest, Bytes::copy_from_slice(&token))
        };
        let answer = match cache.get(&digest, now) {
            Some(answer) => answer,
            None => {
                let answer = Rc::new(self.introspect(&token, server, req, cx, now, trace).await?);
                cache.insert(&digest, answer.clone(), now);
                answer
            }
        };
        if answer.claims.is_none() {
            return Err(invalid(name, "token not active", INVALID_TOKEN));
        }
        if !self.spec.forward_token {
            CredentialSource::Bearer.remove(req)?;
        }
        answer
            .forwarded
            .apply(self.spec.forward_claims, &mut req.fields);
        Ok(answer)
    }

    async fn introspect(
        &self,
        token: &[u8],
        server: &Upstream,
        client: &Request,
        cx: &RequestContext,
        now: u64,
        trace: Option<SpanContext>,
    ) -> Result<Introspected, Stop> {
        let mut body = Vec::with_capacity(token.len() + 40);
        body.extend_from_slice(b"token=");
        form_encode(token, &mut body);
        body.extend_from_slice(b"&token_type_hint=access_token");
        let mut fields = Fields::with_capacity(3, 128);
        fields.append(b"authorization", &self.credentials);
        fields.append(b"content-type", b"application/x-www-form-urlencoded");
        fields.append(b"accept", b"application/json");
        if trace.is_some() {
            copy_state(&client.fields, &mut fields);
        }
        let unavailable = || unavailable(self.spec.name, "token introspection unavailable");
        let ask = Ask {
            method: &Method::POST,
            target: self.spec.path,
            fields: &fields,
            body: Bytes::from(body),
            original_host: None,
            trace,
        };
        let answer = ask_whole(server, ask, self.spec.timeout, cx).await;
        let body = match answer {
            Some((StatusCode::OK, _, body)) => body,
            _ => return Err(unavailable()),
        };
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| unavailable())?;
        // RFC 7662 §2.2: `active` is required; anything but `true` is inactive.
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Ok(Introspected {
                claims: None,
                until: now + self.spec.negative_ttl.as_secs(),
                forwarded: Forwarded::default(),
            });
        }
        let forwarded = Forwarded::render(&claims, self.spec.forward_claims)
            .map_err(|_| invalid(self.spec.name, UNFORWARDABLE, INVALID_TOKEN))?;
        let mut until = now + self.spec.cache_ttl.as_secs();
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            if exp <= now {
                return Err(invalid(self.spec.name, "token expired", INVALID_TOKEN));
            }
            until = until.min(exp);
        }
        Ok(Introspected {
            claims: Some(claims),
            until,
            forwarded,
        })
    }
}

/// `application/x-www-form-urlencoded` bytes of a value (WHATWG URL §5.2).
fn form_encode(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        let mut out = Vec::new();
        form_encode(b"a+b/c=d e~", &mut out);
        assert_eq!(out, b"a%2Bb%2Fc%3Dd+e%7E");
    }
}
