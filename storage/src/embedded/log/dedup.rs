//! The dedup window of one shard: fingerprints of recently stored events.
//!
//! Clients retry, so the same `tenant + entity + id` may arrive twice; within the window the
//! second copy is answered `Duplicate` and not written. A fingerprint is
//! `keys::dedup_fingerprint` (64 bits: a false duplicate needs a collision among the window's
//! fingerprints, about 1 in 2^44 for a million of them).
//!
//! Invariants:
//! - only fingerprints of events that are durable in the shard are inserted (the writer inserts
//!   after its fsync), so `Duplicate` always points at a stored copy;
//! - memory is bounded: at most `capacity` entries (about 40 bytes each), evicted oldest first,
//!   and entries older than the window (measured against the newest `received_at` seen, not
//!   the wall clock, so replaying old data at open behaves like live appends) are dropped;
//! - only one thread (the shard's writer) touches a window, so it needs no lock.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Fingerprints are already xxh3 hashes: hashing them again would only cost time.
#[derive(Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else in so it still works.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type BuildFingerprintHasher = BuildHasherDefault<FingerprintHasher>;

/// A set of fingerprints, for duplicates inside one drain of the writer.
pub type FingerprintSet = HashSet<u64, BuildFingerprintHasher>;

/// The window: which fingerprints were stored, and when (`received_at`, ms).
pub struct DedupWindow {
    window_millis: i64,
    capacity: usize,
    /// Insertion order, for eviction. May hold a stale entry for a fingerprint stored again
    /// later; `stored` then has the newer time and the stale entry evicts nothing.
    order: VecDeque<(u64, i64)>,
    stored: HashMap<u64, i64, BuildFingerprintHasher>,
    newest: i64,
}

impl DedupWindow {
    /// A window of `window_millis` holding at most `capacity` fingerprints; `0` disables it.
    pub fn new(window_millis: i64, capacity: usize) -> Self {
        DedupWindow {
            window_millis: window_millis.max(0),
            capacity,
            order: VecDeque::new(),
            stored: HashMap::default(),
            newest: i64::MIN,
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn window_millis(&self) -> i64 {
        self.window_millis
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// Was this fingerprint stored within the window before `received_at`?
    pub fn is_duplicate(&self, fingerprint: u64, received_at: i64) -> bool {
        self.stored
            .get(&fingerprint)
            .is_some_and(|&stored_at| stored_at >= received_at.saturating_sub(self.window_millis))
    }

    /// Records a stored event, evicting what no longer fits.
    pub fn insert(&mut self, fingerprint: u64, received_at: i64) {
        if !self.enabled() {
            return;
        }
        self.newest = self.newest.max(received_at);
        self.order.push_back((fingerprint, received_at));
        self.stored.insert(fingerprint, received_at);
        while self.order.len() > self.capacity {
            self.evict_oldest();
        }
        let horizon = self.newest.saturating_sub(self.window_millis);
        while self
            .order
            .front()
            .is_some_and(|&(_, stored_at)| stored_at < horizon)
        {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        // One lookup: the entry is removed only if it is still this insertion (a later one of
        // the same fingerprint has its own place further back in `order`).
        if let Some((fingerprint, stored_at)) = self.order.pop_front()
            && let Entry::Occupied(entry) = self.stored.entry(fingerprint)
            && *entry.get() == stored_at
        {
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_only() {
        let mut window = DedupWindow::new(1_000, 10);
        window.insert(1, 5_000);
        assert!(window.is_duplicate(1, 5_000));
        assert!(window.is_duplicate(1, 6_000), "exactly the window apart");
        assert!(!window.is_duplicate(1, 6_001));
        assert!(!window.is_duplicate(2, 5_000));
        assert!(
            window.is_duplicate(1, 4_000),
            "a retry with an earlier clock"
        );
    }

    #[test]
    fn expires_against_the_newest_time_seen() {
        let mut window = DedupWindow::new(1_000, 10);
        window.insert(1, 5_000);
        window.insert(2, 5_500);
        window.insert(3, 6_200);
        assert_eq!(window.len(), 2, "fingerprint 1 fell out of the window");
        assert!(!window.is_duplicate(1, 5_000));
        assert!(window.is_duplicate(2, 5_600));
    }

    #[test]
    fn capacity_evicts_oldest_first() {
        let mut window = DedupWindow::new(i64::MAX, 3);
        for fingerprint in 1..=5 {
            window.insert(fingerprint, 100);
        }
        assert_eq!(window.len(), 3);
        assert!(!window.is_duplicate(1, 100));
        assert!(!window.is_duplicate(2, 100));
        assert!(window.is_duplicate(5, 100));
    }

    #[test]
    fn a_fingerprint_stored_again_outlives_its_stale_entry() {
        let mut window = DedupWindow::new(1_000, 10);
        window.insert(7, 1_000);
        // Outside the window of the first copy, so stored again.
        assert!(!window.is_duplicate(7, 2_500));
        window.insert(7, 2_500);
        // The stale (7, 1000) entry was evicted by time; the new copy must still be known.
        assert!(window.is_duplicate(7, 3_000));
        window.insert(8, 3_400);
        assert!(window.is_duplicate(7, 3_400));
    }

    #[test]
    fn zero_capacity_disables() {
        let mut window = DedupWindow::new(1_000, 0);
        window.insert(1, 0);
        assert!(!window.enabled());
        assert!(!window.is_duplicate(1, 0));
    }
}
