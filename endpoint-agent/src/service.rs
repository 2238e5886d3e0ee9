//! `send` and `run`: settings resolved into a source, a spool and a delivery target.
//!
//! `send` is one collection and delivery (scheduled tasks, the per-user logon task, tests and
//! newcomers feeding a collector). Its report is spooled before delivery, so a collector that
//! cannot be reached leaves it queued (exit code 3) for the next `send` or `run`, which
//! deliver the spool first, oldest first, each report once.
//!
//! With `--user-inbox DIR`, a `--user-context` send does not deliver at all: it hands its report
//! to the SYSTEM agent through that directory ([`crate::inbox`]), and a SYSTEM `send` or `run`
//! ingests the directory before each delivery.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use dsreg_proto::ExecutionContext;
use time::OffsetDateTime;

use crate::credentials::CredentialFiles;
use crate::deliver::{DeliveryConfig, DeliveryError};
use crate::identity;
use crate::inbox::{self, InboxConfig, InboxError};
use crate::runner::{
    self, CommandSource, CycleConfig, CycleError, FileSource, RunConfig, Source, SourceError,
};
use crate::settings::{self, SettingsError};
use crate::spool::{Spool, SpoolConfig, SpoolError};

pub use crate::settings::Request;

/// Why `send` or `run` could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Settings are wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No way to collect on this platform.
    #[error(
        "no --status-file given, and `dsregcmd` exists only on Windows: pass the capture with --status-file FILE"
    )]
    NoSource,
    /// The machine id is unknown.
    #[error("cannot determine this machine's id: pass --machine-id ID")]
    NoMachineId,
    /// Collection failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The collector URL is unusable.
    #[error(transparent)]
    Url(DeliveryError),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The user inbox could not be written.
    #[error(transparent)]
    Inbox(#[from] InboxError),
    /// `run --user-context --user-inbox`: a handoff is one report, from `send`.
    #[error(
        "--user-inbox with --user-context hands one report to the device agent: use `send`, \
         not `run`"
    )]
    InboxWithRun,
    /// The pseudonymization key is unusable.
    #[error(transparent)]
    Pseudonym(#[from] crate::pseudonym::PseudonymError),
}

impl ServiceError {
    /// This error's row of the exit-code table ([`crate::exit`]): a local fault, or bad input.
    pub fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            ServiceError::Spool(_) | ServiceError::Runtime(_) | ServiceError::Inbox(_) => {
                Exit::Fault
            }
            _ => Exit::BadInput,
        }
    }

    /// The exit code: 2 for bad input or settings, 1 for local faults.
    pub fn exit_code(&self) -> u8 {
        self.exit().code()
    }
}

impl From<CycleError> for ServiceError {
    fn from(e: CycleError) -> Self {
        match e {
            CycleError::Source(s) => ServiceError::Source(s),
            CycleError::Spool(s) => ServiceError::Spool(s),
        }
    }
}

/// Everything resolved: ready to run.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Delivery target.
    pub delivery: DeliveryConfig,
    /// Spool location and bounds.
    pub spool: SpoolConfig,
    /// Loop settings (the cycle part is used by `send` too).
    pub run: RunConfig,
    /// Where to read from.
    pub status_file: Option<PathBuf>,
    /// Events to read.
    pub events_file: Option<PathBuf>,
    /// Join configuration captures; empty on Windows reads the machine itself.
    pub join: crate::joinconfig::Files,
    /// Timeout of dsregcmd / wevtutil.
    pub status_timeout: Duration,
    /// `run`: the log file (standard error when `None`).
    pub log_file: Option<PathBuf>,
    /// User context: hand the report to the device agent through this directory instead of
    /// delivering it. (In SYSTEM context the inbox is in `run.cycle.user_inbox`.)
    pub hand_off_to: Option<PathBuf>,
}

impl Request {
    /// Merges flags over the environment over the settings file over the defaults; `env` is
    /// the environment.
    pub fn resolve(&self, env: &HashMap<String, String>) -> Result<Resolved, ServiceError> {
        let s = settings::layered(self, env)?;
        let collector = s
            .collector
            .unwrap_or_else(|| "http://127.0.0.1:50051".to_string());
        let mut delivery = DeliveryConfig::new(collector);
        delivery.insecure = s.insecure.unwrap_or(false);
        delivery.credentials = CredentialFiles {
            ca_file: s.ca_file,
            client_cert: s.client_cert,
            client_key: s.client_key,
            token_file: s.token_file,
        };
        crate::deliver::endpoint(&delivery).map_err(ServiceError::Url)?;
        // Fail now (exit 2) on an unreadable token file rather than queue every report.
        delivery
            .credentials
            .authorize()
            .map_err(|e| ServiceError::Url(e.into()))?;

        let dir = s
            .spool_dir
            .unwrap_or_else(|| settings::default_spool_dir(env, self.user_context));
        let mut spool = SpoolConfig::new(dir);
        if let Some(n) = s.spool_max_reports {
            spool.max_reports = n;
        }
        if let Some(n) = s.spool_max_bytes {
            spool.max_bytes = n;
        }
        if let Some(key) = &s.pseudonymize_key_file {
            let p = crate::pseudonym::Pseudonymizer::from_file(key)?;
            spool.pseudonymize = Some(std::sync::Arc::new(p));
        }

        let mut id = identity::detect(&identity::System);
        if let Some(m) = &self.machine_id {
            id.machine_id = m.clone();
        }
        if let Some(h) = &self.hostname {
            id.hostname = h.clone();
        }
        if id.machine_id.trim().is_empty() {
            return Err(ServiceError::NoMachineId);
        }
        let enroll_secret = s.enroll_secret_file.filter(|_| !self.user_context);
        if let Some(secret) = enroll_secret {
            // Fail now (exit 2) on an unreadable secret, as for the token file.
            CredentialFiles {
                token_file: Some(secret.clone()),
                ..CredentialFiles::default()
            }
            .authorize()
            .map_err(|e| ServiceError::Url(e.into()))?;
            delivery.enrollment = Some(crate::enroll::Enrollment::new(
                secret,
                &spool.dir,
                &id.machine_id,
                &id.hostname,
            ));
        }
        let interval = s.interval.unwrap_or(Duration::from_secs(3600));
        let heartbeat = s.heartbeat.unwrap_or(Duration::from_secs(6 * 3600));
        let user_inbox = s.user_inbox;
        let status_timeout = s.status_timeout.unwrap_or(Duration::from_secs(30));
        Ok(Resolved {
            delivery,
            spool,
            run: RunConfig {
                cycle: CycleConfig {
                    identity: id,
                    context: if self.user_context {
                        ExecutionContext::User
                    } else {
                        ExecutionContext::System
                    },
                    heartbeat,
                    always_queue: false,
                    user_inbox: user_inbox
                        .clone()
                        .filter(|_| !self.user_context)
                        .map(InboxConfig::new),
                },
                interval,
                jitter: 0.1,
                retry_base: Duration::from_secs(30),
                retry_cap: interval.max(Duration::from_secs(30)),
            },
            status_file: self.status_file.clone(),
            events_file: self.events_file.clone(),
            join: self.join.clone(),
            status_timeout,
            log_file: s.log_file,
            hand_off_to: user_inbox.filter(|_| self.user_context),
        })
    }
}

/// A log file over this size at start is renamed to `<name>.old` (one generation kept), so
/// a service that runs for years does not fill the disk.
pub const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;

/// Opens `path` for appending log lines, creating it; when it is over [`LOG_ROTATE_BYTES`]
/// it is first renamed to `<path>.old` (replacing the previous one).
pub fn open_log_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".old");
        let _ = std::fs::remove_file(&old);
        std::fs::rename(path, &old)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The result of one `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Everything spooled was delivered.
    Delivered {
        /// Stored now.
        accepted: usize,
        /// Already stored before.
        duplicates: usize,
        /// Refused for good (set aside in the spool's `rejected/`).
        rejected: usize,
    },
    /// User context with `--user-inbox`: the report waits for the device agent in this file.
    HandedOff {
        /// The file written.
        path: PathBuf,
    },
    /// The report is safe in the spool; the collector did not take it (yet).
    Queued {
        /// Reports waiting.
        depth: usize,
        /// Where.
        spool_dir: PathBuf,
        /// Why delivery failed.
        reason: String,
    },
}

/// One collection and delivery (or, in user context with an inbox, one handoff).
pub async fn send(r: &Resolved) -> Result<SendOutcome, ServiceError> {
    if let Some(dir) = &r.hand_off_to {
        return hand_off(r, dir).await;
    }
    let mut spool = Spool::open(r.spool.clone())?;
    let mut cycle = r.run.cycle.clone();
    cycle.always_queue = true;
    let now = OffsetDateTime::now_utc();
    let mut src = source(r)?;
    let outcome = runner::cycle(&mut src, &mut spool, &cycle, &r.delivery, now).await?;
    Ok(match outcome.delivery {
        Ok(d) => SendOutcome::Delivered {
            accepted: d.accepted,
            duplicates: d.duplicates,
            rejected: d.rejected,
        },
        Err(e) => SendOutcome::Queued {
            depth: outcome.spool_depth,
            spool_dir: r.spool.dir.clone(),
            reason: e.to_string(),
        },
    })
}

/// Collects in the user's context and writes the report into the inbox `dir`, for the SYSTEM
/// agent to deliver. No spool, no collector, no credentials; no events either (the SYSTEM
/// agent reads the event log itself, and the inbox refuses reports that carry them).
async fn hand_off(r: &Resolved, dir: &std::path::Path) -> Result<SendOutcome, ServiceError> {
    let mut src = source(r)?;
    let status = src.status().await?;
    let join = src.join_config().await?;
    let mut report = crate::report::build(
        crate::report::Capture {
            status: &status,
            events: &[],
            join_config: join.as_ref(),
        },
        &r.run.cycle.identity,
        r.run.cycle.context,
        OffsetDateTime::now_utc(),
        dsreg_proto::v1::AgentHealth::default(),
    );
    // A user run with the key pseudonymizes before the handoff, so no name lands in the
    // inbox either (the SYSTEM agent's pass at its spool leaves tokens as they are).
    if let Some(p) = &r.spool.pseudonymize {
        p.apply(&mut report);
    }
    let path = inbox::hand_off(dir, &report)?;
    Ok(SendOutcome::HandedOff { path })
}

/// The service loop until `shutdown`.
pub async fn run(r: &Resolved, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
    if r.hand_off_to.is_some() {
        return Err(ServiceError::InboxWithRun);
    }
    let mut spool = Spool::open(r.spool.clone())?;
    tracing::info!(
        collector = %r.delivery.collector,
        spool = %r.spool.dir.display(),
        spooled = spool.len(),
        interval = ?r.run.interval,
        "dsreg-agent running"
    );
    let mut src = source(r)?;
    runner::run(&mut src, &mut spool, &r.run, &r.delivery, shutdown).await;
    Ok(())
}

/// Where `send` and `run` collect from: the capture files when given, else (on Windows)
/// `dsregcmd` and `wevtutil` themselves.
enum ConfiguredSource {
    Files(FileSource),
    Commands(CommandSource),
}

fn source(r: &Resolved) -> Result<ConfiguredSource, ServiceError> {
    match &r.status_file {
        Some(f) => Ok(ConfiguredSource::Files(FileSource {
            status_file: f.clone(),
            events_file: r.events_file.clone(),
            join: r.join.clone(),
        })),
        None if cfg!(windows) => Ok(ConfiguredSource::Commands(CommandSource::windows(
            r.status_timeout,
        ))),
        None => Err(ServiceError::NoSource),
    }
}

impl Source for ConfiguredSource {
    async fn status(&mut self) -> Result<Vec<u8>, SourceError> {
        match self {
            ConfiguredSource::Files(s) => s.status().await,
            ConfiguredSource::Commands(s) => s.status().await,
        }
    }

    async fn events(&mut self, after: Option<u64>) -> Result<Option<Vec<u8>>, SourceError> {
        match self {
            ConfiguredSource::Files(s) => s.events(after).await,
            ConfiguredSource::Commands(s) => s.events(after).await,
        }
    }

    async fn join_config(&mut self) -> Result<Option<crate::joinconfig::Read>, SourceError> {
        match self {
            ConfiguredSource::Files(s) => s.join_config().await,
            ConfiguredSource::Commands(s) => s.join_config().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_appends_and_rotates_once_over_the_limit() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        writeln!(open_log_file(&log).unwrap(), "one").unwrap();
        writeln!(open_log_file(&log).unwrap(), "two").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
        let big = vec![b'x'; usize::try_from(LOG_ROTATE_BYTES).unwrap() + 1];
        std::fs::write(&log, &big).unwrap();
        writeln!(open_log_file(&log).unwrap(), "three").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "three\n");
        let old = dir.path().join("agent.log.old");
        assert_eq!(std::fs::metadata(old).unwrap().len(), LOG_ROTATE_BYTES + 1);
    }

    #[test]
    fn log_file_comes_from_the_flag_or_the_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("agent.toml");
        std::fs::write(&cfg, "log_file = \"/var/log/from-file.log\"\n").unwrap();
        let mut req = Request {
            config: Some(cfg),
            machine_id: Some("m".into()),
            ..Request::default()
        };
        let env = HashMap::new();
        let r = req.resolve(&env).unwrap();
        assert_eq!(r.log_file, Some(PathBuf::from("/var/log/from-file.log")));
        req.log_file = Some(PathBuf::from("/tmp/flag.log"));
        let r = req.resolve(&env).unwrap();
        assert_eq!(r.log_file, Some(PathBuf::from("/tmp/flag.log")));
    }
}
