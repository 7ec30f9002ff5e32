//! Certificates, keys and CA bundles from PEM settings, checked the way an operator
//! needs to hear about them: at start-up and on reload, each problem naming the
//! setting (and so the gateway.toml line) it comes from.
//!
//! A chain is checked for what would otherwise fail later in a client: every block
//! parses, the key belongs to the leaf, each certificate is issued by the next (leaf
//! first, as TLS sends them), and the leaf is within its validity period.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::settings::{Setting, SettingError};
use crate::tls::CertificateSpec;

/// A checked certificate chain with its key, and what start-up reports of it.
#[derive(Debug)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    /// Where the chain was configured.
    pub origin: &'static str,
    /// The leaf's DNS names (subject alternative names).
    pub dns_names: Vec<String>,
    /// The leaf's end of validity.
    pub not_after: SystemTime,
}

impl LoadedCertificate {
    /// Whether the leaf covers `name`: one of its DNS names equals it, or is a
    /// wildcard covering its first label (RFC 6125 §6.4.3). A configured wildcard
    /// needs the same wildcard in the certificate.
    pub fn covers(&self, name: &str) -> bool {
        self.dns_names.iter().any(|dns| {
            dns.eq_ignore_ascii_case(name)
                || dns.strip_prefix("*.").is_some_and(|parent| {
                    !name.starts_with("*.")
                        && name
                            .split_once('.')
                            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(parent))
                })
        })
    }
}

/// Loads and checks the chain and key of `spec`.
pub fn load(spec: &CertificateSpec) -> Result<LoadedCertificate, SettingError> {
    let origin = spec.cert.origin;
    let chain = certificates(&spec.cert)?;
    let key_pem = spec.key.resolve()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        SettingError::new(
            spec.key.origin,
            format!("no private key in PEM form: {}", pem_error(&e)),
        )
    })?;
    let now = SystemTime::now();
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
            SettingError::new(origin, format!("certificate {} does not parse: {e}", i + 1))
        })?;
        parsed.push(cert);
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
            return Err(SettingError::new(
                origin,
                format!(
                    "the chain is out of order: certificate {} did not issue certificate {}; list the leaf first, then each issuer",
                    i + 2,
                    i + 1
                ),
            ));
        }
    }
    let leaf = &parsed[0];
    let not_before = to_system_time(leaf.validity().not_before.timestamp());
    let not_after = to_system_time(leaf.validity().not_after.timestamp());
    if now < not_before {
        return Err(SettingError::new(
            origin,
            format!(
                "the certificate is not valid before {}",
                leaf.validity().not_before
            ),
        ));
    }
    if now > not_after {
        return Err(SettingError::new(
            origin,
            format!("the certificate expired on {}", leaf.validity().not_after),
        ));
    }
    let dns_names = subject_alt_names(leaf)
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    let key = CertifiedKey::from_der(chain, key, &super::provider()).map_err(|e| {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("the key does not belong to the certificate at {origin}")
            }
            other => format!("the key cannot be used: {other}"),
        };
        SettingError::new(spec.key.origin, message)
    })?;
    Ok(LoadedCertificate {
        key: Arc::new(key),
        origin,
        dns_names,
        not_after,
    })
}

/// The certificates of a PEM setting, in order; at least one.
fn certificates(setting: &Setting) -> Result<Vec<CertificateDer<'static>>, SettingError> {
    let pem = setting.resolve()?;
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            SettingError::new(
                setting.origin,
                format!("not PEM certificates: {}", pem_error(&e)),
            )
        })?;
    if chain.is_empty() {
        return Err(SettingError::new(
            setting.origin,
            "no certificate in it: expected `-----BEGIN CERTIFICATE-----` blocks",
        ));
    }
    Ok(chain)
}

/// A CA bundle as a root store; every certificate in it must parse.
pub fn roots(setting: &Setting) -> Result<RootCertStore, SettingError> {
    let mut store = RootCertStore::empty();
    for (i, der) in certificates(setting)?.into_iter().enumerate() {
        store.add(der).map_err(|e| {
            SettingError::new(
                setting.origin,
                format!("CA certificate {} cannot be used: {e}", i + 1),
            )
        })?;
    }
    Ok(store)
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => "nothing found".into(),
        other => other.to_string(),
    }
}

fn to_system_time(timestamp: i64) -> SystemTime {
    match u64::try_from(timestamp) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

pub(crate) fn subject_alt_names<'a>(
    cert: &'a X509Certificate<'_>,
) -> impl Iterator<Item = &'a GeneralName<'a>> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .into_iter()
        .flat_map(|ext| ext.value.general_names.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(names: &[&str]) -> LoadedCertificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_pem: &'static str = Box::leak(cert.pem().into_boxed_str());
        let key_pem: &'static str = Box::leak(key.serialize_pem().into_boxed_str());
        load(&CertificateSpec {
            cert: Setting::new("cert", cert_pem),
            key: Setting::new("key", key_pem),
        })
        .unwrap()
    }

    /// Wildcards cover one label; exact names cover themselves only.
    #[test]
    fn names_covered() {
        let cert = loaded(&["api.example.com", "*.apps.example.com"]);
        assert!(cert.covers("api.example.com"));
        assert!(cert.covers("API.example.com"));
        assert!(cert.covers("x.apps.example.com"));
        assert!(cert.covers("*.apps.example.com"));
        assert!(!cert.covers("y.x.apps.example.com"));
        assert!(!cert.covers("*.example.com"));
        assert!(!cert.covers("www.example.com"));
    }

    /// A key from another pair is named as not belonging to the certificate.
    #[test]
    fn mismatched_keys_are_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_pem: &'static str = Box::leak(cert.pem().into_boxed_str());
        let key_pem: &'static str = Box::leak(other.serialize_pem().into_boxed_str());
        let err = load(&CertificateSpec {
            cert: Setting::new("c", cert_pem),
            key: Setting::new("k", key_pem),
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("k: the key does not belong"), "{err}");
    }
}
