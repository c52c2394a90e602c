//! The dedup state's hash table: key -> expiry, in four shards of unequal size.
//!
//! A hash table that doubles when it is 7/8 full is only 7/16 full just after it doubled,
//! so one table costs up to 16/7 slots per key: 75 bytes for a 33-byte slot. The keys here
//! are spread over four tables by hash, in shares that grow by 2^(1/4) from one to the next
//! (19%, 22%, 27%, 32%). The tables then double at different moments, never all empty
//! together, and the whole costs at most about 60.5 bytes per key at any number of keys
//! (`worst_case_bytes_per_key` below checks it), at the price of choosing a shard per lookup.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::key::Key;
use crate::pages::TablePages;

/// Shares of the hash space by shard, as upper bounds of a 32-bit slice of the hash:
/// cumulative 2^(i/4) / (1 + 2^(1/4) + 2^(2/4) + 2^(3/4)).
const BOUNDS: [u64; 3] = [
    (0.18920711500272106 * 4_294_967_296.0) as u64,
    ((0.18920711500272106 + 0.22500455831457055) * 4_294_967_296.0) as u64,
    ((0.18920711500272106 + 0.22500455831457055 + 0.26757745648091774) * 4_294_967_296.0) as u64,
];

/// Which shard a hash goes to. hashbrown uses a hash's low bits for the bucket and its top
/// seven for the control byte; the shard comes from bits 24..56, used by neither for tables
/// of fewer than 2^24 buckets, and only slightly correlated beyond that.
fn shard(hash: u64) -> usize {
    let slice = (hash >> 24) & 0xffff_ffff;
    BOUNDS.iter().take_while(|&&b| slice >= b).count()
}

/// Where a walk over the tables is ([`DedupMap::remove_expired`]): a shard and a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    shard: usize,
    bucket: usize,
}

/// Key -> expiry (event time in ms; `i64::MAX` without a watermark).
#[derive(Clone, Default)]
pub struct DedupMap {
    shards: [HashTable<(Key, i64), TablePages>; 4],
    hasher: foldhash::fast::RandomState,
}

/// The hash of an entry's key, for a table that moves its entries (growth, shrinking).
fn entry_hash(hasher: &foldhash::fast::RandomState) -> impl Fn(&(Key, i64)) -> u64 + '_ {
    |(k, _)| hasher.hash_one(k.as_bytes())
}

impl DedupMap {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashTable::len).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashTable::is_empty)
    }

    /// Keys the tables can hold without growing.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(HashTable::capacity).sum()
    }

    /// Slots allocated (a table holds 8 for every 7 keys of capacity).
    pub fn buckets(&self) -> usize {
        self.shards.iter().map(HashTable::num_buckets).sum()
    }

    /// The expiry of `key`, if held.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let hash = self.hash(key);
        self.shards[shard(hash)].find(hash, |(k, _)| k.as_bytes() == key).map(|(_, e)| *e)
    }

    /// Inserts `key` unless it is held; returns whether it was inserted.
    pub fn insert_new(&mut self, key: &[u8], expires: i64, inserted: impl FnOnce(&Key)) -> bool {
        let hash = self.hash(key);
        match self.shards[shard(hash)].entry(hash, |(k, _)| k.as_bytes() == key, entry_hash(&self.hasher)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                let entry = slot.insert((Key::new(key), expires));
                inserted(&entry.get().0);
                true
            }
        }
    }

    /// Sets `key`'s expiry, inserting it if needed.
    pub fn insert(&mut self, key: Key, expires: i64) {
        let hash = self.hash(key.as_bytes());
        match self.shards[shard(hash)].entry(hash, |(k, _)| *k == key, entry_hash(&self.hasher)) {
            Entry::Occupied(mut o) => o.get_mut().1 = expires,
            Entry::Vacant(v) => {
                v.insert((key, expires));
            }
        }
    }

    /// Removes `key`; returns its expiry if it was held.
    pub fn remove(&mut self, key: &[u8]) -> Option<i64> {
        let hash = self.hash(key);
        match self.shards[shard(hash)].find_entry(hash, |(k, _)| k.as_bytes() == key) {
            Ok(o) => Some(o.remove().0.1),
            Err(_) => None,
        }
    }

    /// Removes entries whose expiry is at or below `expired_at`, walking the tables from
    /// `walk` on, and hands each removed key to `removed`; stops after `max` removals (at
    /// least one, so that every call makes progress).
    /// Returns whether the walk reached the end. Removing only marks a slot free and moves
    /// no other entry, so a walk can stop and go on later, as long as nothing is inserted
    /// in between.
    pub fn remove_expired(&mut self, walk: &mut Walk, expired_at: i64, max: usize, mut removed: impl FnMut(Key)) -> bool {
        let (mut n, max) = (0, max.max(1));
        while let Some(t) = self.shards.get_mut(walk.shard) {
            while walk.bucket < t.num_buckets() {
                if n == max {
                    return false;
                }
                let i = walk.bucket;
                walk.bucket += 1;
                if t.get_bucket(i).is_some_and(|(_, e)| *e <= expired_at)
                    && let Ok(entry) = t.get_bucket_entry(i)
                {
                    removed(entry.remove().0.0);
                    n += 1;
                }
            }
            *walk = Walk { shard: walk.shard + 1, bucket: 0 };
        }
        true
    }

    /// Keeps the entries for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key, i64) -> bool) {
        for t in &mut self.shards {
            t.retain(|(k, e)| keep(k, *e));
        }
    }

    /// Gives memory back down to what `len` keys need.
    pub fn shrink_to_fit(&mut self) {
        for t in &mut self.shards {
            t.shrink_to_fit(entry_hash(&self.hasher));
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, i64)> {
        self.shards.iter().flat_map(|t| t.iter().map(|(k, e)| (k, *e)))
    }
}

impl PartialEq for DedupMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, e)| other.get(k.as_bytes()) == Some(e))
    }
}

impl Eq for DedupMap {}

impl std::fmt::Debug for DedupMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(Key, i64)> for DedupMap {
    fn from_iter<I: IntoIterator<Item = (Key, i64)>>(entries: I) -> Self {
        let mut map = Self::default();
        for (k, e) in entries {
            map.insert(k, e);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_grow_by_a_fourth_root_of_two() {
        let mut counts = [0u64; 4];
        let map = DedupMap::default();
        for i in 0..400_000u32 {
            counts[shard(map.hash(&i.to_le_bytes()))] += 1;
        }
        for w in counts.windows(2) {
            let ratio = w[1] as f64 / w[0] as f64;
            assert!((ratio - 2f64.powf(0.25)).abs() < 0.03, "{counts:?}");
        }
    }

    /// A slot (key, expiry, control byte) is 33 bytes; one table costs up to 75.4 bytes per
    /// key just after it doubles. The shards keep the worst case near 60.5.
    #[test]
    fn worst_case_bytes_per_key() {
        let slot = std::mem::size_of::<(Key, i64)>() + 1;
        let mut map = DedupMap::default();
        let mut worst: f64 = 0.0;
        for i in 0..600_000u64 {
            map.insert_new(&i.to_le_bytes(), 0, |_| {});
            if i >= 20_000 {
                worst = worst.max((map.buckets() * slot) as f64 / map.len() as f64);
            }
        }
        assert!(worst < 62.0, "worst {worst:.1} bytes per key");
        assert_eq!(map.len(), 600_000);
    }

    /// A walk removes what expired, in slices of at most `max`, and keeps the rest.
    #[test]
    fn expired_keys_come_out_in_slices() {
        let mut map = DedupMap::default();
        for i in 0..100_000u64 {
            map.insert_new(&i.to_le_bytes(), (i % 10) as i64, |_| {});
        }
        let (mut walk, mut removed, mut slices) = (Walk::default(), Vec::new(), 0);
        loop {
            let before = removed.len();
            let done = map.remove_expired(&mut walk, 2, 7_000, |k| removed.push(k));
            assert!(removed.len() - before <= 7_000);
            slices += 1;
            if done {
                break;
            }
        }
        assert_eq!((removed.len(), map.len(), slices), (30_000, 70_000, 5));
        removed.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        removed.dedup();
        assert_eq!(removed.len(), 30_000, "each key once");
        assert!(removed.iter().all(|k| map.get(k.as_bytes()).is_none()));
        assert!(map.iter().all(|(_, e)| e > 2));
        assert!(map.remove_expired(&mut Walk::default(), 2, usize::MAX, |_| unreachable!()));
    }

    #[test]
    fn insert_get_remove_retain() {
        let mut map = DedupMap::default();
        let mut added = Vec::new();
        assert!(map.insert_new(b"a", 1, |k| added.push(k.clone())));
        assert!(!map.insert_new(b"a", 2, |_| unreachable!()));
        assert_eq!(map.get(b"a"), Some(1));
        map.insert(Key::new(b"b"), 5);
        map.insert(Key::new(b"b"), 6);
        assert_eq!((map.len(), map.get(b"b")), (2, Some(6)));
        assert_eq!(map.remove(b"a"), Some(1));
        assert_eq!(map.remove(b"a"), None);
        map.insert(Key::new(b"c"), 9);
        map.retain(|_, e| e > 6);
        assert_eq!(map, [(Key::new(b"c"), 9)].into_iter().collect());
        assert_eq!(added, vec![Key::new(b"a")]);
    }
}
