//! Native event bodies (`POST /v1/events`) parsed in one pass.
//!
//! The general path — [`super::split`] into `&RawValue`s, then [`super::parse_event`] on each —
//! reads every item twice: once to find where it ends, once into [`RawEvent`]. Here the body's
//! array (or its one object, or each NDJSON line) is deserialized straight into `RawEvent`s. The
//! length of each item's text, which `max_event_bytes` limits, is recovered from where its first
//! key and last value lie in the body. The fields are then checked by the same
//! [`build_event`] as on the general path.
//!
//! Invariant: the result is exactly the general path's, item by item. The one pass answers only
//! what it can answer identically: a body (or NDJSON line) whose items are all objects with at
//! least one key, every key known, unescaped and not repeated, and no more items than allowed.
//! Anything else — broken JSON, an unknown or repeated field, an item that is not an object, an
//! empty object, an escaped key, too many items — makes the one pass give up, and the body (for
//! NDJSON, that line) is parsed again by the general path, which words the error. A bad field
//! *value* needs no fallback: both paths reject it in `build_event`.

use super::native::{RawEvent, build_event, check_size};
use super::{Context, Layout, Rejection, ndjson_item, parse_event, split};
use crate::{Error, Result};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use shoal_storage::NewEvent;
use std::fmt;

type Item = std::result::Result<NewEvent, Rejection>;

/// Parses a native event body into one result per item, in body order, as
/// `split(body, layout, max_items)` followed by `parse_event` on each item would.
pub fn parse_events(
    body: &[u8],
    layout: Layout,
    max_items: usize,
    context: &Context<'_>,
) -> Result<Vec<Item>> {
    match layout {
        Layout::Json => match one_pass_json(body, max_items, context) {
            Some(items) => Ok(items),
            None => per_item(body, layout, max_items, context),
        },
        Layout::Ndjson => ndjson(body, max_items, context),
    }
}

/// The general path: split, then parse each item on its own.
fn per_item(
    body: &[u8],
    layout: Layout,
    max_items: usize,
    context: &Context<'_>,
) -> Result<Vec<Item>> {
    Ok(split(body, layout, max_items)?
        .into_iter()
        .map(|item| item.and_then(|raw| parse_event(raw, context)))
        .collect())
}

/// A JSON array of objects, or one object, in one pass; `None` when the general path must
/// answer instead (see the module's invariant).
fn one_pass_json(body: &[u8], max_items: usize, context: &Context<'_>) -> Option<Vec<Item>> {
    // The same test of the first byte as `split_json`, so both take a body for the same layout.
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace())?;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let items = match first {
        b'[' => deserializer
            .deserialize_seq(Batch {
                base: body,
                max_items,
                context,
            })
            .ok()?,
        b'{' => {
            let located = deserializer.deserialize_map(ItemSeed { base: body }).ok()?;
            vec![located.into_event(context)]
        }
        _ => return None,
    };
    // Trailing characters after the array or object make the whole body malformed.
    deserializer.end().ok()?;
    if items.is_empty() || items.len() > max_items {
        return None;
    }
    Some(items)
}

/// NDJSON: each non-blank line in one pass, falling back to the general path for that line
/// only (lines are independent items there too). The item count is checked as `split` does:
/// blank lines do not count, unreadable ones do.
fn ndjson(body: &[u8], max_items: usize, context: &Context<'_>) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut count = 0;
    for (number, line) in body.split(|byte| *byte == b'\n').enumerate() {
        if !line.iter().any(|byte| !byte.is_ascii_whitespace()) {
            continue;
        }
        count += 1;
        if count > max_items {
            // Only counted from here on, for the error below.
            continue;
        }
        let item = match one_pass_line(line) {
            Some(located) => located.into_event(context),
            None => ndjson_item(number, line).and_then(|raw| parse_event(raw, context)),
        };
        items.push(item);
    }
    if count == 0 {
        return Err(Error::EmptyBatch);
    }
    if count > max_items {
        return Err(Error::TooManyEvents {
            count,
            limit: max_items,
        });
    }
    Ok(items)
}

fn one_pass_line(line: &[u8]) -> Option<Located<'_>> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let located = deserializer.deserialize_map(ItemSeed { base: line }).ok()?;
    deserializer.end().ok()?;
    Some(located)
}

/// One item read in the one pass: its fields and the length of its JSON text.
struct Located<'a> {
    raw: RawEvent<'a>,
    bytes: usize,
}

impl Located<'_> {
    fn into_event(self, context: &Context<'_>) -> Item {
        check_size(self.bytes, context)?;
        build_event(self.raw, context)
    }
}

/// Visits the body's array, building each item's event as soon as it is read (while its bytes
/// are still in cache). Any error aborts the pass: serde_json cannot resume after one.
struct Batch<'b, 'c> {
    base: &'b [u8],
    max_items: usize,
    context: &'b Context<'c>,
}

impl<'de> Visitor<'de> for Batch<'_, '_> {
    type Value = Vec<Item>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<Item>, A::Error> {
        let mut items = Vec::new();
        while let Some(located) = seq.next_element_seed(ItemSeed { base: self.base })? {
            if items.len() == self.max_items {
                return Err(de::Error::custom("more items than allowed"));
            }
            items.push(located.into_event(self.context));
        }
        Ok(items)
    }
}

/// Reads one item, which must be an object, into [`RawEvent`] and measures it. `base` is the
/// slice being deserialized: every key and value borrowed from it points into it.
struct ItemSeed<'b> {
    base: &'b [u8],
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Located<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Located<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Located<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Located<'de>, A::Error> {
        let mut raw = RawEvent::default();
        let mut seen = 0u16;
        let mut first_key: Option<&'de str> = None;
        let mut last_value: Option<&'de RawValue> = None;
        // A `&str` key borrows from the body; an escaped key cannot, fails here, and is left to
        // the general path (whose derived `RawEvent` unescapes it).
        while let Some(key) = map.next_key::<&'de str>()? {
            let (bit, slot) = match key {
                "id" => (0, &mut raw.id),
                "kind" => (1, &mut raw.kind),
                "name" => (2, &mut raw.name),
                "entity" => (3, &mut raw.entity),
                "timestamp" => (4, &mut raw.timestamp),
                "sent_at" => (5, &mut raw.sent_at),
                "properties" => (6, &mut raw.properties),
                "traits" => (7, &mut raw.traits),
                "value" => (8, &mut raw.value),
                _ => return Err(de::Error::custom("unknown field")),
            };
            if seen & (1 << bit) != 0 {
                return Err(de::Error::custom("duplicate field"));
            }
            seen |= 1 << bit;
            let value: &'de RawValue = map.next_value()?;
            // The derived `Option<&RawValue>` reads `null` as `None`. A raw value's text has no
            // surrounding whitespace, so `null` is exactly that text.
            *slot = (value.get() != "null").then_some(value);
            first_key.get_or_insert(key);
            last_value = Some(value);
        }
        let (Some(first_key), Some(last_value)) = (first_key, last_value) else {
            return Err(de::Error::custom("an empty object cannot be measured"));
        };
        let bytes = item_len(self.base, first_key, last_value)
            .ok_or_else(|| de::Error::custom("item is not where expected in the body"))?;
        Ok(Located { raw, bytes })
    }
}

/// The length of an object's text from `{` to `}`, found from its first key (which starts just
/// after its opening quote) and its last value: only JSON whitespace separates `{` from that
/// quote and the last value from `}`. `None` if either is not a slice of `base` or the braces
/// are not where they must be — which would be a bug, so the general path answers instead.
fn item_len(base: &[u8], first_key: &str, last_value: &RawValue) -> Option<usize> {
    let offset = |text: &str| {
        (text.as_ptr() as usize)
            .checked_sub(base.as_ptr() as usize)
            .filter(|start| start + text.len() <= base.len())
    };
    let key_start = offset(first_key)?;
    let value_end = offset(last_value.get())? + last_value.get().len();
    let before_quote = base.get(..key_start.checked_sub(1)?)?;
    let open = before_quote
        .iter()
        .rposition(|byte| !is_json_whitespace(*byte))?;
    let close = value_end
        + base
            .get(value_end..)?
            .iter()
            .position(|byte| !is_json_whitespace(*byte))?;
    let braces = (base.get(open), base.get(close)) == (Some(&b'{'), Some(&b'}'));
    debug_assert!(
        braces,
        "an object's first key and last value are inside its braces"
    );
    braces.then_some(close + 1 - open)
}

/// Whitespace as JSON defines it (not `u8::is_ascii_whitespace`, which adds form feed).
fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\n' | b'\r' | b'\t')
}

#[cfg(test)]
mod tests;
