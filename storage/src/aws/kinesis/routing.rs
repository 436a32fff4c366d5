//! Which shard an event goes to, and which events of a record belong to the shard it is in.
//!
//! Kinesis maps a partition key to a 128-bit hash key, the MD5 of its UTF-8 bytes read as a
//! big-endian integer, and a record to the open shard whose hash key range holds it (or to the
//! shard of its `ExplicitHashKey`). The log packs the events of *all* entities bound for one
//! shard into its records, in input order — many entities per record, which is what lets a
//! shard (1,000 records/s) carry far more than 1,000 events/s — and sends each record with the
//! explicit hash key of its shard, as the Kinesis Producer Library does.
//!
//! The price is a shard map that can be stale: after a reshard a record sent for shard P lands
//! in whichever open shard now owns P's starting hash key, together with events of entities that
//! now belong to a sibling. The rule that keeps every entity in exactly one place:
//! **an event belongs to a shard only if its own hash key is in that shard's range.** Readers
//! drop the events of a record that do not belong to the shard they read (the Kinesis Client
//! Library filters deaggregated records the same way); the writer, told by `PutRecords` which
//! shard a record really went to, counts the events that belong there as stored and sends the
//! others again with a fresh map. Hash keys are 128-bit by definition, so `u128` is exact here
//! (sequence numbers, which are not, never go through it).

use aws_sdk_kinesis::types::Shard;
use md5::{Digest, Md5};
use shoal_schemas::ShardId;
use std::collections::HashMap;

/// A shard's inclusive range of hash keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HashRange {
    pub start: u128,
    pub end: u128,
}

impl HashRange {
    pub fn contains(&self, hash: u128) -> bool {
        self.start <= hash && hash <= self.end
    }

    /// The range of a listed shard, when it parses.
    pub fn of(shard: &Shard) -> Option<HashRange> {
        let range = shard.hash_key_range()?;
        Some(HashRange {
            start: range.starting_hash_key().parse().ok()?,
            end: range.ending_hash_key().parse().ok()?,
        })
    }
}

/// The hash key Kinesis computes for a partition key.
pub(crate) fn hash_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// The open shards by hash range, as last listed, and the range of every listed shard.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShardMap {
    open: Vec<(HashRange, ShardId)>,
    ranges: HashMap<ShardId, HashRange>,
}

impl ShardMap {
    /// The map of a listing's open shards (those without an ending sequence number).
    pub fn from_listing(shards: &[Shard]) -> ShardMap {
        let mut open: Vec<(HashRange, ShardId)> = shards
            .iter()
            .filter(|shard| {
                shard
                    .sequence_number_range()
                    .and_then(|range| range.ending_sequence_number())
                    .is_none()
            })
            .filter_map(|shard| Some((HashRange::of(shard)?, shard.shard_id().to_owned())))
            .collect();
        open.sort_by_key(|(range, _)| range.start);
        let ranges = shards
            .iter()
            .filter_map(|shard| Some((shard.shard_id().to_owned(), HashRange::of(shard)?)))
            .collect();
        ShardMap { open, ranges }
    }

    /// The hash range of a listed shard, open or closed.
    pub fn range_of(&self, shard: &str) -> Option<HashRange> {
        self.ranges.get(shard).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The open shard owning `hash`, and the explicit hash key that sends a record there.
    pub fn route(&self, hash: u128) -> Option<(&ShardId, u128)> {
        let index = self.open.partition_point(|(range, _)| range.start <= hash);
        let (range, shard) = self.open.get(index.checked_sub(1)?)?;
        range.contains(hash).then_some((shard, range.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};

    fn shard(id: &str, start: u128, end: u128, closed: bool) -> Shard {
        let mut sequence = SequenceNumberRange::builder().starting_sequence_number("1");
        if closed {
            sequence = sequence.ending_sequence_number("2");
        }
        Shard::builder()
            .shard_id(id)
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key(start.to_string())
                    .ending_hash_key(end.to_string())
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(sequence.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn hash_keys_are_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn routes_to_the_open_shard_owning_the_hash() {
        let half = u128::MAX / 2;
        let listing = vec![
            shard("parent", 0, u128::MAX, true),
            shard("high", half + 1, u128::MAX, false),
            shard("low", 0, half, false),
        ];
        let map = ShardMap::from_listing(&listing);
        assert_eq!(map.route(0), Some((&"low".to_owned(), 0)));
        assert_eq!(map.route(half), Some((&"low".to_owned(), 0)));
        assert_eq!(map.route(half + 1), Some((&"high".to_owned(), half + 1)));
        assert_eq!(map.route(u128::MAX), Some((&"high".to_owned(), half + 1)));
        assert!(ShardMap::default().route(5).is_none());
    }
}
