//! What the agent presents to, and expects from, the collector: TLS trust (`--ca-file`, or the
//! platform's trust store), an optional client certificate (`--client-cert`/`--client-key`,
//! for mTLS) and the bearer token (`--token-file`).
//!
//! Invariants: the token never appears in a log line, a `Debug` rendering or an error message
//! ([`Authorize`]'s `Debug` is redacted; errors name the file, never its content). The token
//! file is read again at every connection, so `run` picks up a rotated token without a restart.
//! Without `--ca-file` the platform's roots are used (`tls-native-roots`): on Windows that is
//! the machine store, where an enterprise CA pushed by group policy already sits.

use std::path::{Path, PathBuf};

use dsreg_proto::v1::telemetry_client::TelemetryClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A Telemetry client that sends the bearer token (if any) on every call.
pub type Client = TelemetryClient<InterceptedService<Channel, Authorize>>;

/// TLS and token files for the collector connection (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialFiles {
    /// PEM CA certificate(s) trusted for the collector; the platform roots when absent.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mTLS.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// File holding the agent's bearer token (surrounding whitespace trimmed).
    pub token_file: Option<PathBuf>,
}

/// Why the credentials could not be used. Messages name the flag and the file, never the
/// token.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A file could not be read.
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("--token-file {path} is empty: put the agent token issued for the collector in it")]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The token holds characters a gRPC header cannot carry.
    #[error(
        "--token-file {path}: the token holds characters that cannot be sent in a header \
         (only visible ASCII is allowed)"
    )]
    BadToken {
        /// The file.
        path: PathBuf,
    },
    /// Only one of `--client-cert` and `--client-key`.
    #[error("--client-cert and --client-key go together: give both or neither")]
    HalfIdentity,
    /// TLS files were given for a plain `http://` collector.
    #[error("{flag} is set but the collector URL is http://; use https:// to use TLS")]
    TlsWithoutHttps {
        /// The first TLS flag found.
        flag: &'static str,
    },
    /// The PEM files could not be turned into a TLS configuration.
    #[error("cannot use the TLS files ({files}): {reason}")]
    Tls {
        /// The files involved.
        files: String,
        /// The TLS library's reason.
        reason: String,
    },
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|source| CredentialError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

impl CredentialFiles {
    /// The TLS flag set first, if any (for "TLS files with an http URL").
    pub fn first_tls_flag(&self) -> Option<&'static str> {
        [
            ("--ca-file", &self.ca_file),
            ("--client-cert", &self.client_cert),
            ("--client-key", &self.client_key),
        ]
        .into_iter()
        .find_map(|(flag, p)| p.as_ref().map(|_| flag))
    }

    /// The client TLS configuration: the CA file (or the platform roots) and the optional
    /// client identity. Reads the files now.
    pub fn client_tls(&self) -> Result<ClientTlsConfig, CredentialError> {
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read("--ca-file", ca)?)),
            None => tls.with_native_roots(),
        };
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read("--client-cert", cert)?, read("--client-key", key)?);
                tls = tls.identity(identity);
            }
            (None, None) => {}
            _ => return Err(CredentialError::HalfIdentity),
        }
        Ok(tls)
    }

    /// A description of the TLS files for an error message.
    pub fn describe_tls(&self) -> String {
        let mut parts = Vec::new();
        for (flag, p) in [
            ("--ca-file", &self.ca_file),
            ("--client-cert", &self.client_cert),
            ("--client-key", &self.client_key),
        ] {
            if let Some(p) = p {
                parts.push(format!("{flag} {}", p.display()));
            }
        }
        if self.ca_file.is_none() {
            parts.push("platform trust store".to_string());
        }
        parts.join(", ")
    }

    /// Reads the token file (if one is configured) into an interceptor.
    pub fn authorize(&self) -> Result<Authorize, CredentialError> {
        let Some(path) = &self.token_file else {
            return Ok(Authorize(None));
        };
        let bytes = read("--token-file", path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CredentialError::BadToken { path: path.clone() })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CredentialError::EmptyToken { path: path.clone() });
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::BadToken { path: path.clone() });
        }
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| CredentialError::BadToken { path: path.clone() })?;
        value.set_sensitive(true);
        Ok(Authorize(Some(value)))
    }
}

/// Adds `authorization: Bearer <token>` to every call (nothing when no token is configured).
#[derive(Clone)]
pub struct Authorize(Option<MetadataValue<Ascii>>);

impl Authorize {
    /// True when a token is sent.
    pub fn sends_token(&self) -> bool {
        self.0.is_some()
    }
}

impl std::fmt::Debug for Authorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() {
            "<redacted>"
        } else {
            "<none>"
        };
        f.debug_tuple("Authorize").field(&shown).finish()
    }
}

impl Interceptor for Authorize {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_trimmed_sent_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.token");
        std::fs::write(&p, "  s3cret-token-value\r\n\n").unwrap();
        let files = CredentialFiles {
            token_file: Some(p.clone()),
            ..Default::default()
        };
        let mut auth = files.authorize().unwrap();
        assert!(auth.sends_token());
        assert!(!format!("{auth:?}").contains("s3cret"));
        let req = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer s3cret-token-value")
        );

        std::fs::write(&p, " \n").unwrap();
        let e = files.authorize().unwrap_err().to_string();
        assert!(e.contains("--token-file") && e.contains("empty"), "{e}");
        std::fs::write(&p, "two words").unwrap();
        let e = files.authorize().unwrap_err().to_string();
        assert!(e.contains("--token-file") && !e.contains("words"), "{e}");
        let missing = CredentialFiles {
            token_file: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let e = missing.authorize().unwrap_err().to_string();
        assert!(e.contains("--token-file") && e.contains("nope"), "{e}");
        assert!(
            !CredentialFiles::default()
                .authorize()
                .unwrap()
                .sends_token()
        );
    }

    #[test]
    fn client_identity_needs_both_halves() {
        let files = CredentialFiles {
            client_cert: Some(PathBuf::from("c.pem")),
            ..Default::default()
        };
        assert!(matches!(
            files.client_tls(),
            Err(CredentialError::HalfIdentity)
        ));
        let e = CredentialFiles {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..Default::default()
        }
        .client_tls()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--ca-file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
