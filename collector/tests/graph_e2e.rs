//! End to end, in process: `dsreg_collector::run` on pre-bound loopback listeners with the
//! Graph settings pointing at the stand-in Graph. Agents report over gRPC, the collector
//! syncs, `/api/v1/reconcile`, the device document and `/metrics` show the reconciled states;
//! a change in the cloud then arrives through a delta round. Every wait is a bounded poll on
//! what the API shows.

mod support;

use std::time::{Duration, Instant};

use dsreg_collector::config::Config;
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{
    DeviceDetails, DeviceState, Diagnostics, JoinConfig, PreviousRegistration, Report, ReportBatch,
};
use dsreg_proto::{ExecutionContext, Snapshot};
use serde_json::{Value, json};
use support::graph_standin::{self, device};

const WAIT: Duration = Duration::from_secs(30);
const SID_B: &str = "S-1-5-21-1111-2222-3333-1002";

fn report(n: u32, host: &str, joined: bool, device_id: Option<&str>, sid: Option<&str>) -> Report {
    Report {
        report_id: format!("00000000-0000-4000-8000-{n:012}"),
        machine_id: format!("m-{host}"),
        hostname: host.into(),
        ad_domain: "corp.contoso.com".into(),
        execution_context: ExecutionContext::System as i32,
        snapshot: Some(Box::new(Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(joined),
                domain_joined: Some(true),
                ..Default::default()
            }),
            device_details: device_id.map(|d| DeviceDetails {
                device_id: Some(d.into()),
                ..Default::default()
            }),
            diagnostics: (!joined).then(|| Diagnostics {
                previous_registration: Some(PreviousRegistration {
                    time: Some("2026-11-29T11:00:27Z".into()),
                    client_error_code: Some(0x801c03f2),
                    error_phase: Some("join".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            join_config: sid.map(|s| JoinConfig {
                computer_sid: Some(s.into()),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

async fn get(url: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut r = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

async fn json_of(url: String) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `check` until it returns true or [`WAIT`] passes (then fails with `what`).
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(v: &Value, client: &str, cloud: &str) -> u64 {
    v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == client && c["cloud"] == cloud)
        .and_then(|c| c["devices"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_cloud_devices_are_reconciled_and_deltas_apply() {
    let secret = "e2e-Secret-Value-0123456789";
    let (base, standin) = graph_standin::start(secret, 2).await;
    {
        let mut st = standin.lock().unwrap();
        st.upsert(device(
            "obj-a",
            "AAAAAAAA-0000-4000-8000-00000000000A",
            "PC-A",
            "ServerAd",
            1,
            true,
            None,
        ));
        st.upsert(device(
            "obj-b",
            "BBBBBBBB-0000-4000-8000-00000000000B",
            "PC-B",
            "ServerAd",
            0,
            true,
            Some(SID_B),
        ));
        st.upsert(device(
            "obj-d",
            "DDDDDDDD-0000-4000-8000-00000000000D",
            "PC-D",
            "ServerAd",
            0,
            true,
            None,
        ));
        st.upsert(device(
            "obj-e",
            "EEEEEEEE-0000-4000-8000-00000000000E",
            "PHONE-E",
            "Workplace",
            1,
            true,
            None,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("graph-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let config = Config {
        db: dir.path().join("dsreg.db"),
        graph_tenant_id: Some("contoso.onmicrosoft.com".into()),
        graph_client_id: Some("11111111-2222-3333-4444-555555555555".into()),
        graph_client_secret_file: Some(secret_file),
        graph_interval: Duration::from_millis(200),
        graph_login_url: base.clone(),
        graph_url: base.clone(),
        ..Config::default()
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dsreg_collector::run(config, grpc, http, async {
        let _ = stopped.await;
    }));
    let api = |path: &str| format!("http://{http_addr}{path}");

    let deadline = Instant::now() + WAIT;
    let mut client = loop {
        match TelemetryClient::connect(format!("http://{grpc_addr}")).await {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "gRPC port: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reports = vec![
        report(
            1,
            "PC-A",
            true,
            Some("aaaaaaaa-0000-4000-8000-00000000000a"),
            None,
        ),
        report(2, "PC-B", false, None, Some(SID_B)),
        report(
            3,
            "PC-C",
            true,
            Some("cccccccc-0000-4000-8000-00000000000c"),
            None,
        ),
    ];
    client.report(ReportBatch { reports }).await.unwrap();

    // First rounds: complete, and the three reported devices plus one no-agent object.
    wait_for("the reconciliation of the first round", || {
        let url = api("/api/v1/reconcile");
        async move {
            let v = json_of(url).await;
            v["complete"] == true && v["entries"].as_array().is_some_and(|e| e.len() == 4)
        }
    })
    .await;
    let v = json_of(api("/api/v1/reconcile")).await;
    assert_eq!(count(&v, "joined", "registered"), 1, "{v:#}");
    assert_eq!(count(&v, "failing", "pending"), 1, "{v:#}");
    assert_eq!(count(&v, "joined", "absent"), 1, "{v:#}");
    assert_eq!(count(&v, "no_agent", "pending"), 1, "{v:#}");
    let v = json_of(api("/api/v1/reconcile?client=no_agent")).await;
    assert_eq!(v["entries"][0]["name"], "PC-D", "{v:#}");
    assert_eq!(v["entries"][0]["cloud"]["object_id"], "obj-d");
    assert!(
        v["entries"][0]["cloud"]["resolution"]
            .as_str()
            .unwrap()
            .contains("install the agent")
    );
    let page = json_of(api("/api/v1/reconcile?limit=3")).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = json_of(api(&format!("/api/v1/reconcile?limit=3&cursor={cursor}"))).await;
    assert_eq!(
        page["entries"].as_array().unwrap().len() + rest["entries"].as_array().unwrap().len(),
        4
    );
    let (status, body) = get(api("/api/v1/reconcile?cloud=gone")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cloud") && body.contains("gone"), "{body}");

    let b = json_of(api("/api/v1/devices/PC-B")).await;
    assert_eq!(b["cloud"]["state"], "pending", "{:#}", b["cloud"]);
    assert_eq!(b["cloud"]["client"], "failing");
    assert_eq!(b["cloud"]["matched_by"], "sid");
    assert_eq!(b["cloud"]["trust_type"], "ServerAd");
    assert!(
        b["cloud"]["resolution"]
            .as_str()
            .unwrap()
            .contains("client cause")
    );
    assert!(b["cloud"]["read_at"].is_string());
    let c = json_of(api("/api/v1/devices/PC-C")).await;
    assert_eq!(
        c["cloud"],
        json!({"state": "absent", "client": "joined", "matched_by": null,
        "resolution": c["cloud"]["resolution"].clone()})
    );
    assert!(
        c["cloud"]["resolution"]
            .as_str()
            .unwrap()
            .contains("dsregcmd /leave")
    );

    let (_, metrics) = get(api("/metrics")).await;
    assert!(
        metrics.contains("dsreg_devices_reconciled{client=\"failing\",cloud=\"pending\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dsreg_devices_reconciled{client=\"no_agent\",cloud=\"pending\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dsreg_graph_sync_last_success_timestamp_seconds "),
        "{metrics}"
    );
    assert!(
        metrics.contains("dsreg_graph_sync_errors_total{reason=\"throttled\"} 0"),
        "{metrics}"
    );
    let (status, _) = get(api("/readyz")).await;
    assert_eq!(status, 200);

    // A delta: PC-B's object gets its keys (the device still reports its old failure), PC-A's
    // object is deleted in the cloud.
    {
        let mut st = standin.lock().unwrap();
        st.upsert(json!({"id": "obj-b", "alternativeSecurityIds": [{"type": 2, "key": "eA=="}]}));
        st.remove("obj-a", "deleted");
    }
    wait_for("the delta to show in /metrics", || {
        let url = api("/metrics");
        async move {
            let (_, m) = get(url).await;
            m.contains("dsreg_devices_reconciled{client=\"joined\",cloud=\"absent\"} 2")
                && m.contains("dsreg_devices_reconciled{client=\"failing\",cloud=\"registered\"} 1")
        }
    })
    .await;
    let calls = standin.lock().unwrap().calls.clone();
    assert!(
        calls.iter().filter(|c| *c == "f:0:0").count() == 1
            && calls.iter().any(|c| c.starts_with("d:")),
        "one full round, then deltas: {calls:?}"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
