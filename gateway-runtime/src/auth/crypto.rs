//! Token signatures checked with ring, the library rustls already links: one crypto
//! library in the binary instead of two (jsonwebtoken's own backends are aws-lc-rs,
//! which needs a C toolchain, and RustCrypto, which verifies RSA and ECDSA several
//! times slower). jsonwebtoken still reads the keys (PEM, JWK) and names the
//! algorithms; the gateway only verifies, so there is no signing code at all.

use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use ring::{hmac, signature as ring_signature};
use std::cell::RefCell;

/// The most HMAC keys a worker keeps ready: a gateway has a secret per policy, and
/// tokens never bring their own.
const HMAC_KEYS: usize = 16;

/// An HMAC key set up for one algorithm and secret.
type ReadyKey = (hmac::Algorithm, Box<[u8]>, hmac::Key);

thread_local! {
    /// HMAC keys ready to use, by algorithm and secret. Setting one up hashes the
    /// secret's pads (and a secret longer than a block, first): measured 5,600
    /// instructions of a 38,000-instruction cache miss, paid once per worker instead.
    static READY: RefCell<Vec<ReadyKey>> = const { RefCell::new(Vec::new()) };
}

/// Whether `signature` is `algorithm`'s signature of `message` under `key`. A key of
/// another family than the algorithm's verifies nothing: never an HMAC checked with a
/// public key (the RS/HS confusion), nor the reverse.
pub fn verify(algorithm: Algorithm, key: &DecodingKey, message: &[u8], signature: &[u8]) -> bool {
    use ring_signature as s;
    if key.family() != algorithm.family() {
        return false;
    }
    let public: &'static dyn ring_signature::VerificationAlgorithm = match algorithm {
        Algorithm::HS256 => return hmac_verify(hmac::HMAC_SHA256, key, message, signature),
        Algorithm::HS384 => return hmac_verify(hmac::HMAC_SHA384, key, message, signature),
        Algorithm::HS512 => return hmac_verify(hmac::HMAC_SHA512, key, message, signature),
        Algorithm::RS256 => {
            return rsa_verify(&s::RSA_PKCS1_2048_8192_SHA256, key, message, signature);
        }
        Algorithm::RS384 => {
            return rsa_verify(&s::RSA_PKCS1_2048_8192_SHA384, key, message, signature);
        }
        Algorithm::RS512 => {
            return rsa_verify(&s::RSA_PKCS1_2048_8192_SHA512, key, message, signature);
        }
        Algorithm::PS256 => {
            return rsa_verify(&s::RSA_PSS_2048_8192_SHA256, key, message, signature);
        }
        Algorithm::PS384 => {
            return rsa_verify(&s::RSA_PSS_2048_8192_SHA384, key, message, signature);
        }
        Algorithm::PS512 => {
            return rsa_verify(&s::RSA_PSS_2048_8192_SHA512, key, message, signature);
        }
        Algorithm::ES256 => &s::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &s::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &s::ED25519,
        _ => return false,
    };
    // ECDSA and EdDSA: the key is the raw public point.
    match key.kind() {
        DecodingKeyKind::SecretOrDer(point) => {
            ring_signature::UnparsedPublicKey::new(public, point)
                .verify(message, signature)
                .is_ok()
        }
        DecodingKeyKind::RsaModulusExponent { .. } => false,
    }
}

fn rsa_verify(
    parameters: &'static ring_signature::RsaParameters,
    key: &DecodingKey,
    message: &[u8],
    signature: &[u8],
) -> bool {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(der) => {
            ring_signature::UnparsedPublicKey::new(parameters, der)
                .verify(message, signature)
                .is_ok()
        }
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            ring_signature::RsaPublicKeyComponents { n, e }
                .verify(parameters, message, signature)
                .is_ok()
        }
    }
}

/// An HMAC check with the worker's ready key for the secret (set up on first use).
fn hmac_verify(
    algorithm: hmac::Algorithm,
    key: &DecodingKey,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let DecodingKeyKind::SecretOrDer(secret) = key.kind() else {
        return false;
    };
    READY.with_borrow_mut(|ready| {
        let position = ready
            .iter()
            .position(|(a, s, _)| *a == algorithm && **s == **secret);
        let key = match position {
            Some(i) => &ready[i].2,
            None if ready.len() < HMAC_KEYS => {
                ready.push((
                    algorithm,
                    secret.as_slice().into(),
                    hmac::Key::new(algorithm, secret),
                ));
                &ready[ready.len() - 1].2
            }
            None => {
                return hmac::verify(&hmac::Key::new(algorithm, secret), message, signature)
                    .is_ok();
            }
        };
        hmac::verify(key, message, signature).is_ok()
    })
}
