//! The device facts' columns, read by name.
//!
//! A query selects [`FACT_COLUMNS`] among whatever else it needs, in any order; [`FactColumns`]
//! finds each fact's position by its column name once per statement, and [`facts_from_row`]
//! reads the row through it. So a column list can change without a reader silently taking
//! the wrong column, and rows are not paying a scan of the column names for every value (what
//! a by-name `Row::get` costs), which matters for the writer's per-report read and for the
//! fleet rebuild over every device at start.
//!
//! Invariant: every name in [`FACT_NAMES`] is a result column of [`FACT_COLUMNS`] (a missing
//! one fails [`FactColumns::of`] with `InvalidColumnName`, tested).

use rusqlite::{Row, Statement};

use crate::fleet::{DeviceFacts, FailureFacts};

/// The columns [`facts_from_row`] reads, for a query's select list.
pub(crate) const FACT_COLUMNS: &str = "join_type, failure_phase, failure_cause, failure_code, \
    failure_symbol, failing_tests, without_prt, agent_version, \
    agent_spool_dropped > 0 AS spool_overflowing, not_targeted";

/// The result column names of [`FACT_COLUMNS`], in [`FactColumns`] field order.
const FACT_NAMES: [&str; 10] = [
    "join_type",
    "failure_phase",
    "failure_cause",
    "failure_code",
    "failure_symbol",
    "failing_tests",
    "without_prt",
    "agent_version",
    "spool_overflowing",
    "not_targeted",
];

/// The positions of `names` among `stmt`'s result columns, looked up by name.
pub(crate) fn positions<const N: usize>(
    stmt: &Statement<'_>,
    names: [&str; N],
) -> rusqlite::Result<[usize; N]> {
    let mut at = [0; N];
    for (slot, name) in at.iter_mut().zip(names) {
        *slot = stmt.column_index(name)?;
    }
    Ok(at)
}

/// Where each fact is in one statement's rows (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FactColumns {
    join_type: usize,
    phase: usize,
    cause: usize,
    code: usize,
    symbol: usize,
    failing_tests: usize,
    without_prt: usize,
    agent_version: usize,
    spool_overflowing: usize,
    not_targeted: usize,
}

impl FactColumns {
    /// Finds the facts among `stmt`'s result columns by name.
    pub(crate) fn of(stmt: &Statement<'_>) -> rusqlite::Result<FactColumns> {
        let [
            join_type,
            phase,
            cause,
            code,
            symbol,
            failing_tests,
            without_prt,
            agent_version,
            spool_overflowing,
            not_targeted,
        ] = positions(stmt, FACT_NAMES)?;
        Ok(FactColumns {
            join_type,
            phase,
            cause,
            code,
            symbol,
            failing_tests,
            without_prt,
            agent_version,
            spool_overflowing,
            not_targeted,
        })
    }
}

/// Facts of a device row of a statement selecting [`FACT_COLUMNS`] (shared by the writer, the
/// fleet rebuild and refresh).
pub(crate) fn facts_from_row(row: &Row<'_>, at: &FactColumns) -> rusqlite::Result<DeviceFacts> {
    let cause: Option<String> = row.get(at.cause)?;
    let failing_tests: i64 = row.get(at.failing_tests)?;
    let failure = match cause {
        Some(cause) => Some(FailureFacts {
            phase: row.get::<_, Option<String>>(at.phase)?.unwrap_or_default(),
            cause,
            code: row.get::<_, Option<i64>>(at.code)?.map(|c| c as u32),
            symbol: row.get::<_, Option<String>>(at.symbol)?.unwrap_or_default(),
        }),
        None => None,
    };
    let not_targeted: Option<String> = row.get(at.not_targeted)?;
    Ok(DeviceFacts {
        join_type: row.get(at.join_type)?,
        failure,
        failing_tests: u8::try_from(failing_tests).unwrap_or(0),
        without_prt: row.get(at.without_prt)?,
        agent_version: row.get(at.agent_version)?,
        spool_overflowing: row.get(at.spool_overflowing)?,
        not_targeted: not_targeted
            .as_deref()
            .and_then(crate::fleet::not_targeted_reason),
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn facts_are_found_by_name_whatever_the_select_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO devices (machine_id, hostname, ad_domain, join_type, failure_phase,
                failure_cause, failure_code, failure_symbol, failing_tests, without_prt,
                first_seen, last_seen, agent_version, agent_spool_dropped, not_targeted,
                last_report_id, os_build, execution_context, snapshot)
             VALUES ('m-1', 'PC-1', 'CONTOSO', 'domain_joined', 'join', 'device_not_synced',
                2149319666, 'S', 5, 1, 1, 2, '1.2.3', 3, 'policy_disabled', 'r-1', '', 'system',
                x'')",
            [],
        )
        .unwrap();
        for sql in [
            format!("SELECT {FACT_COLUMNS} FROM devices"),
            format!("SELECT last_seen, hostname, {FACT_COLUMNS}, machine_id FROM devices"),
        ] {
            let mut stmt = conn.prepare(&sql).unwrap();
            let at = FactColumns::of(&stmt).unwrap();
            let facts = stmt.query_row([], |row| facts_from_row(row, &at)).unwrap();
            assert_eq!(facts.join_type, "domain_joined");
            let f = facts.failure.unwrap();
            assert_eq!(
                (f.phase.as_str(), f.cause.as_str()),
                ("join", "device_not_synced")
            );
            assert_eq!((f.code, f.symbol.as_str()), (Some(0x801c_03f2), "S"));
            assert_eq!(facts.failing_tests, 5);
            assert!(facts.without_prt && facts.spool_overflowing);
            assert_eq!(facts.agent_version, "1.2.3");
            assert_eq!(facts.not_targeted, Some("policy_disabled"));
        }
        let missing = conn.prepare("SELECT join_type FROM devices").unwrap();
        assert!(FactColumns::of(&missing).is_err());
    }
}
