//! Strict parsers from request bodies to events.
//!
//! A body is split into items first (a JSON array, a single JSON object, or NDJSON lines), then
//! each item is parsed on its own, so one bad event is rejected alone — with a code and the
//! field it concerns — while the rest of the batch is stored. Only a body that cannot be split
//! at all (broken JSON syntax in an array) fails as a whole.
//!
//! Native events take a faster road to the same answers: `events` reads a body in one pass and
//! falls back to split-then-parse only where an item needs the general path's words.

mod events;
mod fields;
pub mod graphite;
pub mod line_protocol;
pub mod mackerel;
mod metric;
mod native;
pub mod segment;

pub use events::parse_events;
pub use metric::parse_point;
pub use native::parse_event;

use crate::{Error, Result};
use serde::Serialize;
use serde_json::value::RawValue;

/// Why one item of a batch was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub code: &'static str,
    pub field: String,
    pub message: String,
    /// Where in the body, for line-oriented formats (1-based; the column counts bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Rejection {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection {
            code,
            field: field.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }

    /// The same rejection, placed at a line and column of the body.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

/// How the items of a body are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A JSON array of objects, or one object.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl Layout {
    /// From the request's `Content-Type`.
    pub fn from_content_type(content_type: Option<&str>) -> Layout {
        let essence = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => {
                Layout::Ndjson
            }
            _ => Layout::Json,
        }
    }
}

/// What the per-item parsers need besides the item.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub tenant: &'a str,
    pub received_at: i64,
    pub max_event_bytes: usize,
}

/// Splits a body into items, refusing more than `max_items`.
pub fn split(
    body: &[u8],
    layout: Layout,
    max_items: usize,
) -> Result<Vec<std::result::Result<&RawValue, Rejection>>> {
    let items = match layout {
        Layout::Json => split_json(body)?,
        Layout::Ndjson => split_ndjson(body),
    };
    if items.is_empty() {
        return Err(Error::EmptyBatch);
    }
    if items.len() > max_items {
        return Err(Error::TooManyEvents {
            count: items.len(),
            limit: max_items,
        });
    }
    Ok(items)
}

fn split_json(body: &[u8]) -> Result<Vec<std::result::Result<&RawValue, Rejection>>> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(|error| Error::malformed(&error))?;
            Ok(items.into_iter().map(Ok).collect())
        }
        Some(b'{') => {
            let item: &RawValue =
                serde_json::from_slice(body).map_err(|error| Error::malformed(&error))?;
            Ok(vec![Ok(item)])
        }
        None => Err(Error::EmptyBatch),
        Some(_) => Err(Error::Invalid {
            code: "invalid_type",
            field: "body".to_owned(),
            message: "body must be a JSON array of objects, one object, or NDJSON".to_owned(),
        }),
    }
}

fn split_ndjson(body: &[u8]) -> Vec<std::result::Result<&RawValue, Rejection>> {
    body.split(|byte| *byte == b'\n')
        .enumerate()
        .filter(|(_, line)| line.iter().any(|byte| !byte.is_ascii_whitespace()))
        .map(|(number, line)| ndjson_item(number, line))
        .collect()
}

/// One non-blank NDJSON line (`number` counts from 0) as an item, or why it is not JSON.
fn ndjson_item(number: usize, line: &[u8]) -> std::result::Result<&RawValue, Rejection> {
    serde_json::from_slice::<&RawValue>(line).map_err(|error| {
        Rejection::new(
            "malformed_json",
            "body",
            format!("line {} column {}: {error}", number + 1, error.column()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_arrays_objects_and_lines() {
        assert_eq!(
            split(br#"[{"a":1},{"b":2}]"#, Layout::Json, 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(split(br#" {"a":1} "#, Layout::Json, 10).unwrap().len(), 1);
        let lines = split(b"{\"a\":1}\n\n{oops\n{\"c\":3}\n", Layout::Ndjson, 10).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].is_ok());
        let bad = lines[1].as_ref().unwrap_err();
        assert_eq!(bad.code, "malformed_json");
        assert!(bad.message.starts_with("line 3 "), "{}", bad.message);
        assert!(lines[2].is_ok());
    }

    #[test]
    fn refuses_bad_bodies() {
        assert!(matches!(
            split(b"[{\"a\":1},", Layout::Json, 10),
            Err(Error::MalformedJson { line: 1, .. })
        ));
        assert!(matches!(
            split(b"[]", Layout::Json, 10),
            Err(Error::EmptyBatch)
        ));
        assert!(matches!(
            split(b"  ", Layout::Json, 10),
            Err(Error::EmptyBatch)
        ));
        assert!(matches!(
            split(b"42", Layout::Json, 10),
            Err(Error::Invalid {
                code: "invalid_type",
                ..
            })
        ));
        assert!(matches!(
            split(b"[{},{},{}]", Layout::Json, 2),
            Err(Error::TooManyEvents { count: 3, limit: 2 })
        ));
    }

    #[test]
    fn layout_from_content_type() {
        assert_eq!(
            Layout::from_content_type(Some("application/x-ndjson; charset=utf-8")),
            Layout::Ndjson
        );
        assert_eq!(
            Layout::from_content_type(Some("application/json")),
            Layout::Json
        );
        assert_eq!(Layout::from_content_type(None), Layout::Json);
    }
}
