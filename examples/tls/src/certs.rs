//! The example's certificates, made with rcgen: a server CA and a certificate for each
//! site, a client CA and an operator's client certificate (SPIFFE ID
//! `spiffe://example.test/ops/alice`). Private keys are written readable by the owner
//! only.

use std::io::Write;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A CA: its certificate in PEM, and what signs with it.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca { params, key, pem })
    }

    /// A leaf for `dns` names and `uris`: its PEM and its key's PEM.
    fn issue(
        &self,
        cn: &str,
        dns: &[&str],
        uris: &[&str],
    ) -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.to_string().try_into()?));
        }
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Makes every certificate of the example in `dir`, unless they are there already.
pub fn ensure(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    if dir.join("api.pem").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let servers = Ca::new("example server CA")?;
    let clients = Ca::new("example client CA")?;
    let (api, api_key) = servers.issue("api.example.test", &["api.example.test"], &[])?;
    let (www, www_key) = servers.issue(
        "www.example.test",
        &["www.example.test", "*.www.example.test"],
        &[],
    )?;
    let (alice, alice_key) = clients.issue("alice", &[], &["spiffe://example.test/ops/alice"])?;
    let (bob, bob_key) = clients.issue("bob", &[], &["spiffe://example.test/dev/bob"])?;
    write(dir, "ca.pem", &servers.pem, false)?;
    write(dir, "clients-ca.pem", &clients.pem, false)?;
    for (name, cert, key) in [
        ("api", api, api_key),
        ("www", www, www_key),
        ("alice", alice, alice_key),
        ("bob", bob, bob_key),
    ] {
        write(dir, &format!("{name}.key"), &key, true)?;
        write(dir, &format!("{name}.pem"), &cert, false)?;
    }
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str, secret: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(dir.join(name))?;
    file.write_all(text.as_bytes())
}
