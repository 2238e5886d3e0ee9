//! Building one report: capture bytes + identity → a [`Report`] envelope ready to spool.
//!
//! The agent parses and diagnoses locally (so `diagnose` and the report agree and the
//! technician's view needs no collector); the collector re-derives the diagnosis with its own
//! catalog on ingest, so a stale agent never pollutes the fleet's label sets.

use dsreg_proto::v1::AgentHealth;
use dsreg_proto::{EventRecord, ExecutionContext, Report};
use time::OffsetDateTime;

use crate::identity::Identity;

/// The version the agent reports.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Raw inputs of one collection.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    /// `dsregcmd /status` output, any encoding.
    pub status: &'a [u8],
    /// Parsed event records read since the last collection.
    pub events: &'a [EventRecord],
    /// The join configuration read this collection, if any (set before the diagnosis).
    pub join_config: Option<&'a crate::joinconfig::Read>,
}

/// Builds the report for one collection. `report_id` is a fresh UUID; it stays the same
/// through every retry because the report is spooled as built.
pub fn build(
    capture: Capture<'_>,
    identity: &Identity,
    context: ExecutionContext,
    now: OffsetDateTime,
    agent: AgentHealth,
) -> Report {
    let mut snapshot = crate::dsregcmd::parse(capture.status);
    if let Some(read) = capture.join_config {
        crate::joinconfig::apply(&mut snapshot, read.clone());
    }
    dsreg_proto::diagnosis::apply(&mut snapshot, capture.events, context);
    let ad_domain = snapshot.ad_domain_or(&identity.ad_domain);
    let hostname = snapshot.hostname_or(&identity.hostname);
    let agent = AgentHealth {
        parse_warnings: u32::try_from(snapshot.warnings.len()).unwrap_or(u32::MAX),
        ..agent
    };
    Report {
        report_id: new_report_id(),
        machine_id: identity.machine_id.clone(),
        hostname,
        ad_domain,
        agent_version: AGENT_VERSION.to_string(),
        os_build: identity.os_build.clone(),
        collected_at: Some(timestamp(now)),
        execution_context: context as i32,
        snapshot: Some(Box::new(snapshot)),
        events: capture.events.to_vec(),
        heartbeat: false,
        agent: Some(agent),
    }
}

/// Converts a time to the protobuf timestamp.
pub fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

/// A fresh report id: a UUIDv7, so ids made later sort later (also within one millisecond:
/// the generator counts). The collector's idempotency index is keyed by it, and time-ordered
/// keys append to the right edge of that B-tree instead of dirtying a random page each.
pub fn new_report_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_carries_identity_and_the_local_diagnosis() {
        let status = include_bytes!(
            "../testdata/dsregcmd/domain-joined-discover-0x801c001d-elevated-ws2022.txt"
        );
        let id = Identity {
            machine_id: "m-1".into(),
            hostname: String::new(),
            ad_domain: String::new(),
            os_build: "10.0.20348".into(),
        };
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let r = build(
            Capture {
                status,
                events: &[],
                join_config: None,
            },
            &id,
            ExecutionContext::System,
            now,
            AgentHealth::default(),
        );
        assert_eq!(r.machine_id, "m-1");
        assert_eq!(
            r.hostname, "rcmlab-ws2022-s.rcmlab.local",
            "falls back to Device Name"
        );
        assert_eq!(r.ad_domain, "RCMLAB", "falls back to DomainName");
        assert_eq!(r.collected_at.unwrap().seconds, 1_700_000_000);
        let parsed = uuid::Uuid::parse_str(&r.report_id).unwrap();
        assert_eq!(parsed.get_version_num(), 7, "time-ordered report ids");
        let snap = r.snapshot.unwrap();
        assert_eq!(snap.join_type, dsreg_proto::JoinType::DomainJoined as i32);
        assert_eq!(snap.failure.unwrap().code, Some(0x801c001d));
        assert_eq!(
            r.agent.unwrap().parse_warnings as usize,
            snap.warnings.len()
        );
    }

    #[test]
    fn report_ids_sort_in_the_order_they_were_made() {
        // The collector's idempotency index is keyed by report_id: ids that grow with time
        // append to its right edge instead of dirtying a random page per report.
        let ids: Vec<String> = (0..2000).map(|_| new_report_id()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids must strictly increase"
        );
    }
}
