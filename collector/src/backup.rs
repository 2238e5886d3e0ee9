//! Online backup (`dsreg-collector backup --db PATH --to FILE`) and the integrity check at
//! start.
//!
//! [`backup`] copies a live database with `VACUUM INTO` on a read-only connection: SQLite
//! writes one consistent snapshot (a single read transaction, which in WAL mode never blocks
//! the collector's writer, and sees no commit that happens during the copy) into a temporary
//! file next to the destination. The copy is fsynced, checked with `PRAGMA integrity_check`,
//! and only then renamed over the destination (and the directory fsynced), so the destination
//! is always either the previous backup or a complete, verified new one.
//!
//! [`quick_check`] runs `PRAGMA quick_check` before the store is served, bounded by a time
//! budget (it reads every page, so a very large file may not finish: it is then interrupted,
//! logged and skipped, not failed). A damaged file is refused with the first problem SQLite
//! names, so it is found before agents' acknowledged reports go into it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long the start-up `quick_check` may take before it is skipped.
pub const QUICK_CHECK_BUDGET: Duration = Duration::from_secs(20);

/// Why a backup or the start-up check failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source database cannot be opened.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// SQLite failed while copying or checking.
    #[error("{step} of {path} failed: {source}")]
    Sqlite {
        /// What was being done.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file operation on the copy failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The copy (or, at start, the database) is damaged.
    #[error("integrity check of {path} failed: the file is damaged (malformed): {problem}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The first problem SQLite reported.
        problem: String,
    },
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The verified copy.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Devices in it.
    pub devices: u64,
}

fn sqlite(step: &'static str, path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Sqlite { step, path, source }
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { step, path, source }
}

/// Copies the database at `db` (which may be in use) to `to`, atomically and verified.
pub fn backup(db: &Path, to: &Path) -> Result<BackupSummary, BackupError> {
    if !db.is_file() {
        return Err(BackupError::Io {
            step: "no database at",
            path: db.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| BackupError::Open {
        path: db.to_path_buf(),
        source,
    })?;
    src.busy_timeout(Duration::from_secs(30))
        .map_err(sqlite("busy timeout", db))?;
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let tmp = to.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let devices = match copy_and_verify(&src, db, &tmp) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, to).map_err(io("cannot rename the copy to", to))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable only once the directory is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let bytes = std::fs::metadata(to).map_err(io("cannot stat", to))?.len();
    Ok(BackupSummary {
        path: to.to_path_buf(),
        bytes,
        devices,
    })
}

/// `VACUUM INTO tmp`, fsync, integrity check; the device count of the copy.
fn copy_and_verify(src: &Connection, db: &Path, tmp: &Path) -> Result<u64, BackupError> {
    let target = tmp.to_string_lossy().into_owned();
    src.execute("VACUUM INTO ?1", [&target])
        .map_err(sqlite("VACUUM INTO", db))?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot fsync", tmp))?;
    let copy =
        Connection::open_with_flags(tmp, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            BackupError::Open {
                path: tmp.to_path_buf(),
                source,
            }
        })?;
    let problem: String = copy
        .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
        .map_err(sqlite("integrity_check", tmp))?;
    if problem != "ok" {
        return Err(BackupError::Damaged {
            path: tmp.to_path_buf(),
            problem,
        });
    }
    let devices: i64 = copy
        .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
        .map_err(sqlite("counting devices", tmp))?;
    Ok(u64::try_from(devices).unwrap_or(0))
}

/// The outcome of the start-up check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuickCheck {
    /// No file yet (a new database).
    NoFile,
    /// `quick_check` said ok.
    Ok,
    /// Not finished within the budget: interrupted and skipped.
    Skipped,
}

/// `PRAGMA quick_check` on `db`, interrupted after `budget`. A damaged file is an error.
pub fn quick_check(db: &Path, budget: Duration) -> Result<QuickCheck, BackupError> {
    if !db.exists() {
        return Ok(QuickCheck::NoFile);
    }
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            BackupError::Open {
                path: db.to_path_buf(),
                source,
            }
        })?;
    let interrupt = conn.get_interrupt_handle();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(budget).is_err() {
            interrupt.interrupt();
            return true;
        }
        false
    });
    let result: rusqlite::Result<String> =
        conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0));
    let _ = done_tx.send(());
    let interrupted = watchdog.join().unwrap_or(false);
    match result {
        Ok(s) if s == "ok" => Ok(QuickCheck::Ok),
        Ok(problem) => Err(BackupError::Damaged {
            path: db.to_path_buf(),
            problem,
        }),
        Err(e)
            if interrupted
                && e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) =>
        {
            Ok(QuickCheck::Skipped)
        }
        Err(e) => Err(BackupError::Damaged {
            path: db.to_path_buf(),
            problem: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: &Path, rows: usize) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE devices (key TEXT PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        let mut st = c.prepare("INSERT INTO devices VALUES (?1, ?2)").unwrap();
        for i in 0..rows {
            st.execute(rusqlite::params![format!("dev-{i:06}"), vec![7u8; 200]])
                .unwrap();
        }
    }

    #[test]
    fn backup_is_verified_and_replaces_the_destination_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        sample(&db, 500);
        let to = dir.path().join("copy.db");
        std::fs::write(&to, b"previous backup").unwrap();
        let s = backup(&db, &to).unwrap();
        assert_eq!(s.devices, 500);
        assert_eq!(s.bytes, std::fs::metadata(&to).unwrap().len());
        assert_eq!(
            quick_check(&to, QUICK_CHECK_BUDGET).unwrap(),
            QuickCheck::Ok
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let err = backup(&dir.path().join("missing.db"), &to).unwrap_err();
        assert!(err.to_string().contains("missing.db"), "{err}");
    }

    #[test]
    fn a_damaged_file_is_refused_and_a_new_one_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.db");
        assert_eq!(
            quick_check(&db, QUICK_CHECK_BUDGET).unwrap(),
            QuickCheck::NoFile
        );
        sample(&db, 2000);
        Connection::open(&db)
            .unwrap()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        assert_eq!(
            quick_check(&db, QUICK_CHECK_BUDGET).unwrap(),
            QuickCheck::Ok
        );
        // Scribble over the middle of the file (b-tree pages of the table).
        let mut bytes = std::fs::read(&db).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 4096] {
            *b = 0xa5;
        }
        std::fs::write(&db, bytes).unwrap();
        let err = quick_check(&db, QUICK_CHECK_BUDGET).unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("d.db"), "{err}");
    }
}
