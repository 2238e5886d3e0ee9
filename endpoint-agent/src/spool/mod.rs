//! The durable on-disk spool: reports wait here until the collector acknowledges them.
//!
//! Laptops go off the network for days, which is exactly when join problems start, so every
//! report is written to disk *before* delivery is attempted and removed only after the
//! collector's ack (which the collector sends after its commit).
//!
//! Invariants:
//! - one file per report, `<seq>.report`, holding the prost-encoded [`Report`]; `seq` grows
//!   monotonically, so lexical order is delivery order (oldest first);
//! - a file appears atomically (write `*.tmp`, fsync, rename, fsync the directory), so a crash
//!   leaves either the whole report or nothing; leftover `*.tmp` files are removed at open;
//! - a file that cannot be decoded is moved to `corrupt/` (kept for a human), never delivered
//!   and never silently deleted;
//! - the spool is bounded by count and bytes. When a push overflows it, the overflow policy
//!   drops, oldest first: (1) reports that repeat the previous report's state for the same
//!   device, (2) other reports in between, and only then (3) the first failure or the latest
//!   report of a device. The newest report is never dropped. Every drop is counted in the
//!   ledger, `state.json` ([`ledger`]), which also records the last successful delivery and
//!   the collection loop's memory (event bookmark, last fingerprint, last queued time).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dsreg_proto::Report;
use prost::Message;

mod ledger;

pub use ledger::SpoolState;

/// Where the spool lives and how big it may grow.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory of the spool (created when missing).
    pub dir: PathBuf,
    /// Most reports kept.
    pub max_reports: usize,
    /// Most bytes kept (sum of report file sizes).
    pub max_bytes: u64,
    /// Replace user names before a report is written (`--pseudonymize-key-file`).
    pub pseudonymize: Option<std::sync::Arc<crate::pseudonym::Pseudonymizer>>,
}

impl SpoolConfig {
    /// A spool in `dir` with the default bounds (1000 reports, 16 MiB).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            max_reports: 1000,
            max_bytes: 16 * 1024 * 1024,
            pseudonymize: None,
        }
    }
}

/// What can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or directory operation failed.
    #[error("spool: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `state.json` exists but is not valid.
    #[error("spool: {path} is not a valid spool state file: {source}")]
    State {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + use<> {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { op, path, source }
}

/// One spooled report, as indexed in memory.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    bytes: u64,
    report_id: String,
    machine_id: String,
    /// Join type plus failure phase/cause/code: two reports with the same key say the same thing.
    state_key: String,
    failing: bool,
}

/// The spool: an ordered, bounded, crash-safe queue of reports on disk.
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    entries: Vec<Entry>,
    next_seq: u64,
    state: SpoolState,
}

const EXT: &str = "report";

fn state_key(r: &Report) -> (String, bool) {
    let snap = r.snapshot.as_ref();
    let join = snap.map_or(0, |s| s.join_type);
    match snap.and_then(|s| s.failure.as_ref()) {
        Some(f) => (format!("{join}|{}|{}|{:?}", f.phase, f.cause, f.code), true),
        None => (format!("{join}|healthy"), false),
    }
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, indexing the reports already there.
    pub fn open(cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        fs::create_dir_all(&cfg.dir).map_err(io_err("create", &cfg.dir))?;
        let state = ledger::load(&cfg.dir)?;
        let mut spool = Spool {
            cfg,
            entries: Vec::new(),
            next_seq: 1,
            state,
        };
        spool.scan()?;
        Ok(spool)
    }

    fn path_of(&self, seq: u64) -> PathBuf {
        self.cfg.dir.join(format!("{seq:020}.{EXT}"))
    }

    fn scan(&mut self) -> Result<(), SpoolError> {
        let dir = self.cfg.dir.clone();
        let listing = fs::read_dir(&dir).map_err(io_err("list", &dir))?;
        let mut found = Vec::new();
        for item in listing {
            let item = item.map_err(io_err("list", &dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write that crashed before its rename: the report was never acknowledged as
                // spooled, so removing the fragment loses nothing.
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                continue;
            }
            let Some(seq) = name
                .strip_suffix(&format!(".{EXT}"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((seq, path));
        }
        found.sort_by_key(|(seq, _)| *seq);
        for (seq, path) in found {
            self.next_seq = self.next_seq.max(seq + 1);
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            match Report::decode(bytes.as_slice()) {
                Ok(r) => {
                    let (state_key, failing) = state_key(&r);
                    self.entries.push(Entry {
                        seq,
                        bytes: bytes.len() as u64,
                        report_id: r.report_id,
                        machine_id: r.machine_id,
                        state_key,
                        failing,
                    });
                }
                Err(e) => {
                    let corrupt = dir.join("corrupt");
                    fs::create_dir_all(&corrupt).map_err(io_err("create", &corrupt))?;
                    let to = corrupt.join(path.file_name().unwrap_or_default());
                    fs::rename(&path, &to).map_err(io_err("move", &path))?;
                    tracing::warn!(path = %to.display(), error = %e, "spool: undecodable report set aside");
                }
            }
        }
        Ok(())
    }

    /// Number of reports waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes on disk used by waiting reports.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// True when a report with this `report_id` waits in the spool.
    pub fn contains(&self, report_id: &str) -> bool {
        self.entries.iter().any(|e| e.report_id == report_id)
    }

    /// The persistent counters.
    pub fn state(&self) -> &SpoolState {
        &self.state
    }

    /// Writes `report` durably at the end of the queue, then enforces the bounds.
    /// Returns how many older reports the overflow policy dropped.
    pub fn push(&mut self, report: &Report) -> Result<usize, SpoolError> {
        let pseudonymized;
        let report = match &self.cfg.pseudonymize {
            Some(p) => {
                let mut r = report.clone();
                p.apply(&mut r);
                pseudonymized = r;
                &pseudonymized
            }
            None => report,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = report.encode_to_vec();
        let path = self.path_of(seq);
        let tmp = path.with_extension(format!("{EXT}.tmp"));
        {
            let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(&bytes).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        sync_dir(&self.cfg.dir)?;
        let (state_key, failing) = state_key(report);
        self.entries.push(Entry {
            seq,
            bytes: bytes.len() as u64,
            report_id: report.report_id.clone(),
            machine_id: report.machine_id.clone(),
            state_key,
            failing,
        });
        let dropped = self.enforce_bounds()?;
        if dropped > 0 {
            self.state.dropped += dropped as u64;
            self.save_state()?;
        }
        Ok(dropped)
    }

    fn over(&self) -> bool {
        self.entries.len() > self.cfg.max_reports || self.bytes() > self.cfg.max_bytes
    }

    /// Picks the next report to drop, following the policy in the module docs.
    fn victim(&self) -> Option<usize> {
        let newest = self.entries.len().checked_sub(1)?;
        let protected = |i: usize| {
            let e = &self.entries[i];
            let latest = !self.entries[i + 1..]
                .iter()
                .any(|o| o.machine_id == e.machine_id);
            let first_failure = e.failing
                && !self.entries[..i]
                    .iter()
                    .any(|o| o.machine_id == e.machine_id && o.failing);
            latest || first_failure
        };
        let repeats_previous = |i: usize| {
            let e = &self.entries[i];
            self.entries[..i]
                .iter()
                .rev()
                .find(|o| o.machine_id == e.machine_id)
                .is_some_and(|o| o.state_key == e.state_key)
        };
        (0..newest)
            .find(|&i| !protected(i) && repeats_previous(i))
            .or_else(|| (0..newest).find(|&i| !protected(i)))
            .or_else(|| (newest > 0).then_some(0))
    }

    fn enforce_bounds(&mut self) -> Result<usize, SpoolError> {
        let mut dropped = 0;
        while self.over() {
            let Some(i) = self.victim() else { break };
            let e = self.entries.remove(i);
            let path = self.path_of(e.seq);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Loads up to `n` of the oldest reports, in delivery order, with their sequence numbers.
    /// A report that became unreadable is set aside in `corrupt/` and skipped.
    pub fn oldest(&mut self, n: usize) -> Result<Vec<(u64, Report)>, SpoolError> {
        let mut out = Vec::with_capacity(n.min(self.entries.len()));
        let mut bad = Vec::new();
        for e in self.entries.iter().take(n) {
            let path = self.path_of(e.seq);
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            match Report::decode(bytes.as_slice()) {
                Ok(r) => out.push((e.seq, r)),
                Err(_) => bad.push(e.seq),
            }
        }
        for seq in bad {
            let path = self.path_of(seq);
            let corrupt = self.cfg.dir.join("corrupt");
            fs::create_dir_all(&corrupt).map_err(io_err("create", &corrupt))?;
            fs::rename(&path, corrupt.join(format!("{seq:020}.{EXT}")))
                .map_err(io_err("move", &path))?;
            self.entries.retain(|e| e.seq != seq);
        }
        Ok(out)
    }

    /// Removes an acknowledged report.
    pub fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        let path = self.path_of(seq);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        self.entries.retain(|e| e.seq != seq);
        Ok(())
    }

    /// Moves a report the collector refused for good to `rejected/`, with the reason beside it,
    /// so it stops blocking the queue but stays readable for a human.
    pub fn set_aside_rejected(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let path = self.path_of(seq);
        let dir = self.cfg.dir.join("rejected");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let to = dir.join(format!("{seq:020}.{EXT}"));
        fs::rename(&path, &to).map_err(io_err("move", &path))?;
        let note = dir.join(format!("{seq:020}.reason.txt"));
        fs::write(&note, reason).map_err(io_err("write", &note))?;
        self.entries.retain(|e| e.seq != seq);
        Ok(())
    }

    /// Records a successful delivery time (unix seconds) in the ledger.
    pub fn record_delivery(&mut self, unix: i64) -> Result<(), SpoolError> {
        self.state.last_delivery_unix = Some(unix);
        self.save_state()
    }

    /// Changes the ledger with `change` and saves it durably (the collection loop records
    /// its bookmark, fingerprint and queue time here).
    pub fn update_state(&mut self, change: impl FnOnce(&mut SpoolState)) -> Result<(), SpoolError> {
        change(&mut self.state);
        self.save_state()
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        ledger::save(&self.cfg.dir, &self.state)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), SpoolError> {
    // NTFS makes a completed rename durable with the file's own flush; there is no portable
    // directory handle to fsync on Windows.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::v1::{Failure, Snapshot};

    fn report(machine: &str, cause: Option<&str>, n: u32) -> Report {
        Report {
            report_id: format!("{machine}-{n}"),
            machine_id: machine.to_string(),
            snapshot: Some(Box::new(Snapshot {
                join_type: 5,
                failure: cause.map(|c| Failure {
                    phase: 2,
                    cause: c.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn ids(s: &mut Spool) -> Vec<String> {
        s.oldest(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.report_id)
            .collect()
    }

    #[test]
    fn survives_reopen_in_order_and_removes_fragments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        for n in 0..3 {
            s.push(&report("m", None, n)).unwrap();
        }
        fs::write(dir.path().join("00000000000000000009.report.tmp"), b"half").unwrap();
        drop(s);
        let mut s = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        assert_eq!(ids(&mut s), ["m-0", "m-1", "m-2"]);
        assert!(!dir.path().join("00000000000000000009.report.tmp").exists());
        let first = s.oldest(1).unwrap()[0].0;
        s.remove(first).unwrap();
        s.push(&report("m", None, 3)).unwrap();
        let mut s = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        assert_eq!(ids(&mut s), ["m-1", "m-2", "m-3"]);
    }

    #[test]
    fn corrupt_file_is_set_aside_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        s.push(&report("m", None, 0)).unwrap();
        fs::write(
            dir.path().join("00000000000000000005.report"),
            [0xff, 0xff, 0xff],
        )
        .unwrap();
        let mut s = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        assert_eq!(ids(&mut s), ["m-0"]);
        assert!(
            dir.path()
                .join("corrupt/00000000000000000005.report")
                .exists()
        );
    }

    #[test]
    fn overflow_keeps_first_failure_and_latest_and_drops_repeats_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SpoolConfig::new(dir.path());
        cfg.max_reports = 3;
        let mut s = Spool::open(cfg.clone()).unwrap();
        s.push(&report("m", Some("scp_not_configured"), 0)).unwrap(); // first failure
        s.push(&report("m", Some("scp_not_configured"), 1)).unwrap(); // repeat
        s.push(&report("m", Some("dc_unreachable"), 2)).unwrap(); // a change
        assert_eq!(s.push(&report("m", Some("dc_unreachable"), 3)).unwrap(), 1);
        assert_eq!(ids(&mut s), ["m-0", "m-2", "m-3"], "the repeat goes first");
        assert_eq!(s.push(&report("m", None, 4)).unwrap(), 1);
        assert_eq!(
            ids(&mut s),
            ["m-0", "m-2", "m-4"],
            "a repeat of a state goes before the report that first showed it"
        );
        assert_eq!(s.push(&report("other", None, 0)).unwrap(), 1);
        assert_eq!(
            ids(&mut s),
            ["m-0", "m-4", "other-0"],
            "with no repeats left, the oldest in-between report goes"
        );
        assert_eq!(s.state().dropped, 3);
        let s = Spool::open(cfg).unwrap();
        assert_eq!(s.state().dropped, 3, "the drop count survives a restart");
    }

    #[test]
    fn byte_bound_never_drops_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SpoolConfig::new(dir.path());
        cfg.max_bytes = 1;
        let mut s = Spool::open(cfg).unwrap();
        s.push(&report("m", None, 0)).unwrap();
        s.push(&report("m", None, 1)).unwrap();
        assert_eq!(ids(&mut s), ["m-1"]);
    }
}
