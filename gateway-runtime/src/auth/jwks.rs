//! Remote JSON Web Key Sets (RFC 7517): an identity provider's published keys,
//! fetched at start-up and kept fresh in the background.
//!
//! - **One set per URL**, however many policies name it: policies register their URL
//!   in the gateway's `KeySets` at start-up, and share the one `RemoteKeys`.
//! - **No lock on the request path**: the set is a snapshot behind an `ArcSwap`; a
//!   token's verification costs one atomic load (a cache hit, none).
//! - **Start-up** fetches every set before the gateway listens, and fails naming the
//!   setting if a fetch fails, unless `start_degraded` (then every token is refused
//!   until a fetch succeeds).
//! - **Refresh**: after `max-age` of the answer's `Cache-Control`, kept within
//!   `[min_refresh, max_refresh]`; `refresh` when the answer gives none. A failed fetch
//!   keeps the last good set and is retried after `min_refresh`.
//! - **Rotation**: a token naming a `kid` the set lacks is refused, and wakes the
//!   refresh at most once per `unknown_kid_refetch`, so the next request with the new
//!   key passes within a round trip to the provider, and a flood of made-up `kid`s
//!   costs the provider one fetch per interval. A refresh that removes a key makes
//!   every cached token be verified again, so a revoked key stops at the refresh.
//!
//! Only asymmetric keys are taken (`RSA`, `EC`, `OKP`) whose `use` is absent or `sig`;
//! a symmetric (`oct`) key in a published set is skipped, never used as an HMAC secret.
//! A key that names its `alg` verifies tokens of that algorithm only (an RSA key for
//! RS256 never checks a PS256 token).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::sync::Notify;

use crate::settings::{Setting, SettingError, Target};
use crate::tls::UpstreamTlsSpec;
use crate::tls::upstream::{connector, server_name};

/// A published key set is small; more than this is not one.
const MAX_BODY: usize = 1 << 20;

/// `jwks = { … }` of a JWT policy.
#[derive(Debug)]
pub struct JwksSpec {
    pub url: Setting,
    /// The CA bundle that verifies the provider; `None`: the system's roots.
    pub tls: UpstreamTlsSpec,
    /// How long a set is used when its answer gives no `max-age`.
    pub refresh: Duration,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// Least time between two refetches for unknown `kid`s.
    pub unknown_kid_refetch: Duration,
    /// Bound on one fetch: connect, TLS, request and body.
    pub timeout: Duration,
    /// Start without a set when the first fetch fails, instead of refusing to start.
    pub start_degraded: bool,
}

/// The keys of one fetched set.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<SetKey>,
}

struct SetKey {
    kid: Option<String>,
    /// The one algorithm the key is for, when the set says (`alg`, RFC 7517 §4.4).
    alg: Option<KeyAlgorithm>,
    key: DecodingKey,
}

/// Why a set has no key for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// No key of that `kid` (or, without one, not exactly one key).
    Unknown,
    /// The key says it is for another algorithm than the token's.
    WrongAlgorithm,
}

impl KeySet {
    /// The key a token names by `kid` (without a `kid`, the set's only key), if it
    /// may verify `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&DecodingKey, KeyMiss> {
        let found = match (kid, self.keys.as_slice()) {
            (Some(kid), keys) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            (None, [only]) => Some(only),
            (None, _) => None,
        };
        let found = found.ok_or(KeyMiss::Unknown)?;
        match found.alg {
            Some(intended) if intended != KeyAlgorithm::from(alg) => Err(KeyMiss::WrongAlgorithm),
            _ => Ok(&found.key),
        }
    }

    /// The usable keys of a JWKS document.
    fn parse(body: &[u8]) -> Result<KeySet, String> {
        let document: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no `keys` array")?;
        let keys = entries
            .iter()
            // Entries of kinds jsonwebtoken does not know are skipped, not fatal.
            .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
            .filter(|jwk| {
                matches!(
                    jwk.common.public_key_use,
                    None | Some(PublicKeyUse::Signature)
                ) && !matches!(
                    jwk.algorithm,
                    AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
                )
            })
            .filter_map(|jwk| {
                Some(SetKey {
                    key: DecodingKey::from_jwk(&jwk).ok()?,
                    alg: jwk.common.key_algorithm,
                    kid: jwk.common.key_id,
                })
            })
            .collect();
        Ok(KeySet { keys })
    }
}

/// One provider's key set, shared by every policy that names its URL.
pub struct RemoteKeys {
    spec: &'static JwksSpec,
    target: Target,
    path: String,
    url: String,
    current: ArcSwap<KeySet>,
    /// Counts the refreshes that removed a key: a verified token cached before one
    /// is verified again, so a revoked key stops working at the refresh.
    removals: AtomicU64,
    wake: Notify,
    /// Seconds since the epoch of the last refetch asked for by an unknown `kid`.
    last_wake: AtomicU64,
}

/// Every set a gateway's policies use, registered while its shared state is built.
#[derive(Default)]
pub struct KeySets(Vec<Arc<RemoteKeys>>);

impl KeySets {
    /// The set at `spec.url`, shared with any policy that named it before.
    pub fn source(&mut self, spec: &'static JwksSpec) -> Result<Arc<RemoteKeys>, SettingError> {
        let url = spec.url.resolve()?;
        let (target, path) = spec.url.url()?;
        if let Some(found) = self.0.iter().find(|s| s.url == url) {
            return Ok(found.clone());
        }
        let keys = Arc::new(RemoteKeys {
            spec,
            target,
            path,
            url,
            current: ArcSwap::from_pointee(KeySet::default()),
            removals: AtomicU64::new(0),
            wake: Notify::new(),
            last_wake: AtomicU64::new(0),
        });
        self.0.push(keys.clone());
        Ok(keys)
    }

    /// Fetches every set once, before the gateway listens: the errors of the sets
    /// that failed and may not start degraded.
    pub(crate) async fn fetch_all(&self) -> Vec<SettingError> {
        let mut errors = Vec::new();
        for source in &self.0 {
            match source.fetch().await {
                Ok((set, _)) => source.store(set),
                Err(error) if source.spec.start_degraded => {
                    tracing::warn!(url = %source.url, %error, "JWKS not fetched; starting degraded: every token is refused until a fetch succeeds");
                }
                Err(error) => errors.push(SettingError::new(
                    source.spec.url.origin,
                    format!("cannot fetch the key set at {}: {error}", source.url),
                )),
            }
        }
        errors
    }

    /// Starts each set's refresh task on the current runtime.
    pub(crate) fn spawn_refreshes(&self) {
        for source in &self.0 {
            let first = if source.current.load().keys.is_empty() {
                source.spec.min_refresh
            } else {
                source
                    .spec
                    .refresh
                    .clamp(source.spec.min_refresh, source.spec.max_refresh)
            };
            tokio::spawn(source.clone().refresh(first));
        }
    }
}

impl RemoteKeys {
    /// The current set: one atomic load.
    pub fn load(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// How many refreshes have removed a key so far.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Swaps in a fetched set, counting a removal when a key of the old one is gone.
    fn store(&self, set: KeySet) {
        let old = self.current.swap(Arc::new(set));
        let new = self.current.load();
        let removed = old
            .keys
            .iter()
            .any(|old| !new.keys.iter().any(|key| key.kid == old.kid));
        if removed {
            self.removals.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A token named a key the set lacks: wake the refresh, at most once per
    /// `unknown_kid_refetch`.
    pub fn unknown_key(&self, now: u64) {
        let last = self.last_wake.load(Ordering::Relaxed);
        let interval = self.spec.unknown_kid_refetch.as_secs().max(1);
        if now >= last.saturating_add(interval)
            && self
                .last_wake
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// One fetch; the set and how long it may be used.
    async fn fetch(&self) -> Result<(KeySet, Duration), String> {
        let fetch = async {
            let authority = self.target.authority.as_str();
            let https = self.target.scheme == http::uri::Scheme::HTTPS;
            let port = self
                .target
                .authority
                .port_u16()
                .unwrap_or(if https { 443 } else { 80 });
            let host = self.target.authority.host().trim_matches(['[', ']']);
            let tcp = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            if https {
                let tls = connector("jwks", Some(&self.spec.tls)).map_err(|e| e.to_string())?;
                let name = server_name(
                    "jwks",
                    self.spec.tls.server_name,
                    self.target.authority.host(),
                )
                .map_err(|e| e.to_string())?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {authority} failed: {e}"))?;
                self.get(TokioIo::new(stream)).await
            } else {
                self.get(TokioIo::new(tcp)).await
            }
        };
        tokio::time::timeout(self.spec.timeout, fetch)
            .await
            .map_err(|_| format!("no answer within {:?}", self.spec.timeout))?
    }

    async fn get<IO>(&self, io: IO) -> Result<(KeySet, Duration), String>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = http::Request::get(self.path.as_str())
            .header(http::header::HOST, self.target.authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let lifetime = max_age(response.headers()).unwrap_or(self.spec.refresh);
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let set = KeySet::parse(&body)?;
        if set.keys.is_empty() {
            return Err("the set holds no usable signing key".into());
        }
        Ok((
            set,
            lifetime.clamp(self.spec.min_refresh, self.spec.max_refresh),
        ))
    }

    /// Fetches until the gateway stops: when the set's lifetime ends, or sooner when
    /// an unknown `kid` wakes it.
    async fn refresh(self: Arc<Self>, mut wait: Duration) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
            wait = match self.fetch().await {
                Ok((set, lifetime)) => {
                    self.store(set);
                    lifetime
                }
                Err(error) => {
                    tracing::warn!(url = %self.url, %error, "JWKS refresh failed; the last good key set stays in use");
                    self.spec.min_refresh
                }
            };
        }
    }
}

/// `max-age` of a `Cache-Control` answer (RFC 9111 §5.2.2.1); `no-store` and
/// `no-cache` count as zero, which the bounds then raise to `min_refresh`.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return Some(Duration::ZERO);
            }
            if let Some((name, seconds)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
            {
                found = seconds
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let headers = |value: &str| {
            let mut map = http::HeaderMap::new();
            map.insert(http::header::CACHE_CONTROL, value.parse().expect("value"));
            map
        };
        assert_eq!(
            max_age(&headers("public, max-age=300")),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age(&headers("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&headers("public")), None);
        assert_eq!(max_age(&http::HeaderMap::new()), None);
    }

    #[test]
    fn only_signing_keys_of_known_kinds() {
        let set = KeySet::parse(
            br#"{"keys":[
                {"kty":"oct","kid":"s","k":"c2VjcmV0"},
                {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty":"XYZ","kid":"future"}
            ]}"#,
        )
        .expect("set");
        let ed = Algorithm::EdDSA;
        assert!(set.find(Some("ed"), ed).is_ok());
        assert!(
            set.find(Some("s"), ed).is_err(),
            "a symmetric key was taken"
        );
        assert!(
            set.find(Some("enc"), ed).is_err(),
            "an encryption key was taken"
        );
        assert!(
            set.find(None, ed).is_ok(),
            "the only key answers a token without kid"
        );
        assert!(KeySet::parse(b"{}").is_err());
    }

    /// A key that names its algorithm verifies only that one (RS256 and PS256 share
    /// RSA keys).
    #[test]
    fn a_key_keeps_to_its_algorithm() {
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let set = KeySet::parse(
            format!(r#"{{"keys":[{{"kty":"RSA","kid":"r","alg":"RS256","n":"{n}","e":"AQAB"}}]}}"#)
                .as_bytes(),
        )
        .expect("set");
        assert!(set.find(Some("r"), Algorithm::RS256).is_ok());
        assert_eq!(
            set.find(Some("r"), Algorithm::PS256).err(),
            Some(KeyMiss::WrongAlgorithm)
        );
        assert_eq!(
            set.find(Some("x"), Algorithm::RS256).err(),
            Some(KeyMiss::Unknown)
        );
    }
}
