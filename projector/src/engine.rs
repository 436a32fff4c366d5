//! The projector: one worker task per (projection, shard) this process owns.
//!
//! Each projection has its own checkpoints, so a slow projection (on AWS the archive writes one
//! item per event) never holds back a fast one's freshness, and a projection can be rebuilt alone under a
//! new version. Dead letters can be re-driven here too ([`redrive`]).
//!
//! Which shards a process works is its [`Ownership`]: every shard (the embedded default, one
//! process), or the shards whose lease it holds ([`crate::lease`], several projector processes
//! on one Kinesis stream). Ownership only spreads the work: correctness never depends on it,
//! since every item write is conditional on its last applied position (`flush.rs`), so two
//! workers on one shard for a moment (a lease stolen mid-batch) cost a retry, not a double count.

use crate::background::{Background, Priority};
use crate::deadletter::{self, DeadLetter};
use crate::lease::{self, LeaseConfig};
use crate::status::{Live, StatusSource};
use crate::worker::{Worker, fold_records};
use crate::{Error, Projection, ProjectorConfig, Result, flush};
use shoal_schemas::{Position, ShardId};
use shoal_storage::embedded::EmbeddedLog;
use shoal_storage::{EventLog, ShardInfo, Table, TableName, TransactOp};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which shards this process works.
#[derive(Clone, Debug, Default)]
pub enum Ownership {
    /// Every shard of the log (one projector process).
    #[default]
    All,
    /// The shards whose lease this process holds in the `control` table.
    Leases(LeaseConfig),
}

/// The projector, before it runs.
pub struct Projector {
    log: Arc<dyn EventLog>,
    tables: Arc<dyn Table>,
    projections: Vec<Arc<dyn Projection>>,
    config: ProjectorConfig,
    embedded: Option<Arc<EmbeddedLog>>,
    ownership: Ownership,
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
            ownership: Ownership::All,
        })
    }

    /// The embedded log behind `log`, for exact lag in bytes and records in the status.
    pub fn with_embedded_heads(mut self, log: Arc<EmbeddedLog>) -> Projector {
        self.embedded = Some(log);
        self
    }

    /// Which shards to work (every shard by default).
    pub fn with_ownership(mut self, ownership: Ownership) -> Result<Projector> {
        if let Ownership::Leases(config) = &ownership {
            config.validate()?;
        }
        self.ownership = ownership;
        Ok(self)
    }

    /// Starts every worker (or, with leases, the lease coordinator, which starts the workers of
    /// each shard it takes) and returns at once.
    pub async fn spawn(self) -> Result<ProjectorHandle> {
        let shards = self.log.shards().await?;
        let handle = ProjectorHandle {
            inner: Arc::new(Running {
                status: StatusSource {
                    tables: Arc::clone(&self.tables),
                    projections: Arc::default(),
                    shards: Arc::new(RwLock::new(shards.iter().map(|s| s.id.clone()).collect())),
                    embedded: self.embedded,
                },
                log: self.log,
                tables: self.tables,
                config: self.config,
                state: Mutex::default(),
                coordinator: Mutex::default(),
                background: OnceLock::new(),
                live: OnceLock::new(),
            }),
        };
        for projection in &self.projections {
            handle.add(Arc::clone(projection))?;
        }
        match self.ownership {
            Ownership::All => {
                for shard in shards {
                    handle.own(shard);
                }
            }
            Ownership::Leases(config) => {
                let coordinator = lease::Coordinator::spawn(handle.clone(), config);
                *handle
                    .inner
                    .coordinator
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(coordinator);
            }
        }
        tracing::info!(
            projections = self.projections.len(),
            shards = handle.shard_ids().len(),
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

/// One worker task and the switch that stops it.
struct WorkerTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The workers of one projection (one per owned shard).
struct Group {
    projection: Arc<dyn Projection>,
    config: ProjectorConfig,
    workers: HashMap<ShardId, WorkerTask>,
    live: Arc<Live>,
}

/// What changes while the projector runs: the shards owned here and the projections running.
/// One lock for both, so a shard taken while a projection is added gets exactly one worker.
#[derive(Default)]
struct State {
    owned: BTreeMap<ShardId, ShardInfo>,
    groups: HashMap<(String, u32), Group>,
}

struct Running {
    log: Arc<dyn EventLog>,
    tables: Arc<dyn Table>,
    config: ProjectorConfig,
    state: Mutex<State>,
    status: StatusSource,
    coordinator: Mutex<Option<lease::Coordinator>>,
    /// Started with the first background worker; `None` inside when it could not start (the
    /// workers then run beside live work, at its priority).
    background: OnceLock<Option<Background>>,
    /// The live workers' runtime at `config.live_nice`, started with the first of them; `None`
    /// inside when `live_nice` is 0 or it could not start (they then run on the caller's).
    live: OnceLock<Option<Background>>,
}

/// A running projector. Projections can be added and removed while it runs (a rules version's
/// rebuild starts beside the live version and the live version stops when it is replaced), and
/// shards can be taken and given up (leases). Cheap to clone.
#[derive(Clone)]
pub struct ProjectorHandle {
    inner: Arc<Running>,
}

impl ProjectorHandle {
    /// What `GET /v1/projections` serves; clone it into the query state.
    pub fn status_source(&self) -> StatusSource {
        self.inner.status.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every shard of the log known here (owned or not).
    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.inner
            .status
            .shards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The shards this process works now.
    pub fn owned_shards(&self) -> Vec<ShardId> {
        self.state().owned.keys().cloned().collect()
    }

    pub(crate) fn log(&self) -> &Arc<dyn EventLog> {
        &self.inner.log
    }

    pub(crate) fn tables(&self) -> &Arc<dyn Table> {
        &self.inner.tables
    }

    /// Records the log's current shards (after a reshard) for status and catch-up checks.
    pub(crate) fn set_known_shards(&self, shards: &[ShardInfo]) {
        *self
            .inner
            .status
            .shards
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            shards.iter().map(|s| s.id.clone()).collect();
    }

    fn spawn_worker(
        &self,
        projection: &Arc<dyn Projection>,
        config: &ProjectorConfig,
        live: &Arc<Live>,
        shard: &ShardInfo,
    ) -> WorkerTask {
        let (stop, stopped) = watch::channel(false);
        let worker = Worker {
            log: Arc::clone(&self.inner.log),
            tables: Arc::clone(&self.inner.tables),
            projection: Arc::clone(projection),
            config: config.clone(),
            shard: shard.id.clone(),
            parents: shard.parents.clone(),
            live: Arc::clone(live),
        };
        let runtime = if config.background {
            self.background()
        } else {
            self.live()
        };
        let task = match runtime {
            Some(runtime) => runtime.spawn(worker.run(stopped)),
            None => tokio::spawn(worker.run(stopped)),
        };
        WorkerTask { stop, task }
    }

    /// The runtime of the live projections (`[projector] live_nice`), for other live
    /// read-model work to run at their priority: the server starts the search index's worker
    /// there. `None` when they run on the caller's runtime.
    pub fn live_runtime(&self) -> Option<tokio::runtime::Handle> {
        self.live().and_then(Background::handle)
    }

    /// The live runtime, or else the caller's: where read-model upkeep (series retention,
    /// purges of retired versions, search annotations) runs, at the live projections'
    /// priority. Call it from within a runtime.
    pub fn live_or_current(&self) -> tokio::runtime::Handle {
        self.live_runtime()
            .unwrap_or_else(tokio::runtime::Handle::current)
    }

    fn live(&self) -> Option<&Background> {
        let nice = self.inner.config.live_nice;
        self.inner
            .live
            .get_or_init(|| {
                if nice == 0 {
                    return None;
                }
                let threads = std::thread::available_parallelism().map_or(2, usize::from);
                match Background::new(Priority::Nice(nice), "shoal-live", threads) {
                    Ok(live) => Some(live),
                    Err(error) => {
                        tracing::warn!(%error, "live projections run at ingest's priority");
                        None
                    }
                }
            })
            .as_ref()
    }

    fn background(&self) -> Option<&Background> {
        self.inner
            .background
            .get_or_init(|| {
                match Background::new(
                    Priority::Idle,
                    "shoal-background",
                    crate::background::REBUILD_THREADS,
                ) {
                    Ok(background) => Some(background),
                    Err(error) => {
                        tracing::warn!(%error, "rebuilds run beside live work, at its priority");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Starts the workers of every running projection on `shard`; nothing when already owned.
    pub(crate) fn own(&self, shard: ShardInfo) {
        let mut state = self.state();
        if state.owned.contains_key(&shard.id) {
            return;
        }
        let State { owned, groups } = &mut *state;
        for group in groups.values_mut() {
            let task = self.spawn_worker(&group.projection, &group.config, &group.live, &shard);
            group.workers.insert(shard.id.clone(), task);
        }
        owned.insert(shard.id.clone(), shard);
    }

    /// Stops the workers of `shard` (each after flushing and checkpointing the batch in hand)
    /// and waits for them; false when the shard was not owned.
    pub(crate) async fn disown(&self, shard: &ShardId) -> bool {
        let tasks: Vec<WorkerTask> = {
            let mut state = self.state();
            if state.owned.remove(shard).is_none() {
                return false;
            }
            state
                .groups
                .values_mut()
                .filter_map(|group| group.workers.remove(shard))
                .collect()
        };
        stop_tasks(tasks).await;
        true
    }

    /// Starts one worker per owned shard for `projection`, from its checkpoints.
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
        let mut state = self.state();
        if state.groups.contains_key(&id) {
            return Err(Error::Conflict(format!(
                "projection {} version {} is already running",
                id.0, id.1
            )));
        }
        let live = Arc::new(Live::default());
        let workers = state
            .owned
            .values()
            .map(|shard| {
                let task = self.spawn_worker(&projection, &config, &live, shard);
                (shard.id.clone(), task)
            })
            .collect();
        self.inner
            .status
            .insert(Arc::clone(&projection), Arc::clone(&live));
        state.groups.insert(
            id,
            Group {
                projection,
                config,
                workers,
                live,
            },
        );
        Ok(())
    }

    /// Stops `name` version `version` (each worker after its current flush); false when it was
    /// not running.
    pub async fn remove(&self, name: &str, version: u32) -> bool {
        let group = self.state().groups.remove(&(name.to_owned(), version));
        let Some(group) = group else {
            return false;
        };
        self.inner.status.remove(name, version);
        stop_tasks(group.workers.into_values().collect()).await;
        true
    }

    /// Whether `name` version `version` runs here and has, on every shard of the log, reached
    /// the head at least once: here since this worker started, or as its stored checkpoint says
    /// (for shards worked by other processes under leases, or by an earlier run).
    pub async fn caught_up(&self, name: &str, version: u32) -> Result<bool> {
        let shards = self.shard_ids();
        let elsewhere: Vec<ShardId> = {
            let state = self.state();
            let Some(group) = state.groups.get(&(name.to_owned(), version)) else {
                return Ok(false);
            };
            shards
                .into_iter()
                .filter(|shard| !group.live.caught_up(std::slice::from_ref(shard)))
                .collect()
        };
        for shard in elsewhere {
            let stored =
                crate::checkpoint::load(self.inner.tables.as_ref(), name, version, &shard).await?;
            if !(stored.reached_head || stored.finished) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `name` version `version` is running here.
    pub fn is_running(&self, name: &str, version: u32) -> bool {
        self.state()
            .groups
            .contains_key(&(name.to_owned(), version))
    }

    /// Stops every worker: each finishes (flushes and checkpoints) the batch in hand, then ends.
    /// With leases, the coordinator then gives its leases back so other processes take the
    /// shards at once instead of after the lease expires.
    pub async fn shutdown(&self) {
        let coordinator = self
            .inner
            .coordinator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(coordinator) = coordinator {
            coordinator.shutdown().await;
        }
        let tasks: Vec<WorkerTask> = {
            let mut state = self.state();
            state.owned.clear();
            state
                .groups
                .drain()
                .flat_map(|(_, group)| group.workers.into_values())
                .collect()
        };
        stop_tasks(tasks).await;
        tracing::info!("projector stopped");
    }
}

async fn stop_tasks(tasks: Vec<WorkerTask>) {
    // Receivers outlive the send only inside running workers; an error means it stopped.
    for task in &tasks {
        let _ = task.stop.send(true);
    }
    for task in tasks {
        if let Err(error) = task.task.await {
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
