//! The metrics, rules and dashboards against the real thing: the `dsreg-collector` binary is
//! fed reports over gRPC (one of them a `DSREG_E_DIRECTORY_FAILURE` device), its `/metrics`
//! passes `promtool check metrics`, and a real Prometheus scraping it evaluates every rule
//! (no rule errors) and every dashboard query (status `success`; the key panels have data).
//! Both processes run on free loopback ports and are killed on drop, also on panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dsreg_e2e::http::http_get;
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::process::{repo_root, wait_until};
use dsreg_e2e::prom::{Prometheus, dashboard_queries, promtool, rules, rules_file};
use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{
    DeviceState, Diagnostics, PreviousRegistration, SsoState, TestResult as DiagTest,
};
use dsreg_proto::{ExecutionContext, Report, ReportBatch, ReportStatus, Snapshot, TestStatus};
use serde_json::Value as Json;

const WAIT: Duration = Duration::from_secs(60);

/// A domain-joined device whose last sync join failed with 0x801c03f2 and this server message.
fn directory_failure(message: &str) -> Snapshot {
    Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: Some(false),
            enterprise_joined: Some(false),
            domain_joined: Some(true),
            domain_name: Some("CORP".into()),
            ..Default::default()
        }),
        diagnostics: Some(Diagnostics {
            previous_registration: Some(PreviousRegistration {
                time: Some("2026-11-24 08:15:02.000 UTC".into()),
                registration_type: Some("sync".into()),
                error_phase: Some("join".into()),
                client_error_code: Some(0x801c_03f2),
                server_error_code: Some("DirectoryError".into()),
                server_message: Some(message.into()),
                https_status: Some(400),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn fleet() -> Vec<Snapshot> {
    let healthy = Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: Some(true),
            enterprise_joined: Some(false),
            domain_joined: Some(true),
            domain_name: Some("CORP".into()),
            ..Default::default()
        }),
        sso_state: Some(SsoState {
            azure_ad_prt: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let no_scp = Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: Some(false),
            enterprise_joined: Some(false),
            domain_joined: Some(true),
            ..Default::default()
        }),
        diagnostics: Some(Diagnostics {
            tests: Some(dsreg_proto::v1::DiagnosticTests {
                ad_connectivity: Some(DiagTest {
                    result: TestStatus::Pass as i32,
                    ..Default::default()
                }),
                ad_configuration: Some(DiagTest {
                    result: TestStatus::Fail as i32,
                    code: Some(0x801c_001d),
                    sub_code: Some(0x8007_0002),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut snaps = vec![
        healthy.clone(),
        healthy,
        directory_failure(
            "AADSTS90002: Tenant 8a3f2c1e-0000-4000-8000-000000000001 not found. Check to make \
             sure you have the correct tenant ID and are signing into the correct cloud.",
        ),
        directory_failure(
            "The device object by the given id (5f1c2a3b-0000-4000-8000-000000000002) is not found.",
        ),
        no_scp,
    ];
    for s in &mut snaps {
        dsreg_proto::diagnosis::apply(s, &[], ExecutionContext::System);
    }
    snaps
}

fn send_fleet(collector: &InProcessCollector) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let reports: Vec<Report> = fleet()
        .into_iter()
        .enumerate()
        .map(|(i, snapshot)| Report {
            report_id: format!("00000000-0000-4000-8000-{:012}", i + 1),
            machine_id: format!("e2e-machine-{i}"),
            hostname: format!("PC-{:04}", i + 1),
            ad_domain: "corp.example".into(),
            agent_version: "e2e".into(),
            collected_at: Some(prost_types::Timestamp {
                seconds: i64::try_from(now.as_secs()).unwrap(),
                nanos: 0,
            }),
            execution_context: ExecutionContext::System as i32,
            snapshot: Some(Box::new(snapshot)),
            ..Default::default()
        })
        .collect();
    let n = reports.len();
    let endpoint = collector.grpc_url();
    let ack = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let mut client = TelemetryClient::connect(endpoint)
                .await
                .map_err(|e| e.to_string())?;
            client
                .report(ReportBatch { reports })
                .await
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("Report over gRPC failed: {e}\n{}", collector.log()))
        .into_inner();
    assert_eq!(ack.results.len(), n);
    for r in &ack.results {
        assert_eq!(
            r.status,
            ReportStatus::Accepted as i32,
            "report {} not accepted: {}",
            r.report_id,
            r.message
        );
    }
}

/// Every link into the collector's API in the dashboards (data links, panel links, text
/// panels), with `${collector_url}` and the table fields of a real failing row substituted.
/// Links with a placeholder device key are left out (the device page is checked separately).
fn dashboard_api_links(base: &str) -> Vec<(String, String)> {
    let fields = [
        ("phase", "join"),
        ("cause", "tenant_not_found"),
        ("code", "0x801c03f2"),
        ("symbol", "DSREG_E_DIRECTORY_FAILURE"),
        ("join_type", "domain_joined"),
    ];
    let dir = repo_root().join("dashboards/grafana");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for (at, _) in text.match_indices("${collector_url}") {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "()\"'`\\".contains(c))
                .unwrap_or(rest.len());
            let mut url = rest[..end].replace("${collector_url}", base);
            for (field, value) in fields {
                url = url.replace(&format!("${{__data.fields.{field}}}"), value);
            }
            if url.contains("{key}") || url.contains("<key>") || url == base {
                continue;
            }
            out.push((name.clone(), url));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The `label_values(metric, label)` queries of the dashboards' query variables.
fn variable_queries() -> Vec<(String, String, String)> {
    let dir = repo_root().join("dashboards/grafana");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["definition"].as_str().unwrap();
            let args = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("unexpected variable query {q}"));
            let (metric, label) = args.split_once(',').expect("label_values(metric, label)");
            out.push((
                path.file_name().unwrap().to_string_lossy().to_string(),
                metric.trim().to_string(),
                label.trim().to_string(),
            ));
        }
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn real_prometheus_scrapes_the_collector_and_evaluates_every_rule_and_panel() {
    let dir = tempfile::tempdir().unwrap();
    let collector = InProcessCollector::start(&dir.path().join("dsreg.db"), &[])
        .expect("start dsreg-collector");
    send_fleet(&collector);

    // (a) The exposition passes promtool's linter and carries the contract's families.
    let (status, metrics) = http_get(&collector.url("/metrics")).unwrap();
    assert_eq!(status, 200, "{metrics}");
    let lint = promtool(&["check", "metrics"], &repo_root(), Some(&metrics));
    assert!(
        lint.success,
        "promtool check metrics failed:\n{}\n--- /metrics ---\n{metrics}",
        lint.text
    );
    for family in [
        "# TYPE dsreg_devices gauge",
        "# TYPE dsreg_devices_failing gauge",
        "# TYPE dsreg_registration_failures_total counter",
        "# TYPE dsreg_reports_total counter",
        "# TYPE dsreg_devices_stale gauge",
        "# TYPE dsreg_ingest_batch_duration_seconds histogram",
        "# TYPE dsreg_store_commit_duration_seconds histogram",
        "# TYPE dsreg_collector_build_info gauge",
    ] {
        assert!(
            metrics.contains(family),
            "missing `{family}` in:\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dsreg_devices_failing{")
                && l.contains("symbol=\"DSREG_E_DIRECTORY_FAILURE\"")
                && l.contains("cause=\"tenant_not_found\"")
                && !l.ends_with(" 0")),
        "the DIRECTORY_FAILURE device is counted as failing:\n{metrics}"
    );

    // (b) A real Prometheus scrapes it every second with the real rules file.
    let prom =
        Prometheus::start(&collector.http.to_string(), &[rules_file()]).expect("start prometheus");
    let context = || format!("--- prometheus log ---\n{}", prom.log());
    wait_until(
        "the collector target to be up and dsreg_devices ingested",
        WAIT,
        || {
            let up = prom.result("up == 1 and on (job, instance) dsreg_collector_build_info");
            (!up.is_empty() && !prom.result("dsreg_devices").is_empty()).then_some(())
        },
        context,
    );
    // Every rule has been evaluated without an error at least once.
    let rule_health = wait_until(
        "every rule to be evaluated",
        WAIT,
        || {
            let v = prom.api("/api/v1/rules").ok()?;
            let rules: Vec<Json> = v["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let done = !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown");
            done.then_some(rules)
        },
        context,
    );
    assert_eq!(rule_health.len(), rules().len());
    for r in &rule_health {
        assert_eq!(
            r["health"], "ok",
            "rule {} failed to evaluate: {}",
            r["name"], r["lastError"]
        );
    }
    wait_until(
        "the phase:dsreg_devices_failing:sum recording rule to have data",
        WAIT,
        || (!prom.result("phase:dsreg_devices_failing:sum").is_empty()).then_some(()),
        context,
    );

    // Every rule expression and every dashboard query is valid PromQL on real data.
    for (name, expr) in rules() {
        let v = prom.query(&expr).unwrap();
        assert_eq!(v["status"], "success", "rule {name}: {v}\n{expr}");
    }
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "found {} dashboard queries",
        queries.len()
    );
    for (file, title, expr) in &queries {
        let v = prom.query(expr).unwrap();
        assert_eq!(v["status"], "success", "{file} / {title}: {v}\n{expr}");
    }

    // The template variables' `label_values(metric, label)` find their values.
    for (file, metric, label) in variable_queries() {
        let found = prom.result(&format!("count by ({label}) ({metric})"));
        assert!(
            found.iter().any(|s| s["metric"][&label].is_string()),
            "{file}: variable label_values({metric}, {label}) finds nothing"
        );
    }

    // Key panels have data: devices by join type, failing by phase (with the join failure).
    let key = |title: &str| -> String {
        queries
            .iter()
            .find(|(_, t, _)| t == title)
            .unwrap_or_else(|| panic!("no panel {title:?}"))
            .2
            .clone()
    };
    let by_join_type = prom.result(&key("Devices by join type"));
    let join_types: Vec<&str> = by_join_type
        .iter()
        .filter_map(|s| s["metric"]["join_type"].as_str())
        .collect();
    assert!(
        join_types.contains(&"hybrid_joined") && join_types.contains(&"domain_joined"),
        "devices by join type: {by_join_type:?}"
    );
    let by_phase = prom.result(&key("Devices failing by phase"));
    let failing_join = by_phase
        .iter()
        .find(|s| s["metric"]["phase"] == "join")
        .unwrap_or_else(|| panic!("no join phase in failing by phase: {by_phase:?}"));
    let n: f64 = failing_join["value"][1].as_str().unwrap().parse().unwrap();
    assert!(n >= 2.0, "two devices fail in join: {failing_join}");
    assert!(
        by_phase.iter().any(|s| s["metric"]["phase"] == "discover"),
        "the missing-SCP device fails in discover: {by_phase:?}"
    );
    let groups = prom.result(&key("Failing device groups (click to list the devices)"));
    assert!(
        groups
            .iter()
            .any(|s| s["metric"]["symbol"] == "DSREG_E_DIRECTORY_FAILURE"),
        "the drill-down table lists the DIRECTORY_FAILURE group: {groups:?}"
    );
    // The collector-absent condition is false while it is scraped (the alert itself may be
    // pending from an evaluation before the first scrape, so ask the condition, not ALERTS).
    let absent = prom.result("absent(dsreg_collector_build_info)");
    assert!(absent.is_empty(), "collector reported absent: {absent:?}");
    // Every dashboard link into /api/v1 or the web UI works against the real collector, and the
    // device page
    // the drill-down text describes answers for a real key.
    let links = dashboard_api_links(&collector.url(""));
    assert!(links.len() >= 10, "dashboard links into the API: {links:?}");
    for (file, url) in &links {
        assert!(
            !url.contains('$'),
            "{file}: unsubstituted variable in {url}"
        );
        let (status, body) = http_get(url).unwrap();
        assert_eq!(status, 200, "{file}: GET {url} → {status}: {body}");
        // Links into the API answer JSON; links to the web UI (`/`, `/ui/…`) answer a page.
        if url.contains("/api/") {
            serde_json::from_str::<Json>(&body)
                .unwrap_or_else(|e| panic!("{file}: {url} is not JSON ({e}): {body}"));
        } else {
            assert!(
                body.starts_with("<!DOCTYPE html>"),
                "{file}: {url} is not a page: {body}"
            );
        }
    }
    let (status, body) = http_get(&collector.url("/api/v1/devices/e2e-machine-2")).unwrap();
    assert_eq!(status, 200, "device page: {body}");

    drop(prom);
    drop(collector);
}
