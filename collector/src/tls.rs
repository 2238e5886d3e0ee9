//! TLS for both listeners (`--tls-cert`, `--tls-key`, optional `--tls-client-ca` for mTLS on
//! gRPC).
//!
//! The PEM files are parsed here first, so a bad file is refused at start with a message
//! naming it. gRPC uses tonic's rustls acceptor (ring provider); HTTP handshakes run in each
//! connection's own task with a deadline ([`crate::http_server`]), so one slow client cannot
//! hold up `accept`. Both use `--handshake-timeout`. With TLS on there is no plaintext
//! fallback: a plaintext client fails the handshake. Certificates are read once at start
//! (SIGHUP reloads tokens, not certificates: restart to rotate them).

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {setting} {path}: {source}")]
    Read {
        /// Which setting named the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// A file holds no usable PEM object of the expected kind.
    #[error("{setting} {path}: {reason}")]
    Pem {
        /// Which setting named the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate and key do not make a server configuration.
    #[error("tls_cert/tls_key: {0}")]
    Config(String),
}

/// TLS settings for both listeners.
#[derive(Clone)]
pub struct Tls {
    /// For tonic's server builder.
    pub grpc: tonic::transport::ServerTlsConfig,
    /// For the HTTP listener ([`crate::http_server`]).
    pub http: TlsAcceptor,
    /// mTLS is required on gRPC.
    pub client_auth: bool,
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.display().to_string(),
        source,
    })
}

fn certs(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Pem {
        setting,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Loads the TLS files of `config`; `None` when TLS is off.
pub fn load(config: &Config) -> Result<Option<Tls>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let cert_pem = read("tls_cert", cert_path)?;
    let key_pem = read("tls_key", key_path)?;
    let chain = certs("tls_cert", cert_path, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        setting: "tls_key",
        path: key_path.display().to_string(),
        reason: format!("no usable private key ({e})"),
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut http = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    http.alpn_protocols = vec![b"http/1.1".to_vec()];

    let mut grpc = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem))
        .timeout(config.handshake_timeout);
    let client_auth = match &config.tls_client_ca {
        Some(ca_path) => {
            let ca_pem = read("tls_client_ca", ca_path)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("tls_client_ca", ca_path, &ca_pem)? {
                roots.add(c).map_err(|e| TlsError::Pem {
                    setting: "tls_client_ca",
                    path: ca_path.display().to_string(),
                    reason: format!("not a usable CA certificate ({e})"),
                })?;
            }
            grpc = grpc.client_ca_root(tonic::transport::Certificate::from_pem(ca_pem));
            true
        }
        None => false,
    };
    Ok(Some(Tls {
        grpc,
        http: TlsAcceptor::from(Arc::new(http)),
        client_auth,
    }))
}
