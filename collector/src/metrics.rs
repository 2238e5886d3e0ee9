//! Prometheus metrics (DESIGN §7), rendered on the HTTP port at `/metrics`.
//!
//! The recorder is built with `PrometheusBuilder::build_recorder()` and owned by this struct
//! (no global recorder, no exporter HTTP listener): each `run` has its own registry, so tests
//! can run several collectors in one process. Every family is described at construction.
//!
//! Invariants:
//! - Gauges are set from [`FleetCounts`] at scrape time. A label set that was exported before
//!   and is now absent is set to 0, so a recovered failure does not linger at its old value.
//!   The label sets come from closed sets, so the remembered set is bounded.
//! - Rendering walks only the aggregate maps: its cost does not grow with the device count.
//! - Agent health gauges (`dsreg_agents_not_delivered_1d`, `dsreg_agents_spool_overflowing`,
//!   `dsreg_agent_versions{version}`) come from the same aggregates; versions are capped.
//! - Counters: `dsreg_reports_total{result}` per report acknowledged,
//!   `dsreg_registration_failures_total` per NEW unique failed attempt only.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// A series: family name and label pairs.
type Series = (&'static str, Vec<(&'static str, String)>);

use dsreg_proto::JoinType;

use crate::fleet::{FailureFacts, Fleet, FleetCounts, TESTS, cause_label};

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

/// Histogram buckets (seconds) for batch and commit durations.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The collector's metrics registry.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    exported: Mutex<HashSet<Series>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds the recorder and describes every family.
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let d = |name: &'static str, kind: char, unit: Option<Unit>, help: &'static str| {
            let (n, h) = (KeyName::from_const_str(name), SharedString::const_str(help));
            match kind {
                'g' => recorder.describe_gauge(n, unit, h),
                'c' => recorder.describe_counter(n, unit, h),
                _ => recorder.describe_histogram(n, unit, h),
            }
        };
        d("dsreg_devices", 'g', None, "Devices by join type.");
        d(
            "dsreg_devices_failing",
            'g',
            None,
            "Devices with a current failure, by phase, cause, code and symbol.",
        );
        d(
            "dsreg_registration_failures_total",
            'c',
            None,
            "Unique failed registration attempts (device, attempt time, code), counted once.",
        );
        d(
            "dsreg_devices_diagnostic_test_failing",
            'g',
            None,
            "Devices whose dsregcmd diagnostic test printed FAIL, by test.",
        );
        d(
            "dsreg_devices_without_prt",
            'g',
            None,
            "Joined devices without an Entra PRT, by join type.",
        );
        d(
            "dsreg_devices_not_targeted",
            'g',
            None,
            "Devices where hybrid join is not intended (not failing), by reason: domain_controller, policy_disabled.",
        );
        d(
            "dsreg_devices_stale",
            'g',
            None,
            "Devices not heard from within the stale window.",
        );
        d(
            "dsreg_agents_not_delivered_1d",
            'g',
            None,
            "Devices whose agent has delivered no report for a day.",
        );
        d(
            "dsreg_agents_spool_overflowing",
            'g',
            None,
            "Devices whose agent reported reports dropped by its spool overflow policy.",
        );
        d(
            "dsreg_agent_versions",
            'g',
            None,
            "Devices by agent version (versions beyond a cap fold into \"other\").",
        );
        d(
            "dsreg_reports_total",
            'c',
            None,
            "Reports acknowledged, by result.",
        );
        d(
            "dsreg_ingest_batch_duration_seconds",
            'h',
            Some(Unit::Seconds),
            "Time to validate, store and acknowledge one batch.",
        );
        d(
            "dsreg_store_commit_duration_seconds",
            'h',
            Some(Unit::Seconds),
            "Time of one SQLite group commit.",
        );
        d(
            "dsreg_collector_build_info",
            'g',
            None,
            "Collector build; value is 1.",
        );
        // Graph sync (issue 13): exported only when the sync is configured.
        d(
            "dsreg_devices_reconciled",
            'g',
            None,
            "Devices by client state and Entra (cloud) state, from the Graph sync.",
        );
        d(
            "dsreg_devices_cloud_pending_over_1d",
            'g',
            None,
            "Not-joined devices whose Entra object has been Pending for over a day, by client cause.",
        );
        d(
            "dsreg_graph_sync_last_success_timestamp_seconds",
            'g',
            Some(Unit::Seconds),
            "Unix time of the last complete Graph device sync round.",
        );
        d(
            "dsreg_graph_sync_started_timestamp_seconds",
            'g',
            Some(Unit::Seconds),
            "Unix time the Graph device sync started in this process.",
        );
        d(
            "dsreg_graph_sync_errors_total",
            'c',
            None,
            "Graph sync incidents (retried or failing), by reason.",
        );
        d(
            "dsreg_graph_names_ambiguous",
            'g',
            None,
            "Computer names not matched to a cloud object because they are ambiguous.",
        );
        d(
            "dsreg_graph_cloud_devices",
            'g',
            None,
            "Device objects stored from Microsoft Graph.",
        );
        recorder
            .register_gauge(
                &key(
                    "dsreg_collector_build_info",
                    &[("version", env!("CARGO_PKG_VERSION").into())],
                ),
                &META,
            )
            .set(1.0);
        d(
            "dsreg_connections_rejected_total",
            'c',
            None,
            "Connections refused or closed by the connection limits, by listener and reason.",
        );
        d(
            "dsreg_connections_open",
            'g',
            None,
            "Connections open now, by listener.",
        );
        for listener in ["grpc", "http"] {
            for reason in crate::conn::REASONS {
                let labels = [("listener", listener.into()), ("reason", reason.into())];
                recorder
                    .register_counter(&key("dsreg_connections_rejected_total", &labels), &META)
                    .increment(0);
            }
            recorder
                .register_gauge(
                    &key("dsreg_connections_open", &[("listener", listener.into())]),
                    &META,
                )
                .set(0.0);
        }
        d(
            "dsreg_device_credentials",
            'g',
            None,
            "Devices holding a device token (enrolled).",
        );
        d(
            "dsreg_devices_by_credential",
            'g',
            None,
            "Devices by the credential of their latest accepted report since start \
             (device token, fleet agent token, or open).",
        );
        recorder
            .register_gauge(&key("dsreg_device_credentials", &[]), &META)
            .set(0.0);
        for credential in ["device", "fleet", "open"] {
            recorder
                .register_gauge(
                    &key(
                        "dsreg_devices_by_credential",
                        &[("credential", credential.into())],
                    ),
                    &META,
                )
                .set(0.0);
        }
        for result in ["accepted", "duplicate", "rejected"] {
            recorder
                .register_counter(
                    &key("dsreg_reports_total", &[("result", result.into())]),
                    &META,
                )
                .increment(0);
        }
        Metrics {
            recorder,
            handle,
            exported: Mutex::new(HashSet::new()),
        }
    }

    /// Counts acknowledged reports by result.
    pub fn reports(&self, accepted: u64, duplicate: u64, rejected: u64) {
        for (result, n) in [
            ("accepted", accepted),
            ("duplicate", duplicate),
            ("rejected", rejected),
        ] {
            if n > 0 {
                self.recorder
                    .register_counter(
                        &key("dsreg_reports_total", &[("result", result.into())]),
                        &META,
                    )
                    .increment(n);
            }
        }
    }

    /// Counts new unique failed attempts; codes fold exactly like the fleet gauges.
    pub fn registration_failures(&self, fleet: &Fleet, attempts: &[FailureFacts]) {
        for a in attempts {
            let labels = [
                ("phase", a.phase.clone()),
                ("cause", cause_label(&a.cause)),
                ("code", fleet.code_label(a.code)),
                ("symbol", a.symbol.clone()),
            ];
            self.recorder
                .register_counter(&key("dsreg_registration_failures_total", &labels), &META)
                .increment(1);
        }
    }

    /// Records one batch's end-to-end duration.
    pub fn batch_duration(&self, d: Duration) {
        self.recorder
            .register_histogram(&key("dsreg_ingest_batch_duration_seconds", &[]), &META)
            .record(d.as_secs_f64());
    }

    /// Records one group commit's duration.
    pub fn commit_duration(&self, d: Duration) {
        self.recorder
            .register_histogram(&key("dsreg_store_commit_duration_seconds", &[]), &META)
            .record(d.as_secs_f64());
    }

    /// Sets one gauge outside the fleet aggregates (the Graph sync's families); labels must
    /// come from closed sets.
    pub fn set_gauge(&self, name: &'static str, labels: &[(&'static str, String)], v: f64) {
        self.recorder
            .register_gauge(&key(name, labels), &META)
            .set(v);
    }

    /// Adds `n` to a counter outside the ingest path (the Graph sync's families).
    pub fn add_counter(&self, name: &'static str, labels: &[(&'static str, String)], n: u64) {
        self.recorder
            .register_counter(&key(name, labels), &META)
            .increment(n);
    }

    /// Counts one connection shed by the limits (`reason` from [`crate::conn::REASONS`]).
    pub fn connection_shed(&self, listener: &'static str, reason: &'static str) {
        let labels = [("listener", listener.into()), ("reason", reason.into())];
        self.recorder
            .register_counter(&key("dsreg_connections_rejected_total", &labels), &META)
            .increment(1);
    }

    /// Adds `delta` to the open connections of `listener`.
    pub fn connections_open(&self, listener: &'static str, delta: f64) {
        let gauge = self.recorder.register_gauge(
            &key("dsreg_connections_open", &[("listener", listener.into())]),
            &META,
        );
        if delta >= 0.0 {
            gauge.increment(delta);
        } else {
            gauge.decrement(-delta);
        }
    }

    /// Sets the number of enrolled devices.
    pub fn device_credentials(&self, n: usize) {
        self.recorder
            .register_gauge(&key("dsreg_device_credentials", &[]), &META)
            .set(n as f64);
    }

    /// Moves one device from credential kind `before` (if any) to `now`.
    pub fn devices_by_credential(&self, before: Option<&'static str>, now: &'static str) {
        let gauge = |kind: &'static str| {
            self.recorder.register_gauge(
                &key(
                    "dsreg_devices_by_credential",
                    &[("credential", kind.into())],
                ),
                &META,
            )
        };
        if let Some(b) = before {
            gauge(b).decrement(1.0);
        }
        gauge(now).increment(1.0);
    }

    /// Sets the gauges from `counts` (zeroing vanished label sets) and renders the text format.
    pub fn render(&self, counts: &FleetCounts) -> String {
        let mut now: Vec<(Series, f64)> = Vec::new();
        // Closed label sets are always exported (0 when empty), so dashboards and alerts see
        // every join type and test from the first scrape instead of "no data".
        let join_types = JoinType::ALL
            .iter()
            .map(|j| j.label().to_string())
            .chain(["unknown".to_string()]);
        for j in join_types {
            let n = counts.devices.get(&j).copied().unwrap_or(0);
            now.push((("dsreg_devices", vec![("join_type", j)]), n as f64));
        }
        for (k, n) in &counts.failing {
            let labels = vec![
                ("phase", k.phase.clone()),
                ("cause", k.cause.clone()),
                ("code", k.code.clone()),
                ("symbol", k.symbol.clone()),
            ];
            now.push((("dsreg_devices_failing", labels), *n as f64));
        }
        for t in TESTS {
            let n = counts.diagnostic_tests_failing.get(t).copied().unwrap_or(0);
            let series = (
                "dsreg_devices_diagnostic_test_failing",
                vec![("test", t.to_string())],
            );
            now.push((series, n as f64));
        }
        for (j, n) in &counts.without_prt {
            let series = ("dsreg_devices_without_prt", vec![("join_type", j.clone())]);
            now.push((series, *n as f64));
        }
        for r in dsreg_proto::diagnosis::NOT_TARGETED_REASONS {
            let n = counts.not_targeted.get(r).copied().unwrap_or(0);
            let series = (
                "dsreg_devices_not_targeted",
                vec![("reason", r.to_string())],
            );
            now.push((series, n as f64));
        }
        now.push((("dsreg_devices_stale", Vec::new()), counts.stale as f64));
        now.push((
            ("dsreg_agents_not_delivered_1d", Vec::new()),
            counts.not_delivered_1d as f64,
        ));
        now.push((
            ("dsreg_agents_spool_overflowing", Vec::new()),
            counts.spool_overflowing as f64,
        ));
        for (v, n) in &counts.agent_versions {
            let series = ("dsreg_agent_versions", vec![("version", v.clone())]);
            now.push((series, *n as f64));
        }
        let mut exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = HashSet::with_capacity(now.len());
        for ((name, labels), v) in now {
            self.recorder
                .register_gauge(&key(name, &labels), &META)
                .set(v);
            current.insert((name, labels));
        }
        for (name, labels) in exported.iter() {
            if !current.contains(&(*name, labels.clone())) {
                self.recorder
                    .register_gauge(&key(name, labels), &META)
                    .set(0.0);
            }
        }
        exported.extend(current);
        drop(exported);
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{DeviceFacts, FailureKey};

    #[test]
    fn families_render_and_vanished_series_are_zeroed() {
        let m = Metrics::new();
        let mut c = FleetCounts::default();
        c.devices.insert("domain_joined".into(), 3);
        let k = FailureKey {
            phase: "join".into(),
            cause: "device_not_synced".into(),
            code: "0x801c03f2".into(),
            symbol: "DSREG_E_DIRECTORY_FAILURE".into(),
        };
        c.failing.insert(k, 2);
        m.reports(2, 1, 0);
        let fleet = Fleet::new(Duration::from_secs(60));
        fleet.set("x", Some(&DeviceFacts::default()), 0);
        m.registration_failures(
            &fleet,
            &[FailureFacts {
                phase: "join".into(),
                cause: "made_up".into(),
                code: Some(0x801c03f2),
                symbol: "DSREG_E_DIRECTORY_FAILURE".into(),
            }],
        );
        m.batch_duration(Duration::from_millis(3));
        let text = m.render(&c);
        assert!(
            text.contains("dsreg_devices{join_type=\"domain_joined\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("dsreg_reports_total{result=\"accepted\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE dsreg_ingest_batch_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("dsreg_collector_build_info{version="),
            "{text}"
        );
        assert!(
            text.contains("cause=\"other\""),
            "unknown cause folds: {text}"
        );
        assert!(text.contains("dsreg_agents_spool_overflowing 0"), "{text}");
        assert!(text.contains("dsreg_agents_not_delivered_1d 0"), "{text}");
        c.agent_versions.insert("1.2.3".into(), 3);
        let text = m.render(&c);
        assert!(
            text.contains("dsreg_agent_versions{version=\"1.2.3\"} 3"),
            "{text}"
        );
        c.failing.clear();
        let text = m.render(&c);
        assert!(
            text.contains("dsreg_devices_failing{phase=\"join\",cause=\"device_not_synced\",code=\"0x801c03f2\",symbol=\"DSREG_E_DIRECTORY_FAILURE\"} 0"),
            "{text}"
        );
    }
}
