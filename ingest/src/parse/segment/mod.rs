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
//!
//! This module reads what every call has (kind, ids, time, context); `batch` splits request
//! bodies into messages; `track` (also page and screen), `identify`, `group` and `alias` make
//! each kind's events.

mod alias;
mod batch;
mod group;
mod identify;
mod track;

pub use batch::{MAX_BATCH_BYTES, SegmentBatch, Shared, split_batch, split_single};
pub use group::ACCOUNT_PREFIX;

use super::fields::{name, string, time};
use super::native::{apply_skew, event_id};
use super::{Context, Rejection};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use shoal_schemas::{Event, EventKind, LIMIT_ENTITY_BYTES};
use uuid::Uuid;

/// Longest `messageId` accepted.
const MAX_MESSAGE_ID_BYTES: usize = 256;

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

/// What every call has, read and checked before the fields of its kind.
struct Message<'a> {
    raw: RawMessage<'a>,
    kind: EventKind,
    id: Uuid,
    message_id: Option<String>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    entity: String,
    timestamp: i64,
    /// The batch's context with the message's own keys over it.
    context: Map<String, Value>,
}

impl Message<'_> {
    /// One event of this call.
    fn event(
        &self,
        id: Uuid,
        name: &str,
        entity: String,
        properties: Map<String, Value>,
        context: &Context<'_>,
    ) -> Result<Event, Rejection> {
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
            kind: self.kind,
            name: name.to_owned(),
            entity,
            timestamp: self.timestamp,
            received_at: context.received_at,
            properties,
            value: None,
        })
    }

    /// `properties` with `$anonymous_id` (when the user id is the entity) and `$context`.
    fn with_extras(&self, mut properties: Map<String, Value>) -> Map<String, Value> {
        if let (Some(_), Some(anonymous)) = (&self.user_id, &self.anonymous_id) {
            properties.insert("$anonymous_id".to_owned(), Value::String(anonymous.clone()));
        }
        if !self.context.is_empty() {
            properties.insert("$context".to_owned(), Value::Object(self.context.clone()));
        }
        properties
    }
}

/// Parses one message into its events (two for `group`, else one). `route_kind` is the kind the
/// single-call route implies; in a batch each message names its own `type`.
pub fn parse_message(
    item: &RawValue,
    route_kind: Option<EventKind>,
    shared: &Shared,
    context: &Context<'_>,
) -> Result<Vec<Event>, Rejection> {
    let message = read_message(item, route_kind, shared, context)?;
    match message.kind {
        EventKind::Track => track::track(&message, context),
        EventKind::Page | EventKind::Screen => track::page_or_screen(&message, context),
        EventKind::Identify => identify::identify(&message, context),
        EventKind::Group => group::group(&message, context),
        EventKind::Alias => alias::alias(&message, context),
        EventKind::Metric => Err(Rejection::new(
            "invalid_value",
            "type",
            "metric is not a Segment call",
        )),
    }
}

fn read_message<'a>(
    item: &'a RawValue,
    route_kind: Option<EventKind>,
    shared: &Shared,
    context: &Context<'_>,
) -> Result<Message<'a>, Rejection> {
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
    Ok(Message {
        raw,
        kind,
        id,
        message_id,
        user_id,
        anonymous_id,
        entity,
        timestamp,
        context: merged_context,
    })
}

fn context_map(raw: &RawValue) -> Result<Map<String, Value>, Rejection> {
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

fn object_map(raw: Option<&RawValue>, field: &str) -> Result<Map<String, Value>, Rejection> {
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
fn id_field(raw: &RawValue, field: &str) -> Result<String, Rejection> {
    let text = raw.get();
    if text.starts_with(|first: char| first == '-' || first.is_ascii_digit())
        && text.len() <= LIMIT_ENTITY_BYTES
    {
        return Ok(text.to_owned());
    }
    Ok(name(raw, field, LIMIT_ENTITY_BYTES)?.into_owned())
}

/// An optional id field; JSON `null` counts as absent, as the SDKs send it.
fn optional_id(raw: Option<&RawValue>, field: &str) -> Result<Option<String>, Rejection> {
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

#[cfg(test)]
mod tests;
