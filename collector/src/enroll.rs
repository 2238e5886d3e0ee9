//! Per-device credentials (DESIGN §5): `Telemetry/Enroll` trades the enroll secret for a
//! device token bound to one machine id; reports carrying that token are accepted only for
//! that machine id.
//!
//! Invariants:
//! - A device token is 32 random bytes from the OS (`getrandom`), sent once as 64 hex digits
//!   and never stored: the table `device_credentials` and the in-memory index hold only its
//!   SHA-256. Lookup is by digest in a hash map: the index is keyed by a hash of a 256-bit
//!   random value, so timing reveals nothing an attacker can use to guess a token.
//! - One token per machine id. Enrolling a machine id again (re-imaged device that kept its
//!   MachineGuid, agent reinstalled and its state lost) replaces the previous token, which
//!   stops working at once; this is logged at WARN with the host name, so a takeover by
//!   someone holding the enroll secret is visible. Revocation (admin API) deletes the row.
//! - The table is written on a connection of its own (enrollment is rare; SQLite's busy
//!   timeout serialises it with the ingest writer), and the index changes only after the
//!   write committed.
//! - `dsreg_devices_by_credential{credential="device|fleet|open"}` counts devices by the kind
//!   of credential their latest accepted report came with (since the collector started).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// Bytes of randomness in a device token.
pub const TOKEN_BYTES: usize = 32;

/// The credential a call was made with (request extension set by [`crate::auth::GrpcAuth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No token needed (no agent token file, enrollment off).
    Open,
    /// A fleet-wide agent token (`--agent-token-file`).
    Fleet,
    /// The enroll secret: may call `Enroll` only.
    Enroll,
    /// A device token, bound to this machine id.
    Device(String),
}

impl Credential {
    /// The `credential` label of a report sent with it.
    pub fn label(&self) -> &'static str {
        match self {
            Credential::Open => "open",
            Credential::Fleet => "fleet",
            Credential::Enroll => "enroll",
            Credential::Device(_) => "device",
        }
    }
}

/// Why a credential operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// SQLite failed.
    #[error("device credentials in {path}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The OS random source failed.
    #[error("no randomness for a device token: {0}")]
    Random(String),
}

/// The device credentials of one collector.
pub struct DeviceTokens {
    path: PathBuf,
    conn: Mutex<Connection>,
    by_digest: RwLock<HashMap<[u8; 32], String>>,
    seen: Mutex<HashMap<String, &'static str>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for DeviceTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTokens")
            .field("enrolled", &self.enrolled())
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl DeviceTokens {
    /// Opens the credentials of the (already migrated) database at `path`.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<DeviceTokens, EnrollError> {
        let sql = |source| EnrollError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        let mut index = HashMap::new();
        {
            let mut st = conn
                .prepare("SELECT token_sha256, machine_id FROM device_credentials")
                .map_err(sql)?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(sql)?;
            for row in rows {
                let (d, m) = row.map_err(sql)?;
                if let Ok(d) = <[u8; 32]>::try_from(d.as_slice()) {
                    index.insert(d, m);
                }
            }
        }
        metrics.device_credentials(index.len());
        Ok(DeviceTokens {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            by_digest: RwLock::new(index),
            seen: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Devices enrolled now.
    pub fn enrolled(&self) -> usize {
        self.by_digest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The machine id a presented device token is bound to.
    pub fn lookup(&self, token: &str) -> Option<String> {
        self.by_digest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest(token))
            .cloned()
    }

    /// Issues a new token for `machine_id` (replacing its previous one). Blocking.
    pub fn enroll(&self, machine_id: &str, hostname: &str) -> Result<String, EnrollError> {
        let mut raw = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut raw).map_err(|e| EnrollError::Random(e.to_string()))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let d = digest(&token);
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let sql = |source| EnrollError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let previous: Option<Vec<u8>> = conn
            .query_row(
                "SELECT token_sha256 FROM device_credentials WHERE machine_id = ?1",
                [machine_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        conn.execute(
            "INSERT INTO device_credentials (machine_id, token_sha256, hostname, enrolled_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (machine_id) DO UPDATE SET token_sha256 = excluded.token_sha256,
                hostname = excluded.hostname, enrolled_at = excluded.enrolled_at",
            rusqlite::params![machine_id, d.as_slice(), hostname, crate::store::now_ms()],
        )
        .map_err(sql)?;
        drop(conn);
        let mut index = self.by_digest.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = previous
            .as_deref()
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
        {
            index.remove(&old);
            tracing::warn!(
                machine_id,
                hostname,
                "device enrolled again: its previous device token no longer works"
            );
        } else {
            tracing::info!(machine_id, hostname, "device enrolled");
        }
        index.insert(d, machine_id.to_string());
        self.metrics.device_credentials(index.len());
        Ok(token)
    }

    /// Deletes the credential of `machine_id`; false when it had none. Blocking.
    pub fn revoke(&self, machine_id: &str) -> Result<bool, EnrollError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let n = conn
            .execute(
                "DELETE FROM device_credentials WHERE machine_id = ?1",
                [machine_id],
            )
            .map_err(|source| EnrollError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        drop(conn);
        let mut index = self.by_digest.write().unwrap_or_else(|p| p.into_inner());
        index.retain(|_, m| m != machine_id);
        self.metrics.device_credentials(index.len());
        if n > 0 {
            tracing::warn!(machine_id, "device credential revoked");
        }
        Ok(n > 0)
    }

    /// Records the credential kind a device's accepted report came with.
    pub fn seen(&self, machine_id: &str, credential: &Credential) {
        let kind = credential.label();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let before = seen.insert(machine_id.to_string(), kind);
        if before != Some(kind) {
            self.metrics.devices_by_credential(before, kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, DeviceTokens, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut conn = Connection::open(&path).unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        let metrics = Arc::new(Metrics::new());
        let t = DeviceTokens::open(&path, metrics.clone()).unwrap();
        (dir, t, metrics)
    }

    #[test]
    fn tokens_are_random_bound_replaced_and_revoked() {
        let (dir, t, _) = open();
        let a = t.enroll("m-1", "PC-1").unwrap();
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert_eq!(t.lookup(&a).as_deref(), Some("m-1"));
        let b = t.enroll("m-2", "PC-2").unwrap();
        assert_ne!(a, b);
        // Only the digest is stored.
        let raw = std::fs::read(dir.path().join("c.db")).unwrap();
        let wal = std::fs::read(dir.path().join("c.db-wal")).unwrap_or_default();
        for hay in [&raw, &wal] {
            assert!(!hay.windows(a.len()).any(|w| w == a.as_bytes()));
        }
        // Enrolling again replaces the token.
        let a2 = t.enroll("m-1", "PC-1").unwrap();
        assert_eq!(t.lookup(&a), None);
        assert_eq!(t.lookup(&a2).as_deref(), Some("m-1"));
        assert_eq!(t.enrolled(), 2);
        // A restart reads the digests back.
        let again = DeviceTokens::open(&dir.path().join("c.db"), Arc::new(Metrics::new())).unwrap();
        assert_eq!(again.lookup(&a2).as_deref(), Some("m-1"));
        assert!(t.revoke("m-1").unwrap());
        assert!(!t.revoke("m-1").unwrap());
        assert_eq!(t.lookup(&a2), None);
        assert_eq!(t.lookup(&b).as_deref(), Some("m-2"));
    }

    #[test]
    fn devices_are_counted_by_credential_kind() {
        let (_dir, t, metrics) = open();
        t.seen("m-1", &Credential::Fleet);
        t.seen("m-2", &Credential::Fleet);
        t.seen("m-1", &Credential::Device("m-1".into()));
        let text = metrics.render(&crate::fleet::FleetCounts::default());
        assert!(
            text.contains("dsreg_devices_by_credential{credential=\"fleet\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dsreg_devices_by_credential{credential=\"device\"} 1"),
            "{text}"
        );
    }
}
