//! Attempts through the store (DESIGN §4, §4b): a window with two sync-lag attempts counts two
//! `device_not_synced` attempts and no `directory_error`; a failing device stays failing when a
//! later report brings no new records; a success clears it; a device that is not targeted is
//! not failing and is counted as such; the metrics agree.

use std::sync::Arc;
use std::time::Duration;

use dsreg_proto::v1::{DeviceState, EventRecord, JoinConfig, Report, ServerResponse};
use dsreg_proto::{ExecutionContext, Snapshot};

use super::*;

fn store(dir: &std::path::Path) -> (Store, Arc<Fleet>, Arc<Metrics>) {
    let fleet = Arc::new(Fleet::new(Duration::from_secs(3600)));
    let metrics = Arc::new(Metrics::new());
    let opts = StoreOptions {
        queue_depth: 8,
        history_per_device: 10,
        readers: 2,
    };
    let store = Store::open(&dir.join("a.db"), opts, fleet.clone(), metrics.clone()).unwrap();
    (store, fleet, metrics)
}

fn rec(id: u32, record_id: u64, time: &str) -> EventRecord {
    EventRecord {
        event_id: id,
        record_id,
        time: Some(time.into()),
        exit_code: matches!(id, 204 | 304).then_some(0x801c_03f2),
        ..Default::default()
    }
}

/// One hourly sync-lag attempt: trigger, 204 with "not found", 304 twice.
fn sync_lag(base: u64, hour: u32) -> Vec<EventRecord> {
    let t = |s: u32| format!("2025-03-09T{hour:02}:00:{s:02}Z");
    let mut answer = rec(204, base + 1, &t(4));
    answer.server_response = Some(ServerResponse {
        error_type: Some("DirectoryError".into()),
        message: Some("The device object by the given id (f87e) is not found.".into()),
        ..Default::default()
    });
    vec![
        rec(4096, base, &t(0)),
        answer,
        rec(304, base + 2, &t(5)),
        rec(304, base + 3, &t(5)),
    ]
}

fn report(n: u64, machine: &str, events: Vec<EventRecord>, config: Option<JoinConfig>) -> Report {
    Report {
        report_id: format!("00000000-0000-4000-8000-{n:012}"),
        machine_id: machine.into(),
        hostname: machine.to_uppercase(),
        ad_domain: "CONTOSO".into(),
        execution_context: ExecutionContext::System as i32,
        collected_at: Some(prost_types::Timestamp {
            seconds: 1_741_500_000 + n as i64,
            nanos: 0,
        }),
        snapshot: Some(Box::new(Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(false),
                domain_joined: Some(true),
                // Each capture differs, as real ones do (so no report is a heartbeat).
                device_name: Some(format!("{machine}.contoso.com #{n}")),
                ..Default::default()
            }),
            join_config: config,
            ..Default::default()
        })),
        events,
        ..Default::default()
    }
}

fn scrape(metrics: &Metrics, fleet: &Fleet) -> String {
    metrics.render(&fleet.counts(now_ms()))
}

fn counter(text: &str, cause: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("dsreg_registration_failures_total{"))
        .filter(|l| l.contains(&format!("cause=\"{cause}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn sync_lag_attempts_count_once_each_and_the_failure_persists_until_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fleet, metrics) = store(dir.path());
    let window = [sync_lag(1, 10), sync_lag(10, 11)].concat();
    let submit = |reports: Vec<Report>| {
        let (store, fleet, metrics) = (store.clone(), fleet.clone(), metrics.clone());
        async move {
            // What the ingest service does with an outcome.
            let out = store.submit(reports).await.unwrap();
            metrics.registration_failures(&fleet, &out.new_attempts);
        }
    };
    submit(vec![report(1, "pc-1", window.clone(), None)]).await;
    let text = scrape(&metrics, &fleet);
    assert_eq!(counter(&text, "device_not_synced"), 2.0, "{text}");
    assert_eq!(counter(&text, "directory_error"), 0.0, "{text}");
    let failing = |fleet: &Fleet| -> Vec<String> {
        fleet
            .counts(now_ms())
            .failing
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| k.cause)
            .collect()
    };
    assert_eq!(failing(&fleet), ["device_not_synced"]);

    // The same records again (a retry under a new id) and a cycle with no new records: still
    // failing, nothing counted twice.
    submit(vec![report(2, "pc-1", window, None)]).await;
    submit(vec![report(3, "pc-1", Vec::new(), None)]).await;
    assert_eq!(failing(&fleet), ["device_not_synced"]);
    let text = scrape(&metrics, &fleet);
    assert_eq!(counter(&text, "device_not_synced"), 2.0, "{text}");

    // The drill-down lists both attempts, newest first.
    let doc = store
        .read(|c| read::device(c, "pc-1", 0, 0))
        .await
        .unwrap()
        .unwrap();
    let times: Vec<_> = doc
        .snapshot
        .attempts
        .iter()
        .map(|a| a.time.clone())
        .collect();
    assert_eq!(
        times,
        [
            Some("2025-03-09T11:00:05Z".to_string()),
            Some("2025-03-09T10:00:05Z".to_string())
        ]
    );

    // A success clears the failure.
    let success = vec![
        rec(4096, 20, "2025-03-09T12:00:00Z"),
        rec(306, 21, "2025-03-09T12:00:09Z"),
    ];
    submit(vec![report(4, "pc-1", success, None)]).await;
    assert!(failing(&fleet).is_empty(), "{:?}", failing(&fleet));
    store.close().await;
}

#[tokio::test]
async fn untargeted_devices_are_not_failing_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fleet, metrics) = store(dir.path());
    let scp = vec![EventRecord {
        exit_code: Some(0x801c_001d),
        ..rec(307, 1, "2025-03-09T10:00:00Z")
    }];
    let dc = JoinConfig {
        product_type: Some("LanmanNT".into()),
        ..Default::default()
    };
    let disabled_task = JoinConfig {
        task_enabled: Some(false),
        ..Default::default()
    };
    store
        .submit(vec![
            report(1, "dc-1", scp.clone(), Some(dc)),
            report(2, "pc-2", scp.clone(), Some(disabled_task)),
            report(3, "srv-3", scp, None),
        ])
        .await
        .unwrap();
    let counts = fleet.counts(now_ms());
    let dc = store
        .read(|c| read::device(c, "dc-1", 0, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dc.snapshot.not_targeted.as_deref(),
        Some("domain_controller"),
        "{:?}",
        dc.snapshot
    );
    assert_eq!(counts.not_targeted.get("domain_controller"), Some(&1));
    let mut causes: Vec<_> = counts.failing.keys().map(|k| k.cause.clone()).collect();
    causes.sort();
    assert_eq!(causes, ["join_task_disabled", "scp_not_configured"]);
    let text = scrape(&metrics, &fleet);
    assert!(
        text.contains("dsreg_devices_not_targeted{reason=\"domain_controller\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("dsreg_devices_not_targeted{reason=\"policy_disabled\"} 0"),
        "{text}"
    );
    // It survives a restart (rebuilt from the stored rows).
    store.close().await;
    let (_store, fleet, _) = self::store(dir.path());
    assert_eq!(
        fleet.counts(now_ms()).not_targeted.get("domain_controller"),
        Some(&1)
    );
}
