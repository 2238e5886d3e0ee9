//! Read queries (API and start-up), always on read-only connections except the fleet rebuild.
//!
//! Every query is parameterised; filters are combined with bound parameters only. Lists use
//! keyset pagination on `machine_id` (the primary key), so a page costs O(limit · log n) and
//! never re-reads earlier pages. Times leave this module as RFC 3339 UTC strings.

use dsreg_proto::v1::{EventRecord, Snapshot};
use prost::Message;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::Serialize;

use super::columns::positions;
use super::{FACT_COLUMNS, FactColumns, StoreError, facts_from_row};
use crate::fleet::Fleet;

/// Loads every device's facts into `fleet` (start-up only); returns the device count.
pub fn rebuild_fleet(conn: &Connection, fleet: &Fleet) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT machine_id, last_seen, hostname, failing_since, {FACT_COLUMNS} FROM devices"
    ))?;
    let facts_at = FactColumns::of(&stmt)?;
    let [id_at, seen_at, hostname_at, since_at] = positions(
        &stmt,
        ["machine_id", "last_seen", "hostname", "failing_since"],
    )?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let id: String = row.get(id_at)?;
        let seen: i64 = row.get(seen_at)?;
        let hostname = row.get_ref(hostname_at)?.as_str().unwrap_or_default();
        let failing_since: Option<i64> = row.get(since_at)?;
        let facts = facts_from_row(row, &facts_at)?;
        let name = if hostname.is_empty() {
            id.as_str()
        } else {
            hostname
        };
        let sighting = crate::fleet::Sighting {
            name,
            failing_since,
        };
        fleet.set_seen(&id, Some(&facts), seen, Some(sighting));
        n += 1;
    }
    Ok(n)
}

/// Sets the fleet entries of `machine_ids` from their rows on disk (a device without a row is
/// left as the fleet has it: the fleet never runs ahead of the disk). Used after a failed
/// group commit, when SQLite may have rolled the group back or — after an implicit rollback
/// on SQLITE_FULL or an I/O error, when a later savepoint ran in autocommit mode — kept part
/// of it: either way the fleet then equals the disk again. Returns the rows found.
pub fn refresh_fleet(
    conn: &Connection,
    fleet: &Fleet,
    machine_ids: &[String],
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT machine_id, last_seen, {FACT_COLUMNS} FROM devices WHERE machine_id = ?1"
    ))?;
    let facts_at = FactColumns::of(&stmt)?;
    let mut n = 0;
    for id in machine_ids {
        let mut rows = stmt.query([id])?;
        if let Some(row) = rows.next()? {
            let seen: i64 = row.get("last_seen")?;
            let facts = facts_from_row(row, &facts_at)?;
            fleet.set(id, Some(&facts), seen);
            n += 1;
        }
    }
    Ok(n)
}

/// Unix milliseconds → RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A failure as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FailureView {
    /// Phase label.
    pub phase: String,
    /// Cause id.
    pub cause: String,
    /// `0x%08x`, absent when the failure had no code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Catalog symbol, `""` when unknown.
    pub symbol: String,
}

/// One row of `/api/v1/devices`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceSummary {
    /// The device key.
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
    /// AD domain.
    pub ad_domain: String,
    /// Entra DeviceId, when joined.
    pub entra_device_id: Option<String>,
    /// Join type label.
    pub join_type: String,
    /// Current failure.
    pub failure: Option<FailureView>,
    /// Since when the current failure is seen.
    pub failing_since: Option<String>,
    /// First report.
    pub first_seen: String,
    /// Last report.
    pub last_seen: String,
    /// Not heard from within the stale window.
    pub stale: bool,
}

const SUMMARY_COLUMNS: &str = "machine_id, hostname, ad_domain, entra_device_id, join_type, \
    failure_phase, failure_cause, failure_code, failure_symbol, failing_since, first_seen, last_seen";

/// The failure of a row with the `failure_phase`, `failure_cause`, `failure_code` and
/// `failure_symbol` columns (devices and history alike).
fn failure_view(row: &Row<'_>) -> rusqlite::Result<Option<FailureView>> {
    let cause: Option<String> = row.get("failure_cause")?;
    Ok(match cause {
        Some(cause) => Some(FailureView {
            phase: row
                .get::<_, Option<String>>("failure_phase")?
                .unwrap_or_default(),
            cause,
            code: row
                .get::<_, Option<i64>>("failure_code")?
                .map(|c| dsreg_proto::hex(c as u32)),
            symbol: row
                .get::<_, Option<String>>("failure_symbol")?
                .unwrap_or_default(),
        }),
        None => None,
    })
}

/// A device row selected with [`SUMMARY_COLUMNS`].
fn summary(row: &Row<'_>, stale_cutoff: i64) -> rusqlite::Result<DeviceSummary> {
    let last_seen_ms: i64 = row.get("last_seen")?;
    Ok(DeviceSummary {
        machine_id: row.get("machine_id")?,
        hostname: row.get("hostname")?,
        ad_domain: row.get("ad_domain")?,
        entra_device_id: row.get("entra_device_id")?,
        join_type: row.get("join_type")?,
        failure: failure_view(row)?,
        failing_since: row.get::<_, Option<i64>>("failing_since")?.map(rfc3339),
        first_seen: rfc3339(row.get("first_seen")?),
        last_seen: rfc3339(last_seen_ms),
        stale: last_seen_ms < stale_cutoff,
    })
}

/// Filters of `/api/v1/devices`, already validated.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Join type label.
    pub join_type: Option<String>,
    /// Phase label.
    pub phase: Option<String>,
    /// Cause id.
    pub cause: Option<String>,
    /// Failure code.
    pub code: Option<u32>,
    /// Only failing devices whose failure has no code (`code=none`).
    pub no_code: bool,
    /// Catalog symbol.
    pub symbol: Option<String>,
    /// Host name prefix (case-insensitive; an exact name is its own prefix).
    pub hostname: Option<String>,
    /// Only stale (`true`) or only fresh (`false`) devices.
    pub stale: Option<bool>,
    /// Keyset cursor: machine ids strictly after this one.
    pub after: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// One page of devices, and the last machine id when more follow.
pub fn list_devices(
    conn: &Connection,
    f: &DeviceFilter,
    stale_cutoff: i64,
) -> Result<(Vec<DeviceSummary>, Option<String>), StoreError> {
    let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM devices WHERE 1 = 1");
    if f.no_code {
        sql.push_str(" AND failure_cause IS NOT NULL AND failure_code IS NULL");
    }
    let mut args: Vec<Value> = Vec::new();
    let mut add = |clause: &str, v: Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(v) = &f.join_type {
        add(" AND join_type = ?", Value::Text(v.clone()));
    }
    if let Some(v) = &f.phase {
        add(" AND failure_phase = ?", Value::Text(v.clone()));
    }
    if let Some(v) = &f.cause {
        add(" AND failure_cause = ?", Value::Text(v.clone()));
    }
    if let Some(v) = f.code {
        add(" AND failure_code = ?", Value::Integer(i64::from(v)));
    }
    if let Some(v) = &f.symbol {
        add(" AND failure_symbol = ?", Value::Text(v.clone()));
    }
    if let Some(v) = &f.hostname {
        let escaped = v
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        add(
            " AND hostname LIKE ? ESCAPE '\\'",
            Value::Text(format!("{escaped}%")),
        );
    }
    match f.stale {
        Some(true) => add(" AND last_seen < ?", Value::Integer(stale_cutoff)),
        Some(false) => add(" AND last_seen >= ?", Value::Integer(stale_cutoff)),
        None => {}
    }
    if let Some(v) = &f.after {
        add(" AND machine_id > ?", Value::Text(v.clone()));
    }
    add(
        " ORDER BY machine_id LIMIT ?",
        Value::Integer(f.limit as i64 + 1),
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(summary(row, stale_cutoff)?);
    }
    let next = if out.len() > f.limit {
        out.truncate(f.limit);
        out.last().map(|d| d.machine_id.clone())
    } else {
        None
    };
    Ok((out, next))
}

/// A history row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryRow {
    /// When it was received.
    pub at: String,
    /// `transition` or `sample`.
    pub kind: String,
    /// The report that caused it.
    pub report_id: String,
    /// Join type then.
    pub join_type: String,
    /// Failure then.
    pub failure: Option<FailureView>,
}

/// Everything `/api/v1/devices/{key}` shows, before catalog enrichment.
#[derive(Debug, Clone)]
pub struct DeviceDetail {
    /// The summary columns.
    pub summary: DeviceSummary,
    /// Agent version of the latest snapshot.
    pub agent_version: String,
    /// Windows build.
    pub os_build: String,
    /// `system` / `user` / `""`.
    pub execution_context: String,
    /// When the agent collected the latest snapshot.
    pub collected_at: Option<String>,
    /// The latest snapshot (re-diagnosed).
    pub snapshot: Snapshot,
    /// Recent event records, newest first.
    pub events: Vec<EventRecord>,
    /// Recent history, newest first.
    pub history: Vec<HistoryRow>,
}

/// Resolves `{key}`: machine id, else host name (case-insensitive, most recently seen wins),
/// else Entra DeviceId (case-insensitive).
pub fn resolve_key(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    let q = [
        "SELECT machine_id FROM devices WHERE machine_id = ?1",
        "SELECT machine_id FROM devices WHERE hostname = ?1 ORDER BY last_seen DESC LIMIT 1",
        "SELECT machine_id FROM devices WHERE entra_device_id = lower(?1) LIMIT 1",
    ];
    for sql in q {
        if let Some(id) = conn.query_row(sql, [key], |r| r.get(0)).optional()? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// History rows of a device, newest first.
pub fn history(
    conn: &Connection,
    machine_id: &str,
    limit: usize,
) -> Result<Vec<HistoryRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT at, kind, report_id, join_type, failure_phase, failure_cause, failure_code,
            failure_symbol FROM history WHERE machine_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![machine_id, limit as i64], |row| {
        Ok(HistoryRow {
            at: rfc3339(row.get("at")?),
            kind: row.get("kind")?,
            report_id: row.get("report_id")?,
            join_type: row.get("join_type")?,
            failure: failure_view(row)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The full drill-down of one device (by machine id).
pub fn device(
    conn: &Connection,
    machine_id: &str,
    stale_cutoff: i64,
    recent: usize,
) -> Result<Option<DeviceDetail>, StoreError> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, agent_version, os_build, execution_context, \
                 collected_at, snapshot FROM devices WHERE machine_id = ?1"
            ),
            [machine_id],
            |row| {
                Ok((
                    summary(row, stale_cutoff)?,
                    row.get::<_, String>("agent_version")?,
                    row.get::<_, String>("os_build")?,
                    row.get::<_, String>("execution_context")?,
                    row.get::<_, Option<i64>>("collected_at")?,
                    row.get::<_, Vec<u8>>("snapshot")?,
                ))
            },
        )
        .optional()?;
    let Some((summary, agent_version, os_build, execution_context, collected, blob)) = row else {
        return Ok(None);
    };
    let snapshot =
        Snapshot::decode(blob.as_slice()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut stmt = conn.prepare(
        "SELECT record FROM events WHERE machine_id = ?1 ORDER BY time DESC, record_id DESC LIMIT ?2",
    )?;
    let blobs = stmt
        .query_map(params![machine_id, recent as i64], |r| {
            r.get::<_, Vec<u8>>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let events = blobs
        .iter()
        .map(|b| EventRecord::decode(b.as_slice()).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(DeviceDetail {
        summary,
        agent_version,
        os_build,
        execution_context,
        collected_at: collected.map(rfc3339),
        snapshot,
        events,
        history: history(conn, machine_id, recent)?,
    }))
}

/// One group of `/api/v1/failures`, before catalog enrichment.
#[derive(Debug, Clone)]
pub struct FailureGroupRow {
    /// The group's labels (exact code, not folded: the API has no label-cardinality limit).
    pub failure: FailureView,
    /// Devices in the group.
    pub devices: u64,
    /// Earliest `failing_since` in the group.
    pub first_seen: Option<String>,
    /// Latest `last_seen` in the group.
    pub last_seen: Option<String>,
    /// Up to 5 most recently seen devices: host name (or machine id when it has none).
    pub sample_devices: Vec<String>,
}

/// The failing devices grouped by (phase, cause, code, symbol), largest group first. Uses the
/// partial index on failing devices: healthy devices are not read.
pub fn failure_groups(conn: &Connection) -> Result<Vec<FailureGroupRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT failure_phase, failure_cause, failure_code, failure_symbol, COUNT(*) AS devices,
            MIN(failing_since) AS first_seen, MAX(last_seen) AS last_seen
         FROM devices WHERE failure_cause IS NOT NULL
         GROUP BY failure_phase, failure_cause, failure_code, failure_symbol
         ORDER BY COUNT(*) DESC, failure_cause, failure_code",
    )?;
    let mut groups = stmt
        .query_map([], |row| {
            Ok(FailureGroupRow {
                failure: failure_view(row)?.unwrap_or(FailureView {
                    phase: String::new(),
                    cause: String::new(),
                    code: None,
                    symbol: String::new(),
                }),
                devices: row.get::<_, i64>("devices")? as u64,
                first_seen: row.get::<_, Option<i64>>("first_seen")?.map(rfc3339),
                last_seen: row.get::<_, Option<i64>>("last_seen")?.map(rfc3339),
                sample_devices: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut samples = conn.prepare(
        "SELECT CASE WHEN hostname = '' THEN machine_id ELSE hostname END FROM devices
         WHERE failure_cause = ?1 AND failure_phase IS ?2 AND failure_code IS ?3
         ORDER BY last_seen DESC LIMIT 5",
    )?;
    for g in &mut groups {
        let code = g
            .failure
            .code
            .as_deref()
            .and_then(dsreg_proto::catalog::parse_code)
            .map(i64::from);
        g.sample_devices = samples
            .query_map(params![g.failure.cause, g.failure.phase, code], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(groups)
}

/// A device listed under an agent-health problem.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentSample {
    /// The device key.
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
    /// dsreg-agent version.
    pub agent_version: String,
    /// Reports its spool dropped since install.
    pub spool_dropped: i64,
    /// Reports waiting in its spool.
    pub spool_depth: i64,
    /// Its last acknowledged delivery.
    pub last_delivery: Option<String>,
    /// Last report received.
    pub last_seen: String,
}

/// The agent-health rows of these devices (in the given order; unknown ids skipped).
pub fn agent_rows(
    conn: &Connection,
    machine_ids: &[String],
) -> Result<Vec<AgentSample>, StoreError> {
    let mut q = conn.prepare_cached(
        "SELECT machine_id, hostname, agent_version, agent_spool_dropped, agent_spool_depth,
            agent_last_delivery, last_seen FROM devices WHERE machine_id = ?1",
    )?;
    let mut out = Vec::with_capacity(machine_ids.len());
    for id in machine_ids {
        let row = q
            .query_row([id], |r| {
                Ok(AgentSample {
                    machine_id: r.get("machine_id")?,
                    hostname: r.get("hostname")?,
                    agent_version: r.get("agent_version")?,
                    spool_dropped: r.get("agent_spool_dropped")?,
                    spool_depth: r.get("agent_spool_depth")?,
                    last_delivery: r.get::<_, Option<i64>>("agent_last_delivery")?.map(rfc3339),
                    last_seen: rfc3339(r.get("last_seen")?),
                })
            })
            .optional()?;
        out.extend(row);
    }
    Ok(out)
}
