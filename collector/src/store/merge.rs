//! One device view from two execution contexts (DESIGN §8: "say which context each field came
//! from").
//!
//! The SYSTEM service sees the device: Device State, Device Details, Tenant Details, the
//! diagnostics (join tests, Previous Registration), proxy settings and the event log. The
//! per-user logon task (`send --user-context`) sees the user: User State, SSO State (the PRT),
//! work accounts and the Ngc prerequisite check. The store keeps the latest snapshot of each
//! part per device (`device_parts`) and serves their merge: every section comes from the part
//! that is authoritative for it, and falls back to the other part when that one lacks it.
//! A report without a context (`EXECUTION_CONTEXT_UNSPECIFIED`, older agents) is the device
//! part. Join type and failure are then re-derived on the merged snapshot.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use dsreg_proto::{EventRecord, ExecutionContext, Report, Snapshot, diagnosis};
use prost::Message;
use rusqlite::Connection;

use super::columns::positions;

/// Which stored part a report updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// SYSTEM (or unspecified) context: device-level sections and events.
    Device,
    /// The signed-in user's context: user-level sections.
    User,
}

impl Part {
    /// The part a report of `context` updates.
    pub fn of(context: ExecutionContext) -> Part {
        match context {
            ExecutionContext::User => Part::User,
            _ => Part::Device,
        }
    }

    /// The `device_parts.part` value and the API key.
    pub fn label(self) -> &'static str {
        match self {
            Part::Device => "device",
            Part::User => "user",
        }
    }

    /// SQL that names this part's columns (`{p}_report_id`, …), built by `build` once per part
    /// and process: the writer runs such statements for every report, and the statement cache
    /// is keyed by the text, so building it per call cost a `format!` each time.
    pub(crate) fn sql(
        self,
        cache: &'static [OnceLock<String>; 2],
        build: fn(Part) -> String,
    ) -> &'static str {
        cache[self as usize].get_or_init(|| build(self))
    }
}

/// Where each section of a merged snapshot came from: section name → part label.
pub type Provenance = BTreeMap<&'static str, &'static str>;

/// Merges the latest device part and the latest user part (either may be missing).
/// Returns the merged snapshot (join type and failure NOT yet derived) and its provenance.
pub fn merge(device: Option<&Snapshot>, user: Option<&Snapshot>) -> (Snapshot, Provenance) {
    let mut out = Snapshot::default();
    let mut prov = Provenance::new();
    // Picks a section from the preferred part, else from the other one.
    macro_rules! take {
        ($field:ident, $preferred:expr, $present:expr) => {{
            let (first, second, labels) = match $preferred {
                Part::Device => (device, user, ("device", "user")),
                Part::User => (user, device, ("user", "device")),
            };
            let present = $present;
            if let Some(s) = first.filter(|s| present(s)) {
                out.$field = s.$field.clone();
                prov.insert(stringify!($field), labels.0);
            } else if let Some(s) = second.filter(|s| present(s)) {
                out.$field = s.$field.clone();
                prov.insert(stringify!($field), labels.1);
            }
        }};
    }
    take!(device_state, Part::Device, |s: &Snapshot| s
        .device_state
        .is_some());
    take!(device_details, Part::Device, |s: &Snapshot| s
        .device_details
        .is_some());
    take!(tenant_details, Part::Device, |s: &Snapshot| s
        .tenant_details
        .is_some());
    take!(diagnostics, Part::Device, |s: &Snapshot| s
        .diagnostics
        .is_some());
    take!(
        ie_proxy_config_for_system_account,
        Part::Device,
        |s: &Snapshot| s.ie_proxy_config_for_system_account.is_some()
    );
    take!(url_specific_proxy_config, Part::Device, |s: &Snapshot| s
        .url_specific_proxy_config
        .is_some());
    take!(
        win_http_default_proxy_config,
        Part::Device,
        |s: &Snapshot| s.win_http_default_proxy_config.is_some()
    );
    take!(user_state, Part::User, |s: &Snapshot| s
        .user_state
        .is_some());
    take!(sso_state, Part::User, |s: &Snapshot| s.sso_state.is_some());
    take!(work_accounts, Part::User, |s: &Snapshot| !s
        .work_accounts
        .is_empty());
    take!(ngc_prerequisite_check, Part::User, |s: &Snapshot| s
        .ngc_prerequisite_check
        .is_some());
    take!(
        ie_proxy_config_for_current_user,
        Part::User,
        |s: &Snapshot| s.ie_proxy_config_for_current_user.is_some()
    );
    // The join task, registry and policy are machine-wide, read by the SYSTEM service.
    take!(join_config, Part::Device, |s: &Snapshot| s
        .join_config
        .is_some());
    // Unmapped lines and parse warnings of both parts, device part first: nothing is dropped.
    for s in [device, user].into_iter().flatten() {
        out.extra.extend(s.extra.iter().cloned());
        out.warnings.extend(s.warnings.iter().cloned());
    }
    (out, prov)
}

/// The context the merged snapshot's PRT state was collected in (what "no PRT" may be judged
/// by): the user part's when SSO State came from it, else the device part's.
pub fn sso_context(
    prov: &Provenance,
    device: Option<ExecutionContext>,
    user: Option<ExecutionContext>,
) -> ExecutionContext {
    match prov.get("sso_state") {
        Some(&"user") => user.unwrap_or(ExecutionContext::User),
        _ => device.unwrap_or(ExecutionContext::Unspecified),
    }
}

/// One stored part of a device (`device_parts` row).
#[derive(Debug, Clone)]
pub struct PartRow {
    /// Which part.
    pub part: Part,
    /// The report's own execution context.
    pub context: ExecutionContext,
    /// The report that last updated it.
    pub report_id: String,
    /// When the agent collected it (unix ms).
    pub collected_at: Option<i64>,
    /// When the collector received it (unix ms).
    pub received_at: i64,
    /// Its snapshot as sent.
    pub snapshot: Snapshot,
    /// Its event records.
    pub events: Vec<EventRecord>,
    /// Agent health of that report.
    pub agent: AgentRow,
}

/// Agent health as stored (from a report's `AgentHealth` and `agent_version`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRow {
    /// dsreg-agent version.
    pub version: String,
    /// Reports waiting in its spool.
    pub spool_depth: i64,
    /// Reports its spool dropped since install.
    pub spool_dropped: i64,
    /// Its last acknowledged delivery (unix ms).
    pub last_delivery: Option<i64>,
    /// Parse warnings of its snapshot.
    pub parse_warnings: i64,
}

fn corrupt(i: usize, e: prost::DecodeError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
}

/// The stored parts of a device, device part first, with the device row's copies of each
/// part's latest times (see [`parts`]).
const PARTS: &str = "SELECT p.part, p.context, p.report_id, p.collected_at, p.received_at,
        p.snapshot, p.events, p.agent_version, p.spool_depth, p.spool_dropped, p.last_delivery,
        p.parse_warnings,
        d.device_report_id, d.device_collected_at, d.device_received_at, d.device_last_delivery,
        d.user_report_id, d.user_collected_at, d.user_received_at, d.user_last_delivery
     FROM device_parts p LEFT JOIN devices d ON d.machine_id = p.machine_id
     WHERE p.machine_id = ?1 ORDER BY p.part";

/// Where [`PARTS`]' columns are, found by name once (the SQL is fixed; this read runs for
/// every full write).
#[derive(Debug, Clone, Copy)]
struct PartsColumns {
    /// part, context, report_id, collected_at, received_at, snapshot, events, agent_version,
    /// spool_depth, spool_dropped, last_delivery, parse_warnings.
    part: [usize; 12],
    /// The device row's report id, collected, received and last delivery of the device part,
    /// then of the user part.
    latest: [[usize; 4]; 2],
}

impl PartsColumns {
    fn of(stmt: &rusqlite::Statement<'_>) -> rusqlite::Result<PartsColumns> {
        static FOUND: OnceLock<PartsColumns> = OnceLock::new();
        if let Some(at) = FOUND.get() {
            return Ok(*at);
        }
        let part = positions(
            stmt,
            [
                "part",
                "context",
                "report_id",
                "collected_at",
                "received_at",
                "snapshot",
                "events",
                "agent_version",
                "spool_depth",
                "spool_dropped",
                "last_delivery",
                "parse_warnings",
            ],
        )?;
        let latest = [
            positions(
                stmt,
                [
                    "device_report_id",
                    "device_collected_at",
                    "device_received_at",
                    "device_last_delivery",
                ],
            )?,
            positions(
                stmt,
                [
                    "user_report_id",
                    "user_collected_at",
                    "user_received_at",
                    "user_last_delivery",
                ],
            )?,
        ];
        Ok(*FOUND.get_or_init(|| PartsColumns { part, latest }))
    }
}

/// The stored parts of a device, device part first. A part's report id, times and last
/// delivery come from the device row when it has them (heartbeats write only that row, see
/// the schema's step 3), else from the part row. `written` is the part the caller has just
/// written and not yet copied to the device row (the writer's full path, which writes the
/// device row once, after the merge): its part row is current.
pub fn parts(
    conn: &Connection,
    machine_id: &str,
    written: Option<Part>,
) -> rusqlite::Result<Vec<PartRow>> {
    let mut stmt = conn.prepare_cached(PARTS)?;
    let PartsColumns {
        part:
            [
                part_at,
                context_at,
                id_at,
                collected_at_at,
                received_at_at,
                snapshot_at,
                events_at,
                version_at,
                depth_at,
                dropped_at,
                delivery_at,
                warnings_at,
            ],
        latest,
    } = PartsColumns::of(&stmt)?;
    let rows = stmt.query_map([machine_id], |row| {
        let snapshot: Vec<u8> = row.get(snapshot_at)?;
        let events: Option<Vec<u8>> = row.get(events_at)?;
        let part = match row.get_ref(part_at)?.as_str()? {
            "user" => Part::User,
            _ => Part::Device,
        };
        // The device row's copy of this part's latest times and id, when it has one.
        let [id, collected, received, delivery] = latest[part as usize];
        let latest: Option<i64> = match written {
            Some(w) if w == part => None,
            _ => row.get(received)?,
        };
        let (report_id, collected_at, received_at, last_delivery) = match latest {
            Some(received) => (
                row.get(id)?,
                row.get(collected)?,
                received,
                row.get(delivery)?,
            ),
            None => (
                row.get(id_at)?,
                row.get(collected_at_at)?,
                row.get(received_at_at)?,
                row.get(delivery_at)?,
            ),
        };
        Ok(PartRow {
            part,
            context: ExecutionContext::try_from(row.get::<_, i32>(context_at)?).unwrap_or_default(),
            report_id,
            collected_at,
            received_at,
            snapshot: Snapshot::decode(snapshot.as_slice()).map_err(|e| corrupt(snapshot_at, e))?,
            events: match events {
                Some(b) => {
                    Report::decode(b.as_slice())
                        .map_err(|e| corrupt(events_at, e))?
                        .events
                }
                None => Vec::new(),
            },
            agent: AgentRow {
                version: row.get(version_at)?,
                spool_depth: row.get(depth_at)?,
                spool_dropped: row.get(dropped_at)?,
                last_delivery,
                parse_warnings: row.get(warnings_at)?,
            },
        })
    })?;
    rows.collect()
}

/// The device view of stored parts: merged snapshot with join type and failure derived, its
/// provenance, the context its PRT state is judged in, and the agent health it shows (the
/// device part's agent — the service — else the user part's).
#[derive(Debug, Clone)]
pub struct View {
    /// The merged, re-diagnosed snapshot.
    pub snapshot: Snapshot,
    /// Section → part.
    pub provenance: Provenance,
    /// The context "no PRT" is judged in.
    pub context: ExecutionContext,
    /// The agent health shown for the device.
    pub agent: AgentRow,
}

/// Builds the [`View`] of `parts` (as returned by [`parts`]).
pub fn view(parts: &[PartRow]) -> View {
    let device = parts.iter().find(|p| p.part == Part::Device);
    let user = parts.iter().find(|p| p.part == Part::User);
    let (mut snapshot, provenance) = merge(device.map(|p| &p.snapshot), user.map(|p| &p.snapshot));
    let context = sso_context(
        &provenance,
        device.map(|p| p.context),
        user.map(|p| p.context),
    );
    // Events are read by the SYSTEM service; a user part's events only when there is no
    // device part.
    let events = device.or(user).map_or(&[][..], |p| p.events.as_slice());
    diagnosis::apply(&mut snapshot, events, context);
    View {
        snapshot,
        provenance,
        context,
        agent: device.or(user).map(|p| p.agent.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::v1::{DeviceState, SsoState, UserState};

    #[test]
    fn sections_come_from_their_part_and_fall_back() {
        let system = Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(true),
                domain_joined: Some(true),
                ..Default::default()
            }),
            sso_state: Some(SsoState {
                azure_ad_prt: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let user = Snapshot {
            device_state: Some(DeviceState::default()),
            sso_state: Some(SsoState {
                azure_ad_prt: Some(true),
                ..Default::default()
            }),
            user_state: Some(UserState::default()),
            ..Default::default()
        };
        let (m, p) = merge(Some(&system), Some(&user));
        assert_eq!(m.device_state, system.device_state);
        assert_eq!(m.sso_state, user.sso_state);
        assert_eq!(p["device_state"], "device");
        assert_eq!(p["sso_state"], "user");
        assert_eq!(p["user_state"], "user");
        assert_eq!(
            sso_context(
                &p,
                Some(ExecutionContext::System),
                Some(ExecutionContext::User)
            ),
            ExecutionContext::User
        );
        // Only a SYSTEM part: everything from it, PRT judged as SYSTEM (not a failure).
        let (m, p) = merge(Some(&system), None);
        assert_eq!(m.sso_state, system.sso_state);
        assert_eq!(p["sso_state"], "device");
        assert_eq!(
            sso_context(&p, Some(ExecutionContext::System), None),
            ExecutionContext::System
        );
        // Only a USER part: its device state is the fallback.
        let (_, p) = merge(None, Some(&user));
        assert_eq!(p["device_state"], "user");
    }
}
