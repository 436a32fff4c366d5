//! Reading a Kinesis shard after a [`Position`]: shard iterators kept between reads, events
//! decoded from packed records, and calls paced to the shard's read limits.
//!
//! Invariants and why:
//! - a read after `p` returns exactly the events after `p`: a fresh iterator starts
//!   `AT_SEQUENCE_NUMBER` of `p`'s record (so a position in the middle of a record resumes in
//!   that record) and every event at or before `p` is dropped; `TRIM_HORIZON` without `p`;
//! - a shard iterator costs a call and lives 5 minutes, so the iterator (and any records fetched
//!   but not yet returned) is kept in a cursor keyed by `(shard, last position returned)`: the
//!   usual caller, who reads again after the last position it got, continues without a
//!   `GetShardIterator`, and several readers of one shard each keep their own cursor;
//! - an expired iterator is replaced transparently: a cursor remembers the last record it
//!   fetched and resumes `AFTER_SEQUENCE_NUMBER` of it;
//! - `GetRecords` on one shard is spaced at least 200 ms apart within this process (a shard
//!   serves 5 a second to all its readers together; readers in other processes are not seen,
//!   their excess is throttled and retried);
//! - `end_of_shard` is reported only when the shard is closed (`NextShardIterator` absent) and
//!   every fetched event has been returned;
//! - an event belongs to the shard only if its hash key is in the shard's range (routing.rs):
//!   events of a record sent with a stale shard map that belong elsewhere are dropped (their
//!   writer sent them again to the right shard), so a record may come back as several
//!   [`LogRecord`]s of one sequence, each a run of consecutive indices.

use crate::aws::config::AwsClients;
use crate::aws::kinesis::api::{self, Fetched, IteratorStart};
use crate::aws::kinesis::codec;
use crate::aws::kinesis::routing::{self, HashRange};
use crate::aws::retry::{ErrorClass, retry};
use crate::{Error, LogRecord, ReadBatch, Result};
use aws_sdk_kinesis::types::Shard;
use shoal_schemas::{Position, Sequence, ShardId};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two `GetRecords` of one shard (5 per second per shard).
const GET_RECORDS_SPACING: Duration = Duration::from_millis(200);
/// Replace an iterator this old before using it (they expire after 5 minutes).
const ITERATOR_MAX_AGE: Duration = Duration::from_secs(270);
/// Records asked per `GetRecords` at least: records pack many events, and what a read does not
/// return stays buffered in its cursor for the next read.
const MIN_FETCH_RECORDS: usize = 100;
/// `GetRecords` calls one read makes at most while they come back empty but the shard is
/// behind (Kinesis may answer empty pages while it skips expired data).
const MAX_EMPTY_FETCHES: usize = 3;
/// Cursors kept at most (each is an iterator string and some buffered records).
const MAX_CURSORS: usize = 1024;

type CursorKey = (ShardId, Option<Position>);

/// Where a read stands in a shard.
#[derive(Debug)]
struct Cursor {
    /// The events this cursor returns are after this position.
    after: Option<Position>,
    iterator: Option<(String, Instant)>,
    /// The last record fetched, to resume after when the iterator expired.
    last_fetched: Option<Sequence>,
    /// Fetched, trimmed to positions after `after`, not yet returned.
    buffered: VecDeque<LogRecord>,
    millis_behind: Option<u64>,
    /// The shard is closed and everything in it was fetched.
    ended: bool,
    used: Instant,
}

impl Cursor {
    fn new(after: Option<Position>) -> Self {
        Cursor {
            after,
            iterator: None,
            last_fetched: None,
            buffered: VecDeque::new(),
            millis_behind: None,
            ended: false,
            used: Instant::now(),
        }
    }

    fn ready(&self) -> bool {
        !self.buffered.is_empty() || self.ended
    }

    fn start(&self) -> IteratorStart {
        match (&self.last_fetched, &self.after) {
            (Some(sequence), _) => IteratorStart::AfterSequence(sequence.to_string()),
            (None, Some(after)) => IteratorStart::AtSequence(after.sequence.to_string()),
            (None, None) => IteratorStart::TrimHorizon,
        }
    }

    /// Takes whole records until about `max_events` events (at least one record).
    fn take(&mut self, max_events: usize) -> ReadBatch {
        let mut records = Vec::new();
        let mut events = 0;
        while events < max_events.max(1) {
            let Some(record) = self.buffered.pop_front() else {
                break;
            };
            events += record.events.len();
            records.push(record);
        }
        ReadBatch {
            records,
            end_of_shard: self.ended && self.buffered.is_empty(),
            millis_behind: self.millis_behind,
        }
    }
}

/// The events of `record` after `after`: the whole record, its tail, or nothing.
fn trim(record: LogRecord, after: Option<&Position>) -> Option<LogRecord> {
    let Some(after) = after else {
        return Some(record);
    };
    match record.sequence.cmp(&after.sequence) {
        std::cmp::Ordering::Greater => Some(record),
        std::cmp::Ordering::Less => None,
        std::cmp::Ordering::Equal => {
            let skip = usize::try_from(
                after
                    .index
                    .saturating_add(1)
                    .saturating_sub(record.first_index),
            )
            .unwrap_or(usize::MAX);
            if skip >= record.events.len() {
                return None;
            }
            let first_index = record.first_index + skip as u32;
            let events = record.events.into_iter().skip(skip).collect();
            Some(LogRecord {
                sequence: record.sequence,
                first_index,
                events,
            })
        }
    }
}

/// The shard readers of one [`super::KinesisLog`].
#[derive(Debug)]
pub(crate) struct Reader {
    clients: AwsClients,
    stream: String,
    cursors: Mutex<HashMap<CursorKey, Cursor>>,
    /// When the next `GetRecords` of each shard may go out.
    next_call: Mutex<HashMap<ShardId, Instant>>,
    /// The hash range of every shard seen in a listing (a shard's range never changes).
    ranges: Mutex<HashMap<ShardId, HashRange>>,
}

impl Reader {
    pub(crate) fn new(clients: AwsClients, stream: String) -> Self {
        Reader {
            clients,
            stream,
            cursors: Mutex::new(HashMap::new()),
            next_call: Mutex::new(HashMap::new()),
            ranges: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers the hash ranges of a listing's shards.
    pub(crate) fn learn_shards(&self, shards: &[Shard]) {
        let mut ranges = lock(&self.ranges);
        for shard in shards {
            if let Some(range) = HashRange::of(shard) {
                ranges.insert(shard.shard_id().to_owned(), range);
            }
        }
    }

    /// The hash range of `shard`, listing the shards when it is not known yet; an unknown
    /// shard is [`Error::UnknownShard`].
    async fn range(&self, shard: &ShardId) -> Result<HashRange> {
        if let Some(range) = lock(&self.ranges).get(shard) {
            return Ok(*range);
        }
        let shards = super::list_all_shards(&self.clients, &self.stream).await?;
        self.learn_shards(&shards);
        lock(&self.ranges)
            .get(shard)
            .copied()
            .ok_or_else(|| Error::UnknownShard(shard.clone()))
    }

    pub(crate) async fn read(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        max_events: usize,
    ) -> Result<ReadBatch> {
        let key: CursorKey = (shard.clone(), after.cloned());
        let mut cursor = self.take_cursor(&key);
        self.fill(shard, &mut cursor, max_events).await?;
        let batch = cursor.take(max_events);
        let next_after = batch.last_position().or_else(|| after.cloned());
        cursor.after = next_after.clone();
        self.put_cursor((shard.clone(), next_after), cursor);
        Ok(batch)
    }

    /// Whether the shard has events after `after` (or has ended), fetching once if needed.
    pub(crate) async fn peek(&self, shard: &ShardId, after: Option<&Position>) -> Result<bool> {
        let key: CursorKey = (shard.clone(), after.cloned());
        let mut cursor = self.take_cursor(&key);
        self.fill(shard, &mut cursor, MIN_FETCH_RECORDS).await?;
        let ready = cursor.ready();
        self.put_cursor(key, cursor);
        Ok(ready)
    }

    fn take_cursor(&self, key: &CursorKey) -> Cursor {
        lock(&self.cursors)
            .remove(key)
            .unwrap_or_else(|| Cursor::new(key.1.clone()))
    }

    fn put_cursor(&self, key: CursorKey, mut cursor: Cursor) {
        cursor.used = Instant::now();
        let mut cursors = lock(&self.cursors);
        if cursors.len() >= MAX_CURSORS {
            // Forget the least recently used; it only costs a GetShardIterator if it returns.
            if let Some(oldest) = cursors
                .iter()
                .min_by_key(|(_, cursor)| cursor.used)
                .map(|(key, _)| key.clone())
            {
                cursors.remove(&oldest);
            }
        }
        cursors.insert(key, cursor);
    }

    /// Fetches into the cursor until it holds records, the shard ended, or the shard is caught
    /// up (an empty answer with nothing behind).
    async fn fill(&self, shard: &ShardId, cursor: &mut Cursor, max_events: usize) -> Result<()> {
        let range = self.range(shard).await?;
        let limit = i32::try_from(max_events.clamp(MIN_FETCH_RECORDS, 10_000)).unwrap_or(10_000);
        for _ in 0..MAX_EMPTY_FETCHES {
            if cursor.ready() {
                return Ok(());
            }
            let iterator = match &cursor.iterator {
                Some((iterator, obtained)) if obtained.elapsed() < ITERATOR_MAX_AGE => {
                    iterator.clone()
                }
                _ => self.iterator(shard, &cursor.start()).await?,
            };
            self.pace(shard).await;
            let fetched = retry(&self.clients.retry, || {
                api::get_records(&self.clients, &iterator, limit)
            })
            .await;
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(error) if error.class == ErrorClass::ExpiredIterator => {
                    cursor.iterator = None;
                    continue;
                }
                Err(error) => return Err(error.into_storage()),
            };
            let caught_up = fetched.records.is_empty() && fetched.millis_behind == Some(0);
            self.absorb(cursor, fetched, range).await?;
            if caught_up {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Decodes a `GetRecords` answer into the cursor.
    async fn absorb(&self, cursor: &mut Cursor, fetched: Fetched, range: HashRange) -> Result<()> {
        let Fetched {
            records,
            next_iterator,
            millis_behind,
        } = fetched;
        cursor.millis_behind = millis_behind.and_then(|millis| u64::try_from(millis).ok());
        match next_iterator {
            Some(next) => cursor.iterator = Some((next, Instant::now())),
            None => {
                cursor.iterator = None;
                cursor.ended = true;
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let stream = self.stream.clone();
        // zstd and postcard over up to 10 MB: off the async workers.
        let decoded = tokio::task::spawn_blocking(move || decode_records(&stream, records, range))
            .await
            .map_err(|error| Error::Backend(format!("record decoding task failed: {error}")))??;
        for (sequence, runs) in decoded {
            cursor.last_fetched = Some(sequence);
            for run in runs {
                if let Some(run) = trim(run, cursor.after.as_ref()) {
                    cursor.buffered.push_back(run);
                }
            }
        }
        Ok(())
    }

    /// A fresh shard iterator.
    async fn iterator(&self, shard: &ShardId, start: &IteratorStart) -> Result<String> {
        retry(&self.clients.retry, || {
            api::get_shard_iterator(&self.clients, &self.stream, shard, start)
        })
        .await
        .map_err(|error| match error.class {
            ErrorClass::NotFound => Error::UnknownShard(shard.clone()),
            _ => error.into_storage(),
        })
    }

    /// Waits until this process may call `GetRecords` on `shard` again, and books the slot.
    async fn pace(&self, shard: &ShardId) {
        let wait = {
            let mut next_call = lock(&self.next_call);
            let now = Instant::now();
            let slot = next_call.get(shard).copied().unwrap_or(now).max(now);
            next_call.insert(shard.clone(), slot + GET_RECORDS_SPACING);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The records of a `GetRecords` answer, decoded: per record its sequence and the runs of
/// consecutive events that belong to the shard of hash range `range`.
fn decode_records(
    stream: &str,
    records: Vec<api::FetchedRecord>,
    range: HashRange,
) -> Result<Vec<(Sequence, Vec<LogRecord>)>> {
    records
        .into_iter()
        .map(|record| {
            let location = || format!("kinesis stream {stream} record {}", record.sequence);
            let sequence = Sequence::parse(&record.sequence).map_err(|error| Error::Corrupt {
                location: location(),
                detail: error.to_string(),
            })?;
            let events = codec::decode_payload(&record.data).map_err(|error| Error::Corrupt {
                location: location(),
                detail: error.to_string(),
            })?;
            let runs = runs_in_range(&sequence, events, |event| {
                range.contains(routing::hash_key(&super::partition_key(event)))
            });
            Ok((sequence, runs))
        })
        .collect()
}

/// The runs of consecutive events of one record for which `belongs` holds.
fn runs_in_range(
    sequence: &Sequence,
    events: Vec<shoal_schemas::Event>,
    belongs: impl Fn(&shoal_schemas::Event) -> bool,
) -> Vec<LogRecord> {
    let mut runs: Vec<LogRecord> = Vec::new();
    let mut open = false;
    for (index, event) in events.into_iter().enumerate() {
        if !belongs(&event) {
            open = false;
            continue;
        }
        match runs.last_mut() {
            Some(run) if open => run.events.push(event),
            _ => {
                runs.push(LogRecord {
                    sequence: sequence.clone(),
                    first_index: u32::try_from(index).unwrap_or(u32::MAX),
                    events: vec![event],
                });
                open = true;
            }
        }
    }
    runs
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps of cursors and timestamps: a panic elsewhere cannot leave them inconsistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::kinesis::codec::tests::event;

    fn record(sequence: u64, count: u32) -> LogRecord {
        LogRecord {
            sequence: Sequence::from_u64(sequence),
            first_index: 0,
            events: (0..count).map(event).collect(),
        }
    }

    #[test]
    fn trims_to_the_events_after_the_position() {
        let after = Position::new(Sequence::from_u64(20), 2);
        assert_eq!(trim(record(10, 5), Some(&after)), None);
        assert_eq!(trim(record(30, 5), Some(&after)), Some(record(30, 5)));
        let tail = trim(record(20, 5), Some(&after)).unwrap();
        assert_eq!(tail.first_index, 3);
        assert_eq!(tail.events, vec![event(3), event(4)]);
        let at_end = Position::new(Sequence::from_u64(20), 4);
        assert_eq!(trim(record(20, 5), Some(&at_end)), None);
        assert_eq!(trim(record(20, 5), None), Some(record(20, 5)));
    }

    #[test]
    fn keeps_runs_of_events_that_belong_to_the_shard() {
        let sequence = Sequence::from_u64(7);
        let events: Vec<_> = (0..7).map(event).collect();
        // Keep 0, 1, 3, 6.
        let runs = runs_in_range(&sequence, events.clone(), |e| {
            [0, 1, 3, 6].contains(&(e.timestamp - 1_700_000_000_000))
        });
        let shape: Vec<(u32, usize)> = runs
            .iter()
            .map(|r| (r.first_index, r.events.len()))
            .collect();
        assert_eq!(shape, vec![(0, 2), (3, 1), (6, 1)]);
        assert_eq!(runs[1].events[0], events[3]);
        assert!(runs_in_range(&sequence, events.clone(), |_| false).is_empty());
        assert_eq!(runs_in_range(&sequence, events, |_| true).len(), 1);
    }

    #[test]
    fn takes_whole_records_and_reports_the_end_only_when_drained() {
        let mut cursor = Cursor::new(None);
        cursor
            .buffered
            .extend([record(1, 3), record(2, 3), record(3, 3)]);
        cursor.ended = true;
        let first = cursor.take(4);
        assert_eq!(first.event_count(), 6, "whole records, at least max_events");
        assert!(!first.end_of_shard);
        let second = cursor.take(100);
        assert_eq!(second.event_count(), 3);
        assert!(second.end_of_shard);
    }

    #[test]
    fn resumes_at_the_record_of_the_position_then_after_the_last_fetched() {
        let mut cursor = Cursor::new(Some(Position::new(Sequence::from_u64(42), 7)));
        assert_eq!(cursor.start(), IteratorStart::AtSequence("42".into()));
        cursor.last_fetched = Some(Sequence::from_u64(99));
        assert_eq!(cursor.start(), IteratorStart::AfterSequence("99".into()));
        assert_eq!(Cursor::new(None).start(), IteratorStart::TrimHorizon);
    }
}
