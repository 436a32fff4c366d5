//! `identify` calls: one event on the user whose properties are exactly its traits.

use super::{Message, object_map};
use crate::parse::{Context, Rejection};
use serde_json::{Map, Value};
use shoal_schemas::Event;

pub(super) fn identify(
    message: &Message<'_>,
    context: &Context<'_>,
) -> Result<Vec<Event>, Rejection> {
    // RudderStack's SDKs send identify traits in `context.traits` only; Segment's spec allows
    // them there too. Top-level traits win on a clash.
    let mut traits = match message.context.get("traits") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    traits.extend(object_map(message.raw.traits, "traits")?);
    Ok(vec![message.event(
        message.id,
        message.kind.as_str(),
        message.entity.clone(),
        traits,
        context,
    )?])
}
