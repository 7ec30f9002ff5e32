//! jsonwebtoken's cryptography on ring, the library rustls already links: one crypto
//! library in the binary instead of two (jsonwebtoken's own backends are aws-lc-rs,
//! which needs a C toolchain, and RustCrypto, which verifies RSA and ECDSA several
//! times slower).
//!
//! The gateway only verifies. Signing is refused: no code path of a gateway signs a
//! token, so a signer here would be code no one runs.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::{digest, hmac, signature as ring_signature};
use std::cell::RefCell;

/// Installs the provider for the process; harmless when it already is.
pub fn install() {
    let _ = PROVIDER.install_default();
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: refuse_signing,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| {
            Err(ErrorKind::InvalidRsaKey("private keys are not read".into()).into())
        },
        rsa_pub_components_from_public_key: |_| {
            Err(ErrorKind::InvalidRsaKey("not supported".into()).into())
        },
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidEcdsaKey.into()),
        ed_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidEddsaKey.into()),
        compute_digest,
    },
};

fn refuse_signing(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

/// How one algorithm checks a signature.
#[derive(Clone, Copy)]
enum Check {
    Hmac(hmac::Algorithm),
    Rsa(&'static ring_signature::RsaParameters),
    /// ECDSA and EdDSA: the key is the raw public point.
    Raw(&'static dyn ring_signature::VerificationAlgorithm),
}

enum RingVerifier {
    Hmac {
        algorithm: Algorithm,
        key: hmac::Key,
    },
    Public {
        algorithm: Algorithm,
        check: Check,
        /// DER or a raw point, or an RSA key's parts.
        key: DecodingKey,
    },
}

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

fn hmac_key(algorithm: hmac::Algorithm, secret: &[u8]) -> hmac::Key {
    READY.with_borrow_mut(|ready| {
        if let Some((_, _, key)) = ready
            .iter()
            .find(|(a, s, _)| *a == algorithm && **s == *secret)
        {
            return key.clone();
        }
        let key = hmac::Key::new(algorithm, secret);
        if ready.len() < HMAC_KEYS {
            ready.push((algorithm, secret.into(), key.clone()));
        }
        key
    })
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    use ring_signature as s;
    let check = match algorithm {
        Algorithm::HS256 => Check::Hmac(hmac::HMAC_SHA256),
        Algorithm::HS384 => Check::Hmac(hmac::HMAC_SHA384),
        Algorithm::HS512 => Check::Hmac(hmac::HMAC_SHA512),
        Algorithm::RS256 => Check::Rsa(&s::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Check::Rsa(&s::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Check::Rsa(&s::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Check::Rsa(&s::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Check::Rsa(&s::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Check::Rsa(&s::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Check::Raw(&s::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Check::Raw(&s::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Check::Raw(&s::ED25519),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    // Never an HMAC checked with a public key, nor the reverse.
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let verifier = match (check, key.kind()) {
        (Check::Hmac(hmac_algorithm), DecodingKeyKind::SecretOrDer(secret)) => RingVerifier::Hmac {
            algorithm: *algorithm,
            key: hmac_key(hmac_algorithm, secret),
        },
        (Check::Hmac(_), _) => return Err(ErrorKind::InvalidKeyFormat.into()),
        _ => RingVerifier::Public {
            algorithm: *algorithm,
            check,
            key: key.clone(),
        },
    };
    Ok(Box::new(verifier))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let (check, key) = match self {
            RingVerifier::Hmac { key, .. } => {
                return hmac::verify(key, message, signature).map_err(|_| signature::Error::new());
            }
            RingVerifier::Public { check, key, .. } => (*check, key),
        };
        let verified = match (check, key.kind()) {
            (Check::Rsa(parameters), DecodingKeyKind::SecretOrDer(der)) => {
                ring_signature::UnparsedPublicKey::new(parameters, der).verify(message, signature)
            }
            (Check::Rsa(parameters), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                ring_signature::RsaPublicKeyComponents { n, e }
                    .verify(parameters, message, signature)
            }
            (Check::Raw(algorithm), DecodingKeyKind::SecretOrDer(point)) => {
                ring_signature::UnparsedPublicKey::new(algorithm, point).verify(message, signature)
            }
            _ => return Err(signature::Error::new()),
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        match self {
            RingVerifier::Hmac { algorithm, .. } | RingVerifier::Public { algorithm, .. } => {
                *algorithm
            }
        }
    }
}
