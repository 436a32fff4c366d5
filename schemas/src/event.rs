//! The event envelope: what every accepted write becomes in the immutable log.
//!
//! `properties` is kept as the JSON text the client sent (validated as an object at ingest), not
//! as a parsed tree: the write path never needs the tree, and re-serialising it per event would
//! cost more than everything else ingest does. Projections parse it when they need a field.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest accepted `entity`, in bytes (a DynamoDB partition key is at most 2048 bytes and
/// carries the tenant too; Kinesis partition keys are at most 256 characters and are hashed).
pub const LIMIT_ENTITY_BYTES: usize = 256;
/// Longest accepted event or metric `name`, in bytes.
pub const LIMIT_NAME_BYTES: usize = 256;

/// The kind of write, following Segment's call types plus `metric` for numeric points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Track,
    Identify,
    Group,
    Page,
    Screen,
    Alias,
    Metric,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Track,
        EventKind::Identify,
        EventKind::Group,
        EventKind::Page,
        EventKind::Screen,
        EventKind::Alias,
        EventKind::Metric,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Track => "track",
            EventKind::Identify => "identify",
            EventKind::Group => "group",
            EventKind::Page => "page",
            EventKind::Screen => "screen",
            EventKind::Alias => "alias",
            EventKind::Metric => "metric",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = crate::Error;

    fn from_str(text: &str) -> crate::Result<Self> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| crate::Error::UnknownKind(text.to_owned()))
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One accepted write. Times are milliseconds since the Unix epoch, UTC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The client's message id when it sent one, else a server UUIDv7.
    pub id: Uuid,
    /// Taken from the API key, never from the body.
    pub tenant: String,
    pub kind: EventKind,
    /// Event name (`track`), page/screen name, or metric name.
    pub name: String,
    /// The customer, user or account; for metrics the series key.
    pub entity: String,
    /// Event time after clock-skew correction.
    pub timestamp: i64,
    pub received_at: i64,
    /// A JSON object as text: properties, traits or metric tags. `{}` when absent.
    pub properties: String,
    /// The numeric value of a metric point.
    pub value: Option<f64>,
}

impl Event {
    /// The parsed properties object; an empty map when the stored text is not an object, which
    /// ingest never lets through.
    pub fn properties_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str::<serde_json::Value>(&self.properties) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }

    /// The event as the JSON a client would read back, with properties as an object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "tenant": self.tenant,
            "kind": self.kind,
            "name": self.name,
            "entity": self.entity,
            "timestamp": crate::time::format_millis(self.timestamp),
            "received_at": crate::time::format_millis(self.received_at),
            "properties": serde_json::Value::Object(self.properties_map()),
            "value": self.value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips_through_text() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("click".parse::<EventKind>().is_err());
    }

    #[test]
    fn json_view_shows_properties_as_object() {
        let event = Event {
            id: Uuid::nil(),
            tenant: "t".into(),
            kind: EventKind::Track,
            name: "login".into(),
            entity: "acme".into(),
            timestamp: 0,
            received_at: 1_000,
            properties: r#"{"plan":"trial"}"#.into(),
            value: None,
        };
        let json = event.to_json();
        assert_eq!(json["properties"]["plan"], "trial");
        assert_eq!(json["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["kind"], "track");
    }
}
