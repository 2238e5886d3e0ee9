//! The narrow write for an unchanged heartbeat: its state hash ([`state_start`]) recognises
//! one, and [`refresh_times`] writes it.
//!
//! Most reports in a healthy fleet repeat the snapshot their device sent last time (the agent's
//! periodic heartbeat). Rewriting the part and the device row for them re-encodes and rewrites
//! two snapshot blobs and deletes and re-inserts an entry in each of the four `devices` indexes,
//! where the heartbeat changes only times and the report id. [`refresh_times`] updates only
//! those columns, all on the device row (the part's own times and id included, schema step 3):
//! no indexed column changes and the `device_parts` row is not written, so a heartbeat dirties
//! one page.
//!
//! "Unchanged" is strict: the report repeats its part's last full write — the same context,
//! snapshot bytes, agent version and spool/parse health (only `last_delivery` may move),
//! hostname, AD domain and OS build — and neither brought events. The state hash digests those
//! fields (the snapshot as the agent sent it: with the OS build in the hash, that fixes the
//! snapshot the writer diagnoses too); the full write stores it on the device row with the
//! part's times (schema step 3), so recognising a heartbeat reads only the device row, not the
//! part row and its blob. The hash is a cache key, not a contract: changing what it digests
//! only sends each device's next report down the full path once.
//! The merged view is a pure function of the two parts, and the other part did not change
//! since the last merge (every write of a part re-merges), so the stored view, facts and
//! failure are exactly what a full apply would compute.

use std::sync::OnceLock;

use dsreg_proto::{ExecutionContext, Report};
use rusqlite::{Connection, params};

use super::apply::{Field, Fnv, ts_ms};
use super::merge::Part;

/// The state hash of a report's part: what must not change for a report to count as an
/// unchanged heartbeat of the part's last full write. It is [`state_start`], then the
/// encoding of the report's snapshot (the one the content hash reads: `apply::Incoming::new`
/// feeds those bytes once to both) as its second field, then [`state_end`]. `None` when the
/// report cannot be one (it brings events, or lacks hostname or AD domain); a part stored
/// from such a report has no hash, so the next report of that part takes the full path.
pub(super) fn state_start(r: &Report, context: ExecutionContext) -> Option<Field> {
    if !r.events.is_empty() || r.hostname.is_empty() || r.ad_domain.is_empty() {
        return None;
    }
    let mut h = Fnv::new();
    h.feed(&(context as i32).to_le_bytes());
    Some(Field::new(h))
}

/// The state hash after the snapshot's bytes.
pub(super) fn state_end(snapshot: Field, r: &Report) -> i64 {
    let health = r.agent.unwrap_or_default();
    let mut h = snapshot.end();
    h.feed(r.agent_version.as_bytes());
    h.feed(&health.spool_depth.to_le_bytes());
    h.feed(&health.spool_dropped.to_le_bytes());
    h.feed(&health.parse_warnings.to_le_bytes());
    h.feed(r.hostname.as_bytes());
    h.feed(r.ad_domain.as_bytes());
    h.feed(r.os_build.as_bytes());
    h.0 as i64
}

/// Refreshes only the times and ids of an unchanged heartbeat (the caller compared
/// state hash with the stored one), on the device row `rowid` (read with the state hash,
/// so this write needs no machine id lookup), and `history_at` when given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refresh_times(
    conn: &Connection,
    r: &Report,
    rowid: i64,
    part: Part,
    context: ExecutionContext,
    collected: Option<i64>,
    now: i64,
    history_at: Option<i64>,
) -> rusqlite::Result<()> {
    let health = r.agent.unwrap_or_default();
    let last_delivery = health.last_delivery.as_ref().map(ts_ms);
    // The device view shows the agent health of the device part while there is one.
    static SQL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    let sql = part.sql(&SQL, |part| {
        format!(
            "UPDATE devices SET last_seen = MAX(last_seen, ?2), collected_at = ?3,
                last_report_id = ?4, execution_context = ?5,
                agent_last_delivery = CASE WHEN ?6 = 'device' OR device_received_at IS NULL
                    THEN ?7 ELSE agent_last_delivery END,
                {p}_report_id = ?4, {p}_collected_at = ?3, {p}_received_at = ?2,
                {p}_last_delivery = ?7, history_at = COALESCE(?8, history_at)
             WHERE rowid = ?1",
            p = part.label()
        )
    });
    conn.prepare_cached(sql)?.execute(params![
        rowid,
        now,
        collected,
        r.report_id,
        context.label(),
        part.label(),
        last_delivery,
        history_at
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use dsreg_proto::v1::{DeviceState, PreviousRegistration, Report, Snapshot};

    use super::super::{apply, schema};

    fn report(id: &str, collected_s: i64, code: u32) -> Report {
        Report {
            report_id: id.into(),
            machine_id: "m-1".into(),
            hostname: "PC-000001".into(),
            ad_domain: "CONTOSO".into(),
            collected_at: Some(prost_types::Timestamp {
                seconds: collected_s,
                nanos: 0,
            }),
            execution_context: dsreg_proto::ExecutionContext::System as i32,
            snapshot: Some(Box::new(Snapshot {
                device_state: Some(DeviceState {
                    azure_ad_joined: Some(false),
                    domain_joined: Some(true),
                    ..Default::default()
                }),
                diagnostics: Some(dsreg_proto::v1::Diagnostics {
                    previous_registration: Some(PreviousRegistration {
                        time: Some("2025-03-09T11:00:27Z".into()),
                        client_error_code: Some(code),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    type Row = (String, i64, Vec<u8>, Option<i64>, Option<i64>);

    fn row(conn: &rusqlite::Connection) -> Row {
        conn.query_row(
            "SELECT last_report_id, last_seen, snapshot, failure_code, collected_at FROM devices",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    }

    #[test]
    fn an_unchanged_heartbeat_moves_only_times_and_ids() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        let first = apply::report(&conn, &report("r-1", 1000, 0x801c03f2), 1_000_000, 5).unwrap();
        assert!(first.fleet.as_ref().unwrap().facts.is_some());
        let before = row(&conn);
        let again = apply::report(&conn, &report("r-2", 2000, 0x801c03f2), 2_000_000, 5).unwrap();
        assert!(
            again.fleet.as_ref().unwrap().facts.is_none(),
            "narrow path: the fleet only learns last_seen"
        );
        let after = row(&conn);
        assert_eq!(after.0, "r-2");
        assert_eq!(after.1, 2_000_000);
        assert_eq!(after.2, before.2, "snapshot blob untouched");
        assert_eq!(after.3, Some(0x801c03f2));
        assert_eq!(after.4, Some(2_000_000));
        // The part row was not written; the part view takes the heartbeat's id and times.
        let (stored_id, stored_at): (String, i64) = conn
            .query_row(
                "SELECT report_id, collected_at FROM device_parts WHERE part = 'device'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((stored_id.as_str(), stored_at), ("r-1", 1_000_000));
        let parts = super::super::merge::parts(&conn, "m-1", None).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].report_id, "r-2");
        assert_eq!(parts[0].collected_at, Some(2_000_000));
        assert_eq!(parts[0].received_at, 2_000_000);
        // A spool replay collected between the first report and the heartbeat is older than
        // what is stored: it must not replace the state.
        let replay = apply::report(&conn, &report("r-0", 1500, 0x801c0021), 2_500_000, 5).unwrap();
        assert!(
            replay.fleet.as_ref().unwrap().facts.is_none(),
            "older than the heartbeat"
        );
        assert_eq!(row(&conn).3, Some(0x801c03f2));
        // A changed snapshot takes the full path and changes the failure.
        let changed = apply::report(&conn, &report("r-3", 3000, 0x801c0021), 3_000_000, 5).unwrap();
        assert!(changed.fleet.as_ref().unwrap().facts.is_some());
        assert_eq!(row(&conn).3, Some(0x801c0021));
    }

    #[test]
    fn a_changed_health_hostname_or_events_is_not_a_heartbeat() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        let full = |conn: &rusqlite::Connection, r: &Report, now: i64| {
            let a = apply::report(conn, r, now, 5).unwrap();
            a.fleet.unwrap().facts.is_some()
        };
        let mut r = report("r-1", 1000, 0x801c03f2);
        r.ad_domain = "CONTOSO".into();
        assert!(full(&conn, &r, 1_000_000), "first report");
        type Change = fn(&mut Report);
        let variants: [(&str, Change); 4] = [
            ("spool depth", |r| {
                r.agent = Some(dsreg_proto::v1::AgentHealth {
                    spool_depth: 3,
                    ..Default::default()
                })
            }),
            ("hostname", |r| r.hostname = "PC-000002".into()),
            ("os build", |r| r.os_build = "10.0.26100".into()),
            ("events", |r| {
                r.events.push(dsreg_proto::v1::EventRecord {
                    record_id: 7,
                    event_id: 304,
                    ..Default::default()
                })
            }),
        ];
        let mut now = 2_000_000;
        for (i, (what, change)) in variants.into_iter().enumerate() {
            let mut changed = r.clone();
            changed.report_id = format!("r-c{i}");
            change(&mut changed);
            now += 1000;
            assert!(full(&conn, &changed, now), "{what} changed: full path");
            // The same report again, with a new id, is now the stored state: a heartbeat,
            // unless it carries events (which are never a heartbeat).
            changed.report_id = format!("r-h{i}");
            now += 1000;
            assert_eq!(
                full(&conn, &changed, now),
                what == "events",
                "{what} repeated"
            );
            // Back to the original for the next case.
            let mut back = r.clone();
            back.report_id = format!("r-b{i}");
            now += 1000;
            assert!(full(&conn, &back, now), "{what} reverted: full path");
        }
    }
}
