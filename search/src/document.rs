//! From log events to tantivy documents: which values are searchable, the event document, and
//! the entity document with its merged state.
//!
//! Only string values are searchable (numbers and booleans are for the aggregates, not for
//! text search); nested objects keep their shape in `attrs`, so `address.city:paris` works.
//! Metric points are not indexed: they are numbers on a series, and at metric rates they would
//! dominate the index without ever being searched by text.

use crate::partition::{TenantFields, partition};
use crate::schema::{self, Fields};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shoal_schemas::{Event, EventKind};
use std::collections::BTreeSet;
use tantivy::TantivyDocument;

/// Which properties (or traits) are searchable: all of them, or those with these top-level
/// names. The default is all; a tenant's rules document can narrow it (`partition.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "SelectionRepr", try_from = "SelectionRepr")]
pub enum SearchFields {
    #[default]
    All,
    Only(BTreeSet<String>),
}

/// `"all"` or a list of names, as in the rules document.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SelectionRepr {
    Word(String),
    Names(BTreeSet<String>),
}

impl From<SearchFields> for SelectionRepr {
    fn from(fields: SearchFields) -> Self {
        match fields {
            SearchFields::All => SelectionRepr::Word("all".to_owned()),
            SearchFields::Only(names) => SelectionRepr::Names(names),
        }
    }
}

impl TryFrom<SelectionRepr> for SearchFields {
    type Error = String;

    fn try_from(repr: SelectionRepr) -> Result<Self, String> {
        match repr {
            SelectionRepr::Word(word) if word == "all" => Ok(SearchFields::All),
            SelectionRepr::Word(word) => Err(format!("expected `all` or a list, got {word:?}")),
            SelectionRepr::Names(names) => Ok(SearchFields::Only(names)),
        }
    }
}

impl SearchFields {
    fn includes(&self, name: &str) -> bool {
        match self {
            SearchFields::All => true,
            SearchFields::Only(names) => names.contains(name),
        }
    }
}

/// The searchable part of `properties`: string leaves only, under the top-level names that
/// `fields` selects. Every kept string is also pushed onto `texts`.
fn searchable(
    properties: &Map<String, Value>,
    fields: &SearchFields,
    texts: &mut Vec<String>,
) -> Map<String, Value> {
    properties
        .iter()
        .filter(|(name, _)| fields.includes(name))
        .filter_map(|(name, value)| Some((name.clone(), strings_only(value, texts)?)))
        .collect()
}

/// [`searchable`] of properties owned by the caller: values are moved rather than copied.
fn searchable_owned(
    properties: Map<String, Value>,
    fields: &SearchFields,
    texts: &mut Vec<String>,
) -> Map<String, Value> {
    properties
        .into_iter()
        .filter(|(name, _)| fields.includes(name))
        .filter_map(|(name, value)| match value {
            Value::String(text) => {
                texts.push(text.clone());
                Some((name, Value::String(text)))
            }
            other => Some((name, strings_only(&other, texts)?)),
        })
        .collect()
}

fn strings_only(value: &Value, texts: &mut Vec<String>) -> Option<Value> {
    match value {
        Value::String(text) => {
            texts.push(text.clone());
            Some(value.clone())
        }
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter_map(|(name, inner)| Some((name.clone(), strings_only(inner, texts)?)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|inner| strings_only(inner, texts))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// Whether the search projection indexes this event at all.
pub(crate) fn is_indexed(event: &Event) -> bool {
    event.kind != EventKind::Metric
}

/// The document of `event` in the tenant's partition `partition`, with the properties that
/// `searchable` selects.
pub(crate) fn event_doc(
    fields: &Fields,
    searchable: &TenantFields,
    partition: &str,
    event: &Event,
) -> TantivyDocument {
    let id = event.id.to_string();
    let mut texts = vec![event.name.clone(), event.entity.clone()];
    let attrs = searchable_owned(event.properties_map(), &searchable.properties, &mut texts);
    let mut doc = TantivyDocument::new();
    doc.add_text(fields.tenant, partition);
    doc.add_text(fields.doc_type, schema::EVENT);
    doc.add_text(fields.id, &id);
    doc.add_text(fields.name, &event.name);
    doc.add_text(fields.kind, event.kind.as_str());
    doc.add_text(fields.entity, &event.entity);
    doc.add_i64(fields.timestamp, event.timestamp);
    doc.add_text(fields.text, texts.join("\n"));
    if !attrs.is_empty() {
        doc.add_object(fields.attrs, attrs_object(attrs));
    }
    doc
}

fn attrs_object(
    attrs: Map<String, Value>,
) -> std::collections::BTreeMap<String, tantivy::schema::OwnedValue> {
    attrs
        .into_iter()
        .map(|(name, value)| (name, tantivy::schema::OwnedValue::from(value)))
        .collect()
}

/// What the index knows of one entity, stored whole in its document so that an update can
/// start from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EntityState {
    pub tenant: String,
    /// The tenant's generation this document belongs to (`partition.rs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    pub entity: String,
    /// Every trait, searchable or not (a change of searchable fields must not need the log).
    pub traits: Map<String, Value>,
    pub stage: Option<String>,
    pub band: Option<String>,
    /// Event time of the latest event seen; `None` for an entity known only from annotations.
    pub last_seen: Option<i64>,
}

fn is_zero(generation: &u32) -> bool {
    *generation == 0
}

impl EntityState {
    pub fn new(tenant: &str, generation: u32, entity: &str) -> Self {
        EntityState {
            tenant: tenant.to_owned(),
            generation,
            entity: entity.to_owned(),
            ..EntityState::default()
        }
    }

    /// The key its document is found and replaced by.
    pub fn key(&self) -> String {
        schema::entity_key(&partition(&self.tenant, self.generation), &self.entity)
    }

    /// Folds one event in. Idempotent in log order: replaying events already folded leaves the
    /// same state (later keys overwrite, last_seen is a maximum).
    pub fn apply(&mut self, event: &Event) {
        if matches!(event.kind, EventKind::Identify | EventKind::Group) {
            self.traits.extend(event.properties_map());
        }
        self.last_seen = Some(
            self.last_seen
                .map_or(event.timestamp, |seen| seen.max(event.timestamp)),
        );
    }

    pub fn to_doc(&self, fields: &Fields, searchable: &TenantFields) -> TantivyDocument {
        let mut texts = vec![self.entity.clone()];
        let attrs = self::searchable(&self.traits, &searchable.traits, &mut texts);
        let mut doc = TantivyDocument::new();
        doc.add_text(fields.tenant, partition(&self.tenant, self.generation));
        doc.add_text(fields.doc_type, schema::ENTITY);
        doc.add_text(fields.key, self.key());
        doc.add_text(fields.entity, &self.entity);
        if let Some(last_seen) = self.last_seen {
            doc.add_i64(fields.timestamp, last_seen);
        }
        doc.add_text(fields.text, texts.join("\n"));
        if !attrs.is_empty() {
            doc.add_object(fields.attrs, attrs_object(attrs));
        }
        if let Some(stage) = &self.stage {
            doc.add_text(fields.stage, stage);
        }
        if let Some(band) = &self.band {
            doc.add_text(fields.band, band);
        }
        // Serialising a map of JSON values cannot fail.
        doc.add_text(
            fields.state,
            serde_json::to_string(self).unwrap_or_default(),
        );
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn only_strings_of_selected_fields_are_searchable() {
        let properties = props(
            r#"{"plan":"trial","seats":12,"ok":true,"address":{"city":"Paris","zip":75001},"tags":["a",1],"empty":{}}"#,
        );
        let mut texts = Vec::new();
        let all = searchable(&properties, &SearchFields::All, &mut texts);
        assert_eq!(
            Value::Object(all),
            serde_json::json!({"plan":"trial","address":{"city":"Paris"},"tags":["a"]})
        );
        // In key order: serde_json maps are sorted.
        assert_eq!(texts, ["Paris", "trial", "a"]);
        let mut texts = Vec::new();
        let only = SearchFields::Only(["address".to_owned()].into());
        let some = searchable(&properties, &only, &mut texts);
        assert_eq!(
            Value::Object(some),
            serde_json::json!({"address":{"city":"Paris"}})
        );
        assert_eq!(texts, ["Paris"]);
    }
}
