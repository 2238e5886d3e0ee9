//! Per failure group: since when its devices fail, when one was last seen, and the few most
//! recently seen devices — kept up to date on the writer path, so `/api/v1/failures` reads
//! only the groups and its cost depends on the number of groups, never on the fleet size.
//!
//! Invariants: a group's info lives exactly as long as its failure label has a device (the
//! label's tally id keys it, and the info is dropped when the last device leaves, before the id
//! can be reused); samples are at most [`SAMPLES`] devices, one entry per device, newest
//! `last_seen` first, and a device leaving the group leaves its samples. `first_seen` is the
//! earliest `failing_since` of the devices that entered the group while it existed (a device
//! leaving does not move it later: that would need every member's time). The trend counts
//! devices by the hour they entered the group ([`Entered`]: 48 hourly buckets, so its memory
//! is fixed per group); after a restart the current members are counted again by their
//! `failing_since`.

use super::devices::{NO_FAILURE, SPOOL_OVERFLOWING, Slot};
use super::last_seen::Seen;
use super::{FailureKey, Fleet, Inner};

/// Sample devices kept per group.
pub const SAMPLES: usize = 5;

/// What the writer knows about a device besides its facts, for its failure group.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    /// Host name, or the machine id when the device has none.
    pub name: &'a str,
    /// Since when its current failure is seen (unix ms).
    pub failing_since: Option<i64>,
}

/// One failure group as the aggregates hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    /// The group's labels (codes beyond the unknown-code cap fold into `other`, as in metrics).
    pub key: FailureKey,
    /// Devices in the group.
    pub devices: u64,
    /// Earliest `failing_since` seen in the group (unix ms).
    pub first_seen: Option<i64>,
    /// Latest `last_seen` of a member (unix ms).
    pub last_seen: Option<i64>,
    /// Up to [`SAMPLES`] most recently seen members: host name, or machine id.
    pub sample_devices: Vec<String>,
    /// Devices that entered the group in the last 24 hours (by their `failing_since`).
    pub entered_24h: u64,
    /// Devices that entered it in the 24 hours before that.
    pub entered_previous_24h: u64,
}

impl Inner {
    /// Keeps the failure groups' info and the overflowing set in step with `slot`'s record,
    /// whose failure label was `old_failure` before this update.
    pub(super) fn track(
        &mut self,
        slot: Slot,
        old_failure: Option<u32>,
        last_seen: i64,
        sighting: Option<Sighting<'_>>,
    ) {
        let Some(&d) = self.devices.get(slot) else {
            return;
        };
        if let Some(old) = old_failure.filter(|&o| o != NO_FAILURE && o != d.failure) {
            if self.failures.key(old).is_none() {
                self.groups.remove(&old);
            } else if let Some(g) = self.groups.get_mut(&old) {
                g.left(slot);
            }
        }
        if d.failure != NO_FAILURE {
            let moved = old_failure != Some(d.failure);
            let g = self.groups.entry(d.failure).or_default();
            let name = sighting.as_ref().map(|s| s.name);
            let since = sighting.as_ref().and_then(|s| s.failing_since);
            // A device that entered the group without a time entered it now.
            let since = since.or(moved.then_some(last_seen));
            if moved {
                g.entered.add(since.unwrap_or(last_seen));
            }
            g.seen(slot, d.last_seen.max(last_seen), name, since);
        }
        if d.flags & SPOOL_OVERFLOWING != 0 {
            self.overflowing.insert(slot);
        } else {
            self.overflowing.remove(&slot);
        }
    }
}

impl Fleet {
    /// The failure groups, largest first (then by cause and code), with their trend up to
    /// now. O(groups).
    pub fn failure_groups(&self) -> Vec<FailureGroup> {
        self.failure_groups_at(crate::store::now_ms())
    }

    /// [`Fleet::failure_groups`] with the trend up to `now_ms`.
    pub fn failure_groups_at(&self, now_ms: i64) -> Vec<FailureGroup> {
        let g = self.lock();
        let mut out: Vec<FailureGroup> = g
            .failures
            .iter()
            .map(|(id, label, devices)| {
                let info = g.groups.get(&id);
                let (entered_24h, entered_previous_24h) =
                    info.map_or((0, 0), |i| i.entered.last_two_days(now_ms));
                FailureGroup {
                    entered_24h,
                    entered_previous_24h,
                    key: label.key.clone(),
                    devices,
                    first_seen: info.and_then(|i| i.first_seen),
                    last_seen: info.and_then(|i| i.last_seen),
                    sample_devices: info
                        .map(|i| i.samples().map(str::to_string).collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.devices
                .cmp(&a.devices)
                .then_with(|| a.key.cause.cmp(&b.key.cause))
                .then_with(|| a.key.code.cmp(&b.key.code))
                .then_with(|| a.key.phase.cmp(&b.key.phase))
        });
        out
    }

    /// Machine ids of up to `limit` devices last seen before `before_ms`, oldest first.
    /// O(limit · log n) on the ordered index.
    pub fn seen_before(&self, before_ms: i64, limit: usize) -> Vec<String> {
        let g = self.lock();
        let cutoff = Seen::cutoff(before_ms);
        g.order
            .range(..cutoff)
            .take(limit)
            .map(|k| g.devices.id(k.slot()).to_string())
            .collect()
    }

    /// Machine ids of up to `limit` devices whose agent dropped spooled reports.
    pub fn spool_overflowing_sample(&self, limit: usize) -> Vec<String> {
        let g = self.lock();
        g.overflowing
            .iter()
            .take(limit)
            .map(|&slot| g.devices.id(slot).to_string())
            .collect()
    }
}

/// What a failure group remembers besides its count.
#[derive(Debug, Default, Clone)]
pub(super) struct GroupInfo {
    /// Earliest `failing_since` (unix ms) seen in the group.
    pub first_seen: Option<i64>,
    /// Latest `last_seen` (unix ms) of a member.
    pub last_seen: Option<i64>,
    /// `(last_seen, slot, name)`, newest first.
    samples: Vec<(i64, Slot, Box<str>)>,
    /// Devices that entered, by hour.
    pub entered: Entered,
}

/// Hours kept by [`Entered`].
const HOURS: usize = 48;
const HOUR_MS: i64 = 3_600_000;

/// Devices that entered a group, counted in the hour they entered (unix hours), for the last
/// [`HOURS`] hours: each bucket remembers its hour, so an old bucket is reset when its slot is
/// reused and never counted in a window it does not belong to.
#[derive(Debug, Clone)]
pub(super) struct Entered {
    hours: [i64; HOURS],
    counts: [u32; HOURS],
}

impl Default for Entered {
    fn default() -> Entered {
        Entered {
            hours: [i64::MIN; HOURS],
            counts: [0; HOURS],
        }
    }
}

impl Entered {
    /// A device entered at `at_ms`. An entry older than what the bucket now holds is dropped.
    pub(super) fn add(&mut self, at_ms: i64) {
        let hour = at_ms.div_euclid(HOUR_MS);
        // rem_euclid of a positive modulus is in 0..HOURS.
        let i = hour.rem_euclid(HOURS as i64) as usize;
        if self.hours[i] < hour {
            self.hours[i] = hour;
            self.counts[i] = 0;
        }
        if self.hours[i] == hour {
            self.counts[i] = self.counts[i].saturating_add(1);
        }
    }

    /// Entries in the 24 hours up to `now_ms` (this hour included) and in the 24 before.
    pub(super) fn last_two_days(&self, now_ms: i64) -> (u64, u64) {
        let now = now_ms.div_euclid(HOUR_MS);
        let mut out = (0, 0);
        for (hour, n) in self.hours.iter().zip(self.counts) {
            let age = now.saturating_sub(*hour);
            if (0..24).contains(&age) {
                out.0 += u64::from(n);
            } else if (24..48).contains(&age) {
                out.1 += u64::from(n);
            }
        }
        out
    }
}

impl GroupInfo {
    /// A member was seen at `last_seen`; `name` (host name, else machine id) when known.
    pub(super) fn seen(
        &mut self,
        slot: Slot,
        last_seen: i64,
        name: Option<&str>,
        failing_since: Option<i64>,
    ) {
        self.last_seen = Some(self.last_seen.map_or(last_seen, |l| l.max(last_seen)));
        if let Some(f) = failing_since {
            self.first_seen = Some(self.first_seen.map_or(f, |s| s.min(f)));
        }
        let name: Box<str> = match (name, self.samples.iter().position(|s| s.1 == slot)) {
            (Some(n), Some(i)) => {
                self.samples.remove(i);
                n.into()
            }
            (Some(n), None) => n.into(),
            (None, Some(i)) => self.samples.remove(i).2,
            (None, None) => return,
        };
        let at = self
            .samples
            .iter()
            .position(|s| s.0 < last_seen)
            .unwrap_or(self.samples.len());
        if at < SAMPLES {
            self.samples.insert(at, (last_seen, slot, name));
            self.samples.truncate(SAMPLES);
        }
    }

    /// A member left the group.
    pub(super) fn left(&mut self, slot: Slot) {
        self.samples.retain(|s| s.1 != slot);
    }

    /// Sample names, newest first.
    pub(super) fn samples(&self) -> impl Iterator<Item = &str> {
        self.samples.iter().map(|s| &*s.2)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DeviceFacts, FailureFacts};
    use super::*;
    use std::time::Duration;

    fn failing(code: u32, spool_overflowing: bool) -> DeviceFacts {
        DeviceFacts {
            join_type: "domain_joined".into(),
            failure: Some(FailureFacts {
                phase: "join".into(),
                cause: "device_not_synced".into(),
                code: Some(code),
                symbol: String::new(),
            }),
            spool_overflowing,
            ..Default::default()
        }
    }

    fn seen(name: &str, since: i64) -> Option<Sighting<'_>> {
        Some(Sighting {
            name,
            failing_since: Some(since),
        })
    }

    #[test]
    fn groups_follow_devices_between_groups_and_out() {
        let f = Fleet::new(Duration::from_secs(3600));
        f.set_seen(
            "a",
            Some(&failing(0x801c03f2, false)),
            1000,
            seen("PC-A", 900),
        );
        f.set_seen(
            "b",
            Some(&failing(0x801c03f2, true)),
            2000,
            seen("PC-B", 1500),
        );
        let g = f.failure_groups();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].devices, 2);
        assert_eq!(g[0].sample_devices, ["PC-B", "PC-A"]);
        assert_eq!((g[0].first_seen, g[0].last_seen), (Some(900), Some(2000)));
        assert_eq!(f.spool_overflowing_sample(10), ["b"]);
        assert_eq!(f.seen_before(1500, 10), ["a"]);

        // a moves to another code: it leaves the first group's samples.
        f.set_seen(
            "a",
            Some(&failing(0x801c0003, false)),
            3000,
            seen("PC-A", 3000),
        );
        let g = f.failure_groups();
        assert_eq!(g.len(), 2);
        let first = g.iter().find(|g| g.key.code == "0x801c03f2").unwrap();
        assert_eq!(first.sample_devices, ["PC-B"]);
        let second = g.iter().find(|g| g.key.code == "0x801c0003").unwrap();
        assert_eq!((second.devices, second.first_seen), (1, Some(3000)));

        // A heartbeat (no facts) moves last_seen; b heals: its group is gone.
        f.set("a", None, 4000);
        assert_eq!(
            f.failure_groups()
                .iter()
                .find(|g| g.key.code == "0x801c0003")
                .and_then(|g| g.last_seen),
            Some(4000)
        );
        f.set_seen("b", Some(&DeviceFacts::default()), 5000, seen("PC-B", 0));
        let g = f.failure_groups();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].sample_devices, ["PC-A"]);
        assert!(f.spool_overflowing_sample(10).is_empty());
        // A new group under a reused label id starts afresh.
        f.set_seen(
            "c",
            Some(&failing(0x801c03f2, false)),
            6000,
            seen("PC-C", 6000),
        );
        let again = f.failure_groups();
        let g = again.iter().find(|g| g.key.code == "0x801c03f2").unwrap();
        assert_eq!(
            (g.first_seen, g.sample_devices.clone()),
            (Some(6000), vec!["PC-C".to_string()])
        );
    }

    #[test]
    fn the_trend_counts_entries_by_hour_over_two_days() {
        let h = HOUR_MS;
        let now = 100 * h + 10;
        let mut e = Entered::default();
        for at in [
            now,
            now - h,
            now - 23 * h,
            now - 24 * h,
            now - 47 * h,
            now - 48 * h,
        ] {
            e.add(at);
        }
        assert_eq!(e.last_two_days(now), (3, 2));
        // A day later the first day is the previous one; 48 hours later all is gone.
        assert_eq!(e.last_two_days(now + 24 * h), (0, 3));
        assert_eq!(e.last_two_days(now + 48 * h), (0, 0));
        // A bucket reused by a newer hour forgets its old hour; an older entry is dropped.
        e.add(now + 48 * h);
        e.add(now);
        assert_eq!(e.last_two_days(now + 48 * h), (1, 0));

        // Through the fleet: entering counts once, staying does not count again.
        let f = Fleet::new(Duration::from_secs(3600));
        f.set_seen(
            "a",
            Some(&failing(0x801c03f2, false)),
            now,
            seen("PC-A", now - h),
        );
        f.set_seen(
            "a",
            Some(&failing(0x801c03f2, false)),
            now + 5,
            seen("PC-A", now - h),
        );
        f.set_seen(
            "b",
            Some(&failing(0x801c03f2, false)),
            now,
            seen("PC-B", now - 30 * h),
        );
        let g = f.failure_groups_at(now);
        assert_eq!((g[0].entered_24h, g[0].entered_previous_24h), (1, 1));
    }

    #[test]
    fn samples_are_newest_first_one_per_device_and_bounded() {
        let mut g = GroupInfo::default();
        for i in 0..8u32 {
            g.seen(
                i,
                100 + i64::from(i),
                Some(&format!("PC-{i}")),
                Some(50 - i64::from(i)),
            );
        }
        let names: Vec<_> = g.samples().collect();
        assert_eq!(names, ["PC-7", "PC-6", "PC-5", "PC-4", "PC-3"]);
        assert_eq!((g.first_seen, g.last_seen), (Some(43), Some(107)));
        // Seen again (a heartbeat without a name): moves to the front, no duplicate.
        g.seen(4, 200, None, None);
        let names: Vec<_> = g.samples().collect();
        assert_eq!(names, ["PC-4", "PC-7", "PC-6", "PC-5", "PC-3"]);
        g.left(7);
        assert_eq!(g.samples().count(), 4);
        assert!(!g.samples().any(|n| n == "PC-7"));
        // An old sighting does not displace newer samples once full.
        g.seen(1, 120, Some("PC-1"), None);
        g.seen(0, 1, Some("PC-0"), None);
        assert_eq!(g.samples().count(), SAMPLES);
        assert!(!g.samples().any(|n| n == "PC-0"));
        assert_eq!(g.last_seen, Some(200));
    }
}
