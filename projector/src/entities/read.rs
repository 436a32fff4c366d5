//! Reads of the entities read model, for the query side.
//!
//! - [`get`]: one item read.
//! - [`get_with_counts`]: the profile and the window's day counts in one partition range read
//!   (what `GET /v1/entities/{id}` uses).
//! - [`event_counts`]: one partition query over the day items of the window (≤ days in window).
//! - [`list`]: walks the tenant's index partition in `last_seen` order (newest first by
//!   default) within the `last_seen` bounds, filters each entry by traits (held in the entry)
//!   and, when asked, by an event count in a window (the counts of a page's candidates read
//!   together, `Table::query_many`), and stops at `limit` matches or after scanning `max_scan`
//!   entries; the cursor is the last scanned entry's sort key, so a page costs O(scanned
//!   entries), independent of the offset.

use super::{PROFILE_SK, Profile, VERSION, day_sk, entity_pk, index_pk};
use crate::keys::padded_millis;
use crate::{Error, Result};
use serde::Serialize;
use shoal_storage::{Item, Key, Query, SortRange, Table, TableName, Value};
use std::collections::BTreeMap;

/// One entity's aggregates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EntityView {
    pub entity: String,
    #[serde(flatten)]
    pub profile: Profile,
}

/// One entity, or `None` when it was never seen.
pub async fn get(tables: &dyn Table, tenant: &str, entity: &str) -> Result<Option<EntityView>> {
    let key = Key::new(entity_pk(VERSION, tenant, entity), PROFILE_SK);
    let Some(item) = tables.get(TableName::Views, &key).await? else {
        return Ok(None);
    };
    view(entity, &key, &item).map(Some)
}

fn view(entity: &str, key: &Key, item: &Item) -> Result<EntityView> {
    let state = item
        .get("state")
        .ok_or_else(|| Error::corrupt(key, "missing state"))?;
    Ok(EntityView {
        entity: entity.to_owned(),
        profile: super::codec::decode(key, state)?,
    })
}

/// One entity and its counts per event name over the UTC days of `from..=to`, or `None` when
/// it was never seen. One range read instead of [`get`] and [`event_counts`]: the profile and
/// the day items share a partition, and `profile` sorts after every `day#…` key, so the
/// range from the window's first day through `profile` holds both (and the days after the
/// window, if events were stamped in the future: skipped). On DynamoDB that is one round trip
/// fewer; embedded, one read transaction and B-tree descent fewer, and both from one snapshot.
pub async fn get_with_counts(
    tables: &dyn Table,
    tenant: &str,
    entity: &str,
    from: i64,
    to: i64,
) -> Result<Option<(EntityView, BTreeMap<String, u64>)>> {
    if from > to {
        return Err(Error::InvalidArgument("from is after to".into()));
    }
    let last_day = day_sk(to);
    let mut query = Query::partition(entity_pk(VERSION, tenant, entity))
        .range(SortRange::Between(day_sk(from), PROFILE_SK.to_owned()));
    let mut counts = BTreeMap::new();
    loop {
        let page = tables.query(TableName::Views, &query).await?;
        for (key, item) in &page.items {
            if key.sk == PROFILE_SK {
                // The last key of the range: nothing follows it.
                return Ok(Some((view(entity, key, item)?, counts)));
            }
            if key.sk <= last_day {
                add_counts(&mut counts, key, item)?;
            }
        }
        match page.next {
            Some(next) => query = query.after(Some(next)),
            // Day items without a profile: a profile commits with its first day item, so
            // this is an entity never seen.
            None => return Ok(None),
        }
    }
}

/// Counts per event name over the UTC days of `from..=to` (ms; whole days).
pub async fn event_counts(
    tables: &dyn Table,
    tenant: &str,
    entity: &str,
    from: i64,
    to: i64,
) -> Result<BTreeMap<String, u64>> {
    if from > to {
        return Err(Error::InvalidArgument("from is after to".into()));
    }
    let query = counts_query(tenant, entity, from, to);
    let first = tables.query(TableName::Views, &query).await?;
    counts_from(tables, query, first).await
}

fn counts_query(tenant: &str, entity: &str, from: i64, to: i64) -> Query {
    Query::partition(entity_pk(VERSION, tenant, entity))
        .range(SortRange::Between(day_sk(from), day_sk(to)))
}

/// The counts of a [`counts_query`]'s day items, from its first page on.
async fn counts_from(
    tables: &dyn Table,
    mut query: Query,
    mut page: shoal_storage::Page,
) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    loop {
        for (key, item) in &page.items {
            add_counts(&mut counts, key, item)?;
        }
        match page.next.take() {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(counts),
        }
        page = tables.query(TableName::Views, &query).await?;
    }
}

/// Adds a day item's counts to `counts`.
fn add_counts(counts: &mut BTreeMap<String, u64>, key: &Key, item: &Item) -> Result<()> {
    let Some(stored) = item.get("counts") else {
        return Ok(());
    };
    super::codec::for_each_count(key, stored, |name, count| match counts.get_mut(name) {
        Some(total) => *total += count,
        None => {
            counts.insert(name.to_owned(), count);
        }
    })?;
    Ok(())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum SortOrder {
    /// Most recently seen first.
    #[default]
    LastSeenDesc,
    LastSeenAsc,
}

/// "`name` happened between `min` and `max` times in `from..=to`".
#[derive(Clone, Debug, PartialEq)]
pub struct EventCountFilter {
    pub name: String,
    pub from: i64,
    pub to: i64,
    pub min: u64,
    pub max: Option<u64>,
}

/// An entity list request.
#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    pub last_seen_after: Option<i64>,
    pub last_seen_before: Option<i64>,
    /// Every trait must equal the given JSON value.
    pub traits: Vec<(String, serde_json::Value)>,
    pub event_count: Option<EventCountFilter>,
    pub order: SortOrder,
    pub cursor: Option<String>,
    pub limit: usize,
    /// Index entries scanned at most per call (the page may come back short, with a cursor).
    pub max_scan: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            last_seen_after: None,
            last_seen_before: None,
            traits: Vec::new(),
            event_count: None,
            order: SortOrder::default(),
            cursor: None,
            limit: 50,
            max_scan: 10_000,
        }
    }
}

/// One listed entity (from the index entry).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EntitySummary {
    pub entity: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub traits: serde_json::Value,
    /// The filtered event's count in the window, when filtering by one.
    pub event_count: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EntityPage {
    pub entities: Vec<EntitySummary>,
    pub next: Option<String>,
}

fn valid_cursor(cursor: &str) -> bool {
    cursor
        .split_once('#')
        .is_some_and(|(time, _)| time.len() == 20 && time.bytes().all(|b| b.is_ascii_digit()))
}

/// A page of a tenant's entities. See the module docs for the cost.
pub async fn list(tables: &dyn Table, tenant: &str, request: &ListQuery) -> Result<EntityPage> {
    if let Some(cursor) = &request.cursor
        && !valid_cursor(cursor)
    {
        return Err(Error::InvalidArgument("cursor".into()));
    }
    let low = padded_millis(request.last_seen_after.unwrap_or(0));
    let high = format!(
        "{}$",
        padded_millis(request.last_seen_before.unwrap_or(i64::MAX))
    );
    let descending = request.order == SortOrder::LastSeenDesc;
    let (mut low, mut high) = (low, high);
    if let Some(cursor) = &request.cursor {
        // Resume beside the cursor's entry (it is skipped below, the range being inclusive).
        if descending {
            high = cursor.clone()
        } else {
            low = cursor.clone()
        }
    }
    if low > high {
        return Ok(EntityPage::default());
    }
    let mut query = Query::partition(index_pk(VERSION, tenant))
        .range(SortRange::Between(low, high))
        .limit(request.limit.clamp(1, 1000));
    if descending {
        query = query.reverse();
    }
    if let Some(filter) = &request.event_count
        && filter.from > filter.to
    {
        return Err(Error::InvalidArgument("from is after to".into()));
    }
    let mut page_out = EntityPage::default();
    let mut scanned = 0usize;
    loop {
        let page = tables.query(TableName::Views, &query).await?;
        let entries: Vec<_> = page
            .items
            .iter()
            .filter(|(key, _)| request.cursor.as_deref() != Some(key.sk.as_str()))
            .take(request.max_scan - scanned)
            .collect();
        let mut rest = entries.as_slice();
        while !rest.is_empty() {
            // As many as the page still needs (more when few pass), so that a filter's count
            // reads go out together and not many past the last match.
            let wanted = request.limit - page_out.entities.len();
            let (chunk, after) = rest.split_at(wanted.clamp(8, 256).min(rest.len()));
            rest = after;
            let summaries = summaries(tables, tenant, request, chunk).await?;
            for ((key, _), summary) in chunk.iter().zip(summaries) {
                scanned += 1;
                page_out.entities.extend(summary);
                if page_out.entities.len() >= request.limit || scanned >= request.max_scan {
                    page_out.next = Some(key.sk.clone());
                    return Ok(page_out);
                }
            }
        }
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(page_out),
        }
    }
}

/// The summaries of index entries that pass the request's filters, in order (`None` for the
/// rest). An event-count filter reads the day counts of every entry that passed the traits at
/// once (`Table::query_many`: one snapshot embedded, queries in flight together on DynamoDB).
async fn summaries(
    tables: &dyn Table,
    tenant: &str,
    request: &ListQuery,
    entries: &[&(Key, Item)],
) -> Result<Vec<Option<EntitySummary>>> {
    let mut passed = entries
        .iter()
        .map(|(key, item)| summary(request, key, item))
        .collect::<Result<Vec<_>>>()?;
    let Some(filter) = &request.event_count else {
        return Ok(passed);
    };
    let queries: Vec<Query> = passed
        .iter()
        .flatten()
        .map(|summary| counts_query(tenant, &summary.entity, filter.from, filter.to))
        .collect();
    let pages = tables.query_many(TableName::Views, &queries).await?;
    let mut counted = queries.into_iter().zip(pages);
    for slot in &mut passed {
        let Some(summary) = slot else { continue };
        let (query, page) = counted.next().ok_or_else(|| {
            Error::Storage(shoal_storage::Error::Backend(
                "query_many answered fewer pages than queries".into(),
            ))
        })?;
        let counts = counts_from(tables, query, page).await?;
        let count = counts.get(&filter.name).copied().unwrap_or(0);
        if count < filter.min || filter.max.is_some_and(|max| count > max) {
            *slot = None;
        } else {
            summary.event_count = Some(count);
        }
    }
    Ok(passed)
}

/// An index entry's summary if it has every trait asked for (the event count is not filled).
fn summary(request: &ListQuery, key: &Key, item: &Item) -> Result<Option<EntitySummary>> {
    let number = |name: &str| item.get(name).and_then(Value::as_f64).unwrap_or(0.0) as i64;
    let entity = item
        .get("entity")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::corrupt(key, "missing entity"))?;
    let traits: serde_json::Value = match item.get("traits").and_then(Value::as_str) {
        Some(text) => {
            serde_json::from_str(text).map_err(|error| Error::corrupt(key, error.to_string()))?
        }
        None => serde_json::Value::Object(Default::default()),
    };
    if !request
        .traits
        .iter()
        .all(|(name, wanted)| traits.get(name) == Some(wanted))
    {
        return Ok(None);
    }
    Ok(Some(EntitySummary {
        entity: entity.to_owned(),
        first_seen: number("first_seen"),
        last_seen: number("last_seen"),
        traits,
        event_count: None,
    }))
}
