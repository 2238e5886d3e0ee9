//! Prometheus metrics (DESIGN §7), rendered on the HTTP port at `/metrics`. The families'
//! names, kinds and help texts are in [`names`].
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
//!   `dsreg_registration_failures_total` per NEW unique failed attempt only,
//!   `dsreg_ingest_refused_total{reason}` per call refused for load or rate (nothing of it
//!   stored, so its reports are counted in `dsreg_reports_total` only when a retry is answered).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::fleet::{FailureFacts, Fleet, FleetCounts, cause_label};

pub mod names;

use names::Kind;

/// A series: family name and label pairs.
type Series = (&'static str, Vec<(&'static str, String)>);

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

/// The `reason` label values of `dsreg_ingest_refused_total` (`Error::refusal_reason`): every
/// one is exported from start, at 0, so a rate over it exists before the first refusal.
pub const REFUSAL_REASONS: [&str; 2] = ["busy", "rate_limited"];

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
        for f in names::FAMILIES {
            let (n, h) = (
                KeyName::from_const_str(f.name),
                SharedString::const_str(f.help),
            );
            match f.kind {
                Kind::Gauge => recorder.describe_gauge(n, f.unit, h),
                Kind::Counter => recorder.describe_counter(n, f.unit, h),
                Kind::Histogram => recorder.describe_histogram(n, f.unit, h),
            }
        }
        recorder
            .register_gauge(
                &key(
                    names::COLLECTOR_BUILD_INFO,
                    &[("version", env!("CARGO_PKG_VERSION").into())],
                ),
                &META,
            )
            .set(1.0);
        for listener in ["grpc", "http"] {
            for reason in crate::conn::REASONS {
                let labels = [("listener", listener.into()), ("reason", reason.into())];
                recorder
                    .register_counter(&key(names::CONNECTIONS_REJECTED_TOTAL, &labels), &META)
                    .increment(0);
            }
            recorder
                .register_gauge(
                    &key(names::CONNECTIONS_OPEN, &[("listener", listener.into())]),
                    &META,
                )
                .set(0.0);
        }
        recorder
            .register_gauge(&key(names::DEVICE_CREDENTIALS, &[]), &META)
            .set(0.0);
        for credential in ["device", "fleet", "open"] {
            recorder
                .register_gauge(
                    &key(
                        names::DEVICES_BY_CREDENTIAL,
                        &[("credential", credential.into())],
                    ),
                    &META,
                )
                .set(0.0);
        }
        for result in ["accepted", "duplicate", "rejected"] {
            recorder
                .register_counter(
                    &key(names::REPORTS_TOTAL, &[("result", result.into())]),
                    &META,
                )
                .increment(0);
        }
        for reason in REFUSAL_REASONS {
            recorder
                .register_counter(
                    &key(names::INGEST_REFUSED_TOTAL, &[("reason", reason.into())]),
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

    /// Counts one Telemetry call refused for `reason` (one of [`REFUSAL_REASONS`], from
    /// `Error::refusal_reason`).
    pub fn refused(&self, reason: &'static str) {
        self.recorder
            .register_counter(
                &key(names::INGEST_REFUSED_TOTAL, &[("reason", reason.into())]),
                &META,
            )
            .increment(1);
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
                        &key(names::REPORTS_TOTAL, &[("result", result.into())]),
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
                .register_counter(&key(names::REGISTRATION_FAILURES_TOTAL, &labels), &META)
                .increment(1);
        }
    }

    /// Records one batch's end-to-end duration.
    pub fn batch_duration(&self, d: Duration) {
        self.recorder
            .register_histogram(&key(names::INGEST_BATCH_DURATION_SECONDS, &[]), &META)
            .record(d.as_secs_f64());
    }

    /// Records one group commit's duration.
    pub fn commit_duration(&self, d: Duration) {
        self.recorder
            .register_histogram(&key(names::STORE_COMMIT_DURATION_SECONDS, &[]), &META)
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
            .register_counter(&key(names::CONNECTIONS_REJECTED_TOTAL, &labels), &META)
            .increment(1);
    }

    /// Adds `delta` to the open connections of `listener`.
    pub fn connections_open(&self, listener: &'static str, delta: f64) {
        let gauge = self.recorder.register_gauge(
            &key(names::CONNECTIONS_OPEN, &[("listener", listener.into())]),
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
            .register_gauge(&key(names::DEVICE_CREDENTIALS, &[]), &META)
            .set(n as f64);
    }

    /// Moves one device from credential kind `before` (if any) to `now`.
    pub fn devices_by_credential(&self, before: Option<&'static str>, now: &'static str) {
        let gauge = |kind: &'static str| {
            self.recorder.register_gauge(
                &key(names::DEVICES_BY_CREDENTIAL, &[("credential", kind.into())]),
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
        let join_types = dsreg_proto::labels::join_type_labels().map(str::to_string);
        for j in join_types {
            let n = counts.devices.get(&j).copied().unwrap_or(0);
            now.push(((names::DEVICES, vec![("join_type", j)]), n as f64));
        }
        for (k, n) in &counts.failing {
            let labels = vec![
                ("phase", k.phase.clone()),
                ("cause", k.cause.clone()),
                ("code", k.code.clone()),
                ("symbol", k.symbol.clone()),
            ];
            now.push(((names::DEVICES_FAILING, labels), *n as f64));
        }
        for t in dsreg_proto::diagnostic_tests::NAMES {
            let n = counts.diagnostic_tests_failing.get(t).copied().unwrap_or(0);
            let series = (
                names::DEVICES_DIAGNOSTIC_TEST_FAILING,
                vec![("test", t.to_string())],
            );
            now.push((series, n as f64));
        }
        for (j, n) in &counts.without_prt {
            let series = (names::DEVICES_WITHOUT_PRT, vec![("join_type", j.clone())]);
            now.push((series, *n as f64));
        }
        for r in dsreg_proto::diagnosis::NOT_TARGETED_REASONS {
            let n = counts.not_targeted.get(r).copied().unwrap_or(0);
            let series = (names::DEVICES_NOT_TARGETED, vec![("reason", r.to_string())]);
            now.push((series, n as f64));
        }
        now.push(((names::DEVICES_STALE, Vec::new()), counts.stale as f64));
        now.push((
            (names::AGENTS_NOT_DELIVERED_1D, Vec::new()),
            counts.not_delivered_1d as f64,
        ));
        now.push((
            (names::AGENTS_SPOOL_OVERFLOWING, Vec::new()),
            counts.spool_overflowing as f64,
        ));
        for (v, n) in &counts.agent_versions {
            let series = (names::AGENT_VERSIONS, vec![("version", v.clone())]);
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
