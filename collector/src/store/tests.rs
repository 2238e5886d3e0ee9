//! Store tests: idempotency, ack-after-commit with group commit, and the fleet recount.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dsreg_proto::v1::{
    AgentHealth, DeviceState, DiagnosticTests, Diagnostics, PreviousRegistration, Report,
    ReportStatus, SsoState, TestResult,
};
use dsreg_proto::{ExecutionContext, Snapshot, TestStatus};
use rusqlite::Connection;

use super::*;
use crate::fleet::{FailureKey, FleetCounts, cause_label};
use dsreg_proto::diagnostic_tests::NAMES as TESTS;

fn opts() -> StoreOptions {
    StoreOptions {
        queue_depth: 64,
        history_per_device: 5,
        readers: 2,
    }
}

pub(super) fn open(path: &Path, stale: Duration) -> (Store, Arc<Fleet>) {
    let fleet = Arc::new(Fleet::new(stale));
    let store = Store::open(path, opts(), fleet.clone(), Arc::new(Metrics::new())).unwrap();
    (store, fleet)
}

/// A tiny deterministic PRNG (xorshift64*), so the randomized test needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A report whose snapshot varies join state, PRT, one failing test and a previous
/// registration failure (catalog and non-catalog codes).
pub(super) fn report(n: u64, device: u64, variant: u64, collected_s: i64) -> Report {
    let codes = [
        0x801c03f2u32,
        0x801c0021,
        0x80072ee2,
        0x8123_4567,
        0xcaa2_0003,
    ];
    let joined = variant.is_multiple_of(3);
    let snap = Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: Some(joined),
            domain_joined: Some(variant % 5 != 4),
            ..Default::default()
        }),
        sso_state: Some(SsoState {
            azure_ad_prt: Some(variant.is_multiple_of(2)),
            ..Default::default()
        }),
        // An Entra user (only such a user has a PRT).
        user_state: Some(dsreg_proto::v1::UserState {
            wam_default_set: Some(true),
            ..Default::default()
        }),
        diagnostics: (!joined).then(|| Diagnostics {
            tests: Some(DiagnosticTests {
                drs_discovery: Some(TestResult {
                    result: if variant % 4 == 1 {
                        TestStatus::Fail
                    } else {
                        TestStatus::Pass
                    } as i32,
                    code: Some(codes[(variant % 5) as usize]),
                    sub_code: None,
                }),
                ..Default::default()
            }),
            previous_registration: Some(PreviousRegistration {
                time: Some(format!(
                    "2025-03-{:02}T10:{:02}:00Z",
                    1 + variant % 27,
                    variant % 60
                )),
                client_error_code: Some(codes[(variant % 5) as usize]),
                error_phase: Some("join".into()),
                server_error_code: Some("DirectoryError".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Report {
        report_id: uuid(n),
        machine_id: format!("machine-{device:03}"),
        hostname: format!("PC-{device:04}"),
        collected_at: Some(prost_types::Timestamp {
            seconds: collected_s,
            nanos: 0,
        }),
        // Mostly the user's context; every 7th variant a SYSTEM report (the other part).
        execution_context: if variant % 7 == 6 {
            ExecutionContext::System
        } else {
            ExecutionContext::User
        } as i32,
        agent_version: format!("1.{}.0", variant % 3),
        agent: Some(AgentHealth {
            spool_depth: (variant % 5) as u32,
            spool_dropped: u64::from(variant % 4 == 3),
            ..Default::default()
        }),
        snapshot: Some(Box::new(snap)),
        ..Default::default()
    }
}

#[test]
fn the_writer_prepares_its_per_report_statements_once() {
    // With plans allowed to depend on bound values, SQLite re-prepared statements like these at
    // every run (a fifth of the writer's time in the bench profile).
    let dir = tempfile::tempdir().unwrap();
    let conn = open_write(&dir.path().join("prepare.db")).unwrap();
    for n in 0..60u64 {
        let mut r = report(n, n % 20, 0, 1_000 + n as i64);
        r.ad_domain = "CONTOSO".into();
        let applied = apply::report(&conn, &r, 1_000_000 + n as i64, 5).unwrap();
        assert_eq!(applied.result.status(), ReportStatus::Accepted);
    }
    let device_row = apply::stored_sql(merge::Part::User);
    for sql in [device_row, apply::INSERT_REPORT] {
        let st = conn.prepare_cached(sql).unwrap();
        let runs = st.get_status(rusqlite::StatementStatus::Run);
        assert!(
            runs >= 40,
            "{runs} runs of {sql}: the heartbeat path was not taken"
        );
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "re-prepared: {sql}"
        );
    }
}

fn statuses(o: &BatchOutcome) -> Vec<ReportStatus> {
    o.results
        .iter()
        .map(|r| ReportStatus::try_from(r.status).unwrap())
        .collect()
}

#[tokio::test]
async fn duplicates_are_stored_once_and_conflicts_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("d.db"), Duration::from_secs(3600));
    let r = report(1, 1, 1, 100);
    let o = store.submit(vec![r.clone(), r.clone()]).await.unwrap();
    assert_eq!(
        statuses(&o),
        [ReportStatus::Accepted, ReportStatus::Duplicate]
    );
    let o = store.submit(vec![r.clone()]).await.unwrap();
    assert_eq!(statuses(&o), [ReportStatus::Duplicate]);
    let mut changed = r.clone();
    changed.hostname = "OTHER".into();
    let o = store.submit(vec![changed]).await.unwrap();
    assert_eq!(statuses(&o), [ReportStatus::Rejected]);
    assert!(
        o.results[0].message.contains("different content"),
        "{:?}",
        o.results[0]
    );
    let (reports, host): (i64, String) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM reports), (SELECT hostname FROM devices)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!((reports, host.as_str()), (1, "PC-0001"), "first copy stays");
    store.close().await;
}

#[tokio::test]
async fn batches_that_would_wait_past_the_bound_are_refused_and_the_queued_ones_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let (store, _) = open(&path, Duration::from_secs(3600));
    // The writer cannot commit while this holds the write lock: what is queued stays queued.
    let blocker = Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // 500 reports make exactly the bound (their COMMIT taken as free).
    store.assume_cost(MAX_QUEUE_WAIT / 500, Duration::ZERO);
    let batch = |from: u64, n: u64| -> Vec<Report> {
        (from..from + n).map(|i| report(i, i, 0, 1)).collect()
    };
    // Behind 400 reports a batch waits 0.8 of the bound: queued. Behind 501, longer than the
    // bound: refused at once, although the report budget (16 000) has room.
    let first = store.enqueue(batch(1, 400)).unwrap();
    let second = store.enqueue(batch(401, 101)).unwrap();
    assert!(matches!(
        store.enqueue(batch(502, 1)),
        Err(StoreError::Full)
    ));
    blocker.execute_batch("COMMIT").unwrap();
    for (rx, n) in [(first, 400), (second, 101)] {
        let o = rx.outcome().await.unwrap();
        assert_eq!(statuses(&o), vec![ReportStatus::Accepted; n]);
    }
    // Once the queue drained, the refused batch is taken.
    let o = store.submit(batch(502, 1)).await.unwrap();
    assert_eq!(statuses(&o), [ReportStatus::Accepted]);
    store.close().await;
}

#[tokio::test]
async fn a_batch_that_fails_is_rolled_back_alone_and_the_rest_of_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let (store, fleet) = open(&path, Duration::from_secs(3600));
    // A fault inside one batch: SQLite aborts the insert of one machine's idempotency row, as
    // it would for a full disk or an I/O error part-way through a batch.
    let blocker = Connection::open(&path).unwrap();
    blocker
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON reports WHEN NEW.machine_id = 'machine-666'
             BEGIN SELECT RAISE(ABORT, 'poisoned report'); END;",
        )
        .unwrap();
    // Held so that the batches queue: the writer may take the first alone and wait on the lock
    // with it, but takes the other two together once the lock is released, so the poisoned
    // batch always shares its group with a good one.
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let first = store.enqueue(vec![report(1, 1, 0, 1)]).unwrap();
    // The poisoned report comes after a good one: that one must be rolled back too.
    let second = store
        .enqueue(vec![report(2, 2, 0, 1), report(3, 666, 0, 1)])
        .unwrap();
    let third = store.enqueue(vec![report(4, 4, 0, 1)]).unwrap();
    let commits = store.commits();
    blocker.execute_batch("COMMIT").unwrap();
    for rx in [first, third] {
        let o = rx.outcome().await.unwrap();
        assert_eq!(statuses(&o), [ReportStatus::Accepted]);
    }
    let err = second.outcome().await.unwrap_err();
    assert!(err.to_string().contains("poisoned report"), "{err}");
    assert!(
        store.commits() - commits <= 2,
        "three batches, at most two groups"
    );
    let stored: Vec<String> = blocker
        .prepare("SELECT machine_id FROM devices ORDER BY machine_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, ["machine-001", "machine-004"]);
    let reports: i64 = blocker
        .query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reports, 2, "nothing of the failed batch is stored");
    // The fleet learned only what was committed.
    assert_eq!(fleet.counts(now_ms()).total, 2);
    store.close().await;
}

#[tokio::test]
async fn acks_wait_for_commit_and_queued_batches_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let (store, _) = open(&path, Duration::from_secs(3600));
    // Hold the write lock so the writer cannot commit.
    let blocker = Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let first = store.enqueue(vec![report(1, 1, 0, 1)]).unwrap();
    let mut rest = Vec::new();
    for i in 2..=20 {
        rest.push(store.enqueue(vec![report(i, i, i, 1)]).unwrap());
    }
    let waited = tokio::time::timeout(Duration::from_millis(300), first.outcome()).await;
    assert!(waited.is_err(), "acked while the commit could not happen");
    blocker.execute_batch("COMMIT").unwrap();
    for rx in rest {
        let o = rx.outcome().await.unwrap();
        assert_eq!(statuses(&o), [ReportStatus::Accepted]);
        // Ack after commit: a separate connection already sees the report.
        let id = o.results[0].report_id.clone();
        let seen: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM reports WHERE report_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seen, 1);
    }
    assert!(
        store.commits() <= 3,
        "19 queued batches took {} commits",
        store.commits()
    );
    store.close().await;
    assert!(!store.writer_alive());
    assert!(matches!(
        store.submit(vec![report(99, 1, 1, 1)]).await,
        Err(StoreError::Closed)
    ));
}

/// The recount: every aggregate recomputed by SQL straight from `devices`.
fn recount(conn: &Connection, stale_cutoff: i64) -> FleetCounts {
    let mut c = FleetCounts::default();
    let mut q = conn
        .prepare("SELECT join_type, COUNT(*) FROM devices GROUP BY join_type")
        .unwrap();
    for row in q
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)? as u64)))
        })
        .unwrap()
    {
        let (j, n) = row.unwrap();
        c.devices.insert(j, n);
    }
    let mut q = conn
        .prepare(
            "SELECT failure_phase, failure_cause, failure_code, failure_symbol, COUNT(*)
             FROM devices WHERE failure_cause IS NOT NULL
             GROUP BY failure_phase, failure_cause, failure_code, failure_symbol",
        )
        .unwrap();
    let rows = q
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                (r.get::<_, i64>(4)? as u64),
            ))
        })
        .unwrap();
    for row in rows {
        let (phase, cause, code, symbol, n) = row.unwrap();
        let key = FailureKey {
            phase,
            cause: cause_label(&cause),
            code: code.map(|c| dsreg_proto::hex(c as u32)).unwrap_or_default(),
            symbol,
        };
        *c.failing.entry(key).or_insert(0) += n;
    }
    for (i, t) in TESTS.iter().enumerate() {
        let n = conn
            .query_row(
                "SELECT COUNT(*) FROM devices WHERE failing_tests & (1 << ?1) != 0",
                [i as i64],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as u64;
        if n > 0 {
            c.diagnostic_tests_failing.insert(t.to_string(), n);
        }
    }
    let mut q = conn
        .prepare("SELECT join_type, COUNT(*) FROM devices WHERE without_prt GROUP BY join_type")
        .unwrap();
    for row in q
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)? as u64)))
        })
        .unwrap()
    {
        let (j, n) = row.unwrap();
        c.without_prt.insert(j, n);
    }
    c.stale = conn
        .query_row(
            "SELECT COUNT(*) FROM devices WHERE last_seen < ?1",
            [stale_cutoff],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64;
    c.total = conn
        .query_row("SELECT COUNT(*) FROM devices", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64;
    let mut q = conn
        .prepare("SELECT agent_version, COUNT(*) FROM devices GROUP BY agent_version")
        .unwrap();
    for row in q
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)? as u64)))
        })
        .unwrap()
    {
        let (v, n) = row.unwrap();
        c.agent_versions.insert(v, n);
    }
    c.spool_overflowing = conn
        .query_row(
            "SELECT COUNT(*) FROM devices WHERE agent_spool_dropped > 0",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64;
    c.not_delivered_1d = conn
        .query_row(
            "SELECT COUNT(*) FROM devices WHERE last_seen < ?1",
            [stale_cutoff + stale_cutoff_to_day()],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64;
    c
}

/// `recount` takes the stale cut-off; the one-day cut-off is `now - 1 d`, i.e. the stale
/// cut-off moved by (stale window − 1 d). The tests use a one-hour stale window.
fn stale_cutoff_to_day() -> i64 {
    3_600_000 - crate::fleet::NOT_DELIVERED_AFTER.as_millis() as i64
}

#[tokio::test]
async fn fleet_aggregates_match_a_full_sql_recount() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let stale = Duration::from_secs(3600);
    let (store, fleet) = open(&path, stale);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut sent: Vec<Report> = Vec::new();
    let mut n = 0;
    for round in 0..40 {
        let mut batch = Vec::new();
        for _ in 0..1 + rng.below(25) {
            if !sent.is_empty() && rng.below(8) == 0 {
                // A retried report (duplicate).
                batch.push(sent[rng.below(sent.len() as u64) as usize].clone());
                continue;
            }
            n += 1;
            let device = rng.below(30);
            // Mostly moving forward in time, sometimes an out-of-order replay.
            let t = round * 100 + rng.below(100) as i64 - if rng.below(10) == 0 { 500 } else { 0 };
            let r = report(n, device, rng.below(60), t);
            sent.push(r.clone());
            batch.push(r);
        }
        store.submit(batch).await.unwrap();
    }
    let seen_at: BTreeMap<String, i64> = store
        .read(|c| {
            let mut q = c.prepare("SELECT machine_id, last_seen FROM devices")?;
            let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
        .unwrap();
    let mut times: Vec<i64> = seen_at.values().copied().collect();
    times.sort();
    // Pick a "now" that makes the older half of the devices stale.
    let now = times[times.len() / 2] + stale.as_millis() as i64;
    let cutoff = now - stale.as_millis() as i64;
    let live = fleet.counts(now);
    let conn = Connection::open(&path).unwrap();
    let expected = recount(&conn, cutoff);
    assert_eq!(live, expected);
    assert!(live.total >= 20 && live.stale > 0, "{live:?}");
    // The random reports exercise every aggregate, not just device counts.
    assert!(live.devices.len() >= 2, "{live:?}");
    assert!(!live.failing.is_empty(), "{live:?}");
    assert!(!live.diagnostic_tests_failing.is_empty(), "{live:?}");
    assert!(!live.without_prt.is_empty(), "{live:?}");
    assert!(live.agent_versions.len() >= 2, "{live:?}");
    assert!(live.spool_overflowing > 0, "{live:?}");
    // A day later every device is undelivered, by the same sweep.
    let later = now + crate::fleet::NOT_DELIVERED_AFTER.as_millis() as i64;
    assert_eq!(
        fleet.counts(later).not_delivered_1d,
        recount(&conn, later - stale.as_millis() as i64).not_delivered_1d
    );
    store.close().await;

    // Rebuilt from SQLite at start: the same numbers.
    let (store, rebuilt) = open(&path, stale);
    assert_eq!(rebuilt.counts(now), expected);
    store.close().await;
}

/// A receive time at least 2 ms after `after` (waits on the clock, bounded).
async fn later_than(after: i64) -> i64 {
    for _ in 0..1_000 {
        if now_ms() >= after + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    now_ms()
}

#[tokio::test]
async fn a_heartbeat_moves_the_fleet_last_seen_before_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let stale = Duration::from_secs(3600);
    let (store, fleet) = open(&path, stale);
    let stale_ms = stale.as_millis() as i64;
    let beat = |n: u64, collected_s: i64| {
        let mut r = report(n, 7, 0, collected_s);
        r.ad_domain = "CONTOSO".into();
        r
    };
    store.submit(vec![beat(1, 1)]).await.unwrap();
    let first = now_ms();
    // `now` puts the stale cut-off between the two receive times: stale unless the fleet
    // saw the second report.
    let sent = later_than(first).await;
    let now = sent - 1 + stale_ms;
    assert_eq!(fleet.counts(now).stale, 1);

    // The writer leaves a heartbeat's `last_seen` to the caller...
    let pending = store.enqueue(vec![beat(2, 2)]).unwrap();
    let mut o = pending.rx.await.unwrap().unwrap();
    assert_eq!(statuses(&o), [ReportStatus::Accepted]);
    assert_eq!(
        o.spent.seen.len(),
        1,
        "a heartbeat's fleet update is deferred"
    );
    assert_eq!(fleet.counts(now).stale, 1, "not applied by the writer");
    o.spent.touch();
    assert_eq!(fleet.counts(now).stale, 0);

    // ...and `submit` (what ingest awaits) applies it before it returns.
    let sent = later_than(now_ms()).await;
    let now = sent - 1 + stale_ms;
    assert_eq!(fleet.counts(now).stale, 1);
    let o = store.submit(vec![beat(3, 3)]).await.unwrap();
    assert_eq!(statuses(&o), [ReportStatus::Accepted]);
    assert!(o.spent.seen.is_empty());
    assert_eq!(fleet.counts(now).stale, 0);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(fleet.counts(now), recount(&conn, now - stale_ms));

    // A call given up before its commit (the client went away) still moves the fleet.
    let sent = later_than(now_ms()).await;
    let now = sent - 1 + stale_ms;
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let commits = store.commits();
    drop(store.enqueue(vec![beat(4, 4)]).unwrap());
    conn.execute_batch("COMMIT").unwrap();
    for _ in 0..2_000 {
        if store.commits() > commits && fleet.counts(now).stale == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(fleet.counts(now).stale, 0, "lost with the dropped call");
    assert_eq!(fleet.counts(now), recount(&conn, now - stale_ms));
    store.close().await;
}

#[tokio::test]
async fn history_is_bounded_and_retention_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("h.db"), Duration::from_secs(3600));
    for i in 0..12 {
        // Alternating variants: every report is a transition for the same device.
        store
            .submit(vec![report(i + 1, 7, i % 2, i as i64)])
            .await
            .unwrap();
    }
    let rows: i64 = store
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert!(rows <= 5, "history not trimmed: {rows}");
    let pruned = store.prune(now_ms() + 1).await.unwrap();
    assert!(pruned >= 12, "pruned {pruned}");
    let (reports, devices): (i64, i64) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM reports), (SELECT COUNT(*) FROM devices)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!((reports, devices), (0, 1), "retention keeps current state");
    store.close().await;
}

#[tokio::test]
async fn an_older_report_does_not_overwrite_newer_state_and_failing_since_sticks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("o.db"), Duration::from_secs(3600));
    // variant 1: not joined, previous registration failed → failing in the shared diagnosis.
    store.submit(vec![report(1, 5, 1, 1_000)]).await.unwrap();
    let row = |store: Store| async move {
        store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT last_report_id, failing_since, last_seen FROM devices",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<i64>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )?)
            })
            .await
            .unwrap()
    };
    let (id1, since1, _) = row(store.clone()).await;
    assert_eq!(id1, uuid(1));
    assert!(since1.is_some(), "fixture report should be failing");
    // The same failure again, later: failing_since stays.
    store.submit(vec![report(2, 5, 1, 2_000)]).await.unwrap();
    let (id2, since2, seen2) = row(store.clone()).await;
    assert_eq!((id2.as_str(), since2), (uuid(2).as_str(), since1));
    // An older capture (spool replay): current state stays, last_seen may only grow.
    store.submit(vec![report(3, 5, 0, 500)]).await.unwrap();
    let (id3, since3, seen3) = row(store.clone()).await;
    assert_eq!((id3.as_str(), since3), (uuid(2).as_str(), since1));
    assert!(seen3 >= seen2);
    store.close().await;
}

fn prt_report(n: u64, context: ExecutionContext, prt: bool, collected_s: i64) -> Report {
    Report {
        report_id: uuid(1000 + n),
        machine_id: "merge-1".into(),
        hostname: "MERGE-1".into(),
        collected_at: Some(prost_types::Timestamp {
            seconds: collected_s,
            nanos: 0,
        }),
        execution_context: context as i32,
        snapshot: Some(Box::new(Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(true),
                domain_joined: Some(true),
                ..Default::default()
            }),
            sso_state: Some(SsoState {
                azure_ad_prt: Some(prt),
                ..Default::default()
            }),
            // An Entra user (a local account never has a PRT).
            user_state: Some(dsreg_proto::v1::UserState {
                wam_default_set: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn system_and_user_parts_merge_and_only_the_user_part_says_no_prt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fleet) = open(&dir.path().join("m.db"), Duration::from_secs(3600));
    let without_prt = |f: &Fleet| f.counts(now_ms()).without_prt.values().sum::<u64>();
    // SYSTEM always prints AzureAdPrt NO: not a device without a PRT.
    store
        .submit(vec![prt_report(1, ExecutionContext::System, false, 10)])
        .await
        .unwrap();
    assert_eq!(without_prt(&fleet), 0);
    // The user's context says NO: counted.
    store
        .submit(vec![prt_report(2, ExecutionContext::User, false, 11)])
        .await
        .unwrap();
    assert_eq!(without_prt(&fleet), 1);
    // A newer SYSTEM report replaces only the device part: the user part still says NO.
    store
        .submit(vec![prt_report(3, ExecutionContext::System, false, 12)])
        .await
        .unwrap();
    assert_eq!(without_prt(&fleet), 1);
    let parts = store
        .read(|c| Ok(merge::parts(c, "merge-1", None)?))
        .await
        .unwrap();
    let view = merge::view(&parts);
    assert_eq!(view.provenance["device_state"], "device");
    assert_eq!(view.provenance["sso_state"], "user");
    assert_eq!(
        (parts[0].report_id.as_str(), parts[1].report_id.as_str()),
        (uuid(1003).as_str(), uuid(1002).as_str())
    );
    // The user gets a PRT: recovered.
    store
        .submit(vec![prt_report(4, ExecutionContext::User, true, 13)])
        .await
        .unwrap();
    assert_eq!(without_prt(&fleet), 0);
    store.close().await;
}

#[tokio::test]
async fn concurrent_reads_never_open_more_connections_than_readers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("r.db"), Duration::from_secs(3600));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for _ in 0..8 {
        let (store, inside, most) = (store.clone(), inside.clone(), most.clone());
        calls.push(tokio::spawn(async move {
            store
                .read(move |c| {
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Stay inside long enough for the other calls to pile up (an overlap
                    // that does not happen can only hide a regression, never fail this).
                    std::thread::sleep(Duration::from_millis(20));
                    let n: i64 = c.query_row("SELECT COUNT(*) FROM devices", [], |r| r.get(0))?;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    Ok(n)
                })
                .await
        }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 0);
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=opts().readers).contains(&most), "{most} reads at once");
    store.close().await;
}

/// The content hash as it was defined before the writer stopped copying the report for it:
/// stored hashes must keep their values, or a retry across an upgrade reads as a conflict.
fn content_hash_by_copy(r: &Report) -> u64 {
    use prost::Message;
    let mut h = apply::Fnv::new();
    let mut head = r.clone();
    head.events.clear();
    head.agent = None;
    h.feed(&head.encode_to_vec());
    for e in &r.events {
        let mut e2 = e.clone();
        e2.data.clear();
        h.feed(&e2.encode_to_vec());
        let mut data: Vec<_> = e.data.iter().collect();
        data.sort();
        for (k, v) in data {
            h.feed(k.as_bytes());
            h.feed(v.as_bytes());
        }
    }
    h.0
}

#[test]
fn the_content_hash_keeps_its_values() {
    use prost::Message;
    let mut rng = Rng(0x5eed);
    let mut with_state = 0;
    for n in 0..300 {
        let mut r = report(n, rng.below(9), rng.below(40), 1_000 + n as i64);
        r.heartbeat = rng.below(2) == 0;
        match rng.below(4) {
            0 => r.snapshot = None,
            1 => r.snapshot = Some(Box::default()),
            _ => {}
        }
        if rng.below(3) == 0 {
            r.collected_at = None;
            r.os_build = "10.0.26100.1".into();
            r.ad_domain = "CONTOSO".into();
        }
        if rng.below(3) == 0 {
            r.events.push(dsreg_proto::v1::EventRecord {
                record_id: n,
                event_id: 304,
                data: [("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into(),
                ..Default::default()
            });
        }
        let encoded = r
            .snapshot
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        // The writer's side reads the snapshot once for both hashes: the same values.
        let incoming = apply::Incoming::new(r.clone());
        assert_eq!(
            incoming.hash as u64,
            content_hash_by_copy(&r),
            "report {n}: {r:?}"
        );
        let context = ExecutionContext::try_from(r.execution_context).unwrap_or_default();
        let state = state_hash_by_fields(&r, context, &encoded);
        assert_eq!(incoming.state, state, "report {n}");
        with_state += u64::from(state.is_some());
    }
    assert!(
        (50..250).contains(&with_state),
        "{with_state} of 300 with a state hash"
    );
}

/// The state hash as it was defined before both hashes shared one pass over the snapshot.
fn state_hash_by_fields(r: &Report, context: ExecutionContext, snapshot: &[u8]) -> Option<i64> {
    if !r.events.is_empty() || r.hostname.is_empty() || r.ad_domain.is_empty() {
        return None;
    }
    let health = r.agent.unwrap_or_default();
    let mut h = apply::Fnv::new();
    h.feed(&(context as i32).to_le_bytes());
    h.feed(snapshot);
    h.feed(r.agent_version.as_bytes());
    h.feed(&health.spool_depth.to_le_bytes());
    h.feed(&health.spool_dropped.to_le_bytes());
    h.feed(&health.parse_warnings.to_le_bytes());
    h.feed(r.hostname.as_bytes());
    h.feed(r.ad_domain.as_bytes());
    h.feed(r.os_build.as_bytes());
    Some(h.0 as i64)
}

#[test]
fn a_heartbeat_learns_the_history_time_once_and_then_reads_no_history() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_write(&dir.path().join("history-at.db")).unwrap();
    let beat = |n: u64, at: i64| {
        let mut r = report(n, 1, 1, 1_000 + n as i64);
        r.ad_domain = "CONTOSO".into();
        apply::report(&conn, &r, at, 5).unwrap()
    };
    let history_at = || -> Option<i64> {
        conn.query_row("SELECT history_at FROM devices", [], |r| r.get(0))
            .unwrap()
    };
    beat(0, 1_000_000);
    assert_eq!(history_at(), Some(1_000_000), "the first transition row");
    // A database from before schema step 8: the device row does not know the time yet.
    conn.execute("UPDATE devices SET history_at = NULL", [])
        .unwrap();
    let lookups = || {
        conn.prepare_cached(apply::LAST_SAMPLE)
            .unwrap()
            .get_status(rusqlite::StatementStatus::Run)
    };
    beat(1, 1_000_100);
    assert_eq!(history_at(), Some(1_000_000), "looked up once and kept");
    let after_first = lookups();
    assert!(after_first >= 1);
    for n in 2..10 {
        beat(n, 1_000_100 + n as i64);
    }
    assert_eq!(
        lookups(),
        after_first,
        "no history lookup once the row knows"
    );
    let rows = |kind: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM history WHERE kind = ?1",
            [kind],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(rows("sample"), 0);
    // A day later a heartbeat writes its sample and moves the time.
    let later = 1_000_000 + apply::SAMPLE_EVERY_MS;
    beat(20, later);
    assert_eq!(rows("sample"), 1);
    assert_eq!(history_at(), Some(later));
    // The heartbeats before it skipped reading the device's facts; the one with a sample due
    // read them, and the sample carries them.
    let facts = |sql: &str| -> (String, Option<String>, Option<i64>) {
        conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
    };
    let device = facts("SELECT join_type, failure_cause, failure_code FROM devices");
    assert!(device.1.is_some(), "the test device is failing: {device:?}");
    assert_eq!(
        facts("SELECT join_type, failure_cause, failure_code FROM history WHERE kind = 'sample'"),
        device
    );
}
