//! The `entities` projection: per tenant and entity, first/last seen, latest traits, event
//! counts per name per day, totals of numeric properties; and a per-tenant index for listing.
//!
//! Layout (`views`; see `docs/read-models.md`):
//! - PK `v<version>#<tenant>#entity#<entity>`, SK `profile`: `state` (JSON of [`Profile`]),
//!   `first_seen`, `last_seen`;
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
//! Poison: properties that are not a JSON object; a total that would overflow to infinity.
//! Metric events are ignored (they belong to `series`).

mod read;

pub use read::{
    EntityPage, EntityView, EventCountFilter, ListQuery, SortOrder, event_counts, get, list,
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

/// The profile state plus where its index entry was when loaded.
pub(crate) struct ProfileState {
    profile: Profile,
    indexed_last_seen: Option<i64>,
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

/// `YYYY-MM-DD` of a time (UTC).
pub(crate) fn day_of(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|time| time.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000-00-00".to_owned())
}

pub(crate) fn day_sk(millis: i64) -> String {
    format!("day#{}", day_of(millis))
}

/// The name an event counts under.
pub fn counted_name(event: &Event) -> String {
    match event.kind {
        EventKind::Track => event.name.clone(),
        other => format!("${}", other.as_str()),
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
            let profile: Profile = match item.and_then(|item| item.get("state")) {
                Some(Value::S(text)) => serde_json::from_str(text)
                    .map_err(|error| Error::corrupt(key, error.to_string()))?,
                Some(_) => return Err(Error::corrupt(key, "state is not text")),
                None => Profile::default(),
            };
            let indexed_last_seen = profile.last_seen;
            return Ok(Box::new(ProfileState {
                profile,
                indexed_last_seen,
            }));
        }
        let mut counts = BTreeMap::new();
        if let Some(Value::M(map)) = item.and_then(|item| item.get("counts")) {
            for (name, count) in map {
                counts.insert(name.clone(), count.as_f64().unwrap_or(0.0) as u64);
            }
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
        let numeric: Vec<(String, f64)> = if event.kind == EventKind::Track {
            properties
                .iter()
                .filter_map(|(key, value)| Some((format!("{name}.{key}"), value.as_f64()?)))
                .collect()
        } else {
            Vec::new()
        };
        if let Some(state) = cache.peek::<ProfileState>(&profile_key) {
            for (total, value) in &numeric {
                let sum = state.profile.totals.get(total).copied().unwrap_or(0.0) + value;
                if !sum.is_finite() {
                    return Err(PoisonError::new(format!("the total {total} overflows")));
                }
            }
        }
        if let Some(state) = cache.get_mut::<ProfileState>(&profile_key) {
            let profile = &mut state.profile;
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
            *profile.counts.entry(name.clone()).or_default() += 1;
            for (total, value) in numeric {
                *profile.totals.entry(total).or_default() += value;
            }
            if matches!(event.kind, EventKind::Identify | EventKind::Group) {
                profile.traits.extend(properties);
            }
        }
        if let Some(DayCounts(counts)) =
            cache.get_mut::<DayCounts>(&Key::new(pk, day_sk(event.timestamp)))
        {
            *counts.entry(name).or_default() += 1;
        }
        Ok(())
    }

    fn encode(&self, key: &Key, state: &State, derived: &mut Vec<Derived>) -> Result<Item> {
        let mut item = Item::new();
        if let Some(DayCounts(counts)) = state.downcast_ref::<DayCounts>() {
            let map = counts
                .iter()
                .map(|(name, count)| (name.clone(), Value::N(*count as f64)))
                .collect();
            item.insert("counts".into(), Value::M(map));
            return Ok(item);
        }
        let ProfileState {
            profile,
            indexed_last_seen,
        } = state
            .downcast_ref::<ProfileState>()
            .ok_or_else(|| Error::corrupt(key, "unexpected state"))?;
        let text = serde_json::to_string(profile)
            .map_err(|error| Error::corrupt(key, error.to_string()))?;
        item.insert("state".into(), Value::S(text));
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
        let traits = serde_json::to_string(&profile.traits)
            .map_err(|error| Error::corrupt(key, error.to_string()))?;
        entry.insert("traits".into(), Value::S(traits));
        derived.push(Derived::Put {
            table: TableName::Views,
            key: index_key(last_seen),
            item: entry,
        });
        Ok(item)
    }
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
        assert_eq!(index_sk(5, "u"), "00000000000000000005#u");
    }
}
