//! SQLite storage: one writer thread with group commit, read-only connections for queries.
//!
//! - [`schema`]: versioned migrations (`PRAGMA user_version`).
//! - [`writer`]: the only write connection, owned by one `std::thread`, fed by a bounded tokio
//!   channel of (batch, reply). A full channel is answered at once with [`StoreError::Full`]
//!   (backpressure to the client, never unbounded memory). Replies are sent only after COMMIT.
//! - [`apply`]: what one report does inside the writer's transaction (idempotency, device
//!   state, history); [`upsert`] its full writes of the part and device rows, and
//!   [`heartbeat`] the narrow write of an unchanged heartbeat.
//! - `columns`: the device facts' columns, read by name (positions looked up once per
//!   statement).
//! - [`merge`]: one device view from the latest SYSTEM part and the latest USER part.
//! - [`attempts`]: event records and failed registration attempts, each stored once.
//! - [`read`]: queries for the API, run with `spawn_blocking` on a small pool of read-only
//!   connections; at most `readers` reads run at once, so at most that many connections and
//!   page caches (2 MiB each) exist however many API calls arrive together.
//!
//! Durability: WAL with `synchronous=FULL`, so a COMMIT has reached the disk (fsync of the WAL)
//! before any ack is sent. NORMAL would survive `kill -9` too, but not a power cut, and the ack
//! promises "committed to disk"; group commit pays the fsync once per group, not per report.

pub(crate) mod apply;
pub mod attempts;
mod columns;
pub(crate) mod heartbeat;
pub mod merge;
mod page_cache;
pub mod read;
pub(crate) mod schema;
pub(crate) mod upsert;
pub(crate) mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use columns::{FACT_COLUMNS, FactColumns, facts_from_row};
use dsreg_proto::v1::{Report, ReportResult};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::fleet::{FailureFacts, Fleet};
use crate::metrics::Metrics;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The group transaction could not begin or commit (message of the SQLite error).
    #[error("commit failed: {0}")]
    Commit(String),
    /// The writer queue is full: retry later.
    #[error("writer queue is full")]
    Full,
    /// The writer has stopped (shutdown or crash).
    #[error("store is closed")]
    Closed,
    /// Stored bytes did not decode.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A blocking task failed.
    #[error("blocking task failed: {0}")]
    Join(String),
}

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Writer queue capacity, in full-size batches: at most `queue_depth` ×
    /// [`QUEUE_SLOT_REPORTS`] reports wait, in up to `queue_depth` × [`GROUP_MAX_BATCHES`]
    /// batches (so many one-report calls can queue where one full batch would).
    pub queue_depth: usize,
    /// History rows kept per device.
    pub history_per_device: u32,
    /// Read-only connections kept open.
    pub readers: usize,
}

/// Reports one `queue_depth` slot holds (the default `max_batch`).
pub const QUEUE_SLOT_REPORTS: usize = 1000;

/// The longest a newly queued batch is let wait behind the reports already queued, by what the
/// writer's recent groups cost (`writer::WriterCost`): past it, the batch is refused at once
/// ([`StoreError::Full`], answered with `retry-after-ms`) rather than queued. The report budget
/// alone does not bound the wait: 3 200 full reports (every report a state change, at ~185 µs
/// each at 1M devices) already queue for 0.6 s, and a slow disk multiplies that; the same
/// 3 200 heartbeats (~45 µs each) queue for about 0.15 s plus two COMMITs, under it except
/// when a COMMIT is slow. A call's worst case is this, plus the group in progress
/// ([`writer::GROUP_MAX_WORK`]), plus its own group's COMMIT.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(250);

pub use writer::GROUP_MAX_BATCHES;

/// Creates or migrates the schema on `conn` (for tools and tests that open the database
/// themselves); returns the schema version. The collector migrates at start on its own.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    schema::migrate(conn)
}

/// What the writer returns for a committed batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// One result per report, in batch order.
    pub results: Vec<ReportResult>,
    /// Failed registration attempts seen for the first time (for the counter).
    pub new_attempts: Vec<FailureFacts>,
    /// The batch's reports, handed back so that the caller frees them (on a tokio worker)
    /// instead of the single writer thread, with the fleet updates left to the caller.
    spent: Spent,
}

/// A queued batch ([`Store::enqueue`]): [`Pending::outcome`] resolves once it is committed
/// and the fleet shows it.
pub struct Pending {
    rx: oneshot::Receiver<Result<BatchOutcome, StoreError>>,
}

impl Pending {
    /// The committed batch's outcome, after its fleet updates are applied; `Closed` when the
    /// writer stopped without answering.
    pub async fn outcome(self) -> Result<BatchOutcome, StoreError> {
        let mut o = self.rx.await.map_err(|_| StoreError::Closed)??;
        o.spent.touch();
        Ok(o)
    }
}

/// What the writer is done with, handed back in [`BatchOutcome`]: the batch's reports, so
/// the caller frees them on its tokio worker instead of the single writer thread, and the
/// fleet updates that only move a device's `last_seen` (a heartbeat's).
///
/// Those updates commute with every other one (`last_seen` only moves forward), so the
/// order in which they and the writer's own updates reach the fleet does not matter. They
/// are applied by [`Pending::outcome`] before the ack, or, when nobody awaits the outcome
/// (a cancelled call), wherever it is dropped: never lost. That takes about 2 µs a
/// heartbeat off the writer thread at 1M devices (docs/performance.md, "Where the rest of
/// the CPU goes").
#[derive(Default)]
struct Spent {
    reports: Vec<apply::Incoming>,
    /// Index in `reports`, receive time.
    seen: Vec<(usize, i64)>,
    fleet: Option<Arc<Fleet>>,
}

impl Spent {
    /// Applies the `last_seen` updates not applied yet.
    fn touch(&mut self) {
        let Some(fleet) = &self.fleet else { return };
        for (i, at) in std::mem::take(&mut self.seen) {
            if let Some(inc) = self.reports.get(i) {
                fleet.set(&inc.report.machine_id, None, at);
            }
        }
    }
}

impl Drop for Spent {
    fn drop(&mut self) {
        self.touch();
    }
}

impl std::fmt::Debug for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Spent({} reports, {} fleet updates)",
            self.reports.len(),
            self.seen.len()
        )
    }
}

pub(crate) enum Msg {
    Batch {
        reports: Vec<apply::Incoming>,
        reply: oneshot::Sender<Result<BatchOutcome, StoreError>>,
        /// The batch's share of the queue budget, released once it is answered.
        permit: tokio::sync::OwnedSemaphorePermit,
    },
    Prune {
        cutoff_ms: i64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Msg>,
    budget: Arc<tokio::sync::Semaphore>,
    readers: Arc<Readers>,
    alive: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    /// What the writer's recent groups cost (nothing until its first commit).
    cost: Arc<writer::WriterCost>,
}

/// The current wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The write connection: WAL, `synchronous=FULL`, the writer's cache and planner settings,
/// migrated, write lock checked.
pub(crate) fn open_write(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "sqlite refused WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    // 32 MiB of page cache (default 2 MiB): keeps the B-tree interiors of a million-device
    // database in memory, so a report's lookups read leaf pages only.
    conn.pragma_update(None, "cache_size", -32_768)?;
    // Savepoints (one per batch when a group is applied again after a failed batch) and
    // multi-index writes journal the pages they change again for a statement rollback; keep
    // that sub-journal in memory instead of a temp file that every report writes to
    // (docs/performance.md, design change 6).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Plans must not depend on bound values: otherwise SQLite re-prepares a statement at every
    // run once a bound value took part in planning, as it did for the heartbeat comparison
    // and the history-sample lookup (design change 6). Readers keep the default.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    schema::migrate(&mut conn)?;
    // Take the write lock once now: a database another process holds locked fails the start
    // (after the busy timeout) instead of failing every later commit.
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
        .map_err(|e| StoreError::Commit(format!("cannot take the write lock: {e}")))?;
    if let Some(pages) = test_max_page_count() {
        let n: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get(0)
        })?;
        tracing::warn!(
            max_page_count = n,
            "TEST ONLY: database size capped (DSREG_TEST_MAX_PAGE_COUNT)"
        );
    }
    Ok(conn)
}

/// TEST ONLY, undocumented on purpose: `DSREG_TEST_MAX_PAGE_COUNT=N` caps the database at N
/// pages so the e2e tests can provoke SQLITE_FULL ("disk full") without root. Not a setting.
fn test_max_page_count() -> Option<u32> {
    std::env::var("DSREG_TEST_MAX_PAGE_COUNT")
        .ok()?
        .parse()
        .ok()
}

impl StoreError {
    /// SQLITE_FULL: the disk (or the page cap) is full; nothing of the batch was stored.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Commit(m) => m.contains("database or disk is full"),
            _ => false,
        }
    }
}

impl Store {
    /// Opens (creating and migrating) the database, rebuilds `fleet` from it, and starts the
    /// writer thread.
    pub fn open(
        path: &Path,
        opts: StoreOptions,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        // Before the fleet scan below reads `devices` with readahead (see `page_cache`).
        let started = std::time::Instant::now();
        let cached = page_cache::recache(path);
        if cached > 0 {
            tracing::info!(db = %path.display(), bytes = cached, took = ?started.elapsed(), "database file re-cached in single pages");
        }
        let conn = open_write(path)?;
        let devices = read::rebuild_fleet(&conn, &fleet)?;
        tracing::info!(db = %path.display(), devices, "store open, fleet aggregates rebuilt");
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1) * writer::GROUP_MAX_BATCHES);
        let budget = Arc::new(tokio::sync::Semaphore::new(
            opts.queue_depth.max(1) * QUEUE_SLOT_REPORTS,
        ));
        let alive = Arc::new(AtomicBool::new(true));
        let commits = Arc::new(AtomicU64::new(0));
        let cost = Arc::new(writer::WriterCost::default());
        let w = writer::Writer::new(
            conn,
            fleet,
            metrics,
            opts.history_per_device,
            alive.clone(),
            commits.clone(),
            cost.clone(),
        );
        std::thread::Builder::new()
            .name("dsreg-sqlite-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| StoreError::Join(e.to_string()))?;
        Ok(Store {
            tx,
            budget,
            readers: Arc::new(Readers {
                path: path.to_path_buf(),
                pool: Mutex::new(Vec::new()),
                max: opts.readers.max(1),
                busy: Arc::new(tokio::sync::Semaphore::new(opts.readers.max(1))),
            }),
            alive,
            commits,
            cost,
        })
    }

    /// True while the writer thread runs.
    pub fn writer_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Queues a validated batch; resolves once it is COMMITTED. A full queue, or one that
    /// would hold the batch longer than [`MAX_QUEUE_WAIT`], answers [`StoreError::Full`]
    /// immediately.
    pub async fn submit(&self, reports: Vec<Report>) -> Result<BatchOutcome, StoreError> {
        self.enqueue(reports)?.outcome().await
    }

    /// The synchronous half of [`Store::submit`]: queues the batch (or refuses at once) and
    /// returns what resolves after COMMIT.
    pub fn enqueue(&self, reports: Vec<Report>) -> Result<Pending, StoreError> {
        let (reply, rx) = oneshot::channel();
        let total = self.budget_total();
        // Bounded in time too: refused when the reports ahead (queued, or in the group being
        // written) would hold this batch longer than MAX_QUEUE_WAIT.
        let ahead = total.saturating_sub(self.budget.available_permits());
        if self.cost.queue_wait(ahead) > MAX_QUEUE_WAIT {
            return Err(StoreError::Full);
        }
        // A batch larger than the whole budget waits for an empty queue rather than never.
        let want = reports.len().clamp(1, total);
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(u32::try_from(want).unwrap_or(u32::MAX))
            .map_err(|_| StoreError::Full)?;
        // Hashed here, on the caller's thread, not on the single writer's.
        let reports = reports.into_iter().map(apply::Incoming::new).collect();
        self.tx
            .try_send(Msg::Batch {
                reports,
                reply,
                permit,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Full,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        Ok(Pending { rx })
    }

    /// Sets what the writer's groups cost as if measured (tests of admission).
    #[cfg(test)]
    pub(crate) fn assume_cost(&self, per_report: Duration, per_commit: Duration) {
        self.cost.assume(per_report, per_commit);
    }

    fn budget_total(&self) -> usize {
        // The channel's capacity is `queue_depth` × GROUP_MAX_BATCHES.
        self.tx.max_capacity() / writer::GROUP_MAX_BATCHES * QUEUE_SLOT_REPORTS
    }

    /// Group commits done so far (observability and tests).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Deletes reports, history, attempts and events received before `cutoff_ms`.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Prune { cutoff_ms, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the writer commit what is queued, checkpoint the WAL and stop. Waits for it.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Runs `f` on a read-only connection in the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        // At most `max` reads run at once, so at most `max` connections (and page caches)
        // exist; more concurrent API calls wait here instead of each opening its own.
        let permit = readers
            .busy
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            readers.with(f)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// A small pool of read-only connections (opened on demand, at most `max` open at once).
struct Readers {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
    max: usize,
    /// One permit per connection: bounds concurrent reads, hence connections and caches.
    busy: Arc<tokio::sync::Semaphore>,
}

impl Readers {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(Duration::from_secs(5))?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.max {
            pool.push(conn);
        }
        out
    }
}

#[cfg(test)]
mod attempt_tests;
#[cfg(test)]
mod refresh_tests;
#[cfg(test)]
mod tests;
