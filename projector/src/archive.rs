//! The `archive` projection: every event, immutable, in the `events` table.
//!
//! Layout: PK `<tenant>#<entity>` (the log's partition key), SK `<timestamp, 20 digits>#<id>`,
//! attributes `shard` and `position` = where the event is in the log, and, in the
//! [`Layout::Copies`] layout, `event` = the event envelope as JSON (properties kept as the
//! client's text).
//!
//! Two layouts, chosen by the log ([`Archive::for_log`]):
//! - **copies**, for a log that forgets (Kinesis keeps 24 h by default): the item is the whole
//!   event, so the archive is the history beyond the stream's retention; a rebuild replays it
//!   in log order (`seed.rs`);
//! - **positions**, for a log that keeps everything (the embedded log, which DESIGN.md calls
//!   "also the archive"): the item is only the index entry, and raw-event queries read the
//!   events from the log at those positions. A second copy of every event in the tables cost
//!   ~70 % of a replay's CPU and 30× the log's bytes (BENCHMARKS.md, Session 8).
//!
//! Reads take both kinds of item, so a data directory archived before the positions layout
//! keeps answering.
//!
//! Idempotence: the key is a function of the event and the item is a function of the event
//! and its position, so a replay rewrites identical bytes (a blind put, no read); an event
//! re-sent with the same id and timestamp lands on the same item. No event is ever poison
//! here: the archive keeps everything, including what other projections dead-letter.

use crate::keys::{padded_millis, push_padded_millis};
use crate::projection::{Derived, State};
use crate::{Cache, Error, PoisonError, Projection, Result};
use serde::Serialize;
use shoal_schemas::{Event, Position, ShardId, keys::partition_key};
use shoal_storage::{EventLog, Item, Key, Query, SortRange, Table, TableName, Value};
use std::collections::BTreeMap;

pub const NAME: &str = "archive";
const EVENT_ATTRIBUTE: &str = "event";
pub(crate) const SHARD_ATTRIBUTE: &str = "shard";
pub(crate) const POSITION_ATTRIBUTE: &str = "position";

/// What an archive item holds besides the event's key and position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// The whole event: the archive is a history of its own.
    #[default]
    Copies,
    /// Nothing more: the log holds the event at that position for as long as it exists.
    Positions,
}

/// The archive projection (unversioned keys: the archive is the same in every version).
#[derive(Debug, Default)]
pub struct Archive {
    layout: Layout,
}

impl Archive {
    pub fn new(layout: Layout) -> Self {
        Archive { layout }
    }

    /// Positions for a log that keeps everything, copies otherwise.
    pub fn for_log(log: &dyn EventLog) -> Self {
        Archive::new(if log.keeps_everything() {
            Layout::Positions
        } else {
            Layout::Copies
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
}

fn event_key(event: &Event) -> Key {
    // One exact-size allocation for the sort key (20 digits, `#`, 36 for the hyphenated id).
    let mut sk = String::with_capacity(20 + 1 + 36);
    push_padded_millis(&mut sk, event.timestamp);
    sk.push('#');
    sk.push_str(
        event
            .id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    Key::new(partition_key(&event.tenant, &event.entity), sk)
}

impl Projection for Archive {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn table(&self) -> TableName {
        TableName::Events
    }

    fn keys(&self, _event: &Event, _keys: &mut Vec<Key>) {}

    fn decode(&self, key: &Key, _item: Option<&Item>) -> Result<State> {
        Err(Error::corrupt(key, "the archive reads no items"))
    }

    fn fold(
        &self,
        event: &Event,
        position: &Position,
        cache: &mut Cache,
    ) -> std::result::Result<(), PoisonError> {
        let mut item = Item::new();
        if self.layout == Layout::Copies {
            item.insert(EVENT_ATTRIBUTE.into(), Value::S(event_json(event)?));
        }
        item.insert(SHARD_ATTRIBUTE.into(), Value::S(cache.shard().to_owned()));
        item.insert(POSITION_ATTRIBUTE.into(), Value::S(position.to_string()));
        cache.put(TableName::Events, event_key(event), item);
        Ok(())
    }

    fn encode(&self, key: &Key, _state: &State, _derived: &mut Vec<Derived>) -> Result<Item> {
        Err(Error::corrupt(
            key,
            "the archive has no read-modify-write items",
        ))
    }
}

fn event_json(event: &Event) -> std::result::Result<String, PoisonError> {
    // Sized for the envelope around the properties, so the text is not grown step by step
    // (one put per event: this is the archive's hot loop).
    let capacity = 200 + event.tenant.len() + event.name.len() + event.entity.len();
    let mut json = Vec::with_capacity(capacity + event.properties.len());
    serde_json::to_writer(&mut json, event)
        .map_err(|error| PoisonError::new(format!("cannot encode the event: {error}")))?;
    // serde_json writes UTF-8 only.
    String::from_utf8(json)
        .map_err(|error| PoisonError::new(format!("cannot encode the event: {error}")))
}

/// Where an archived event is in the log; `None` for items written before the archive
/// recorded positions.
fn item_position(key: &Key, item: &Item) -> Result<Option<(ShardId, Position)>> {
    let (Some(shard), Some(position)) = (
        item.get(SHARD_ATTRIBUTE).and_then(Value::as_str),
        item.get(POSITION_ATTRIBUTE).and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let position =
        Position::parse(position).map_err(|error| Error::corrupt(key, error.to_string()))?;
    Ok(Some((shard.to_owned(), position)))
}

/// The event an item copies, or `None` in the positions layout.
fn item_event(key: &Key, item: &Item) -> Result<Option<Event>> {
    let Some(value) = item.get(EVENT_ATTRIBUTE) else {
        return Ok(None);
    };
    let text = value
        .as_str()
        .ok_or_else(|| Error::corrupt(key, "the event is not text"))?;
    serde_json::from_str(text)
        .map(Some)
        .map_err(|error| Error::corrupt(key, error.to_string()))
}

/// An archived event with where it was in the log; `None` for items written before the
/// archive recorded positions. Only the copies layout is a history of its own: an item of the
/// positions layout is an error here (that archive is read through the log, see [`events`]).
pub(crate) fn decode_item(key: &Key, item: &Item) -> Result<Option<(ShardId, Position, Event)>> {
    let Some((shard, position)) = item_position(key, item)? else {
        return Ok(None);
    };
    let event = item_event(key, item)?.ok_or_else(|| {
        Error::corrupt(
            key,
            "the archive holds log positions only (the log keeps every event): replay the log",
        )
    })?;
    Ok(Some((shard, position, event)))
}

/// A page of an entity's raw events, newest first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EventsPage {
    /// Each event as `Event::to_json` shows it.
    pub events: Vec<serde_json::Value>,
    /// Pass back as `cursor` for the next (older) page.
    pub next: Option<String>,
}

/// The raw events of `tenant`/`entity` with `from <= timestamp <= to` (ms), newest first, at
/// most `limit` a page. Items of the positions layout are read from `log`, one read per shard
/// for the page (each log block once). Cost: one query of at most `limit` items, plus that read.
#[allow(clippy::too_many_arguments)]
pub async fn events(
    tables: &dyn Table,
    log: Option<&dyn EventLog>,
    tenant: &str,
    entity: &str,
    from: i64,
    to: i64,
    cursor: Option<String>,
    limit: usize,
) -> Result<EventsPage> {
    if from > to {
        return Err(Error::InvalidArgument("from is after to".into()));
    }
    // `$` sorts after `#`, so the upper bound takes every id of the `to` millisecond.
    let range = SortRange::Between(padded_millis(from), format!("{}$", padded_millis(to)));
    let query = Query::partition(partition_key(tenant, entity))
        .range(range)
        .reverse()
        .limit(limit)
        .after(cursor);
    let page = tables.query(TableName::Events, &query).await?;
    let mut events: Vec<Option<Event>> = Vec::with_capacity(page.items.len());
    // Per shard: the page slots waiting for an event from the log, and its positions.
    let mut wanted: BTreeMap<ShardId, (Vec<usize>, Vec<Position>)> = BTreeMap::new();
    for (key, item) in &page.items {
        match item_event(key, item)? {
            Some(event) => events.push(Some(event)),
            None => {
                let (shard, position) = item_position(key, item)?
                    .ok_or_else(|| Error::corrupt(key, "neither an event nor its position"))?;
                let (slots, positions) = wanted.entry(shard).or_default();
                slots.push(events.len());
                positions.push(position);
                events.push(None);
            }
        }
    }
    for (shard, (slots, positions)) in wanted {
        let log = log.ok_or_else(|| {
            Error::Storage(shoal_storage::Error::Unavailable(
                "the archive holds log positions and this process has no log".to_owned(),
            ))
        })?;
        let found = log.read_at(&shard, &positions).await?;
        if found.len() != slots.len() {
            return Err(Error::Storage(shoal_storage::Error::Backend(format!(
                "asked shard {shard} for {} events by position, it answered {}",
                slots.len(),
                found.len()
            ))));
        }
        for (slot, event) in slots.into_iter().zip(found) {
            // `events` has one slot per item of the page, in the page's order.
            let (key, _) = &page.items[slot];
            // The log and the index must agree on which event this is.
            if event_key(&event) != *key {
                return Err(Error::corrupt(
                    key,
                    format!("the log holds event {} at this item's position", event.id),
                ));
            }
            events[slot] = Some(event);
        }
    }
    Ok(EventsPage {
        events: events
            .into_iter()
            .flatten()
            .map(|event| event.to_json())
            .collect(),
        next: page.next,
    })
}
