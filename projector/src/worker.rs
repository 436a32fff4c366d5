//! One worker: one projection on one shard. Read after the checkpoint, fold, flush with the new
//! checkpoint, repeat; when caught up, sleep in `EventLog::wait_for` until an append wakes it.
//!
//! Failure handling (see `flush.rs` for why a retry is safe):
//! - any error of a step (read, load, flush) drops the cache and retries the step from the
//!   stored checkpoint after an exponential backoff; transient errors are expected, others are
//!   logged as errors and recorded in the live status but retried the same way (a wedged shard
//!   is visible in `/v1/projections`, never silently skipped);
//! - an event whose fold returns `PoisonError` (after `poison_attempts` tries) becomes a dead
//!   letter in the same flush, and the shard moves on.
//!
//! Shutdown is only looked at between steps, so a worker always stops with its last batch
//! flushed and checkpointed.

use crate::checkpoint::{self, Checkpoint};
use crate::deadletter::DeadLetter;
use crate::flush::{self, Flush};
use crate::pacing::Pacing;
use crate::status::Live;
use crate::{Cache, Projection, ProjectorConfig, Result};
use shoal_schemas::{Position, ShardId, time::now_millis};
use shoal_storage::{EventLog, Key, LogRecord, ReadBatch, Table};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;
use tracing::Instrument;

/// Keys loaded per `batch_get` call.
const LOAD_CHUNK: usize = 1000;

/// A folded batch, ready to flush.
pub(crate) struct Folded {
    pub flush: Flush,
    pub applied: u64,
    pub dead_letters: u64,
    /// The last event's position, timestamp and received_at.
    pub last: Option<(Position, i64, i64)>,
}

/// Loads the items `records` touch and folds every event into them. With `redrive`, items are
/// applied to even when they already hold a later position (see `Cache`).
pub(crate) async fn fold_records(
    projection: &dyn Projection,
    tables: &dyn Table,
    shard: &ShardId,
    after: Option<&Position>,
    records: &[LogRecord],
    poison_attempts: u32,
    redrive: bool,
) -> Result<Folded> {
    let mut folding = Folding::new(projection, shard, after, poison_attempts, redrive);
    folding.add(tables, records).await?;
    folding.finish()
}

/// A batch being folded: one write-back cache fed by one read or more, flushed once. Folding
/// several reads before one flush is what makes a rebuild cheap: an item touched all over the
/// log (an entity's state, a series' day) is written once per flush, not once per read.
pub(crate) struct Folding<'a> {
    projection: &'a dyn Projection,
    shard: &'a ShardId,
    cache: Cache,
    poison_attempts: u32,
    applied: u64,
    dead: Vec<DeadLetter>,
    /// Where the batch starts: the `after` of a dead letter that is the batch's first event.
    after: Option<Position>,
    last: Option<(Position, i64, i64)>,
}

impl<'a> Folding<'a> {
    pub(crate) fn new(
        projection: &'a dyn Projection,
        shard: &'a ShardId,
        after: Option<&Position>,
        poison_attempts: u32,
        redrive: bool,
    ) -> Self {
        Folding {
            projection,
            shard,
            cache: Cache::with_capacity(shard.clone(), redrive, 0),
            poison_attempts,
            applied: 0,
            dead: Vec::new(),
            after: after.cloned(),
            last: None,
        }
    }

    /// Events folded or dead-lettered so far.
    pub(crate) fn events(&self) -> u64 {
        self.applied + self.dead.len() as u64
    }

    /// Items held in the cache: what bounds the memory of a folded-ahead batch.
    pub(crate) fn items(&self) -> usize {
        self.cache.len()
    }

    /// The position of the last event folded.
    pub(crate) fn last_position(&self) -> Option<&Position> {
        self.last.as_ref().map(|(position, _, _)| position)
    }

    /// Loads the items `records` touch that the cache does not hold yet (a held item may be
    /// ahead of its stored copy), then folds every event into them, in log order. Returns how
    /// many items the cache gained.
    pub(crate) async fn add(&mut self, tables: &dyn Table, records: &[LogRecord]) -> Result<usize> {
        let before = self.cache.len();
        let projection = self.projection;
        let mut keys = Vec::new();
        for record in records {
            for event in &record.events {
                projection.keys(event, &mut keys);
            }
        }
        let missing: Vec<Key> = keys
            .into_iter()
            .filter(|key| !self.cache.contains(key))
            .collect::<foldhash::HashSet<_>>()
            .into_iter()
            .collect();
        self.cache.reserve(missing.len());
        for chunk in missing.chunks(LOAD_CHUNK) {
            let items = tables.batch_get(projection.table(), chunk).await?;
            for (key, item) in chunk.iter().zip(items) {
                let state = projection.decode(key, item.as_ref())?;
                let stored_pos = item
                    .as_ref()
                    .and_then(|item| item.get(crate::projection::POS_ATTRIBUTE))
                    .and_then(|value| value.as_str())
                    .map(str::to_owned);
                self.cache.insert(key.clone(), state, stored_pos);
            }
        }
        for record in records {
            for (position, event) in record.positioned() {
                self.cache.begin_event(&position);
                let mut outcome = projection.fold(event, &position, &mut self.cache);
                let mut attempts = 1;
                while outcome.is_err() && attempts < self.poison_attempts {
                    attempts += 1;
                    outcome = projection.fold(event, &position, &mut self.cache);
                }
                match outcome {
                    Ok(()) => self.applied += 1,
                    Err(poison) => {
                        tracing::warn!(projection = projection.name(), shard = %self.shard, %position, error = %poison, "dead-lettering an event");
                        self.dead.push(DeadLetter {
                            projection: projection.name().to_owned(),
                            version: projection.version(),
                            shard: self.shard.clone(),
                            position: position.clone(),
                            after: self
                                .last
                                .as_ref()
                                .map(|(previous, _, _)| previous)
                                .or(self.after.as_ref())
                                .cloned(),
                            event_id: event.id.to_string(),
                            tenant: event.tenant.clone(),
                            error: poison.to_string(),
                            attempts,
                            time: now_millis(),
                        });
                    }
                }
                self.last = Some((position, event.timestamp, event.received_at));
            }
        }
        Ok(self.cache.len() - before)
    }

    /// Completes derived state and builds the flush, dead letters included.
    pub(crate) fn finish(mut self) -> Result<Folded> {
        self.projection.finish(&mut self.cache)?;
        let mut flush = flush::build(self.projection, self.cache)?;
        let dead_letters = self.dead.len() as u64;
        flush
            .units
            .extend(self.dead.iter().map(|letter| vec![letter.put_op()]));
        Ok(Folded {
            flush,
            applied: self.applied,
            dead_letters,
            last: self.last,
        })
    }
}

/// Applies every projection to every shard until each is caught up, without retries: the first
/// error is returned once every other worker has stopped after its current step, so nothing of
/// this call is still in flight when it returns (a retry starts from settled checkpoints). For
/// tests, benchmarks and offline rebuilds; returns the number of events applied.
///
/// Every (projection, shard) pair runs as its own task, as the live workers do: the shards are
/// independent (each has its own checkpoint, and one shard feeds each item), so one task folds
/// while another waits for the log or for its flush to commit, and a multi-threaded runtime
/// folds on every core.
pub async fn catch_up(
    log: Arc<dyn EventLog>,
    tables: Arc<dyn Table>,
    projections: &[Arc<dyn crate::Projection>],
    config: &ProjectorConfig,
) -> Result<u64> {
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for shard in log.shards().await? {
        for projection in projections {
            let worker = Worker {
                log: Arc::clone(&log),
                tables: Arc::clone(&tables),
                projection: Arc::clone(projection),
                config: config.clone(),
                shard: shard.id.clone(),
                parents: shard.parents.clone(),
                live: Arc::new(Live::default()),
            };
            let failed = Arc::clone(&failed);
            tasks.spawn(async move {
                let outcome = worker.catch_up(&failed).await;
                if outcome.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                outcome
            });
        }
    }
    let mut applied = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(worker_applied)) => applied += worker_applied,
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            // Nothing aborts these tasks, so a join error is a panic: let it propagate.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(applied),
    }
}

/// What one step did.
enum Step {
    /// A read applied (or dead-lettered) this many events; 0 for a loaded checkpoint.
    Applied(u64),
    CaughtUp,
    /// The shard is closed and fully applied: nothing will ever come.
    Finished,
}

pub(crate) struct Worker {
    pub log: Arc<dyn EventLog>,
    pub tables: Arc<dyn Table>,
    pub projection: Arc<dyn Projection>,
    pub config: ProjectorConfig,
    pub shard: ShardId,
    /// The shards this one was split or merged from: it starts only once each is finished for
    /// this projection, so an entity's events are applied in order across a reshard.
    pub parents: Vec<ShardId>,
    pub live: Arc<Live>,
}

impl Worker {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.projection.name().to_owned();
        let mut checkpoint: Option<Checkpoint> = None;
        let mut failures = 0u32;
        let mut pacing = Pacing::new(self.config.idle_wait);
        while !*shutdown.borrow() {
            let read_at = std::time::Instant::now();
            let outcome = match &mut checkpoint {
                None => match self.parents_finished().await {
                    Ok(false) => {
                        self.pause(&mut shutdown, self.config.idle_wait).await;
                        continue;
                    }
                    Ok(true) => self.start_point().await.map(|loaded| {
                        let offset = loaded.position.as_ref().and_then(|p| p.sequence.to_u64());
                        self.live.record_start(&self.shard, offset);
                        checkpoint = Some(loaded);
                        Step::Applied(0)
                    }),
                    Err(error) => Err(error),
                },
                Some(current) => {
                    let span = tracing::debug_span!("projector_batch", projection = %name, shard = %self.shard);
                    self.step(current).instrument(span).await
                }
            };
            match outcome {
                Ok(Step::Applied(events)) => {
                    // Loading the checkpoint after a failure applies nothing: only progress
                    // ends the backoff, or a shard failing on the same batch for ever would
                    // retry every `backoff_initial` (20 times a second by default).
                    if events > 0 {
                        failures = 0;
                    }
                    pacing.read(events, std::time::Instant::now());
                }
                Ok(Step::Finished) => {
                    self.live.record_caught_up(&self.shard);
                    tracing::info!(projection = %name, shard = %self.shard, "shard finished");
                    // Nothing more will come; stay until stopped so the owner's view of its
                    // workers stays simple.
                    while !*shutdown.borrow() {
                        if shutdown.changed().await.is_err() {
                            break;
                        }
                    }
                }
                Ok(Step::CaughtUp) => {
                    failures = 0;
                    self.live.record_caught_up(&self.shard);
                    let after = checkpoint.as_ref().and_then(|c| c.position.clone());
                    tokio::select! {
                        waited = self.log.wait_for(&self.shard, after.as_ref(), self.config.idle_wait) => {
                            if let Err(error) = waited {
                                tracing::warn!(projection = %name, shard = %self.shard, %error, "waiting for the log failed");
                                self.pause(&mut shutdown, self.config.backoff(0)).await;
                            }
                        }
                        _ = shutdown.changed() => {}
                    }
                    // Let the appends of the rest of the interval join this flush; not when the
                    // wake-up was the stop (already seen, so `pause` would not end early).
                    let rest = self.config.flush_interval.saturating_sub(read_at.elapsed());
                    if !rest.is_zero()
                        && !*shutdown.borrow()
                        && pacing.should_wait(std::time::Instant::now())
                    {
                        pacing.waiting();
                        self.pause(&mut shutdown, rest).await;
                    }
                }
                Err(error) => {
                    if error.is_transient() {
                        tracing::debug!(projection = %name, shard = %self.shard, %error, "retrying from the checkpoint");
                    } else {
                        tracing::error!(projection = %name, shard = %self.shard, %error, "projector step failed; retrying from the checkpoint");
                    }
                    self.live.record_error(&self.shard, error.to_string());
                    crate::telemetry::record_retry(&name);
                    // Re-read the checkpoint too: a flush split over transactions may have
                    // landed it although the call failed.
                    checkpoint = None;
                    let pause = self.config.backoff(failures);
                    failures = failures.saturating_add(1);
                    self.pause(&mut shutdown, pause).await;
                }
            }
        }
    }

    async fn pause(&self, shutdown: &mut watch::Receiver<bool>, pause: std::time::Duration) {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }

    /// Steps until caught up (or until another worker of the same [`catch_up`] failed); the
    /// number of events applied or dead-lettered.
    async fn catch_up(&self, failed: &AtomicBool) -> Result<u64> {
        while !self.parents_finished().await? {
            if failed.load(Ordering::Relaxed) {
                return Ok(0);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let stored = self.load_checkpoint().await?;
        let before = stored.events_applied + stored.dead_letters;
        let mut current = self.start_point().await?;
        while !failed.load(Ordering::Relaxed) {
            if let Step::CaughtUp | Step::Finished = self.step(&mut current).await? {
                break;
            }
        }
        Ok(current.events_applied + current.dead_letters - before)
    }

    /// Whether every parent shard is finished for this projection (true without parents).
    async fn parents_finished(&self) -> Result<bool> {
        for parent in &self.parents {
            let stored = checkpoint::load(
                self.tables.as_ref(),
                self.projection.name(),
                self.projection.version(),
                parent,
            )
            .await?;
            if !stored.finished {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The stored checkpoint; for a projection starting from nothing with seeding on, the
    /// checkpoint its seed from the archive wrote (see `seed.rs`). A log that keeps everything
    /// is never seeded from: it holds the whole history itself, and its archive holds only
    /// positions in it (`archive.rs`).
    async fn start_point(&self) -> Result<Checkpoint> {
        let stored = self.load_checkpoint().await?;
        let fresh = stored.position.is_none() && !stored.finished;
        if fresh
            && self.config.seed_from_archive
            && !self.log.keeps_everything()
            && self.projection.name() != crate::archive::NAME
        {
            let seeded = crate::seed::from_archive(
                self.projection.as_ref(),
                self.tables.as_ref(),
                &self.shard,
                &self.config,
                &self.live,
            )
            .await?;
            if let Some(seeded) = seeded {
                return Ok(seeded);
            }
        }
        Ok(stored)
    }

    async fn load_checkpoint(&self) -> Result<Checkpoint> {
        checkpoint::load(
            self.tables.as_ref(),
            self.projection.name(),
            self.projection.version(),
            &self.shard,
        )
        .await
    }

    /// Records, once per shard and version, that a worker has read to the head: what tells a
    /// process that a version is caught up on the shards other processes work.
    async fn mark_reached_head(&self, current: &mut Checkpoint) -> Result<()> {
        let marked = Checkpoint {
            reached_head: true,
            updated_at: now_millis(),
            ..current.clone()
        };
        let op = checkpoint::mark_op(self.projection.name(), self.projection.version(), &marked)?;
        self.tables.transact(vec![op]).await?;
        *current = marked;
        Ok(())
    }

    /// While the shard is far behind its head (a rebuild, or a restart after a long stop),
    /// folds further reads into the same batch, so each item is written once for many reads.
    /// Bounded by events, by items held (memory) and by time (how much work a crash can cost,
    /// and how long the read model shows no progress), and it stops after a read that touched
    /// mostly items the batch did not hold yet. A worker near the head never waits here, so
    /// freshness is untouched in the normal regime.
    ///
    /// "Far behind" is `fold_ahead_lag` in the time events were received (`millis_behind`),
    /// or, for a worker building its read model (`backlog`: its shard's head never reached,
    /// and its reads come back full), any age: such a worker is behind by its whole backlog
    /// however recent the events are, and has no freshness to keep yet. Gating it on time
    /// alone made a rebuild of a log written minutes ago flush every read (BENCHMARKS.md,
    /// "Session 21"). A short read ends the backlog, so near the head a building worker
    /// flushes as a live one does, however long appends keep coming.
    ///
    /// Returns whether a read found the head ([`at_head`]); the flush's checkpoint then
    /// records it.
    async fn fold_ahead(
        &self,
        folding: &mut Folding<'_>,
        mut millis_behind: Option<u64>,
        mut backlog: bool,
    ) -> Result<bool> {
        let config = &self.config;
        let started = std::time::Instant::now();
        let lag = u64::try_from(config.fold_ahead_lag.as_millis()).unwrap_or(u64::MAX);
        let mut found_head = false;
        while (backlog || millis_behind.is_some_and(|behind| behind >= lag))
            && folding.events() < config.fold_ahead_events as u64
            && folding.items() < config.fold_ahead_items
            && started.elapsed() < config.fold_ahead_time
        {
            let Some(after) = folding.last_position().cloned() else {
                break;
            };
            let next = self
                .log
                .read(&self.shard, Some(&after), config.batch_events)
                .await?;
            self.live.record_read(&self.shard, next.millis_behind);
            found_head |= at_head(&next, config.batch_events);
            if next.event_count() == 0 {
                break;
            }
            let added = folding.add(self.tables.as_ref(), &next.records).await?;
            millis_behind = next.millis_behind;
            backlog &= next.event_count() >= config.batch_events;
            // A read that brought mostly new items (the archive: one per event) gains nothing
            // from sharing a flush: it only makes the flush bigger.
            if added.saturating_mul(2) > next.event_count() {
                break;
            }
        }
        Ok(found_head)
    }

    async fn step(&self, current: &mut Checkpoint) -> Result<Step> {
        if current.finished {
            return Ok(Step::Finished);
        }
        let batch = self
            .log
            .read(
                &self.shard,
                current.position.as_ref(),
                self.config.batch_events,
            )
            .await?;
        self.live.record_read(&self.shard, batch.millis_behind);
        let events = batch.event_count();
        if events == 0 {
            if !batch.end_of_shard {
                if !current.reached_head {
                    self.mark_reached_head(current).await?;
                }
                return Ok(Step::CaughtUp);
            }
            let finished = Checkpoint {
                finished: true,
                updated_at: now_millis(),
                ..current.clone()
            };
            let op =
                checkpoint::mark_op(self.projection.name(), self.projection.version(), &finished)?;
            self.tables.transact(vec![op]).await?;
            *current = finished;
            return Ok(Step::Finished);
        }
        let mut folding = Folding::new(
            self.projection.as_ref(),
            &self.shard,
            current.position.as_ref(),
            self.config.poison_attempts,
            false,
        );
        // A building worker whose read came back full has more to read than one batch.
        let backlog = !current.reached_head && events >= self.config.batch_events;
        let read_to_head = at_head(&batch, self.config.batch_events);
        folding.add(self.tables.as_ref(), &batch.records).await?;
        drop(batch.records);
        let found_head = self
            .fold_ahead(&mut folding, batch.millis_behind, backlog)
            .await?
            || read_to_head;
        let folded = folding.finish()?;
        let Some((position, timestamp, received_at)) = folded.last else {
            return Ok(Step::CaughtUp);
        };
        let next = Checkpoint {
            shard: self.shard.clone(),
            position: Some(position),
            last_timestamp: Some(timestamp),
            last_received_at: Some(received_at),
            events_applied: current.events_applied + folded.applied,
            dead_letters: current.dead_letters + folded.dead_letters,
            updated_at: now_millis(),
            finished: false,
            reached_head: current.reached_head || found_head,
        };
        let mut flush = folded.flush;
        flush.tail.push(checkpoint::commit_op(
            self.projection.name(),
            self.projection.version(),
            &next,
        )?);
        let started = std::time::Instant::now();
        flush::commit(self.tables.as_ref(), flush).await?;
        crate::telemetry::record_batch(
            self.projection.name(),
            folded.applied,
            folded.dead_letters,
            started.elapsed(),
        );
        self.live.record_applied(&self.shard, folded.applied);
        if found_head {
            self.live.record_caught_up(&self.shard);
        }
        *current = next;
        Ok(Step::Applied(folded.applied + folded.dead_letters))
    }
}

/// Whether a read of up to `asked` events ended at its shard's head (the shard still open):
/// empty (nothing newer is durable), or short with nothing received after its last event. The
/// second is what a busy shard gives: a worker reading as fast as it flushes may never find
/// it empty, and would then never record that it reached the head (what tells a rules
/// candidate it may be activated, and ends a first build's folding ahead). A short read is at
/// the head on the embedded log; on Kinesis it is as of the last `GetRecords`.
fn at_head(batch: &ReadBatch, asked: usize) -> bool {
    let events = batch.event_count();
    !batch.end_of_shard && (events == 0 || (events < asked && batch.millis_behind == Some(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_schemas::{Event, EventKind, Sequence};

    fn batch(events: usize, millis_behind: Option<u64>, end_of_shard: bool) -> ReadBatch {
        let event = Event {
            id: uuid::Uuid::nil(),
            tenant: "acme".into(),
            kind: EventKind::Track,
            name: "login".into(),
            entity: "u1".into(),
            timestamp: 0,
            received_at: 0,
            properties: "{}".into(),
            value: None,
        };
        let records = if events == 0 {
            Vec::new()
        } else {
            vec![LogRecord {
                sequence: Sequence::from_u64(0),
                first_index: 0,
                events: vec![event; events],
            }]
        };
        ReadBatch {
            records,
            end_of_shard,
            millis_behind,
        }
    }

    #[test]
    fn a_read_is_at_the_head_when_empty_or_short_with_nothing_newer() {
        assert!(at_head(&batch(0, Some(0), false), 10));
        assert!(
            at_head(&batch(0, None, false), 10),
            "empty: nothing newer is durable"
        );
        assert!(at_head(&batch(3, Some(0), false), 10));
        assert!(
            !at_head(&batch(3, Some(40), false), 10),
            "short, yet behind"
        );
        assert!(!at_head(&batch(3, None, false), 10), "short, lag unknown");
        assert!(!at_head(&batch(10, Some(0), false), 10), "full: maybe more");
        assert!(
            !at_head(&batch(0, Some(0), true), 10),
            "a closed shard is finished instead"
        );
    }
}
