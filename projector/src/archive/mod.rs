//! The `archive` projection: every event, immutable, in the `events` table.
//!
//! Two layouts, chosen by the log ([`Archive::for_log`]):
//! - **copies**, for a log that forgets (Kinesis keeps 24 h by default): one item per event,
//!   PK `<tenant>#<entity>` (the log's partition key), SK `<timestamp, 20 digits>#<id>`,
//!   attributes `event` (the envelope as JSON, properties kept as the client's text), `shard`
//!   and `position`; the archive is the history beyond the stream's retention, and a rebuild
//!   replays it in log order (`seed.rs`);
//! - **positions**, for a log that keeps everything (the embedded log, which DESIGN.md calls
//!   "also the archive"): posting lists of log positions, one item per entity, hour and flush
//!   ([`postings`]), and raw-event queries read the events from the log at those positions. A
//!   second copy of every event in the tables cost ~70 % of a replay's CPU and 30× the log's
//!   bytes (BENCHMARKS.md, Session 8); an index item per event still cost half of it (Session 11).
//!
//! Reads take every kind of item, so a data directory archived with an earlier layout (copies,
//! or one position item per event) keeps answering.
//!
//! Idempotence: a copy's key is a function of the event and its item a function of the event
//! and its position, so a replay rewrites identical bytes (a blind put, no read); an event
//! re-sent with the same id and timestamp lands on the same item. A posting list is a blind put
//! too; readers drop an event met twice (see [`postings`]). No event is ever poison here: the
//! archive keeps everything, including what other projections dead-letter.

mod postings;
mod read;

pub use read::{EventsPage, events};

use crate::keys::push_padded_millis;
use crate::projection::{Derived, State};
use crate::{Cache, Error, PoisonError, Projection, Result};
use shoal_schemas::{Event, Position, ShardId, keys::partition_key};
use shoal_storage::{EventLog, Item, Key, TableName, Value};

pub const NAME: &str = "archive";
const EVENT_ATTRIBUTE: &str = "event";
pub(crate) const SHARD_ATTRIBUTE: &str = "shard";
pub(crate) const POSITION_ATTRIBUTE: &str = "position";

/// How the archive stores events (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// The whole event: the archive is a history of its own.
    #[default]
    Copies,
    /// Posting lists of log positions: the log holds each event at its position for as long
    /// as it exists.
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
    Key::new(
        partition_key(&event.tenant, &event.entity),
        sort_key(event.timestamp, &event.id),
    )
}

/// `<timestamp:20>#<id>`: a per-event item's sort key, and the cursor of an indexed page.
fn sort_key(timestamp: i64, id: &uuid::Uuid) -> String {
    // One exact-size allocation (20 digits, `#`, 36 for the hyphenated id).
    let mut sk = String::with_capacity(20 + 1 + 36);
    push_padded_millis(&mut sk, timestamp);
    sk.push('#');
    sk.push_str(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    sk
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
        match self.layout {
            Layout::Copies => {
                let json = event_json(event)?;
                // Only with `max_event_bytes` raised near DynamoDB's item limit.
                if json.len() > crate::projection::MAX_ITEM_BYTES {
                    return Err(PoisonError::new(format!(
                        "the event takes {} bytes as JSON, over the {} an archived copy may",
                        json.len(),
                        crate::projection::MAX_ITEM_BYTES
                    )));
                }
                let mut item = Item::new();
                item.insert(EVENT_ATTRIBUTE.into(), Value::S(json));
                item.insert(SHARD_ATTRIBUTE.into(), Value::S(cache.shard().to_owned()));
                item.insert(POSITION_ATTRIBUTE.into(), Value::S(position.to_string()));
                cache.put(TableName::Events, event_key(event), item);
            }
            Layout::Positions => {
                let pk = partition_key(&event.tenant, &event.entity);
                cache
                    .scratch_mut::<postings::Open>()
                    .add(pk, event, position);
            }
        }
        Ok(())
    }

    fn finish(&self, cache: &mut Cache) -> Result<()> {
        if let Some(open) = cache.take_scratch::<postings::Open>() {
            let shard = cache.shard().to_owned();
            for (key, item) in open.into_items(&shard) {
                cache.put(TableName::Events, key, item);
            }
        }
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
