//! The native event format of `POST /v1/events`:
//! `{"id"?, "kind"?, "name", "entity", "timestamp"?, "sent_at"?, "properties"? | "traits"?, "value"?}`.
//! Unknown fields are refused rather than dropped, so a typo never silently loses data.

use super::fields::{finite_number, name, object, shape_error, string, time};
use super::{Context, Rejection};
use serde::Deserialize;
use serde_json::value::RawValue;
use shoal_schemas::{Event, EventKind, LIMIT_ENTITY_BYTES, LIMIT_NAME_BYTES};
use shoal_storage::{IdOrigin, NewEvent};
use uuid::Uuid;

/// Longest client-supplied id.
const MAX_ID_BYTES: usize = 128;
/// How far in the future an event may claim to be, after skew correction.
const MAX_FUTURE_MILLIS: i64 = 24 * 60 * 60 * 1000;
/// Client ids that are not UUIDs (Segment's messageId is any string) become UUIDv5 in this
/// namespace, so the same string always gives the same id and deduplicates.
pub const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5b0a_1c2e_8f3d_4a6b_9c7e_1d2f_3a4b_5c6d);

/// The fields of one native event, each as its JSON text (`null` reads as absent). The derived
/// `Deserialize` is the general path; `parse::events` fills the same struct in its one pass.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvent<'a> {
    #[serde(borrow)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub kind: Option<&'a RawValue>,
    #[serde(borrow)]
    pub name: Option<&'a RawValue>,
    #[serde(borrow)]
    pub entity: Option<&'a RawValue>,
    #[serde(borrow)]
    pub timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    pub sent_at: Option<&'a RawValue>,
    #[serde(borrow)]
    pub properties: Option<&'a RawValue>,
    #[serde(borrow)]
    pub traits: Option<&'a RawValue>,
    #[serde(borrow)]
    pub value: Option<&'a RawValue>,
}

/// A client id as a UUID: itself when it is one, else derived from its text.
pub fn event_id(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap_or_else(|_| Uuid::new_v5(&MESSAGE_ID_NAMESPACE, text.as_bytes()))
}

/// The `id` field of a native event or point, as its UUID.
pub fn client_id(raw: &RawValue) -> Result<Uuid, Rejection> {
    let text = name(raw, "id", MAX_ID_BYTES)?;
    Ok(event_id(&text))
}

/// Parses and validates one native event, saying whether its id is the client's or was
/// minted here (which lets the log skip its dedup window).
pub fn parse_event(item: &RawValue, context: &Context<'_>) -> Result<NewEvent, Rejection> {
    check_size(item.get().len(), context)?;
    let raw: RawEvent<'_> =
        serde_json::from_str(item.get()).map_err(|error| shape_error(&error))?;
    build_event(raw, context)
}

/// Refuses an item whose JSON text is longer than `max_event_bytes`; checked before its shape.
pub(super) fn check_size(item_bytes: usize, context: &Context<'_>) -> Result<(), Rejection> {
    if item_bytes > context.max_event_bytes {
        return Err(Rejection::new(
            "event_too_large",
            "event",
            format!(
                "event is {item_bytes} bytes, the limit is {}",
                context.max_event_bytes
            ),
        ));
    }
    Ok(())
}

/// Validates the fields of an item already read into [`RawEvent`] and builds its event; the
/// one place both parse paths check values, so they reject alike.
pub(super) fn build_event(raw: RawEvent<'_>, context: &Context<'_>) -> Result<NewEvent, Rejection> {
    let kind = match raw.kind {
        None => EventKind::Track,
        Some(value) => string(value, "kind")?.parse::<EventKind>().map_err(|_| {
            Rejection::new(
                "invalid_value",
                "kind",
                "kind must be one of track, identify, group, page, screen, alias, metric",
            )
        })?,
    };
    let entity = match raw.entity {
        Some(value) => name(value, "entity", LIMIT_ENTITY_BYTES)?,
        None => return Err(Rejection::new("missing", "entity", "entity is required")),
    };
    let event_name = match (raw.name, kind) {
        (Some(value), _) => name(value, "name", LIMIT_NAME_BYTES)?.into_owned(),
        (None, EventKind::Track | EventKind::Metric) => {
            return Err(Rejection::new(
                "missing",
                "name",
                format!("name is required for {kind} events"),
            ));
        }
        (None, other) => other.as_str().to_owned(),
    };
    let (id, id_origin) = match raw.id {
        Some(value) => (client_id(value)?, IdOrigin::Client),
        None => (Uuid::now_v7(), IdOrigin::Server),
    };
    let value = match raw.value {
        Some(value) => Some(finite_number(value, "value")?),
        None if kind == EventKind::Metric => {
            return Err(Rejection::new(
                "missing",
                "value",
                "value is required for metric events",
            ));
        }
        None => None,
    };
    let properties = match (raw.properties, raw.traits) {
        (Some(_), Some(_)) => {
            return Err(Rejection::new(
                "conflicting_fields",
                "traits",
                "send properties or traits, not both",
            ));
        }
        (Some(value), None) => object(value, "properties")?.to_owned(),
        (None, Some(value)) => object(value, "traits")?.to_owned(),
        (None, None) => "{}".to_owned(),
    };
    let timestamp = corrected_time(raw.timestamp, raw.sent_at, context.received_at)?;

    let event = Event {
        id,
        tenant: context.tenant.to_owned(),
        kind,
        name: event_name,
        entity: entity.into_owned(),
        timestamp,
        received_at: context.received_at,
        properties,
        value,
    };
    Ok(NewEvent { event, id_origin })
}

/// The event time corrected for the client's clock, as Segment does:
/// `received_at − (sent_at − timestamp)`. Without `sent_at` the client's timestamp is trusted;
/// without a timestamp the event happened when it was received.
pub fn corrected_time(
    timestamp: Option<&RawValue>,
    sent_at: Option<&RawValue>,
    received_at: i64,
) -> Result<i64, Rejection> {
    let client_time = timestamp
        .map(|value| time(value, "timestamp"))
        .transpose()?;
    let sent = sent_at.map(|value| time(value, "sent_at")).transpose()?;
    apply_skew(client_time, sent, received_at)
}

/// The skew correction itself, on times already read: `received_at − (sent − at)`, refusing
/// times more than a day ahead of the server.
pub fn apply_skew(
    client_time: Option<i64>,
    sent: Option<i64>,
    received_at: i64,
) -> Result<i64, Rejection> {
    let corrected = match (client_time, sent) {
        (Some(at), Some(sent)) => received_at.saturating_sub(sent.saturating_sub(at)),
        (Some(at), None) => at,
        (None, _) => received_at,
    };
    if corrected > received_at.saturating_add(MAX_FUTURE_MILLIS) {
        return Err(Rejection::new(
            "invalid_value",
            "timestamp",
            "timestamp is more than 24 hours in the future",
        ));
    }
    Ok(corrected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn parse(text: &str) -> Result<Event, Rejection> {
        parse_new(text).map(|new| new.event)
    }

    fn parse_new(text: &str) -> Result<NewEvent, Rejection> {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        parse_event(
            &raw,
            &Context {
                tenant: "acme",
                received_at: NOW,
                max_event_bytes: 1024,
            },
        )
    }

    #[test]
    fn only_a_missing_id_is_the_servers() {
        let minted = parse_new(r#"{"name":"login","entity":"cust-1"}"#).unwrap();
        assert_eq!(minted.id_origin, IdOrigin::Server);
        assert_eq!(minted.event.id.get_version_num(), 7);
        // A client's UUIDv7 is still the client's: its retry must be deduplicated.
        let sent = parse_new(
            r#"{"id":"0190b2a8-0000-7000-8000-000000000001","name":"login","entity":"cust-1"}"#,
        )
        .unwrap();
        assert_eq!(sent.id_origin, IdOrigin::Client);
        let derived = parse_new(r#"{"id":"msg-42","name":"login","entity":"cust-1"}"#).unwrap();
        assert_eq!(derived.id_origin, IdOrigin::Client);
    }

    #[test]
    fn full_event() {
        let event = parse(
            r#"{"id":"0190b2a8-0000-7000-8000-000000000001","kind":"track","name":"login",
                "entity":"cust-1","timestamp":"2025-12-31T23:00:00Z","properties":{"plan":"pro"}}"#,
        )
        .unwrap();
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.kind, EventKind::Track);
        assert_eq!(event.name, "login");
        assert_eq!(event.entity, "cust-1");
        assert_eq!(event.timestamp, NOW - 3_600_000);
        assert_eq!(event.received_at, NOW);
        assert_eq!(event.properties, r#"{"plan":"pro"}"#);
        assert_eq!(event.id.to_string(), "0190b2a8-0000-7000-8000-000000000001");
    }

    #[test]
    fn defaults() {
        let event = parse(r#"{"name":"login","entity":"c"}"#).unwrap();
        assert_eq!(event.kind, EventKind::Track);
        assert_eq!(event.timestamp, NOW);
        assert_eq!(event.properties, "{}");
        assert_eq!(event.id.get_version_num(), 7);
        let identify =
            parse(r#"{"kind":"identify","entity":"c","traits":{"plan":"trial"}}"#).unwrap();
        assert_eq!(identify.name, "identify");
        assert_eq!(identify.properties, r#"{"plan":"trial"}"#);
    }

    #[test]
    fn non_uuid_ids_are_stable() {
        let first = parse(r#"{"id":"msg-1","name":"a","entity":"c"}"#).unwrap();
        let again = parse(r#"{"id":"msg-1","name":"b","entity":"c"}"#).unwrap();
        assert_eq!(first.id, again.id);
        assert_eq!(first.id.get_version_num(), 5);
    }

    #[test]
    fn skew_is_corrected() {
        // The client's clock is one hour fast: it says it sent at 01:00 an event of 00:59.
        let event = parse(
            r#"{"name":"a","entity":"c","timestamp":"2026-01-01T00:59:00Z","sent_at":"2026-01-01T01:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(event.timestamp, NOW - 60_000);
    }

    #[test]
    fn each_problem_names_its_field() {
        let cases = [
            (r#"{"name":"a"}"#, "missing", "entity"),
            (r#"{"entity":"c"}"#, "missing", "name"),
            (r#"{"name":5,"entity":"c"}"#, "invalid_type", "name"),
            (
                r#"{"name":"a","entity":"c","kind":"click"}"#,
                "invalid_value",
                "kind",
            ),
            (
                r#"{"name":"a","entity":"c","timestamp":"soon"}"#,
                "invalid_value",
                "timestamp",
            ),
            (
                r#"{"name":"a","entity":"c","timestamp":true}"#,
                "invalid_type",
                "timestamp",
            ),
            (
                r#"{"name":"a","entity":"c","properties":[1]}"#,
                "invalid_type",
                "properties",
            ),
            (
                r#"{"name":"a","entity":"c","value":"x"}"#,
                "invalid_type",
                "value",
            ),
            (
                r#"{"name":"a","entity":"c","kind":"metric"}"#,
                "missing",
                "value",
            ),
            (
                r#"{"name":"a","entity":"c","colour":"red"}"#,
                "unknown_field",
                "colour",
            ),
            (
                r#"{"name":"a","entity":"c","name":"b"}"#,
                "duplicate_field",
                "name",
            ),
            (
                r#"{"name":"a","entity":"c","properties":{},"traits":{}}"#,
                "conflicting_fields",
                "traits",
            ),
            (
                r#"{"name":"a","entity":"c","timestamp":"2026-01-03T00:00:00Z"}"#,
                "invalid_value",
                "timestamp",
            ),
            (r#"[1,2]"#, "invalid_type", "event"),
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

    #[test]
    fn oversized_event() {
        let big = format!(
            r#"{{"name":"a","entity":"c","properties":{{"x":"{}"}}}}"#,
            "y".repeat(2000)
        );
        assert_eq!(parse(&big).unwrap_err().code, "event_too_large");
    }
}
