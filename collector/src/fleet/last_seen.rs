//! The `last_seen` order of the devices and the two sweeps over it (stale, not delivered).
//!
//! One `BTreeSet<Seen>` holds every device once. A [`Mark`] is the latest cut-off swept; the
//! devices below it, and only they, carry its flag in their record. Moving the mark
//! (un)flags exactly the devices it passes, so each device is flagged at most once per silence
//! whatever the number of `counts()` calls.
//!
//! The index is lazy above the marks. Invariants, for each mark:
//! - a device's key is never later than its record's `last_seen`;
//! - below the mark, every key is exact (equal to the record's `last_seen`) and its device
//!   flagged; so an unflagged device's key is at or above both marks.
//!
//! A report of an unflagged device therefore only moves its record's `last_seen` forward: its
//! old key stays where it is, still at or above the marks, and still says "not before". A sweep
//! that reaches an outdated key moves it to the record's time (flagging it if that is still
//! below the new mark) instead of flagging it. A flagged device is moved at once, as before. So
//! a heartbeat costs no B-tree work, and a key moves about once per day per device (when the
//! one-day mark reaches it), not once per report.

use std::collections::BTreeSet;

use super::devices::{Devices, Slot};

/// `(last_seen, slot)` in 12 bytes, ordered exactly like the pair (a `(i64, u32)` tuple
/// takes 16 with padding): `last_seen` with its sign bit flipped is an unsigned number in the
/// same order, split into two `u32` halves compared high first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Seen {
    hi: u32,
    lo: u32,
    slot: Slot,
}

impl Seen {
    pub(super) fn new(last_seen: i64, slot: Slot) -> Seen {
        let u = (last_seen as u64) ^ (1 << 63);
        Seen {
            hi: (u >> 32) as u32,
            lo: u as u32,
            slot,
        }
    }

    /// The device this key places.
    pub(super) fn slot(self) -> Slot {
        self.slot
    }

    /// The first key at or after `last_seen`: every key below it was seen before.
    pub(super) fn cutoff(last_seen: i64) -> Seen {
        Seen::new(last_seen, 0)
    }
}

/// One sweep over the ordered index (stale, or not delivered for a day).
#[derive(Debug)]
pub(super) struct Mark {
    /// Devices whose key is below `at` are flagged with `flag`, and only they.
    at: Seen,
    flag: u8,
    /// Devices flagged.
    pub(super) count: u64,
}

impl Mark {
    pub(super) fn new(flag: u8) -> Mark {
        Mark {
            at: Seen::cutoff(i64::MIN),
            flag,
            count: 0,
        }
    }

    /// The cut-off last swept.
    #[cfg(test)]
    pub(super) fn at(&self) -> Seen {
        self.at
    }

    /// Flags a device newly placed at `key` if the key is below the mark.
    pub(super) fn place(&mut self, key: Seen, flags: &mut u8) {
        if key < self.at {
            *flags |= self.flag;
            self.count += 1;
        }
    }

    /// Unflags a device leaving its key.
    pub(super) fn release(&mut self, flags: &mut u8) {
        if *flags & self.flag != 0 {
            *flags &= !self.flag;
            self.count = self.count.saturating_sub(1);
        }
    }

    /// Moves the mark to `to`, (un)flagging exactly the devices it passes; an outdated key it
    /// reaches is moved to its device's `last_seen` instead (flagged if still below `to`).
    pub(super) fn sweep(&mut self, order: &mut BTreeSet<Seen>, devices: &mut Devices, to: Seen) {
        if to > self.at {
            let mut outdated = Vec::new();
            for &key in order.range(self.at..to) {
                let Some(d) = devices.get_mut(key.slot) else {
                    continue;
                };
                let exact = Seen::new(d.last_seen, key.slot);
                if exact != key {
                    outdated.push((key, exact));
                } else if d.flags & self.flag == 0 {
                    d.flags |= self.flag;
                    self.count += 1;
                }
            }
            self.at = to;
            // An outdated key is above the other mark (its device is unflagged), and moves
            // later, so only this mark can flag it.
            for (old, exact) in outdated {
                order.remove(&old);
                order.insert(exact);
                if let Some(d) = devices.get_mut(exact.slot) {
                    self.place(exact, &mut d.flags);
                }
            }
        } else if to < self.at {
            // Below the mark every key is exact: only releases here.
            for key in order.range(to..self.at) {
                if let Some(d) = devices.get_mut(key.slot) {
                    self.release(&mut d.flags);
                }
            }
            self.at = to;
        }
    }
}
