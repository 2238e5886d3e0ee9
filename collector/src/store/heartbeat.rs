//! The narrow write for an unchanged heartbeat.
//!
//! Most reports in a healthy fleet repeat the snapshot their device sent last time (the agent's
//! periodic heartbeat). Rewriting the part and the device row for them re-encodes and rewrites
//! two snapshot blobs and deletes and re-inserts an entry in each of the four `devices` indexes —
//! about six B-tree pages per report in the WAL, where the heartbeat changes only times and the
//! report id. [`narrow`] recognises that case and updates only those columns, all on the device
//! row (the part's own times and id included, schema step 3): no indexed column changes and the
//! `device_parts` row is not written, so a heartbeat dirties one page.
//!
//! "Unchanged" is strict: the stored part has the same context, the same snapshot bytes, no
//! events (and the report brings none), the same agent version and spool/parse health (only
//! `last_delivery` may move), and the device row has the same hostname, AD domain and OS build.
//! The merged view is a pure function of the two parts, and the other part did not change
//! since the last merge (every write of a part re-merges), so the stored view, facts and
//! failure are exactly what a full apply would compute.

use dsreg_proto::{ExecutionContext, Report, Snapshot};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::merge::Part;

fn ts_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos / 1_000_000))
}

/// Whether a report's identity fields and agent health equal the stored part, and that part's
/// snapshot blob (compared in Rust).
pub(super) const SAME_AS_STORED: &str = "SELECT p.context = ?3 AND p.events IS NULL
        AND p.agent_version = ?4 AND p.spool_depth = ?5 AND p.spool_dropped = ?6
        AND p.parse_warnings = ?7 AND d.hostname = ?8 AND d.ad_domain = ?9
        AND d.os_build = ?10,
        p.snapshot
     FROM device_parts p JOIN devices d ON d.machine_id = p.machine_id
     WHERE p.machine_id = ?1 AND p.part = ?2";

/// If `r` repeats the stored part of its device unchanged, refreshes only its times and ids
/// and returns true; otherwise writes nothing and returns false.
pub(crate) fn narrow(
    conn: &Connection,
    r: &Report,
    part: Part,
    context: ExecutionContext,
    collected: Option<i64>,
    own: &Snapshot,
    now: i64,
) -> rusqlite::Result<bool> {
    if !r.events.is_empty() || r.hostname.is_empty() || r.ad_domain.is_empty() {
        return Ok(false);
    }
    let health = r.agent.unwrap_or_default();
    let same: Option<bool> = conn
        .prepare_cached(SAME_AS_STORED)?
        .query_row(
            params![
                r.machine_id,
                part.label(),
                context as i32,
                r.agent_version,
                i64::from(health.spool_depth),
                i64::try_from(health.spool_dropped).unwrap_or(i64::MAX),
                i64::from(health.parse_warnings),
                r.hostname,
                r.ad_domain,
                r.os_build,
            ],
            |row| {
                let fields: bool = row.get(0)?;
                // Compare the blob in place, without copying it out of SQLite.
                let blob = row.get_ref(1)?.as_blob()?;
                Ok(fields && blob == own.encode_to_vec().as_slice())
            },
        )
        .optional()?;
    if same != Some(true) {
        return Ok(false);
    }
    let last_delivery = health.last_delivery.as_ref().map(ts_ms);
    // The device view shows the agent health of the device part while there is one.
    conn.prepare_cached(&format!(
        "UPDATE devices SET last_seen = MAX(last_seen, ?2), collected_at = ?3,
            last_report_id = ?4, execution_context = ?5,
            agent_last_delivery = CASE WHEN ?6 = 'device' OR device_received_at IS NULL
                THEN ?7 ELSE agent_last_delivery END,
            {p}_report_id = ?4, {p}_collected_at = ?3, {p}_received_at = ?2,
            {p}_last_delivery = ?7
         WHERE machine_id = ?1",
        p = part.label()
    ))?
    .execute(params![
        r.machine_id,
        now,
        collected,
        r.report_id,
        context.label(),
        part.label(),
        last_delivery
    ])?;
    Ok(true)
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
            snapshot: Some(Snapshot {
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
            }),
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
        let parts = super::super::merge::parts(&conn, "m-1").unwrap();
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
}
