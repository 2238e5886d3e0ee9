//! Did the collector ask for a client certificate? A diagnostic TLS handshake, run only after
//! a delivery over `https://` failed without one configured.
//!
//! With TLS 1.3 a server that requires a client certificate (the collector's
//! `--tls-client-ca`) finishes the handshake from the client's point of view and only then
//! refuses the connection; hyper reports the first call as just "connection closed", and the
//! server's `certificate_required` alert never reaches the caller. So [`crate::deliver`] asks
//! here: one handshake with a client-certificate resolver that records whether the server sent
//! a `CertificateRequest` (and presents nothing). The answer only chooses the error message;
//! no token and no report is sent on this connection, so the server's certificate is not
//! verified here (the real connection verified it, or failed with its own message).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, sign};

/// Records a `CertificateRequest`; presents no certificate.
#[derive(Debug, Default)]
struct Recorder(AtomicBool);

impl ResolvesClientCert for Recorder {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<sign::CertifiedKey>> {
        self.0.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        // So that rustls keeps the transcript for client authentication and calls `resolve`.
        true
    }
}

/// Accepts any server certificate (see the module docs) but checks the handshake signatures.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects to `url`'s host and port (`https://`, default port 443), performs one TLS
/// handshake and returns whether the server requested a client certificate. `None` when that
/// could not be learned (bad URL, no connection, no handshake within `timeout`).
pub async fn requests_client_certificate(url: &str, timeout: Duration) -> Option<bool> {
    let uri: tonic::codegen::http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let provider = Arc::new(ring::default_provider());
    let recorder = Arc::new(Recorder::default());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_cert_resolver(recorder.clone());
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(host.clone()).ok()?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        // The outcome does not matter: a refused handshake (TLS 1.2) and a completed one
        // (TLS 1.3, refused afterwards) both went past the server's CertificateRequest.
        let _ = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await;
        Some(())
    };
    tokio::time::timeout(timeout, attempt).await.ok()??;
    Some(recorder.0.load(Ordering::SeqCst))
}
