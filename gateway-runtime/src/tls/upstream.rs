//! TLS to `https://` upstreams: the client configuration of one upstream, and the
//! name each of its targets is verified against.
//!
//! Certificates are verified against the upstream's `tls.ca` bundle or, without one,
//! the system's trust store (rustls-native-certs, read once per process): operators
//! keep that store current with the OS's CA package and their own internal CAs,
//! without rebuilding the gateway, which compiled-in roots (webpki-roots) would need.
//! There is no way to turn verification off.
//!
//! ALPN offers `http/1.1` only, the one protocol the upstream client speaks.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::settings::SettingError;
use crate::tls::{UpstreamTlsSpec, certificate};

/// How to open TLS to one target.
#[derive(Clone)]
pub struct TlsTarget {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The client configuration of an upstream: its roots and client certificate.
/// Built once per worker; each keeps its own resumption cache.
pub fn connector(
    upstream: &'static str,
    spec: Option<&UpstreamTlsSpec>,
) -> Result<TlsConnector, SettingError> {
    let roots = match spec.and_then(|s| s.ca.as_ref()) {
        Some(ca) => Arc::new(certificate::roots(ca)?),
        None => system_roots().map_err(|e| SettingError::new(upstream, e.clone()))?,
    };
    let builder = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SettingError::new(upstream, e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match spec.and_then(|s| s.client_certificate.as_ref()) {
        Some(client) => {
            let loaded = certificate::load(client)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(loaded.key)))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name a target is verified against: the configured `server_name`, or its host.
pub fn server_name(
    origin: &'static str,
    configured: Option<&'static str>,
    host: &str,
) -> Result<ServerName<'static>, SettingError> {
    let name = configured.unwrap_or(host).trim_matches(['[', ']']);
    ServerName::try_from(name.to_owned()).map_err(|_| {
        SettingError::new(origin, format!("`{name}` cannot be verified as a TLS name"))
    })
}

/// The system's trust store, read once; an empty or unreadable one is an error.
fn system_roots() -> Result<Arc<RootCertStore>, &'static String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or("none found".to_owned(), ToString::to_string);
                return Err(format!(
                    "no system CA certificates to verify `https://` targets ({why}): install the OS's CA package or set `tls.ca`"
                ));
            }
            Ok(Arc::new(store))
        })
        .as_ref()
        .map(Arc::clone)
}
