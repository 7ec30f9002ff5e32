//! TLS termination on a listener: its server configuration, and the handshake of one
//! connection.
//!
//! - **Certificates** are chosen by the server name the client sends: an exact name
//!   first, then a wildcard for its parent, then the default certificate; with no
//!   default, the handshake fails.
//! - **ALPN** offers `h2` and `http/1.1`; `h2` goes to the same hyper HTTP/2 path as
//!   h2c.
//! - **Resumption**: TLS 1.3 tickets under ring's rotating ticket keys (a new key
//!   every 6 hours, the previous one still accepted), and a server-side session cache
//!   for TLS 1.2 session IDs. Both belong to the listener, not to one configuration,
//!   so a session outlives a certificate reload and works on every worker.
//! - **A handshake is bounded** by the listener's `timeouts.header_read`, and a
//!   plaintext HTTP request to the port gets a plaintext 400 that says so, as nginx
//!   answers it.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::io::Stream;
use crate::settings::SettingError;
use crate::tls::certificate::{self, LoadedCertificate};
use crate::tls::identity::ClientIdentity;
use crate::tls::{ListenerTlsSpec, TlsVersion};

/// TLS 1.2 sessions remembered per listener, shared by its workers: each entry is a
/// few hundred bytes, so the cache stays under a few MiB (nginx's
/// `ssl_session_cache shared:SSL:10m` holds about 40,000).
const SESSION_CACHE_SIZE: usize = 10_000;

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A listener's TLS state, shared by all workers.
pub struct ListenerTls {
    pub spec: &'static ListenerTlsSpec,
    pub listener: &'static str,
    config: ArcSwap<ServerConfig>,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Accepted {
    pub stream: Stream,
    /// The client chose HTTP/2 by ALPN.
    pub h2: bool,
    /// The verified client certificate's identity, when the client presented one.
    pub identity: Option<Box<ClientIdentity>>,
    /// `TLSv1.3` or `TLSv1.2`, for the access log.
    pub version: &'static str,
}

/// Why a handshake did not finish.
#[derive(Debug)]
pub enum HandshakeError {
    TimedOut,
    /// The client spoke plaintext HTTP; it was told so.
    Plaintext,
    Failed(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::TimedOut => f.write_str("handshake timed out"),
            HandshakeError::Plaintext => f.write_str("plaintext request on a TLS port"),
            HandshakeError::Failed(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

impl ListenerTls {
    /// Loads and checks every certificate of `spec`; all problems are reported at once.
    pub fn new(
        listener: &'static str,
        spec: &'static ListenerTlsSpec,
    ) -> Result<(Self, Vec<LoadedCertificate>), Vec<SettingError>> {
        let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| {
            vec![SettingError::new(
                listener,
                format!("cannot make session ticket keys: {e}"),
            )]
        })?;
        let sessions: Arc<dyn StoresServerSessions> =
            ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let (config, loaded) = build(spec, &ticketer, &sessions)?;
        Ok((
            Self {
                spec,
                listener,
                config: ArcSwap::from_pointee(config),
                ticketer,
                sessions,
            },
            loaded,
        ))
    }

    /// Builds the configuration again from the files and the environment and, when
    /// every part of it is sound, puts it in place for new handshakes. On an error the
    /// configuration in use stays.
    pub fn reload(&self) -> Result<Vec<LoadedCertificate>, Vec<SettingError>> {
        let (config, loaded) = build(self.spec, &self.ticketer, &self.sessions)?;
        self.config.store(Arc::new(config));
        Ok(loaded)
    }

    /// Runs the handshake on a new connection, within `timeout`.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<Accepted, HandshakeError> {
        let config = self.config.load_full();
        match tokio::time::timeout(timeout, handshake(tcp, config)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HandshakeError::TimedOut),
        }
    }
}

async fn handshake(
    mut tcp: TcpStream,
    config: Arc<ServerConfig>,
) -> Result<Accepted, HandshakeError> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await.map_err(HandshakeError::Failed)?;
    if n == 0 {
        return Err(HandshakeError::Failed(io::ErrorKind::UnexpectedEof.into()));
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        if first[0].is_ascii_uppercase() {
            let _ = tcp.write_all(PLAINTEXT_ANSWER).await;
            let _ = tcp.shutdown().await;
        }
        return Err(HandshakeError::Plaintext);
    }
    let tls = tokio_rustls::TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .map_err(HandshakeError::Failed)?;
    let (_, session) = tls.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        // The configuration offers nothing else.
        _ => "TLS",
    };
    let identity = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(ClientIdentity::of)
        .map(Box::new);
    Ok(Accepted {
        stream: Stream::tls(tokio_rustls::TlsStream::Server(tls)),
        h2,
        identity,
        version,
    })
}

const PLAINTEXT_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: application/json\r\n\
content-length: 64\r\n\
connection: close\r\n\
\r\n\
{\"error\":\"plain HTTP request sent to an HTTPS port\",\"status\":400}";

/// The server configuration of `spec`, with every certificate loaded and checked.
fn build(
    spec: &ListenerTlsSpec,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<(ServerConfig, Vec<LoadedCertificate>), Vec<SettingError>> {
    let mut errors = Vec::new();
    let mut loaded = Vec::new();
    let mut resolver = SniResolver::default();
    if let Some(default) = &spec.default_certificate {
        match certificate::load(default) {
            Ok(cert) => {
                resolver.default = Some(cert.key.clone());
                loaded.push(cert);
            }
            Err(e) => errors.push(e),
        }
    }
    for entry in spec.sni {
        let cert = match certificate::load(&entry.certificate) {
            Ok(cert) => cert,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for name in entry.names {
            if !cert.covers(name) {
                errors.push(SettingError::new(
                    cert.origin,
                    format!("the certificate does not cover `{name}`, one of its `names`"),
                ));
            }
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => resolver
                    .wildcard
                    .insert(parent.to_owned(), cert.key.clone()),
                None => resolver.exact.insert(name, cert.key.clone()),
            };
        }
        loaded.push(cert);
    }
    let verifier = match &spec.client_auth {
        None => None,
        Some(auth) => match certificate::roots(&auth.ca) {
            Ok(roots) => {
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider());
                let builder = if auth.required {
                    builder
                } else {
                    builder.allow_unauthenticated()
                };
                match builder.build() {
                    Ok(verifier) => Some(verifier),
                    Err(e) => {
                        errors.push(SettingError::new(auth.ca.origin, e.to_string()));
                        None
                    }
                }
            }
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let versions: &[&SupportedProtocolVersion] = match spec.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .map_err(|e| vec![SettingError::new("tls", e.to_string())])?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = ticketer.clone();
    config.session_storage = sessions.clone();
    Ok((config, loaded))
}

/// Chooses a certificate by the server name of the ClientHello.
#[derive(Debug, Default)]
struct SniResolver {
    /// Lowercase names.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the parent of the wildcard: `example.com` for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn lookup(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        self.exact
            .get(&name)
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
            .or(self.default.as_ref())
            .cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup(hello.server_name())
    }
}
