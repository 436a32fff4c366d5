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
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

/// Live facts of one worker.
#[derive(Clone, Debug, Default)]
struct LiveShard {
    millis_behind: Option<u64>,
    retries: u64,
    last_error: Option<String>,
    applied_since_start: u64,
    /// The worker has reached the head of its shard at least once.
    caught_up: bool,
    /// The log offset of the checkpoint the worker started from (when sequences are offsets).
    start_offset: Option<u64>,
}

/// The live facts of one projection's workers, shared with the status source.
#[derive(Debug)]
pub(crate) struct Live {
    shards: Mutex<HashMap<ShardId, LiveShard>>,
    started: Instant,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            shards: Mutex::default(),
            started: Instant::now(),
        }
    }
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

    pub fn record_caught_up(&self, shard: &ShardId) {
        self.with(shard, |live| live.caught_up = true);
    }

    pub fn record_start(&self, shard: &ShardId, offset: Option<u64>) {
        self.with(shard, |live| {
            live.start_offset.get_or_insert(offset.unwrap_or(0));
        });
    }

    /// Every one of `shards` has caught up at least once.
    pub fn caught_up(&self, shards: &[ShardId]) -> bool {
        let live = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        shards
            .iter()
            .all(|shard| live.get(shard).is_some_and(|s| s.caught_up))
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
    /// How the workers of this process are getting on (absent for a projection that is not
    /// running here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub shards: Vec<ShardStatus>,
}

/// Replay progress of a running projection: what a rebuild shows while it catches up.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    /// Every shard has reached the head of the log at least once.
    pub caught_up: bool,
    /// Events applied by this process's workers since they started.
    pub events_replayed: u64,
    /// `events_replayed` over the time since the workers started.
    pub events_per_second: f64,
    /// Share of the log's bytes behind the checkpoints (embedded log only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_done: Option<f64>,
    /// Seconds left at the rate the log's bytes have been going by (embedded log only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
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

/// The projections running in this process, with their workers' live facts.
pub(crate) type Running = Vec<(Arc<dyn Projection>, Arc<Live>)>;

/// Computes status; cheap to clone, one per process.
#[derive(Clone)]
pub struct StatusSource {
    pub(crate) tables: Arc<dyn Table>,
    pub(crate) projections: Arc<RwLock<Running>>,
    /// Every shard of the log (refreshed after a reshard).
    pub(crate) shards: Arc<RwLock<Vec<ShardId>>>,
    pub(crate) embedded: Option<Arc<EmbeddedLog>>,
}

impl StatusSource {
    /// The status of projections run by other processes: their stored checkpoints, with no
    /// live facts (a query process beside separate projector processes).
    pub fn detached(
        tables: Arc<dyn Table>,
        projections: Vec<Arc<dyn Projection>>,
        shards: Vec<ShardId>,
    ) -> StatusSource {
        let running = projections
            .into_iter()
            .map(|projection| (projection, Arc::new(Live::default())))
            .collect();
        StatusSource {
            tables,
            projections: Arc::new(RwLock::new(running)),
            shards: Arc::new(RwLock::new(shards)),
            embedded: None,
        }
    }

    pub(crate) fn insert(&self, projection: Arc<dyn Projection>, live: Arc<Live>) {
        self.projections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((projection, live));
    }

    pub(crate) fn remove(&self, name: &str, version: u32) {
        self.projections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(p, _)| !(p.name() == name && p.version() == version));
    }

    pub async fn status(&self) -> Result<ProjectionsStatus> {
        let running = self
            .projections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let known = self
            .shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut projections = Vec::new();
        for (projection, live) in &running {
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
            for shard in &known {
                let checkpoint = by_shard.remove(shard).unwrap_or_else(|| Checkpoint {
                    shard: shard.clone(),
                    ..Checkpoint::default()
                });
                shards.push(self.shard_status(checkpoint, live.get(shard)));
            }
            let progress = self.progress(live, &known, &shards);
            // Shards this process has not listed (a reshard seen only by other processes)
            // still count: their checkpoints are stored.
            let mut unlisted: Vec<Checkpoint> = by_shard.into_values().collect();
            unlisted.sort_by(|a, b| a.shard.cmp(&b.shard));
            for checkpoint in unlisted {
                let shard = checkpoint.shard.clone();
                shards.push(self.shard_status(checkpoint, live.get(&shard)));
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
                progress: Some(progress),
                shards,
            });
        }
        Ok(ProjectionsStatus { projections })
    }

    fn progress(&self, live: &Live, known: &[ShardId], shards: &[ShardStatus]) -> Progress {
        let elapsed = live.started.elapsed().as_secs_f64().max(1e-3);
        let facts: Vec<LiveShard> = known.iter().map(|shard| live.get(shard)).collect();
        let replayed: u64 = facts.iter().map(|f| f.applied_since_start).sum();
        let mut progress = Progress {
            caught_up: live.caught_up(known),
            events_replayed: replayed,
            events_per_second: replayed as f64 / elapsed,
            fraction_done: None,
            eta_seconds: None,
        };
        let Some(log) = &self.embedded else {
            return progress;
        };
        // Bytes of the log behind and ahead of the checkpoints, and gone by since the start.
        let (mut done, mut left, mut moved) = (0u64, 0u64, 0u64);
        for (status, fact) in shards.iter().zip(&facts) {
            let Ok(head) = log.head(&status.checkpoint.shard) else {
                return progress;
            };
            let lag = status.lag_bytes.unwrap_or(0);
            let at = head.end_offset.saturating_sub(lag);
            done += at;
            left += lag;
            moved += at.saturating_sub(fact.start_offset.unwrap_or(at));
        }
        if done + left > 0 {
            progress.fraction_done = Some(done as f64 / (done + left) as f64);
        }
        if left == 0 {
            progress.eta_seconds = Some(0.0);
        } else if moved > 0 {
            progress.eta_seconds = Some(left as f64 / (moved as f64 / elapsed));
        }
        progress
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
