//! The storage hooks of `dsreg-bench` (cargo feature `bench`), so the benchmark runs the
//! writer's own statements instead of a copy of its SQL that drifts with the schema.
//!
//! Two uses, nothing else:
//! - [`populate`]: a database of N devices written through the writer's apply path
//!   (`store::apply::report`) in one transaction, as fast as SQLite allows.
//! - [`Storage`]: the storage ceiling. The rows a report writes, prepared outside the timed
//!   section ([`Storage::prepare`]), then written in one `BEGIN IMMEDIATE … COMMIT` group by
//!   the writer's statements ([`Storage::write`]): for a heartbeat the idempotency row and
//!   the narrow device-row update (`store::heartbeat`); for a full row the idempotency row,
//!   the part upsert and the device upsert (`store::upsert`), which encode the snapshot as
//!   the writer does.
//!
//! Invariants: the connection is the writer's (`store::open_write`: WAL, `synchronous=FULL`,
//! the same cache and planner settings, the same background checkpointer), so the ceiling has
//! the collector's durability and checkpoint cost; no
//! fleet, no history, no attempts — the SQLite work of a report, not the collector's.

use std::path::Path;

use dsreg_proto::{ExecutionContext, Report, Snapshot};
use rusqlite::{Connection, params};

use crate::fleet::DeviceFacts;
use crate::store::merge::Part;
use crate::store::writer::Checkpointer;
use crate::store::{StoreError, apply, heartbeat, merge, open_write, upsert};

/// The longest group COMMIT of the collector's writer since the last call (then reset):
/// `dsreg-bench` reads it around each phase.
pub fn take_longest_commit() -> std::time::Duration {
    crate::store::writer::take_longest_commit()
}

/// Writes one report per device through the collector's apply path into `db` (created and
/// migrated if needed), in one transaction received at `now_ms`, then truncates the WAL.
/// Returns the reports written.
pub fn populate(
    db: &Path,
    reports: impl IntoIterator<Item = Report>,
    now_ms: i64,
    history_per_device: u32,
) -> Result<u64, StoreError> {
    let mut conn = open_write(db)?;
    let tx = conn.transaction()?;
    let mut n = 0;
    for r in reports {
        apply::incoming(&tx, &apply::Incoming::new(r), now_ms, history_per_device)?;
        n += 1;
    }
    tx.commit()?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(n)
}

/// A report with everything the writer derives before its SQL (hashes, facts, times).
pub struct Prepared {
    /// The report, its snapshot moved to `snapshot`.
    report: Report,
    snapshot: Snapshot,
    hash: i64,
    context: ExecutionContext,
    collected: Option<i64>,
    state: Option<i64>,
    facts: DeviceFacts,
}

impl Prepared {
    fn part(&self) -> Part {
        Part::of(self.context)
    }
}

/// The storage ceiling's connection: the writer's, on an existing database, with the
/// writer's background checkpointing (without it SQLite checkpoints inside COMMIT, and the
/// "ceiling" pays a cost the collector does not).
pub struct Storage {
    conn: Connection,
    _checkpointer: Option<Checkpointer>,
}

impl Storage {
    /// Opens `db` as the writer does (migrating it if needed).
    pub fn open(db: &Path) -> Result<Storage, StoreError> {
        let mut conn = open_write(db)?;
        let checkpointer = Checkpointer::start(&mut conn);
        Ok(Storage {
            conn,
            _checkpointer: checkpointer,
        })
    }

    /// Derives what the writer derives from `report` before writing (outside the timed part).
    pub fn prepare(report: Report) -> Prepared {
        let apply::Incoming {
            mut report,
            hash,
            context,
            state,
            ..
        } = apply::Incoming::new(report);
        let snapshot = report.snapshot.take().map(|s| *s).unwrap_or_default();
        Prepared {
            hash,
            collected: report.collected_at.as_ref().map(apply::ts_ms),
            state,
            facts: apply::facts(&snapshot, context),
            snapshot,
            context,
            report,
        }
    }

    /// Writes `rows` received at `now_ms` in one transaction with the writer's statements: the
    /// heartbeat's narrow update when `heartbeat`, else the full part and device upserts.
    pub fn write(&self, rows: &[Prepared], now_ms: i64, heartbeat: bool) -> Result<(), StoreError> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let written = (|| -> rusqlite::Result<()> {
            for row in rows {
                let r = &row.report;
                let inserted = conn.prepare_cached(apply::INSERT_REPORT)?.execute(params![
                    r.report_id,
                    r.machine_id,
                    row.hash,
                    now_ms
                ])?;
                // The writer answers a repeated id as a duplicate; the ceiling only writes
                // fresh ones, so a repeat is a harness bug.
                if inserted == 0 {
                    return Err(rusqlite::Error::StatementChangedRows(0));
                }
                if heartbeat {
                    // The writer reads the rowid with the state hash it compares.
                    let rowid: i64 = conn
                        .prepare_cached(apply::stored_sql(row.part()))?
                        .query_row([&r.machine_id], |c| c.get("device_rowid"))?;
                    heartbeat::refresh_times(
                        conn,
                        r,
                        rowid,
                        row.part(),
                        row.context,
                        row.collected,
                        now_ms,
                        None,
                    )?;
                    continue;
                }
                upsert::part(
                    conn,
                    r,
                    row.part(),
                    row.context,
                    row.collected,
                    &row.snapshot,
                    None,
                    now_ms,
                )?;
                upsert::device(
                    conn,
                    r,
                    &upsert::DeviceRow {
                        snapshot: &row.snapshot,
                        facts: &row.facts,
                        agent: &merge::AgentRow::default(),
                        context: row.context,
                        collected: row.collected,
                        failing_since: None,
                        state: row.state,
                        history_at: None,
                    },
                    now_ms,
                )?;
            }
            Ok(())
        })();
        match written {
            Ok(()) => conn
                .execute_batch("COMMIT")
                .map_err(|e| StoreError::Commit(e.to_string())),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, machine: &str) -> Report {
        Report {
            report_id: id.into(),
            machine_id: machine.into(),
            hostname: "PC-1".into(),
            ad_domain: "CONTOSO".into(),
            collected_at: Some(prost_types::Timestamp {
                seconds: 1_000,
                nanos: 0,
            }),
            snapshot: Some(Box::default()),
            ..Default::default()
        }
    }

    fn count(db: &Path, sql: &str) -> i64 {
        Connection::open(db)
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
            .unwrap()
    }

    #[test]
    fn populate_and_both_ceiling_writes_use_the_writer_statements() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let n = populate(
            &db,
            (0..3).map(|i| report(&format!("p-{i}"), &format!("m-{i}"))),
            5,
            10,
        )
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM devices"), 3);

        let storage = Storage::open(&db).unwrap();
        let beat = [Storage::prepare(report("h-0", "m-0"))];
        storage.write(&beat, 7_000, true).unwrap();
        assert_eq!(
            count(
                &db,
                "SELECT last_seen FROM devices WHERE machine_id = 'm-0'"
            ),
            7_000
        );
        let full = [Storage::prepare(report("f-9", "m-9"))];
        storage.write(&full, 8_000, false).unwrap();
        assert_eq!(count(&db, "SELECT COUNT(*) FROM devices"), 4);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM reports"), 5);
        // A report id already stored fails the group, which is rolled back whole.
        assert!(storage.write(&full, 9_000, false).is_err());
        assert_eq!(count(&db, "SELECT COUNT(*) FROM reports"), 5);
    }
}
