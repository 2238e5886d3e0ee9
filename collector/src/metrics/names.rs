//! Every metric family the collector exports, in one place: its name, kind, unit and help.
//!
//! The names are a public contract (DESIGN §7): dashboards, alert rules and the end-to-end
//! tests use them, so a name never changes once released; add families, never rename. The
//! collector code uses these constants, never a literal; tests keep literal names on purpose,
//! since they check the contract.

use metrics::Unit;

/// Devices by join type.
pub const DEVICES: &str = "dsreg_devices";
/// Devices with a current failure, by phase, cause, code and symbol.
pub const DEVICES_FAILING: &str = "dsreg_devices_failing";
/// Unique failed registration attempts (device, attempt time, code), counted once.
pub const REGISTRATION_FAILURES_TOTAL: &str = "dsreg_registration_failures_total";
/// Devices whose dsregcmd diagnostic test printed FAIL, by test.
pub const DEVICES_DIAGNOSTIC_TEST_FAILING: &str = "dsreg_devices_diagnostic_test_failing";
/// Joined devices without an Entra PRT, by join type.
pub const DEVICES_WITHOUT_PRT: &str = "dsreg_devices_without_prt";
/// Devices where hybrid join is not intended (not failing), by reason: domain_controller,
/// policy_disabled.
pub const DEVICES_NOT_TARGETED: &str = "dsreg_devices_not_targeted";
/// Devices not heard from within the stale window.
pub const DEVICES_STALE: &str = "dsreg_devices_stale";
/// Devices whose agent has delivered no report for a day.
pub const AGENTS_NOT_DELIVERED_1D: &str = "dsreg_agents_not_delivered_1d";
/// Devices whose agent reported reports dropped by its spool overflow policy.
pub const AGENTS_SPOOL_OVERFLOWING: &str = "dsreg_agents_spool_overflowing";
/// Devices by agent version (versions beyond a cap fold into `other`).
pub const AGENT_VERSIONS: &str = "dsreg_agent_versions";
/// Reports acknowledged, by result.
pub const REPORTS_TOTAL: &str = "dsreg_reports_total";
/// Telemetry calls refused before anything was stored, by reason: `busy` (the writer queue is
/// full, or would hold the call past its time bound), `rate_limited` (the caller's rate limit).
pub const INGEST_REFUSED_TOTAL: &str = "dsreg_ingest_refused_total";
/// Time to validate, store and acknowledge one batch.
pub const INGEST_BATCH_DURATION_SECONDS: &str = "dsreg_ingest_batch_duration_seconds";
/// Time of one SQLite group commit.
pub const STORE_COMMIT_DURATION_SECONDS: &str = "dsreg_store_commit_duration_seconds";
/// Collector build; value is 1.
pub const COLLECTOR_BUILD_INFO: &str = "dsreg_collector_build_info";
// Graph sync (issue 13): exported only when the sync is configured.

/// Devices by client state and Entra (cloud) state, from the Graph sync.
pub const DEVICES_RECONCILED: &str = "dsreg_devices_reconciled";
/// Not-joined devices whose Entra object has been Pending for over a day, by client cause.
pub const DEVICES_CLOUD_PENDING_OVER_1D: &str = "dsreg_devices_cloud_pending_over_1d";
/// Unix time of the last complete Graph device sync round.
pub const GRAPH_SYNC_LAST_SUCCESS_TIMESTAMP_SECONDS: &str =
    "dsreg_graph_sync_last_success_timestamp_seconds";
/// Unix time the Graph device sync started in this process.
pub const GRAPH_SYNC_STARTED_TIMESTAMP_SECONDS: &str = "dsreg_graph_sync_started_timestamp_seconds";
/// Graph sync incidents (retried or failing), by reason.
pub const GRAPH_SYNC_ERRORS_TOTAL: &str = "dsreg_graph_sync_errors_total";
/// Computer names not matched to a cloud object because they are ambiguous.
pub const GRAPH_NAMES_AMBIGUOUS: &str = "dsreg_graph_names_ambiguous";
/// Device objects stored from Microsoft Graph.
pub const GRAPH_CLOUD_DEVICES: &str = "dsreg_graph_cloud_devices";
/// Connections refused or closed by the connection limits, by listener and reason.
pub const CONNECTIONS_REJECTED_TOTAL: &str = "dsreg_connections_rejected_total";
/// Connections open now, by listener.
pub const CONNECTIONS_OPEN: &str = "dsreg_connections_open";
/// Devices holding a device token (enrolled).
pub const DEVICE_CREDENTIALS: &str = "dsreg_device_credentials";
/// Devices by the credential of their latest accepted report since start (device token, fleet
/// agent token, or open).
pub const DEVICES_BY_CREDENTIAL: &str = "dsreg_devices_by_credential";

/// How a family is recorded.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// A family as described at start-up.
pub(super) struct Family {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) unit: Option<Unit>,
    pub(super) help: &'static str,
}

/// Every family, described once at start-up (`Metrics::new`).
pub(super) const FAMILIES: &[Family] = &[
    Family {
        name: DEVICES,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices by join type.",
    },
    Family {
        name: DEVICES_FAILING,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices with a current failure, by phase, cause, code and symbol.",
    },
    Family {
        name: REGISTRATION_FAILURES_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Unique failed registration attempts (device, attempt time, code), counted once.",
    },
    Family {
        name: DEVICES_DIAGNOSTIC_TEST_FAILING,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices whose dsregcmd diagnostic test printed FAIL, by test.",
    },
    Family {
        name: DEVICES_WITHOUT_PRT,
        kind: Kind::Gauge,
        unit: None,
        help: "Joined devices without an Entra PRT, by join type.",
    },
    Family {
        name: DEVICES_NOT_TARGETED,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices where hybrid join is not intended (not failing), by reason: domain_controller, policy_disabled.",
    },
    Family {
        name: DEVICES_STALE,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices not heard from within the stale window.",
    },
    Family {
        name: AGENTS_NOT_DELIVERED_1D,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices whose agent has delivered no report for a day.",
    },
    Family {
        name: AGENTS_SPOOL_OVERFLOWING,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices whose agent reported reports dropped by its spool overflow policy.",
    },
    Family {
        name: AGENT_VERSIONS,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices by agent version (versions beyond a cap fold into \"other\").",
    },
    Family {
        name: REPORTS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Reports acknowledged, by result.",
    },
    Family {
        name: INGEST_BATCH_DURATION_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time to validate, store and acknowledge one batch.",
    },
    Family {
        name: STORE_COMMIT_DURATION_SECONDS,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time of one SQLite group commit.",
    },
    Family {
        name: COLLECTOR_BUILD_INFO,
        kind: Kind::Gauge,
        unit: None,
        help: "Collector build; value is 1.",
    },
    Family {
        name: DEVICES_RECONCILED,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices by client state and Entra (cloud) state, from the Graph sync.",
    },
    Family {
        name: DEVICES_CLOUD_PENDING_OVER_1D,
        kind: Kind::Gauge,
        unit: None,
        help: "Not-joined devices whose Entra object has been Pending for over a day, by client cause.",
    },
    Family {
        name: GRAPH_SYNC_LAST_SUCCESS_TIMESTAMP_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "Unix time of the last complete Graph device sync round.",
    },
    Family {
        name: GRAPH_SYNC_STARTED_TIMESTAMP_SECONDS,
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "Unix time the Graph device sync started in this process.",
    },
    Family {
        name: GRAPH_SYNC_ERRORS_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Graph sync incidents (retried or failing), by reason.",
    },
    Family {
        name: GRAPH_NAMES_AMBIGUOUS,
        kind: Kind::Gauge,
        unit: None,
        help: "Computer names not matched to a cloud object because they are ambiguous.",
    },
    Family {
        name: GRAPH_CLOUD_DEVICES,
        kind: Kind::Gauge,
        unit: None,
        help: "Device objects stored from Microsoft Graph.",
    },
    Family {
        name: INGEST_REFUSED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Telemetry calls refused before anything was stored, by reason: busy (the writer queue is full or would hold the call past its time bound), rate_limited (the caller's rate limit). The caller retries after the answer's retry-after-ms.",
    },
    Family {
        name: CONNECTIONS_REJECTED_TOTAL,
        kind: Kind::Counter,
        unit: None,
        help: "Connections refused or closed by the connection limits, by listener and reason.",
    },
    Family {
        name: CONNECTIONS_OPEN,
        kind: Kind::Gauge,
        unit: None,
        help: "Connections open now, by listener.",
    },
    Family {
        name: DEVICE_CREDENTIALS,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices holding a device token (enrolled).",
    },
    Family {
        name: DEVICES_BY_CREDENTIAL,
        kind: Kind::Gauge,
        unit: None,
        help: "Devices by the credential of their latest accepted report since start (device token, fleet agent token, or open).",
    },
];
