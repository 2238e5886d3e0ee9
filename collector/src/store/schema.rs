//! Versioned schema migrations, in code.
//!
//! `PRAGMA user_version` holds the number of steps applied; [`migrate`] runs the missing ones,
//! each in its own transaction, so it is idempotent and safe to run at every start. Steps are
//! append-only: never edit a released step, add a new one.
//!
//! Times are unix milliseconds (UTC) in INTEGER columns; codes are the u32 value in INTEGER;
//! the latest snapshot and event records are their prost encoding.

use rusqlite::Connection;

/// The migration steps, in order. Step `i` brings `user_version` from `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: devices (current state), reports (idempotency), history, attempts, events.
    r#"
    CREATE TABLE devices (
        machine_id        TEXT PRIMARY KEY NOT NULL,
        hostname          TEXT NOT NULL COLLATE NOCASE,
        ad_domain         TEXT NOT NULL,
        entra_device_id   TEXT,
        join_type         TEXT NOT NULL,
        failure_phase     TEXT,
        failure_cause     TEXT,
        failure_code      INTEGER,
        failure_symbol    TEXT,
        failing_since     INTEGER,
        failing_tests     INTEGER NOT NULL DEFAULT 0,
        without_prt       INTEGER NOT NULL DEFAULT 0,
        first_seen        INTEGER NOT NULL,
        last_seen         INTEGER NOT NULL,
        collected_at      INTEGER,
        last_report_id    TEXT NOT NULL,
        agent_version     TEXT NOT NULL,
        os_build          TEXT NOT NULL,
        execution_context TEXT NOT NULL,
        snapshot          BLOB NOT NULL
    );
    CREATE INDEX devices_hostname ON devices(hostname);
    CREATE INDEX devices_entra ON devices(entra_device_id) WHERE entra_device_id IS NOT NULL;
    CREATE INDEX devices_failure ON devices(failure_cause, failure_phase, failure_code)
        WHERE failure_cause IS NOT NULL;
    CREATE INDEX devices_join_type ON devices(join_type, machine_id);

    CREATE TABLE reports (
        report_id    TEXT PRIMARY KEY NOT NULL,
        machine_id   TEXT NOT NULL,
        content_hash INTEGER NOT NULL,
        received_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX reports_received ON reports(received_at);

    CREATE TABLE history (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        machine_id     TEXT NOT NULL,
        at             INTEGER NOT NULL,
        kind           TEXT NOT NULL,
        report_id      TEXT NOT NULL,
        join_type      TEXT NOT NULL,
        failure_phase  TEXT,
        failure_cause  TEXT,
        failure_code   INTEGER,
        failure_symbol TEXT
    );
    CREATE INDEX history_device ON history(machine_id, id);
    CREATE INDEX history_at ON history(at);

    CREATE TABLE attempts (
        machine_id   TEXT NOT NULL,
        attempt_time TEXT NOT NULL,
        code         INTEGER NOT NULL,
        phase        TEXT NOT NULL,
        cause        TEXT NOT NULL,
        symbol       TEXT NOT NULL,
        source       TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        PRIMARY KEY (machine_id, attempt_time, code)
    ) WITHOUT ROWID;
    CREATE INDEX attempts_received ON attempts(received_at);

    CREATE TABLE events (
        machine_id  TEXT NOT NULL,
        record_id   INTEGER NOT NULL,
        event_id    INTEGER NOT NULL,
        time        TEXT,
        exit_code   INTEGER,
        received_at INTEGER NOT NULL,
        record      BLOB NOT NULL,
        PRIMARY KEY (machine_id, record_id)
    ) WITHOUT ROWID;
    CREATE INDEX events_received ON events(received_at);
    "#,
    // 2: the latest snapshot per execution-context part (`device` = SYSTEM or unspecified,
    // `user`), merged into `devices.snapshot` (see `store::merge`); agent health per part and,
    // on `devices`, of the part the device view takes it from. Existing rows become the part
    // of their stored context.
    r#"
    CREATE TABLE device_parts (
        machine_id           TEXT NOT NULL,
        part                 TEXT NOT NULL,
        context              INTEGER NOT NULL,
        report_id            TEXT NOT NULL,
        collected_at         INTEGER,
        received_at          INTEGER NOT NULL,
        snapshot             BLOB NOT NULL,
        events               BLOB,
        agent_version        TEXT NOT NULL DEFAULT '',
        spool_depth          INTEGER NOT NULL DEFAULT 0,
        spool_dropped        INTEGER NOT NULL DEFAULT 0,
        last_delivery        INTEGER,
        parse_warnings       INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (machine_id, part)
    ) WITHOUT ROWID;
    INSERT INTO device_parts (machine_id, part, context, report_id, collected_at, received_at,
        snapshot, agent_version)
    SELECT machine_id, CASE execution_context WHEN 'user' THEN 'user' ELSE 'device' END,
        CASE execution_context WHEN 'user' THEN 2 WHEN 'system' THEN 1 ELSE 0 END,
        last_report_id, collected_at, last_seen, snapshot, agent_version FROM devices;
    ALTER TABLE devices ADD COLUMN agent_spool_depth INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN agent_spool_dropped INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN agent_last_delivery INTEGER;
    ALTER TABLE devices ADD COLUMN agent_parse_warnings INTEGER NOT NULL DEFAULT 0;
    "#,
    // 3: the times and id of each part's latest report move to the device row, the one row an
    // unchanged heartbeat now writes (`store::heartbeat`): one dirty page per heartbeat instead
    // of two. `device_parts` keeps them as of the part's last full write; readers take them
    // from here whenever `<part>_received_at` is set (`store::merge::parts`). With them the hash
    // of what a heartbeat must repeat (`heartbeat::state_start`); NULL after the upgrade, so
    // each part's first report after it takes the full path and sets it.
    r#"
    ALTER TABLE devices ADD COLUMN device_report_id TEXT;
    ALTER TABLE devices ADD COLUMN device_collected_at INTEGER;
    ALTER TABLE devices ADD COLUMN device_received_at INTEGER;
    ALTER TABLE devices ADD COLUMN device_last_delivery INTEGER;
    ALTER TABLE devices ADD COLUMN user_report_id TEXT;
    ALTER TABLE devices ADD COLUMN user_collected_at INTEGER;
    ALTER TABLE devices ADD COLUMN user_received_at INTEGER;
    ALTER TABLE devices ADD COLUMN user_last_delivery INTEGER;
    ALTER TABLE devices ADD COLUMN device_state_hash INTEGER;
    ALTER TABLE devices ADD COLUMN user_state_hash INTEGER;
    UPDATE devices SET
        (device_report_id, device_collected_at, device_received_at, device_last_delivery) = (
            SELECT report_id, collected_at, received_at, last_delivery FROM device_parts p
            WHERE p.machine_id = devices.machine_id AND p.part = 'device'),
        (user_report_id, user_collected_at, user_received_at, user_last_delivery) = (
            SELECT report_id, collected_at, received_at, last_delivery FROM device_parts p
            WHERE p.machine_id = devices.machine_id AND p.part = 'user');
    "#,
    // 4: join attempts over time and join intent (DESIGN §4, §4b). `not_targeted` holds why
    // hybrid join is not intended (`domain_controller`, `policy_disabled`). The cause id
    // `device_authentication_failed` was merged into `device_auth_failed`
    // (`catalog::CAUSE_ALIASES`): stored rows follow. The heartbeat state hashes are cleared so
    // that every device's next report takes the full path and is diagnosed with the new rules.
    r#"
    ALTER TABLE devices ADD COLUMN not_targeted TEXT;
    UPDATE devices SET failure_cause = 'device_auth_failed'
        WHERE failure_cause = 'device_authentication_failed';
    UPDATE history SET failure_cause = 'device_auth_failed'
        WHERE failure_cause = 'device_authentication_failed';
    UPDATE attempts SET cause = 'device_auth_failed'
        WHERE cause = 'device_authentication_failed';
    UPDATE devices SET device_state_hash = NULL, user_state_hash = NULL;
    "#,
    // 5: Graph sync (issue 13): the cloud devices of Microsoft Graph `devices/delta`, one row per
    // directory object (`doc` = the merged JSON Graph sent; the other columns are extracted
    // from it for matching), and the one-row sync state with the delta link. `seen_round` is
    // the complete round that last listed the object (objects a full round did not list are
    // deleted at its end); `pending_since` is when the object was first read as pending.
    // Written only by the graph sync's own connection (`graph::cloud`), never by the writer.
    r#"
    CREATE TABLE cloud_devices (
        object_id     TEXT PRIMARY KEY NOT NULL,
        device_id     TEXT,
        display_name  TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
        trust_type    TEXT,
        on_prem_sid   TEXT COLLATE NOCASE,
        doc           TEXT NOT NULL,
        read_at       INTEGER NOT NULL,
        pending_since INTEGER,
        seen_round    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX cloud_devices_device_id ON cloud_devices(device_id) WHERE device_id IS NOT NULL;
    CREATE INDEX cloud_devices_round ON cloud_devices(seen_round);
    CREATE TABLE graph_sync (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        delta_link       TEXT,
        full_rounds      INTEGER NOT NULL DEFAULT 0,
        last_complete_at INTEGER,
        last_success_at  INTEGER
    );
    INSERT INTO graph_sync (id) VALUES (1);
    "#,
    // 6: per-device credentials (`enroll.rs`): the SHA-256 of each device's token, never the
    // token; one row per machine id (enrolling again replaces it).
    r#"
    CREATE TABLE device_credentials (
        machine_id   TEXT PRIMARY KEY NOT NULL,
        token_sha256 BLOB NOT NULL UNIQUE,
        hostname     TEXT NOT NULL,
        enrolled_at  INTEGER NOT NULL
    );
    "#,
    // 7: the device list filtered by cause walks this index in machine id order and stops after
    // a page, instead of sorting every device of the cause (95 ms at 1M devices for a large
    // group). Heartbeats do not touch either column, so the writer rarely maintains it.
    r#"
    CREATE INDEX devices_cause_id ON devices(failure_cause, machine_id)
        WHERE failure_cause IS NOT NULL;
    "#,
    // 8: the time of the device's newest history row, so a heartbeat decides whether a
    // history sample is due from the device row it reads anyway, instead of a seek in
    // `history_device` (a random page at 1M devices). NULL until the writer first looks it up.
    r#"
    ALTER TABLE devices ADD COLUMN history_at INTEGER;
    "#,
];

/// Applies the missing migration steps; returns the resulting schema version.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = usize::try_from(current).unwrap_or(0);
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(MIGRATIONS.len().max(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_one_cause_needs_no_sort() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT machine_id FROM devices WHERE 1 = 1
                 AND failure_cause = ?1 AND machine_id > ?2 ORDER BY machine_id LIMIT ?3",
            )
            .unwrap()
            .query_map(["x", "m", "101"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains("devices_cause_id")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:?}");
    }

    #[test]
    fn step_3_copies_each_parts_times_to_the_device_row() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..2] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO devices (machine_id, hostname, ad_domain, join_type, first_seen,
                last_seen, last_report_id, agent_version, os_build, execution_context, snapshot)
             VALUES ('m-1', 'PC-1', 'CONTOSO', 'hybrid_joined', 1, 9, 'r-9', '1.0', '10.0',
                'user', x'');
             INSERT INTO device_parts (machine_id, part, context, report_id, collected_at,
                received_at, snapshot, last_delivery)
             VALUES ('m-1', 'device', 1, 'r-5', 50, 55, x'', 40),
                    ('m-1', 'user', 2, 'r-9', 90, 95, x'', NULL);",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        type Times = (String, i64, i64, Option<i64>, String, i64, i64, Option<i64>);
        let got: Times = conn
            .query_row(
                "SELECT device_report_id, device_collected_at, device_received_at,
                    device_last_delivery, user_report_id, user_collected_at, user_received_at,
                    user_last_delivery FROM devices",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            got,
            ("r-5".into(), 50, 55, Some(40), "r-9".into(), 90, 95, None)
        );
    }

    #[test]
    fn migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        drop(conn);
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN \
                 ('devices','reports','history','attempts','events','device_parts')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 6);
    }
}
