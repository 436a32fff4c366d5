//! The archive (the projector's `archive` projection in the `events` table) as the search
//! index's history, for logs that forget: see `shoal_search::History`.

use async_trait::async_trait;
use shoal_projector::seed;
use shoal_schemas::{Event, Position, ShardId};
use shoal_search::{History, ShardProgress};
use shoal_storage::Table;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct ArchiveHistory {
    tables: Arc<dyn Table>,
}

impl ArchiveHistory {
    pub fn new(tables: Arc<dyn Table>) -> Self {
        ArchiveHistory { tables }
    }
}

fn history_error(error: shoal_projector::Error) -> shoal_search::Error {
    shoal_search::Error::History(error.to_string())
}

#[async_trait]
impl History for ArchiveHistory {
    async fn covered(&self) -> shoal_search::Result<BTreeMap<ShardId, ShardProgress>> {
        let checkpoints = seed::archived_through(self.tables.as_ref())
            .await
            .map_err(history_error)?;
        Ok(checkpoints
            .into_iter()
            .filter_map(|checkpoint| {
                Some((
                    checkpoint.shard,
                    ShardProgress {
                        position: checkpoint.position?,
                        last_received_at: checkpoint.last_received_at.unwrap_or_default(),
                    },
                ))
            })
            .collect())
    }

    async fn segment(
        &self,
        segment: u32,
        total: u32,
        upto: &BTreeMap<ShardId, Position>,
    ) -> shoal_search::Result<Vec<(ShardId, Position, Event)>> {
        seed::archived_segment(self.tables.as_ref(), segment, total, upto)
            .await
            .map_err(history_error)
    }
}
