//! What a limit counts requests by. Every source reads something the request already
//! carries, with no allocation for the usual kinds: the client's address, a field's
//! value, a route parameter, the consumer of an API key, a claim of a verified token,
//! or nothing (the route as a whole).
//!
//! A request without the key's source (no such field, no identity, no such claim)
//! is counted by its client address instead, as Kong does: leaving a field out must
//! not be a way around a limit. Each kind hashes with its own tag, so a field value
//! can never stand for an address's bucket.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use crate::auth::Identity;
use crate::auth::claims::lookup;
use crate::pipeline::RequestContext;
use crate::pipeline::gateway::Request;
use crate::policy::ip::{Cidr, client_address};

/// A limit's key source, as the compiler lays it out.
#[derive(Debug, Clone, Copy)]
pub enum LimitKey {
    /// The client's address, behind the trusted proxies.
    ClientIp { trusted_proxies: &'static [Cidr] },
    /// A request field's value (lower-case name).
    Header {
        name: &'static str,
        trusted_proxies: &'static [Cidr],
    },
    /// A route parameter's value; the route passes it.
    Param { trusted_proxies: &'static [Cidr] },
    /// The consumer of the API key an earlier step verified.
    Consumer { trusted_proxies: &'static [Cidr] },
    /// A claim of the token an earlier step verified (a path, as `forward_claims`).
    Claim {
        path: &'static str,
        trusted_proxies: &'static [Cidr],
    },
    /// One bucket for every request of the scope.
    Route,
}

/// A request's key, borrowed from the request where it can be.
#[derive(Debug, PartialEq, Eq)]
pub enum Key<'r> {
    Client(IpAddr),
    Text(&'r [u8]),
    /// A claim that is not a string, as JSON text.
    Json(String),
    Route,
}

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Client(ip) => (0u8, ip).hash(state),
            Key::Text(text) => (1u8, text).hash(state),
            Key::Json(text) => (1u8, text.as_bytes()).hash(state),
            Key::Route => 2u8.hash(state),
        }
    }
}

impl Key<'_> {
    /// The key as bytes that are the same in every process (for a shared store),
    /// each kind with its own tag, as `hash` does.
    pub fn stable_bytes(&self) -> Vec<u8> {
        match self {
            Key::Client(IpAddr::V4(ip)) => [&[0u8][..], &ip.octets()].concat(),
            Key::Client(IpAddr::V6(ip)) => [&[0u8][..], &ip.octets()].concat(),
            Key::Text(text) => [&[1u8][..], text].concat(),
            Key::Json(text) => [&[1u8][..], text.as_bytes()].concat(),
            Key::Route => vec![2],
        }
    }
}

impl LimitKey {
    /// The key of a request. `param` is the route parameter of a `Param` source;
    /// `identity` what an authentication step before established.
    pub fn of<'r>(
        &self,
        req: &'r Request,
        cx: &RequestContext,
        param: Option<&'r str>,
        identity: Option<&'r Identity>,
    ) -> Key<'r> {
        let trusted = match *self {
            LimitKey::Route => return Key::Route,
            LimitKey::ClientIp { trusted_proxies } => trusted_proxies,
            LimitKey::Header {
                name,
                trusted_proxies,
            } => match req.fields.get(name.as_bytes()) {
                Some(value) => return Key::Text(value),
                None => trusted_proxies,
            },
            LimitKey::Param { trusted_proxies } => match param {
                Some(value) => return Key::Text(value.as_bytes()),
                None => trusted_proxies,
            },
            LimitKey::Consumer { trusted_proxies } => match identity {
                Some(Identity::Consumer(consumer)) => return Key::Text(consumer.name.as_bytes()),
                _ => trusted_proxies,
            },
            LimitKey::Claim {
                path,
                trusted_proxies,
            } => {
                let claims = match identity {
                    Some(Identity::Token(token)) => Some(&token.claims),
                    Some(Identity::Introspected(answer)) => answer.claims.as_ref(),
                    _ => None,
                };
                match claims.and_then(|claims| lookup(claims, path)) {
                    Some(serde_json::Value::String(text)) => return Key::Text(text.as_bytes()),
                    Some(other) => return Key::Json(other.to_string()),
                    None => trusted_proxies,
                }
            }
        };
        let peer = cx.client.ip();
        let client = if trusted.is_empty() {
            peer
        } else {
            client_address(trusted, peer, req.fields.get_all(b"x-forwarded-for")).unwrap_or(peer)
        };
        Key::Client(client)
    }
}
