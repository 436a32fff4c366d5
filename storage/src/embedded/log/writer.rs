//! The per-shard writer thread: group commit.
//!
//! Each shard has one dedicated OS thread fed by a bounded channel. It blocks for the first
//! request, then takes every request already waiting (up to [`MAX_DRAIN_EVENTS`]), drops
//! duplicates, concatenates the encodings of the rest (the appenders encoded them) into one
//! block (several when they exceed the block cap), compresses and writes them with one
//! positional write per segment, syncs once, publishes the new durable head, and only then
//! answers every request. One fsync thus covers every append that arrived while the
//! previous one ran, which is where the throughput comes from. Optionally (off by default:
//! it did not pay when measured), after a commit of few events the writer lingers a little
//! for the appenders it just answered to come back, so the next fsync covers them too.
//!
//! The active segment is filled with zeros ahead of the frames (`preallocate_bytes` at a time),
//! so a commit overwrites blocks that already exist and its `fdatasync` writes data only; on
//! ext4 a sync that grows the file also writes the inode. The zero tail is cut off when the
//! segment is rolled or the writer stops.
//!
//! Invariants:
//! - an appender is answered only after its events are durable (written and, in
//!   `SyncMode::Always`, synced), and after the head covering them is published, so a read
//!   issued after an append returns sees its events;
//! - fingerprints enter the dedup window only after the write succeeded; events without one
//!   (server-minted ids) are neither looked up nor remembered;
//! - after a failed write or sync the shard refuses every further append (until the log is
//!   reopened, when recovery cuts whatever partial frame the failure left). Continuing could
//!   leave a hole or a half-written frame in the middle of the stream, and after a failed fsync
//!   the kernel may already have dropped the dirty pages, so a retry on the same file proves
//!   nothing. Failing loudly is the only answer that keeps "acknowledged means durable".

use super::codec::{self, BlockEncoder};
use super::config::SyncMode;
use super::dedup::{DedupWindow, FingerprintSet};
use super::meta::sync_dir;
use super::segment::{self, FRAME_HEADER_LEN};
use super::shard::{Head, LastBlock, OpenedShard, Segment, ShardShared};
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting per shard before appenders feel backpressure.
pub const QUEUE_DEPTH: usize = 1024;
/// A drain stops taking requests once it holds this many events, bounding the memory and the
/// latency of one commit; the rest go in the next commit, right after.
pub const MAX_DRAIN_EVENTS: usize = 64 * 1024;

/// The writer lingers only after a commit of at most this many events, and stops lingering
/// once it holds this many: beyond it a commit amortizes its sync well enough already.
const LINGER_MAX_EVENTS: usize = 256;

/// Wakes the writer thread, parked while it lingers, when a request arrives.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// One append call's events for this shard, already encoded, and where to send where each went
/// (in order).
///
/// The appender encodes (on its own thread, where the events were made and are freed), so this
/// thread, the shard's only serial stage, only concatenates, compresses and writes.
pub struct AppendRequest {
    /// The postcard encodings of the events ([`codec::encode_event`]), back to back.
    pub encoded: Vec<u8>,
    /// Per event, in the order of `encoded`.
    pub events: Vec<EncodedEvent>,
    pub reply: oneshot::Sender<Result<Vec<Placement>>>,
}

/// What the writer needs to know of one encoded event besides its bytes.
#[derive(Clone, Copy, Debug)]
pub struct EncodedEvent {
    /// The length of its encoding in [`AppendRequest::encoded`]; at most
    /// [`codec::MAX_BLOCK_RAW_BYTES`].
    pub len: u32,
    pub received_at: i64,
    /// Its dedup fingerprint, or `None` when the window does not apply to it (a server-minted
    /// id, or dedup is off). Computed by the appender, off this thread.
    pub fingerprint: Option<u64>,
}

/// Where one event of a request went: `None` when it was a duplicate, else its block's logical
/// start (the block's `Sequence`) and its index in the block. Plain numbers, so answering
/// allocates nothing per event; the appender builds the positions.
pub type Placement = Option<(u64, u32)>;

/// Settings the writer needs from the log's config.
#[derive(Clone, Copy, Debug)]
pub struct WriterSettings {
    pub segment_bytes: u64,
    pub sync: SyncMode,
    pub compression_level: i32,
}

/// Where an input event went.
enum Slot {
    Duplicate,
    Stored { block: usize, index: u32 },
}

/// What a drain will write, and the answer for each of its events.
struct Plan {
    /// Per request, per event.
    slots: Vec<Vec<Slot>>,
    blocks: Vec<RawBlock>,
    /// Fingerprints and times of the events to store, for the dedup window.
    stored: Vec<(u64, i64)>,
    newest_received_at: Option<i64>,
}

/// A block being filled: the concatenated encodings of its events.
struct RawBlock {
    count: u32,
    bytes: Vec<u8>,
}

impl RawBlock {
    fn with_capacity(bytes: usize) -> Self {
        RawBlock {
            count: 0,
            bytes: Vec::with_capacity(bytes),
        }
    }
}

pub struct Writer {
    shared: Arc<ShardShared>,
    settings: WriterSettings,
    active: Segment,
    active_len: u64,
    /// Length of the active segment's file; the bytes from `active_len` up to it are zeros.
    active_file_len: u64,
    preallocate_bytes: u64,
    linger: Duration,
    dedup: DedupWindow,
    encoder: BlockEncoder,
    newest_received_at: Option<i64>,
    /// Set by the first failed write or sync; every later request is refused with it.
    failure: Option<String>,
    /// The directory lock, held until the last writer thread ends: a log dropped without
    /// `shutdown` may still be writing queued appends, and must not be reopened meanwhile.
    _lock: Arc<File>,
}

impl Writer {
    pub fn new(opened: OpenedShard, settings: WriterSettings, lock: Arc<File>) -> Result<Self> {
        Ok(Writer {
            shared: opened.shared,
            settings,
            active: opened.active,
            active_len: opened.active_len,
            active_file_len: opened.active_file_len,
            preallocate_bytes: opened.preallocate_bytes,
            linger: opened.group_commit_linger,
            dedup: opened.dedup,
            encoder: BlockEncoder::for_log(settings.compression_level)?,
            newest_received_at: opened.newest_received_at,
            failure: None,
            _lock: lock,
        })
    }

    /// Starts the writer thread. It ends once every sender is dropped and the queue is empty.
    pub fn spawn(
        self,
        requests: mpsc::Receiver<AppendRequest>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let name = format!("shoal-log-{}", self.shared.index);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run(requests))
    }

    fn run(mut self, mut requests: mpsc::Receiver<AppendRequest>) {
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut context = Context::from_waker(&waker);
        // Events and requests of the previous commit; nothing to wait for before the first.
        let mut previous = (usize::MAX, 0usize);
        loop {
            // What queued up while the previous commit ran comes from other appenders than
            // the ones it just answered, who were waiting for that answer.
            let mut events = 0;
            let mut drained = Vec::new();
            while events < MAX_DRAIN_EVENTS {
                let Ok(next) = requests.try_recv() else { break };
                events += next.events.len();
                drained.push(next);
            }
            let queued = drained.len();
            if drained.is_empty() {
                let Some(first) = requests.blocking_recv() else {
                    break;
                };
                events += first.events.len();
                drained.push(first);
            }
            let (previous_events, previous_requests) = previous;
            // Appenders in a closed loop send again right after their answer. When the previous
            // commit was small, waiting a little for its appenders to come back lets one sync
            // cover them and those already queued. Large commits (batches) never wait, a lone
            // appender (nobody else queued, one answered) does not either, and no request
            // waits more than `linger`.
            let expected = queued + previous_requests;
            if !self.linger.is_zero()
                && previous_events <= LINGER_MAX_EVENTS
                && drained.len() < expected
            {
                let deadline = Instant::now() + self.linger;
                while drained.len() < expected && events < LINGER_MAX_EVENTS {
                    match requests.poll_recv(&mut context) {
                        Poll::Ready(Some(next)) => {
                            events += next.events.len();
                            drained.push(next);
                        }
                        Poll::Ready(None) => break,
                        Poll::Pending => {
                            let now = Instant::now();
                            if now >= deadline {
                                break;
                            }
                            // `ThreadWaker` unparks this thread early when a request arrives.
                            std::thread::park_timeout(deadline - now);
                        }
                    }
                }
            }
            previous = (events, drained.len());
            self.commit(drained);
        }
        if self.failure.is_none()
            && let Err(error) = self.cut_zero_tail()
        {
            tracing::warn!(
                shard = self.shared.index,
                %error,
                "could not cut the zeros after the last frame at shutdown; the next open skips them"
            );
        }
    }

    /// One group commit: everything in `requests` is answered when this returns.
    fn commit(&mut self, requests: Vec<AppendRequest>) {
        if let Some(failure) = &self.failure {
            let message = format!(
                "shard {} refuses appends after a failed write ({failure}); reopen the log",
                self.shared.index
            );
            for request in requests {
                let _ = request.reply.send(Err(Error::Backend(message.clone())));
            }
            return;
        }
        match self.write(&requests) {
            Ok(outcomes) => {
                for (request, outcome) in requests.into_iter().zip(outcomes) {
                    // The appender may have given up waiting (its future was dropped); its
                    // events are durable all the same, and a retry will be a duplicate.
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(
                    shard = self.shared.index,
                    %error,
                    "event log write failed; the shard refuses appends until reopened"
                );
                self.failure = Some(error.to_string());
                for request in requests {
                    let io = std::io::Error::new(
                        error.kind(),
                        format!("shard {}: {error}", self.shared.index),
                    );
                    let _ = request.reply.send(Err(Error::Io(io)));
                }
            }
        }
    }

    /// Compresses, writes and syncs the requests' new events; where each went, per request.
    fn write(&mut self, requests: &[AppendRequest]) -> std::io::Result<Vec<Vec<Placement>>> {
        let plan = self.plan(requests)?;
        let mut starts = Vec::with_capacity(plan.blocks.len());
        if let Some(last) = plan.blocks.last() {
            let mut payloads = Vec::with_capacity(plan.blocks.len());
            for block in &plan.blocks {
                payloads.push(self.encoder.encode(block.count, &block.bytes)?);
            }
            self.append_frames(&payloads, &mut starts)?;
            // Durable from here on: remember the fingerprints, publish, then answer.
            for &(fingerprint, received_at) in &plan.stored {
                self.dedup.insert(fingerprint, received_at);
            }
            self.newest_received_at = self.newest_received_at.max(plan.newest_received_at);
            let end = self.active.base + self.active_len;
            self.shared.publish(Head {
                end,
                last_block: starts.last().map(|&start| LastBlock {
                    start,
                    count: last.count,
                }),
                newest_received_at: self.newest_received_at,
            });
            let events: u32 = plan.blocks.iter().map(|block| block.count).sum();
            metrics::histogram!("shoal_log_group_commit_events").record(f64::from(events));
            metrics::histogram!("shoal_log_group_commit_requests").record(requests.len() as f64);
            tracing::trace!(
                shard = self.shared.index,
                requests = requests.len(),
                events,
                blocks = plan.blocks.len(),
                end,
                "group commit"
            );
        }
        Ok(plan
            .slots
            .into_iter()
            .map(|slots| {
                slots
                    .into_iter()
                    .map(|slot| match slot {
                        Slot::Duplicate => None,
                        Slot::Stored { block, index } => Some((starts[block], index)),
                    })
                    .collect()
            })
            .collect())
    }

    /// Sorts the drained events into duplicates and blocks (each within the block cap), without
    /// touching the disk or the dedup window.
    fn plan(&self, requests: &[AppendRequest]) -> std::io::Result<Plan> {
        let mut pending = FingerprintSet::default();
        let mut plan = Plan {
            slots: Vec::with_capacity(requests.len()),
            blocks: Vec::new(),
            stored: Vec::new(),
            newest_received_at: None,
        };
        let raw_len: usize = requests.iter().map(|request| request.encoded.len()).sum();
        // Blocks are sized up front (duplicates aside), so filling them never reallocates.
        let mut unplanned = raw_len;
        let mut current = RawBlock::with_capacity(raw_len.min(codec::MAX_BLOCK_RAW_BYTES));
        for request in requests {
            let mut slots = Vec::with_capacity(request.events.len());
            let mut rest = request.encoded.as_slice();
            for event in &request.events {
                let Some((bytes, tail)) = rest.split_at_checked(event.len as usize) else {
                    return Err(std::io::Error::other(
                        "an append request's encoded events are shorter than their lengths",
                    ));
                };
                rest = tail;
                unplanned -= bytes.len();
                if let Some(fingerprint) = event.fingerprint
                    && self.dedup.enabled()
                {
                    // `insert` is false for a second copy inside this very drain.
                    if self.dedup.is_duplicate(fingerprint, event.received_at)
                        || !pending.insert(fingerprint)
                    {
                        slots.push(Slot::Duplicate);
                        continue;
                    }
                    plan.stored.push((fingerprint, event.received_at));
                }
                if current.count > 0
                    && current.bytes.len() + bytes.len() > codec::MAX_BLOCK_RAW_BYTES
                {
                    let left = bytes.len() + unplanned;
                    let next = RawBlock::with_capacity(left.min(codec::MAX_BLOCK_RAW_BYTES));
                    plan.blocks.push(std::mem::replace(&mut current, next));
                }
                current.bytes.extend_from_slice(bytes);
                slots.push(Slot::Stored {
                    block: plan.blocks.len(),
                    index: current.count,
                });
                current.count += 1;
                plan.newest_received_at = plan.newest_received_at.max(Some(event.received_at));
            }
            debug_assert!(rest.is_empty(), "stray bytes after a request's events");
            plan.slots.push(slots);
        }
        if current.count > 0 {
            plan.blocks.push(current);
        }
        Ok(plan)
    }

    /// Frames and writes the payloads, rolling segments as needed, then syncs; pushes each
    /// block's logical start to `starts`. Advances `active_len` only over bytes written.
    fn append_frames(
        &mut self,
        payloads: &[Vec<u8>],
        starts: &mut Vec<u64>,
    ) -> std::io::Result<()> {
        let mut buffer = Vec::with_capacity(
            payloads
                .iter()
                .map(|payload| FRAME_HEADER_LEN + payload.len())
                .sum(),
        );
        for payload in payloads {
            let frame_len = (FRAME_HEADER_LEN + payload.len()) as u64;
            let in_file = self.active_len + buffer.len() as u64;
            if in_file > 0 && in_file + frame_len > self.settings.segment_bytes {
                self.flush(&mut buffer)?;
                self.roll()?;
            }
            starts.push(self.active.base + self.active_len + buffer.len() as u64);
            segment::append_frame(&mut buffer, payload);
        }
        self.flush(&mut buffer)?;
        if self.settings.sync == SyncMode::Always {
            self.active.file.sync_data()?;
        }
        Ok(())
    }

    fn flush(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<()> {
        if buffer.is_empty() {
            return Ok(());
        }
        let end = self.active_len + buffer.len() as u64;
        if end > self.active_file_len && self.preallocate_bytes > 0 {
            // Grow the file once for the next `preallocate_bytes` of frames rather than with
            // every commit: this commit's sync writes the inode, the following ones do not.
            let zeroed_end = end
                .saturating_add(self.preallocate_bytes)
                .min(self.settings.segment_bytes);
            if zeroed_end > end {
                segment::write_zeros(&self.active.file, end, zeroed_end)?;
                self.active_file_len = zeroed_end;
            }
        }
        self.active.file.write_all_at(buffer, self.active_len)?;
        self.active_len = end;
        self.active_file_len = self.active_file_len.max(end);
        buffer.clear();
        Ok(())
    }

    /// Cuts the zeros after the last frame off the active segment, so that a segment no longer
    /// written is exactly as long as its frames.
    fn cut_zero_tail(&mut self) -> std::io::Result<()> {
        if self.active_file_len > self.active_len {
            self.active.file.set_len(self.active_len)?;
            // `sync_all`: the new length is metadata that must be on disk before anything
            // (the next segment) relies on it.
            self.active.file.sync_all()?;
            self.active_file_len = self.active_len;
        }
        Ok(())
    }

    /// Closes the active segment and starts the next one at the current end of the stream.
    fn roll(&mut self) -> std::io::Result<()> {
        // Synced whatever the mode: recovery validates only the final segment, so every earlier
        // one must be complete on disk, and cut to its frames, before a later one exists (a
        // segment's length decides where the next one starts).
        if self.active_file_len > self.active_len {
            self.cut_zero_tail()?;
        } else {
            self.active.file.sync_data()?;
        }
        let base = self.active.base + self.active_len;
        let path = self.shared.dir.join(segment::segment_file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        sync_dir(&self.shared.dir)?;
        let next = Segment {
            base,
            file: Arc::new(file),
        };
        self.shared.push_segment(next.clone());
        self.active = next;
        self.active_len = 0;
        self.active_file_len = 0;
        tracing::debug!(shard = self.shared.index, base, "rolled to a new segment");
        Ok(())
    }
}
