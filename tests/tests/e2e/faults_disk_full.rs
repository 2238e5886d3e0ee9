//! Disk full: reports are refused with UNAVAILABLE (never acknowledged), nothing of a refused
//! batch is stored, nothing acknowledged is lost, and the collector recovers once space is
//! back (here: after a restart without the cap).
//!
//! "Disk full" is the collector's test-only cap `DSREG_TEST_MAX_PAGE_COUNT` (SQLite
//! `max_page_count` on the writer connection → SQLITE_FULL exactly as a full disk gives),
//! so the test needs no root. It is the only test of this binary because it sets the
//! variable in its own process environment, which the collector child inherits.

use std::time::Duration;

use dsreg_e2e::collector::{CollectorProcess, expect_all_duplicates};
use dsreg_e2e::reports::{ReportBuilder, send_accepted};
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{Report, ReportBatch, ReportStatus};
use tonic::Code;

fn report(n: u64) -> Report {
    ReportBuilder::new(n, "full")
        .extra("pad", "pad", "x".repeat(1500))
        .build()
}

#[test]
fn disk_full_refuses_with_unavailable_and_loses_nothing_acknowledged() {
    const BATCH: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let cap = [("DSREG_TEST_MAX_PAGE_COUNT", "80")];
    let mut c = CollectorProcess::start_env(&db, dir.path(), &[], &cap).unwrap();
    assert!(c.log().contains("TEST ONLY"), "{}", c.log());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (acked, refused) = rt.block_on(async {
        let mut client = TelemetryClient::connect(c.grpc_url()).await.unwrap();
        let mut acked: Vec<Report> = Vec::new();
        for b in 0..400u64 {
            let reports: Vec<Report> = (0..BATCH).map(|i| report(b * BATCH + i)).collect();
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
                            .all(|r| r.status() == ReportStatus::Accepted),
                        "{ack:?}"
                    );
                    acked.extend(reports);
                }
                Err(e) => {
                    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                    assert!(e.message().contains("disk is full"), "{}", e.message());
                    // Refused again while still full: the refusal is stable, not a fluke.
                    let again = client
                        .report(ReportBatch {
                            reports: reports.clone(),
                        })
                        .await
                        .unwrap_err();
                    assert_eq!(again.code(), Code::Unavailable);
                    return (acked, reports);
                }
            }
        }
        panic!("the page cap never filled up:\n{}", c.log());
    });
    assert!(
        !acked.is_empty(),
        "the cap was hit before any report fitted"
    );
    eprintln!(
        "disk full after {} acknowledged reports; refused batch of {}",
        acked.len(),
        refused.len()
    );
    // Still alive and reading; the refused batch left nothing behind.
    let (status, _) = c.get_json("/readyz").unwrap();
    assert_eq!(status, 200);
    for r in &refused {
        let (status, _) = c
            .get_json(&format!("/api/v1/devices/{}", r.machine_id))
            .unwrap();
        assert_eq!(status, 404, "{} stored although refused", r.machine_id);
    }
    let (status, d) = c
        .get_json(&format!("/api/v1/devices/{}", acked[0].machine_id))
        .unwrap();
    assert_eq!(status, 200, "{d}");
    assert!(
        c.log().contains("disk is full"),
        "the operator sees why:\n{}",
        c.log()
    );
    let status = c.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", c.log());

    // Space is back (no cap): everything acknowledged is there once; the refused batch now
    // goes in as new.
    let c = CollectorProcess::start(&db, dir.path(), &[]).unwrap();
    rt.block_on(expect_all_duplicates(&c.grpc_url(), &acked, 100))
        .unwrap();
    rt.block_on(async {
        let mut client = TelemetryClient::connect(c.grpc_url()).await.unwrap();
        send_accepted(&mut client, refused).await.unwrap();
    });
}
