//! Test PKI and an https client for the security tests.
//!
//! [`Pki::generate`] makes, at test time, a CA, a server certificate for `127.0.0.1`, `::1`
//! and `localhost`, a client certificate signed by the same CA (mTLS), and an unrelated CA
//! (for "wrong CA" checks), writing PEM files into a temporary directory. No key is ever
//! committed. [`https_get`] is a one-shot GET trusting only a given CA, with an optional
//! bearer token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate (SAN 127.0.0.1, ::1, localhost).
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate (for mTLS), signed by [`Pki::ca`].
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here (a "wrong CA" for clients).
    pub other_ca: PathBuf,
    /// A client certificate signed by [`Pki::other_ca`].
    pub other_client_cert: PathBuf,
    /// Its key.
    pub other_client_key: PathBuf,
}

fn ca(name: &str) -> anyhow::Result<(CertificateParams, KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = p.self_signed(&key)?.pem();
    Ok((p, key, pem))
}

fn leaf(
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names)?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Generates the PKI into `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
        let (ca_params, ca_key, ca_pem) = ca("dsreg test CA")?;
        let issuer = Issuer::new(ca_params, ca_key);
        let (server_cert, server_key) = leaf(
            &["127.0.0.1", "::1", "localhost"],
            "dsreg-collector",
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        let (client_cert, client_key) = leaf(
            &["agent-0001"],
            "agent-0001",
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?;
        let (other_params, other_key, other_pem) = ca("some other CA")?;
        let other = Issuer::new(other_params, other_key);
        let (other_client_cert, other_client_key) = leaf(
            &["intruder"],
            "intruder",
            ExtendedKeyUsagePurpose::ClientAuth,
            &other,
        )?;
        let write = |name: &str, pem: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, pem).with_context(|| format!("write {}", p.display()))?;
            Ok(p)
        };
        Ok(Pki {
            ca: write("ca.pem", &ca_pem)?,
            server_cert: write("server.pem", &server_cert)?,
            server_key: write("server.key", &server_key)?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client.key", &client_key)?,
            other_ca: write("other-ca.pem", &other_pem)?,
            other_client_cert: write("other-client.pem", &other_client_cert)?,
            other_client_key: write("other-client.key", &other_client_key)?,
        })
    }
}

/// GET `url` over https trusting only the CA in `ca` (PEM), with `Authorization: Bearer
/// <token>` when a token is given. Returns the status and the body (any status, no error).
pub fn https_get(url: &str, ca: &Path, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
    let cert = ureq::tls::Certificate::from_pem(&pem).context("parse CA PEM")?;
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("read body of {url}"))?;
    Ok((status, body))
}
