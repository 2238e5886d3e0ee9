//! The service loop behind `dsreg-agent run`, and the one-shot cycle behind `send`.
//!
//! One cycle: collect (`dsregcmd /status` + registration events since the bookmark) → build the
//! report → spool it if the state changed or a heartbeat is due → take the user reports handed
//! in through the inbox ([`crate::inbox`]) → drain the spool to the collector. The loop runs a cycle at start, then every interval with ±jitter; between
//! cycles, a failed delivery is retried on an exponential backoff with full jitter (honouring
//! the collector's retry hint), never more often than the backoff allows.
//!
//! The Windows calls sit behind [`Source`]: [`CommandSource`] runs `dsregcmd` and `wevtutil`
//! with a hard timeout and reads raw stdout bytes (the parser handles UTF-16 and code pages),
//! and on Windows reads the join configuration ([`crate::joinconfig::native`]);
//! [`FileSource`] reads captures from files (also `--registry-file` / `--task-file`), so the
//! same loop runs in tests on Linux.
//!
//! State that must survive restarts (the event bookmark, the last state fingerprint, when the
//! last report was queued) lives in `agent-state.json` beside the spool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dsreg_proto::v1::AgentHealth;
use dsreg_proto::{EventRecord, ExecutionContext, Report, Snapshot};
use prost::Message;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::deliver::{self, DeliveryConfig, DeliveryError, DeliveryOutcome};
use crate::identity::Identity;
use crate::inbox::{self, InboxConfig, Ingested};
use crate::report::{self, Capture};
use crate::spool::{Spool, SpoolError};

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A capture file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command could not be started or failed.
    #[error("command `{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// A command ran past its timeout and was killed.
    #[error("command `{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The event export could not be parsed.
    #[error("event export: {0}")]
    Events(String),
    /// A join configuration file could not be read.
    #[error(transparent)]
    JoinConfig(#[from] crate::joinconfig::JoinConfigError),
}

/// Where the agent gets `dsregcmd /status` output and registration events.
pub trait Source {
    /// Raw `dsregcmd /status` output.
    fn status(&mut self) -> impl Future<Output = Result<Vec<u8>, SourceError>> + Send;
    /// Raw event export (wevtutil XML or Get-WinEvent JSON) of records after `after_record`,
    /// or `None` when this source has no events.
    fn events(
        &mut self,
        after_record: Option<u64>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, SourceError>> + Send;
    /// The join configuration (task, registry, computer SID), or `None` when this source has
    /// none. Content problems are warnings inside the result, never an error.
    fn join_config(
        &mut self,
    ) -> impl Future<Output = Result<Option<crate::joinconfig::Read>, SourceError>> + Send {
        async { Ok(None) }
    }
}

/// Reads captures from files (tests, Linux, and `send --status-file`).
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The `dsregcmd /status` capture; `-` reads standard input.
    pub status_file: PathBuf,
    /// An event export, if any.
    pub events_file: Option<PathBuf>,
    /// Join configuration captures, if any.
    pub join: crate::joinconfig::Files,
}

fn read_path(path: &Path) -> Result<Vec<u8>, SourceError> {
    let read = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    read.map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Source for FileSource {
    async fn status(&mut self) -> Result<Vec<u8>, SourceError> {
        read_path(&self.status_file)
    }

    async fn events(&mut self, _after: Option<u64>) -> Result<Option<Vec<u8>>, SourceError> {
        self.events_file.as_deref().map(read_path).transpose()
    }

    async fn join_config(&mut self) -> Result<Option<crate::joinconfig::Read>, SourceError> {
        Ok(self.join.read()?)
    }
}

/// Runs commands (on Windows: `dsregcmd /status` and `wevtutil qe …`).
#[derive(Debug, Clone)]
pub struct CommandSource {
    /// Program and arguments for the status capture.
    pub status_cmd: Vec<String>,
    /// Program and arguments for the event export; `{after}` in an argument is replaced by the
    /// bookmark (the last record id seen, 0 at first run).
    pub events_cmd: Option<Vec<String>>,
    /// Hard timeout per command.
    pub timeout: Duration,
}

impl CommandSource {
    /// The Windows defaults: `dsregcmd /status` and the Admin log through `wevtutil`.
    pub fn windows(timeout: Duration) -> Self {
        CommandSource {
            status_cmd: vec!["dsregcmd".into(), "/status".into()],
            events_cmd: Some(vec![
                "wevtutil".into(),
                "qe".into(),
                "Microsoft-Windows-User Device Registration/Admin".into(),
                "/f:xml".into(),
                "/q:*[System[EventRecordID>{after}]]".into(),
            ]),
            timeout,
        }
    }
}

pub(crate) async fn run_command(
    argv: &[String],
    timeout: Duration,
) -> Result<Vec<u8>, SourceError> {
    let command = argv.join(" ");
    let (program, args) = argv.split_first().ok_or_else(|| SourceError::Command {
        command: command.clone(),
        reason: "empty command".into(),
    })?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, child).await {
        Err(_) => Err(SourceError::Timeout { command, timeout }),
        Ok(Err(e)) => Err(SourceError::Command {
            command,
            reason: e.to_string(),
        }),
        // dsregcmd exits non-zero on some failing devices while still printing the status:
        // the output is the evidence, so keep it whenever there is any.
        Ok(Ok(out)) if !out.stdout.is_empty() => Ok(out.stdout),
        Ok(Ok(out)) => Err(SourceError::Command {
            command,
            reason: format!(
                "{} with no output: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

impl Source for CommandSource {
    async fn status(&mut self) -> Result<Vec<u8>, SourceError> {
        run_command(&self.status_cmd, self.timeout).await
    }

    async fn events(&mut self, after: Option<u64>) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(cmd) = &self.events_cmd else {
            return Ok(None);
        };
        let after = after.unwrap_or(0).to_string();
        let argv: Vec<String> = cmd.iter().map(|a| a.replace("{after}", &after)).collect();
        run_command(&argv, self.timeout).await.map(Some)
    }

    async fn join_config(&mut self) -> Result<Option<crate::joinconfig::Read>, SourceError> {
        #[cfg(windows)]
        {
            Ok(Some(crate::joinconfig::native::read(self.timeout).await))
        }
        #[cfg(not(windows))]
        {
            Ok(None)
        }
    }
}

/// What the loop remembers across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// Highest event record id already reported.
    pub event_bookmark: Option<u64>,
    /// Fingerprint of the last queued snapshot (volatile fields excluded).
    pub last_fingerprint: Option<u64>,
    /// Unix seconds when the last report was queued.
    pub last_queued_unix: Option<i64>,
}

impl AgentState {
    fn path(spool_dir: &Path) -> PathBuf {
        spool_dir.join("agent-state.json")
    }

    /// Loads the state, or the default when there is none (or it is unreadable: the worst
    /// case is one extra report).
    pub fn load(spool_dir: &Path) -> AgentState {
        std::fs::read(Self::path(spool_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the state atomically.
    pub fn save(&self, spool_dir: &Path) -> std::io::Result<()> {
        let tmp = spool_dir.join("agent-state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())?;
        std::fs::rename(&tmp, Self::path(spool_dir))
    }
}

/// A stable fingerprint of what a snapshot says, ignoring fields that change on every run
/// (client time, PRT renewal times), so that only real changes go on the wire.
pub fn fingerprint(snapshot: &Snapshot) -> u64 {
    let mut s = snapshot.clone();
    if let Some(d) = s.diagnostics.as_mut() {
        d.client_time = None;
    }
    if let Some(j) = s.join_config.as_mut() {
        // The join task runs at every logon and on its triggers: its run time alone is no
        // change (its result is).
        j.task_last_run_time = None;
    }
    if let Some(sso) = s.sso_state.as_mut() {
        sso.azure_ad_prt_update_time = None;
        sso.azure_ad_prt_expiry_time = None;
        sso.enterprise_prt_update_time = None;
        sso.enterprise_prt_expiry_time = None;
    }
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    s.encode_to_vec()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        })
}

/// Settings of one collection cycle.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// Who this device is.
    pub identity: Identity,
    /// SYSTEM or user.
    pub context: ExecutionContext,
    /// Queue an unchanged snapshot after this long anyway (heartbeat).
    pub heartbeat: Duration,
    /// Queue every collection, changed or not (`send` does).
    pub always_queue: bool,
    /// SYSTEM agent: the user-context handoff directory to ingest before each delivery.
    pub user_inbox: Option<InboxConfig>,
}

/// What one cycle did.
#[derive(Debug)]
pub struct CycleOutcome {
    /// The report queued in this cycle, if any (its id and whether it was a heartbeat).
    pub queued: Option<(String, bool)>,
    /// The delivery result: delivered counts, or why the spool stays.
    pub delivery: Result<DeliveryOutcome, DeliveryError>,
    /// Reports still waiting in the spool.
    pub spool_depth: usize,
    /// Reports dropped by overflow in this cycle.
    pub dropped: usize,
    /// What the user inbox gave this cycle.
    pub ingested: Ingested,
}

/// Why a cycle could not even queue or deliver.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Collection failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Parses an event export into records.
fn parse_events(bytes: &[u8]) -> Result<Vec<EventRecord>, SourceError> {
    crate::events::parse_events(bytes)
        .map(|p| p.records)
        .map_err(|e| SourceError::Events(e.to_string()))
}

/// Runs one cycle: collect, maybe queue, then drain the spool.
pub async fn cycle(
    source: &mut impl Source,
    spool: &mut Spool,
    spool_dir: &Path,
    cfg: &CycleConfig,
    delivery: &DeliveryConfig,
    now: OffsetDateTime,
) -> Result<CycleOutcome, CycleError> {
    let mut state = AgentState::load(spool_dir);
    let status = source.status().await?;
    let join = source.join_config().await?;
    let events = match source.events(state.event_bookmark).await? {
        Some(bytes) => parse_events(&bytes)?,
        None => Vec::new(),
    };
    let new_events: Vec<EventRecord> = events
        .into_iter()
        .filter(|e| state.event_bookmark.is_none_or(|b| e.record_id > b))
        .collect();
    let health = AgentHealth {
        spool_depth: u32::try_from(spool.len()).unwrap_or(u32::MAX),
        spool_dropped: spool.state().dropped,
        last_delivery: spool
            .state()
            .last_delivery_unix
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .map(report::timestamp),
        parse_warnings: 0,
    };
    let mut rep: Report = report::build(
        Capture {
            status: &status,
            events: &new_events,
            join_config: join.as_ref(),
        },
        &cfg.identity,
        cfg.context,
        now,
        health,
    );
    let fp = rep.snapshot.as_ref().map(fingerprint);
    let changed = fp != state.last_fingerprint || !new_events.is_empty();
    let heartbeat_due = state
        .last_queued_unix
        .is_none_or(|t| now.unix_timestamp() - t >= cfg.heartbeat.as_secs() as i64);
    let mut queued = None;
    let mut dropped = 0;
    if cfg.always_queue || changed || heartbeat_due {
        rep.heartbeat = !changed;
        dropped = spool.push(&rep)?;
        queued = Some((rep.report_id.clone(), rep.heartbeat));
        state.last_fingerprint = fp;
        state.last_queued_unix = Some(now.unix_timestamp());
        if let Some(max) = new_events.iter().map(|e| e.record_id).max() {
            state.event_bookmark = Some(max);
        }
        if let Err(e) = state.save(spool_dir) {
            tracing::warn!(error = %e, "could not save agent state; the next cycle may resend");
        }
    }
    let mut ingested = Ingested::default();
    if let Some(inbox_cfg) = &cfg.user_inbox {
        // A broken inbox must not stop the device's own reports: log and deliver anyway.
        match inbox::ingest(inbox_cfg, spool, &cfg.identity.machine_id) {
            Ok(i) => {
                if i.accepted + i.rejected > 0 {
                    tracing::info!(
                        accepted = i.accepted,
                        rejected = i.rejected,
                        left = i.left,
                        "user inbox ingested"
                    );
                }
                ingested = i;
            }
            Err(e) => tracing::warn!(error = %e, "user inbox not ingested this cycle"),
        }
    }
    let delivery = deliver_spool(spool, delivery).await;
    Ok(CycleOutcome {
        queued,
        delivery,
        spool_depth: spool.len(),
        dropped,
        ingested,
    })
}

/// Connects and drains the spool (nothing to do when it is empty).
pub async fn deliver_spool(
    spool: &mut Spool,
    cfg: &DeliveryConfig,
) -> Result<DeliveryOutcome, DeliveryError> {
    if spool.is_empty() {
        return Ok(DeliveryOutcome::default());
    }
    let Some(enrollment) = &cfg.enrollment else {
        let mut client = deliver::connect(cfg).await?;
        return deliver::drain(spool, &mut client, cfg, || {
            OffsetDateTime::now_utc().unix_timestamp()
        })
        .await;
    };
    // With a device token: enroll on first contact, and once more when the collector no
    // longer knows the token (revoked, or its database restored from an older backup).
    let mut retried = false;
    loop {
        let had_token = enrollment.has_token();
        let device = enrollment.authorized(cfg).await?;
        let mut client = deliver::connect(&device).await?;
        let result = deliver::drain(spool, &mut client, &device, || {
            OffsetDateTime::now_utc().unix_timestamp()
        })
        .await;
        match result {
            Err(DeliveryError::TokenRefused {
                code: tonic::Code::Unauthenticated,
                ..
            }) if had_token && !retried => {
                tracing::warn!("the collector refused the device token; enrolling again");
                enrollment.forget();
                retried = true;
            }
            other => return other,
        }
    }
}

/// Settings of the service loop.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// What each cycle does.
    pub cycle: CycleConfig,
    /// Time between collections (default 60 min).
    pub interval: Duration,
    /// Fraction of the interval used as ± jitter (default 0.1), so a fleet that booted
    /// together does not report together.
    pub jitter: f64,
    /// First retry delay after a failed delivery (doubles up to `retry_cap`).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
}

/// A small, seedable uniform generator for jitter (no dependency, and testable).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeds from the clock and the process id, so devices differ.
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    /// A uniform number in `[0, 1)` (xorshift64*).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `interval` moved by up to ± `fraction` of itself.
pub fn jittered(interval: Duration, fraction: f64, unit: f64) -> Duration {
    let f = fraction.clamp(0.0, 1.0);
    interval.mul_f64(1.0 - f + 2.0 * f * unit.clamp(0.0, 1.0))
}

/// The loop's deadlines, decided without a clock so they can be tested in virtual time: `T` is
/// `tokio::time::Instant` in [`run`] and anything ordered that adds a [`Duration`] in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule<T> {
    /// When the next collection is due.
    pub next_collect: T,
    /// When to retry a failed delivery, if one failed.
    pub next_retry: Option<T>,
    /// Deliveries failed in a row (the backoff exponent).
    pub attempt: u32,
}

impl<T: Copy + Ord + std::ops::Add<Duration, Output = T>> Schedule<T> {
    /// At start: collect now, nothing to retry.
    pub fn start(now: T) -> Self {
        Schedule {
            next_collect: now,
            next_retry: None,
            attempt: 0,
        }
    }

    /// When the loop must wake: the earlier of the next collection and the next retry.
    pub fn wake(&self) -> T {
        self.next_retry
            .map_or(self.next_collect, |r| r.min(self.next_collect))
    }

    /// Whether a wake-up at `now` collects (else it only retries delivery). A collection
    /// also moves the next one a jittered interval ahead (`unit` in `[0, 1)`).
    pub fn collect_due(&mut self, now: T, cfg: &RunConfig, unit: f64) -> bool {
        if now < self.next_collect {
            return false;
        }
        self.next_collect = now + jittered(cfg.interval, cfg.jitter, unit);
        true
    }

    /// After a delivery at `now`: success clears the retry; failure (`Err(retry hint)`)
    /// schedules the next retry on the backoff and returns its delay.
    pub fn delivered(
        &mut self,
        result: Result<(), Option<Duration>>,
        now: T,
        cfg: &RunConfig,
        unit: f64,
    ) -> Option<Duration> {
        match result {
            Ok(()) => {
                self.attempt = 0;
                self.next_retry = None;
                None
            }
            Err(hint) => {
                let delay =
                    deliver::backoff(self.attempt, cfg.retry_base, cfg.retry_cap, hint, unit);
                self.attempt = self.attempt.saturating_add(1);
                self.next_retry = Some(now + delay);
                Some(delay)
            }
        }
    }
}

/// The service loop: a cycle at start, then every jittered interval; failed deliveries are
/// retried on the backoff schedule in between. Returns as soon as `shutdown` completes, also
/// in the middle of a cycle (a running `dsregcmd` is killed, a delivery abandoned): the spool
/// is durable after every push and a push is never interrupted (no await inside it), and a
/// report whose delivery was cut off stays spooled and is answered `DUPLICATE` if the
/// collector had already stored it. So there is nothing to flush, and a service stop is quick.
pub async fn run(
    source: &mut impl Source,
    spool: &mut Spool,
    spool_dir: &Path,
    cfg: &RunConfig,
    delivery: &DeliveryConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut rng = Jitter::from_entropy();
    let mut schedule = Schedule::start(tokio::time::Instant::now());
    tokio::pin!(shutdown);
    loop {
        let wake = schedule.wake();
        tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!(spool_depth = spool.len(), "shutting down; spooled reports stay on disk");
                return;
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        let now = tokio::time::Instant::now();
        let collect = schedule.collect_due(now, cfg, rng.unit());
        let work = async {
            if !collect {
                return deliver_spool(spool, delivery).await;
            }
            match cycle(
                source,
                spool,
                spool_dir,
                &cfg.cycle,
                delivery,
                OffsetDateTime::now_utc(),
            )
            .await
            {
                Ok(out) => {
                    if let Some((id, heartbeat)) = &out.queued {
                        tracing::debug!(report_id = %id, heartbeat, "queued");
                    }
                    if out.dropped > 0 {
                        tracing::warn!(dropped = out.dropped, "spool full: older reports dropped");
                    }
                    out.delivery
                }
                Err(e) => {
                    tracing::warn!(error = %e, "collection failed; delivering what is spooled");
                    deliver_spool(spool, delivery).await
                }
            }
        };
        let delivery_result = tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("shutting down during a cycle; spooled reports stay on disk");
                return;
            }
            result = work => result,
        };
        match delivery_result {
            Ok(d) => {
                if d.accepted + d.duplicates + d.rejected > 0 {
                    tracing::info!(
                        accepted = d.accepted,
                        duplicates = d.duplicates,
                        rejected = d.rejected,
                        "delivered"
                    );
                }
                schedule.delivered(Ok(()), tokio::time::Instant::now(), cfg, 0.0);
            }
            Err(e) => {
                let hint = match &e {
                    DeliveryError::Unreachable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let delay =
                    schedule.delivered(Err(hint), tokio::time::Instant::now(), cfg, rng.unit());
                tracing::warn!(error = %e, retry_in = ?delay, spool_depth = spool.len(), "delivery failed; reports stay spooled");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_config(interval_s: u64) -> RunConfig {
        RunConfig {
            cycle: CycleConfig {
                identity: Identity::default(),
                context: ExecutionContext::System,
                heartbeat: Duration::from_secs(6 * 3600),
                always_queue: false,
                user_inbox: None,
            },
            interval: Duration::from_secs(interval_s),
            jitter: 0.0,
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(interval_s),
        }
    }

    /// Virtual time: a wake-up is just "now = schedule.wake()"; no sleeping.
    #[test]
    fn failed_deliveries_retry_on_the_backoff_between_collections() {
        let cfg = run_config(3600);
        let secs = Duration::from_secs;
        let t0 = Duration::ZERO;
        let mut s = Schedule::start(t0);
        assert_eq!(s.wake(), t0);
        assert!(s.collect_due(t0, &cfg, 0.5));
        assert_eq!(s.next_collect, secs(3600));
        // Unit 1.0 = the top of the full-jitter band: 30 s, 60 s, 120 s, … up to the cap.
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let d = s.delivered(Err(None), now, &cfg, 1.0).unwrap();
            delays.push(d.as_secs());
            if now + d >= s.next_collect {
                assert_eq!(s.wake(), s.next_collect, "the collection comes first");
                break;
            }
            assert_eq!(s.wake(), now + d, "the retry wakes before the collection");
            now = s.wake();
            assert!(
                !s.collect_due(now, &cfg, 0.5),
                "a retry is not a collection"
            );
        }
        assert_eq!(&delays[..5], &[30, 60, 120, 240, 480]);
        assert!(delays.iter().all(|d| *d <= 3600), "{delays:?}");
        // The collector's retry hint wins over a shorter backoff.
        let mut h = Schedule::start(t0);
        let d = h.delivered(Err(Some(secs(90))), t0, &cfg, 0.0).unwrap();
        assert_eq!((d, h.next_retry), (secs(90), Some(secs(90))));
        // Success clears the retry and the exponent; the next wake is the collection.
        s.delivered(Ok(()), now, &cfg, 0.0);
        assert_eq!((s.next_retry, s.attempt), (None, 0));
        assert_eq!(s.wake(), s.next_collect);
    }

    #[test]
    fn a_retry_never_delays_the_next_collection() {
        let cfg = run_config(60);
        let mut s = Schedule::start(Duration::ZERO);
        assert!(s.collect_due(Duration::ZERO, &cfg, 0.0));
        // A retry due after the next collection: the collection wakes first.
        s.attempt = 10;
        s.delivered(
            Err(Some(Duration::from_secs(600))),
            Duration::ZERO,
            &cfg,
            1.0,
        );
        assert_eq!(s.wake(), Duration::from_secs(60));
        assert!(s.collect_due(s.wake(), &cfg, 0.0));
    }

    #[test]
    fn jitter_stays_within_the_band() {
        let mut j = Jitter(42);
        let hour = Duration::from_secs(3600);
        for _ in 0..1000 {
            let d = jittered(hour, 0.1, j.unit());
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
        assert_eq!(jittered(hour, 0.0, 0.7), hour);
    }

    #[test]
    fn fingerprint_ignores_volatile_times_only() {
        let a = crate::dsregcmd::parse(include_bytes!(
            "../testdata/dsregcmd/entra-joined-healthy-prt-cloud-tgt.txt"
        ));
        let mut b = a.clone();
        if let Some(s) = b.sso_state.as_mut() {
            s.azure_ad_prt_update_time = Some("2030-01-01T00:00:00Z".into());
        }
        assert_eq!(fingerprint(&a), fingerprint(&b));
        if let Some(s) = b.sso_state.as_mut() {
            s.azure_ad_prt = Some(false);
        }
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
