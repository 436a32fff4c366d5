//! Seeding a new index from an archive of the log's history, for logs that forget.
//!
//! Kinesis keeps 24 hours (up to a year) of records, so a query process that starts with an
//! empty index cannot read older events from the log. The projector's `archive` projection
//! keeps every event with its shard and position; a [`History`] serves it to the index. A
//! fresh index first indexes the archived events of each shard up to the archive's checkpoint
//! there, one scan segment at a time, then follows the log from those positions.
//!
//! Why exactly-once: the commit after each segment records, in its payload, the positions the
//! seed covers and the segments done, together with that segment's documents; after a crash the
//! seed resumes at the next segment (a segment half-indexed was never committed). The log is
//! followed only once every segment is in, from the covered positions, which the archive had
//! read when it wrote them. A segment holds whole partitions (every event of an entity), sorted
//! by shard and position, so each entity's state folds its events in log order.

use crate::Result;
use crate::index::ShardProgress;
use serde::{Deserialize, Serialize};
use shoal_schemas::{Event, Position, ShardId};
use std::collections::BTreeMap;

/// Segments a seed scans the archive in: one is held in memory at a time.
pub const SEED_SEGMENTS: u32 = 16;

/// The archived history of the log.
#[async_trait::async_trait]
pub trait History: Send + Sync {
    /// Per shard, how far the archive holds its history (shards without any are absent).
    async fn covered(&self) -> Result<BTreeMap<ShardId, ShardProgress>>;

    /// The archived events of scan segment `segment` of `total` at or before `upto` of their
    /// shard, sorted by shard and position.
    async fn segment(
        &self,
        segment: u32,
        total: u32,
        upto: &BTreeMap<ShardId, Position>,
    ) -> Result<Vec<(ShardId, Position, Event)>>;
}

/// A seed under way, in the commit payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seeding {
    /// Where the log is followed from once the seed is done.
    pub upto: BTreeMap<ShardId, ShardProgress>,
    pub segments: u32,
    /// Segments indexed and committed.
    pub done: u32,
}

impl Seeding {
    pub fn positions(&self) -> BTreeMap<ShardId, Position> {
        self.upto
            .iter()
            .map(|(shard, progress)| (shard.clone(), progress.position.clone()))
            .collect()
    }
}
