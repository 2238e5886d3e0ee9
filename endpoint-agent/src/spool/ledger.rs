//! The spool's ledger, `state.json`: everything the agent must remember across restarts, in
//! one file with one owner ([`super::Spool`]).
//!
//! It holds the spool's own counters (reports dropped, last acknowledged delivery) and the
//! collection loop's memory (the event bookmark, the fingerprint of the last queued snapshot,
//! when it was queued). Invariants: written atomically and durably (write `state.json.tmp`,
//! fsync, rename, fsync the directory); a field that an older ledger lacks reads as unset.
//!
//! Migration: agents before the ledger kept the loop's memory in `agent-state.json`, written
//! without fsync. At open, if that file is there, its fields fill the ledger's unset ones, the
//! ledger is saved, and only then is the old file removed — so an upgraded agent neither
//! forgets its bookmark (and resends every event) nor reads the old file twice.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{SpoolError, io_err, sync_dir};

/// The ledger's file name in the spool directory.
pub const LEDGER: &str = "state.json";
/// The loop's state file of agents before the ledger (read once, then removed).
pub const LEGACY_AGENT_STATE: &str = "agent-state.json";

/// What survives restarts: the spool's counters and the collection loop's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolState {
    /// Reports dropped by the overflow policy since the spool was created.
    pub dropped: u64,
    /// Unix seconds of the last acknowledged delivery.
    pub last_delivery_unix: Option<i64>,
    /// Highest event record id already reported.
    #[serde(default)]
    pub event_bookmark: Option<u64>,
    /// Fingerprint of the last queued snapshot (volatile fields excluded).
    #[serde(default)]
    pub last_fingerprint: Option<u64>,
    /// Unix seconds when the last report was queued.
    #[serde(default)]
    pub last_queued_unix: Option<i64>,
}

/// `agent-state.json` as agents before the ledger wrote it.
#[derive(Debug, Default, Deserialize)]
struct LegacyAgentState {
    event_bookmark: Option<u64>,
    last_fingerprint: Option<u64>,
    last_queued_unix: Option<i64>,
}

/// Loads the ledger of the spool in `dir` (the default when there is none), folding in and
/// removing a legacy `agent-state.json`.
pub(super) fn load(dir: &Path) -> Result<SpoolState, SpoolError> {
    let path = dir.join(LEDGER);
    let mut state = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SpoolError::State {
            path: path.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SpoolState::default(),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let legacy = dir.join(LEGACY_AGENT_STATE);
    if let Ok(bytes) = fs::read(&legacy) {
        // Unreadable content is no reason to stop: the worst case is one extra report.
        let old: LegacyAgentState = serde_json::from_slice(&bytes).unwrap_or_default();
        state.event_bookmark = state.event_bookmark.or(old.event_bookmark);
        state.last_fingerprint = state.last_fingerprint.or(old.last_fingerprint);
        state.last_queued_unix = state.last_queued_unix.or(old.last_queued_unix);
        save(dir, &state)?;
        fs::remove_file(&legacy).map_err(io_err("remove", &legacy))?;
        let _ = fs::remove_file(dir.join(format!("{LEGACY_AGENT_STATE}.tmp")));
        sync_dir(dir)?;
    }
    Ok(state)
}

/// Saves the ledger atomically and durably.
pub(super) fn save(dir: &Path, state: &SpoolState) -> Result<(), SpoolError> {
    let path = dir.join(LEDGER);
    let tmp = dir.join(format!("{LEDGER}.tmp"));
    let body = serde_json::to_vec_pretty(state).unwrap_or_default();
    {
        let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&body).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_agent_state_is_folded_in_once_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(LEDGER),
            r#"{"dropped": 2, "last_delivery_unix": 100}"#,
        )
        .unwrap();
        fs::write(
            dir.path().join(LEGACY_AGENT_STATE),
            r#"{"event_bookmark": 42, "last_fingerprint": 7, "last_queued_unix": 90}"#,
        )
        .unwrap();
        let state = load(dir.path()).unwrap();
        assert_eq!(
            state,
            SpoolState {
                dropped: 2,
                last_delivery_unix: Some(100),
                event_bookmark: Some(42),
                last_fingerprint: Some(7),
                last_queued_unix: Some(90),
            }
        );
        assert!(!dir.path().join(LEGACY_AGENT_STATE).exists());
        assert_eq!(load(dir.path()).unwrap(), state, "saved in the ledger");
    }

    #[test]
    fn the_ledger_wins_over_a_stale_legacy_file_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let newer = SpoolState {
            event_bookmark: Some(50),
            ..SpoolState::default()
        };
        save(dir.path(), &newer).unwrap();
        fs::write(
            dir.path().join(LEGACY_AGENT_STATE),
            r#"{"event_bookmark": 42, "last_queued_unix": 90}"#,
        )
        .unwrap();
        let state = load(dir.path()).unwrap();
        assert_eq!(
            (state.event_bookmark, state.last_queued_unix),
            (Some(50), Some(90))
        );
        fs::write(dir.path().join(LEGACY_AGENT_STATE), b"{not json").unwrap();
        assert_eq!(load(dir.path()).unwrap(), state);
        assert!(!dir.path().join(LEGACY_AGENT_STATE).exists());
    }
}
