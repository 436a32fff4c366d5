//! `track`, `page` and `screen` calls: one event named by the call, with its `properties`
//! and the message's extras (`$context`, `$anonymous_id`).

use super::{Message, object_map};
use crate::parse::fields::name;
use crate::parse::{Context, Rejection};
use shoal_schemas::{Event, LIMIT_NAME_BYTES};

/// A `track` call: its `event` is the event's name and is required.
pub(super) fn track(message: &Message<'_>, context: &Context<'_>) -> Result<Vec<Event>, Rejection> {
    let event_name = match message.raw.event {
        Some(value) => name(value, "event", LIMIT_NAME_BYTES)?.into_owned(),
        None => {
            return Err(Rejection::new(
                "missing",
                "event",
                "event is required for track calls",
            ));
        }
    };
    with_properties(message, &event_name, context)
}

/// A `page` or `screen` call: named by its `name`, else by its kind.
pub(super) fn page_or_screen(
    message: &Message<'_>,
    context: &Context<'_>,
) -> Result<Vec<Event>, Rejection> {
    let event_name = match message.raw.name {
        Some(value) if value.get() != "null" => name(value, "name", LIMIT_NAME_BYTES)?.into_owned(),
        _ => message.kind.as_str().to_owned(),
    };
    with_properties(message, &event_name, context)
}

fn with_properties(
    message: &Message<'_>,
    event_name: &str,
    context: &Context<'_>,
) -> Result<Vec<Event>, Rejection> {
    let properties = object_map(message.raw.properties, "properties")?;
    Ok(vec![message.event(
        message.id,
        event_name,
        message.entity.clone(),
        message.with_extras(properties),
        context,
    )?])
}
