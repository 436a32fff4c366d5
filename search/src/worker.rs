//! The search worker: one tokio task that owns the [`Indexer`], reads every shard after the
//! committed positions, indexes in batches, and commits at least every `commit_interval_ms`
//! (or every `commit_docs` changes, or as soon as it has caught up, at most one commit per
//! `IDLE_COMMIT_GAP`), so a new event is searchable within about a second under load and within
//! moments when idle. tantivy work (indexing, entity look-ups, commits) runs on the blocking
//! pool; the indexer is moved there and back, so it has one owner at a time.
//!
//! Any failure rolls back to the last commit and retries from its positions after a backoff;
//! shutdown is looked at between steps and commits what is pending before returning.

use crate::history::{History, SEED_SEGMENTS};
use crate::index::{IndexStatus, SearchIndex};
use crate::indexer::Indexer;
use crate::{Error, Result};
use futures::future::{FutureExt, select_all};
use serde::Deserialize;
use shoal_storage::{EventLog, ShardInfo};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The least time between two commits made because the worker caught up: a trickle of single
/// events must not become a commit (and a segment) each.
const IDLE_COMMIT_GAP: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The `[search]` section of the server's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Build and serve the index (`GET /v1/search` answers 404 without it).
    pub enabled: bool,
    /// Longest time (ms) a change waits for its commit while events keep coming.
    pub commit_interval_ms: u64,
    /// Changes after which a commit is made whatever the time.
    pub commit_docs: usize,
    /// Events read from a shard at a time.
    pub batch_events: usize,
    /// tantivy's indexing memory, shared by the writer threads (each needs at least 15 MiB).
    pub writer_memory_mib: usize,
    pub writer_threads: usize,
    /// Longest wait (ms) of an idle worker between looks at the log (appends wake it sooner).
    pub idle_wait_ms: u64,
    /// Threads one search runs the index's segments on (0: one per core).
    pub query_threads: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            enabled: true,
            commit_interval_ms: 1000,
            commit_docs: 100_000,
            batch_events: 10_000,
            writer_memory_mib: 64,
            writer_threads: 1,
            idle_wait_ms: 1000,
            query_threads: 0,
        }
    }
}

impl SearchConfig {
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, param: &'static str, message: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::invalid(param, message))
            }
        };
        check(
            self.commit_interval_ms > 0,
            "commit_interval_ms",
            "must be > 0",
        )?;
        check(self.commit_docs > 0, "commit_docs", "must be > 0")?;
        check(self.batch_events > 0, "batch_events", "must be > 0")?;
        check(self.idle_wait_ms > 0, "idle_wait_ms", "must be > 0")?;
        check(
            self.query_threads <= 64,
            "query_threads",
            "must be at most 64 (0: one per core)",
        )?;
        check(
            (1..=16).contains(&self.writer_threads),
            "writer_threads",
            "must be between 1 and 16",
        )?;
        check(
            self.writer_memory_mib >= 15 * self.writer_threads && self.writer_memory_mib <= 4096,
            "writer_memory_mib",
            "must be at least 15 per writer thread and at most 4096",
        )
    }

    fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }
}

/// The running worker.
pub struct SearchWorker {
    index: Arc<SearchIndex>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl SearchWorker {
    /// Takes the index's writer and starts indexing `log` from the committed positions.
    pub fn spawn(
        index: Arc<SearchIndex>,
        log: Arc<dyn EventLog>,
        config: SearchConfig,
    ) -> Result<SearchWorker> {
        SearchWorker::spawn_with_history(index, log, config, None)
    }

    /// [`SearchWorker::spawn`] for a log that forgets: a new index is first seeded from
    /// `history`, and so is a tenant's rebuild (`history.rs`).
    pub fn spawn_with_history(
        index: Arc<SearchIndex>,
        log: Arc<dyn EventLog>,
        config: SearchConfig,
        history: Option<Arc<dyn History>>,
    ) -> Result<SearchWorker> {
        config.validate()?;
        let indexer = Indexer::new(
            Arc::clone(&index),
            config.writer_threads,
            config.writer_memory_mib * 1024 * 1024,
        )?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            indexer,
            Arc::clone(&index),
            log,
            history,
            config,
            stopped,
        ));
        Ok(SearchWorker { index, stop, task })
    }

    pub fn status(&self) -> IndexStatus {
        self.index.status()
    }

    /// Stops after the current step, commits what is pending and waits for merges.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|error| Error::Task(error.to_string()))?
    }
}

/// Runs `work` on the blocking pool with the indexer, and hands the indexer back.
async fn blocking<T: Send + 'static>(
    mut indexer: Indexer,
    work: impl FnOnce(&mut Indexer) -> Result<T> + Send + 'static,
) -> Result<(Indexer, Result<T>)> {
    tokio::task::spawn_blocking(move || {
        let outcome = work(&mut indexer);
        (indexer, outcome)
    })
    .await
    .map_err(|error| Error::Task(error.to_string()))
}

async fn run(
    mut indexer: Indexer,
    index: Arc<SearchIndex>,
    log: Arc<dyn EventLog>,
    history: Option<Arc<dyn History>>,
    config: SearchConfig,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let mut backoff = Duration::from_millis(100);
    if let Some(history) = &history {
        indexer = seed(indexer, history.as_ref(), &mut stopped).await?;
    }
    while !stop_requested(&stopped) {
        let (back, outcome) =
            step(indexer, &index, log.as_ref(), history.as_deref(), &config).await?;
        indexer = back;
        let wait = match outcome {
            Ok(Step::Busy) => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(Step::Idle { shards, wait }) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    _ = stopped.changed() => {}
                    _ = index.wake.notified() => {}
                    _ = wait_any(log.as_ref(), &indexer, &shards, wait) => {}
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "search indexing failed; rolling back to the last commit");
                let (back, rolled) = blocking(indexer, Indexer::rollback).await?;
                indexer = back;
                rolled?;
                backoff
            }
        };
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = stopped.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let (_, finished) = blocking_finish(indexer).await?;
    finished
}

/// Seeds a new index from the archive, segment by segment with a commit each, retrying
/// failures; returns once the seed is done (or was not needed) or a stop is asked for.
async fn seed(
    mut indexer: Indexer,
    history: &dyn History,
    stopped: &mut watch::Receiver<bool>,
) -> Result<Indexer> {
    let mut backoff = Duration::from_millis(100);
    while !stop_requested(stopped) {
        if indexer.is_fresh() {
            match history.covered().await {
                Ok(covered) if covered.is_empty() => return Ok(indexer),
                Ok(covered) => {
                    tracing::info!(
                        shards = covered.len(),
                        "seeding the new search index from the archive"
                    );
                    indexer.begin_seed(covered, SEED_SEGMENTS);
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "reading the archive's checkpoints failed");
                    pause(stopped, &mut backoff).await;
                    continue;
                }
            }
        }
        let Some(next) = indexer.seeding() else {
            return Ok(indexer);
        };
        let (segment, total, upto) = (next.done, next.segments, next.positions());
        let outcome = match history.segment(segment, total, &upto).await {
            Ok(events) => {
                let (back, applied) = blocking(indexer, move |ix| {
                    ix.apply_seed_segment(&events)?;
                    ix.commit()
                })
                .await?;
                indexer = back;
                applied
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                tracing::info!(segment, total, "search seed segment indexed");
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "seeding the search index failed; rolling back to the last commit");
                let (back, rolled) = blocking(indexer, Indexer::rollback).await?;
                indexer = back;
                rolled?;
                pause(stopped, &mut backoff).await;
            }
        }
    }
    Ok(indexer)
}

async fn pause(stopped: &mut watch::Receiver<bool>, backoff: &mut Duration) {
    tokio::select! {
        _ = stopped.changed() => {}
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// A stop was asked for, or the handle is gone (nobody could ask any more).
fn stop_requested(stopped: &watch::Receiver<bool>) -> bool {
    *stopped.borrow() || stopped.has_changed().is_err()
}

async fn blocking_finish(indexer: Indexer) -> Result<((), Result<()>)> {
    tokio::task::spawn_blocking(move || ((), indexer.finish()))
        .await
        .map_err(|error| Error::Task(error.to_string()))
}

enum Step {
    /// Read something; look again at once.
    Busy,
    /// Caught up on every shard: wait for appends, at most `wait`.
    Idle {
        shards: Vec<ShardInfo>,
        wait: Duration,
    },
}

/// One pass over the shards. The outer error is only a lost indexer (a panicked task).
async fn step(
    mut indexer: Indexer,
    index: &SearchIndex,
    log: &dyn EventLog,
    history: Option<&dyn History>,
    config: &SearchConfig,
) -> Result<(Indexer, Result<Step>)> {
    let shards = match log.shards().await {
        Ok(shards) => shards,
        Err(error) => return Ok((indexer, Err(error.into()))),
    };
    indexer.reconcile(&index.wanted_fields());
    let mut read_any = false;
    if let Some(history) = history {
        // A rebuild on a log that forgets takes the tenant's history from the archive first,
        // one segment per step so that live indexing goes on beside it.
        if indexer.rebuild_needs_seed_plan() {
            match history.covered().await {
                Ok(covered) => indexer.plan_rebuild_seed(covered, SEED_SEGMENTS),
                Err(error) => return Ok((indexer, Err(error))),
            }
        }
        if let Some((segment, total, upto)) = indexer.rebuild_seed_next() {
            let events = match history.segment(segment, total, &upto).await {
                Ok(events) => events,
                Err(error) => return Ok((indexer, Err(error))),
            };
            read_any = true;
            let (back, applied) =
                blocking(indexer, move |ix| ix.apply_rebuild_seed_segment(&events)).await?;
            indexer = back;
            if let Err(error) = applied {
                return Ok((indexer, Err(error)));
            }
        }
    }
    for shard in &shards {
        let batch = match log
            .read(&shard.id, indexer.position(&shard.id), config.batch_events)
            .await
        {
            Ok(batch) => batch,
            Err(error) => return Ok((indexer, Err(error.into()))),
        };
        if batch.records.is_empty() {
            continue;
        }
        read_any = true;
        let shard_id = shard.id.clone();
        let (back, applied) =
            blocking(indexer, move |ix| ix.apply(&shard_id, &batch.records)).await?;
        indexer = back;
        if let Err(error) = applied {
            return Ok((indexer, Err(error)));
        }
        if indexer.pending() >= config.commit_docs {
            let (back, committed) = blocking(indexer, Indexer::commit).await?;
            indexer = back;
            if let Err(error) = committed {
                return Ok((indexer, Err(error)));
            }
        }
    }
    // A rebuild reads as much per step as the live cursor does, so live freshness holds while
    // it catches up.
    for shard in &shards {
        let Some(from) = indexer.rebuild_behind(&shard.id) else {
            continue;
        };
        let batch = match log
            .read(&shard.id, from.as_ref(), config.batch_events)
            .await
        {
            Ok(batch) => batch,
            Err(error) => return Ok((indexer, Err(error.into()))),
        };
        read_any |= !batch.records.is_empty();
        let shard_id = shard.id.clone();
        let (back, applied) = blocking(indexer, move |ix| {
            ix.apply_rebuild(&shard_id, &batch.records)
        })
        .await?;
        indexer = back;
        if let Err(error) = applied {
            return Ok((indexer, Err(error)));
        }
    }
    let ids: Vec<_> = shards.iter().map(|shard| shard.id.clone()).collect();
    if indexer.flip_if_caught_up(&ids) {
        let (back, committed) = blocking(indexer, Indexer::commit).await?;
        indexer = back;
        if let Err(error) = committed {
            return Ok((indexer, Err(error)));
        }
    }
    let annotations = index.take_annotations();
    if !annotations.is_empty() {
        let (back, annotated) = blocking(indexer, move |ix| ix.annotate(annotations)).await?;
        indexer = back;
        if let Err(error) = annotated {
            return Ok((indexer, Err(error)));
        }
    }
    let due = indexer
        .pending_age()
        .is_some_and(|age| age >= config.commit_interval());
    let idle_due = !read_any && indexer.pending() > 0 && indexer.since_commit() >= IDLE_COMMIT_GAP;
    if due || idle_due {
        let (back, committed) = blocking(indexer, Indexer::commit).await?;
        indexer = back;
        if let Err(error) = committed {
            return Ok((indexer, Err(error)));
        }
    }
    if read_any {
        return Ok((indexer, Ok(Step::Busy)));
    }
    let wait = if indexer.pending() > 0 {
        IDLE_COMMIT_GAP.saturating_sub(indexer.since_commit())
    } else {
        Duration::from_millis(config.idle_wait_ms)
    };
    Ok((indexer, Ok(Step::Idle { shards, wait })))
}

/// Waits until any shard may have events after the indexer's position, or `timeout`.
async fn wait_any(log: &dyn EventLog, indexer: &Indexer, shards: &[ShardInfo], timeout: Duration) {
    if shards.is_empty() || timeout.is_zero() {
        tokio::time::sleep(timeout).await;
        return;
    }
    let waits = shards.iter().map(|shard| {
        log.wait_for(&shard.id, indexer.position(&shard.id), timeout)
            .boxed()
    });
    let _ = select_all(waits).await;
}
