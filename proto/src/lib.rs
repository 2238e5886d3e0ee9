//! `dsreg-proto`: the boring crate both sides share.
//!
//! - [`v1`]: the `dsreg.v1` wire schema generated from `proto/dsreg/v1/*.proto` (protox +
//!   tonic-prost-build, no system `protoc`), with the `Telemetry` client and server.
//! - [`json`]: serde adapters that give the snapshot its JSON form (DESIGN §3).
//! - [`labels`]: the stable text names of the enums (`hybrid_joined`, `pre-check`, …) used in
//!   JSON, metrics labels and API filters.
//! - [`catalog`]: every documented error code with symbol, phase, cause and resolution, plus
//!   the facility fallback for codes nobody documented.
//! - [`diagnosis`]: snapshot + event records → `join_type` and the current `failure` (DESIGN §4).
//! - [`server_message`]: server-response refinement of a code into a finer cause
//!   (`DSREG_E_DIRECTORY_FAILURE` → `device_not_synced`, `tenant_not_found`, …).
//! - [`diagnostic_tests`]: the one table of the six dsregcmd diagnostic tests (names, printed
//!   labels, phases, the `failing_tests` bit order).
//!
//! No I/O, no async: everything here is pure data and functions over it.

pub mod catalog;
pub mod diagnosis;
pub mod diagnostic_tests;
pub mod json;
pub mod labels;
pub mod server_message;

/// The generated `dsreg.v1` types and gRPC stubs.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/dsreg.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `dsreg/v1/*.proto` (for gRPC reflection, so `grpcurl`
/// works against the collector without the `.proto` files).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dsreg_descriptor.bin"));

pub use v1::{
    EventRecord, ExecutionContext, Failure, JoinType, Phase, Report, ReportAck, ReportBatch,
    ReportResult, ReportStatus, Snapshot, TestStatus,
};

/// Formats a code the way the JSON form and the API print it: lower-case `0x%08x`.
pub fn hex(code: u32) -> String {
    format!("0x{code:08x}")
}

impl Snapshot {
    /// The host name a report stands for: `given` (the envelope's) unless it is empty, else the
    /// `Device Name` the capture printed, else `""`.
    pub fn hostname_or(&self, given: &str) -> String {
        let printed = self
            .device_state
            .as_ref()
            .and_then(|d| d.device_name.as_deref());
        non_empty_or(given, printed)
    }

    /// The AD domain a report stands for: `given` unless it is empty, else the capture's
    /// `DomainName`, else `""`.
    pub fn ad_domain_or(&self, given: &str) -> String {
        let printed = self
            .device_state
            .as_ref()
            .and_then(|d| d.domain_name.as_deref());
        non_empty_or(given, printed)
    }
}

fn non_empty_or(given: &str, printed: Option<&str>) -> String {
    if given.is_empty() {
        printed.unwrap_or_default().to_string()
    } else {
        given.to_string()
    }
}

#[cfg(test)]
mod descriptor_tests {
    use prost::Message;

    #[test]
    fn descriptor_set_names_the_telemetry_service() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = fds
            .file
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .map(move |s| format!("{}.{}", f.package(), s.name()))
            })
            .collect();
        assert!(
            services.contains(&"dsreg.v1.Telemetry".to_string()),
            "{services:?}"
        );
    }
}
