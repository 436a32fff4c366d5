//! Raw-event pages: an entity's archived events, newest first.

use super::postings::{self, POSTINGS_ATTRIBUTE};
use super::{SHARD_ATTRIBUTE, event_key, item_event, item_position, sort_key};
use crate::keys::padded_millis;
use crate::{Error, Result};
use serde::Serialize;
use shoal_schemas::{Event, Position, ShardId, keys::partition_key};
use shoal_storage::{EventLog, Key, Query, SortRange, Table, TableName, Value};
use std::collections::BTreeMap;

/// Posting lists read per query while paging through an entity's hours.
const LISTS_PER_QUERY: usize = 64;

/// A page of an entity's raw events, newest first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EventsPage {
    /// Each event as `Event::to_json` shows it.
    pub events: Vec<serde_json::Value>,
    /// Pass back as `cursor` for the next (older) page.
    pub next: Option<String>,
}

/// The raw events of `tenant`/`entity` with `from <= timestamp <= to` (ms), newest first, at
/// most `limit` a page.
///
/// On a log that keeps everything the archive is an index: the page is chosen from the posting
/// lists of the hours it covers and from any per-event items of earlier layouts, then its
/// events are read from `log`, one read per shard (each log block once). The cursor is then the
/// last event's time and id. Elsewhere every item copies its event: one query of at most
/// `limit` items, and the cursor is the storage's.
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
    let ask = Ask {
        pk: partition_key(tenant, entity),
        from,
        to,
        cursor,
        limit: limit.max(1),
    };
    match log {
        Some(log) if log.keeps_everything() => indexed(tables, log, ask).await,
        _ => copies(tables, log, ask).await,
    }
}

/// What a page asks for, as the two read paths take it.
struct Ask {
    /// The entity's partition key.
    pk: String,
    from: i64,
    to: i64,
    cursor: Option<String>,
    limit: usize,
}

/// Time and id: the order of an entity's events (and of the per-event items' sort keys).
type Order = (i64, uuid::Uuid);

/// Where a page's event comes from.
enum Source {
    Copy(Event),
    At(ShardId, Position),
}

fn order_key(order: &Order) -> String {
    sort_key(order.0, &order.1)
}

fn parse_order(text: &str) -> Option<Order> {
    let (time, id) = text.split_once('#')?;
    if time.len() != 20 || !time.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((time.parse().ok()?, uuid::Uuid::try_parse(id).ok()?))
}

async fn indexed(tables: &dyn Table, log: &dyn EventLog, ask: Ask) -> Result<EventsPage> {
    let Ask {
        pk,
        from,
        to,
        cursor,
        limit,
    } = ask;
    // Keys clamp times before the epoch to 0; so do the bounds.
    let (from, to) = (from.max(0), to.max(0));
    let after = match cursor.as_deref() {
        Some(text) => {
            Some(parse_order(text).ok_or(Error::Storage(shoal_storage::Error::InvalidCursor))?)
        }
        None => None,
    };
    let before = |order: &Order| after.is_none_or(|after| *order < after);
    // Every event of the page is in `found`, plus at least one more when there is a next page.
    let mut found: BTreeMap<Order, Source> = BTreeMap::new();

    // Per-event items of earlier layouts: the newest `limit + 1` below the cursor.
    let mut upper = format!("{}$", padded_millis(to));
    if let Some(after) = &after {
        upper = upper.min(order_key(after));
    }
    let query = Query::partition(pk.clone())
        .range(SortRange::Between(padded_millis(from), upper))
        .reverse()
        .limit(limit + 1);
    for (key, item) in tables.query(TableName::Events, &query).await?.items {
        let order =
            parse_order(&key.sk).ok_or_else(|| Error::corrupt(&key, "not an archive key"))?;
        if !before(&order) {
            continue;
        }
        let source = match item_event(&key, &item)? {
            Some(event) => Source::Copy(event),
            None => {
                let (shard, position) = item_position(&key, &item)?
                    .ok_or_else(|| Error::corrupt(&key, "neither an event nor its position"))?;
                Source::At(shard, position)
            }
        };
        found.insert(order, source);
    }

    // Posting lists, newest hour first. A list holds its hour's entries in log order, so an
    // hour is read whole; the scan stops after an hour once `limit + 1` events at or after that
    // hour's start are known (anything older cannot enter the page).
    let top = after.map_or(to, |after| after.0.min(to));
    let mut query = Query::partition(pk.clone())
        .range(postings::range(
            postings::bucket_of(from),
            postings::bucket_of(top),
        ))
        .reverse()
        .limit(LISTS_PER_QUERY);
    let mut hour = None;
    'lists: loop {
        let page = tables.query(TableName::Events, &query).await?;
        for (key, item) in &page.items {
            let bucket = postings::bucket_of_key(key)?;
            if let Some(newer) = hour
                && bucket < newer
                && found.len() > limit
            {
                let known_since = found
                    .iter()
                    .rev()
                    .nth(limit)
                    .is_some_and(|(order, _)| order.0 >= newer);
                if known_since {
                    break 'lists;
                }
            }
            hour = Some(bucket);
            let shard = item
                .get(SHARD_ATTRIBUTE)
                .and_then(Value::as_str)
                .ok_or_else(|| Error::corrupt(key, "a posting list without its shard"))?;
            let Some(Value::B(bytes)) = item.get(POSTINGS_ATTRIBUTE) else {
                return Err(Error::corrupt(key, "a posting list without postings"));
            };
            for entry in postings::decode(key, bytes)? {
                let order = (entry.timestamp, entry.id);
                if entry.timestamp < from || entry.timestamp > to || !before(&order) {
                    continue;
                }
                // An event met twice (two lists of a replay) is one event.
                found
                    .entry(order)
                    .or_insert_with(|| Source::At(shard.to_owned(), entry.position));
            }
        }
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => break,
        }
    }

    let more = found.len() > limit;
    let page: Vec<(Order, Source)> = found.into_iter().rev().take(limit).collect();
    let next = more
        .then(|| page.last().map(|(order, _)| order_key(order)))
        .flatten();
    let mut assembly = Assembly::default();
    for (_, source) in &page {
        match source {
            Source::Copy(event) => assembly.copy(event.clone()),
            Source::At(shard, position) => assembly.at(shard.clone(), position.clone()),
        }
    }
    let events = assembly
        .read(Some(log), |slot| {
            Key::new(pk.clone(), order_key(&page[slot].0))
        })
        .await?;
    Ok(EventsPage { events, next })
}

/// The per-event items of a log that forgets (copies), or of an archive read without its log.
async fn copies(tables: &dyn Table, log: Option<&dyn EventLog>, ask: Ask) -> Result<EventsPage> {
    // `$` sorts after `#`, so the upper bound takes every id of the `to` millisecond.
    let range = SortRange::Between(
        padded_millis(ask.from),
        format!("{}$", padded_millis(ask.to)),
    );
    let query = Query::partition(ask.pk)
        .range(range)
        .reverse()
        .limit(ask.limit)
        .after(ask.cursor);
    let page = tables.query(TableName::Events, &query).await?;
    if page.next.is_none() {
        // The last page: posting lists (which this range never meets) would be events left
        // out without a word.
        let probe = Query::partition(query.pk.clone())
            .range(postings::range(0, i64::MAX))
            .limit(1);
        if !tables
            .query(TableName::Events, &probe)
            .await?
            .items
            .is_empty()
        {
            return Err(no_log());
        }
    }
    let mut assembly = Assembly::default();
    for (key, item) in &page.items {
        match item_event(key, item)? {
            Some(event) => assembly.copy(event),
            None => {
                let (shard, position) = item_position(key, item)?
                    .ok_or_else(|| Error::corrupt(key, "neither an event nor its position"))?;
                assembly.at(shard, position);
            }
        }
    }
    // `assembly` has one slot per item of the page, in the page's order.
    let events = assembly
        .read(log, |slot| page.items[slot].0.clone())
        .await?;
    Ok(EventsPage {
        events,
        next: page.next,
    })
}

/// A page being put together: its events in page order, some still to be read from the log.
#[derive(Default)]
struct Assembly {
    events: Vec<Option<Event>>,
    /// Per shard: the slots waiting for an event from the log, and their positions.
    wanted: BTreeMap<ShardId, (Vec<usize>, Vec<Position>)>,
}

impl Assembly {
    fn copy(&mut self, event: Event) {
        self.events.push(Some(event));
    }

    fn at(&mut self, shard: ShardId, position: Position) {
        let (slots, positions) = self.wanted.entry(shard).or_default();
        slots.push(self.events.len());
        positions.push(position);
        self.events.push(None);
    }

    /// Reads the waiting events from `log` (one read per shard, each log block once), each
    /// checked against the key its slot expects, and returns the page's events as JSON.
    async fn read(
        mut self,
        log: Option<&dyn EventLog>,
        expected: impl Fn(usize) -> Key,
    ) -> Result<Vec<serde_json::Value>> {
        for (shard, (slots, positions)) in std::mem::take(&mut self.wanted) {
            let log = log.ok_or_else(no_log)?;
            let found = log.read_at(&shard, &positions).await?;
            if found.len() != slots.len() {
                return Err(Error::Storage(shoal_storage::Error::Backend(format!(
                    "asked shard {shard} for {} events by position, it answered {}",
                    slots.len(),
                    found.len()
                ))));
            }
            for (slot, event) in slots.into_iter().zip(found) {
                // The log and the index must agree on which event this is.
                let key = expected(slot);
                if event_key(&event) != key {
                    return Err(Error::corrupt(
                        &key,
                        format!("the log holds event {} at this position", event.id),
                    ));
                }
                self.events[slot] = Some(event);
            }
        }
        Ok(self
            .events
            .into_iter()
            .flatten()
            .map(|event| event.to_json())
            .collect())
    }
}

fn no_log() -> Error {
    Error::Storage(shoal_storage::Error::Unavailable(
        "the archive holds log positions and this process has no log".to_owned(),
    ))
}
