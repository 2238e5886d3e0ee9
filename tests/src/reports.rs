//! The one report builder of the end-to-end tests: a valid `dsreg.v1.Report` for device `n`
//! (domain joined, not Entra joined, no failure), refined by chained setters.
//!
//! Invariants: `report_id` is a UUID derived from `n` alone ([`report_id`]), so sending the same
//! `n` twice is a duplicate by design; the machine id and hostname are `{prefix}-{n:06}` and
//! `{PREFIX}-{n:06}` unless set; nothing here reads the clock.

use dsreg_proto::v1::telemetry_client::TelemetryClient;
use dsreg_proto::v1::{
    DeviceState, Diagnostics, ExtraField, PreviousRegistration, Report, ReportAck, ReportBatch,
    ReportStatus, Snapshot,
};
use tonic::transport::Channel;

/// The report id of report `n`: `00000000-0000-4000-8000-{n:012}` (a valid UUID).
pub fn report_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A report under construction; see [`ReportBuilder::new`].
#[derive(Debug, Clone)]
pub struct ReportBuilder(Report);

impl ReportBuilder {
    /// Report `n` of device `{prefix}-{n:06}` (hostname upper-cased): domain joined, not
    /// Entra joined, no previous registration.
    pub fn new(n: u64, prefix: &str) -> ReportBuilder {
        let machine = format!("{prefix}-{n:06}");
        ReportBuilder(Report {
            report_id: report_id(n),
            hostname: machine.to_uppercase(),
            machine_id: machine,
            snapshot: Some(Box::new(Snapshot {
                device_state: Some(DeviceState {
                    azure_ad_joined: Some(false),
                    domain_joined: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        })
    }

    /// Sets the machine id.
    pub fn machine(mut self, id: impl Into<String>) -> Self {
        self.0.machine_id = id.into();
        self
    }

    /// Sets the hostname.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.0.hostname = name.into();
        self
    }

    /// Sets `AzureAdJoined`.
    pub fn entra_joined(mut self, joined: bool) -> Self {
        self.state().azure_ad_joined = Some(joined);
        self
    }

    /// Sets the device state's `DomainName`.
    pub fn domain_name(mut self, name: &str) -> Self {
        self.state().domain_name = Some(name.into());
        self
    }

    /// Sets `collected_at` to `seconds` since the epoch.
    pub fn collected_at(mut self, seconds: i64) -> Self {
        self.0.collected_at = Some(prost_types::Timestamp { seconds, nanos: 0 });
        self
    }

    /// A failed join at `time` (RFC 3339) with client error `code`, in the `join` phase.
    pub fn failure(mut self, time: &str, code: u32) -> Self {
        *self.previous() = PreviousRegistration {
            time: Some(time.into()),
            error_phase: Some("join".into()),
            client_error_code: Some(code),
            ..Default::default()
        };
        self
    }

    /// The server's error code and message on the previous registration (after
    /// [`ReportBuilder::failure`]).
    pub fn server_error(mut self, code: &str, message: &str) -> Self {
        let p = self.previous();
        p.server_error_code = Some(code.into());
        p.server_message = Some(message.into());
        self
    }

    /// Appends an `extra` line.
    pub fn extra(mut self, section: &str, key: &str, value: impl Into<String>) -> Self {
        self.snapshot().extra.push(ExtraField {
            section: section.into(),
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Replaces the whole snapshot.
    pub fn with_snapshot(mut self, snapshot: Snapshot) -> Self {
        self.0.snapshot = Some(Box::new(snapshot));
        self
    }

    /// Changes the report in ways no setter covers.
    pub fn map(mut self, f: impl FnOnce(&mut Report)) -> Self {
        f(&mut self.0);
        self
    }

    /// The report.
    pub fn build(self) -> Report {
        self.0
    }

    fn snapshot(&mut self) -> &mut Snapshot {
        self.0.snapshot.get_or_insert_default()
    }

    fn state(&mut self) -> &mut DeviceState {
        self.snapshot()
            .device_state
            .get_or_insert_with(DeviceState::default)
    }

    fn previous(&mut self) -> &mut PreviousRegistration {
        self.snapshot()
            .diagnostics
            .get_or_insert_with(Diagnostics::default)
            .previous_registration
            .get_or_insert_with(PreviousRegistration::default)
    }
}

/// A batch of `reports`.
pub fn batch(reports: impl IntoIterator<Item = Report>) -> ReportBatch {
    ReportBatch {
        reports: reports.into_iter().collect(),
    }
}

/// Sends `reports` in one `Report` call; fails unless every one is answered ACCEPTED.
pub async fn send_accepted(
    client: &mut TelemetryClient<Channel>,
    reports: Vec<Report>,
) -> anyhow::Result<ReportAck> {
    let ack = client.report(batch(reports)).await?.into_inner();
    if let Some(r) = ack
        .results
        .iter()
        .find(|r| r.status() != ReportStatus::Accepted)
    {
        anyhow::bail!(
            "report {} answered {:?} {}, not ACCEPTED",
            r.report_id,
            r.status(),
            r.message
        );
    }
    Ok(ack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_sets_what_it_names_and_keeps_the_rest() {
        let r = ReportBuilder::new(7, "dev")
            .failure("2026-11-30T08:00:00Z", 0x801c_03f2)
            .server_error("DirectoryError", "gone")
            .extra("pad", "pad", "x")
            .build();
        assert_eq!(r.report_id, "00000000-0000-4000-8000-000000000007");
        assert_eq!(
            (r.machine_id.as_str(), r.hostname.as_str()),
            ("dev-000007", "DEV-000007")
        );
        let s = r.snapshot.expect("snapshot");
        assert_eq!(s.device_state.and_then(|d| d.domain_joined), Some(true));
        let p = s
            .diagnostics
            .and_then(|d| d.previous_registration)
            .expect("previous");
        assert_eq!(p.client_error_code, Some(0x801c_03f2));
        assert_eq!(p.server_message.as_deref(), Some("gone"));
        assert_eq!(s.extra.len(), 1);
    }
}
