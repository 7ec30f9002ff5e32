//! JWT authentication (RFC 7519, JWS of RFC 7515): reading the token, verifying it,
//! and the claims the upstream gets.
//!
//! Checks, in order: one credential in the configured place, its size, the cache; on
//! a miss, the token's form and header (`jws`), its `alg` among the configured
//! algorithms (never `none`, never an algorithm of another key family: an HMAC is
//! never checked with a public key), the signature, the claim set (`claim_set`:
//! `exp` required, `nbf`, `iss`, `aud`), the required claims, and last that every
//! forwarded claim can be a field value.
//!
//! jsonwebtoken reads the keys (PEM, JWK) and names the algorithms; the token itself
//! is read here, in one pass that keeps only the claims the configuration reads.
//! jsonwebtoken's `decode` parsed the claims twice into a map of all of them, and
//! let a token without `iss` or `aud` through a policy that names them: a cache miss
//! measured 33,600 instructions with it (bench/RESULTS.md).

pub(crate) mod claim_set;
pub(crate) mod jws;

use std::rc::Rc;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::cache::{CredentialCache, Expiring};
use super::claims::{ClaimHeader, Claims, Forwarded, lookup};
use super::credential::CredentialSource;
use super::crypto;
use super::identity::{BEARER, INVALID_TOKEN, UNFORWARDABLE, invalid, missing, now, unreadable};
use super::jwks::{JwksSpec, KeyMiss, KeySets, RemoteKeys};
use super::{KeyFamily, algorithm_family, min_secret_len};
use crate::pipeline::Stop;
use crate::pipeline::gateway::Request;
use crate::settings::{Setting, SettingError};
use claim_set::{Checks, ClaimSet};
use jws::{Compact, Header};

/// `jwt = { … }` of a policy, as the compiler lays it out.
#[derive(Debug)]
pub struct JwtSpec {
    pub name: &'static str,
    pub key: JwtKeySpec,
    /// The algorithms accepted, all of one key family.
    pub algorithms: &'static [&'static str],
    pub issuer: Option<&'static str>,
    /// Accepted when the token's `aud` names any; empty: `aud` is not checked.
    pub audiences: &'static [&'static str],
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// Claims that must be present (paths, as `forward_claims` reads them).
    pub required_claims: &'static [&'static str],
    pub source: CredentialSource,
    pub max_token_size: usize,
    /// Whether the upstream still gets the token; by default it is removed.
    pub forward_token: bool,
    pub forward_claims: &'static [ClaimHeader],
    /// Top-level names of the claims the configuration reads (forwarded, required,
    /// authorized on): a verified token keeps only these.
    pub claims_read: &'static [&'static str],
    /// Verified tokens each worker keeps.
    pub cache_size: usize,
}

/// Where the verification key comes from.
#[derive(Debug)]
pub enum JwtKeySpec {
    /// An HMAC secret: `${env:…}` or `${file:…}`.
    Secret(Setting),
    /// A public key in PEM.
    PublicKey(Setting),
    /// A provider's published key set.
    Jwks(JwksSpec),
}

/// A JWT policy resolved at start-up.
pub struct Jwt {
    spec: &'static JwtSpec,
    keys: Keys,
    algorithms: Vec<Algorithm>,
}

enum Keys {
    Static(DecodingKey),
    Remote(Arc<RemoteKeys>),
}

/// Each worker's verified tokens for one policy.
pub type TokenCache = CredentialCache<Verified>;

impl Jwt {
    /// The policy; a published key set is registered in `key_sets`, shared with the
    /// other policies that name its URL.
    pub fn new(spec: &'static JwtSpec, key_sets: &mut KeySets) -> Result<Self, Vec<SettingError>> {
        let algorithms: Vec<Algorithm> = spec
            .algorithms
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        let family = spec.algorithms.first().and_then(|a| algorithm_family(a));
        let keys = match (&spec.key, family) {
            (JwtKeySpec::Secret(setting), Some(KeyFamily::Hmac)) => {
                secret(setting, spec.algorithms).map(Keys::Static)
            }
            (JwtKeySpec::PublicKey(setting), Some(family)) => {
                public_key(setting, family).map(Keys::Static)
            }
            (JwtKeySpec::Jwks(jwks), _) => key_sets.source(jwks).map(Keys::Remote),
            (JwtKeySpec::Secret(setting) | JwtKeySpec::PublicKey(setting), _) => Err(
                SettingError::new(setting.origin, "the algorithms do not match the key"),
            ),
        }
        .map_err(|e| vec![e])?;
        Ok(Jwt {
            spec,
            keys,
            algorithms,
        })
    }

    /// Whether the request presents this policy's credential, well formed or not: an
    /// `any` step lets the first policy whose credential is present decide.
    pub fn presents(&self, req: &Request) -> bool {
        !matches!(
            self.spec
                .source
                .read(&req.fields, req.uri.query(), self.spec.max_token_size),
            Ok(None)
        )
    }

    /// The request phase: the verified token, from the cache or checked now. The
    /// token leaves the request unless `forward_token`, and the forwarded claims are
    /// added as fields (the driver has removed any the client sent).
    pub fn authenticate(
        &self,
        req: &mut Request,
        cache: &TokenCache,
    ) -> Result<Rc<Verified>, Stop> {
        let name = self.spec.name;
        let now = now();
        let verified = {
            let token = self
                .spec
                .source
                .read(&req.fields, req.uri.query(), self.spec.max_token_size)
                .map_err(|e| unreadable(name, e, INVALID_TOKEN))?
                .ok_or_else(|| missing(name, BEARER))?;
            let generation = self.generation();
            match cache
                .get(&token, now)
                .filter(|v| v.generation == generation)
            {
                Some(verified) => verified,
                None => {
                    let verified = self
                        .verify(&token, now)
                        .map_err(|m| invalid(name, m, INVALID_TOKEN))?;
                    let verified = Rc::new(verified);
                    cache.insert(&token, verified.clone(), now);
                    verified
                }
            }
        };
        if !self.spec.forward_token {
            self.spec.source.remove(req)?;
        }
        verified
            .forwarded
            .apply(self.spec.forward_claims, &mut req.fields);
        Ok(verified)
    }

    /// Which key set verified a token: cached tokens of an older one than the current
    /// are verified again.
    fn generation(&self) -> u64 {
        match &self.keys {
            Keys::Static(_) => 0,
            Keys::Remote(remote) => remote.removals(),
        }
    }

    fn verify(&self, token: &[u8], now: u64) -> Result<Verified, &'static str> {
        let generation = self.generation();
        let token = Compact::split(token)?;
        // Decoded on the stack: a usual token's parts fit.
        let (mut header_buf, mut header_heap) = ([0; 512], Vec::new());
        let header = jws::decode(token.header, &mut header_buf, &mut header_heap)?;
        let header = Header::parse(header)?;
        if !self.algorithms.contains(&header.alg) {
            return Err("token algorithm not allowed");
        }
        let (mut signature_buf, mut signature_heap) = ([0; 512], Vec::new());
        let signature = jws::decode(token.signature, &mut signature_buf, &mut signature_heap)?;
        let verified = match &self.keys {
            Keys::Static(key) => crypto::verify(header.alg, key, token.signing_input, signature),
            Keys::Remote(remote) => {
                let set = remote.load();
                match set.find(header.kid.as_deref(), header.alg) {
                    Ok(key) => crypto::verify(header.alg, key, token.signing_input, signature),
                    Err(KeyMiss::WrongAlgorithm) => return Err("token algorithm not allowed"),
                    Err(KeyMiss::Unknown) => {
                        remote.unknown_key(now);
                        return Err("unknown token key");
                    }
                }
            }
        };
        if !verified {
            return Err("invalid token signature");
        }
        let (mut payload_buf, mut payload_heap) = ([0; 1024], Vec::new());
        let payload = jws::decode(token.payload, &mut payload_buf, &mut payload_heap)?;
        let checks = Checks {
            issuer: self.spec.issuer,
            audiences: self.spec.audiences,
            leeway: self.spec.leeway_seconds,
            kept: self.spec.claims_read,
        };
        Verified::new(checks.read(payload, now)?, self.spec, generation)
    }
}

fn secret(setting: &Setting, algorithms: &[&str]) -> Result<DecodingKey, SettingError> {
    let secret = setting.resolve()?;
    // RFC 7518 §3.2: a key at least as long as the hash's output MUST be used.
    let needed = algorithms
        .iter()
        .map(|a| min_secret_len(a))
        .max()
        .unwrap_or(32);
    if secret.len() < needed {
        return Err(SettingError::new(
            setting.origin,
            format!(
                "the HMAC secret has {} bytes; {} needs at least {needed} (RFC 7518 §3.2)",
                secret.len(),
                algorithms.join("/")
            ),
        ));
    }
    DecodingKey::from_secret(secret.as_bytes())
        .map_err(|e| SettingError::new(setting.origin, e.to_string()))
}

fn public_key(setting: &Setting, family: KeyFamily) -> Result<DecodingKey, SettingError> {
    let pem = setting.resolve()?;
    let pem = pem.as_bytes();
    let (key, kind) = match family {
        KeyFamily::Rsa => (DecodingKey::from_rsa_pem(pem), "an RSA"),
        KeyFamily::Ec => (DecodingKey::from_ec_pem(pem), "an EC"),
        KeyFamily::Ed => (DecodingKey::from_ed_pem(pem), "an Ed25519"),
        KeyFamily::Hmac => {
            return Err(SettingError::new(
                setting.origin,
                "HMAC algorithms take a `secret`",
            ));
        }
    };
    let key = key.map_err(|e| {
        SettingError::new(
            setting.origin,
            format!("not {kind} public key in PEM, as the algorithms need: {e}"),
        )
    })?;
    Ok(key)
}

/// A token that passed every check, as the cache keeps it.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    not_before: u64,
    expires: u64,
    leeway: u64,
    /// The key set's generation it was verified with.
    generation: u64,
    forwarded: Forwarded,
}

impl Verified {
    fn new(set: ClaimSet, spec: &JwtSpec, generation: u64) -> Result<Self, &'static str> {
        let ClaimSet {
            claims,
            not_before,
            expires,
        } = set;
        if spec
            .required_claims
            .iter()
            .any(|path| lookup(&claims, path).is_none())
        {
            return Err("token lacks a required claim");
        }
        let forwarded =
            Forwarded::render(&claims, spec.forward_claims).map_err(|_| UNFORWARDABLE)?;
        Ok(Verified {
            not_before,
            expires,
            leeway: spec.leeway_seconds,
            generation,
            forwarded,
            claims,
        })
    }
}

impl Expiring for Verified {
    /// As `claim_set` judges: expired once `exp` is more than the leeway behind.
    fn usable_at(&self, now: u64) -> bool {
        self.expires.saturating_add(self.leeway) >= now
            && self.not_before <= now.saturating_add(self.leeway)
    }
}
