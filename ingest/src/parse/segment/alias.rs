//! `alias` calls: `{"previousId": …}` on the new `userId`. Identities are not merged (see
//! docs/ingest-protocols.md); the events are what a later merge would be built from.

use super::{Message, optional_id};
use crate::parse::{Context, Rejection};
use serde_json::{Map, Value};
use shoal_schemas::Event;

pub(super) fn alias(message: &Message<'_>, context: &Context<'_>) -> Result<Vec<Event>, Rejection> {
    if message.user_id.is_none() {
        return Err(Rejection::new(
            "missing",
            "userId",
            "userId is required for alias calls",
        ));
    }
    let previous = match optional_id(message.raw.previous_id, "previousId")? {
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
    Ok(vec![message.event(
        message.id,
        message.kind.as_str(),
        message.entity.clone(),
        message.with_extras(properties),
        context,
    )?])
}
