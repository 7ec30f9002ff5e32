//! JWT authentication (RFC 7519, JWS of RFC 7515): reading the token, verifying it
//! with jsonwebtoken, and the claims the upstream gets.
//!
//! Checks, in order: one credential in the configured place, its size, the cache; on
//! a miss, the header's `alg` among the configured algorithms (never `none`, never an
//! algorithm of another key family: an HMAC is never checked with a public key), the
//! signature, `exp` (required) and `nbf` with the leeway, `iss`, `aud` (any of the
//! list), the required claims, and last that every forwarded claim can be a field
//! value.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;

use super::cache::{CredentialCache, Expiring};
use super::claims::{ClaimHeader, Claims, Forwarded, lookup};
use super::credential::CredentialSource;
use super::identity::{BEARER, INVALID_TOKEN, UNFORWARDABLE, invalid, missing, now, unreadable};
use super::jwks::{JwksSpec, KeySets, RemoteKeys};
use super::{KeyFamily, algorithm_family, min_secret_len};
use crate::pipeline::Stop;
use crate::pipeline::gateway::Request;
use crate::settings::{Setting, SettingError};

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
    /// The checks for each key family among the algorithms.
    validations: Vec<(AlgorithmFamily, Validation)>,
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
        super::crypto::install();
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
        let mut validations: Vec<(AlgorithmFamily, Validation)> = Vec::new();
        for algorithm in &algorithms {
            if !validations.iter().any(|(f, _)| *f == algorithm.family()) {
                let same: Vec<Algorithm> = algorithms
                    .iter()
                    .filter(|a| a.family() == algorithm.family())
                    .copied()
                    .collect();
                validations.push((algorithm.family(), validation(spec, same)));
            }
        }
        Ok(Jwt {
            spec,
            keys,
            validations,
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
            match cache.get(token, now).filter(|v| v.generation == generation) {
                Some(verified) => verified,
                None => {
                    let verified = self
                        .verify(token, now)
                        .map_err(|m| invalid(name, m, INVALID_TOKEN))?;
                    let verified = Rc::new(verified);
                    cache.insert(token, verified.clone(), now);
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
        let claims = match &self.keys {
            Keys::Static(key) => self.decode(token, key)?,
            Keys::Remote(remote) => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| refusal(e.kind()))?;
                let set = remote.load();
                let Some(key) = set.find(header.kid.as_deref()) else {
                    remote.unknown_key(now);
                    return Err("unknown token key");
                };
                self.decode(token, key)?
            }
        };
        Verified::new(claims, self.spec, generation)
    }

    /// jsonwebtoken's checks with the validation of the key's family; a key of a
    /// family no configured algorithm has verifies nothing.
    fn decode(&self, token: &[u8], key: &DecodingKey) -> Result<Claims, &'static str> {
        let (_, validation) = self
            .validations
            .iter()
            .find(|(family, _)| *family == key.family())
            .ok_or("token algorithm not allowed")?;
        jsonwebtoken::decode::<Claims>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| refusal(e.kind()))
    }
}

/// The jsonwebtoken checks for a policy: `exp` required, `nbf` checked when present.
fn validation(spec: &JwtSpec, algorithms: Vec<Algorithm>) -> Validation {
    let mut validation = Validation::new(algorithms.first().copied().unwrap_or_default());
    validation.algorithms = algorithms;
    validation.leeway = spec.leeway_seconds;
    validation.validate_nbf = true;
    validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
    if let Some(issuer) = spec.issuer {
        validation.set_issuer(&[issuer]);
    }
    if spec.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(spec.audiences);
    }
    validation
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

/// The fixed message for each way a token fails.
fn refusal(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::InvalidKeyFormat => "token algorithm not allowed",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "wrong token issuer",
        ErrorKind::InvalidAudience => "wrong token audience",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        _ => "malformed token",
    }
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
    fn new(claims: Claims, spec: &JwtSpec, generation: u64) -> Result<Self, &'static str> {
        if spec
            .required_claims
            .iter()
            .any(|path| lookup(&claims, path).is_none())
        {
            return Err("token lacks a required claim");
        }
        let forwarded =
            Forwarded::render(&claims, spec.forward_claims).map_err(|_| UNFORWARDABLE)?;
        let seconds = |name: &str| claims.get(name).and_then(Value::as_f64).map(|s| s as u64);
        Ok(Verified {
            not_before: seconds("nbf").unwrap_or(0),
            // jsonwebtoken has checked that `exp` is there and a number.
            expires: seconds("exp").unwrap_or(0),
            leeway: spec.leeway_seconds,
            generation,
            forwarded,
            claims,
        })
    }
}

impl Expiring for Verified {
    /// As jsonwebtoken judges: expired once `exp` is more than the leeway behind.
    fn usable_at(&self, now: u64) -> bool {
        self.expires.saturating_add(self.leeway) >= now
            && self.not_before <= now.saturating_add(self.leeway)
    }
}
