//! The paging alert stands on attempts (DESIGN §4, §7b): a wave of re-imaged devices that
//! retry hourly while Entra Connect has not synced them goes agent simulator → collector →
//! a real Prometheus with `dashboards/prometheus/dsreg.rules.yml`, and the expression of
//! `DsregDirectoryFailureSpike` stays empty; a wrong-tenant wave of the same size makes it
//! fire, once, under `tenant_not_found`. The expression is evaluated as the rule states it
//! (its `for: 10m` is the rule's business, not this test's); each wave comes from
//! `dsreg-agent simulate`, whose failing devices log two 4096/204/304 attempts per report and,
//! one in five, run a build without Diagnostic Data.

use std::time::Duration;

use dsreg_e2e::agent::{agent_binary, isolated_agent};
use dsreg_e2e::inproc::InProcessCollector;
use dsreg_e2e::process::output_text;
use dsreg_e2e::process::wait_until;
use dsreg_e2e::prom::{Prometheus, rule_expr, rules_file};

const WAIT: Duration = Duration::from_secs(60);

/// Runs one wave against a fresh collector scraped by a real Prometheus; returns the spike
/// expression's series (their `cause` labels) and the attempts counted per cause.
fn wave(scenario: &str) -> (Vec<String>, Vec<(String, f64)>) {
    let dir = tempfile::tempdir().unwrap();
    let collector = InProcessCollector::start(&dir.path().join("dsreg.db"), &[])
        .expect("start dsreg-collector");
    let prom =
        Prometheus::start(&collector.http.to_string(), &[rules_file()]).expect("start prometheus");
    let context = || {
        format!(
            "--- prometheus ---\n{}\n--- collector ---\n{}",
            prom.log(),
            collector.log()
        )
    };
    wait_until(
        "the collector target to be up",
        WAIT,
        || (!prom.result("up == 1").is_empty()).then_some(()),
        context,
    );
    let started = std::time::Instant::now();
    let out = isolated_agent(&agent_binary())
        .args([
            "simulate",
            "--collector",
            &collector.grpc_url(),
            "--devices",
            "900",
            "--rate",
            "600",
            "--duration",
            "5s",
            "--scenario",
            scenario,
        ])
        .output()
        .expect("run dsreg-agent simulate");
    assert!(
        out.status.success(),
        "simulate failed:\n{}",
        output_text(&out)
    );
    // Let Prometheus scrape the final counters.
    let total = "sum(dsreg_registration_failures_total)";
    let final_value = wait_until(
        "the final counters to be scraped",
        WAIT,
        || {
            let metrics = dsreg_e2e::http::http_get(&collector.url("/metrics"))
                .ok()?
                .1;
            let want: f64 = metrics
                .lines()
                .filter(|l| l.starts_with("dsreg_registration_failures_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            let got = prom.result(total).first()?["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()?;
            (want > 0.0 && (got - want).abs() < 0.5).then_some(got)
        },
        context,
    );
    assert!(final_value > 0.0);
    eprintln!("{scenario}: scraped after {:?}", started.elapsed());
    let causes = prom
        .result(&rule_expr("DsregDirectoryFailureSpike"))
        .iter()
        .filter_map(|s| s["metric"]["cause"].as_str().map(str::to_owned))
        .collect();
    let per_cause = prom
        .result("sum by (cause) (dsreg_registration_failures_total)")
        .iter()
        .filter_map(|s| {
            Some((
                s["metric"]["cause"].as_str()?.to_owned(),
                s["value"][1].as_str()?.parse::<f64>().ok()?,
            ))
        })
        .collect();
    (causes, per_cause)
}

#[test]
fn sync_lag_wave_never_pages_and_a_wrong_tenant_wave_does() {
    let (fired, per_cause) = wave("sync-lag");
    let count = |c: &str| {
        per_cause
            .iter()
            .find(|(k, _)| k == c)
            .map_or(0.0, |(_, n)| *n)
    };
    assert!(
        count("device_not_synced") > 100.0,
        "the wave reached the counter as device_not_synced: {per_cause:?}"
    );
    assert_eq!(count("directory_error"), 0.0, "{per_cause:?}");
    assert!(
        fired.is_empty(),
        "sync lag must not page: {fired:?} ({per_cause:?})"
    );

    let (fired, per_cause) = wave("tenant-not-found");
    assert_eq!(fired, ["tenant_not_found"], "{per_cause:?}");
}
