//! What one report does inside the writer's transaction.
//!
//! 1. Idempotency: `report_id` → content hash. Same id, same content → DUPLICATE (nothing
//!    changes). Same id, different content → REJECTED, the first copy stays: a silent
//!    overwrite would hide an agent bug. The hash covers everything the agent observed
//!    (identity fields, collection time, snapshot, events, heartbeat flag) but not the
//!    `agent` health block, which a spool may legitimately refresh between retries.
//! 2. Diagnosis is RE-DERIVED with the collector's own catalog (`diagnosis::apply`): the agent's
//!    labels are never trusted, which keeps label sets closed and applies catalog fixes
//!    fleet-wide.
//! 3. Current state: each report updates the part of its execution context (`device_parts`:
//!    `device` for SYSTEM/unspecified, `user` for the logon task), and the device row holds
//!    the MERGE of both parts (`super::merge`), re-diagnosed, with the agent health of the
//!    device part (else the user part). A report collected before the stored snapshot of its
//!    own part (a spool replaying old reports after a newer one) only refreshes `last_seen`;
//!    otherwise the device row is replaced, keeping `first_seen`, and `failing_since` while the
//!    failure stays the same.
//! 4. History: a row on every transition (join type or failure changed) and a sample at most
//!    every [`SAMPLE_EVERY_MS`] otherwise; trimmed to `history_per_device` rows.
//! 5. Events and failed registration attempts: see [`super::attempts`].

use std::sync::OnceLock;

use dsreg_proto::catalog;
use dsreg_proto::v1::{Failure, Report, ReportResult, ReportStatus, Snapshot};
use dsreg_proto::{ExecutionContext, JoinType, Phase, diagnosis, diagnostic_tests, labels};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::FactColumns;
use super::columns::positions;
use super::merge::{self, AgentRow, Part};
use crate::fleet::{DeviceFacts, FailureFacts};

/// A periodic history sample is written at most this often when nothing changes.
pub const SAMPLE_EVERY_MS: i64 = 24 * 3600 * 1000;

/// The time of a device's newest history row (one index seek; `MAX(at)` visited every row).
pub(super) const LAST_SAMPLE: &str =
    "SELECT at FROM history WHERE machine_id = ?1 ORDER BY id DESC LIMIT 1";

/// The idempotency row of an accepted report.
pub(crate) const INSERT_REPORT: &str = "INSERT INTO reports (report_id, machine_id, content_hash, received_at) VALUES (?1, ?2, ?3, ?4)";

/// A fleet update to apply after COMMIT.
#[derive(Debug)]
pub struct FleetUpdate {
    /// The device.
    pub machine_id: String,
    /// New state, or `None` when only `last_seen` moved.
    pub facts: Option<DeviceFacts>,
    /// Receive time.
    pub last_seen: i64,
    /// Host name (else machine id) and failing-since for the failure group's samples; empty
    /// name when the report did not change the state.
    pub name: String,
    /// Since when the current failure is seen.
    pub failing_since: Option<i64>,
}

/// The read of [`Stored`] for a report of `part`.
pub(super) fn stored_sql(part: Part) -> String {
    format!(
        "SELECT {}, failing_since, {p}_collected_at AS part_collected_at,
            {p}_state_hash AS part_state_hash
         FROM devices WHERE machine_id = ?1",
        super::FACT_COLUMNS,
        p = part.label()
    )
}

/// Where [`Stored`]'s columns are in [`stored_sql`]'s rows, found by name once per part: the
/// SQL of a part never changes, and this read runs for every report.
#[derive(Debug, Clone, Copy)]
struct StoredColumns {
    facts: FactColumns,
    failing_since: usize,
    collected_at: usize,
    state_hash: usize,
}

impl StoredColumns {
    fn of(stmt: &rusqlite::Statement<'_>, part: Part) -> rusqlite::Result<StoredColumns> {
        static FOUND: [OnceLock<StoredColumns>; 2] = [OnceLock::new(), OnceLock::new()];
        let cell = &FOUND[part as usize];
        if let Some(at) = cell.get() {
            return Ok(*at);
        }
        let [failing_since, collected_at, state_hash] = positions(
            stmt,
            ["failing_since", "part_collected_at", "part_state_hash"],
        )?;
        let at = StoredColumns {
            facts: FactColumns::of(stmt)?,
            failing_since,
            collected_at,
            state_hash,
        };
        Ok(*cell.get_or_init(|| at))
    }
}

/// What a report's apply reads of its device row.
struct Stored {
    facts: DeviceFacts,
    failing_since: Option<i64>,
    /// The report's part: its latest collection time and state hash.
    collected_at: Option<i64>,
    state_hash: Option<i64>,
}

/// The outcome of one report.
#[derive(Debug)]
pub struct Applied {
    /// What the ack says.
    pub result: ReportResult,
    /// What the fleet must learn once committed.
    pub fleet: Option<FleetUpdate>,
    /// Failed attempts stored for the first time.
    pub new_attempts: Vec<FailureFacts>,
}

/// FNV-1a 64 over the report's canonical content (see the module docs). Map fields
/// (`EventRecord.data`) are hashed in key order because prost encodes a `HashMap` in
/// iteration order.
pub fn content_hash(r: &Report) -> u64 {
    let mut h = Fnv::new();
    let mut head = r.clone();
    head.events.clear();
    head.agent = None;
    h.feed(&head.encode_to_vec());
    for e in &r.events {
        let mut e2 = e.clone();
        e2.data.clear();
        h.feed(&e2.encode_to_vec());
        let mut data: Vec<_> = e.data.iter().collect();
        data.sort();
        for (k, v) in data {
            h.feed(k.as_bytes());
            h.feed(v.as_bytes());
        }
    }
    h.0
}

/// FNV-1a 64 over length-suffixed fields (so `("ab", "c")` and `("a", "bc")` differ). The
/// stored content hashes depend on it: do not change it.
pub(super) struct Fnv(pub(super) u64);

impl Fnv {
    pub(super) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        for b in bytes
            .iter()
            .copied()
            .chain((bytes.len() as u64).to_le_bytes())
        {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn result(r: &Report, status: ReportStatus, message: String) -> ReportResult {
    ReportResult {
        report_id: r.report_id.clone(),
        status: status as i32,
        message,
    }
}

pub(crate) fn ts_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos / 1_000_000))
}

/// The stored labels of a derived failure: the device gauges and the attempt counter both use
/// this, so one attempt carries the same phase/cause/code/symbol in both.
pub fn failure_facts(f: &Failure) -> FailureFacts {
    let d = f.code.map(catalog::describe);
    let phase = Phase::try_from(f.phase).unwrap_or_default();
    FailureFacts {
        phase: match phase.label() {
            "" => d.map_or(labels::UNKNOWN, |d| d.phase.label()).to_string(),
            l => l.to_string(),
        },
        cause: if f.cause.is_empty() {
            d.map_or(labels::UNKNOWN_CAUSE, |d| d.cause.id).to_string()
        } else {
            f.cause.clone()
        },
        code: f.code,
        symbol: d.and_then(|d| d.symbol).unwrap_or_default().to_string(),
    }
}

/// The device facts of a (re-diagnosed) snapshot.
pub fn facts(snapshot: &Snapshot, context: ExecutionContext) -> DeviceFacts {
    let join = JoinType::try_from(snapshot.join_type).unwrap_or_default();
    let join_type = match join.label() {
        "" => labels::UNKNOWN.to_string(),
        l => l.to_string(),
    };
    let failure = snapshot.failure.as_ref().map(failure_facts);
    let failing_tests = snapshot
        .diagnostics
        .as_ref()
        .and_then(|d| d.tests.as_ref())
        .map_or(0, diagnostic_tests::failing_bits);
    // The same rule as the diagnosis: user context, an Entra user, AzureAdPrt NO.
    let without_prt = diagnosis::without_prt(snapshot, context);
    DeviceFacts {
        join_type,
        failure,
        failing_tests,
        without_prt,
        not_targeted: snapshot
            .not_targeted
            .as_deref()
            .and_then(crate::fleet::not_targeted_reason),
        ..Default::default()
    }
}

fn same_failure(a: &Option<FailureFacts>, b: &Option<FailureFacts>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.phase == b.phase && a.cause == b.cause && a.code == b.code,
        (None, None) => true,
        _ => false,
    }
}

/// Applies one validated report; see the module docs.
pub fn report(
    conn: &Connection,
    r: &Report,
    now: i64,
    history_per_device: u32,
) -> rusqlite::Result<Applied> {
    let hash = content_hash(r) as i64;
    let stored: Option<i64> = conn
        .prepare_cached("SELECT content_hash FROM reports WHERE report_id = ?1")?
        .query_row([&r.report_id], |row| row.get(0))
        .optional()?;
    match stored {
        Some(h) if h == hash => {
            return Ok(Applied {
                result: result(r, ReportStatus::Duplicate, String::new()),
                fleet: None,
                new_attempts: Vec::new(),
            });
        }
        Some(_) => {
            let msg = format!(
                "report_id {} was already stored with different content; the first copy is kept",
                r.report_id
            );
            return Ok(Applied {
                result: result(r, ReportStatus::Rejected, msg),
                fleet: None,
                new_attempts: Vec::new(),
            });
        }
        None => {}
    }
    conn.prepare_cached(INSERT_REPORT)?
        .execute(params![r.report_id, r.machine_id, hash, now])?;

    let context = ExecutionContext::try_from(r.execution_context).unwrap_or_default();
    let part = Part::of(context);
    let collected = r.collected_at.as_ref().map(ts_ms);
    let empty = Snapshot::default();
    let own = r.snapshot.as_ref().unwrap_or(&empty);
    // The diagnosis gates rules on the OS build it reads from `join_config`; an agent that
    // did not put it there sent it in the envelope.
    let with_build;
    let own = if !r.os_build.is_empty()
        && own
            .join_config
            .as_ref()
            .is_none_or(|c| c.os_build.is_none())
    {
        let mut s = own.clone();
        s.join_config.get_or_insert_default().os_build = Some(r.os_build.clone());
        with_build = s;
        &with_build
    } else {
        own
    };
    let state = super::heartbeat::state_hash(r, context, own);

    // One read of the device row: its facts, and this part's latest collection time and
    // state hash (heartbeats write only that row, see the schema's step 3).
    let mut read = conn.prepare_cached(&stored_sql(part))?;
    let at = StoredColumns::of(&read, part)?;
    let stored: Option<Stored> = read
        .query_row([&r.machine_id], |row| {
            Ok(Stored {
                facts: super::facts_from_row(row, &at.facts)?,
                failing_since: row.get(at.failing_since)?,
                collected_at: row.get(at.collected_at)?,
                state_hash: row.get(at.state_hash)?,
            })
        })
        .optional()?;
    drop(read);
    // A report older than the stored part of its own context (a spool replay) changes nothing
    // but `last_seen`; the other part does not matter for that.
    let newer = match (stored.as_ref().and_then(|s| s.collected_at), collected) {
        (Some(prev), Some(c)) => c >= prev,
        _ => true,
    };
    // An unchanged heartbeat refreshes times and ids only (see `super::heartbeat`).
    if newer
        && let Some(s) = &stored
        && state.is_some()
        && s.state_hash == state
    {
        super::heartbeat::refresh_times(conn, r, part, context, collected, now)?;
        history(conn, r, &s.facts, false, now, history_per_device)?;
        return Ok(Applied {
            result: result(r, ReportStatus::Accepted, String::new()),
            fleet: Some(FleetUpdate {
                machine_id: r.machine_id.clone(),
                facts: None,
                last_seen: now,
                name: String::new(),
                failing_since: None,
            }),
            // A heartbeat brings no events and repeats its snapshot: no new attempt.
            new_attempts: Vec::new(),
        });
    }
    let old = stored.map(|s| (s.facts, s.failing_since));
    let mut snapshot = Snapshot::default();
    let mut new = DeviceFacts::default();
    let mut agent = AgentRow::default();
    if newer {
        super::upsert::part(conn, r, part, context, collected, own, state, now)?;
        let view = merge::view(&merge::parts(conn, &r.machine_id)?);
        new = facts(&view.snapshot, view.context);
        new.agent_version = view.agent.version.clone();
        new.spool_overflowing = view.agent.spool_dropped > 0;
        snapshot = view.snapshot;
        agent = view.agent;
    }
    let fleet = if newer {
        let failing_since = match (&old, &new.failure) {
            (_, None) => None,
            (Some((o, since)), Some(_)) if same_failure(&o.failure, &new.failure) => {
                since.or(Some(now))
            }
            _ => Some(now),
        };
        super::upsert::device(
            conn,
            r,
            &snapshot,
            &new,
            context,
            collected,
            failing_since,
            state,
            now,
        )?;
        conn.prepare_cached(
            "UPDATE devices SET agent_version = ?2, agent_spool_depth = ?3,
                agent_spool_dropped = ?4, agent_last_delivery = ?5, agent_parse_warnings = ?6
             WHERE machine_id = ?1",
        )?
        .execute(params![
            r.machine_id,
            agent.version,
            agent.spool_depth,
            agent.spool_dropped,
            agent.last_delivery,
            agent.parse_warnings
        ])?;
        let transition = match &old {
            None => true,
            Some((o, _)) => o.join_type != new.join_type || !same_failure(&o.failure, &new.failure),
        };
        history(conn, r, &new, transition, now, history_per_device)?;
        let name = match snapshot.hostname_or(&r.hostname) {
            h if h.is_empty() => r.machine_id.clone(),
            h => h,
        };
        Some(FleetUpdate {
            machine_id: r.machine_id.clone(),
            facts: Some(new),
            last_seen: now,
            name,
            failing_since,
        })
    } else {
        conn.prepare_cached(
            "UPDATE devices SET last_seen = MAX(last_seen, ?2) WHERE machine_id = ?1",
        )?
        .execute(params![r.machine_id, now])?;
        Some(FleetUpdate {
            machine_id: r.machine_id.clone(),
            facts: None,
            last_seen: now,
            name: String::new(),
            failing_since: None,
        })
    };
    // The attempts of the device view (stored context + this report), or, for a replayed older
    // report, of the report alone.
    let attempts = if newer {
        std::mem::take(&mut snapshot.attempts)
    } else {
        diagnosis::attempts(own, &r.events)
    };
    let new_attempts = super::attempts::record(conn, r, &attempts, now)?;
    Ok(Applied {
        result: result(r, ReportStatus::Accepted, String::new()),
        fleet,
        new_attempts,
    })
}

fn history(
    conn: &Connection,
    r: &Report,
    f: &DeviceFacts,
    transition: bool,
    now: i64,
    keep: u32,
) -> rusqlite::Result<()> {
    let kind = if transition {
        "transition"
    } else {
        let last: Option<i64> = conn
            .prepare_cached(LAST_SAMPLE)?
            .query_row([&r.machine_id], |row| row.get(0))
            .optional()?
            .flatten();
        if last.is_some_and(|at| now - at < SAMPLE_EVERY_MS) {
            return Ok(());
        }
        "sample"
    };
    let fail = f.failure.as_ref();
    conn.prepare_cached("INSERT INTO history (machine_id, at, kind, report_id, join_type, failure_phase,
            failure_cause, failure_code, failure_symbol) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?.execute(params![
            r.machine_id,
            now,
            kind,
            r.report_id,
            f.join_type,
            fail.map(|x| &x.phase),
            fail.map(|x| &x.cause),
            fail.and_then(|x| x.code).map(i64::from),
            fail.map(|x| &x.symbol),
        ],
    )?;
    conn.prepare_cached(
        "DELETE FROM history WHERE machine_id = ?1 AND id <= (
            SELECT id FROM history WHERE machine_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![r.machine_id, i64::from(keep)])?;
    Ok(())
}

/// Retention: deletes rows received before `cutoff_ms`; returns how many.
pub fn prune(conn: &Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    let mut n = conn.execute("DELETE FROM reports WHERE received_at < ?1", [cutoff_ms])?;
    n += conn.execute("DELETE FROM history WHERE at < ?1", [cutoff_ms])?;
    n += conn.execute("DELETE FROM attempts WHERE received_at < ?1", [cutoff_ms])?;
    n += conn.execute("DELETE FROM events WHERE received_at < ?1", [cutoff_ms])?;
    Ok(n)
}
