//! The `EventLog` trait: the immutable, sharded log every write goes to first.
//!
//! A shard is an ordered sequence of records; a record packs one or more events (the embedded
//! log's group-commit block, a Kinesis record carrying a compressed batch). An event's
//! [`Position`] is its record's sequence plus its index in the record. Invariants every backend
//! keeps (checked by [`crate::conformance`]):
//! - `append` returns only once every stored event is durable, with a position per event;
//! - positions only grow within a shard, and a read after position `p` returns exactly the events
//!   after `p`, in append order, never an event that is not yet durable;
//! - all events of one `tenant + entity` go to one shard, in the order they were appended;
//! - an event whose `tenant + entity + id` was stored within the dedup window is not stored again:
//!   its outcome is [`AppendOutcome::Duplicate`]. This holds for every event whose id came from
//!   the client ([`IdOrigin::Client`]); an id the server minted for the append
//!   ([`IdOrigin::Server`]) cannot repeat, so a backend may skip the window for it.

use async_trait::async_trait;
use shoal_schemas::{Event, Position, Sequence, ShardId};
use std::time::Duration;

/// What happened to one appended event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Durable at this position.
    Stored(Position),
    /// The same `tenant + entity + id` was already stored within the dedup window; nothing was
    /// written and the earlier copy stands.
    Duplicate,
}

/// Where an event's id came from, which decides whether the dedup window applies to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdOrigin {
    /// Sent by the client (a message id) or derived from the data (a metric point's id): a
    /// retry repeats it, so the dedup window applies.
    #[default]
    Client,
    /// Minted by the server for this very append (a UUIDv7). No other append can carry it, so
    /// looking it up could only miss, and remembering it would only push client ids out of the
    /// window sooner: a backend may neither consult nor update the window for it.
    Server,
}

/// An event to append, with where its id came from.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event: Event,
    pub id_origin: IdOrigin,
}

impl NewEvent {
    /// An event whose id the client sent (or that derives from its data): deduplicated.
    pub fn client(event: Event) -> Self {
        NewEvent {
            event,
            id_origin: IdOrigin::Client,
        }
    }

    /// An event whose id the server has just minted: never deduplicated.
    pub fn server(event: Event) -> Self {
        NewEvent {
            event,
            id_origin: IdOrigin::Server,
        }
    }
}

/// A shard and its lineage (a Kinesis shard split or merged from parents; embedded shards have
/// none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: ShardId,
    pub parents: Vec<ShardId>,
    /// The shard takes no more appends (it was split or merged); once read to its end its
    /// children may be processed.
    pub closed: bool,
}

/// One record read back: consecutive events from `first_index` on, sharing one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub sequence: Sequence,
    pub first_index: u32,
    pub events: Vec<Event>,
}

impl LogRecord {
    /// Each event with its position.
    pub fn positioned(&self) -> impl Iterator<Item = (Position, &Event)> {
        self.events.iter().enumerate().map(|(offset, event)| {
            let index = self.first_index + offset as u32;
            (Position::new(self.sequence.clone(), index), event)
        })
    }

    /// The position of the last event in the record, if it has any.
    pub fn last_position(&self) -> Option<Position> {
        let count = u32::try_from(self.events.len()).ok()?;
        let last = count.checked_sub(1)?;
        Some(Position::new(
            self.sequence.clone(),
            self.first_index + last,
        ))
    }
}

/// The answer of a read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadBatch {
    pub records: Vec<LogRecord>,
    /// The shard is closed and everything in it has been read.
    pub end_of_shard: bool,
    /// How far behind the newest record of the shard this read ends, in milliseconds, when the
    /// backend knows.
    pub millis_behind: Option<u64>,
}

impl ReadBatch {
    pub fn event_count(&self) -> usize {
        self.records.iter().map(|record| record.events.len()).sum()
    }

    pub fn last_position(&self) -> Option<Position> {
        self.records.iter().rev().find_map(LogRecord::last_position)
    }
}

/// The immutable log. Object-safe; injected as `Arc<dyn EventLog>`.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends events, which may belong to any tenants and entities, and returns once all that
    /// were stored are durable: one outcome per input event, in input order.
    /// Every id counts as the client's ([`IdOrigin::Client`]).
    async fn append(&self, events: Vec<Event>) -> crate::Result<Vec<AppendOutcome>>;

    /// [`EventLog::append`], told per event where its id came from. The default treats every id
    /// as the client's, which is always correct; a backend overrides it to skip the dedup
    /// window for server ids.
    async fn append_with_origin(&self, events: Vec<NewEvent>) -> crate::Result<Vec<AppendOutcome>> {
        self.append(events.into_iter().map(|new| new.event).collect())
            .await
    }

    /// The shards, parents before children.
    async fn shards(&self) -> crate::Result<Vec<ShardInfo>>;

    /// Up to about `max_events` events after `after` (from the start of the shard when `None`),
    /// in order. Whole records are returned except that the first may start mid-record, so a
    /// read may return a few more events than asked for. An empty batch means nothing newer is
    /// durable yet (or, with `end_of_shard`, ever will be).
    async fn read(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        max_events: usize,
    ) -> crate::Result<ReadBatch>;

    /// Whether every record stays readable at its position for as long as the log exists (the
    /// embedded log: nothing is ever rewritten or expired, so it is the archive too). A log
    /// that forgets (Kinesis, after its retention period) answers `false`, the default.
    fn keeps_everything(&self) -> bool {
        false
    }

    /// The events at `positions` of `shard`, in the order asked: one event per position. For
    /// logs that [keep everything](EventLog::keeps_everything); the default refuses. A position
    /// that names no event is [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    async fn read_at(&self, shard: &ShardId, positions: &[Position]) -> crate::Result<Vec<Event>> {
        let _ = (shard, positions);
        Err(crate::Error::Unavailable(
            "this log does not read single events by position".to_owned(),
        ))
    }

    /// Waits until the shard may hold events after `after`, or until `timeout` passes. Returns
    /// without polling on the embedded backend (it is woken by the append); a remote backend may
    /// poll within its read limits. A `true` answer is a hint: read to find out.
    async fn wait_for(
        &self,
        shard: &ShardId,
        after: Option<&Position>,
        timeout: Duration,
    ) -> crate::Result<bool>;
}
