//! The embedded [`EventLog`]: segment files per shard, group commit, dedup window.
//!
//! Layout of `dir` (see DESIGN.md, "The log"):
//!
//! ```text
//! dir/log-meta.json               layout version and shard count, fixed at creation
//! dir/log.lock                    held (flock) while the log is open
//! dir/shard-000/00000000000000000000.seg
//! dir/shard-000/00000000000000134217800.seg     named by the logical offset of its first byte
//! dir/shard-000/….seg.torn-<offset>             bytes cut off by recovery, kept for forensics
//! ```
//!
//! - `segment.rs`: frames (`len + crc32c + payload`), segment files, recovery of a torn tail;
//! - `codec.rs`: the block payload (version, codec, count, zstd of postcard events);
//! - `writer.rs`: one thread per shard doing group commit;
//! - `dedup.rs`: the per-shard window of recently stored fingerprints;
//! - `shard.rs`: a shard's shared state (segments, durable head) and how it is opened;
//! - `reader.rs`: reads after a position.
//!
//! A record is one block; its `Sequence` is the block's logical byte offset in the shard, so
//! reads seek straight to it and positions grow with the stream. Invariants:
//! - `append` answers only once the events are durable (see [`SyncMode`]), and never for an
//!   event that is not in the log or, as `Duplicate`, already was;
//! - readers see only what the writer has published as durable, so they never see a partial
//!   block, and `wait_for` is woken by that publication (a watch channel), not by polling;
//! - nothing is rewritten: recovery only cuts a torn tail off the final segment (zeros after
//!   the last frame are the pre-allocated, unwritten part of the active segment, not a tear).
//!
//! An `append` spanning several shards is not atomic: if one shard fails after another stored
//! its part, the call fails and a retry stores the rest (the stored part comes back
//! `Duplicate`).

/// Shared with the Kinesis log, whose records carry the same payload; public for the
/// criterion benches (`benches/log.rs`), not a stable API.
pub mod codec;
mod config;
mod dedup;
mod meta;
mod reader;
mod segment;
mod shard;
mod writer;

pub use config::{
    DEFAULT_COMPRESSION_LEVEL, DEFAULT_DEDUP_CAPACITY, DEFAULT_DEDUP_WINDOW, DEFAULT_SEGMENT_BYTES,
    DEFAULT_SHARD_COUNT, LogConfig, SyncMode,
};
pub use meta::META_FILE;

use crate::{AppendOutcome, Error, EventLog, IdOrigin, NewEvent, ReadBatch, Result, ShardInfo};
use async_trait::async_trait;
use shard::{Head, ShardShared};
use shoal_schemas::{Event, Position, Sequence, ShardId, keys};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::{AppendRequest, EncodedEvent, Writer, WriterSettings};

/// Where a shard stands, for lag metrics and status pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHead {
    pub shard: ShardId,
    /// The durable end of the shard's byte stream: `end_offset - checkpoint.sequence` is the
    /// lag in bytes.
    pub end_offset: u64,
    /// The position of the newest durable event, `None` when the shard is empty (or, after a
    /// damaged old segment was found at open, until the next append).
    pub last: Option<Position>,
    /// `received_at` of the newest durable event.
    pub newest_received_at: Option<i64>,
}

/// The embedded log. Cheap to share behind an `Arc`; dropping it lets the writer threads finish
/// what is queued and stop (use [`EmbeddedLog::shutdown`] to wait for that).
pub struct EmbeddedLog {
    config: LogConfig,
    shards: Vec<ShardHandle>,
}

struct ShardHandle {
    id: ShardId,
    shared: Arc<ShardShared>,
    /// `None` once shut down. Cloned per append, never held across an `.await`.
    requests: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.config.dir)
            .field("shard_count", &self.config.shard_count)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens the log in `config.dir`, creating it when new. Blocking: it recovers each shard's
    /// final segment and rebuilds the dedup windows from the tail (shards in parallel), so call
    /// it at startup or inside `spawn_blocking`.
    pub fn open(config: LogConfig) -> Result<EmbeddedLog> {
        config.validate()?;
        std::fs::create_dir_all(&config.dir)?;
        let dir_lock = meta::lock(&config.dir)?;
        meta::load_or_create(&config.dir, config.shard_count)?;
        let opened = std::thread::scope(|scope| {
            let config = &config;
            let workers: Vec<_> = (0..config.shard_count)
                .map(|index| scope.spawn(move || shard::open(config, index)))
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker.join().unwrap_or_else(|_| {
                        Err(Error::Backend(
                            "a shard failed to open (panicked)".to_owned(),
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        // The shard directories may have just been created.
        meta::sync_dir(&config.dir)?;
        let settings = WriterSettings {
            segment_bytes: config.segment_bytes,
            sync: config.sync,
            compression_level: config.compression_level,
        };
        let mut shards = Vec::with_capacity(opened.len());
        for opened_shard in opened {
            let shared = Arc::clone(&opened_shard.shared);
            let (sender, receiver) = mpsc::channel(writer::QUEUE_DEPTH);
            let writer = Writer::new(opened_shard, settings, Arc::clone(&dir_lock))?;
            let thread = writer.spawn(receiver)?;
            shards.push(ShardHandle {
                id: shared.index.to_string(),
                shared,
                requests: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(EmbeddedLog { config, shards })
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The number of shards, fixed when the log was created.
    pub fn shard_count(&self) -> u32 {
        self.config.shard_count
    }

    /// The shard that holds `tenant + entity`.
    pub fn shard_of(&self, tenant: &str, entity: &str) -> ShardId {
        keys::shard_of(tenant, entity, self.config.shard_count).to_string()
    }

    /// Where `shard` stands now (its durable head).
    pub fn head(&self, shard: &ShardId) -> Result<ShardHead> {
        let handle = self.shard(shard)?;
        let head = handle.shared.head();
        Ok(ShardHead {
            shard: handle.id.clone(),
            end_offset: head.end,
            last: head.last_block.and_then(|last| {
                let index = last.count.checked_sub(1)?;
                Some(Position::new(Sequence::from_u64(last.start), index))
            }),
            newest_received_at: head.newest_received_at,
        })
    }

    /// Stops taking appends, lets each writer answer everything already queued, and waits for
    /// the writer threads to end. Appends after this fail with [`Error::Closed`]; reads go on.
    pub async fn shutdown(&self) {
        let mut threads = Vec::new();
        for handle in &self.shards {
            // Dropping the sender closes the queue once in-flight appends have sent theirs.
            drop(lock(&handle.requests).take());
            threads.extend(lock(&handle.thread).take());
        }
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("an event log writer thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("waiting for the event log writer threads failed");
        }
    }

    fn shard(&self, id: &ShardId) -> Result<&ShardHandle> {
        id.parse::<usize>()
            .ok()
            .and_then(|index| self.shards.get(index))
            .filter(|handle| handle.id == *id)
            .ok_or_else(|| Error::UnknownShard(id.clone()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values (a sender, a join handle) stay valid whatever a panicking holder did.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Could the shard hold events after `after`, given its head? Errors when `after` lies beyond
/// the durable end (it names no record of this shard).
fn has_events_after(shared: &ShardShared, head: &Head, after: Option<&Position>) -> Result<bool> {
    let Some(position) = after else {
        return Ok(head.end > 0);
    };
    let offset = reader::block_offset(shared, head, position)?;
    Ok(match head.last_block {
        Some(last) if offset == last.start => position.index.saturating_add(1) < last.count,
        Some(last) if offset > last.start => {
            return Err(Error::InvalidArgument(format!(
                "position {position} is past the newest record of shard {}",
                shared.index
            )));
        }
        // A later block exists.
        Some(_) => true,
        // The newest block is unknown (see `ShardHead::last`): say yes, the read will tell.
        None => true,
    })
}

/// The part of one append that goes to one shard.
#[derive(Default)]
struct ShardGroup {
    /// Where each event stood in the append's input.
    inputs: Vec<usize>,
    /// The events' encodings, back to back, and what the writer needs of each.
    encoded: Vec<u8>,
    events: Vec<EncodedEvent>,
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<AppendOutcome>> {
        self.append_with_origin(events.into_iter().map(NewEvent::client).collect())
            .await
    }

    async fn append_with_origin(&self, events: Vec<NewEvent>) -> Result<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let shard_count = self.config.shard_count;
        let mut groups: Vec<ShardGroup> = (0..shard_count).map(|_| ShardGroup::default()).collect();
        // First pass: refuse the whole append before any work if one event is too large, and
        // size each shard's buffers so encoding never reallocates.
        let mut shards = Vec::with_capacity(events.len());
        let mut bounds = vec![0usize; groups.len()];
        let mut counts = vec![0usize; groups.len()];
        for NewEvent { event, .. } in &events {
            let size = codec::encoded_len_bound(event);
            if size > codec::MAX_BLOCK_RAW_BYTES {
                return Err(Error::TooLarge {
                    what: "event",
                    size,
                    limit: codec::MAX_BLOCK_RAW_BYTES,
                });
            }
            let shard = keys::shard_of(&event.tenant, &event.entity, shard_count) as usize;
            shards.push(shard);
            bounds[shard] += size;
            counts[shard] += 1;
        }
        for ((group, bound), count) in groups.iter_mut().zip(bounds).zip(counts) {
            group.encoded.reserve_exact(bound);
            group.inputs.reserve_exact(count);
            group.events.reserve_exact(count);
        }
        // Second pass: fingerprint and encode here, on the appender's thread, so that the
        // shard's single writer thread does only what must be serial, and each event is freed
        // by the thread that made it (freeing on another thread is what made glibc's
        // `_int_free` and `malloc_consolidate` show in the writer's profile).
        let total = events.len();
        let dedup = self.config.dedup_capacity > 0;
        for ((input, NewEvent { event, id_origin }), shard) in
            events.into_iter().enumerate().zip(shards)
        {
            let fingerprint = (dedup && id_origin == IdOrigin::Client)
                .then(|| keys::dedup_fingerprint(&event.tenant, &event.entity, &event.id));
            let group = &mut groups[shard];
            let start = group.encoded.len();
            codec::encode_event(&event, &mut group.encoded)
                .map_err(|error| Error::Backend(format!("encoding an event failed: {error}")))?;
            // At most the bound checked above, so within `u32`.
            let len = u32::try_from(group.encoded.len() - start)
                .map_err(|_| Error::Backend("an encoded event is larger than 4 GiB".to_owned()))?;
            group.inputs.push(input);
            group.events.push(EncodedEvent {
                len,
                received_at: event.received_at,
                fingerprint,
            });
        }
        // Send every group before awaiting any answer, so the shards commit in parallel.
        let mut answers = Vec::new();
        for (handle, group) in self.shards.iter().zip(groups) {
            if group.events.is_empty() {
                continue;
            }
            let sender = lock(&handle.requests).clone().ok_or(Error::Closed)?;
            let (reply, answer) = oneshot::channel();
            let inputs = group.inputs;
            let request = AppendRequest {
                encoded: group.encoded,
                events: group.events,
                reply,
            };
            sender.send(request).await.map_err(|_| Error::Closed)?;
            answers.push((handle, inputs, answer));
        }
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; total];
        for (handle, inputs, answer) in answers {
            let placements = answer.await.map_err(|_| {
                Error::Backend(format!("the writer of shard {} stopped", handle.id))
            })??;
            debug_assert_eq!(placements.len(), inputs.len());
            // The events of a block share its sequence: one string per block, not per event.
            let mut block: Option<(u64, Sequence)> = None;
            for (input, placement) in inputs.into_iter().zip(placements) {
                let outcome = match placement {
                    None => AppendOutcome::Duplicate,
                    Some((start, index)) => {
                        let sequence = match &block {
                            Some((known, sequence)) if *known == start => sequence.clone(),
                            _ => {
                                let sequence = Sequence::from_u64(start);
                                block = Some((start, sequence.clone()));
                                sequence
                            }
                        };
                        AppendOutcome::Stored(Position::new(sequence, index))
                    }
                };
                outcomes[input] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Backend("a shard writer left an event unanswered".to_owned()))
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        Ok(self
            .shards
            .iter()
            .map(|handle| ShardInfo {
                id: handle.id.clone(),
                parents: Vec::new(),
                closed: false,
            })
            .collect())
    }

    async fn read(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        max_events: usize,
    ) -> Result<ReadBatch> {
        let handle = self.shard(shard)?;
        if max_events == 0 {
            return Err(Error::InvalidArgument(
                "max_events must be at least 1".to_owned(),
            ));
        }
        let shared = Arc::clone(&handle.shared);
        let head = shared.head();
        let after = after.cloned();
        tokio::task::spawn_blocking(move || {
            reader::read(&shared, &head, after.as_ref(), max_events)
        })
        .await
        .map_err(|error| Error::Backend(format!("log read task failed: {error}")))?
    }

    fn keeps_everything(&self) -> bool {
        true
    }

    async fn read_at(&self, shard: &ShardId, positions: &[Position]) -> Result<Vec<Event>> {
        let handle = self.shard(shard)?;
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&handle.shared);
        let head = shared.head();
        let positions = positions.to_vec();
        tokio::task::spawn_blocking(move || reader::read_at(&shared, &head, &positions))
            .await
            .map_err(|error| Error::Backend(format!("log read task failed: {error}")))?
    }

    async fn wait_for(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        timeout: Duration,
    ) -> Result<bool> {
        let handle = self.shard(shard)?;
        let mut heads = handle.shared.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let head = *heads.borrow_and_update();
            if has_events_after(&handle.shared, &head, after)? {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, heads.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives in `ShardShared`, which outlives this borrow of `self`.
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_elapsed) => return Ok(false),
            }
        }
    }
}
