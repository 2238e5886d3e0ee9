//! Online backup while the collector runs and ingests: the in-process collector takes
//! reports from several concurrent clients while `backup::backup` and the real
//! `dsreg-collector backup` binary copy its database. Each copy passes `integrity_check`,
//! holds a device count between what was acknowledged before and after the copy, and opens
//! as a collector database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dsreg_collector::backup;
use dsreg_collector::config::Config;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{DeviceState, Report, ReportBatch, ReportStatus, Snapshot};
use tokio::net::TcpListener;

fn batch(start: u64, n: u64) -> ReportBatch {
    ReportBatch {
        reports: (start..start + n)
            .map(|i| Report {
                report_id: format!("00000000-0000-4000-8000-{i:012}"),
                machine_id: format!("machine-{i:08}"),
                hostname: format!("PC-{i:06}"),
                snapshot: Some(Box::new(Snapshot {
                    device_state: Some(DeviceState {
                        domain_joined: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
    }
}

fn devices_in(path: &std::path::Path) -> u64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("SELECT count(*) FROM devices", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_during_ingest_is_consistent_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let config = Config {
        db: db.clone(),
        ..Default::default()
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dsreg_collector::run(config, grpc, http, async {
        let _ = stop_rx.await;
    }));

    // Writers: 4 clients, 50-report batches, counting acknowledged devices.
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (url, acked, done) = (url.clone(), acked.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut client = loop {
                match TelemetryClient::connect(url.clone()).await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let mut next = w * 1_000_000;
            for _ in 0..400 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let ack = client.report(batch(next, 50)).await.unwrap().into_inner();
                assert!(
                    ack.results
                        .iter()
                        .all(|r| r.status() == ReportStatus::Accepted)
                );
                acked.fetch_add(50, Ordering::SeqCst);
                next += 50;
            }
        }));
    }
    // Wait until ingest is under way (bounded).
    for _ in 0..500 {
        if acked.load(Ordering::SeqCst) >= 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(acked.load(Ordering::SeqCst) >= 500, "ingest did not start");

    // 1. The library call, mid-ingest.
    let before = acked.load(Ordering::SeqCst);
    let to = dir.path().join("copy.db");
    let (src, dst) = (db.clone(), to.clone());
    let summary = tokio::task::spawn_blocking(move || backup::backup(&src, &dst))
        .await
        .unwrap()
        .unwrap();
    let after = acked.load(Ordering::SeqCst);
    assert!(
        summary.devices >= before && summary.devices <= after + 200,
        "copy holds {} devices; {before} acknowledged before, {after} after",
        summary.devices
    );
    assert_eq!(devices_in(&to), summary.devices);
    assert_eq!(
        backup::quick_check(&to, backup::QUICK_CHECK_BUDGET).unwrap(),
        backup::QuickCheck::Ok
    );

    // 2. The binary, on the same live database, still mid-ingest.
    let to2 = dir.path().join("copy2.db");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dsreg-collector"))
        .arg("backup")
        .arg("--db")
        .arg(&db)
        .arg("--to")
        .arg(&to2)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bytes=") && stdout.contains(&format!("devices={}", devices_in(&to2))),
        "{stdout}"
    );

    done.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();

    // A copy restores: a collector starts on it and sees its devices.
    let restored = dir.path().join("restored.db");
    std::fs::copy(&to, &restored).unwrap();
    let config = Config {
        db: restored.clone(),
        ..Default::default()
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dsreg_collector::run(config, grpc, http, async {
        let _ = stop_rx.await;
    }));
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    assert_eq!(devices_in(&restored), summary.devices);
}
