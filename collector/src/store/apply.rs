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
use super::merge::{self, Part};
use crate::fleet::{DeviceFacts, FailureFacts};

/// A periodic history sample is written at most this often when nothing changes.
pub const SAMPLE_EVERY_MS: i64 = 24 * 3600 * 1000;

/// The time of a device's newest history row (one index seek; `MAX(at)` visited every row).
pub(super) const LAST_SAMPLE: &str =
    "SELECT at FROM history WHERE machine_id = ?1 ORDER BY id DESC LIMIT 1";

/// The idempotency row of an accepted report. A report id already stored inserts nothing
/// (`changes() == 0`); only then does [`report`] read the stored hash, so a new report costs
/// one seek of `reports`, not two.
pub(crate) const INSERT_REPORT: &str =
    "INSERT INTO reports (report_id, machine_id, content_hash, received_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT(report_id) DO NOTHING";

/// A fleet update to apply after COMMIT, to the device of the report it came from.
#[derive(Debug)]
pub struct FleetUpdate {
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

impl FleetUpdate {
    /// True when the update only moves the device's `last_seen` (an unchanged heartbeat, or a
    /// replayed older report): no new state and no sighting for a failure group.
    pub fn moves_only_last_seen(&self) -> bool {
        self.facts.is_none() && self.name.is_empty()
    }
}

/// The read of [`Stored`] for a report of `part`.
pub(crate) fn stored_sql(part: Part) -> &'static str {
    static SQL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    part.sql(&SQL, |part| {
        format!(
            "SELECT rowid AS device_rowid, {}, failing_since, history_at,
            {p}_collected_at AS part_collected_at, {p}_state_hash AS part_state_hash
         FROM devices WHERE machine_id = ?1",
            super::FACT_COLUMNS,
            p = part.label()
        )
    })
}

/// Where [`Stored`]'s columns are in [`stored_sql`]'s rows, found by name once per part: the
/// SQL of a part never changes, and this read runs for every report.
#[derive(Debug, Clone, Copy)]
struct StoredColumns {
    rowid: usize,
    facts: FactColumns,
    failing_since: usize,
    history_at: usize,
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
        let [rowid, failing_since, history_at, collected_at, state_hash] = positions(
            stmt,
            [
                "device_rowid",
                "failing_since",
                "history_at",
                "part_collected_at",
                "part_state_hash",
            ],
        )?;
        let at = StoredColumns {
            rowid,
            facts: FactColumns::of(stmt)?,
            failing_since,
            history_at,
            collected_at,
            state_hash,
        };
        Ok(*cell.get_or_init(|| at))
    }
}

/// What a report's apply reads of its device row.
struct Stored {
    /// The row's rowid: the writes that follow find the row without the machine id index.
    rowid: i64,
    /// The device's facts; `None` only when `heartbeat` and no history sample is due (the
    /// one case that does not need them, and the most frequent).
    facts: Option<DeviceFacts>,
    failing_since: Option<i64>,
    /// The time of the device's newest history row, `None` when not known yet (see
    /// [`history`]).
    history_at: Option<i64>,
    /// The report is not older than its part's latest collection.
    newer: bool,
    /// The report is an unchanged heartbeat of its part (newer, same state hash).
    heartbeat: bool,
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

/// The content hash: FNV-1a 64 over the report's canonical content (see the module docs). It
/// is this, then the encoding of the report's snapshot (`snapshot`, empty without one), then
/// [`content_end`]; the writer encodes each snapshot once, for this hash and the state hash,
/// and [`Incoming::new`] feeds those bytes once to both. Map fields (`EventRecord.data`) are
/// hashed in key order because prost encodes a `HashMap` in iteration order.
///
/// The first fed value is the report's encoding without `events` and `agent`, the way it
/// was always hashed (stored hashes depend on it), built here without copying the report:
/// prost writes fields in field-number order, so that encoding is fields 1–8 (fed here), then
/// the snapshot (field 9: its key and length here, its bytes next), then `heartbeat` (11).
fn content_start(r: &Report, snapshot: &[u8]) -> Field {
    let mut field = Field::new(Fnv::new());
    let head = Report {
        report_id: r.report_id.clone(),
        machine_id: r.machine_id.clone(),
        hostname: r.hostname.clone(),
        ad_domain: r.ad_domain.clone(),
        agent_version: r.agent_version.clone(),
        os_build: r.os_build.clone(),
        collected_at: r.collected_at,
        execution_context: r.execution_context,
        ..Default::default()
    }
    .encode_to_vec();
    field.feed(&head);
    if r.snapshot.is_some() {
        // Field 9, length-delimited: key (9 << 3 | 2), then the length.
        let mut tail = Vec::with_capacity(11);
        prost::encoding::encode_key(9, prost::encoding::WireType::LengthDelimited, &mut tail);
        prost::encoding::encode_varint(snapshot.len() as u64, &mut tail);
        field.feed(&tail);
    }
    field
}

/// The content hash after the snapshot's bytes: `heartbeat` ends the first field, then the
/// events follow.
fn content_end(mut field: Field, r: &Report) -> u64 {
    let heartbeat = Report {
        heartbeat: r.heartbeat,
        ..Default::default()
    }
    .encode_to_vec();
    field.feed(&heartbeat);
    let mut h = field.end();
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

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Fnv {
    pub(super) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// One field: its bytes, then its length.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        self.bytes(bytes);
        self.bytes(&(bytes.len() as u64).to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }
}

/// A field of an [`Fnv`] fed in pieces: the hash of their concatenation, without joining them.
pub(super) struct Field {
    h: Fnv,
    len: u64,
}

impl Field {
    pub(super) fn new(h: Fnv) -> Field {
        Field { h, len: 0 }
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        self.h.bytes(bytes);
        self.len += bytes.len() as u64;
    }

    /// Feeds the same bytes to two fields in one pass. Each FNV step waits on the multiply
    /// before it; two independent chains interleaved run in about the time of one.
    pub(super) fn feed_both(a: &mut Field, b: &mut Field, bytes: &[u8]) {
        let (mut x, mut y) = (a.h.0, b.h.0);
        for &byte in bytes {
            x = (x ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
            y = (y ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        (a.h.0, b.h.0) = (x, y);
        a.len += bytes.len() as u64;
        b.len += bytes.len() as u64;
    }

    /// Ends the field with its length (little-endian `u64`).
    pub(super) fn end(mut self) -> Fnv {
        self.h.bytes(&self.len.to_le_bytes());
        self.h
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

/// A validated report with what the writer derives from it before any SQL: its snapshot's
/// encoding, the content hash and the state hash. [`Incoming::new`] runs on the caller's
/// side of the writer queue (`Store::enqueue`, a tokio worker), so the single writer thread
/// does not spend its time hashing.
pub struct Incoming {
    /// The report.
    pub report: Report,
    /// Its snapshot, encoded (empty without one).
    encoded: Vec<u8>,
    /// The content hash of the report ([`content_start`]).
    pub hash: i64,
    /// Its execution context.
    pub context: ExecutionContext,
    /// The state hash of the report (`heartbeat::state_start`).
    pub state: Option<i64>,
}

impl Incoming {
    /// Encodes the snapshot once and hashes the report, reading the encoding once for both
    /// hashes.
    pub fn new(report: Report) -> Incoming {
        let encoded = report
            .snapshot
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        let context = ExecutionContext::try_from(report.execution_context).unwrap_or_default();
        let mut content = content_start(&report, &encoded);
        let state = match super::heartbeat::state_start(&report, context) {
            Some(mut state) => {
                Field::feed_both(&mut content, &mut state, &encoded);
                Some(super::heartbeat::state_end(state, &report))
            }
            None => {
                content.feed(&encoded);
                None
            }
        };
        let hash = content_end(content, &report) as i64;
        Incoming {
            report,
            encoded,
            hash,
            context,
            state,
        }
    }
}

/// Applies one validated report; see the module docs. The writer uses [`incoming`] with the
/// hashes already made; this is the same for one report at hand (the tests).
#[cfg(test)]
pub fn report(
    conn: &Connection,
    r: &Report,
    now: i64,
    history_per_device: u32,
) -> rusqlite::Result<Applied> {
    incoming(conn, &Incoming::new(r.clone()), now, history_per_device)
}

/// Applies one validated report whose hashes are made; see the module docs.
pub fn incoming(
    conn: &Connection,
    inc: &Incoming,
    now: i64,
    history_per_device: u32,
) -> rusqlite::Result<Applied> {
    let r = &inc.report;
    let encoded = inc.encoded.as_slice();
    let hash = inc.hash;
    let inserted = conn.prepare_cached(INSERT_REPORT)?.execute(params![
        r.report_id,
        r.machine_id,
        hash,
        now
    ])?;
    let stored: Option<i64> = match inserted {
        0 => conn
            .prepare_cached("SELECT content_hash FROM reports WHERE report_id = ?1")?
            .query_row([&r.report_id], |row| row.get(0))
            .optional()?,
        _ => None,
    };
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

    let (context, state) = (inc.context, inc.state);
    let part = Part::of(context);
    let collected = r.collected_at.as_ref().map(ts_ms);

    // One read of the device row: this part's latest collection time and state hash
    // (heartbeats write only that row, see the schema's step 3), and its facts unless the
    // report is an unchanged heartbeat with no history sample due, which never looks at them.
    let mut read = conn.prepare_cached(stored_sql(part))?;
    let at = StoredColumns::of(&read, part)?;
    let stored: Option<Stored> = read
        .query_row([&r.machine_id], |row| {
            let collected_at: Option<i64> = row.get(at.collected_at)?;
            let state_hash: Option<i64> = row.get(at.state_hash)?;
            let history_at: Option<i64> = row.get(at.history_at)?;
            // A report older than the stored part of its own context (a spool replay) changes
            // nothing but `last_seen`; the other part does not matter for that.
            let newer = match (collected_at, collected) {
                (Some(prev), Some(c)) => c >= prev,
                _ => true,
            };
            let heartbeat = newer && state.is_some() && state_hash == state;
            let sample_due = !history_at.is_some_and(|at| sampled_recently(at, now));
            Ok(Stored {
                rowid: row.get(at.rowid)?,
                facts: match heartbeat && !sample_due {
                    true => None,
                    false => Some(super::facts_from_row(row, &at.facts)?),
                },
                failing_since: row.get(at.failing_since)?,
                history_at,
                newer,
                heartbeat,
            })
        })
        .optional()?;
    drop(read);
    let newer = stored.as_ref().is_none_or(|s| s.newer);
    // An unchanged heartbeat refreshes times and ids only (see `super::heartbeat`).
    if let Some(s) = &stored
        && s.heartbeat
    {
        // Without facts no sample is due (see the read).
        let history_at = match &s.facts {
            Some(facts) => history(conn, r, facts, false, now, history_per_device, s.history_at)?,
            None => None,
        };
        super::heartbeat::refresh_times(
            conn, r, s.rowid, part, context, collected, now, history_at,
        )?;
        return Ok(Applied {
            result: result(r, ReportStatus::Accepted, String::new()),
            fleet: Some(FleetUpdate {
                facts: None,
                last_seen: now,
                name: String::new(),
                failing_since: None,
            }),
            // A heartbeat brings no events and repeats its snapshot: no new attempt.
            new_attempts: Vec::new(),
        });
    }
    // The diagnosis gates rules on the OS build it reads from `join_config`; an agent that
    // did not put it there sent it in the envelope.
    let empty = Snapshot::default();
    let own = r.snapshot.as_deref().unwrap_or(&empty);
    let with_build;
    let (own, own_encoded) = if !r.os_build.is_empty()
        && own
            .join_config
            .as_ref()
            .is_none_or(|c| c.os_build.is_none())
    {
        let mut s = own.clone();
        s.join_config.get_or_insert_default().os_build = Some(r.os_build.clone());
        with_build = s;
        (&with_build, None)
    } else {
        (own, Some(encoded))
    };
    let mut snapshot = Snapshot::default();
    let fleet = if newer {
        super::upsert::part(conn, r, part, context, collected, own, own_encoded, now)?;
        // The part row just written is this part's latest; the device row's copy of its
        // times is rewritten below, in the one write of the device row.
        let view = merge::view(&merge::parts(conn, &r.machine_id, Some(part))?);
        let mut new = facts(&view.snapshot, view.context);
        new.agent_version = view.agent.version.clone();
        new.spool_overflowing = view.agent.spool_dropped > 0;
        // Not a heartbeat, so the read took the facts.
        let old = stored
            .as_ref()
            .and_then(|s| s.facts.as_ref().map(|f| (s, f)));
        let failing_since = match (old, &new.failure) {
            (_, None) => None,
            (Some((o, f)), Some(_)) if same_failure(&f.failure, &new.failure) => {
                o.failing_since.or(Some(now))
            }
            _ => Some(now),
        };
        let transition = match old {
            None => true,
            Some((_, f)) => f.join_type != new.join_type || !same_failure(&f.failure, &new.failure),
        };
        let known = stored.as_ref().and_then(|s| s.history_at);
        let history_at = history(conn, r, &new, transition, now, history_per_device, known)?;
        super::upsert::device(
            conn,
            r,
            &super::upsert::DeviceRow {
                snapshot: &view.snapshot,
                facts: &new,
                agent: &view.agent,
                context,
                collected,
                failing_since,
                state,
                history_at,
            },
            now,
        )?;
        snapshot = view.snapshot;
        let name = match snapshot.hostname_or(&r.hostname) {
            h if h.is_empty() => r.machine_id.clone(),
            h => h,
        };
        Some(FleetUpdate {
            facts: Some(new),
            last_seen: now,
            name,
            failing_since,
        })
    } else {
        conn.prepare_cached("UPDATE devices SET last_seen = MAX(last_seen, ?2) WHERE rowid = ?1")?
            .execute(params![stored.as_ref().map(|s| s.rowid), now])?;
        Some(FleetUpdate {
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

/// Whether a history row written at `at` makes a sample at `now` not yet due: the one rule
/// both [`history`] and the writer's device-row read (which skips the facts when no sample is
/// due) apply.
fn sampled_recently(at: i64, now: i64) -> bool {
    now - at < SAMPLE_EVERY_MS
}

/// Writes the history row of a report when one is due (a transition, or no row for
/// [`SAMPLE_EVERY_MS`]), trimmed to `keep` rows; `known` is the device row's `history_at`.
/// Returns the time to store as `history_at` when it changes: `now` after a new row, or the
/// newest row's time when the device row did not know it yet (rows from before schema step
/// 8). With it known, a heartbeat decides without reading the history index.
fn history(
    conn: &Connection,
    r: &Report,
    f: &DeviceFacts,
    transition: bool,
    now: i64,
    keep: u32,
    known: Option<i64>,
) -> rusqlite::Result<Option<i64>> {
    if !transition {
        let last = match known {
            Some(at) => Some(at),
            None => conn
                .prepare_cached(LAST_SAMPLE)?
                .query_row([&r.machine_id], |row| row.get(0))
                .optional()?
                .flatten(),
        };
        if let Some(at) = last.filter(|at| sampled_recently(*at, now)) {
            return Ok(known.is_none().then_some(at));
        }
    }
    history_row(conn, r, f, transition, now)?;
    conn.prepare_cached(
        "DELETE FROM history WHERE machine_id = ?1 AND id <= (
            SELECT id FROM history WHERE machine_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![r.machine_id, i64::from(keep)])?;
    Ok(Some(now))
}

fn history_row(
    conn: &Connection,
    r: &Report,
    f: &DeviceFacts,
    transition: bool,
    now: i64,
) -> rusqlite::Result<()> {
    let kind = if transition { "transition" } else { "sample" };
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
