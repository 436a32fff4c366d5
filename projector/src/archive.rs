//! The `archive` projection: every event, immutable, in the `events` table.
//!
//! Layout: PK `<tenant>#<entity>` (the log's partition key), SK `<timestamp, 20 digits>#<id>`,
//! attributes `event` = the event envelope as JSON (properties kept as the client's text),
//! `shard` and `position` = where the event is in the log, so a rebuild can replay the archive
//! in log order instead of the stream (`seed.rs`: the stream keeps only its retention period).
//!
//! Idempotence: the key is a function of the event and the item is exactly the event, so a
//! replay rewrites identical bytes (a blind put, no read); an event re-sent with the same id
//! and timestamp lands on the same item. No event is ever poison here: the archive keeps
//! everything, including what other projections dead-letter.

use crate::keys::{padded_millis, push_padded_millis};
use crate::projection::{Derived, State};
use crate::{Cache, Error, PoisonError, Projection, Result};
use serde::Serialize;
use shoal_schemas::{Event, Position, ShardId, keys::partition_key};
use shoal_storage::{Item, Key, Query, SortRange, Table, TableName, Value};
use std::fmt::Write as _;

pub const NAME: &str = "archive";
const EVENT_ATTRIBUTE: &str = "event";
pub(crate) const SHARD_ATTRIBUTE: &str = "shard";
pub(crate) const POSITION_ATTRIBUTE: &str = "position";

/// The archive projection (unversioned keys: the archive is the same in every version).
#[derive(Debug, Default)]
pub struct Archive;

fn event_key(event: &Event) -> Key {
    // One exact-size allocation for the sort key (20 digits, `#`, 36 for the hyphenated id).
    let mut sk = String::with_capacity(20 + 1 + 36);
    push_padded_millis(&mut sk, event.timestamp);
    sk.push('#');
    // Writing to a `String` cannot fail.
    let _ = write!(sk, "{}", event.id);
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
        // Sized for the envelope around the properties, so the text is not grown step by step
        // (one put per event: this is the archive's hot loop).
        let capacity = 200 + event.tenant.len() + event.name.len() + event.entity.len();
        let mut json = Vec::with_capacity(capacity + event.properties.len());
        serde_json::to_writer(&mut json, event)
            .map_err(|error| PoisonError::new(format!("cannot encode the event: {error}")))?;
        // serde_json writes UTF-8 only.
        let json = String::from_utf8(json)
            .map_err(|error| PoisonError::new(format!("cannot encode the event: {error}")))?;
        let mut item = Item::new();
        item.insert(EVENT_ATTRIBUTE.into(), Value::S(json));
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

/// An archived event with where it was in the log; `None` for items written before the
/// archive recorded positions.
pub(crate) fn decode_item(key: &Key, item: &Item) -> Result<Option<(ShardId, Position, Event)>> {
    let (Some(shard), Some(position)) = (
        item.get(SHARD_ATTRIBUTE).and_then(Value::as_str),
        item.get(POSITION_ATTRIBUTE).and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let position =
        Position::parse(position).map_err(|error| Error::corrupt(key, error.to_string()))?;
    let text = item
        .get(EVENT_ATTRIBUTE)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::corrupt(key, "missing event"))?;
    let event: Event =
        serde_json::from_str(text).map_err(|error| Error::corrupt(key, error.to_string()))?;
    Ok(Some((shard.to_owned(), position, event)))
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
/// most `limit` a page. Cost: one query of at most `limit` items.
pub async fn events(
    tables: &dyn Table,
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
    let mut events = Vec::with_capacity(page.items.len());
    for (key, item) in &page.items {
        let text = item
            .get(EVENT_ATTRIBUTE)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::corrupt(key, "missing event"))?;
        let event: Event =
            serde_json::from_str(text).map_err(|error| Error::corrupt(key, error.to_string()))?;
        events.push(event.to_json());
    }
    Ok(EventsPage {
        events,
        next: page.next,
    })
}
