//! The user-context handoff: user reports reach the collector through the SYSTEM agent, so
//! users never hold the agent token or the client key.
//!
//! PRT and WAM state exist only in the signed-in user's context, so a per-user logon task runs
//! `dsreg-agent send --user-context --user-inbox DIR`. That run does not talk to the collector:
//! [`hand_off`] writes its finished [`Report`] into the inbox directory (`<report_id>.report`,
//! written as `*.tmp`, flushed, then renamed, so the SYSTEM agent never sees half a file) and
//! exits. The SYSTEM agent (`run` at every cycle, and `send`) calls [`ingest`] before it
//! delivers: it takes a bounded number of files per cycle ([`InboxConfig::max_files`]), each
//! bounded in size ([`InboxConfig::max_bytes`]), decodes each and accepts only a report that
//! - is a `Report` whose `report_id` is a UUID,
//! - says `execution_context = user`,
//! - names this device's machine id, and
//! - carries no event records (the SYSTEM agent reads the event log itself).
//!
//! An accepted report goes into the durable spool with its own `report_id`, and only then is
//! its file deleted. A crash between the two ingests the file again next cycle: the spool
//! already holds that `report_id`, so nothing is queued twice (and the collector would answer
//! `DUPLICATE` anyway). Anything else is logged with the file name and the reason and moved to
//! `rejected/` inside the inbox (at most [`InboxConfig::max_rejected`] files are kept there;
//! beyond that a rejected file is deleted). `*.tmp` files are a user's write in progress and
//! are left alone.
//!
//! The installer gives the inbox an ACL where users may create files but not list the
//! directory or read others' files; SYSTEM and Administrators have full control. A local user
//! can still hand in a forged user-part report for *their own* device — see SECURITY.md.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dsreg_proto::{ExecutionContext, Report};
use prost::Message;

use crate::spool::{Spool, SpoolError};

/// Where the inbox is and how much one cycle takes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxConfig {
    /// The handoff directory.
    pub dir: PathBuf,
    /// Files examined per cycle (default 64); the rest wait for the next cycle.
    pub max_files: usize,
    /// Largest accepted file (default 256 KiB).
    pub max_bytes: u64,
    /// Rejected files kept in `rejected/` (default 64); further ones are deleted.
    pub max_rejected: usize,
}

impl InboxConfig {
    /// An inbox in `dir` with the default bounds.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        InboxConfig {
            dir: dir.into(),
            max_files: 64,
            max_bytes: 256 * 1024,
            max_rejected: 64,
        }
    }
}

/// Why the inbox could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// A file operation failed.
    #[error("user inbox: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The report is larger than the device agent accepts.
    #[error("user inbox: the report is {bytes} bytes, over the {limit}-byte limit of the inbox")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: u64,
    },
    /// The spool failed while taking an accepted report.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InboxError + use<> {
    let path = path.to_path_buf();
    move |source| InboxError::Io { op, path, source }
}

const EXT: &str = "report";
const REJECTED: &str = "rejected";

/// Writes `report` into the inbox `dir` atomically as `<report_id>.report`; returns its path.
pub fn hand_off(dir: &Path, report: &Report) -> Result<PathBuf, InboxError> {
    let bytes = report.encode_to_vec();
    let limit = InboxConfig::new(dir).max_bytes;
    if bytes.len() as u64 > limit {
        return Err(InboxError::TooLarge {
            bytes: bytes.len(),
            limit,
        });
    }
    let path = dir.join(format!("{}.{EXT}", report.report_id));
    let tmp = dir.join(format!("{}.{EXT}.tmp", report.report_id));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("flush", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    Ok(path)
}

/// What one [`ingest`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// Reports put into the spool.
    pub accepted: usize,
    /// Files whose report the spool already held (a crash before the delete).
    pub already_spooled: usize,
    /// Files refused (moved to `rejected/` or deleted).
    pub rejected: usize,
    /// Files left for the next cycle (over the per-cycle cap).
    pub left: usize,
}

/// Moves the reports of the inbox into `spool`; see the module docs. A missing inbox is
/// empty (no user has handed anything in yet).
pub fn ingest(
    cfg: &InboxConfig,
    spool: &mut Spool,
    machine_id: &str,
) -> Result<Ingested, InboxError> {
    let mut out = Ingested::default();
    let listing = match fs::read_dir(&cfg.dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("list", &cfg.dir)(e)),
    };
    let mut files = Vec::new();
    for item in listing {
        let item = item.map_err(io_err("list", &cfg.dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name == REJECTED {
            continue;
        }
        if files.len() == cfg.max_files {
            out.left += 1;
            continue;
        }
        files.push(item.path());
    }
    for path in files {
        match check(cfg, &path, machine_id) {
            Ok(report) => {
                if spool.contains(&report.report_id) {
                    out.already_spooled += 1;
                } else {
                    spool.push(&report)?;
                    out.accepted += 1;
                    tracing::debug!(file = %path.display(), report_id = %report.report_id, "user report taken from the inbox");
                }
                remove(&path)?;
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "user inbox: report rejected");
                set_aside(cfg, &path)?;
                out.rejected += 1;
            }
        }
    }
    Ok(out)
}

/// Reads and checks one inbox file; `Err` is the reason it is refused.
fn check(cfg: &InboxConfig, path: &Path, machine_id: &str) -> Result<Report, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > cfg.max_bytes {
        return Err(format!(
            "{} bytes, over the {}-byte limit",
            meta.len(),
            cfg.max_bytes
        ));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(cfg.max_bytes + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > cfg.max_bytes {
        return Err(format!("over the {}-byte limit", cfg.max_bytes));
    }
    let report =
        Report::decode(bytes.as_slice()).map_err(|e| format!("not a dsreg Report: {e}"))?;
    if uuid::Uuid::parse_str(&report.report_id).is_err() {
        return Err(format!("report_id {:?} is not a UUID", report.report_id));
    }
    let context = ExecutionContext::try_from(report.execution_context).unwrap_or_default();
    if context != ExecutionContext::User {
        return Err(format!(
            "execution_context is {}, only user-context reports are taken from the inbox",
            context.as_str_name()
        ));
    }
    if report.machine_id != machine_id {
        return Err(format!(
            "machine_id {:?} is not this device's {machine_id:?}",
            report.machine_id
        ));
    }
    if !report.events.is_empty() {
        return Err(format!(
            "carries {} event records; user-context reports carry none",
            report.events.len()
        ));
    }
    Ok(report)
}

fn remove(path: &Path) -> Result<(), InboxError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Moves a refused file to `rejected/`, or deletes it when `rejected/` is full.
fn set_aside(cfg: &InboxConfig, path: &Path) -> Result<(), InboxError> {
    let dir = cfg.dir.join(REJECTED);
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let kept = fs::read_dir(&dir)
        .map_err(io_err("list", &dir))?
        .take(cfg.max_rejected)
        .count();
    let meta = fs::symlink_metadata(path).ok();
    let is_dir = meta.as_ref().is_some_and(|m| m.file_type().is_dir());
    if kept >= cfg.max_rejected || is_dir {
        return if is_dir {
            fs::remove_dir_all(path).map_err(io_err("remove", path))
        } else {
            remove(path)
        };
    }
    let to = dir.join(path.file_name().unwrap_or_default());
    fs::rename(path, &to).map_err(io_err("move", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolConfig;

    const ME: &str = "machine-1";

    fn user_report(machine: &str, n: u128) -> Report {
        Report {
            report_id: uuid::Uuid::from_u128(n).to_string(),
            machine_id: machine.to_string(),
            execution_context: ExecutionContext::User as i32,
            ..Default::default()
        }
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        cfg: InboxConfig,
        spool: Spool,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = InboxConfig::new(tmp.path().join("inbox"));
        fs::create_dir_all(&cfg.dir).unwrap();
        let spool = Spool::open(SpoolConfig::new(tmp.path().join("spool"))).unwrap();
        Setup {
            _tmp: tmp,
            cfg,
            spool,
        }
    }

    fn spooled_ids(spool: &mut Spool) -> Vec<String> {
        let mut ids: Vec<String> = spool
            .oldest(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.report_id)
            .collect();
        ids.sort();
        ids
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .map(|l| {
                l.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        n.sort();
        n
    }

    #[test]
    fn a_handed_off_user_report_moves_into_the_spool_with_its_id() {
        let mut s = setup();
        let r = user_report(ME, 1);
        let path = hand_off(&s.cfg.dir, &r).unwrap();
        assert_eq!(path, s.cfg.dir.join(format!("{}.report", r.report_id)));
        let got = ingest(&s.cfg, &mut s.spool, ME).unwrap();
        assert_eq!(
            got,
            Ingested {
                accepted: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            spooled_ids(&mut s.spool),
            std::slice::from_ref(&r.report_id)
        );
        assert!(names(&s.cfg.dir).is_empty(), "the file is gone");

        // A crash after the spool push and before the delete: the file comes back; the spool
        // already has that report_id, so nothing is queued twice.
        hand_off(&s.cfg.dir, &r).unwrap();
        let got = ingest(&s.cfg, &mut s.spool, ME).unwrap();
        assert_eq!(got.already_spooled, 1, "{got:?}");
        assert_eq!(spooled_ids(&mut s.spool), [r.report_id]);
        assert!(names(&s.cfg.dir).is_empty());
    }

    #[test]
    fn foreign_and_malformed_files_are_rejected_with_the_reason() {
        let mut s = setup();
        let mut system = user_report(ME, 1);
        system.execution_context = ExecutionContext::System as i32;
        let other_machine = user_report("someone-else", 2);
        let mut with_events = user_report(ME, 3);
        with_events.events.push(Default::default());
        let mut bad_id = user_report(ME, 4);
        bad_id.report_id = "not-a-uuid".into();
        for (name, r) in [
            ("system.report", &system),
            ("other.report", &other_machine),
            ("events.report", &with_events),
            ("badid.report", &bad_id),
        ] {
            fs::write(s.cfg.dir.join(name), r.encode_to_vec()).unwrap();
        }
        fs::write(s.cfg.dir.join("garbage.report"), [0xff, 0xff, 0xff, 0x01]).unwrap();
        fs::write(
            s.cfg.dir.join("huge.report"),
            vec![0u8; usize::try_from(s.cfg.max_bytes).unwrap() + 1],
        )
        .unwrap();
        fs::create_dir(s.cfg.dir.join("a-directory")).unwrap();
        for (file, why) in [
            ("system.report", "EXECUTION_CONTEXT_SYSTEM"),
            ("other.report", "\"someone-else\""),
            ("events.report", "event records"),
            ("badid.report", "not a UUID"),
            ("garbage.report", "not a dsreg Report"),
            ("huge.report", "over the 262144-byte limit"),
            ("a-directory", "not a regular file"),
        ] {
            let reason = check(&s.cfg, &s.cfg.dir.join(file), ME).unwrap_err();
            assert!(reason.contains(why), "{file}: {reason}");
        }
        let got = ingest(&s.cfg, &mut s.spool, ME).unwrap();
        assert_eq!((got.accepted, got.rejected), (0, 7), "{got:?}");
        assert!(s.spool.is_empty());
        assert_eq!(names(&s.cfg.dir), ["rejected"]);
        assert_eq!(
            names(&s.cfg.dir.join("rejected")),
            [
                "badid.report",
                "events.report",
                "garbage.report",
                "huge.report",
                "other.report",
                "system.report"
            ],
            "files are kept for a human, directories are not"
        );
    }

    #[test]
    fn rejected_keeps_at_most_its_cap() {
        let mut s = setup();
        s.cfg.max_rejected = 2;
        for n in 0..5 {
            fs::write(s.cfg.dir.join(format!("junk-{n}")), b"\xff\xff").unwrap();
        }
        let got = ingest(&s.cfg, &mut s.spool, ME).unwrap();
        assert_eq!(got.rejected, 5);
        assert_eq!(names(&s.cfg.dir.join("rejected")).len(), 2);
        assert_eq!(names(&s.cfg.dir), ["rejected"]);
    }

    #[test]
    fn one_cycle_takes_at_most_the_cap_and_leaves_writes_in_progress() {
        let mut s = setup();
        for n in 0..70 {
            hand_off(&s.cfg.dir, &user_report(ME, n)).unwrap();
        }
        fs::write(s.cfg.dir.join("in-progress.report.tmp"), b"half").unwrap();
        let got = ingest(&s.cfg, &mut s.spool, ME).unwrap();
        assert_eq!((got.accepted, got.left), (64, 6), "{got:?}");
        assert_eq!(s.spool.len(), 64);
        let got = ingest(&s.cfg, &mut s.spool, ME).unwrap();
        assert_eq!((got.accepted, got.left), (6, 0), "{got:?}");
        assert_eq!(s.spool.len(), 70);
        assert_eq!(names(&s.cfg.dir), ["in-progress.report.tmp"]);
    }

    #[test]
    fn a_missing_inbox_is_empty_and_an_oversized_handoff_is_refused() {
        let mut s = setup();
        let cfg = InboxConfig::new(s.cfg.dir.join("nope"));
        assert_eq!(ingest(&cfg, &mut s.spool, ME).unwrap(), Ingested::default());
        let mut big = user_report(ME, 9);
        big.hostname = "x".repeat(300 * 1024);
        let e = hand_off(&s.cfg.dir, &big).unwrap_err().to_string();
        assert!(e.contains("262144-byte limit"), "{e}");
        let e = hand_off(&cfg.dir, &user_report(ME, 10))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "names the directory: {e}");
    }
}
