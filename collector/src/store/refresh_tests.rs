//! After a failed group commit the fleet is re-read from disk (`read::refresh_fleet`): here
//! the disk is put ahead of the fleet the way SQLite can leave it (a savepoint released in
//! autocommit mode after an implicit rollback commits on its own) and the refresh makes the
//! aggregates equal to a fleet rebuilt from the file.

use std::time::Duration;

use rusqlite::Connection;

use super::tests::{open, report};
use super::{apply, read};
use crate::fleet::Fleet;

#[tokio::test]
async fn a_refresh_after_a_failed_commit_makes_the_fleet_equal_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let stale = Duration::from_secs(3600);
    let (store, fleet) = open(&path, stale);
    store
        .submit((0..10).map(|d| report(d + 1, d, 0, 100)).collect())
        .await
        .unwrap();
    store.close().await;

    // Reports committed behind the fleet's back: new failures for devices 0..5, a new device.
    let mut conn = Connection::open(&path).unwrap();
    let behind: Vec<_> = (0..5)
        .map(|d| report(100 + d, d, 1, 200))
        .chain([report(200, 42, 1, 200)])
        .collect();
    let tx = conn.transaction().unwrap();
    for r in &behind {
        apply::report(&tx, r, 300_000, 5).unwrap();
    }
    tx.commit().unwrap();
    let now = 400_000;
    let on_disk = {
        let f = Fleet::new(stale);
        read::rebuild_fleet(&conn, &f).unwrap();
        f.counts(now)
    };
    assert_ne!(fleet.counts(now), on_disk, "the disk is ahead of the fleet");

    let ids: Vec<String> = behind.iter().map(|r| r.machine_id.clone()).collect();
    assert_eq!(read::refresh_fleet(&conn, &fleet, &ids).unwrap(), 6);
    assert_eq!(fleet.counts(now), on_disk);
}
