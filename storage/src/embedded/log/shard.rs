//! One shard's shared state, and how it is opened: recovery, then the tail scan that rebuilds
//! the dedup window.
//!
//! Invariants:
//! - [`Head::end`] is the durable end of the shard stream; readers never look past it, and the
//!   writer moves it only after the bytes below it are written (and synced, in
//!   `SyncMode::Always`), before answering the appenders;
//! - the segment list only grows, at the end, and a segment is listed before any head that
//!   covers its bytes is published;
//! - on open only the final segment is validated and possibly cut (a tail of zeros after its
//!   last frame is space zeroed ahead by the writer, not damage: it is kept, and the head ends
//!   before it); the tail scan reads, newest
//!   first, as many segments as the dedup window needs and stops early at damage (warning),
//!   because a bad frame in an old segment must not keep the log from taking appends.

use super::codec::{self, BlockDecoder};
use super::config::LogConfig;
use super::dedup::DedupWindow;
use super::meta::sync_dir;
use super::segment::{self, FrameReader, SegmentFile, Step};
use crate::Result;
use shoal_schemas::keys;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::watch;

/// The newest block of a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastBlock {
    pub start: u64,
    pub count: u32,
}

/// What readers and waiters may see of a shard: published by the writer through a watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The durable end of the shard stream (a logical byte offset).
    pub end: u64,
    /// The newest block, when the shard has one (and open could find it; see `scan_tail`).
    pub last_block: Option<LastBlock>,
    /// `received_at` of the newest event, for `millis_behind`.
    pub newest_received_at: Option<i64>,
}

/// A segment file open for positional reads (and, for the active one, writes).
#[derive(Clone, Debug)]
pub struct Segment {
    pub base: u64,
    pub file: Arc<File>,
}

/// The state a shard's writer, readers and waiters share.
pub struct ShardShared {
    pub index: u32,
    pub dir: PathBuf,
    segments: RwLock<Vec<Segment>>,
    head: watch::Sender<Head>,
}

impl ShardShared {
    pub fn head(&self) -> Head {
        *self.head.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Head> {
        self.head.subscribe()
    }

    /// Publishes a new durable head and wakes every waiter.
    pub fn publish(&self, head: Head) {
        debug_assert!(
            head.end >= self.head().end,
            "the durable end never moves back"
        );
        self.head.send_replace(head);
    }

    pub fn push_segment(&self, segment: Segment) {
        let mut segments = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        debug_assert!(segments.last().is_none_or(|last| last.base < segment.base));
        segments.push(segment);
    }

    /// The segment holding logical `offset`, and where the next segment starts, if any.
    pub fn segment_at(&self, offset: u64) -> Option<(Segment, Option<u64>)> {
        let segments = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        let after = segments.partition_point(|segment| segment.base <= offset);
        let found = segments.get(after.checked_sub(1)?)?.clone();
        let next_base = segments.get(after).map(|segment| segment.base);
        Some((found, next_base))
    }
}

/// Everything open learns about a shard; the writer is built from it.
pub struct OpenedShard {
    pub shared: Arc<ShardShared>,
    pub active: Segment,
    pub active_len: u64,
    /// Length of the active segment's file: zeros from `active_len` up to it.
    pub active_file_len: u64,
    pub dedup: DedupWindow,
    pub newest_received_at: Option<i64>,
    pub preallocate_bytes: u64,
    pub group_commit_linger: std::time::Duration,
}

/// Opens (creating when new) shard `index`: recovers its final segment, scans its tail.
pub fn open(config: &LogConfig, index: u32) -> Result<OpenedShard> {
    let dir = config.dir.join(segment::shard_dir_name(index));
    std::fs::create_dir_all(&dir)?;
    let mut files = segment::list_segments(&dir)?;
    if files.is_empty() {
        let path = dir.join(segment::segment_file_name(0));
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        sync_dir(&dir)?;
        files.push(SegmentFile {
            base: 0,
            path,
            len: 0,
        });
    }
    // Not empty: a new shard got its first segment just above.
    let last = files.len() - 1;
    let recovered = segment::recover_final(index, &files[last])?;
    let final_len = recovered.logical_len;

    let mut segments = Vec::with_capacity(files.len());
    for (position, file) in files.iter().enumerate() {
        // Only the final segment is ever written; the others are opened read-only so a bug
        // cannot write into them.
        let handle = OpenOptions::new()
            .read(true)
            .write(position == last)
            .open(&file.path)?;
        segments.push(Segment {
            base: file.base,
            file: Arc::new(handle),
        });
    }
    let ends: Vec<u64> = files
        .iter()
        .enumerate()
        .map(|(position, file)| {
            if position == last {
                file.base + final_len
            } else {
                file.base + file.len
            }
        })
        .collect();

    let mut dedup = DedupWindow::new(config.dedup_window_millis(), config.dedup_capacity);
    let tail = scan_tail(index, &files, &segments, &ends, &mut dedup)?;
    let active = segments[last].clone();
    let head = Head {
        end: ends[last],
        last_block: tail.last_block,
        newest_received_at: tail.newest_received_at,
    };
    let shared = Arc::new(ShardShared {
        index,
        dir,
        segments: RwLock::new(segments),
        head: watch::Sender::new(head),
    });
    Ok(OpenedShard {
        shared,
        active,
        active_len: final_len,
        active_file_len: recovered.file_len,
        dedup,
        newest_received_at: tail.newest_received_at,
        preallocate_bytes: config.preallocate_bytes,
        group_commit_linger: config.group_commit_linger,
    })
}

struct Tail {
    last_block: Option<LastBlock>,
    newest_received_at: Option<i64>,
}

/// Reads the shard's newest segments, newest first: the newest block (for waiters), the newest
/// `received_at`, and, when dedup is on, the fingerprints of the window, back until the window
/// or the capacity is covered. Fingerprints are then inserted oldest first, as live appends
/// would have.
fn scan_tail(
    shard: u32,
    files: &[SegmentFile],
    segments: &[Segment],
    ends: &[u64],
    dedup: &mut DedupWindow,
) -> Result<Tail> {
    let mut decoder = BlockDecoder::new()?;
    let mut tail = Tail {
        last_block: None,
        newest_received_at: None,
    };
    // Per segment, newest segment first; each in log order.
    let mut found: Vec<Vec<(u64, i64)>> = Vec::new();
    let mut total = 0usize;
    for ((file, segment), &end) in files.iter().zip(segments).zip(ends).rev() {
        let scan = scan_segment(shard, file, segment, end, dedup.enabled(), &mut decoder)?;
        if tail.last_block.is_none() {
            // Still looking for the newest block: an empty final segment (rolled just before a
            // crash) sends us one segment back.
            tail.last_block = scan.last_block.map(|(offset, count)| LastBlock {
                start: segment.base + offset,
                count,
            });
            tail.newest_received_at = scan.newest;
        }
        total += scan.entries.len();
        found.push(scan.entries);
        if scan.damaged {
            break;
        }
        if tail.last_block.is_none() {
            continue;
        }
        let window_covered = match (scan.oldest, tail.newest_received_at) {
            (Some(oldest), Some(newest)) => oldest < newest.saturating_sub(dedup.window_millis()),
            _ => false,
        };
        if !dedup.enabled() || window_covered || total >= dedup.capacity() {
            break;
        }
    }
    for entries in found.iter().rev() {
        for &(fingerprint, received_at) in entries {
            dedup.insert(fingerprint, received_at);
        }
    }
    Ok(tail)
}

/// What one segment contributes to the tail scan.
struct SegmentScan {
    /// In-file offset and event count of the segment's last block.
    last_block: Option<(u64, u32)>,
    /// `(fingerprint, received_at)` of every event, when decoding.
    entries: Vec<(u64, i64)>,
    oldest: Option<i64>,
    /// Newest `received_at` (of the whole segment when decoding, else of its last block).
    newest: Option<i64>,
    /// A bad frame or block stopped the scan: older data is not looked at.
    damaged: bool,
}

fn scan_segment(
    shard: u32,
    file: &SegmentFile,
    segment: &Segment,
    end: u64,
    decode_all: bool,
    decoder: &mut BlockDecoder,
) -> Result<SegmentScan> {
    let mut scan = SegmentScan {
        last_block: None,
        entries: Vec::new(),
        oldest: None,
        newest: None,
        damaged: false,
    };
    let in_file_end = end - segment.base;
    let mut reader = FrameReader::new(&segment.file, 0, in_file_end);
    loop {
        let (offset, outcome) = match reader.step()? {
            Step::Frame { offset, payload } => {
                let outcome = if decode_all {
                    decoder.decode(payload).map(Some)
                } else {
                    codec::read_header(payload).map(|header| {
                        scan.last_block = Some((offset, header.count));
                        None
                    })
                };
                (offset, outcome)
            }
            Step::End => break,
            Step::Bad { offset, reason } => {
                warn_damaged(shard, file, segment.base + offset, reason);
                scan.damaged = true;
                break;
            }
        };
        match outcome {
            Ok(Some(events)) => {
                scan.last_block = Some((offset, events.len() as u32));
                for event in &events {
                    let fingerprint =
                        keys::dedup_fingerprint(&event.tenant, &event.entity, &event.id);
                    scan.entries.push((fingerprint, event.received_at));
                    scan.oldest = Some(
                        scan.oldest
                            .map_or(event.received_at, |at| at.min(event.received_at)),
                    );
                    scan.newest = Some(
                        scan.newest
                            .map_or(event.received_at, |at| at.max(event.received_at)),
                    );
                }
            }
            Ok(None) => {}
            Err(error) => {
                warn_damaged(shard, file, segment.base + offset, &error.to_string());
                scan.damaged = true;
                break;
            }
        }
    }
    if !decode_all && let Some((offset, _)) = scan.last_block {
        // Only the newest block's times are needed: decode just that one.
        let mut reader = FrameReader::new(&segment.file, offset, in_file_end);
        if let Step::Frame { payload, .. } = reader.step()?
            && let Ok(events) = decoder.decode(payload)
        {
            scan.newest = events.iter().map(|event| event.received_at).max();
        }
    }
    Ok(scan)
}

fn warn_damaged(shard: u32, file: &SegmentFile, offset: u64, reason: &str) {
    tracing::warn!(
        shard,
        segment = %file.path.display(),
        offset,
        reason,
        "damaged data while rebuilding the dedup window; older data is not scanned and reads \
         of this range will fail"
    );
}
