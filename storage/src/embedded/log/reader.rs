//! Reads of one shard: blocking positional reads, run inside `spawn_blocking` by the caller.
//!
//! A position's sequence is the logical offset of its block, so a read after a position seeks
//! straight to that block, skips the events up to the position's index, and continues with
//! whole blocks until it holds at least `max_events` or reaches the durable end.
//!
//! Invariants:
//! - nothing at or past the head's `end` (a snapshot taken before the read) is looked at, so a
//!   read never returns an event that is not durable yet;
//! - a frame that fails its checks is an error ([`Error::Corrupt`]), never skipped or returned;
//!   at the `after` position it is [`Error::InvalidArgument`] instead, since a position that
//!   names no block is far likelier than damage exactly there.

use super::codec::{BlockDecoder, read_header};
use super::segment::{FrameReader, Step};
use super::shard::{Head, Segment, ShardShared};
use crate::{Error, LogRecord, ReadBatch, Result};
use shoal_schemas::{Event, Position, Sequence};

/// Up to about `max_events` events of the shard after `after`, as of `head`.
pub fn read(
    shard: &ShardShared,
    head: &Head,
    after: Option<&Position>,
    max_events: usize,
) -> Result<ReadBatch> {
    BlockDecoder::with_kept(|decoder| read_with(decoder, shard, head, after, max_events))
}

fn read_with(
    decoder: &mut BlockDecoder,
    shard: &ShardShared,
    head: &Head,
    after: Option<&Position>,
    max_events: usize,
) -> Result<ReadBatch> {
    let (mut offset, skip_through) = match after {
        None => (0, None),
        Some(position) => (block_offset(shard, head, position)?, Some(position.index)),
    };
    let mut records = Vec::new();
    let mut event_count = 0usize;
    let mut first_frame = true;
    while offset < head.end && event_count < max_events {
        let (segment, segment_end) = segment_holding(shard, head, offset)?;
        let mut frames = FrameReader::new(
            &segment.file,
            offset - segment.base,
            segment_end - segment.base,
        );
        while event_count < max_events {
            let (in_file, payload) = match frames.step()? {
                Step::Frame { offset, payload } => (offset, payload),
                Step::End => break,
                Step::Bad { offset, reason } => {
                    let logical = segment.base + offset;
                    if first_frame && after.is_some() {
                        return Err(not_a_block(shard, logical));
                    }
                    return Err(corrupt(shard, logical, reason));
                }
            };
            let sequence = segment.base + in_file;
            let mut events = decoder
                .decode(payload)
                .map_err(|error| corrupt(shard, sequence, &error.to_string()))?;
            let mut first_index = 0u32;
            if first_frame {
                if let Some(index) = skip_through {
                    first_index = index.saturating_add(1);
                    let skipped = (first_index as usize).min(events.len());
                    events.drain(..skipped);
                }
                first_frame = false;
            }
            if !events.is_empty() {
                event_count += events.len();
                records.push(LogRecord {
                    sequence: Sequence::from_u64(sequence),
                    first_index,
                    events,
                });
            }
        }
        offset = segment.base + frames.position();
        if offset < segment_end {
            // Stopped for `max_events` inside this segment.
            break;
        }
    }
    let reached_end = offset >= head.end;
    let millis_behind = if reached_end {
        Some(0)
    } else {
        let last_read = records
            .last()
            .and_then(|record| record.events.last())
            .map(|event| event.received_at);
        match (head.newest_received_at, last_read) {
            (Some(newest), Some(read)) => Some(newest.saturating_sub(read).max(0) as u64),
            _ => None,
        }
    };
    Ok(ReadBatch {
        records,
        end_of_shard: false,
        millis_behind,
    })
}

/// The events at `positions`, in the order asked. Each block named is read and decompressed
/// once, however many of the positions fall in it, and only the events asked are built.
pub fn read_at(shard: &ShardShared, head: &Head, positions: &[Position]) -> Result<Vec<Event>> {
    let mut order = Vec::with_capacity(positions.len());
    for (at, position) in positions.iter().enumerate() {
        order.push((block_offset(shard, head, position)?, position.index, at));
    }
    order.sort_unstable();
    BlockDecoder::with_kept(|decoder| read_blocks_at(decoder, shard, head, positions.len(), &order))
}

/// [`read_at`] of the `count` positions in `order` (block offset, index, place in the
/// answer; sorted) with `decoder`.
fn read_blocks_at(
    decoder: &mut BlockDecoder,
    shard: &ShardShared,
    head: &Head,
    count: usize,
    order: &[(u64, u32, usize)],
) -> Result<Vec<Event>> {
    let mut found: Vec<Option<Event>> = vec![None; count];
    for block in order.chunk_by(|left, right| left.0 == right.0) {
        let offset = block[0].0;
        let indices: Vec<u32> = block.iter().map(|&(_, index, _)| index).collect();
        let payload = read_frame(shard, head, offset)?;
        let header = read_header(&payload).map_err(|error| corrupt(shard, offset, &error.0))?;
        // A sound block without the event asked: the position is wrong, not the log.
        if let Some(&index) = indices.last()
            && index >= header.count
        {
            return Err(Error::InvalidArgument(format!(
                "position {offset}:{index} names no event of shard {} (its record holds {})",
                shard.index, header.count
            )));
        }
        let events = decoder
            .decode_at(&payload, &indices)
            .map_err(|error| corrupt(shard, offset, &error.0))?;
        for (&(_, _, at), event) in block.iter().zip(events) {
            found[at] = Some(event);
        }
    }
    // Every slot was filled above: each position is in `order` once.
    Ok(found.into_iter().flatten().collect())
}

/// The payload of the frame that starts at `offset`.
fn read_frame(shard: &ShardShared, head: &Head, offset: u64) -> Result<Vec<u8>> {
    let (segment, segment_end) = segment_holding(shard, head, offset)?;
    let mut frames = FrameReader::new(
        &segment.file,
        offset - segment.base,
        segment_end - segment.base,
    );
    match frames.step()? {
        Step::Frame { payload, .. } => Ok(payload.to_vec()),
        Step::End | Step::Bad { .. } => Err(not_a_block(shard, offset)),
    }
}

/// The segment that holds `offset`, and the logical offset its readable bytes end at: a frame
/// never spans segments, so they end at the next segment or at the durable end, whichever
/// comes first.
fn segment_holding(shard: &ShardShared, head: &Head, offset: u64) -> Result<(Segment, u64)> {
    let Some((segment, next_base)) = shard.segment_at(offset) else {
        return Err(corrupt(shard, offset, "no segment holds this offset"));
    };
    Ok((segment, next_base.unwrap_or(head.end).min(head.end)))
}

/// The logical offset of the block `position` names, checked to lie below the durable end.
pub fn block_offset(shard: &ShardShared, head: &Head, position: &Position) -> Result<u64> {
    let Some(offset) = position.sequence.to_u64() else {
        return Err(Error::InvalidArgument(format!(
            "position {position} is not a position of the embedded log"
        )));
    };
    if offset >= head.end {
        return Err(Error::InvalidArgument(format!(
            "position {position} is beyond the end of shard {} ({})",
            shard.index, head.end
        )));
    }
    Ok(offset)
}

fn not_a_block(shard: &ShardShared, offset: u64) -> Error {
    Error::InvalidArgument(format!(
        "no record of shard {} starts at sequence {offset} (or the record there is damaged)",
        shard.index
    ))
}

fn corrupt(shard: &ShardShared, offset: u64, detail: &str) -> Error {
    Error::Corrupt {
        location: format!("shard {} at offset {offset}", shard.index),
        detail: detail.to_owned(),
    }
}
