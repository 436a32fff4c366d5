//! The `series` projection: metric points per series, raw and rolled up.
//!
//! Layout (`views`; PK `v<version>#<tenant>#series#<series key>`):
//! - `raw#<hour start>`: the points of one UTC hour, last write wins per timestamp (`codec`);
//! - `m1#<day start>`: 1-minute rollups of one UTC day (slot = minute of the day);
//! - `h1#<block start>`: 1-hour rollups of a 32-day block (slot = hour of the block);
//! - `d1#<block start>`: 1-day rollups of a 512-day block (slot = day of the block);
//! - `fence`: the series' retention fences (see "Retention"), written only by the sweep;
//! - per tenant, PK `v<version>#<tenant>#serieslist`, SK `<series key>`: the list of series.
//!
//! Starts are epoch milliseconds padded to 20 digits; blocks are aligned to the epoch, and
//! each coarser item nests whole slots of the finer ones (an hour in a day, a day in a block).
//!
//! # Why replays do not double count
//! Rollups are never incremented. Every rollup slot is *recomputed* from the finer data it
//! covers — minute and hour slots from the raw bucket, day slots from the hour slots — after the
//! batch is folded (`finish`). Raw points are idempotent by timestamp. So a rollup is a pure
//! function of the raw points, and re-delivering an event changes nothing. The per-item `pos`
//! guard still decides *whether* an item takes an event; the recomputation decides *what* it
//! holds, which is right even when a partial DynamoDB flush left the raw bucket ahead of its
//! rollups (the rollup item still takes the re-read event and recomputes from the raw bucket).
//!
//! Poison: a metric event without a finite `value`, or with a negative timestamp, or one more
//! timestamp into a bucket already holding [`MAX_POINTS_PER_BUCKET`] (the item would outgrow
//! DynamoDB's 400 KB). Non-metric events are ignored.
//!
//! # Retention
//! Each tenant's active rules set how long each resolution is kept (`series.retention_days`;
//! [`Retention`] has the defaults: raw 30 days, minute 90, hour 2 years, day forever). An item
//! expires when its whole span ended before `now - retention`. The [`sweep`] enforces it with
//! per-series *fences* (`retention.rs`, SK `fence` in the series partition): it first moves a
//! resolution's fence forward to the start of the item holding the horizon, and one round later
//! deletes that resolution's items below the fence. Fences never move back, not even when a
//! retention grows (what is deleted is gone; it applies from then on).
//!
//! The rule for a point at time `t`, decided in `fold` from the fences loaded with the batch
//! (never from a clock, so every process and every replay decides alike for the same state):
//! - an item below its fence is never written: a late point does not resurrect it;
//! - a rollup slot whose finer data is kept (raw for `m1`/`h1`, the `h1` item for `d1`) is
//!   recomputed from it, as above;
//! - a rollup slot whose finer data is below its fence is *merged into*: the slot already
//!   holds everything its finer data held when that was fenced (the last recomputation saw the
//!   whole bucket), so adding the point keeps count, sum, min and max exact. The item's `pos`
//!   guard still makes a re-delivered event a no-op for an item that holds it, so a replay does
//!   not double count;
//! - a point below every fence is dropped (`shoal_projector_series_points_expired_total`).
//!
//! What the raw bucket did and a merged slot cannot: inside an expired hour a point whose
//! timestamp the deleted bucket already held is a new point (count and sum grow; last write
//! wins per timestamp only while the raw bucket exists), and `last` is the value merged last in
//! log order, not the latest timestamp. Re-delivery of the same event is still not counted twice.
//!
//! A full re-projection (a new projection version, or a fresh store) starts without fences:
//! every point goes to raw and the rollups are exact; the sweep then fences and deletes what the
//! retention no longer keeps, and points the replay reaches after that are merged as above.
//! Either way, each rollup a resolution keeps ends up with the aggregates of all the points of
//! its slot (the replay property test in `tests/replay.rs` checks this with sweeps between
//! batches).

/// Public for the criterion benches (`benches/hot_paths.rs`), not a stable API.
pub mod codec;
mod read;
mod retention;
pub mod sweep;

pub use read::{
    RangeAsk, Resolution, SeriesList, SeriesPoint, Serving, fences, fences_of, list, read_range,
    read_ranges, serving,
};
pub use retention::{FENCE_SK, Fences, Retention};

use crate::keys::views_pk;
use crate::projection::{Derived, State};
use crate::{Cache, Error, PoisonError, Projection, Result};
use shoal_schemas::{Event, EventKind, Position};
use shoal_storage::{Item, Key, TableName, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const NAME: &str = "series";
pub const VERSION: u32 = 1;
pub const MAX_POINTS_PER_BUCKET: usize = 20_000;

pub(crate) const MINUTE: i64 = 60_000;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub(crate) const DAY: i64 = 24 * HOUR;
/// Span of one raw item, of one `m1` item, of one `h1` item, of one `d1` item.
pub(crate) const RAW_SPAN: i64 = HOUR;
pub(crate) const M1_SPAN: i64 = DAY;
pub(crate) const H1_SPAN: i64 = 32 * DAY;
pub(crate) const D1_SPAN: i64 = 512 * DAY;

/// count, sum, min, max and last of the points in a slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agg {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

impl Agg {
    pub(crate) fn of_point(value: f64) -> Agg {
        Agg {
            count: 1,
            sum: value,
            min: value,
            max: value,
            last: value,
        }
    }

    /// `later` follows `self` in time.
    pub(crate) fn merge(self, later: Agg) -> Agg {
        Agg {
            count: self.count + later.count,
            sum: self.sum + later.sum,
            min: self.min.min(later.min),
            max: self.max.max(later.max),
            last: later.last,
        }
    }

    /// The points in time order, folded; `None` when there are none.
    pub(crate) fn of_points(points: impl Iterator<Item = f64>) -> Option<Agg> {
        points.map(Agg::of_point).reduce(Agg::merge)
    }
}

/// A raw bucket's state.
pub(crate) struct RawBucket {
    start: i64,
    name: Option<String>,
    points: BTreeMap<i64, f64>,
}

/// A rollup item's state; `dirty` are slots to recompute in `finish` (not stored).
pub(crate) struct Rollup {
    slots: BTreeMap<u32, Agg>,
    dirty: BTreeSet<u32>,
}

fn floor(timestamp: i64, span: i64) -> i64 {
    timestamp.div_euclid(span) * span
}

pub(crate) fn series_pk(version: u32, tenant: &str, series: &str) -> String {
    views_pk(version, tenant, "series", Some(series))
}

pub(crate) fn list_pk(version: u32, tenant: &str) -> String {
    views_pk(version, tenant, "serieslist", None)
}

pub(crate) fn item_sk(prefix: &str, start: i64) -> String {
    // Four per point, twice (keys and fold): one exact allocation, no formatter.
    let mut sk = String::with_capacity(prefix.len() + 21);
    sk.push_str(prefix);
    sk.push('#');
    crate::keys::push_padded_millis(&mut sk, start);
    sk
}

/// The four item keys one point at `timestamp` touches: raw, m1, h1, d1.
fn point_keys(pk: &str, timestamp: i64) -> [Key; 4] {
    [
        Key::new(pk, item_sk("raw", floor(timestamp, RAW_SPAN))),
        Key::new(pk, item_sk("m1", floor(timestamp, M1_SPAN))),
        Key::new(pk, item_sk("h1", floor(timestamp, H1_SPAN))),
        Key::new(pk, item_sk("d1", floor(timestamp, D1_SPAN))),
    ]
}

fn sk_start(key: &Key) -> Option<(&str, i64)> {
    let (prefix, start) = key.sk.split_once('#')?;
    Some((prefix, crate::keys::parse_padded(start)?))
}

/// The series projection.
#[derive(Debug, Default)]
pub struct Series;

fn point(event: &Event) -> std::result::Result<Option<f64>, PoisonError> {
    if event.kind != EventKind::Metric {
        return Ok(None);
    }
    match event.value {
        Some(value) if value.is_finite() => {}
        _ => return Err(PoisonError::new("a metric point needs a finite value")),
    }
    if event.timestamp < 0 {
        return Err(PoisonError::new(
            "a metric point needs a timestamp after 1970",
        ));
    }
    Ok(event.value)
}

impl Projection for Series {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn table(&self) -> TableName {
        TableName::Views
    }

    fn keys(&self, event: &Event, keys: &mut Vec<Key>) {
        if event.kind == EventKind::Metric && event.timestamp >= 0 {
            let pk = series_pk(VERSION, &event.tenant, &event.entity);
            keys.push(Key::new(pk.clone(), FENCE_SK));
            keys.extend(point_keys(&pk, event.timestamp));
        }
    }

    fn decode(&self, key: &Key, item: Option<&Item>) -> Result<State> {
        if key.sk == FENCE_SK {
            return Ok(Box::new(Fences::stored(item)));
        }
        let (prefix, start) = sk_start(key).ok_or_else(|| Error::corrupt(key, "bad sort key"))?;
        let bytes = item
            .and_then(|item| item.get("data"))
            .and_then(Value::as_bytes);
        if prefix == "raw" {
            let points = match bytes {
                Some(bytes) => codec::decode_points(start, bytes)
                    .map_err(|detail| Error::corrupt(key, detail))?,
                None => BTreeMap::new(),
            };
            let name = item
                .and_then(|item| item.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            return Ok(Box::new(RawBucket {
                start,
                name,
                points,
            }));
        }
        let slots = match bytes {
            Some(bytes) => codec::decode_slots(bytes)
                .map_err(|detail| Error::corrupt(key, detail))?
                .into_iter()
                .collect(),
            None => BTreeMap::new(),
        };
        Ok(Box::new(Rollup {
            slots,
            dirty: BTreeSet::new(),
        }))
    }

    fn fold(
        &self,
        event: &Event,
        _position: &Position,
        cache: &mut Cache,
    ) -> std::result::Result<(), PoisonError> {
        let Some(value) = point(event)? else {
            return Ok(());
        };
        let timestamp = event.timestamp;
        let pk = series_pk(VERSION, &event.tenant, &event.entity);
        let [raw, m1, h1, d1] = point_keys(&pk, timestamp);
        // Read once per batch and never written by the projector: every event of the batch
        // decides against the same fences (see "Retention" in the module docs).
        let fences = cache
            .peek::<Fences>(&Key::new(pk, FENCE_SK))
            .copied()
            .unwrap_or_default();
        let raw_kept = !fences.expired(Resolution::Raw, timestamp);
        if raw_kept
            && let Some(bucket) = cache.peek::<RawBucket>(&raw)
            && bucket.points.len() >= MAX_POINTS_PER_BUCKET
            && !bucket.points.contains_key(&timestamp)
        {
            return Err(PoisonError::new("the series bucket of this hour is full"));
        }
        if Resolution::ALL
            .iter()
            .all(|resolution| fences.expired(*resolution, timestamp))
        {
            // Older than every resolution keeps: nothing to write.
            crate::telemetry::record_series_point_expired();
            return Ok(());
        }
        if raw_kept && let Some(bucket) = cache.get_mut::<RawBucket>(&raw) {
            bucket.points.insert(timestamp, value);
            if bucket.name.is_none() {
                bucket.name = Some(event.name.clone());
            }
        }
        // (item, its resolution, slot, whether the finer data it is computed from is kept)
        let slots = [
            (
                m1,
                Resolution::Minute,
                ((timestamp - floor(timestamp, M1_SPAN)) / MINUTE) as u32,
                raw_kept,
            ),
            (
                h1,
                Resolution::Hour,
                ((timestamp - floor(timestamp, H1_SPAN)) / HOUR) as u32,
                raw_kept,
            ),
            (
                d1,
                Resolution::Day,
                ((timestamp - floor(timestamp, D1_SPAN)) / DAY) as u32,
                !fences.expired(Resolution::Hour, timestamp),
            ),
        ];
        for (key, resolution, slot, source_kept) in slots {
            if fences.expired(resolution, timestamp) {
                // Never resurrect an expired item.
                continue;
            }
            let Some(rollup) = cache.get_mut::<Rollup>(&key) else {
                continue;
            };
            if source_kept {
                rollup.dirty.insert(slot);
            } else {
                // The finer data is gone: this slot is the only record of it, so the point is
                // merged in; the item's `pos` guard keeps a re-delivered event from counting twice.
                let point = Agg::of_point(value);
                let merged = rollup
                    .slots
                    .get(&slot)
                    .map_or(point, |stored| stored.merge(point));
                rollup.slots.insert(slot, merged);
            }
        }
        Ok(())
    }

    fn finish(&self, cache: &mut Cache) -> Result<()> {
        let mut changed = cache.changed_keys();
        // m1 and h1 read raw buckets; d1 reads h1 items, so it goes last.
        changed.sort_by_key(|key| key.sk.starts_with("d1#"));
        for key in changed {
            let Some((prefix, start)) = sk_start(&key) else {
                continue;
            };
            let (slot_span, source_prefix, source_span) = match prefix {
                "m1" => (MINUTE, "raw", RAW_SPAN),
                "h1" => (HOUR, "raw", RAW_SPAN),
                "d1" => (DAY, "h1", H1_SPAN),
                _ => continue,
            };
            let dirty = match cache.changed_mut::<Rollup>(&key) {
                Some(rollup) => std::mem::take(&mut rollup.dirty),
                None => continue,
            };
            let mut recomputed = Vec::with_capacity(dirty.len());
            for slot in dirty {
                let slot_start = start + i64::from(slot) * slot_span;
                let source = Key::new(
                    key.pk.clone(),
                    item_sk(source_prefix, floor(slot_start, source_span)),
                );
                let slot_end = slot_start + slot_span;
                let agg = if source_prefix == "raw" {
                    cache.peek::<RawBucket>(&source).and_then(|bucket| {
                        Agg::of_points(bucket.points.range(slot_start..slot_end).map(|(_, v)| *v))
                    })
                } else {
                    cache.peek::<Rollup>(&source).and_then(|hours| {
                        let first = ((slot_start - floor(slot_start, H1_SPAN)) / HOUR) as u32;
                        hours
                            .slots
                            .range(first..first + 24)
                            .map(|(_, agg)| *agg)
                            .reduce(Agg::merge)
                    })
                };
                recomputed.push((slot, agg));
            }
            if let Some(rollup) = cache.changed_mut::<Rollup>(&key) {
                for (slot, agg) in recomputed {
                    match agg {
                        Some(agg) => rollup.slots.insert(slot, agg),
                        None => rollup.slots.remove(&slot),
                    };
                }
            }
        }
        Ok(())
    }

    fn encode(&self, key: &Key, state: &State, derived: &mut Vec<Derived>) -> Result<Item> {
        let mut item = Item::new();
        if let Some(bucket) = state.downcast_ref::<RawBucket>() {
            item.insert(
                "data".into(),
                Value::B(codec::encode_points(bucket.start, &bucket.points)),
            );
            item.insert("points".into(), Value::N(bucket.points.len() as f64));
            if let Some(name) = &bucket.name {
                item.insert("name".into(), Value::S(name.clone()));
                if let Some((tenant, series)) = split_series_pk(&key.pk) {
                    let mut entry = Item::new();
                    entry.insert("name".into(), Value::S(name.clone()));
                    derived.push(Derived::Put {
                        table: TableName::Views,
                        key: Key::new(list_pk(VERSION, tenant), series),
                        item: entry,
                    });
                }
            }
            return Ok(item);
        }
        let rollup = state
            .downcast_ref::<Rollup>()
            .ok_or_else(|| Error::corrupt(key, "unexpected state"))?;
        let block = slots_per_block(&key.sk);
        item.insert(
            "data".into(),
            Value::B(codec::encode_slots(&rollup.slots, block)),
        );
        Ok(item)
    }
}

/// Slots per block of a rollup item (`codec`, slots v3): an hour of minute slots, a day of hour
/// slots, 32 day slots. A range read decodes only the blocks its range touches, and dashboards
/// ask for about that much: the last hour at one minute, a day at one hour.
fn slots_per_block(sk: &str) -> u32 {
    match sk.split_once('#').map(|(prefix, _)| prefix) {
        Some("m1") => 60,
        Some("h1") => 24,
        _ => 32,
    }
}

/// `(tenant, series)` of a series partition key.
fn split_series_pk(pk: &str) -> Option<(&str, &str)> {
    let rest = pk.split_once('#')?.1;
    let (tenant, rest) = rest.split_once('#')?;
    let series = rest.strip_prefix("series#")?;
    Some((tenant, series))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest() {
        let pk = series_pk(1, "acme", "cpu{host=a}");
        assert_eq!(pk, "v1#acme#series#cpu{host=a}");
        assert_eq!(split_series_pk(&pk), Some(("acme", "cpu{host=a}")));
        let [raw, m1, ..] = point_keys(&pk, DAY + HOUR + 5);
        assert_eq!(raw.sk, item_sk("raw", DAY + HOUR));
        assert_eq!(m1.sk, item_sk("m1", DAY));
        assert_eq!(D1_SPAN % H1_SPAN, 0);
    }

    #[test]
    fn agg_merges_in_time_order() {
        let agg = Agg::of_points([3.0, -1.0, 2.0].into_iter()).unwrap();
        assert_eq!(
            agg,
            Agg {
                count: 3,
                sum: 4.0,
                min: -1.0,
                max: 3.0,
                last: 2.0
            }
        );
    }
}
