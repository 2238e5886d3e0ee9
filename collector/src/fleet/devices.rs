//! The per-device records: one 24-byte [`Device`] per device, addressed by a dense slot.
//!
//! - Devices are never removed (the store never deletes a `devices` row; retention prunes
//!   reports, history, attempts and events only), so slot `i` is the `i`-th device first seen
//!   and a slot is never reused.
//! - Each machine id is stored once, packed into 1 MiB chunks of one arena ([`CHUNK`]): no
//!   per-id allocation, no second copy in the ordered index (which holds slots). An id the arena
//!   cannot address (64 KiB or longer, or past 4 GiB of ids) is kept in a spill list instead.
//! - The id → slot index is a `hashbrown::HashTable<u32>` (4 bytes per bucket) hashed with a
//!   per-process random SipHash key, since machine ids come from the network.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// A device's index into the records.
pub(super) type Slot = u32;

/// Bytes per arena chunk; an id never straddles two chunks.
const CHUNK: usize = 1 << 20;
/// Chunks a `u32` arena offset can address.
const MAX_CHUNKS: usize = (u32::MAX as usize + 1) / CHUNK;
/// `id_len` of an id kept in the spill list (`id_at` is then its index there).
const SPILLED: u16 = u16::MAX;

/// One device: where its id is, its current contribution as label ids, and its place in the
/// `last_seen` order. 24 bytes (checked below).
#[derive(Debug, Clone, Copy)]
pub(super) struct Device {
    /// Latest `last_seen` (unix ms). The device's key in the ordered index is at or before it
    /// (exact when flagged: `fleet/last_seen.rs`).
    pub last_seen: i64,
    id_at: u32,
    /// Failure label id, or [`NO_FAILURE`].
    pub failure: u32,
    id_len: u16,
    /// Join type label id.
    pub join: u16,
    /// Agent version label id.
    pub version: u16,
    /// Bit `i` set when `dsreg_proto::diagnostic_tests::DIAGNOSTIC_TESTS[i]` printed FAIL.
    pub failing_tests: u8,
    /// [`WITHOUT_PRT`], [`SPOOL_OVERFLOWING`], [`STALE`], [`NOT_DELIVERED`].
    pub flags: u8,
}

const _: () = assert!(std::mem::size_of::<Device>() == 24);

/// `Device::failure` of a healthy device.
pub(super) const NO_FAILURE: u32 = u32::MAX;
/// A joined device without a PRT.
pub(super) const WITHOUT_PRT: u8 = 1;
/// Its agent dropped spooled reports.
pub(super) const SPOOL_OVERFLOWING: u8 = 2;
/// Counted in `stale` (its key is below the stale sweep's mark).
pub(super) const STALE: u8 = 4;
/// Counted in `not_delivered_1d` (its key is below the one-day sweep's mark).
pub(super) const NOT_DELIVERED: u8 = 8;
/// Not targeted, one bit per `NOT_TARGETED_REASONS` entry (domain controller, policy).
pub(super) const NOT_TARGETED: [u8; 2] = [16, 32];

impl Device {
    /// A record last seen at `last_seen`, with no labels yet; [`Devices::push`] fills in the id.
    pub(super) fn new(last_seen: i64) -> Device {
        Device {
            last_seen,
            id_at: 0,
            failure: NO_FAILURE,
            id_len: 0,
            join: 0,
            version: 0,
            failing_tests: 0,
            flags: 0,
        }
    }
}

/// Machine ids packed into chunks, each id stored once.
#[derive(Debug, Default)]
struct Ids {
    chunks: Vec<String>,
    spill: Vec<Box<str>>,
}

impl Ids {
    /// Stores `id`; returns `(id_at, id_len)`, or `None` past `u32::MAX` spilled ids.
    fn push(&mut self, id: &str) -> Option<(u32, u16)> {
        if let Ok(len) = u16::try_from(id.len())
            && len != SPILLED
            && let Some(at) = self.pack(id)
        {
            return Some((at, len));
        }
        let at = u32::try_from(self.spill.len()).ok()?;
        self.spill.push(id.into());
        Some((at, SPILLED))
    }

    /// Appends `id` (shorter than 64 KiB) to the last chunk, or to a new one when it does
    /// not fit; `None` when the arena is full.
    fn pack(&mut self, id: &str) -> Option<u32> {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.len() + id.len() <= CHUNK);
        if !fits {
            if self.chunks.len() >= MAX_CHUNKS {
                return None;
            }
            self.chunks.push(String::new());
        }
        let index = self.chunks.len() - 1;
        let chunk = self.chunks.last_mut()?;
        let need = chunk.len() + id.len();
        if need > chunk.capacity() {
            // Double like a Vec, but never past CHUNK: a full chunk has no slack.
            let want = (chunk.capacity() * 2).clamp(need, CHUNK);
            chunk.reserve_exact(want - chunk.len());
        }
        let at = u32::try_from(index * CHUNK + chunk.len()).ok()?;
        chunk.push_str(id);
        Some(at)
    }

    fn get(&self, at: u32, len: u16) -> &str {
        if len == SPILLED {
            return self.spill.get(at as usize).map_or("", |s| s);
        }
        let (chunk, start) = (at as usize / CHUNK, at as usize % CHUNK);
        self.chunks
            .get(chunk)
            .and_then(|c| c.get(start..start + usize::from(len)))
            .unwrap_or("")
    }
}

/// The device records and the index from machine id to slot.
#[derive(Debug, Default)]
pub(super) struct Devices {
    records: Vec<Device>,
    ids: Ids,
    index: HashTable<Slot>,
    hasher: RandomState,
}

impl Devices {
    /// The slot of `machine_id`, if known.
    pub(super) fn find(&self, machine_id: &str) -> Option<Slot> {
        let hash = self.hasher.hash_one(machine_id);
        let (records, ids) = (&self.records, &self.ids);
        self.index
            .find(hash, |&s| {
                records
                    .get(s as usize)
                    .is_some_and(|d| ids.get(d.id_at, d.id_len) == machine_id)
            })
            .copied()
    }

    /// Adds a device not yet known (callers check with [`Devices::find`] first); `None` when
    /// no slot is left (more than `u32::MAX - 1` devices, far past any memory budget).
    pub(super) fn push(&mut self, machine_id: &str, mut record: Device) -> Option<Slot> {
        let slot = Slot::try_from(self.records.len())
            .ok()
            .filter(|&s| s < Slot::MAX - 1)?;
        (record.id_at, record.id_len) = self.ids.push(machine_id)?;
        self.records.push(record);
        let (records, ids, hasher) = (&self.records, &self.ids, &self.hasher);
        let hash = hasher.hash_one(machine_id);
        self.index.insert_unique(hash, slot, |&s| {
            let id = records
                .get(s as usize)
                .map_or("", |d| ids.get(d.id_at, d.id_len));
            hasher.hash_one(id)
        });
        Some(slot)
    }

    pub(super) fn get(&self, slot: Slot) -> Option<&Device> {
        self.records.get(slot as usize)
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> Option<&mut Device> {
        self.records.get_mut(slot as usize)
    }

    /// The machine id of `slot` (`""` for a slot that does not exist).
    pub(super) fn id(&self, slot: Slot) -> &str {
        self.get(slot)
            .map_or("", |d| self.ids.get(d.id_at, d.id_len))
    }

    /// Devices known.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_is_found_again_across_chunks_and_the_spill_list() {
        let mut d = Devices::default();
        let mut ids: Vec<String> = (0..70_000)
            .map(|i| format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919))
            .collect();
        // Edge lengths: empty, one byte, non-ASCII, the longest packed id, the shortest
        // spilled one, and one longer than a whole chunk.
        ids.extend([
            String::new(),
            "x".into(),
            "pc-ä€😀".into(),
            "a".repeat(usize::from(SPILLED) - 1),
            "b".repeat(usize::from(SPILLED)),
            "c".repeat(CHUNK + 1),
        ]);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(d.find(id), None, "{i} before insert");
            assert_eq!(d.push(id, Device::new(i as i64)), Some(i as Slot));
        }
        assert!(d.ids.chunks.len() >= 3, "{} chunks", d.ids.chunks.len());
        assert_eq!(d.ids.spill.len(), 2);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(d.find(id), Some(i as Slot), "{i}");
            assert_eq!(d.id(i as Slot), id);
            assert_eq!(d.get(i as Slot).map(|r| r.last_seen), Some(i as i64));
        }
        assert_eq!(d.find("not-there"), None);
        assert_eq!(d.len(), ids.len());
        // No chunk grew past CHUNK.
        assert!(d.ids.chunks.iter().all(|c| c.capacity() <= CHUNK));
    }
}
