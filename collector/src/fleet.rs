//! Fleet aggregates kept in memory: the numbers behind `/metrics` and the API's counts.
//!
//! Invariants:
//! - Every device's current *contribution* (join type, failure key, failing tests, missing
//!   PRT, agent version, spool overflow) is remembered, so a state change is O(1): subtract the
//!   old contribution, add the new. Only the store's writer thread calls [`Fleet::set`], after
//!   the transaction committed, so the aggregates always describe committed data. At start
//!   they are rebuilt from SQLite.
//! - Labels come from closed sets: join type labels, phase labels, catalog cause ids (anything
//!   else → `other`), the six diagnostic test names, and codes: a catalog code is its hex, an
//!   unknown code keeps its hex for the first [`MAX_UNKNOWN_CODES`] distinct ones seen and
//!   folds into `other` beyond. Admission is sticky for the life of the process, so a device's
//!   remembered label never changes under it.
//! - Stale counting never scans devices: one ordered index of `(last_seen, slot)` holds every
//!   device, and a *mark* (the latest cut-off swept) splits it: a device is stale exactly when
//!   its key is below the mark. A sweep moves the mark to the new cut-off and flags only the
//!   devices between the old and the new mark; a report moves the device's key and flags it
//!   at once if the new key is still below the mark. Each device is flagged at most once per
//!   silence, and reading the count is O(1) plus the sweep. The index is lazy above the marks:
//!   an unflagged device's report moves only its record, and its key catches up when a sweep
//!   reaches it (`fleet/last_seen.rs`), so a heartbeat does no B-tree work. A backwards
//!   wall-clock step moves the mark back and unflags the devices it passes, so the count is
//!   always exactly "last seen before the latest cut-off".
//! - Agent health: devices per agent version (the first [`MAX_AGENT_VERSIONS`] distinct
//!   versions keep their label, sticky like codes; later ones fold into `other`), devices whose
//!   agent dropped spooled reports, and devices not delivered for [`NOT_DELIVERED_AFTER`] — a
//!   second mark on the same ordered index, with a fixed one-day window on the last report
//!   received (a report arriving IS a delivery; the agent's own `last_delivery` is older).
//! - [`Fleet::counts`] copies only the aggregate tables: its cost depends on the number of
//!   label sets, never on the number of devices.
//!
//! Memory: a device costs one 24-byte record (`fleet/devices.rs`), its machine id stored once
//! in a packed arena, a 4-byte slot in the id index and a 12-byte key in the ordered index
//! (`fleet/last_seen.rs`). Labels are interned (`fleet/tally.rs`): a record holds small ids,
//! and each label in use is stored once; a label no device has any more is dropped and its id
//! reused. The figures (`benches/fleet_memory.rs`) and their history are in
//! docs/performance.md, "Fleet index memory".

mod devices;
mod facts;
mod groups;
mod last_seen;
mod tally;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dsreg_proto::diagnostic_tests::NAMES as TESTS;

use devices::{
    Device, Devices, NO_FAILURE, NOT_DELIVERED, NOT_TARGETED, SPOOL_OVERFLOWING, STALE, Slot,
    WITHOUT_PRT,
};
pub use facts::{DeviceFacts, FailureFacts, FailureKey, FleetCounts, not_targeted_reason};
use groups::GroupInfo;
pub use groups::{FailureGroup, SAMPLES, Sighting};
use last_seen::{Mark, Seen};
use tally::Tally;

/// Distinct unknown (non-catalog) codes that keep their own `code` label.
pub const MAX_UNKNOWN_CODES: usize = 32;

/// Distinct agent versions that keep their own `version` label; later ones fold into `other`.
pub const MAX_AGENT_VERSIONS: usize = 16;

/// A device whose last delivery is older than this counts in `not_delivered_1d`.
pub const NOT_DELIVERED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The label for anything outside a closed set.
pub const OTHER: &str = dsreg_proto::labels::OTHER;

/// Live join type (or agent version) labels kept apart; beyond, a new one folds into `other`.
/// The sets are closed (7 join types; versions are capped at [`MAX_AGENT_VERSIONS`] first),
/// so this only guards the 16-bit label id a device record holds.
const MAX_SMALL_LABELS: usize = 1024;

/// A code label before rendering: compared and hashed without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CodeLabel {
    /// The failure had no code: `""`.
    None,
    /// A catalog code or an admitted unknown code: its hex.
    Hex(u32),
    /// An unknown code past the cap: `other`.
    Other,
}

impl CodeLabel {
    fn render(self) -> String {
        match self {
            CodeLabel::None => String::new(),
            CodeLabel::Hex(code) => dsreg_proto::hex(code),
            CodeLabel::Other => OTHER.to_string(),
        }
    }
}

/// An interned failure label: the key as exported, and its code before rendering.
#[derive(Debug)]
struct FailureLabel {
    key: FailureKey,
    code: CodeLabel,
}

#[derive(Debug)]
struct Inner {
    devices: Devices,
    /// Every device once, at `(last_seen, slot)`.
    order: BTreeSet<Seen>,
    stale: Mark,
    /// Like `stale`, with the fixed [`NOT_DELIVERED_AFTER`] window.
    not_delivered: Mark,
    join_types: Tally<Box<str>>,
    /// Joined devices without a PRT, by join type id.
    without_prt: Vec<u64>,
    failures: Tally<FailureLabel>,
    tests: [u64; TESTS.len()],
    agent_versions: Tally<Box<str>>,
    spool_overflowing: u64,
    /// Devices per [`dsreg_proto::diagnosis::NOT_TARGETED_REASONS`] entry.
    not_targeted: [u64; 2],
    unknown_codes: HashSet<u32>,
    known_versions: HashSet<String>,
    /// Hashes labels for the tallies (a fixed function per table, as they require).
    hasher: RandomState,
    /// Per failure label id: first/last seen and sample devices (`fleet/groups.rs`).
    groups: HashMap<u32, GroupInfo>,
    /// Devices whose agent dropped spooled reports (the `/api/v1/agents` sample).
    overflowing: BTreeSet<Slot>,
}

/// The in-memory aggregates (shared behind a mutex; every operation is short).
#[derive(Debug)]
pub struct Fleet {
    inner: Mutex<Inner>,
    stale_after_ms: i64,
}

/// The cause label: a catalog cause id, else `other` (keeps the label set closed).
pub fn cause_label(cause: &str) -> String {
    cause_str(cause).to_string()
}

/// The catalog's (canonical, see `catalog::CAUSE_ALIASES`) id of `cause`, else `other`.
fn cause_str(cause: &str) -> &'static str {
    dsreg_proto::catalog::cause(cause).map_or(OTHER, |c| c.id)
}

/// Counts one more device under a join type or version label and returns its id; a new label
/// past [`MAX_SMALL_LABELS`] live ones folds into `other`.
fn small_label(tally: &mut Tally<Box<str>>, hasher: &RandomState, label: &str) -> u16 {
    let mut hash = hasher.hash_one(label);
    let mut label = label;
    if tally.len() >= MAX_SMALL_LABELS && tally.find(hash, |k| **k == *label).is_none() {
        label = OTHER;
        hash = hasher.hash_one(label);
    }
    let id = tally.add(hash, |k| **k == *label, || label.into());
    // At most MAX_SMALL_LABELS + 1 labels (the cap plus `other`) are ever live at once, and
    // ids are dense, so the id fits.
    u16::try_from(id).unwrap_or(u16::MAX)
}

impl Inner {
    fn new() -> Inner {
        Inner {
            devices: Devices::default(),
            order: BTreeSet::new(),
            stale: Mark::new(STALE),
            not_delivered: Mark::new(NOT_DELIVERED),
            join_types: Tally::default(),
            without_prt: Vec::new(),
            failures: Tally::default(),
            tests: [0; TESTS.len()],
            agent_versions: Tally::default(),
            spool_overflowing: 0,
            not_targeted: [0; 2],
            unknown_codes: HashSet::new(),
            known_versions: HashSet::new(),
            hasher: RandomState::new(),
            groups: HashMap::new(),
            overflowing: BTreeSet::new(),
        }
    }

    fn code_label(&mut self, code: Option<u32>) -> CodeLabel {
        let Some(code) = code else {
            return CodeLabel::None;
        };
        if dsreg_proto::catalog::lookup(code).is_some() || self.unknown_codes.contains(&code) {
            return CodeLabel::Hex(code);
        }
        if self.unknown_codes.len() < MAX_UNKNOWN_CODES {
            self.unknown_codes.insert(code);
            return CodeLabel::Hex(code);
        }
        CodeLabel::Other
    }

    fn version_label<'a>(&mut self, version: &'a str) -> &'a str {
        if self.known_versions.contains(version) {
            return version;
        }
        if self.known_versions.len() < MAX_AGENT_VERSIONS {
            self.known_versions.insert(version.to_string());
            return version;
        }
        OTHER
    }

    fn failure_label(&mut self, f: &FailureFacts) -> u32 {
        let cause = cause_str(&f.cause);
        let code = self.code_label(f.code);
        let parts = (f.phase.as_str(), cause, code, f.symbol.as_str());
        let hash = self.hasher.hash_one(parts);
        self.failures.add(
            hash,
            |l| {
                l.code == code
                    && l.key.phase == f.phase
                    && l.key.cause == cause
                    && l.key.symbol == f.symbol
            },
            || FailureLabel {
                key: FailureKey {
                    phase: f.phase.clone(),
                    cause: cause.to_string(),
                    code: code.render(),
                    symbol: f.symbol.clone(),
                },
                code,
            },
        )
    }

    /// Adds a device's contribution to every aggregate and writes it into `d`'s label fields.
    fn add(&mut self, f: &DeviceFacts, d: &mut Device) {
        d.join = small_label(&mut self.join_types, &self.hasher, &f.join_type);
        let version = self.version_label(&f.agent_version);
        d.version = small_label(&mut self.agent_versions, &self.hasher, version);
        d.failure = match &f.failure {
            Some(x) => self.failure_label(x),
            None => NO_FAILURE,
        };
        d.failing_tests = f.failing_tests;
        for (i, n) in self.tests.iter_mut().enumerate() {
            if f.failing_tests & (1 << i) != 0 {
                *n += 1;
            }
        }
        d.flags &= !(WITHOUT_PRT | SPOOL_OVERFLOWING | NOT_TARGETED[0] | NOT_TARGETED[1]);
        if let Some(i) = f.not_targeted.and_then(|r| {
            dsreg_proto::diagnosis::NOT_TARGETED_REASONS
                .iter()
                .position(|x| *x == r)
        }) {
            d.flags |= NOT_TARGETED[i];
            self.not_targeted[i] += 1;
        }
        if f.without_prt {
            d.flags |= WITHOUT_PRT;
            let j = usize::from(d.join);
            if self.without_prt.len() <= j {
                self.without_prt.resize(j + 1, 0);
            }
            self.without_prt[j] += 1;
        }
        if f.spool_overflowing {
            d.flags |= SPOOL_OVERFLOWING;
            self.spool_overflowing += 1;
        }
    }

    /// Subtracts the contribution recorded in `d` (a copy of the record before [`Inner::add`]).
    fn sub(&mut self, d: &Device) {
        self.join_types.sub(u32::from(d.join));
        self.agent_versions.sub(u32::from(d.version));
        if d.failure != NO_FAILURE {
            self.failures.sub(d.failure);
        }
        for (i, n) in self.tests.iter_mut().enumerate() {
            if d.failing_tests & (1 << i) != 0 {
                *n = n.saturating_sub(1);
            }
        }
        if d.flags & WITHOUT_PRT != 0
            && let Some(n) = self.without_prt.get_mut(usize::from(d.join))
        {
            *n = n.saturating_sub(1);
        }
        if d.flags & SPOOL_OVERFLOWING != 0 {
            self.spool_overflowing = self.spool_overflowing.saturating_sub(1);
        }
        for (i, bit) in NOT_TARGETED.iter().enumerate() {
            if d.flags & bit != 0 {
                self.not_targeted[i] = self.not_targeted[i].saturating_sub(1);
            }
        }
    }

    /// Puts `slot` at `last_seen` in the ordered index, flagged against both marks.
    fn place(&mut self, slot: Slot, last_seen: i64) {
        let key = Seen::new(last_seen, slot);
        self.order.insert(key);
        if let Some(d) = self.devices.get_mut(slot) {
            d.last_seen = last_seen;
            self.stale.place(key, &mut d.flags);
            self.not_delivered.place(key, &mut d.flags);
        }
    }

    /// Moves `slot` forward to `last_seen`. An unflagged device only moves its record: its key
    /// stays until a sweep reaches it (the lazy index, `fleet/last_seen.rs`). A flagged one
    /// (stale, not delivered) has an exact key, which moves now, releasing the flags it no
    /// longer earns.
    fn see(&mut self, slot: Slot, last_seen: i64) {
        let Some(d) = self.devices.get_mut(slot) else {
            return;
        };
        if d.flags & (STALE | NOT_DELIVERED) == 0 {
            d.last_seen = last_seen;
        } else {
            self.unplace(slot);
            self.place(slot, last_seen);
        }
    }

    /// Takes `slot` out of the ordered index (and out of both flagged counts). Only for a key
    /// known to be exact: a flagged device's.
    fn unplace(&mut self, slot: Slot) {
        if let Some(d) = self.devices.get_mut(slot) {
            self.order.remove(&Seen::new(d.last_seen, slot));
            self.stale.release(&mut d.flags);
            self.not_delivered.release(&mut d.flags);
        }
    }
}

impl Fleet {
    /// Empty aggregates; `stale_after` is the silence after which a device is stale.
    pub fn new(stale_after: Duration) -> Fleet {
        Fleet {
            inner: Mutex::new(Inner::new()),
            stale_after_ms: i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the process, so recover the guard.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a device's state (`Some`) or only its `last_seen` (`None`, e.g. an out-of-order
    /// report older than the stored snapshot). O(1) maps; O(log n) in the ordered index only
    /// for a new or a flagged device.
    pub fn set(&self, machine_id: &str, facts: Option<&DeviceFacts>, last_seen_ms: i64) {
        self.set_seen(machine_id, facts, last_seen_ms, None);
    }

    /// [`Fleet::set`], also telling the device's failure group its name and since when it
    /// fails (the writer path and the rebuild pass it; the group keeps samples from it).
    pub fn set_seen(
        &self,
        machine_id: &str,
        facts: Option<&DeviceFacts>,
        last_seen_ms: i64,
        sighting: Option<Sighting<'_>>,
    ) {
        let mut g = self.lock();
        let inner = &mut *g;
        let (slot, old) = match inner.devices.find(machine_id) {
            Some(slot) => match inner.devices.get(slot) {
                Some(&old) => (slot, Some(old)),
                None => return,
            },
            None => {
                let Some(facts) = facts else {
                    return;
                };
                let mut d = Device::new(last_seen_ms);
                inner.add(facts, &mut d);
                match inner.devices.push(machine_id, d) {
                    Some(slot) => {
                        inner.place(slot, last_seen_ms);
                        (slot, None)
                    }
                    // No slot left: leave the device out of every count rather than half in.
                    None => {
                        inner.sub(&d);
                        return;
                    }
                }
            }
        };
        if let Some(old) = old {
            if let Some(facts) = facts {
                // Add before subtracting, so a label kept by this device keeps its id.
                let mut d = old;
                inner.add(facts, &mut d);
                inner.sub(&old);
                if let Some(r) = inner.devices.get_mut(slot) {
                    *r = d;
                }
            }
            if last_seen_ms > old.last_seen {
                inner.see(slot, last_seen_ms);
            }
        }
        inner.track(slot, old.map(|o| o.failure), last_seen_ms, sighting);
    }

    /// The `code` label for a code, admitting a new unknown code while under the cap.
    pub fn code_label(&self, code: Option<u32>) -> String {
        self.lock().code_label(code).render()
    }

    /// A copy of the aggregates at `now_ms` (sweeps newly stale devices first).
    pub fn counts(&self, now_ms: i64) -> FleetCounts {
        let mut g = self.lock();
        let inner = &mut *g;
        let cutoff = Seen::cutoff(now_ms.saturating_sub(self.stale_after_ms));
        inner
            .stale
            .sweep(&mut inner.order, &mut inner.devices, cutoff);
        let day = now_ms.saturating_sub(NOT_DELIVERED_AFTER.as_millis() as i64);
        let day = Seen::cutoff(day);
        inner
            .not_delivered
            .sweep(&mut inner.order, &mut inner.devices, day);
        FleetCounts {
            devices: inner
                .join_types
                .iter()
                .map(|(_, k, n)| (k.to_string(), n))
                .collect(),
            failing: inner
                .failures
                .iter()
                .map(|(_, l, n)| (l.key.clone(), n))
                .collect(),
            diagnostic_tests_failing: TESTS
                .iter()
                .zip(inner.tests)
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
            without_prt: inner
                .join_types
                .iter()
                .filter_map(|(id, k, _)| {
                    let n = inner.without_prt.get(id as usize).copied().unwrap_or(0);
                    (n > 0).then(|| (k.to_string(), n))
                })
                .collect(),
            stale: inner.stale.count,
            total: inner.devices.len() as u64,
            agent_versions: inner
                .agent_versions
                .iter()
                .map(|(_, k, n)| (k.to_string(), n))
                .collect(),
            spool_overflowing: inner.spool_overflowing,
            not_targeted: dsreg_proto::diagnosis::NOT_TARGETED_REASONS
                .iter()
                .zip(inner.not_targeted)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            not_delivered_1d: inner.not_delivered.count,
        }
    }
}
