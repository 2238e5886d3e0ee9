//! Event records and failed join attempts, inside the writer's transaction.
//!
//! Events are stored once by (machine_id, record_id). Attempts are NOT derived here: the
//! diagnosis in `dsreg-proto` correlates the device's records into runs of the join task and
//! classifies each run once (`diagnosis::attempts`, the same function the agent uses); this
//! module only stores the failed ones and says which are new, to feed
//! `dsreg_registration_failures_total`, which therefore counts each attempt once, under the
//! attempt's one cause, however many reports repeat it.
//!
//! An attempt is stored once by (machine_id, attempt minute, client code); an attempt of the
//! same code within a minute either side is the same attempt seen through other records (the
//! Previous Registration time and the 304 time differ by seconds; a run whose 304 arrives in
//! the next report than its 204). An attempt counts only when this report brought one of its
//! records (a new event record id, or — for an attempt known from Previous Registration
//! alone — its first sight), so the stored context re-derived on every report never recounts
//! old attempts. Attempts without a time (a `/debug` trace) are shown but not counted.

use dsreg_proto::v1::{Attempt, EventRecord, Report};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::apply::failure_facts;
use crate::fleet::FailureFacts;

/// Cuts an RFC 3339 time to the minute (`2025-03-09T11:00Z`), `offset_min` minutes moved.
fn attempt_minute(t: &str, offset_min: i64) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let dt = time::OffsetDateTime::parse(t.trim(), &Rfc3339).ok()?;
    let dt = dt.to_offset(time::UtcOffset::UTC) + time::Duration::minutes(offset_min);
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute()
    ))
}

/// Stores the report's new event records and the failed attempts not seen before; returns the
/// labels of the attempts counted now.
pub(crate) fn record(
    conn: &Connection,
    r: &Report,
    attempts: &[Attempt],
    now: i64,
) -> rusqlite::Result<Vec<FailureFacts>> {
    let mut new_records = Vec::new();
    for e in &r.events {
        if store_event(conn, r, e, now)? {
            new_records.push(format!("#{}", e.record_id));
        }
    }
    let mut counted = Vec::new();
    for a in attempts.iter().filter(|a| !a.succeeded) {
        let Some(time) = a.time.as_deref() else {
            continue;
        };
        let event_sources: Vec<&String> = a
            .sources
            .iter()
            .filter(|s| s.starts_with("event:"))
            .collect();
        let brought_now = if event_sources.is_empty() {
            true // Previous Registration alone: counted at first sight (the insert decides).
        } else {
            event_sources
                .iter()
                .any(|s| new_records.iter().any(|n| s.ends_with(n.as_str())))
        };
        if !brought_now {
            continue;
        }
        // A time that is not RFC 3339 (an old agent's raw text) is its own key.
        let minute = attempt_minute(time, 0).unwrap_or_else(|| time.trim().to_owned());
        let code = a.code.map_or(0, i64::from);
        let mut seen = false;
        for offset in [-1, 1] {
            if let Some(m) = attempt_minute(time, offset) {
                seen |= conn
                    .prepare_cached(
                        "SELECT 1 FROM attempts WHERE machine_id = ?1 AND attempt_time = ?2
                         AND code = ?3",
                    )?
                    .query_row(params![r.machine_id, m, code], |_| Ok(()))
                    .optional()?
                    .is_some();
            }
        }
        if seen {
            continue;
        }
        let f = failure_facts(&dsreg_proto::Failure {
            phase: a.phase,
            code: a.code,
            cause: a.cause.clone(),
            ..Default::default()
        });
        let source = a.sources.join(" ");
        let inserted = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO attempts (machine_id, attempt_time, code, phase, cause,
                    symbol, source, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                r.machine_id,
                minute,
                code,
                f.phase,
                f.cause,
                f.symbol,
                source,
                now
            ])?;
        if inserted == 1 {
            counted.push(f);
        }
    }
    Ok(counted)
}

/// Stores an event record once; true when it was new.
fn store_event(conn: &Connection, r: &Report, e: &EventRecord, now: i64) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO events (machine_id, record_id, event_id, time, exit_code,
            received_at, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            r.machine_id,
            e.record_id as i64,
            e.event_id,
            e.time,
            e.exit_code.map(i64::from),
            now,
            e.encode_to_vec()
        ])?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsreg_proto::v1::{Diagnostics, PreviousRegistration, ServerResponse, Snapshot};
    use dsreg_proto::{ExecutionContext, diagnosis};

    fn conn() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn event(id: u32, record_id: u64, time: &str) -> EventRecord {
        EventRecord {
            event_id: id,
            record_id,
            time: Some(time.into()),
            exit_code: (id != 4096).then_some(0x801c03f2),
            ..Default::default()
        }
    }

    fn not_synced(record_id: u64, time: &str) -> EventRecord {
        EventRecord {
            server_response: Some(ServerResponse {
                error_type: Some("DirectoryError".into()),
                message: Some("The device object by the given id (x) is not found.".into()),
                ..Default::default()
            }),
            ..event(204, record_id, time)
        }
    }

    fn apply(conn: &Connection, r: &Report, snapshot: &Snapshot) -> Vec<FailureFacts> {
        let attempts = diagnosis::attempts(snapshot, &r.events);
        record(conn, r, &attempts, 0).unwrap()
    }

    #[test]
    fn two_attempts_in_one_window_count_once_each_under_the_server_cause() {
        let conn = conn();
        let r = Report {
            machine_id: "m".into(),
            events: vec![
                event(4096, 1, "2025-03-09T10:00:00Z"),
                not_synced(2, "2025-03-09T10:00:04Z"),
                event(304, 3, "2025-03-09T10:00:05Z"),
                event(304, 4, "2025-03-09T10:00:05.5Z"),
                event(4096, 5, "2025-03-09T11:00:00Z"),
                not_synced(6, "2025-03-09T11:00:04Z"),
                event(304, 7, "2025-03-09T11:00:05Z"),
            ],
            ..Default::default()
        };
        let counted = apply(&conn, &r, &Snapshot::default());
        assert_eq!(counted.len(), 2, "{counted:?}");
        assert!(
            counted.iter().all(|f| f.cause == "device_not_synced"),
            "{counted:?}"
        );
        assert!(apply(&conn, &r, &Snapshot::default()).is_empty(), "repeat");
    }

    #[test]
    fn previous_registration_and_events_of_one_attempt_count_once() {
        let conn = conn();
        let snapshot = Snapshot {
            diagnostics: Some(Diagnostics {
                previous_registration: Some(PreviousRegistration {
                    time: Some("2025-03-09T11:00:59Z".into()),
                    client_error_code: Some(0x801c03f2),
                    error_phase: Some("join".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // First seen through Previous Registration alone.
        let r = Report {
            machine_id: "m".into(),
            ..Default::default()
        };
        assert_eq!(apply(&conn, &r, &snapshot).len(), 1);
        // Then its records arrive, the 304 a minute boundary later: the same attempt.
        let r = Report {
            machine_id: "m".into(),
            events: vec![
                not_synced(2, "2025-03-09T11:00:58Z"),
                event(304, 3, "2025-03-09T11:01:01Z"),
            ],
            ..Default::default()
        };
        assert!(apply(&conn, &r, &snapshot).is_empty());
        // A new attempt an hour later counts.
        let r = Report {
            machine_id: "m".into(),
            events: vec![event(304, 9, "2025-03-09T12:00:00Z")],
            ..Default::default()
        };
        assert_eq!(apply(&conn, &r, &snapshot).len(), 1);
        let _ = ExecutionContext::System;
    }

    #[test]
    fn minutes() {
        assert_eq!(
            attempt_minute("2025-03-09T12:00:27+01:00", 0).as_deref(),
            Some("2025-03-09T11:00Z")
        );
        assert_eq!(
            attempt_minute("2025-03-09T23:59:27Z", 1).as_deref(),
            Some("2025-03-10T00:00Z")
        );
        assert_eq!(attempt_minute("garbage", 0), None);
    }
}
