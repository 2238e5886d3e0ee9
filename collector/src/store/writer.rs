//! The SQLite writer thread: the only write connection, group commit, ack after COMMIT.
//!
//! Loop: block for one message, then take whatever else is already queued (up to
//! [`GROUP_MAX_BATCHES`] batches / [`GROUP_MAX_REPORTS`] reports) into ONE transaction. Each
//! batch runs under its own SAVEPOINT, so a batch that fails is rolled back alone and answered
//! with its error while the others commit. Replies and fleet updates happen only after COMMIT
//! returned: an ack therefore always describes durable data, and the in-memory aggregates never
//! run ahead of the disk. On `Close` (or when every sender is gone) the writer finishes the
//! group it holds, checkpoints the WAL (TRUNCATE) and exits.
//!
//! Checkpoints run off the commit path: a [`Checkpointer`] thread with its own connection runs
//! `wal_checkpoint(PASSIVE)` every [`CHECKPOINT_EVERY`] while the WAL grows (copying committed
//! WAL frames into the database file and syncing it), while the writer keeps appending.
//! SQLite's own auto-checkpoint would do that copy and the database fsync inside the COMMIT of
//! whichever group crosses the threshold, on the writer thread, stalling every caller waiting
//! for an ack.
//! The writer's auto-checkpoint stays on at [`WAL_SAFETY_PAGES`] as a backstop in case the
//! background thread cannot keep up. Durability is unchanged: a COMMIT is acked only after the
//! WAL is synced (`synchronous=FULL`); checkpointing only moves already-durable pages.

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
/// How often the background checkpointer copies the WAL into the database. Often, so each
/// checkpoint's database fsync is small: a heartbeat dirties a random page of a large file,
/// and a COMMIT's WAL sync queues behind a long checkpoint fsync (the measured trade-off:
/// docs/performance.md, "The checkpoint interval at 1M devices").
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);
/// The checkpointer's longest pause while nothing is written.
pub const CHECKPOINT_IDLE: Duration = Duration::from_millis(250);
/// WAL size (pages) at which the writer checkpoints itself (backstop; normally not reached).
pub const WAL_SAFETY_PAGES: i64 = 32_768;

/// The checkpointer's next pause: [`CHECKPOINT_EVERY`] while the WAL moves, doubling up to
/// [`CHECKPOINT_IDLE`] while it does not (an idle collector does not wake 100 times a second).
fn next_wait(wait: Duration, wal_moved: bool) -> Duration {
    if wal_moved {
        CHECKPOINT_EVERY
    } else {
        (wait * 2).min(CHECKPOINT_IDLE)
    }
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection until the writer stops.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread; `None` (the writer then checkpoints itself) when the database has no
    /// file path or the connection cannot be opened.
    fn start(conn: &Connection) -> Option<Checkpointer> {
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
                let mut wait = CHECKPOINT_EVERY;
                let mut last = (-1, -1);
                while !flag.load(Ordering::SeqCst) {
                    std::thread::park_timeout(wait);
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    // (frames in the WAL, frames copied): unchanged means nothing was written.
                    match own.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>("log")?, r.get::<_, i64>("checkpointed")?))
                    }) {
                        Ok(frames) => {
                            wait = next_wait(wait, frames != last);
                            last = frames;
                        }
                        Err(e) => tracing::debug!(error = %e, "background checkpoint"),
                    }
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "no background checkpointer"))
            .ok()?;
        Some(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
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

type Pending = (
    oneshot::Sender<Result<BatchOutcome, StoreError>>,
    Result<Vec<Applied>, StoreError>,
);

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
        history_per_device: u32,
        alive: Arc<AtomicBool>,
        commits: Arc<AtomicU64>,
    ) -> Writer {
        Writer {
            conn,
            fleet,
            metrics,
            history_per_device,
            alive,
            commits,
        }
    }

    /// Runs until `Close` or until every sender is dropped.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let _guard = AliveGuard(self.alive.clone());
        // apply/attempts/heartbeat prepare about 20 distinct statements; keep them all.
        self.conn.set_prepared_statement_cache_capacity(64);
        let checkpointer = Checkpointer::start(&self.conn);
        if checkpointer.is_some()
            && let Err(e) = self
                .conn
                .pragma_update(None, "wal_autocheckpoint", WAL_SAFETY_PAGES)
        {
            tracing::warn!(error = %e, "cannot raise wal_autocheckpoint");
        }
        let mut closing: Option<oneshot::Sender<()>> = None;
        while closing.is_none() {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut group = Vec::new();
            let mut permits = Vec::new();
            let mut reports = 0;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Batch {
                        reports: r,
                        reply,
                        permit,
                    } => {
                        reports += r.len();
                        group.push((r, reply));
                        permits.push(permit);
                    }
                    Msg::Prune { cutoff_ms, reply } => {
                        let _ = reply.send(apply::prune(&self.conn, cutoff_ms).map_err(Into::into));
                    }
                    Msg::Close { reply } => {
                        closing = Some(reply);
                        break;
                    }
                }
                if group.len() < GROUP_MAX_BATCHES && reports < GROUP_MAX_REPORTS {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            drop(permits);
        }
        if closing.is_some() {
            // Everything queued before Close was sent by drained requests; answer stragglers.
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Batch { reports, reply, .. } = msg {
                    self.commit_group(vec![(reports, reply)]);
                }
            }
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

    fn commit_group(&mut self, group: Vec<(Vec<dsreg_proto::v1::Report>, Reply)>) {
        let started = Instant::now();
        let received_at = now_ms();
        let history = self.history_per_device;
        let mut pending: Vec<Pending> = Vec::with_capacity(group.len());
        // IMMEDIATE: take the write lock up front. A DEFERRED transaction that read first and
        // then finds the lock taken fails with SQLITE_BUSY without waiting.
        let tx = match self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "cannot begin transaction");
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Commit(e.to_string())));
                }
                return;
            }
        };
        let mut tx = tx;
        let machine_ids: Vec<String> = group
            .iter()
            .flat_map(|(reports, _)| reports.iter().map(|r| r.machine_id.clone()))
            .collect();
        for (reports, reply) in group {
            let result = (|| -> Result<Vec<Applied>, StoreError> {
                let sp = tx.savepoint()?;
                let mut out = Vec::with_capacity(reports.len());
                for r in &reports {
                    let _span =
                        tracing::debug_span!("report", machine_id = %r.machine_id).entered();
                    let applied = apply::report(&sp, r, received_at, history)?;
                    tracing::debug!(
                        report_id = %r.report_id,
                        status = ?applied.result.status(),
                        transition = applied.fleet.as_ref().is_some_and(|f| f.facts.is_some()),
                        "report applied"
                    );
                    out.push(applied);
                }
                sp.commit()?;
                Ok(out)
            })();
            if let Err(e) = &result {
                tracing::error!(error = %e, "batch rolled back");
            }
            pending.push((reply, result));
        }
        if let Err(e) = tx.commit() {
            tracing::error!(error = %e, "group commit failed");
            // SQLITE_FULL may roll back the whole transaction, so COMMIT then fails with "no
            // transaction is active": say "disk full" to every batch of the group, not that.
            let full = pending
                .iter()
                .any(|(_, r)| r.as_ref().is_err_and(StoreError::is_disk_full));
            for (reply, _) in pending {
                let msg = match full {
                    true => format!("database or disk is full ({e})"),
                    false => e.to_string(),
                };
                let _ = reply.send(Err(StoreError::Commit(msg)));
            }
            // The fleet was not touched, but the disk may hold part of the group (see
            // `read::refresh_fleet`): make the aggregates equal to the disk again.
            match super::read::refresh_fleet(&self.conn, &self.fleet, &machine_ids) {
                Ok(n) => {
                    tracing::warn!(devices = n, "fleet re-read from disk after a failed commit")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot re-read the fleet after a failed commit")
                }
            }
            return;
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.metrics.commit_duration(started.elapsed());
        for (reply, result) in pending {
            let outcome = result.map(|applied| {
                let mut o = BatchOutcome::default();
                for a in applied {
                    if let Some(update) = &a.fleet {
                        let sighting = (!update.name.is_empty()).then(|| crate::fleet::Sighting {
                            name: &update.name,
                            failing_since: update.failing_since,
                        });
                        self.fleet.set_seen(
                            &update.machine_id,
                            update.facts.as_ref(),
                            update.last_seen,
                            sighting,
                        );
                    }
                    o.new_attempts.extend(a.new_attempts);
                    o.results.push(a.result);
                }
                o
            });
            let _ = reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpointer_backs_off_while_idle_and_returns_at_once() {
        let mut wait = CHECKPOINT_EVERY;
        let mut seen = Vec::new();
        for _ in 0..8 {
            wait = next_wait(wait, false);
            seen.push(wait);
        }
        assert_eq!(seen[0], CHECKPOINT_EVERY * 2);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().unwrap(), CHECKPOINT_IDLE);
        assert_eq!(next_wait(CHECKPOINT_IDLE, true), CHECKPOINT_EVERY);
    }
}
