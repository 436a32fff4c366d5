//! Segment's tracking API payloads (`/v1/batch`, `/v1/track`, `/v1/identify`, `/v1/group`,
//! `/v1/page`, `/v1/screen`, `/v1/alias`), mapped onto Shoal's envelope.
//!
//! Unlike the native format, unknown fields are ignored, not refused: SDKs add fields of their
//! own (`_metadata`, `channel`, `originalTimestamp`, …) and must "just work".
//!
//! The mapping (see docs/ingest-protocols.md for the reasons):
//! - entity: `userId`, else `anonymousId` (strings, or numbers as their decimal text);
//! - `track` → its `event`; `page`/`screen` → their `name` (else `page`/`screen`);
//! - properties: `properties` (track, page, screen) or `traits` (identify, group), as sent;
//!   track/page/screen/alias also keep the merged `context` under `$context` and, when both ids
//!   are sent, `anonymousId` under `$anonymous_id` (traits stay exactly what the client set);
//! - `group` becomes two events: on the user, `{"groupId": …}` (so the user's latest traits say
//!   which account it belongs to), and on the account entity `group:<groupId>`, the group traits;
//! - `alias` → `{"previousId": …}` on the new `userId`;
//! - `messageId` → the event id (UUIDv5 of the text unless it is a UUID), so a resent message
//!   deduplicates in the log; the account event of a group gets its own id derived from it;
//! - time: `received_at − (sentAt − timestamp)`, `sentAt` from the item or else the batch.

use super::fields::{name, string, time};
use super::native::{MESSAGE_ID_NAMESPACE, apply_skew, event_id};
use super::{Context, Rejection};
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use shoal_schemas::{Event, EventKind, LIMIT_ENTITY_BYTES, LIMIT_NAME_BYTES};
use uuid::Uuid;

/// Segment refuses batches above 500 KB (400 Bad Request); so does Shoal on these routes.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// The prefix that keeps account entities apart from users with the same id.
pub const ACCOUNT_PREFIX: &str = "group:";
/// Longest `messageId` accepted.
const MAX_MESSAGE_ID_BYTES: usize = 256;

/// A request body split into its messages, with what the batch level shares with each.
#[derive(Debug)]
pub struct SegmentBatch<'a> {
    pub messages: Vec<&'a RawValue>,
    pub shared: Shared,
    /// `writeKey` from the body, for clients that send no `Authorization` header.
    pub write_key: Option<String>,
}

/// What a batch passes down to each of its messages.
#[derive(Debug, Default, Clone)]
pub struct Shared {
    pub context: Map<String, Value>,
    pub sent_at: Option<i64>,
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow, rename = "sentAt")]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, rename = "writeKey")]
    write_key: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, rename = "userId")]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "anonymousId")]
    anonymous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
    #[serde(borrow)]
    traits: Option<&'a RawValue>,
    #[serde(borrow, rename = "groupId")]
    group_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "previousId")]
    previous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, rename = "sentAt")]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, rename = "messageId")]
    message_id: Option<&'a RawValue>,
}

fn body_error(code: &'static str, field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        code,
        field: field.to_owned(),
        message: message.into(),
    }
}

fn check_batch_size(body: &[u8]) -> Result<()> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(body_error(
            "body_too_large",
            "body",
            format!(
                "body is {} bytes, Segment's limit (and Shoal's on this route) is {MAX_BATCH_BYTES}",
                body.len()
            ),
        ));
    }
    Ok(())
}

fn key_text(raw: Option<&RawValue>) -> Result<Option<String>> {
    raw.map(|value| {
        string(value, "writeKey")
            .map(|text| text.trim().to_owned())
            .map_err(|rejection| body_error(rejection.code, "writeKey", rejection.message))
    })
    .transpose()
    .map(|key| key.filter(|text| !text.is_empty()))
}

/// Splits a `/v1/batch` body: `{"batch": [...], "context"?, "sentAt"?, "writeKey"?}`.
pub fn split_batch(body: &[u8], max_items: usize) -> Result<SegmentBatch<'_>> {
    check_batch_size(body)?;
    let envelope: RawEnvelope<'_> = serde_json::from_slice(body).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            Error::malformed(&error)
        } else {
            body_error(
                "invalid_type",
                "body",
                "body must be a JSON object with a batch array",
            )
        }
    })?;
    let batch = envelope
        .batch
        .ok_or_else(|| body_error("missing", "batch", "batch is required"))?;
    let messages: Vec<&RawValue> = serde_json::from_str(batch.get()).map_err(|_| {
        body_error(
            "invalid_type",
            "batch",
            "batch must be an array of messages",
        )
    })?;
    if messages.is_empty() {
        return Err(Error::EmptyBatch);
    }
    if messages.len() > max_items {
        return Err(Error::TooManyEvents {
            count: messages.len(),
            limit: max_items,
        });
    }
    let context = match envelope.context {
        Some(raw) => context_map(raw)
            .map_err(|rejection| body_error(rejection.code, "context", rejection.message))?,
        None => Map::new(),
    };
    let sent_at = envelope
        .sent_at
        .map(|raw| time(raw, "sentAt"))
        .transpose()
        .map_err(|rejection| body_error(rejection.code, "sentAt", rejection.message))?;
    Ok(SegmentBatch {
        messages,
        shared: Shared { context, sent_at },
        write_key: key_text(envelope.write_key)?,
    })
}

/// Splits a single-call body (`/v1/track` and the others): one message object.
pub fn split_single(body: &[u8]) -> Result<SegmentBatch<'_>> {
    check_batch_size(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyBatch);
    }
    let message: &RawValue =
        serde_json::from_slice(body).map_err(|error| Error::malformed(&error))?;
    if !message.get().starts_with('{') {
        return Err(body_error(
            "invalid_type",
            "body",
            "body must be a JSON object",
        ));
    }
    let envelope: RawEnvelope<'_> = serde_json::from_str(message.get())
        .map_err(|_| body_error("invalid_type", "body", "body must be a JSON object"))?;
    Ok(SegmentBatch {
        messages: vec![message],
        shared: Shared::default(),
        write_key: key_text(envelope.write_key)?,
    })
}

fn context_map(raw: &RawValue) -> std::result::Result<Map<String, Value>, Rejection> {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        _ => Err(Rejection::new(
            "invalid_type",
            "context",
            "context must be a JSON object",
        )),
    }
}

fn object_map(
    raw: Option<&RawValue>,
    field: &str,
) -> std::result::Result<Map<String, Value>, Rejection> {
    match raw.map(|value| serde_json::from_str::<Value>(value.get())) {
        None | Some(Ok(Value::Null)) => Ok(Map::new()),
        Some(Ok(Value::Object(map))) => Ok(map),
        _ => Err(Rejection::new(
            "invalid_type",
            field,
            format!("{field} must be a JSON object"),
        )),
    }
}

/// An id field: a non-empty string, or a number taken as its decimal text (some SDKs let
/// integer user ids through).
fn id_field(raw: &RawValue, field: &str) -> std::result::Result<String, Rejection> {
    let text = raw.get();
    if text.starts_with(|first: char| first == '-' || first.is_ascii_digit())
        && text.len() <= LIMIT_ENTITY_BYTES
    {
        return Ok(text.to_owned());
    }
    Ok(name(raw, field, LIMIT_ENTITY_BYTES)?.into_owned())
}

/// An optional id field; JSON `null` counts as absent, as the SDKs send it.
fn optional_id(
    raw: Option<&RawValue>,
    field: &str,
) -> std::result::Result<Option<String>, Rejection> {
    match raw {
        None => Ok(None),
        Some(value) if value.get() == "null" => Ok(None),
        Some(value) => id_field(value, field).map(Some),
    }
}

fn kind_of(text: &str) -> Option<EventKind> {
    match text {
        "track" => Some(EventKind::Track),
        "identify" => Some(EventKind::Identify),
        "group" => Some(EventKind::Group),
        "page" => Some(EventKind::Page),
        "screen" => Some(EventKind::Screen),
        "alias" => Some(EventKind::Alias),
        _ => None,
    }
}

/// Parses one message into its events (two for `group`, else one). `route_kind` is the kind the
/// single-call route implies; in a batch each message names its own `type`.
pub fn parse_message(
    item: &RawValue,
    route_kind: Option<EventKind>,
    shared: &Shared,
    context: &Context<'_>,
) -> std::result::Result<Vec<Event>, Rejection> {
    if item.get().len() > context.max_event_bytes {
        return Err(Rejection::new(
            "event_too_large",
            "event",
            format!(
                "message is {} bytes, the limit is {}",
                item.get().len(),
                context.max_event_bytes
            ),
        ));
    }
    let raw: RawMessage<'_> = serde_json::from_str(item.get()).map_err(|error| {
        let message = error.to_string();
        if message.starts_with("duplicate field") {
            let field = message.split('`').nth(1).unwrap_or_default().to_owned();
            Rejection::new(
                "duplicate_field",
                field.clone(),
                format!("field {field} appears twice"),
            )
        } else {
            Rejection::new(
                "invalid_type",
                "event",
                "each message must be a JSON object",
            )
        }
    })?;

    let named_kind = match raw.kind {
        Some(value) => {
            let text = string(value, "type")?;
            Some(kind_of(&text).ok_or_else(|| {
                Rejection::new(
                    "invalid_value",
                    "type",
                    "type must be one of track, identify, group, page, screen, alias",
                )
            })?)
        }
        None => None,
    };
    let kind = match (route_kind, named_kind) {
        (Some(route), Some(named)) if route != named => {
            return Err(Rejection::new(
                "invalid_value",
                "type",
                format!("type is {named} but this route takes {route} calls"),
            ));
        }
        (Some(route), _) => route,
        (None, Some(named)) => named,
        (None, None) => {
            return Err(Rejection::new(
                "missing",
                "type",
                "type is required in a batch",
            ));
        }
    };

    let user_id = optional_id(raw.user_id, "userId")?;
    let anonymous_id = optional_id(raw.anonymous_id, "anonymousId")?;
    let entity = match (&user_id, &anonymous_id) {
        (Some(user), _) => user.clone(),
        (None, Some(anonymous)) => anonymous.clone(),
        (None, None) => {
            return Err(Rejection::new(
                "missing",
                "userId",
                "userId or anonymousId is required",
            ));
        }
    };

    let message_id = match raw.message_id {
        Some(value) if value.get() != "null" => {
            Some(name(value, "messageId", MAX_MESSAGE_ID_BYTES)?.into_owned())
        }
        _ => None,
    };
    let id = message_id.as_deref().map_or_else(Uuid::now_v7, event_id);

    let client_time = match raw.timestamp {
        Some(value) if value.get() != "null" => Some(time(value, "timestamp")?),
        _ => None,
    };
    let sent = match raw.sent_at {
        Some(value) if value.get() != "null" => Some(time(value, "sentAt")?),
        _ => shared.sent_at,
    };
    let timestamp = apply_skew(client_time, sent, context.received_at)?;

    let mut merged_context = shared.context.clone();
    if let Some(value) = raw.context {
        merged_context.extend(context_map(value)?);
    }

    let event_name = match kind {
        EventKind::Track => match raw.event {
            Some(value) => name(value, "event", LIMIT_NAME_BYTES)?.into_owned(),
            None => {
                return Err(Rejection::new(
                    "missing",
                    "event",
                    "event is required for track calls",
                ));
            }
        },
        EventKind::Page | EventKind::Screen => match raw.name {
            Some(value) if value.get() != "null" => {
                name(value, "name", LIMIT_NAME_BYTES)?.into_owned()
            }
            _ => kind.as_str().to_owned(),
        },
        other => other.as_str().to_owned(),
    };

    let make = |id: Uuid,
                entity: String,
                properties: Map<String, Value>|
     -> std::result::Result<Event, Rejection> {
        let properties = serde_json::to_string(&properties).map_err(|_| {
            Rejection::new(
                "invalid_value",
                "properties",
                "properties could not be encoded",
            )
        })?;
        Ok(Event {
            id,
            tenant: context.tenant.to_owned(),
            kind,
            name: event_name.clone(),
            entity,
            timestamp,
            received_at: context.received_at,
            properties,
            value: None,
        })
    };
    let with_extras = |mut properties: Map<String, Value>| {
        if let (Some(_), Some(anonymous)) = (&user_id, &anonymous_id) {
            properties.insert("$anonymous_id".to_owned(), Value::String(anonymous.clone()));
        }
        if !merged_context.is_empty() {
            properties.insert("$context".to_owned(), Value::Object(merged_context.clone()));
        }
        properties
    };

    match kind {
        EventKind::Track | EventKind::Page | EventKind::Screen => {
            let properties = object_map(raw.properties, "properties")?;
            Ok(vec![make(id, entity, with_extras(properties))?])
        }
        EventKind::Identify => {
            // RudderStack's SDKs send identify traits in `context.traits` only; Segment's
            // spec allows them there too. Top-level traits win on a clash.
            let mut traits = match merged_context.get("traits") {
                Some(Value::Object(map)) => map.clone(),
                _ => Map::new(),
            };
            traits.extend(object_map(raw.traits, "traits")?);
            Ok(vec![make(id, entity, traits)?])
        }
        EventKind::Group => {
            let group_id = match optional_id(raw.group_id, "groupId")? {
                Some(group) => group,
                None => {
                    return Err(Rejection::new(
                        "missing",
                        "groupId",
                        "groupId is required for group calls",
                    ));
                }
            };
            let account = format!("{ACCOUNT_PREFIX}{group_id}");
            if account.len() > LIMIT_ENTITY_BYTES {
                return Err(Rejection::new(
                    "too_long",
                    "groupId",
                    format!(
                        "groupId is too long (the limit is {} bytes)",
                        LIMIT_ENTITY_BYTES - ACCOUNT_PREFIX.len()
                    ),
                ));
            }
            let traits = object_map(raw.traits, "traits")?;
            let mut link = Map::new();
            link.insert("groupId".to_owned(), Value::String(group_id));
            let account_id = match &message_id {
                Some(text) => {
                    Uuid::new_v5(&MESSAGE_ID_NAMESPACE, format!("{text}#account").as_bytes())
                }
                None => Uuid::now_v7(),
            };
            Ok(vec![
                make(id, entity, link)?,
                make(account_id, account, traits)?,
            ])
        }
        EventKind::Alias => {
            if user_id.is_none() {
                return Err(Rejection::new(
                    "missing",
                    "userId",
                    "userId is required for alias calls",
                ));
            }
            let previous = match optional_id(raw.previous_id, "previousId")? {
                Some(previous) => previous,
                None => {
                    return Err(Rejection::new(
                        "missing",
                        "previousId",
                        "previousId is required for alias calls",
                    ));
                }
            };
            let mut properties = Map::new();
            properties.insert("previousId".to_owned(), Value::String(previous));
            Ok(vec![make(id, entity, with_extras(properties))?])
        }
        EventKind::Metric => Err(Rejection::new(
            "invalid_value",
            "type",
            "metric is not a Segment call",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn context() -> Context<'static> {
        Context {
            tenant: "acme",
            received_at: NOW,
            max_event_bytes: 32 * 1024,
        }
    }

    fn parse_batch(body: &str) -> Vec<std::result::Result<Vec<Event>, Rejection>> {
        let batch = split_batch(body.as_bytes(), 100).unwrap();
        batch
            .messages
            .iter()
            .map(|message| parse_message(message, None, &batch.shared, &context()))
            .collect()
    }

    fn parse_one(kind: EventKind, body: &str) -> std::result::Result<Vec<Event>, Rejection> {
        let batch = split_single(body.as_bytes()).unwrap();
        parse_message(batch.messages[0], Some(kind), &batch.shared, &context())
    }

    fn props(event: &Event) -> Value {
        serde_json::from_str(&event.properties).unwrap()
    }

    #[test]
    fn batch_merges_context_and_corrects_skew() {
        // The client clock is 1 hour fast: sentAt 01:00, event at 00:59 → 23:59 server time.
        let results = parse_batch(
            r#"{"batch":[
                {"type":"track","userId":"u1","event":"Signed Up","properties":{"plan":"pro"},
                 "context":{"ip":"10.0.0.1"},"timestamp":"2026-01-01T00:59:00Z","messageId":"m-1",
                 "_metadata":{"x":1},"integrations":{"All":true}}
            ],"context":{"library":{"name":"py"},"ip":"0.0.0.0"},
              "sentAt":"2026-01-01T01:00:00.000+00:00","writeKey":"wk"}"#,
        );
        let events = results[0].as_ref().unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.kind, EventKind::Track);
        assert_eq!(event.name, "Signed Up");
        assert_eq!(event.entity, "u1");
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.timestamp, NOW - 60_000);
        assert_eq!(event.id, event_id("m-1"));
        assert_eq!(
            props(event),
            serde_json::json!({"plan":"pro","$context":{"library":{"name":"py"},"ip":"10.0.0.1"}})
        );
    }

    #[test]
    fn write_key_from_body() {
        let batch = split_batch(br#"{"batch":[{}],"writeKey":"wk_1"}"#, 10).unwrap();
        assert_eq!(batch.write_key.as_deref(), Some("wk_1"));
        let single = split_single(br#"{"userId":"u","event":"e","writeKey":"wk_2"}"#).unwrap();
        assert_eq!(single.write_key.as_deref(), Some("wk_2"));
        let none = split_single(br#"{"userId":"u","event":"e"}"#).unwrap();
        assert_eq!(none.write_key, None);
    }

    #[test]
    fn identify_keeps_traits_clean() {
        let events = parse_one(
            EventKind::Identify,
            r#"{"userId":42,"anonymousId":"a-1","traits":{"email":"a@b.c","seats":3},"context":{"ip":"1.2.3.4"}}"#,
        )
        .unwrap();
        assert_eq!(events[0].entity, "42");
        assert_eq!(events[0].name, "identify");
        assert_eq!(
            props(&events[0]),
            serde_json::json!({"email":"a@b.c","seats":3})
        );
        assert_eq!(events[0].id.get_version_num(), 7);
    }

    #[test]
    fn identify_traits_from_context_too() {
        let events = parse_one(
            EventKind::Identify,
            r#"{"userId":"u","traits":{"plan":"pro"},"context":{"traits":{"plan":"free","email":"a@b.c"}}}"#,
        )
        .unwrap();
        assert_eq!(
            props(&events[0]),
            serde_json::json!({"plan":"pro","email":"a@b.c"})
        );
    }

    #[test]
    fn group_links_user_and_makes_the_account() {
        let events = parse_one(
            EventKind::Group,
            r#"{"userId":"u1","groupId":"acct-9","traits":{"name":"Acme","employees":40},"messageId":"g-1"}"#,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].entity, "u1");
        assert_eq!(props(&events[0]), serde_json::json!({"groupId":"acct-9"}));
        assert_eq!(events[1].entity, "group:acct-9");
        assert_eq!(
            props(&events[1]),
            serde_json::json!({"name":"Acme","employees":40})
        );
        assert_eq!(events[0].id, event_id("g-1"));
        assert_ne!(events[0].id, events[1].id);
        let again = parse_one(
            EventKind::Group,
            r#"{"userId":"u1","groupId":"acct-9","messageId":"g-1"}"#,
        )
        .unwrap();
        assert_eq!(
            again[1].id, events[1].id,
            "the account event deduplicates too"
        );
    }

    #[test]
    fn page_screen_alias() {
        let page = parse_one(
            EventKind::Page,
            r#"{"anonymousId":"a","name":"Home","properties":{"url":"/"}}"#,
        )
        .unwrap();
        assert_eq!(
            (page[0].entity.as_str(), page[0].name.as_str()),
            ("a", "Home")
        );
        let screen = parse_one(EventKind::Screen, r#"{"userId":"u"}"#).unwrap();
        assert_eq!(screen[0].name, "screen");
        let alias = parse_one(EventKind::Alias, r#"{"userId":"new","previousId":"old"}"#).unwrap();
        assert_eq!(alias[0].kind, EventKind::Alias);
        assert_eq!(props(&alias[0]), serde_json::json!({"previousId":"old"}));
    }

    #[test]
    fn each_problem_names_its_field() {
        let cases = [
            (EventKind::Track, r#"{"event":"e"}"#, "missing", "userId"),
            (EventKind::Track, r#"{"userId":"u"}"#, "missing", "event"),
            (
                EventKind::Track,
                r#"{"userId":"u","event":5}"#,
                "invalid_type",
                "event",
            ),
            (
                EventKind::Track,
                r#"{"userId":"u","event":"e","properties":[1]}"#,
                "invalid_type",
                "properties",
            ),
            (
                EventKind::Track,
                r#"{"userId":"u","event":"e","timestamp":"soon"}"#,
                "invalid_value",
                "timestamp",
            ),
            (
                EventKind::Track,
                r#"{"userId":"u","event":"e","sentAt":false}"#,
                "invalid_type",
                "sentAt",
            ),
            (
                EventKind::Track,
                r#"{"userId":"u","event":"e","type":"page"}"#,
                "invalid_value",
                "type",
            ),
            (
                EventKind::Track,
                r#"{"userId":"u","event":"e","context":"x"}"#,
                "invalid_type",
                "context",
            ),
            (
                EventKind::Track,
                r#"{"userId":"","event":"e"}"#,
                "empty",
                "userId",
            ),
            (EventKind::Group, r#"{"userId":"u"}"#, "missing", "groupId"),
            (
                EventKind::Alias,
                r#"{"userId":"u"}"#,
                "missing",
                "previousId",
            ),
            (
                EventKind::Alias,
                r#"{"anonymousId":"a","previousId":"p"}"#,
                "missing",
                "userId",
            ),
            (
                EventKind::Identify,
                r#"{"userId":"u","traits":true}"#,
                "invalid_type",
                "traits",
            ),
            (
                EventKind::Track,
                r#"{"userId":"u","event":"e","event":"f"}"#,
                "duplicate_field",
                "event",
            ),
        ];
        for (kind, text, code, field) in cases {
            let rejection = parse_one(kind, text).unwrap_err();
            assert_eq!(
                (rejection.code, rejection.field.as_str()),
                (code, field),
                "{text}"
            );
        }
        let in_batch = parse_batch(r#"{"batch":[{"userId":"u"},{"type":"click","userId":"u"}]}"#);
        assert_eq!(in_batch[0].as_ref().unwrap_err().field, "type");
        assert_eq!(in_batch[1].as_ref().unwrap_err().code, "invalid_value");
    }

    #[test]
    fn limits_and_bad_bodies() {
        let big = format!(
            r#"{{"userId":"u","event":"e","properties":{{"x":"{}"}}}}"#,
            "y".repeat(33 * 1024)
        );
        assert_eq!(
            parse_one(EventKind::Track, &big).unwrap_err().code,
            "event_too_large"
        );
        let huge = format!(r#"{{"batch":[],"pad":"{}"}}"#, "y".repeat(MAX_BATCH_BYTES));
        assert!(matches!(
            split_batch(huge.as_bytes(), 10),
            Err(Error::Invalid {
                code: "body_too_large",
                ..
            })
        ));
        assert!(matches!(
            split_batch(b"{\"batch\":[]}", 10),
            Err(Error::EmptyBatch)
        ));
        assert!(matches!(
            split_batch(b"{\"batch\":[{},{}]}", 1),
            Err(Error::TooManyEvents { .. })
        ));
        assert!(matches!(
            split_batch(b"{\"batch\":", 10),
            Err(Error::MalformedJson { .. })
        ));
        assert!(matches!(
            split_batch(b"{\"context\":{}}", 10),
            Err(Error::Invalid {
                code: "missing",
                ..
            })
        ));
        assert!(matches!(
            split_single(b"[1]"),
            Err(Error::Invalid {
                code: "invalid_type",
                ..
            })
        ));
    }
}
