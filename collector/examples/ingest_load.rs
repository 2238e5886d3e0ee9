//! Ingest throughput figure: `cargo run --release -p dsreg-collector --example ingest_load
//! [clients] [batches_per_client] [reports_per_batch]`.
//!
//! Runs the collector in-process on 127.0.0.1:0 with a temporary database, sends distinct
//! reports (one device each, with a failing previous registration) from concurrent gRPC clients
//! and prints reports/s and batch latency. A benchmark that prints figures, not a test.

use std::time::{Duration, Instant};

use dsreg_collector::config::Config;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{
    DeviceState, Diagnostics, PreviousRegistration, Report, ReportBatch, Snapshot,
};

fn report(n: usize) -> Report {
    Report {
        report_id: format!("00000000-0000-4000-8000-{n:012}"),
        machine_id: format!("load-{n:08}"),
        hostname: format!("LOAD-{n:08}"),
        snapshot: Some(Box::new(Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(false),
                domain_joined: Some(true),
                ..Default::default()
            }),
            diagnostics: Some(Diagnostics {
                previous_registration: Some(PreviousRegistration {
                    time: Some("2025-03-09T11:00:27Z".into()),
                    client_error_code: Some(0x801c03f2),
                    error_phase: Some("join".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (clients, batches, per_batch) = (arg(1, 8), arg(2, 50), arg(3, 100));
    let dir = tempfile::tempdir()?;
    let config = Config {
        db: dir.path().join("load.db"),
        queue_depth: 64,
        ..Config::default()
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dsreg_collector::run(config, grpc, http, async {
        let _ = stopped.await;
    }));
    // Wait (bounded) until the gRPC port answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("http://{addr}");
    while TelemetryClient::connect(url.clone()).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "collector did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = TelemetryClient::connect(url).await?;
            let mut worst = Duration::ZERO;
            for b in 0..batches {
                let base = (c * batches + b) * per_batch;
                let reports = (0..per_batch).map(|i| report(base + i)).collect();
                let t = Instant::now();
                loop {
                    match client
                        .report(ReportBatch {
                            reports: Clone::clone(&reports),
                        })
                        .await
                    {
                        Ok(_) => break,
                        Err(s) if s.code() == tonic::Code::Unavailable => {
                            tokio::time::sleep(Duration::from_millis(10)).await
                        }
                        Err(s) => return Err(anyhow::anyhow!(s)),
                    }
                }
                worst = worst.max(t.elapsed());
            }
            anyhow::Ok(worst)
        }));
    }
    let mut worst = Duration::ZERO;
    for t in tasks {
        worst = worst.max(t.await??);
    }
    let elapsed = started.elapsed();
    let total = clients * batches * per_batch;
    println!(
        "{total} reports ({clients} clients x {batches} batches x {per_batch}) in {:.2}s: {:.0} reports/s, worst batch {:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        worst
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
