//! The fleet's data types: what the store tells the fleet about a device ([`DeviceFacts`],
//! [`FailureFacts`]) and what the fleet answers ([`FleetCounts`], keyed by [`FailureKey`]).
//!
//! Invariant: every label a [`FleetCounts`] holds comes from a closed set (see the `fleet`
//! module docs); the facts hold raw values, folded only when counted.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the store knows about a device's current state, as stored in the `devices` row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    /// Join type label (`hybrid_joined`, …, or `unknown`).
    pub join_type: String,
    /// The current failure, if any.
    pub failure: Option<FailureFacts>,
    /// Bit `i` set when `dsreg_proto::diagnostic_tests::DIAGNOSTIC_TESTS[i]` printed FAIL.
    pub failing_tests: u8,
    /// A joined device that reported no Entra PRT.
    pub without_prt: bool,
    /// The agent version of the part the device view takes agent health from.
    pub agent_version: String,
    /// That agent reported reports dropped by its spool overflow policy.
    pub spool_overflowing: bool,
    /// Why hybrid join is not intended for the device (one of
    /// [`dsreg_proto::diagnosis::NOT_TARGETED_REASONS`]), or `None` when it is targeted.
    pub not_targeted: Option<&'static str>,
}

/// The closed-set reason for a stored or reported `not_targeted` text (`None` for anything
/// else, which keeps `dsreg_devices_not_targeted` bounded).
pub fn not_targeted_reason(reason: &str) -> Option<&'static str> {
    dsreg_proto::diagnosis::NOT_TARGETED_REASONS
        .into_iter()
        .find(|r| *r == reason)
}

/// A failure as stored: raw code, labels not yet folded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailureFacts {
    /// Phase label.
    pub phase: String,
    /// Cause id.
    pub cause: String,
    /// The main code.
    pub code: Option<u32>,
    /// Catalog symbol, `""` when unknown.
    pub symbol: String,
}

/// A failure group's labels (what `dsreg_devices_failing` is keyed by).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FailureKey {
    /// Phase label.
    pub phase: String,
    /// Cause id from the closed catalog set, or `other`.
    pub cause: String,
    /// `0x%08x`, `other`, or `""` when the failure had no code.
    pub code: String,
    /// Catalog symbol or `""`.
    pub symbol: String,
}

/// A cheap copy of the aggregates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetCounts {
    /// Devices by join type.
    pub devices: BTreeMap<String, u64>,
    /// Failing devices by (phase, cause, code, symbol).
    #[serde(serialize_with = "failing_as_list")]
    pub failing: BTreeMap<FailureKey, u64>,
    /// Devices per failing diagnostic test.
    pub diagnostic_tests_failing: BTreeMap<String, u64>,
    /// Joined devices without a PRT, by join type.
    pub without_prt: BTreeMap<String, u64>,
    /// Devices not heard from within the stale window.
    pub stale: u64,
    /// All devices.
    pub total: u64,
    /// Devices by agent version (`other` beyond [`MAX_AGENT_VERSIONS`](super::MAX_AGENT_VERSIONS) distinct versions).
    pub agent_versions: BTreeMap<String, u64>,
    /// Devices whose agent reported `spool_dropped > 0`.
    pub spool_overflowing: u64,
    /// Devices not meant to join, by reason (`domain_controller`, `policy_disabled`).
    pub not_targeted: BTreeMap<String, u64>,
    /// Devices with no delivery (no report received) for [`NOT_DELIVERED_AFTER`](super::NOT_DELIVERED_AFTER).
    pub not_delivered_1d: u64,
}

fn failing_as_list<S: serde::Serializer>(
    m: &BTreeMap<FailureKey, u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Row<'a> {
        #[serde(flatten)]
        key: &'a FailureKey,
        devices: u64,
    }
    s.collect_seq(m.iter().map(|(key, &devices)| Row { key, devices }))
}
