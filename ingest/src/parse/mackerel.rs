//! Mackerel's host metric API shape (`POST /api/v0/tsdb`): a JSON array of
//! `{"hostId", "name", "time", "value"}` with `time` in epoch seconds.
//!
//! Each point becomes a metric event named `name` with the tag `host=<hostId>`, so it is the
//! same series as a native point `{"name", "host", …}`.

use super::fields::{finite_number, name, shape_error};
use super::metric::point_event;
use super::{Context, Rejection};
use serde::Deserialize;
use serde_json::value::RawValue;
use shoal_schemas::{Event, LIMIT_NAME_BYTES};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint<'a> {
    #[serde(borrow, rename = "hostId")]
    host_id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    time: Option<&'a RawValue>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
}

/// Parses one Mackerel point.
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
        let rejection = shape_error(&error);
        if rejection.field == "event" {
            Rejection::new("invalid_type", "point", "each point must be a JSON object")
        } else {
            rejection
        }
    })?;
    let host = name(required(raw.host_id, "hostId")?, "hostId", LIMIT_NAME_BYTES)?;
    let metric = name(required(raw.name, "name")?, "name", LIMIT_NAME_BYTES)?;
    let seconds = required(raw.time, "time")?;
    let seconds = serde_json::from_str::<f64>(seconds.get())
        .ok()
        .filter(|value| value.is_finite() && value.abs() < 1e13)
        .ok_or_else(|| Rejection::new("invalid_type", "time", "time must be epoch seconds"))?;
    let value = finite_number(required(raw.value, "value")?, "value")?;
    let mut tags = BTreeMap::new();
    tags.insert("host".to_owned(), host.into_owned());
    let millis = (seconds * 1000.0).round() as i64;
    point_event(&metric, tags, value, millis, None, context)
}

fn required<'a>(value: Option<&'a RawValue>, field: &str) -> Result<&'a RawValue, Rejection> {
    value.ok_or_else(|| Rejection::new("missing", field, format!("{field} is required")))
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
    fn point_becomes_a_host_series() {
        let event = parse(
            r#"{"hostId":"3yAYEDLXKL5","name":"custom.queue.size","time":1767225540,"value":12}"#,
        )
        .unwrap();
        assert_eq!(event.entity, "custom.queue.size{host=3yAYEDLXKL5}");
        assert_eq!(event.name, "custom.queue.size");
        assert_eq!(event.timestamp, 1_767_225_540_000);
        assert_eq!(event.value, Some(12.0));
        assert_eq!(event.properties, r#"{"host":"3yAYEDLXKL5"}"#);
        let again = parse(
            r#"{"hostId":"3yAYEDLXKL5","name":"custom.queue.size","time":1767225540,"value":12}"#,
        )
        .unwrap();
        assert_eq!(event.id, again.id, "a resent point deduplicates");
    }

    #[test]
    fn problems_name_their_field() {
        let cases = [
            (r#"{"name":"m","time":1,"value":1}"#, "missing", "hostId"),
            (r#"{"hostId":"h","time":1,"value":1}"#, "missing", "name"),
            (r#"{"hostId":"h","name":"m","value":1}"#, "missing", "time"),
            (
                r#"{"hostId":"h","name":"m","time":"x","value":1}"#,
                "invalid_type",
                "time",
            ),
            (
                r#"{"hostId":"h","name":"m","time":1,"value":"1"}"#,
                "invalid_type",
                "value",
            ),
            (
                r#"{"hostId":"h","name":"m{","time":1,"value":1}"#,
                "invalid_value",
                "name",
            ),
            (
                r#"{"hostId":"h","name":"m","time":1,"value":1,"x":1}"#,
                "unknown_field",
                "x",
            ),
            (r#"[]"#, "invalid_type", "point"),
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
