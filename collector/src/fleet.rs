//! Fleet aggregates kept in memory: the numbers behind `/metrics` and the API's counts.
//!
//! Invariants:
//! - Every device's current *contribution* (join type, failure key, failing tests, missing
//!   PRT) is remembered, so a state change is O(1): subtract the old contribution, add the new.
//!   Only the store's writer thread calls [`Fleet::set`], after the transaction committed, so
//!   the aggregates always describe committed data. At start they are rebuilt from SQLite.
//! - Labels come from closed sets: join type labels, phase labels, catalog cause ids (anything
//!   else → `other`), the six diagnostic test names, and codes: a catalog code is its hex, an
//!   unknown code keeps its hex for the first [`MAX_UNKNOWN_CODES`] distinct ones seen and
//!   folds into `other` beyond. Admission is sticky for the life of the process, so a device's
//!   remembered label never changes under it.
//! - Stale counting never scans devices: an ordered set of `(last_seen, machine_id)` holds the
//!   fresh devices; a sweep pops the oldest ones past the cut-off into the stale set. Each
//!   device moves at most once per silence and moves back when it reports, so the cost is
//!   amortised O(log n) per report, and reading the count is O(1) plus the sweep.
//!   (A backwards wall-clock step leaves devices stale until they report again.)
//! - Agent health: devices per agent version (the first [`MAX_AGENT_VERSIONS`] distinct
//!   versions keep their label, sticky like codes; later ones fold into `other`), devices whose
//!   agent dropped spooled reports, and devices not delivered for [`NOT_DELIVERED_AFTER`] — a
//!   second ordered set like the stale one, with a fixed one-day window on the last report
//!   received (a report arriving IS a delivery; the agent's own `last_delivery` is older).
//! - [`Fleet::counts`] copies only the aggregate maps: its cost depends on the number of label
//!   sets, never on the number of devices.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

/// The diagnostic tests, in bit order of [`DeviceFacts::failing_tests`].
pub const TESTS: [&str; 6] = [
    "ad_connectivity",
    "ad_configuration",
    "drs_discovery",
    "drs_connectivity",
    "kerberos_ticket",
    "token_acquisition",
];

/// Distinct unknown (non-catalog) codes that keep their own `code` label.
pub const MAX_UNKNOWN_CODES: usize = 32;

/// Distinct agent versions that keep their own `version` label; later ones fold into `other`.
pub const MAX_AGENT_VERSIONS: usize = 16;

/// A device whose last delivery is older than this counts in `not_delivered_1d`.
pub const NOT_DELIVERED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The label for anything outside a closed set.
pub const OTHER: &str = "other";

/// What the store knows about a device's current state, as stored in the `devices` row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    /// Join type label (`hybrid_joined`, …, or `unknown`).
    pub join_type: String,
    /// The current failure, if any.
    pub failure: Option<FailureFacts>,
    /// Bit `i` set when `TESTS[i]` printed FAIL.
    pub failing_tests: u8,
    /// A joined device that reported no Entra PRT.
    pub without_prt: bool,
    /// The agent version of the part the device view takes agent health from.
    pub agent_version: String,
    /// That agent reported reports dropped by its spool overflow policy.
    pub spool_overflowing: bool,
}

/// A failure as stored: raw code, labels not yet folded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailureFacts {
    /// Phase label.
    pub phase: String,
    /// Cause id.
    pub cause: String,
    /// The main code.
    pub code: Option<u32>,
    /// Catalog symbol, `""` when unknown.
    pub symbol: String,
}

/// A failure group's labels (what `dsreg_devices_failing` is keyed by).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FailureKey {
    /// Phase label.
    pub phase: String,
    /// Cause id from the closed catalog set, or `other`.
    pub cause: String,
    /// `0x%08x`, `other`, or `""` when the failure had no code.
    pub code: String,
    /// Catalog symbol or `""`.
    pub symbol: String,
}

/// A cheap copy of the aggregates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetCounts {
    /// Devices by join type.
    pub devices: BTreeMap<String, u64>,
    /// Failing devices by (phase, cause, code, symbol).
    #[serde(serialize_with = "failing_as_list")]
    pub failing: BTreeMap<FailureKey, u64>,
    /// Devices per failing diagnostic test.
    pub diagnostic_tests_failing: BTreeMap<String, u64>,
    /// Joined devices without a PRT, by join type.
    pub without_prt: BTreeMap<String, u64>,
    /// Devices not heard from within the stale window.
    pub stale: u64,
    /// All devices.
    pub total: u64,
    /// Devices by agent version (`other` beyond [`MAX_AGENT_VERSIONS`] distinct versions).
    pub agent_versions: BTreeMap<String, u64>,
    /// Devices whose agent reported `spool_dropped > 0`.
    pub spool_overflowing: u64,
    /// Devices with no delivery (no report received) for [`NOT_DELIVERED_AFTER`].
    pub not_delivered_1d: u64,
}

fn failing_as_list<S: serde::Serializer>(
    m: &BTreeMap<FailureKey, u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Row<'a> {
        #[serde(flatten)]
        key: &'a FailureKey,
        devices: u64,
    }
    s.collect_seq(m.iter().map(|(key, &devices)| Row { key, devices }))
}

#[derive(Debug, Clone)]
struct Contribution {
    join_type: String,
    failure: Option<FailureKey>,
    failing_tests: u8,
    without_prt: bool,
    agent_version: String,
    spool_overflowing: bool,
}

#[derive(Debug, Default)]
struct Inner {
    devices: HashMap<String, (Contribution, i64)>,
    by_join_type: HashMap<String, u64>,
    failing: HashMap<FailureKey, u64>,
    tests: [u64; 6],
    without_prt: HashMap<String, u64>,
    unknown_codes: HashSet<u32>,
    fresh: BTreeSet<(i64, String)>,
    stale: HashSet<String>,
    agent_versions: HashMap<String, u64>,
    known_versions: HashSet<String>,
    spool_overflowing: u64,
    /// Like `fresh`/`stale`, with the fixed [`NOT_DELIVERED_AFTER`] window.
    delivering: BTreeSet<(i64, String)>,
    not_delivered: HashSet<String>,
}

/// The in-memory aggregates (shared behind a mutex; every operation is short).
#[derive(Debug)]
pub struct Fleet {
    inner: Mutex<Inner>,
    stale_after_ms: i64,
}

fn inc<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u64>, k: K) {
    *m.entry(k).or_insert(0) += 1;
}

fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u64>, k: &K) {
    if let Some(v) = m.get_mut(k) {
        *v = v.saturating_sub(1);
        if *v == 0 {
            m.remove(k);
        }
    }
}

/// The cause label: a catalog cause id, else `other` (keeps the label set closed).
pub fn cause_label(cause: &str) -> String {
    if dsreg_proto::catalog::cause(cause).is_some() {
        cause.to_string()
    } else {
        OTHER.to_string()
    }
}

impl Inner {
    fn code_label(&mut self, code: Option<u32>) -> String {
        let Some(code) = code else {
            return String::new();
        };
        if dsreg_proto::catalog::lookup(code).is_some() || self.unknown_codes.contains(&code) {
            return dsreg_proto::hex(code);
        }
        if self.unknown_codes.len() < MAX_UNKNOWN_CODES {
            self.unknown_codes.insert(code);
            return dsreg_proto::hex(code);
        }
        OTHER.to_string()
    }

    fn version_label(&mut self, version: &str) -> String {
        if self.known_versions.contains(version) {
            return version.to_string();
        }
        if self.known_versions.len() < MAX_AGENT_VERSIONS {
            self.known_versions.insert(version.to_string());
            return version.to_string();
        }
        OTHER.to_string()
    }

    fn add(&mut self, c: &Contribution) {
        inc(&mut self.by_join_type, c.join_type.clone());
        inc(&mut self.agent_versions, c.agent_version.clone());
        self.spool_overflowing += u64::from(c.spool_overflowing);
        if let Some(f) = &c.failure {
            inc(&mut self.failing, f.clone());
        }
        for (i, n) in self.tests.iter_mut().enumerate() {
            if c.failing_tests & (1 << i) != 0 {
                *n += 1;
            }
        }
        if c.without_prt {
            inc(&mut self.without_prt, c.join_type.clone());
        }
    }

    fn sub(&mut self, c: &Contribution) {
        dec(&mut self.by_join_type, &c.join_type);
        dec(&mut self.agent_versions, &c.agent_version);
        self.spool_overflowing = self
            .spool_overflowing
            .saturating_sub(u64::from(c.spool_overflowing));
        if let Some(f) = &c.failure {
            dec(&mut self.failing, f);
        }
        for (i, n) in self.tests.iter_mut().enumerate() {
            if c.failing_tests & (1 << i) != 0 {
                *n = n.saturating_sub(1);
            }
        }
        if c.without_prt {
            dec(&mut self.without_prt, &c.join_type);
        }
    }
}

impl Fleet {
    /// Empty aggregates; `stale_after` is the silence after which a device is stale.
    pub fn new(stale_after: Duration) -> Fleet {
        Fleet {
            inner: Mutex::new(Inner::default()),
            stale_after_ms: i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the process, so recover the guard.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a device's state (`Some`) or only its `last_seen` (`None`, e.g. an out-of-order
    /// report older than the stored snapshot). O(1) maps plus O(log n) for the stale index.
    pub fn set(&self, machine_id: &str, facts: Option<&DeviceFacts>, last_seen_ms: i64) {
        let mut g = self.lock();
        let inner = &mut *g;
        let new = facts.map(|f| Contribution {
            join_type: f.join_type.clone(),
            failure: f.failure.as_ref().map(|x| FailureKey {
                phase: x.phase.clone(),
                cause: cause_label(&x.cause),
                code: inner.code_label(x.code),
                symbol: x.symbol.clone(),
            }),
            failing_tests: f.failing_tests,
            without_prt: f.without_prt,
            agent_version: inner.version_label(&f.agent_version),
            spool_overflowing: f.spool_overflowing,
        });
        let previous = inner.devices.remove(machine_id);
        let (contribution, old_seen) = match (previous, new) {
            (Some((old, seen)), Some(new)) => {
                inner.sub(&old);
                inner.add(&new);
                (new, Some(seen))
            }
            (Some((old, seen)), None) => (old, Some(seen)),
            (None, Some(new)) => {
                inner.add(&new);
                (new, None)
            }
            (None, None) => return,
        };
        let last_seen = old_seen.map_or(last_seen_ms, |s| s.max(last_seen_ms));
        if let Some(s) = old_seen
            && !inner.stale.remove(machine_id)
        {
            inner.fresh.remove(&(s, machine_id.to_string()));
        }
        inner.fresh.insert((last_seen, machine_id.to_string()));
        if let Some(s) = old_seen
            && !inner.not_delivered.remove(machine_id)
        {
            inner.delivering.remove(&(s, machine_id.to_string()));
        }
        inner.delivering.insert((last_seen, machine_id.to_string()));
        inner
            .devices
            .insert(machine_id.to_string(), (contribution, last_seen));
    }

    /// The `code` label for a code, admitting a new unknown code while under the cap.
    pub fn code_label(&self, code: Option<u32>) -> String {
        self.lock().code_label(code)
    }

    /// A copy of the aggregates at `now_ms` (sweeps newly stale devices first).
    pub fn counts(&self, now_ms: i64) -> FleetCounts {
        let mut g = self.lock();
        let cutoff = now_ms.saturating_sub(self.stale_after_ms);
        while let Some((seen, _)) = g.fresh.first() {
            if *seen >= cutoff {
                break;
            }
            if let Some((_, id)) = g.fresh.pop_first() {
                g.stale.insert(id);
            }
        }
        let day = now_ms.saturating_sub(NOT_DELIVERED_AFTER.as_millis() as i64);
        while let Some((seen, _)) = g.delivering.first() {
            if *seen >= day {
                break;
            }
            if let Some((_, id)) = g.delivering.pop_first() {
                g.not_delivered.insert(id);
            }
        }
        FleetCounts {
            devices: g
                .by_join_type
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            failing: g.failing.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            diagnostic_tests_failing: TESTS
                .iter()
                .zip(g.tests)
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
            without_prt: g.without_prt.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            stale: g.stale.len() as u64,
            total: g.devices.len() as u64,
            agent_versions: g
                .agent_versions
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            spool_overflowing: g.spool_overflowing,
            not_delivered_1d: g.not_delivered.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(code: u32) -> DeviceFacts {
        DeviceFacts {
            join_type: "domain_joined".into(),
            failure: Some(FailureFacts {
                phase: "join".into(),
                cause: "no_such_cause_id".into(),
                code: Some(code),
                symbol: String::new(),
            }),
            failing_tests: 0b100,
            without_prt: false,
            ..Default::default()
        }
    }

    #[test]
    fn transitions_subtract_and_add() {
        let f = Fleet::new(Duration::from_secs(60));
        f.set("a", Some(&failing(0x8000_0001)), 1000);
        f.set("b", Some(&failing(0x8000_0001)), 1000);
        let c = f.counts(1000);
        assert_eq!(c.devices["domain_joined"], 2);
        assert_eq!(c.diagnostic_tests_failing["drs_discovery"], 2);
        let key = c.failing.keys().next().unwrap().clone();
        assert_eq!(
            (key.cause.as_str(), key.code.as_str()),
            (OTHER, "0x80000001")
        );
        let healthy = DeviceFacts {
            join_type: "hybrid_joined".into(),
            without_prt: true,
            ..Default::default()
        };
        f.set("a", Some(&healthy), 2000);
        let c = f.counts(2000);
        assert_eq!(c.devices.get("domain_joined"), Some(&1));
        assert_eq!(c.without_prt["hybrid_joined"], 1);
        assert_eq!(c.failing[&key], 1);
        assert_eq!(c.total, 2);
    }

    #[test]
    fn stale_moves_out_and_back() {
        let f = Fleet::new(Duration::from_secs(10));
        f.set("a", Some(&DeviceFacts::default()), 0);
        f.set("b", Some(&DeviceFacts::default()), 5_000);
        assert_eq!(f.counts(12_000).stale, 1);
        assert_eq!(f.counts(16_000).stale, 2);
        f.set("a", None, 16_000);
        assert_eq!(f.counts(16_000).stale, 1);
        assert_eq!(f.counts(30_000).stale, 2);
    }

    #[test]
    fn agent_versions_fold_and_undelivered_sweeps_after_a_day() {
        let f = Fleet::new(Duration::from_secs(3600));
        for i in 0..(MAX_AGENT_VERSIONS + 3) {
            let facts = DeviceFacts {
                agent_version: format!("0.{i}.0"),
                spool_overflowing: i == 0,
                ..Default::default()
            };
            f.set(&format!("d{i}"), Some(&facts), 0);
        }
        let c = f.counts(0);
        assert_eq!(c.agent_versions.len(), MAX_AGENT_VERSIONS + 1);
        assert_eq!(c.agent_versions[OTHER], 3);
        assert_eq!(c.spool_overflowing, 1);
        assert_eq!(c.not_delivered_1d, 0);
        let day = NOT_DELIVERED_AFTER.as_millis() as i64;
        assert_eq!(f.counts(day + 1).not_delivered_1d, c.total);
        f.set("d0", None, day + 1);
        assert_eq!(f.counts(day + 1).not_delivered_1d, c.total - 1);
    }

    #[test]
    fn unknown_codes_fold_beyond_the_cap() {
        let f = Fleet::new(Duration::from_secs(10));
        for i in 0..(MAX_UNKNOWN_CODES as u32 + 5) {
            f.set(&format!("d{i}"), Some(&failing(0x8123_0000 + i)), 0);
        }
        let c = f.counts(0);
        assert_eq!(c.failing.len(), MAX_UNKNOWN_CODES + 1);
        let other: u64 = c
            .failing
            .iter()
            .filter(|(k, _)| k.code == OTHER)
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(other, 5);
        // An admitted code keeps its label.
        assert_eq!(f.code_label(Some(0x8123_0000)), "0x81230000");
    }
}
