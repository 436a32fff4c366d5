//! The `entities` projection: per tenant and entity, first/last seen, latest traits, event
//! counts per name per day, totals of numeric properties; and a per-tenant index for listing.
//!
//! Layout (`views`; see `docs/read-models.md`):
//! - PK `v<version>#<tenant>#entity#<entity>`, SK `profile`: `state` ([`Profile`] as bytes; see
//!   [`codec`]), `first_seen`, `last_seen`;
//! - same PK, SK `day#<YYYY-MM-DD>` (UTC day of the event time): `counts`, a map of event name →
//!   count that day;
//! - PK `v<version>#<tenant>#entities`, SK `<last_seen, 20 digits>#<entity>`: the index entry
//!   (`entity`, `first_seen`, `last_seen`, `traits` as JSON), derived from the profile and
//!   committed with it (the old entry is deleted when `last_seen` moves).
//!
//! Event names counted: a `track` event counts under its name; other kinds under `$<kind>`
//! (`$identify`, `$page`, …). Totals: each numeric top-level property of a `track` event adds to
//! `<event name>.<property>`. Traits: the properties of `identify` and `group` events are merged
//! into the traits, later events (in log order) overwriting earlier keys.
//!
//! Idempotence: every item is read-modify-write under the per-item `pos` guard (`Cache`), and the
//! index entry is a pure function of the profile.
//!
//! Poison: properties that are not a JSON object; a total that would overflow to infinity; an
//! event that would grow the profile past [`size::MAX_ITEM_BYTES`] (too many distinct event
//! names, numeric properties or traits for one entity: see [`size`]).
//! Metric events are ignored (they belong to `series`).

mod codec;
mod read;
mod size;

pub use read::{
    EntityPage, EntityView, EventCountFilter, ListQuery, SortOrder, event_counts, get,
    get_with_counts, list,
};

use crate::keys::{padded_millis, views_pk};
use crate::projection::{Derived, State};
use crate::{Cache, Error, PoisonError, Projection, Result};
use serde::{Deserialize, Serialize};
use shoal_schemas::{Event, EventKind, Position};
use shoal_storage::{Item, Key, TableName, Value};
use std::collections::BTreeMap;

pub const NAME: &str = "entities";
pub const VERSION: u32 = 1;
const PROFILE_SK: &str = "profile";

/// An entity's aggregates (the `state` attribute of its profile item).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub traits: serde_json::Map<String, serde_json::Value>,
    pub totals: BTreeMap<String, f64>,
    /// All-time count per event name.
    pub counts: BTreeMap<String, u64>,
    pub events: u64,
}

/// The profile state plus where its index entry was when loaded, and its stored sizes, kept
/// up to date as events are applied.
pub(crate) struct ProfileState {
    profile: Profile,
    indexed_last_seen: Option<i64>,
    sizes: codec::Sizes,
}

pub(crate) struct DayCounts(BTreeMap<String, u64>);

pub(crate) fn entity_pk(version: u32, tenant: &str, entity: &str) -> String {
    views_pk(version, tenant, "entity", Some(entity))
}

pub(crate) fn index_pk(version: u32, tenant: &str) -> String {
    views_pk(version, tenant, "entities", None)
}

pub(crate) fn index_sk(last_seen: i64, entity: &str) -> String {
    format!("{}#{entity}", padded_millis(last_seen))
}

/// The first millisecond of the year 10000: below it (and from the epoch) a day is four-digit
/// year, month, day, computed without chrono's formatter.
const YEAR_10000: i64 = 253_402_300_800_000;

/// `YYYY-MM-DD` of a time (UTC) appended to `text`. Two day keys per event make this a hot path, so the common
/// range is plain arithmetic (the civil-from-days algorithm, proleptic Gregorian like chrono);
/// anything else goes through chrono, which defines the format.
fn push_day(text: &mut String, millis: i64) {
    if !(0..YEAR_10000).contains(&millis) {
        let day = chrono::DateTime::from_timestamp_millis(millis)
            .map(|time| time.format("%Y-%m-%d").to_string());
        text.push_str(day.as_deref().unwrap_or("0000-00-00"));
        return;
    }
    let (year, month, day) = civil_from_days(millis / crate::series::DAY);
    let digits = |text: &mut String, value: i64, width: u32| {
        for power in (0..width).rev() {
            let digit = (value / 10_i64.pow(power)) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
    };
    digits(text, year, 4);
    text.push('-');
    digits(text, month, 2);
    text.push('-');
    digits(text, day, 2);
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (not negative); Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(crate) fn day_sk(millis: i64) -> String {
    let mut sk = String::with_capacity(14);
    sk.push_str("day#");
    push_day(&mut sk, millis);
    sk
}

/// The name an event counts under (borrowed for `track`, the common case: projections call
/// this once per event).
pub fn counted_name(event: &Event) -> std::borrow::Cow<'_, str> {
    match event.kind {
        EventKind::Track => std::borrow::Cow::Borrowed(event.name.as_str()),
        other => std::borrow::Cow::Owned(format!("${}", other.as_str())),
    }
}

/// The entities projection.
#[derive(Debug, Default)]
pub struct Entities;

impl Projection for Entities {
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
        if event.kind == EventKind::Metric {
            return;
        }
        let pk = entity_pk(VERSION, &event.tenant, &event.entity);
        keys.push(Key::new(pk.clone(), PROFILE_SK));
        keys.push(Key::new(pk, day_sk(event.timestamp)));
    }

    fn decode(&self, key: &Key, item: Option<&Item>) -> Result<State> {
        if key.sk == PROFILE_SK {
            let (profile, sizes) = match item.and_then(|item| item.get("state")) {
                Some(state) => codec::decode_sized(key, state)?,
                None => {
                    let profile = Profile::default();
                    let sizes = codec::sizes(key, &profile)?;
                    (profile, sizes)
                }
            };
            let indexed_last_seen = profile.last_seen;
            return Ok(Box::new(ProfileState {
                profile,
                indexed_last_seen,
                sizes,
            }));
        }
        let mut counts = BTreeMap::new();
        if let Some(stored) = item.and_then(|item| item.get("counts")) {
            codec::for_each_count(key, stored, |name, count| {
                counts.insert(name.to_owned(), count);
            })?;
        }
        Ok(Box::new(DayCounts(counts)))
    }

    fn fold(
        &self,
        event: &Event,
        _position: &Position,
        cache: &mut Cache,
    ) -> std::result::Result<(), PoisonError> {
        if event.kind == EventKind::Metric {
            return Ok(());
        }
        // Validate everything before touching the cache.
        let properties = match serde_json::from_str::<serde_json::Value>(&event.properties) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(PoisonError::new("properties are not a JSON object")),
        };
        let name = counted_name(event);
        let pk = entity_pk(VERSION, &event.tenant, &event.entity);
        let profile_key = Key::new(pk.clone(), PROFILE_SK);
        let day_key = Key::new(pk, day_sk(event.timestamp));
        let numeric: Vec<(String, f64)> = if event.kind == EventKind::Track {
            properties
                .iter()
                .filter_map(|(key, value)| Some((format!("{name}.{key}"), value.as_f64()?)))
                .collect()
        } else {
            Vec::new()
        };
        let merges_traits = matches!(event.kind, EventKind::Identify | EventKind::Group);
        // The traits' text length after this event, when it merges traits: computed once, for
        // the size check and then the update.
        let mut merged_text = None;
        if let Some(state) = cache.peek::<ProfileState>(&profile_key) {
            for (total, value) in &numeric {
                let sum = state.profile.totals.get(total).copied().unwrap_or(0.0) + value;
                if !sum.is_finite() {
                    return Err(PoisonError::new(format!("the total {total} overflows")));
                }
            }
            if merges_traits {
                merged_text = Some(size::merged_traits(
                    &state.profile.traits,
                    state.sizes.traits,
                    &properties,
                ));
            }
            check_profile_size(state, &name, &numeric, event.timestamp, merged_text)?;
        }
        if let Some(state) = cache.get_mut::<ProfileState>(&profile_key) {
            let ProfileState { profile, sizes, .. } = state;
            let mut grown = sizes.state as isize
                + size::seen_growth(profile, event.timestamp)
                + size::events_growth(profile.events) as isize;
            profile.first_seen = Some(
                profile
                    .first_seen
                    .map_or(event.timestamp, |t| t.min(event.timestamp)),
            );
            profile.last_seen = Some(
                profile
                    .last_seen
                    .map_or(event.timestamp, |t| t.max(event.timestamp)),
            );
            profile.events += 1;
            grown += increment(&mut profile.counts, &name) as isize;
            let (totals_before, mut added) = (profile.totals.len(), 0);
            for (total, value) in numeric {
                match profile.totals.get_mut(&total) {
                    Some(sum) => *sum += value,
                    None => {
                        grown += size::total_entry(total.len()) as isize;
                        added += 1;
                        profile.totals.insert(total, value);
                    }
                }
            }
            grown += size::map_prefix(totals_before, added) as isize;
            if let Some(text) = merged_text {
                grown += size::traits(text) as isize - size::traits(sizes.traits) as isize;
                sizes.traits = text;
                profile.traits.extend(properties);
            }
            sizes.state = grown.max(0) as usize;
        }
        if let Some(DayCounts(counts)) = cache.get_mut::<DayCounts>(&day_key) {
            increment(counts, &name);
        }
        Ok(())
    }

    fn encode(&self, key: &Key, state: &State, derived: &mut Vec<Derived>) -> Result<Item> {
        let mut item = Item::new();
        if let Some(DayCounts(counts)) = state.downcast_ref::<DayCounts>() {
            let counts = codec::encode_counts(key, counts)?;
            // Smaller than the profile, whose size is bounded (see `size`).
            debug_assert!(counts.len() <= size::MAX_ITEM_BYTES, "{key:?}");
            item.insert("counts".into(), Value::B(counts));
            return Ok(item);
        }
        let ProfileState {
            profile,
            indexed_last_seen,
            sizes,
        } = state
            .downcast_ref::<ProfileState>()
            .ok_or_else(|| Error::corrupt(key, "unexpected state"))?;
        let traits = codec::traits_text(key, profile)?;
        let state = codec::encode(key, profile, &traits)?;
        debug_assert_eq!(
            (state.len(), traits.len()),
            (sizes.state, sizes.traits),
            "{key:?}: profile's size"
        );
        item.insert("state".into(), Value::B(state));
        let (Some(first_seen), Some(last_seen)) = (profile.first_seen, profile.last_seen) else {
            return Ok(item);
        };
        item.insert("first_seen".into(), Value::N(first_seen as f64));
        item.insert("last_seen".into(), Value::N(last_seen as f64));
        let (tenant, entity) =
            split_entity_pk(&key.pk).ok_or_else(|| Error::corrupt(key, "bad entity key"))?;
        let index_key =
            |last_seen| Key::new(index_pk(VERSION, tenant), index_sk(last_seen, entity));
        if let Some(old) = indexed_last_seen.filter(|old| *old != last_seen) {
            derived.push(Derived::Delete {
                table: TableName::Views,
                key: index_key(old),
            });
        }
        let mut entry = Item::new();
        entry.insert("entity".into(), Value::S(entity.to_owned()));
        entry.insert("first_seen".into(), Value::N(first_seen as f64));
        entry.insert("last_seen".into(), Value::N(last_seen as f64));
        // The index entry's traits are JSON text of an object, `{}` when there are none.
        let traits = if traits.is_empty() {
            "{}".to_owned()
        } else {
            traits
        };
        entry.insert("traits".into(), Value::S(traits));
        derived.push(Derived::Put {
            table: TableName::Views,
            key: index_key(last_seen),
            item: entry,
        });
        Ok(item)
    }
}

/// Adds one to `name`'s count, allocating the name only the first time it is counted (most
/// events count under a name their item already holds). Returns the bytes the stored map
/// grew by.
fn increment(counts: &mut BTreeMap<String, u64>, name: &str) -> usize {
    let len = counts.len();
    match counts.get_mut(name) {
        Some(count) => {
            *count += 1;
            size::count_growth(Some(*count - 1), name.len(), len)
        }
        None => {
            counts.insert(name.to_owned(), 1);
            size::count_growth(None, name.len(), len)
        }
    }
}

/// Refuses an event that would grow `state`'s stored profile past [`size::MAX_ITEM_BYTES`].
/// The exact growth is looked up only when a bound says the event might reach the limit.
/// `merged_text` is the traits' text length after the event, for an event that merges traits.
fn check_profile_size(
    state: &ProfileState,
    name: &str,
    numeric: &[(String, f64)],
    timestamp: i64,
    merged_text: Option<usize>,
) -> std::result::Result<(), PoisonError> {
    let sizes = state.sizes;
    let traits = merged_text.map_or(0, |text| {
        size::traits(text) as isize - size::traits(sizes.traits) as isize
    });
    let bound = sizes.state as isize + traits + size::profile_growth_bound(name, numeric) as isize;
    if bound <= size::MAX_ITEM_BYTES as isize {
        return Ok(());
    }
    let grown = sizes.state as isize
        + traits
        + size::profile_growth(&state.profile, name, numeric, timestamp);
    if grown > size::MAX_ITEM_BYTES as isize {
        return Err(too_large(grown.max(0) as usize));
    }
    Ok(())
}

/// The poison of an event that would make the profile too large to store.
fn too_large(bytes: usize) -> PoisonError {
    PoisonError::new(format!(
        "the entity's profile would take {bytes} bytes, over the {} an item may: too many \
         distinct event names, numeric properties or traits for one entity",
        size::MAX_ITEM_BYTES
    ))
}

/// `(tenant, entity)` of an entity partition key.
fn split_entity_pk(pk: &str) -> Option<(&str, &str)> {
    let rest = pk.split_once('#')?.1;
    let (tenant, rest) = rest.split_once('#')?;
    Some((tenant, rest.strip_prefix("entity#")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layouts() {
        let pk = entity_pk(1, "acme", "user#7");
        assert_eq!(pk, "v1#acme#entity#user#7");
        assert_eq!(split_entity_pk(&pk), Some(("acme", "user#7")));
        assert_eq!(day_sk(0), "day#1970-01-01");
        assert_eq!(day_sk(-1), "day#1969-12-31");
        assert_eq!(index_sk(5, "u"), "00000000000000000005#u");
    }

    #[test]
    fn days_match_chrono() {
        let chrono_day = |millis: i64| {
            let day = chrono::DateTime::from_timestamp_millis(millis).unwrap();
            format!("day#{}", day.format("%Y-%m-%d"))
        };
        // Every day boundary (and the millisecond before it) of 1970..2100, leap days included,
        // then a spread of times up to the end of year 9999.
        let mut samples: Vec<i64> = (0..48_000)
            .flat_map(|day| {
                [
                    day * crate::series::DAY,
                    day * crate::series::DAY + 86_399_999,
                ]
            })
            .collect();
        samples.extend((0..10_000).map(|n| n * (YEAR_10000 / 10_000) + 12_345_678));
        samples.push(YEAR_10000 - 1);
        for millis in samples {
            assert_eq!(day_sk(millis), chrono_day(millis), "{millis}");
        }
        assert_eq!(day_sk(YEAR_10000), chrono_day(YEAR_10000));
    }
}
