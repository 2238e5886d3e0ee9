//! Several collectors, one Prometheus (`docs/scaling.md`, issue 14): two collectors, each
//! receiving its own wrong-tenant wave from `dsreg-agent simulate`, scraped by one real
//! Prometheus with the project's rules file. The fleet totals in Prometheus are the sums of
//! the two collectors' own `/metrics`; `DsregDirectoryFailureSpike` yields one series per
//! cause (no `instance`), whose value is both collectors' attempts together; no dashboard
//! query splits a fleet figure per collector.
//! In process: both collectors run `dsreg_collector::run` inside this test.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dsreg_e2e::agent::{agent_binary, isolated_agent};
use dsreg_e2e::http::http_get;
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::metrics::metric_sum;
use dsreg_e2e::process::{output_text, wait_until};
use dsreg_e2e::prom::{Prometheus, dashboard_queries, rule_expr, rules_file};
use serde_json::Value as Json;

const WAIT: Duration = Duration::from_secs(60);

fn value(sample: &Json) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A series' labels without the ones that name the scrape target.
fn fleet_labels(sample: &Json) -> String {
    let mut m = sample["metric"].as_object().cloned().unwrap_or_default();
    m.remove("instance");
    m.remove("job");
    Json::Object(m).to_string()
}

#[test]
fn two_collectors_one_prometheus_give_fleet_totals_and_one_spike_alert_per_cause() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let collectors: Vec<InProcessCollector> = dirs
        .iter()
        .map(|d| InProcessCollector::start(&d.path().join("dsreg.db"), &[]).unwrap())
        .collect();
    let targets: Vec<String> = collectors.iter().map(|c| c.http.to_string()).collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let prom = Prometheus::start_scraping(&targets, &[rules_file()]).expect("start prometheus");
    let context = || format!("--- prometheus ---\n{}", prom.log());
    wait_until(
        "both collectors to be up",
        WAIT,
        || (prom.result("up == 1").len() == 2).then_some(()),
        context,
    );

    // One wrong-tenant wave per collector (a region each), at the same time.
    let waves: Vec<_> = collectors
        .iter()
        .map(|c| {
            isolated_agent(&agent_binary())
                .args(["simulate", "--collector", &c.grpc_url()])
                .args(["--devices", "900", "--rate", "600", "--duration", "5s"])
                .args(["--scenario", "tenant-not-found"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run dsreg-agent simulate")
        })
        .collect();
    for wave in waves {
        let out = wave
            .wait_with_output()
            .expect("wait for dsreg-agent simulate");
        assert!(
            out.status.success(),
            "simulate failed:\n{}",
            output_text(&out)
        );
    }

    // Prometheus has scraped the final figures of both: its fleet totals are the sums.
    let own = |family: &str| -> f64 {
        collectors
            .iter()
            .map(|c| metric_sum(&http_get(&c.url("/metrics")).unwrap().1, family))
            .sum()
    };
    for family in ["dsreg_devices", "dsreg_registration_failures_total"] {
        let want = own(family);
        assert!(want > 0.0, "{family} is 0 on both collectors");
        wait_until(
            &format!("sum({family}) in Prometheus to be {want}"),
            WAIT,
            || {
                let got = prom.result(&format!("sum({family})")).first().map(value)?;
                ((got - want).abs() < 0.5).then_some(())
            },
            context,
        );
    }

    // The spike alert: one series per cause, counting both collectors' attempts.
    let spike = rule_expr("DsregDirectoryFailureSpike");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let fired = prom.result_at(&spike, now);
    let causes: Vec<&str> = fired
        .iter()
        .filter_map(|s| s["metric"]["cause"].as_str())
        .collect();
    assert_eq!(causes, ["tenant_not_found"], "{fired:?}");
    assert!(fired[0]["metric"].get("instance").is_none(), "{fired:?}");
    let per_instance = prom.result_at(
        "sum by (instance) (increase(dsreg_registration_failures_total\
         {symbol=\"DSREG_E_DIRECTORY_FAILURE\", cause=\"tenant_not_found\"}[30m]))",
        now,
    );
    assert_eq!(
        per_instance.len(),
        2,
        "both collectors saw the wave: {per_instance:?}"
    );
    assert!(
        per_instance.iter().all(|s| value(s) > 0.0),
        "{per_instance:?}"
    );
    let both: f64 = per_instance.iter().map(value).sum();
    let alert = value(&fired[0]);
    assert!(
        (alert - both).abs() < 1e-6 * both.max(1.0),
        "the alert counts {alert}, the two collectors {both}: {per_instance:?}"
    );

    // No dashboard query splits a fleet figure per collector: once the labels naming the
    // scrape target are set aside, no two series of one answer are the same.
    for (file, title, expr) in dashboard_queries() {
        if expr.contains("instance") || expr.contains("up{") || expr.contains("up ") {
            continue;
        }
        let series = prom.result_at(&expr, now);
        let mut seen = BTreeSet::new();
        for s in &series {
            assert!(
                seen.insert(fleet_labels(s)),
                "{file} / {title}: one series per collector, not a fleet figure: {}\n{expr}",
                fleet_labels(s)
            );
        }
    }
}
