//! The real collector end to end: fixture snapshots over gRPC, idempotency, limits, the
//! standard health check, the drill-down API and failure grouping, and a clean SIGTERM.

use std::time::Duration;

use dsreg_e2e::collector::CollectorProcess;
use dsreg_e2e::reports::ReportBuilder;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{ExtraField, Report, ReportBatch, ReportStatus, Snapshot};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Every fixture capture of the agent's corpus, parsed by the agent's own parser.
fn fixtures() -> Vec<(String, Snapshot)> {
    let dir = dsreg_e2e::process::repo_root().join("endpoint-agent/testdata/dsregcmd");
    let mut out: Vec<(String, Snapshot)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (name, dsreg_agent::dsregcmd::parse(&bytes))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 5,
        "fixture corpus missing in {}",
        dir.display()
    );
    out
}

fn report(n: usize, snapshot: Snapshot) -> Report {
    ReportBuilder::new(n as u64, "e2e-machine")
        .machine(format!("e2e-machine-{n:03}"))
        .hostname(format!("FIX-{n:03}"))
        .collected_at(1_741_500_000)
        .with_snapshot(snapshot)
        .map(|r| {
            r.ad_domain = "CONTOSO".into();
            r.agent_version = "e2e".into();
        })
        .build()
}

fn statuses(ack: &dsreg_proto::ReportAck) -> Vec<ReportStatus> {
    ack.results
        .iter()
        .map(|r| ReportStatus::try_from(r.status).unwrap())
        .collect()
}

#[test]
fn fixtures_are_stored_grouped_and_drilled_into() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dsreg.db");
    let mut c = CollectorProcess::start(
        &db,
        dir.path(),
        &["--max-batch", "50", "--max-message-bytes", "262144"],
    )
    .unwrap();
    let fx = fixtures();
    let reports: Vec<Report> = fx
        .iter()
        .enumerate()
        .map(|(i, (_, s))| report(i, s.clone()))
        .collect();
    let n = reports.len();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(c.grpc_url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = TelemetryClient::new(channel.clone());
        let batch = ReportBatch {
            reports: reports.clone(),
        };
        let ack = client.report(batch.clone()).await.unwrap().into_inner();
        assert_eq!(statuses(&ack), vec![ReportStatus::Accepted; n]);
        // The same reports again: acknowledged as duplicates, stored once.
        let ack = client.report(batch).await.unwrap().into_inner();
        assert_eq!(statuses(&ack), vec![ReportStatus::Duplicate; n]);

        // A bad report is REJECTED in place, naming the field; the others are stored.
        let mut bad = report(900, Snapshot::default());
        bad.machine_id.clear();
        let ack = client
            .report(ReportBatch {
                reports: vec![report(901, Snapshot::default()), bad],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            statuses(&ack),
            [ReportStatus::Accepted, ReportStatus::Rejected]
        );
        assert_eq!(ack.results[1].message, "reports[1].machine_id: required");
        // A batch over the limit fails as a whole, naming the limit.
        let err = client
            .report(ReportBatch {
                reports: (0..51)
                    .map(|i| report(1000 + i, Snapshot::default()))
                    .collect(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("limit of 50"), "{}", err.message());
        let mut huge = Snapshot::default();
        huge.extra.push(ExtraField {
            section: "x".into(),
            key: "k".into(),
            value: "v".repeat(300_000),
        });
        let err = client
            .report(ReportBatch {
                reports: vec![report(2000, huge)],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

        // The standard gRPC health check.
        let mut health = HealthClient::new(channel);
        for service in ["", "dsreg.v1.Telemetry"] {
            let resp = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(resp.status(), ServingStatus::Serving, "service {service:?}");
        }
    });

    // Every device, by machine id and by hostname (case-insensitive).
    let (status, list) = c
        .get_json("/api/v1/devices?hostname=FIX-&limit=1000")
        .unwrap();
    assert_eq!(status, 200, "{list}");
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), n + 1, "fixtures plus report 901: {list}");
    let (status, one) = c.get_json("/api/v1/devices/fix-002").unwrap();
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["machine_id"], "e2e-machine-002");
    assert!(one["snapshot"].is_object());

    // Failure groups agree with the device list, and each group's filter finds its devices.
    let failing = devices.iter().filter(|d| d["failure"].is_object()).count() as u64;
    assert!(
        failing > 0,
        "the fixture corpus has failing captures: {list}"
    );
    let (status, groups) = c.get_json("/api/v1/failures").unwrap();
    assert_eq!(status, 200);
    let groups = groups["groups"].as_array().unwrap().clone();
    let total: u64 = groups.iter().map(|g| g["devices"].as_u64().unwrap()).sum();
    assert_eq!(total, failing);
    let counts: Vec<u64> = groups
        .iter()
        .map(|g| g["devices"].as_u64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "sorted by devices desc: {counts:?}"
    );
    for g in &groups {
        let mut q = format!(
            "/api/v1/devices?phase={}&cause={}",
            g["phase"].as_str().unwrap(),
            g["cause"].as_str().unwrap()
        );
        match g["code"].as_str() {
            Some(code) => q.push_str(&format!("&code={code}")),
            None => q.push_str("&code=none"),
        }
        let (status, page) = c.get_json(&q).unwrap();
        assert_eq!(status, 200, "{q}: {page}");
        let found = page["devices"].as_array().unwrap().len() as u64;
        assert_eq!(found, g["devices"].as_u64().unwrap(), "{q}");
        assert!(g["cause_text"].is_string(), "catalog text for {g}");
        let sample = g["sample_devices"].as_array().unwrap();
        assert!(!sample.is_empty() && sample.len() <= 5);
        // Drill into one failing device: its failure carries the catalog's words.
        let key = sample[0].as_str().unwrap();
        let (status, d) = c.get_json(&format!("/api/v1/devices/{key}")).unwrap();
        assert_eq!(status, 200);
        assert_eq!(d["failure"]["cause"], g["cause"]);
        assert!(d["failure"]["resolution"].is_string(), "{d}");
    }
    let (status, err) = c.get_json("/api/v1/devices?join_type=joined").unwrap();
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("joined"));

    // Metrics: the ingest counters.
    let (status, text) = dsreg_e2e::http::http_get(&c.url("/metrics")).unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains(&format!(
            "dsreg_reports_total{{result=\"accepted\"}} {}",
            n + 1
        )),
        "{text}"
    );
    // 1 rejected report + a refused batch of 51.
    assert!(
        text.contains("dsreg_reports_total{result=\"rejected\"} 52"),
        "{text}"
    );
    assert!(
        text.contains(&format!("dsreg_reports_total{{result=\"duplicate\"}} {n}")),
        "{text}"
    );
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    for family in [
        "dsreg_devices gauge",
        "dsreg_devices_failing gauge",
        "dsreg_devices_stale gauge",
        "dsreg_reports_total counter",
        "dsreg_collector_build_info gauge",
    ] {
        assert!(families.contains(&family), "{family} missing: {families:?}");
    }

    // SIGTERM: drain, checkpoint, exit 0.
    let status = c.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", c.log());
    assert!(c.log().contains("wal checkpointed"), "{}", c.log());
}
