//! Faults around the database: a database another process holds locked at start, a corrupt
//! or truncated database file, and `kill -9` at pseudo-random points under load (so some
//! kills land during WAL checkpoints). Disk full is in `faults_disk_full.rs` (it needs its own
//! process environment).
//!
//! Invariants: the collector never silently re-initialises a database it cannot use — it
//! exits non-zero with a message saying why and leaves the file byte for byte as it was — and
//! every report it acknowledged is there after a restart.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::metrics::metric_sum;
use dsreg_e2e::process::run_to_exit;
use dsreg_e2e::reports::ReportBuilder;
use dsreg_e2e::rng::Lcg;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{Report, ReportBatch, ReportStatus};

fn report(n: u64, pad: usize) -> Report {
    let r = ReportBuilder::new(n, "fault");
    if pad == 0 {
        return r.build();
    }
    r.extra("pad", "pad", &format!("{n}-").repeat(pad / 2 + 1)[..pad])
        .build()
}

fn send_all(c: &CollectorProcess, reports: &[Report]) -> Vec<ReportStatus> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = TelemetryClient::connect(c.grpc_url()).await.unwrap();
        let mut out = Vec::new();
        for chunk in reports.chunks(100) {
            let ack = client
                .report(ReportBatch {
                    reports: chunk.to_vec(),
                })
                .await
                .unwrap()
                .into_inner();
            out.extend(ack.results.iter().map(|r| r.status()));
        }
        out
    })
}

/// Runs the collector binary on `db` expecting it to EXIT (bounded); status and log.
fn start_expecting_exit(db: &Path, dir: &Path, name: &str) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(dsreg_e2e::collector::collector_binary());
    cmd.args([
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .arg("--db")
    .arg(db)
    .env_remove("DSREG_CONFIG")
    .current_dir(dir);
    run_to_exit(
        cmd,
        &dir.join(format!("{name}.log")),
        Duration::from_secs(60),
    )
    .unwrap()
}

#[test]
fn a_database_locked_by_another_process_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let mut c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    assert_eq!(send_all(&c, &[report(1, 0)]), [ReportStatus::Accepted]);
    assert!(c.terminate(Duration::from_secs(20)).unwrap().success());

    let before = std::fs::read(&db).unwrap();
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, log) = start_expecting_exit(&db, dir.path(), "locked");
    assert!(!status.success(), "started on a locked database:\n{log}");
    assert!(
        log.contains("locked") && log.contains("cannot open store"),
        "the error says why:\n{log}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(std::fs::read(&db).unwrap(), before, "database file changed");

    // Once the lock is gone, the same file opens with its data.
    let c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    let (status, d) = c.get_json("/api/v1/devices/fault-000001").unwrap();
    assert_eq!(status, 200, "{d}");
}

#[test]
fn a_corrupt_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();

    // Garbage bytes.
    let garbage_db = dir.path().join("garbage.db");
    let mut rng = Lcg::new(42);
    let garbage: Vec<u8> = (0..64 * 1024).map(|_| rng.next_u64() as u8).collect();
    std::fs::write(&garbage_db, &garbage).unwrap();
    let (status, log) = start_expecting_exit(&garbage_db, dir.path(), "garbage");
    assert!(!status.success(), "started on garbage:\n{log}");
    assert!(
        log.contains("cannot open store") && log.contains("not a database"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&garbage_db).unwrap(),
        garbage,
        "garbage file changed"
    );

    // A real database, cut to a third of its size.
    let db = dir.path().join("dsreg.db");
    let mut c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    let reports: Vec<Report> = (0..1500).map(|n| report(n, 200)).collect();
    assert!(
        send_all(&c, &reports)
            .iter()
            .all(|s| *s == ReportStatus::Accepted)
    );
    assert!(c.terminate(Duration::from_secs(20)).unwrap().success());
    let full = std::fs::read(&db).unwrap();
    let cut = full[..full.len() / 3].to_vec();
    std::fs::write(&db, &cut).unwrap();
    let (status, log) = start_expecting_exit(&db, dir.path(), "truncated");
    assert!(
        !status.success(),
        "started on a truncated database ({} of {} bytes):\n{log}",
        cut.len(),
        full.len()
    );
    assert!(
        log.contains("cannot open store") && log.contains("malformed"),
        "{log}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), cut, "truncated file changed");
}

#[test]
fn kill_9_at_pseudo_random_points_loses_nothing_acknowledged() {
    const ROUNDS: usize = 5;
    const BATCH: u64 = 20;
    // 8 kB per report: the WAL reaches its 1000-page autocheckpoint every ~25 batches, so
    // some kills land during a checkpoint.
    const PAD: usize = 8 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let mut rng = Lcg::new(2026);
    let mut acked_all: Vec<Report> = Vec::new();
    let mut next = 0u64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..ROUNDS {
        let mut c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
        // Everything acknowledged before the previous kills is still there, exactly once.
        let statuses = send_all(&c, &acked_all);
        assert!(
            statuses.iter().all(|s| *s == ReportStatus::Duplicate),
            "round {round}: an acknowledged report was lost"
        );
        let (_, text) = dsreg_e2e::http::http_get(&c.url("/metrics")).unwrap();
        let devices = metric_sum(&text, "dsreg_devices");
        assert!(
            devices >= acked_all.len() as f64,
            "round {round}: fleet rebuilt from SQLite: {devices} < {} acknowledged",
            acked_all.len()
        );

        let acked: Arc<Mutex<Vec<Report>>> = Arc::default();
        let kill_after = rng.range(5, 40) as usize;
        let first = next;
        next += 100 * BATCH;
        let sender = {
            let acked = acked.clone();
            let url = c.grpc_url();
            rt.spawn(async move {
                let mut client = TelemetryClient::connect(url).await.unwrap();
                for b in 0..100 {
                    let reports: Vec<Report> = (0..BATCH)
                        .map(|i| report(first + b * BATCH + i, PAD))
                        .collect();
                    match client
                        .report(ReportBatch {
                            reports: reports.clone(),
                        })
                        .await
                    {
                        Ok(ack) => {
                            let ack = ack.into_inner();
                            assert!(
                                ack.results
                                    .iter()
                                    .all(|r| r.status() == ReportStatus::Accepted)
                            );
                            acked.lock().unwrap().extend(reports);
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < kill_after * BATCH as usize && !sender.is_finished() {
            assert!(Instant::now() < deadline, "sender too slow:\n{}", c.log());
            std::thread::sleep(Duration::from_millis(2));
        }
        c.kill9();
        rt.block_on(sender).unwrap();
        let acked = acked.lock().unwrap().clone();
        eprintln!(
            "round {round}: killed after {} acknowledged batches",
            acked.len() / BATCH as usize
        );
        acked_all.extend(acked);
    }
    let c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    let statuses = send_all(&c, &acked_all);
    assert!(
        statuses.iter().all(|s| *s == ReportStatus::Duplicate),
        "an acknowledged report was lost"
    );
    let stored: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))
        .unwrap();
    // Unacknowledged in-flight batches may have committed too (at least once), never more.
    assert!(
        stored as usize >= acked_all.len() && stored as usize <= acked_all.len() + 5 * 20,
        "{stored} stored vs {} acknowledged",
        acked_all.len()
    );
}
