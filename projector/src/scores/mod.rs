//! The `scores` projection: per tenant with rules, one instance per rules version. Each entity
//! has its [`Facts`] (the day counts, last times and traits its tenant's rules read) and the
//! latest evaluation (score, band, stage) with a history of band and stage changes.
//!
//! Layout (`views`; see `docs/read-models.md`):
//! - PK `v<rules version>#<tenant>#score#<entity>`, SK `state`: `state` (postcard of
//!   [`ScoreState`]), `entity`, `score`, `band`, `stage`, `as_of`;
//! - PK `v<rules version>#<tenant>#scores`, SK `<score, 3 digits>#<entity>`: the index entry
//!   (`entity`, `score`, `band`, `stage`), derived from the state and committed with it.
//!
//! Evaluation time: an event is evaluated as of `max(event time, the entity's previous
//! evaluation time)`: the same log gives the same states and history on every replay (a
//! back-test replays history as it happened), and a late event never moves an entity back in
//! time. The clock moves entities forward separately ([`sweep`]): windows slide with no new
//! events, so a customer who stops logging in turns Bad without sending anything.
//!
//! The projection's name is `scores.<tenant>`: each instance has its own checkpoints, so a
//! rebuild under a new version runs beside the live one and is activated on its own.

pub mod manager;
pub mod read;
pub mod sweep;
pub mod versions;

use crate::entities::counted_name;
use crate::keys::views_pk;
use crate::projection::{Derived, State};
use crate::{Cache, Error, PoisonError, Projection, Result};
use serde::{Deserialize, Serialize};
use shoal_rules::{Band, Facts, Rules};
use shoal_schemas::{Event, EventKind, Position};
use shoal_storage::{Item, Key, TableName, Value};
use std::sync::Arc;

pub const NAME_PREFIX: &str = "scores.";
const STATE_SK: &str = "state";
/// Band and stage changes kept per entity (the oldest are dropped).
pub const HISTORY_LIMIT: usize = 100;

/// The projection name of a tenant's scores.
pub fn projection_name(tenant: &str) -> String {
    format!("{NAME_PREFIX}{tenant}")
}

pub(crate) fn state_key(version: u32, tenant: &str, entity: &str) -> Key {
    Key::new(views_pk(version, tenant, "score", Some(entity)), STATE_SK)
}

pub(crate) fn index_pk(version: u32, tenant: &str) -> String {
    views_pk(version, tenant, "scores", None)
}

pub(crate) fn index_sk(score: u8, entity: &str) -> String {
    format!("{score:03}#{entity}")
}

/// What changed an entity's evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// One of its events.
    Event,
    /// The clock: a window slid, a date came closer.
    Clock,
}

/// One change of band or stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The evaluation time of the change (ms).
    pub at: i64,
    pub score: u8,
    pub band: Band,
    pub stage: Option<String>,
    pub cause: Cause,
}

/// An entity's stored state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreState {
    pub facts: Facts,
    /// The time of the latest evaluation (ms); 0 before the first.
    pub as_of: i64,
    pub score: u8,
    /// `None` before the first evaluation.
    pub band: Option<Band>,
    pub stage: Option<String>,
    pub history: Vec<Change>,
}

impl ScoreState {
    /// Re-evaluates as of `as_of` (never earlier than the last evaluation); true when the
    /// score, band or stage changed.
    pub fn evaluate(&mut self, rules: &Rules, as_of: i64, cause: Cause) -> bool {
        let as_of = as_of.max(self.as_of);
        let judged = rules.judge(&self.facts, as_of);
        self.as_of = as_of;
        let moved = self.band != Some(judged.band) || self.stage.as_deref() != judged.stage;
        let changed = moved || self.score != judged.score;
        if moved {
            let stage = judged.stage.map(str::to_owned);
            self.history.push(Change {
                at: as_of,
                score: judged.score,
                band: judged.band,
                stage: stage.clone(),
                cause,
            });
            if self.history.len() > HISTORY_LIMIT {
                let excess = self.history.len() - HISTORY_LIMIT;
                self.history.drain(..excess);
            }
            self.stage = stage;
        }
        self.score = judged.score;
        self.band = Some(judged.band);
        changed
    }

    pub(crate) fn encode(&self) -> std::result::Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<ScoreState, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// What an index entry says, to know when it must move.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Indexed {
    score: u8,
    band: Band,
    stage: Option<String>,
}

impl Indexed {
    fn of(state: &ScoreState) -> Option<Indexed> {
        Some(Indexed {
            score: state.score,
            band: state.band?,
            stage: state.stage.clone(),
        })
    }
}

/// The cached state of one entity.
pub(crate) struct Entry {
    pub state: ScoreState,
    pub indexed: Option<Indexed>,
}

/// One tenant's scores under one rules version.
pub struct Scores {
    tenant: String,
    version: u32,
    name: String,
    rules: Arc<Rules>,
}

impl Scores {
    pub fn new(tenant: &str, version: u32, rules: Arc<Rules>) -> Scores {
        Scores {
            tenant: tenant.to_owned(),
            version,
            name: projection_name(tenant),
            rules,
        }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }
}

/// The item of a state, and the index writes that go with it.
pub(crate) fn encode_entry(
    version: u32,
    tenant: &str,
    entity: &str,
    entry: &Entry,
    derived: &mut Vec<Derived>,
) -> Result<Item> {
    let key = state_key(version, tenant, entity);
    let state = &entry.state;
    let bytes = state
        .encode()
        .map_err(|error| Error::corrupt(&key, error.to_string()))?;
    let mut item = Item::new();
    item.insert("state".into(), Value::B(bytes));
    item.insert("entity".into(), Value::S(entity.to_owned()));
    item.insert("as_of".into(), Value::N(state.as_of as f64));
    let Some(now) = Indexed::of(state) else {
        return Ok(item);
    };
    item.insert("score".into(), Value::N(f64::from(now.score)));
    item.insert("band".into(), Value::S(now.band.as_str().to_owned()));
    if let Some(stage) = &now.stage {
        item.insert("stage".into(), Value::S(stage.clone()));
    }
    if entry.indexed.as_ref() == Some(&now) {
        return Ok(item);
    }
    if let Some(old) = entry.indexed.as_ref().filter(|old| old.score != now.score) {
        derived.push(Derived::Delete {
            table: TableName::Views,
            key: Key::new(index_pk(version, tenant), index_sk(old.score, entity)),
        });
    }
    let mut index = Item::new();
    index.insert("entity".into(), Value::S(entity.to_owned()));
    index.insert("score".into(), Value::N(f64::from(now.score)));
    index.insert("band".into(), Value::S(now.band.as_str().to_owned()));
    if let Some(stage) = &now.stage {
        index.insert("stage".into(), Value::S(stage.clone()));
    }
    derived.push(Derived::Put {
        table: TableName::Views,
        key: Key::new(index_pk(version, tenant), index_sk(now.score, entity)),
        item: index,
    });
    Ok(item)
}

/// The state stored in an item (`None`: no item).
pub(crate) fn decode_entry(key: &Key, item: Option<&Item>) -> Result<Entry> {
    let state = match item.and_then(|item| item.get("state")) {
        Some(Value::B(bytes)) => {
            ScoreState::decode(bytes).map_err(|error| Error::corrupt(key, error.to_string()))?
        }
        Some(_) => return Err(Error::corrupt(key, "state is not binary")),
        None => ScoreState::default(),
    };
    let indexed = Indexed::of(&state);
    Ok(Entry { state, indexed })
}

/// The entity of a state key.
fn entity_of(key: &Key) -> Option<&str> {
    // `v<version>#<tenant>#score#<entity>`: the tenant holds no `#`.
    let mut parts = key.pk.splitn(4, '#');
    parts.next()?;
    parts.next()?;
    (parts.next()? == "score").then_some(())?;
    parts.next()
}

impl Projection for Scores {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn table(&self) -> TableName {
        TableName::Views
    }

    fn keys(&self, event: &Event, keys: &mut Vec<Key>) {
        if event.tenant == self.tenant && event.kind != EventKind::Metric {
            keys.push(state_key(self.version, &self.tenant, &event.entity));
        }
    }

    fn decode(&self, key: &Key, item: Option<&Item>) -> Result<State> {
        Ok(Box::new(decode_entry(key, item)?))
    }

    fn fold(
        &self,
        event: &Event,
        _position: &Position,
        cache: &mut Cache,
    ) -> std::result::Result<(), PoisonError> {
        if event.tenant != self.tenant || event.kind == EventKind::Metric {
            return Ok(());
        }
        let traits = if matches!(event.kind, EventKind::Identify | EventKind::Group) {
            match serde_json::from_str::<serde_json::Value>(&event.properties) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                _ => return Err(PoisonError::new("properties are not a JSON object")),
            }
        } else {
            None
        };
        let key = state_key(self.version, &self.tenant, &event.entity);
        let Some(entry) = cache.get_mut::<Entry>(&key) else {
            return Ok(());
        };
        let state = &mut entry.state;
        state
            .facts
            .observe(&self.rules, &counted_name(event), event.timestamp);
        if let Some(traits) = &traits {
            state.facts.merge_traits(&self.rules, traits);
        }
        state.evaluate(&self.rules, event.timestamp, Cause::Event);
        Ok(())
    }

    fn encode(&self, key: &Key, state: &State, derived: &mut Vec<Derived>) -> Result<Item> {
        let entry = state
            .downcast_ref::<Entry>()
            .ok_or_else(|| Error::corrupt(key, "unexpected state"))?;
        let entity = entity_of(key).ok_or_else(|| Error::corrupt(key, "bad score key"))?;
        encode_entry(self.version, &self.tenant, entity, entry, derived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layouts() {
        let key = state_key(3, "acme", "user#7");
        assert_eq!(key.pk, "v3#acme#score#user#7");
        assert_eq!(entity_of(&key), Some("user#7"));
        assert_eq!(index_pk(3, "acme"), "v3#acme#scores");
        assert_eq!(index_sk(7, "u"), "007#u");
        assert!(index_sk(9, "a") < index_sk(10, "a"));
    }
}
