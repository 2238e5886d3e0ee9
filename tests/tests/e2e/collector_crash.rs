//! `kill -9` while a client is sending: every report the collector ACKNOWLEDGED is there after
//! a restart on the same database (re-sending it answers DUPLICATE, and the API finds it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsreg_e2e::collector::{CollectorProcess, expect_all_duplicates};
use dsreg_e2e::reports::ReportBuilder;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{Report, ReportBatch, ReportStatus};

const BATCH: usize = 20;

fn report(n: usize) -> Report {
    ReportBuilder::new(n as u64, "crash").build()
}

#[test]
fn acknowledged_reports_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let mut c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    let acked: Arc<Mutex<Vec<Report>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A client sending batch after batch until the connection breaks (bounded).
    let sender = {
        let acked = acked.clone();
        let url = c.grpc_url();
        rt.spawn(async move {
            let mut client = TelemetryClient::connect(url).await.unwrap();
            for b in 0..2000 {
                let reports: Vec<Report> = (0..BATCH).map(|i| report(b * BATCH + i)).collect();
                match client
                    .report(ReportBatch {
                        reports: reports.clone(),
                    })
                    .await
                {
                    Ok(ack) => {
                        let ack = ack.into_inner();
                        let mut acked = acked.lock().unwrap();
                        for (r, res) in reports.into_iter().zip(ack.results) {
                            assert_eq!(res.status(), ReportStatus::Accepted);
                            acked.push(r);
                        }
                    }
                    Err(_) => return b,
                }
            }
            2000
        })
    };
    // Kill once a fair number of batches were acknowledged, while the sender is mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 30 * BATCH {
        assert!(Instant::now() < deadline, "sender too slow:\n{}", c.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    c.kill9();
    let stopped_at = rt.block_on(sender).unwrap();
    assert!(
        stopped_at < 2000,
        "the sender should have seen the connection die"
    );
    let acked = acked.lock().unwrap().clone();

    // Restart on the same file: every acknowledged report is there.
    let c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    rt.block_on(expect_all_duplicates(&c.grpc_url(), &acked, 500))
        .unwrap();
    let (status, page) = c
        .get_json("/api/v1/devices?hostname=crash-&limit=1")
        .unwrap();
    assert_eq!(status, 200, "{page}");
    for r in [&acked[0], &acked[acked.len() / 2], &acked[acked.len() - 1]] {
        let (status, d) = c
            .get_json(&format!("/api/v1/devices/{}", r.machine_id))
            .unwrap();
        assert_eq!(status, 200, "{d}");
    }
    let (_, metrics) = dsreg_e2e::http::http_get(&c.url("/metrics")).unwrap();
    let devices: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("dsreg_devices{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        devices >= acked.len() as f64,
        "fleet rebuilt from SQLite: {devices} devices < {} acknowledged",
        acked.len()
    );
}
