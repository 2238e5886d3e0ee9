//! Soak: a steady stream of reports while the collector is restarted again and again
//! (SIGTERM and SIGKILL alternating). Delivered == acknowledged == stored, nothing twice, and
//! the collector's memory (VmRSS, sampled from `/proc`) stays flat across incarnations.
//!
//! The CI run takes ~25 s; `DSREG_SOAK_SECS=300` runs a longer soak. No timing assertion: the
//! rate is a pacing target, and the figures are printed (`--nocapture`) for the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::process::vm_rss_kb;
use dsreg_e2e::reports::ReportBuilder;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{Report, ReportBatch, ReportStatus};
use tokio::sync::watch;

const BATCH: u64 = 10;
const EVERY: Duration = Duration::from_millis(50); // 200 reports/s target
const DEVICES: u64 = 2000;
const INCARNATIONS: usize = 6;

fn report(n: u64) -> Report {
    let device = n % DEVICES;
    ReportBuilder::new(n, "soak")
        .machine(format!("soak-{device:05}"))
        .hostname(format!("SOAK-{device:05}"))
        .collected_at(1_760_000_000 + n as i64)
        .entra_joined(n.is_multiple_of(3))
        .build()
}

#[derive(Default)]
struct Tally {
    generated: AtomicU64,
    accepted: AtomicU64,
    duplicate: AtomicU64,
    retries: AtomicU64,
}

/// Sends a batch every [`EVERY`] to whatever collector `url` names now; a failed batch is
/// retried (same ids) until acknowledged, across restarts. Stops after `stop` is set.
async fn sender(url: watch::Receiver<String>, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut url = url;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<TelemetryClient<tonic::transport::Channel>> = None;
    let mut b = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let reports: Vec<Report> = (0..BATCH).map(|i| report(b * BATCH + i)).collect();
        tally.generated.fetch_add(BATCH, Ordering::SeqCst);
        let give_up = Instant::now() + Duration::from_secs(300);
        loop {
            assert!(Instant::now() < give_up, "batch {b} never acknowledged");
            if client.is_none() {
                let target = url.borrow_and_update().clone();
                let endpoint = tonic::transport::Endpoint::from_shared(target)
                    .unwrap()
                    .connect_timeout(Duration::from_secs(2));
                client = endpoint.connect().await.ok().map(TelemetryClient::new);
            }
            let result = match client.as_mut() {
                Some(c) => c
                    .report(ReportBatch {
                        reports: reports.clone(),
                    })
                    .await
                    .map(tonic::Response::into_inner),
                None => Err(tonic::Status::unavailable("not connected")),
            };
            match result {
                Ok(ack) => {
                    assert_eq!(ack.results.len(), BATCH as usize);
                    for r in &ack.results {
                        match r.status() {
                            ReportStatus::Accepted => tally.accepted.fetch_add(1, Ordering::SeqCst),
                            // Committed before a kill but not acknowledged: stored once.
                            ReportStatus::Duplicate => {
                                tally.duplicate.fetch_add(1, Ordering::SeqCst)
                            }
                            other => panic!("batch {b}: {other:?} {r:?}"),
                        };
                    }
                    break;
                }
                Err(_) => {
                    tally.retries.fetch_add(1, Ordering::SeqCst);
                    client = None;
                    tokio::select! {
                        _ = url.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        }
        b += 1;
    }
}

#[test]
fn steady_load_across_restarts_loses_nothing_and_stays_flat() {
    let secs: u64 = std::env::var("DSREG_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let per_incarnation = Duration::from_secs(secs) / INCARNATIONS as u32;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));

    let mut c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    let (url_tx, url_rx) = watch::channel(c.grpc_url());
    let task = rt.spawn(sender(url_rx, stop.clone(), tally.clone()));
    let started = Instant::now();
    let mut peaks_kb: Vec<u64> = Vec::new();
    let mut restarts = (0, 0);
    for i in 0..INCARNATIONS {
        let pid = c.pid().unwrap();
        let until = Instant::now() + per_incarnation;
        let mut peak = 0;
        while Instant::now() < until {
            assert!(!task.is_finished(), "sender died:\n{}", c.log());
            peak = peak.max(vm_rss_kb(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(200));
        }
        peaks_kb.push(peak);
        if i + 1 == INCARNATIONS {
            break;
        }
        if i % 2 == 0 {
            let status = c.terminate(Duration::from_secs(40)).unwrap();
            assert!(status.success(), "exit {status}:\n{}", c.log());
            restarts.0 += 1;
        } else {
            c.kill9();
            restarts.1 += 1;
        }
        c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
        url_tx.send(c.grpc_url()).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    rt.block_on(task).unwrap();
    let elapsed = started.elapsed();
    let status = c.terminate(Duration::from_secs(40)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", c.log());

    let generated = tally.generated.load(Ordering::SeqCst);
    let accepted = tally.accepted.load(Ordering::SeqCst);
    let duplicate = tally.duplicate.load(Ordering::SeqCst);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: u64 = conn
        .query_row("SELECT COUNT(*) FROM reports", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64;
    let devices: u64 = conn
        .query_row("SELECT COUNT(*) FROM devices", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64;
    eprintln!(
        "soak: {:.1} s, {generated} reports ({:.0}/s), {} SIGTERM + {} SIGKILL restarts, \
         {accepted} accepted + {duplicate} duplicate (committed before a kill), {} retried \
         calls, {stored} stored, {devices} devices; peak VmRSS per incarnation (kB): {peaks_kb:?}",
        elapsed.as_secs_f64(),
        generated as f64 / elapsed.as_secs_f64(),
        restarts.0,
        restarts.1,
        tally.retries.load(Ordering::SeqCst),
    );
    assert_eq!(accepted + duplicate, generated, "every report acknowledged");
    assert_eq!(stored, generated, "every report stored exactly once");
    assert_eq!(devices, generated.min(DEVICES));
    // Memory: the last third of incarnations peaks no higher than the first third, with slack
    // for allocator noise (a leak would grow with the data, which keeps growing here).
    let third = (peaks_kb.len() / 3).max(1);
    let first = *peaks_kb[..third].iter().max().unwrap();
    let last = *peaks_kb[peaks_kb.len() - third..].iter().max().unwrap();
    assert!(
        last <= first * 2 + 32 * 1024,
        "VmRSS grew across restarts: first third {first} kB, last third {last} kB"
    );
}
