//! The example runs as documented: it makes its certificates, serves both sites by
//! SNI, and lets only an operator's certificate through to the admin routes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Example {
    child: Child,
    public: SocketAddr,
    redirect: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start() -> Example {
    let dir = std::env::temp_dir().join(format!("tls-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("directory");
    let app = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tls-example"))
        .env("TLS_EXAMPLE_DIR", &dir)
        .env("GATEWAY_BIND", "127.0.0.1:0")
        .env("REDIRECT_BIND", "127.0.0.1:0")
        .env("GATEWAY_ADMIN_BIND", "127.0.0.1:0")
        .env("APP_BIND", &app)
        .env("APP", format!("http://{app}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut public, mut redirect) = (None, None);
    while public.is_none() || redirect.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the example logs its listeners");
        let Some(addr) = line
            .split(" addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
        else {
            continue;
        };
        let addr: SocketAddr = addr.parse().expect("address");
        if line.contains("listener=\"public\"") {
            public = Some(addr);
        } else if line.contains("listener=\"redirect\"") {
            redirect = Some(addr);
        }
    }
    Example {
        child,
        public: public.expect("public"),
        redirect: redirect.expect("redirect"),
        dir,
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("file")
        .collect::<Result<_, _>>()
        .expect("PEM")
}

/// One GET over TLS as `name`, with the client certificate `client` if given; the
/// raw response and the certificate the gateway presented.
async fn get(example: &Example, name: &str, path: &str, client: Option<&str>) -> (String, Vec<u8>) {
    let certs_dir = example.dir.join("certs");
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&certs_dir.join("ca.pem")) {
        roots.add(cert).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some(who) => {
            let key =
                PrivateKeyDer::from_pem_file(certs_dir.join(format!("{who}.key"))).expect("key");
            builder
                .with_client_auth_cert(certs(&certs_dir.join(format!("{who}.pem"))), key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(example.public)
        .await
        .expect("connect");
    let server_name = ServerName::try_from(name.to_owned()).expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .expect("handshake");
    let presented = tls.get_ref().1.peer_certificates().expect("certificate")[0].to_vec();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {name}\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("request");
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.expect("response");
    (String::from_utf8_lossy(&response).into_owned(), presented)
}

#[tokio::test]
async fn the_example_serves_two_sites_and_guards_its_admin_routes() {
    let example = start();
    let certs_dir = example.dir.join("certs");
    let api = certs(&certs_dir.join("api.pem"))[0].to_vec();
    let www = certs(&certs_dir.join("www.pem"))[0].to_vec();

    let (response, presented) = get(&example, "api.example.test", "/hello", None).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""proto":"https""#), "{response}");
    assert_eq!(presented, api);
    let (response, presented) = get(&example, "shop.www.example.test", "/index.html", None).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(presented, www);

    let (response, _) = get(&example, "api.example.test", "/admin/stats", None).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("client certificate required"),
        "{response}"
    );
    let (response, _) = get(&example, "api.example.test", "/admin/stats", Some("bob")).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let (response, _) = get(&example, "api.example.test", "/admin/stats", Some("alice")).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""client":"URI:spiffe://example.test/ops/alice""#),
        "{response}"
    );

    let mut plain = tokio::net::TcpStream::connect(example.redirect)
        .await
        .expect("connect");
    plain
        .write_all(b"GET /hello HTTP/1.1\r\nhost: api.example.test\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    plain.read_to_string(&mut response).await.expect("response");
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    assert!(
        response.contains("location: https://api.example.test:8443/hello"),
        "{response}"
    );
}
