//! A client certificate's identity, and the request fields that carry it upstream.
//!
//! The fields are the listener's `client_auth` header names. Whatever a client sends
//! under those names is removed from every request on the listener, certificate or
//! not, before routing: an upstream that trusts them can never be handed a forged one.

use http::HeaderValue;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::message::fields::Fields;
use crate::pipeline::ConnectionTls;
use crate::tls::certificate::subject_alt_names;

/// A client certificate's identity, verified by the handshake, as the fields that
/// carry it upstream and the names authorization rules match. Computed once per
/// connection.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// RFC 4514 form.
    pub subject: HeaderValue,
    /// `URI:…` and `DNS:…` names, comma-separated.
    pub san: HeaderValue,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: HeaderValue,
    /// The URI and DNS names, as matched by `client_cert` policies.
    pub names: Vec<String>,
}

impl ClientIdentity {
    /// The identity of the leaf certificate `der`; `None` when it does not parse,
    /// which a verified certificate always does.
    pub fn of(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        // The names as policies match them, and as the SAN field labels them.
        let mut names = Vec::new();
        let mut labelled = Vec::new();
        for name in subject_alt_names(&cert) {
            let (label, name) = match name {
                GeneralName::URI(uri) => ("URI", *uri),
                GeneralName::DNSName(dns) => ("DNS", *dns),
                _ => continue,
            };
            labelled.push(format!("{label}:{name}"));
            names.push(name.to_owned());
        }
        let fingerprint: String = Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(Self {
            subject: field_value(&cert.subject().to_string()),
            san: field_value(&labelled.join(", ")),
            fingerprint: field_value(&fingerprint),
            names,
        })
    }
}

/// A certificate's text as a field value: anything but visible ASCII and space is
/// percent-encoded, so a crafted subject cannot break the request head.
fn field_value(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b == b' ' || (b.is_ascii_graphic() && b != b'%') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Removes the client's copies of the identity fields of its listener, then sets them
/// from the verified certificate, if any.
pub fn forward(fields: &mut Fields, tls: &ConnectionTls) {
    let Some(auth) = &tls.spec.client_auth else {
        return;
    };
    let headers = &auth.headers;
    for name in headers.names() {
        fields.remove(name.as_bytes());
    }
    let Some(identity) = &tls.identity else {
        return;
    };
    for (name, value) in [
        (headers.subject, &identity.subject),
        (headers.san, &identity.san),
        (headers.fingerprint, &identity.fingerprint),
    ] {
        if let Some(name) = name {
            fields.append(name.as_bytes(), value.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control bytes in a subject are encoded, never passed into a request head.
    #[test]
    fn field_values_are_safe() {
        assert_eq!(field_value("CN=a\r\nX: y%"), "CN=a%0D%0AX: y%25");
    }
}
