//! Devices per label, with a small integer id for each label in use.
//!
//! A device record keeps the id (2 or 4 bytes) instead of an owned label string. The table
//! holds one copy of each label that at least one device has; when the last device leaves a
//! label, the label is dropped from the index and its id is reused by the next new label, so
//! the table is bounded by the labels in use, exactly like the per-label counts it replaces.
//! Callers hash the label themselves (so a lookup can work on borrowed parts and never
//! allocates) and keep the hash function fixed for the life of the table.

use hashbrown::HashTable;

#[derive(Debug)]
struct Entry<K> {
    key: K,
    hash: u64,
    devices: u64,
}

/// Device counts keyed by label, addressed by id.
#[derive(Debug)]
pub(super) struct Tally<K> {
    index: HashTable<u32>,
    entries: Vec<Entry<K>>,
    free: Vec<u32>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Tally {
            index: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K> Tally<K> {
    /// The id of the label `eq` recognises (with hash `hash`), if a device has it.
    pub(super) fn find(&self, hash: u64, eq: impl Fn(&K) -> bool) -> Option<u32> {
        let entries = &self.entries;
        self.index
            .find(hash, |&id| {
                entries.get(id as usize).is_some_and(|e| eq(&e.key))
            })
            .copied()
    }

    /// Counts one more device under the label `eq` recognises, creating it with `make` when
    /// no device has it; returns its id. Ids are dense: at most the peak number of labels in
    /// use at once.
    pub(super) fn add(
        &mut self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        make: impl FnOnce() -> K,
    ) -> u32 {
        if let Some(id) = self.find(hash, eq) {
            if let Some(e) = self.entries.get_mut(id as usize) {
                e.devices += 1;
            }
            return id;
        }
        let entry = Entry {
            key: make(),
            hash,
            devices: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                // Every id names a label some device has, and device slots are u32.
                u32::try_from(self.entries.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let entries = &self.entries;
        self.index
            .insert_unique(hash, id, |&i| entries.get(i as usize).map_or(0, |e| e.hash));
        id
    }

    /// Counts one device fewer under `id`; the last one out frees the id.
    pub(super) fn sub(&mut self, id: u32) {
        let Some(e) = self.entries.get_mut(id as usize) else {
            return;
        };
        if e.devices == 0 {
            return;
        }
        e.devices -= 1;
        if e.devices == 0 {
            if let Ok(found) = self.index.find_entry(e.hash, |&i| i == id) {
                found.remove();
            }
            self.free.push(id);
        }
    }

    /// The label of `id` while a device has it.
    pub(super) fn key(&self, id: u32) -> Option<&K> {
        self.entries
            .get(id as usize)
            .filter(|e| e.devices > 0)
            .map(|e| &e.key)
    }

    /// `(id, label, devices)` for every label in use.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &K, u64)> {
        (0u32..)
            .zip(&self.entries)
            .filter(|(_, e)| e.devices > 0)
            .map(|(id, e)| (id, &e.key, e.devices))
    }

    /// Labels in use.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use super::*;

    fn add(t: &mut Tally<String>, h: &RandomState, label: &str) -> u32 {
        t.add(h.hash_one(label), |k| k == label, || label.to_string())
    }

    fn live(t: &Tally<String>) -> Vec<(String, u64)> {
        let mut v: Vec<_> = t.iter().map(|(_, k, n)| (k.clone(), n)).collect();
        v.sort();
        v
    }

    #[test]
    fn the_last_device_out_frees_the_id_for_the_next_label() {
        let h = RandomState::new();
        let mut t = Tally::default();
        let a = add(&mut t, &h, "a");
        let b = add(&mut t, &h, "b");
        assert_eq!(add(&mut t, &h, "a"), a);
        assert_ne!(a, b);
        t.sub(a);
        assert_eq!(t.key(a).map(String::as_str), Some("a"), "one device left");
        t.sub(a);
        assert_eq!(t.key(a), None);
        assert_eq!(t.find(h.hash_one("a"), |k| k == "a"), None);
        // A second release of a freed id must not free it twice.
        t.sub(a);
        let c = add(&mut t, &h, "c");
        assert_eq!(c, a, "the freed id is reused");
        let d = add(&mut t, &h, "d");
        assert_ne!(d, c, "a double free would hand the same id out twice");
        assert_eq!(
            live(&t),
            [("b".into(), 1), ("c".into(), 1), ("d".into(), 1)]
        );
        assert_eq!(t.len(), 3);
        // "a" comes back under a new id and is found by its hash again.
        let a2 = add(&mut t, &h, "a");
        assert_eq!(t.find(h.hash_one("a"), |k| k == "a"), Some(a2));
        assert_eq!(t.key(b).map(String::as_str), Some("b"));
    }

    #[test]
    fn ids_stay_dense_under_churn() {
        let h = RandomState::new();
        let mut t = Tally::default();
        for round in 0..50 {
            let ids: Vec<u32> = (0..10)
                .map(|i| add(&mut t, &h, &format!("r{round}-{i}")))
                .collect();
            for id in ids {
                t.sub(id);
            }
        }
        assert_eq!(t.len(), 0);
        assert!(t.entries.len() <= 10, "{} entries", t.entries.len());
    }
}
