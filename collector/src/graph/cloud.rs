//! The cloud side in SQLite: `cloud_devices` (one row per Graph device object) and the
//! one-row `graph_sync` state (delta link, complete rounds).
//!
//! Written only through the sync's own connection (the writer thread owns the device rows;
//! these tables are the sync's alone, so a second connection with short transactions — one
//! per page — is the least invasive path: the writer waits at most one page's upserts for the
//! lock, well inside its busy timeout). Invariants: `doc` keeps only the `$select`ed
//! properties, strings cut to [`FIELD_MAX`] characters and `alternativeSecurityIds` reduced to
//! their `type`s (the keys themselves are not needed); a delta page's object is merged into the
//! stored one, because delta rounds send only changed properties; the delta link is stored
//! only when a round reached its end.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::StoreError;

/// Longest string kept from a Graph property.
pub const FIELD_MAX: usize = 256;
/// Most `alternativeSecurityIds` entries kept per object.
const ALT_IDS_MAX: usize = 16;

/// The properties the sync asks for (`$select`), in Graph's spelling.
pub const SELECT: &[&str] = &[
    "id",
    "deviceId",
    "displayName",
    "trustType",
    "accountEnabled",
    "alternativeSecurityIds",
    "registrationDateTime",
    "approximateLastSignInDateTime",
    "operatingSystem",
    "operatingSystemVersion",
    "onPremisesSyncEnabled",
    "onPremisesLastSyncDateTime",
    "onPremisesSecurityIdentifier",
    "isManaged",
    "isCompliant",
];

/// A device's state in the cloud (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudState {
    /// An object with registered keys (or a non-hybrid object), enabled.
    Registered,
    /// A synced `ServerAd` object without registered keys: the device has not completed join.
    Pending,
    /// `accountEnabled` is false.
    Disabled,
    /// No cloud object after a complete round.
    Absent,
}

impl CloudState {
    /// Every state, in label order of the metric.
    pub const ALL: [CloudState; 4] = [
        CloudState::Registered,
        CloudState::Pending,
        CloudState::Disabled,
        CloudState::Absent,
    ];

    /// The label (`registered`, `pending`, `disabled`, `absent`).
    pub fn label(self) -> &'static str {
        match self {
            CloudState::Registered => "registered",
            CloudState::Pending => "pending",
            CloudState::Disabled => "disabled",
            CloudState::Absent => "absent",
        }
    }

    /// Parses a label.
    pub fn from_label(s: &str) -> Option<CloudState> {
        CloudState::ALL.into_iter().find(|c| c.label() == s)
    }
}

/// One cloud device object as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CloudDevice {
    /// Directory object id (`id`).
    pub object_id: String,
    /// Entra device id (`deviceId`, lower-case): what dsregcmd prints as DeviceId.
    pub device_id: Option<String>,
    /// `displayName` (the computer name for hybrid objects).
    pub display_name: String,
    /// `trustType`: `ServerAd` (hybrid), `AzureAd`, `Workplace`.
    pub trust_type: Option<String>,
    /// `accountEnabled`.
    pub account_enabled: Option<bool>,
    /// Number of `alternativeSecurityIds` (registered keys).
    pub registered_keys: usize,
    /// `registrationDateTime`.
    pub registration_time: Option<String>,
    /// `approximateLastSignInDateTime`.
    pub last_sign_in: Option<String>,
    /// `operatingSystem`.
    pub operating_system: Option<String>,
    /// `operatingSystemVersion`.
    pub operating_system_version: Option<String>,
    /// `onPremisesSyncEnabled`.
    pub on_premises_sync_enabled: Option<bool>,
    /// `onPremisesLastSyncDateTime`.
    pub on_premises_last_sync: Option<String>,
    /// `onPremisesSecurityIdentifier` (the computer account's SID).
    pub on_premises_sid: Option<String>,
    /// `isManaged`.
    pub is_managed: Option<bool>,
    /// `isCompliant`.
    pub is_compliant: Option<bool>,
    /// When the sync last read this object (unix ms).
    pub read_at: i64,
    /// Since when it is pending (unix ms), while it is.
    pub pending_since: Option<i64>,
}

impl CloudDevice {
    /// The object's state: disabled, else pending (hybrid without keys), else registered.
    pub fn state(&self) -> CloudState {
        if self.account_enabled == Some(false) {
            CloudState::Disabled
        } else if self.is_hybrid() && self.registered_keys == 0 {
            CloudState::Pending
        } else {
            CloudState::Registered
        }
    }

    /// A hybrid (`ServerAd`) object.
    pub fn is_hybrid(&self) -> bool {
        self.trust_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("ServerAd"))
    }

    /// Builds the view of a stored `doc`.
    pub fn from_doc(doc: &Map<String, Value>, read_at: i64, pending_since: Option<i64>) -> Self {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
        let b = |k: &str| doc.get(k).and_then(Value::as_bool);
        CloudDevice {
            object_id: s("id").unwrap_or_default(),
            device_id: s("deviceId").map(|d| d.to_ascii_lowercase()),
            display_name: s("displayName").unwrap_or_default(),
            trust_type: s("trustType"),
            account_enabled: b("accountEnabled"),
            registered_keys: doc
                .get("alternativeSecurityIds")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            registration_time: s("registrationDateTime"),
            last_sign_in: s("approximateLastSignInDateTime"),
            operating_system: s("operatingSystem"),
            operating_system_version: s("operatingSystemVersion"),
            on_premises_sync_enabled: b("onPremisesSyncEnabled"),
            on_premises_last_sync: s("onPremisesLastSyncDateTime"),
            on_premises_sid: s("onPremisesSecurityIdentifier"),
            is_managed: b("isManaged"),
            is_compliant: b("isCompliant"),
            read_at,
            pending_since,
        }
    }
}

/// Keeps the `$select`ed properties of a Graph object, bounded.
fn sanitize(obj: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in SELECT {
        let Some(v) = obj.get(*key) else { continue };
        let v = match v {
            Value::String(s) => Value::String(s.chars().take(FIELD_MAX).collect()),
            Value::Bool(_) | Value::Null | Value::Number(_) => v.clone(),
            Value::Array(items) if *key == "alternativeSecurityIds" => Value::Array(
                items
                    .iter()
                    .take(ALT_IDS_MAX)
                    .map(|i| serde_json::json!({"type": i.get("type").cloned().unwrap_or(Value::Null)}))
                    .collect(),
            ),
            _ => continue,
        };
        out.insert((*key).to_string(), v);
    }
    out
}

/// The stored sync state.
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    /// The delta link of the last complete round.
    pub delta_link: Option<String>,
    /// Full (non-incremental) rounds completed.
    pub full_rounds: i64,
    /// When a round last reached its end (unix ms).
    pub last_complete_at: Option<i64>,
}

/// Reads the sync state.
pub fn state(conn: &Connection) -> Result<SyncState, StoreError> {
    Ok(conn
        .query_row(
            "SELECT delta_link, full_rounds, last_complete_at FROM graph_sync WHERE id = 1",
            [],
            |r| {
                Ok(SyncState {
                    delta_link: r.get(0)?,
                    full_rounds: r.get(1)?,
                    last_complete_at: r.get(2)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// Forgets the delta link (the next round is a full one).
pub fn clear_delta_link(conn: &Connection) -> Result<(), StoreError> {
    conn.execute("UPDATE graph_sync SET delta_link = NULL WHERE id = 1", [])?;
    Ok(())
}

/// What one page did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageStats {
    /// Objects inserted or updated.
    pub upserted: usize,
    /// Objects removed (`@removed`).
    pub removed: usize,
    /// Entries without a usable `id` (skipped).
    pub skipped: usize,
}

/// Applies one page of `devices/delta` in one transaction; `round` marks the objects seen.
pub fn apply_page(
    conn: &mut Connection,
    items: &[Value],
    round: i64,
    now: i64,
) -> Result<PageStats, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut stats = PageStats::default();
    {
        let mut old_q =
            tx.prepare_cached("SELECT doc, pending_since FROM cloud_devices WHERE object_id = ?1")?;
        let mut del = tx.prepare_cached("DELETE FROM cloud_devices WHERE object_id = ?1")?;
        let mut put = tx.prepare_cached(
            "INSERT OR REPLACE INTO cloud_devices (object_id, device_id, display_name, trust_type,
                on_prem_sid, doc, read_at, pending_since, seen_round)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for item in items {
            let Some(obj) = item.as_object() else {
                stats.skipped += 1;
                continue;
            };
            let id = match obj.get("id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() && id.len() <= FIELD_MAX => id,
                _ => {
                    stats.skipped += 1;
                    continue;
                }
            };
            if obj.contains_key("@removed") {
                stats.removed += del.execute([id])?;
                continue;
            }
            let old: Option<(String, Option<i64>)> = old_q
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (mut doc, old_pending) = match old {
                Some((text, p)) => (
                    serde_json::from_str::<Map<String, Value>>(&text).unwrap_or_default(),
                    p,
                ),
                None => (Map::new(), None),
            };
            doc.extend(sanitize(obj));
            let view = CloudDevice::from_doc(&doc, now, None);
            let pending_since =
                (view.state() == CloudState::Pending).then(|| old_pending.unwrap_or(now));
            put.execute(params![
                id,
                view.device_id,
                view.display_name,
                view.trust_type,
                view.on_premises_sid,
                Value::Object(doc).to_string(),
                now,
                pending_since,
                round,
            ])?;
            stats.upserted += 1;
        }
    }
    tx.commit()?;
    Ok(stats)
}

/// Ends a round: stores its delta link; a full round also deletes the objects it did not list
/// and counts itself. Returns the number of objects deleted.
pub fn finish_round(
    conn: &mut Connection,
    full: bool,
    round: i64,
    delta_link: &str,
    now: i64,
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut gone = 0;
    if full {
        gone = tx.execute("DELETE FROM cloud_devices WHERE seen_round < ?1", [round])?;
        tx.execute(
            "UPDATE graph_sync SET full_rounds = ?1 WHERE id = 1",
            [round],
        )?;
    }
    tx.execute(
        "UPDATE graph_sync SET delta_link = ?1, last_complete_at = ?2, last_success_at = ?2
         WHERE id = 1",
        params![delta_link, now],
    )?;
    tx.commit()?;
    Ok(gone)
}

/// Every stored cloud device.
pub fn load_all(conn: &Connection) -> Result<Vec<CloudDevice>, StoreError> {
    let mut q = conn.prepare("SELECT doc, read_at, pending_since FROM cloud_devices")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (doc, read_at, pending) = row?;
        let doc: Map<String, Value> = serde_json::from_str(&doc)
            .map_err(|e| StoreError::Corrupt(format!("cloud_devices.doc: {e}")))?;
        out.push(CloudDevice::from_doc(&doc, read_at, pending));
    }
    Ok(out)
}
