//! Reads of the series read model, for the query side.
//!
//! Cost of [`read_range`]: one partition query over the items overlapping the range (a day at
//! 1-minute resolution is one or two `m1` items; a year at 1-hour is about 12 `h1` items).
//!
//! Retention: a resolution holds nothing before its series' fence (`retention.rs`), so
//! [`serving`] picks, for a range, the finest resolution at or above the one the step asks for
//! that still holds the range's start, and says when it had to go coarser.

use super::retention::Fences;
use super::{
    Agg, D1_SPAN, DAY, FENCE_SK, H1_SPAN, HOUR, M1_SPAN, MINUTE, RAW_SPAN, VERSION, codec,
};
use super::{item_sk, list_pk, series_pk};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use shoal_storage::{Page, Query, SortRange, Table, TableName, Value};

/// A stored resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
    Day,
}

impl Resolution {
    /// Finest first.
    pub const ALL: [Resolution; 4] = [
        Resolution::Raw,
        Resolution::Minute,
        Resolution::Hour,
        Resolution::Day,
    ];

    /// The slot length in ms (`None` for raw points).
    pub fn millis(self) -> Option<i64> {
        match self {
            Resolution::Raw => None,
            Resolution::Minute => Some(MINUTE),
            Resolution::Hour => Some(HOUR),
            Resolution::Day => Some(DAY),
        }
    }

    /// The coarsest stored resolution whose slots divide `step` (ms): what serves a query with
    /// that step from the fewest points.
    pub fn coarsest_for(step: i64) -> Resolution {
        [Resolution::Day, Resolution::Hour, Resolution::Minute]
            .into_iter()
            .find(|resolution| {
                resolution
                    .millis()
                    .is_some_and(|slot| step >= slot && step % slot == 0)
            })
            .unwrap_or(Resolution::Raw)
    }

    /// Item prefix, item span and slot span.
    pub(crate) fn layout(self) -> (&'static str, i64, i64) {
        match self {
            Resolution::Raw => ("raw", RAW_SPAN, 1),
            Resolution::Minute => ("m1", M1_SPAN, MINUTE),
            Resolution::Hour => ("h1", H1_SPAN, HOUR),
            Resolution::Day => ("d1", D1_SPAN, DAY),
        }
    }
}

/// The stored fences of one series (all 0 before its first retention sweep).
pub async fn fences(tables: &dyn Table, tenant: &str, series: &str) -> Result<Fences> {
    let item = tables
        .get(TableName::Views, &fence_key(tenant, series))
        .await?;
    Ok(Fences::stored(item.as_ref()))
}

/// The stored fences of each of `series`, in their order, with one batch read: a query over
/// many series reads every fence before any range.
pub async fn fences_of(tables: &dyn Table, tenant: &str, series: &[String]) -> Result<Vec<Fences>> {
    let keys: Vec<shoal_storage::Key> = series
        .iter()
        .map(|series| fence_key(tenant, series))
        .collect();
    let items = tables.batch_get(TableName::Views, &keys).await?;
    Ok(items
        .iter()
        .map(|item| Fences::stored(item.as_ref()))
        .collect())
}

fn fence_key(tenant: &str, series: &str) -> shoal_storage::Key {
    shoal_storage::Key::new(series_pk(VERSION, tenant, series), FENCE_SK)
}

/// Which resolution serves a range, given the one its step asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Serving {
    pub resolution: Resolution,
    /// The served resolution holds nothing before this time (ms): the range starts before what
    /// even the coarsest resolution keeps. `None` when it holds the whole range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_before: Option<i64>,
}

/// The finest resolution, from `wanted` towards coarser ones, whose fence is at or before
/// `from`; when none is, the one that keeps the most (the smallest fence), with the time before
/// which it holds nothing.
pub fn serving(fences: &Fences, wanted: Resolution, from: i64) -> Serving {
    let candidates = Resolution::ALL.into_iter().skip_while(|r| *r != wanted);
    let mut best: Option<Serving> = None;
    for resolution in candidates {
        let fence = fences.get(resolution);
        if fence <= from {
            return Serving {
                resolution,
                expired_before: None,
            };
        }
        if best.is_none_or(|current| current.expired_before.is_some_and(|at| fence < at)) {
            best = Some(Serving {
                resolution,
                expired_before: Some(fence),
            });
        }
    }
    best.unwrap_or(Serving {
        resolution: wanted,
        expired_before: None,
    })
}

/// One point of a range: a raw point (`count` 1) or a rollup slot starting at `t`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub t: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

impl SeriesPoint {
    fn new(t: i64, agg: Agg) -> Self {
        SeriesPoint {
            t,
            count: agg.count,
            sum: agg.sum,
            min: agg.min,
            max: agg.max,
            last: agg.last,
        }
    }
}

/// The points of `series` with `from <= t <= to` (ms) at `resolution`, in time order. An unknown
/// series answers no points (use [`list`] to tell "unknown" from "empty").
pub async fn read_range(
    tables: &dyn Table,
    tenant: &str,
    series: &str,
    from: i64,
    to: i64,
    resolution: Resolution,
) -> Result<Vec<SeriesPoint>> {
    let ask = RangeAsk {
        series,
        from,
        to,
        resolution,
    };
    Ok(read_ranges(tables, tenant, &[ask])
        .await?
        .pop()
        .unwrap_or_default())
}

/// What [`read_ranges`] reads of one series: the points with `from <= t <= to` (ms) at
/// `resolution`.
#[derive(Clone, Copy, Debug)]
pub struct RangeAsk<'a> {
    pub series: &'a str,
    pub from: i64,
    pub to: i64,
    pub resolution: Resolution,
}

/// [`read_range`] of each ask, in the order asked, with one `query_many` for their first
/// pages (the embedded backend reads them from one snapshot, not a transaction each).
pub async fn read_ranges(
    tables: &dyn Table,
    tenant: &str,
    asks: &[RangeAsk<'_>],
) -> Result<Vec<Vec<SeriesPoint>>> {
    if asks.iter().any(|ask| ask.from > ask.to) {
        return Err(Error::InvalidArgument("from is after to".into()));
    }
    let queries: Vec<Query> = asks
        .iter()
        .map(|ask| {
            let (prefix, span, _) = ask.resolution.layout();
            let first_item = ask.from.max(0).div_euclid(span) * span;
            let range =
                SortRange::Between(item_sk(prefix, first_item), item_sk(prefix, ask.to.max(0)));
            Query::partition(series_pk(VERSION, tenant, ask.series)).range(range)
        })
        .collect();
    let firsts = tables.query_many(TableName::Views, &queries).await?;
    let mut out = Vec::with_capacity(asks.len());
    for ((ask, mut query), mut page) in asks.iter().zip(queries).zip(firsts) {
        let mut points = Vec::new();
        loop {
            add_points(ask, &page, &mut points)?;
            match page.next.take() {
                Some(next) => {
                    query = query.after(Some(next));
                    page = tables.query(TableName::Views, &query).await?;
                }
                None => break,
            }
        }
        out.push(points);
    }
    Ok(out)
}

/// Appends the points of `page`'s items that `ask` covers, in time order.
fn add_points(ask: &RangeAsk<'_>, page: &Page, points: &mut Vec<SeriesPoint>) -> Result<()> {
    let (_, _, slot_span) = ask.resolution.layout();
    let covered = ask.from..=ask.to;
    for (key, item) in &page.items {
        let start = key
            .sk
            .split_once('#')
            .and_then(|(_, start)| crate::keys::parse_padded(start))
            .ok_or_else(|| Error::corrupt(key, "bad sort key"))?;
        let Some(bytes) = item.get("data").and_then(Value::as_bytes) else {
            continue;
        };
        if ask.resolution == Resolution::Raw {
            let decoded =
                codec::decode_points(start, bytes).map_err(|detail| Error::corrupt(key, detail))?;
            points.extend(
                decoded
                    .into_iter()
                    .filter(|(t, _)| covered.contains(t))
                    .map(|(t, value)| SeriesPoint::new(t, Agg::of_point(value))),
            );
        } else {
            let Some(wanted) = slots_within(start, slot_span, ask) else {
                continue;
            };
            let decoded = codec::decode_slots_in(bytes, wanted)
                .map_err(|detail| Error::corrupt(key, detail))?;
            // `slots_within` bounded the slots to the range: no filter by time here.
            points.extend(
                decoded
                    .into_iter()
                    .map(|(slot, agg)| SeriesPoint::new(start + i64::from(slot) * slot_span, agg)),
            );
        }
    }
    Ok(())
}

/// The indexes of the slots of an item starting at `start` that `ask` covers (slot `i` starts at
/// `start + i * slot_span`), or `None` when it covers none. Exact, so readers keep every slot it
/// returns without checking its time again.
fn slots_within(
    start: i64,
    slot_span: i64,
    ask: &RangeAsk<'_>,
) -> Option<std::ops::RangeInclusive<u32>> {
    if ask.to < start {
        return None;
    }
    let offset = ask.from.saturating_sub(start).max(0);
    let first = offset / slot_span + i64::from(offset % slot_span != 0);
    let last = ask.to.saturating_sub(start) / slot_span;
    let first = u32::try_from(first).ok()?;
    // Past the last index a slot can have, every slot ends before `ask.to`.
    let last = u32::try_from(last.min(i64::from(u32::MAX))).ok()?;
    (first <= last).then_some(first..=last)
}

/// A page of a tenant's series keys, in key order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesList {
    /// `(series key, metric name)`.
    pub series: Vec<(String, String)>,
    pub next: Option<String>,
}

/// The series of `tenant` whose key starts with `prefix` (all when empty), `limit` a page.
pub async fn list(
    tables: &dyn Table,
    tenant: &str,
    prefix: &str,
    cursor: Option<String>,
    limit: usize,
) -> Result<SeriesList> {
    let range = if prefix.is_empty() {
        SortRange::All
    } else {
        SortRange::Prefix(prefix.to_owned())
    };
    let query = Query::partition(list_pk(VERSION, tenant))
        .range(range)
        .limit(limit)
        .after(cursor);
    let page = tables.query(TableName::Views, &query).await?;
    let series = page
        .items
        .into_iter()
        .map(|(key, item)| {
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (key.sk, name)
        })
        .collect();
    Ok(SeriesList {
        series,
        next: page.next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(start: i64, from: i64, to: i64) -> Option<std::ops::RangeInclusive<u32>> {
        let ask = RangeAsk {
            series: "s",
            from,
            to,
            resolution: Resolution::Minute,
        };
        slots_within(start, MINUTE, &ask)
    }

    #[test]
    fn slots_within_are_the_slots_starting_in_the_range() {
        let day = 20_000 * DAY;
        assert_eq!(within(day, day, day + DAY - 1), Some(0..=1439));
        assert_eq!(within(day, day - DAY, day + 1), Some(0..=0));
        // A slot counts when its start is in the range: 10:00:30 starts after slot 600's start.
        assert_eq!(
            within(day, day + 600 * MINUTE + 30_000, day + 659 * MINUTE),
            Some(601..=659)
        );
        assert_eq!(
            within(day, day + 10, day + 50_000),
            None,
            "no slot starts in it"
        );
        assert_eq!(within(day, day - 2 * DAY, day - 1), None, "before the item");
        assert_eq!(
            within(0, 0, i64::MAX),
            Some(0..=u32::MAX),
            "clamped to the indexes a slot can have"
        );
        assert_eq!(
            within(0, (1 << 32) * MINUTE, i64::MAX),
            None,
            "starts past the last index a slot can have"
        );
    }
}
