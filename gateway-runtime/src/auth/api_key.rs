//! API keys and consumers. Consumers are declared in gateway.toml with their keys as
//! references (`${env:…}`, `${file:…}`, resolved at start-up) or as SHA-256 digests
//! (`sha256:<hex>`), never as plain text. A presented key is hashed and looked up by
//! its digest: the comparisons a lookup makes are on digests, so their timing says
//! nothing about any key.

use sha2::{Digest, Sha256};
use std::collections::HashMap;

use super::CONSUMER_HEADER;
use super::credential::CredentialSource;
use super::identity::{invalid, missing, unreadable};
use crate::pipeline::Stop;
use crate::pipeline::gateway::Request;
use crate::settings::{Setting, SettingError};

const CHALLENGE: &str = "ApiKey";

/// `[consumers.NAME]`.
#[derive(Debug)]
pub struct ConsumerSpec {
    pub name: &'static str,
    /// References, or `sha256:` digests in hex.
    pub keys: &'static [Setting],
    pub groups: &'static [&'static str],
}

/// `api_key = { … }` of a policy.
#[derive(Debug)]
pub struct ApiKeySpec {
    pub name: &'static str,
    pub source: CredentialSource,
    /// Every consumer of the gateway.
    pub consumers: &'static [ConsumerSpec],
}

/// Longest key read; longer ones are refused before hashing.
const MAX_KEY: usize = 512;

/// An API-key policy resolved at start-up.
pub struct ApiKeys {
    spec: &'static ApiKeySpec,
    by_digest: HashMap<[u8; 32], &'static ConsumerSpec>,
}

impl ApiKeys {
    pub fn new(spec: &'static ApiKeySpec) -> Result<Self, Vec<SettingError>> {
        let mut errors = Vec::new();
        let mut by_digest = HashMap::new();
        for consumer in spec.consumers {
            for key in consumer.keys {
                match digest_of(key) {
                    Ok(digest) => {
                        if let Some(other) = by_digest.insert(digest, consumer) {
                            errors.push(SettingError::new(
                                key.origin,
                                format!(
                                    "the same key is given to consumers `{}` and `{}`",
                                    other.name, consumer.name
                                ),
                            ));
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Ok(ApiKeys { spec, by_digest })
        } else {
            Err(errors)
        }
    }

    /// Whether the request presents a key, well formed or not (see `Jwt::presents`).
    pub fn presents(&self, req: &Request) -> bool {
        !matches!(
            self.spec.source.read(&req.fields, req.uri.query(), MAX_KEY),
            Ok(None)
        )
    }

    /// The request phase: the consumer whose key the request carries. The key never
    /// reaches the upstream; the consumer's name does, in `X-Consumer`.
    pub fn authenticate(&self, req: &mut Request) -> Result<&'static ConsumerSpec, Stop> {
        let name = self.spec.name;
        let consumer = {
            let key = self
                .spec
                .source
                .read(&req.fields, req.uri.query(), MAX_KEY)
                .map_err(|e| unreadable(name, e, CHALLENGE))?
                .ok_or_else(|| missing(name, CHALLENGE))?;
            let digest: [u8; 32] = Sha256::digest(key).into();
            *self
                .by_digest
                .get(&digest)
                .ok_or_else(|| invalid(name, "unknown API key", CHALLENGE))?
        };
        self.spec.source.remove(req)?;
        req.fields
            .append(CONSUMER_HEADER.as_bytes(), consumer.name.as_bytes());
        Ok(consumer)
    }
}

/// The SHA-256 digest a consumer's key setting stands for.
fn digest_of(key: &Setting) -> Result<[u8; 32], SettingError> {
    if let Some(hex) = key.raw.strip_prefix("sha256:") {
        return super::parse_digest(hex).map_err(|message| SettingError::new(key.origin, message));
    }
    let value = key.resolve()?;
    if value.is_empty() {
        return Err(SettingError::new(key.origin, "the API key is empty"));
    }
    Ok(Sha256::digest(value.as_bytes()).into())
}
