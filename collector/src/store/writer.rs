//! The SQLite writer thread: the only write connection, group commit, ack after COMMIT.
//!
//! Loop: block for one message, then take whatever else is already queued (up to
//! [`GROUP_MAX_BATCHES`] batches / [`GROUP_MAX_REPORTS`] reports) into ONE transaction, in
//! arrival order; a small group, while calls come close together, first waits up to
//! [`GROUP_WAIT`] for more ([`Pacing`]), so that a steady stream of one-report calls does not
//! cost a COMMIT and a WAL sync each. A group also stops taking batches once it has worked
//! [`GROUP_MAX_WORK`]; the batches it did not reach stay first in line for the next group, so
//! no batch waits behind more than one long group (full reports take ~185 µs each at 1M
//! devices: 3 200 of them in one group made a call that just missed it wait over a second).
//! How much may queue behind the writer at all is bounded in time too (`MAX_QUEUE_WAIT`, in
//! `Store::enqueue`, from the costs the writer publishes in [`WriterCost`]). A batch that
//! fails is rolled back alone and answered with its error while the others commit: the group
//! is then applied again with a SAVEPOINT per batch (the first pass goes without, see
//! [`Writer::commit_group`]).
//! Replies and fleet updates happen only after COMMIT returned: an ack therefore always
//! describes durable data, and the in-memory aggregates never run ahead of the disk. On `Close`
//! (or when every sender is gone) the writer finishes what it holds, checkpoints the WAL
//! (TRUNCATE) and exits.
//!
//! Checkpoints run off the commit path: a [`Checkpointer`] thread with its own connection runs
//! `wal_checkpoint(PASSIVE)` (copying committed WAL frames into the database file and syncing
//! it) while the writer keeps appending. It starts by WAL size, not by time: the writer's WAL
//! hook wakes it every [`CHECKPOINT_PAGES`] new frames ([`wakes`]), so each checkpoint's
//! database fsync has a bounded size at any ingest rate, and an idle collector checkpoints at
//! most every [`CHECKPOINT_IDLE`]. SQLite's own auto-checkpoint would do that copy and the
//! database fsync inside the COMMIT of whichever group crosses the threshold, on the writer
//! thread, stalling every caller waiting for an ack; the same hook keeps it only as a backstop
//! at [`WAL_SAFETY_PAGES`], in case the background thread cannot keep up. Durability is
//! unchanged: a COMMIT is acked only after the WAL is synced (`synchronous=FULL`);
//! checkpointing only moves already-durable pages.
//!
//! The checkpointer runs [`CHECKPOINTER_NICE`] below the writer (Linux, where the nice value
//! is per thread): the writer is ingest's one serial stage, and when the cores are busy it
//! must not wait for a core behind work that can run a little later. The backstop above still
//! bounds the WAL if the checkpointer falls behind.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::apply::{self, Applied};
use super::{BatchOutcome, Msg, StoreError, now_ms};
use crate::fleet::Fleet;
use crate::metrics::Metrics;

/// Most batches committed in one transaction (many one-report calls share one commit).
pub const GROUP_MAX_BATCHES: usize = 1024;
/// Most reports committed in one transaction (a group stops growing past this).
pub const GROUP_MAX_REPORTS: usize = 20_000;
/// How long a group applies batches before it commits what it has (at least one batch): a
/// bound on how long a newly queued batch can wait behind the group in progress, whatever its
/// reports cost. Heartbeat groups stay under it at 1M devices (32 callers of 100 reports:
/// ~1 650 reports, ~65 ms); groups of full reports are cut (docs/performance.md, "The worst
/// call").
pub const GROUP_MAX_WORK: Duration = Duration::from_millis(100);
/// How long a small group waits for more reports before its COMMIT, when calls come closer
/// together than this (PostgreSQL's `commit_delay`, for the same reason). At 5 000 one-report
/// calls a second in a steady stream and 1M devices, nearly every call was its own group:
/// 3 800 COMMITs a second, each rewriting the pages every group shares (the `reports` table's
/// last leaves) and syncing the WAL, each sync a cache flush of the disk that a checkpoint's
/// writes then queued behind. The unary p99 was 15–21 ms, and 4–5 ms with this wait
/// (docs/performance.md, "The open loop's pacing, and a group that waits for more"). At most
/// this much is added to a call.
pub const GROUP_WAIT: Duration = Duration::from_millis(1);
/// A group that holds this many reports commits without waiting for more.
pub const GROUP_WAIT_REPORTS: usize = 16;
/// How often a waiting group looks at the queue.
const GROUP_WAIT_STEP: Duration = Duration::from_micros(200);
/// Groups that commit without waiting after a wait in which nothing came: in a closed loop
/// whose callers are all in the group, waiting only delays them.
const FRUITLESS_SKIP: u32 = 16;
/// New WAL frames after which the writer wakes the checkpointer. Small, so each checkpoint's
/// database fsync is small: a heartbeat dirties a random page of a large file, and a COMMIT's
/// WAL sync queues behind a long checkpoint fsync (the measured trade-off: docs/performance.md,
/// "The checkpoint interval at 1M devices" and "Checkpoints by WAL size").
pub const CHECKPOINT_PAGES: i32 = 64;
/// The checkpointer's longest pause (it then checkpoints whatever the WAL holds).
pub const CHECKPOINT_IDLE: Duration = Duration::from_millis(250);
/// WAL size (pages) at which the writer checkpoints itself (backstop; normally not reached).
pub const WAL_SAFETY_PAGES: i32 = 32_768;
/// How much higher the checkpointer's nice value is than the writer's. At 1M devices the
/// writer waited for a core 19–20 % of the time with both at the same value, 16–17 % with
/// this, and the batched ingest rose by about 10 % (docs/performance.md, "The checkpointer
/// yields"). A small step: under full contention the checkpointer still gets about a
/// quarter of a core's share, what it needs at 40 000 heartbeats/s.
pub const CHECKPOINTER_NICE: i32 = 5;

/// The longest COMMIT (µs) since [`take_longest_commit`] last read it, over every writer of
/// the process: what `dsreg-bench` reports per phase, so a stall cannot hide in a percentile
/// (the histogram has only bucket bounds). One relaxed `fetch_max` per group.
static LONGEST_COMMIT_US: AtomicU64 = AtomicU64::new(0);

/// Reads and resets the longest COMMIT since the last call.
#[cfg(feature = "bench")]
pub fn take_longest_commit() -> Duration {
    Duration::from_micros(LONGEST_COMMIT_US.swap(0, Ordering::Relaxed))
}

/// Whether a COMMIT that left `frames` frames in the WAL wakes the checkpointer, which was
/// last woken at `woken` frames: after [`CHECKPOINT_PAGES`] more, or when the WAL restarted
/// from its beginning (fewer frames than at the last wake).
fn wakes(woken: i32, frames: i32) -> bool {
    frames < woken || frames - woken >= CHECKPOINT_PAGES
}

/// Batches taken off the channel and not yet committed, in arrival order (what a group cut
/// short by [`GROUP_MAX_WORK`] left comes first in the next one), and Close once seen.
#[derive(Default)]
struct Intake {
    queued: VecDeque<Queued>,
    /// Reports in `queued`.
    reports: usize,
    closing: Option<oneshot::Sender<()>>,
}

impl Intake {
    fn push(
        &mut self,
        reports: Vec<apply::Incoming>,
        reply: Reply,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        self.reports += reports.len();
        self.queued.push_back(Queued {
            reports,
            reply,
            _permit: permit,
        });
    }

    /// Takes `next`, then whatever else is already queued, up to [`GROUP_MAX_BATCHES`] batches
    /// and [`GROUP_MAX_REPORTS`] reports, or until Close. A prune runs at once (between
    /// groups: no transaction is open here).
    fn take(&mut self, conn: &Connection, mut next: Option<Msg>, rx: &mut mpsc::Receiver<Msg>) {
        while let Some(msg) = next.take() {
            match msg {
                Msg::Batch {
                    reports,
                    reply,
                    permit,
                } => self.push(reports, reply, permit),
                Msg::Prune { cutoff_ms, reply } => {
                    let _ = reply.send(apply::prune(conn, cutoff_ms).map_err(Into::into));
                }
                Msg::Close { reply } => {
                    self.closing = Some(reply);
                    return;
                }
            }
            if self.queued.len() < GROUP_MAX_BATCHES && self.reports < GROUP_MAX_REPORTS {
                next = rx.try_recv().ok();
            }
        }
    }
}

/// Whether a group waits [`GROUP_WAIT`] for more before its COMMIT: only a small one, only
/// while calls come close together (its first came within [`GROUP_WAIT`] of the last
/// COMMIT's end), and not for [`FRUITLESS_SKIP`] groups after a wait that gained nothing.
#[derive(Debug, Default)]
struct Pacing {
    /// When the last COMMIT returned.
    last_commit: Option<Instant>,
    /// Groups still to commit without waiting.
    skip: u32,
}

impl Pacing {
    /// Asked once per group with its `reports` so far, the first taken at `first_at`.
    fn waits(&mut self, reports: usize, first_at: Instant) -> bool {
        let close = self
            .last_commit
            .is_some_and(|t| first_at.saturating_duration_since(t) < GROUP_WAIT);
        if reports >= GROUP_WAIT_REPORTS || !close {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    /// After a wait: whether it took in more.
    fn waited(&mut self, gained: bool) {
        if !gained {
            self.skip = FRUITLESS_SKIP;
        }
    }

    fn committed(&mut self, at: Instant) {
        self.last_commit = Some(at);
    }
}

/// What the writer's recent groups cost, for admission (`Store::enqueue`): moving averages of
/// the apply time per report and of the COMMIT per group, kept apart because a queue of
/// one-report calls is committed in one group, so the fsync is paid once, not per report.
#[derive(Debug, Default)]
pub(crate) struct WriterCost {
    per_report_ns: AtomicU64,
    per_commit_ns: AtomicU64,
}

impl WriterCost {
    /// Takes one group in: `reports` applied in `apply`, then committed in `commit`.
    fn record(&self, reports: usize, apply: Duration, commit: Duration) {
        let Some(per_report) = apply.as_nanos().checked_div(reports as u128) else {
            return;
        };
        let ns = |d: u128| u64::try_from(d).unwrap_or(u64::MAX);
        let (r, c) = (&self.per_report_ns, &self.per_commit_ns);
        r.store(
            moving(r.load(Ordering::Relaxed), ns(per_report)),
            Ordering::Relaxed,
        );
        c.store(
            moving(c.load(Ordering::Relaxed), ns(commit.as_nanos())),
            Ordering::Relaxed,
        );
    }

    /// How long a batch queued behind `queued` reports (queued, or in the group being written)
    /// would wait: their apply time, and a COMMIT for each group they fill. Zero for an empty
    /// queue.
    pub(crate) fn queue_wait(&self, queued: usize) -> Duration {
        if queued == 0 {
            return Duration::ZERO;
        }
        let queued = u64::try_from(queued).unwrap_or(u64::MAX);
        let apply = queued.saturating_mul(self.per_report_ns.load(Ordering::Relaxed));
        let group = u64::try_from(GROUP_MAX_WORK.as_nanos()).unwrap_or(u64::MAX);
        let groups = 1 + apply / group.max(1);
        let commits = groups.saturating_mul(self.per_commit_ns.load(Ordering::Relaxed));
        Duration::from_nanos(apply.saturating_add(commits))
    }

    /// Sets the averages as if measured (tests of admission).
    #[cfg(test)]
    pub(crate) fn assume(&self, per_report: Duration, per_commit: Duration) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.per_report_ns.store(ns(per_report), Ordering::Relaxed);
        self.per_commit_ns.store(ns(per_commit), Ordering::Relaxed);
    }
}

/// A moving average over about eight samples, so one slow group raises it at once but not all
/// the way; the first sample is taken as it is.
fn moving(old: u64, sample: u64) -> u64 {
    match old {
        0 => sample,
        _ => old - old / 8 + sample / 8,
    }
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection until dropped, woken by the
/// write connection's WAL hook (see the module docs).
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread and installs the WAL hook on `conn`, the write connection; `None`
    /// (the writer then keeps SQLite's auto-checkpoint) when the database has no file path or
    /// the connection cannot be opened.
    pub(crate) fn start(conn: &mut Connection) -> Option<Checkpointer> {
        let path = conn.path().filter(|p| !p.is_empty())?.to_string();
        let own = Connection::open(&path)
            .and_then(|c| {
                c.busy_timeout(Duration::from_millis(100))?;
                c.pragma_update(None, "synchronous", "FULL")?;
                Ok(c)
            })
            .map_err(|e| tracing::warn!(error = %e, "no background checkpointer"))
            .ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dsreg-sqlite-checkpoint".into())
            .spawn(move || {
                lower_own_priority(CHECKPOINTER_NICE);
                while !flag.load(Ordering::SeqCst) {
                    // Woken by the writer's WAL hook, or at the latest after the idle pause.
                    std::thread::park_timeout(CHECKPOINT_IDLE);
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    // With nothing new in the WAL this copies and syncs nothing.
                    if let Err(e) = own.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "background checkpoint");
                    }
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "no background checkpointer"))
            .ok()?;
        // Replaces SQLite's auto-checkpoint (itself a WAL hook), which stays as the backstop.
        let wake = thread.thread().clone();
        let mut woken = 0;
        let hook = move |wal: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
            if frames >= WAL_SAFETY_PAGES {
                // Like SQLite's own hook, never fail the COMMIT that called us (it is durable
                // already): an error here would reach the caller as the COMMIT's error. BUSY
                // just means the checkpointer is at it.
                if let Err(e) = wal.checkpoint() {
                    tracing::debug!(error = %e, "backstop checkpoint");
                }
            }
            if wakes(woken, frames) {
                woken = frames;
                wake.unpark();
            }
            Ok(())
        };
        if let Err(e) = conn.wal_hook(Some(hook)) {
            tracing::warn!(error = %e, "cannot install the WAL hook; SQLite checkpoints inline");
        }
        Some(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

/// Raises the calling thread's nice value by `by` (Linux: the nice value is per thread, and
/// raising it needs no privilege). Advice: a failure is logged and the thread runs on as it is.
fn lower_own_priority(by: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id, no memory passed.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, (now + by).min(19)) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(error = %e, "could not lower the checkpointer's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Writer state, moved into its thread.
pub struct Writer {
    conn: Connection,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    history_per_device: u32,
    alive: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    /// [`GROUP_MAX_WORK`]; tests shorten it.
    group_work: Duration,
    /// Where the writer publishes what its groups cost after each commit, for admission.
    cost: Arc<WriterCost>,
}

/// A batch taken from the queue and not yet committed.
struct Queued {
    reports: Vec<apply::Incoming>,
    reply: Reply,
    /// The batch's share of the queue budget, released once it is answered.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Marks the writer dead however the thread ends (return or panic).
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Where a batch's post-commit outcome goes.
type Reply = oneshot::Sender<Result<BatchOutcome, StoreError>>;

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
        history_per_device: u32,
        alive: Arc<AtomicBool>,
        commits: Arc<AtomicU64>,
        cost: Arc<WriterCost>,
    ) -> Writer {
        Writer {
            conn,
            fleet,
            metrics,
            history_per_device,
            alive,
            commits,
            group_work: GROUP_MAX_WORK,
            cost,
        }
    }

    /// Runs until `Close` or until every sender is dropped.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let _guard = AliveGuard(self.alive.clone());
        // apply/attempts/heartbeat prepare about 20 distinct statements; keep them all.
        self.conn.set_prepared_statement_cache_capacity(64);
        let checkpointer = Checkpointer::start(&mut self.conn);
        let mut intake = Intake::default();
        let mut pacing = Pacing::default();
        while intake.closing.is_none() {
            let next = match intake.queued.is_empty() {
                true => match rx.blocking_recv() {
                    Some(msg) => Some(msg),
                    None => break,
                },
                false => rx.try_recv().ok(),
            };
            let first_at = Instant::now();
            intake.take(&self.conn, next, &mut rx);
            if intake.closing.is_none()
                && !intake.queued.is_empty()
                && pacing.waits(intake.reports, first_at)
            {
                let before = intake.reports;
                let until = first_at + GROUP_WAIT;
                while intake.reports < GROUP_WAIT_REPORTS && intake.closing.is_none() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(GROUP_WAIT_STEP));
                    let next = rx.try_recv().ok();
                    intake.take(&self.conn, next, &mut rx);
                }
                pacing.waited(intake.reports > before);
            }
            if !intake.queued.is_empty() {
                intake.reports -= self.commit_group(&mut intake.queued);
                pacing.committed(Instant::now());
            }
        }
        // On Close, the stragglers behind what a cut-short group left: everything queued
        // before Close was sent by drained requests. All of it is committed, in order.
        let closing = intake.closing.take();
        if closing.is_some() {
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Batch {
                    reports,
                    reply,
                    permit,
                } = msg
                {
                    intake.push(reports, reply, permit);
                }
            }
        }
        while !intake.queued.is_empty() {
            self.commit_group(&mut intake.queued);
        }
        drop(checkpointer);
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            Ok(()) => tracing::info!("sqlite writer stopped, wal checkpointed"),
            Err(e) => tracing::warn!(error = %e, "wal checkpoint at shutdown failed"),
        }
        drop(self.conn);
        self.alive.store(false, Ordering::SeqCst);
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    /// Applies batches from the front of `queued` in ONE transaction until [`GROUP_MAX_WORK`]
    /// has passed (at least one batch), commits, then answers them; the rest stay queued.
    /// Returns how many reports it took off the queue.
    ///
    /// Optimistic: the batches are applied without a SAVEPOINT each, whose sub-journal (a copy
    /// of every page a batch dirties first) and statements cost about 7 % of the writer. Should
    /// a batch fail, the group is rolled back and the batches it took are applied again, each
    /// under its own SAVEPOINT, so that the failed one is rolled back alone while the others
    /// commit; the group then goes on taking batches within its budget, as before the
    /// failure. Nothing an apply does reaches past the transaction before COMMIT (the fleet and
    /// the replies come after it), so applying them twice is safe.
    fn commit_group(&mut self, queued: &mut VecDeque<Queued>) -> usize {
        let started = Instant::now();
        let received_at = now_ms();
        let history = self.history_per_device;
        // IMMEDIATE: take the write lock up front. A DEFERRED transaction that read first and
        // then finds the lock taken fails with SQLITE_BUSY without waiting.
        fn begin(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
            conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        }
        let refuse = |batches: &mut dyn Iterator<Item = Queued>, e: &rusqlite::Error| {
            tracing::error!(error = %e, "cannot begin transaction");
            let mut taken = 0;
            for q in batches {
                taken += q.reports.len();
                let _ = q.reply.send(Err(StoreError::Commit(e.to_string())));
            }
            taken
        };
        let mut tx = match begin(&mut self.conn) {
            Ok(tx) => tx,
            Err(e) => return refuse(&mut queued.drain(..), &e),
        };
        // The batches taken, answered only after COMMIT; they keep their queue budget, and
        // their machine ids should the COMMIT fail.
        let mut taken: Vec<Queued> = Vec::new();
        let mut results: Vec<Result<Vec<Applied>, StoreError>> = Vec::new();
        let mut failed = false;
        while let Some(q) = queued.pop_front() {
            let result = apply_batch(&tx, &q.reports, received_at, history);
            taken.push(q);
            match result {
                Ok(applied) => results.push(Ok(applied)),
                Err(e) => {
                    tracing::warn!(error = %e, "a batch failed: its group is applied again, one savepoint per batch");
                    failed = true;
                    break;
                }
            }
            if started.elapsed() >= self.group_work {
                break;
            }
        }
        if failed {
            // Dropping the transaction rolls it back (SQLite may have done so already).
            drop(tx);
            tx = match begin(&mut self.conn) {
                Ok(tx) => tx,
                Err(e) => return refuse(&mut taken.into_iter(), &e),
            };
            let isolated = |tx: &mut rusqlite::Transaction<'_>, q: &Queued| {
                let result = (|| {
                    let sp = tx.savepoint()?;
                    let applied = apply_batch(&sp, &q.reports, received_at, history)?;
                    sp.commit()?;
                    Ok(applied)
                })();
                if let Err(e) = &result {
                    tracing::error!(error = %e, "batch rolled back");
                }
                result
            };
            results = taken.iter().map(|q| isolated(&mut tx, q)).collect();
            // The group goes on taking batches within its budget, as one without a failure
            // would: a failed batch does not cost the ones queued behind it a COMMIT.
            while started.elapsed() < self.group_work
                && let Some(q) = queued.pop_front()
            {
                results.push(isolated(&mut tx, &q));
                taken.push(q);
            }
        }
        let reports: usize = taken.iter().map(|q| q.reports.len()).sum();
        let applied = started.elapsed();
        if let Err(e) = tx.commit() {
            tracing::error!(error = %e, "group commit failed");
            // SQLITE_FULL may roll back the whole transaction, so COMMIT then fails with "no
            // transaction is active": say "disk full" to every batch of the group, not that.
            let full = results
                .iter()
                .any(|r| r.as_ref().is_err_and(StoreError::is_disk_full));
            let msg = match full {
                true => format!("database or disk is full ({e})"),
                false => e.to_string(),
            };
            // The fleet was not touched, but the disk may hold part of the group (see
            // `read::refresh_fleet`): make the aggregates equal to the disk again.
            let mut machine_ids = Vec::with_capacity(reports);
            for q in taken {
                machine_ids.extend(q.reports.into_iter().map(|r| r.report.machine_id));
                let _ = q.reply.send(Err(StoreError::Commit(msg.clone())));
            }
            match super::read::refresh_fleet(&self.conn, &self.fleet, &machine_ids) {
                Ok(n) => {
                    tracing::warn!(devices = n, "fleet re-read from disk after a failed commit")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot re-read the fleet after a failed commit")
                }
            }
            return reports;
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        let took = started.elapsed();
        LONGEST_COMMIT_US.fetch_max(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.metrics.commit_duration(took);
        self.cost
            .record(reports, applied, took.saturating_sub(applied));
        for (q, result) in taken.into_iter().zip(results) {
            let Queued {
                reports,
                reply,
                _permit,
            } = q;
            let outcome = result.map(|applied| {
                let mut o = BatchOutcome::default();
                o.results.reserve(applied.len());
                let mut seen = Vec::new();
                // One outcome per report, in batch order.
                for (i, (a, inc)) in applied.into_iter().zip(&reports).enumerate() {
                    if let Some(update) = &a.fleet {
                        if update.moves_only_last_seen() {
                            // The caller applies it, off this thread (see `Spent`).
                            seen.push((i, update.last_seen));
                        } else {
                            let sighting =
                                (!update.name.is_empty()).then(|| crate::fleet::Sighting {
                                    name: &update.name,
                                    failing_since: update.failing_since,
                                });
                            self.fleet.set_seen(
                                &inc.report.machine_id,
                                update.facts.as_ref(),
                                update.last_seen,
                                sighting,
                            );
                        }
                    }
                    o.new_attempts.extend(a.new_attempts);
                    o.results.push(a.result);
                }
                o.spent = super::Spent {
                    reports,
                    seen,
                    fleet: Some(self.fleet.clone()),
                };
                o
            });
            // The batch's queue budget is released once it is answered.
            let _ = reply.send(outcome);
        }
        reports
    }
}

/// Applies one batch's reports, in order, in the transaction `conn` is in.
fn apply_batch(
    conn: &Connection,
    reports: &[apply::Incoming],
    received_at: i64,
    history: u32,
) -> Result<Vec<Applied>, StoreError> {
    let mut out = Vec::with_capacity(reports.len());
    for inc in reports {
        let r = &inc.report;
        let _span = tracing::debug_span!("report", machine_id = %r.machine_id).entered();
        let applied = apply::incoming(conn, inc, received_at, history)?;
        tracing::debug!(
            report_id = %r.report_id,
            status = ?applied.result.status(),
            transition = applied.fleet.as_ref().is_some_and(|f| f.facts.is_some()),
            "report applied"
        );
        out.push(applied);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::v1::ReportStatus;
    use tokio::sync::oneshot::error::TryRecvError;

    /// The nice value of a task (`/proc/.../stat` field 19, after the parenthesised name).
    #[cfg(target_os = "linux")]
    fn nice_of(stat: &std::path::Path) -> i32 {
        let s = std::fs::read_to_string(stat).unwrap();
        let after_name = &s[s.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_checkpointer_runs_below_the_thread_that_started_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("nice.db")).unwrap();
        let own = nice_of(std::path::Path::new("/proc/thread-self/stat"));
        let checkpointer = Checkpointer::start(&mut conn).unwrap();
        let want = (own + CHECKPOINTER_NICE).min(19);
        // Every checkpointer thread of this process (tests run in parallel) must get there.
        let checkpointers = || -> Vec<i32> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == "dsreg-sqlite-ch")
                })
                .map(|t| nice_of(&t.path().join("stat")))
                .collect()
        };
        let mut seen = checkpointers();
        for _ in 0..2_000 {
            if !seen.is_empty() && seen.iter().all(|&n| n == want) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            seen = checkpointers();
        }
        assert!(!seen.is_empty(), "no checkpointer thread");
        assert!(
            seen.iter().all(|&n| n == want),
            "nice {seen:?}, want {want}"
        );
        drop(checkpointer);
    }

    #[test]
    fn the_expected_wait_counts_apply_time_per_report_and_one_commit_per_group() {
        let ms = Duration::from_millis;
        let cost = WriterCost::default();
        assert_eq!(cost.queue_wait(100), Duration::ZERO, "nothing measured yet");
        cost.record(100, ms(10), ms(5));
        assert_eq!(cost.queue_wait(0), Duration::ZERO);
        // 100 µs a report, 5 ms a COMMIT: 300 one-report calls queued are 30 ms of work and
        // one COMMIT (they go into one group), not 300 fsyncs.
        assert_eq!(cost.queue_wait(300), ms(35));
        // Work past GROUP_MAX_WORK fills more groups, each with its COMMIT.
        let reports = (GROUP_MAX_WORK.as_micros() / 100) as usize;
        assert_eq!(
            cost.queue_wait(reports),
            GROUP_MAX_WORK + ms(10),
            "one full group and the start of the next"
        );
        // One slow COMMIT moves the average an eighth of the way; many bring it back.
        cost.record(100, ms(10), ms(85));
        assert_eq!(cost.queue_wait(1), Duration::from_micros(100) + ms(15));
        for _ in 0..60 {
            cost.record(100, ms(10), ms(5));
        }
        assert!(cost.queue_wait(1) < Duration::from_micros(100) + ms(6));
        // A group that took nothing off the queue teaches nothing.
        cost.record(0, ms(1000), ms(1000));
        assert!(cost.queue_wait(1) < Duration::from_micros(100) + ms(6));
    }

    #[test]
    fn a_group_commits_after_its_work_budget_and_leaves_the_rest_first_in_line() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_write(&dir.path().join("w.db")).unwrap();
        let commits = Arc::new(AtomicU64::new(0));
        let mut w = Writer::new(
            conn,
            Arc::new(Fleet::new(Duration::from_secs(3600))),
            Arc::new(Metrics::new()),
            5,
            Arc::new(AtomicBool::new(true)),
            commits.clone(),
            Arc::default(),
        );
        let budget = Arc::new(tokio::sync::Semaphore::new(10));
        let mut queued = VecDeque::new();
        let mut replies = Vec::new();
        for n in 1..=3 {
            let (reply, rx) = oneshot::channel();
            queued.push_back(Queued {
                reports: vec![apply::Incoming::new(super::super::tests::report(
                    n, n, 0, 1,
                ))],
                reply,
                _permit: budget.clone().try_acquire_owned().unwrap(),
            });
            replies.push(rx);
        }
        let accepted = |rx: &mut oneshot::Receiver<_>| match rx.try_recv() {
            Ok(Ok(BatchOutcome { results, .. })) => results
                .iter()
                .all(|r: &dsreg_proto::v1::ReportResult| r.status() == ReportStatus::Accepted),
            _ => false,
        };

        // A spent budget: the group takes one batch, commits and answers it, and releases its
        // share of the queue budget; the others wait, in order.
        w.group_work = Duration::ZERO;
        assert_eq!(w.commit_group(&mut queued), 1);
        assert_eq!(commits.load(Ordering::SeqCst), 1);
        assert_eq!((queued.len(), budget.available_permits()), (2, 8));
        assert!(accepted(&mut replies[0]));
        assert!(matches!(replies[1].try_recv(), Err(TryRecvError::Empty)));
        let second = super::super::tests::report(2, 2, 0, 1).machine_id;
        assert_eq!(queued[0].reports[0].report.machine_id, second);

        // Within the budget, one group takes the rest.
        w.group_work = GROUP_MAX_WORK;
        assert_eq!(w.commit_group(&mut queued), 2);
        assert_eq!(commits.load(Ordering::SeqCst), 2);
        assert!(queued.is_empty());
        assert_eq!(budget.available_permits(), 10);
        assert!(accepted(&mut replies[1]) && accepted(&mut replies[2]));
    }

    #[test]
    fn a_small_group_waits_only_while_calls_come_close_together_and_the_waits_gain() {
        let us = Duration::from_micros;
        let t = Instant::now();
        let mut p = Pacing::default();
        assert!(
            !p.waits(1, t),
            "no COMMIT yet: nothing says calls come close together"
        );
        p.committed(t);
        assert!(p.waits(3, t + us(200)));
        assert!(p.waits(GROUP_WAIT_REPORTS - 1, t + us(200)));
        assert!(!p.waits(GROUP_WAIT_REPORTS, t + us(200)), "large enough");
        assert!(
            !p.waits(1, t + GROUP_WAIT),
            "calls a wait apart: waiting gains nothing"
        );
        assert!(!p.waits(1, t + us(5_000)));
        // A wait that took more in changes nothing; one that took nothing in (a closed loop
        // whose callers are all in the group) stops the waits for FRUITLESS_SKIP close groups.
        p.waited(true);
        assert!(p.waits(3, t + us(200)));
        p.waited(false);
        let skipped = (0..FRUITLESS_SKIP)
            .filter(|_| !p.waits(3, t + us(200)))
            .count();
        assert_eq!(skipped, FRUITLESS_SKIP as usize);
        assert!(p.waits(3, t + us(200)), "then it tries again");
        // Groups that would not wait anyway do not use up the skip.
        p.waited(false);
        assert!(!p.waits(GROUP_WAIT_REPORTS, t + us(200)));
        assert!(!p.waits(1, t + us(5_000)));
        let skipped = (0..FRUITLESS_SKIP)
            .filter(|_| !p.waits(3, t + us(200)))
            .count();
        assert_eq!(skipped, FRUITLESS_SKIP as usize);
        assert!(p.waits(3, t + us(200)));
    }

    #[test]
    fn the_checkpointer_is_woken_by_wal_growth_and_after_a_restart() {
        // Commits of 10 frames each: a wake every CHECKPOINT_PAGES frames, not every commit,
        // and never more than one commit late.
        let step = 10;
        let mut woken = 0;
        let mut wakes_at = vec![0];
        for frames in (step..=1000).step_by(step as usize) {
            if wakes(woken, frames) {
                woken = frames;
                wakes_at.push(frames);
            }
        }
        assert!(wakes_at.len() > 2, "{wakes_at:?}");
        assert!(
            wakes_at
                .windows(2)
                .all(|w| (CHECKPOINT_PAGES..CHECKPOINT_PAGES + step).contains(&(w[1] - w[0]))),
            "{wakes_at:?}"
        );
        // The WAL restarted at its beginning: the next commit wakes it again.
        assert!(wakes(woken, 10));
        assert!(!wakes(10, 10 + CHECKPOINT_PAGES - 1));
    }
}
