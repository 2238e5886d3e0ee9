//! Event records and failed registration attempts, inside the writer's transaction.
//!
//! Events are stored once by (machine_id, record_id). A failed registration attempt is stored
//! once by (machine_id, attempt minute, client code), from the Previous Registration block
//! (time + client error code) and from NEW events 304/305/307 with a non-zero exit code. Times
//! are cut to the minute so the 304 that Windows logs twice per attempt, and the same attempt
//! seen in both sources, count once (an attempt straddling a minute boundary between the two
//! sources may count twice; attempts are at least minutes apart). Only attempts inserted now
//! are returned: they feed `dsreg_registration_failures_total`, which therefore counts unique
//! attempts however many reports repeat them. Labels come from the same diagnosis rule that
//! derives the device's failure (`diagnosis::failure` on the Previous Registration block alone,
//! or on that one event alone), so `dsreg_registration_failures_total` and
//! `dsreg_devices_failing` name an attempt alike; the catalog plus `classify::refine` is only
//! the fallback when that rule says nothing.

use dsreg_proto::catalog;
use dsreg_proto::classify::{self, ServerError};
use dsreg_proto::v1::DeviceState;
use dsreg_proto::v1::{EventRecord, Report, Snapshot};
use dsreg_proto::{ExecutionContext, Phase, diagnosis};
use prost::Message;
use rusqlite::{Connection, params};

use super::apply::failure_facts;
use crate::fleet::FailureFacts;

/// Cuts an RFC 3339 time to the minute (`2025-03-09T11:00Z`); other text is kept as is.
fn attempt_minute(t: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(t.trim(), &Rfc3339) {
        Ok(dt) => {
            let dt = dt.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute()
            )
        }
        Err(_) => t.trim().to_string(),
    }
}

fn classify_attempt(code: u32, phase: Option<&str>, server: &ServerError<'_>) -> FailureFacts {
    let d = catalog::describe(code);
    let cause = classify::refine(Some(code), server).unwrap_or(d.cause);
    FailureFacts {
        phase: phase
            .and_then(Phase::from_label)
            .unwrap_or(d.phase)
            .label()
            .to_string(),
        cause: cause.id.to_string(),
        code: Some(code),
        symbol: d.symbol.unwrap_or_default().to_string(),
    }
}

pub(crate) fn record(
    conn: &Connection,
    r: &Report,
    snapshot: &Snapshot,
    now: i64,
) -> rusqlite::Result<Vec<FailureFacts>> {
    let mut found: Vec<(String, FailureFacts, String)> = Vec::new();
    if let Some(p) = snapshot
        .diagnostics
        .as_ref()
        .and_then(|d| d.previous_registration.as_ref())
        && let (Some(t), Some(code)) = (&p.time, p.client_error_code)
        && code != 0
    {
        let server = ServerError {
            error_code: p.server_error_code.as_deref(),
            sub_code: p.server_error_sub_code.as_deref(),
            message: p.server_message.as_deref(),
            operation: p.server_operation.as_deref(),
        };
        // The same rule that derives the device's failure, so the counter and the gauges agree.
        let alone = Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(false),
                ..Default::default()
            }),
            diagnostics: snapshot.diagnostics.clone(),
            ..Default::default()
        };
        let f = diagnosis::failure(&alone, &[], ExecutionContext::System)
            .filter(|f| f.source == "previous_registration" && f.code == Some(code))
            .map_or_else(
                || classify_attempt(code, p.error_phase.as_deref(), &server),
                |f| failure_facts(&f),
            );
        found.push((attempt_minute(t), f, "previous_registration".into()));
    }
    let not_joined = Snapshot {
        device_state: Some(DeviceState {
            azure_ad_joined: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    for e in &r.events {
        if store_event(conn, r, e, now)?
            && matches!(e.event_id, 304 | 305 | 307)
            && let Some(code) = e.exit_code.filter(|c| *c != 0)
        {
            let sr = e.server_response.as_ref();
            let server = ServerError {
                error_code: sr.and_then(|s| s.error_type.as_deref()),
                sub_code: sr.and_then(|s| s.sub_error_code.as_deref()),
                message: sr
                    .and_then(|s| s.message.as_deref())
                    .or(e.server_error.as_deref()),
                operation: None,
            };
            let phase = e.error_phase.as_deref().or(match e.event_id {
                305 => Some("auth"),
                307 => Some("discover"),
                _ => None,
            });
            let time = e
                .time
                .as_deref()
                .map_or_else(|| format!("record:{}", e.record_id), attempt_minute);
            // The diagnosis of this one event (as the device would get it from it alone).
            let f = diagnosis::failure(
                &not_joined,
                std::slice::from_ref(e),
                ExecutionContext::System,
            )
            .filter(|f| f.code == Some(code))
            .map_or_else(
                || classify_attempt(code, phase, &server),
                |f| failure_facts(&f),
            );
            found.push((time, f, format!("event:{}", e.event_id)));
        }
    }
    let mut new = Vec::new();
    for (time, f, source) in found {
        let inserted = conn.prepare_cached("INSERT OR IGNORE INTO attempts (machine_id, attempt_time, code, phase, cause, symbol,
                source, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?.execute(params![
                r.machine_id,
                time,
                f.code.map(i64::from),
                f.phase,
                f.cause,
                f.symbol,
                source,
                now
            ],
        )?;
        if inserted == 1 {
            new.push(f);
        }
    }
    Ok(new)
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
    use dsreg_proto::TestStatus;
    use dsreg_proto::v1::{DiagnosticTests, Diagnostics, PreviousRegistration, TestResult};

    #[test]
    fn an_attempt_counts_under_the_labels_of_the_device_failure() {
        // The domain-joined fixture: read failure 0x801c001d in discover, and the AD
        // Configuration Test says there is no SCP at all (0x80070002).
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        let mut snapshot = Snapshot {
            device_state: Some(DeviceState {
                azure_ad_joined: Some(false),
                domain_joined: Some(true),
                ..Default::default()
            }),
            diagnostics: Some(Diagnostics {
                tests: Some(DiagnosticTests {
                    ad_configuration: Some(TestResult {
                        result: TestStatus::Fail as i32,
                        code: Some(0x8007_0002),
                        sub_code: None,
                    }),
                    ..Default::default()
                }),
                previous_registration: Some(PreviousRegistration {
                    time: Some("2022-11-07T15:50:24Z".into()),
                    client_error_code: Some(0x801c_001d),
                    error_phase: Some("discover".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        diagnosis::apply(&mut snapshot, &[], ExecutionContext::System);
        let device = crate::store::apply::facts(&snapshot, ExecutionContext::System);
        let r = Report {
            machine_id: "m".into(),
            ..Default::default()
        };
        let attempts = record(&conn, &r, &snapshot, 0).unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(Some(&attempts[0]), device.failure.as_ref());
        assert_eq!(attempts[0].cause, "scp_not_configured");
    }

    #[test]
    fn an_attempt_counts_once_across_sources_and_repeats() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        let snapshot = Snapshot {
            diagnostics: Some(Diagnostics {
                previous_registration: Some(PreviousRegistration {
                    time: Some("2025-03-09T11:00:27Z".into()),
                    client_error_code: Some(0x801c03f2),
                    error_phase: Some("join".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let event = |record_id, time: &str| EventRecord {
            event_id: 304,
            record_id,
            time: Some(time.into()),
            exit_code: Some(0x801c03f2),
            ..Default::default()
        };
        let mut r = Report {
            machine_id: "m".into(),
            events: vec![
                event(1, "2025-03-09T11:00:28Z"),
                event(2, "2025-03-09T11:00:29.5Z"),
            ],
            ..Default::default()
        };
        let first = record(&conn, &r, &snapshot, 0).unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].phase, "join");
        assert_eq!(first[0].symbol, "DSREG_E_DIRECTORY_FAILURE");
        assert!(
            record(&conn, &r, &snapshot, 1).unwrap().is_empty(),
            "repeat report"
        );
        r.events = vec![event(3, "2025-03-10T08:00:00Z")];
        assert_eq!(
            record(&conn, &r, &snapshot, 2).unwrap().len(),
            1,
            "a new attempt"
        );
        assert_eq!(
            attempt_minute("2025-03-09T12:00:27+01:00"),
            "2025-03-09T11:00Z"
        );
        assert_eq!(attempt_minute("garbage"), "garbage");
    }
}
