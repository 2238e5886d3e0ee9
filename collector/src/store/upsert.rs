//! The two full writes of a report that changed its part: the part row (`device_parts`, with
//! the bounded event context) and the device row (the merged view, its facts and the part's
//! latest times on the device row, schema step 3).
//!
//! Both are upserts keyed by machine id (and part): replaying them is harmless, and
//! `first_seen` survives every rewrite of the device row. The device row is written once per
//! report, by [`device`]: its view, facts, agent health, the part's latest times and hash and
//! the history time in one statement (the part write does not touch it). Called from
//! [`super::apply`] inside the writer's transaction (and by `crate::bench` for the storage
//! ceiling).

use std::sync::OnceLock;

use dsreg_proto::v1::{Report, Snapshot};
use dsreg_proto::{ExecutionContext, diagnosis};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::apply::ts_ms;
use super::merge::{AgentRow, Part};
use crate::fleet::DeviceFacts;

/// Stores the report's snapshot, events and agent health as the latest of its part. `own` is
/// the part's snapshot, `encoded` its encoding when the caller has it already.
#[allow(clippy::too_many_arguments)]
pub(crate) fn part(
    conn: &Connection,
    r: &Report,
    part: Part,
    context: ExecutionContext,
    collected: Option<i64>,
    own: &Snapshot,
    encoded: Option<&[u8]>,
    now: i64,
) -> rusqlite::Result<()> {
    // The part's event context: the stored records and the new ones, bounded (see
    // `correlate::retain_context`), so the next diagnosis still sees the newest attempt.
    let events = if r.events.is_empty() {
        None
    } else {
        let stored: Option<Option<Vec<u8>>> = conn
            .prepare_cached("SELECT events FROM device_parts WHERE machine_id = ?1 AND part = ?2")?
            .query_row(params![r.machine_id, part.label()], |row| row.get(0))
            .optional()?;
        let stored = stored
            .flatten()
            .and_then(|b| Report::decode(b.as_slice()).ok())
            .map(|r| r.events)
            .unwrap_or_default();
        let events = diagnosis::correlate::retain_context(stored, &r.events);
        Some(
            Report {
                events,
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    let health = r.agent.unwrap_or_default();
    // A report without events keeps the stored context (COALESCE).
    conn.prepare_cached(
        "INSERT INTO device_parts (machine_id, part, context, report_id, collected_at,
            received_at, snapshot, events, agent_version, spool_depth, spool_dropped,
            last_delivery, parse_warnings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(machine_id, part) DO UPDATE SET context = excluded.context,
            report_id = excluded.report_id, collected_at = excluded.collected_at,
            received_at = excluded.received_at, snapshot = excluded.snapshot,
            events = COALESCE(excluded.events, device_parts.events),
            agent_version = excluded.agent_version, spool_depth = excluded.spool_depth,
            spool_dropped = excluded.spool_dropped, last_delivery = excluded.last_delivery,
            parse_warnings = excluded.parse_warnings",
    )?
    .execute(params![
        r.machine_id,
        part.label(),
        context as i32,
        r.report_id,
        collected,
        now,
        match encoded {
            Some(b) => std::borrow::Cow::Borrowed(b),
            None => std::borrow::Cow::Owned(own.encode_to_vec()),
        },
        events,
        r.agent_version,
        i64::from(health.spool_depth),
        i64::try_from(health.spool_dropped).unwrap_or(i64::MAX),
        health.last_delivery.as_ref().map(ts_ms),
        i64::from(health.parse_warnings),
    ])?;
    Ok(())
}

/// What [`device`] writes on the device row besides the report's own fields.
#[derive(Clone, Copy)]
pub(crate) struct DeviceRow<'a> {
    /// The merged view.
    pub snapshot: &'a Snapshot,
    /// Its facts.
    pub facts: &'a DeviceFacts,
    /// The agent health the view shows.
    pub agent: &'a AgentRow,
    /// The report's execution context (its part).
    pub context: ExecutionContext,
    /// The report's collection time.
    pub collected: Option<i64>,
    pub failing_since: Option<i64>,
    /// The part's state hash (`heartbeat::state_start`).
    pub state: Option<i64>,
    /// The newest history row's time, when it changed (kept otherwise).
    pub history_at: Option<i64>,
}

/// Writes the device row of a (merged) snapshot and its facts, with the part's latest times,
/// id and state hash, which readers prefer to the part row's (see the schema's step 3).
pub(crate) fn device(
    conn: &Connection,
    r: &Report,
    row: &DeviceRow<'_>,
    now: i64,
) -> rusqlite::Result<()> {
    let DeviceRow {
        snapshot,
        facts: f,
        agent,
        context,
        collected,
        failing_since,
        state,
        history_at,
    } = *row;
    let hostname = snapshot.hostname_or(&r.hostname);
    let ad_domain = snapshot.ad_domain_or(&r.ad_domain);
    let entra_id = snapshot
        .device_details
        .as_ref()
        .and_then(|d| d.device_id.as_deref())
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    let fail = f.failure.as_ref();
    let last_delivery = r.agent.and_then(|a| a.last_delivery).as_ref().map(ts_ms);
    static SQL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    let sql = Part::of(context).sql(&SQL, |part| {
        let part = part.label();
        format!("INSERT INTO devices (machine_id, hostname, ad_domain, entra_device_id, join_type,
            failure_phase, failure_cause, failure_code, failure_symbol, failing_since,
            failing_tests, without_prt, first_seen, last_seen, collected_at, last_report_id,
            agent_version, os_build, execution_context, snapshot,
            {part}_report_id, {part}_collected_at, {part}_received_at, {part}_last_delivery,
            {part}_state_hash, not_targeted, agent_spool_depth, agent_spool_dropped,
            agent_last_delivery, agent_parse_warnings, history_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
            ?15, ?14, ?13, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)
         ON CONFLICT(machine_id) DO UPDATE SET
            hostname = excluded.hostname, ad_domain = excluded.ad_domain,
            entra_device_id = excluded.entra_device_id, join_type = excluded.join_type,
            failure_phase = excluded.failure_phase, failure_cause = excluded.failure_cause,
            failure_code = excluded.failure_code, failure_symbol = excluded.failure_symbol,
            failing_since = excluded.failing_since, failing_tests = excluded.failing_tests,
            without_prt = excluded.without_prt, last_seen = MAX(last_seen, excluded.last_seen),
            collected_at = excluded.collected_at, last_report_id = excluded.last_report_id,
            agent_version = excluded.agent_version, os_build = excluded.os_build,
            execution_context = excluded.execution_context, snapshot = excluded.snapshot,
            not_targeted = excluded.not_targeted,
            {part}_report_id = excluded.{part}_report_id,
            {part}_collected_at = excluded.{part}_collected_at,
            {part}_received_at = excluded.{part}_received_at,
            {part}_last_delivery = excluded.{part}_last_delivery,
            {part}_state_hash = excluded.{part}_state_hash,
            agent_spool_depth = excluded.agent_spool_depth,
            agent_spool_dropped = excluded.agent_spool_dropped,
            agent_last_delivery = excluded.agent_last_delivery,
            agent_parse_warnings = excluded.agent_parse_warnings,
            history_at = COALESCE(excluded.history_at, history_at)")
    });
    conn.prepare_cached(sql)?.execute(params![
        r.machine_id,
        hostname,
        ad_domain,
        entra_id,
        f.join_type,
        fail.map(|x| &x.phase),
        fail.map(|x| &x.cause),
        fail.and_then(|x| x.code).map(i64::from),
        fail.map(|x| &x.symbol),
        failing_since,
        i64::from(f.failing_tests),
        f.without_prt,
        now,
        collected,
        r.report_id,
        agent.version,
        r.os_build,
        context.label(),
        snapshot.encode_to_vec(),
        last_delivery,
        state,
        f.not_targeted,
        agent.spool_depth,
        agent.spool_dropped,
        agent.last_delivery,
        agent.parse_warnings,
        history_at,
    ])?;
    Ok(())
}
