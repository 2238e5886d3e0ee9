//! Enrollment (`--enroll-secret-file`, DESIGN §5): the agent trades the fleet's enroll secret
//! for a device token of its own, bound by the collector to this machine id, and reports with
//! that token from then on.
//!
//! Invariants:
//! - The device token lives in the state directory (the spool directory, file
//!   [`TOKEN_FILE`]), written atomically (`device-token.new`, then rename; not `.tmp`, which
//!   the spool cleans up) and, on Unix, readable by its owner only; on Windows the installer's
//!   ACL on `%ProgramData%\dsreg-agent` (SYSTEM and Administrators) covers it. It is never
//!   logged, like every token ([`crate::credentials`]).
//! - Enrollment happens on first contact (no token file yet) and again at most once per
//!   delivery when the collector answers UNAUTHENTICATED to the device token (revoked, or the
//!   collector's database was restored from an older backup): the token file is removed, a new
//!   token is fetched, and the delivery is tried once more. A second refusal is reported as
//!   usual (the reports stay spooled).

use std::path::{Path, PathBuf};

use dsreg_proto::v1::EnrollRequest;

use crate::credentials::CredentialFiles;
use crate::deliver::{self, DeliveryConfig, DeliveryError};

/// The device token's file name in the state directory.
pub const TOKEN_FILE: &str = "device-token";

/// What enrollment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The enroll secret (presented to `Telemetry/Enroll` only).
    pub secret_file: PathBuf,
    /// Where the device token is kept.
    pub token_file: PathBuf,
    /// The machine id the token is bound to.
    pub machine_id: String,
    /// The host name sent along (for the collector's log).
    pub hostname: String,
}

impl Enrollment {
    /// Enrollment with the token kept in `state_dir`.
    pub fn new(secret_file: PathBuf, state_dir: &Path, machine_id: &str, hostname: &str) -> Self {
        Enrollment {
            secret_file,
            token_file: state_dir.join(TOKEN_FILE),
            machine_id: machine_id.to_string(),
            hostname: hostname.to_string(),
        }
    }

    /// True when a device token is on disk.
    pub fn has_token(&self) -> bool {
        self.token_file.is_file()
    }

    /// Forgets the device token (the collector refused it).
    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.token_file);
    }

    /// Calls `Telemetry/Enroll` with the enroll secret and stores the device token.
    pub async fn enroll(&self, cfg: &DeliveryConfig) -> Result<(), DeliveryError> {
        let mut with_secret = cfg.clone();
        with_secret.credentials = CredentialFiles {
            token_file: Some(self.secret_file.clone()),
            ..cfg.credentials.clone()
        };
        let mut client = deliver::connect(&with_secret).await?;
        let token = client
            .enroll(EnrollRequest {
                machine_id: self.machine_id.clone(),
                hostname: self.hostname.clone(),
            })
            .await
            .map_err(|status| match status.code() {
                code @ (tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) => {
                    DeliveryError::TokenRefused {
                        url: cfg.collector.clone(),
                        code,
                        hint: "the collector refused the enroll secret of --enroll-secret-file \
                               (settings key enroll_secret_file)",
                    }
                }
                code => DeliveryError::Refused {
                    url: cfg.collector.clone(),
                    code,
                    message: format!("enroll: {}", status.message()),
                },
            })?
            .into_inner()
            .device_token;
        store_token(&self.token_file, &token).map_err(|e| DeliveryError::Refused {
            url: cfg.collector.clone(),
            code: tonic::Code::Internal,
            message: format!(
                "cannot store the device token in {}: {e}",
                self.token_file.display()
            ),
        })?;
        tracing::info!(machine_id = %self.machine_id, "enrolled: device token stored");
        Ok(())
    }

    /// `cfg` with the device token as the bearer token (enrolling first when there is none).
    pub async fn authorized(&self, cfg: &DeliveryConfig) -> Result<DeliveryConfig, DeliveryError> {
        if !self.has_token() {
            self.enroll(cfg).await?;
        }
        let mut out = cfg.clone();
        out.credentials.token_file = Some(self.token_file.clone());
        Ok(out)
    }
}

fn store_token(path: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("new");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    {
        use std::io::Write;
        let mut f = opts.open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_stored_atomically_and_privately() {
        let dir = tempfile::tempdir().unwrap();
        let e = Enrollment::new(dir.path().join("secret"), dir.path(), "m-1", "PC-1");
        assert!(!e.has_token());
        store_token(&e.token_file, "abc123").unwrap();
        assert!(e.has_token());
        assert_eq!(std::fs::read_to_string(&e.token_file).unwrap(), "abc123");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&e.token_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert!(!dir.path().join("device-token.new").exists());
        e.forget();
        assert!(!e.has_token());
    }
}
