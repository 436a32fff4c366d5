//! What `GET /v1/projections` shows, and the freshness every read-model answer carries.
//!
//! Durable facts (position, counts, freshness) come from the checkpoints in `control`, so any
//! process can answer; live facts (lag reported by the last read, retries, last error) come
//! from the workers of this process ([`Live`]). Lag in bytes and records is exact on the
//! embedded log (its head); on other backends lag is the `millis_behind` of the last read.

use crate::checkpoint::{self, Checkpoint};
use crate::keys::dead_letter_pk;
use crate::{Projection, Result};
use serde::Serialize;
use shoal_schemas::ShardId;
use shoal_storage::embedded::EmbeddedLog;
use shoal_storage::{Query, Table, TableName};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Live facts of one worker.
#[derive(Clone, Debug, Default)]
struct LiveShard {
    millis_behind: Option<u64>,
    retries: u64,
    last_error: Option<String>,
    applied_since_start: u64,
}

/// The live facts of one projection's workers, shared with the status source.
#[derive(Debug, Default)]
pub(crate) struct Live {
    shards: Mutex<HashMap<ShardId, LiveShard>>,
}

impl Live {
    fn with<T>(&self, shard: &ShardId, change: impl FnOnce(&mut LiveShard) -> T) -> T {
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        change(shards.entry(shard.clone()).or_default())
    }

    pub fn record_read(&self, shard: &ShardId, millis_behind: Option<u64>) {
        self.with(shard, |live| live.millis_behind = millis_behind);
    }

    pub fn record_applied(&self, shard: &ShardId, applied: u64) {
        self.with(shard, |live| {
            live.applied_since_start += applied;
            live.last_error = None;
        });
    }

    pub fn record_error(&self, shard: &ShardId, error: String) {
        self.with(shard, |live| {
            live.retries += 1;
            live.last_error = Some(error);
        });
    }

    fn get(&self, shard: &ShardId) -> LiveShard {
        self.with(shard, |live| live.clone())
    }
}

/// The answer of `GET /v1/projections`.
#[derive(Clone, Debug, Serialize)]
pub struct ProjectionsStatus {
    pub projections: Vec<ProjectionStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: u32,
    pub events_applied: u64,
    /// Dead letters currently stored (re-driven ones are gone).
    pub dead_letters: u64,
    pub shards: Vec<ShardStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShardStatus {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// Bytes of the shard after the checkpoint's record (embedded log only).
    pub lag_bytes: Option<u64>,
    /// Events after the checkpoint, when known exactly (embedded: 0 when caught up, or when the
    /// checkpoint is inside the newest record).
    pub lag_records: Option<u64>,
    /// How far behind the newest event the checkpoint is, by `received_at`.
    pub lag_ms: Option<u64>,
    pub retries: u64,
    pub last_error: Option<String>,
}

/// Computes status; cheap to clone, one per process.
#[derive(Clone)]
pub struct StatusSource {
    pub(crate) tables: Arc<dyn Table>,
    pub(crate) projections: Vec<(Arc<dyn Projection>, Arc<Live>)>,
    pub(crate) shards: Vec<ShardId>,
    pub(crate) embedded: Option<Arc<EmbeddedLog>>,
}

impl StatusSource {
    pub async fn status(&self) -> Result<ProjectionsStatus> {
        let mut projections = Vec::new();
        for (projection, live) in &self.projections {
            let stored = checkpoint::list(
                self.tables.as_ref(),
                projection.name(),
                projection.version(),
            )
            .await?;
            let mut by_shard: HashMap<ShardId, Checkpoint> = stored
                .into_iter()
                .map(|checkpoint| (checkpoint.shard.clone(), checkpoint))
                .collect();
            let mut shards = Vec::new();
            for shard in &self.shards {
                let checkpoint = by_shard.remove(shard).unwrap_or_else(|| Checkpoint {
                    shard: shard.clone(),
                    ..Checkpoint::default()
                });
                shards.push(self.shard_status(checkpoint, live.get(shard)));
            }
            let dead_letters = count_dead_letters(
                self.tables.as_ref(),
                projection.name(),
                projection.version(),
            )
            .await?;
            projections.push(ProjectionStatus {
                name: projection.name().to_owned(),
                version: projection.version(),
                events_applied: shards.iter().map(|s| s.checkpoint.events_applied).sum(),
                dead_letters,
                shards,
            });
        }
        Ok(ProjectionsStatus { projections })
    }

    fn shard_status(&self, checkpoint: Checkpoint, live: LiveShard) -> ShardStatus {
        let mut status = ShardStatus {
            lag_bytes: None,
            lag_records: None,
            lag_ms: live.millis_behind,
            retries: live.retries,
            last_error: live.last_error,
            checkpoint,
        };
        let Some(head) = self
            .embedded
            .as_ref()
            .and_then(|log| log.head(&status.checkpoint.shard).ok())
        else {
            return status;
        };
        let applied_offset = status
            .checkpoint
            .position
            .as_ref()
            .and_then(|position| position.sequence.to_u64());
        status.lag_bytes = Some(head.end_offset.saturating_sub(applied_offset.unwrap_or(0)));
        status.lag_records = match (&head.last, &status.checkpoint.position) {
            (None, _) => Some(0),
            (Some(last), Some(applied)) if last.sequence == applied.sequence => {
                Some(u64::from(last.index.saturating_sub(applied.index)))
            }
            _ => None,
        };
        // The offset above is where the checkpoint's record starts; a caught-up shard has
        // nothing after that record, whatever its size.
        if status.lag_records == Some(0) {
            status.lag_bytes = Some(0);
        }
        status.lag_ms = match (head.newest_received_at, status.checkpoint.last_received_at) {
            (Some(newest), Some(applied)) => Some(newest.saturating_sub(applied).max(0) as u64),
            (None, _) => Some(0),
            _ => status.lag_ms,
        };
        status
    }
}

async fn count_dead_letters(tables: &dyn Table, projection: &str, version: u32) -> Result<u64> {
    let mut query = Query::partition(dead_letter_pk(projection, version));
    let mut count = 0u64;
    loop {
        let page = tables.query(TableName::Control, &query).await?;
        count += page.items.len() as u64;
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(count),
        }
    }
}

/// How fresh a projection's read models are: per shard, the checkpoint position and the event
/// times of the last applied event. Every read-model answer can carry this.
#[derive(Clone, Debug, Serialize)]
pub struct Freshness {
    pub projection: String,
    pub version: u32,
    pub shards: Vec<Checkpoint>,
    /// The oldest `last_received_at` over the shards that have applied anything: everything
    /// received before it is reflected (for shards that have caught up).
    pub received_through: Option<i64>,
}

/// The freshness of `projection` version `version`, from its checkpoints.
pub async fn freshness(tables: &dyn Table, projection: &str, version: u32) -> Result<Freshness> {
    let shards = checkpoint::list(tables, projection, version).await?;
    let received_through = shards.iter().filter_map(|c| c.last_received_at).min();
    Ok(Freshness {
        projection: projection.to_owned(),
        version,
        shards,
        received_through,
    })
}
