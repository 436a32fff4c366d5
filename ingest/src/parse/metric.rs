//! The native metric point format of `POST /v1/metrics`:
//! `{"name", "tags"? {string: string}, "host"?, "timestamp"?, "value", "id"?}`, and
//! [`point_event`], the one place where a point of any protocol (native, line protocol,
//! Mackerel, Graphite) is validated and becomes an event.
//!
//! A point becomes a `metric` event whose entity is the series key `name{k=v,…}` with tags
//! sorted by key, so the same series always maps to the same entity (and shard) whatever order
//! the client sent its tags in. Its id is the client's when given, else derived from (series
//! key, time, value), so a resent point is the same event and the log keeps one copy.

use super::fields::{finite_number, name, shape_error, string, time};
use super::native::client_id;
use super::{Context, Rejection};
use serde::Deserialize;
use serde_json::value::RawValue;
use shoal_schemas::{Event, EventKind, LIMIT_ENTITY_BYTES, LIMIT_NAME_BYTES};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

const MAX_TAGS: usize = 32;
/// Derived point ids are UUIDv5 of (series key, time, value) in this namespace.
const POINT_NAMESPACE: Uuid = Uuid::from_u128(0x7e11_3c5a_0b9d_4f2e_8a61_c4d3_b2a1_9f80);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    tags: Option<&'a RawValue>,
    #[serde(borrow)]
    host: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
}

/// The series key of a metric and its tags.
pub fn series_key(metric: &str, tags: &BTreeMap<String, String>) -> String {
    let mut key = String::with_capacity(metric.len() + 2 + tags.len() * 16);
    key.push_str(metric);
    key.push('{');
    for (position, (tag, value)) in tags.iter().enumerate() {
        if position > 0 {
            key.push(',');
        }
        key.push_str(tag);
        key.push('=');
        key.push_str(value);
    }
    key.push('}');
    key
}

/// Reads one native metric point; [`point_event`] validates it.
pub fn parse_point(item: &RawValue, context: &Context<'_>) -> Result<Event, Rejection> {
    if item.get().len() > context.max_event_bytes {
        return Err(Rejection::new(
            "event_too_large",
            "point",
            format!(
                "point is {} bytes, the limit is {}",
                item.get().len(),
                context.max_event_bytes
            ),
        ));
    }
    let raw: RawPoint<'_> = serde_json::from_str(item.get()).map_err(|error| {
        let mut rejection = shape_error(&error);
        if rejection.field == "event" {
            rejection = Rejection::new("invalid_type", "point", "each point must be a JSON object");
        }
        rejection
    })?;
    let metric = match raw.name {
        Some(value) => string(value, "name")?,
        None => return Err(Rejection::new("missing", "name", "name is required")),
    };
    let value = match raw.value {
        Some(value) => finite_number(value, "value")?,
        None => return Err(Rejection::new("missing", "value", "value is required")),
    };
    let mut tags = match raw.tags {
        Some(value) => parse_tags(value)?,
        None => BTreeMap::new(),
    };
    if let Some(host) = raw.host {
        let host = name(host, "host", LIMIT_NAME_BYTES)?;
        if tags.insert("host".to_owned(), host.into_owned()).is_some() {
            return Err(Rejection::new(
                "conflicting_fields",
                "host",
                "host is given both as a field and as a tag",
            ));
        }
    }
    let timestamp = match raw.timestamp {
        Some(value) => time(value, "timestamp")?,
        None => context.received_at,
    };
    let id = raw.id.map(client_id).transpose()?;
    point_event(&metric, tags, value, timestamp, id, context)
}

/// Validates a point read by any protocol and makes it a metric event: the name, the tags,
/// the series key's length, the time (not more than a day ahead) and the value. Without a
/// client `id`, the id is derived from (series key, time, value).
pub fn point_event(
    metric: &str,
    tags: BTreeMap<String, String>,
    value: f64,
    timestamp: i64,
    id: Option<Uuid>,
    context: &Context<'_>,
) -> Result<Event, Rejection> {
    if metric.trim().is_empty() {
        return Err(Rejection::new("empty", "name", "name must not be empty"));
    }
    if metric.len() > LIMIT_NAME_BYTES {
        return Err(Rejection::new(
            "too_long",
            "name",
            format!(
                "name is {} bytes, the limit is {LIMIT_NAME_BYTES}",
                metric.len()
            ),
        ));
    }
    if metric.contains(['{', '}', ',', '=']) || metric.chars().any(char::is_control) {
        return Err(Rejection::new(
            "invalid_value",
            "name",
            format!("name {metric:?} must not contain {{ }} , = or control characters"),
        ));
    }
    if !value.is_finite() {
        return Err(Rejection::new(
            "invalid_value",
            "value",
            "value must be a finite number",
        ));
    }
    if tags.len() > MAX_TAGS {
        return Err(Rejection::new(
            "too_many_tags",
            "tags",
            format!("{} tags, the limit is {MAX_TAGS}", tags.len()),
        ));
    }
    for (tag, text) in &tags {
        if tag.is_empty()
            || tag.contains(['{', '}', ',', '='])
            || text.contains(['{', '}', ',', '='])
        {
            return Err(Rejection::new(
                "invalid_value",
                format!("tags.{tag}"),
                "tag names must be non-empty, and tag names and values must not contain { } , =",
            ));
        }
    }
    let entity = series_key(metric, &tags);
    if entity.len() > LIMIT_ENTITY_BYTES {
        return Err(Rejection::new(
            "too_long",
            "tags",
            format!(
                "the series key name{{tags}} is {} bytes, the limit is {LIMIT_ENTITY_BYTES}",
                entity.len()
            ),
        ));
    }
    let timestamp = super::native::apply_skew(Some(timestamp), None, context.received_at)?;
    let properties = serde_json::to_string(&tags)
        .map_err(|_| Rejection::new("invalid_value", "tags", "tags could not be encoded"))?;
    // A resent point (same series, time and value) gets the same id, so the log drops the copy;
    // a different value at the same time is a new event (and wins in the series, as in InfluxDB).
    let id = id.unwrap_or_else(|| {
        let mut seed = entity.clone().into_bytes();
        seed.extend_from_slice(&timestamp.to_be_bytes());
        seed.extend_from_slice(&value.to_bits().to_be_bytes());
        Uuid::new_v5(&POINT_NAMESPACE, &seed)
    });
    Ok(Event {
        id,
        tenant: context.tenant.to_owned(),
        kind: EventKind::Metric,
        name: metric.to_owned(),
        entity,
        timestamp,
        received_at: context.received_at,
        properties,
        value: Some(value),
    })
}

/// The `tags` object as strings; what the names and values may hold is [`point_event`]'s to say.
fn parse_tags(raw: &RawValue) -> Result<BTreeMap<String, String>, Rejection> {
    let map: HashMap<&str, &RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| Rejection::new("invalid_type", "tags", "tags must be an object of strings"))?;
    let mut tags = BTreeMap::new();
    for (tag, value) in map {
        let text = string(value, &format!("tags.{tag}"))?;
        tags.insert(tag.to_owned(), text.into_owned());
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Event, Rejection> {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        parse_point(
            &raw,
            &Context {
                tenant: "acme",
                received_at: 1_767_225_600_000,
                max_event_bytes: 1024,
            },
        )
    }

    #[test]
    fn series_key_sorts_tags() {
        let point = parse(r#"{"name":"cpu.user","tags":{"zone":"a","dc":"x"},"host":"web1","timestamp":1767225590000,"value":0.5}"#).unwrap();
        assert_eq!(point.entity, "cpu.user{dc=x,host=web1,zone=a}");
        assert_eq!(point.kind, EventKind::Metric);
        assert_eq!(point.value, Some(0.5));
        assert_eq!(point.timestamp, 1_767_225_590_000);
        assert_eq!(point.properties, r#"{"dc":"x","host":"web1","zone":"a"}"#);
    }

    #[test]
    fn ids_are_the_clients_or_derived_from_the_point() {
        let point = r#"{"name":"load","host":"a","timestamp":1767225590000,"value":0.5}"#;
        let first = parse(point).unwrap();
        assert_eq!(
            first.id,
            parse(point).unwrap().id,
            "a resent point is the same event"
        );
        assert_eq!(first.id.get_version_num(), 5);
        let other_value =
            parse(r#"{"name":"load","host":"a","timestamp":1767225590000,"value":0.75}"#).unwrap();
        assert_ne!(first.id, other_value.id);
        let other_series =
            parse(r#"{"name":"load","host":"b","timestamp":1767225590000,"value":0.5}"#).unwrap();
        assert_ne!(first.id, other_series.id);
        let given = parse(
            r#"{"id":"0190b2a8-0000-7000-8000-000000000001","name":"load","timestamp":1767225590000,"value":1}"#,
        )
        .unwrap();
        assert_eq!(given.id.to_string(), "0190b2a8-0000-7000-8000-000000000001");
        let text_id = parse(r#"{"id":"retry-7","name":"load","value":1}"#).unwrap();
        assert_eq!(text_id.id, super::super::native::event_id("retry-7"));
    }

    #[test]
    fn problems_name_their_field() {
        let cases = [
            (r#"{"value":1}"#, "missing", "name"),
            (r#"{"name":"m"}"#, "missing", "value"),
            (r#"{"name":"m","value":"1"}"#, "invalid_type", "value"),
            (r#"{"name":"m{","value":1}"#, "invalid_value", "name"),
            (
                r#"{"name":"m","value":1,"tags":{"a":1}}"#,
                "invalid_type",
                "tags.a",
            ),
            (
                r#"{"name":"m","value":1,"tags":[]}"#,
                "invalid_type",
                "tags",
            ),
            (
                r#"{"name":"m","value":1,"tags":{"host":"a"},"host":"b"}"#,
                "conflicting_fields",
                "host",
            ),
            (
                r#"{"name":"m","value":1,"unit":"s"}"#,
                "unknown_field",
                "unit",
            ),
            (r#""x""#, "invalid_type", "point"),
            (
                r#"{"name":"m","value":1,"tags":{"":"x"}}"#,
                "invalid_value",
                "tags.",
            ),
            (
                r#"{"name":"m","value":1,"tags":{"a":"x=y"}}"#,
                "invalid_value",
                "tags.a",
            ),
            (r#"{"name":" ","value":1}"#, "empty", "name"),
            (r#"{"name":"m","value":1,"id":""}"#, "empty", "id"),
            (
                r#"{"name":"m","value":1,"timestamp":4102444800000}"#,
                "invalid_value",
                "timestamp",
            ),
        ];
        for (text, code, field) in cases {
            let rejection = parse(text).unwrap_err();
            assert_eq!(
                (rejection.code, rejection.field.as_str()),
                (code, field),
                "{text}"
            );
        }
    }
}
