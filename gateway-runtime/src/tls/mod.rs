//! TLS on both sides of the gateway, on rustls with the ring provider.
//!
//! | module | holds |
//! |---|---|
//! | `certificate` | PEM certificates, keys and CA bundles: loaded and checked (parse, key matches, chain order, validity), and read for names, expiry and a client's identity |
//! | `identity` | a client certificate's identity, and the request fields that carry it upstream |
//! | `listener` | termination: the server configuration of a listener (SNI, versions, ALPN, resumption, client certificates) and the handshake of one connection |
//! | `upstream` | origination: the client configuration of an `https://` upstream (roots, SNI, client certificate) |
//! | `reload` | new certificates without a restart, on SIGHUP or when a file changes, and expiry warnings |
//!
//! Handshakes happen once per connection, off the request path, so configurations are
//! shared by all workers: a listener's sits behind an `ArcSwap` that a reload replaces
//! whole, and a handshake pays one atomic load for it.

pub mod certificate;
pub mod identity;
pub mod listener;
pub(crate) mod reload;
pub mod upstream;

use crate::settings::Setting;

/// The lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// A listener's `tls` table.
#[derive(Debug, Clone, Copy)]
pub struct ListenerTlsSpec {
    /// For clients that send no server name, or one no `sni` entry has; `None`: their
    /// handshakes fail (`unrecognized_name`).
    pub default_certificate: Option<CertificateSpec>,
    /// Chosen by the server name the client sends.
    pub sni: &'static [SniCertificateSpec],
    pub min_version: TlsVersion,
    pub client_auth: Option<ClientAuthSpec>,
    /// `Strict-Transport-Security` added to every response, as written.
    pub hsts: Option<&'static str>,
    /// Certificates that expire within this many days are warned of, at start-up and
    /// daily.
    pub expiry_warning_days: u32,
}

/// A certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, Copy)]
pub struct CertificateSpec {
    pub cert: Setting,
    pub key: Setting,
}

/// A certificate served to the clients that ask for one of `names`.
#[derive(Debug, Clone, Copy)]
pub struct SniCertificateSpec {
    /// Exact names, or `*.example.com` for any one label in front.
    pub names: &'static [&'static str],
    pub certificate: CertificateSpec,
}

/// Client certificates (mutual TLS) on a listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuthSpec {
    /// PEM bundle of the CAs whose certificates are accepted.
    pub ca: Setting,
    /// `true`: a handshake without a certificate fails; `false`: it succeeds, and
    /// routes that need one refuse its requests.
    pub required: bool,
    pub headers: IdentityHeaders,
}

/// The request fields that carry a verified client identity upstream. Copies a client
/// sends of them are always removed, whether or not it presented a certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityHeaders {
    /// The subject, in RFC 4514 form.
    pub subject: Option<&'static str>,
    /// The URI and DNS subject alternative names, `URI:…` and `DNS:…`, comma-separated.
    pub san: Option<&'static str>,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: Option<&'static str>,
}

impl IdentityHeaders {
    /// The configured field names, lowercase as the compiler wrote them.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        [self.subject, self.san, self.fingerprint]
            .into_iter()
            .flatten()
    }
}

/// An upstream's `tls` table.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTlsSpec {
    /// PEM bundle that verifies the upstream; `None`: the system's roots.
    pub ca: Option<Setting>,
    /// A client certificate for upstreams that require mutual TLS.
    pub client_certificate: Option<CertificateSpec>,
    /// The name sent as SNI and verified; `None`: the target's host.
    pub server_name: Option<&'static str>,
}

/// The crypto provider every configuration is built with.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
