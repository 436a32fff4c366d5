//! The projector: one worker task per (projection, shard), started together and stopped
//! together.
//!
//! Each projection has its own checkpoints, so a slow projection (the archive writes one item per
//! event) never holds back a fast one's freshness, and a projection can be rebuilt alone under a
//! new version. Dead letters can be re-driven here too ([`redrive`]).

use crate::deadletter::{self, DeadLetter};
use crate::status::{Live, StatusSource};
use crate::worker::{Worker, fold_records};
use crate::{Error, Projection, ProjectorConfig, Result, flush};
use shoal_schemas::{Position, ShardId};
use shoal_storage::embedded::EmbeddedLog;
use shoal_storage::{EventLog, Table, TableName, TransactOp};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The projector, before it runs.
pub struct Projector {
    log: Arc<dyn EventLog>,
    tables: Arc<dyn Table>,
    projections: Vec<Arc<dyn Projection>>,
    config: ProjectorConfig,
    embedded: Option<Arc<EmbeddedLog>>,
}

impl Projector {
    pub fn new(
        log: Arc<dyn EventLog>,
        tables: Arc<dyn Table>,
        projections: Vec<Arc<dyn Projection>>,
        config: ProjectorConfig,
    ) -> Result<Projector> {
        config.validate()?;
        let mut names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Error::InvalidArgument(
                "projection names must be unique".into(),
            ));
        }
        Ok(Projector {
            log,
            tables,
            projections,
            config,
            embedded: None,
        })
    }

    /// The embedded log behind `log`, for exact lag in bytes and records in the status.
    pub fn with_embedded_heads(mut self, log: Arc<EmbeddedLog>) -> Projector {
        self.embedded = Some(log);
        self
    }

    /// Starts every worker and returns at once.
    pub async fn spawn(self) -> Result<ProjectorHandle> {
        let shards: Vec<ShardId> = self
            .log
            .shards()
            .await?
            .into_iter()
            .map(|info| info.id)
            .collect();
        let handle = ProjectorHandle {
            inner: Arc::new(Running {
                status: StatusSource {
                    tables: Arc::clone(&self.tables),
                    projections: Arc::default(),
                    shards: shards.clone(),
                    embedded: self.embedded,
                },
                log: self.log,
                tables: self.tables,
                config: self.config,
                shards,
                groups: Mutex::default(),
            }),
        };
        for projection in &self.projections {
            handle.add(Arc::clone(projection))?;
        }
        tracing::info!(
            projections = self.projections.len(),
            shards = handle.inner.shards.len(),
            "projector started"
        );
        Ok(handle)
    }

    /// Runs until `shutdown` resolves, then stops every worker after its current flush.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let handle = self.spawn().await?;
        shutdown.await;
        handle.shutdown().await;
        Ok(())
    }
}

/// The workers of one projection (one per shard).
struct Group {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    live: Arc<Live>,
}

struct Running {
    log: Arc<dyn EventLog>,
    tables: Arc<dyn Table>,
    config: ProjectorConfig,
    shards: Vec<ShardId>,
    groups: Mutex<HashMap<(String, u32), Group>>,
    status: StatusSource,
}

/// A running projector. Projections can be added and removed while it runs (a rules version's
/// rebuild starts beside the live version and the live version stops when it is replaced).
/// Cheap to clone.
#[derive(Clone)]
pub struct ProjectorHandle {
    inner: Arc<Running>,
}

impl ProjectorHandle {
    /// What `GET /v1/projections` serves; clone it into the query state.
    pub fn status_source(&self) -> StatusSource {
        self.inner.status.clone()
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Group>> {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts one worker per shard for `projection`, from its checkpoints.
    pub fn add(&self, projection: Arc<dyn Projection>) -> Result<()> {
        self.add_with(projection, self.inner.config.clone())
    }

    /// The configuration projections get from [`ProjectorHandle::add`].
    pub fn config(&self) -> &ProjectorConfig {
        &self.inner.config
    }

    /// [`ProjectorHandle::add`] with a configuration of its own (a rebuild folds larger
    /// batches than live tailing needs).
    pub fn add_with(&self, projection: Arc<dyn Projection>, config: ProjectorConfig) -> Result<()> {
        config.validate()?;
        let id = (projection.name().to_owned(), projection.version());
        let mut groups = self.groups();
        if groups.contains_key(&id) {
            return Err(Error::Conflict(format!(
                "projection {} version {} is already running",
                id.0, id.1
            )));
        }
        let (stop, stopped) = watch::channel(false);
        let live = Arc::new(Live::default());
        let tasks = self
            .inner
            .shards
            .iter()
            .map(|shard| {
                let worker = Worker {
                    log: Arc::clone(&self.inner.log),
                    tables: Arc::clone(&self.inner.tables),
                    projection: Arc::clone(&projection),
                    config: config.clone(),
                    shard: shard.clone(),
                    live: Arc::clone(&live),
                };
                tokio::spawn(worker.run(stopped.clone()))
            })
            .collect();
        self.inner
            .status
            .insert(Arc::clone(&projection), Arc::clone(&live));
        groups.insert(id, Group { stop, tasks, live });
        Ok(())
    }

    /// Stops `name` version `version` (each worker after its current flush); false when it was
    /// not running.
    pub async fn remove(&self, name: &str, version: u32) -> bool {
        let group = self.groups().remove(&(name.to_owned(), version));
        let Some(group) = group else {
            return false;
        };
        self.inner.status.remove(name, version);
        stop_group(group).await;
        true
    }

    /// Whether every shard's worker of `name` version `version` has reached the head of its
    /// shard at least once since it started (it now follows the log's head).
    pub fn caught_up(&self, name: &str, version: u32) -> bool {
        self.groups()
            .get(&(name.to_owned(), version))
            .is_some_and(|group| group.live.caught_up(&self.inner.shards))
    }

    /// Whether `name` version `version` is running here.
    pub fn is_running(&self, name: &str, version: u32) -> bool {
        self.groups().contains_key(&(name.to_owned(), version))
    }

    /// Stops every worker: each finishes (flushes and checkpoints) the batch in hand, then ends.
    pub async fn shutdown(&self) {
        let groups: Vec<Group> = self.groups().drain().map(|(_, group)| group).collect();
        for group in groups {
            stop_group(group).await;
        }
        tracing::info!("projector stopped");
    }
}

async fn stop_group(group: Group) {
    // Receivers outlive the send only inside running workers; an error means all stopped.
    let _ = group.stop.send(true);
    for task in group.tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "a projector worker panicked");
        }
    }
}

/// Re-drives one dead letter: reads its event from the log again, applies it through the
/// projection (as a late event: items that already hold later events still take it, and keep
/// their position), and removes the dead letter in the same transaction. Returns the dead letter
/// on success; fails with `PoisonError`'s text if the event still cannot be applied (the dead
/// letter stays, its `attempts` incremented).
pub async fn redrive(
    log: &dyn EventLog,
    tables: &dyn Table,
    projection: &dyn Projection,
    shard: &ShardId,
    position: &Position,
) -> Result<DeadLetter> {
    let name = projection.name();
    let version = projection.version();
    let Some(letter) = deadletter::get(tables, name, version, shard, position).await? else {
        return Err(Error::NotFound(format!(
            "dead letter {shard}/{position} of {name}"
        )));
    };
    let batch = log.read(shard, letter.after.as_ref(), 1).await?;
    let Some(record) = batch
        .records
        .iter()
        .find(|record| record.positioned().any(|(at, _)| at == *position))
    else {
        return Err(Error::NotFound(format!(
            "event at {shard}/{position} in the log"
        )));
    };
    let only: Vec<_> = record
        .positioned()
        .filter(|(at, _)| at == position)
        .map(|(_, event)| event.clone())
        .collect();
    let single = shoal_storage::LogRecord {
        sequence: position.sequence.clone(),
        first_index: position.index,
        events: only,
    };
    let folded = fold_records(
        projection,
        tables,
        shard,
        letter.after.as_ref(),
        std::slice::from_ref(&single),
        1,
        true,
    )
    .await?;
    let mut flush = folded.flush;
    if folded.applied == 0 {
        // Still poison: keep the letter, count the attempt.
        let failed = DeadLetter {
            attempts: letter.attempts + 1,
            ..letter
        };
        tables.transact(vec![failed.put_op()]).await?;
        return Err(Error::InvalidArgument(format!(
            "event at {shard}/{position} still fails in {name}"
        )));
    }
    // The fold re-staged nothing for the letter (it applied); delete it with the effects.
    flush.units.retain(|unit| {
        !unit.iter().any(|op| {
            matches!(op, TransactOp::Put { table: TableName::Control, key, .. } if *key == letter.key())
        })
    });
    flush.tail.push(TransactOp::Delete {
        table: TableName::Control,
        key: letter.key(),
        condition: None,
    });
    flush::commit(tables, flush).await?;
    Ok(letter)
}
