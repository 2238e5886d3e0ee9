//! Reconciliation: each reported device joined to its cloud object, and the cloud's hybrid
//! objects that no agent reports for.
//!
//! Matching, in order, each step only among what is still unmatched: the Entra device id
//! (`devices.entra_device_id` = Graph `deviceId`), then the computer's on-premises SID
//! (`snapshot.join_config.computer_sid` = `onPremisesSecurityIdentifier`), then the computer
//! name (case-insensitive) against hybrid (`ServerAd`) objects only — a name shared by more
//! than one unmatched reported device or more than one unmatched object is ambiguous: not
//! matched, counted. A name match whose two SIDs are both known and differ is refused.
//!
//! Client states: `joined` (hybrid or Entra joined), `failing` (not joined, with a current
//! failure), `not_joined` (the rest), `no_agent` (a hybrid object without a reporting agent;
//! personal/Workplace objects are out of scope). A reported device without a cloud object is
//! `absent` only once a complete round has been read; before that it has no cloud state.
//! The result is an immutable value swapped in whole; readers never see a half-built one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::Connection;
use serde::Serialize;

use super::cloud::{CloudDevice, CloudState};
use crate::store::StoreError;

/// A pending object counts in `dsreg_devices_cloud_pending_over_1d` after this long.
pub const PENDING_ALERT_MS: i64 = 86_400_000;

/// The client side of a reconciled device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    /// Hybrid or Entra joined.
    Joined,
    /// Not joined, with a current failure.
    Failing,
    /// Not joined, no failure.
    NotJoined,
    /// A hybrid cloud object no agent reports for.
    NoAgent,
}

impl ClientState {
    /// Every state.
    pub const ALL: [ClientState; 4] = [
        ClientState::Joined,
        ClientState::Failing,
        ClientState::NotJoined,
        ClientState::NoAgent,
    ];

    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            ClientState::Joined => "joined",
            ClientState::Failing => "failing",
            ClientState::NotJoined => "not_joined",
            ClientState::NoAgent => "no_agent",
        }
    }

    /// Parses a label.
    pub fn from_label(s: &str) -> Option<ClientState> {
        ClientState::ALL.into_iter().find(|c| c.label() == s)
    }
}

/// What to do about a (client, cloud) pair, for the pairs that need an action.
pub fn resolution(client: ClientState, cloud: CloudState) -> Option<&'static str> {
    use ClientState as C;
    use CloudState as S;
    Some(match (client, cloud) {
        (C::Failing, S::Pending) => {
            "the client cause is the reason it is still Pending: fix the device's failure \
             (see its resolution); the object becomes Registered at the next successful join"
        }
        (C::NotJoined, S::Pending) => {
            "synced but never registered and no failure reported: check that the join task \
             runs (join_config) and that the device is targeted"
        }
        (C::Joined, S::Absent) => {
            "deleted in the cloud: `dsregcmd /leave` and rejoin (run as SYSTEM, then restart \
             or run the Automatic-Device-Join task)"
        }
        (C::Joined, S::Disabled) => {
            "the device object is disabled in Entra: sign-in and SSO fail on it; re-enable \
             the object, or retire the device if it was disabled on purpose"
        }
        (C::Failing | C::NotJoined, S::Absent) => {
            "no device object in Entra: check that Entra Connect syncs this computer's OU \
             (sync scope) and wait for the next sync cycle"
        }
        (C::Failing | C::NotJoined, S::Disabled) => {
            "the device object is disabled in Entra: the join cannot complete until it is \
             enabled again"
        }
        (C::NoAgent, S::Pending) => {
            "install the agent: this hybrid object never completed registration and no agent \
             reports why"
        }
        (C::NoAgent, _) => "install the agent: no agent reports for this hybrid device",
        _ => return None,
    })
}

/// A reported device as the reconciliation needs it.
#[derive(Debug, Clone, Default)]
pub struct Reported {
    /// Device key.
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
    /// AD domain.
    pub ad_domain: String,
    /// Entra device id (lower-case).
    pub entra_device_id: Option<String>,
    /// Join type label.
    pub join_type: String,
    /// Current failure cause.
    pub failure_cause: Option<String>,
    /// Computer SID from the join configuration.
    pub computer_sid: Option<String>,
}

impl Reported {
    fn client(&self) -> ClientState {
        match self.join_type.as_str() {
            "hybrid_joined" | "entra_joined" => ClientState::Joined,
            _ if self.failure_cause.is_some() => ClientState::Failing,
            _ => ClientState::NotJoined,
        }
    }
}

/// One reconciled row.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Sort and cursor key: the machine id, or `cloud:<object id>` for no-agent objects.
    #[serde(skip)]
    pub key: String,
    /// Device key (absent for no-agent objects).
    pub machine_id: Option<String>,
    /// Host name, or the object's display name.
    pub name: String,
    /// AD domain of the reporting device.
    pub ad_domain: Option<String>,
    /// Client state.
    pub client: ClientState,
    /// Cloud state.
    pub cloud: CloudState,
    /// How the two sides were matched (`device_id`, `sid`, `name`).
    pub matched_by: Option<&'static str>,
    /// The device's current failure cause.
    pub failure_cause: Option<String>,
    /// The cloud object.
    #[serde(skip)]
    pub object: Option<Arc<CloudDevice>>,
}

/// The whole reconciliation at one moment.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Rows sorted by key.
    pub entries: Vec<Entry>,
    /// Machine id → index into `entries`.
    pub by_machine: HashMap<String, usize>,
    /// Rows per (client, cloud).
    pub counts: BTreeMap<(ClientState, CloudState), u64>,
    /// Names not matched because they were ambiguous.
    pub ambiguous_names: u64,
    /// Pending over a day and not joined, by the client cause label (`none`, `no_agent`).
    pub pending_over_1d: BTreeMap<String, u64>,
    /// A complete round had been read (so `absent` is meaningful).
    pub complete: bool,
    /// Cloud objects stored (all trust types).
    pub cloud_objects: u64,
    /// When it was computed (unix ms).
    pub at: i64,
}

/// Joins `reported` with `cloud` (see the module header).
pub fn reconcile(
    reported: &[Reported],
    cloud: Vec<CloudDevice>,
    complete: bool,
    now: i64,
) -> Reconciled {
    let cloud: Vec<Arc<CloudDevice>> = cloud.into_iter().map(Arc::new).collect();
    let cloud_objects = cloud.len() as u64;
    let mut by_device_id: HashMap<&str, usize> = HashMap::new();
    let mut by_sid: HashMap<String, usize> = HashMap::new();
    for (i, c) in cloud.iter().enumerate() {
        if let Some(d) = c.device_id.as_deref().filter(|d| !is_nil(d)) {
            by_device_id.entry(d).or_insert(i);
        }
        if let Some(s) = c.on_premises_sid.as_deref().filter(|s| !s.is_empty()) {
            by_sid.entry(s.to_ascii_uppercase()).or_insert(i);
        }
    }
    let mut cloud_taken = vec![false; cloud.len()];
    let mut matched: Vec<Option<(usize, &'static str)>> = vec![None; reported.len()];
    for (r, dev) in reported.iter().enumerate() {
        let hit = dev
            .entra_device_id
            .as_deref()
            .and_then(|d| by_device_id.get(d.to_ascii_lowercase().as_str()).copied())
            .filter(|&i| !cloud_taken[i]);
        if let Some(i) = hit {
            cloud_taken[i] = true;
            matched[r] = Some((i, "device_id"));
        }
    }
    for (r, dev) in reported.iter().enumerate() {
        if matched[r].is_some() {
            continue;
        }
        let hit = dev
            .computer_sid
            .as_deref()
            .and_then(|s| by_sid.get(&s.to_ascii_uppercase()).copied())
            .filter(|&i| !cloud_taken[i]);
        if let Some(i) = hit {
            cloud_taken[i] = true;
            matched[r] = Some((i, "sid"));
        }
    }
    // Names: only among the still unmatched on both sides, hybrid objects only.
    let mut names_reported: HashMap<String, Vec<usize>> = HashMap::new();
    for (r, dev) in reported.iter().enumerate() {
        if matched[r].is_none() && !dev.hostname.is_empty() {
            names_reported
                .entry(dev.hostname.to_lowercase())
                .or_default()
                .push(r);
        }
    }
    let mut names_cloud: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in cloud.iter().enumerate() {
        if !cloud_taken[i] && c.is_hybrid() && !c.display_name.is_empty() {
            names_cloud
                .entry(c.display_name.to_lowercase())
                .or_default()
                .push(i);
        }
    }
    let mut ambiguous_names = 0;
    for (name, rs) in &names_reported {
        let Some(cs) = names_cloud.get(name) else {
            continue;
        };
        if rs.len() > 1 || cs.len() > 1 {
            ambiguous_names += 1;
            continue;
        }
        let (r, i) = (rs[0], cs[0]);
        let conflict = match (&reported[r].computer_sid, &cloud[i].on_premises_sid) {
            (Some(a), Some(b)) => !a.eq_ignore_ascii_case(b),
            _ => false,
        };
        if !conflict {
            cloud_taken[i] = true;
            matched[r] = Some((i, "name"));
        }
    }

    let mut out = Reconciled {
        complete,
        at: now,
        cloud_objects,
        ambiguous_names,
        ..Reconciled::default()
    };
    for (r, dev) in reported.iter().enumerate() {
        let (cloud_state, object, by) = match matched[r] {
            Some((i, by)) => (cloud[i].state(), Some(cloud[i].clone()), Some(by)),
            None if complete => (CloudState::Absent, None, None),
            None => continue,
        };
        out.entries.push(Entry {
            key: dev.machine_id.clone(),
            machine_id: Some(dev.machine_id.clone()),
            name: dev.hostname.clone(),
            ad_domain: Some(dev.ad_domain.clone()),
            client: dev.client(),
            cloud: cloud_state,
            matched_by: by,
            failure_cause: dev.failure_cause.clone(),
            object,
        });
    }
    for (i, c) in cloud.iter().enumerate() {
        if cloud_taken[i] || !c.is_hybrid() {
            continue;
        }
        out.entries.push(Entry {
            key: format!("cloud:{}", c.object_id),
            machine_id: None,
            name: c.display_name.clone(),
            ad_domain: None,
            client: ClientState::NoAgent,
            cloud: c.state(),
            matched_by: None,
            failure_cause: None,
            object: Some(c.clone()),
        });
    }
    out.entries.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, e) in out.entries.iter().enumerate() {
        if let Some(m) = &e.machine_id {
            out.by_machine.insert(m.clone(), i);
        }
        *out.counts.entry((e.client, e.cloud)).or_default() += 1;
        let pending_long = e.cloud == CloudState::Pending
            && e.client != ClientState::Joined
            && e.object
                .as_ref()
                .and_then(|o| o.pending_since)
                .is_some_and(|since| now - since >= PENDING_ALERT_MS);
        if pending_long {
            let cause = match e.client {
                ClientState::NoAgent => "no_agent".to_string(),
                _ => e
                    .failure_cause
                    .as_deref()
                    .map_or_else(|| "none".to_string(), crate::fleet::cause_label),
            };
            *out.pending_over_1d.entry(cause).or_default() += 1;
        }
    }
    out
}

fn is_nil(id: &str) -> bool {
    id.chars().all(|c| c == '0' || c == '-')
}

/// Only the computer SID of a stored snapshot (`Snapshot.join_config` = 17,
/// `JoinConfig.computer_sid` = 10): prost skips every other field without building it.
#[derive(Clone, PartialEq, prost::Message)]
struct SidOnly {
    #[prost(message, optional, tag = "17")]
    join_config: Option<SidJoinConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SidJoinConfig {
    #[prost(string, optional, tag = "10")]
    computer_sid: Option<String>,
}

/// Computer SIDs already decoded, by machine id, with the report ids they were read at: a
/// device's stored parts are read again only when one of its parts has a newer report.
#[derive(Debug, Default)]
pub struct SidCache {
    map: HashMap<String, (String, Option<String>)>,
}

/// Reads the reported devices; the SID is looked up only for devices that `need_sid` says
/// are not matched by their Entra device id, and decoded (a point read of their stored
/// parts) only when the device reported since the last look.
pub fn load_reported(
    conn: &Connection,
    need_sid: impl Fn(&Reported) -> bool,
    cache: &mut SidCache,
) -> Result<Vec<Reported>, StoreError> {
    let mut q = conn.prepare(
        "SELECT machine_id, hostname, ad_domain, entra_device_id, join_type, failure_cause,
            COALESCE(device_report_id, '') || '/' || COALESCE(user_report_id, '')
         FROM devices",
    )?;
    let mut stamps = Vec::new();
    let mut out = q
        .query_map([], |r| {
            Ok((
                Reported {
                    machine_id: r.get(0)?,
                    hostname: r.get(1)?,
                    ad_domain: r.get(2)?,
                    entra_device_id: r.get(3)?,
                    join_type: r.get(4)?,
                    failure_cause: r.get(5)?,
                    computer_sid: None,
                },
                r.get::<_, String>(6)?,
            ))
        })?
        .map(|row| {
            row.map(|(d, stamp)| {
                stamps.push(stamp);
                d
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // From the stored parts (the SYSTEM part first), not the merged view: the join
    // configuration is collected as SYSTEM, and the merged snapshot need not carry it.
    let mut snap = conn.prepare_cached(
        "SELECT snapshot FROM device_parts WHERE machine_id = ?1 ORDER BY part = 'device' DESC",
    )?;
    let mut seen = HashMap::with_capacity(cache.map.len());
    for (dev, stamp) in out.iter_mut().zip(stamps) {
        if !need_sid(dev) {
            continue;
        }
        let sid = match cache.map.remove(&dev.machine_id) {
            Some((at, sid)) if at == stamp => sid,
            _ => {
                let parts: Vec<Vec<u8>> = snap
                    .query_map([&dev.machine_id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                parts.iter().find_map(|b| {
                    <SidOnly as prost::Message>::decode(b.as_slice())
                        .ok()
                        .and_then(|s| s.join_config?.computer_sid)
                        .filter(|s| !s.is_empty())
                })
            }
        };
        dev.computer_sid = sid.clone();
        seen.insert(dev.machine_id.clone(), (stamp, sid));
    }
    cache.map = seen;
    Ok(out)
}
