//! TLS test support: certificate authorities and certificates made by rcgen, written
//! to a directory the gateway runs in; upstreams behind rustls; a real rustls client
//! speaking HTTP/1.1 or HTTP/2 (by ALPN) through hyper.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::Upstream;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            params,
            key,
            pem: cert.pem(),
        }
    }

    /// A leaf for the DNS names `dns` and URIs `uris`, with `cn` as its common name.
    pub fn issue(&self, cn: &str, dns: &[&str], uris: &[&str]) -> Issued {
        self.issue_valid(cn, dns, uris, (-1, 365))
    }

    /// The same, valid from `days.0` to `days.1` days from today.
    pub fn issue_valid(&self, cn: &str, dns: &[&str], uris: &[&str], days: (i64, i64)) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let (year, month, day) = date_from_today(days.0);
        params.not_before = rcgen::date_time_ymd(year, month, day);
        let (year, month, day) = date_from_today(days.1);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.to_string().try_into().expect("URI")));
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The date (UTC) `days` from today, as rcgen takes validity dates.
fn date_from_today(days: i64) -> (i32, u8, u8) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // Days since 1970-01-01 to a civil date (H. Hinnant's `civil_from_days`).
    let z = now / 86_400 + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// Writes `issued` as `NAME.pem` and `NAME.key` in `dir`, each replaced atomically
/// (written aside, then renamed), as a certificate manager does.
pub fn write_pair(dir: &Path, name: &str, issued: &Issued) {
    write_file(dir, &format!("{name}.pem"), &issued.cert);
    write_file(dir, &format!("{name}.key"), &issued.key);
}

pub fn write_file(dir: &Path, name: &str, text: &str) {
    let aside = dir.join(format!(".{name}.new"));
    std::fs::write(&aside, text).expect("write file");
    std::fs::rename(&aside, dir.join(name)).expect("rename file");
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("PEM key")
}

fn roots(pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(pem) {
        roots.add(cert).expect("root");
    }
    roots
}

/// An upstream that speaks HTTP/1.1 over TLS with `identity`, answering as
/// `Upstream` does; with `client_ca`, it requires a client certificate from it.
pub async fn upstream(name: &'static str, identity: &Issued, client_ca: Option<&str>) -> Upstream {
    Upstream::serve(name, Some(acceptor(identity, client_ca))).await
}

/// A server-side TLS configuration with `identity`; with `client_ca`, it requires a
/// client certificate from it.
pub fn acceptor(identity: &Issued, client_ca: Option<&str>) -> tokio_rustls::TlsAcceptor {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)),
                provider(),
            )
            .build()
            .expect("verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(&identity.cert), key(&identity.key))
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A client configuration trusting `ca`, presenting `identity` if given, offering
/// `alpn`, and sending SNI unless `sni` is false.
pub fn client_config(
    ca: &str,
    identity: Option<&Issued>,
    alpn: &[&[u8]],
    sni: bool,
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(ca));
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(certs(&identity.cert), key(&identity.key))
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_sni = sni;
    Arc::new(config)
}

/// What one request over TLS came back with.
#[derive(Debug)]
pub struct HttpsReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub version: http::Version,
    /// The DER of the certificate the gateway presented.
    pub server_cert: Vec<u8>,
}

impl HttpsReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// Connects to `addr` as `server_name`, and sends one GET for `path` over the protocol
/// ALPN chose.
pub async fn get(
    addr: std::net::SocketAddr,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpsReply, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let server_cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let mut builder = Request::get(format!("https://{server_name}{path}"));
    if !h2 {
        builder = builder.uri(path).header("host", server_name);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Empty::<Bytes>::new()).expect("request");
    let io = TokioIo::new(tls);
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        sender.send_request(request).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(conn);
        sender.send_request(request).await
    }
    .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(HttpsReply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        version: parts.version,
        server_cert,
    })
}
